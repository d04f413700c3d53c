//! Flags are validated before any work: a bad `--threads` is a clear error
//! naming the flag (exit 2), never a panic, a hang or a half-written output.

use std::path::Path;
use std::process::Output;

use crate::common::porledger;

fn run_with_threads(out: &Path, threads: &str) -> Output {
    porledger(&[
        "run",
        "--period",
        "2026-10",
        "--billing",
        "sample-data/billing",
        "--designations",
        "sample-data/designations.csv",
        "--rules",
        "sample-data/rules.toml",
        "--no-pdf",
        "--threads",
        threads,
        "--out",
        out.to_str().expect("utf-8 path"),
    ])
}

fn assert_threads_rejected(o: &Output, value: &str) {
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "--threads {value}: {stderr}");
    assert!(
        stderr.contains(&format!("--threads {value}")) && stderr.contains("between 1 and 256"),
        "--threads {value}: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn run_rejects_threads_out_of_range() {
    let tmp = tempfile::tempdir().unwrap();
    for value in ["0", "20000", "18446744073709551615"] {
        let out = tmp.path().join(format!("out-{value}"));
        let o = run_with_threads(&out, value);
        assert_threads_rejected(&o, value);
        assert!(
            !out.exists(),
            "--threads {value} published {}",
            out.display()
        );
    }
}

#[test]
fn validate_and_render_reject_threads_out_of_range() {
    let tmp = tempfile::tempdir().unwrap();
    for value in ["0", "20000"] {
        let o = porledger(&[
            "validate",
            "--billing",
            "sample-data/billing",
            "--designations",
            "sample-data/designations.csv",
            "--rules",
            "sample-data/rules.toml",
            "--threads",
            value,
        ]);
        assert_threads_rejected(&o, value);
        let o = porledger(&[
            "render",
            "--out",
            tmp.path().to_str().unwrap(),
            "--threads",
            value,
        ]);
        assert_threads_rejected(&o, value);
    }
}

#[test]
fn threads_within_range_still_run() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = run_with_threads(&out, "256");
    assert!(
        matches!(o.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out.join("manifest.json").exists());
}
