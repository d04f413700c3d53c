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
        Currency::parse(&s).ok_or_else(|| format!("'{s}' is not an ISO 4217 currency code"))
    }
}

/// ISO 4217 list one (current funds and currencies) with their minor units,
/// sorted by code. Source: the ISO 4217 maintenance agency's list one (SIX
/// Group, `list-one.xml`), as amended to 2025 (ZWG added 2024, XCG 2025; ANG
/// kept while it circulates; HRK, SLL, CUC withdrawn). Codes without a
/// minor unit (XAU gold, XDR, XTS testing, XXX "no currency", ...) are left
/// out: they are not money a partner is billed in.
const ISO_4217: [([u8; 3], u8); 166] = [
    (*b"AED", 2),
    (*b"AFN", 2),
    (*b"ALL", 2),
    (*b"AMD", 2),
    (*b"ANG", 2),
    (*b"AOA", 2),
    (*b"ARS", 2),
    (*b"AUD", 2),
    (*b"AWG", 2),
    (*b"AZN", 2),
    (*b"BAM", 2),
    (*b"BBD", 2),
    (*b"BDT", 2),
    (*b"BGN", 2),
    (*b"BHD", 3),
    (*b"BIF", 0),
    (*b"BMD", 2),
    (*b"BND", 2),
    (*b"BOB", 2),
    (*b"BOV", 2),
    (*b"BRL", 2),
    (*b"BSD", 2),
    (*b"BTN", 2),
    (*b"BWP", 2),
    (*b"BYN", 2),
    (*b"BZD", 2),
    (*b"CAD", 2),
    (*b"CDF", 2),
    (*b"CHE", 2),
    (*b"CHF", 2),
    (*b"CHW", 2),
    (*b"CLF", 4),
    (*b"CLP", 0),
    (*b"CNY", 2),
    (*b"COP", 2),
    (*b"COU", 2),
    (*b"CRC", 2),
    (*b"CUP", 2),
    (*b"CVE", 2),
    (*b"CZK", 2),
    (*b"DJF", 0),
    (*b"DKK", 2),
    (*b"DOP", 2),
    (*b"DZD", 2),
    (*b"EGP", 2),
    (*b"ERN", 2),
    (*b"ETB", 2),
    (*b"EUR", 2),
    (*b"FJD", 2),
    (*b"FKP", 2),
    (*b"GBP", 2),
    (*b"GEL", 2),
    (*b"GHS", 2),
    (*b"GIP", 2),
    (*b"GMD", 2),
    (*b"GNF", 0),
    (*b"GTQ", 2),
    (*b"GYD", 2),
    (*b"HKD", 2),
    (*b"HNL", 2),
    (*b"HTG", 2),
    (*b"HUF", 2),
    (*b"IDR", 2),
    (*b"ILS", 2),
    (*b"INR", 2),
    (*b"IQD", 3),
    (*b"IRR", 2),
    (*b"ISK", 0),
    (*b"JMD", 2),
    (*b"JOD", 3),
    (*b"JPY", 0),
    (*b"KES", 2),
    (*b"KGS", 2),
    (*b"KHR", 2),
    (*b"KMF", 0),
    (*b"KPW", 2),
    (*b"KRW", 0),
    (*b"KWD", 3),
    (*b"KYD", 2),
    (*b"KZT", 2),
    (*b"LAK", 2),
    (*b"LBP", 2),
    (*b"LKR", 2),
    (*b"LRD", 2),
    (*b"LSL", 2),
    (*b"LYD", 3),
    (*b"MAD", 2),
    (*b"MDL", 2),
    (*b"MGA", 2),
    (*b"MKD", 2),
    (*b"MMK", 2),
    (*b"MNT", 2),
    (*b"MOP", 2),
    (*b"MRU", 2),
    (*b"MUR", 2),
    (*b"MVR", 2),
    (*b"MWK", 2),
    (*b"MXN", 2),
    (*b"MXV", 2),
    (*b"MYR", 2),
    (*b"MZN", 2),
    (*b"NAD", 2),
    (*b"NGN", 2),
    (*b"NIO", 2),
    (*b"NOK", 2),
    (*b"NPR", 2),
    (*b"NZD", 2),
    (*b"OMR", 3),
    (*b"PAB", 2),
    (*b"PEN", 2),
    (*b"PGK", 2),
    (*b"PHP", 2),
    (*b"PKR", 2),
    (*b"PLN", 2),
    (*b"PYG", 0),
    (*b"QAR", 2),
    (*b"RON", 2),
    (*b"RSD", 2),
    (*b"RUB", 2),
    (*b"RWF", 0),
    (*b"SAR", 2),
    (*b"SBD", 2),
    (*b"SCR", 2),
    (*b"SDG", 2),
    (*b"SEK", 2),
    (*b"SGD", 2),
    (*b"SHP", 2),
    (*b"SLE", 2),
    (*b"SOS", 2),
    (*b"SRD", 2),
    (*b"SSP", 2),
    (*b"STN", 2),
    (*b"SVC", 2),
    (*b"SYP", 2),
    (*b"SZL", 2),
    (*b"THB", 2),
    (*b"TJS", 2),
    (*b"TMT", 2),
    (*b"TND", 3),
    (*b"TOP", 2),
    (*b"TRY", 2),
    (*b"TTD", 2),
    (*b"TWD", 2),
    (*b"TZS", 2),
    (*b"UAH", 2),
    (*b"UGX", 0),
    (*b"USD", 2),
    (*b"USN", 2),
    (*b"UYI", 0),
    (*b"UYU", 2),
    (*b"UYW", 4),
    (*b"UZS", 2),
    (*b"VED", 2),
    (*b"VES", 2),
    (*b"VND", 0),
    (*b"VUV", 0),
    (*b"WST", 2),
    (*b"XAF", 0),
    (*b"XCD", 2),
    (*b"XCG", 2),
    (*b"XOF", 0),
    (*b"XPF", 0),
    (*b"YER", 2),
    (*b"ZAR", 2),
    (*b"ZMW", 2),
    (*b"ZWG", 2),
];

/// [`MINOR_UNITS`] of a three-letter code that is no currency.
const NO_CURRENCY: u8 = u8::MAX;

/// The position of an upper-case three-letter code in [`MINOR_UNITS`].
const fn code_index(code: [u8; 3]) -> Option<usize> {
    let (a, b, c) = (code[0], code[1], code[2]);
    if a.is_ascii_uppercase() && b.is_ascii_uppercase() && c.is_ascii_uppercase() {
        Some(((a - b'A') as usize * 26 + (b - b'A') as usize) * 26 + (c - b'A') as usize)
    } else {
        None
    }
}

/// [`ISO_4217`] as a table indexed by [`code_index`]: the minor units of
/// every code, [`NO_CURRENCY`] elsewhere (17.6 kB, built at compile time).
static MINOR_UNITS: [u8; 26 * 26 * 26] = {
    let mut t = [NO_CURRENCY; 26 * 26 * 26];
    let mut i = 0;
    while i < ISO_4217.len() {
        let (code, minor) = ISO_4217[i];
        match code_index(code) {
            Some(k) => t[k] = minor,
            None => panic!("ISO_4217 holds upper-case codes only"),
        }
        i += 1;
    }
    t
};

impl Currency {
    /// Parses an ISO 4217 currency code, case-insensitively. Returns `None` for
    /// anything else, including three letters that are no currency (`EUT`, `XXX`).
    pub fn parse(s: &str) -> Option<Currency> {
        let b = s.trim().as_bytes();
        if b.len() != 3 {
            return None;
        }
        let code = [
            b[0].to_ascii_uppercase(),
            b[1].to_ascii_uppercase(),
            b[2].to_ascii_uppercase(),
        ];
        Self::lookup(code).map(|_| Currency(code))
    }

    /// The minor units of an upper-case code, or `None` when it names no
    /// currency: one load from [`MINOR_UNITS`] (this runs for every billing
    /// line and twice for every ledger row; a binary search of the table was
    /// ~2 % of a run's CPU).
    fn lookup(code: [u8; 3]) -> Option<u8> {
        let m = MINOR_UNITS[code_index(code)?];
        (m != NO_CURRENCY).then_some(m)
    }

    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII letters.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// The code as a number that orders as the code does (`EUR` < `USD`
    /// here as there): for keys compared as a few integers.
    pub fn ordinal(self) -> u32 {
        u32::from_be_bytes([0, self.0[0], self.0[1], self.0[2]])
    }

    /// Digits after the decimal point of the currency's minor unit (ISO 4217).
    pub fn minor_units(&self) -> u32 {
        // Every Currency is in the table (see `parse`).
        Self::lookup(self.0).unwrap_or(2) as u32
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
    Exact(amount, min_dp).to_string()
}

/// [`format_exact_dp`] as a `Display` (written in place, nothing allocated):
/// the amount and the minimum number of decimals.
#[derive(Clone, Copy, Debug)]
pub struct Exact(pub Decimal, pub u32);

impl Exact {
    /// An exact amount of `currency`, as [`format_exact`] writes it.
    pub fn of(amount: Decimal, currency: Currency) -> Exact {
        Exact(amount, currency.minor_units())
    }
}

impl std::fmt::Display for Exact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut n = self.0.normalize();
        if n.scale() < self.1 {
            n.rescale(self.1);
        }
        if n.is_zero() {
            n.set_sign_positive(true);
        }
        std::fmt::Display::fmt(&n, f)
    }
}

/// Why a sum failed [`ExactArith`], for a message.
pub const INEXACT_SUM: &str = "the sum does not fit a decimal exactly (it would be beyond about \
     7.9e28, or need more than 28 significant digits, and be rounded)";

/// Addition and subtraction of amounts that are exact or fail.
///
/// `Decimal::checked_add` fails only beyond the decimal range: a sum whose
/// digits do not all fit (`79228162514264337593543950000 + 0.40`) it rounds
/// to the digits that do, without a word, and a total built of such steps
/// loses every small term after a large one. These return `None` there
/// too, so that a caller names what cannot be summed instead of showing a
/// rounded total as exact. Every sum of input-derived amounts outside the
/// fold's exact sums ([`crate::fold::ExactSum`]) goes through here.
pub trait ExactArith: Sized {
    /// `self + o`, or `None` when it is out of range or would be rounded.
    fn exact_add(self, o: Self) -> Option<Self>;
    /// `self - o`, or `None` when it is out of range or would be rounded.
    fn exact_sub(self, o: Self) -> Option<Self>;
}

impl ExactArith for Decimal {
    #[inline]
    fn exact_add(self, o: Decimal) -> Option<Decimal> {
        let sum = self.checked_add(o)?;
        // Decimal aligns both terms to the larger scale and, when the sum
        // does not fit there, drops digits (rounding) and lowers the scale.
        // A zero term gives the other one as it is, at its own scale.
        let exact = self.is_zero() || o.is_zero() || sum.scale() >= self.scale().max(o.scale());
        exact.then_some(sum)
    }

    #[inline]
    fn exact_sub(self, o: Decimal) -> Option<Decimal> {
        self.exact_add(-o)
    }
}

/// Error of [`parse_amount`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmountError {
    /// Not a number in the accepted forms.
    Invalid,
    /// In a `;`-separated file, one `.` followed by three digits (`1.234`):
    /// a thousands separator (1234, German) or a decimal point (1.234,
    /// Swiss), which the value alone cannot tell.
    Ambiguous,
    /// A number in an accepted form with more digits than a `Decimal`
    /// holds exactly (28 or 29 significant digits, at most 28 decimals).
    Inexact,
}

/// The reason given for [`AmountError::Inexact`].
pub const INEXACT_NUMBER: &str = "more digits than porledger computes with exactly (28 or 29 \
     significant digits, at most 28 decimals): it would be rounded, so it is refused";

impl AmountError {
    /// The reason a reject gives for the refused value: `invalid` (what the
    /// column expects) for a value that is no number, the two readings of
    /// [`AMBIGUOUS_IN_SEMICOLON_FILE`] for an ambiguous one. Every input's
    /// numbers are explained through here, so the wording stays one.
    pub fn reason(self, invalid: impl Into<String>) -> String {
        match self {
            AmountError::Invalid => invalid.into(),
            AmountError::Ambiguous => AMBIGUOUS_IN_SEMICOLON_FILE.to_string(),
            AmountError::Inexact => INEXACT_NUMBER.to_string(),
        }
    }
}

/// The reason to give for a value of a `;`-separated file refused as
/// [`AmountError::Ambiguous`].
pub const AMBIGUOUS_IN_SEMICOLON_FILE: &str = "ambiguous in a ';'-separated file: the '.' \
     may group thousands (1.234 = 1234) or be a decimal point (1.234); write 1234 or \
     1.234,00 for the one, 1,234 for the other";

/// What a `;`-separated file may write, for a message: `what` (`"not an
/// amount"`) and `example` (`"1.234,56"`) in both forms.
pub fn semicolon_forms(what: &str, example: &str) -> String {
    let point = example.replace('.', "").replace(',', ".");
    format!(
        "{what} (this ';'-separated file may write {example}, a decimal comma and '.' \
         grouping thousands, or {point}, a decimal point and no grouping)"
    )
}

/// Parses a decimal amount as written in billing exports.
///
/// Accepts an optional sign, digits, one decimal separator and an optional exponent
/// (`1E-05`, seen in usage exports). Without `decimal_comma`, `.` is the decimal
/// separator and no thousands separator is accepted, so `1,234` is an error rather
/// than a silently wrong number. With `decimal_comma` (a `;`-separated file, as
/// Excel writes it with German or Swiss settings) a value is a decimal comma with
/// `.` grouping thousands (`1.234,56`) or a decimal point without grouping
/// (`1234.56`), and one that fits both (`1.234`) is [`AmountError::Ambiguous`].
pub fn parse_amount(s: &str, decimal_comma: bool) -> Result<Decimal, AmountError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(AmountError::Invalid);
    }
    if decimal_comma {
        return parse_semicolon(t);
    }
    parse_plain(t)
}

/// A number of a `;`-separated file. Excel with German settings writes a
/// decimal comma and groups thousands with `.` (`1.234,56`); with Swiss
/// settings it writes a decimal point and no grouping (`1234.56`). A value
/// with a `,` is the first form, its `.`s only between groups of three
/// digits (`1.234.567,8`); a value with two or more `.` and no `,` groups
/// thousands (`1.234.567`); one `.` followed by anything but three digits
/// is a decimal point (`1234.56`, `1.0833`, `0.5`). One `.` followed by
/// exactly three digits after a first group of one to three digits not
/// starting with 0 (`1.234`) is either: [`AmountError::Ambiguous`], never a
/// guess (read the wrong way, it is 1000 times too large or too small).
fn parse_semicolon(t: &str) -> Result<Decimal, AmountError> {
    let (body, exp) = t.split_at(t.find(['e', 'E']).unwrap_or(t.len()));
    let unsigned = body.strip_prefix(['+', '-']).unwrap_or(body);
    let sign = &body[..body.len() - unsigned.len()];
    let (int, frac) = match unsigned.split_once(',') {
        Some((int, frac)) => (int, Some(frac)),
        None => (unsigned, None),
    };
    let dots = int.matches('.').count();
    let grouped = || {
        let mut groups = int.split('.');
        let first = groups.next().unwrap_or("");
        (1..=3).contains(&first.len())
            && !first.starts_with('0')
            && first.bytes().all(|b| b.is_ascii_digit())
            && groups.all(|g| g.len() == 3 && g.bytes().all(|b| b.is_ascii_digit()))
    };
    match (frac, dots) {
        // Decimal comma, thousands grouped (or not).
        (Some(frac), 0) => parse_plain(&format!("{sign}{int}.{frac}{exp}")),
        (Some(frac), _) if grouped() => {
            parse_plain(&format!("{sign}{}.{frac}{exp}", int.replace('.', "")))
        }
        (Some(_), _) => Err(AmountError::Invalid),
        // Neither.
        (None, 0) => parse_plain(t),
        (None, 1) if grouped() => Err(AmountError::Ambiguous),
        // A decimal point.
        (None, 1) => parse_plain(t),
        // Thousands grouped, no fraction.
        (None, _) if grouped() => parse_plain(&format!("{sign}{}{exp}", int.replace('.', ""))),
        (None, _) => Err(AmountError::Invalid),
    }
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
            _ => return Err(AmountError::Invalid),
        }
        i += 1;
    }
    if digits == 0 || dots > 1 {
        return Err(AmountError::Invalid);
    }
    match exp_at {
        None => exact(t),
        Some(e) => {
            let exp = &t[e + 1..];
            let exp_ok = !exp.is_empty()
                && exp
                    .trim_start_matches(['+', '-'])
                    .bytes()
                    .all(|c| c.is_ascii_digit())
                && exp.trim_start_matches(['+', '-']).len() <= 2;
            if !exp_ok {
                return Err(AmountError::Invalid);
            }
            let exp: i32 = exp.parse().map_err(|_| AmountError::Invalid)?;
            exact(&without_exponent(&t[..e], exp))
        }
    }
}

/// `t` (sign, digits, at most one `.`) as a `Decimal`, exactly: a number
/// with more digits than a `Decimal` holds (28 or 29 significant digits, at
/// most 28 decimals) is an error, never rounded. Zeros ending the fraction
/// beyond that are dropped: they change no value.
fn exact(t: &str) -> Result<Decimal, AmountError> {
    match Decimal::from_str_exact(t) {
        Ok(d) => Ok(d),
        Err(_) if t.contains('.') && t.ends_with('0') => {
            let short = t.trim_end_matches('0').trim_end_matches('.');
            if short.bytes().any(|b| b.is_ascii_digit()) {
                Decimal::from_str_exact(short).map_err(|_| AmountError::Inexact)
            } else {
                Ok(Decimal::ZERO)
            }
        }
        // `t` is digits with a sign and at most one point: it failed for
        // its digits.
        Err(_) => Err(AmountError::Inexact),
    }
}

/// The mantissa `m` (sign, digits, at most one `.`) times 10^`exp`, written
/// without an exponent (`1.5`, 3 -> `1500`; `7.1`, -5 -> `0.000071`), so that
/// [`exact`] reads it.
fn without_exponent(m: &str, exp: i32) -> String {
    let (sign, m) = match m.as_bytes().first() {
        Some(b'-') => ("-", &m[1..]),
        Some(b'+') => ("", &m[1..]),
        _ => ("", m),
    };
    let (int, frac) = m.split_once('.').unwrap_or((m, ""));
    let digits: String = [int, frac].concat();
    // Where the point goes, counted in digits from the left.
    let point = int.len() as i64 + i64::from(exp);
    let mut out = String::with_capacity(digits.len() + exp.unsigned_abs() as usize + 3);
    out.push_str(sign);
    if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(&digits);
    } else if point as usize >= digits.len() {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', point as usize - digits.len()));
    } else {
        out.push_str(&digits[..point as usize]);
        out.push('.');
        out.push_str(&digits[point as usize..]);
    }
    out
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

    /// A sum whose digits do not all fit is refused, not rounded: small
    /// terms after a large one are never lost.
    #[test]
    fn exact_sums_refuse_what_decimal_would_round() {
        let big = d("79228162514264337593543950000");
        assert_eq!(big.exact_add(d("0.40")), None);
        assert_eq!(big.exact_sub(d("-0.40")), None);
        assert_eq!(
            big.exact_add(d("4")),
            Some(d("79228162514264337593543950004"))
        );
        assert_eq!(big.exact_add(big), None);
        assert_eq!(d("1.50").exact_add(d("1.5")), Some(d("3.00")));
        assert_eq!(d("0.1").exact_sub(d("0.30")), Some(d("-0.20")));
        assert_eq!(d("0").exact_add(d("0.000000")), Some(d("0.000000")));
        assert_eq!(d("0.000000").exact_add(d("0.00")), Some(d("0.000000")));
        let tiny = d("0.0000000000000000000000000001");
        assert_eq!(
            tiny.exact_add(d("1")),
            Some(d("1.0000000000000000000000000001"))
        );
        assert_eq!(tiny.exact_add(d("10")), None);
        // What Decimal itself does: rounds without a word.
        assert_eq!(big.checked_add(d("0.40")), Some(big));
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

    /// A number in an accepted form that a decimal cannot hold exactly is
    /// refused for its digits, not as "not a number".
    #[test]
    fn numbers_with_too_many_digits_say_so() {
        for t in [
            "0.00000000000000000000000000001",
            "100000000000000000000000000000",
            "1.00000000000000000000000000001",
            "1E+99",
            "-7.1E-29",
        ] {
            assert_eq!(parse_amount(t, false), Err(AmountError::Inexact), "{t}");
        }
        assert_eq!(
            parse_amount("1,0000000000000000000000000000001", true),
            Err(AmountError::Inexact)
        );
        for t in ["abc", "1.2.3", "1,234", ".", "-", "1e", "1E+999"] {
            assert_eq!(parse_amount(t, false), Err(AmountError::Invalid), "{t}");
        }
        assert!(AmountError::Inexact
            .reason("x")
            .starts_with("more digits than porledger computes with exactly"));
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

    /// A `;`-separated file's numbers: a decimal comma with `.` grouping
    /// thousands, or a decimal point without grouping; a value either could
    /// be is refused as ambiguous, a `.` in any other place as invalid.
    #[test]
    fn semicolon_file_numbers_are_read_one_way_or_refused() {
        for (text, value) in [
            ("1.234,56", "1234.56"),
            ("-1.234.567,8", "-1234567.8"),
            ("1234,56", "1234.56"),
            ("+0,5", "0.5"),
            ("1234.56", "1234.56"),
            ("-1.5", "-1.5"),
            ("1.0833", "1.0833"),
            ("0.333", "0.333"),
            ("40.50", "40.50"),
            ("1.234.567", "1234567"),
            ("1234", "1234"),
            ("1,5E-05", "0.000015"),
            ("1.5E-05", "0.000015"),
        ] {
            assert_eq!(parse_amount(text, true), Ok(d(value)), "{text}");
        }
        for text in ["1.234", "-12.500", "999.999", "1.234E2"] {
            assert_eq!(
                parse_amount(text, true),
                Err(AmountError::Ambiguous),
                "{text}"
            );
        }
        for text in [
            "12.34.567",
            "1.23,4",
            "1234.567,8",
            "0.123,4",
            "1,234.56",
            "1,2,3",
            ".5.5",
            "1..2",
            "1.2.3",
            "",
            "-",
            "1.234.5",
        ] {
            assert_eq!(
                parse_amount(text, true),
                Err(AmountError::Invalid),
                "{text}"
            );
        }
    }

    /// An amount with more digits than a Decimal holds is an error, never
    /// a rounded number; zeros ending the fraction change nothing.
    #[test]
    fn amounts_are_read_exactly_or_not_at_all() {
        for bad in [
            "2000.000000000000000000000000001",
            "0.00000000000000000000000000001",
            "12345678901234567890123456789.1",
            "7922816251426433759354395033.55",
            "79228162514264337593543950336",
            "1.00000000000000000000000000001E1",
            "1E-29",
            "2.5E-28",
        ] {
            assert!(parse_amount(bad, false).is_err(), "{bad}");
        }
        for (text, value) in [
            ("2000.0000000000000000000000000000", "2000"),
            (
                "79228162514264337593543950335.0",
                "79228162514264337593543950335",
            ),
            ("0.00000000000000000000000000000", "0"),
            ("-.000000000000000000000000000000", "0"),
            (
                "2000.0000000000000000000000001",
                "2000.0000000000000000000000001",
            ),
            ("1E-28", "0.0000000000000000000000000001"),
            ("7.10833E-05", "0.0000710833"),
            ("-1.5e3", "-1500"),
            ("+1.50E+2", "150"),
            (".5E1", "5"),
            ("12.34e0", "12.34"),
            ("1.2E10", "12000000000"),
        ] {
            assert_eq!(parse_amount(text, false), Ok(d(value)), "{text}");
        }
        // The scale of a plain amount is kept (a ledger shows it as given).
        assert_eq!(parse_amount("2000.00", false).unwrap().scale(), 2);
        assert_eq!(parse_amount("7.10833E-05", false).unwrap().scale(), 10);
    }

    #[test]
    fn iso_4217_codes_and_minor_units() {
        for bad in ["EUT", "ABC", "XXX", "XTS", "XAU", "EU", "EURO", "E1R", ""] {
            assert_eq!(Currency::parse(bad), None, "{bad}");
        }
        for (code, dp) in [
            ("eur", 2),
            ("USD", 2),
            ("JPY", 0),
            ("KRW", 0),
            ("ISK", 0),
            ("CLP", 0),
            ("KWD", 3),
            ("BHD", 3),
            ("TND", 3),
            ("CLF", 4),
            ("UYW", 4),
            ("CHF", 2),
        ] {
            assert_eq!(Currency::parse(code).unwrap().minor_units(), dp, "{code}");
        }
        assert!(ISO_4217.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn exact_format() {
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(format_exact(d("1.5000"), eur), "1.50");
        assert_eq!(format_exact(d("0.0123400"), eur), "0.01234");
        assert_eq!(format_exact(d("-0.000"), eur), "0.00");
    }
}
