//! The designations file: who gets credit for which customer, from when to when.
//!
//! `customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to`
//! Headers are matched by name, case-insensitively; extra columns are ignored.
//! A row that cannot be used is rejected with file, line, column, value and reason.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::config::Association;
use crate::dates::parse_date;
use crate::error::Fatal;
use crate::money::parse_amount;

use super::billing::normalize_header;
use super::{read_header, Header};

/// One credit relationship.
#[derive(Clone, Debug, PartialEq)]
pub struct Designation {
    /// Line in the designations file (provenance).
    pub line: u64,
    /// Lower-cased (tenant GUIDs differ in case between exports).
    pub customer_id: String,
    pub partner_id: String,
    pub partner_name: String,
    pub association: Association,
    /// Lower-cased; empty = not workload-specific.
    pub workload: String,
    /// Lower-cased; `None` = every subscription of the customer.
    pub subscription_id: Option<String>,
    /// `None` = split equally with the other rows that give none.
    pub share: Option<Decimal>,
    pub valid_from: Option<NaiveDate>,
    /// Exclusive.
    pub valid_to: Option<NaiveDate>,
}

impl Designation {
    pub fn valid_on(&self, d: NaiveDate) -> bool {
        self.valid_from.is_none_or(|f| f <= d) && self.valid_to.is_none_or(|t| d < t)
    }
}

/// A rejected input row (any input file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject {
    pub file: String,
    pub line: u64,
    pub column: String,
    pub value: String,
    pub reason: String,
}

/// The designations file, loaded.
#[derive(Clone, Debug, Default)]
pub struct Designations {
    pub rows: Vec<Designation>,
    pub rejects: Vec<Reject>,
    /// Data rows read (= rows + rejects).
    pub rows_read: u64,
}

const COLUMNS: [&str; 9] = [
    "customer_id",
    "partner_id",
    "partner_name",
    "association",
    "workload",
    "subscription_id",
    "share",
    "valid_from",
    "valid_to",
];
const REQUIRED: [&str; 3] = ["customer_id", "partner_id", "association"];

/// Parses the designations file's bytes. `file` names it in messages.
pub fn parse_designations(file: &str, bytes: &[u8]) -> Result<Designations, Fatal> {
    let data_err = |line: u64, column: Option<String>, message: String| Fatal::Data {
        file: file.to_string(),
        line,
        column,
        message,
    };
    let Header {
        fields,
        delimiter,
        byte_len,
        next_line,
    } = read_header(file, bytes)?;
    let norm: Vec<String> = fields.iter().map(|h| normalize_header(h)).collect();
    let mut idx = [None; 9];
    for (slot, name) in idx.iter_mut().zip(COLUMNS) {
        *slot = super::find_column(&norm, &[normalize_header(name).as_str()], true)
            .map_err(|(i, j)| data_err(1, None, super::ambiguous_columns(&fields, i, j)))?;
    }
    for r in REQUIRED {
        let i = COLUMNS.iter().position(|c| *c == r).unwrap_or(0);
        if idx[i].is_none() {
            return Err(data_err(
                1,
                Some(r.to_string()),
                format!(
                    "required column is missing; expected header: {}",
                    COLUMNS.join(",")
                ),
            ));
        }
    }
    // porledger's own file: a column it does not know is refused, since a
    // misspelt one (`valid_until`, `shares`) would be ignored and its rows
    // credited without their end, share or subscription. A column without a
    // name (a trailing delimiter) holds nothing to misspell.
    if let Some(j) = (0..fields.len()).find(|&j| !norm[j].is_empty() && !idx.contains(&Some(j))) {
        return Err(data_err(
            1,
            Some(fields[j].trim_start_matches('\u{feff}').trim().to_string()),
            format!(
                "column {} is not a column of the designations file, whose columns are {} \
                 (any order; all but {} may be left out); a misspelt column would be ignored \
                 and its rows credited without it: rename the column or remove it",
                j + 1,
                COLUMNS.join(", "),
                REQUIRED.join(", ")
            ),
        ));
    }
    let mut out = Designations::default();
    let body = &bytes[byte_len..];
    let decimal_comma = delimiter == b';';
    super::records::for_each_text_row(body, next_line, delimiter, &fields, &mut |line, rec| {
        out.rows_read += 1;
        let res = match rec {
            Ok(rec) => {
                parse_row(rec, &idx, line, decimal_comma).map_err(|(c, v, r)| (c.to_string(), v, r))
            }
            Err(p) => Err((p.column, p.value, p.reason)),
        };
        match res {
            Ok(d) => out.rows.push(d),
            Err((column, value, reason)) => out.rejects.push(Reject {
                file: file.to_string(),
                line,
                column,
                value,
                reason,
            }),
        }
    });
    Ok(out)
}

type RowErr = (&'static str, String, String);

fn parse_row(
    rec: &csv::StringRecord,
    idx: &[Option<usize>; 9],
    line: u64,
    decimal_comma: bool,
) -> Result<Designation, RowErr> {
    let get = |i: usize| idx[i].and_then(|c| rec.get(c)).unwrap_or("").trim();
    let customer_id = get(0);
    if customer_id.is_empty() {
        return Err(("customer_id", String::new(), "customer ID is empty".into()));
    }
    let partner_id = get(1);
    if partner_id.is_empty() {
        return Err(("partner_id", String::new(), "partner ID is empty".into()));
    }
    for (i, column) in [
        (0, "customer_id"),
        (1, "partner_id"),
        (5, "subscription_id"),
    ] {
        if let Some(why) = super::id_problem(get(i)) {
            return Err((column, get(i).to_string(), why));
        }
    }
    for (i, column) in [(2, "partner_name"), (4, "workload")] {
        if let Some(why) = super::text_problem(get(i)) {
            return Err((column, get(i).to_string(), why));
        }
    }
    let assoc_raw = get(3);
    let association = match Association::parse(assoc_raw) {
        Some(a) if a.is_designated() => a,
        Some(a) => {
            return Err((
                "association",
                assoc_raw.into(),
                format!("{a} credit comes from the billing file, not from designations"),
            ))
        }
        None => {
            return Err((
                "association",
                assoc_raw.into(),
                "unknown association (expected POR, DPOR, CPOR or PAL)".into(),
            ))
        }
    };
    let share_raw = get(6);
    let share = if share_raw.is_empty() {
        None
    } else {
        // `;`-separated files come from Excel: decimal commas (0,5) or
        // points (0.5), as in billing files.
        let s = parse_amount(share_raw, decimal_comma).map_err(|e| {
            let what = e.reason(if decimal_comma {
                crate::money::semicolon_forms("not a decimal number", "0,5")
            } else {
                "not a decimal number".to_string()
            });
            ("share", share_raw.to_string(), what)
        })?;
        if s <= Decimal::ZERO || s > Decimal::ONE {
            return Err((
                "share",
                share_raw.into(),
                "share must be greater than 0 and at most 1".into(),
            ));
        }
        Some(s.normalize())
    };
    let date = |i: usize, col: &'static str| -> Result<Option<NaiveDate>, RowErr> {
        let raw = get(i);
        if raw.is_empty() {
            return Ok(None);
        }
        parse_date(raw).map(Some).map_err(|e| {
            (
                col,
                raw.to_string(),
                e.reason(raw, "YYYY-MM-DD or M/D/YYYY"),
            )
        })
    };
    let valid_from = date(7, "valid_from")?;
    let valid_to = date(8, "valid_to")?;
    if let (Some(f), Some(t)) = (valid_from, valid_to) {
        if t <= f {
            return Err((
                "valid_to",
                get(8).to_string(),
                format!("valid_to must be after valid_from ({f}); valid_to is exclusive"),
            ));
        }
    }
    let subscription_id = match get(5) {
        "" => None,
        s => Some(super::id_key(s)),
    };
    Ok(Designation {
        line,
        customer_id: super::id_key(customer_id),
        partner_id: partner_id.to_string(),
        partner_name: get(2).to_string(),
        association,
        workload: get(4).to_lowercase(),
        subscription_id,
        share,
        valid_from,
        valid_to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rows_and_rejects_bad_ones() {
        let text = "\u{feff}Customer_ID,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n\
            C1,500275,Contoso,dpor,,S1,,2024-01-01,\n\
            c2,500276,\"Fabrikam, Inc.\",PAL,,,0.5,1/1/2024,2025-01-01\n\
            c3,1,X,XPOR,,,,,\n\
            c4,1,X,PAL,,,1.5,,\n\
            c5,1,X,PAL,,,,2024-02-30,\n\
            c6,1,X,PAL,,,,2024-02-01,2024-02-01\n\
            c7,1,X,RESELLER,,,,,\n\
            ,1,X,PAL,,,,,\n\
            c9,1\n";
        let d = parse_designations("designations.csv", text.as_bytes()).unwrap();
        assert_eq!(d.rows_read, 9);
        assert_eq!(d.rows.len(), 2);
        assert_eq!(d.rows[0].customer_id, "c1");
        assert_eq!(d.rows[0].association, Association::Dpor);
        assert_eq!(d.rows[0].subscription_id.as_deref(), Some("s1"));
        assert_eq!(d.rows[1].partner_name, "Fabrikam, Inc.");
        assert_eq!(d.rows[1].line, 3);
        let cols: Vec<(u64, &str)> = d
            .rejects
            .iter()
            .map(|r| (r.line, r.column.as_str()))
            .collect();
        assert_eq!(
            cols,
            vec![
                (4, "association"),
                (5, "share"),
                (6, "valid_from"),
                (7, "valid_to"),
                (8, "association"),
                (9, "customer_id"),
                (10, "(row)")
            ]
        );
    }

    /// A column the file does not have (a misspelt `valid_until`, `shares`,
    /// `subscription`) is refused, naming it; a column without a name (a
    /// trailing delimiter) is not.
    #[test]
    fn an_unknown_column_is_fatal_naming_it() {
        for (header, column) in [
            (
                "customer_id,partner_id,association,valid_until",
                "valid_until",
            ),
            ("customer_id,partner_id,association,shares", "shares"),
            (
                "subscription,customer_id,partner_id,association",
                "subscription",
            ),
        ] {
            let text = format!("{header}\nc,1,POR,x\n");
            let e = parse_designations("d.csv", text.as_bytes()).unwrap_err();
            let m = e.to_string();
            assert!(m.contains(&format!("d.csv:1 column '{column}'")), "{m}");
            assert!(m.contains("not a column of the designations file"), "{m}");
        }
        let d = parse_designations("d.csv", b"customer_id,partner_id,association,\nc,1,POR,\n")
            .unwrap();
        assert_eq!((d.rows.len(), d.rejects.len()), (1, 0));
    }

    #[test]
    fn missing_required_column_is_fatal() {
        let e = parse_designations("d.csv", b"customer_id,partner\nc,1\n").unwrap_err();
        assert!(e.to_string().contains("d.csv:1 column 'partner_id'"), "{e}");
    }
}
