//! The usage reader (CPOR report and Graph user counts): no panic; rows are
//! counted as read = observed or rejected.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A GUID file name, so that Graph exports name their tenant.
    let name = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.csv";
    if let Ok(u) = porledger::ingest::usage::parse_usage_bytes(name, data) {
        let f = &u.files[0];
        assert!(f.rejected <= f.rows);
        assert_eq!(f.rejected as usize, u.rejects.len());
    }
});
