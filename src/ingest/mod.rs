//! Ingest: the only stage (with render) that reads files.
//!
//! - [`discover_billing`] expands `--billing` arguments into an ordered list of files;
//! - [`open_billing`] reads a file's header and recognises its [`BillingLayout`];
//! - [`read_chunks`] streams a file as chunks of whole records (quote-aware, see
//!   [`split`]), each tagged with the line number it starts at, while hashing it;
//!   a Parquet file (feature `parquet`) is rendered into the same CSV chunks by
//!   [`parquet`], so both go through one validation path;
//! - [`designations`] loads the designations file into typed rows and rejects.

pub mod billing;
pub mod designations;
pub mod fx;
pub mod parquet;
pub mod split;
pub mod usage;

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

pub use billing::{BillingFormat, BillingLayout, BillingLine, RowError};

use crate::error::Fatal;

/// One input file, as it will be named in outputs (`source_file`).
#[derive(Clone, Debug)]
pub struct InputFile {
    pub path: PathBuf,
    /// The path as the user wrote it (or directory + file name): stable across
    /// machines, so it can appear in outputs without breaking determinism.
    pub display: String,
    pub size: u64,
}

/// Expands files and directories (every `*.csv` inside, not recursive, sorted by
/// name) into a list of input files, in argument order. A file named twice is
/// read once. An argument that is neither is a fatal error.
pub fn discover(args: &[PathBuf], what: &str) -> Result<Vec<InputFile>, Fatal> {
    discover_ext(args, what, &["csv"])
}

/// [`discover`] for `--billing`: directories also give their `*.parquet` files
/// (read with the `parquet` feature; without it, they fail with a clear error).
pub fn discover_billing(args: &[PathBuf]) -> Result<Vec<InputFile>, Fatal> {
    discover_ext(args, "--billing", &["csv", "parquet"])
}

fn discover_ext(args: &[PathBuf], what: &str, exts: &[&str]) -> Result<Vec<InputFile>, Fatal> {
    let mut out: Vec<InputFile> = Vec::new();
    let push = |path: PathBuf, out: &mut Vec<InputFile>| -> Result<(), Fatal> {
        let meta = std::fs::metadata(&path).map_err(|e| Fatal::io(&path, e))?;
        let canon = std::fs::canonicalize(&path).map_err(|e| Fatal::io(&path, e))?;
        let dup = out.iter().any(|f| {
            std::fs::canonicalize(&f.path)
                .map(|c| c == canon)
                .unwrap_or(false)
        });
        if !dup {
            out.push(InputFile {
                display: path.to_string_lossy().into_owned(),
                path,
                size: meta.len(),
            });
        }
        Ok(())
    };
    for arg in args {
        let meta = std::fs::metadata(arg).map_err(|e| Fatal::io(arg, e))?;
        if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(arg)
                .map_err(|e| Fatal::io(arg, e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .map(|x| exts.iter().any(|e| x.eq_ignore_ascii_case(e)))
                            .unwrap_or(false)
                })
                .collect();
            files.sort();
            if files.is_empty() {
                let globs: Vec<String> = exts.iter().map(|e| format!("*.{e}")).collect();
                return Err(Fatal::Input(format!(
                    "{}: directory given as {what} holds no {} file",
                    arg.display(),
                    globs.join(" or ")
                )));
            }
            for f in files {
                push(f, &mut out)?;
            }
        } else {
            push(arg.clone(), &mut out)?;
        }
    }
    if out.is_empty() {
        return Err(Fatal::Input(format!("no {what} file given")));
    }
    Ok(out)
}

/// Guesses the delimiter from the header line: the most frequent of `,` `;` TAB
/// outside quotes.
pub fn sniff_delimiter(first_line: &[u8]) -> u8 {
    let mut in_q = false;
    let mut counts = [0usize; 3];
    for &b in first_line {
        match b {
            b'"' => in_q = !in_q,
            b'\n' if !in_q => break,
            b',' if !in_q => counts[0] += 1,
            b';' if !in_q => counts[1] += 1,
            b'\t' if !in_q => counts[2] += 1,
            _ => {}
        }
    }
    let best = (0..3).max_by_key(|&i| (counts[i], 3 - i)).unwrap_or(0);
    [b',', b';', b'\t'][best]
}

const BOM: &[u8] = b"\xEF\xBB\xBF";

/// A parsed header: the fields, how many bytes (BOM included) it took, and on
/// which line the first data record starts.
#[derive(Clone, Debug)]
pub struct Header {
    pub fields: Vec<String>,
    pub delimiter: u8,
    pub byte_len: usize,
    pub next_line: u64,
}

/// Parses the header record at the start of `buf` (which may start with a BOM).
pub fn parse_header(buf: &[u8]) -> Option<Header> {
    let bom = if buf.starts_with(BOM) { BOM.len() } else { 0 };
    let body = &buf[bom..];
    let delimiter = sniff_delimiter(body);
    // The header ends at the first newline outside quotes (or at the end).
    let end = split::first_record_end_after(body, 0, b'"').unwrap_or(body.len());
    let head = &body[..end];
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .from_reader(head);
    let mut rec = csv::ByteRecord::new();
    if !rdr.read_byte_record(&mut rec).ok()? {
        return None;
    }
    let fields = rec
        .iter()
        .map(|f| String::from_utf8_lossy(f).trim().to_string())
        .collect();
    Some(Header {
        fields,
        delimiter,
        byte_len: bom + end,
        next_line: 1 + split::count_byte(head, b'\n') as u64,
    })
}

/// Line numbers of records, counted from their byte offsets.
///
/// The csv crate's `Position::line` is one short for records after the first
/// when lines end in CRLF (as Partner Center exports do), so porledger counts
/// the newlines before each record itself. Records must be fed in order.
#[derive(Debug, Clone)]
pub struct LineTracker {
    first_line: u64,
    counted_to: usize,
    newlines: u64,
}

impl LineTracker {
    /// `first_line` is the line number of `data[0]`.
    pub fn new(first_line: u64) -> LineTracker {
        LineTracker {
            first_line,
            counted_to: 0,
            newlines: 0,
        }
    }

    /// The line on which the record starting at byte `start` of `data` begins.
    pub fn line(&mut self, data: &[u8], start: u64) -> u64 {
        let mut start = (start as usize).min(data.len());
        // A record never starts on a line terminator: skip past it.
        while start < data.len() && (data[start] == b'\r' || data[start] == b'\n') {
            start += 1;
        }
        if start > self.counted_to {
            self.newlines += split::count_byte(&data[self.counted_to..start], b'\n') as u64;
            self.counted_to = start;
        }
        self.first_line + self.newlines
    }
}

/// Reads up to `n` bytes (fewer only at end of file).
fn read_up_to(r: &mut impl Read, buf: &mut Vec<u8>, n: usize) -> io::Result<usize> {
    // `read_to_end` reads into the spare capacity without zeroing it first
    // (zeroing 8 MiB per chunk cost half a second over 3.4 GB).
    buf.reserve(n);
    r.take(n as u64).read_to_end(buf)
}

/// Bytes read (and hashed) at once: the hash reads each piece while the copy
/// out of the page cache has left it in the CPU's cache. Hashing 8 MiB after
/// reading 8 MiB read it from memory again (SHA-256 here: 1.4 GB/s from memory,
/// 1.65 GB/s from cache).
pub(crate) const HASH_PIECE: usize = 256 * 1024;

/// [`read_up_to`], feeding what was read to `hasher` piece by piece.
fn read_hashing(
    r: &mut impl Read,
    buf: &mut Vec<u8>,
    n: usize,
    hasher: &mut Sha256,
) -> io::Result<usize> {
    buf.reserve(n);
    let mut got = 0;
    while got < n {
        let want = (n - got).min(HASH_PIECE);
        let before = buf.len();
        let k = read_up_to(r, buf, want)?;
        hasher.update(&buf[before..]);
        got += k;
        if k < want {
            break;
        }
    }
    Ok(got)
}

/// An opened billing file: its layout and header, positioned after the header.
pub struct OpenedBilling {
    pub layout: BillingLayout,
    pub header: Header,
}

/// Reads the header of a billing file and recognises its format.
pub fn open_billing(file: &InputFile) -> Result<OpenedBilling, Fatal> {
    if parquet::is_parquet(&file.path) {
        return parquet::open(file);
    }
    let mut f = File::open(&file.path).map_err(|e| Fatal::io(&file.path, e))?;
    let mut buf = Vec::new();
    // Headers are short; 64 KiB holds any real one.
    read_up_to(&mut f, &mut buf, 64 * 1024).map_err(|e| Fatal::io(&file.path, e))?;
    let header = parse_header(&buf).ok_or_else(|| Fatal::Data {
        file: file.display.clone(),
        line: 1,
        column: None,
        message: "file is empty: no header line".into(),
    })?;
    let layout =
        BillingLayout::from_header(&header.fields, header.delimiter).map_err(|e| Fatal::Data {
            file: file.display.clone(),
            line: 1,
            column: None,
            message: e.to_string(),
        })?;
    Ok(OpenedBilling { layout, header })
}

/// A piece of a file holding whole records.
pub struct Chunk {
    /// Index of the file in the input list.
    pub file: usize,
    /// Line number (1-based) of the chunk's first byte in the file.
    pub first_line: u64,
    pub data: Vec<u8>,
}

/// What reading a whole file tells: its digest and size.
#[derive(Clone, Debug)]
pub struct FileDigest {
    pub sha256: String,
    pub bytes: u64,
}

/// Hex-encodes a SHA-256 digest.
pub fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Streams the records of `file` after its header as chunks of about
/// `chunk_size` bytes, each ending at a record boundary. `emit` returns `false`
/// to stop early (a cancelled run). The whole file, header included, is hashed.
/// `spare` hands out empty buffers for the next chunk (recycled ones, so that
/// the kernel does not zero fresh pages for every chunk).
pub fn read_chunks(
    file_idx: usize,
    file: &InputFile,
    header: &Header,
    chunk_size: usize,
    mut spare: impl FnMut() -> Vec<u8>,
    mut emit: impl FnMut(Chunk) -> bool,
) -> Result<FileDigest, Fatal> {
    if parquet::is_parquet(&file.path) {
        return parquet::read_chunks(file_idx, file, header, chunk_size, spare, emit);
    }
    let io_err = |e| Fatal::io(&file.path, e);
    let mut f = File::open(&file.path).map_err(io_err)?;
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    let mut head = Vec::new();
    total += read_hashing(&mut f, &mut head, header.byte_len, &mut hasher).map_err(io_err)? as u64;
    let mut line = header.next_line;
    let mut buf: Vec<u8> = spare();
    let mut want = chunk_size;
    loop {
        let got = read_hashing(&mut f, &mut buf, want, &mut hasher).map_err(io_err)?;
        total += got as u64;
        let eof = got < want;
        if buf.is_empty() {
            break;
        }
        let end = if eof {
            Some(buf.len())
        } else {
            split::last_record_end(&buf, b'"')
        };
        match end {
            None => {
                // One record longer than the buffer: read more before cutting.
                want = buf.len().max(chunk_size);
                continue;
            }
            Some(end) => {
                let mut next = spare();
                next.extend_from_slice(&buf[end..]);
                buf.truncate(end);
                let lines = split::count_byte(&buf, b'\n') as u64;
                let data = std::mem::replace(&mut buf, next);
                let chunk = Chunk {
                    file: file_idx,
                    first_line: line,
                    data,
                };
                line += lines;
                want = chunk_size;
                if !emit(chunk) {
                    return Ok(FileDigest {
                        sha256: String::new(),
                        bytes: total,
                    });
                }
            }
        }
        if eof && buf.is_empty() {
            break;
        }
    }
    Ok(FileDigest {
        sha256: hex(&hasher.finalize()),
        bytes: total,
    })
}

/// SHA-256 of a whole file (for the rules and designations files).
pub fn sha256_file(path: &Path) -> Result<FileDigest, Fatal> {
    let mut f = File::open(path).map_err(|e| Fatal::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| Fatal::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok(FileDigest {
        sha256: hex(&hasher.finalize()),
        bytes: total,
    })
}

/// Reads a whole (small) text file.
pub fn read_text(path: &Path) -> Result<String, Fatal> {
    let bytes = std::fs::read(path).map_err(|e| Fatal::io(path, e))?;
    let bytes = bytes.strip_prefix(BOM).unwrap_or(&bytes);
    String::from_utf8(bytes.to_vec()).map_err(|e| Fatal::Data {
        file: path.to_string_lossy().into_owned(),
        line: 1 + bytes[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|&&b| b == b'\n')
            .count() as u64,
        column: None,
        message: "file is not valid UTF-8 text".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_numbers_with_crlf_lf_blank_lines_and_quoted_newlines() {
        for data in [
            &b"a,b\r\n\"x\r\ny\",2\r\n\r\nc,3\r\n"[..],
            &b"a,b\n\"x\ny\",2\n\nc,3\n"[..],
        ] {
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(data);
            let mut lines = LineTracker::new(10);
            let mut got = Vec::new();
            let mut rec = csv::ByteRecord::new();
            while rdr.read_byte_record(&mut rec).unwrap() {
                got.push(lines.line(data, rec.position().unwrap().byte()));
            }
            assert_eq!(got, vec![10, 11, 14], "{:?}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn header_with_bom_and_semicolons() {
        let h = parse_header(b"\xEF\xBB\xBFA;\"B;x\";C\r\n1;2;3\n").unwrap();
        assert_eq!(h.fields, vec!["A", "B;x", "C"]);
        assert_eq!(h.delimiter, b';');
        assert_eq!(h.byte_len, 3 + 11);
        assert_eq!(h.next_line, 2);
    }

    #[test]
    fn chunks_cover_the_file_with_correct_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("b.csv");
        let mut text = String::from("H1,H2\n");
        for i in 0..500 {
            text.push_str(&format!("\"name\n{i}\",{i}\n"));
        }
        std::fs::write(&p, &text).unwrap();
        let file = InputFile {
            path: p.clone(),
            display: "b.csv".into(),
            size: text.len() as u64,
        };
        let header = parse_header(text.as_bytes()).unwrap();
        let mut seen = Vec::new();
        let digest = read_chunks(0, &file, &header, 100, Vec::new, |c| {
            let mut rdr = csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(&c.data[..]);
            for r in rdr.byte_records() {
                let r = r.unwrap();
                let line = c.first_line + r.position().unwrap().line() - 1;
                seen.push((line, String::from_utf8(r[1].to_vec()).unwrap()));
            }
            true
        })
        .unwrap();
        assert_eq!(seen.len(), 500);
        for (i, (line, v)) in seen.iter().enumerate() {
            assert_eq!(*line, 2 + 2 * i as u64);
            assert_eq!(v, &i.to_string());
        }
        assert_eq!(digest.bytes, text.len() as u64);
        assert_eq!(digest.sha256, sha256_file(&p).unwrap().sha256);
    }
}
