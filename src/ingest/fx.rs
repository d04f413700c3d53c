//! The FX table (`--fx FILE`): `date,from,to,rate`, one row per published rate.
//! Used only to add a converted total in the reporting currency to statements;
//! accruals stay in their billing currency.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::billing::normalize_header;
use super::designations::Reject;
use super::parse_header;
use crate::dates::parse_date;
use crate::error::Fatal;
use crate::money::{parse_rate, Currency};

/// Rates by (from, to), each a list of (date, rate) sorted by date.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FxTable {
    rates: BTreeMap<(Currency, Currency), Vec<(NaiveDate, Decimal)>>,
}

impl FxTable {
    /// The latest rate from `from` to `to` published on or before `on`, with its date.
    /// The same currency converts at 1.
    pub fn rate(
        &self,
        from: Currency,
        to: Currency,
        on: NaiveDate,
    ) -> Option<(Decimal, Option<NaiveDate>)> {
        if from == to {
            return Some((Decimal::ONE, None));
        }
        let list = self.rates.get(&(from, to))?;
        let i = list.partition_point(|(d, _)| *d <= on);
        (i > 0).then(|| (list[i - 1].1, Some(list[i - 1].0)))
    }
}

/// Parses the FX file. Rows that cannot be used are returned as rejects; two
/// different rates for the same day and pair are a fatal error (ambiguous).
pub fn parse_fx(file: &str, bytes: &[u8]) -> Result<(FxTable, Vec<Reject>, u64), Fatal> {
    let header = parse_header(bytes).ok_or_else(|| Fatal::Data {
        file: file.into(),
        line: 1,
        column: None,
        message: "file is empty: no header line".into(),
    })?;
    let norm: Vec<String> = header.fields.iter().map(|h| normalize_header(h)).collect();
    let col = |name: &str| -> Result<usize, Fatal> {
        norm.iter()
            .position(|h| h == name)
            .ok_or_else(|| Fatal::Data {
                file: file.into(),
                line: 1,
                column: Some(name.into()),
                message: "required column is missing; expected header: date,from,to,rate".into(),
            })
    };
    let (cd, cf, ct, cr) = (col("date")?, col("from")?, col("to")?, col("rate")?);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(header.delimiter)
        .from_reader(&bytes[header.byte_len..]);
    let mut table = FxTable::default();
    let mut rejects = Vec::new();
    let mut rows = 0;
    let body = &bytes[header.byte_len..];
    let mut lines = super::LineTracker::new(header.next_line);
    for rec in rdr.records() {
        let rec = rec.map_err(|e| Fatal::Data {
            file: file.into(),
            line: 0,
            column: None,
            message: e.to_string(),
        })?;
        rows += 1;
        let line = lines.line(body, rec.position().map(|p| p.byte()).unwrap_or(0));
        let get = |i: usize| rec.get(i).unwrap_or("").trim();
        let mut reject = |column: &str, value: &str, reason: &str| {
            rejects.push(Reject {
                file: file.into(),
                line,
                column: column.into(),
                value: value.into(),
                reason: reason.into(),
            })
        };
        let Ok(date) = parse_date(get(cd)) else {
            reject("date", get(cd), "not a date");
            continue;
        };
        let (Some(from), Some(to)) = (Currency::parse(get(cf)), Currency::parse(get(ct))) else {
            reject(
                "from",
                &format!("{}/{}", get(cf), get(ct)),
                "not a pair of three-letter currency codes",
            );
            continue;
        };
        let rate = match parse_rate(get(cr)) {
            Ok(r) if r > Decimal::ZERO => r.normalize(),
            _ => {
                reject("rate", get(cr), "not a positive decimal number");
                continue;
            }
        };
        let list = table.rates.entry((from, to)).or_default();
        if let Some((_, r)) = list.iter().find(|(d, _)| *d == date) {
            if *r != rate {
                return Err(Fatal::Data {
                    file: file.into(),
                    line,
                    column: Some("rate".into()),
                    message: format!(
                        "a different {from}->{to} rate for {date} was given earlier ({r})"
                    ),
                });
            }
            continue;
        }
        list.push((date, rate));
    }
    for list in table.rates.values_mut() {
        list.sort();
    }
    Ok((table, rejects, rows))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latest_rate_on_or_before() {
        let (t, rejects, rows) = parse_fx(
            "fx.csv",
            b"date,from,to,rate\n2026-10-31,USD,EUR,0.92\n2026-09-30,USD,EUR,0.9\n2026-10-31,GBP,EUR,x\n",
        )
        .unwrap();
        assert_eq!(rows, 3);
        assert_eq!(rejects.len(), 1);
        let usd = Currency::parse("USD").unwrap();
        let eur = Currency::parse("EUR").unwrap();
        let d = |m, dd| NaiveDate::from_ymd_opt(2026, m, dd).unwrap();
        assert_eq!(
            t.rate(usd, eur, d(10, 30)),
            Some(("0.9".parse().unwrap(), Some(d(9, 30))))
        );
        assert_eq!(
            t.rate(usd, eur, d(10, 31)),
            Some(("0.92".parse().unwrap(), Some(d(10, 31))))
        );
        assert_eq!(t.rate(usd, eur, d(9, 1)), None);
        assert_eq!(t.rate(eur, eur, d(9, 1)), Some((Decimal::ONE, None)));
    }
}
