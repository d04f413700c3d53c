//! The billing hot path: chunk cutting, record splitting and line parsing.
//!
//! Invariants: no panic; every physical line that holds data is covered by
//! exactly one row; any chunk size (and the reader's record limit) gives the
//! same rows; each row parses or is rejected.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porledger::ingest::billing::BillingLayout;
use porledger::ingest::records::{cut_all, for_each_row, RecordFormat, Row};

/// Per row: line, lines covered, field count or reject (column and reason).
/// (Field values are not compared: simd-csv reads a malformed last line
/// without newline, such as `""`, differently after a malformed record.)
type Rows = Vec<(u64, u64, Result<usize, String>)>;

fn rows(body: &[u8], chunk: usize, max: usize, fmt: RecordFormat<'_>) -> Rows {
    let fmt = RecordFormat {
        max_record: max,
        ..fmt
    };
    let mut out = Vec::new();
    let mut rec = simd_csv::ByteRecord::new();
    for (kind, line, data) in cut_all(body, chunk, fmt) {
        for_each_row(&data, 2 + line, kind, fmt, &mut rec, &mut |r: Row<'_>| {
            out.push((
                r.line,
                r.lines,
                r.record
                    .map(|rec| rec.len())
                    .map_err(|p| format!("{}|{}", p.column, p.reason)),
            ))
        });
    }
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let delimiter = [b',', b';', b'\t'][data[0] as usize % 3];
    let chunk = 1 + data[1] as usize % 97;
    let body = &data[2..];
    let header: Vec<String> = [
        "CustomerId",
        "SubscriptionId",
        "ChargeStartDate",
        "Subtotal",
        "Currency",
        "PublisherName",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let layout = BillingLayout::from_header(&header, delimiter).expect("layout");
    let fmt = RecordFormat {
        delimiter,
        header: &header,
        max_record: 64,
    };
    // A small record limit, so that the limit is exercised.
    let reference = rows(body, body.len().max(1), 64, fmt);
    let split = rows(body, chunk, 64, fmt);
    assert_eq!(reference, split, "chunk size {chunk} changed the rows");

    // Every line holding data is covered by exactly one row, in order.
    let mut next = 2u64;
    let lines: Vec<&[u8]> = body.split_inclusive(|&b| b == b'\n').collect();
    for (line, n, _) in &reference {
        assert!(*line >= next, "rows overlap or go back: {line} < {next}");
        for skipped in next..*line {
            let l = lines[(skipped - 2) as usize];
            assert!(
                l.iter().all(|&b| b == b'\r' || b == b'\n'),
                "line {skipped} holds data but no row covers it"
            );
        }
        next = line + n;
    }
    for skipped in next..2 + lines.len() as u64 {
        let l = lines[(skipped - 2) as usize];
        assert!(
            l.iter().all(|&b| b == b'\r' || b == b'\n'),
            "trailing line {skipped} holds data but no row covers it"
        );
    }

    // Rows parse or are rejected, never panic.
    let mut rec = simd_csv::ByteRecord::new();
    let fmt = RecordFormat {
        max_record: 1 << 20,
        ..fmt
    };
    for (kind, line, data) in cut_all(body, chunk, fmt) {
        for_each_row(
            &data,
            line,
            kind,
            fmt,
            &mut rec,
            &mut |r: Row<'_>| {
                if let Ok(rec) = r.record {
                    if rec.len() == header.len() {
                        let _ = layout.parse(rec);
                    }
                }
            },
        );
    }
});
