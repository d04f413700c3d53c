//! The FX table (`--fx FILE`): `date,from,to,rate`, one row per published rate.
//! Used only to add a converted total in the reporting currency to statements;
//! accruals stay in their billing currency.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::billing::normalize_header;
use super::designations::Reject;
use super::read_header;
use crate::dates::{parse_date, DateError};
use crate::error::Fatal;
use crate::money::{parse_amount, Currency};

/// One rate: its date, the rate, and its line in the FX file.
type Dated = (NaiveDate, Decimal, u64);

/// Rates by (from, to), each a list sorted by date.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FxTable {
    rates: BTreeMap<(Currency, Currency), Vec<Dated>>,
    /// The FX file, as named in messages.
    file: String,
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
        let (date, rate, _) = self.entry(from, to, on)?;
        Some((rate, Some(date)))
    }

    /// Where the rate [`FxTable::rate`] gives came from (`fx.csv:12`), for
    /// messages; `None` for the same currency or a missing rate.
    pub fn source(&self, from: Currency, to: Currency, on: NaiveDate) -> Option<String> {
        if from == to {
            return None;
        }
        let (_, _, line) = self.entry(from, to, on)?;
        Some(format!("{}:{line}", self.file))
    }

    fn entry(
        &self,
        from: Currency,
        to: Currency,
        on: NaiveDate,
    ) -> Option<(NaiveDate, Decimal, u64)> {
        let list = self.rates.get(&(from, to))?;
        let i = list.partition_point(|(d, _, _)| *d <= on);
        (i > 0).then(|| list[i - 1])
    }
}

/// Reads and parses the FX file (`--fx`), of at most [`super::limits::FX`] bytes.
pub fn load_fx(path: &std::path::Path) -> Result<(FxTable, Vec<Reject>, u64), Fatal> {
    let bytes = super::read_limited(path, super::limits::FX, "FX")?;
    parse_fx(&path.to_string_lossy(), &bytes)
}

/// Parses the FX file. Rows that cannot be used are returned as rejects; two
/// different rates for the same day and pair are a fatal error (ambiguous).
pub fn parse_fx(file: &str, bytes: &[u8]) -> Result<(FxTable, Vec<Reject>, u64), Fatal> {
    let header = read_header(file, bytes)?;
    let norm: Vec<String> = header.fields.iter().map(|h| normalize_header(h)).collect();
    let col = |name: &str| -> Result<usize, Fatal> {
        super::find_column(&norm, &[name], true)
            .map_err(|(i, j)| Fatal::Data {
                file: file.into(),
                line: 1,
                column: None,
                message: super::ambiguous_columns(&header.fields, i, j),
            })?
            .ok_or_else(|| Fatal::Data {
                file: file.into(),
                line: 1,
                column: Some(name.into()),
                message: "required column is missing; expected header: date,from,to,rate".into(),
            })
    };
    let (cd, cf, ct, cr) = (col("date")?, col("from")?, col("to")?, col("rate")?);
    let mut table = FxTable {
        file: file.to_string(),
        ..FxTable::default()
    };
    let mut rejects = Vec::new();
    let mut rows = 0;
    let body = &bytes[header.byte_len..];
    let decimal_comma = header.delimiter == b';';
    let mut fatal = None;
    super::records::for_each_text_row(
        body,
        header.next_line,
        header.delimiter,
        &header.fields,
        &mut |line, rec| {
            rows += 1;
            if fatal.is_some() {
                return;
            }
            let mut reject = |column: &str, value: &str, reason: &str| {
                rejects.push(Reject {
                    file: file.into(),
                    line,
                    column: column.into(),
                    value: value.into(),
                    reason: reason.into(),
                })
            };
            let rec = match rec {
                Ok(r) => r,
                Err(p) => return reject(&p.column, &p.value, &p.reason),
            };
            let get = |i: usize| rec.get(i).unwrap_or("").trim();
            let date = match parse_date(get(cd)) {
                Ok(d) => d,
                Err(e @ DateError::OutOfRange) => {
                    return reject("date", get(cd), &e.reason(get(cd), "YYYY-MM-DD"))
                }
                Err(DateError::Form) => return reject("date", get(cd), "not a date"),
            };
            let (Some(from), Some(to)) = (Currency::parse(get(cf)), Currency::parse(get(ct)))
            else {
                return reject(
                    "from",
                    &format!("{}/{}", get(cf), get(ct)),
                    "not a pair of ISO 4217 currency codes",
                );
            };
            let rate = match parse_amount(get(cr), decimal_comma) {
                Ok(r) if r > Decimal::ZERO => r.normalize(),
                Err(e) => {
                    return reject("rate", get(cr), &e.reason("not a positive decimal number"))
                }
                Ok(_) => return reject("rate", get(cr), "not a positive decimal number"),
            };
            let list = table.rates.entry((from, to)).or_default();
            if let Some((_, r, _)) = list.iter().find(|(d, _, _)| *d == date) {
                if *r != rate {
                    fatal = Some(Fatal::Data {
                        file: file.into(),
                        line,
                        column: Some("rate".into()),
                        message: format!(
                            "a different {from}->{to} rate for {date} was given earlier ({r})"
                        ),
                    });
                }
                return;
            }
            list.push((date, rate, line));
        },
    );
    if let Some(f) = fatal {
        return Err(f);
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

    /// A rate written with a decimal comma in a comma-separated file is two
    /// fields: rejected, never read as its integer part (1 for 1,0833).
    #[test]
    fn a_row_of_another_field_count_is_rejected_not_read_in_part() {
        let (t, rejects, rows) = parse_fx(
            "fx.csv",
            b"date,from,to,rate\n2026-10-31,USD,EUR,1,0833\n2026-10-31,GBP,EUR\n",
        )
        .unwrap();
        assert_eq!(rows, 2);
        let got: Vec<(u64, &str, &str)> = rejects
            .iter()
            .map(|r| (r.line, r.column.as_str(), r.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (2, "(row)", "has 5 fields, the header has 4"),
                (3, "(row)", "has 3 fields, the header has 4"),
            ]
        );
        let usd = Currency::parse("USD").unwrap();
        let eur = Currency::parse("EUR").unwrap();
        let d = NaiveDate::from_ymd_opt(2026, 10, 31).unwrap();
        assert_eq!(t.rate(usd, eur, d), None);
    }
}
