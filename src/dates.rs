//! Calendar dates as they appear in Partner Center files, and month arithmetic.
//!
//! Only the date part matters to porledger: charges, designations and rules are
//! dated by day. Accepted forms (the time part, if any, is checked and dropped):
//! `M/D/YYYY`, `M/D/YYYY H:MM[:SS] [AM|PM]`, `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM:SS[.fff][Z|±hh:mm]`
//! and `YYYY-MM-DD HH:MM:SS`.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};

/// The years a date may be in: Partner Center's dates are all in this era,
/// and a year outside it is a typo or a placeholder (`0001-01-01`,
/// `9999-12-31`: .NET's smallest and largest dates), not a day to accrue on.
pub const YEARS: std::ops::RangeInclusive<u32> = 1900..=2999;

/// Why a date did not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DateError {
    /// Not in any accepted form, or no such day (`2026-02-30`).
    Form,
    /// An existing day in an accepted form, but its year is outside [`YEARS`].
    OutOfRange,
}

impl DateError {
    /// The reject's reason for the date text `raw`; `expected` lists the forms
    /// the file's reader accepts (`YYYY-MM-DD or M/D/YYYY`).
    pub fn reason(&self, raw: &str, expected: &str) -> String {
        match self {
            DateError::Form => format!("not a date (expected {expected})"),
            DateError::OutOfRange => format!(
                "{} is outside the supported dates, {}-01-01 to {}-12-31: a year outside \
                 them is a typo or a placeholder such as 0001-01-01 or 9999-12-31, \
                 not a day to accrue on",
                crate::console::one_line(raw.trim()),
                YEARS.start(),
                YEARS.end()
            ),
        }
    }
}

/// Parses a date in one of the accepted forms.
pub fn parse_date(s: &str) -> Result<NaiveDate, DateError> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
        let y = num(&b[0..4])?;
        let m = num(&b[5..7])?;
        let d = num(&b[8..10])?;
        let rest = &s[10..];
        if !rest.is_empty() {
            let rest = rest.strip_prefix(['T', ' ']).ok_or(DateError::Form)?;
            check_iso_time(rest)?;
        }
        return ymd(y, m, d);
    }
    // M/D/YYYY with optional time. Two of these are parsed on every billing
    // line, so the date is read in one pass over its bytes (a `split('/')`
    // and `find(' ')` were ~4 % of `validate`).
    let (date_part, time_part) = match b.iter().position(|&c| c == b' ') {
        Some(i) => (&b[..i], Some(s[i + 1..].trim())),
        None => (b, None),
    };
    let (m, d, y) = us_date(date_part)?;
    if let Some(t) = time_part {
        check_us_time(t)?;
    }
    ymd(y, m, d)
}

/// `M/D/YYYY`: month and day of one or two digits, a year of four; only ASCII
/// digits and exactly two slashes.
fn us_date(b: &[u8]) -> Result<(u32, u32, u32), DateError> {
    const MAX_LEN: [usize; 3] = [2, 2, 4];
    let mut value = [0u32; 3];
    let mut len = [0usize; 3];
    let mut k = 0;
    for &c in b {
        if c == b'/' {
            k += 1;
            if k > 2 {
                return Err(DateError::Form);
            }
        } else if c.is_ascii_digit() && len[k] < MAX_LEN[k] {
            value[k] = value[k] * 10 + u32::from(c - b'0');
            len[k] += 1;
        } else {
            return Err(DateError::Form);
        }
    }
    if k != 2 || len[0] == 0 || len[1] == 0 || len[2] != 4 {
        return Err(DateError::Form);
    }
    Ok((value[0], value[1], value[2]))
}

fn num(b: &[u8]) -> Result<u32, DateError> {
    if b.is_empty() {
        return Err(DateError::Form);
    }
    let mut n: u32 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return Err(DateError::Form);
        }
        n = n * 10 + (c - b'0') as u32;
    }
    Ok(n)
}

fn ymd(y: u32, m: u32, d: u32) -> Result<NaiveDate, DateError> {
    // `y` has at most four digits, well within chrono's years.
    let date = NaiveDate::from_ymd_opt(y as i32, m, d).ok_or(DateError::Form)?;
    if !YEARS.contains(&y) {
        return Err(DateError::OutOfRange);
    }
    Ok(date)
}

fn check_hms(t: &str, max_hour: u32) -> Result<(), DateError> {
    let mut parts = t.split(':');
    let h = parts.next().ok_or(DateError::Form)?;
    let m = parts.next().ok_or(DateError::Form)?;
    let s = parts.next();
    if parts.next().is_some() || h.is_empty() || h.len() > 2 || m.len() != 2 {
        return Err(DateError::Form);
    }
    if num(h.as_bytes())? > max_hour || num(m.as_bytes())? > 59 {
        return Err(DateError::Form);
    }
    if let Some(s) = s {
        let (whole, frac) = match s.find('.') {
            Some(i) => (&s[..i], &s[i + 1..]),
            None => (s, "0"),
        };
        if whole.len() != 2 || num(whole.as_bytes())? > 60 {
            return Err(DateError::Form);
        }
        num(frac.as_bytes())?;
    }
    Ok(())
}

fn check_iso_time(t: &str) -> Result<(), DateError> {
    let t = t.strip_suffix('Z').unwrap_or(t);
    // Strip a numeric offset: +hh:mm or -hh:mm after the seconds.
    let t = match t.rfind(['+', '-']) {
        Some(i) if i >= 5 => {
            let off = &t[i + 1..];
            check_hms(off, 14)?;
            &t[..i]
        }
        _ => t,
    };
    check_hms(t, 23)
}

fn check_us_time(t: &str) -> Result<(), DateError> {
    let (clock, ampm) = match t.rsplit_once(' ') {
        Some((c, ap)) if ap.eq_ignore_ascii_case("AM") || ap.eq_ignore_ascii_case("PM") => {
            (c, true)
        }
        _ => (t, false),
    };
    check_hms(clock, if ampm { 12 } else { 23 })
}

/// Adds whole months, clamping the day to the end of the target month.
pub fn add_months(d: NaiveDate, months: u32) -> NaiveDate {
    d.checked_add_months(chrono::Months::new(months))
        .unwrap_or(NaiveDate::MAX)
}

/// `d`'s month as a count of months (year x 12 + month - 1), so that months
/// compare and step as integers.
fn month_number(d: NaiveDate) -> i64 {
    i64::from(d.year()) * 12 + i64::from(d.month0())
}

/// How [`add_months`]`(from, months)` compares with `date`. The date is
/// computed only when it falls in `date`'s month; otherwise the months
/// decide, which is most of the time (a designation's window of months
/// against a line's dates, on every line).
pub fn months_later_cmp(from: NaiveDate, months: u32, date: NaiveDate) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let later = month_number(from) + i64::from(months);
    match later.cmp(&month_number(date)) {
        Ordering::Less => Ordering::Less,
        // Past chrono's last month, `add_months` gives its last day.
        Ordering::Greater if later <= month_number(NaiveDate::MAX) => Ordering::Greater,
        _ => add_months(from, months).cmp(&date),
    }
}

/// [`add_months`]`(from, months)` when it lies after `after` and on or before
/// `until`, else `None`; computed only when its month is one of theirs.
pub fn add_months_within(
    from: NaiveDate,
    months: u32,
    after: NaiveDate,
    until: NaiveDate,
) -> Option<NaiveDate> {
    use std::cmp::Ordering::Greater;
    let inside = months_later_cmp(from, months, after) == Greater
        && months_later_cmp(from, months, until) != Greater;
    inside.then(|| add_months(from, months))
}

/// A reporting period: one calendar month or an inclusive range of months.
/// Serialised as its label (`2026-10`, `2025-11..2026-10`), which parses back.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Period {
    /// First day of the first month.
    pub start: NaiveDate,
    /// First day after the last month (exclusive).
    pub end: NaiveDate,
}

impl Period {
    /// The last day of the period, used as the statement date (never the clock).
    pub fn last_day(&self) -> NaiveDate {
        self.end.pred_opt().unwrap_or(self.end)
    }

    /// Stable label: `2026-10` or `2025-11..2026-10`.
    pub fn label(&self) -> String {
        let last = self.last_day();
        let first = format!("{:04}-{:02}", self.start.year(), self.start.month());
        let lastl = format!("{:04}-{:02}", last.year(), last.month());
        if first == lastl {
            first
        } else {
            format!("{first}..{lastl}")
        }
    }

    pub fn contains(&self, d: NaiveDate) -> bool {
        self.start <= d && d < self.end
    }
}

impl From<Period> for String {
    fn from(p: Period) -> String {
        p.label()
    }
}

impl TryFrom<String> for Period {
    type Error = String;
    fn try_from(s: String) -> Result<Period, String> {
        s.parse()
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

fn parse_month(s: &str) -> Result<NaiveDate, String> {
    let b = s.as_bytes();
    if b.len() != 7 || b[4] != b'-' {
        return Err(format!("'{s}' is not a month of the form YYYY-MM"));
    }
    let y = num(&b[0..4]).map_err(|_| format!("'{s}': year is not a number"))?;
    let m = num(&b[5..7]).map_err(|_| format!("'{s}': month is not a number"))?;
    ymd(y, m, 1).map_err(|_| format!("'{s}' is not a valid month"))
}

impl FromStr for Period {
    type Err = String;
    /// `YYYY-MM` for one month, `YYYY-MM..YYYY-MM` for an inclusive range.
    fn from_str(s: &str) -> Result<Period, String> {
        let (a, b) = match s.split_once("..") {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (s.trim(), s.trim()),
        };
        let start = parse_month(a)?;
        let last = parse_month(b)?;
        if last < start {
            return Err(format!("period '{s}' ends before it starts"));
        }
        Ok(Period {
            start,
            end: add_months(last, 1),
        })
    }
}

/// A calendar month as a single number (`year * 12 + month - 1`): hashable,
/// ordered, and `m - 12` is the same month a year earlier.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Month(pub i32);

impl Month {
    pub fn of(d: NaiveDate) -> Month {
        Month(d.year() * 12 + d.month0() as i32)
    }
    /// A month written `YYYY-MM`.
    pub fn parse(s: &str) -> Option<Month> {
        parse_month(s).ok().map(Month::of)
    }
    /// Month `m` (1..=12) of year `y`.
    pub const fn from_ym(y: i32, m: u32) -> Month {
        Month(y * 12 + m as i32 - 1)
    }
    /// Day `d` of the month, if the month has that day.
    #[inline]
    pub fn day(self, d: u32) -> Option<NaiveDate> {
        NaiveDate::from_ymd_opt(self.0.div_euclid(12), self.0.rem_euclid(12) as u32 + 1, d)
    }
    pub fn first_day(self) -> NaiveDate {
        NaiveDate::from_ymd_opt(self.0.div_euclid(12), self.0.rem_euclid(12) as u32 + 1, 1)
            .unwrap_or(NaiveDate::MIN)
    }
    pub fn last_day(self) -> NaiveDate {
        self.next().first_day().pred_opt().unwrap_or(NaiveDate::MIN)
    }
    pub fn next(self) -> Month {
        Month(self.0 + 1)
    }
    pub fn minus(self, months: u32) -> Month {
        Month(self.0 - months as i32)
    }
    pub fn plus(self, months: u32) -> Month {
        Month(self.0 + months as i32)
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04}-{:02}",
            self.0.div_euclid(12),
            self.0.rem_euclid(12) + 1
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        let m = Month::of(NaiveDate::from_ymd_opt(2026, 1, 17).unwrap());
        assert_eq!(m.to_string(), "2026-01");
        assert_eq!(m.minus(12).to_string(), "2025-01");
        assert_eq!(m.minus(1).to_string(), "2025-12");
        assert_eq!(m.last_day(), NaiveDate::from_ymd_opt(2026, 1, 31).unwrap());
        assert_eq!(
            Month::of(NaiveDate::from_ymd_opt(2024, 2, 1).unwrap()).last_day(),
            NaiveDate::from_ymd_opt(2024, 2, 29).unwrap()
        );
        let m = Month::from_ym(2024, 2);
        assert_eq!(m, Month::of(NaiveDate::from_ymd_opt(2024, 2, 10).unwrap()));
        assert_eq!(m.day(29), NaiveDate::from_ymd_opt(2024, 2, 29));
        assert_eq!((m.day(30), m.plus(12).day(29)), (None, None));
        assert_eq!(m.plus(11).to_string(), "2025-01");
        assert_eq!(Month::from_ym(2026, 10).to_string(), "2026-10");
    }

    fn d(y: i32, m: u32, dd: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, dd).unwrap()
    }

    #[test]
    fn accepted_forms() {
        for s in [
            "10/1/2026",
            "10/01/2026",
            "10/1/2026 0:00:00",
            "10/1/2026 12:00:00 AM",
            "10/1/2026 11:59 PM",
            "2026-10-01",
            "2026-10-01T00:00:00Z",
            "2026-10-01T13:45:10.123Z",
            "2026-10-01T00:00:00+02:00",
            "2026-10-01 00:00:00",
            " 2026-10-01 ",
        ] {
            assert_eq!(parse_date(s), Ok(d(2026, 10, 1)), "{s}");
        }
    }

    /// The split-based reading `us_date` replaced, kept as its oracle.
    fn parse_date_by_splitting(s: &str) -> Result<NaiveDate, DateError> {
        let s = s.trim();
        let b = s.as_bytes();
        if b.len() >= 10 && b[4] == b'-' && b[7] == b'-' {
            return parse_date(s);
        }
        let (date_part, time_part) = match s.find(' ') {
            Some(i) => (&s[..i], Some(s[i + 1..].trim())),
            None => (s, None),
        };
        let mut it = date_part.split('/');
        let (m, d, y) = match (it.next(), it.next(), it.next(), it.next()) {
            (Some(m), Some(d), Some(y), None) => (m, d, y),
            _ => return Err(DateError::Form),
        };
        if m.is_empty() || m.len() > 2 || d.is_empty() || d.len() > 2 || y.len() != 4 {
            return Err(DateError::Form);
        }
        if let Some(t) = time_part {
            check_us_time(t)?;
        }
        ymd(num(y.as_bytes())?, num(m.as_bytes())?, num(d.as_bytes())?)
    }

    proptest::proptest! {
        /// The month-number shortcuts give what computing the date gives,
        /// clamped month ends and the years past chrono's range included.
        #[test]
        fn month_shortcuts_agree_with_add_months(
            from in 0u32..400_000,
            months in proptest::prop_oneof![0u32..100, proptest::num::u32::ANY],
            a in 0u32..400_000,
            span in 0u32..400,
        ) {
            let day = |n: u32| NaiveDate::from_ymd_opt(1900, 1, 1).unwrap() + chrono::Days::new(u64::from(n));
            let (from, after) = (day(from), day(a));
            let until = after + chrono::Days::new(u64::from(span));
            let end = add_months(from, months);
            proptest::prop_assert_eq!(months_later_cmp(from, months, after), end.cmp(&after));
            proptest::prop_assert_eq!(months_later_cmp(from, months, NaiveDate::MAX), end.cmp(&NaiveDate::MAX));
            proptest::prop_assert_eq!(
                add_months_within(from, months, after, until),
                (after < end && end <= until).then_some(end)
            );
        }

        #[test]
        fn us_dates_read_as_by_splitting(s in "[ 0-9/APM:\u{a0}é]{0,16}") {
            proptest::prop_assert_eq!(parse_date(&s), parse_date_by_splitting(&s));
        }

        #[test]
        fn us_date_shapes_read_as_by_splitting(
            s in "[0-9]{0,3}/[0-9x]{0,3}/[0-9]{0,5}(/[0-9]{0,2})?( [0-9]{1,2}:[0-9]{2}( [AP]M)?)?"
        ) {
            proptest::prop_assert_eq!(parse_date(&s), parse_date_by_splitting(&s));
        }

        #[test]
        fn us_dates_of_every_day_read(days in 0u32..400_000, pad in proptest::bool::ANY) {
            let day = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap() + chrono::Days::new(days.into());
            let s = if pad {
                format!("{:02}/{:02}/{}", day.month(), day.day(), day.year())
            } else {
                format!("{}/{}/{}", day.month(), day.day(), day.year())
            };
            let expected = if day.year() <= 2999 { Ok(day) } else { Err(DateError::OutOfRange) };
            proptest::prop_assert_eq!(parse_date(&s), expected.clone());
            proptest::prop_assert_eq!(parse_date_by_splitting(&s), expected);
        }
    }

    /// A date of an accepted form whose year is outside [`YEARS`] is out of
    /// range, and its reject says so (naming it and the range), not that it
    /// is no date; a day that does not exist is no date in any year.
    #[test]
    fn dates_outside_the_years_are_out_of_range_not_malformed() {
        for s in [
            "0001-01-01",
            "9999-12-31",
            "1/1/0001",
            "12/31/9999 11:59:59 PM",
            "1899-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_date(s), Err(DateError::OutOfRange), "{s}");
        }
        for s in ["9999-02-30", "0001-13-01", "2/30/0001"] {
            assert_eq!(parse_date(s), Err(DateError::Form), "{s}");
        }
        assert_eq!(parse_date("1900-01-01"), Ok(d(1900, 1, 1)));
        assert_eq!(parse_date("2999-12-31"), Ok(d(2999, 12, 31)));
        let why = DateError::OutOfRange.reason(" 9999-12-31 ", "YYYY-MM-DD");
        assert!(
            why.starts_with("9999-12-31 is outside the supported dates, 1900-01-01 to 2999-12-31"),
            "{why}"
        );
        assert!(!why.contains("not a date"), "{why}");
        assert_eq!(
            DateError::Form.reason("x", "YYYY-MM-DD"),
            "not a date (expected YYYY-MM-DD)"
        );
    }

    #[test]
    fn rejected_forms() {
        for s in [
            "",
            "2026-13-01",
            "2/30/2026",
            "1.10.2026",
            "2026/10/01",
            "10/1/26",
            "10/1/2026 25:00:00",
            "2026-10-01X",
            "2026-10-01T10",
            "yesterday",
            "10/1/2026/1",
            "100/1/2026",
            "1/100/2026",
            "1/1/20266",
            "/1/2026",
            "1//2026",
            "1/1/",
            "+1/1/2026",
        ] {
            assert!(parse_date(s).is_err(), "{s}");
        }
    }

    #[test]
    fn periods() {
        let p: Period = "2026-10".parse().unwrap();
        assert_eq!((p.start, p.end), (d(2026, 10, 1), d(2026, 11, 1)));
        assert_eq!(p.label(), "2026-10");
        assert_eq!(p.last_day(), d(2026, 10, 31));
        let p: Period = "2025-11..2026-10".parse().unwrap();
        assert_eq!((p.start, p.end), (d(2025, 11, 1), d(2026, 11, 1)));
        assert_eq!(p.label(), "2025-11..2026-10");
        assert!("2026-10..2026-01".parse::<Period>().is_err());
        assert!("2026-1".parse::<Period>().is_err());
        assert_eq!(add_months(d(2024, 1, 31), 1), d(2024, 2, 29));
        assert_eq!(add_months(d(2019, 7, 1), 36), d(2022, 7, 1));
    }
}
