//! FOCUS (FinOps Open Cost and Usage Specification) billing input, as CSV: the
//! FinOps Foundation's public sample (no `x_CustomerId`: every row rejected,
//! with file, line and column) and a hand-made Microsoft partner file with
//! hand-computed amounts. Also: Parquet in a build with and without the
//! `parquet` feature.

use std::path::Path;
use std::process::Output;

use crate::common::{assert_code, fixture, porledger_in, read as read_file, stderr};

pub const DESIGNATIONS: &str = "\
customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to
C1,P-A,Alpha,DPOR,,,,2026-10-11,
C2,P-B,Beta,DPOR,,,,2024-01-01,
";

pub const RULES: &str = r#"
[[program]]
id = "por-core"
associations = ["POR", "DPOR"]
rate = "0.04"
window_months = 36

[[program]]
id = "reseller"
associations = ["RESELLER"]
rate = "0.01"
"#;

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("d.csv"), DESIGNATIONS).unwrap();
    std::fs::write(dir.path().join("r.toml"), RULES).unwrap();
    dir
}

fn run(dir: &Path, billing: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--period", "2026-10", "--billing"];
    args.push(billing.to_str().unwrap());
    args.extend([
        "--designations",
        "d.csv",
        "--rules",
        "r.toml",
        "--out",
        "out",
        "-q",
    ]);
    args.extend_from_slice(extra);
    porledger_in(dir, args)
}

fn read(dir: &Path, rel: &str) -> String {
    read_file(dir.join(rel))
}

#[test]
fn focus_sample_rows_without_x_customer_id_are_rejected_with_file_line_column() {
    let dir = setup();
    let billing = dir.path().join("focus_sample_1.0.csv");
    std::fs::copy(fixture("focus_sample_1.0.csv"), &billing).unwrap();
    let out = run(
        dir.path(),
        Path::new("focus_sample_1.0.csv"),
        &["--max-rejects", "5000"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rejects = read(dir.path(), "out/rejects.csv");
    let rows: Vec<&str> = rejects.lines().skip(1).collect();
    assert_eq!(rows.len(), 1000, "every row is reported, none accepted");
    // Line 2 is the first AWS row; line 948 the first (shifted) Microsoft row.
    for line in [2, 948, 1001] {
        let prefix = format!("focus_sample_1.0.csv,{line},x_CustomerId,,customer ID is empty");
        assert!(
            rows.iter().any(|r| r.starts_with(&prefix)),
            "no reject {prefix}"
        );
    }
    assert!(rows.iter().all(|r| r.contains(",x_CustomerId,")));
    let summary: serde_json::Value =
        serde_json::from_str(&read(dir.path(), "out/summary.json")).unwrap();
    let t = &summary["rows"]["total"];
    assert_eq!(
        (
            t["rows"].as_u64(),
            t["accrued"].as_u64(),
            t["rejected"].as_u64()
        ),
        (Some(1000), Some(0), Some(1000))
    );
    assert_eq!(
        summary["rows"]["billing"][0]["format"].as_str(),
        Some("FOCUS cost and usage")
    );
}

/// The hand-computed results of `focus_handmade.csv` (see tests/fixtures/README.md):
///
/// - line 2: C1, 3100.00 EUR, 2026-10-01 to 2026-11-01 exclusive = 31 days;
///   P-A holds DPOR from 2026-10-11: 21 of 31 days = 2100.00, 4 % = 84.00;
/// - line 3: C2, hourly usage ending 23:00 the same day = 1 day, 10.00 -> 0.40;
/// - line 4: ChargeCategory Tax: not eligible (not-revenue);
/// - line 5: x_CustomerId NULL: rejected;
/// - line 6: C2 credit -1000.00 (1 day): P-B -40.00, reseller R-7 1 % -10.00.
pub const HANDMADE_SUMMARY: &str = "\
partner_id,partner_name,program_id,currency,lines,basis_amount,accrual_amount\r
P-A,Alpha,por-core,EUR,1,2100.00,84.00\r
P-B,Beta,por-core,EUR,2,-990.00,-39.60\r
R-7,,reseller,EUR,1,-1000.00,-10.00\r
";

#[test]
fn focus_handmade_accrues_hand_computed_amounts() {
    let dir = setup();
    let out = run(dir.path(), &fixture("focus_handmade.csv"), &[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(read(dir.path(), "out/summary.csv"), HANDMADE_SUMMARY);
    let ledger = read(dir.path(), "out/ledger.csv");
    let l: Vec<&str> = ledger.lines().collect();
    assert_eq!(l.len(), 5, "{ledger}");
    assert!(
        l[1].starts_with("P-A,c1,por-core,DPOR,s1,2026-10-01,") && l[1].ends_with(",2,21,31,,,"),
        "{}",
        l[1]
    );
    assert!(
        l[2].contains(",3,10.00,0.04,1.0,0.40,EUR,3,1,1"),
        "{}",
        l[2]
    );
    let rejects = read(dir.path(), "out/rejects.csv");
    let r: Vec<&str> = rejects.lines().skip(1).collect();
    assert_eq!(r.len(), 1, "{rejects}");
    assert!(
        r[0].contains(",5,x_CustomerId,,customer ID is empty"),
        "{}",
        r[0]
    );
    // The tax row is not revenue: not eligible, with its amount, not rejected.
    let ne = read(dir.path(), "out/not-eligible.csv");
    assert!(
        ne.lines()
            .any(|l| l.contains(",4,c1,s1,2026-10-01,589.00,EUR,not-revenue,")),
        "{ne}"
    );
}

/// Parquet billing input and `--ledger-format parquet` in both feature
/// configurations: without the feature both are a clear fatal error that says
/// how to build it; with it, a file that is not Parquet is a fatal error naming
/// the file, and the ledger is written as Parquet. Both branches compile in
/// every build (`cfg!`, not `#[cfg]`), and CI runs the test in both.
#[test]
fn parquet_is_served_with_the_feature_and_a_clear_fatal_error_without_it() {
    let dir = setup();
    std::fs::write(dir.path().join("b.parquet"), b"PAR1").unwrap();
    let out = run(dir.path(), Path::new("b.parquet"), &[]);
    assert_code(&out, 2);
    let err = stderr(&out);
    if cfg!(feature = "parquet") {
        assert!(
            err.contains("b.parquet") && err.contains("cannot read Parquet"),
            "{err}"
        );
    } else {
        assert!(
            err.contains("b.parquet") && err.contains("cargo build --release --features parquet"),
            "{err}"
        );
    }
    assert!(!dir.path().join("out").exists(), "nothing published");

    let out = run(
        dir.path(),
        &fixture("focus_handmade.csv"),
        &["--ledger-format", "parquet"],
    );
    if cfg!(feature = "parquet") {
        // Two rows of the fixture are rejected (see above): exit 1, published.
        assert_code(&out, 1);
        let ledger = std::fs::read(dir.path().join("out/ledger.parquet")).unwrap();
        assert!(ledger.starts_with(b"PAR1"), "not a Parquet file");
        assert!(!dir.path().join("out/ledger.csv").exists());
        assert_eq!(read(dir.path(), "out/summary.csv"), HANDMADE_SUMMARY);
    } else {
        assert_code(&out, 2);
        let err = stderr(&out);
        assert!(
            err.contains("--ledger-format parquet")
                && err.contains("cargo build --release --features parquet"),
            "{err}"
        );
        assert!(!dir.path().join("out").exists(), "nothing published");
    }
}
