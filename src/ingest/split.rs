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

/// Counts the bytes `a` and the bytes `b` in `hay` in one pass: `(a's, b's)`.
///
/// The reader thread needs both of each chunk (quotes for the record boundary,
/// newlines for the next chunk's first line); two [`count_byte`] passes read
/// the 8 MiB chunk twice, out of cache. Written so that the compiler
/// vectorizes it (a lane of byte counters per position, emptied before it can
/// overflow), in safe code.
pub fn count_two(hay: &[u8], a: u8, b: u8) -> (usize, usize) {
    const LANES: usize = 32;
    // 255 blocks at most add 255 to a byte counter.
    const BLOCK: usize = LANES * 255;
    let (mut na, mut nb) = (0usize, 0usize);
    let mut blocks = hay.chunks_exact(BLOCK);
    for block in &mut blocks {
        let mut ca = [0u8; LANES];
        let mut cb = [0u8; LANES];
        for piece in block.chunks_exact(LANES) {
            for i in 0..LANES {
                ca[i] += (piece[i] == a) as u8;
                cb[i] += (piece[i] == b) as u8;
            }
        }
        na += ca.iter().map(|&n| n as usize).sum::<usize>();
        nb += cb.iter().map(|&n| n as usize).sum::<usize>();
    }
    let rest = blocks.remainder();
    (na + count_byte(rest, a), nb + count_byte(rest, b))
}

/// Finds the end of the last complete record in `buf`, whose first byte is the
/// start of a record (outside quotes). Returns the index just after the last
/// newline that lies outside quotes, or `None` if `buf` holds no such newline
/// (one record longer than the buffer, or no newline at all).
pub fn last_record_end(buf: &[u8], quote: u8) -> Option<usize> {
    last_record_end_lines(buf, quote).map(|(end, _)| end)
}

/// [`last_record_end`], and how many newlines `buf[..end]` holds (counted in
/// the same pass as the quotes).
pub fn last_record_end_lines(buf: &[u8], quote: u8) -> Option<(usize, usize)> {
    // Quotes before the candidate newline; start with the count for the whole
    // prefix up to the last newline, then walk backwards subtracting.
    let mut nl = memchr::memrchr(b'\n', buf)?;
    let (mut quotes, before) = count_two(&buf[..nl], quote, b'\n');
    // Newlines in `buf[..=nl]`.
    let mut newlines = before + 1;
    loop {
        if quotes.is_multiple_of(2) {
            return Some((nl + 1, newlines));
        }
        let prev = memchr::memrchr(b'\n', &buf[..nl])?;
        quotes -= count_byte(&buf[prev..nl], quote);
        // `prev` is the newline right before `nl`: one fewer.
        newlines -= 1;
        nl = prev;
    }
}

/// Splits `buf` (starting at a record start) into pieces of roughly `target`
/// bytes, each ending at a record boundary except possibly the last, which holds
/// whatever follows the last boundary. Used by tests and benchmarks to show that
/// the split point never changes the records.
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
/// that finds it.
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

        /// The one-pass counts are the counts of two passes, wherever the
        /// bytes fall against the counters' blocks (several of them, and a
        /// remainder), and the record ends found with them are those found
        /// without.
        #[test]
        fn one_pass_counts_agree_with_two(
            bytes in proptest::collection::vec(
                prop_oneof![Just(b'"'), Just(b'\n'), Just(b'a'), Just(b','), any::<u8>()],
                0..20_000,
            ),
        ) {
            let data = &bytes[..];
            prop_assert_eq!(
                count_two(data, b'"', b'\n'),
                (count_byte(data, b'"'), count_byte(data, b'\n'))
            );
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
            let last = last_record_end_lines(data, b'"');
            prop_assert_eq!(last.map(|(end, _)| end), ends.last().copied());
            prop_assert_eq!(last_record_end(data, b'"'), ends.last().copied());
            if let Some((end, lines)) = last {
                prop_assert_eq!(lines, count_byte(&data[..end], b'\n'));
            }
            let first = record_end_lines(data, b'"');
            prop_assert_eq!(first.map(|(end, _)| end), ends.first().copied());
            prop_assert_eq!(first_record_end_after(data, 0, b'"'), ends.first().copied());
            if let Some((end, lines)) = first {
                prop_assert_eq!(lines, count_byte(&data[..end], b'\n'));
            }
        }
    }

    #[test]
    fn a_lane_counts_to_255_without_overflow() {
        // Every byte of a whole block is the one counted: each lane reaches 255.
        let all = vec![b'"'; 32 * 255 * 2 + 7];
        assert_eq!(count_two(&all, b'"', b'\n'), (all.len(), 0));
    }
}
