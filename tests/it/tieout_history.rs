//! `porledger tieout --history`: an earnings export covering a closed month
//! and the month being run ties out only when the closed month's issued
//! accruals are expected too; a restatement in the run takes the place of
//! the issued version; a missing, foreign or differently rounded history is
//! refused before anything is published.

use std::path::{Path, PathBuf};

use crate::common::*;
use crate::tieout::export_from_ledgers;

const D: &str = "sample-data/month-close";

/// `porledger run` of one month of the month-close story, with the history.
fn run_month(period: &str, designations: &str, rules: &Path, history: &Path, out: &Path) {
    let mut c = command();
    c.args(["run", "--period", period, "--billing"])
        .arg(format!("{D}/billing-{period}.csv"))
        .arg("--designations")
        .arg(format!("{D}/{designations}"))
        .arg("--rules")
        .arg(rules)
        .arg("--history")
        .arg(history)
        .arg("--out")
        .arg(out)
        .args(["--no-pdf", "--quiet"]);
    assert_published(&output(&mut c));
}

fn tieout(run: &Path, earnings: &Path, to: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = command();
    c.arg("tieout")
        .arg("--out")
        .arg(run)
        .arg("--earnings")
        .arg(earnings)
        .arg("--tieout-out")
        .arg(to)
        .args(["--as-of", "2026-12-01", "--quiet", "--no-pdf"])
        .args(extra);
    output(&mut c)
}

/// October run and closed (version 1), November run (its credit reverses
/// October's closed accrual of P-A).
struct Story {
    dir: tempfile::TempDir,
    history: PathBuf,
    oct: PathBuf,
    nov: PathBuf,
}

fn story() -> Story {
    let dir = tempfile::tempdir().unwrap();
    let history = dir.path().join("history.db");
    let (oct, nov) = (dir.path().join("2026-10"), dir.path().join("2026-11"));
    let rules = PathBuf::from("sample-data/rules.toml");
    run_month(
        "2026-10",
        "designations-2026-10.csv",
        &rules,
        &history,
        &oct,
    );
    close_ok(&oct, &history);
    run_month(
        "2026-11",
        "designations-2026-11.csv",
        &rules,
        &history,
        &nov,
    );
    Story {
        dir,
        history,
        oct,
        nov,
    }
}

/// An earnings export paying exactly what the runs `runs` accrued (one
/// earning per ledger row), written to `name` in the story's directory.
fn export_of(s: &Story, name: &str, runs: &[&Path]) -> PathBuf {
    let ledgers: Vec<PathBuf> = runs.iter().map(|r| r.join("ledger.csv")).collect();
    let ledgers: Vec<&Path> = ledgers.iter().map(PathBuf::as_path).collect();
    let path = s.dir.path().join(name);
    write(&path, export_from_ledgers(&ledgers, ',', false, 1));
    path
}

/// `tieout.csv` as rows; the column index of `name`.
fn table(dir: &Path) -> (Vec<Vec<String>>, impl Fn(&str) -> usize) {
    let rows = csv_rows(&read(dir.join("tieout.csv")));
    let header = rows[0].clone();
    (rows, move |name: &str| {
        header.iter().position(|c| c == name).unwrap()
    })
}

#[test]
fn a_closed_month_is_expected_from_the_history() {
    let s = story();
    let earnings = export_of(&s, "earnings.csv", &[&s.oct, &s.nov]);

    // Without the history, October's earnings are not expected.
    let without = s.dir.path().join("t-without");
    let o = tieout(&s.nov, &earnings, &without, &[]);
    assert_code(&o, 1);
    let (rows, col) = table(&without);
    let october: Vec<&Vec<String>> = rows[1..]
        .iter()
        .filter(|r| r[col("month")] == "2026-10")
        .collect();
    assert!(!october.is_empty());
    assert!(
        october
            .iter()
            .any(|r| r[col("class")] == "paid-not-expected"),
        "{october:?}"
    );

    // With it, every grain of both months ties out.
    let with = s.dir.path().join("t-with");
    let o = tieout(
        &s.nov,
        &earnings,
        &with,
        &["--history", s.history.to_str().unwrap()],
    );
    assert_code(&o, 0);
    let (rows, col) = table(&with);
    assert!(
        rows[1..].iter().all(|r| r[col("class")] == "matched"),
        "{:?}",
        rows.iter().find(|r| r[col("class")] != "matched")
    );
    let october: Vec<&Vec<String>> = rows[1..]
        .iter()
        .filter(|r| r[col("month")] == "2026-10")
        .collect();
    assert!(!october.is_empty());
    assert!(october.iter().any(|r| r[col("difference")] == "0.00"));
    for r in &october {
        assert!(
            r[col("explanation")].contains("issued in 2026-10 v1"),
            "{r:?}"
        );
        // Paid to the cent is said as for the run's own lines.
        if r[col("difference")] == "0.00" {
            assert!(
                r[col("explanation")]
                    .starts_with("Microsoft paid exactly what porledger expected: "),
                "{r:?}"
            );
        }
        assert!(
            r[col("issued_lines")]
                .contains("2026-10 v1 sample-data/month-close/billing-2026-10.csv:"),
            "{r:?}"
        );
    }
    // P-A's October grain: issued in October, partly reversed by this run's
    // credit; the explanation gives both parts.
    let pa = october
        .iter()
        .find(|r| r[col("partner_id")] == "P-A" && !r[col("ledger_lines")].is_empty())
        .unwrap_or_else(|| panic!("no October row of P-A with a ledger line: {october:?}"));
    let why = &pa[col("explanation")];
    assert!(why.contains("EUR issued in 2026-10 v1"), "{why}");
    assert!(why.contains("-62"), "{why}");
    assert!(why.contains("EUR from this run"), "{why}");
    // November's rows come from the run alone.
    assert!(rows[1..]
        .iter()
        .filter(|r| r[col("month")] == "2026-11")
        .all(|r| r[col("issued_lines")].is_empty() && !r[col("ledger_lines")].is_empty()));

    // tieout.json says what was taken from where.
    let j = read_json(with.join("tieout.json"));
    let h = &j["history"];
    let absolute = std::fs::canonicalize(&s.history).unwrap();
    assert_eq!(h["path"], absolute.to_str().unwrap(), "{h}");
    assert_eq!(h["accrual_months"], "2026-10..2026-11", "{h}");
    let versions = h["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{h}");
    assert_eq!(
        (&versions[0]["period"], &versions[0]["version"]),
        (&"2026-10".into(), &1.into())
    );
    assert!(versions[0]["accruals"].as_u64().unwrap() > 0, "{h}");
    assert!(h["replaced_by_this_run"].is_null(), "{h}");
    assert_eq!(j["accounting"]["balanced"], true);
    assert_eq!(j["accounting"]["unmatched"], 0);
    assert!(read_json(without.join("tieout.json"))
        .get("history")
        .is_none());

    // A history row explains itself down to the issued billing lines.
    let mut c = command();
    c.args(["explain", "--out"])
        .arg(&s.nov)
        .args(["--tieout-row", &pa[0], "--tieout-out"])
        .arg(&with);
    let o = output(&mut c);
    assert_code(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("issued accruals of closed periods"), "{text}");
    assert!(
        text.contains("2026-10 v1  sample-data/month-close/billing-2026-10.csv:"),
        "{text}"
    );
    assert!(text.contains("ledger.csv:"), "{text}");

    // A moved history: explain says so, and reads it where it is told.
    let moved = s.dir.path().join("moved.db");
    std::fs::rename(&s.history, &moved).unwrap();
    let explain = |extra: &[&str]| {
        let mut c = command();
        c.args(["explain", "--out"])
            .arg(&s.nov)
            .args(["--tieout-row", &pa[0], "--tieout-out"])
            .arg(&with)
            .args(extra);
        output(&mut c)
    };
    let o = explain(&[]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("no porledger history"),
        "{}",
        stderr(&o)
    );
    let o = explain(&["--history", moved.to_str().unwrap()]);
    assert_code(&o, 0);
    assert_eq!(
        stdout(&o).replace(moved.to_str().unwrap(), "H"),
        text.replace(absolute.to_str().unwrap(), "H")
    );
}

#[test]
fn a_restatement_in_the_run_takes_the_place_of_the_issued_version() {
    let s = story();
    close_ok(&s.nov, &s.history);
    // October again after the late designation fix: it restates version 1.
    let oct2 = s.dir.path().join("2026-10-v2");
    run_month(
        "2026-10",
        "designations-2026-10-fixed.csv",
        Path::new("sample-data/rules.toml"),
        &s.history,
        &oct2,
    );
    let earnings = export_of(&s, "earnings.csv", &[&oct2, &s.nov]);
    let to = s.dir.path().join("t");
    let o = tieout(
        &oct2,
        &earnings,
        &to,
        &["--history", s.history.to_str().unwrap()],
    );
    // Had October's version 1 been expected as well, October would be twice.
    assert_code(&o, 0);
    let j = read_json(to.join("tieout.json"));
    let h = &j["history"];
    assert_eq!(h["replaced_by_this_run"]["period"], "2026-10", "{h}");
    assert_eq!(h["replaced_by_this_run"]["version"], 1, "{h}");
    let used: Vec<(String, u64)> = h["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["period"].as_str().unwrap().to_string(),
                v["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(used, vec![("2026-11".to_string(), 1)]);
    let (rows, col) = table(&to);
    assert!(rows[1..]
        .iter()
        .all(|r| !r[col("issued_lines")].contains("2026-10 v1")));
}

#[test]
fn the_output_is_the_same_for_any_thread_count() {
    let s = story();
    let earnings = export_of(&s, "earnings.csv", &[&s.oct, &s.nov]);
    let mut dirs = Vec::new();
    for threads in ["1", "3"] {
        let to = s.dir.path().join(format!("t{threads}"));
        let mut c = command();
        c.arg("tieout")
            .args(["--threads", threads])
            .arg("--out")
            .arg(&s.nov)
            .arg("--earnings")
            .arg(&earnings)
            .arg("--tieout-out")
            .arg(&to)
            .arg("--history")
            .arg(&s.history)
            .args(["--as-of", "2026-12-01", "--quiet"]);
        assert_code(&output(&mut c), 0);
        dirs.push(to);
    }
    assert_same_tree(&dirs[0], &dirs[1]);
}

#[test]
fn a_missing_foreign_or_differently_rounded_history_is_refused() {
    let s = story();
    let earnings = export_of(&s, "earnings.csv", &[&s.nov]);
    let to = s.dir.path().join("t");
    let missing = s.dir.path().join("nothing.db");
    let o = tieout(
        &s.nov,
        &earnings,
        &to,
        &["--history", missing.to_str().unwrap()],
    );
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("no porledger history"),
        "{}",
        stderr(&o)
    );
    assert!(!missing.exists(), "a tie-out never creates the history");
    let foreign = s.dir.path().join("foreign.db");
    write(&foreign, "this is not a database, and it has more than 100 bytes so the probe reads a whole header of it, really");
    let before = read(&foreign);
    let o = tieout(
        &s.nov,
        &earnings,
        &to,
        &["--history", foreign.to_str().unwrap()],
    );
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("not a porledger history"),
        "{}",
        stderr(&o)
    );
    assert_eq!(read(&foreign), before);
    assert!(!to.exists(), "nothing is published");

    // November run with half-even rounding against October issued half-up.
    let rules = s.dir.path().join("rules-half-even.toml");
    let text = read("sample-data/rules.toml")
        .replace("rounding = \"half-up\"", "rounding = \"half-even\"");
    assert!(text.contains("half-even"));
    write(&rules, text);
    let nov = s.dir.path().join("2026-11-even");
    run_month(
        "2026-11",
        "designations-2026-11.csv",
        &rules,
        &s.history,
        &nov,
    );
    let both = export_of(&s, "both.csv", &[&s.oct, &nov]);
    let o = tieout(
        &nov,
        &both,
        &to,
        &["--history", s.history.to_str().unwrap()],
    );
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("2026-10 v1") && err.contains("half-up") && err.contains("half-even"),
        "{err}"
    );
    assert!(!to.exists(), "nothing is published");
}

/// A run of a closed period that is not its current version (the run closed
/// as version 1, or a restatement of version 1 made before version 2 was
/// closed from another run) is refused: its ledger would be expected in the
/// place of what is issued now.
#[test]
fn a_superseded_version_of_a_closed_period_is_refused() {
    let s = story();
    let rules = Path::new("sample-data/rules.toml");
    let draft = s.dir.path().join("2026-10-draft");
    run_month(
        "2026-10",
        "designations-2026-10.csv",
        rules,
        &s.history,
        &draft,
    );
    let oct2 = s.dir.path().join("2026-10-v2");
    run_month(
        "2026-10",
        "designations-2026-10-fixed.csv",
        rules,
        &s.history,
        &oct2,
    );
    close_ok(&oct2, &s.history);
    let earnings = export_of(&s, "earnings.csv", &[&oct2]);
    let to = s.dir.path().join("t");
    let history = ["--history", s.history.to_str().unwrap()];
    for (run, was) in [
        (
            &s.oct,
            "holds 2026-10 version 1 as it was closed, superseded",
        ),
        (&draft, "restates 2026-10 version 1 (its manifest.json)"),
    ] {
        let o = tieout(run, &earnings, &to, &history);
        assert_code(&o, 2);
        let err = stderr(&o);
        assert!(
            err.contains(&format!("--out {}: {was}", run.display()))
                && err.contains("the current version is 2")
                && err.contains("tie out the current version's run"),
            "{err}"
        );
        assert!(!to.exists(), "nothing is published");
    }
    // The current version's run ties out, in its own place.
    let o = tieout(&oct2, &earnings, &to, &history);
    assert_code(&o, 0);
    let j = read_json(to.join("tieout.json"));
    assert_eq!(j["history"]["replaced_by_this_run"]["version"], 2);
}

/// `explain --tieout-row` shows issued accruals only from the history the
/// tie-out read: tieout.json records its absolute path (so explain run from
/// another directory, one with a history of the same name, finds the same
/// file) and each version's close, so another history of that name, given
/// with `--history`, is refused.
#[test]
fn a_row_is_explained_only_from_the_history_the_tieout_read() {
    let s = story();
    let earnings = export_of(&s, "earnings.csv", &[&s.oct, &s.nov]);
    // Tied out from the story's directory, the history given relative to it.
    let to = s.dir.path().join("t");
    let mut c = command();
    c.current_dir(s.dir.path())
        .arg("tieout")
        .arg("--out")
        .arg(&s.nov)
        .arg("--earnings")
        .arg(&earnings)
        .arg("--tieout-out")
        .arg(&to)
        .args(["--history", "history.db"])
        .arg("--rules")
        .arg(repo().join("sample-data/rules.toml"))
        .args(["--as-of", "2026-12-01", "--quiet", "--no-pdf"]);
    assert_code(&output(&mut c), 0);
    let absolute = std::fs::canonicalize(&s.history).unwrap();
    let j = read_json(to.join("tieout.json"));
    assert_eq!(j["history"]["path"], absolute.to_str().unwrap());
    let v = &j["history"]["versions"][0];
    assert_eq!(v["manifest_sha256"].as_str().unwrap().len(), 64, "{v}");
    let (rows, col) = table(&to);
    let row = rows[1..]
        .iter()
        .find(|r| !r[col("issued_lines")].is_empty())
        .unwrap()[0]
        .clone();

    // Another history of the same name: October closed from other designations.
    let other = s.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    let other_history = other.join("history.db");
    let other_oct = other.join("2026-10");
    run_month(
        "2026-10",
        "designations-2026-10-fixed.csv",
        Path::new("sample-data/rules.toml"),
        &other_history,
        &other_oct,
    );
    close_ok(&other_oct, &other_history);
    let explain = |cwd: &Path, extra: &[&str]| {
        let mut c = command();
        c.current_dir(cwd)
            .args(["explain", "--out"])
            .arg(&s.nov)
            .args(["--tieout-row", &row, "--tieout-out"])
            .arg(&to)
            .args(extra);
        output(&mut c)
    };
    let o = explain(&repo(), &[]);
    assert_code(&o, 0);
    let text = stdout(&o);
    assert!(text.contains(absolute.to_str().unwrap()), "{text}");
    // Run from the other directory: still the tie-out's history.
    let o = explain(&other, &[]);
    assert_code(&o, 0);
    assert_eq!(stdout(&o), text);
    // The other history given: refused, naming the version.
    for cwd in [repo(), other.clone()] {
        let o = explain(&cwd, &["--history", other_history.to_str().unwrap()]);
        assert_code(&o, 2);
        let err = stderr(&o);
        assert!(
            err.contains("not the history the tie-out read") && err.contains("2026-10 v1"),
            "{err}"
        );
    }

    // A tie-out of an earlier porledger: the history as given (relative to
    // where it ran), no SHA-256 per version. The path is taken from the
    // tie-out's directory, wherever explain runs.
    let mut j = j;
    j["history"]["path"] = "../history.db".into();
    for v in j["history"]["versions"].as_array_mut().unwrap() {
        v.as_object_mut().unwrap().remove("manifest_sha256");
    }
    let bytes = serde_json::to_vec_pretty(&j).unwrap();
    write(to.join("tieout.json"), &bytes);
    let mut m = read_json(to.join("manifest.json"));
    for e in m["outputs"].as_array_mut().unwrap() {
        if e["path"] == "tieout.json" {
            use sha2::Digest;
            e["sha256"] = format!("{:x}", sha2::Sha256::digest(&bytes)).into();
            e["bytes"] = bytes.len().into();
        }
    }
    write(
        to.join("manifest.json"),
        serde_json::to_vec_pretty(&m).unwrap(),
    );
    for cwd in [repo(), other.clone()] {
        let o = explain(&cwd, &[]);
        assert_code(&o, 0);
        let text = stdout(&o);
        assert!(
            text.contains(&format!("{}/../history.db", to.display())),
            "{text}"
        );
        assert!(text.contains("2026-10 v1  sample-data/month-close/billing-2026-10.csv:"));
    }
}

/// A run whose credits reversed what version 1 of a closed month issued is
/// not tied out against a history in which that month was restated since
/// (version 2): its reversals and version 2's accruals would be mixed.
/// Refused like `close` refuses it, before anything is published.
#[test]
fn a_run_that_read_the_history_before_an_earlier_month_was_restated_is_refused() {
    let s = story();
    let earnings = export_of(&s, "earnings.csv", &[&s.nov]);
    let h = s.history.display().to_string();
    // Before the restatement the run ties out against the history.
    let o = tieout(
        &s.nov,
        &earnings,
        &s.dir.path().join("t-before"),
        &["--history", &h],
    );
    assert!(matches!(o.status.code(), Some(0 | 1)), "{}", stderr(&o));
    // October restated and closed as version 2.
    let oct2 = s.dir.path().join("2026-10-v2");
    let rules = PathBuf::from("sample-data/rules.toml");
    run_month(
        "2026-10",
        "designations-2026-10.csv",
        &rules,
        &s.history,
        &oct2,
    );
    close_ok(&oct2, &s.history);
    let to = s.dir.path().join("t-after");
    let o = tieout(&s.nov, &earnings, &to, &["--history", &h]);
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(
        err.contains("period 2026-10 (version 2) is closed, and it was closed after the run in --out read this history"),
        "{err}"
    );
    assert!(err.contains("then tie out that run"), "{err}");
    assert!(!to.exists());
}
