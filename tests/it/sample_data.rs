//! End-to-end checks of the real binary: the committed `sample-data/` gives
//! exactly the results `sample-data/README.md` promises, and `porledger sample`
//! writes the same bytes twice and an input set `porledger run` accepts whole.

use std::collections::BTreeMap;

use crate::common::{
    assert_code, csv_rows, porledger, porledger_in, read, read_json as json, run_sample, stdout,
    tree, Sample,
};

/// `(partner_id, program_id, currency, lines, basis_amount, accrual_amount)`
/// of every `summary.csv` row. The whole file (names, quoting, header) is a
/// snapshot in `snapshots.rs`; these are the hand derivations.
fn amounts(summary: &str) -> Vec<[String; 6]> {
    csv_rows(summary)[1..]
        .iter()
        .map(|r| [0, 2, 3, 4, 5, 6].map(|i| r[i].clone()))
        .collect()
}

/// The rows of `amounts`, written as `partner program currency lines basis accrual`.
fn expect(rows: &[&str]) -> Vec<[String; 6]> {
    rows.iter()
        .map(|r| {
            let f: Vec<&str> = r.split_whitespace().collect();
            assert_eq!(f.len(), 6, "{r}");
            [0, 1, 2, 3, 4, 5].map(|i| f[i].to_string())
        })
        .collect()
}

#[test]
fn committed_sample_gives_the_readme_results() {
    let dir = run_sample(Sample::Main, &[]);
    let out = dir.path().join("out");

    // sample-data/README.md, "summary.csv": per partner, program and currency.
    assert_eq!(
        amounts(&read(out.join("summary.csv"))),
        expect(&[
            "1093377 por-core EUR 12 7128.00 285.12",
            "1093377 por-core USD 48 6840.00 273.60",
            "1093377 reseller USD 48 6840.00 68.40",
            "500275 por-core EUR 72 31430.80 1257.24",
            "612884 por-core EUR 52 12020.50 480.82",
            "612884 reseller EUR 176 23294.50 232.94",
            "731150 pal EUR 48 16372.80 122.80",
            "731150 por-core EUR 24 4852.80 194.11",
            "845002 pal EUR 48 16372.80 122.80",
            "845002 por-core EUR 78 13668.80 546.75",
        ])
    );

    let s = json(out.join("summary.json"));
    let totals: BTreeMap<String, String> = s["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["currency"].as_str().unwrap().to_string(),
                t["accrual_amount"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        totals,
        BTreeMap::from([
            ("EUR".to_string(), "3242.58".to_string()),
            ("USD".to_string(), "342.00".to_string())
        ])
    );

    let rows = &s["rows"];
    let t = &rows["total"];
    assert_eq!(t["rows"], 270);
    assert_eq!(t["accrued"], 221);
    assert_eq!(t["not_eligible"], 49);
    assert_eq!(t["rejected"], 0);
    assert_eq!(t["dated_after_period"], 0);
    assert_eq!(t["balanced"], true);
    let reasons = &t["not_eligible_by_reason"];
    assert_eq!(reasons["excluded-product"], 13);
    assert_eq!(reasons["no-designation"], 24);
    assert_eq!(reasons["outside-window"], 12);
    assert_eq!(reasons["rule-not-in-force"], 0);
    let per_file: Vec<u64> = rows["billing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rows"].as_u64().unwrap())
        .collect();
    assert_eq!(per_file, [22, 22, 23, 23, 24, 23, 22, 22, 23, 22, 22, 22]);
    let d = &rows["designations"];
    assert_eq!(
        (&d["rows"], &d["accepted"], &d["rejected"]),
        (&13.into(), &13.into(), &0.into())
    );

    let rejects = read(out.join("rejects.csv"));
    assert_eq!(rejects, "source_file,source_line,column,value,reason\r\n");
}

#[test]
fn sample_command_is_deterministic_and_runs_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = |name: &str| {
        let o = porledger_in(
            tmp.path(),
            ["sample", "--out", name, "--rows", "2000", "--seed", "7"],
        );
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains("2,000 rows"), "{stderr}");
        tree(&tmp.path().join(name))
    };
    let a = gen("a");
    let b = gen("b");
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        [
            "billing/invoice-reconciliation-0001.csv",
            "designations.csv",
            "manifest.json",
            "rules.toml"
        ]
    );
    assert!(a == b, "two runs with the same --rows and --seed differ");

    let o = porledger_in(
        tmp.path(),
        [
            "run",
            "--period",
            "2025-11..2026-10",
            "--billing",
            "a/billing",
            "--designations",
            "a/designations.csv",
            "--rules",
            "a/rules.toml",
            "--out",
            "out",
            "--quiet",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let t = &json(tmp.path().join("out/summary.json"))["rows"]["total"];
    assert_eq!(t["rows"], 2000);
    assert_eq!(t["rejected"], 0);
    assert!(t["accrued"].as_u64().unwrap() > 1000, "{t}");
}

/// `porledger sample` publishes like a run: it writes over nothing of yours
/// (a `rules.toml` or billing file of your own: exit 2, nothing changed),
/// replaces an earlier sample, and neither it nor `run` replaces the other's
/// output.
#[test]
fn sample_never_writes_over_files_it_did_not_write() {
    let tmp = tempfile::tempdir().unwrap();
    let sample = |out: &str, rows: &str| {
        porledger_in(
            tmp.path(),
            ["sample", "--out", out, "--rows", rows, "--seed", "7"],
        )
    };
    let err = |o: &std::process::Output| String::from_utf8_lossy(&o.stderr).into_owned();
    // A directory of yours: your rules.toml stays, nothing is added.
    let mine = tmp.path().join("mine");
    std::fs::create_dir_all(mine.join("billing")).unwrap();
    std::fs::write(mine.join("rules.toml"), "# my own rules\n").unwrap();
    let before = tree(&mine);
    let o = sample("mine", "100");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("mine"), "{}", err(&o));
    assert!(tree(&mine) == before, "sample changed a directory of yours");
    // An earlier sample is replaced by the next.
    let o = sample("s", "100");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let o = sample("s", "200");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(json(tmp.path().join("s/manifest.json"))["rows"], 200);
    // ... unless a file of yours was put in it.
    let s = tmp.path().join("s");
    std::fs::write(s.join("billing/old.csv"), "x\n").unwrap();
    let before = tree(&s);
    let o = sample("s", "100");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("old.csv"), "{}", err(&o));
    assert!(tree(&s) == before);
    std::fs::remove_file(s.join("billing/old.csv")).unwrap();
    // A run never replaces a sample, and a sample never a run.
    let run = |out: &str| {
        porledger_in(
            tmp.path(),
            [
                "run",
                "--period",
                "2026-10",
                "--billing",
                "s/billing",
                "--designations",
                "s/designations.csv",
                "--rules",
                "s/rules.toml",
                "--out",
                out,
                "--quiet",
                "--no-pdf",
            ],
        )
    };
    let before = tree(&s);
    let o = run("s");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("holds a sample input set"), "{}", err(&o));
    assert!(tree(&s) == before);
    let o = run("out");
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    let ran = tree(&tmp.path().join("out"));
    let o = sample("out", "100");
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("holds the output of `porledger run`"),
        "{}",
        err(&o)
    );
    assert!(tree(&tmp.path().join("out")) == ran);
}

/// `sample-data/hard-cases/`: the expectations of its README table.
#[test]
fn hard_cases_sample_matches_its_readme() {
    let dir = run_sample(Sample::Hard, &["--quiet", "--no-pdf"]);
    let out = dir.path().join("out");
    assert_eq!(
        amounts(&read(out.join("summary.csv"))),
        expect(&[
            // c1: DPOR moves from P-A to P-B on Oct 11: 10 and 21 of 31 days.
            "P-A por-core EUR 1 1000.00 40.00",
            "P-B por-core EUR 1 2100.00 84.00",
            // c2, c3, c4: from the first day, only the last day, until the last day.
            "P-C por-core EUR 1 3100.00 124.00",
            "P-D por-core EUR 1 100.00 4.00",
            "P-E por-core EUR 1 3000.00 120.00",
            // c5: 1000.00 x 10/31 and the rest, together exactly 40.00.
            "P-F por-core EUR 1 322.580645 12.90",
            "P-G por-core EUR 1 677.419355 27.10",
            // c6: two DPOR partners at once, split.
            "P-H por-core EUR 1 1000.00 20.00",
            "P-I por-core EUR 1 1000.00 20.00",
            // c7: the August credit follows the designation of August.
            "P-J por-core EUR 1 -500.00 -20.00",
            "P-K por-core EUR 1 1000.00 40.00",
            // c8: priority de-duplication pays engagement once.
            "P-L engagement EUR 1 1000.00 10.00",
            "P-L por-core EUR 1 1000.00 40.00",
            // c9, c10: two currencies, never added.
            "P-M por-core EUR 1 500.00 20.00",
            "P-M por-core USD 1 1000.00 40.00",
        ])
    );
    let st = read(out.join("partners/P-M/statement.csv"));
    assert!(
        st.ends_with(
            "total,USD,1000.00,40.00,EUR,0.9,2026-10-15,36.00\r\ntotal_converted,EUR,,56.00\r\n"
        ),
        "{st}"
    );
}

/// `sample-data/usage/`: the expectations of its README table.
#[test]
fn usage_sample_matches_its_readme() {
    let dir = run_sample(Sample::Usage, &["--quiet", "--no-pdf"]);
    let out = dir.path().join("out");
    assert_eq!(
        amounts(&read(out.join("summary.csv"))),
        expect(&[
            // 62 compensable units: 10 x 1.00 + 12 x 2.50 + 40 x 2.50.
            "5000101 cpor-usage USD 3 62.00 140.00",
            // 43,200.00 x 2 % (lowest attainment OneDrive 0.253 reaches 15 %).
            "5000202 dpor-tiered USD 1 43200.00 864.00",
        ])
    );
    let t = &json(out.join("summary.json"))["usage"]["total"];
    assert_eq!(
        (
            t["rows"].as_u64(),
            t["accrued"].as_u64(),
            t["not_eligible"].as_u64(),
            t["rejected"].as_u64()
        ),
        (Some(126), Some(3), Some(123), Some(0))
    );
    // explain shows how each usage amount's units were counted, from
    // attainment.csv: a line can be checked by hand.
    let o = porledger([
        "explain",
        "--out",
        out.to_str().unwrap(),
        "--partner",
        "5000101",
    ]);
    assert_code(&o, 0);
    let text = stdout(&o);
    assert!(
        text.contains(
            "sample-data/usage/cpor-usage.csv:15  usage of 2026-10  accrual month 2026-10  \
             workload Exchange  CPOR by sample-data/usage/designations-usage.csv:2 ["
        ) && text.contains(
            "]\n      190 monthly active users of 250 paid units (usage-report): attainment \
             0.76, target 0.40 reached; prior high-water mark 180: 10 compensable units\n      \
             10 units x rate 1.0 x share 1.0 = 10.00\n"
        ),
        "{text}"
    );
    assert!(text.contains("total USD: 140.00"), "{text}");
}
