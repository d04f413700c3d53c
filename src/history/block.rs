//! Rows stored as compressed blocks: how a close records its accruals and
//! its charge keys (schema version 3).
//!
//! One SQL row per accrual made a 1M-row close twice as slow as the run it
//! closes: SQLite's per-row work (record building, B-tree inserts, the write-
//! ahead log) was most of it. A block holds a few hundred rows of text fields
//! in one blob: each field is written once, or as "same as the row above"
//! (the accruals of one billing line share most of their fields), and the
//! block is compressed (Snappy: fast enough that a close's writer keeps
//! up with its reader). Reading a row means reading its block.
//!
//! Layout of a blob: one format byte ([`SNAPPY`]), the length of the
//! uncompressed bytes (u32, little-endian), then the raw Snappy block of
//! the uncompressed bytes: for every row, for every column, a tag (LEB128):
//! `0` no value, `1` the value of the row above in this column, `n + 2` a
//! value of `n` bytes, which follow.

/// The only format so far: Snappy (raw, no framing).
const SNAPPY: u8 = 1;
/// The largest uncompressed block a reader accepts (a damaged length must
/// not allocate gigabytes), and so the largest a close writes.
pub const MAX_RAW: usize = 64 << 20;

/// Builds one block at a time.
pub struct Writer {
    width: usize,
    raw: Vec<u8>,
    /// The previous row's fields: (start, len) in `raw`, or `None`.
    prev: Vec<Option<(usize, usize)>>,
    cur: Vec<Option<(usize, usize)>>,
    rows: u32,
}

impl Writer {
    /// A writer of rows of `width` fields.
    pub fn new(width: usize) -> Writer {
        Writer {
            width,
            raw: Vec::new(),
            prev: Vec::with_capacity(width),
            cur: Vec::with_capacity(width),
            rows: 0,
        }
    }

    /// Appends a row; `fields` has the writer's width.
    pub fn push(&mut self, fields: &[Option<&[u8]>]) {
        debug_assert_eq!(fields.len(), self.width);
        self.cur.clear();
        for (i, f) in fields.iter().enumerate() {
            let Some(v) = f else {
                self.raw.push(0);
                self.cur.push(None);
                continue;
            };
            if let Some(Some((at, len))) = self.prev.get(i) {
                if self.raw[*at..*at + *len] == **v {
                    self.raw.push(1);
                    self.cur.push(Some((*at, *len)));
                    continue;
                }
            }
            leb128(&mut self.raw, v.len() as u64 + 2);
            let at = self.raw.len();
            self.raw.extend_from_slice(v);
            self.cur.push(Some((at, v.len())));
        }
        std::mem::swap(&mut self.prev, &mut self.cur);
        self.rows += 1;
    }

    /// Rows pushed since the last [`Writer::finish`].
    pub fn rows(&self) -> u32 {
        self.rows
    }

    /// The block's uncompressed bytes (for a [`Sealer`]); the writer starts
    /// a new block.
    pub fn take(&mut self) -> Vec<u8> {
        self.prev.clear();
        self.rows = 0;
        std::mem::take(&mut self.raw)
    }
}

/// Compresses blocks into blobs, reusing its compressor's table.
pub struct Sealer {
    snappy: snap::raw::Encoder,
}

impl Default for Sealer {
    fn default() -> Self {
        Sealer {
            snappy: snap::raw::Encoder::new(),
        }
    }
}

impl Sealer {
    /// The blob of a block's uncompressed bytes.
    pub fn seal(&mut self, raw: &[u8]) -> Vec<u8> {
        let mut out = vec![0; 5 + snap::raw::max_compress_len(raw.len())];
        out[0] = SNAPPY;
        out[1..5].copy_from_slice(&(raw.len() as u32).to_le_bytes());
        let n = self
            .snappy
            .compress(raw, &mut out[5..])
            .expect("a block is far below Snappy's limit");
        out.truncate(5 + n);
        out
    }
}

fn leb128(out: &mut Vec<u8>, mut n: u64) {
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// A decoded block: its fields by row and column.
#[derive(Debug, Default)]
pub struct Block {
    raw: Vec<u8>,
    width: usize,
    fields: Vec<Option<(u32, u32)>>,
}

impl Block {
    /// Decodes `blob`, which must hold `rows` rows of `width` fields; the
    /// error says what is wrong with it.
    pub fn decode(blob: &[u8], width: usize, rows: usize) -> Result<Block, String> {
        let raw = inflate(blob)?;
        // Every field takes a byte at least.
        let n = rows.checked_mul(width).filter(|&n| n <= raw.len());
        let n = n.ok_or_else(|| format!("{} bytes cannot hold {rows} rows", raw.len()))?;
        // Grown as filled: a damaged count must not reserve memory up front.
        let mut fields = Vec::with_capacity(n.min(1 << 16));
        let mut at = 0usize;
        for r in 0..rows {
            for c in 0..width {
                let tag = read_leb128(&raw, &mut at).ok_or("a field tag runs past the block")?;
                let f = match tag {
                    0 => None,
                    1 if r > 0 => fields[(r - 1) * width + c],
                    1 => return Err("the first row refers to a row above it".into()),
                    n => {
                        let len = usize::try_from(n - 2).map_err(|_| "a field is too long")?;
                        let end = at.checked_add(len).filter(|&e| e <= raw.len());
                        let end = end.ok_or("a field runs past the block")?;
                        let f = Some((at as u32, len as u32));
                        at = end;
                        f
                    }
                };
                fields.push(f);
            }
        }
        if at != raw.len() {
            return Err(format!("{} bytes after its {rows} rows", raw.len() - at));
        }
        Ok(Block { raw, width, fields })
    }

    pub fn rows(&self) -> usize {
        self.fields.len().checked_div(self.width).unwrap_or(0)
    }

    /// Field `col` of row `row` as bytes.
    pub fn bytes(&self, row: usize, col: usize) -> Option<&[u8]> {
        self.fields[row * self.width + col]
            .map(|(at, len)| &self.raw[at as usize..(at + len) as usize])
    }

    /// Field `col` of row `row` as text; an error when it is not UTF-8.
    pub fn text(&self, row: usize, col: usize) -> Result<Option<&str>, String> {
        self.bytes(row, col)
            .map(|b| {
                std::str::from_utf8(b).map_err(|_| format!("row {row}, field {col} is not UTF-8"))
            })
            .transpose()
    }
}

fn read_leb128(raw: &[u8], at: &mut usize) -> Option<u64> {
    let mut n = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *raw.get(*at)?;
        *at += 1;
        n |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(n);
        }
    }
    None
}

fn inflate(blob: &[u8]) -> Result<Vec<u8>, String> {
    let (&format, rest) = blob.split_first().ok_or("an empty block")?;
    if format != SNAPPY {
        return Err(format!(
            "block format {format}, not one this porledger reads"
        ));
    }
    let (len, stream) = rest
        .split_at_checked(4)
        .ok_or("a block without its length")?;
    let len = u32::from_le_bytes(len.try_into().expect("4 bytes")) as usize;
    if len > MAX_RAW {
        return Err(format!(
            "a block of {len} bytes, more than any close writes"
        ));
    }
    let inner =
        snap::raw::decompress_len(stream).map_err(|e| format!("not a Snappy block: {e}"))?;
    if inner != len {
        return Err(format!("the block holds {inner} bytes where it says {len}"));
    }
    let mut raw = vec![0; len];
    let n = snap::raw::Decoder::new()
        .decompress(stream, &mut raw)
        .map_err(|e| format!("not a Snappy block: {e}"))?;
    if n != len {
        return Err(format!("the block holds {n} bytes where it says {len}"));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_come_back_as_written() {
        let rows: Vec<Vec<Option<&[u8]>>> = vec![
            vec![Some(b"a"), None, Some(b""), Some(b"x\xff")],
            vec![Some(b"a"), Some(b"b"), Some(b""), Some(b"y")],
            vec![Some(b"c"), Some(b"b"), None, Some(b"y")],
        ];
        let mut w = Writer::new(4);
        for _ in 0..2 {
            for r in &rows {
                w.push(r);
            }
            assert_eq!(w.rows(), 3);
            let blob = Sealer::default().seal(&w.take());
            let b = Block::decode(&blob, 4, 3).unwrap();
            assert_eq!(b.rows(), 3);
            for (i, r) in rows.iter().enumerate() {
                for (c, f) in r.iter().enumerate() {
                    assert_eq!(b.bytes(i, c), *f, "row {i} col {c}");
                }
            }
            assert!(b.text(0, 3).is_err());
            assert_eq!(b.text(1, 1).unwrap(), Some("b"));
        }
    }

    #[test]
    fn damaged_blocks_are_errors_not_panics() {
        let mut w = Writer::new(2);
        w.push(&[Some(b"abc"), Some(b"def")]);
        w.push(&[Some(b"abc"), None]);
        let blob = Sealer::default().seal(&w.take());
        assert!(Block::decode(&blob, 2, 3).is_err());
        assert!(Block::decode(&blob, 3, 2).is_err());
        assert!(Block::decode(&blob[..blob.len() - 1], 2, 2).is_err());
        assert!(Block::decode(&[], 2, 2).is_err());
        assert!(Block::decode(&[1, 255, 255, 255, 255], 2, 2).is_err());
        let mut bad = blob.clone();
        bad[0] = 9;
        assert!(Block::decode(&bad, 2, 2).is_err());
        for i in 5..blob.len() {
            let mut b = blob.clone();
            b[i] ^= 0x5a;
            let _ = Block::decode(&b, 2, 2);
        }
    }
}
