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
pub mod earnings;
pub mod fx;
pub mod parquet;
pub mod records;
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

/// Expands files and directories (every `*.csv` and `*.tsv` inside, not recursive, sorted by
/// name) into a list of input files, in argument order. A file named twice is
/// read once. An argument that is neither is a fatal error.
pub fn discover(args: &[PathBuf], what: &str) -> Result<Vec<InputFile>, Fatal> {
    discover_ext(args, what, &["csv", "tsv"])
}

/// [`discover`] for `--billing`: directories also give their `*.parquet` files
/// (read with the `parquet` feature; without it, they fail with a clear error).
pub fn discover_billing(args: &[PathBuf]) -> Result<Vec<InputFile>, Fatal> {
    discover_ext(args, "--billing", &["csv", "tsv", "parquet"])
}

fn discover_ext(args: &[PathBuf], what: &str, exts: &[&str]) -> Result<Vec<InputFile>, Fatal> {
    let mut out: Vec<InputFile> = Vec::new();
    let push = |path: PathBuf, out: &mut Vec<InputFile>| -> Result<(), Fatal> {
        let meta = regular_metadata(&path)?;
        let canon = std::fs::canonicalize(&path).map_err(|e| Fatal::io(&path, e))?;
        let dup = out.iter().any(|f| {
            std::fs::canonicalize(&f.path)
                .map(|c| c == canon)
                .unwrap_or(false)
        });
        if !dup {
            // Outputs name each input by this text (ledger, manifest,
            // summary): a name that is not UTF-8 would be shown with its
            // bytes replaced, and two such names as one.
            let Some(display) = path.to_str().map(str::to_string) else {
                return Err(Fatal::Input(format!(
                    "{}: the file name is not valid UTF-8; porledger names every {what} file \
                     in its outputs as text, so rename the file",
                    path.display()
                )));
            };
            out.push(InputFile {
                display,
                path,
                size: meta.len(),
            });
        }
        Ok(())
    };
    for arg in args {
        let meta = std::fs::metadata(arg).map_err(|e| Fatal::io(arg, e))?;
        if meta.is_dir() {
            // Every entry named like an input is one: a FIFO, device or
            // directory of that name is refused by `push`, not skipped (a
            // file the user counts on is never left out without a word).
            let mut files: Vec<PathBuf> = Vec::new();
            for e in std::fs::read_dir(arg).map_err(|e| Fatal::io(arg, e))? {
                let p = e.map_err(|e| Fatal::io(arg, e))?.path();
                let named = p
                    .extension()
                    .is_some_and(|x| exts.iter().any(|e| x.eq_ignore_ascii_case(e)));
                if named {
                    files.push(p);
                }
            }
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

/// How much [`head`] reads: a header line must end within it.
pub const HEAD_BYTES: usize = 64 * 1024;

/// The first [`HEAD_BYTES`] of the regular file `path`: its header line
/// (headers are short; 64 KiB holds any real one) and its first records.
pub fn head(path: &Path) -> Result<Vec<u8>, Fatal> {
    let mut buf = Vec::new();
    read_up_to(&mut open_regular(path)?, &mut buf, HEAD_BYTES).map_err(|e| Fatal::io(path, e))?;
    Ok(buf)
}

/// About how many records a file of `size` bytes holds, from its first bytes
/// `head` (the header line, then records): the file's size over the mean
/// length of the head's whole lines. A hint for sizing lists before a read
/// (one allocation, no copies as they grow), never a count: 0 when the head
/// has no whole line after the header, and at most one record per 32 bytes
/// (no file read this way has shorter ones) and [`MAX_ROWS_HINT`], so that a
/// head of short lines cannot make a long file reserve too much.
pub fn rows_hint(size: u64, head: &[u8]) -> usize {
    let Some(header_end) = memchr::memchr(b'\n', head) else {
        return 0;
    };
    let body = &head[header_end + 1..];
    let Some(last) = memchr::memrchr(b'\n', body) else {
        return 0;
    };
    let whole = &body[..=last];
    let lines = split::count_byte(whole, b'\n') as u64;
    let mean = (whole.len() as u64).div_ceil(lines).max(32);
    let rest = size.saturating_sub(header_end as u64 + 1);
    usize::try_from(rest / mean)
        .unwrap_or(usize::MAX)
        .min(MAX_ROWS_HINT)
}

/// The largest [`rows_hint`]: lists are grown beyond it as they fill.
pub const MAX_ROWS_HINT: usize = 1 << 28;

/// Limits on what is read whole into memory (a larger file is a fatal error
/// naming the file and the limit; `/dev/zero` given as a file stops at once,
/// being no regular file).
pub mod limits {
    /// Rules (TOML): real ones are a few KB.
    pub const RULES: u64 = 1 << 20;
    /// Designations: 37,500 rows are ~3 MB; 256 MiB is ~3 million rows.
    pub const DESIGNATIONS: u64 = 256 << 20;
    /// FX table: one row per day and pair; 64 MiB is a million rows.
    pub const FX: u64 = 64 << 20;
    /// `--usage-tenant-map`: one row per Graph file.
    pub const TENANT_MAP: u64 = 16 << 20;
    /// One usage file (read whole): 512 MiB.
    pub const USAGE: u64 = 512 << 20;
    /// One file of a PDF template (TOML, fonts).
    pub const TEMPLATE_FILE: u64 = 64 << 20;
}

/// What kind of file system object `meta` is, for messages.
pub fn kind_of(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// The metadata of `path`, which must be a regular file (checked before
/// opening: opening a FIFO blocks until a writer comes, `/dev/zero` never ends).
pub fn regular_metadata(path: &Path) -> Result<std::fs::Metadata, Fatal> {
    let meta = std::fs::metadata(path).map_err(|e| Fatal::io(path, e))?;
    if !meta.is_file() {
        return Err(Fatal::Input(format!(
            "{}: is {}, not a regular file: give a file (a pipe, device or directory \
             cannot be read as an input)",
            path.display(),
            kind_of(&meta)
        )));
    }
    Ok(meta)
}

/// Reads the whole of `path` after checking that it is a regular file: a file
/// of a run's or tie-out's directory, which porledger wrote but someone may
/// have replaced (with a FIFO, say, that would make the read wait forever).
pub fn read_regular(path: &Path) -> Result<Vec<u8>, Fatal> {
    regular_metadata(path)?;
    std::fs::read(path).map_err(|e| Fatal::io(path, e))
}

/// Opens `path` for reading after checking that it is a regular file.
pub fn open_regular(path: &Path) -> Result<File, Fatal> {
    regular_metadata(path)?;
    File::open(path).map_err(|e| Fatal::io(path, e))
}

/// Reads a whole regular file of at most `limit` bytes; `what` names it in
/// the error (`rules`, `designations`, ...).
pub fn read_limited(path: &Path, limit: u64, what: &str) -> Result<Vec<u8>, Fatal> {
    let too_big = |size: String| {
        Fatal::Input(format!(
            "{}: the {what} file is {size}, more than the limit of {} MiB for it",
            path.display(),
            limit >> 20
        ))
    };
    let meta = regular_metadata(path)?;
    if meta.len() > limit {
        return Err(too_big(format!("{} bytes", meta.len())));
    }
    let f = File::open(path).map_err(|e| Fatal::io(path, e))?;
    let mut buf = Vec::with_capacity(meta.len() as usize);
    // The file may grow while read: never read past the limit.
    f.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(|e| Fatal::io(path, e))?;
    if buf.len() as u64 > limit {
        return Err(too_big("growing".into()));
    }
    Ok(buf)
}

/// Checks that `head` (the first bytes of a text file) is UTF-8-compatible
/// text with LF or CRLF line ends; otherwise the line the problem was seen
/// on (1 for what concerns the whole file: its encoding, its line ends) and
/// a message saying what is wrong.
pub fn check_text_start(head: &[u8]) -> Result<(), (u64, String)> {
    check_encoding(head).map_err(|m| (1, m))?;
    // NUL bytes near the start: binary data or UTF-32, not CSV text. Named
    // at the line of the first one, as a row's problem is.
    let probe = &head[..head.len().min(512)];
    if let Some(i) = memchr::memchr(0, probe) {
        let line = 1 + split::count_byte(&probe[..i], b'\n') as u64;
        return Err((
            line,
            "the file holds NUL bytes: it is binary, or UTF-32, not UTF-8 CSV text".into(),
        ));
    }
    check_line_ends(head).map_err(|m| (1, m))
}

/// The encoding part of [`check_text_start`]: UTF-32 and UTF-16 are refused.
fn check_encoding(head: &[u8]) -> Result<(), String> {
    let resave = "re-save it as UTF-8 (in Excel: \"CSV UTF-8 (Comma delimited)\")";
    // UTF-32's byte order marks first: the little-endian one starts with
    // UTF-16's (`FF FE`), so checked the other way round a UTF-32 file would
    // be named UTF-16.
    for (bom, endian) in [(b"\xFF\xFE\0\0", "little"), (b"\0\0\xFE\xFF", "big")] {
        if head.starts_with(bom) {
            return Err(format!(
                "the file is UTF-32 ({endian}-endian, with a byte order mark), not UTF-8: {resave}"
            ));
        }
    }
    if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
        let endian = if head[0] == 0xFF { "little" } else { "big" };
        return Err(format!(
            "the file is UTF-16 ({endian}-endian, with a byte order mark), not UTF-8: {resave}"
        ));
    }
    // UTF-16 without a BOM: ASCII text with a NUL byte beside every character.
    let probe = &head[..head.len().min(512)];
    if probe.len() >= 4 {
        let even_nul = probe.iter().step_by(2).filter(|&&b| b == 0).count();
        let odd_nul = probe.iter().skip(1).step_by(2).filter(|&&b| b == 0).count();
        let half = probe.len() / 2;
        if odd_nul * 10 >= half * 8 && even_nul * 10 < half {
            return Err(format!(
                "the file is UTF-16 (little-endian, no byte order mark), not UTF-8: {resave}"
            ));
        }
        if even_nul * 10 >= half * 8 && odd_nul * 10 < half {
            return Err(format!(
                "the file is UTF-16 (big-endian, no byte order mark), not UTF-8: {resave}"
            ));
        }
    }
    Ok(())
}

/// The line-end part of [`check_text_start`]: bare CRs are refused.
fn check_line_ends(head: &[u8]) -> Result<(), String> {
    // CR-only line ends (old Mac): the whole file would be one header line.
    let first_line = match memchr::memchr(b'\n', head) {
        Some(i) => &head[..i],
        None => head,
    };
    if let Some(i) = memchr::memchr(b'\r', first_line) {
        if i + 1 < first_line.len() {
            return Err(
                "lines end in a bare carriage return (CR, classic Mac OS), not LF or CRLF: \
                 re-save the file with Windows (CRLF) or Unix (LF) line ends"
                    .into(),
            );
        }
    }
    Ok(())
}

/// [`parse_header`] with the checks of [`check_text_start`]; `file` names the
/// file in errors. A header that does not end within [`HEAD_BYTES`] is
/// refused: its columns past that point would be lost, and the rest of its
/// line read as a row.
pub fn read_header(file: &str, buf: &[u8]) -> Result<Header, Fatal> {
    let err = |(line, message): (u64, String)| Fatal::Data {
        file: file.to_string(),
        line,
        column: None,
        message,
    };
    check_text_start(buf).map_err(err)?;
    let header = parse_header(buf);
    if let Some(h) = &header {
        if h.byte_len >= HEAD_BYTES && !buf[..h.byte_len].ends_with(b"\n") {
            return Err(err((
                1,
                format!(
                    "the header line does not end within its first {HEAD_BYTES} bytes (or a \
                     quote in it is never closed): a header this long is not an export's"
                ),
            )));
        }
    }
    header.ok_or_else(|| {
        let body = buf.strip_prefix(BOM).unwrap_or(buf);
        let message = if body.iter().all(|b| b.is_ascii_whitespace()) {
            "file is empty: no header line"
        } else {
            // The reader found no record in the first line: it is blank.
            "the first line is blank: the header must be the file's first line (remove the \
             blank lines before it)"
        };
        err((1, message.into()))
    })
}

/// The column of the first of `aliases` (normalised names) that `norm` (the
/// normalised header) holds. Two columns under one alias, or (when the aliases
/// are `synonyms`, spellings of one field) two columns under two of them, are
/// ambiguous: `Err((i, j))` gives both.
pub fn find_column(
    norm: &[String],
    aliases: &[&str],
    synonyms: bool,
) -> Result<Option<usize>, (usize, usize)> {
    if synonyms {
        let mut hits = norm
            .iter()
            .enumerate()
            .filter(|(_, h)| aliases.contains(&h.as_str()))
            .map(|(i, _)| i);
        if let (Some(i), Some(j)) = (hits.next(), hits.next()) {
            return Err((i, j));
        }
    }
    for a in aliases {
        let mut hits = norm
            .iter()
            .enumerate()
            .filter(|(_, h)| h == a)
            .map(|(i, _)| i);
        if let Some(i) = hits.next() {
            if let Some(j) = hits.next() {
                return Err((i, j));
            }
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// The message for two columns `i` and `j` of `fields` that name one field.
pub fn ambiguous_columns(fields: &[String], i: usize, j: usize) -> String {
    format!(
        "ambiguous header: column {} '{}' and column {} '{}' name the same field; \
         remove or rename one of them",
        i + 1,
        fields[i].trim_start_matches('\u{feff}').trim(),
        j + 1,
        fields[j].trim_start_matches('\u{feff}').trim()
    )
}

/// Refuses the same content given twice as billing input (two names for one
/// export would double every accrual): files of equal size are hashed, and
/// equal digests are a fatal error naming both paths.
pub fn check_duplicate_inputs(files: &[InputFile]) -> Result<(), Fatal> {
    let mut by_size: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
    for (i, f) in files.iter().enumerate() {
        by_size.entry(f.size).or_default().push(i);
    }
    for idx in by_size.values().filter(|v| v.len() > 1) {
        let mut seen: Vec<(String, usize)> = Vec::new();
        for &i in idx {
            let d = sha256_file(&files[i].path)?;
            if let Some((_, j)) = seen.iter().find(|(h, _)| *h == d.sha256) {
                return Err(duplicate(&files[*j].display, &files[i].display, &d.sha256));
            }
            seen.push((d.sha256, i));
        }
    }
    Ok(())
}

/// Refuses the same content given twice as usage or earnings input (it would
/// count its active users, or its earnings without earningId, twice): `files`
/// are `(name, SHA-256)` of files already read.
pub fn check_duplicate_digests<'a>(
    files: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), Fatal> {
    let mut seen: std::collections::BTreeMap<&str, &str> = Default::default();
    for (name, sha256) in files {
        if let Some(first) = seen.insert(sha256, name) {
            return Err(duplicate(first, name, sha256));
        }
    }
    Ok(())
}

/// The error for one content under two names.
fn duplicate(first: &str, second: &str, sha256: &str) -> Fatal {
    Fatal::Input(format!(
        "{first} and {second} have the same content (SHA-256 {sha256}): the same export \
         given twice would be counted twice; give it once, or pass \
         --allow-duplicate-inputs if this is intended"
    ))
}

/// Why `id` (a trimmed ID of any input: customer, subscription, partner,
/// product, SKU, reference, invoice) cannot be an ID, if it cannot: it holds a
/// control character (a NUL byte of a damaged file) or an invisible
/// formatting character (a zero-width space or a byte order mark pasted with
/// it). Such an ID shows as the ID without it but is another: its row would
/// credit nobody, or be a customer of its own, without a word.
#[inline]
pub fn id_problem(id: &str) -> Option<String> {
    if beyond_printable_ascii(id.as_bytes()) {
        hidden_character(id)
    } else {
        None
    }
}

/// Why `text` (a name or other free text of any input: a customer's,
/// partner's or product's name, a program or charge type) cannot be taken as
/// it is, if it cannot: it holds a control character other than a tab or a
/// line break (a NUL byte of a damaged file, a stray escape or backspace).
/// Written to a statement it would show as nothing, or cut the text short in
/// a tool that stops at a NUL. Invisible formatting characters stay: names
/// in right-to-left scripts and emoji need them.
#[inline]
pub fn text_problem(text: &str) -> Option<String> {
    let odd = text
        .as_bytes()
        .iter()
        .fold(false, |odd, &c| odd | (c < 0x20) | (c == 0x7f));
    if odd {
        control_character(text)
    } else {
        None
    }
}

/// The first character of `text` that `odd` picks, and where it is:
/// `(character, "U+XXXX, character n of m")`.
fn locate(text: &str, odd: impl Fn(char) -> bool) -> Option<(char, String)> {
    let (at, c) = text.chars().enumerate().find(|&(_, c)| odd(c))?;
    let place = format!(
        "U+{:04X}, character {} of {}",
        c as u32,
        at + 1,
        text.chars().count()
    );
    Some((c, place))
}

#[cold]
fn control_character(text: &str) -> Option<String> {
    let (_, place) = locate(text, |c| {
        (c < ' ' || c == '\x7f') && !matches!(c, '\t' | '\n' | '\r')
    })?;
    Some(format!(
        "the text holds a control character ({place}): a damaged file, or bytes that are not \
         text; remove it from the file"
    ))
}

#[cold]
fn hidden_character(id: &str) -> Option<String> {
    let (c, place) = locate(id, |c| c.is_control() || invisible(c))?;
    let kind = if c.is_control() {
        "a control character"
    } else {
        "an invisible formatting character"
    };
    Some(format!(
        "the ID holds {kind} ({place}): it would be another ID than the one it shows; remove \
         it from the file (damaged, or text pasted from elsewhere)"
    ))
}

/// Whether `b` holds a byte outside printable ASCII (`0x20..0x7f`): one
/// pass without a branch per byte, which the compiler vectorises (the IDs of
/// every billing line are checked on the run's hot path; eight bytes at a
/// time in a `u64` measured slower on GUIDs).
#[inline]
fn beyond_printable_ascii(b: &[u8]) -> bool {
    b.iter()
        .fold(false, |odd, &c| odd | !(0x20..0x7f).contains(&c))
}

/// Characters that are not seen where an ID is shown: Unicode's
/// `Default_Ignorable_Code_Point` (DerivedCoreProperties.txt, Unicode 16:
/// soft hyphen, zero-width spaces and joiners, direction marks and
/// embeddings, word joiners, the byte order mark, variation selectors,
/// Hangul fillers, tag characters, musical and shorthand format controls,
/// and the code points reserved among them), with the other format
/// characters (general category Cf) that draw nothing on their own: the
/// interlinear annotation marks and the Egyptian hieroglyph format
/// controls. Text pasted from web pages, documents or other files carries
/// them; an ID holding one is another ID than the one it shows.
fn invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFFB}'
            | '\u{13430}'..='\u{1343F}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// The one normalisation of customer and subscription IDs for matching:
/// trimmed by the readers, then lower-cased (ASCII fast path; other text with
/// Unicode's rules, so `MÜLLER-01` and `müller-01` are one ID). Writes into
/// `out` (cleared first), so the hot path does not allocate.
pub fn id_key_into(raw: &str, out: &mut String) {
    out.clear();
    if raw.is_ascii() {
        out.push_str(raw);
        out.make_ascii_lowercase();
    } else {
        for c in raw.chars() {
            out.extend(c.to_lowercase());
        }
    }
}

/// Whether `key` (an ID normalised by [`id_key`]) names the raw ID `raw`,
/// without allocating.
pub fn id_matches(key: &str, raw: &str) -> bool {
    let trimmed = raw.trim();
    // Most IDs compared here are not the one looked for, and GUIDs differ in
    // their first character 15 times in 16: two ASCII first bytes that differ
    // in any case settle it before the whole text is read (an ASCII character
    // lower-cases to one ASCII character, so neither branch below could match).
    if let (Some(k), Some(r)) = (key.as_bytes().first(), trimmed.as_bytes().first()) {
        if k.is_ascii() && r.is_ascii() && !k.eq_ignore_ascii_case(r) {
            return false;
        }
    }
    if raw.is_ascii() {
        key.eq_ignore_ascii_case(trimmed)
    } else {
        key.chars().eq(trimmed.chars().flat_map(char::to_lowercase))
    }
}

/// [`id_key_into`] into a new string.
pub fn id_key(raw: &str) -> String {
    let mut s = String::with_capacity(raw.len());
    id_key_into(raw, &mut s);
    s
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

    /// The caller counted `newlines` in `data[start..to]`, where `start` is
    /// the last record start asked of [`LineTracker::line`] (it read the
    /// record there): they are not counted again.
    pub fn counted(&mut self, to: usize, newlines: u64) {
        debug_assert!(to >= self.counted_to);
        self.counted_to = to;
        self.newlines += newlines;
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
    hasher: Option<&mut Sha256>,
) -> io::Result<usize> {
    let Some(hasher) = hasher else {
        return read_up_to(r, buf, n);
    };
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
    let header = read_header(&file.display, &head(&file.path)?)?;
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
    /// Whole records, or lines of an implausible record (see [`records`]).
    pub kind: records::ChunkKind,
}

/// Whether [`read_chunks`] hashes what it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hashing {
    /// SHA-256 of the whole file, for the manifest.
    Sha256,
    /// None (`validate`, which writes no manifest): the digest's `sha256`
    /// is empty.
    Skip,
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

/// The SHA-256 of `bytes`, hex-encoded (as manifests record it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&<Sha256 as sha2::Digest>::digest(bytes))
}

/// An empty buffer for [`read_chunks`] chunks of `chunk_size` bytes: room
/// for a chunk and the start of the record it cuts (kept across chunks, so
/// the buffer rarely grows).
pub fn chunk_buffer(chunk_size: usize) -> Vec<u8> {
    Vec::with_capacity(chunk_size + 64 * 1024)
}

/// Streams the records of `file` after its header as chunks of about
/// `chunk_size` bytes, each ending at a record boundary. `emit` returns `false`
/// to stop early (a cancelled run). With [`Hashing::Sha256`] the whole file,
/// header included, is hashed. `spare` hands out empty buffers for the next
/// chunk (recycled ones, so that the kernel does not zero fresh pages for
/// every chunk).
pub fn read_chunks(
    file_idx: usize,
    file: &InputFile,
    header: &Header,
    chunk_size: usize,
    hashing: Hashing,
    mut spare: impl FnMut() -> Vec<u8>,
    mut emit: impl FnMut(Chunk) -> bool,
) -> Result<FileDigest, Fatal> {
    if parquet::is_parquet(&file.path) {
        return parquet::read_chunks(file_idx, file, header, chunk_size, hashing, spare, emit);
    }
    let io_err = |e| Fatal::io(&file.path, e);
    let mut f = open_regular(&file.path)?;
    let mut hasher = (hashing == Hashing::Sha256).then(Sha256::new);
    let mut total: u64 = 0;
    let mut head = Vec::new();
    total +=
        read_hashing(&mut f, &mut head, header.byte_len, hasher.as_mut()).map_err(io_err)? as u64;
    let mut line = header.next_line;
    let mut buf: Vec<u8> = spare();
    let mut cutter = records::Cutter::new(records::Shape {
        delimiter: header.delimiter,
        fields: header.fields.len(),
        max_record: records::MAX_RECORD_BYTES,
    });
    let done = |total| FileDigest {
        sha256: String::new(),
        bytes: total,
    };
    loop {
        let want = chunk_size.max(1);
        let got = read_hashing(&mut f, &mut buf, want, hasher.as_mut()).map_err(io_err)?;
        total += got as u64;
        let eof = got < want;
        while !buf.is_empty() {
            match cutter.step(&buf, eof) {
                records::Step::More => break,
                records::Step::Drop { end } => {
                    buf.drain(..end);
                }
                records::Step::Emit { end, kind, lines } => {
                    let mut next = spare();
                    next.extend_from_slice(&buf[end..]);
                    buf.truncate(end);
                    let lines = lines.unwrap_or_else(|| split::count_byte(&buf, b'\n') as u64);
                    let mut data = std::mem::replace(&mut buf, next);
                    if matches!(
                        kind,
                        records::ChunkKind::Oversized | records::ChunkKind::Blank
                    ) {
                        data.clear();
                    }
                    let chunk = Chunk {
                        file: file_idx,
                        first_line: line,
                        data,
                        kind,
                    };
                    line += lines;
                    if !emit(chunk) {
                        return Ok(done(total));
                    }
                }
            }
        }
        if eof && buf.is_empty() {
            break;
        }
    }
    Ok(FileDigest {
        sha256: hasher.map(|h| hex(&h.finalize())).unwrap_or_default(),
        bytes: total,
    })
}

/// A reader that hashes what passes through it: a file of porledger's own
/// output read once, and checked against its manifest at the end
/// ([`HashingReader::is`]).
pub struct HashingReader<R> {
    inner: R,
    hash: Sha256,
    bytes: u64,
}

impl<R> HashingReader<R> {
    pub fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hash: Sha256::new(),
            bytes: 0,
        }
    }

    /// Whether what was read so far is the file `d` describes.
    pub fn is(&self, d: &FileDigest) -> bool {
        d.bytes == self.bytes && d.sha256 == hex(&self.hash.clone().finalize())
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// SHA-256 of a whole file (for the rules and designations files).
pub fn sha256_file(path: &Path) -> Result<FileDigest, Fatal> {
    let mut f = open_regular(path)?;
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

/// Reads a whole text file of at most `limit` bytes (see [`read_limited`]).
pub fn read_text_limited(path: &Path, limit: u64, what: &str) -> Result<String, Fatal> {
    text_of(path, read_limited(path, limit, what)?)
}

/// The `bytes` read from `path` as text (a BOM dropped): the one check of
/// text files read whole, so that a caller that checks the bytes first (their
/// SHA-256) uses exactly the bytes it checked.
pub fn text_of(path: &Path, bytes: Vec<u8>) -> Result<String, Fatal> {
    check_text_start(&bytes).map_err(|(line, message)| Fatal::Data {
        file: path.to_string_lossy().into_owned(),
        line,
        column: None,
        message,
    })?;
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
    proptest::proptest! {
        /// The first-byte shortcut of `id_matches` answers as the whole
        /// comparison does: for any key and raw text (ASCII and other
        /// letters in both cases, Unicode spaces that trim removes), and for
        /// every key that a raw text normalises to.
        #[test]
        fn id_matches_answers_as_the_whole_comparison(
            key in "[aAbB0İiıß \u{a0}\u{2003}-]{0,5}",
            raw in "[aAbB0İiıß \u{a0}\u{2003}-]{0,5}",
        ) {
            fn whole(key: &str, raw: &str) -> bool {
                if raw.is_ascii() {
                    key.eq_ignore_ascii_case(raw.trim())
                } else {
                    key.chars().eq(raw.trim().chars().flat_map(char::to_lowercase))
                }
            }
            proptest::prop_assert_eq!(super::id_matches(&key, &raw), whole(&key, &raw));
            let own = super::id_key(raw.trim());
            proptest::prop_assert_eq!(super::id_matches(&own, &raw), whole(&own, &raw));
            proptest::prop_assert!(super::id_matches(&own, &raw));
        }
    }

    /// A file whose first line is blank is told so, not called empty.
    #[test]
    fn a_blank_first_line_is_not_an_empty_file() {
        let e = super::read_header("f.csv", b"\nA,B\n1,2\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("f.csv:1") && e.contains("the first line is blank"),
            "{e}"
        );
        for empty in [&b""[..], b"\n\n", b"\xEF\xBB\xBF", b"\r\n"] {
            let e = super::read_header("f.csv", empty).unwrap_err().to_string();
            assert!(e.contains("file is empty"), "{empty:?}: {e}");
        }
    }

    /// A header that does not end within the bytes read for it is refused
    /// (its later columns would be lost and the rest of its line read as a
    /// row); one that ends there, or a short file of a header alone, is read.
    #[test]
    fn a_header_longer_than_the_head_is_refused() {
        use super::HEAD_BYTES;
        let mut long = b"A,B,".to_vec();
        long.resize(HEAD_BYTES, b'x');
        let e = super::read_header("f.csv", &long).unwrap_err().to_string();
        assert!(
            e.contains("f.csv:1") && e.contains("does not end within its first 65536 bytes"),
            "{e}"
        );
        let mut fits = long.clone();
        fits[HEAD_BYTES - 1] = b'\n';
        assert_eq!(super::read_header("f.csv", &fits).unwrap().fields.len(), 3);
        assert_eq!(
            super::read_header("f.csv", b"A,B").unwrap().fields,
            ["A", "B"]
        );
    }

    /// IDs of any letters pass; one holding a control or an invisible
    /// formatting character anywhere is named with the character and where.
    #[test]
    fn an_id_with_a_hidden_character_is_named() {
        use super::id_problem;
        for ok in [
            "d1a5e3c2-7b4f-4c1e-9a8d-2f6b0c3e5a71",
            "500275",
            "MÜLLER-ÖSTERREICH-01",
            "株式会社-7",
            "a b",
            "",
        ] {
            assert_eq!(id_problem(ok), None, "{ok:?}");
        }
        for (bad, code, at) in [
            ("c1\0", "U+0000", "character 3 of 3"),
            ("\0c1", "U+0000", "character 1 of 3"),
            ("c\t1", "U+0009", "character 2 of 3"),
            ("c1\u{7f}", "U+007F", "character 3 of 3"),
            ("c1\u{85}", "U+0085", "character 3 of 3"),
            ("Mü\u{200B}ller", "U+200B", "character 3 of 7"),
            ("\u{FEFF}c1", "U+FEFF", "character 1 of 3"),
            ("c\u{AD}1", "U+00AD", "character 2 of 3"),
            ("c1\u{202E}", "U+202E", "character 3 of 3"),
            ("c1\u{2060}", "U+2060", "character 3 of 3"),
            // Tag characters, variation selectors, the grapheme joiner, a
            // musical format control, a Hangul filler, a reserved ignorable.
            ("c1\u{E0001}", "U+E0001", "character 3 of 3"),
            ("c1\u{E0041}", "U+E0041", "character 3 of 3"),
            ("c1\u{FE0F}", "U+FE0F", "character 3 of 3"),
            ("c1\u{E0100}", "U+E0100", "character 3 of 3"),
            ("c\u{034F}1", "U+034F", "character 2 of 3"),
            ("c1\u{1D173}", "U+1D173", "character 3 of 3"),
            ("\u{3164}c1", "U+3164", "character 1 of 3"),
            ("c1\u{2065}", "U+2065", "character 3 of 3"),
        ] {
            let why = id_problem(bad).unwrap_or_else(|| panic!("{bad:?} passed"));
            assert!(why.contains(code) && why.contains(at), "{bad:?}: {why}");
        }
    }

    /// A name keeps tabs, line breaks and formatting characters (a
    /// right-to-left mark, an emoji's joiner); any other control character
    /// is named with where it is.
    #[test]
    fn a_name_with_a_control_character_is_named() {
        use super::text_problem;
        for ok in [
            "Contoso, Ltd.",
            "Müller\tGmbH",
            "two\r\nlines",
            "\u{200F}שלום",
            "👩\u{200D}💻 Studio",
            "",
        ] {
            assert_eq!(text_problem(ok), None, "{ok:?}");
        }
        for (bad, code, at) in [
            ("Contoso\0", "U+0000", "character 8 of 8"),
            ("\u{1b}[31mRed", "U+001B", "character 1 of 8"),
            ("ab\u{8}c", "U+0008", "character 3 of 4"),
            ("abc\u{7f}", "U+007F", "character 4 of 4"),
        ] {
            let why = text_problem(bad).unwrap_or_else(|| panic!("{bad:?} passed"));
            assert!(why.contains(code) && why.contains(at), "{bad:?}: {why}");
        }
    }

    #[test]
    fn a_rows_hint_is_the_size_over_the_heads_mean_line() {
        use super::rows_hint;
        let line = [b'x'; 39].iter().chain(b"\n").copied();
        let head: Vec<u8> = b"a,b\n"
            .iter()
            .copied()
            .chain(line.clone())
            .chain(line)
            .chain(*b"5,")
            .collect();
        // Two whole lines of 40 bytes after a 4-byte header.
        assert_eq!(rows_hint(4 + 4000, &head), 100);
        assert_eq!(rows_hint(3, &head), 0);
        // Lines shorter than 32 bytes count as 32.
        assert_eq!(rows_hint(4 + 3200, b"a,b\n1,2\n3,4\n"), 100);
        // No whole line after the header, or no header line: no hint.
        assert_eq!(rows_hint(1 << 30, b"a,b\n1,2"), 0);
        assert_eq!(rows_hint(1 << 30, b"a,b"), 0);
        assert_eq!(rows_hint(u64::MAX, b"h\n\n"), super::MAX_ROWS_HINT);
    }

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
    fn a_file_name_that_is_not_utf8_is_refused() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        for name in [&b"x\xff.csv"[..], b"x\xfe.csv", b"ok.csv"] {
            let p = dir.path().join(std::ffi::OsStr::from_bytes(name));
            std::fs::write(p, "H\n1\n").unwrap();
        }
        let e = discover_billing(&[dir.path().to_path_buf()]).unwrap_err();
        assert!(e.to_string().contains("not valid UTF-8"), "{e}");
        let ok = discover_billing(&[dir.path().join("ok.csv")]).unwrap();
        assert!(ok[0].display.ends_with("ok.csv"));
    }

    /// UTF-32's byte order marks are named UTF-32, the little-endian one
    /// too although it starts like UTF-16's; UTF-16's are still UTF-16.
    #[test]
    fn utf32_byte_order_marks_are_named_utf32() {
        let message = |bytes: &[u8]| match read_header("f.csv", bytes) {
            Err(Fatal::Data { line, message, .. }) => {
                assert_eq!(line, 1, "{message}");
                message
            }
            other => panic!("{other:?}"),
        };
        let le32 = b"\xFF\xFE\0\0a\0\0\0,\0\0\0b\0\0\0\n\0\0\0";
        let be32 = b"\0\0\xFE\xFF\0\0\0a\0\0\0,\0\0\0b\0\0\0\n";
        let m = message(le32);
        assert!(
            m.contains("UTF-32 (little-endian, with a byte order mark)"),
            "{m}"
        );
        let m = message(be32);
        assert!(
            m.contains("UTF-32 (big-endian, with a byte order mark)"),
            "{m}"
        );
        let m = message(b"\xFF\xFEa\0,\0b\0\n\0");
        assert!(
            m.contains("UTF-16 (little-endian, with a byte order mark)"),
            "{m}"
        );
        let m = message(b"\xFE\xFF\0a\0,\0b\0\n");
        assert!(
            m.contains("UTF-16 (big-endian, with a byte order mark)"),
            "{m}"
        );
    }

    #[test]
    fn header_with_bom_and_semicolons() {
        let h = parse_header(b"\xEF\xBB\xBFA;\"B;x\";C\r\n1;2;3\n").unwrap();
        assert_eq!(h.fields, vec!["A", "B;x", "C"]);
        assert_eq!(h.delimiter, b';');
        assert_eq!(h.byte_len, 3 + 11);
        assert_eq!(h.next_line, 2);
    }

    /// A NUL byte near the start of a file (binary data, UTF-32) is fatal
    /// at the line it is on, not always at the header's; billing, earnings
    /// and the files read whole share the check.
    #[test]
    fn a_nul_byte_near_the_start_is_named_at_its_line() {
        let line_of = |bytes: &[u8]| match read_header("f.csv", bytes) {
            Err(Fatal::Data { line, message, .. }) => {
                assert!(message.contains("NUL"), "{message}");
                line
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(line_of(b"a,b\x00,c\n1,2,3\n"), 1);
        assert_eq!(line_of(b"a,b,c\r\n1,2,3\r\n4,\x00,6\r\n"), 3);
        assert_eq!(line_of(b"\xEF\xBB\xBFa,b\n\x00\n"), 2);
        let e = text_of(Path::new("d.csv"), b"a,b\n1,\x002\n".to_vec()).unwrap_err();
        assert!(e.to_string().contains("d.csv:2"), "{e}");
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
        let digest = read_chunks(0, &file, &header, 100, Hashing::Sha256, Vec::new, |c| {
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
        // Unhashed (`validate`): the same chunks, the size, no digest.
        let mut again = Vec::new();
        let plain = read_chunks(0, &file, &header, 100, Hashing::Skip, Vec::new, |c| {
            again.push((c.first_line, c.data));
            true
        })
        .unwrap();
        assert_eq!(plain.bytes, text.len() as u64);
        assert_eq!(plain.sha256, "");
        let mut hashed = Vec::new();
        read_chunks(0, &file, &header, 100, Hashing::Sha256, Vec::new, |c| {
            hashed.push((c.first_line, c.data));
            true
        })
        .unwrap();
        assert_eq!(again, hashed);
    }
}
