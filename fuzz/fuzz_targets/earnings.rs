//! Microsoft's earnings export reader (`porledger tieout`): any bytes, CSV or
//! TSV, any header. Invariants: no panic; every data row is handed on, skipped
//! as a duplicate `earningId` or rejected (rows read = handed + duplicates +
//! rejects), and each reject names its line within the file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use porledger::ingest::earnings::read_earnings;
use porledger::ingest::InputFile;

fuzz_target!(|data: &[u8]| {
    // The reader opens files (it streams them in chunks): one scratch file per
    // fuzzing process, rewritten for every input.
    let path = std::env::temp_dir().join(format!(
        "porledger-fuzz-earnings-{}.csv",
        std::process::id()
    ));
    std::fs::write(&path, data).expect("scratch file");
    let file = InputFile {
        path,
        display: "earnings.csv".into(),
        size: data.len() as u64,
    };
    let mut handed = 0u64;
    if let Ok(read) = read_earnings(std::slice::from_ref(&file), &mut |_| handed += 1) {
        assert_eq!(
            read.rows_read,
            handed + read.duplicates + read.rejects.len() as u64
        );
        // A line ends at LF, CR LF or a lone CR: at most one per CR or LF.
        let physical_lines = data.iter().filter(|&&b| b == b'\n' || b == b'\r').count() as u64 + 1;
        for r in &read.rejects {
            assert!(r.line >= 2 && r.line <= physical_lines, "line {}", r.line);
        }
    }
});
