//! The FX table reader: no panic; rows = accepted + rejected (+ repeats).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((_table, rejects, rows)) = porledger::ingest::fx::parse_fx("fuzz.csv", data) {
        assert!(rejects.len() as u64 <= rows);
    }
});
