//! The designations reader: no panic; every data row is accepted or rejected.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = porledger::ingest::designations::parse_designations("fuzz.csv", data) {
        assert_eq!(d.rows_read, (d.rows.len() + d.rejects.len()) as u64);
    }
});
