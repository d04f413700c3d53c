//! Property tests of the money invariants, on the real binary:
//! a charge plus its full credit nets to zero; splitting the input into files
//! changes no statement byte; the thread count and chunk size change no byte.

use std::collections::BTreeMap;
use std::path::Path;

use porledger::ingest::billing::INVOICE_RECONCILIATION_COLUMNS;
use proptest::prelude::*;

use crate::common::{code, command, output, tree};

const RULES: &str = r#"
[[program]]
id = "por-core"
associations = ["POR", "DPOR"]
rate = "0.04"
window_months = 36
[[program]]
id = "pal"
associations = ["PAL"]
rate = "0.0125"
[[program]]
id = "resale"
associations = ["RESELLER"]
rate = "0.013"
"#;

const DESIGNATIONS: &str = "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to
c0,100001,Alpha,DPOR,,,,2024-01-01,
c1,100002,Beta,POR,,,,2023-06-15,
c1,100001,Alpha,DPOR,,s1b,,2025-01-01,2026-06-01
c2,100003,Gamma,PAL,,,,2024-01-01,
c2,100004,Delta,PAL,,,,2024-01-01,
c2,100005,Epsilon,PAL,,,,2024-01-01,
c3,100003,Gamma,PAL,,,0.25,,
";

#[derive(Clone, Debug)]
struct Line {
    customer: usize,
    sub: usize,
    day: u32,
    month: u32,
    cents: i64,
    usd: bool,
    reseller: Option<u8>,
    name: usize,
}

const NAMES: [&str; 4] = [
    "Müller & Söhne GmbH",
    "Contoso, \"Ltd.\"",
    "Two\nlines",
    "Plain",
];

fn line() -> impl Strategy<Value = Line> {
    (
        0usize..5,
        0usize..3,
        1u32..29,
        1u32..13,
        -500_000i64..500_000,
        any::<bool>(),
        proptest::option::of(0u8..3),
        0usize..4,
    )
        .prop_map(
            |(customer, sub, day, month, cents, usd, reseller, name)| Line {
                customer,
                sub,
                day,
                month,
                cents,
                usd,
                reseller,
                name,
            },
        )
}

fn amount(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}.{:02}", cents.abs() / 100, cents.abs() % 100)
}

fn csv(lines: &[Line]) -> String {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(INVOICE_RECONCILIATION_COLUMNS).unwrap();
    for l in lines {
        let rec: Vec<String> = INVOICE_RECONCILIATION_COLUMNS
            .iter()
            .map(|c| match *c {
                "CustomerId" => format!("c{}", l.customer),
                "CustomerName" => NAMES[l.name].to_string(),
                "SubscriptionId" => format!("s{}{}", l.customer, ["a", "b", "c"][l.sub]),
                "ChargeStartDate" => format!("{}/{}/2026", l.month, l.day),
                "Subtotal" => amount(l.cents),
                "Currency" => {
                    if l.usd {
                        "USD".into()
                    } else {
                        "EUR".into()
                    }
                }
                "ResellerMpnId" => l.reseller.map(|r| format!("20000{r}")).unwrap_or_default(),
                "PublisherName" => "Microsoft Corporation".into(),
                _ => String::new(),
            })
            .collect();
        w.write_record(&rec).unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

fn run(dir: &Path, billing: &[&str], out: &str, extra: &[&str]) -> i32 {
    let mut c = command();
    c.current_dir(dir)
        .args([
            "run",
            "--period",
            "2026-01..2026-12",
            "--designations",
            "designations.csv",
            "--rules",
            "rules.toml",
            "--out",
            out,
            "--quiet",
        ])
        .arg("--billing")
        .args(billing)
        .args(extra);
    code(&output(&mut c))
}

fn setup() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("designations.csv"), DESIGNATIONS).unwrap();
    std::fs::write(d.path().join("rules.toml"), RULES).unwrap();
    d
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    /// Every charge followed (anywhere) by its full credit: every statement amount is zero.
    #[test]
    fn a_charge_and_its_full_credit_net_to_zero(lines in proptest::collection::vec(line(), 1..40)) {
        let d = setup();
        let mut all = lines.clone();
        all.extend(lines.iter().rev().map(|l| Line { cents: -l.cents, ..l.clone() }));
        std::fs::write(d.path().join("b.csv"), csv(&all)).unwrap();
        prop_assert_eq!(run(d.path(), &["b.csv"], "out", &[]), 0);
        let summary = std::fs::read_to_string(d.path().join("out/summary.csv")).unwrap();
        for row in summary.lines().skip(1) {
            let cols: Vec<&str> = row.split(',').collect();
            prop_assert_eq!(cols[cols.len() - 1], "0.00", "{}", row);
            prop_assert_eq!(cols[cols.len() - 2], "0.00", "{}", row);
        }
    }

    /// One file, the same rows split into several files at arbitrary points, with
    /// 1 or 2 threads, any chunk size and any spill budget (groups sorted into
    /// run files and merged back): the statements are byte-identical.
    #[test]
    fn splitting_threads_and_chunks_change_no_statement_byte(
        lines in proptest::collection::vec(line(), 1..60),
        cuts in proptest::collection::vec(0usize..60, 0..4),
        chunk in 4096usize..9000,
        spill in 0usize..8,
    ) {
        let d = setup();
        std::fs::write(d.path().join("one.csv"), csv(&lines)).unwrap();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (lines.len() + 1)).collect();
        cuts.push(0);
        cuts.push(lines.len());
        cuts.sort();
        cuts.dedup();
        std::fs::create_dir(d.path().join("split")).unwrap();
        for (i, w) in cuts.windows(2).enumerate() {
            std::fs::write(d.path().join(format!("split/part{i:02}.csv")), csv(&lines[w[0]..w[1]])).unwrap();
        }
        prop_assert_eq!(run(d.path(), &["one.csv"], "a", &["--threads", "1"]), 0);
        let chunk_s = chunk.to_string();
        let spill_s = spill.to_string();
        prop_assert_eq!(
            run(d.path(), &["one.csv"], "b", &["--threads", "2", "--chunk-bytes", &chunk_s, "--spill-after", &spill_s]),
            0
        );
        prop_assert_eq!(run(d.path(), &["split"], "c", &["--threads", "2"]), 0);
        let a = tree(&d.path().join("a"));
        let b = tree(&d.path().join("b"));
        let c = tree(&d.path().join("c"));
        prop_assert_eq!(&a, &b, "--threads 1 and --threads 2 with small chunks and spilled groups differ");
        let statements = |t: &BTreeMap<String, Vec<u8>>| -> BTreeMap<String, Vec<u8>> {
            t.iter()
                .filter(|(k, _)| k.starts_with("partners") || *k == "summary.csv")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        prop_assert_eq!(statements(&a), statements(&c), "splitting into files changed a statement");
        // The ledger differs only in provenance (file and line).
        let strip = |t: &BTreeMap<String, Vec<u8>>| -> Vec<String> {
            let mut rows: Vec<String> = String::from_utf8(t["ledger.csv"].clone()).unwrap()
                .lines()
                .map(|l| { let mut f: Vec<&str> = l.split(',').collect(); if f.len() > 9 { f.drain(7..9); } f.join(",") })
                .collect();
            rows.sort();
            rows
        };
        prop_assert_eq!(strip(&a), strip(&c));
    }
}
