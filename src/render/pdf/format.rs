//! Locale formatting of numbers, amounts, percentages and dates.
//!
//! Only the *presentation* differs per locale: the digits come from the
//! statement model (amounts already rounded by [`crate::money::round_money`]),
//! via [`format_exact`], the same function the CSV renderer uses, so a PDF
//! amount and its CSV amount are the same number to the cent.

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};

use super::template::FormatSpec;
use crate::money::{format_exact, format_exact_dp, Currency};

/// Fills `{name}` placeholders; unknown placeholders are left as written.
pub fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find('}') {
            Some(j) => {
                let key = &after[..j];
                match vars.iter().find(|(k, _)| *k == key) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(key);
                        out.push('}');
                    }
                }
                rest = &after[j + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Number, amount and date formatting of one locale.
#[derive(Debug, Clone)]
pub struct Formatter {
    spec: FormatSpec,
}

impl Formatter {
    pub fn new(spec: FormatSpec) -> Formatter {
        Formatter { spec }
    }

    /// A plain decimal string (`-1234.5600`) with the locale's grouping and
    /// decimal separator (`-1.234,5600`). Digits are never changed.
    pub fn digits(&self, plain: &str) -> String {
        let (sign, body) = match plain.strip_prefix('-') {
            Some(b) => ("-", b),
            None => ("", plain),
        };
        let (int, frac) = match body.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (body, None),
        };
        let mut out = String::with_capacity(plain.len() + 8);
        out.push_str(sign);
        let n = int.len();
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (n - i) % 3 == 0 {
                out.push_str(&self.spec.group_separator);
            }
            out.push(c);
        }
        if let Some(f) = frac {
            out.push_str(&self.spec.decimal_separator);
            out.push_str(f);
        }
        out
    }

    /// An amount of a currency, e.g. `1.234,56 €` or `€1,234.56`; a negative
    /// amount gets its sign in front of the whole (`-€1.00`, `-1,00 €`).
    pub fn amount(&self, d: Decimal, c: Currency) -> String {
        let plain = format_exact(d, c);
        let (neg, abs) = match plain.strip_prefix('-') {
            Some(a) => (true, a.to_string()),
            None => (false, plain),
        };
        let num = self.digits(&abs);
        let s = match self.spec.currency_symbols.get(c.as_str()) {
            Some(sym) => fill(
                &self.spec.amount,
                &[("amount", &num), ("symbol", sym), ("code", c.as_str())],
            ),
            None => fill(
                &self.spec.amount_without_symbol,
                &[
                    ("amount", &num),
                    ("symbol", c.as_str()),
                    ("code", c.as_str()),
                ],
            ),
        };
        if neg {
            format!("-{s}")
        } else {
            s
        }
    }

    /// A rate or share as a percentage: `0.04` -> `4 %` / `4%`, `0.125` -> `12,5 %`.
    pub fn percent(&self, d: Decimal) -> String {
        let v = format_exact_dp(d * Decimal::ONE_HUNDRED, 0);
        fill(&self.spec.percent, &[("value", &self.digits(&v))])
    }

    /// A ratio rounded for people: two decimals of a percent, half away from
    /// zero (`0.516666…` -> `51.67 %` / `51.67%`). Display only: the CSV keeps
    /// the exact value, and a ratio is not money (no `round_money`).
    pub fn ratio_rounded(&self, d: Decimal) -> String {
        let mut p = (d * Decimal::ONE_HUNDRED)
            .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
        p.rescale(2);
        if p.is_zero() {
            p.set_sign_positive(true);
        }
        fill(
            &self.spec.percent,
            &[("value", &self.digits(&p.to_string()))],
        )
    }

    /// A decimal count (usage units, active users) with grouping; exact, no
    /// trailing zeros (`22.00` -> `22`, `1234.5` -> `1,234.5`).
    pub fn units(&self, d: Decimal) -> String {
        self.digits(&format_exact_dp(d, 0))
    }

    pub fn date(&self, d: NaiveDate) -> String {
        // The format was checked when the template was loaded.
        d.format(&self.spec.date).to_string()
    }

    /// An integer count with grouping.
    pub fn count(&self, n: u64) -> String {
        self.digits(&n.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn de() -> Formatter {
        Formatter::new(FormatSpec {
            decimal_separator: ",".into(),
            group_separator: ".".into(),
            date: "%d.%m.%Y".into(),
            amount: "{amount} {symbol}".into(),
            amount_without_symbol: "{amount} {code}".into(),
            percent: "{value} %".into(),
            currency_symbols: BTreeMap::from([("EUR".to_string(), "€".to_string())]),
        })
    }

    fn en() -> Formatter {
        Formatter::new(FormatSpec {
            decimal_separator: ".".into(),
            group_separator: ",".into(),
            date: "%Y-%m-%d".into(),
            amount: "{symbol}{amount}".into(),
            amount_without_symbol: "{code} {amount}".into(),
            percent: "{value}%".into(),
            currency_symbols: BTreeMap::from([("EUR".to_string(), "€".to_string())]),
        })
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    #[test]
    fn amounts_per_locale() {
        let eur = Currency::parse("EUR").unwrap();
        let usd = Currency::parse("USD").unwrap();
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(de().amount(d("1234.56"), eur), "1.234,56 €");
        assert_eq!(en().amount(d("1234.56"), eur), "€1,234.56");
        assert_eq!(en().amount(d("1234567.5"), usd), "USD 1,234,567.50");
        assert_eq!(de().amount(d("-0.40"), eur), "-0,40 €");
        assert_eq!(en().amount(d("-12"), eur), "-€12.00");
        assert_eq!(de().amount(d("1000"), jpy), "1.000 JPY");
        assert_eq!(de().amount(d("0"), eur), "0,00 €");
    }

    #[test]
    fn percent_and_dates() {
        assert_eq!(de().percent(d("0.04")), "4 %");
        assert_eq!(en().percent(d("0.125")), "12.5%");
        assert_eq!(de().percent(d("1.0")), "100 %");
        let day = NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        assert_eq!(de().date(day), "24.11.2026");
        assert_eq!(en().date(day), "2026-11-24");
        assert_eq!(de().count(1234567), "1.234.567");
    }

    #[test]
    fn ratios_for_people_and_units() {
        let a = d("0.5166666666666666666666666667");
        assert_eq!(de().ratio_rounded(a), "51,67 %");
        assert_eq!(en().ratio_rounded(a), "51.67%");
        assert_eq!(en().ratio_rounded(d("0.76")), "76.00%");
        assert_eq!(en().ratio_rounded(d("0.000049")), "0.00%");
        assert_eq!(de().ratio_rounded(d("0.00005")), "0,01 %");
        assert_eq!(de().units(d("22.00")), "22");
        assert_eq!(en().units(d("1234.50")), "1,234.5");
    }

    #[test]
    fn placeholders() {
        assert_eq!(fill("a {x} b {y} {z", &[("x", "1")]), "a 1 b {y} {z");
    }
}
