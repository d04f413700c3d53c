//! Parity of the two renderers: every amount, count and ratio of each CSV
//! statement (`partners/<id>/statement.csv`, `partners/<id>/customers/<cid>.csv`)
//! appears in the PDF of the same statement, in the PDF's locale.
//!
//! The three sample-data runs (main; hard cases with `--fx`; usage with
//! `--usage`) are rendered in English by `run`, then re-rendered in German by
//! `porledger render --locale de`. Each CSV value is written the way a reader
//! sees it in that locale (separators and percent format read from
//! `templates/locales/<locale>.toml`):
//!
//! - amount: `1234.5` -> `1,234.50` / `1.234,50` (the currency symbol is not
//!   compared, the sign is);
//! - count (lines, MAU, PAU, units): `1234` -> `1,234` / `1.234`;
//! - exact ratio (rate, share, target): `0.04` -> `4%` / `4 %`;
//! - attainment (MAU / PAU), rounded for people: `0.51666…` -> `51.67%` / `51,67 %`;
//! - on a usage-program line (program basis `usage` in `statements.json`) the
//!   basis is a count of compensable units (`22.00` -> `22`) and the rate an
//!   amount per unit (`2.5` -> `2.50`).
//!
//! Attainment rows are compared row by row: the numbers of one CSV row must be
//! on one line of the PDF text. Everything else is compared per document.
//!
//! The CSV columns the PDF does not print, on purpose, are listed in
//! [`NOT_IN_PDF`] with the reason; the test prints how often it skipped each.
//!
//! Needs `pdftotext` (Debian `poppler-utils`); fails, never skips, without it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::common::{pdftext, repo, run_ok};

use rust_decimal::{Decimal, RoundingStrategy};

/// CSV columns (by header) the PDF does not print, and why.
const NOT_IN_PDF: &[(&str, &str)] = &[
    (
        "lines",
        "line counts per statement line: the PDF prints them in the summary by program only",
    ),
    (
        "accrual_exact",
        "the unrounded accrual is an audit column of the CSV; the PDF prints the rounded amount",
    ),
    (
        "fx_rate",
        "FX conversions (--fx) are not printed in the PDF yet",
    ),
    (
        "converted_amount",
        "FX conversions (--fx) are not printed in the PDF yet",
    ),
    (
        "total_converted",
        "FX conversions (--fx) are not printed in the PDF yet",
    ),
    (
        "explanation",
        "English free text repeating the tier row's numbers; the PDF prints the numbers",
    ),
];

fn root() -> PathBuf {
    repo()
}

fn porledger(args: &[&str]) {
    run_ok(args);
}

/// Number format of a locale, read from the built-in template.
struct Locale {
    name: &'static str,
    decimal: String,
    group: String,
    percent: String,
}

impl Locale {
    fn load(name: &'static str) -> Locale {
        let p = root().join(format!("templates/locales/{name}.toml"));
        let v: toml::Value = toml::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        let f = &v["format"];
        let s = |k: &str| f[k].as_str().unwrap().to_string();
        Locale {
            name,
            decimal: s("decimal_separator"),
            group: s("group_separator"),
            percent: s("percent"),
        }
    }

    /// A plain decimal (`-1234.50`) with the locale's separators, no sign.
    fn digits(&self, d: Decimal) -> String {
        let plain = d.abs().to_string();
        let (int, frac) = plain.split_once('.').unwrap_or((&plain, ""));
        let mut s = String::new();
        for (i, c) in int.chars().enumerate() {
            if i > 0 && (int.len() - i) % 3 == 0 {
                s.push_str(&self.group);
            }
            s.push(c);
        }
        if !frac.is_empty() {
            s.push_str(&self.decimal);
            s.push_str(frac);
        }
        s
    }

    fn percent(&self, v: Decimal) -> String {
        self.percent.replace("{value}", &self.digits(v))
    }
}

/// How a CSV value is printed in the PDF.
#[derive(Clone, Copy, Debug)]
enum Kind {
    /// Money as written in the CSV (at least two decimals).
    Amount,
    /// An integer count (or a decimal count, normalised).
    Count,
    /// A rate or share, exact: `0.125` -> `12.5%`.
    Ratio,
    /// An attainment, rounded to two decimals of a percent.
    Attainment,
}

fn dec(s: &str) -> Decimal {
    s.parse()
        .unwrap_or_else(|e| panic!("'{s}' is not a decimal: {e}"))
}

/// What a reader sees for `value` of `kind` (sign not included).
fn shown(l: &Locale, kind: Kind, value: &str) -> String {
    let d = dec(value);
    match kind {
        Kind::Amount => {
            let mut d = d;
            if d.scale() < 2 {
                d.rescale(2);
            }
            l.digits(d)
        }
        Kind::Count => l.digits(d.normalize()),
        Kind::Ratio => l.percent((d * Decimal::ONE_HUNDRED).normalize()),
        Kind::Attainment => {
            let mut p = (d * Decimal::ONE_HUNDRED)
                .round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
            p.rescale(2);
            l.percent(p)
        }
    }
}

/// Is `needle` in `hay` as a whole number (no digit or separator-and-digit
/// glued to either side), and, for a negative value, with a minus sign
/// shortly before it?
fn contains_number(hay: &str, needle: &str, negative: bool) -> bool {
    let digitish = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit());
    let mut from = 0;
    while let Some(i) = hay[from..].find(needle) {
        let at = from + i;
        let before: Vec<char> = hay[..at].chars().rev().take(3).collect();
        let after: Vec<char> = hay[at + needle.len()..].chars().take(2).collect();
        let glued_before = digitish(before.first().copied())
            || (matches!(before.first(), Some('.' | ',')) && digitish(before.get(1).copied()));
        let glued_after = digitish(after.first().copied())
            || (matches!(after.first(), Some('.' | ',')) && digitish(after.get(1).copied()));
        let signed = !negative || before.contains(&'-');
        if !glued_before && !glued_after && signed {
            return true;
        }
        from = at + needle.len();
    }
    false
}

/// [`contains_number`], also accepting the value without its inner spaces:
/// pdftotext drops the space of a narrow right-aligned `4 %` (`4%`).
fn shows(hay: &str, needle: &str, negative: bool) -> bool {
    contains_number(hay, needle, negative)
        || (needle.contains(' ') && contains_number(hay, &needle.replace(' ', ""), negative))
}

/// A CSV statement split into its sections (separated by empty lines), each
/// a header and rows.
fn sections(path: &Path) -> Vec<(Vec<String>, Vec<Vec<String>>)> {
    let text = std::fs::read_to_string(path).unwrap();
    text.split("\r\n\r\n")
        .filter(|s| !s.trim().is_empty())
        .map(|s| {
            let mut r = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .from_reader(s.as_bytes());
            let mut rows: Vec<Vec<String>> = r
                .records()
                .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
                .collect();
            let header = rows.remove(0);
            (header, rows)
        })
        .collect()
}

/// Program IDs whose basis is `usage` (their lines count units, their rate is
/// an amount per unit).
fn usage_programs(out: &Path) -> BTreeSet<String> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("statements.json")).unwrap())
            .unwrap();
    v["programs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["basis"] == "usage")
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect()
}

/// Checks one CSV statement against the text of its PDF.
struct Check<'a> {
    l: &'a Locale,
    usage: &'a BTreeSet<String>,
    pdf: String,
    doc: String,
    missing: Vec<String>,
    skipped: BTreeMap<&'static str, usize>,
    compared: usize,
}

impl Check<'_> {
    fn expect(&mut self, what: &str, kind: Kind, value: &str) -> Option<String> {
        if value.is_empty() {
            return None;
        }
        let s = shown(self.l, kind, value);
        self.compared += 1;
        if !shows(&self.pdf, &s, value.starts_with('-')) {
            self.missing.push(format!(
                "{}: {what} = {value} ({kind:?}): '{s}' is not in the PDF",
                self.doc
            ));
        }
        Some(s)
    }

    fn skip(&mut self, col: &str) -> bool {
        match NOT_IN_PDF.iter().find(|(c, _)| *c == col) {
            Some((c, _)) => {
                *self.skipped.entry(c).or_default() += 1;
                true
            }
            None => false,
        }
    }

    /// Currency -> are all its lines usage-program lines (`None`: mixed).
    fn currency_kinds(
        &self,
        secs: &[(Vec<String>, Vec<Vec<String>>)],
    ) -> BTreeMap<String, Option<bool>> {
        let mut m: BTreeMap<String, Option<bool>> = BTreeMap::new();
        for (h, rows) in secs {
            let (Some(pi), Some(ci)) = (col(h, "program_id"), col(h, "currency")) else {
                continue;
            };
            for r in rows {
                let u = self.usage.contains(&r[pi]);
                let e = m.entry(r[ci].clone()).or_insert(Some(u));
                if *e != Some(u) {
                    *e = None;
                }
            }
        }
        m
    }

    fn statement(&mut self, csv: &Path) {
        let secs = sections(csv);
        let by_currency = self.currency_kinds(&secs);
        for (h, rows) in &secs {
            for (n, r) in rows.iter().enumerate() {
                let what = |c: &str| format!("{} row {} {c}", h[0], n + 1);
                match r[0].as_str() {
                    "attainment" => self.attainment_row(h, r, n),
                    "tier_rate" => self.tier_row(h, r, n),
                    "total" | "total_converted" => {
                        if r[0] == "total_converted" && self.skip("total_converted") {
                            continue;
                        }
                        let usage = by_currency.get(&r[1]).copied().unwrap_or(Some(false));
                        for (c, v) in h.iter().zip(r).skip(2) {
                            let kind = match c.as_str() {
                                "basis_amount" => match usage {
                                    Some(true) => Kind::Count,
                                    Some(false) => Kind::Amount,
                                    None => continue,
                                },
                                "accrual_amount" => Kind::Amount,
                                c if self.skip(c) => continue,
                                _ => continue,
                            };
                            self.expect(&what(c), kind, v);
                        }
                    }
                    "designation" => {
                        if let Some(i) = col(h, "share") {
                            if r.len() > i && dec_like(&r[i]) {
                                self.expect(&what("share"), Kind::Ratio, &r[i]);
                            }
                        }
                    }
                    _ if col(h, "program_id").is_some() => self.line_row(h, r, &what),
                    _ => {}
                }
            }
        }
    }

    /// A statement line or a transparency detail line.
    fn line_row(&mut self, h: &[String], r: &[String], what: &dyn Fn(&str) -> String) {
        let usage = self.usage.contains(&r[col(h, "program_id").unwrap()]);
        for (c, v) in h.iter().zip(r) {
            let kind = match c.as_str() {
                "basis_amount" if usage => Kind::Count,
                "basis_amount" | "accrual_amount" => Kind::Amount,
                "rate" if !dec_like(v) => continue, // "various"
                "rate" if usage => Kind::Amount,
                "rate" | "share" => Kind::Ratio,
                c if self.skip(c) => continue,
                _ => continue,
            };
            self.expect(&what(c), kind, v);
        }
    }

    /// One attainment row: its numbers on one line of the PDF.
    fn attainment_row(&mut self, h: &[String], r: &[String], n: usize) {
        let mut want = Vec::new();
        // The first column names the section (`attainment`), not the ratio.
        for (c, v) in h.iter().zip(r).skip(1) {
            let kind = match c.as_str() {
                "mau" | "pau" | "prior_hwm" | "compensable_units" => Kind::Count,
                "attainment" => Kind::Attainment,
                "target_reached" => Kind::Ratio,
                _ => continue,
            };
            if let Some(s) = self.expect(&format!("attainment row {} {c}", n + 1), kind, v) {
                want.push(s);
            }
        }
        let on_one_line = self
            .pdf
            .lines()
            .any(|line| want.iter().all(|s| shows(line, s, false)));
        if !on_one_line {
            self.missing.push(format!(
                "{}: attainment row {} ({} {}): no PDF line holds all of {want:?}",
                self.doc,
                n + 1,
                r[col(h, "customer_name").unwrap()],
                r[col(h, "workload").unwrap()],
            ));
        }
    }

    fn tier_row(&mut self, h: &[String], r: &[String], n: usize) {
        for (c, v) in h.iter().zip(r) {
            let what = format!("tier_rate row {} {c}", n + 1);
            match c.as_str() {
                "workload_attainment" => {
                    for part in v.split(';') {
                        let (w, a) = part.split_once('=').unwrap();
                        if dec_like(a) {
                            self.expect(&format!("{what} {w}"), Kind::Attainment, a);
                        }
                    }
                }
                "decisive_attainment" => {
                    self.expect(&what, Kind::Attainment, v);
                }
                "rate" => {
                    self.expect(&what, Kind::Ratio, v);
                }
                c => {
                    self.skip(c);
                }
            }
        }
    }
}

fn col(h: &[String], name: &str) -> Option<usize> {
    h.iter().position(|c| c == name)
}

fn dec_like(s: &str) -> bool {
    !s.is_empty() && s.parse::<Decimal>().is_ok()
}

/// Every CSV statement of the run in `out` against its PDF; returns what is
/// missing.
fn check_run(out: &Path, l: &Locale, label: &str) -> Vec<String> {
    let usage = usage_programs(out);
    let mut csvs = Vec::new();
    for p in std::fs::read_dir(out.join("partners")).unwrap() {
        let p = p.unwrap().path();
        csvs.push(p.join("statement.csv"));
        if let Ok(rd) = std::fs::read_dir(p.join("customers")) {
            for c in rd {
                let c = c.unwrap().path();
                if c.extension().is_some_and(|x| x == "csv") {
                    csvs.push(c);
                }
            }
        }
    }
    csvs.sort();
    assert!(
        !csvs.is_empty(),
        "{label}: no statements in {}",
        out.display()
    );
    let mut missing = Vec::new();
    let mut skipped: BTreeMap<&str, usize> = BTreeMap::new();
    let mut compared = 0;
    for csv in csvs {
        let pdf = csv.with_extension("pdf");
        assert!(pdf.is_file(), "{label}: {} has no PDF", csv.display());
        let mut c = Check {
            l,
            usage: &usage,
            pdf: pdftext(&pdf),
            doc: format!(
                "{label}/{}: {}",
                l.name,
                pdf.strip_prefix(out).unwrap().display()
            ),
            missing: Vec::new(),
            skipped: BTreeMap::new(),
            compared: 0,
        };
        c.statement(&csv);
        missing.extend(c.missing);
        compared += c.compared;
        for (k, v) in c.skipped {
            *skipped.entry(k).or_default() += v;
        }
    }
    eprintln!(
        "{label}/{}: compared {compared} values; not in the PDF by design: {skipped:?}",
        l.name
    );
    assert!(compared > 0, "{label}: nothing compared");
    missing
}

/// Runs `porledger run` with `args` into a temporary directory, checks the
/// English PDFs, re-renders them in German and checks those.
fn parity(label: &str, args: &[&str]) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let out_s = out.display().to_string();
    let mut a = vec!["run"];
    a.extend_from_slice(args);
    a.extend(["--out", &out_s, "--quiet"]);
    porledger(&a);
    let mut missing = check_run(&out, &Locale::load("en"), label);
    porledger(&["render", "--out", &out_s, "--locale", "de", "--quiet"]);
    missing.extend(check_run(&out, &Locale::load("de"), label));
    assert!(
        missing.is_empty(),
        "{} value(s) of the CSV statements are not in their PDFs:\n  {}",
        missing.len(),
        missing.join("\n  ")
    );
}

#[test]
fn main_sample_pdfs_show_the_csv_numbers() {
    parity(
        "main",
        &[
            "--period",
            "2025-11..2026-10",
            "--billing",
            "sample-data/billing",
            "--designations",
            "sample-data/designations.csv",
            "--rules",
            "sample-data/rules.toml",
        ],
    );
}

#[test]
fn hard_cases_pdfs_show_the_csv_numbers() {
    parity(
        "hard",
        &[
            "--period",
            "2026-10",
            "--billing",
            "sample-data/hard-cases/billing-2026-10.csv",
            "--designations",
            "sample-data/hard-cases/designations.csv",
            "--rules",
            "sample-data/hard-cases/rules.toml",
            "--fx",
            "sample-data/hard-cases/fx.csv",
        ],
    );
}

#[test]
fn usage_pdfs_show_the_csv_numbers() {
    parity(
        "usage",
        &[
            "--period",
            "2026-10",
            "--billing",
            "sample-data/usage/billing-usage-demo.csv",
            "--designations",
            "sample-data/usage/designations-usage.csv",
            "--rules",
            "sample-data/usage/rules-usage.toml",
            "--usage",
            "sample-data/usage/cpor-usage.csv",
        ],
    );
}

#[test]
fn number_forms() {
    let en = Locale::load("en");
    let de = Locale::load("de");
    assert_eq!(shown(&en, Kind::Amount, "1234.5"), "1,234.50");
    assert_eq!(shown(&de, Kind::Amount, "1234.5"), "1.234,50");
    assert_eq!(
        shown(&en, Kind::Attainment, "0.5166666666666666666666666667"),
        "51.67%"
    );
    assert_eq!(
        shown(&de, Kind::Attainment, "0.5166666666666666666666666667"),
        "51,67 %"
    );
    assert_eq!(shown(&de, Kind::Ratio, "0.125"), "12,5 %");
    assert_eq!(shown(&en, Kind::Count, "22.00"), "22");
    assert!(contains_number("Total $140.00 x", "140.00", false));
    assert!(!contains_number("Total $140.00 x", "40.00", false));
    assert!(!contains_number("1,234.50", "234.50", false));
    assert!(contains_number("-€20.00", "20.00", true));
    assert!(!contains_number("€20.00", "20.00", true));
    assert!(shows("  4%   100 %", "4 %", false));
}
