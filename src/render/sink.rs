//! The run's row files in the staging directory: ledger.csv, not-eligible.csv
//! and rejects.csv, written chunk by chunk as the pipeline hands them over.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::Fatal;
use crate::ingest::designations::Reject;
use crate::pipeline::{ChunkOutput, Sink};
use crate::render::csv::{self as rcsv, row, writer};
use crate::render::publish::{HashingWriter, Written};

type Out = BufWriter<HashingWriter<File>>;

/// The source keys of the accrued billing lines (`run --history`), read by
/// `close`.
pub const SOURCE_KEYS: &str = "source-keys.csv";

/// Writes chunk rows into the staging directory's CSV files.
pub struct FileSink {
    ledger: Out,
    not_eligible: Out,
    rejects: Out,
    /// `source-keys.csv`, when the run records source keys (`--history`).
    keys: Option<Out>,
    dir: PathBuf,
}

/// Creates `dir/name` and writes the CSV header.
fn open(dir: &Path, files: &Written, name: &str, header: &[&str]) -> Result<Out, Fatal> {
    let p = dir.join(name);
    let f = File::create(&p).map_err(|e| Fatal::io(&p, e))?;
    let mut w = BufWriter::with_capacity(1 << 20, HashingWriter::new(&p, f, files));
    let mut h = writer(Vec::new());
    let _ = row(&mut h, header);
    let bytes = h.into_inner().unwrap_or_default();
    w.write_all(&bytes).map_err(|e| Fatal::io(&p, e))?;
    Ok(w)
}

impl FileSink {
    /// `keys`: also write `source-keys.csv`.
    pub fn new(dir: &Path, files: &Written, keys: bool) -> Result<FileSink, Fatal> {
        Ok(FileSink {
            ledger: open(dir, files, "ledger.csv", &rcsv::LEDGER_HEADER)?,
            not_eligible: open(dir, files, "not-eligible.csv", &rcsv::NOT_ELIGIBLE_HEADER)?,
            rejects: open(dir, files, "rejects.csv", &rcsv::REJECTS_HEADER)?,
            keys: keys
                .then(|| {
                    open(
                        dir,
                        files,
                        SOURCE_KEYS,
                        &crate::pipeline::SOURCE_KEYS_HEADER,
                    )
                })
                .transpose()?,
            dir: dir.to_path_buf(),
        })
    }

    /// Appends rejects found before streaming (designations, usage, FX).
    pub fn rejects(&mut self, rows: &[Reject]) -> Result<(), Fatal> {
        let mut w = writer(Vec::new());
        for r in rows {
            let _ = row(
                &mut w,
                &[&r.file, &r.line.to_string(), &r.column, &r.value, &r.reason],
            );
        }
        let bytes = w.into_inner().unwrap_or_default();
        let p = self.dir.join("rejects.csv");
        self.rejects.write_all(&bytes).map_err(|e| Fatal::io(&p, e))
    }

    /// Flushes and closes the files.
    pub fn finish(self) -> Result<(), Fatal> {
        let keys = self.keys.map(|k| (k, SOURCE_KEYS));
        for (w, name) in [
            (self.ledger, "ledger.csv"),
            (self.not_eligible, "not-eligible.csv"),
            (self.rejects, "rejects.csv"),
        ]
        .into_iter()
        .chain(keys)
        {
            w.into_inner()
                .map_err(|e| Fatal::io(&self.dir.join(name), e.into_error()))?
                .finish()?;
        }
        Ok(())
    }
}

impl Sink for FileSink {
    fn chunk(&mut self, out: &ChunkOutput) -> Result<(), Fatal> {
        let d = self.dir.clone();
        self.ledger
            .write_all(&out.ledger)
            .map_err(|e| Fatal::io(&d.join("ledger.csv"), e))?;
        self.not_eligible
            .write_all(&out.not_eligible)
            .map_err(|e| Fatal::io(&d.join("not-eligible.csv"), e))?;
        if let Some(k) = self.keys.as_mut() {
            k.write_all(&out.keys)
                .map_err(|e| Fatal::io(&d.join(SOURCE_KEYS), e))?;
        }
        self.rejects
            .write_all(&out.rejects)
            .map_err(|e| Fatal::io(&d.join("rejects.csv"), e))
    }
}

/// A sink that keeps nothing (`validate`).
pub struct NullSink;

impl Sink for NullSink {
    fn chunk(&mut self, _: &ChunkOutput) -> Result<(), Fatal> {
        Ok(())
    }
}
