//! Render: the only stage (with ingest) that writes files.
//!
//! - [`csv`] formats ledger, not-eligible and reject rows and writes statements;
//! - [`pdf`] lays out partner and customer transparency statements as PDF
//!   from a template;
//! - [`parquet`] turns the ledger into `ledger.parquet` (`--ledger-format parquet`);
//! - [`publish`] stages a run's outputs in a temporary directory beside `--out`,
//!   writes the manifest and moves the whole set into place at once.

pub mod attainment;
pub mod csv;
pub mod parquet;
pub mod pdf;
pub mod publish;
pub mod sink;
pub mod summary;

use std::borrow::Cow;

use sha2::{Digest, Sha256};

/// Neutralises a text value that a spreadsheet would run as a formula: a leading
/// `=`, `+`, `-`, `@`, TAB or CR gets a `'` in front, unless the value is a
/// plain number (`-12.50` stays a number).
pub fn excel_safe(s: &str) -> Cow<'_, str> {
    if needs_escape(s) {
        Cow::Owned(format!("'{s}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn needs_escape(s: &str) -> bool {
    match s.as_bytes().first() {
        Some(b'=' | b'@' | b'\t' | b'\r') => true,
        Some(b'+' | b'-') => !is_number(s),
        _ => false,
    }
}

/// Undoes [`excel_safe`]: `'-P1` reads back as `-P1`. A value that
/// `excel_safe` leaves alone is returned unchanged (so is a `'` that
/// `excel_safe` would not have added, as in `'quoted'`). For reading back
/// keys from porledger's own outputs; see [`crate::ledger`].
pub fn excel_unescape(s: &str) -> &str {
    match s.strip_prefix('\'') {
        Some(rest) if needs_escape(rest) => rest,
        _ => s,
    }
}

fn is_number(s: &str) -> bool {
    let t = s.strip_prefix(['+', '-']).unwrap_or(s);
    !t.is_empty()
        && t.bytes().filter(|&b| b == b'.').count() <= 1
        && t.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && t.bytes().any(|b| b.is_ascii_digit())
}

/// A file or directory name derived from an input value (a partner or customer
/// ID): ASCII letters, digits, `-`, `_` and `.` are kept, anything else becomes
/// `_`. When that changes the value (or it is empty, or starts with a dot), a
/// short hash of the original is appended so that two IDs never share a name.
pub fn sanitize_file_name(id: &str) -> String {
    let mut s: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(80)
        .collect();
    if s != id || s.is_empty() || s.starts_with('.') {
        let h = Sha256::digest(id.as_bytes());
        s = s.trim_start_matches('.').to_string();
        if !s.is_empty() {
            s.push('-');
        }
        s.push_str(&crate::ingest::hex(&h[..4]));
    }
    s
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
        for v in ["'quoted'", "'", "''-x", "Contoso", "", "'-12.50"] {
            assert_eq!(excel_unescape(v), v);
        }
    }

    #[test]
    fn names_are_sanitized_without_collisions() {
        assert_eq!(sanitize_file_name("500275"), "500275");
        assert_eq!(
            sanitize_file_name("4b2e1a3c-0000-4000-8000-000000000001"),
            "4b2e1a3c-0000-4000-8000-000000000001"
        );
        let a = sanitize_file_name("../etc/passwd");
        assert!(!a.contains('/') && !a.starts_with('.'), "{a}");
        assert_ne!(sanitize_file_name("a/b"), sanitize_file_name("a_b"));
        assert_ne!(sanitize_file_name(""), "");
        assert!(!sanitize_file_name("..").starts_with('.'));
    }
}
