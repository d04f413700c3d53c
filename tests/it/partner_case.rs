//! One partner ID in two letter cases (`P-A` and `p-a`): IDs are
//! case-insensitive, so it is one partner. In the designations, `validate`
//! names both rows (exit 1) and `run` refuses them before any work (exit 2);
//! a billing line's reseller ID or a closed accrual's partner in another case
//! is credited under the designations' spelling; a collision that is left
//! names the published paths, never the staging directory.

use std::path::Path;

use crate::common::*;

const D: &str = "sample-data/month-close";
const HEADER: &str =
    "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n";
const C1: &str = "c1000000-0000-4000-8000-000000000001";
const C2: &str = "c2000000-0000-4000-8000-000000000002";

/// `validate` or `run` (without PDFs, into `dir/out`) of `billing` with the
/// sample rules, from `dir`; `extra` are more arguments.
fn porledger_cmd(
    dir: &Path,
    cmd: &str,
    billing: &Path,
    designations: &str,
    extra: &[&str],
) -> std::process::Output {
    let mut c = command();
    c.current_dir(dir)
        .arg(cmd)
        .arg("--billing")
        .arg(billing)
        .args(["--designations", designations, "--rules"])
        .arg(repo().join("sample-data/rules.toml"));
    if cmd == "run" {
        c.args(["--no-pdf", "--out", "out"]);
    }
    c.args(extra);
    output(&mut c)
}

fn two_spellings(dir: &Path) {
    write(
        dir.join("des.csv"),
        format!(
            "{HEADER}{C1},P-A,Amsel IT,DPOR,,,,2024-01-01,\n{C2},p-a,Amsel IT,DPOR,,,,2024-01-01,\n"
        ),
    );
}

const NAMED: &str = "des.csv lines 2 and 3: the partner IDs P-A (line 2) and p-a (line 3) differ \
                     only in letter case";

#[test]
fn validate_names_both_rows_of_a_partner_id_in_two_letter_cases() {
    let d = tempfile::tempdir().unwrap();
    two_spellings(d.path());
    let billing = repo().join(D).join("billing-2026-10.csv");
    let o = porledger_cmd(
        d.path(),
        "validate",
        &billing,
        "des.csv",
        &["--period", "2026-10"],
    );
    assert_code(&o, 1);
    let text = stdout(&o);
    assert!(text.contains(NAMED), "{text}");
    assert!(
        text.contains("spell this partner ID the same way on every row"),
        "{text}"
    );
    assert!(!text.contains("no problems found"), "{text}");
}

#[test]
fn run_refuses_a_partner_id_in_two_letter_cases_before_any_work() {
    let d = tempfile::tempdir().unwrap();
    two_spellings(d.path());
    let billing = repo().join(D).join("billing-2026-10.csv");
    let o = porledger_cmd(
        d.path(),
        "run",
        &billing,
        "des.csv",
        &["--period", "2026-10"],
    );
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(err.contains(NAMED), "{err}");
    assert!(err.contains("nothing was published"), "{err}");
    assert!(!err.contains("porledger-tmp"), "{err}");
    // Nothing was written: no output, no staging directory, no lock.
    let left: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "des.csv")
        .collect();
    assert_eq!(left, Vec::<String>::new());
}

/// The ledger's partner IDs (every row).
fn ledger_partners(out: &Path) -> Vec<String> {
    let rows = csv_rows(&read(out.join("ledger.csv")));
    let col = rows[0].iter().position(|c| c == "partner_id").unwrap();
    rows[1..].iter().map(|r| r[col].clone()).collect()
}

fn partner_dirs(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(out.join("partners"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_reseller_id_in_another_letter_case_is_the_designated_partner() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path().join("des.csv"),
        format!("{HEADER}{C1},P-A,Amsel IT,DPOR,,,,2024-01-01,\n"),
    );
    // Customer 2's line names its reseller p-a: the partner designated as P-A.
    let billing = read(repo().join(D).join("billing-2026-10.csv"));
    let (head, rows) = billing.split_once('\n').unwrap();
    let rows: Vec<String> = rows
        .lines()
        .map(|r| match r.starts_with(C2) {
            true => r.replace(",[],,", ",[],p-a,"),
            false => r.to_string(),
        })
        .collect();
    assert!(rows.iter().any(|r| r.contains(",p-a,")), "{rows:?}");
    write(
        d.path().join("b.csv"),
        format!("{head}\n{}\n", rows.join("\n")),
    );
    let b = d.path().join("b.csv");
    let o = porledger_cmd(
        d.path(),
        "validate",
        &b,
        "des.csv",
        &["--period", "2026-10"],
    );
    assert_code(&o, 0);
    let o = porledger_cmd(d.path(), "run", &b, "des.csv", &["--period", "2026-10"]);
    assert_code(&o, 0);
    let out = d.path().join("out");
    assert_eq!(partner_dirs(&out), ["P-A"]);
    let partners = ledger_partners(&out);
    assert_eq!(
        partners,
        ["P-A", "P-A"],
        "DPOR of c1 and the reseller rebate of c2"
    );
    let statement = read(out.join("partners/P-A/statement.csv"));
    assert!(statement.contains("reseller"), "{statement}");
}

#[test]
fn a_credit_reverses_a_closed_accrual_under_the_designations_spelling() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    // October is closed with the designations spelling p-a ...
    let oct = read(repo().join(D).join("designations-2026-10.csv")).replace(",P-A,", ",p-a,");
    write(dir.join("d10.csv"), oct);
    // ... November's spell it P-A.
    write(
        dir.join("d11.csv"),
        format!(
            "{HEADER}{C1},P-B,Buchfink Cloud,DPOR,,,,2026-11-01,\n{C2},P-A,Amsel IT,DPOR,,,,2024-01-01,\n"
        ),
    );
    let h = ["--history", "h.db"];
    let o = porledger_cmd(
        dir,
        "run",
        &repo().join(D).join("billing-2026-10.csv"),
        "d10.csv",
        &[&["--period", "2026-10"][..], &h].concat(),
    );
    assert_code(&o, 0);
    std::fs::rename(dir.join("out"), dir.join("oct")).unwrap();
    close_ok(&dir.join("oct"), &dir.join("h.db"));
    assert_eq!(partner_dirs(&dir.join("oct")), ["p-a"]);

    let nov = repo().join(D).join("billing-2026-11.csv");
    let args = [&["--period", "2026-11"][..], &h].concat();
    let o = porledger_cmd(dir, "validate", &nov, "d11.csv", &args);
    assert_code(&o, 0);
    let o = porledger_cmd(dir, "run", &nov, "d11.csv", &args);
    assert_code(&o, 0);
    let out = dir.join("out");
    // One partner, one statement: the reversal is P-A's.
    assert_eq!(partner_dirs(&out), ["P-A", "P-B"]);
    let rows = csv_rows(&read(out.join("ledger.csv")));
    let col = |n: &str| rows[0].iter().position(|c| c == n).unwrap();
    let reversals: Vec<&Vec<String>> = rows[1..]
        .iter()
        .filter(|r| !r[col("reverses")].is_empty())
        .collect();
    assert_eq!(reversals.len(), 1, "{rows:?}");
    assert_eq!(reversals[0][col("partner_id")], "P-A");
    assert!(ledger_partners(&out).iter().all(|p| p != "p-a"));
    // 3000 x 4 % for customer 2's November, less half of October's 124.00.
    let statement = csv_rows(&read(out.join("partners/P-A/statement.csv")));
    let total = statement
        .iter()
        .find(|r| r.len() == 4 && r[0] == "total" && r[1] == "EUR")
        .unwrap_or_else(|| panic!("{statement:?}"));
    assert_eq!(total[3], "58.00");
}

/// Two billing lines that name one reseller in two letter cases, neither
/// designated: `validate` reports it (exit 1) and the run stops before any
/// statement is written (exit 2), both naming each spelling's first line.
#[test]
fn two_spellings_of_an_undesignated_reseller_are_refused_naming_their_lines() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path().join("des.csv"),
        format!("{HEADER}{C1},P-A,Amsel IT,DPOR,,,,2024-01-01,\n"),
    );
    let billing = read(repo().join(D).join("billing-2026-10.csv"));
    let (head, rows) = billing.split_once('\n').unwrap();
    let rows: Vec<String> = rows
        .lines()
        .map(|r| {
            let reseller = if r.starts_with(C1) {
                ",[],R-X,"
            } else {
                ",[],r-x,"
            };
            r.replace(",[],,", reseller)
        })
        .collect();
    write(
        d.path().join("b.csv"),
        format!("{head}\n{}\n", rows.join("\n")),
    );
    let b = d.path().join("b.csv");
    let named = format!(
        "billing lines name one partner ID in 2 letter cases: R-X ({b}:2), r-x ({b}:3)",
        b = b.display()
    );
    let o = porledger_cmd(
        d.path(),
        "validate",
        &b,
        "des.csv",
        &["--period", "2026-10"],
    );
    assert_code(&o, 1);
    assert!(stdout(&o).contains(&named), "{}", stdout(&o));
    let o = porledger_cmd(d.path(), "run", &b, "des.csv", &["--period", "2026-10"]);
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(err.contains(&named), "{err}");
    assert!(err.contains("nothing was published"), "{err}");
    assert!(!err.contains("porledger-tmp"), "{err}");
    assert!(!d.path().join("out").exists());
}

/// A restatement whose designations spell a partner otherwise than the
/// issued version did (`P-A` issued, `p-a` now) compares the partner's lines
/// as one partner's: nothing changed, so nothing is adjusted, and the
/// restatement is published and closed as the next version.
#[test]
fn a_restatement_compares_a_respelled_partner_as_one_partner() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let billing = repo().join(D).join("billing-2026-10.csv");
    let issued = read(repo().join(D).join("designations-2026-10.csv"));
    assert!(issued.contains(",P-A,"), "{issued}");
    write(dir.join("d1.csv"), &issued);
    write(dir.join("d2.csv"), issued.replace(",P-A,", ",p-a,"));
    let args = ["--period", "2026-10", "--history", "h.db"];
    let o = porledger_cmd(dir, "run", &billing, "d1.csv", &args);
    assert_code(&o, 0);
    std::fs::rename(dir.join("out"), dir.join("v1")).unwrap();
    close_ok(&dir.join("v1"), &dir.join("h.db"));

    let o = porledger_cmd(dir, "run", &billing, "d2.csv", &args);
    assert_code(&o, 0);
    assert!(
        stderr(&o).contains("this run restates it"),
        "{}",
        stderr(&o)
    );
    let out = dir.join("out");
    assert_eq!(partner_dirs(&out), ["p-a"]);
    // The same amounts: no line taken back from P-A and added to p-a.
    let adjustment = out.join("partners/p-a/adjustment.csv");
    if adjustment.exists() {
        let rows = csv_rows(&read(&adjustment));
        assert_eq!(rows.len(), 1, "{rows:?}");
    }
    close_ok(&out, &dir.join("h.db"));
}

/// A credit line reverses a closed accrual of an undesignated reseller as it
/// was issued (`R-X`) while another billing line names it `r-x`: one
/// partner in two spellings, as two billing lines spelling it so would be.
/// `validate --history` reports it (exit 1) and the run stops before any
/// statement is written (exit 2), both naming the credit line and the line.
#[test]
fn a_reversal_and_a_billing_line_spelling_one_reseller_otherwise_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let head = "CustomerId,CustomerName,SubscriptionId,ProductId,SkuId,ChargeStartDate,\
                ChargeEndDate,ChargeType,Subtotal,TaxTotal,Total,Currency,PublisherName,\
                ProductName,ProductQualifiers,ResellerMpnId,ReferenceId";
    let line = |dates: &str, kind: &str, amount: &str, reseller: &str, reference: &str| {
        format!(
            "{C1},Aurora,s-c1,CFQ7TTC0LFLX,0002,{dates},{kind},{amount},0,{amount},EUR,\
             Microsoft Corporation,Microsoft 365 E3,[],{reseller},{reference}"
        )
    };
    let october = "10/1/2026,10/31/2026";
    write(
        dir.join("oct.csv"),
        format!(
            "{head}\n{}\n",
            line(october, "cycleCharge", "1000.00", "R-X", "ref-oct")
        ),
    );
    let des = |month: &str| repo().join(D).join(format!("designations-{month}.csv"));
    let des10 = des("2026-10").display().to_string();
    let des11 = des("2026-11").display().to_string();
    let h = ["--history", "h.db"];
    let o = porledger_cmd(
        dir,
        "run",
        &dir.join("oct.csv"),
        &des10,
        &[&["--period", "2026-10"][..], &h].concat(),
    );
    assert_code(&o, 0);
    std::fs::rename(dir.join("out"), dir.join("oct")).unwrap();
    close_ok(&dir.join("oct"), &dir.join("h.db"));
    assert!(partner_dirs(&dir.join("oct")).contains(&"R-X".to_string()));

    let nov = dir.join("nov.csv");
    write(
        &nov,
        format!(
            "{head}\n{}\n{}\n",
            line(
                "11/1/2026,11/30/2026",
                "cycleCharge",
                "1000.00",
                "r-x",
                "ref-nov"
            ),
            line(october, "customerCredit", "-1000.00", "r-x", "ref-oct")
        ),
    );
    let named = format!(
        "billing lines name one partner ID in 2 letter cases: r-x ({n}:2), R-X ({n}:3, a credit \
         reversing what a closed period issued to R-X)",
        n = nov.display()
    );
    let args = [&["--period", "2026-11"][..], &h].concat();
    let o = porledger_cmd(dir, "validate", &nov, &des11, &args);
    assert_code(&o, 1);
    assert!(stdout(&o).contains(&named), "{}", stdout(&o));
    let o = porledger_cmd(dir, "run", &nov, &des11, &args);
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(err.contains(&named), "{err}");
    assert!(err.contains("nothing was published"), "{err}");
    assert!(!dir.join("out").exists());
}
