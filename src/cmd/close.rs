//! `porledger close`: records a published run as the issued statements of its
//! period in the history, in one transaction.
//!
//! Reads only the run's own outputs in `--out`, each checked against the
//! SHA-256 that `manifest.json` gives for it (the bytes stored are the bytes
//! that were hashed): `manifest.json` (period, inputs, outputs),
//! `statements.json` (lines, totals, designation rows), `ledger.csv` (the
//! accruals, by column name), `source-keys.csv` when the run had `--history`
//! (each accrued billing line's reference, subscription, product and SKU IDs,
//! charge dates and whole amount, recorded with its accruals so that later
//! credits can find them) and `attainment.csv` when the run read usage
//! (monthly active users, for later high-water marks).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::CloseArgs;
use crate::cmd::Finish;
use crate::console;
use crate::error::Fatal;
use crate::history::{
    check_close, AccrualEncoder, AccrualView, CloseError, CloseRecord, FileRec, History, LineRec,
    Probe, RunHistory, StoredPart, TotalRec, UsageMark,
};
use crate::ingest::{FileDigest, HashingReader};
use crate::ledger::{LedgerColumn as C, LedgerReader};
use crate::pipeline::SOURCE_KEYS_HEADER;
use crate::render::sink::SOURCE_KEYS;
use crate::render::{closed, publish};
use crate::statements::StatementSet;

pub fn close(args: &CloseArgs) -> Result<Finish, Fatal> {
    let out = &args.out;
    // Held from reading the run to putting closed.json in place: a run or
    // render published into `out` meanwhile would get the marker of
    // statements it does not hold.
    let _lock = publish::OutLock::of_out(
        out,
        "--out",
        Some(std::time::Duration::from_secs(args.wait)),
    )?;
    let publish::Manifest {
        outputs: listed,
        json: manifest,
        sha256: manifest_sha256,
        ..
    } = publish::read_run_manifest(out, "close")?;
    console::phase_memory("close: manifest read");
    // A close of this run into this history recorded, without its mark in
    // place: a close killed between its commit and the mark's rename. It is
    // finished: the mark is put in place, nothing recorded again.
    if closed::read(out).is_none() {
        if let Ok(Some(h)) = History::open_read(&args.history) {
            if let Some((period, version)) = h.issued_as(&manifest_sha256)? {
                drop(h);
                let m = closed::ClosedMark::new(&period, version, &args.history, &manifest_sha256);
                closed::prepare(out, &m)?.publish()?;
                closed::remove_leftover_marks(out);
                if !args.quiet {
                    crate::say!(
                        "porledger: {period} version {version} of this run was already recorded in {} \
                         (a close was interrupted before it marked the run): {} is now in place; \
                         nothing was recorded again",
                        args.history.display(),
                        out.join(closed::CLOSED).display()
                    );
                }
                return Ok(Finish::Clean);
            }
        }
    }
    // A run closed into one history is issued there: closing it into
    // another (a mistyped --history) would issue it twice and rewrite its
    // mark. (Into the same history, the history says it is closed.)
    if let Some(m) = closed::read(out) {
        let here = match History::open_read(&args.history)? {
            Some(h) => h.issued_as(&m.manifest_sha256)?.is_some(),
            None => false,
        };
        if !here {
            return Err(Fatal::Input(format!(
                "{}: already issued as {} version {} in the history {} (see its {}); a run is \
                 closed into one history, and {} holds no close of it, so nothing was recorded",
                out.display(),
                m.period,
                m.version,
                m.history,
                closed::CLOSED,
                args.history.display()
            )));
        }
    }
    let manifest_path = out.join("manifest.json");
    // The period's label as `run` gives it (`2026-10..2026-10` is `2026-10`):
    // the history compares periods by label and by month.
    let period = text(&manifest, "period", &manifest_path)?;
    let period = period
        .parse::<crate::dates::Period>()
        .map_err(|e| data_err(&manifest_path, format!("\"period\": {e}")))?
        .label();
    let mut rec = CloseRecord {
        period,
        manifest_sha256,
        tool_version: text(&manifest, "version", &manifest_path)?,
        rounding: text(&manifest, "rounding", &manifest_path)?,
        run: match manifest.get("history") {
            Some(h) => Some(
                serde_json::from_value::<RunHistory>(h.clone())
                    .map_err(|e| data_err(&manifest_path, format!("\"history\": {e}")))?,
            ),
            None => None,
        },
        inputs: files(&manifest, "inputs", &manifest_path)?,
        outputs: files(&manifest, "outputs", &manifest_path)?,
        ..CloseRecord::default()
    };
    let ledger_path = out.join("ledger.csv");
    if !listed.contains_key("ledger.csv") {
        let why = if listed.contains_key("ledger.parquet") {
            "this run wrote ledger.parquet; close reads ledger.csv: run again with --ledger-format csv"
        } else {
            "not listed in manifest.json"
        };
        return Err(data_err(&ledger_path, why.into()));
    }
    let file = crate::ingest::open_regular(&ledger_path)?;
    let hashing = HashingReader::new(std::io::BufReader::with_capacity(1 << 20, file));
    let keys = match listed.get(SOURCE_KEYS) {
        Some(d) => Some(SourceKeys::open(&out.join(SOURCE_KEYS), d.clone())?),
        None => None,
    };
    let without_keys = keys.is_none();
    let rows = LedgerRows {
        rdr: LedgerReader::new(&ledger_path.display().to_string(), hashing)?,
        expected: listed.get("ledger.csv").cloned(),
        path: ledger_path.clone(),
        keys,
    };
    // A history of this build's schema; otherwise this close creates or
    // upgrades it.
    let probed = crate::history::probe(&args.history);
    let current = matches!(
        probed,
        Ok(Probe::Ours { version }) if version == crate::history::SCHEMA_VERSION
    );
    // A close the history would refuse (the period closed or overlapping a
    // closed one, a stale restatement, a run of another history) fails
    // before reading anything, and before a new history file is created;
    // the transaction decides again, in case another close came in between.
    // (A file that is not a readable history is left to `open_write`, which
    // refuses it or upgrades a version 0 file.)
    let readable = match probed {
        Ok(Probe::Missing | Probe::Blank) => true,
        Ok(Probe::Ours { version }) => version >= 1,
        Err(_) => false,
    };
    if readable {
        let h = History::open_read(&args.history)?;
        check_close(&args.history, h.as_ref(), &rec)?;
    }
    // Three things at once: a thread reads and encodes the ledger into
    // blocks, another reads the statements, and this one writes the blocks
    // into the history as they come, then the statements (one transaction).
    // A close that would create or upgrade the history reads the statements
    // before it touches the file, so that a run whose statements cannot be
    // read leaves no file, or the file as it was; meanwhile more encoded
    // blocks may wait (once per history and upgrade).
    let (parts_tx, parts_rx) = crossbeam_channel::bounded(if current {
        PARTS_IN_FLIGHT
    } else {
        PARTS_IN_FLIGHT_FIRST
    });
    // `closed.json`, written inside the transaction and put in place once it
    // is committed (see `render::closed`).
    let mark = (rec.period.clone(), rec.manifest_sha256.clone());
    let mut marker: Option<closed::Prepared> = None;
    let version = std::thread::scope(|scope| {
        scope.spawn(move || {
            rows.encode_into(&parts_tx);
            console::phase_memory("close: ledger encoded");
        });
        // Owned here, so that an early return drops it and the encoder stops.
        let parts_rx = parts_rx;
        let listed = &listed;
        let statements = scope.spawn(move || -> Result<CloseRecord, Fatal> {
            let mut part = CloseRecord::default();
            let set = read_statements(out, listed)?;
            statement_records(&set, &mut part);
            drop(set);
            if listed.contains_key("attainment.csv") {
                part.usage = read_usage(out, listed)?;
            }
            console::phase_memory("close: statements read");
            Ok(part)
        });
        let join = |h: std::thread::ScopedJoinHandle<'_, Result<CloseRecord, Fatal>>| {
            h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
        };
        let statements = if current {
            Err(statements)
        } else {
            Ok(join(statements)?)
        };
        let mut history = History::open_write(&args.history, Duration::from_secs(args.wait))?;
        let before_commit = |version: u32| -> Result<(), Fatal> {
            console::phase_memory("close: rows written");
            fault_hook();
            let (period, manifest_sha256) = &mark;
            // The output still holds the run that was read: nothing else
            // gets its marker (porledger's own publishes wait for the lock).
            let now = publish::read_manifest(out)?;
            if now.sha256 != *manifest_sha256 {
                return Err(Fatal::Input(format!(
                    "{}: manifest.json changed while close read the run (sha256 {} when read, \
                     {} now): another process published into it; nothing was recorded",
                    out.display(),
                    manifest_sha256,
                    now.sha256
                )));
            }
            let m = closed::ClosedMark::new(period, version, &args.history, manifest_sha256);
            marker = Some(closed::prepare(out, &m)?);
            Ok(())
        };
        let statements = |rec: &mut CloseRecord| -> Result<(), Fatal> {
            let part = match statements {
                Ok(part) => part,
                Err(h) => join(h)?,
            };
            rec.lines = part.lines;
            rec.totals = part.totals;
            rec.designations = part.designations;
            rec.usage = part.usage;
            Ok(())
        };
        history
            .close_encoded(&mut rec, parts_rx.iter(), statements, before_commit)
            .map_err(|e| match e {
                CloseError::History(h) => Fatal::History(h),
                CloseError::Source(f) => f,
            })
    })?;
    console::phase_memory("close: committed");
    if std::env::var_os("PORLEDGER_FAULT_AT").is_some_and(|v| {
        v.to_string_lossy()
            .split(',')
            .any(|i| i.trim() == "close-after-commit")
    }) {
        std::process::abort();
    }
    if let Some(m) = marker {
        m.publish()?;
    }
    // The marks of closes of this directory interrupted before (this close
    // holds its lock: none of them is running).
    closed::remove_leftover_marks(out);
    if !args.quiet {
        crate::say!(
            "porledger: closed {} as version {version} in {}: {} statement lines, {} partner totals, {} usage marks",
            rec.period,
            args.history.display(),
            rec.lines.len(),
            rec.totals.len(),
            rec.usage.len()
        );
        crate::say!(
            "porledger: {} now marks {} as issued: run and render refuse to replace it",
            out.join(closed::CLOSED).display(),
            out.display()
        );
        if without_keys {
            crate::say!(
                "porledger: the run in {} was made without --history, so it recorded no source keys: credits in later months cannot find the charges of {} and are accrued as new lines",
                out.display(),
                rec.period
            );
        }
    }
    Ok(Finish::Clean)
}

/// Encoded parts waiting for the writer: ~256 ledger rows each (~28 KB), so
/// at most ~15 MB.
const PARTS_IN_FLIGHT: usize = 512;
/// The same for a close that creates the history, whose writer starts only
/// once the statements are read: ~230 MB at most, about 60 % of a 1M-line
/// month (whose statements take about as long to read); a larger month's
/// encoder waits for the writer beyond that.
const PARTS_IN_FLIGHT_FIRST: usize = 8192;

/// The test hook: `PORLEDGER_FAULT_AT=close-before-commit` aborts the process
/// inside the transaction after every row is written (a real kill: nothing
/// is cleaned up), `close-after-commit` right after the commit, before the
/// mark is put in place; `sleep:close-before-commit` sleeps 60 s there (or
/// `sleep:close-before-commit:<ms>`, that many milliseconds), holding the
/// write lock (to kill it, or to race a second process against it).
fn fault_hook() {
    let Some(v) = std::env::var_os("PORLEDGER_FAULT_AT") else {
        return;
    };
    for item in v.to_string_lossy().split(',').map(str::trim) {
        if item == "close-before-commit" {
            std::process::abort();
        }
        // `sleep:close-before-commit` sleeps 60 s; with `:<ms>` after it,
        // that many milliseconds.
        if let Some(rest) = item.strip_prefix("sleep:close-before-commit") {
            let ms = match rest.strip_prefix(':') {
                Some(ms) => ms.parse().unwrap_or(60_000),
                None if rest.is_empty() => 60_000,
                None => continue,
            };
            crate::say!("porledger: test hook: sleeping before the commit of close");
            std::thread::sleep(Duration::from_millis(ms));
        }
    }
}

fn data_err(file: &Path, message: String) -> Fatal {
    Fatal::Data {
        file: file.display().to_string(),
        line: 0,
        column: None,
        message,
    }
}

fn text(v: &serde_json::Value, key: &str, file: &Path) -> Result<String, Fatal> {
    v.get(key)
        .and_then(|s| s.as_str())
        .map(str::to_string)
        .ok_or_else(|| data_err(file, format!("no \"{key}\": not a porledger manifest")))
}

fn files(v: &serde_json::Value, key: &str, file: &Path) -> Result<Vec<FileRec>, Fatal> {
    let list = v
        .get(key)
        .and_then(|l| l.as_array())
        .ok_or_else(|| data_err(file, format!("no \"{key}\": not a porledger manifest")))?;
    list.iter()
        .map(|e| {
            Ok(FileRec {
                path: text(e, "path", file)?,
                role: e
                    .get("role")
                    .and_then(|r| r.as_str())
                    .unwrap_or("")
                    .to_string(),
                sha256: text(e, "sha256", file)?,
                bytes: e.get("bytes").and_then(|b| b.as_u64()).unwrap_or(0),
            })
        })
        .collect()
}

/// What close does not do with a changed run.
const REFUSAL: &str = "close refuses to record it (the history was not changed)";

fn changed(path: &Path) -> Fatal {
    publish::changed_since_written(path, publish::Kind::Run, REFUSAL)
}

fn read_statements(
    out: &Path,
    listed: &HashMap<String, FileDigest>,
) -> Result<StatementSet, Fatal> {
    let bytes = publish::read_listed(out, publish::Kind::Run, "statements.json", listed, REFUSAL)?;
    StatementSet::from_json(&bytes).map_err(|e| Fatal::Data {
        file: out.join("statements.json").display().to_string(),
        line: e.line() as u64,
        column: None,
        message: format!("cannot read the statement model: {e}"),
    })
}

/// The statement lines, totals and designation rows of `set` into `rec`.
fn statement_records(set: &StatementSet, rec: &mut CloseRecord) {
    for p in &set.partners {
        for l in p.lines() {
            rec.lines.push(LineRec {
                partner_id: p.partner_id.clone(),
                partner_name: p.partner_name.clone(),
                customer_id: l.customer_id.to_string(),
                customer_name: l.customer_name.to_string(),
                program_id: l.program_id.to_string(),
                accrual_month: l.month.to_string(),
                currency: l.currency.as_str().to_string(),
                lines: l.lines,
                basis: l.basis.to_string(),
                amount: l.amount.to_string(),
            });
        }
        for t in &p.totals {
            rec.totals.push(TotalRec {
                partner_id: p.partner_id.clone(),
                partner_name: p.partner_name.clone(),
                currency: t.currency.as_str().to_string(),
                amount: t.amount.to_string(),
            });
        }
    }
    rec.designations = crate::history::adjust::designations_of(set);
}

/// The monthly active users of `attainment.csv` (one row per tenant,
/// workload and month: the report that won).
fn read_usage(out: &Path, listed: &HashMap<String, FileDigest>) -> Result<Vec<UsageMark>, Fatal> {
    let path = out.join("attainment.csv");
    let bytes = publish::read_listed(out, publish::Kind::Run, "attainment.csv", listed, REFUSAL)?;
    let mut rdr = csv::Reader::from_reader(bytes.as_slice());
    let header = rdr
        .headers()
        .map_err(|e| data_err(&path, e.to_string()))?
        .clone();
    let [c, w, m, u] = crate::csv_text::columns(
        &header,
        &path,
        "attainment.csv",
        ["customer_id", "workload", "month", "mau"],
    )?;
    let mut marks = Vec::new();
    for r in rdr.records() {
        let r = r.map_err(|e| data_err(&path, e.to_string()))?;
        let g = |i: usize| crate::render::excel_unescape(r.get(i).unwrap_or("")).to_string();
        marks.push(UsageMark {
            customer_id: g(c),
            workload: g(w),
            month: g(m),
            mau: g(u),
        });
    }
    Ok(marks)
}

/// The ledger's rows as accruals; at the end, the bytes read are checked
/// against the manifest (an error then rolls the close back).
struct LedgerRows<R: Read> {
    rdr: LedgerReader<HashingReader<R>>,
    expected: Option<FileDigest>,
    path: PathBuf,
    /// `source-keys.csv`, read in step with the ledger.
    keys: Option<SourceKeys<std::io::BufReader<std::fs::File>>>,
}

impl<R: Read> LedgerRows<R> {
    /// Hands each row to `f` as an accrual, borrowed (nothing is copied
    /// per row); stops early when `f` returns `false`. At the end, checks
    /// that the ledger and the keys are the files the manifest lists.
    fn each(&mut self, mut f: impl FnMut(&AccrualView<'_>) -> bool) -> Result<(), Fatal> {
        let path = self.path.display().to_string();
        while let Some(row) = self.rdr.next_row()? {
            let line = row.line();
            let num = |c: C| -> Result<Option<u64>, Fatal> {
                let v = row.get(c);
                if v.is_empty() {
                    return Ok(None);
                }
                v.parse().map(Some).map_err(|_| Fatal::Data {
                    file: path.clone(),
                    line,
                    column: Some(crate::ledger::LEDGER_COLUMNS[c as usize].name.into()),
                    message: format!("'{v}' is not a whole number"),
                })
            };
            let source_file = row.get(C::SourceFile);
            let source_line = num(C::SourceLine)?.unwrap_or(0);
            let key = match self.keys.as_mut() {
                Some(k) => k.of(source_file, source_line)?,
                None => None,
            };
            let k = |f: fn(&KeyRow) -> &Option<String>| key.and_then(|k| f(k).as_deref());
            let more = f(&AccrualView {
                partner_id: row.get(C::PartnerId),
                customer_id: row.get(C::CustomerId),
                program_id: row.get(C::ProgramId),
                association: row.get(C::Association),
                subscription_id: row.get(C::SubscriptionId),
                charge_date: row.get(C::ChargeDate),
                accrual_month: row.get(C::AccrualMonth),
                source_file,
                source_line,
                reference_id: k(|k| &k.reference_id),
                product_id: k(|k| &k.product_id),
                sku_id: k(|k| &k.sku_id),
                charge_start: k(|k| &k.charge_start),
                charge_end: k(|k| &k.charge_end),
                basis: row.get(C::BasisAmount),
                rate: row.get(C::Rate),
                share: row.get(C::Share),
                amount: row.get(C::AccrualAmount),
                currency: row.get(C::Currency),
                designation_line: num(C::DesignationLine)?,
                line_amount: k(|k| &k.line_amount),
                reverses: Some(row.get(C::Reverses)).filter(|r| !r.is_empty()),
            });
            if !more {
                return Ok(());
            }
        }
        match &self.expected {
            Some(d) if self.rdr.get_ref().is(d) => {}
            _ => return Err(changed(&self.path)),
        }
        match self.keys.as_mut() {
            Some(k) => k.finish(),
            None => Ok(()),
        }
    }

    /// Encodes every row ([`AccrualEncoder`]) and sends the parts, then
    /// [`StoredPart::End`]; an error is sent as the last item. Stops when
    /// the receiver is gone.
    fn encode_into(mut self, parts: &crossbeam_channel::Sender<Result<StoredPart, Fatal>>) {
        let mut enc = AccrualEncoder::default();
        let open = std::cell::Cell::new(true);
        let mut emit = |p| {
            if open.get() && parts.send(Ok(p)).is_err() {
                open.set(false);
            }
        };
        match self.each(|a| {
            enc.push(a, &mut emit);
            open.get()
        }) {
            Ok(()) if open.get() => enc.finish(&mut emit),
            Ok(()) => {}
            Err(e) => {
                let _ = parts.send(Err(e));
            }
        }
    }
}

/// The source keys of one accrued billing line (empty text is `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct KeyRow {
    source_file: String,
    source_line: u64,
    reference_id: Option<String>,
    subscription_id: Option<String>,
    product_id: Option<String>,
    sku_id: Option<String>,
    charge_start: Option<String>,
    charge_end: Option<String>,
    line_amount: Option<String>,
}

/// `source-keys.csv`, read in step with `ledger.csv`: both are in input
/// order, one keys row per accrued billing line and one ledger row or more
/// per accrued line (usage rows, after them, have no keys). Holds two rows
/// at a time; checked against the manifest at the end, and every keys row
/// must have been used.
struct SourceKeys<R: Read> {
    rdr: csv::Reader<HashingReader<R>>,
    path: PathBuf,
    expected: FileDigest,
    rec: csv::StringRecord,
    line: u64,
    cur: Option<KeyRow>,
    next: Option<KeyRow>,
    ended: bool,
}

impl SourceKeys<std::io::BufReader<std::fs::File>> {
    fn open(path: &Path, expected: FileDigest) -> Result<Self, Fatal> {
        let file = crate::ingest::open_regular(path)?;
        let mut rdr = csv::Reader::from_reader(HashingReader::new(
            std::io::BufReader::with_capacity(1 << 20, file),
        ));
        let header = rdr.headers().map_err(|e| data_err(path, e.to_string()))?;
        if header.iter().ne(SOURCE_KEYS_HEADER.iter().copied()) {
            return Err(Fatal::Data {
                file: path.display().to_string(),
                line: 1,
                column: None,
                message: format!(
                    "the header is not {}: not a porledger source-keys.csv",
                    SOURCE_KEYS_HEADER.join(",")
                ),
            });
        }
        Ok(SourceKeys {
            rdr,
            path: path.to_path_buf(),
            expected,
            rec: csv::StringRecord::new(),
            line: 1,
            cur: None,
            next: None,
            ended: false,
        })
    }
}

impl<R: Read> SourceKeys<R> {
    /// Reads the next row into `self.next` (unless at the end).
    fn peek(&mut self) -> Result<(), Fatal> {
        if self.next.is_some() || self.ended {
            return Ok(());
        }
        let more = self
            .rdr
            .read_record(&mut self.rec)
            .map_err(|e| data_err(&self.path, e.to_string()))?;
        if !more {
            self.ended = true;
            return Ok(());
        }
        self.line += 1;
        let g = |i: usize| {
            let v = crate::render::excel_unescape(self.rec.get(i).unwrap_or(""));
            (!v.is_empty()).then(|| v.to_string())
        };
        let source_line = self.rec.get(1).unwrap_or("");
        let source_line = source_line.parse().map_err(|_| Fatal::Data {
            file: self.path.display().to_string(),
            line: self.line,
            column: Some("source_line".into()),
            message: format!("'{source_line}' is not a whole number"),
        })?;
        self.next = Some(KeyRow {
            source_file: g(0).unwrap_or_default(),
            source_line,
            reference_id: g(2),
            subscription_id: g(3),
            product_id: g(4),
            sku_id: g(5),
            charge_start: g(6),
            charge_end: g(7),
            line_amount: g(8),
        });
        Ok(())
    }

    /// The keys of the billing line `file:line`, if it has any.
    fn of(&mut self, file: &str, line: u64) -> Result<Option<&KeyRow>, Fatal> {
        let is = |k: &Option<KeyRow>| {
            k.as_ref()
                .is_some_and(|k| k.source_line == line && k.source_file == file)
        };
        if !is(&self.cur) {
            self.peek()?;
            if !is(&self.next) {
                return Ok(None);
            }
            self.cur = self.next.take();
        }
        Ok(self.cur.as_ref())
    }

    /// After the ledger's last row: every keys row was used and the file is
    /// the one the manifest lists.
    fn finish(&mut self) -> Result<(), Fatal> {
        self.peek()?;
        if let Some(k) = &self.next {
            return Err(Fatal::Data {
                file: self.path.display().to_string(),
                line: self.line,
                column: None,
                message: format!(
                    "the keys of {}:{} match no row of ledger.csv: the two files are not of the same run",
                    k.source_file, k.source_line
                ),
            });
        }
        if !self.rdr.get_ref().is(&self.expected) {
            return Err(changed(&self.path));
        }
        Ok(())
    }
}
