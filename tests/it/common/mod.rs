//! Shared helpers of the integration tests: ONE way to run the binary, the
//! committed sample runs, and readers for what a run writes.
//!
//! Quick reference (every helper panics with a message naming the command,
//! the path or the stderr when something is off, so a test needs no `unwrap`
//! around them):
//!
//! | helper | what it does |
//! |---|---|
//! | [`porledger`]`(&args)` | runs the binary with the repository root as cwd, returns its `Output` |
//! | [`porledger_in`]`(dir, &args)` | the same with `dir` as cwd |
//! | [`command`]`()` | a `Command` for the binary (cwd = repository root) to add `.arg(path)` etc. |
//! | [`run_ok`]`(&args)` | [`porledger`] and requires exit 0 |
//! | [`assert_code`]`(&out, n)` | requires exit code `n`, shows stderr otherwise |
//! | [`assert_published`]`(&out)` | requires exit 0 or 1 (outputs written; 1 = some rows rejected) |
//! | [`close`]`(out, history, &extra)`, [`close_ok`]`(out, history)` | `porledger close` of a finished run into a history; `close_ok` requires exit 0 |
//! | [`code`], [`stdout`], [`stderr`] | exit code (-1 if killed) and lossy text of an `Output` |
//! | [`run_sample`]`(Sample::Main, &extra)` | one of the committed sample runs into a fresh `TempDir` (`<dir>/out`) |
//! | [`repo`]`()`, [`fixture`]`(name)` | the repository root, `tests/fixtures/<name>` |
//! | [`read`], [`read_json`], [`write`] | file text, file as JSON, write creating parent folders |
//! | [`csv_rows`]`(text)` | every CSV record (header included) as cells, ragged rows allowed |
//! | [`tree`]`(dir)` | every file under `dir`, relative `/`-separated path -> bytes |
//! | [`assert_same_tree`]`(a, b)` | two output folders hold the same files, byte for byte |
//! | [`pdftext`]`(pdf)` | `pdftotext -layout` text of a PDF; fails (never skips) without poppler-utils |
//! | [`assert_crlf`]`(name, text)` | every CSV record ends in CRLF (snapshots normalise line endings) |
//!
//! Not every module uses every helper (and the `parquet` module only exists
//! with that feature), hence `allow(dead_code)`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (`CARGO_MANIFEST_DIR`): the cwd of [`porledger`].
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/fixtures/<name>`.
pub fn fixture(name: &str) -> PathBuf {
    repo().join("tests/fixtures").join(name)
}

/// A `Command` for the binary under test, cwd = repository root.
pub fn command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_porledger"));
    c.current_dir(repo());
    c
}

/// Runs `porledger ARGS` from the repository root.
pub fn porledger<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = command();
    c.args(args);
    output(&mut c)
}

/// Runs `porledger ARGS` from `dir`.
pub fn porledger_in<I, S>(dir: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut c = command();
    c.current_dir(dir).args(args);
    output(&mut c)
}

/// Runs a prepared command (see [`command`]), naming it if it cannot start.
pub fn output(c: &mut Command) -> Output {
    c.output()
        .unwrap_or_else(|e| panic!("cannot run {c:?}: {e}"))
}

/// [`porledger`] that must exit 0.
pub fn run_ok<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let o = porledger(args);
    assert_code(&o, 0);
    o
}

/// The exit code, -1 when killed by a signal.
pub fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Requires exit code `want`; the message shows stderr.
#[track_caller]
pub fn assert_code(o: &Output, want: i32) {
    assert_eq!(code(o), want, "exit code; stderr:\n{}", stderr(o));
}

/// Requires exit 0 or 1: the run published its outputs (1: some rows rejected).
#[track_caller]
pub fn assert_published(o: &Output) {
    assert!(
        code(o) == 0 || code(o) == 1,
        "exit {}: {}",
        code(o),
        stderr(o)
    );
}

/// The committed sample inputs, with the exact commands of `sample-data/README.md`.
#[derive(Clone, Copy, Debug)]
pub enum Sample {
    /// `sample-data/`: a year of billing, 5 partners (exit 0).
    Main,
    /// `sample-data/hard-cases/`, with `--fx` (exit 0).
    Hard,
    /// `sample-data/usage/`, with `--usage` (exit 0).
    Usage,
}

impl Sample {
    /// A short name, used in snapshot names (`main/summary.csv`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Sample::Main => "main",
            Sample::Hard => "hard",
            Sample::Usage => "usage",
        }
    }

    /// The run's arguments, without `--out`; paths relative to the repository root.
    pub fn args(self) -> &'static [&'static str] {
        match self {
            Sample::Main => &[
                "run",
                "--period",
                "2025-11..2026-10",
                "--billing",
                "sample-data/billing",
                "--designations",
                "sample-data/designations.csv",
                "--rules",
                "sample-data/rules.toml",
            ],
            Sample::Hard => &[
                "run",
                "--period",
                "2026-10",
                "--billing",
                "sample-data/hard-cases/billing-2026-10.csv",
                "--designations",
                "sample-data/hard-cases/designations.csv",
                "--rules",
                "sample-data/hard-cases/rules.toml",
                "--fx",
                "sample-data/hard-cases/fx.csv",
            ],
            Sample::Usage => &[
                "run",
                "--period",
                "2026-10",
                "--billing",
                "sample-data/usage/billing-usage-demo.csv",
                "--designations",
                "sample-data/usage/designations-usage.csv",
                "--rules",
                "sample-data/usage/rules-usage.toml",
                "--usage",
                "sample-data/usage/cpor-usage.csv",
            ],
        }
    }
}

/// Runs a committed sample from the repository root with `extra` arguments
/// (e.g. `--no-pdf`, `--quiet`) into `<returned dir>/out`, and requires exit 0
/// (every sample runs clean). The `TempDir` removes the output when dropped.
pub fn run_sample(sample: Sample, extra: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut c = command();
    c.args(sample.args()).arg("--out").arg(&out).args(extra);
    let o = output(&mut c);
    assert_eq!(
        code(&o),
        0,
        "sample {sample:?} must run clean; stderr:\n{}",
        stderr(&o)
    );
    dir
}

/// The text of a file; panics naming the path.
#[track_caller]
pub fn read(path: impl AsRef<Path>) -> String {
    let p = path.as_ref();
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A file parsed as JSON; panics naming the path.
#[track_caller]
pub fn read_json(path: impl AsRef<Path>) -> serde_json::Value {
    let p = path.as_ref();
    serde_json::from_str(&read(p)).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Writes `text` to `path`, creating the parent folders.
pub fn write(path: impl AsRef<Path>, text: impl AsRef<[u8]>) {
    let p = path.as_ref();
    if let Some(parent) = p.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(p, text).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
}

/// Changes the last digit of the file at `path` (9 to 8, else one up): the
/// same size, another SHA-256, as a hand edit of an amount would.
pub fn change_a_digit(path: impl AsRef<Path>) {
    let p = path.as_ref();
    let mut bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let at = bytes.iter().rposition(|b| b.is_ascii_digit()).unwrap();
    bytes[at] = if bytes[at] == b'9' {
        b'8'
    } else {
        bytes[at] + 1
    };
    std::fs::write(p, &bytes).unwrap();
}

/// Every record of a CSV text (the header too) as cells; rows may be ragged
/// (statements have several sections).
pub fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_string).collect())
        .collect()
}

/// Every file under `dir`: relative path (with `/`) -> bytes.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, d: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let entries = std::fs::read_dir(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(base, &p, out);
            } else {
                let rel = p
                    .strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(dir, dir, &mut m);
    m
}

/// Two output folders hold the same file names and the same bytes in each.
#[track_caller]
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    assert_eq!(
        ta.keys().collect::<Vec<_>>(),
        tb.keys().collect::<Vec<_>>(),
        "{} and {} hold different files",
        a.display(),
        b.display()
    );
    for (k, v) in &ta {
        assert!(
            v == &tb[k],
            "{k} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

/// Text of a PDF via `pdftotext -layout` (Debian `poppler-utils`). Fails,
/// never skips, when pdftotext is missing.
#[track_caller]
pub fn pdftext(pdf: &Path) -> String {
    let o = Command::new("pdftotext")
        .arg("-layout")
        .arg(pdf)
        .arg("-")
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run pdftotext ({e}): install poppler-utils (apt-get install -y poppler-utils)"
            )
        });
    assert!(
        o.status.success(),
        "pdftotext failed on {}: {}",
        pdf.display(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Every record of a CSV file ends in CRLF (line breaks inside quoted values
/// excepted). Snapshots compare text with line endings normalised, so the
/// snapshot tests check the terminators with this.
#[track_caller]
pub fn assert_crlf(name: &str, text: &str) {
    let mut quoted = false;
    let mut prev = '\0';
    for (i, c) in text.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == '\n' && !quoted {
            assert_eq!(prev, '\r', "{name}: a record ends in a bare LF (byte {i})");
        }
        prev = c;
    }
    assert!(
        text.is_empty() || text.ends_with("\r\n"),
        "{name}: does not end in CRLF"
    );
}

/// The snapshots rely on [`assert_crlf`] for line ends: it must accept CRLF
/// records with a line break inside a quoted value, and refuse a bare LF.
#[test]
fn assert_crlf_refuses_a_bare_lf_outside_quotes() {
    assert_crlf("ok", "a,b\r\n\"two\nlines\",\"x\"\"y\"\r\n");
    for bad in ["a,b\nc,d\r\n", "a,b\r\nc,d", "a,\"b\"\nc\r\n"] {
        let r = std::panic::catch_unwind(|| assert_crlf("bad", bad));
        assert!(r.is_err(), "accepted {bad:?}");
    }
}

/// `porledger close --out OUT --history HISTORY [EXTRA...]`.
pub fn close(out: &Path, history: &Path, extra: &[&str]) -> Output {
    output(close_command(out, history).args(extra))
}

/// The command `porledger close --out OUT --history HISTORY`, to add to.
pub fn close_command(out: &Path, history: &Path) -> Command {
    let mut c = command();
    c.arg("close")
        .arg("--out")
        .arg(out)
        .arg("--history")
        .arg(history);
    c
}

/// [`close`], which must succeed.
#[track_caller]
pub fn close_ok(out: &Path, history: &Path) {
    assert_code(&close(out, history, &[]), 0);
}
