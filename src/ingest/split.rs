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
/// (one record longer than the buffer, or no newline at all).
pub fn last_record_end(buf: &[u8], quote: u8) -> Option<usize> {
    let mut end = buf.len();
    // Quotes before the candidate newline; start with the count for the whole
    // prefix up to the last newline, then walk backwards subtracting.
    let mut nl = memchr::memrchr(b'\n', &buf[..end])?;
    let mut quotes = count_byte(&buf[..nl], quote);
    loop {
        if quotes.is_multiple_of(2) {
            return Some(nl + 1);
        }
        end = nl;
        let prev = memchr::memrchr(b'\n', &buf[..end])?;
        quotes -= count_byte(&buf[prev..nl], quote);
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

/// The first record end at or after `from` in `buf` (which starts at a record start).
pub fn first_record_end_after(buf: &[u8], from: usize, quote: u8) -> Option<usize> {
    let mut quotes = count_byte(&buf[..from], quote);
    let mut pos = from;
    while let Some(i) = memchr::memchr(b'\n', &buf[pos..]) {
        let nl = pos + i;
        quotes += count_byte(&buf[pos..nl], quote);
        if quotes.is_multiple_of(2) {
            return Some(nl + 1);
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
    }
}
