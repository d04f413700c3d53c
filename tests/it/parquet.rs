//! Parquet in and out (cargo feature `parquet`), on the real binary:
//! Parquet billing gives the same results as the same rows as CSV; ledger.parquet
//! equals ledger.csv row by row to the cent; ledger.parquet is byte-identical
//! across runs and thread counts; money stored as floating point is refused.
#![cfg(feature = "parquet")]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Output;

use polars::prelude::*;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::common::{assert_published as ok, porledger_in as porledger, repo as root};
use crate::focus::{DESIGNATIONS, HANDMADE_SUMMARY, RULES};

/// `porledger run` on the committed sample's designations and rules.
fn run_sample(dir: &Path, billing: &Path, out: &str, extra: &[&str]) -> Output {
    let r = root();
    let mut args: Vec<String> = vec![
        "run".into(),
        "--period".into(),
        "2025-11..2026-10".into(),
        "--billing".into(),
        billing.display().to_string(),
        "--designations".into(),
        r.join("sample-data/designations.csv").display().to_string(),
        "--rules".into(),
        r.join("sample-data/rules.toml").display().to_string(),
        "--out".into(),
        out.into(),
        "-q".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    porledger(dir, args)
}

/// How to store a money column in a test Parquet file.
#[derive(Clone, Copy, PartialEq)]
enum Money {
    Decimal,
    Float,
    /// Decimal money, and the partner ID columns as Float64, as pandas
    /// writes an integer column with blanks.
    DecimalFloatIds,
}

const FLOAT_IDS: [&str; 2] = ["MpnId", "ResellerMpnId"];

/// Converts a billing CSV into Parquet: text columns as String, the money
/// columns as Decimal (exact, the column's largest scale) or as Float64.
fn csv_to_parquet(csv_path: &Path, pq_path: &Path, money_cols: &[&str], money: Money) {
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(true)
        .from_path(csv_path)
        .unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    let mut cols: Vec<Vec<String>> = vec![Vec::new(); header.len()];
    for rec in rdr.records() {
        let rec = rec.unwrap();
        if rec.len() != header.len() {
            continue; // a ragged row: rejected from the CSV, left out here
        }
        for (c, v) in cols.iter_mut().zip(rec.iter()) {
            c.push(v.to_string());
        }
    }
    let mut columns: Vec<Column> = Vec::new();
    let height = cols[0].len();
    for (name, values) in header.iter().zip(cols) {
        let bare = name.trim_start_matches('\u{feff}').to_ascii_lowercase();
        let is_money = money_cols.iter().any(|m| m.to_ascii_lowercase() == bare);
        let float_id = money == Money::DecimalFloatIds
            && FLOAT_IDS.iter().any(|m| m.to_ascii_lowercase() == bare);
        let s = if float_id {
            let fs: Vec<Option<f64>> = values.iter().map(|v| v.parse::<f64>().ok()).collect();
            Series::new(name.as_str().into(), fs)
        } else if is_money && money != Money::Float {
            let ds: Vec<Option<Decimal>> = values
                .iter()
                .map(|v| (!v.is_empty()).then(|| v.parse::<Decimal>().unwrap()))
                .collect();
            let scale = ds.iter().flatten().map(|d| d.scale()).max().unwrap_or(0);
            let raw: Vec<Option<i128>> = ds
                .iter()
                .map(|d| {
                    d.map(|mut d| {
                        d.rescale(scale);
                        d.mantissa()
                    })
                })
                .collect();
            Int128Chunked::from_slice_options(name.as_str().into(), &raw)
                .into_decimal(38, scale as usize)
                .unwrap()
                .into_series()
        } else if is_money {
            let fs: Vec<Option<f64>> = values.iter().map(|v| v.parse::<f64>().ok()).collect();
            Series::new(name.as_str().into(), fs)
        } else {
            let vs: Vec<Option<String>> = values
                .into_iter()
                .map(|v| (!v.is_empty()).then_some(v))
                .collect();
            Series::new(name.as_str().into(), vs)
        };
        columns.push(s.into());
    }
    let mut df = DataFrame::new(height, columns).unwrap();
    ParquetWriter::new(File::create(pq_path).unwrap())
        .finish(&mut df)
        .unwrap();
}

const MONEY: [&str; 4] = ["Subtotal", "Total", "UnitPrice", "TaxTotal"];

/// sample-data/billing as Parquet files in `dir/billing-pq`.
fn sample_as_parquet(dir: &Path) -> PathBuf {
    sample_as_parquet_with(dir, "billing-pq", Money::Decimal)
}

fn sample_as_parquet_with(dir: &Path, name: &str, money: Money) -> PathBuf {
    let pq = dir.join(name);
    std::fs::create_dir_all(&pq).unwrap();
    for e in std::fs::read_dir(root().join("sample-data/billing")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_stem().unwrap().to_string_lossy().into_owned();
        csv_to_parquet(&p, &pq.join(format!("{name}.parquet")), &MONEY, money);
    }
    pq
}

/// Partner ID columns stored as DOUBLE (pandas' way with blanks): read as
/// the IDs they hold (`500275.0` is `500275`, a blank no reseller), so the
/// results are the CSV's.
#[test]
fn partner_ids_stored_as_floats_are_the_ids_they_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let pq = sample_as_parquet_with(tmp.path(), "billing-float-ids", Money::DecimalFloatIds);
    ok(&run_sample(
        tmp.path(),
        &root().join("sample-data/billing"),
        "out-csv",
        &[],
    ));
    ok(&run_sample(tmp.path(), &pq, "out-pq", &[]));
    let read = |p: &str| std::fs::read_to_string(tmp.path().join(p)).unwrap();
    let summary = read("out-pq/summary.csv");
    assert_eq!(read("out-csv/summary.csv"), summary);
    assert!(!summary.contains(".0,"), "{summary}");
}

#[test]
fn parquet_billing_gives_the_same_results_as_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let pq = sample_as_parquet(tmp.path());
    let a = run_sample(
        tmp.path(),
        &root().join("sample-data/billing"),
        "out-csv",
        &[],
    );
    ok(&a);
    let b = run_sample(tmp.path(), &pq, "out-pq", &[]);
    ok(&b);
    let read = |p: &str| std::fs::read_to_string(tmp.path().join(p)).unwrap();
    assert_eq!(read("out-csv/summary.csv"), read("out-pq/summary.csv"));
    let rows = |p: &str| {
        let v: serde_json::Value = serde_json::from_str(&read(p)).unwrap();
        v["rows"]["total"].clone()
    };
    let (rc, rp) = (rows("out-csv/summary.json"), rows("out-pq/summary.json"));
    assert_eq!(rc, rp, "same row accounting");
    assert!(rp["rows"].as_u64().unwrap() > 200, "{rp}");
    // Provenance: a Parquet ledger row names the .parquet file and a line.
    let ledger = read("out-pq/ledger.csv");
    assert!(
        ledger.lines().nth(1).unwrap().contains(".parquet,"),
        "{ledger}"
    );
    // The manifest hashes the Parquet input like any other.
    let m: serde_json::Value = serde_json::from_str(&read("out-pq/manifest.json")).unwrap();
    let first = &m["inputs"][0];
    let bytes = std::fs::read(first["path"].as_str().unwrap()).unwrap();
    assert_eq!(
        first["sha256"].as_str().unwrap(),
        format!("{:x}", Sha256::digest(&bytes))
    );
}

#[test]
fn focus_parquet_with_timestamps_and_decimals_gives_the_hand_computed_summary() {
    // tests/fixtures/focus_handmade.csv as Parquet: BilledCost Decimal(38, 2),
    // ChargePeriodStart/End as UTC timestamps, NULL as real nulls.
    let tmp = tempfile::tempdir().unwrap();
    let src = root().join("tests/fixtures/focus_handmade.csv");
    let mut rdr = csv::Reader::from_path(&src).unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    let recs: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    let mut columns: Vec<Column> = Vec::new();
    for (i, name) in header.iter().enumerate() {
        let vals: Vec<Option<String>> = recs
            .iter()
            .map(|r| Some(r[i].to_string()).filter(|v| v != "NULL"))
            .collect();
        let s = match name.as_str() {
            "BilledCost" => {
                let raw: Vec<Option<i128>> = vals
                    .iter()
                    .map(|v| {
                        v.as_ref().map(|v| {
                            let mut d: Decimal = v.parse().unwrap();
                            d.rescale(2);
                            d.mantissa()
                        })
                    })
                    .collect();
                Int128Chunked::from_slice_options(name.as_str().into(), &raw)
                    .into_decimal(38, 2)
                    .unwrap()
                    .into_series()
            }
            "ChargePeriodStart" | "ChargePeriodEnd" => {
                let micros: Vec<Option<i64>> = vals
                    .iter()
                    .map(|v| {
                        v.as_ref().map(|v| {
                            let t = v.trim_end_matches('Z').replace(' ', "T");
                            chrono::NaiveDateTime::parse_from_str(&t, "%Y-%m-%dT%H:%M:%S")
                                .unwrap()
                                .and_utc()
                                .timestamp_micros()
                        })
                    })
                    .collect();
                Int64Chunked::from_slice_options(name.as_str().into(), &micros)
                    .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                    .into_series()
            }
            _ => Series::new(name.as_str().into(), vals),
        };
        columns.push(s.into());
    }
    let mut df = DataFrame::new(recs.len(), columns).unwrap();
    let pq = tmp.path().join("focus.parquet");
    ParquetWriter::new(File::create(&pq).unwrap())
        .finish(&mut df)
        .unwrap();
    // The designations and rules of the CSV test in `focus.rs`.
    std::fs::write(tmp.path().join("d.csv"), DESIGNATIONS).unwrap();
    std::fs::write(tmp.path().join("r.toml"), RULES).unwrap();
    let out = porledger(
        tmp.path(),
        [
            "run",
            "--period",
            "2026-10",
            "--billing",
            "focus.parquet",
            "--designations",
            "d.csv",
            "--rules",
            "r.toml",
            "--out",
            "out",
            "-q",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let read = |p: &str| std::fs::read_to_string(tmp.path().join(p)).unwrap();
    // The hand-computed summary of the CSV fixture (see `focus.rs`).
    assert_eq!(read("out/summary.csv"), HANDMADE_SUMMARY);
    // Same lines as the CSV fixture: data row n is line n + 1.
    let rejects = read("out/rejects.csv");
    assert_eq!(rejects.lines().count(), 2, "{rejects}");
    assert!(
        rejects.contains("focus.parquet,5,x_CustomerId,,customer ID is empty"),
        "{rejects}"
    );
    // The tax row is not revenue: not eligible, with its amount, not rejected.
    let ne = read("out/not-eligible.csv");
    assert!(
        ne.lines()
            .any(|l| l.contains("focus.parquet,4,c1,s1,2026-10-01,589.00,EUR,not-revenue,")),
        "{ne}"
    );
}

#[test]
fn float_money_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let pq = tmp.path().join("f64.parquet");
    csv_to_parquet(
        &root().join("sample-data/billing/2026-10.csv"),
        &pq,
        &MONEY,
        Money::Float,
    );
    let out = run_sample(tmp.path(), &pq, "out", &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("f64.parquet")
            && err.contains("column 'Subtotal'")
            && err.contains("floating point"),
        "{err}"
    );
    assert!(!tmp.path().join("out").exists(), "nothing published");
}

/// Every row of ledger.parquet as text cells in ledger.csv's notation.
fn parquet_rows(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let df = ParquetReader::new(File::open(path).unwrap())
        .finish()
        .unwrap();
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let mut rows = vec![Vec::new(); df.height()];
    for col in df.columns() {
        let s = col.as_materialized_series();
        match s.dtype() {
            DataType::String => {
                for (r, v) in rows.iter_mut().zip(s.str().unwrap().iter()) {
                    r.push(v.unwrap().to_string());
                }
            }
            DataType::Int64 => {
                for (r, v) in rows.iter_mut().zip(s.i64().unwrap().iter()) {
                    r.push(v.map(|v| v.to_string()).unwrap_or_default());
                }
            }
            DataType::Date => {
                let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
                for (r, v) in rows.iter_mut().zip(s.date().unwrap().physical().iter()) {
                    r.push((epoch + chrono::TimeDelta::days(v.unwrap() as i64)).to_string());
                }
            }
            DataType::Decimal(38, 24) => {
                for (r, v) in rows.iter_mut().zip(s.decimal().unwrap().physical().iter()) {
                    let d = Decimal::try_from_i128_with_scale(v.unwrap(), 24).unwrap();
                    r.push(d.normalize().to_string());
                }
            }
            d => panic!("unexpected type {d} of {}", s.name()),
        }
    }
    (names, rows)
}

#[test]
fn ledger_parquet_equals_ledger_csv_to_the_cent() {
    let tmp = tempfile::tempdir().unwrap();
    let billing = root().join("sample-data/billing");
    ok(&run_sample(tmp.path(), &billing, "out-csv", &[]));
    ok(&run_sample(
        tmp.path(),
        &billing,
        "out-pq",
        &["--ledger-format", "parquet"],
    ));
    assert!(!tmp.path().join("out-pq/ledger.csv").exists());
    let (names, prows) = parquet_rows(&tmp.path().join("out-pq/ledger.parquet"));
    let mut rdr = csv::Reader::from_path(tmp.path().join("out-csv/ledger.csv")).unwrap();
    let header: Vec<String> = rdr.headers().unwrap().iter().map(String::from).collect();
    assert_eq!(names, header);
    let crows: Vec<csv::StringRecord> = rdr.records().map(|r| r.unwrap()).collect();
    assert_eq!(crows.len(), prows.len());
    assert!(crows.len() > 100);
    let decimal_cols = ["basis_amount", "rate", "share", "accrual_amount"];
    for (i, (c, p)) in crows.iter().zip(&prows).enumerate() {
        for (j, name) in header.iter().enumerate() {
            let want = if decimal_cols.contains(&name.as_str()) {
                c[j].parse::<Decimal>().unwrap().normalize().to_string()
            } else {
                c[j].to_string()
            };
            assert_eq!(p[j], want, "row {} column {name}", i + 1);
        }
    }
    // The summary is the same, and the manifest hashes ledger.parquet.
    let read = |p: &str| std::fs::read_to_string(tmp.path().join(p)).unwrap();
    assert_eq!(read("out-csv/summary.csv"), read("out-pq/summary.csv"));
    let m: serde_json::Value = serde_json::from_str(&read("out-pq/manifest.json")).unwrap();
    let entry = m["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "ledger.parquet")
        .expect("ledger.parquet in the manifest")
        .clone();
    let bytes = std::fs::read(tmp.path().join("out-pq/ledger.parquet")).unwrap();
    assert_eq!(
        entry["sha256"].as_str().unwrap(),
        format!("{:x}", Sha256::digest(&bytes))
    );
}

#[test]
fn ledger_parquet_is_byte_identical_across_runs_and_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let billing = root().join("sample-data/billing");
    let mut files = Vec::new();
    for (out, threads) in [("a", "1"), ("b", "2"), ("c", "2")] {
        ok(&run_sample(
            tmp.path(),
            &billing,
            out,
            &[
                "--ledger-format",
                "parquet",
                "--threads",
                threads,
                "--chunk-bytes",
                "4096",
            ],
        ));
        files.push(std::fs::read(tmp.path().join(out).join("ledger.parquet")).unwrap());
    }
    assert!(files[0].starts_with(b"PAR1"));
    assert!(files[0] == files[1] && files[1] == files[2]);
}

/// An amount past `ledger.parquet`'s 14 integer digits (a VND line of 1e14)
/// stops the run naming the ledger row as published and the billing line it
/// comes from, never the staging directory; the CSV ledger holds it.
#[test]
fn an_amount_past_the_parquet_ledger_names_its_billing_line() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(
        dir.join("billing.csv"),
        "CustomerId,CustomerName,SubscriptionId,ChargeStartDate,ChargeEndDate,ChargeType,Subtotal,Currency,PublisherName,ProductName\n\
         c1,Small,s1,10/1/2026,10/31/2026,cycleCharge,1000.00,EUR,Microsoft Corporation,M365\n\
         c2,Big VN,s2,10/1/2026,10/31/2026,cycleCharge,100000000000000,VND,Microsoft Corporation,Azure plan\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("des.csv"),
        "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n\
         c1,P1,One,POR,,,,2025-01-01,\nc2,P1,One,POR,,,,2025-01-01,\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("rules.toml"),
        "[[program]]\nid = \"por\"\nassociations = [\"POR\"]\nrate = \"0.04\"\n",
    )
    .unwrap();
    let args = |format: &'static str, out: &'static str| {
        vec![
            "run",
            "--period",
            "2026-10",
            "--billing",
            "billing.csv",
            "--designations",
            "des.csv",
            "--rules",
            "rules.toml",
            "--no-pdf",
            "-q",
            "--ledger-format",
            format,
            "--out",
            out,
        ]
    };
    ok(&porledger(dir, args("csv", "o-csv")));
    let o = porledger(dir, args("parquet", "o-pq"));
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("ledger.csv:3") && err.contains("the accrual of billing.csv:3"),
        "{err}"
    );
    assert!(!err.contains("porledger-tmp"), "{err}");
    assert!(!dir.join("o-pq").exists());
}

/// `porledger run` for November 2026 on the month-close sample's
/// designations, on a file of `tests/fixtures/parquet/` (see its `make.py`).
fn run_fixture(dir: &Path, name: &str, out: &str) -> Output {
    let r = root();
    let args: Vec<String> = vec![
        "run".into(),
        "--period".into(),
        "2026-11".into(),
        "--billing".into(),
        r.join("tests/fixtures/parquet")
            .join(name)
            .display()
            .to_string(),
        "--designations".into(),
        r.join("sample-data/month-close/designations-2026-11.csv")
            .display()
            .to_string(),
        "--rules".into(),
        r.join("sample-data/rules.toml").display().to_string(),
        "--out".into(),
        out.into(),
        "--no-pdf".into(),
        "-q".into(),
    ];
    porledger(dir, args)
}

/// Runs the CSV and the Parquet fixture of the same rows and checks that the
/// totals and the charge dates agree; returns the summary.
fn same_as_csv(csv: &str, parquet: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    ok(&run_fixture(tmp.path(), csv, "out-csv"));
    ok(&run_fixture(tmp.path(), parquet, "out-pq"));
    let read = |p: &str| std::fs::read_to_string(tmp.path().join(p)).unwrap();
    let summary = read("out-csv/summary.csv");
    assert_eq!(summary, read("out-pq/summary.csv"));
    // The ledgers differ only in the billing file's name.
    assert_eq!(
        read("out-csv/ledger.csv").replace(csv, "F"),
        read("out-pq/ledger.csv").replace(parquet, "F")
    );
    assert!(summary.lines().count() > 1, "{summary}");
    summary
}

/// Azure/FOCUS exports carry a struct column (`Tags`) and maps: porledger does
/// not read them, so their type does not matter (it used to panic in polars).
#[test]
fn struct_and_map_columns_porledger_does_not_read_are_ignored() {
    same_as_csv("rows.csv", "unused_struct_map.parquet");
}

#[test]
fn a_struct_in_a_column_porledger_reads_is_a_clean_error() {
    let tmp = tempfile::tempdir().unwrap();
    let out = run_fixture(tmp.path(), "struct_customer.parquet", "out");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("struct_customer.parquet")
            && err.contains("column 'CustomerId'")
            && err.contains("has type struct")
            && !err.contains("panicked"),
        "{err}"
    );
    assert!(!tmp.path().join("out").exists(), "nothing published");
}

/// A timestamp with a zone is dated in its zone, as a CSV timestamp with an
/// offset is: 2026-11-01 00:00 in Berlin is a November charge (in UTC it is
/// still October 31st and P-B, designated from November 1st, would get a
/// prorated share).
#[test]
fn a_zoned_timestamp_is_dated_in_its_own_zone() {
    let summary = same_as_csv("zoned.csv", "zoned.parquet");
    let unzoned = {
        let tmp = tempfile::tempdir().unwrap();
        ok(&run_fixture(tmp.path(), "rows.csv", "out"));
        std::fs::read_to_string(tmp.path().join("out/summary.csv")).unwrap()
    };
    assert_eq!(summary, unzoned, "local midnight is the date as written");
}

/// pandas `category` columns (arrow dictionaries) are read as their values.
#[test]
fn dictionary_text_columns_read_as_their_values() {
    same_as_csv("rows.csv", "dictionary.parquet");
}
