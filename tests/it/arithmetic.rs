//! Exact, checked arithmetic: amounts too large for a decimal reject their row
//! or stop the run (exit 2, nothing published), a failed worker ends the run
//! instead of hanging it, fine-grained amounts give the same statements on any
//! number of threads, and settings that make no sense are refused at load.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::*;

const HEADER: &str = "CustomerId,CustomerName,SubscriptionId,ChargeStartDate,ChargeEndDate,ChargeType,Subtotal,TaxTotal,Total,Currency,PublisherName,ProductName,ProductQualifiers,ResellerMpnId\n";

/// A billing line of customer `c`, subscription `s`, October 2026.
fn line(c: &str, s: &str, subtotal: &str, reseller: &str) -> String {
    format!("{c},Customer {c},{s},10/1/2026,10/31/2026,cycleCharge,{subtotal},0,{subtotal},EUR,Microsoft Corporation,Microsoft 365 E3,[],{reseller}\n")
}

const RULES: &str = r#"
[[program]]
id = "dpor"
associations = ["DPOR"]
rate = "0.04"
[[program]]
id = "resale"
associations = ["RESELLER"]
rate = "1"
"#;

/// Customer c1 changes its DPOR partner on 2026-10-11: October is prorated.
const DESIGNATIONS: &str = "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n\
c1,P-A,Amsel IT,DPOR,,,,2024-01-01,2026-10-11\n\
c1,P-B,Buchfink Cloud,DPOR,,,,2026-10-11,\n";

fn setup(billing: &str, rules: &str, designations: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    write(d.path().join("b.csv"), billing);
    write(d.path().join("rules.toml"), rules);
    write(d.path().join("designations.csv"), designations);
    d
}

fn run_in(dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "run",
        "--period",
        "2026-10",
        "--billing",
        "b.csv",
        "--designations",
        "designations.csv",
        "--rules",
        "rules.toml",
        "--out",
        "out",
        "--no-pdf",
        "--quiet",
    ];
    args.extend_from_slice(extra);
    porledger_in(dir, args)
}

const MAX: &str = "79228162514264337593543950335";

#[test]
fn b2_decimal_max_subtotal_prorated_is_rejected_naming_the_column() {
    let billing = format!(
        "{HEADER}{}{}",
        line("c1", "s1", MAX, ""),
        line("c1", "s2", "100.00", "")
    );
    let d = setup(&billing, RULES, DESIGNATIONS);
    let o = run_in(d.path(), &[]);
    assert_code(&o, 1);
    let rejects = read(d.path().join("out/rejects.csv"));
    let row = rejects
        .lines()
        .find(|l| l.contains(MAX))
        .unwrap_or_else(|| panic!("{rejects}"));
    assert!(
        row.contains("b.csv") && row.contains(",2,") && row.contains("Subtotal"),
        "{row}"
    );
    // The other line accrued.
    assert!(read(d.path().join("out/ledger.csv")).contains("s2"));
}

#[test]
fn b2_28_digit_prorated_amount_is_rejected_or_exact() {
    let big = "1234567890123456789012345678";
    let billing = format!("{HEADER}{}", line("c1", "s1", big, ""));
    let d = setup(&billing, RULES, DESIGNATIONS);
    let o = run_in(d.path(), &[]);
    assert!(code(&o) == 0 || code(&o) == 1, "{}", stderr(&o));
    if code(&o) == 1 {
        assert!(read(d.path().join("out/rejects.csv")).contains("Subtotal"));
        return;
    }
    // Accepted: the prorated parts add up to the line, exactly.
    let ledger = csv_rows(&read(d.path().join("out/ledger.csv")));
    let col = ledger[0].iter().position(|h| h == "basis_amount").unwrap();
    let sum: rust_decimal::Decimal = ledger[1..]
        .iter()
        .map(|r| r[col].parse::<rust_decimal::Decimal>().unwrap())
        .sum();
    assert_eq!(sum, big.parse::<rust_decimal::Decimal>().unwrap());
}

#[test]
fn b2_sum_overflow_exits_2_naming_the_group_and_publishes_nothing() {
    let billing = format!(
        "{HEADER}{}{}",
        line("c9", "s1", MAX, "R1"),
        line("c9", "s1", MAX, "R1")
    );
    let d = setup(&billing, RULES, DESIGNATIONS);
    let o = run_in(d.path(), &[]);
    assert_code(&o, 2);
    let e = stderr(&o);
    assert!(
        e.contains("R1") && e.contains("c9") && e.contains("resale"),
        "{e}"
    );
    assert!(
        !d.path().join("out").exists(),
        "published despite the overflow"
    );
}

/// Two partners whose groups cannot be summed: the run names the first in
/// partner order, the same group on every run and thread count (threads
/// built both statements at once and the first to fail was named).
#[test]
fn b2_two_groups_out_of_range_name_the_first_on_any_thread_count() {
    let fine = "0.1234567890123456789012345678";
    let wide = "12345678901234567890.12345678";
    let billing = format!(
        "{HEADER}{}{}{}{}",
        line("c8", "s1", wide, "R2"),
        line("c8", "s1", fine, "R2"),
        line("c9", "s1", wide, "R1"),
        line("c9", "s1", fine, "R1"),
    );
    let d = setup(&billing, RULES, DESIGNATIONS);
    let mut said = std::collections::BTreeSet::new();
    for threads in ["1", "2", "4", "4", "4", "4"] {
        let o = run_in(d.path(), &["--threads", threads]);
        assert_code(&o, 2);
        said.insert(stderr(&o));
    }
    assert_eq!(said.len(), 1, "{said:#?}");
    let e = said.first().unwrap();
    assert!(
        e.contains("partner R1, customer c9") && e.contains("38 digits"),
        "{e}"
    );
}

/// Runs `porledger ARGS` in `dir` with `PORLEDGER_FAULT_AT=worker-panic`,
/// killing it after 60 s: returns the exit code and how long it took.
fn run_with_worker_panic(dir: &Path, args: &[&str]) -> (Option<i32>, Duration) {
    let mut child = command()
        .current_dir(dir)
        .args(args)
        .env("PORLEDGER_FAULT_AT", "worker-panic")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return (s.code(), start.elapsed());
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            return (None, start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn b2_worker_panic_exits_2_without_hanging() {
    let mut billing = HEADER.to_string();
    for i in 0..3000 {
        billing.push_str(&line(
            &format!("c{}", i % 40),
            &format!("s{i}"),
            "10.00",
            "R1",
        ));
    }
    let d = setup(&billing, RULES, DESIGNATIONS);
    for threads in ["1", "2"] {
        let run = [
            "run",
            "--period",
            "2026-10",
            "--billing",
            "b.csv",
            "--designations",
            "designations.csv",
            "--rules",
            "rules.toml",
            "--out",
            "out",
            "--no-pdf",
            "--quiet",
            "--threads",
            threads,
            "--chunk-bytes",
            "4096",
        ];
        let (code, took) = run_with_worker_panic(d.path(), &run);
        assert_eq!(code, Some(2), "run --threads {threads} after {took:?}");
        assert!(took < Duration::from_secs(30), "{took:?}");
        assert!(!d.path().join("out").exists());
        let validate = [
            "validate",
            "--billing",
            "b.csv",
            "--designations",
            "designations.csv",
            "--rules",
            "rules.toml",
            "--threads",
            threads,
            "--chunk-bytes",
            "4096",
        ];
        let (code, took) = run_with_worker_panic(d.path(), &validate);
        assert_eq!(code, Some(2), "validate --threads {threads} after {took:?}");
    }
}

#[test]
fn b3_fourteen_decimal_amounts_give_identical_statements_on_1_2_and_4_threads() {
    let d = tempfile::tempdir().unwrap();
    // Three partners split every customer's DPOR credit (shares of 1/3 with 10
    // decimals): accruals of 14-decimal amounts have more than 28 digits.
    let mut designations = String::from("customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n");
    for c in 0..30 {
        for p in ["P1", "P2", "P3"] {
            designations.push_str(&format!("c{c},{p},Partner {p},DPOR,,,,2024-01-01,\n"));
        }
    }
    write(d.path().join("designations.csv"), designations);
    write(
        d.path().join("rules.toml"),
        "[[program]]\nid = \"dpor\"\nassociations = [\"DPOR\"]\nrate = \"0.0425\"\n",
    );
    std::fs::create_dir(d.path().join("billing")).unwrap();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for f in 0..3 {
        let mut b = HEADER.to_string();
        for _ in 0..1500 {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let int = (x >> 40) % 100_000;
            let frac = (x >> 3) % 100_000_000_000_000;
            let sign = if x.is_multiple_of(7) { "-" } else { "" };
            let c = format!("c{}", (x >> 20) % 30);
            let s = format!("s{}", (x >> 25) % 4);
            b.push_str(&line(&c, &s, &format!("{sign}{int}.{frac:014}"), ""));
        }
        write(d.path().join(format!("billing/part{f}.csv")), b);
    }
    for t in ["1", "2", "4"] {
        let o = porledger_in(
            d.path(),
            [
                "run",
                "--period",
                "2026-10",
                "--billing",
                "billing",
                "--designations",
                "designations.csv",
                "--rules",
                "rules.toml",
                "--out",
                &format!("out{t}"),
                "--no-pdf",
                "--quiet",
                "--threads",
                t,
                "--chunk-bytes",
                "8192",
            ],
        );
        assert_code(&o, 0);
    }
    let one = d.path().join("out1");
    assert_same_tree(&one, &d.path().join("out2"));
    assert_same_tree(&one, &d.path().join("out4"));
}

#[test]
fn b9_empty_excluded_qualifier_is_refused_naming_the_key() {
    let rules = RULES.replace(
        "rate = \"0.04\"",
        "rate = \"0.04\"\nexclude_qualifiers = [\"\"]",
    );
    let d = setup(
        &format!("{HEADER}{}", line("c1", "s1", "10", "")),
        &rules,
        DESIGNATIONS,
    );
    let o = run_in(d.path(), &[]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("program[0].exclude_qualifiers[0]"),
        "{}",
        stderr(&o)
    );
    assert!(!d.path().join("out").exists());
}

#[test]
fn b9_70000_programs_book_under_the_right_program() {
    let mut rules = String::new();
    for i in 0..70_000 {
        let assoc = if i == 69_999 { "RESELLER" } else { "PAL" };
        rules.push_str(&format!(
            "[[program]]\nid = \"p{i}\"\nassociations = [\"{assoc}\"]\nrate = \"0.01\"\n"
        ));
    }
    let d = setup(
        &format!("{HEADER}{}", line("c7", "s1", "100.00", "R7")),
        &rules,
        DESIGNATIONS,
    );
    let o = run_in(d.path(), &[]);
    if code(&o) == 2 {
        // Refused at load (the rules file's size limit): a clear error naming
        // the file. The index widening is tested on the parsed rules (fold, config).
        assert!(stderr(&o).contains("rules.toml"), "{}", stderr(&o));
        assert!(!d.path().join("out").exists());
        return;
    }
    assert_code(&o, 0);
    let summary = read(d.path().join("out/summary.csv"));
    let rows: Vec<&str> = summary.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{summary}");
    assert!(
        rows[0].contains("R7") && rows[0].contains("p69999"),
        "{summary}"
    );
    assert!(!summary.contains("p4463,"), "{summary}"); // 69,999 - 65,536
}

#[test]
fn b9_fx_rate_too_large_exits_2_naming_the_fx_file_and_line() {
    let d = setup(
        &format!("{HEADER}{}", line("c8", "s1", "1000.00", "R8")),
        RULES,
        DESIGNATIONS,
    );
    write(
        d.path().join("fx.csv"),
        "date,from,to,rate\n2026-10-01,EUR,USD,9.99e27\n",
    );
    let o = run_in(d.path(), &["--fx", "fx.csv", "--reporting-currency", "USD"]);
    assert_code(&o, 2);
    let e = stderr(&o);
    assert!(
        e.contains("fx.csv:2") && e.contains("EUR->USD") && e.contains("2026-10-01"),
        "{e}"
    );
    assert!(!d.path().join("out").exists());
}

/// B2 for usage records: a usage accrual too large for a decimal rejects its
/// record, the reject counts (exit 1, `--max-rejects`), and the record leaves
/// no ledger row.
#[test]
fn b2_usage_accrual_overflow_rejects_the_record_and_counts() {
    let t1 = "11111111-1111-1111-1111-111111111111";
    let t2 = "22222222-2222-2222-2222-222222222222";
    let rules = "[[program]]\nid = \"usage\"\nassociations = [\"CPOR\"]\nbasis = \"usage\"\n\
                 [[program.workload]]\nname = \"Exchange\"\nunit_rates = [\"0.50\", \"2.00\"]\n";
    let designations = format!(
        "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n\
         {t1},P1,Alpha,CPOR,Exchange,,,2026-01-01,\n\
         {t2},P1,Alpha,CPOR,Exchange,,,2026-01-01,\n"
    );
    let d = setup(
        &(HEADER.to_string() + &line("c9", "s9", "10.00", "")),
        rules,
        &designations,
    );
    // 5e28 units x 2.00 is above the largest decimal; t2's 50 units pay 100.
    let big = "50000000000000000000000000000";
    write(
        d.path().join("usage.csv"),
        format!(
            "CustomerTenantId,CustomerName,WorkloadName,MonthlyActiveUsers,PaidAvailableUnits,ClaimId,MpnId,DateAssociated,PartnerAttributionType,Date\n\
             {t1},Big,Exchange,{big},{big},c1,P1,2026-01-01,CPOR,2026-10-01\n\
             {t2},Small,Exchange,50,100,c2,P1,2026-01-01,CPOR,2026-10-01\n"
        ),
    );
    let o = run_in(d.path(), &["--usage", "usage.csv"]);
    assert_code(&o, 1);
    let rejects = read(d.path().join("out/rejects.csv"));
    assert!(rejects.contains("usage.csv,2,"), "{rejects}");
    let ledger = read(d.path().join("out/ledger.csv"));
    assert!(!ledger.contains(t1), "{ledger}");
    assert!(ledger.contains(t2), "{ledger}");
    let o = run_in(d.path(), &["--usage", "usage.csv", "--max-rejects", "0"]);
    assert_code(&o, 2);
}
