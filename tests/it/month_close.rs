//! `sample-data/month-close/`: the three-month story of the sample README,
//! run exactly in its order, gives the numbers derived there by hand (a
//! close, a credit for a closed month after the customer moved, a
//! restatement as the next version).

use std::path::Path;

use crate::common::*;

const D: &str = "sample-data/month-close";

/// `porledger run` of one step of the story, with the history (`billing`
/// in the story's directory, or an absolute path).
fn run_step(period: &str, billing: &str, designations: &str, history: &Path, out: &Path) -> String {
    let mut c = command();
    c.args(["run", "--period", period, "--billing"])
        .arg(Path::new(D).join(billing))
        .arg("--designations")
        .arg(format!("{D}/{designations}"))
        .args(["--rules", "sample-data/rules.toml", "--history"])
        .arg(history)
        .arg("--out")
        .arg(out);
    let o = output(&mut c);
    assert_published(&o);
    stderr(&o)
}

/// The partner's statement total in `currency` (the `total` row).
fn total(out: &Path, partner: &str, currency: &str) -> String {
    let text = read(out.join("partners").join(partner).join("statement.csv"));
    let rows = csv_rows(&text);
    let row = rows
        .iter()
        .find(|r| r.len() == 4 && r[0] == "total" && r[1] == currency)
        .unwrap_or_else(|| panic!("no {currency} total for {partner}:\n{text}"));
    row[3].clone()
}

fn ledger(out: &Path) -> Vec<Vec<String>> {
    csv_rows(&read(out.join("ledger.csv")))
}

#[test]
fn the_month_close_story_gives_the_hand_computed_numbers() {
    let d = tempfile::tempdir().unwrap();
    let h = d.path().join("history.db");
    let (oct, nov, oct2) = (
        d.path().join("2026-10"),
        d.path().join("2026-11"),
        d.path().join("2026-10-v2"),
    );

    // 1. October, version 1.
    run_step(
        "2026-10",
        "billing-2026-10.csv",
        "designations-2026-10.csv",
        &h,
        &oct,
    );
    assert_eq!(total(&oct, "P-A", "EUR"), "248.00");
    close_ok(&oct, &h);

    // 2. November: the credit for half of October reverses P-A's closed accrual.
    run_step(
        "2026-11",
        "billing-2026-11.csv",
        "designations-2026-11.csv",
        &h,
        &nov,
    );
    assert_eq!(total(&nov, "P-A", "EUR"), "-62.00");
    // November's designations no longer name P-A: its name is the issued one.
    let pa = read(nov.join("partners/P-A/statement.csv"));
    assert!(pa.contains("partner_name,Amsel IT"), "{pa}");
    assert_eq!(total(&nov, "P-B", "EUR"), "60.00");
    assert_eq!(total(&nov, "P-C", "EUR"), "120.00");
    let rows = ledger(&nov);
    let col = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    let (partner, line, month, amount, reverses) = (
        col("partner_id"),
        col("source_line"),
        col("accrual_month"),
        col("accrual_amount"),
        col("reverses"),
    );
    let reversal: Vec<_> = rows[1..]
        .iter()
        .filter(|r| !r[reverses].is_empty())
        .collect();
    assert_eq!(reversal.len(), 1, "{rows:?}");
    let r = reversal[0];
    assert_eq!((r[partner].as_str(), r[line].as_str()), ("P-A", "4"));
    assert_eq!(r[month], "2026-10");
    assert_eq!(r[amount].parse::<f64>().unwrap(), -62.0, "{r:?}");
    assert!(r[reverses].contains("2026-10"), "{r:?}");
    assert!(r[reverses].contains("billing-2026-10.csv"), "{r:?}");
    let summary = read_json(nov.join("summary.json"));
    let credits = &summary["rows"]["total"]["credits_against_history"];
    assert_eq!(credits["matched"], 1, "{credits}");
    assert_eq!(credits["unmatched"], 1, "{credits}");
    close_ok(&nov, &h);

    // 3. October again after the late designation fix: version 2, adjustments.
    let said = run_step(
        "2026-10",
        "billing-2026-10.csv",
        "designations-2026-10-fixed.csv",
        &h,
        &oct2,
    );
    assert!(said.contains("this run restates it"), "{said}");
    assert_eq!(total(&oct2, "P-A", "EUR"), "184.00");
    assert_eq!(total(&oct2, "P-C", "EUR"), "64.00");
    for (p, issued, now, diff) in [
        ("P-A", "124.00", "60.00", "-64.00"),
        ("P-C", "0.00", "64.00", "64.00"),
    ] {
        let adj = csv_rows(&read(oct2.join("partners").join(p).join("adjustment.csv")));
        assert_eq!(adj.len(), 2, "{p}: {adj:?}");
        assert_eq!(adj[1][1], "c2000000-0000-4000-8000-000000000002");
        assert_eq!(adj[1][7..10], [issued, now, diff], "{p}");
    }
    close_ok(&oct2, &h);
    let mut c = command();
    c.arg("history").arg("--history").arg(&h);
    let o = output(&mut c);
    assert_code(&o, 0);
    let text = stdout(&o);
    assert!(
        text.contains("2026-10 version 2 (restates version 1) [current]"),
        "{text}"
    );
    assert!(text.contains("2026-11 version 1 [current]"), "{text}");
}

/// A credit finds its closed charge by `ReferenceId` in any letter case,
/// also when the charge wrote it in mixed case: October's charge of c1
/// written `Ref-C1-Oct`, November's half credit of it `ref-c1-oct` (the
/// story's step 2 with these spellings) reverses P-A's accrual.
#[test]
fn a_credit_finds_a_charge_whose_reference_id_is_in_mixed_case() {
    let d = tempfile::tempdir().unwrap();
    let h = d.path().join("history.db");
    let (oct, nov) = (d.path().join("2026-10"), d.path().join("2026-11"));
    let spelled = |month: &str, reference: &str| {
        let text = read(repo().join(D).join(format!("billing-{month}.csv")));
        let changed = text.replace(",r-c1-2026-10\n", &format!(",{reference}\n"));
        assert_eq!(changed.matches(reference).count(), 1, "{changed}");
        let path = d.path().join(format!("billing-{month}.csv"));
        write(&path, changed);
        path.display().to_string()
    };
    let (oct_csv, nov_csv) = (
        spelled("2026-10", "Ref-C1-Oct"),
        spelled("2026-11", "ref-c1-oct"),
    );
    run_step("2026-10", &oct_csv, "designations-2026-10.csv", &h, &oct);
    close_ok(&oct, &h);
    run_step("2026-11", &nov_csv, "designations-2026-11.csv", &h, &nov);
    assert_eq!(total(&nov, "P-A", "EUR"), "-62.00");
    let rows = ledger(&nov);
    let col = |name: &str| rows[0].iter().position(|c| c == name).unwrap();
    let (partner, line, amount, reverses) = (
        col("partner_id"),
        col("source_line"),
        col("accrual_amount"),
        col("reverses"),
    );
    let reversal: Vec<_> = rows[1..]
        .iter()
        .filter(|r| !r[reverses].is_empty())
        .collect();
    assert_eq!(reversal.len(), 1, "{rows:?}");
    let r = reversal[0];
    assert_eq!((r[partner].as_str(), r[line].as_str()), ("P-A", "4"));
    assert_eq!(r[amount].parse::<f64>().unwrap(), -62.0, "{r:?}");
    assert!(r[reverses].starts_with("2026-10 v1 "), "{r:?}");
    let skipped = csv_rows(&read(nov.join("not-eligible.csv")));
    assert!(
        !skipped[1..].iter().any(|r| r[1] == "4"),
        "the credit is not left unpaid: {skipped:?}"
    );
    let summary = read_json(nov.join("summary.json"));
    let credits = &summary["rows"]["total"]["credits_against_history"];
    assert_eq!(credits["matched"], 1, "{credits}");
}

/// `porledger run` of `period` on `billing` (no history), which must publish.
fn run_plain(period: &str, billing: &str, out: &Path) {
    run_plain_with(period, billing, "designations-2026-10.csv", out);
}

/// [`run_plain`] with another designations file of the story.
fn run_plain_with(period: &str, billing: &str, designations: &str, out: &Path) {
    let mut c = command();
    c.args(["run", "--period", period, "--billing"])
        .arg(format!("{D}/{billing}"))
        .args(["--designations"])
        .arg(format!("{D}/{designations}"))
        .args([
            "--rules",
            "sample-data/rules.toml",
            "--no-pdf",
            "--quiet",
            "--out",
        ])
        .arg(out);
    assert_published(&output(&mut c));
}

/// The closes of the history, as `history` lists them.
fn closes(h: &Path) -> String {
    let o = porledger(["history", "--history", h.to_str().unwrap()]);
    assert_code(&o, 0);
    stdout(&o)
}

/// A period that shares a month with a closed period of another label is
/// refused by `close` (its billing lines would be issued twice) and by `run
/// --history` before any work, naming both periods; the same label is a
/// restatement, and adjacent periods are fine.
#[test]
fn a_period_overlapping_a_closed_period_is_never_closed() {
    let d = tempfile::tempdir().unwrap();
    let h = d.path().join("history.db");
    let oct = d.path().join("2026-10");
    run_step(
        "2026-10",
        "billing-2026-10.csv",
        "designations-2026-10.csv",
        &h,
        &oct,
    );
    close_ok(&oct, &h);
    let nov = d.path().join("2026-11");
    run_step(
        "2026-11",
        "billing-2026-11.csv",
        "designations-2026-11.csv",
        &h,
        &nov,
    );
    close_ok(&nov, &h);
    let before = closes(&h);
    // Overlap at either end, containment, and a range inside two closed months.
    for (period, closed) in [
        ("2026-09..2026-10", "2026-10"),
        ("2026-11..2026-12", "2026-11"),
        ("2026-08..2026-12", "2026-10"),
        ("2026-10..2026-11", "2026-10"),
    ] {
        let said = format!("period {period} shares months with the closed period {closed}");
        // close refuses the run made without the history.
        let out = d.path().join(format!("plain-{period}"));
        run_plain(period, "billing-2026-10.csv", &out);
        let o = close(&out, &h, &[]);
        assert_code(&o, 2);
        let e = stderr(&o);
        assert!(e.contains(&said), "{e}");
        assert!(
            e.contains(&format!("run it again as --period {closed} with --history")),
            "{e}"
        );
        assert_eq!(closes(&h), before, "{period}: the history changed");
        // run --history refuses it before any work: nothing is published.
        let out = d.path().join(format!("with-history-{period}"));
        let mut c = command();
        c.args(["run", "--period", period, "--billing"])
            .arg(format!("{D}/billing-2026-10.csv"))
            .arg("--designations")
            .arg(format!("{D}/designations-2026-10.csv"))
            .args(["--rules", "sample-data/rules.toml", "--history"])
            .arg(&h)
            .arg("--out")
            .arg(&out);
        let o = output(&mut c);
        assert_code(&o, 2);
        assert!(stderr(&o).contains(&said), "{}", stderr(&o));
        assert!(!out.exists(), "{period}: a refused run publishes nothing");
    }
    // The same label goes through the restatement path.
    let oct2 = d.path().join("2026-10-v2");
    let said = run_step(
        "2026-10",
        "billing-2026-10.csv",
        "designations-2026-10-fixed.csv",
        &h,
        &oct2,
    );
    assert!(said.contains("this run restates it"), "{said}");
    close_ok(&oct2, &h);
    // Adjacent periods share no month: closed as their first version.
    for period in ["2026-09", "2026-12..2027-01"] {
        let out = d.path().join(format!("adjacent-{period}"));
        run_step(
            period,
            "billing-2026-10.csv",
            "designations-2026-10.csv",
            &h,
            &out,
        );
        close_ok(&out, &h);
    }
    let text = closes(&h);
    for line in [
        "2026-09 version 1 [current]",
        "2026-10 version 2 (restates version 1) [current]",
        "2026-11 version 1 [current]",
        "2026-12..2027-01 version 1 [current]",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
}

/// The history listing of `h` (`history --history h`).
fn listed(h: &Path) -> String {
    closes(h)
}

/// A restatement, or a first close, computed against one history is never
/// recorded into another: the issued amounts there would change with no
/// adjustment statement ever published against that history's version. A
/// copy of the history is the same history until the two differ, and a
/// manifest of an older porledger that restates a version is refused.
#[test]
fn a_run_computed_against_another_history_is_not_closed() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    let (h1, h2) = (p("h1.db"), p("h2.db"));
    // h1 issued October with the original designations, h2 with the fixed ones.
    run_step(
        "2026-10",
        "billing-2026-10.csv",
        "designations-2026-10.csv",
        &h1,
        &p("a"),
    );
    close_ok(&p("a"), &h1);
    run_step(
        "2026-10",
        "billing-2026-10.csv",
        "designations-2026-10-fixed.csv",
        &h2,
        &p("b"),
    );
    close_ok(&p("b"), &h2);
    // Against h2 nothing differs: no adjustment statement.
    run_step(
        "2026-10",
        "billing-2026-10.csv",
        "designations-2026-10-fixed.csv",
        &h2,
        &p("c"),
    );
    assert!(!p("c/partners/P-A/adjustment.csv").exists());
    let manifest = read_json(p("c/manifest.json"));
    let rh = &manifest["history"];
    assert_eq!(rh["restates"], 1, "{rh}");
    assert_eq!(rh["closes"], 1, "{rh}");
    assert_eq!(rh["file"], h2.to_str().unwrap(), "{rh}");
    let b_sha = porledger::ingest::sha256_hex(&std::fs::read(p("b/manifest.json")).unwrap());
    assert_eq!(rh["restates_manifest_sha256"], b_sha.as_str(), "{rh}");
    let before = listed(&h1);
    let o = close(&p("c"), &h1, &[]);
    assert_code(&o, 2);
    let e = stderr(&o);
    assert!(
        e.contains(&format!(
            "restates version 1 of period 2026-10 as issued in {}",
            h2.display()
        )) && e.contains(&format!("--history {}", h1.display())),
        "{e}"
    );
    assert_eq!(listed(&h1), before, "h1 is unchanged");
    // November computed against h2 (October closed there) is not h1's either.
    run_step(
        "2026-11",
        "billing-2026-11.csv",
        "designations-2026-11.csv",
        &h2,
        &p("n2"),
    );
    let o = close(&p("n2"), &h1, &[]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains(&format!("was computed against {}", h2.display())),
        "{}",
        stderr(&o)
    );
    assert_eq!(listed(&h1), before);
    // A missing history is not created by a refused close.
    let h3 = p("h3.db");
    assert_code(&close(&p("n2"), &h3, &[]), 2);
    assert!(!h3.exists());
    // Each closes into the history it was computed against: November first,
    // as it read October's version 1, which the restatement then supersedes
    // (November closed after it would be refused: its credits reversed
    // version 1).
    close_ok(&p("n2"), &h2);
    close_ok(&p("c"), &h2);
    // A copy of h1 is h1 as it was: a restatement computed against the copy
    // restates h1's very version 1, with the adjustment statements of h1's.
    let copy = p("h1-copy.db");
    std::fs::copy(&h1, &copy).unwrap();
    let said = run_step(
        "2026-10",
        "billing-2026-10.csv",
        "designations-2026-10-fixed.csv",
        &copy,
        &p("r"),
    );
    assert!(said.contains("this run restates it"), "{said}");
    assert!(p("r/partners/P-A/adjustment.csv").exists());
    close_ok(&p("r"), &h1);
    let text = listed(&h1);
    assert!(
        text.contains("2026-10 version 2 (restates version 1) [current]"),
        "{text}"
    );
    // A manifest of an older porledger says only {"restates": N}: refused.
    run_step(
        "2026-10",
        "billing-2026-10.csv",
        "designations-2026-10.csv",
        &h1,
        &p("old"),
    );
    let path = p("old/manifest.json");
    let mut m = read_json(&path);
    assert_eq!(m["history"]["restates"], 2);
    m["history"] = serde_json::json!({ "restates": 2 });
    write(&path, serde_json::to_string_pretty(&m).unwrap());
    let o = close(&p("old"), &h1, &[]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("does not say which history it was computed against"),
        "{}",
        stderr(&o)
    );
    assert_eq!(listed(&h1), text);
}

/// Every file below `dir` with the SHA-256 of its bytes, sorted.
fn tree(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                dirs.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((
                    rel,
                    porledger::ingest::sha256_hex(&std::fs::read(&p).unwrap()),
                ));
            }
        }
    }
    out.sort();
    out
}

/// The issued statements in a closed run's directory are never replaced:
/// `close` marks it (`closed.json`, outside the manifest, which stays the
/// one recorded), and `run` (with or without the history) and `render`
/// refuse it, naming the period and version; with `--history`, `run` also
/// knows an unmarked issued directory by its manifest.
#[test]
fn an_issued_output_is_never_replaced() {
    let d = tempfile::tempdir().unwrap();
    let h = d.path().join("history.db");
    let oct = d.path().join("2026-10");
    run_step(
        "2026-10",
        "billing-2026-10.csv",
        "designations-2026-10.csv",
        &h,
        &oct,
    );
    let manifest = std::fs::read(oct.join("manifest.json")).unwrap();
    let o = close(&oct, &h, &[]);
    assert_code(&o, 0);
    assert!(
        stderr(&o).contains("closed.json now marks"),
        "{}",
        stderr(&o)
    );
    // The manifest is the one recorded; the marker says what was issued.
    assert_eq!(std::fs::read(oct.join("manifest.json")).unwrap(), manifest);
    let sha = porledger::ingest::sha256_hex(&manifest);
    assert!(closes(&h).contains(&format!("manifest sha256 {sha}")));
    let mark = read_json(oct.join("closed.json"));
    assert_eq!(mark["period"], "2026-10", "{mark}");
    assert_eq!(mark["version"], 1, "{mark}");
    // Issued once: not closed again into another history (a mistyped
    // --history), whose file is not even created; the mark stays.
    let marked = read(oct.join("closed.json"));
    let other = d.path().join("other.db");
    let o = close(&oct, &other, &[]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("already issued as 2026-10 version 1 in the history")
            && stderr(&o).contains("holds no close of it"),
        "{}",
        stderr(&o)
    );
    assert!(!other.exists());
    assert_eq!(read(oct.join("closed.json")), marked);
    // Into its own history, the history says it is closed.
    let o = close(&oct, &h, &[]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("already closed (version 1)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(mark["manifest_sha256"], sha.as_str(), "{mark}");
    assert_eq!(mark["history"], h.to_str().unwrap(), "{mark}");
    let issued = tree(&oct);
    assert!(issued
        .iter()
        .any(|(p, _)| p == "partners/P-A/statement.pdf"));
    let refused = |o: &std::process::Output, tree_now: Vec<(String, String)>| {
        assert_code(o, 2);
        let e = stderr(o);
        assert!(
            e.contains("holds the statements issued as 2026-10 version 1"),
            "{e}"
        );
        assert_eq!(tree_now, issued, "the issued directory changed");
    };
    // A restatement into the issued directory, with or without the history.
    for with_history in [true, false] {
        let mut c = command();
        c.args(["run", "--period", "2026-10", "--billing"])
            .arg(format!("{D}/billing-2026-10.csv"))
            .arg("--designations")
            .arg(format!("{D}/designations-2026-10-fixed.csv"))
            .args(["--rules", "sample-data/rules.toml", "--out"])
            .arg(&oct);
        if with_history {
            c.arg("--history").arg(&h);
        }
        let o = output(&mut c);
        refused(&o, tree(&oct));
        assert!(stderr(&o).contains("to a new --out"), "{}", stderr(&o));
    }
    // Another month into it.
    let mut c = command();
    c.args(["run", "--period", "2026-11", "--billing"])
        .arg(format!("{D}/billing-2026-11.csv"))
        .arg("--designations")
        .arg(format!("{D}/designations-2026-11.csv"))
        .args(["--rules", "sample-data/rules.toml", "--no-pdf", "--out"])
        .arg(&oct);
    refused(&output(&mut c), tree(&oct));
    // Re-rendering its PDFs (another locale would change the issued ones).
    let o = porledger(["render", "--out", oct.to_str().unwrap(), "--locale", "de"]);
    refused(&o, tree(&oct));
    assert!(stderr(&o).contains("render the copy"), "{}", stderr(&o));
    // Closing it again changes nothing.
    assert_code(&close(&oct, &h, &[]), 2);
    assert_eq!(tree(&oct), issued);
    // Without the marker (a directory closed by an older porledger), run
    // --history still knows the directory by its recorded manifest.
    std::fs::remove_file(oct.join("closed.json")).unwrap();
    let unmarked = tree(&oct);
    let mut c = command();
    c.args(["run", "--period", "2026-10", "--billing"])
        .arg(format!("{D}/billing-2026-10.csv"))
        .arg("--designations")
        .arg(format!("{D}/designations-2026-10-fixed.csv"))
        .args(["--rules", "sample-data/rules.toml", "--no-pdf", "--history"])
        .arg(&h)
        .arg("--out")
        .arg(&oct);
    let o = output(&mut c);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains(&format!(
            "holds the statements issued as 2026-10 version 1 in {} (its manifest.json is the one close recorded)",
            h.display()
        )),
        "{}",
        stderr(&o)
    );
    assert_eq!(tree(&oct), unmarked);
    // The restatement goes to a new directory, which its close marks.
    let oct2 = d.path().join("2026-10-v2");
    run_step(
        "2026-10",
        "billing-2026-10.csv",
        "designations-2026-10-fixed.csv",
        &h,
        &oct2,
    );
    close_ok(&oct2, &h);
    assert_eq!(read_json(oct2.join("closed.json"))["version"], 2);
    let names: Vec<String> = std::fs::read_dir(&oct2)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("porledger-tmp"))
        .collect();
    assert!(names.is_empty(), "{names:?}");
}

/// `history --partner` matches the partner trimmed and case-insensitively,
/// like every ID: `p-a` lists `P-A`'s issued totals and lines.
#[test]
fn history_finds_a_partner_in_any_letter_case() {
    let d = tempfile::tempdir().unwrap();
    let (h, oct) = (d.path().join("history.db"), d.path().join("2026-10"));
    run_step(
        "2026-10",
        "billing-2026-10.csv",
        "designations-2026-10.csv",
        &h,
        &oct,
    );
    let mut c = command();
    c.args(["close", "--quiet", "--out"])
        .arg(&oct)
        .arg("--history")
        .arg(&h);
    assert_code(&output(&mut c), 0);
    let listing = |partner: &str| {
        let mut c = command();
        c.arg("history")
            .arg("--history")
            .arg(&h)
            .args(["--partner", partner]);
        let o = output(&mut c);
        assert_code(&o, 0);
        stdout(&o)
    };
    let exact = listing("P-A");
    assert!(exact.contains("  P-A "), "{exact}");
    assert!(exact.contains("    c1000000-"), "{exact}");
    assert_eq!(listing(" p-a "), exact);
}

/// A run made while an earlier month was still open (or made without
/// `--history`) is not closed after that month: its credits of that month's
/// charges were never matched against what it issued. (A later month closed meanwhile changes nothing
/// a run computes.)
#[test]
fn a_run_that_did_not_see_an_earlier_close_is_not_closed() {
    let d = tempfile::tempdir().unwrap();
    let h = d.path().join("history.db");
    let (oct, nov) = (d.path().join("2026-10"), d.path().join("2026-11"));
    run_step(
        "2026-10",
        "billing-2026-10.csv",
        "designations-2026-10.csv",
        &h,
        &oct,
    );
    run_step(
        "2026-11",
        "billing-2026-11.csv",
        "designations-2026-11.csv",
        &h,
        &nov,
    );
    let close = |out: &Path| {
        let mut c = command();
        c.args(["close", "--quiet", "--out"])
            .arg(out)
            .arg("--history")
            .arg(&h);
        output(&mut c)
    };
    assert_code(&close(&oct), 0);
    let o = close(&nov);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains(
            "period 2026-10 (version 1) is closed, and it was closed after the run in --out read this history"
        ),
        "{}",
        stderr(&o)
    );
    // A run made without --history read no close at all: the same.
    let plain = d.path().join("2026-11-plain");
    run_plain_with(
        "2026-11",
        "billing-2026-11.csv",
        "designations-2026-11.csv",
        &plain,
    );
    let o = close(&plain);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains(
            "period 2026-10 (version 1) is closed, and the run in --out was made without --history"
        ),
        "{}",
        stderr(&o)
    );
    assert!(!plain.join("closed.json").exists());
    // Run again, it sees October: its credit reverses October's charge.
    let nov2 = d.path().join("2026-11-again");
    run_step(
        "2026-11",
        "billing-2026-11.csv",
        "designations-2026-11.csv",
        &h,
        &nov2,
    );
    assert!(ledger(&nov2)
        .iter()
        .any(|r| r.iter().any(|c| c.starts_with("2026-10 v1 "))));
    assert_code(&close(&nov2), 0);
    // The other way round is fine: November closed, then an October run
    // made before it.
    let d = tempfile::tempdir().unwrap();
    let h2 = d.path().join("history.db");
    let (oct, nov) = (d.path().join("2026-10"), d.path().join("2026-11"));
    run_step(
        "2026-10",
        "billing-2026-10.csv",
        "designations-2026-10.csv",
        &h2,
        &oct,
    );
    run_step(
        "2026-11",
        "billing-2026-11.csv",
        "designations-2026-11.csv",
        &h2,
        &nov,
    );
    for out in [&nov, &oct] {
        let mut c = command();
        c.args(["close", "--quiet", "--out"])
            .arg(out)
            .arg("--history")
            .arg(&h2);
        assert_code(&output(&mut c), 0);
    }
}
