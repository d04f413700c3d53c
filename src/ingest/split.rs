//! Quote-aware splitting of CSV bytes into chunks of whole records.
//!
//! A chunk boundary must fall after a newline that is *outside* quotes: Partner
//! Center files carry newlines inside quoted customer names and descriptions. In
//! RFC 4180 CSV an escaped quote is written `""`, so whether a position is inside
//! quotes is the parity of the quote characters before it, counted from a point
//! known to be outside quotes (the start of a record). No other state is needed.

/// Counts occurrences of `needle` in `hay` with SIMD (chosen at run time); much
/// faster than an iterator of matches when the byte is frequent (fully quoted
/// files have a quote every few bytes).
#[inline]
pub fn count_byte(hay: &[u8], needle: u8) -> usize {
    bytecount::count(hay, needle)
}

/// Finds the end of the last complete record in `buf`, whose first byte is the
/// start of a record (outside quotes). Returns the index just after the last
/// newline that lies outside quotes, or `None` if `buf` holds no such newline
/// (one record longer than the buffer, or no newline at all). For tests: the
/// reader thread cuts with [`super::records::Cutter`].
#[cfg(test)]
pub fn last_record_end(buf: &[u8], quote: u8) -> Option<usize> {
    // Quotes before the candidate newline, walking back a line at a time.
    let mut nl = memchr::memrchr(b'\n', buf)?;
    let mut quotes = count_byte(&buf[..nl], quote);
    loop {
        if quotes.is_multiple_of(2) {
            return Some(nl + 1);
        }
        let prev = memchr::memrchr(b'\n', &buf[..nl])?;
        quotes -= count_byte(&buf[prev..nl], quote);
        nl = prev;
    }
}

/// Splits `buf` (starting at a record start) into pieces of roughly `target`
/// bytes, each ending at a record boundary except possibly the last, which holds
/// whatever follows the last boundary. Used by tests to show that the split
/// point never changes the records.
#[cfg(test)]
pub fn split_records(buf: &[u8], target: usize, quote: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < buf.len() {
        let want = (start + target.max(1)).min(buf.len());
        if want == buf.len() {
            out.push(&buf[start..]);
            break;
        }
        match last_record_end(&buf[start..want], quote) {
            Some(e) => {
                out.push(&buf[start..start + e]);
                start += e;
            }
            None => {
                // No boundary within the target: extend to the next one.
                match last_record_end(&buf[start..], quote) {
                    Some(e) => {
                        // The first boundary after `want` would be better, but any
                        // boundary is correct; find the first one from `want` on.
                        let e =
                            first_record_end_after(&buf[start..], want - start, quote).unwrap_or(e);
                        out.push(&buf[start..start + e]);
                        start += e;
                    }
                    None => {
                        out.push(&buf[start..]);
                        break;
                    }
                }
            }
        }
    }
    out
}

/// The end of the record `buf` starts with (the index just after the first
/// newline outside quotes), and how many newlines `buf[..end]` holds (the
/// record's line terminator and any inside its quotes), from the one pass
/// that finds it. For tests: a worker finds record ends with [`record_scan`].
#[cfg(test)]
pub fn record_end_lines(buf: &[u8], quote: u8) -> Option<(usize, usize)> {
    record_end_from(buf, 0, quote)
}

/// The first record end at or after `from` in `buf` (which starts at a record start).
pub fn first_record_end_after(buf: &[u8], from: usize, quote: u8) -> Option<usize> {
    record_end_from(buf, from, quote).map(|(end, _)| end)
}

/// The first record end at or after `from` in `buf` (which starts at a record
/// start), and the newlines in `buf[from..end]`.
fn record_end_from(buf: &[u8], from: usize, quote: u8) -> Option<(usize, usize)> {
    let mut quotes = count_byte(&buf[..from], quote);
    let mut pos = from;
    let mut newlines = 0;
    while let Some(i) = memchr::memchr(b'\n', &buf[pos..]) {
        let nl = pos + i;
        newlines += 1;
        quotes += count_byte(&buf[pos..nl], quote);
        if quotes.is_multiple_of(2) {
            return Some((nl + 1, newlines));
        }
        pos = nl + 1;
    }
    None
}

/// Where `buf` (which starts at a record start) holds a quote that RFC 4180
/// does not allow, in order: text right after a closing quote (`"1"00.00`,
/// which a reader would join into `100.00`) or a quote inside an unquoted
/// field (`ab"c"d`). Usually empty.
///
/// A quote is *opening* when an even number of quotes stand before it (counted
/// from `buf`'s start) and *closing* otherwise; a doubled quote `""` inside a
/// quoted field is a closing one followed by an opening one. So CSV allows an
/// opening quote only right after a delimiter, a newline, a quote or the start
/// of `buf`, and a closing quote only right before a delimiter, a line end, a
/// quote or the end of `buf`. Both tests look at one neighbour and the parity
/// of the quotes before, so they run 64 bytes at a time on bit masks (the
/// parity is a prefix XOR). A quote never closed is not reported here: it is
/// where a record's end is decided.
pub fn misplaced_quotes(buf: &[u8], quote: u8, delimiter: u8) -> Vec<usize> {
    let mut scan = QuoteScan::new(quote, delimiter);
    let mut found = Vec::new();
    let mut base = 0;
    while base < buf.len() || scan.closing_at_end {
        let step = scan.block(buf, base, masks);
        if step.bad_before {
            found.push(base - 1);
        }
        let mut bad = step.bad;
        while bad != 0 {
            found.push(base + bad.trailing_zeros() as usize);
            bad &= bad - 1;
        }
        base += 64;
    }
    found
}

/// The lines at the start of a buffer that are records of their own, as
/// [`single_line_prefix`] finds them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinePrefix {
    /// Just after the last of those lines' newlines (0 if none).
    pub end: usize,
    /// Their newlines.
    pub lines: usize,
    /// Whether the record at `end` spans lines (a newline after it lies
    /// inside quotes); otherwise `end` is after the buffer's last newline.
    pub spans_lines: bool,
}

/// How far from the start of `buf` (a record start) every line is a record
/// of its own: up to the line that holds the first newline inside quotes,
/// or up to the last newline. The reader thread's pass over each chunk,
/// 64 bytes at a time; only a record that spans lines needs a closer look
/// (whether it is plausible decides where the next one starts).
pub fn single_line_prefix(buf: &[u8], quote: u8, delimiter: u8) -> LinePrefix {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the processor has the features, as `has_avx2` checked.
        #[allow(unsafe_code)]
        return unsafe { single_line_prefix_avx2(buf, quote, delimiter) };
    }
    single_line_prefix_with(buf, quote, delimiter, masks)
}

/// [`single_line_prefix`] compiled for the features of [`has_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,pclmulqdq,popcnt")]
fn single_line_prefix_avx2(buf: &[u8], quote: u8, delimiter: u8) -> LinePrefix {
    single_line_prefix_with(buf, quote, delimiter, |b, q, d| masks_avx2(b, q, d))
}

#[inline(always)]
fn single_line_prefix_with(
    buf: &[u8],
    quote: u8,
    delimiter: u8,
    masks: impl Fn(&[u8; 64], u8, u8) -> Masks,
) -> LinePrefix {
    let mut scan = QuoteScan::new(quote, delimiter);
    let mut prefix = LinePrefix {
        end: 0,
        lines: 0,
        spans_lines: false,
    };
    let mut base = 0;
    while base < buf.len() {
        let step = scan.block(buf, base, &masks);
        let inside = step.newlines & !step.ends;
        // The record ends before the first newline inside quotes.
        let ends = if inside == 0 {
            step.ends
        } else {
            step.ends & (inside & inside.wrapping_neg()).wrapping_sub(1)
        };
        if ends != 0 {
            prefix.end = base + 64 - ends.leading_zeros() as usize;
            prefix.lines += ends.count_ones() as usize;
        }
        if inside != 0 {
            prefix.spans_lines = true;
            return prefix;
        }
        base += 64;
    }
    prefix
}

/// What [`record_scan`] finds of the record a buffer starts with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordScan {
    /// Just after the first newline outside quotes, if there is one.
    pub end: Option<usize>,
    /// The newlines before `end` (its own included), or in the whole buffer.
    pub newlines: usize,
    /// Whether, without `end`, a quote is left open at the buffer's end.
    pub open_quote: bool,
    /// Whether a quote before `end` (or in the whole buffer) stands where CSV
    /// allows none ([`misplaced_quotes`]).
    pub misplaced: bool,
}

/// The end of the record `buf` starts with, its newlines, and whether its
/// quotes are where CSV allows them: the record's end, as
/// [`first_record_end_after`] finds it, and [`misplaced_quotes`] in one pass, 64 bytes at a time, over bytes the
/// record reader has just brought into the cache.
pub fn record_scan(buf: &[u8], quote: u8, delimiter: u8) -> RecordScan {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the processor has the features, as `has_avx2` checked.
        #[allow(unsafe_code)]
        return unsafe { record_scan_avx2(buf, quote, delimiter) };
    }
    record_scan_with(buf, quote, delimiter, masks)
}

/// Whether the processor runs the AVX2 versions of the scans: AVX2 for the
/// masks, PCLMULQDQ for the quotes' parity (one carry-less multiplication),
/// POPCNT for counting newlines (one instruction).
#[cfg(target_arch = "x86_64")]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
        && std::arch::is_x86_feature_detected!("pclmulqdq")
        && std::arch::is_x86_feature_detected!("popcnt")
}

/// [`record_scan`] compiled for the features of [`has_avx2`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,pclmulqdq,popcnt")]
fn record_scan_avx2(buf: &[u8], quote: u8, delimiter: u8) -> RecordScan {
    record_scan_with(buf, quote, delimiter, |b, q, d| masks_avx2(b, q, d))
}

#[inline(always)]
fn record_scan_with(
    buf: &[u8],
    quote: u8,
    delimiter: u8,
    masks: impl Fn(&[u8; 64], u8, u8) -> Masks,
) -> RecordScan {
    let mut scan = QuoteScan::new(quote, delimiter);
    let mut newlines = 0;
    let mut misplaced = false;
    let mut base = 0;
    while base < buf.len() || scan.closing_at_end {
        let step = scan.block(buf, base, &masks);
        misplaced |= step.bad_before;
        if step.ends != 0 {
            // Up to and including the first end.
            let upto = (step.ends & step.ends.wrapping_neg())
                .wrapping_shl(1)
                .wrapping_sub(1);
            return RecordScan {
                end: Some(base + step.ends.trailing_zeros() as usize + 1),
                newlines: newlines + (step.newlines & upto).count_ones() as usize,
                open_quote: false,
                misplaced: misplaced || step.bad & upto != 0,
            };
        }
        newlines += step.newlines.count_ones() as usize;
        misplaced |= step.bad != 0;
        base += 64;
    }
    RecordScan {
        end: None,
        newlines,
        open_quote: scan.inside != 0,
        misplaced,
    }
}

/// The quote parity and neighbours carried from one block of 64 bytes to the
/// next, for [`misplaced_quotes`] and [`record_scan`].
struct QuoteScan {
    quote: u8,
    delimiter: u8,
    /// All ones when the next block starts inside quotes, else zero.
    inside: u64,
    /// 1 when the byte before the next block lets a quote open after it.
    may_open: u64,
    /// Whether the previous block's last byte is a closing quote, to be
    /// judged by the next block's first byte.
    closing_at_end: bool,
}

/// One block's findings: bit i stands for byte `base + i`.
struct BlockStep {
    /// Misplaced quotes (a closing quote at bit 63 is judged with the next block).
    bad: u64,
    /// Whether the byte before the block is a misplaced closing quote.
    bad_before: bool,
    /// Newlines outside quotes: record ends.
    ends: u64,
    newlines: u64,
}

impl QuoteScan {
    fn new(quote: u8, delimiter: u8) -> Self {
        QuoteScan {
            quote,
            delimiter,
            inside: 0,
            may_open: 1,
            closing_at_end: false,
        }
    }

    /// Scans `buf[base..base + 64]`; bytes past `buf`'s end count as
    /// delimiters (neither quotes nor a reason to refuse a closing one).
    #[inline(always)]
    fn block(
        &mut self,
        buf: &[u8],
        base: usize,
        masks: impl Fn(&[u8; 64], u8, u8) -> Masks,
    ) -> BlockStep {
        let rest = buf.get(base..).unwrap_or_default();
        let m = match <&[u8; 64]>::try_from(rest.get(..64).unwrap_or(rest)) {
            Ok(block) => masks(block, self.quote, self.delimiter),
            Err(_) => {
                let mut last = [self.delimiter; 64];
                last[..rest.len()].copy_from_slice(rest);
                masks(&last, self.quote, self.delimiter)
            }
        };
        let (open_after, close_before) = (m.open_after, m.close_before);
        let bad_before = std::mem::take(&mut self.closing_at_end) && close_before & 1 == 0;
        // Bit i: an odd number of quotes up to and including byte i.
        let odd = m.parity ^ self.inside;
        let opening = m.quotes & odd;
        let closing = m.quotes & !odd;
        let bad_open = opening & !((open_after << 1) | self.may_open);
        let bad_close = closing & !(close_before >> 1) & !(1 << 63);
        self.inside = 0u64.wrapping_sub(odd >> 63);
        self.may_open = open_after >> 63;
        self.closing_at_end = closing >> 63 == 1;
        BlockStep {
            bad: bad_open | bad_close,
            bad_before,
            ends: m.newlines & !odd,
            newlines: m.newlines,
        }
    }
}

/// Bit i of each mask says what byte i of a block is.
#[derive(Debug, PartialEq, Eq)]
struct Masks {
    quotes: u64,
    newlines: u64,
    /// A delimiter, a newline or a quote: a quote may open after it.
    open_after: u64,
    /// Those, or a carriage return: a quote may close before it.
    close_before: u64,
    /// [`prefix_xor`] of `quotes`: an odd number of quotes up to here.
    parity: u64,
}

/// Bit i of the result: the parity of bits 0..=i of `x`.
#[inline(always)]
fn prefix_xor(mut x: u64) -> u64 {
    x ^= x << 1;
    x ^= x << 2;
    x ^= x << 4;
    x ^= x << 8;
    x ^= x << 16;
    x ^= x << 32;
    x
}

#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn masks(block: &[u8; 64], quote: u8, delimiter: u8) -> Masks {
    // SAFETY: SSE2 is part of the x86_64 baseline: every x86_64 processor
    // has it, and the target enables it.
    #[allow(unsafe_code)]
    unsafe {
        masks_sse2(block, quote, delimiter)
    }
}

#[cfg(not(target_arch = "x86_64"))]
fn masks(block: &[u8; 64], quote: u8, delimiter: u8) -> Masks {
    masks_portable(block, quote, delimiter)
}

/// [`masks`] with 16-byte compares.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
#[inline]
fn masks_sse2(block: &[u8; 64], quote: u8, delimiter: u8) -> Masks {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set1_epi8, _mm_set_epi8,
    };
    let (q, d, n, r) = (
        _mm_set1_epi8(quote as i8),
        _mm_set1_epi8(delimiter as i8),
        _mm_set1_epi8(b'\n' as i8),
        _mm_set1_epi8(b'\r' as i8),
    );
    let mut m = [0u64; 4];
    for (k, b) in block.chunks_exact(16).enumerate() {
        // Sixteen bytes in order; the compiler makes this one load.
        let v = _mm_set_epi8(
            b[15] as i8,
            b[14] as i8,
            b[13] as i8,
            b[12] as i8,
            b[11] as i8,
            b[10] as i8,
            b[9] as i8,
            b[8] as i8,
            b[7] as i8,
            b[6] as i8,
            b[5] as i8,
            b[4] as i8,
            b[3] as i8,
            b[2] as i8,
            b[1] as i8,
            b[0] as i8,
        );
        let quotes = _mm_cmpeq_epi8(v, q);
        let newlines = _mm_cmpeq_epi8(v, n);
        let open_after = _mm_or_si128(_mm_or_si128(quotes, newlines), _mm_cmpeq_epi8(v, d));
        let close_before = _mm_or_si128(open_after, _mm_cmpeq_epi8(v, r));
        for (mask, class) in m
            .iter_mut()
            .zip([quotes, newlines, open_after, close_before])
        {
            *mask |= u64::from(_mm_movemask_epi8(class) as u16) << (k * 16);
        }
    }
    Masks {
        quotes: m[0],
        newlines: m[1],
        open_after: m[2],
        close_before: m[3],
        parity: prefix_xor(m[0]),
    }
}

/// [`masks`] with 32-byte compares, and the parity as a carry-less product
/// with all ones.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,pclmulqdq")]
fn masks_avx2(block: &[u8; 64], quote: u8, delimiter: u8) -> Masks {
    use std::arch::x86_64::{
        __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_or_si256,
        _mm256_set1_epi8, _mm_clmulepi64_si128, _mm_cvtsi128_si64, _mm_cvtsi64_si128,
        _mm_set1_epi8,
    };
    let (q, d, n, r) = (
        _mm256_set1_epi8(quote as i8),
        _mm256_set1_epi8(delimiter as i8),
        _mm256_set1_epi8(b'\n' as i8),
        _mm256_set1_epi8(b'\r' as i8),
    );
    let mut m = [0u64; 4];
    for k in 0..2 {
        // SAFETY: bytes 32k..32k+32 of a 64-byte array, read unaligned.
        #[allow(unsafe_code)]
        let v = unsafe { _mm256_loadu_si256(block.as_ptr().add(32 * k).cast::<__m256i>()) };
        let quotes = _mm256_cmpeq_epi8(v, q);
        let newlines = _mm256_cmpeq_epi8(v, n);
        let open_after =
            _mm256_or_si256(_mm256_or_si256(quotes, newlines), _mm256_cmpeq_epi8(v, d));
        let close_before = _mm256_or_si256(open_after, _mm256_cmpeq_epi8(v, r));
        for (mask, class) in m
            .iter_mut()
            .zip([quotes, newlines, open_after, close_before])
        {
            *mask |= u64::from(_mm256_movemask_epi8(class) as u32) << (32 * k);
        }
    }
    // Opaque to the optimizer: without this, LLVM takes the masks apart
    // into single bits and the scan runs three times slower.
    let parity = _mm_cvtsi128_si64(_mm_clmulepi64_si128(
        _mm_cvtsi64_si128(m[0] as i64),
        _mm_set1_epi8(-1),
        0,
    )) as u64;
    std::hint::black_box(Masks {
        quotes: m[0],
        newlines: m[1],
        open_after: m[2],
        close_before: m[3],
        parity,
    })
}

/// [`masks`] a byte at a time: for other processors, and to test the
/// vector ones against.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn masks_portable(block: &[u8; 64], quote: u8, delimiter: u8) -> Masks {
    let bits = |class: &dyn Fn(u8) -> bool| {
        block
            .iter()
            .enumerate()
            .fold(0u64, |m, (i, &b)| m | (u64::from(class(b)) << i))
    };
    let opens = |b: u8| b == quote || b == delimiter || b == b'\n';
    Masks {
        quotes: bits(&|b| b == quote),
        newlines: bits(&|b| b == b'\n'),
        open_after: bits(&opens),
        close_before: bits(&|b| opens(b) || b == b'\r'),
        parity: prefix_xor(bits(&|b| b == quote)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn records(data: &[u8]) -> Vec<Vec<String>> {
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(data);
        rdr.records()
            .map(|r| r.unwrap().iter().map(str::to_string).collect())
            .collect()
    }

    /// Records as the pipeline reads a chunk (simd-csv, configured alike).
    fn simd_records(data: &[u8]) -> Vec<Vec<String>> {
        let mut rdr = simd_csv::TotalReaderBuilder::new()
            .has_headers(false)
            .from_bytes(data);
        let mut rec = simd_csv::ByteRecord::new();
        let mut out = Vec::new();
        while rdr.read_byte_record(&mut rec) {
            out.push(
                rec.iter()
                    .map(|f| String::from_utf8(f.to_vec()).unwrap())
                    .collect(),
            );
        }
        out
    }

    #[test]
    fn simd_reads_a_last_record_without_newline_and_blank_lines() {
        assert_eq!(simd_records(b"a,\"b\nc\",d"), records(b"a,\"b\nc\",d"));
        assert_eq!(
            simd_records(b"x\r\n\r\ny,1"),
            vec![vec!["x"], vec!["y", "1"]]
        );
        assert_eq!(simd_records(b""), Vec::<Vec<String>>::new());
    }

    #[test]
    fn newline_inside_quotes_is_not_a_boundary() {
        let data = b"a,\"x\ny\",1\nb,\"\"\"q\"\"\n\",2\nc,z,3\n";
        assert_eq!(last_record_end(data, b'"'), Some(data.len()));
        // Cut in the middle of the second record's quoted field.
        let cut = data.iter().position(|&b| b == b'q').unwrap();
        let end = last_record_end(&data[..cut], b'"').unwrap();
        assert_eq!(&data[..end], b"a,\"x\ny\",1\n");
        assert_eq!(last_record_end(b"\"open\nfield", b'"'), None);
    }

    fn field() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z0-9 .-]{0,6}",
            "[a-z\"\n,;]{0,6}".prop_map(|s| format!("\"{}\"", s.replace('"', "\"\""))),
        ]
    }

    proptest! {
        /// Any split size gives exactly the records of the unsplit input, read
        /// by the csv crate or by simd-csv.
        #[test]
        fn any_split_gives_the_same_records(
            rows in proptest::collection::vec(proptest::collection::vec(field(), 1..5), 1..30),
            target in 1usize..200,
            crlf in any::<bool>(),
        ) {
            let eol = if crlf { "\r\n" } else { "\n" };
            let text: String = rows.iter().map(|r| r.join(",") + eol).collect();
            let data = text.as_bytes();
            let whole = records(data);
            let pieces = split_records(data, target, b'"');
            prop_assert_eq!(pieces.iter().map(|p| p.len()).sum::<usize>(), data.len());
            let mut joined = Vec::new();
            let mut simd_joined = Vec::new();
            for p in &pieces {
                joined.extend(records(p));
                simd_joined.extend(simd_records(p));
            }
            prop_assert_eq!(&joined, &whole);
            // The hot path's reader agrees with the csv crate, piece by piece.
            prop_assert_eq!(&simd_joined, &whole);
        }

        /// The record ends found by counting quotes are those of the
        /// definition: a newline after an even number of quotes.
        #[test]
        fn record_ends_follow_the_quote_parity(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\n'), Just(b'a'), Just(b','), any::<u8>()],
                0..20_000,
            ),
        ) {
            let data = &bytes[..];
            // Every end after a newline with an even number of quotes before it.
            let mut quotes = 0;
            let ends: Vec<usize> = data
                .iter()
                .enumerate()
                .filter_map(|(i, &b)| {
                    quotes += (b == b'"') as usize;
                    (b == b'\n' && quotes % 2 == 0).then_some(i + 1)
                })
                .collect();
            prop_assert_eq!(last_record_end(data, b'"'), ends.last().copied());
            let first = record_end_lines(data, b'"');
            prop_assert_eq!(first.map(|(end, _)| end), ends.first().copied());
            prop_assert_eq!(first_record_end_after(data, 0, b'"'), ends.first().copied());
            if let Some((end, lines)) = first {
                prop_assert_eq!(lines, count_byte(&data[..end], b'\n'));
            }
        }
    }

    /// [`misplaced_quotes`] by its definition, a byte at a time.
    fn misplaced_by_definition(buf: &[u8], q: u8, d: u8) -> Vec<usize> {
        let mut odd = false;
        let mut out = Vec::new();
        for (i, &b) in buf.iter().enumerate() {
            if b != q {
                continue;
            }
            let ok = if odd {
                buf.get(i + 1)
                    .is_none_or(|&n| n == d || n == q || n == b'\n' || n == b'\r')
            } else {
                i == 0 || [d, q, b'\n'].contains(&buf[i - 1])
            };
            if !ok {
                out.push(i);
            }
            odd = !odd;
        }
        out
    }

    #[test]
    fn misplaced_quotes_are_found_where_csv_allows_none() {
        let data = b"a,\"1\"00.00,1\nb,x,\"R\"3\nx\",\",y\n\"ok\"\"x\",\"\"\r\n\"m\nl\",2\n";
        // The closing quote before `00.00`, the one before `3`, the quote
        // inside the unquoted `x"`; doubled, empty and multi-line fields pass.
        assert_eq!(misplaced_quotes(data, b'"', b','), vec![4, 19, 23]);
        assert_eq!(misplaced_by_definition(data, b'"', b','), vec![4, 19, 23]);
        // A closing quote at a block's last byte is judged by the next
        // block's first, and by the end of the data.
        let mut at_edge = vec![b'a'; 62];
        at_edge.insert(0, b'"');
        at_edge.push(b'"');
        assert_eq!(misplaced_quotes(&at_edge, b'"', b','), Vec::<usize>::new());
        at_edge.push(b'x');
        assert_eq!(misplaced_quotes(&at_edge, b'"', b','), vec![63]);
        at_edge.pop();
        at_edge.push(b'\t');
        assert_eq!(misplaced_quotes(&at_edge, b'"', b'\t'), Vec::<usize>::new());
    }

    proptest! {
        /// The 64-bytes-at-a-time scan finds exactly the quotes the
        /// definition finds, wherever they fall against the blocks.
        #[test]
        fn misplaced_quotes_follow_the_definition(
            bytes in proptest::collection::vec(
                prop_oneof![
                    4 => Just(b'"'),
                    2 => Just(b','),
                    1 => Just(b'\n'),
                    1 => Just(b'\r'),
                    1 => Just(b'\t'),
                    3 => Just(b'a'),
                    1 => any::<u8>(),
                ],
                0..400,
            ),
            tab in any::<bool>(),
        ) {
            let d = if tab { b'\t' } else { b',' };
            let misplaced = misplaced_by_definition(&bytes, b'"', d);
            prop_assert_eq!(misplaced_quotes(&bytes, b'"', d), misplaced.clone());
            // The record scan: the first end, its newlines, and the
            // misplaced quotes before it.
            let scan = record_scan(&bytes, b'"', d);
            let end = record_end_lines(&bytes, b'"');
            prop_assert_eq!(scan.end, end.map(|(e, _)| e));
            let upto = scan.end.unwrap_or(bytes.len());
            prop_assert_eq!(scan.newlines, count_byte(&bytes[..upto], b'\n'));
            prop_assert_eq!(
                scan.open_quote,
                scan.end.is_none() && !count_byte(&bytes, b'"').is_multiple_of(2)
            );
            prop_assert_eq!(scan.misplaced, misplaced.iter().any(|&at| at < upto));
            // The lines before the first newline inside quotes.
            let mut quotes = 0;
            let mut prefix = LinePrefix { end: 0, lines: 0, spans_lines: false };
            for (i, &b) in bytes.iter().enumerate() {
                quotes += usize::from(b == b'"');
                if b == b'\n' {
                    if quotes % 2 == 1 {
                        prefix.spans_lines = true;
                        break;
                    }
                    prefix.end = i + 1;
                    prefix.lines += 1;
                }
            }
            prop_assert_eq!(single_line_prefix(&bytes, b'"', d), prefix);
        }

        /// The vector masks are the byte-at-a-time ones.
        #[test]
        fn vector_masks_are_the_portable_ones(
            block in proptest::array::uniform32(prop_oneof![
                Just(b'"'), Just(b','), Just(b'\n'), Just(b'\r'), any::<u8>()
            ]),
            more in proptest::array::uniform32(any::<u8>()),
        ) {
            let mut whole = [0u8; 64];
            whole[..32].copy_from_slice(&block);
            whole[32..].copy_from_slice(&more);
            for _ in 0..2 {
                let portable = masks_portable(&whole, b'"', b',');
                prop_assert_eq!(masks(&whole, b'"', b','), portable);
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("pclmulqdq")
                {
                    // SAFETY: the processor has both, as checked right above.
                    #[allow(unsafe_code)]
                    let avx2 = unsafe { masks_avx2(&whole, b'"', b',') };
                    prop_assert_eq!(avx2, masks_portable(&whole, b'"', b','));
                }
                whole.reverse();
            }
        }
    }
}
