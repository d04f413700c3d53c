//! Publishing: a run's outputs appear in `--out` all at once or not at all, and
//! porledger never replaces or deletes a directory that is not its own.
//!
//! # How a run publishes
//!
//! 1. [`Staging::new`] resolves `--out` (a symbolic link to a directory is
//!    followed: the directory it points to is what gets replaced, the link stays),
//!    cleans up after interrupted runs (below), checks that an existing `--out`
//!    is porledger's (below) and creates the staging directory
//!    `.<name>.porledger-tmp-<pid>` beside it. Everything is written there.
//! 2. [`Staging::commit`] checks ownership again (the run may have taken hours)
//!    and swaps the staging directory with `--out`:
//!    - on Linux, with one `renameat2(RENAME_EXCHANGE)`: the two directory
//!      entries trade places atomically, so at every instant `--out` is either
//!      the complete old or the complete new output. Afterwards the old output
//!      sits under the staging name and is removed;
//!    - where the file system or the OS has no exchange, with two renames:
//!      `--out` -> `.<name>.porledger-old-<pid>`, then staging -> `--out`. A
//!      failure of the second rename moves the old output back. Between the
//!      two renames `--out` is missing for a moment; a kill exactly there
//!      leaves the old output under the `old` name, and the next run puts it
//!      back (the names are the recovery journal);
//!    - with no previous output, with one rename.
//!
//! A failed run (exit 2) removes its staging directory and the parent
//! directories it created, and leaves `--out` as it was. Once the new output
//! is in place, failing to remove the old one is only a warning.
//!
//! # After a kill
//!
//! A run killed at any instant leaves `--out` complete (old or new) and at most
//! a `.<name>.porledger-{tmp,old}-<pid>` directory beside it. The next run on
//! the same `--out` removes every such directory whose process is gone (the
//! pid is not running, or is a zombie; directories of live runs are left
//! alone) and that is porledger's (the staging mark, a porledger manifest, or
//! empty: see `leftover_is_ours`; a user's directory of that name is left
//! alone), puts an `old` one back when `--out` is missing, and says on stderr
//! what it did. Older versions' `.<name>.porledger-tmp-<pid>.old` count as `old`.
//! A pid that was reused by an unrelated live process keeps its leftover
//! until that process is gone (never the other way round). Durability across
//! power loss (fsync) is not part of this guarantee.
//! SIGINT, SIGTERM and SIGHUP are caught by a thread that removes the staging
//! directory before the process dies with the signal; the thread waits while
//! a commit is under way, so a signal never splits one.
//!
//! # What is porledger's
//!
//! An existing `--out` is replaced only when it is empty or when it holds a
//! `manifest.json` written by porledger (`"tool": "porledger"`, a version and
//! an `outputs` list of relative paths with SHA-256 and size) and every other
//! file below it is listed there with its size. Extra files, symbolic links,
//! changed files and write-protected files or directories make the run refuse
//! with exit 2, naming the path, before anything changes. A command replaces
//! only an earlier output of its own [`Kind`] (the manifest's `"kind"`; none
//! for a run's): a tie-out never takes the place of a run, nor a run of a
//! tie-out.
//!
//! # Test hook
//!
//! `PORLEDGER_FAULT_AT`, read once per [`Staging`], is a comma-separated list:
//! a step name makes the process `abort()` there (a real kill: no cleanup runs);
//! `fail:<op>` makes that file-system operation fail with an injected error;
//! `sleep:<step>` sleeps 60 s at the step (to deliver a signal at a known
//! point); `no-exchange` takes the two-rename path. Steps: `staged`,
//! `before-commit`, `exchanged`, `moved-old`, `renamed-new`, `removing-old`, `removed-old-files`.
//! Operations: `exchange`, `move-old`, `rename-new`, `restore-old`,
//! `first-rename`, `remove-old`. `tests/it/publish_faults.rs` runs the binary once
//! per step and operation.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::Fatal;
use crate::ingest::FileDigest;

/// The files a run wrote: their SHA-256 digests, taken while writing, so that
/// the manifest does not read gigabytes of output a second time, and their
/// paths, so that no two outputs ever share a file. Owned by the [`Staging`]
/// of the run and handed to whatever writes into it; clones share one record.
#[derive(Clone, Default)]
pub struct Written(Arc<Mutex<WrittenState>>);

#[derive(Default)]
struct WrittenState {
    digests: HashMap<PathBuf, FileDigest>,
    /// Every path claimed, keyed by its lower-cased text.
    claimed: HashMap<String, PathBuf>,
    /// The staging directory and the directory it is published as (`--out`
    /// as given): messages name a file by its published path, which the user
    /// knows, not by the staging path, which is gone when they read it.
    published_as: Option<(PathBuf, PathBuf)>,
}

impl Written {
    pub fn new() -> Written {
        Written::default()
    }

    /// A record of the files written into `staging`, which is published as
    /// `shown` (`--out` as given).
    fn published_as(staging: &Path, shown: &Path) -> Written {
        let w = Written::default();
        w.lock().published_as = Some((staging.to_path_buf(), shown.to_path_buf()));
        w
    }

    fn lock(&self) -> MutexGuard<'_, WrittenState> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims `path` for one file of this run. A second file to the same path,
    /// or to one that differs only in letter case (one file on a
    /// case-insensitive file system), is a fatal error: two IDs must never
    /// share a file. The error names both files as they would be published
    /// (below `--out`), not by their staging path.
    pub fn claim(&self, path: &Path) -> Result<(), Fatal> {
        let key = path.to_string_lossy().to_lowercase();
        let mut w = self.lock();
        if let Some(first) = w.claimed.get(&key) {
            let shown = |p: &Path| match &w.published_as {
                Some((staging, out)) => match p.strip_prefix(staging) {
                    Ok(rel) => out.join(rel),
                    Err(_) => p.to_path_buf(),
                },
                None => p.to_path_buf(),
            };
            let why = if first == path {
                "this run would write this file twice: two IDs map to one file name".to_string()
            } else {
                format!(
                    "differs only in letter case from {}, which this run also writes: \
                     on a case-insensitive file system they are one file (spell each \
                     partner and customer ID the same way in every input)",
                    shown(first).display()
                )
            };
            return Err(Fatal::Input(format!(
                "{}: {why}; nothing was published",
                shown(path).display()
            )));
        }
        w.claimed.insert(key, path.to_path_buf());
        Ok(())
    }

    /// Records the digest of a file (written or verified) for the manifest.
    pub fn remember(&self, path: &Path, digest: FileDigest) {
        self.lock().digests.insert(path.to_path_buf(), digest);
    }

    fn recall(&self, path: &Path) -> Option<FileDigest> {
        self.lock().digests.remove(path)
    }
}

/// Writes `bytes` to `path` (which no other file of the run may have) and
/// remembers their digest for the manifest.
pub fn write_file(files: &Written, path: &Path, bytes: &[u8]) -> Result<(), Fatal> {
    files.claim(path)?;
    std::fs::write(path, bytes).map_err(|e| Fatal::io(path, e))?;
    files.remember(
        path,
        FileDigest {
            sha256: crate::ingest::sha256_hex(bytes),
            bytes: bytes.len() as u64,
        },
    );
    Ok(())
}

/// A writer that hashes what passes through it; [`HashingWriter::finish`]
/// flushes, claims the path and remembers the digest of the whole file.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
    path: PathBuf,
    files: Written,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(path: &Path, inner: W, files: &Written) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            path: path.to_path_buf(),
            files: files.clone(),
        }
    }

    pub fn finish(mut self) -> Result<(), Fatal> {
        self.inner.flush().map_err(|e| Fatal::io(&self.path, e))?;
        self.files.claim(&self.path)?;
        self.files.remember(
            &self.path,
            FileDigest {
                sha256: crate::ingest::hex(&self.hasher.finalize()),
                bytes: self.bytes,
            },
        );
        Ok(())
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // At most a piece at a time, hashed right after the write has read it:
        // from the CPU's cache, not from memory (see `ingest::HASH_PIECE`).
        let n = self
            .inner
            .write(&buf[..buf.len().min(crate::ingest::HASH_PIECE)])?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

const MARKER: &str = "manifest.json";

/// The file that says a staging directory is porledger's, written first
/// into it and removed just before it is swapped into place (by then its
/// `manifest.json` says so). Never published, never listed in a manifest.
const STAGING_MARK: &str = ".porledger-staging";

/// The test hook `PORLEDGER_FAULT_AT` (see the module doc).
#[derive(Default)]
struct Faults {
    abort_at: Vec<String>,
    sleep_at: Vec<String>,
    fail: Vec<String>,
    no_exchange: bool,
}

impl Faults {
    fn from_env() -> Faults {
        let mut f = Faults::default();
        let Some(v) = std::env::var_os("PORLEDGER_FAULT_AT") else {
            return f;
        };
        for item in v.to_string_lossy().split(',').map(str::trim) {
            if let Some(op) = item.strip_prefix("fail:") {
                f.fail.push(op.to_string());
            } else if let Some(step) = item.strip_prefix("sleep:") {
                f.sleep_at.push(step.to_string());
            } else if item == "no-exchange" {
                f.no_exchange = true;
            } else if !item.is_empty() {
                f.abort_at.push(item.to_string());
            }
        }
        f
    }

    /// A point between two file-system operations.
    fn step(&self, name: &str) {
        if self.sleep_at.iter().any(|s| s == name) {
            std::thread::sleep(std::time::Duration::from_secs(60));
        }
        if self.abort_at.iter().any(|s| s == name) {
            std::process::abort();
        }
    }

    /// A file-system operation that the hook can make fail.
    fn op(&self, name: &str, f: impl FnOnce() -> std::io::Result<()>) -> std::io::Result<()> {
        if self.fail.iter().any(|s| s == name) {
            return Err(std::io::Error::other(format!("injected failure ({name})")));
        }
        f()
    }
}

/// Where a run is, for the signal thread.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the staging directory exists: a signal just ends the process.
    Preparing,
    /// Writing into the staging directory: a signal removes it.
    Filling,
    /// Swapping with `--out`: a signal waits for the swap to finish.
    Committing,
    /// Nothing of ours to clean up: a signal just ends the process.
    Done,
}

/// What a command publishes. A manifest without `"kind"` is a run's (runs
/// have always written theirs so); each command replaces only an earlier
/// output of its own kind, so a tie-out can never take the place of the
/// run it reads, or of any other run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `run` (and `render`, which publishes a run's directory again).
    Run,
    /// `tieout`.
    Tieout,
    /// `sample` (an input set).
    Sample,
}

impl Kind {
    /// The `"kind"` its manifest names (none for a run).
    fn manifest_name(self) -> Option<&'static str> {
        match self {
            Kind::Run => None,
            Kind::Tieout => Some("tieout"),
            Kind::Sample => Some("sample"),
        }
    }

    /// The command that writes an output of this kind.
    fn command(self) -> &'static str {
        match self {
            Kind::Run => "porledger run",
            Kind::Tieout => "porledger tieout",
            Kind::Sample => "porledger sample",
        }
    }

    /// The flag that names the directory.
    fn flag(self) -> &'static str {
        match self {
            Kind::Run | Kind::Sample => "--out",
            Kind::Tieout => "--tieout-out",
        }
    }

    /// What an output of this kind is, in a sentence.
    fn noun(self) -> &'static str {
        match self {
            Kind::Run => "the output of `porledger run`",
            Kind::Tieout => "a tie-out",
            Kind::Sample => "a sample input set (`porledger sample`)",
        }
    }
}

/// The lock files this process holds (see [`OutLock`]).
static LOCKED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// An exclusive lock on one output, held while a command reads an output it
/// is going to replace or mark and until it has done so: `close` (from
/// reading the run to putting `closed.json` in place), `render` (from reading
/// the run to publishing), and every publish (checking and swapping the
/// directory). Without it, a `run` published between `close`'s reading and
/// its marker left the marker on statements that were never recorded, and a
/// `render` published over a newer run a copy of the older one. The lock is
/// `flock` of `.<name>.porledger-lock` beside `--out` (an empty file, kept:
/// removing it would let two processes lock two files of one name). It is
/// re-entrant within the process (a `render` publishing under the lock it
/// holds) and released when dropped. Where the file system cannot lock (some
/// network file systems), commands run as before, unlocked.
pub struct OutLock {
    held: Option<(std::fs::File, PathBuf)>,
}

impl OutLock {
    /// Locks the existing output `--out` (given as `out`; `close` and
    /// `render`), waiting up to `wait` (for ever with `None`) for another
    /// porledger that holds it; nothing to lock when it does not exist.
    pub fn of_out(
        out: &Path,
        flag: &str,
        wait: Option<std::time::Duration>,
    ) -> Result<OutLock, Fatal> {
        let target = resolve_out(out, flag)?;
        // One lock however `--out` is spelled (`.`, `out/partners/..`, a
        // path through a link): an existing output by its real path.
        let Ok(target) = std::fs::canonicalize(&target) else {
            // Nothing there to close or render (the command says so): no
            // lock file is left beside a mistyped name.
            return Ok(OutLock { held: None });
        };
        let parent = parent_of(&target);
        let Some(name) = target.file_name().and_then(|n| n.to_str()) else {
            return Ok(OutLock { held: None });
        };
        OutLock::of(&parent, name, out, wait)
    }

    fn of(
        parent: &Path,
        name: &str,
        shown: &Path,
        wait: Option<std::time::Duration>,
    ) -> Result<OutLock, Fatal> {
        let Ok(parent) = std::fs::canonicalize(parent) else {
            return Ok(OutLock { held: None });
        };
        let path = parent.join(format!(".{}.porledger-lock", stem(name)));
        let mut locked = LOCKED.lock().unwrap_or_else(|e| e.into_inner());
        if locked.contains(&path) {
            return Ok(OutLock { held: None });
        }
        let file = match open_lock_file(&path) {
            Ok(f) => f,
            // Another user's lock file we may not read, or a directory we
            // may not create it in: like a file system that cannot lock.
            Err(LockFileError::Denied(e)) => {
                crate::say!(
                    "porledger: warning: {}: {e}; going on without the output's lock",
                    path.display()
                );
                return Ok(OutLock { held: None });
            }
            Err(LockFileError::Fatal(f)) => return Err(f),
        };
        // A wait too long to add to the clock has no deadline.
        let deadline = wait.and_then(|w| std::time::Instant::now().checked_add(w));
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) if lock_unsupported(&e) => {
                    return Ok(OutLock { held: None })
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(Fatal::io(&path, e)),
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Err(Fatal::Input(format!(
                    "{}: in use by another porledger process (a run, render or close of this \
                     output) for {} s; nothing was changed: try again when it is done",
                    shown.display(),
                    wait.unwrap_or_default().as_secs()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        locked.push(path.clone());
        Ok(OutLock {
            held: Some((file, path)),
        })
    }
}

/// The longest output name porledger's own names beside it are built from
/// as they are: `.` + name + `.porledger-tmp-4294967295.old` is then at
/// most 255 bytes, the longest file name of the usual file systems.
const STEM_MAX: usize = 255 - ".porledger-tmp-4294967295.old".len() - 1;

/// What porledger's own names beside the output `name` (its lock, staging,
/// old and kept directories) start from: `name` itself, or for a name too
/// long to take a suffix, its first bytes and 16 hex digits of its SHA-256
/// (so two long names still get names of their own).
fn stem(name: &str) -> std::borrow::Cow<'_, str> {
    if name.len() <= STEM_MAX {
        return name.into();
    }
    let digest = crate::ingest::sha256_hex(name.as_bytes());
    let mut cut = STEM_MAX - 17;
    while !name.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}~{}", &name[..cut], &digest[..16]).into()
}

enum LockFileError {
    /// Permission denied: the lock is not taken.
    Denied(std::io::Error),
    Fatal(Fatal),
}

/// Opens (or creates, readable by everyone the umask allows) the lock file
/// `path`: a regular file only. `flock` needs no write access, so an existing
/// one is opened for reading (another user's lock works too); it is never
/// followed through a symbolic link, and a FIFO or device there is refused,
/// never opened in a way that could block.
fn open_lock_file(path: &Path) -> Result<std::fs::File, LockFileError> {
    let refused = |what: &str| {
        LockFileError::Fatal(Fatal::Input(format!(
            "{}: {what}, not porledger's lock file of this output; refusing to use it (remove it)",
            path.display()
        )))
    };
    let io = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => {
            LockFileError::Denied(e)
        }
        _ => LockFileError::Fatal(Fatal::io(path, e)),
    };
    let mut create = std::fs::OpenOptions::new();
    create.write(true).create_new(true);
    let mut existing = std::fs::OpenOptions::new();
    existing.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        create.mode(0o666);
        existing.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = match create.open(path) {
        Ok(f) => f,
        // (O_EXCL: a symbolic link there, even a dangling one, is "exists".)
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            match std::fs::symlink_metadata(path) {
                Ok(m) if m.file_type().is_symlink() => return Err(refused("a symbolic link")),
                Ok(m) if !m.is_file() => return Err(refused("not a regular file")),
                _ => {}
            }
            existing.open(path).map_err(|e| {
                if e.raw_os_error() == Some(libc::ELOOP) {
                    refused("a symbolic link")
                } else {
                    io(e)
                }
            })?
        }
        Err(e) => return Err(io(e)),
    };
    match file.metadata() {
        Ok(m) if m.is_file() => Ok(file),
        Ok(_) => Err(refused("not a regular file")),
        Err(e) => Err(io(e)),
    }
}

/// The directory an output `target` lives in (`.` for a bare name).
fn parent_of(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn lock_unsupported(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOLCK) | Some(libc::EOPNOTSUPP) | Some(libc::EBADF)
    ) || e.kind() == std::io::ErrorKind::Unsupported
}

impl Drop for OutLock {
    fn drop(&mut self) {
        if let Some((file, key)) = self.held.take() {
            let mut locked = LOCKED.lock().unwrap_or_else(|e| e.into_inner());
            locked.retain(|k| *k != key);
            let _ = file.unlock();
        }
    }
}

/// A directory being filled; removed on drop unless committed.
pub struct Staging {
    pub dir: PathBuf,
    /// The record of the files written into `dir`.
    pub files: Written,
    /// The directory that gets replaced (`--out`, or where its link points).
    target: PathBuf,
    /// `--out` as given, for messages.
    shown: PathBuf,
    /// What is published: only an earlier output of the same kind is replaced.
    kind: Kind,
    /// The [`stem`] of `--out`'s name: what the names of porledger's own
    /// directories beside it are built from.
    name: String,
    parent: PathBuf,
    /// Parent directories this run created, outermost first.
    created: Vec<PathBuf>,
    faults: Faults,
    phase: Arc<Mutex<Phase>>,
    committed: bool,
}

impl Staging {
    /// Checks `out` (empty, new, or an earlier output of `kind`), cleans up
    /// after interrupted runs and creates `.<name>.porledger-tmp-<pid>` next
    /// to it (creating `out`'s parent).
    pub fn new(out: &Path, kind: Kind) -> Result<Staging, Fatal> {
        // `DIR/.` names DIR to `file_name`, but a rename onto it fails
        // (EBUSY) after all the work: refused up front like `.`.
        let written = out.to_string_lossy();
        let last = written
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or("");
        if last == "." || last == ".." {
            return Err(Fatal::Input(format!(
                "{} {}: not a directory name (name the directory itself)",
                kind.flag(),
                out.display()
            )));
        }
        let target = resolve_out(out, kind.flag())?;
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| !n.is_empty() && *n != "." && *n != "..")
            .ok_or_else(|| {
                Fatal::Input(format!(
                    "{} {}: not a directory name",
                    kind.flag(),
                    out.display()
                ))
            })?;
        let name = stem(name).into_owned();
        let parent = parent_of(&target);
        inside_no_output(&parent, out, kind)?;
        let created = create_parents(&parent)?;
        let dir = parent.join(format!(".{name}.porledger-tmp-{}", std::process::id()));
        let mut s = Staging {
            files: Written::published_as(&dir, out),
            dir,
            target,
            shown: out.to_path_buf(),
            kind,
            name,
            parent,
            created,
            faults: Faults::from_env(),
            phase: Arc::new(Mutex::new(Phase::Preparing)),
            committed: false,
        };
        // Until the staging directory exists, dropping `s` must not touch it:
        // a directory of that name was left by an earlier process of this pid.
        s.committed = true;
        recover(&s.parent, &s.name, &s.target, &s.shown)?;
        if exists(&s.target) {
            check_ours(&s.shown, &s.target, s.kind)?;
        }
        // Signals are watched before the directory exists, and it is made
        // under the phase lock: a signal that comes as it appears finds it
        // either not there yet (nothing to remove) or there and Filling
        // (removed), never there and unknown to the watcher.
        watch_signals(&s);
        {
            let mut phase = s.phase.lock().unwrap_or_else(|e| e.into_inner());
            std::fs::create_dir(&s.dir).map_err(|e| Fatal::io(&s.dir, e))?;
            *phase = Phase::Filling;
        }
        // What lets a later run tell this directory from a user's of the
        // same name, should this run be killed (see `recover`).
        let mark = s.dir.join(STAGING_MARK);
        std::fs::write(
            &mark,
            format!(
                "porledger staging directory of process {} for {}; a later porledger run \
                 on that output removes it if the process is gone\n",
                std::process::id(),
                s.shown.display()
            ),
        )
        .map_err(|e| Fatal::io(&mark, e))?;
        s.committed = false;
        s.faults.step("staged");
        Ok(s)
    }

    /// Moves the staged outputs into place, replacing a previous run's.
    pub fn commit(mut self) -> Result<(), Fatal> {
        self.faults.step("before-commit");
        // No other porledger checks, swaps or marks an output next to this
        // one meanwhile (see [`OutLock`]).
        let _lock = OutLock::of(&self.parent, &self.name, &self.shown, None)?;
        // The staging mark is not an output; from here on the directory's
        // manifest says it is porledger's.
        let mark = self.dir.join(STAGING_MARK);
        std::fs::remove_file(&mark).map_err(|e| Fatal::io(&mark, e))?;
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        *phase = Phase::Committing;
        let swapped = self.swap();
        *phase = if swapped.is_ok() {
            Phase::Done
        } else {
            Phase::Filling
        };
        drop(phase);
        let old = swapped?;
        self.committed = true;
        if let Some(old) = old {
            self.remove_old(&old);
        }
        Ok(())
    }

    /// Puts the staging directory at `--out`; returns where the previous
    /// output now is, if there was one.
    fn swap(&self) -> Result<Option<PathBuf>, Fatal> {
        let (target, dir, f) = (&self.target, &self.dir, &self.faults);
        if !exists(target) {
            f.op("first-rename", || std::fs::rename(dir, target))
                .map_err(|e| Fatal::io(target, e))?;
            return Ok(None);
        }
        // The run may have taken hours: is `--out` still ours?
        check_ours(&self.shown, target, self.kind)?;
        let exchanged = if f.no_exchange {
            Err(std::io::ErrorKind::Unsupported.into())
        } else {
            f.op("exchange", || exchange(dir, target))
        };
        match exchanged {
            Ok(()) => {
                f.step("exchanged");
                return Ok(Some(dir.clone()));
            }
            Err(e) if !exchange_unsupported(&e) => return Err(Fatal::io(target, e)),
            Err(_) => {}
        }
        let old = self.parent.join(format!(
            ".{}.porledger-old-{}",
            self.name,
            std::process::id()
        ));
        f.op("move-old", || std::fs::rename(target, &old))
            .map_err(|e| Fatal::io(target, e))?;
        f.step("moved-old");
        if let Err(e) = f.op("rename-new", || std::fs::rename(dir, target)) {
            return match f.op("restore-old", || std::fs::rename(&old, target)) {
                Ok(()) => Err(Fatal::io(target, e)),
                Err(e2) => Err(Fatal::Input(format!(
                    "{}: could not move the new output into place ({e}) nor the previous one \
                     back ({e2}): the previous output is in {}; the next run puts it back",
                    self.shown.display(),
                    old.display()
                ))),
            };
        }
        f.step("renamed-new");
        Ok(Some(old))
    }

    /// Removes the replaced output. It was checked before the swap; should a
    /// foreign file have appeared in between, the directory is kept under a
    /// name that no cleanup touches.
    fn remove_old(&self, old: &Path) {
        if let Err(e) = check_ours(&self.shown, old, self.kind) {
            let keep = self.parent.join(format!(
                "{}.porledger-kept-{}",
                self.name,
                std::process::id()
            ));
            let kept = std::fs::rename(old, &keep);
            crate::say!(
                "porledger: warning: the previous output changed during the commit ({e}); \
                 it was not deleted and is now {}",
                if kept.is_ok() { &keep } else { old }.display()
            );
            return;
        }
        let f = &self.faults;
        let removed = f.op("remove-old", || {
            remove_tree_with(old, |step| f.step(step)).map_err(std::io::Error::other)
        });
        if let Err(e) = removed {
            crate::say!(
                "porledger: warning: published {}, but could not remove the previous output \
                 in {}: {e}; the next run removes it",
                self.shown.display(),
                old.display()
            );
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let mut phase = self.phase.lock().unwrap_or_else(|e| e.into_inner());
        if !self.committed {
            // Its staging mark last (see `remove_tree_with`); whatever is
            // left after an error, the bulk removal.
            if remove_tree(&self.dir).is_err() {
                let _ = std::fs::remove_dir_all(&self.dir);
            }
            remove_created(&self.created);
        }
        *phase = Phase::Done;
    }
}

fn exists(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok()
}

/// The directory `out` (given with the option `flag`, for messages) names:
/// itself, or the directory its symbolic link points to. Anything else that
/// exists there is refused.
fn resolve_out(out: &Path, flag: &str) -> Result<PathBuf, Fatal> {
    match std::fs::symlink_metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(out.to_path_buf()),
        Err(e) => Err(Fatal::io(out, e)),
        Ok(m) if m.file_type().is_symlink() => {
            let real = std::fs::canonicalize(out).map_err(|e| {
                Fatal::Input(format!(
                    "{flag} {}: a symbolic link that does not lead to a directory ({e}); \
                     refusing to publish through it",
                    out.display()
                ))
            })?;
            if !real.is_dir() {
                return Err(Fatal::Input(format!(
                    "{flag} {}: a symbolic link to {}, which is not a directory; refusing to replace it",
                    out.display(),
                    real.display()
                )));
            }
            Ok(real)
        }
        Ok(m) if m.is_dir() => Ok(out.to_path_buf()),
        Ok(_) => Err(Fatal::Input(format!(
            "{flag} {}: exists and is not a directory; refusing to replace it",
            out.display()
        ))),
    }
}

/// Refuses to publish into another porledger output (a directory whose
/// `manifest.json` is porledger's: a run, possibly closed and issued, a
/// tie-out, a sample): `parent` (where `out` would be created) and every
/// directory above it, as far as they exist, resolved. What porledger
/// issued stays as it was issued; an output is published beside another.
fn inside_no_output(parent: &Path, out: &Path, kind: Kind) -> Result<(), Fatal> {
    let mut at = parent;
    let resolved = loop {
        let probe = if at.as_os_str().is_empty() {
            Path::new(".")
        } else {
            at
        };
        if let Ok(p) = std::fs::canonicalize(probe) {
            break p;
        }
        match at.parent() {
            Some(up) => at = up,
            None => return Ok(()),
        }
    };
    for dir in resolved.ancestors() {
        let Ok(text) = std::fs::read(dir.join("manifest.json")) else {
            continue;
        };
        let ours = serde_json::from_slice::<serde_json::Value>(&text)
            .ok()
            .is_some_and(|v| v["tool"] == "porledger");
        if ours {
            return Err(Fatal::Input(format!(
                "{} {}: inside {}, an output porledger published (its manifest.json); \
                 porledger never writes into another output, so nothing was changed: \
                 publish beside it",
                kind.flag(),
                out.display(),
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Creates `dir` and its missing ancestors; returns those it created.
fn create_parents(dir: &Path) -> Result<Vec<PathBuf>, Fatal> {
    let mut missing = Vec::new();
    let mut d = Some(dir);
    while let Some(p) = d.filter(|p| !p.as_os_str().is_empty() && !exists(p)) {
        missing.push(p.to_path_buf());
        d = p.parent();
    }
    missing.reverse();
    std::fs::create_dir_all(dir).map_err(|e| Fatal::io(dir, e))?;
    Ok(missing)
}

/// Removes the directories [`create_parents`] made, if they are still empty.
fn remove_created(created: &[PathBuf]) {
    for d in created.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

/// What a porledger-named directory beside `--out` is.
#[derive(Debug, PartialEq, Eq)]
enum Leftover {
    /// A staging directory: partial, or (after an exchange) the old output.
    Tmp(u32),
    /// The previous output, moved aside by the two-rename commit.
    Old(u32),
}

fn parse_leftover(file_name: &str, name: &str) -> Option<Leftover> {
    let rest = file_name
        .strip_prefix('.')?
        .strip_prefix(name)?
        .strip_prefix(".porledger-")?;
    let pid = |s: &str| -> Option<u32> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    if let Some(t) = rest.strip_prefix("tmp-") {
        match t.strip_suffix(".old") {
            Some(p) => pid(p).map(Leftover::Old),
            None => pid(t).map(Leftover::Tmp),
        }
    } else {
        rest.strip_prefix("old-").and_then(pid).map(Leftover::Old)
    }
}

/// Whether process `pid` may still be using its staging directory. Without a
/// way to tell, it is assumed alive (its directory is left alone).
fn pid_alive(pid: u32) -> bool {
    if pid == std::process::id() {
        return false;
    }
    if Path::new("/proc/self/stat").exists() {
        return match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            // The state follows the command name in parentheses; a zombie
            // (Z) or dead (X) process writes nothing any more.
            Ok(stat) => !matches!(
                stat.rsplit_once(')')
                    .and_then(|(_, r)| r.trim_start().chars().next()),
                Some('Z' | 'X')
            ),
            Err(_) => false,
        };
    }
    match std::process::Command::new("kill")
        .args(["-0", &pid.to_string()])
        .stderr(std::process::Stdio::piped())
        .output()
    {
        Ok(o) => o.status.success() || !String::from_utf8_lossy(&o.stderr).contains("No such"),
        Err(_) => true,
    }
}

/// Cleans up after interrupted runs on the same `--out`: puts a moved-aside
/// previous output back when `--out` is missing and removes the staging and
/// old directories of processes that are gone. Says on stderr what it did.
fn recover(parent: &Path, name: &str, target: &Path, shown: &Path) -> Result<(), Fatal> {
    let mut olds = Vec::new();
    let mut rest = Vec::new();
    for e in std::fs::read_dir(parent).map_err(|e| Fatal::io(parent, e))? {
        let e = e.map_err(|e| Fatal::io(parent, e))?;
        let Some(kind) = e.file_name().to_str().and_then(|n| parse_leftover(n, name)) else {
            continue;
        };
        let path = e.path();
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        let pid = match kind {
            Leftover::Tmp(p) | Leftover::Old(p) => p,
        };
        if !is_dir || pid_alive(pid) {
            continue;
        }
        // Only what porledger left: a named-alike directory of the user's is
        // left alone.
        if !leftover_is_ours(&path) {
            crate::say!(
                "porledger: left {} alone: it is named like what an interrupted run leaves, \
                 but holds no porledger staging mark, or files its manifest.json does not list",
                path.display()
            );
            continue;
        }
        match kind {
            Leftover::Old(_) => olds.push((path, pid)),
            Leftover::Tmp(_) => rest.push((path, pid)),
        }
    }
    if !exists(target) && !olds.is_empty() {
        // The newest one is the output that was at `--out`.
        olds.sort_by_key(|(p, _)| std::fs::symlink_metadata(p).and_then(|m| m.modified()).ok());
        let (old, pid) = olds.pop().expect("not empty");
        std::fs::rename(&old, target).map_err(|e| {
            Fatal::Input(format!(
                "{}: missing after an interrupted run (pid {pid}), and its previous output \
                 could not be put back from {}: {e}",
                shown.display(),
                old.display()
            ))
        })?;
        crate::say!(
            "porledger: {} was missing after an interrupted run (pid {pid}): put the previous \
             output back from {}",
            shown.display(),
            old.display()
        );
    }
    for (p, pid) in olds.into_iter().chain(rest) {
        match remove_tree(&p) {
            Ok(()) => crate::say!(
                "porledger: removed {}, left by an interrupted run (pid {pid})",
                p.display()
            ),
            Err(e) => crate::say!(
                "porledger: warning: could not remove {}, left by an interrupted run (pid {pid}): {e}",
                p.display()
            ),
        }
    }
    Ok(())
}

/// Whether the leftover directory `dir` (named like a staging directory or
/// a moved-aside output) is porledger's: it holds the staging mark (a run
/// killed while writing), a `manifest.json` porledger wrote (an output moved
/// aside, or staged and about to be swapped), or nothing (a run killed
/// between making it and marking it). Symbolic links are never followed.
fn leftover_is_ours(dir: &Path) -> bool {
    let regular = |name: &str| std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.is_file());
    if regular(STAGING_MARK) {
        return true;
    }
    if regular(MARKER) {
        let manifest = std::fs::read(dir.join(MARKER))
            .ok()
            .and_then(|b| serde_json::from_slice::<OwnManifest>(&b).ok());
        return manifest.is_some_and(|m| m.tool == "porledger" && holds_only_listed(dir, &m));
    }
    std::fs::read_dir(dir).is_ok_and(|mut d| d.next().is_none())
}

/// Whether every file below `dir` is its manifest `m` or a file `m` lists
/// (what a moved-aside or fully staged output holds), with no symbolic link
/// or special file: a file of the user's put there is never removed with it.
fn holds_only_listed(dir: &Path, m: &OwnManifest) -> bool {
    let listed: std::collections::HashSet<&str> =
        m.outputs.iter().map(|e| e.path.as_str()).collect();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            return false;
        };
        for e in entries {
            let Ok(e) = e else {
                return false;
            };
            let p = e.path();
            match std::fs::symlink_metadata(&p) {
                Ok(meta) if meta.is_dir() => dirs.push(p),
                Ok(meta) if meta.is_file() => {
                    let rel = rel_path(dir, &p);
                    if rel != MARKER && !listed.contains(rel.as_str()) {
                        return false;
                    }
                }
                _ => return false,
            }
        }
    }
    true
}

/// The `outputs` of a porledger manifest, as far as publishing needs them.
#[derive(Deserialize)]
struct OwnManifest {
    tool: String,
    /// Absent in a run's manifest (see [`Kind`]).
    #[serde(default)]
    kind: Option<String>,
    #[allow(dead_code)]
    version: String,
    outputs: Vec<OwnEntry>,
}

#[derive(Deserialize)]
struct OwnEntry {
    path: String,
    sha256: String,
    bytes: u64,
}

/// A relative `/`-separated path that stays inside the directory.
fn inside(rel: &str) -> bool {
    !rel.is_empty()
        && !rel.contains('\\')
        && !rel.contains('\0')
        && rel
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && !rel.contains(':')
}

/// A porledger output directory's `manifest.json`, read once: the files it
/// lists, its kind, the whole document, and its own SHA-256 (what a later
/// command records to name exactly this output).
pub struct Manifest {
    /// Relative path -> digest, for every file it lists.
    pub outputs: HashMap<String, FileDigest>,
    /// `"kind"`: none for a run's (see [`Kind`]).
    pub kind: Option<String>,
    /// The whole manifest, for the fields a command reads besides `outputs`.
    pub json: serde_json::Value,
    /// The SHA-256 of the manifest's bytes, in hex.
    pub sha256: String,
}

/// Reads the manifest of a porledger output directory: the files it lists,
/// relative path -> digest. Refuses a manifest that porledger did not write.
pub fn manifest_outputs(dir: &Path) -> Result<HashMap<String, FileDigest>, Fatal> {
    Ok(read_manifest(dir)?.outputs)
}

/// Reads and checks the manifest of a porledger output directory (refuses
/// one that porledger did not write, or one that is not a regular file).
pub fn read_manifest(dir: &Path) -> Result<Manifest, Fatal> {
    let path = dir.join(MARKER);
    let not_ours = |why: String| {
        Fatal::Input(format!(
            "{}: not a porledger manifest ({why}); refusing to replace or delete {}",
            path.display(),
            dir.display()
        ))
    };
    let meta = std::fs::symlink_metadata(&path).map_err(|_| {
        Fatal::Input(if std::fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
            format!(
                "{}: not a porledger output directory (no {MARKER})",
                dir.display()
            )
        } else {
            format!("{}: no such directory", dir.display())
        })
    })?;
    if !meta.is_file() {
        return Err(not_ours("not a regular file".into()));
    }
    let bytes = std::fs::read(&path).map_err(|e| Fatal::io(&path, e))?;
    let json: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| not_ours(format!("{e}")))?;
    let m = OwnManifest::deserialize(&json).map_err(|e| not_ours(format!("{e}")))?;
    if m.tool != "porledger" {
        return Err(not_ours(format!("\"tool\" is \"{}\"", m.tool)));
    }
    let mut outputs = HashMap::with_capacity(m.outputs.len());
    for e in m.outputs {
        if !inside(&e.path) || e.path == MARKER {
            return Err(not_ours(format!(
                "it lists \"{}\", a path outside the output",
                e.path
            )));
        }
        let hex = e.sha256.len() == 64
            && e.sha256
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return Err(not_ours(format!("\"{}\" has no SHA-256", e.path)));
        }
        let d = FileDigest {
            sha256: e.sha256,
            bytes: e.bytes,
        };
        if outputs.insert(e.path.clone(), d).is_some() {
            return Err(not_ours(format!("it lists \"{}\" twice", e.path)));
        }
    }
    Ok(Manifest {
        outputs,
        kind: m.kind,
        sha256: crate::ingest::sha256_hex(&bytes),
        json,
    })
}

/// What an output whose manifest names `kind` holds, in words.
fn holds(kind: Option<&str>) -> String {
    match kind {
        None => Kind::Run.noun().to_string(),
        Some("tieout") => Kind::Tieout.noun().to_string(),
        Some("sample") => Kind::Sample.noun().to_string(),
        Some(other) => format!("a porledger output of kind \"{other}\""),
    }
}

/// [`read_manifest`] of a directory `command` reads as a run's output:
/// another porledger output there (a tie-out, a sample input set) is named
/// as what it is, not reported as a run missing its files.
pub fn read_run_manifest(dir: &Path, command: &str) -> Result<Manifest, Fatal> {
    let m = read_manifest(dir)?;
    match m.kind.as_deref() {
        None => Ok(m),
        kind => Err(Fatal::Input(format!(
            "{}: holds {} (see its {MARKER}), not the output of `porledger run`; {command} \
             reads a run's --out directory",
            dir.display(),
            holds(kind)
        ))),
    }
}

/// A file of the porledger output `path` is in (of `kind`) changed since
/// porledger wrote it (its SHA-256 or size is not the manifest's); `refusal`
/// says what the command therefore does not do.
pub fn changed_since_written(path: &Path, kind: Kind, refusal: &str) -> Fatal {
    Fatal::Input(format!(
        "{}: its SHA-256 differs from the one in manifest.json: the output was changed after \
         porledger wrote it, so {refusal}; run `{}` again",
        path.display(),
        kind.command()
    ))
}

/// The manifest's record of `rel` in `dir` (`listed`, from
/// [`manifest_outputs`]): a file that is not listed was not written there by
/// porledger.
pub fn listed_digest<'a>(
    dir: &Path,
    rel: &str,
    listed: &'a HashMap<String, FileDigest>,
) -> Result<&'a FileDigest, Fatal> {
    listed.get(rel).ok_or_else(|| Fatal::Data {
        file: dir.join(rel).display().to_string(),
        line: 0,
        column: None,
        message: "not listed in manifest.json".into(),
    })
}

/// Reads the (small) file `rel` of `dir`, checked against its manifest
/// record: what the caller gets is what porledger wrote, read once.
pub fn read_listed(
    dir: &Path,
    kind: Kind,
    rel: &str,
    listed: &HashMap<String, FileDigest>,
    refusal: &str,
) -> Result<Vec<u8>, Fatal> {
    let path = dir.join(rel);
    let d = listed_digest(dir, rel, listed)?;
    let bytes = crate::ingest::read_regular(&path)?;
    if d.bytes != bytes.len() as u64 || d.sha256 != crate::ingest::sha256_hex(&bytes) {
        return Err(changed_since_written(&path, kind, refusal));
    }
    Ok(bytes)
}

/// Refuses unless `dir` is empty or a porledger output that porledger may
/// replace: its manifest is porledger's and of `kind`, it lists every other
/// file below `dir` with its current size, every directory below `dir` holds
/// a file it lists (porledger makes no directory it writes nothing into, so an
/// empty or foreign one is the user's), there is no symbolic link or special
/// file, and nothing is write-protected.
fn check_ours(shown: &Path, dir: &Path, kind: Kind) -> Result<(), Fatal> {
    let empty = std::fs::read_dir(dir)
        .map_err(|e| Fatal::io(dir, e))?
        .next()
        .is_none();
    if empty {
        return Ok(());
    }
    let flag = kind.flag();
    let Manifest {
        outputs: listed,
        kind: found,
        ..
    } = read_manifest(dir).map_err(|e| match e {
        Fatal::Input(m) if m.contains("refusing") => {
            Fatal::Input(format!("{flag} {}: {m}", shown.display()))
        }
        Fatal::Input(m) => Fatal::Input(format!(
            "{flag} {}: {m}; refusing to replace it",
            shown.display()
        )),
        e => e,
    })?;
    if found.as_deref() != kind.manifest_name() {
        let holds = holds(found.as_deref());
        return Err(Fatal::Input(format!(
            "{flag} {}: holds {holds} (see its {MARKER}); this command replaces only {}, \
             so nothing was changed (choose another {flag})",
            shown.display(),
            kind.noun()
        )));
    }
    let refuse = |p: &Path, why: &str| {
        Fatal::Input(format!(
            "{flag} {}: {}: {why}; porledger replaces only its own output, so nothing was \
             changed (move it away or choose another {flag})",
            shown.display(),
            p.display()
        ))
    };
    // The directories porledger wrote: those on the path of a listed file.
    let ours: std::collections::HashSet<&str> = listed
        .keys()
        .flat_map(|rel| rel.match_indices('/').map(move |(i, _)| &rel[..i]))
        .collect();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        if d != dir && !ours.contains(rel_path(dir, &d).as_str()) {
            return Err(refuse(
                &d,
                "a directory that holds no file of its manifest.json (porledger did not make it)",
            ));
        }
        let meta = std::fs::symlink_metadata(&d).map_err(|e| Fatal::io(&d, e))?;
        if meta.permissions().readonly() {
            return Err(refuse(&d, "write-protected"));
        }
        for e in std::fs::read_dir(&d).map_err(|e| Fatal::io(&d, e))? {
            let p = e.map_err(|e| Fatal::io(&d, e))?.path();
            let m = std::fs::symlink_metadata(&p).map_err(|e| Fatal::io(&p, e))?;
            if m.is_dir() {
                dirs.push(p);
                continue;
            }
            if !m.is_file() {
                return Err(refuse(&p, "not a regular file (porledger writes none)"));
            }
            let rel = rel_path(dir, &p);
            if rel == MARKER {
                continue;
            }
            match listed.get(&rel) {
                None if rel == crate::render::closed::CLOSED => {
                    return Err(refuse(
                        &p,
                        "the output was closed (its statements are issued) while this command \
                         ran",
                    ))
                }
                None => return Err(refuse(&p, "not listed in its manifest.json")),
                Some(d) if d.bytes != m.len() => {
                    return Err(refuse(
                        &p,
                        "changed since porledger wrote it (size differs)",
                    ))
                }
                Some(_) if m.permissions().readonly() => return Err(refuse(&p, "write-protected")),
                Some(_) => {}
            }
        }
    }
    Ok(())
}

/// `p` relative to `dir`, `/`-separated.
fn rel_path(dir: &Path, p: &Path) -> String {
    let rel: Vec<String> = p
        .strip_prefix(dir)
        .unwrap_or(p)
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    rel.join("/")
}

/// Swaps two directory entries in one atomic step.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // renameat2: the one atomic swap of two directories
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| {
        std::ffi::CString::new(p.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (a, b) = (c(a)?, c(b)?);
    // SAFETY: both paths are valid NUL-terminated strings that outlive the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(_: &Path, _: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// The exchange is not available here (old kernel, file system without it):
/// the two-rename commit takes over.
fn exchange_unsupported(e: &std::io::Error) -> bool {
    // EINVAL, ENOSYS, EOPNOTSUPP on Linux.
    e.kind() == std::io::ErrorKind::Unsupported || matches!(e.raw_os_error(), Some(22 | 38 | 95))
}

/// Starts the thread that removes the staging directory on SIGINT, SIGTERM or
/// SIGHUP and then ends the process as the signal would have.
#[cfg(unix)]
fn watch_signals(s: &Staging) {
    use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGTERM};
    // A signal the process was told to ignore (`nohup`, a background job of a
    // script) stays ignored.
    let wanted = [SIGINT, SIGTERM, SIGHUP]
        .into_iter()
        .filter(|&s| !ignored(s));
    let Ok(mut signals) = signal_hook::iterator::Signals::new(wanted) else {
        return;
    };
    let (dir, created, phase, shown) = (
        s.dir.clone(),
        s.created.clone(),
        s.phase.clone(),
        s.shown.clone(),
    );
    std::thread::spawn(move || {
        let Some(sig) = signals.forever().next() else {
            return;
        };
        // Held until the process ends: no commit starts after this.
        let p = phase.lock().unwrap_or_else(|e| e.into_inner());
        if *p == Phase::Filling {
            // Writers may still be adding files: try a few times.
            for _ in 0..5 {
                if std::fs::remove_dir_all(&dir).is_ok() || !exists(&dir) {
                    break;
                }
            }
            remove_created(&created);
            crate::say!(
                "porledger: interrupted: removed {}; {} is unchanged",
                dir.display(),
                shown.display()
            );
        }
        let _ = signal_hook::low_level::emulate_default_handler(sig);
        std::process::exit(128 + sig);
    });
}

#[cfg(not(unix))]
fn watch_signals(_: &Staging) {}

/// Whether `sig` is set to be ignored.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)] // sigaction query: is the signal ignored?
fn ignored(sig: i32) -> bool {
    // SAFETY: a query only (no new action); `old` is a valid, zeroed sigaction.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}

#[cfg(all(unix, not(all(target_os = "linux", target_env = "gnu"))))]
fn ignored(_: i32) -> bool {
    false
}

/// Threads for file-system work that waits on the disk rather than the CPU.
pub const IO_THREADS: usize = 16;

/// Removes a directory tree, unlinking files from several threads at once: on
/// file systems mounted with `discard` each unlink waits for the device, and a
/// previous run's thousands of statements took 20 s one by one, 1 s in parallel.
pub fn remove_tree(dir: &Path) -> Result<(), Fatal> {
    remove_tree_with(dir, |_| {})
}

/// [`remove_tree`], calling `step` with the fault hook's step names: once the
/// first file is gone (`removing-old`) and once only its marks are left
/// (`removed-old-files`).
///
/// What says the tree is porledger's (its top-level `manifest.json` or
/// staging mark) goes last, after every other file and directory: a removal
/// killed at any point leaves a tree a later run recognises as its own
/// (see `leftover_is_ours`) and removes, never one it must leave alone.
fn remove_tree_with(dir: &Path, step: impl Fn(&str)) -> Result<(), Fatal> {
    use rayon::prelude::*;
    let mut files = Vec::new();
    let mut marks = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        let d = dirs[i].clone();
        for e in std::fs::read_dir(&d).map_err(|e| Fatal::io(&d, e))? {
            let e = e.map_err(|e| Fatal::io(&d, e))?;
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                dirs.push(p);
            } else if i == 0 && (e.file_name() == MARKER || e.file_name() == STAGING_MARK) {
                marks.push(p);
            } else {
                files.push(p);
            }
        }
        i += 1;
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(IO_THREADS)
        .build()
        .map_err(|e| Fatal::Input(format!("cannot start I/O threads: {e}")))?;
    if let Some(f) = files.pop() {
        std::fs::remove_file(&f).map_err(|e| Fatal::io(&f, e))?;
        step("removing-old");
    }
    pool.install(|| {
        files
            .par_iter()
            .try_for_each(|f| std::fs::remove_file(f).map_err(|e| Fatal::io(f, e)))
    })?;
    for d in dirs[1..].iter().rev() {
        std::fs::remove_dir(d).map_err(|e| Fatal::io(d, e))?;
    }
    step("removed-old-files");
    for m in &marks {
        std::fs::remove_file(m).map_err(|e| Fatal::io(m, e))?;
    }
    std::fs::remove_dir(dir).map_err(|e| Fatal::io(dir, e))?;
    Ok(())
}

/// One file in the manifest.
#[derive(Serialize, Clone, Debug)]
pub struct FileEntry {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

/// Every file below `dir` except the manifest itself, sorted by relative path
/// (`/`-separated), with its SHA-256.
/// Digests that `files` recorded are used while the size still matches.
pub fn hash_outputs(dir: &Path, files: &Written) -> Result<Vec<FileEntry>, Fatal> {
    let record = files;
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Fatal> {
        for e in std::fs::read_dir(dir).map_err(|e| Fatal::io(dir, e))? {
            let e = e.map_err(|e| Fatal::io(dir, e))?;
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, out)?;
            } else {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, &mut files)?;
    let mut entries: Vec<FileEntry> = files
        .iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(dir).ok()?;
            let rel: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            Some((p, rel.join("/")))
        })
        .filter(|(_, rel)| rel != MARKER && rel != STAGING_MARK)
        .map(|(p, rel)| {
            let len = std::fs::metadata(p).map_err(|e| Fatal::io(p, e))?.len();
            let d = match record.recall(p) {
                Some(d) if d.bytes == len => d,
                // Not written through this module (or changed since): read it,
                // streamed, as the ledger can be gigabytes.
                _ => crate::ingest::sha256_file(p)?,
            };
            Ok(FileEntry {
                path: rel,
                sha256: d.sha256,
                bytes: d.bytes,
                role: None,
                format: None,
            })
        })
        .collect::<Result<_, Fatal>>()?;
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// Writes a value as pretty JSON with a trailing newline, streamed into the
/// file (never a whole string in memory). `statements.json`, compact and
/// large, has a writer of its own ([`crate::render::json`]).
pub fn write_json(files: &Written, path: &Path, value: &impl Serialize) -> Result<(), Fatal> {
    let f = std::fs::File::create(path).map_err(|e| Fatal::io(path, e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 16, HashingWriter::new(path, f, files));
    serde_json::to_writer_pretty(&mut w, value).map_err(|e| Fatal::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    w.write_all(b"\n").map_err(|e| Fatal::io(path, e))?;
    w.into_inner()
        .map_err(|e| Fatal::io(path, e.into_error()))?
        .finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Publishes `files` (relative path, text) to `out` with a porledger manifest.
    fn publish(out: &Path, files: &[(&str, &str)]) -> Result<(), Fatal> {
        let s = Staging::new(out, Kind::Run)?;
        for (rel, text) in files {
            let p = s.dir.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            write_file(&s.files, &p, text.as_bytes())?;
        }
        let outputs = hash_outputs(&s.dir, &s.files)?;
        let m = serde_json::json!({"tool": "porledger", "version": "0", "outputs": outputs});
        write_json(&s.files, &s.dir.join(MARKER), &m)?;
        s.commit()
    }

    /// The names in `dir`, but the outputs' lock files (kept by design).
    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".porledger-lock"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn failed_staging_leaves_previous_output() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        publish(&out, &[("a.csv", "1")]).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("a.csv")).unwrap(), "1");
        let s = Staging::new(&out, Kind::Run).unwrap();
        std::fs::write(s.dir.join("a.csv"), "2").unwrap();
        drop(s); // a failed run
        assert_eq!(std::fs::read_to_string(out.join("a.csv")).unwrap(), "1");
        assert_eq!(names(tmp.path()), ["out"], "staging removed");
        publish(&out, &[("b/c.csv", "3")]).unwrap();
        assert_eq!(std::fs::read_to_string(out.join("b/c.csv")).unwrap(), "3");
        assert!(!out.join("a.csv").exists());
        assert_eq!(names(tmp.path()), ["out"]);
    }

    #[test]
    fn an_output_name_of_255_bytes_is_published_replaced_and_cleaned_up() {
        let tmp = tempfile::tempdir().unwrap();
        for name in [
            "o".repeat(255),
            format!("{}{}", "é".repeat(120), "x".repeat(15)),
            "p".repeat(STEM_MAX + 1),
        ] {
            assert!(name.len() <= 255);
            let out = tmp.path().join(&name);
            publish(&out, &[("a.csv", "1")]).unwrap();
            publish(&out, &[("a.csv", "2")]).unwrap();
            assert_eq!(std::fs::read_to_string(out.join("a.csv")).unwrap(), "2");
            // An interrupted run's staging directory is found and removed.
            let s = Staging::new(&out, Kind::Run).unwrap();
            assert!(s.dir.file_name().unwrap().len() <= 255);
            std::mem::forget(s);
            publish(&out, &[("a.csv", "3")]).unwrap();
            assert_eq!(names(tmp.path()), std::slice::from_ref(&name));
            remove_tree(&out).unwrap();
        }
        // The long names' own names: bounded, of their own, and a short
        // name's are as before.
        let (a, b) = ("a".repeat(240), format!("{}b", "a".repeat(239)));
        assert_ne!(stem(&a), stem(&b));
        assert_eq!(stem(&a).len(), STEM_MAX);
        assert_eq!(stem(&"a".repeat(STEM_MAX)), "a".repeat(STEM_MAX));
        assert_eq!(stem("out"), "out");
        let multi = "é".repeat(120);
        assert!(stem(&multi).len() <= STEM_MAX && stem(&multi).starts_with('é'));
    }

    #[test]
    fn a_failed_run_removes_the_parents_it_created() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Staging::new(&tmp.path().join("x/y/out"), Kind::Run).unwrap();
        drop(s);
        assert!(names(tmp.path()).is_empty());
    }

    #[test]
    fn refuses_to_replace_a_foreign_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("precious.txt"), "x").unwrap();
        assert!(Staging::new(tmp.path(), Kind::Run).is_err());
        // A manifest.json of someone else's.
        std::fs::write(tmp.path().join(MARKER), r#"{"name": "app"}"#).unwrap();
        assert!(Staging::new(tmp.path(), Kind::Run).is_err());
        std::fs::write(
            tmp.path().join(MARKER),
            r#"{"tool": "porledger", "version": "1", "outputs": []}"#,
        )
        .unwrap();
        let e = Staging::new(tmp.path(), Kind::Run)
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains("precious.txt") && e.contains("not listed"),
            "{e}"
        );
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("precious.txt")).unwrap(),
            "x"
        );
    }

    #[test]
    fn a_file_dropped_in_during_the_run_stops_the_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        publish(&out, &[("a.csv", "1")]).unwrap();
        let s = Staging::new(&out, Kind::Run).unwrap();
        std::fs::write(out.join("mine.txt"), "user").unwrap();
        assert!(s.commit().is_err());
        assert_eq!(
            std::fs::read_to_string(out.join("mine.txt")).unwrap(),
            "user"
        );
        assert_eq!(std::fs::read_to_string(out.join("a.csv")).unwrap(), "1");
        assert_eq!(names(tmp.path()), ["out"]);
    }

    /// `DIR/.` and `DIR/..` (with or without a trailing slash) are refused
    /// before any work, like `.`: a rename onto them fails only at the end.
    #[test]
    fn an_out_ending_in_a_dot_component_is_refused_up_front() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("dir");
        std::fs::create_dir(&dir).unwrap();
        for out in [
            dir.join("."),
            dir.join(".."),
            PathBuf::from(format!("{}/./", dir.display())),
        ] {
            let e = Staging::new(&out, Kind::Sample).err().unwrap().to_string();
            assert!(e.contains("not a directory name"), "{e}");
        }
        assert_eq!(names(d.path()), ["dir"]);
        assert!(names(&dir).is_empty());
    }

    /// No output is published inside another (a closed run's `partners/`,
    /// say): refused before anything is created.
    #[test]
    fn an_output_is_never_published_inside_another() {
        let d = tempfile::tempdir().unwrap();
        let run = d.path().join("run");
        std::fs::create_dir_all(run.join("partners/P1")).unwrap();
        std::fs::write(
            run.join("manifest.json"),
            r#"{"tool":"porledger","outputs":{}}"#,
        )
        .unwrap();
        for out in [
            run.join("partners/P1/x"),
            run.join("x"),
            run.join("new/deeper/x"),
        ] {
            let e = Staging::new(&out, Kind::Tieout).err().unwrap().to_string();
            assert!(e.contains("an output porledger published"), "{e}");
        }
        assert!(!run.join("new").exists());
        assert_eq!(names(&run.join("partners/P1")), Vec::<String>::new());
        // Beside it, or inside a directory whose manifest.json is not
        // porledger's: published.
        std::fs::write(d.path().join("manifest.json"), r#"{"tool":"other"}"#).unwrap();
        assert!(Staging::new(&d.path().join("beside"), Kind::Tieout).is_ok());
    }

    #[test]
    fn manifest_paths_must_stay_inside() {
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../x",
            "a//b",
            "",
            "c:x",
            "a\\b",
            ".",
        ] {
            assert!(!inside(bad), "{bad}");
        }
        for good in ["ledger.csv", "partners/%2E.%2Fx/statement.pdf", ".hidden"] {
            assert!(inside(good), "{good}");
        }
    }

    #[test]
    fn the_lock_file_is_a_regular_file_or_refused() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        std::fs::create_dir(&out).unwrap();
        let lock = d.path().join(".out.porledger-lock");
        // A FIFO: refused at once (opening it could block for ever).
        let made = std::process::Command::new("mkfifo").arg(&lock).status();
        assert!(made.unwrap().success());
        let e = OutLock::of_out(&out, "--out", Some(std::time::Duration::ZERO))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::remove_file(&lock).unwrap();
        // A symbolic link, dangling or not: nothing is created through it.
        let elsewhere = d.path().join("elsewhere");
        std::os::unix::fs::symlink(&elsewhere, &lock).unwrap();
        let e = OutLock::of_out(&out, "--out", None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("a symbolic link"), "{e}");
        assert!(!elsewhere.exists());
        std::fs::write(&elsewhere, "keep").unwrap();
        assert!(OutLock::of_out(&out, "--out", None).is_err());
        assert_eq!(std::fs::read_to_string(&elsewhere).unwrap(), "keep");
        std::fs::remove_file(&lock).unwrap();
        // A read-only lock file (another user's) is locked through a
        // read-only open.
        std::fs::write(&lock, "").unwrap();
        let mut p = std::fs::metadata(&lock).unwrap().permissions();
        p.set_readonly(true);
        std::fs::set_permissions(&lock, p).unwrap();
        let held = OutLock::of_out(&out, "--out", None).unwrap();
        assert!(held.held.is_some());
    }

    #[test]
    fn an_output_lock_excludes_others_and_is_reentrant() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::fs::create_dir(d.path().join("out2")).unwrap();
        let lock = OutLock::of_out(&out, "--out", None).unwrap();
        assert!(lock.held.is_some());
        // Another process's open of the lock file (an open file description
        // of its own, as another porledger has).
        let other = std::fs::File::open(d.path().join(".out.porledger-lock")).unwrap();
        let blocked =
            |f: &std::fs::File| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock));
        assert!(blocked(&other));
        // Within the process the lock is taken once (a render publishing
        // under the lock it holds does not wait for itself).
        let again = OutLock::of_out(&out, "--out", Some(std::time::Duration::ZERO)).unwrap();
        assert!(again.held.is_none());
        drop(again);
        assert!(blocked(&other));
        // Another output beside it is not locked.
        let beside = OutLock::of_out(&d.path().join("out2"), "--out", None).unwrap();
        assert!(beside.held.is_some());
        drop(lock);
        other.try_lock().unwrap();
        // Held elsewhere: a wait that runs out names the output.
        let e = OutLock::of_out(&out, "--out", Some(std::time::Duration::from_millis(100)))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("in use by another porledger process"), "{e}");
        other.unlock().unwrap();
        // A directory that does not exist has nothing to protect, and gets
        // no lock file.
        let none = OutLock::of_out(&d.path().join("new/out"), "--out", None).unwrap();
        assert!(none.held.is_none());
        let none = OutLock::of_out(&d.path().join("typo"), "--out", None).unwrap();
        assert!(none.held.is_none());
        assert!(!d.path().join(".typo.porledger-lock").exists());
        // One lock however the output is named.
        let lock = OutLock::of_out(&out, "--out", None).unwrap();
        let dotted = out.join("..").join("out").join(".");
        let same = OutLock::of_out(&dotted, "--out", Some(std::time::Duration::ZERO)).unwrap();
        assert!(same.held.is_none(), "the lock this process holds");
        std::fs::create_dir(out.join("partners")).unwrap();
        let parent = OutLock::of_out(&out.join("partners/.."), "--out", None);
        assert!(parent.unwrap().held.is_none());
        assert!(blocked(&other));
        drop(lock);
    }

    #[test]
    fn leftover_names() {
        assert_eq!(
            parse_leftover(".out.porledger-tmp-12", "out"),
            Some(Leftover::Tmp(12))
        );
        assert_eq!(
            parse_leftover(".out.porledger-old-7", "out"),
            Some(Leftover::Old(7))
        );
        assert_eq!(
            parse_leftover(".out.porledger-tmp-7.old", "out"),
            Some(Leftover::Old(7))
        );
        for other in [
            ".out.porledger-tmp-",
            ".out.porledger-tmp-1x",
            ".out2.porledger-tmp-1",
            "out.porledger-tmp-1",
            ".out.porledger-kept-1",
            ".out.porledger-tmp-+1",
        ] {
            assert_eq!(parse_leftover(other, "out"), None, "{other}");
        }
    }

    #[test]
    fn a_path_is_written_once_in_any_letter_case() {
        let tmp = tempfile::tempdir().unwrap();
        let w = Written::new();
        write_file(&w, &tmp.path().join("P-A.csv"), b"1").unwrap();
        let e = write_file(&w, &tmp.path().join("P-A.csv"), b"2").unwrap_err();
        assert!(
            e.to_string().contains("two IDs map to one file name"),
            "{e}"
        );
        let e = write_file(&w, &tmp.path().join("p-a.csv"), b"3").unwrap_err();
        assert!(e.to_string().contains("letter case"), "{e}");
        assert_eq!(std::fs::read(tmp.path().join("P-A.csv")).unwrap(), b"1");
        // Records are per run: another run's record knows nothing of it.
        write_file(&Written::new(), &tmp.path().join("P-A.csv"), b"4").unwrap();
    }

    #[test]
    fn a_collision_names_the_published_paths_not_the_staging_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let staging = tmp.path().join(".out.porledger-tmp-1");
        std::fs::create_dir_all(staging.join("partners/P-A")).unwrap();
        std::fs::create_dir_all(staging.join("partners/p-a")).unwrap();
        let w = Written::published_as(&staging, Path::new("runs/out"));
        write_file(&w, &staging.join("partners/P-A/statement.csv"), b"1").unwrap();
        let e = write_file(&w, &staging.join("partners/p-a/statement.csv"), b"2")
            .unwrap_err()
            .to_string();
        let want = format!(
            "{}: differs only in letter case from {}, which this run also writes",
            Path::new("runs/out/partners/p-a/statement.csv").display(),
            Path::new("runs/out/partners/P-A/statement.csv").display()
        );
        assert!(e.starts_with(&want), "{e}");
        assert!(e.ends_with("nothing was published"), "{e}");
        assert!(!e.contains("porledger-tmp"), "{e}");
    }
}
