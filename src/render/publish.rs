//! Atomic publishing: a run writes into a staging directory beside `--out` and
//! only a complete set of outputs is moved into place. A failed or killed run
//! leaves the previous good output untouched.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::Fatal;
use crate::ingest::FileDigest;

/// SHA-256 digests of the files this process wrote, taken while writing them,
/// so that the manifest does not read gigabytes of output a second time.
/// [`hash_outputs`] takes an entry only when the file's size still matches.
static WRITTEN: Mutex<Option<HashMap<PathBuf, FileDigest>>> = Mutex::new(None);

fn remember(path: &Path, digest: FileDigest) {
    let mut w = WRITTEN.lock().unwrap_or_else(|e| e.into_inner());
    w.get_or_insert_with(HashMap::new)
        .insert(path.to_path_buf(), digest);
}

fn recall(path: &Path) -> Option<FileDigest> {
    let mut w = WRITTEN.lock().unwrap_or_else(|e| e.into_inner());
    w.as_mut()?.remove(path)
}

/// Writes `bytes` to `path` and remembers their digest for the manifest.
pub fn write_file(path: &Path, bytes: &[u8]) -> Result<(), Fatal> {
    std::fs::write(path, bytes).map_err(|e| Fatal::io(path, e))?;
    remember(
        path,
        FileDigest {
            sha256: crate::ingest::hex(&Sha256::digest(bytes)),
            bytes: bytes.len() as u64,
        },
    );
    Ok(())
}

/// A writer that hashes what passes through it; [`HashingWriter::finish`]
/// flushes and remembers the digest of the whole file for the manifest.
pub struct HashingWriter<W: Write> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
    path: PathBuf,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(path: &Path, inner: W) -> HashingWriter<W> {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            bytes: 0,
            path: path.to_path_buf(),
        }
    }

    pub fn finish(mut self) -> Result<(), Fatal> {
        self.inner.flush().map_err(|e| Fatal::io(&self.path, e))?;
        remember(
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

/// A directory being filled; removed on drop unless committed.
pub struct Staging {
    pub dir: PathBuf,
    target: PathBuf,
    committed: bool,
}

const MARKER: &str = "manifest.json";

impl Staging {
    /// Creates `.<name>.porledger-tmp-<pid>` next to `out` (creating `out`'s parent).
    pub fn new(out: &Path) -> Result<Staging, Fatal> {
        let name = out
            .file_name()
            .ok_or_else(|| Fatal::Input(format!("--out {}: not a directory name", out.display())))?
            .to_string_lossy()
            .into_owned();
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent).map_err(|e| Fatal::io(&parent, e))?;
        if out.exists() {
            let is_ours = out.join(MARKER).is_file()
                || std::fs::read_dir(out)
                    .map(|mut d| d.next().is_none())
                    .unwrap_or(false);
            if !out.is_dir() || !is_ours {
                return Err(Fatal::Input(format!(
                    "--out {}: exists and is not a porledger output directory (no {MARKER}); \
                     refusing to replace it",
                    out.display()
                )));
            }
        }
        let dir = parent.join(format!(".{name}.porledger-tmp-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Fatal::io(&dir, e))?;
        }
        std::fs::create_dir(&dir).map_err(|e| Fatal::io(&dir, e))?;
        Ok(Staging {
            dir,
            target: out.to_path_buf(),
            committed: false,
        })
    }

    /// Moves the staged outputs into place, replacing a previous run's.
    pub fn commit(mut self) -> Result<(), Fatal> {
        let old = self.dir.with_file_name(format!(
            "{}.old",
            self.dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        let had_old = self.target.exists();
        if had_old {
            std::fs::rename(&self.target, &old).map_err(|e| Fatal::io(&self.target, e))?;
        }
        if let Err(e) = std::fs::rename(&self.dir, &self.target) {
            if had_old {
                // Put the previous output back before failing.
                let _ = std::fs::rename(&old, &self.target);
            }
            return Err(Fatal::io(&self.target, e));
        }
        self.committed = true;
        if had_old {
            remove_tree(&old)?;
        }
        Ok(())
    }
}

/// Threads for file-system work that waits on the disk rather than the CPU.
pub const IO_THREADS: usize = 16;

/// Removes a directory tree, unlinking files from several threads at once: on
/// file systems mounted with `discard` each unlink waits for the device, and a
/// previous run's thousands of statements took 20 s one by one, 1 s in parallel.
pub fn remove_tree(dir: &Path) -> Result<(), Fatal> {
    use rayon::prelude::*;
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < dirs.len() {
        let d = dirs[i].clone();
        for e in std::fs::read_dir(&d).map_err(|e| Fatal::io(&d, e))? {
            let e = e.map_err(|e| Fatal::io(&d, e))?;
            let p = e.path();
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                dirs.push(p);
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
    pool.install(|| {
        files
            .par_iter()
            .try_for_each(|f| std::fs::remove_file(f).map_err(|e| Fatal::io(f, e)))
    })?;
    for d in dirs.iter().rev() {
        std::fs::remove_dir(d).map_err(|e| Fatal::io(d, e))?;
    }
    Ok(())
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
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
pub fn hash_outputs(dir: &Path) -> Result<Vec<FileEntry>, Fatal> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Fatal> {
        for e in std::fs::read_dir(dir).map_err(|e| Fatal::io(dir, e))? {
            let p = e.map_err(|e| Fatal::io(dir, e))?.path();
            if p.is_dir() {
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
        .filter(|(_, rel)| rel != MARKER)
        .map(|(p, rel)| {
            let len = std::fs::metadata(p).map_err(|e| Fatal::io(p, e))?.len();
            let d = match recall(p) {
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

/// Writes a value as pretty JSON with a trailing newline.
pub fn write_json(path: &Path, value: &impl Serialize) -> Result<(), Fatal> {
    write_json_as(path, value, true)
}

/// Writes a value as compact JSON with a trailing newline (machine-read files
/// such as `statements.json`, which can hold hundreds of thousands of lines).
pub fn write_json_compact(path: &Path, value: &impl Serialize) -> Result<(), Fatal> {
    write_json_as(path, value, false)
}

/// Streams JSON into the file (never a whole string in memory).
fn write_json_as(path: &Path, value: &impl Serialize, pretty: bool) -> Result<(), Fatal> {
    let f = std::fs::File::create(path).map_err(|e| Fatal::io(path, e))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 16, HashingWriter::new(path, f));
    let written = if pretty {
        serde_json::to_writer_pretty(&mut w, value)
    } else {
        serde_json::to_writer(&mut w, value)
    };
    written.map_err(|e| Fatal::Io {
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

    #[test]
    fn failed_staging_leaves_previous_output() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let s = Staging::new(&out).unwrap();
        std::fs::write(s.dir.join(MARKER), "1").unwrap();
        s.commit().unwrap();
        assert_eq!(std::fs::read_to_string(out.join(MARKER)).unwrap(), "1");
        let s = Staging::new(&out).unwrap();
        std::fs::write(s.dir.join(MARKER), "2").unwrap();
        drop(s); // a failed run
        assert_eq!(std::fs::read_to_string(out.join(MARKER)).unwrap(), "1");
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "staging removed"
        );
        let s = Staging::new(&out).unwrap();
        std::fs::write(s.dir.join(MARKER), "3").unwrap();
        s.commit().unwrap();
        assert_eq!(std::fs::read_to_string(out.join(MARKER)).unwrap(), "3");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn refuses_to_replace_a_foreign_directory() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("precious.txt"), "x").unwrap();
        assert!(Staging::new(tmp.path()).is_err());
    }
}
