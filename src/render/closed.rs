//! `closed.json`: what `porledger close` leaves in the output directory of
//! the run it records, so that the issued statements in it are never
//! replaced.
//!
//! The file is not one of the run's outputs: `manifest.json` does not list
//! it and is not changed, so the SHA-256 of the manifest that `close`
//! recorded still names the directory. Being unlisted, it also makes the
//! publisher refuse to replace the directory whatever the command (only a
//! directory whose manifest lists every file is replaced); `run` and
//! `render` look for it first, to say why.
//!
//! `close` writes it in two steps around its commit: [`prepare`] writes a
//! temporary file beside it inside the close's transaction (a directory that
//! cannot take it fails the close, with nothing recorded), and
//! [`Prepared::publish`] renames it into place once the close is committed;
//! a close that is not committed removes it.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::Fatal;

/// The marker's name in the output directory.
pub const CLOSED: &str = "closed.json";

/// The contents of `closed.json`: which issued version the directory holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClosedMark {
    /// `"porledger"`: a file of that name that says otherwise is not ours.
    pub tool: String,
    pub period: String,
    pub version: u32,
    /// The history it was closed into, as `close --history` named it.
    pub history: String,
    /// The SHA-256 of the directory's `manifest.json`, as recorded.
    pub manifest_sha256: String,
}

impl ClosedMark {
    pub fn new(period: &str, version: u32, history: &Path, manifest_sha256: &str) -> ClosedMark {
        ClosedMark {
            tool: "porledger".into(),
            period: period.into(),
            version,
            history: history.display().to_string(),
            manifest_sha256: manifest_sha256.into(),
        }
    }
}

/// A `closed.json` written under a temporary name, waiting for the commit
/// of its close; removed when dropped unpublished.
pub struct Prepared {
    tmp: PathBuf,
    path: PathBuf,
    published: bool,
}

/// Writes `mark` for `dir` under a temporary name (synced to disk).
pub fn prepare(dir: &Path, mark: &ClosedMark) -> Result<Prepared, Fatal> {
    let path = dir.join(CLOSED);
    let tmp = dir.join(format!(".{CLOSED}.porledger-tmp-{}", std::process::id()));
    let mut text = serde_json::to_string_pretty(mark).map_err(|e| Fatal::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e),
    })?;
    text.push('\n');
    let shown = path.display().to_string();
    let failed = |e: std::io::Error| {
        Fatal::Input(format!(
            "{shown}: cannot mark the run's directory as issued ({e}); close writes {CLOSED} \
             there so that the issued statements are never replaced. Nothing was recorded"
        ))
    };
    // A `closed.json` of porledger's (the run closed into another history
    // too) is replaced; anything else there is not ours to replace.
    if std::fs::symlink_metadata(&path).is_ok() && read(dir).is_none() {
        return Err(Fatal::Input(format!(
            "{shown}: exists and porledger did not write it; close writes its mark of the issued \
             statements there and replaces only its own. Nothing was recorded (move the file \
             away)"
        )));
    }
    // A temporary mark of an interrupted close of this process id is ours.
    if parse(&tmp).is_some() {
        let _ = std::fs::remove_file(&tmp);
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(failed)?;
    let prepared = Prepared {
        tmp,
        path,
        published: false,
    };
    f.write_all(text.as_bytes()).map_err(failed)?;
    f.sync_all().map_err(failed)?;
    Ok(prepared)
}

impl Prepared {
    /// Moves the marker into place (after the commit of its close).
    pub fn publish(mut self) -> Result<(), Fatal> {
        std::fs::rename(&self.tmp, &self.path).map_err(|e| {
            Fatal::Input(format!(
                "{}: the close is recorded, but the marker could not be put in place ({e}); it \
                 is in {}: rename it to {CLOSED}",
                self.path.display(),
                self.tmp.display()
            ))
        })?;
        self.published = true;
        Ok(())
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        if !self.published {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// The marker of `dir`, if it has one of porledger's (a `closed.json` that
/// is not, or cannot be read, is left to the publisher, which refuses to
/// replace a directory holding a file its manifest does not list).
pub fn read(dir: &Path) -> Option<ClosedMark> {
    parse(&dir.join(CLOSED))
}

/// The mark in the file `path`, if it is one of porledger's.
fn parse(path: &Path) -> Option<ClosedMark> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    if !meta.is_file() || meta.len() > 1 << 16 {
        return None;
    }
    let mark: ClosedMark = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    (mark.tool == "porledger").then_some(mark)
}

/// The temporary marks in `dir` that closes left (`.closed.json.porledger-tmp-PID`,
/// of porledger's): a close killed after writing its mark, before or after
/// its commit.
fn leftover_marks(dir: &Path) -> Vec<(PathBuf, ClosedMark)> {
    let prefix = format!(".{CLOSED}.porledger-tmp-");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<(PathBuf, ClosedMark)> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .filter_map(|e| Some((e.path(), parse(&e.path())?)))
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// Removes the temporary marks interrupted closes left in `dir`. Only for a
/// close that holds `dir`'s lock (no other close of it is running) and has
/// put its own mark in place or found the close recorded.
pub fn remove_leftover_marks(dir: &Path) {
    for (path, _) in leftover_marks(dir) {
        let _ = std::fs::remove_file(path);
    }
}

/// Refuses `dir` (`--out` of `command`, which would replace `what`) when
/// `close` marked it as issued, or when a close of the run it holds was
/// interrupted (its temporary mark is there: the close may be recorded).
pub fn refuse_issued(dir: &Path, command: &str, what: &str, instead: &str) -> Result<(), Fatal> {
    let Some(m) = read(dir) else {
        let here = manifest_sha256(dir);
        if let Some((tmp, m)) = leftover_marks(dir)
            .into_iter()
            .find(|(_, m)| Some(&m.manifest_sha256) == here.as_ref())
        {
            return Err(Fatal::Input(format!(
                "--out {}: a close of the run it holds ({} into {}) was interrupted and left {}; \
                 the run may be issued, so {command} refuses to replace {what} and nothing was \
                 changed. Run `porledger close --out {} --history {}` again: it finishes the \
                 close (puts {CLOSED} in place when the close was recorded, closes the run \
                 otherwise). {instead}",
                dir.display(),
                m.period,
                m.history,
                tmp.display(),
                dir.display(),
                m.history,
            )));
        }
        return Ok(());
    };
    Err(Fatal::Input(format!(
        "--out {}: holds the statements issued as {} version {} (closed into {}; see its \
         {CLOSED}); issued statements never change, so {command} refuses to replace {what} and \
         nothing was changed. {instead}",
        dir.display(),
        m.period,
        m.version,
        m.history
    )))
}

/// The SHA-256 of `dir/manifest.json`, when it is a regular file that can be
/// read (anything else is for the publisher to refuse).
pub fn manifest_sha256(dir: &Path) -> Option<String> {
    let path = dir.join("manifest.json");
    let meta = std::fs::metadata(&path).ok()?;
    if !meta.is_file() {
        return None;
    }
    Some(crate::ingest::sha256_hex(&std::fs::read(&path).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prepared_mark_is_published_or_removed() {
        let d = tempfile::tempdir().unwrap();
        let mark = ClosedMark::new("2026-10", 2, Path::new("h.db"), "ab");
        let p = prepare(d.path(), &mark).unwrap();
        assert!(read(d.path()).is_none(), "not in place before the commit");
        drop(p);
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0);
        prepare(d.path(), &mark).unwrap().publish().unwrap();
        assert_eq!(read(d.path()), Some(mark));
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        let e = refuse_issued(d.path(), "run", "them", "Write it elsewhere.")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("issued as 2026-10 version 2 (closed into h.db")
                && e.contains("run refuses to replace them")
                && e.ends_with("Write it elsewhere."),
            "{e}"
        );
    }

    #[test]
    fn a_closed_json_of_yours_is_never_replaced() {
        let d = tempfile::tempdir().unwrap();
        let mark = ClosedMark::new("2026-10", 1, Path::new("h.db"), "ab");
        std::fs::write(d.path().join(CLOSED), "my notes").unwrap();
        let e = prepare(d.path(), &mark).err().unwrap().to_string();
        assert!(e.contains("porledger did not write it"), "{e}");
        assert_eq!(
            std::fs::read_to_string(d.path().join(CLOSED)).unwrap(),
            "my notes"
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
        // Its own mark (closed into another history too) is replaced.
        std::fs::remove_file(d.path().join(CLOSED)).unwrap();
        prepare(d.path(), &mark).unwrap().publish().unwrap();
        let again = ClosedMark::new("2026-10", 1, Path::new("other.db"), "ab");
        prepare(d.path(), &again).unwrap().publish().unwrap();
        assert_eq!(read(d.path()), Some(again));
        // A file of another kind at the temporary name is not touched.
        let tmp = d
            .path()
            .join(format!(".{CLOSED}.porledger-tmp-{}", std::process::id()));
        std::fs::write(&tmp, "mine").unwrap();
        assert!(prepare(d.path(), &mark).is_err());
        assert_eq!(std::fs::read_to_string(&tmp).unwrap(), "mine");
    }

    #[test]
    fn a_closed_json_that_is_not_ours_is_not_a_mark() {
        let d = tempfile::tempdir().unwrap();
        assert!(refuse_issued(d.path(), "run", "it", "").is_ok());
        std::fs::write(d.path().join(CLOSED), "{\"closed\": true}").unwrap();
        assert!(read(d.path()).is_none());
        let other = ClosedMark {
            tool: "other".into(),
            ..ClosedMark::new("2026-10", 1, Path::new("h"), "ab")
        };
        std::fs::write(
            d.path().join(CLOSED),
            serde_json::to_string(&other).unwrap(),
        )
        .unwrap();
        assert!(read(d.path()).is_none());
        assert!(manifest_sha256(d.path()).is_none());
        std::fs::write(d.path().join("manifest.json"), "").unwrap();
        assert_eq!(
            manifest_sha256(d.path()).as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }
}
