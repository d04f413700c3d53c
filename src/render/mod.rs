//! Render: the only stage (with ingest) that writes files.
//!
//! - [`csv`] formats ledger, not-eligible and reject rows and writes statements;
//! - [`pdf`] lays out partner and customer transparency statements as PDF
//!   from a template;
//! - [`parquet`] turns the ledger into `ledger.parquet` (`--ledger-format parquet`);
//! - [`publish`] stages a run's outputs in a temporary directory beside `--out`,
//!   writes the manifest and moves the whole set into place at once;
//! - [`ordered_json`] rewrites a few fields of a JSON file porledger wrote
//!   and keeps the rest byte for byte (`render`'s manifest).

pub mod adjustment;
pub mod attainment;
pub mod closed;
pub mod csv;
pub mod journal;
pub mod json;
pub mod ordered_json;
pub mod parquet;
pub mod pdf;
pub mod publish;
pub mod sink;
pub mod summary;
pub mod tieout;

pub use crate::csv_text::{excel_safe, excel_unescape};

/// The escape byte of [`sanitize_file_name`]: `%` followed by two upper-case
/// hex digits stands for one byte of the ID (as in URLs).
const ESCAPE: u8 = b'%';

/// Encoded names longer than this are cut and end in `%~` and the SHA-256 of
/// the ID (file systems limit a name to 255 bytes).
const MAX_NAME: usize = 120;

/// Names Windows reserves for devices, in any case and with any extension.
const RESERVED: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// A file or directory name derived from an input value (a partner or customer
/// ID). The mapping is injective: distinct IDs always get distinct names.
///
/// - ASCII letters, digits, `-`, `_` and `.` stand for themselves, so ordinary
///   IDs (numbers, GUIDs, `P-A`) keep their names;
/// - every other byte of the UTF-8 text, and the escape byte `%` itself, is
///   written `%XX` (upper-case hex), as are a leading dot (no hidden files, no
///   `.` or `..`), a trailing dot (Windows drops it) and the first letter of a
///   Windows device name (`CON`, `nul.txt`);
/// - the empty ID is `%` (no other ID's name is a lone `%`);
/// - a name longer than 120 bytes keeps its first part and ends in `%~` and
///   the SHA-256 of the whole ID (`%~` never occurs in the other names).
///
/// [`file_name_id`] decodes a name (other than a shortened one) back to the ID,
/// which is what makes the mapping injective. Two IDs that differ only in letter
/// case get names that differ only in case; on a case-insensitive file system
/// those would be one file, so the publisher refuses (a fatal error) to write a
/// second file to a path that equals, ignoring case, one it already wrote.
pub fn sanitize_file_name(id: &str) -> String {
    if id.is_empty() {
        return "%".to_string();
    }
    let bytes = id.as_bytes();
    let stem = id.split('.').next().unwrap_or("");
    let reserved = RESERVED.iter().any(|r| r.eq_ignore_ascii_case(stem));
    let mut s = String::with_capacity(id.len());
    for (i, &b) in bytes.iter().enumerate() {
        let plain = (b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
            && !(b == b'.' && (i == 0 || i + 1 == bytes.len()))
            && !(i == 0 && reserved);
        if plain {
            s.push(b as char);
        } else {
            s.push(ESCAPE as char);
            s.push_str(&format!("{b:02X}"));
        }
    }
    if s.len() > MAX_NAME {
        let mut cut = MAX_NAME - 66;
        // Do not cut an escape in two.
        while s.as_bytes()[..cut]
            .iter()
            .rev()
            .take(2)
            .any(|&b| b == ESCAPE)
        {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("%~");
        s.push_str(&crate::ingest::sha256_hex(bytes));
    }
    s
}

/// The ID that [`sanitize_file_name`] turned into `name`, or `None` when
/// `name` is not such a name or is a shortened one (ending in a hash).
pub fn file_name_id(name: &str) -> Option<String> {
    if name == "%" {
        return Some(String::new());
    }
    let b = name.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == ESCAPE {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            if hex.bytes().any(|c| c.is_ascii_lowercase()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let id = String::from_utf8(out).ok()?;
    (sanitize_file_name(&id) == name).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formulas_are_neutralised() {
        assert_eq!(excel_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(excel_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(excel_safe("+49 30 1234"), "'+49 30 1234");
        assert_eq!(excel_safe("-cmd"), "'-cmd");
        assert_eq!(excel_safe("-12.50"), "-12.50");
        assert_eq!(excel_safe("+3"), "+3");
        assert_eq!(excel_safe("Contoso"), "Contoso");
        assert_eq!(excel_safe(""), "");
    }

    #[test]
    fn unescape_undoes_the_escape() {
        for v in [
            "=HYPERLINK(\"x\")",
            "@SUM(A1)",
            "+49 30",
            "-cmd",
            "-P1",
            "\tx",
            "-12.50",
        ] {
            assert_eq!(excel_unescape(&excel_safe(v)), v);
        }
        for v in ["'quoted'", "'", "Contoso", "", "'-12.50", "''x"] {
            assert_eq!(excel_unescape(v), v);
        }
        // A value whose `'`s come before a formula gets one more, so that it
        // is not written as the value without them.
        assert_eq!(excel_safe("'=P1"), "''=P1");
        assert_eq!(excel_safe("''-x"), "'''-x");
        assert_eq!(excel_unescape("''-x"), "'-x");
        assert_ne!(excel_safe("=P1"), excel_safe("'=P1"));
    }

    proptest::proptest! {
        /// Every value reads back as written, so no two values are written
        /// alike (keys read back from the ledger stay apart).
        #[test]
        fn excel_escape_round_trips(v in "['=+@\t\r0-9.a-]{0,8}", w in ".{0,12}") {
            for v in [v, w] {
                let written = excel_safe(&v);
                proptest::prop_assert_eq!(excel_unescape(&written), &*v);
            }
        }
    }

    #[test]
    fn names_are_sanitized_without_collisions() {
        assert_eq!(sanitize_file_name("500275"), "500275");
        assert_eq!(
            sanitize_file_name("4b2e1a3c-0000-4000-8000-000000000001"),
            "4b2e1a3c-0000-4000-8000-000000000001"
        );
        assert_eq!(sanitize_file_name("P-A"), "P-A");
        assert_eq!(sanitize_file_name("a_b.c"), "a_b.c");
        let a = sanitize_file_name("../etc/passwd");
        assert!(!a.contains('/') && !a.starts_with('.'), "{a}");
        assert_eq!(a, "%2E.%2Fetc%2Fpasswd");
        assert_ne!(sanitize_file_name("a/b"), sanitize_file_name("a_b"));
        // The collision found by testers: `a/b` used to become `a_b-<hash>`.
        let old_name = format!("a_b-{}", &crate::ingest::sha256_hex(b"a/b")[..8]);
        assert_ne!(sanitize_file_name("a/b"), sanitize_file_name(&old_name));
        assert_eq!(sanitize_file_name("a%2Fb"), "a%252Fb");
        assert_ne!(sanitize_file_name(""), "");
        assert!(!sanitize_file_name("..").starts_with('.'));
        assert_eq!(sanitize_file_name("."), "%2E");
        assert_eq!(sanitize_file_name("x."), "x%2E");
        assert_eq!(sanitize_file_name("nul"), "%6Eul");
        assert_eq!(sanitize_file_name("COM1.txt"), "%43OM1.txt");
        assert_eq!(sanitize_file_name("CONTOSO"), "CONTOSO");
        let long = "x".repeat(500);
        let n = sanitize_file_name(&long);
        assert!(n.len() <= MAX_NAME && n.contains("%~"), "{n}");
        assert_ne!(n, sanitize_file_name(&"x".repeat(501)));
        let long = "/".repeat(500);
        let n = sanitize_file_name(&long);
        assert!(n.len() <= MAX_NAME, "{n}");
        assert_eq!(file_name_id(&n), None);
    }

    fn safe_name(n: &str) -> bool {
        !n.is_empty()
            && n.len() <= MAX_NAME
            && !n.starts_with('.')
            && !n.ends_with('.')
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.%~".contains(&b))
    }

    proptest::proptest! {
        #[test]
        fn name_encoding_is_injective_and_safe(a in ".{0,60}", b in ".{0,60}") {
            let (na, nb) = (sanitize_file_name(&a), sanitize_file_name(&b));
            proptest::prop_assert!(safe_name(&na), "{na}");
            if !na.contains("%~") {
                proptest::prop_assert_eq!(file_name_id(&na), Some(a.clone()));
            }
            proptest::prop_assert_eq!(na == nb, a == b);
        }

        #[test]
        fn ascii_ids_round_trip(a in "[ -~]{0,130}", b in "[a-zA-Z0-9_./%-]{0,8}") {
            let na = sanitize_file_name(&a);
            proptest::prop_assert!(safe_name(&na), "{na}");
            if !na.contains("%~") {
                proptest::prop_assert_eq!(file_name_id(&na), Some(a.clone()));
            }
            let nb = sanitize_file_name(&b);
            proptest::prop_assert_eq!(file_name_id(&nb), Some(b.clone()));
            proptest::prop_assert_eq!(na == nb, a == b);
        }

        #[test]
        fn case_folding_collisions_are_only_case_variants(a in "[a-zA-Z%/.]{1,6}", b in "[a-zA-Z%/.]{1,6}") {
            // Names equal ignoring case only for IDs equal ignoring case: the
            // publisher's case-insensitive check then refuses the second file.
            let (na, nb) = (sanitize_file_name(&a), sanitize_file_name(&b));
            if na.eq_ignore_ascii_case(&nb) {
                proptest::prop_assert!(a.eq_ignore_ascii_case(&b), "{a} {b}");
            }
        }
    }
}
