//! Monthly accruals end to end: the accrual month in the ledger, lines cut at
//! month boundaries summing to the line, statements with one line per month
//! and a total, the bar chart of multi-month PDFs, and `journal.csv`
//! balancing to zero per currency.

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;

use crate::common::{csv_rows, pdftext, porledger_in, read, run_sample, Sample};

const HEADER: &str = "CustomerId,CustomerName,SubscriptionId,ChargeStartDate,ChargeEndDate,Subtotal,Currency,PublisherName,ProductQualifiers,ResellerMpnId\n";
const DHEADER: &str = "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n";
const RULES: &str = "[[program]]\nid = \"por-core\"\nassociations = [\"DPOR\"]\nrate = \"0.04\"\n";

fn d(s: &str) -> Decimal {
    s.parse().unwrap_or_else(|_| panic!("not a decimal: '{s}'"))
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(billing: &str, designations: &str, rules: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.csv"), format!("{HEADER}{billing}")).unwrap();
        std::fs::write(dir.path().join("d.csv"), format!("{DHEADER}{designations}")).unwrap();
        std::fs::write(dir.path().join("r.toml"), rules).unwrap();
        Case { dir }
    }

    fn run(&self, period: &str, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
            "run",
            "--period",
            period,
            "--billing",
            "b.csv",
            "--designations",
            "d.csv",
            "--rules",
            "r.toml",
            "--out",
            "out",
            "-q",
        ];
        args.extend_from_slice(extra);
        porledger_in(self.dir.path(), args)
    }

    fn read(&self, rel: &str) -> String {
        read(self.dir.path().join(rel))
    }

    fn path(&self, rel: &str) -> std::path::PathBuf {
        self.dir.path().join(rel)
    }
}

/// The rows of a CSV file with a header, as maps by column name.
fn records(text: &str) -> Vec<BTreeMap<String, String>> {
    let rows = csv_rows(text);
    let header = &rows[0];
    rows[1..]
        .iter()
        .map(|r| header.iter().cloned().zip(r.iter().cloned()).collect())
        .collect()
}

/// The journal of `out`: every row balances per currency, entries pair a
/// debit and a credit of the same amount; returns the accrual per currency
/// (the amounts posted to the `expense` account, signed).
fn check_journal(out: &Path, expense: &str) -> BTreeMap<String, Decimal> {
    let rows = records(&read(out.join("journal.csv")));
    let mut balance: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut debit_credit: BTreeMap<String, (Decimal, Decimal)> = BTreeMap::new();
    let mut entries: BTreeMap<String, Vec<&BTreeMap<String, String>>> = BTreeMap::new();
    for r in &rows {
        let cur = r["currency"].clone();
        *balance.entry(cur.clone()).or_default() += d(&r["amount"]);
        let e = debit_credit.entry(cur).or_default();
        if !r["debit"].is_empty() {
            assert!(r["credit"].is_empty(), "{r:?}");
            assert!(d(&r["debit"]) > Decimal::ZERO, "{r:?}");
            e.0 += d(&r["debit"]);
        } else {
            assert!(d(&r["credit"]) > Decimal::ZERO, "{r:?}");
            e.1 += d(&r["credit"]);
        }
        entries.entry(r["entry"].clone()).or_default().push(r);
    }
    for (cur, b) in &balance {
        assert_eq!(*b, Decimal::ZERO, "journal does not balance in {cur}");
        let (dr, cr) = debit_credit[cur];
        assert_eq!(dr, cr, "debits and credits differ in {cur}");
    }
    let mut accrued: BTreeMap<String, Decimal> = BTreeMap::new();
    for (n, legs) in &entries {
        assert_eq!(legs.len(), 2, "entry {n} has {} legs", legs.len());
        for k in [
            "partner_id",
            "program_id",
            "accrual_month",
            "currency",
            "posting_date",
            "period",
        ] {
            assert_eq!(legs[0][k], legs[1][k], "entry {n}: {k}");
        }
        assert_ne!(legs[0]["account"], legs[1]["account"]);
        assert_eq!(d(&legs[0]["amount"]), -d(&legs[1]["amount"]));
        assert!(!legs[0]["debit"].is_empty() && !legs[1]["credit"].is_empty());
        for leg in legs.iter().filter(|l| l["account"] == expense) {
            *accrued.entry(leg["currency"].clone()).or_default() += d(&leg["amount"]);
        }
    }
    accrued
}

/// Summary totals per currency (the sum of the rounded statement lines).
fn summary_totals(out: &Path) -> BTreeMap<String, Decimal> {
    let mut t: BTreeMap<String, Decimal> = BTreeMap::new();
    for r in records(&read(out.join("summary.csv"))) {
        *t.entry(r["currency"].clone()).or_default() += d(&r["accrual_amount"]);
    }
    t
}

#[test]
fn a_line_over_three_months_accrues_in_each_and_the_statement_shows_months_and_a_total() {
    // 15 Oct to 14 Dec: 17 + 30 + 14 = 61 days; 6100.00 EUR is 100.00 a day, 4.00 accrued.
    // A credit over Oct-Nov (23 days: 12 + 11), -1000.00: an uneven split.
    let c = Case::new(
        "c1,C1,s1,10/15/2026,12/14/2026,6100.00,EUR,Microsoft Corporation,[],\n\
         c1,C1,s2,10/20/2026,11/11/2026,-1000.00,EUR,Microsoft Corporation,[],\n",
        "c1,P-A,A,DPOR,,,,2024-01-01,\n",
        RULES,
    );
    let o = c.run("2026-10..2026-12", &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ledger = records(&c.read("out/ledger.csv"));
    let cols: Vec<String> = csv_rows(&c.read("out/ledger.csv"))[0].clone();
    assert_eq!(cols[5], "charge_date");
    assert_eq!(cols[6], "accrual_month");
    let rows: Vec<(String, String, String, String, String)> = ledger
        .iter()
        .map(|r| {
            (
                r["source_line"].clone(),
                r["accrual_month"].clone(),
                r["basis_amount"].clone(),
                r["accrual_amount"].clone(),
                format!("{}/{}", r["credited_days"], r["charge_days"]),
            )
        })
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        rows,
        [
            (s("2"), s("2026-10"), s("1700.00"), s("68.00"), s("17/61")),
            (s("2"), s("2026-11"), s("3000.00"), s("120.00"), s("30/61")),
            (s("2"), s("2026-12"), s("1400.00"), s("56.00"), s("14/61")),
            (
                s("3"),
                s("2026-10"),
                s("-521.73913"),
                s("-20.8695652"),
                s("12/23")
            ),
            (
                s("3"),
                s("2026-11"),
                s("-478.26087"),
                s("-19.1304348"),
                s("11/23")
            ),
        ]
    );
    // The parts sum to each line, basis and accrual.
    for (line, basis, accrual) in [("2", "6100.00", "244.00"), ("3", "-1000.00", "-40.00")] {
        let of = |col: &str| -> Decimal {
            ledger
                .iter()
                .filter(|r| r["source_line"] == line)
                .map(|r| d(&r[col]))
                .sum()
        };
        assert_eq!(of("basis_amount"), d(basis));
        assert_eq!(of("accrual_amount"), d(accrual));
    }
    // Statement: one line per month (rounded once), then the total of the rounded months.
    let st = csv_rows(&c.read("out/partners/P-A/statement.csv"));
    let lines: Vec<(String, String)> = st
        .iter()
        .filter(|r| r.len() == 11 && r[0] == "c1")
        .map(|r| (r[4].clone(), r[10].clone()))
        .collect();
    assert_eq!(
        lines,
        [
            (s("2026-10"), s("47.13")),
            (s("2026-11"), s("100.87")),
            (s("2026-12"), s("56.00")),
            (s("total"), s("204.00")),
        ]
    );
    // Journal: one entry per month, balanced; it ties to the summary.
    let accrued = check_journal(&c.path("out"), "incentive-expense");
    assert_eq!(accrued, summary_totals(&c.path("out")));
    let journal = records(&c.read("out/journal.csv"));
    assert_eq!(journal.len(), 6);
    assert_eq!(journal[0]["account"], "incentive-expense");
    assert_eq!(journal[1]["account"], "accrued-incentives");
    assert_eq!(journal[0]["posting_date"], "2026-12-31");
    // The PDF statement of several months has the bar chart.
    let text = pdftext(&c.path("out/partners/P-A/statement.pdf"));
    assert!(text.contains("Accrued by month (EUR)"), "{text}");
    assert!(text.contains("2026-11"), "{text}");
    // explain shows the month and the split, and agrees with the statement.
    let o = porledger_in(
        c.dir.path(),
        ["explain", "--out", "out", "--partner", "P-A"],
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("accrual month 2026-11"), "{text}");
    assert!(
        text.contains("prorated 30 of 61 days (the line's days in 2026-11)"),
        "{text}"
    );
    assert!(
        text.contains("total of 3 months = 204.00 (matches the statement)"),
        "{text}"
    );
    assert!(!text.contains("STATEMENT SAYS"), "{text}");
    // IDs are matched case-insensitively and trimmed, as everywhere.
    let o = porledger_in(
        c.dir.path(),
        ["explain", "--out", "out", "--partner", " p-a"],
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout), text);
}

#[test]
fn a_net_credit_posts_the_other_way_round_and_a_journal_table_sets_the_accounts() {
    let c = Case::new(
        "c1,C1,s1,11/10/2026,12/9/2026,-3000.00,EUR,Microsoft Corporation,[],\n",
        "c1,P-A,A,DPOR,,,,2024-01-01,\n",
        &format!(
            "{RULES}[journal]\ndebit_account = \"6400\"\ncredit_account = \"2150\"\ncost_centre = \"CC-7\"\n"
        ),
    );
    let o = c.run("2026-11..2026-12", &["--no-pdf"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let accrued = check_journal(&c.path("out"), "6400");
    assert_eq!(accrued, summary_totals(&c.path("out")));
    let j = records(&c.read("out/journal.csv"));
    // Nov: 21 of 30 days, Dec: 9 days. A negative accrual debits the liability.
    let legs: Vec<(String, String, String, String, String)> = j
        .iter()
        .map(|r| {
            (
                r["accrual_month"].clone(),
                r["account"].clone(),
                r["debit"].clone(),
                r["credit"].clone(),
                r["cost_centre"].clone(),
            )
        })
        .collect();
    let s = |x: &str| x.to_string();
    assert_eq!(
        legs,
        [
            (s("2026-11"), s("2150"), s("84.00"), s(""), s("CC-7")),
            (s("2026-11"), s("6400"), s(""), s("84.00"), s("CC-7")),
            (s("2026-12"), s("2150"), s("36.00"), s(""), s("CC-7")),
            (s("2026-12"), s("6400"), s(""), s("36.00"), s("CC-7")),
        ]
    );
    // The manifest lists the journal.
    let m = read(c.path("out/manifest.json"));
    assert!(m.contains("journal.csv"), "{m}");
}

#[test]
fn an_unknown_journal_key_is_an_error_naming_it() {
    let c = Case::new(
        "c1,C1,s1,11/10/2026,11/10/2026,10.00,EUR,Microsoft Corporation,[],\n",
        "c1,P-A,A,DPOR,,,,2024-01-01,\n",
        &format!("{RULES}[journal]\ncost_center = \"CC-7\"\n"),
    );
    let o = c.run("2026-11", &["--no-pdf"]);
    assert_ne!(o.status.code(), Some(0));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("cost_center"), "{e}");
    assert!(!c.path("out").exists());
}

#[test]
fn the_sample_journals_balance_per_currency_and_tie_to_the_summary() {
    // The main sample spans twelve months; the hard cases have several currencies.
    for sample in [Sample::Main, Sample::Hard] {
        let dir = run_sample(sample, &["--no-pdf", "-q"]);
        let out = dir.path().join("out");
        let accrued = check_journal(&out, "incentive-expense");
        let mut summary = summary_totals(&out);
        summary.retain(|_, v| !v.is_zero());
        accrued
            .iter()
            .for_each(|(c, v)| assert_eq!(summary.get(c), Some(v), "{sample:?} {c}"));
        assert_eq!(accrued.len(), summary.len(), "{sample:?}");
    }
}

#[test]
fn the_bar_chart_is_drawn_only_for_a_period_of_several_months() {
    let c = Case::new(
        "c1,C1,s1,10/1/2026,10/31/2026,1000.00,EUR,Microsoft Corporation,[],\n\
         c1,C1,s1,10/1/2026,10/31/2026,1000.00,USD,Microsoft Corporation,[],\n",
        "c1,P-A,A,DPOR,,,,2024-01-01,\n",
        RULES,
    );
    let o = c.run("2026-10", &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = pdftext(&c.path("out/partners/P-A/statement.pdf"));
    assert!(!text.contains("Accrued by month"), "{text}");
    std::fs::remove_dir_all(c.path("out")).unwrap();
    let o = c.run("2026-09..2026-10", &[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = pdftext(&c.path("out/partners/P-A/statement.pdf"));
    assert!(text.contains("Accrued by month (EUR)"), "{text}");
    assert!(text.contains("Accrued by month (USD)"), "{text}");
}
