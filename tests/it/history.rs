//! `--history`, `close` and `history`: issued is issued. A close is atomic
//! (also under kill -9), a period is closed once, a restatement is the next
//! version with adjustment statements, two processes never corrupt the file,
//! and a file that is not a porledger history is refused and left unchanged.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, ChildStderr, Stdio};
use std::time::Duration;

use crate::common::*;

/// Runs the usage sample (period 2026-10) into `out`, with `extra` args.
fn run_usage(out: &Path, extra: &[&str]) {
    let mut c = command();
    c.args(Sample::Usage.args())
        .arg("--out")
        .arg(out)
        .args(["--no-pdf", "--quiet"])
        .args(extra);
    assert_published(&output(&mut c));
}

/// The period of [`run_main`]: the main sample's year without its last
/// month, so that it shares no month with the usage sample's 2026-10 (a
/// history never closes two periods that share a month).
const MAIN_PERIOD: &str = "2025-11..2026-09";

/// Runs the main sample for [`MAIN_PERIOD`] into `out`.
fn run_main(out: &Path, extra: &[&str]) {
    let mut c = command();
    let args = Sample::Main.args().iter().map(|&a| {
        if a == "2025-11..2026-10" {
            MAIN_PERIOD
        } else {
            a
        }
    });
    c.args(args)
        .arg("--out")
        .arg(out)
        .args(["--no-pdf", "--quiet"])
        .args(extra);
    assert_published(&output(&mut c));
}

fn listing(history: &Path, extra: &[&str]) -> String {
    let mut c = command();
    c.arg("history").arg("--history").arg(history).args(extra);
    let o = output(&mut c);
    assert_code(&o, 0);
    stdout(&o)
}

/// `PRAGMA integrity_check` of the file, and its closes as (period, version).
fn inspect(history: &Path) -> Vec<(String, u32)> {
    let db = rusqlite::Connection::open(history).unwrap();
    let ok: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let mut st = db
        .prepare("SELECT period, version FROM closes ORDER BY period, version")
        .unwrap();
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    rows
}

fn accrual_count(history: &Path) -> i64 {
    let db = rusqlite::Connection::open(history).unwrap();
    db.query_row(
        "SELECT coalesce(sum(rows), 0) FROM accrual_blocks",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

fn ledger_rows(out: &Path) -> i64 {
    read(out.join("ledger.csv")).lines().count() as i64 - 1
}

#[test]
fn close_records_the_run_once_and_history_lists_it() {
    let d = tempfile::tempdir().unwrap();
    let (out, h) = (d.path().join("out"), d.path().join("history.db"));
    run_usage(&out, &["--history", h.to_str().unwrap()]);
    assert!(!h.exists(), "run never writes the history");
    let o = close(&out, &h, &[]);
    assert_code(&o, 0);
    assert!(
        stderr(&o).contains("closed 2026-10 as version 1"),
        "{}",
        stderr(&o)
    );
    assert_eq!(inspect(&h), vec![("2026-10".to_string(), 1)]);
    assert_eq!(accrual_count(&h), ledger_rows(&out));
    let text = listing(&h, &[]);
    assert!(text.contains("2026-10 version 1 [current]"), "{text}");
    // Closing it again is refused, and changes nothing.
    let o = close(&out, &h, &[]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("already closed (version 1)"),
        "{}",
        stderr(&o)
    );
    assert_eq!(inspect(&h), vec![("2026-10".to_string(), 1)]);
    assert_eq!(listing(&h, &[]), text);
    // The refusal comes before the run's files are read: even a statements
    // file that no longer matches the manifest gets the same answer.
    let statements = out.join("statements.json");
    write(&statements, format!(" {}", read(&statements)));
    let o = close(&out, &h, &[]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("already closed (version 1)"),
        "{}",
        stderr(&o)
    );
}

/// `history --period` reads the period as `run` and `close` do: a range of one
/// month is that month, and what is not a period is refused.
#[test]
fn history_period_of_one_month_written_as_a_range_is_that_month() {
    let d = tempfile::tempdir().unwrap();
    let (out, h) = (d.path().join("out"), d.path().join("history.db"));
    run_usage(&out, &["--history", h.to_str().unwrap()]);
    assert_code(&close(&out, &h, &["--quiet"]), 0);
    let plain = listing(&h, &["--period", "2026-10"]);
    assert!(plain.contains("2026-10 version 1 [current]"), "{plain}");
    assert_eq!(listing(&h, &["--period", "2026-10..2026-10"]), plain);
    assert_eq!(listing(&h, &["--period", " 2026-10 .. 2026-10 "]), plain);
    let other = listing(&h, &["--period", "2026-11"]);
    assert!(other.contains("no closed period 2026-11"), "{other}");
    let o = porledger([
        "history",
        "--history",
        h.to_str().unwrap(),
        "--period",
        "2026-13",
    ]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("2026-13"), "{}", stderr(&o));
}

#[test]
fn a_changed_output_is_not_recorded() {
    let d = tempfile::tempdir().unwrap();
    let (out, h) = (d.path().join("out"), d.path().join("history.db"));
    run_usage(&out, &[]);
    let ledger = out.join("ledger.csv");
    let mut text = read(&ledger);
    let dup = text.lines().nth(1).unwrap().to_owned();
    text.push_str(&dup);
    text.push_str("\r\n");
    write(&ledger, text);
    let o = close(&out, &h, &[]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("differs from the one in manifest.json"),
        "{}",
        stderr(&o)
    );
    assert!(inspect(&h).is_empty());
    assert_unmarked(&out);
}

/// `out` has no `closed.json` (the mark of an issued output), nor a
/// temporary one.
#[track_caller]
fn assert_unmarked(out: &Path) {
    let marks: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("closed.json"))
        .collect();
    assert!(marks.is_empty(), "{marks:?}");
}

/// `close` reads the statements beside the ledger: when they cannot be
/// read, nothing is recorded, and a first close leaves no history file.
#[test]
fn changed_statements_record_nothing_and_create_no_history() {
    let d = tempfile::tempdir().unwrap();
    let (out, h) = (d.path().join("out"), d.path().join("history.db"));
    run_usage(&out, &[]);
    let statements = out.join("statements.json");
    let mut text = read(&statements);
    text.insert(0, ' ');
    write(&statements, text);
    let o = close(&out, &h, &[]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("statements.json")
            && stderr(&o).contains("differs from the one in manifest.json"),
        "{}",
        stderr(&o)
    );
    assert!(!h.exists(), "a failed first close leaves no history file");
    let main = d.path().join("main");
    run_main(&main, &[]);
    assert_code(&close(&main, &h, &[]), 0);
    let before = inspect(&h);
    // Into a history with closes: a run that read it, then changed.
    let out = d.path().join("out-2");
    run_usage(&out, &["--history", h.to_str().unwrap()]);
    let statements = out.join("statements.json");
    let mut text = read(&statements);
    text.insert(0, ' ');
    write(&statements, text);
    let o = close(&out, &h, &[]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("statements.json"), "{}", stderr(&o));
    assert_eq!(inspect(&h), before);
    assert_eq!(accrual_count(&h), ledger_rows(&main));
}

/// Starts `close` with the test hook that sleeps inside the transaction, and
/// returns once it is there (holding the write lock).
fn close_paused(out: &Path, h: &Path) -> Child {
    close_paused_at(out, h, "sleep:close-before-commit").0
}

/// [`close_paused`] with the hook `hook` (`sleep:close-before-commit:<ms>`
/// sleeps that long); also returns the rest of its stderr.
fn close_paused_at(out: &Path, h: &Path, hook: &str) -> (Child, BufReader<ChildStderr>) {
    let mut c = close_command(out, h);
    c.env("PORLEDGER_FAULT_AT", hook)
        .stderr(Stdio::piped())
        .stdout(Stdio::null());
    let mut child = c.spawn().unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        assert!(err.read_line(&mut line).unwrap() > 0, "close ended early");
        if line.contains("sleeping before the commit") {
            break;
        }
    }
    (child, err)
}

/// The output's lock is one however `--out` is spelled: a run into the
/// output waits for a close that names it `out/partners/..`. And a close
/// never marks an output whose manifest changed while it read the run.
#[test]
fn close_locks_the_output_however_it_is_named() {
    let d = tempfile::tempdir().unwrap();
    let (u, h) = (d.path().join("usage"), d.path().join("history.db"));
    run_usage(&u, &[]);
    let before = read(u.join("manifest.json"));
    let mut closing = close_paused(&u.join("partners").join(".."), &h);
    let mut c = command();
    c.args(Sample::Usage.args())
        .arg("--out")
        .arg(&u)
        .args(["--no-pdf", "--quiet"]);
    let mut run = c
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        run.try_wait().unwrap().is_none(),
        "the run waits for the close"
    );
    assert_eq!(read(u.join("manifest.json")), before);
    // The close is killed: nothing recorded, the lock released, the run
    // publishes.
    closing.kill().unwrap();
    closing.wait().unwrap();
    assert_eq!(run.wait().unwrap().code(), Some(0));
    assert_unmarked(&u);

    // Something other than porledger rewrites manifest.json during a close.
    let (mut child, mut err) = close_paused_at(&u, &h, "sleep:close-before-commit:3000");
    let m = u.join("manifest.json");
    let mut text = read(&m);
    text.push(' ');
    write(&m, text);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(2), "{rest}");
    assert!(
        rest.contains("manifest.json changed while close read the run"),
        "{rest}"
    );
    assert_unmarked(&u);
    assert!(!h.exists() || inspect(&h).is_empty());
}

/// A message that cannot be written (stderr a full disk or a closed pipe)
/// changes neither what a command does nor its exit code: the run publishes
/// (after clearing an interrupted run's leftover, which it reports), the
/// close records, and both exit 0.
#[test]
fn an_unwritable_stderr_changes_nothing() {
    let full = || {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap()
    };
    let d = tempfile::tempdir().unwrap();
    let (u, h) = (d.path().join("usage"), d.path().join("history.db"));
    // A staging directory of a process that is gone.
    let leftover = d.path().join(".usage.porledger-tmp-4194303");
    std::fs::create_dir(&leftover).unwrap();
    let mut c = command();
    c.args(Sample::Usage.args())
        .arg("--out")
        .arg(&u)
        .arg("--no-pdf")
        .stdout(Stdio::null())
        .stderr(full());
    assert_eq!(c.status().unwrap().code(), Some(0));
    assert!(u.join("manifest.json").exists());
    assert!(!leftover.exists());
    let mut c = close_command(&u, &h);
    c.stdout(Stdio::null()).stderr(full());
    assert_eq!(c.status().unwrap().code(), Some(0));
    assert_eq!(inspect(&h), vec![("2026-10".to_string(), 1)]);
    assert!(u.join("closed.json").exists());
    // A fatal error still exits 2.
    let mut c = command();
    c.arg("close")
        .arg("--out")
        .arg(d.path().join("missing"))
        .arg("--history")
        .arg(&h)
        .stderr(full());
    assert_eq!(c.status().unwrap().code(), Some(2));
}

#[test]
fn close_killed_before_commit_leaves_the_history_as_it_was() {
    let d = tempfile::tempdir().unwrap();
    let (m, u, h) = (
        d.path().join("main"),
        d.path().join("usage"),
        d.path().join("history.db"),
    );
    run_main(&m, &[]);
    assert_code(&close(&m, &h, &["--quiet"]), 0);
    run_usage(&u, &["--history", h.to_str().unwrap()]);
    let before = listing(&h, &[]);
    let accruals = accrual_count(&h);
    // kill -9 while every row is written but not committed.
    let mut child = close_paused(&u, &h);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(inspect(&h), vec![(MAIN_PERIOD.to_string(), 1)]);
    assert_eq!(accrual_count(&h), accruals);
    assert_eq!(listing(&h, &[]), before);
    assert_unmarked(&u);
    // abort() at the same point.
    let mut c = close_command(&u, &h);
    c.env("PORLEDGER_FAULT_AT", "close-before-commit");
    let o = output(&mut c);
    assert_ne!(code(&o), 0);
    assert_eq!(listing(&h, &[]), before);
    assert_unmarked(&u);
    // The same close, not interrupted, then goes through and marks it.
    assert_code(&close(&u, &h, &["--quiet"]), 0);
    assert_eq!(read_json(u.join("closed.json"))["period"], "2026-10");
    assert_eq!(inspect(&h).len(), 2);
    assert_eq!(accrual_count(&h), accruals + ledger_rows(&u));
}

/// A close killed after its commit, before its mark is in place: the run
/// is recorded but unmarked. `run` and `render` refuse to replace it (the
/// close's temporary mark says it may be issued) and say to close again;
/// the next close finishes it (puts closed.json in place, records nothing
/// again, removes the temporary mark), after which they refuse it as
/// issued.
#[test]
fn close_killed_after_commit_is_finished_by_the_next_close() {
    let d = tempfile::tempdir().unwrap();
    let (m, h) = (d.path().join("main"), d.path().join("history.db"));
    run_main(&m, &[]);
    let mut c = close_command(&m, &h);
    c.env("PORLEDGER_FAULT_AT", "close-after-commit");
    let o = output(&mut c);
    assert_ne!(code(&o), 0);
    assert_eq!(inspect(&h), vec![(MAIN_PERIOD.to_string(), 1)]);
    assert!(!m.join("closed.json").exists());
    let manifest = std::fs::read(m.join("manifest.json")).unwrap();
    let leftover = || {
        std::fs::read_dir(&m)
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".closed.json.porledger-tmp-")
            })
            .count()
    };
    assert_eq!(leftover(), 1);
    let o = output(command().args(["render", "--quiet", "--out"]).arg(&m));
    assert_code(&o, 2);
    assert!(stderr(&o).contains("was interrupted"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("porledger close --out"),
        "{}",
        stderr(&o)
    );
    let o = close(&m, &h, &[]);
    assert_code(&o, 0);
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains("already recorded"), "{said}");
    assert_eq!(inspect(&h), vec![(MAIN_PERIOD.to_string(), 1)]);
    assert_eq!(read_json(m.join("closed.json"))["version"], 1);
    assert_eq!(leftover(), 0);
    assert_eq!(std::fs::read(m.join("manifest.json")).unwrap(), manifest);
    let o = output(command().args(["render", "--quiet", "--out"]).arg(&m));
    assert_code(&o, 2);
    assert!(stderr(&o).contains("issued"), "{}", stderr(&o));
}

/// `--wait` longer than a clock or SQLite can count is waiting forever,
/// not a panic.
#[test]
fn a_wait_beyond_any_clock_is_accepted() {
    let d = tempfile::tempdir().unwrap();
    let (m, h) = (d.path().join("main"), d.path().join("history.db"));
    run_main(&m, &[]);
    assert_code(
        &close(&m, &h, &["--quiet", "--wait", "18446744073709551615"]),
        0,
    );
    assert_eq!(inspect(&h), vec![(MAIN_PERIOD.to_string(), 1)]);
}

#[test]
fn a_second_process_waits_then_fails_clearly() {
    let d = tempfile::tempdir().unwrap();
    let (m, u, h) = (
        d.path().join("main"),
        d.path().join("usage"),
        d.path().join("history.db"),
    );
    run_main(&m, &[]);
    assert_code(&close(&m, &h, &["--quiet"]), 0);
    run_usage(&u, &["--history", h.to_str().unwrap()]);
    let mut first = close_paused(&u, &h);
    // Readers are not blocked by the writer (WAL), and see the committed state.
    let text = listing(&h, &[]);
    assert!(!text.contains("\n2026-10 version"), "{text}");
    let mut c = command();
    c.args(Sample::Usage.args())
        .arg("--out")
        .arg(d.path().join("again"))
        .args(["--no-pdf", "--quiet", "--history"])
        .arg(&h);
    assert_published(&output(&mut c));
    // A second closer waits --wait seconds, then fails naming the reason.
    let t = std::time::Instant::now();
    let o = close(&u, &h, &["--wait", "1"]);
    assert_code(&o, 2);
    assert!(t.elapsed() >= Duration::from_millis(900));
    assert!(
        stderr(&o).contains("in use by another porledger process"),
        "{}",
        stderr(&o)
    );
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(inspect(&h).len(), 1);
    assert_code(&close(&u, &h, &["--quiet"]), 0);
    assert_eq!(inspect(&h).len(), 2);
}

#[test]
fn two_closers_at_once_record_one_version() {
    let d = tempfile::tempdir().unwrap();
    let (u, h) = (d.path().join("usage"), d.path().join("history.db"));
    let m = d.path().join("main");
    run_main(&m, &[]);
    assert_code(&close(&m, &h, &["--quiet"]), 0);
    run_usage(&u, &["--history", h.to_str().unwrap()]);
    let spawn = || {
        let mut c = close_command(&u, &h);
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        c.spawn().unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let mut codes = vec![code(&a), code(&b)];
    codes.sort();
    assert_eq!(codes, vec![0, 2], "{} / {}", stderr(&a), stderr(&b));
    let refused = if code(&a) == 2 {
        stderr(&a)
    } else {
        stderr(&b)
    };
    assert!(refused.contains("already closed (version 1)"), "{refused}");
    assert_eq!(inspect(&h).len(), 2);
}

#[test]
fn restatement_is_the_next_version_with_adjustments() {
    let d = tempfile::tempdir().unwrap();
    let (v1, h) = (d.path().join("v1"), d.path().join("history.db"));
    let hs = h.to_str().unwrap();
    run_usage(&v1, &["--history", hs]);
    assert_code(&close(&v1, &h, &["--quiet"]), 0);
    // A late designation fix: the first designation row moves to another partner.
    let (fixed, moved_from) = moved_designation(d.path());
    let v2 = d.path().join("v2");
    let o = usage_run(&fixed, &v2, &["--no-pdf", "--history", hs]);
    assert_published(&o);
    assert!(
        stderr(&o).contains("this run restates it"),
        "{}",
        stderr(&o)
    );
    let manifest = read_json(v2.join("manifest.json"));
    assert_eq!(manifest["history"]["restates"], 1);
    // The adjustments: issued, now and the difference, which add up per partner.
    let adj = v2.join("partners").join(&moved_from).join("adjustment.csv");
    let rows = csv_rows(&read(&adj));
    assert_eq!(
        rows[0][7..10],
        ["issued_amount", "now_amount", "difference"]
    );
    assert!(rows.len() > 1);
    for r in &rows[1..] {
        let (i, n, diff): (f64, f64, f64) = (
            r[7].parse().unwrap(),
            r[8].parse().unwrap(),
            r[9].parse().unwrap(),
        );
        assert!((n - i - diff).abs() < 1e-9, "{r:?}");
        assert_eq!(r[6], "1");
        assert_eq!(r[4], "2026-10", "accrual month: {r:?}");
        assert!(
            r[10].contains("designation row 2 no longer applies"),
            "{r:?}"
        );
        assert!(r[10].contains("designations file"), "{r:?}");
    }
    assert!(v2.join("partners/9999999/adjustment.csv").exists());
    // explain shows both computations of a changed line: now (above) and issued.
    let mut c = command();
    c.args(["explain", "--out"])
        .arg(&v2)
        .args(["--partner", &moved_from, "--history", hs]);
    let o = output(&mut c);
    assert_code(&o, 0);
    let text = stdout(&o);
    assert!(
        text.contains("Issued: version 1 of period 2026-10 (from the history)"),
        "{text}"
    );
    assert!(
        text.contains("DIFFERS") && text.contains("    issued: "),
        "{text}"
    );
    assert!(text.contains("(designation line 2)"), "{text}");
    // Nothing changed in the issued version, and close records version 2.
    assert_code(&close(&v2, &h, &["--quiet"]), 0);
    assert_eq!(
        inspect(&h),
        vec![("2026-10".to_string(), 1), ("2026-10".to_string(), 2)]
    );
    let text = listing(&h, &["--period", "2026-10"]);
    assert!(
        text.contains("2026-10 version 2 (restates version 1) [current]"),
        "{text}"
    );
    // A partner the history never issued anything to is said so, not
    // listed as versions with no line.
    let text = listing(&h, &["--partner", "no-such-partner"]);
    assert!(
        text.contains("(nothing issued to partner no-such-partner in this version)")
            && text.contains("no partner no-such-partner in the history"),
        "{text}"
    );
    let text = listing(&h, &["--partner", &moved_from.to_uppercase()]);
    assert!(!text.contains("no partner"), "{text}");
    // The run of v1 cannot be closed again (it restates nothing), nor v2 twice.
    assert_code(&close(&v1, &h, &["--quiet"]), 2);
    let o = close(&v2, &h, &["--quiet"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("version 2 has been issued since"),
        "{}",
        stderr(&o)
    );
}

/// A partner that earns nothing in a restatement exists only in the history:
/// `explain --history` finds it in any letter case, names it, and shows what
/// was issued to it against nothing now.
#[test]
fn explain_history_names_a_partner_only_the_history_holds() {
    let d = tempfile::tempdir().unwrap();
    let (v1, h) = (d.path().join("v1"), d.path().join("history.db"));
    let hs = h.to_str().unwrap();
    run_usage(&v1, &["--history", hs]);
    assert_code(&close(&v1, &h, &["--quiet"]), 0);
    // Every designation of the first partner moves to another one.
    let des = read(repo().join("sample-data/usage/designations-usage.csv"));
    let first: Vec<String> = des
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let (gone, name) = (first[1].clone(), first[2].clone());
    let moved: String = des
        .lines()
        .map(|l| {
            let mut cells: Vec<&str> = l.split(',').collect();
            if cells[1] == gone {
                cells[1] = "9999999";
                cells[2] = "Late Fix Partner";
            }
            cells.join(",") + "\n"
        })
        .collect();
    let fixed = d.path().join("designations-fixed.csv");
    write(&fixed, moved);
    let v2 = d.path().join("v2");
    assert_published(&usage_run(&fixed, &v2, &["--no-pdf", "--history", hs]));
    assert!(!read(v2.join("ledger.csv")).contains(&format!(",{gone},")));
    let mut c = command();
    c.args(["explain", "--out"]).arg(&v2).args([
        "--partner",
        &format!(" {gone} "),
        "--history",
        hs,
    ]);
    let o = output(&mut c);
    assert_code(&o, 0);
    let text = stdout(&o);
    assert!(
        text.starts_with(&format!("Partner {gone} ({name}), period 2026-10")),
        "{text}"
    );
    assert!(text.contains("this partner earned nothing here"), "{text}");
    assert!(
        text.contains("Issued: version 1 of period 2026-10 (from the history)"),
        "{text}"
    );
    assert!(text.contains("DIFFERS"), "{text}");
}

/// Writes the usage sample's designations with the first row moved to a new
/// partner (a late designation fix) into `dir`; returns the file and the
/// partner the row moved from.
fn moved_designation(dir: &Path) -> (std::path::PathBuf, String) {
    let des = read(repo().join("sample-data/usage/designations-usage.csv"));
    let mut lines: Vec<String> = des.lines().map(str::to_string).collect();
    let cells: Vec<&str> = lines[1].split(',').collect();
    let moved_from = cells[1].to_string();
    let mut moved: Vec<String> = cells.iter().map(|s| s.to_string()).collect();
    moved[1] = "9999999".into();
    moved[2] = "Late Fix Partner".into();
    lines[1] = moved.join(",");
    let fixed = dir.join("designations-fixed.csv");
    write(&fixed, lines.join("\n") + "\n");
    (fixed, moved_from)
}

/// Runs the usage sample with `designations` and PDFs into `out`.
fn run_usage_pdf(designations: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec!["--quiet"];
    args.extend_from_slice(extra);
    assert_published(&usage_run(designations, out, &args));
}

/// `porledger run` of the usage sample with `designations` into `out`.
fn usage_run(designations: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = command();
    c.args([
        "run",
        "--period",
        "2026-10",
        "--billing",
        "sample-data/usage/billing-usage-demo.csv",
        "--designations",
    ])
    .arg(designations)
    .args([
        "--rules",
        "sample-data/usage/rules-usage.toml",
        "--usage",
        "sample-data/usage/cpor-usage.csv",
        "--out",
    ])
    .arg(out)
    .args(extra);
    output(&mut c)
}

/// `-1234.5` -> `-$1,234.5` (the English amount format, as far as the CSV's
/// digits go).
fn usd(plain: &str) -> String {
    let (sign, abs) = match plain.strip_prefix('-') {
        Some(a) => ("-", a),
        None => ("", plain),
    };
    let (int, frac) = abs.split_once('.').unwrap_or((abs, ""));
    let mut grouped = String::new();
    for (i, ch) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(ch);
    }
    if frac.is_empty() {
        format!("{sign}${grouped}")
    } else {
        format!("{sign}${grouped}.{frac}")
    }
}

/// A restatement publishes the adjustments as PDF too, per partner and per
/// customer, in the language of the run, listed in the manifest; a partner
/// without adjustments gets none; the bytes do not depend on the threads.
#[test]
fn restatement_publishes_adjustment_pdfs() {
    let d = tempfile::tempdir().unwrap();
    let (v1, h) = (d.path().join("v1"), d.path().join("history.db"));
    let hs = h.to_str().unwrap();
    run_usage(&v1, &[]);
    assert_code(&close(&v1, &h, &["--quiet"]), 0);
    let (fixed, moved_from) = moved_designation(d.path());
    let (a, b, de) = (d.path().join("a"), d.path().join("b"), d.path().join("de"));
    run_usage_pdf(&fixed, &a, &["--history", hs, "--threads", "1"]);
    run_usage_pdf(&fixed, &b, &["--history", hs, "--threads", "2"]);
    run_usage_pdf(&fixed, &de, &["--history", hs, "--locale", "de"]);
    let pdir = a.join("partners").join(&moved_from);
    let pdf = pdir.join("adjustment.pdf");
    assert!(pdf.exists());
    // The PDF shows the CSV's lines: previously issued, now, the difference.
    let rows = csv_rows(&read(pdir.join("adjustment.csv")));
    let text = pdftext(&pdf);
    assert!(text.contains("Adjustment statement"), "{text}");
    assert!(text.contains("Issued version"), "{text}");
    assert!(
        text.contains("restates version 1; closed, it is version 2"),
        "{text}"
    );
    for r in &rows[1..] {
        for plain in [&r[7], &r[8], &r[9]] {
            assert!(text.contains(&usd(plain)), "{plain}: {text}");
        }
    }
    assert!(text.contains("Total USD"), "{text}");
    assert!(
        text.contains("1. designation row 2 no longer applies (CPOR 2025-11-03)"),
        "{text}"
    );
    assert!(
        text.contains("designations file") && text.contains("designations-fixed.csv added"),
        "{text}"
    );
    // Per customer: only that customer's lines.
    let customer = &rows[1][1];
    let cpdf = pdir.join("adjustments").join(format!("{customer}.pdf"));
    let ctext = pdftext(&cpdf);
    assert!(ctext.contains(customer.as_str()), "{ctext}");
    // The partner the row moved to has one; the untouched partner none.
    assert!(a.join("partners/9999999/adjustment.pdf").exists());
    assert!(a.join("partners/5000202/statement.pdf").exists());
    assert!(!a.join("partners/5000202/adjustment.pdf").exists());
    assert!(!a.join("partners/5000202/adjustments").exists());
    // Listed in the manifest; byte-identical across thread counts.
    let m = read_json(a.join("manifest.json"));
    let listed: Vec<&str> = m["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    let rel = format!("partners/{moved_from}/adjustment.pdf");
    assert!(listed.contains(&rel.as_str()), "{listed:?}");
    let crel = format!("partners/{moved_from}/adjustments/{customer}.pdf");
    assert!(listed.contains(&crel.as_str()), "{listed:?}");
    let mb = read_json(b.join("manifest.json"));
    assert_eq!(m["outputs"], mb["outputs"]);
    assert_eq!(
        std::fs::read(&pdf).unwrap(),
        std::fs::read(b.join(&rel)).unwrap()
    );
    // German: the labels and the reasons in the run's language.
    let gtext = pdftext(&de.join(&rel));
    assert!(gtext.contains("Korrekturabrechnung"), "{gtext}");
    assert!(gtext.contains("Bisher ausgestellt"), "{gtext}");
    assert!(
        gtext.contains("Zuordnungszeile 2 gilt nicht mehr"),
        "{gtext}"
    );
    // `render` keeps them (their lines come from the history).
    let mut c = command();
    c.args(["render", "--out"]).arg(&a).args(["--locale", "de"]);
    assert_code(&output(&mut c), 0);
    assert_eq!(
        std::fs::read(&pdf).unwrap(),
        std::fs::read(b.join(&rel)).unwrap()
    );
    let m = read_json(a.join("manifest.json"));
    assert!(m["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["path"].as_str() == Some(rel.as_str())));
}

/// A file that is not a porledger history: every command refuses it with
/// exit 2, naming it, and its bytes do not change.
#[test]
fn foreign_or_newer_history_files_are_refused_untouched() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("out");
    run_usage(&out, &[]);
    let junk = d.path().join("junk.db");
    write(
        &junk,
        (0..4096u32)
            .map(|i| (i * 7 % 251) as u8)
            .collect::<Vec<_>>(),
    );
    let other = d.path().join("other.db");
    rusqlite::Connection::open(&other)
        .unwrap()
        .execute_batch("CREATE TABLE accounts(id INTEGER); INSERT INTO accounts VALUES (1);")
        .unwrap();
    let newer = d.path().join("newer.db");
    assert_code(&close(&out, &newer, &["--quiet"]), 0);
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    for (file, why) in [
        (&junk, "not an SQLite database"),
        (&other, "another application"),
        (&newer, "schema version 99 is newer"),
    ] {
        let before = std::fs::read(file).unwrap();
        let f = file.to_str().unwrap();
        let o = close(&out, file, &[]);
        assert_code(&o, 2);
        let e = stderr(&o);
        assert!(e.contains(f) && e.contains(why), "{e}");
        let mut c = command();
        c.args(Sample::Usage.args())
            .arg("--out")
            .arg(d.path().join("o2"))
            .args(["--no-pdf", "--quiet", "--history", f]);
        let o = output(&mut c);
        assert_code(&o, 2);
        assert!(stderr(&o).contains(why), "{}", stderr(&o));
        let o = porledger(["history", "--history", f]);
        assert_code(&o, 2);
        assert_eq!(std::fs::read(file).unwrap(), before, "{f} was modified");
    }
}

/// The columns of `attainment.csv` that say what was computed (not which file
/// line it came from), row by row.
fn attainment_values(out: &Path) -> Vec<String> {
    let text = read(out.join("attainment.csv"));
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let header = rdr.headers().unwrap().clone();
    let keep = [
        "customer_id",
        "workload",
        "month",
        "mau",
        "pau",
        "attainment",
        "target_reached",
        "prior_hwm",
        "compensable_units",
    ];
    let pos: Vec<usize> = keep
        .iter()
        .map(|k| header.iter().position(|h| h == *k).unwrap())
        .collect();
    rdr.records()
        .map(|r| {
            let r = r.unwrap();
            pos.iter().map(|&i| &r[i]).collect::<Vec<_>>().join(",")
        })
        .collect()
}

/// A monthly run given only its own month's usage file and `--history` gets
/// the same prior high-water marks, attainment and statements as a run given
/// every month's usage: `close` remembered the monthly active users.
#[test]
fn high_water_marks_from_history_equal_those_from_every_usage_file() {
    let d = tempfile::tempdir().unwrap();
    let usage = read(repo().join("sample-data/usage/cpor-usage.csv"));
    let mut lines = usage.lines();
    let header = lines.next().unwrap();
    let (mut earlier, mut october) = (format!("{header}\n"), format!("{header}\n"));
    for l in lines {
        let target = if l.ends_with(",10/1/2026") {
            &mut october
        } else {
            &mut earlier
        };
        target.push_str(l);
        target.push('\n');
    }
    assert!(october.lines().count() > 1 && earlier.lines().count() > october.lines().count());
    let earlier_csv = d.path().join("usage-to-2026-09.csv");
    let october_csv = d.path().join("usage-2026-10.csv");
    std::fs::write(&earlier_csv, &earlier).unwrap();
    std::fs::write(&october_csv, &october).unwrap();
    let history = d.path().join("history.db");
    // With every month's usage, as the sample runs.
    let full = d.path().join("full");
    run_usage(&full, &[]);
    // Close the months before October, given their usage.
    let args = |period: &str, usage: &Path, out: &Path| {
        let mut c = command();
        // The sample's arguments with another period and usage file.
        let a = Sample::Usage.args();
        let mut i = 0;
        while i < a.len() {
            match a[i] {
                "--period" => c.args(["--period", period]),
                "--usage" => c.arg("--usage").arg(usage),
                x => {
                    c.arg(x);
                    i += 1;
                    continue;
                }
            };
            i += 2;
        }
        c.args(["--no-pdf", "--quiet", "--out"]).arg(out);
        c
    };
    let before = d.path().join("before");
    let mut c = args("2025-09..2026-09", &earlier_csv, &before);
    assert_published(&output(&mut c));
    assert_code(&close(&before, &history, &[]), 0);
    // October alone, with the history.
    let monthly = d.path().join("monthly");
    let mut c = args("2026-10", &october_csv, &monthly);
    c.arg("--history").arg(&history);
    assert_published(&output(&mut c));
    let want = attainment_values(&full);
    assert!(want
        .iter()
        .any(|r| !r.split(',').nth(7).unwrap().starts_with('0')));
    assert_eq!(attainment_values(&monthly), want);
    assert_eq!(
        read(monthly.join("summary.csv")),
        read(full.join("summary.csv"))
    );
    // Without the history the same October file has no prior marks: not equal.
    let alone = d.path().join("alone");
    let mut c = args("2026-10", &october_csv, &alone);
    assert_published(&output(&mut c));
    assert_ne!(attainment_values(&alone), want);
}
