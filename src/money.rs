//! Money: exact decimals, currencies and the one rounding function.
//!
//! Every amount in porledger is a [`rust_decimal::Decimal`]. Amounts of different
//! currencies are never added: every aggregate is keyed by [`Currency`]. Rounding
//! happens in exactly one place, [`round_money`], used by every renderer.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// An ISO 4217 currency code, stored as three upper-case ASCII letters.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Currency([u8; 3]);

impl TryFrom<String> for Currency {
    type Error = String;
    fn try_from(s: String) -> Result<Currency, String> {
        Currency::parse(&s).ok_or_else(|| format!("'{s}' is not a three-letter currency code"))
    }
}

impl Currency {
    /// Parses a three-letter code, case-insensitively. Returns `None` for anything else.
    pub fn parse(s: &str) -> Option<Currency> {
        let b = s.trim().as_bytes();
        if b.len() != 3 || !b.iter().all(|c| c.is_ascii_alphabetic()) {
            return None;
        }
        Some(Currency([
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
            b[2].to_ascii_uppercase(),
        ]))
    }

    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// Digits after the decimal point of the currency's minor unit (ISO 4217).
    pub fn minor_units(&self) -> u32 {
        match self.as_str() {
            // Zero-decimal currencies that appear in Partner Center price lists.
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF"
            | "UGX" | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            // Three-decimal currencies.
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            _ => 2,
        }
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.as_str().to_string()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How statement amounts are rounded to the currency's minor unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum RoundingMode {
    /// Half away from zero: 0.125 -> 0.13, -0.125 -> -0.13 (commercial rounding).
    #[default]
    HalfUp,
    /// Banker's rounding: 0.125 -> 0.12, 0.135 -> 0.14.
    HalfEven,
    /// Towards zero, like Partner Center's ROUNDDOWN: 0.129 -> 0.12, -0.129 -> -0.12.
    Down,
}

impl RoundingMode {
    pub fn as_str(&self) -> &'static str {
        match self {
            RoundingMode::HalfUp => "half-up",
            RoundingMode::HalfEven => "half-even",
            RoundingMode::Down => "down",
        }
    }
}

impl FromStr for RoundingMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "half-up" => Ok(RoundingMode::HalfUp),
            "half-even" => Ok(RoundingMode::HalfEven),
            "down" => Ok(RoundingMode::Down),
            other => Err(format!(
                "unknown rounding mode '{other}' (expected half-up, half-even or down)"
            )),
        }
    }
}

/// The one rounding function: an exact amount to the currency's minor unit.
///
/// Statement lines (CSV and PDF alike) are produced by this function and nothing else.
pub fn round_money(amount: Decimal, currency: Currency, mode: RoundingMode) -> Decimal {
    let strategy = match mode {
        RoundingMode::HalfUp => RoundingStrategy::MidpointAwayFromZero,
        RoundingMode::HalfEven => RoundingStrategy::MidpointNearestEven,
        RoundingMode::Down => RoundingStrategy::ToZero,
    };
    let dp = currency.minor_units();
    let mut r = amount.round_dp_with_strategy(dp, strategy);
    r.rescale(dp);
    if r.is_zero() {
        // Never print "-0.00".
        r.set_sign_positive(true);
    }
    r
}

/// Formats an exact (unrounded) amount for machine-readable output: no trailing
/// zeros beyond what is needed, but at least the currency's minor unit digits.
pub fn format_exact(amount: Decimal, currency: Currency) -> String {
    format_exact_dp(amount, currency.minor_units())
}

/// Like [`format_exact`] with an explicit minimum number of decimals.
pub fn format_exact_dp(amount: Decimal, min_dp: u32) -> String {
    let mut n = amount.normalize();
    if n.scale() < min_dp {
        n.rescale(min_dp);
    }
    if n.is_zero() {
        n.set_sign_positive(true);
    }
    n.to_string()
}

/// Error of [`parse_amount`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmountError;

/// Parses a decimal amount as written in billing exports.
///
/// Accepts an optional sign, digits, one decimal separator and an optional exponent
/// (`1E-05`, seen in usage exports). With `decimal_comma` (files re-saved by a German
/// Excel, `;`-separated) `,` is the decimal separator and `.` a thousands separator;
/// otherwise `.` is the decimal separator and no thousands separator is accepted, so
/// `1,234` is an error rather than a silently wrong number.
pub fn parse_amount(s: &str, decimal_comma: bool) -> Result<Decimal, AmountError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(AmountError);
    }
    if decimal_comma {
        let mut buf = String::with_capacity(t.len());
        let mut seen_comma = false;
        for c in t.chars() {
            match c {
                '.' if !seen_comma => {}
                ',' if !seen_comma => {
                    seen_comma = true;
                    buf.push('.');
                }
                c => buf.push(c),
            }
        }
        return parse_plain(&buf);
    }
    parse_plain(t)
}

fn parse_plain(t: &str) -> Result<Decimal, AmountError> {
    let b = t.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
        i += 1;
    }
    let mut digits = 0;
    let mut dots = 0;
    let mut exp_at = None;
    while i < b.len() {
        match b[i] {
            b'0'..=b'9' => digits += 1,
            b'.' => dots += 1,
            b'e' | b'E' => {
                exp_at = Some(i);
                break;
            }
            _ => return Err(AmountError),
        }
        i += 1;
    }
    if digits == 0 || dots > 1 {
        return Err(AmountError);
    }
    match exp_at {
        None => Decimal::from_str(t).map_err(|_| AmountError),
        Some(e) => {
            let exp = &t[e + 1..];
            let exp_ok = !exp.is_empty()
                && exp
                    .trim_start_matches(['+', '-'])
                    .bytes()
                    .all(|c| c.is_ascii_digit())
                && exp.trim_start_matches(['+', '-']).len() <= 2;
            if !exp_ok {
                return Err(AmountError);
            }
            Decimal::from_scientific(t).map_err(|_| AmountError)
        }
    }
}

/// Parses a rate or share from configuration: a plain decimal string.
pub fn parse_rate(s: &str) -> Result<Decimal, AmountError> {
    parse_plain(s.trim())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal_macros_free::d;

    mod rust_decimal_macros_free {
        pub fn d(s: &str) -> rust_decimal::Decimal {
            s.parse().unwrap()
        }
    }

    #[test]
    fn rounding_modes() {
        let eur = Currency::parse("eur").unwrap();
        assert_eq!(
            round_money(d("0.125"), eur, RoundingMode::HalfUp),
            d("0.13")
        );
        assert_eq!(
            round_money(d("-0.125"), eur, RoundingMode::HalfUp),
            d("-0.13")
        );
        assert_eq!(
            round_money(d("0.125"), eur, RoundingMode::HalfEven),
            d("0.12")
        );
        assert_eq!(
            round_money(d("0.135"), eur, RoundingMode::HalfEven),
            d("0.14")
        );
        assert_eq!(round_money(d("0.129"), eur, RoundingMode::Down), d("0.12"));
        assert_eq!(
            round_money(d("-0.129"), eur, RoundingMode::Down),
            d("-0.12")
        );
        assert_eq!(
            round_money(d("-0.001"), eur, RoundingMode::HalfUp).to_string(),
            "0.00"
        );
        assert_eq!(
            round_money(d("7"), eur, RoundingMode::HalfUp).to_string(),
            "7.00"
        );
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(
            round_money(d("12.5"), jpy, RoundingMode::HalfUp).to_string(),
            "13"
        );
    }

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("-12.3400", false), Ok(d("-12.3400")));
        assert_eq!(parse_amount(" 5 ", false), Ok(d("5")));
        assert_eq!(parse_amount("1E-05", false), Ok(d("0.00001")));
        assert_eq!(parse_amount("1.234,56", true), Ok(d("1234.56")));
        assert_eq!(parse_amount("-0,5", true), Ok(d("-0.5")));
        for bad in [
            "", "abc", "1,234.00", "1.2.3", "--1", "12a", "1e", "NaN", "1e999",
        ] {
            assert!(parse_amount(bad, false).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_format() {
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(format_exact(d("1.5000"), eur), "1.50");
        assert_eq!(format_exact(d("0.0123400"), eur), "0.01234");
        assert_eq!(format_exact(d("-0.000"), eur), "0.00");
    }
}
