//! Hostile and real-world inputs: each test is named after the defect class it
//! guards (B1 quotes swallowing rows, B6 wrong accept/reject, B8 endless
//! inputs, B10 duplicate inputs, A real exports). Fixtures are small files
//! under tests/fixtures/hostile/, varied in temporary directories.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use porledger::ingest::designations::parse_designations;
use porledger::money::Currency;

use crate::common::repo as root;

fn fixture(name: &str) -> PathBuf {
    crate::common::fixture("hostile").join(name)
}

fn sample_rules() -> PathBuf {
    root().join("sample-data/rules.toml")
}

/// The invoice fixture: header + 10 data lines (CRLF), as lines without ends.
fn invoice_lines() -> Vec<String> {
    std::fs::read_to_string(fixture("invoice-10.csv"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

struct Outcome {
    code: Option<i32>,
    stderr: String,
    out: PathBuf,
    elapsed: Duration,
}

impl Outcome {
    fn summary(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.out.join("summary.json"))
            .unwrap_or_else(|e| panic!("no summary.json ({e}); stderr: {}", self.stderr));
        serde_json::from_str(&text).unwrap()
    }

    /// (rows, accrued, not eligible, rejected) of all billing files.
    fn totals(&self) -> (u64, u64, u64, u64) {
        let s = self.summary();
        let t = &s["rows"]["total"];
        let n = |k: &str| t[k].as_u64().unwrap();
        (n("rows"), n("accrued"), n("not_eligible"), n("rejected"))
    }
}

/// Runs `porledger run` with a 30 s timeout (a hang fails the test instead of
/// blocking it), quietly, without PDFs.
fn run(
    dir: &Path,
    billing: &[&Path],
    designations: &Path,
    rules: &Path,
    extra: &[&str],
) -> Outcome {
    let out = dir.join("out");
    let mut cmd = crate::common::command();
    cmd.args([
        "run",
        "--period",
        "2026-10",
        "--quiet",
        "--no-pdf",
        "--billing",
    ])
    .args(billing)
    .arg("--designations")
    .arg(designations)
    .arg("--rules")
    .arg(rules)
    .arg("--out")
    .arg(&out)
    .args(extra)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let start = Instant::now();
    let (code, stderr) = finish_within_30s(&mut cmd);
    Outcome {
        code,
        stderr,
        out,
        elapsed: start.elapsed(),
    }
}

/// Runs `cmd` (stderr piped) and returns its exit code and stderr; a run that
/// takes more than 30 s is killed and fails the test (a hang, not a wait).
fn finish_within_30s(cmd: &mut Command) -> (Option<i32>, String) {
    let start = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let code = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status.code();
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("porledger did not finish within 30 s (hang)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    use std::io::Read;
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    (code, stderr)
}

fn write(dir: &Path, name: &str, bytes: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// A change to one data line (0-based) of the invoice fixture.
type Change<'a> = (usize, &'a dyn Fn(&str) -> String);

/// The invoice fixture with data line `i` (0-based) changed by `f`.
fn invoice_with(changes: &[Change<'_>]) -> String {
    let mut lines = invoice_lines();
    for (i, f) in changes {
        lines[1 + i] = f(&lines[1 + i]);
    }
    lines.join("\r\n") + "\r\n"
}

fn run_invoice(text: &str) -> (tempfile::TempDir, Outcome) {
    let dir = tempfile::tempdir().unwrap();
    let b = write(dir.path(), "billing.csv", text);
    let o = run(
        dir.path(),
        &[&b],
        &fixture("designations.csv"),
        &sample_rules(),
        &[],
    );
    (dir, o)
}

fn rejects_csv(o: &Outcome) -> String {
    std::fs::read_to_string(o.out.join("rejects.csv")).unwrap_or_default()
}

#[test]
fn clean_fixture_accrues_every_line() {
    let (_d, o) = run_invoice(&invoice_with(&[]));
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.totals(), (10, 10, 0, 0));
}

#[test]
fn b1_open_quote_on_line_2_of_10_accounts_for_every_line() {
    let text = invoice_with(&[(0, &|l: &str| {
        l.replace("Seed Example AG", "\"Seed Example AG")
    })]);
    let (_d, o) = run_invoice(&text);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    let (rows, acc, ne, rej) = o.totals();
    assert_eq!((rows, acc + ne + rej), (10, 10));
    assert_eq!((acc, rej), (9, 1));
    let r = rejects_csv(&o);
    assert!(r.contains(",2,CustomerName,"), "{r}");
    assert!(r.contains("never closed"), "{r}");
}

#[test]
fn b1_open_quote_on_the_last_line_and_in_a_large_file() {
    // An open quote on line 2 of a file of 3000 lines: still one row per line.
    let lines = invoice_lines();
    let mut text = lines[0].clone() + "\r\n";
    text.push_str(&lines[1].replace("Seed Example AG", "\"Seed Example AG"));
    text.push_str("\r\n");
    for _ in 0..2999 {
        text.push_str(&lines[2]);
        text.push_str("\r\n");
    }
    let (_d, o) = run_invoice(&text);
    assert_eq!(o.totals(), (3000, 2999, 0, 1));
    let text = invoice_with(&[(9, &|l: &str| {
        l.replace("Office 365 E4,419b", "\"Office 365 E4,419b")
    })]);
    let (_d, o) = run_invoice(&text);
    assert_eq!(o.totals(), (10, 9, 0, 1));
}

#[test]
fn b1_stray_quotes_inside_unquoted_fields() {
    let pizza = |l: &str| l.replace("Seed Example AG", "Joe 12\" Pizza");
    let text = invoice_with(&[(2, &pizza), (5, &pizza)]);
    let (_d, o) = run_invoice(&text);
    let (rows, acc, ne, rej) = o.totals();
    assert_eq!(rows, 10, "{}", o.stderr);
    assert_eq!(acc + ne + rej, 10);
    // The lines between the two stray quotes are read as they are.
    assert_eq!(acc, 8);
    let r = rejects_csv(&o);
    assert!(
        r.contains(",4,CustomerName,") && r.contains(",7,CustomerName,"),
        "{r}"
    );
}

#[test]
fn b1_text_after_a_closing_quote_is_rejected_naming_the_column() {
    // A reader that drops the quotes would take `"2"20.00` for 220.00 and
    // `"Seed" Example AG` for a name: each is a rejected line, named.
    let text = invoice_with(&[
        (1, &|l: &str| {
            l.replace(",220.00,0.00,", ",\"2\"20.00,0.00,")
        }),
        (4, &|l: &str| {
            l.replace("Seed Example AG", "\"Seed\" Example AG")
        }),
        (6, &|l: &str| {
            l.replace("Seed Example AG", "\"Seed \"\"Example\"\" AG\"")
        }),
    ]);
    let (_d, o) = run_invoice(&text);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert_eq!(o.totals(), (10, 8, 0, 2));
    let r = rejects_csv(&o);
    assert!(r.contains(",3,Subtotal,\"\"\"2\"\"20.00\","), "{r}");
    assert!(r.contains(",6,CustomerName,"), "{r}");
    assert!(r.contains("stands where CSV allows none"), "{r}");
}

#[test]
fn b1_plausible_multiline_names_stay_one_row() {
    let text = invoice_with(&[(3, &|l: &str| {
        l.replace("Seed Example AG", "\"Seed\r\nExample AG\"")
    })]);
    let (_d, o) = run_invoice(&text);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.totals(), (10, 10, 0, 0));
}

#[test]
fn b1_an_open_quote_costs_one_line_and_a_later_multiline_name_stays_one_row() {
    // The open quote on line 2 would pair with the quoted line break of line
    // 5: the line that opens it is rejected, and reading starts again on the
    // next line.
    let text = invoice_with(&[
        (0, &|l: &str| {
            l.replace("Seed Example AG", "\"Seed Example AG")
        }),
        (3, &|l: &str| {
            l.replace("Seed Example AG", "\"Seed\r\nExample AG\"")
        }),
    ]);
    let (_d, o) = run_invoice(&text);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert_eq!(o.totals(), (10, 9, 0, 1));
    let r = rejects_csv(&o);
    assert!(
        r.contains(",2,CustomerName,") && r.contains("never closed"),
        "{r}"
    );
    assert_eq!(r.lines().count(), 2, "{r}");
}

#[test]
fn b1_oversized_record_is_rejected_not_read() {
    let huge = "x".repeat(2 << 20);
    let text = invoice_with(&[(4, &|l: &str| {
        l.replace("Seed Example AG", &format!("\"{huge}\""))
    })]);
    let (_d, o) = run_invoice(&text);
    assert_eq!(o.totals(), (10, 9, 0, 1), "{}", o.stderr);
    let r = rejects_csv(&o);
    assert!(
        r.contains(",6,(row),") && r.contains("limit"),
        "{}",
        &r[..r.len().min(400)]
    );
}

#[test]
fn b1_designations_with_an_open_quote_keep_their_lines() {
    let text = "customer_id,partner_id,partner_name,association\n\
                c1,1,\"Open Quote GmbH,DPOR\n\
                c2,2,B,DPOR\n\
                c3,3,C,PAL\n";
    let d = parse_designations("d.csv", text.as_bytes()).unwrap();
    assert_eq!(d.rows_read, 3);
    assert_eq!(d.rows.len(), 2);
    assert_eq!(
        (d.rejects[0].line, d.rejects[0].column.as_str()),
        (2, "partner_name")
    );
}

#[test]
fn b6_unknown_currencies_are_rejected_and_minor_units_are_iso() {
    for bad in ["EUT", "ABC", "XXX"] {
        assert!(Currency::parse(bad).is_none(), "{bad}");
        let text = invoice_with(&[(1, &|l: &str| l.replace(",EUR,", &format!(",{bad},")))]);
        let (_d, o) = run_invoice(&text);
        assert_eq!(o.code, Some(1), "{bad}: {}", o.stderr);
        assert_eq!(o.totals().3, 1, "{bad}");
        assert!(rejects_csv(&o).contains("ISO 4217"));
    }
    assert_eq!(Currency::parse("JPY").unwrap().minor_units(), 0);
    assert_eq!(Currency::parse("KWD").unwrap().minor_units(), 3);
}

/// An amount with more digits than porledger computes with exactly (28 or
/// 29 significant digits, 28 decimals) is rejected naming it, never rounded
/// to a nearby number; zeros ending the fraction are fine.
#[test]
fn b6_amounts_beyond_exact_precision_are_rejected_not_rounded() {
    for (bad, why) in [
        ("200.000000000000000000000000001", "31 significant digits"),
        ("0.00000000000000000000000000001", "29 decimals"),
        (
            "2.00000000000000000000000000001E2",
            "rounded by the exponent",
        ),
    ] {
        let text = invoice_with(&[(0, &|l: &str| {
            l.replace(",200.00,0.00,", &format!(",{bad},0.00,"))
        })]);
        let (_d, o) = run_invoice(&text);
        assert_eq!(o.code, Some(1), "{why}: {}", o.stderr);
        assert_eq!(o.totals().3, 1, "{why}");
        let r = rejects_csv(&o);
        assert!(
            r.contains(&format!(
                "Subtotal,{bad},\"more digits than porledger computes with exactly"
            )),
            "{why}: {r}"
        );
    }
    let text = invoice_with(&[(0, &|l: &str| {
        l.replace(",200.00,0.00,", ",200.0000000000000000000000000000,0.00,")
    })]);
    let (_d, o) = run_invoice(&text);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
}

/// The seats a line bills (`BillableQuantity`, else `Quantity`) count in
/// usage attainment: a value that is not a number rejects the line naming
/// the column, rather than dropping its seats without a word.
#[test]
fn b6_a_seat_count_that_is_not_a_number_is_rejected() {
    let text = invoice_with(&[(0, &|l: &str| l.replace(",10,Monthly,", ",ten,Monthly,"))]);
    let (_d, o) = run_invoice(&text);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert_eq!(o.totals().3, 1);
    let r = rejects_csv(&o);
    assert!(r.contains("BillableQuantity,ten,not a quantity"), "{r}");
    // Without `BillableQuantity`, `Quantity` is the seat count.
    let mut lines = invoice_lines();
    for l in &mut lines {
        let mut cells: Vec<&str> = l.split(',').collect();
        cells.remove(33);
        *l = cells.join(",");
    }
    assert!(!lines[0].contains("BillableQuantity"));
    let mut cells: Vec<String> = lines[1].split(',').map(str::to_string).collect();
    assert_eq!(cells[17], "10");
    cells[17] = "\"1,0\"".into();
    lines[1] = cells.join(",");
    let (_d, o) = run_invoice(&(lines.join("\r\n") + "\r\n"));
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert_eq!(o.totals().3, 1);
    let r = rejects_csv(&o);
    assert!(r.contains("Quantity,\"1,0\",not a quantity"), "{r}");
}

#[test]
fn b6_duplicate_subtotal_column_is_fatal_naming_both() {
    let mut lines = invoice_lines();
    lines[0] = lines[0].replace("TaxTotal", "Subtotal");
    let (_d, o) = run_invoice(&(lines.join("\r\n") + "\r\n"));
    assert_eq!(o.code, Some(2));
    assert!(o.stderr.contains("ambiguous"), "{}", o.stderr);
    assert!(
        o.stderr.contains("column 19 'Subtotal'") && o.stderr.contains("column 20 'Subtotal'"),
        "{}",
        o.stderr
    );
    // Two spellings of one field.
    let mut lines = invoice_lines();
    lines[0] = lines[0].replace("CustomerCountry", "Tier2MpnId");
    let (_d, o) = run_invoice(&(lines.join("\r\n") + "\r\n"));
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.contains("'Tier2MpnId'") && o.stderr.contains("'ResellerMpnId'"),
        "{}",
        o.stderr
    );
}

#[test]
fn b6_cr_only_line_ends_are_fatal() {
    let (_d, o) = run_invoice(&invoice_lines().join("\r"));
    assert_eq!(o.code, Some(2));
    assert!(o.stderr.contains("carriage return"), "{}", o.stderr);
}

/// A bare CR between two rows of a CRLF file is not a line break: the two
/// rows are one physical line, rejected, and the reject says why.
#[test]
fn b6_a_bare_cr_between_rows_is_rejected_naming_it() {
    let lines = invoice_lines();
    let mut text = lines[0].clone() + "\r\n";
    text.push_str(&lines[1]);
    text.push('\r');
    text.push_str(&lines[1]);
    text.push_str("\r\n");
    let (_d, o) = run_invoice(&text);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    assert_eq!(o.totals().3, 1);
    let r = rejects_csv(&o);
    assert!(
        r.contains("carriage return (CR) without a line feed"),
        "{r}"
    );
}

#[test]
fn b6_utf16_is_fatal_naming_the_encoding() {
    let text = invoice_with(&[]);
    let le: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_le_bytes()).collect();
    let be: Vec<u8> = text.encode_utf16().flat_map(|u| u.to_be_bytes()).collect();
    for (bytes, what) in [
        ([&[0xFF, 0xFE][..], &le].concat(), "UTF-16 (little-endian"),
        (le.clone(), "UTF-16 (little-endian"),
        ([&[0xFE, 0xFF][..], &be].concat(), "UTF-16 (big-endian"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let b = write(dir.path(), "b.csv", &bytes);
        let o = run(
            dir.path(),
            &[&b],
            &fixture("designations.csv"),
            &sample_rules(),
            &[],
        );
        assert_eq!(o.code, Some(2));
        assert!(
            o.stderr.contains(what) && o.stderr.contains("UTF-8"),
            "{}",
            o.stderr
        );
        // The designations file too.
        let d = write(dir.path(), "d.csv", &bytes);
        let b = write(dir.path(), "b2.csv", invoice_with(&[]));
        let o = run(dir.path(), &[&b], &d, &sample_rules(), &[]);
        assert_eq!(o.code, Some(2));
        assert!(o.stderr.contains("UTF-16"), "{}", o.stderr);
    }
}

#[test]
fn b6_semicolon_designations_accept_decimal_comma_shares() {
    let text = "customer_id;partner_id;partner_name;association;workload;subscription_id;share;valid_from;valid_to\n\
                c1;1;\"A; B\";PAL;;;0,5;01.01.2025;\n\
                c1;2;C;PAL;;;0,25;2025-01-01;\n";
    let d = parse_designations("d.csv", text.as_bytes()).unwrap();
    // 01.01.2025 is no accepted date; the shares are read.
    assert_eq!(d.rejects.len(), 1, "{:?}", d.rejects);
    assert_eq!(d.rejects[0].column, "valid_from");
    assert_eq!(d.rows[0].share.unwrap().to_string(), "0.25");
    let d = parse_designations("d.csv", text.replace("01.01.2025", "").as_bytes()).unwrap();
    assert!(d.rejects.is_empty(), "{:?}", d.rejects);
    assert_eq!(d.rows[0].share.unwrap().to_string(), "0.5");
}

/// Runs the 10-line invoice with `added` written after the `column` value of
/// its last line (far beyond the first 512 bytes, where files are sniffed)
/// and checks that exactly that line (11) is rejected under `column`: its
/// line of `rejects.csv`, found by `code` (`U+0000`).
fn last_line_rejected_with(column: &str, added: &str, code: &str) -> String {
    let lines = invoice_lines();
    let header: Vec<&str> = lines[0].split(',').collect();
    let at = header.iter().position(|h| *h == column).unwrap();
    let text = invoice_with(&[(9, &|l: &str| {
        let mut f: Vec<String> = l.split(',').map(str::to_string).collect();
        f[at].push_str(added);
        f.join(",")
    })]);
    assert!(text.find(added).unwrap() > 512);
    let (_d, o) = run_invoice(&text);
    assert_eq!(o.code, Some(1), "{column}: {}", o.stderr);
    assert_eq!(o.totals(), (10, 9, 0, 1), "{column}");
    let r = rejects_csv(&o);
    let reject = r
        .lines()
        .find(|l| l.contains(code))
        .unwrap_or_else(|| panic!("{r}"))
        .to_string();
    assert!(reject.contains(&format!(",11,{column},")), "{reject}");
    reject
}

/// An ID holding a NUL byte (a damaged file: anywhere in it, not only where
/// the file is sniffed for binary data), a zero-width space or a byte order
/// mark shows as the ID without it but is another: the line would be
/// credited to nobody, or to a customer of its own, without a word. Such a
/// line is rejected naming the column, the character and where; so is a
/// designation row.
#[test]
fn b6_ids_with_hidden_characters_are_rejected_naming_them() {
    for (column, hidden, code) in [
        ("CustomerId", "\0", "U+0000"),
        ("SubscriptionId", "\u{200B}", "U+200B"),
        ("MpnId", "\u{FEFF}", "U+FEFF"),
    ] {
        let reject = last_line_rejected_with(column, hidden, code);
        assert!(
            reject.contains("another ID than the one it shows"),
            "{reject}"
        );
    }
    let text = "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n\
                c1,500275\u{200B},A,DPOR,,,,2025-01-01,\n\
                c1,500275,A,DPOR,,,,2025-01-01,\n";
    let d = parse_designations("d.csv", text.as_bytes()).unwrap();
    assert_eq!(d.rows.len(), 1);
    assert_eq!(d.rejects.len(), 1, "{:?}", d.rejects);
    assert_eq!(
        (d.rejects[0].line, d.rejects[0].column.as_str()),
        (2, "partner_id")
    );
    assert!(d.rejects[0].reason.contains("U+200B"), "{:?}", d.rejects);
}

/// A NUL byte in a name far past where files are sniffed (a damaged file),
/// or an escape sequence pasted into one, is a rejected row naming the
/// column and the character: written to a statement it would show as
/// nothing, or cut the name short where a tool stops at NUL.
#[test]
fn b6_names_with_control_characters_are_rejected_naming_them() {
    for (column, control, code) in [
        ("CustomerName", "\0", "U+0000"),
        ("ProductName", "\u{1b}[1m", "U+001B"),
    ] {
        let reject = last_line_rejected_with(column, control, code);
        assert!(reject.contains("a damaged file"), "{reject}");
    }
    let text = "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n\
                c1,500275,Fabrikam\u{8},DPOR,,,,2025-01-01,\n\
                c2,500275,Fabrikam,DPOR,,,,2025-01-01,\n";
    let d = parse_designations("d.csv", text.as_bytes()).unwrap();
    assert_eq!(d.rows.len(), 1);
    assert_eq!(
        (d.rejects[0].line, d.rejects[0].column.as_str()),
        (2, "partner_name")
    );
    assert!(d.rejects[0].reason.contains("U+0008"), "{:?}", d.rejects);
}

/// A `;`-separated file as Excel writes it with German settings (1.234,56)
/// or Swiss ones (1234.56): both read as written; a value either could be
/// (1.234) and a `.` out of place (12.34.567) are rejected naming the
/// column, never read 1000 or 100 times too large. The FX table is read the
/// same way (1.0833 was 10833).
#[test]
fn b6_semicolon_files_read_decimal_points_and_refuse_ambiguous_dots() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let rules = write(
        dir,
        "rules.toml",
        "reporting_currency = \"USD\"\n[[program]]\nid = \"por\"\nassociations = [\"DPOR\"]\nrate = \"0.04\"\n",
    );
    let des = write(
        dir,
        "d.csv",
        "customer_id;partner_id;partner_name;association;workload;subscription_id;share;valid_from;valid_to\n\
         c1;P-A;A;DPOR;;;;2024-01-01;\n",
    );
    let bill = write(
        dir,
        "b.csv",
        "CustomerId;SubscriptionId;ChargeStartDate;ChargeEndDate;Subtotal;Currency\n\
         c1;s1;10/1/2026;10/31/2026;1234.56;EUR\n\
         c1;s2;10/1/2026;10/31/2026;1.234,56;EUR\n\
         c1;s3;10/1/2026;10/31/2026;1.234;EUR\n\
         c1;s4;10/1/2026;10/31/2026;12.34.567;EUR\n",
    );
    let fx = write(
        dir,
        "fx.csv",
        "date;from;to;rate\n2026-09-30;EUR;USD;1.0833\n",
    );
    let fx = fx.to_str().unwrap();
    let o = run(dir, &[&bill], &des, &rules, &["--fx", fx]);
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    let ledger = std::fs::read_to_string(o.out.join("ledger.csv")).unwrap();
    for basis in [",1234.56,0.04,", ",1234.56,0.04,"] {
        assert!(ledger.contains(basis), "{ledger}");
    }
    assert_eq!(ledger.lines().count(), 3, "{ledger}");
    let rejects = rejects_csv(&o);
    assert!(
        rejects.contains("b.csv,4,Subtotal,1.234,\"ambiguous in a ';'-separated file"),
        "{rejects}"
    );
    assert!(
        rejects.contains(
            "b.csv,5,Subtotal,12.34.567,\"not an amount (this ';'-separated file may write 1.234,56, \
             a decimal comma and '.' grouping thousands, or 1234.56, a decimal point"
        ),
        "{rejects}"
    );
    let statement = std::fs::read_to_string(o.out.join("partners/P-A/statement.csv")).unwrap();
    // 2,469.12 x 4 % = 98.76 EUR at 1.0833 = 106.99 USD.
    assert!(
        statement.contains("total,EUR,2469.12,98.76,USD,1.0833,2026-09-30,106.99"),
        "{statement}"
    );
}

/// Two exports joined one after another: the second header is a rejected
/// row named as the header again (it was "not a date"), and every line of
/// both is accounted for.
#[test]
fn b6_a_header_repeated_mid_file_is_named_as_such() {
    let lines = invoice_lines();
    let mut joined = lines[..4].to_vec();
    joined.extend(lines.iter().cloned());
    let (_d, o) = run_invoice(&(joined.join("\r\n") + "\r\n"));
    assert_eq!(o.code, Some(1), "{}", o.stderr);
    let rejects = rejects_csv(&o);
    assert!(
        rejects.contains(",5,PartnerId,PartnerId,\"the header line again, not a row of data"),
        "{rejects}"
    );
    assert_eq!(rejects.lines().count(), 2, "{rejects}");
    // The readers of small files (designations, usage, FX) the same way.
    let header = "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n";
    let text = format!(
        "{header}c1,P1,A,DPOR,,,,2025-01-01,\n{}",
        header.to_uppercase()
    );
    let d = parse_designations("d.csv", text.as_bytes()).unwrap();
    assert_eq!(d.rows.len(), 1);
    assert_eq!(d.rejects.len(), 1, "{:?}", d.rejects);
    assert_eq!(
        (d.rejects[0].line, d.rejects[0].column.as_str()),
        (3, "customer_id")
    );
    assert!(
        d.rejects[0].reason.starts_with("the header line again"),
        "{:?}",
        d.rejects
    );
}

#[test]
fn b6_non_ascii_customer_id_matches_between_files() {
    let text = invoice_with(&[(0, &|l: &str| {
        l.replace(
            "d1a5e3c2-7b4f-4c1e-9a8d-2f6b0c3e5a71",
            "MÜLLER-ÖSTERREICH-01",
        )
    })]);
    let (_d, o) = run_invoice(&text);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.totals(), (10, 10, 0, 0));
}

#[test]
fn b8_endless_inputs_stop_fast() {
    let dir = tempfile::tempdir().unwrap();
    let b = fixture("invoice-10.csv");
    let d = fixture("designations.csv");
    let r = sample_rules();
    let zero = Path::new("/dev/zero");
    for (what, o) in [
        ("rules", run(dir.path(), &[&b], &d, zero, &[])),
        ("designations", run(dir.path(), &[&b], zero, &r, &[])),
        ("billing", run(dir.path(), &[zero], &d, &r, &[])),
        (
            "fx",
            run(
                dir.path(),
                &[&b],
                &d,
                &r,
                &["--fx", "/dev/zero", "--reporting-currency", "EUR"],
            ),
        ),
    ] {
        assert_eq!(o.code, Some(2), "{what}: {}", o.stderr);
        assert!(
            o.stderr.contains("/dev/zero") && o.stderr.contains("not a regular file"),
            "{what}: {}",
            o.stderr
        );
        assert!(
            o.elapsed < Duration::from_secs(10),
            "{what}: {:?}",
            o.elapsed
        );
    }
    // A rules file over its limit.
    let big = write(dir.path(), "big.toml", vec![b'#'; 2 << 20]);
    let o = run(dir.path(), &[&b], &d, &big, &[]);
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.contains("big.toml") && o.stderr.contains("limit of 1 MiB"),
        "{}",
        o.stderr
    );
}

#[cfg(unix)]
#[test]
fn b10_fifo_and_directory_inputs_are_refused_not_waited_on() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.csv");
    let ok = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(ok.success());
    let b = fixture("invoice-10.csv");
    let d = fixture("designations.csv");
    let r = sample_rules();
    // A directory of billing files with a FIFO among them: refused, not
    // skipped (it is named like an input, so the user counts on it).
    let billing = dir.path().join("billing");
    std::fs::create_dir(&billing).unwrap();
    std::fs::copy(&b, billing.join("a.csv")).unwrap();
    let ok = Command::new("mkfifo")
        .arg(billing.join("b.csv"))
        .status()
        .unwrap();
    assert!(ok.success());
    for o in [
        run(dir.path(), &[&fifo], &d, &r, &[]),
        run(dir.path(), &[&b], &fifo, &r, &[]),
        run(dir.path(), &[&b], &d, &fifo, &[]),
        run(dir.path(), &[&b], dir.path(), &r, &[]),
        run(dir.path(), &[&billing], &d, &r, &[]),
    ] {
        assert_eq!(o.code, Some(2), "{}", o.stderr);
        assert!(o.stderr.contains("not a regular file"), "{}", o.stderr);
        assert!(o.elapsed < Duration::from_secs(10));
    }
}

/// A file of a run's directory replaced by a FIFO, and a FIFO or device
/// given as `--history`: every command that reads them refuses at once
/// (exit 2, "not a regular file" or "is a FIFO"), none waits for a writer.
#[cfg(unix)]
#[test]
fn b10_a_fifo_in_a_run_directory_or_as_history_is_refused_not_waited_on() {
    use crate::common::{command, run_sample, Sample};
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let fifo = dir.path().join("fifo.db");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let earnings = ["--earnings", "sample-data/earnings", "--no-pdf", "--quiet"];
    let tie_out = dir.path().join("t");
    let tieout = |out: &Path, extra: &[&str]| {
        let mut c = command();
        c.arg("tieout")
            .arg("--out")
            .arg(out)
            .args(earnings)
            .arg("--tieout-out")
            .arg(&tie_out)
            .args(extra);
        c
    };
    let fifo_s = fifo.to_str().unwrap();
    // (what, command, whether it needs the file: exit 2, or only no hang)
    let mut cases: Vec<(String, Command, bool)> = Vec::new();
    for h in [fifo_s, "/dev/zero"] {
        let mut c = command();
        c.args(crate::common::Sample::Main.args())
            .arg("--out")
            .arg(dir.path().join("r2"))
            .args(["--no-pdf", "--quiet", "--history", h]);
        cases.push((format!("run --history {h}"), c, true));
        let mut c = command();
        c.arg("close").arg("--out").arg(&run).args(["--history", h]);
        cases.push((format!("close --history {h}"), c, true));
        let mut c = command();
        c.args(["history", "--history", h]);
        cases.push((format!("history --history {h}"), c, true));
        cases.push((
            format!("tieout --history {h}"),
            tieout(&run, &["--history", h]),
            true,
        ));
    }
    for name in [
        "manifest.json",
        "summary.json",
        "ledger.csv",
        "statements.json",
    ] {
        let copy = dir.path().join(format!("run-{name}"));
        for (rel, bytes) in crate::common::tree(&run) {
            crate::common::write(copy.join(rel), bytes);
        }
        std::fs::remove_file(copy.join(name)).unwrap();
        assert!(Command::new("mkfifo")
            .arg(copy.join(name))
            .status()
            .unwrap()
            .success());
        let mut c = command();
        c.arg("explain")
            .arg("--out")
            .arg(&copy)
            .args(["--partner", "500275"]);
        // explain reads the manifest only for what it adds, if it can.
        let needs = matches!(name, "summary.json" | "ledger.csv");
        cases.push((format!("explain, {name} a FIFO"), c, needs));
        let needs = name != "statements.json";
        cases.push((format!("tieout, {name} a FIFO"), tieout(&copy, &[]), needs));
        let mut c = command();
        c.arg("render").arg("--out").arg(&copy);
        let needs = matches!(name, "manifest.json" | "statements.json");
        cases.push((format!("render, {name} a FIFO"), c, needs));
        let mut c = command();
        c.arg("close")
            .arg("--out")
            .arg(&copy)
            .arg("--history")
            .arg(dir.path().join(format!("h-{name}.db")));
        // close reads what it issues: the manifest, statements and ledger.
        let needs = name != "summary.json";
        cases.push((format!("close, {name} a FIFO"), c, needs));
    }
    for (what, mut c, needs) in cases {
        c.stdout(Stdio::null()).stderr(Stdio::piped());
        let (code, stderr) = finish_within_30s(&mut c);
        if !needs {
            assert!(code.is_some(), "{what}: {stderr}");
            continue;
        }
        assert_eq!(code, Some(2), "{what}: {stderr}");
        assert!(
            stderr.contains("not a regular file")
                || stderr.contains("is a FIFO")
                || stderr.contains("a character device"),
            "{what}: {stderr}"
        );
    }
}

#[test]
fn b10_the_same_file_twice_is_an_error_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let text = invoice_with(&[]);
    let a = write(dir.path(), "october.csv", &text);
    let b = write(dir.path(), "october-copy.csv", &text);
    let d = fixture("designations.csv");
    let o = run(dir.path(), &[&a, &b], &d, &sample_rules(), &[]);
    assert_eq!(o.code, Some(2));
    assert!(
        o.stderr.contains("october.csv") && o.stderr.contains("october-copy.csv"),
        "{}",
        o.stderr
    );
    let o = run(
        dir.path(),
        &[&a, &b],
        &d,
        &sample_rules(),
        &["--allow-duplicate-inputs"],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.totals().0, 20);
}

#[test]
fn b10_the_same_usage_file_twice_is_an_error_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let usage = crate::common::repo().join("sample-data/usage");
    let first = usage.join("cpor-usage.csv");
    let copy = dir.path().join("usage-copy.csv");
    std::fs::copy(&first, &copy).unwrap();
    let b = write(dir.path(), "october.csv", invoice_with(&[]));
    let d = fixture("designations.csv");
    let usage_args = |extra: &[&str]| -> Vec<String> {
        let mut v = vec![
            "--usage".to_string(),
            first.display().to_string(),
            "--usage".to_string(),
            copy.display().to_string(),
        ];
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let args = usage_args(&[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(dir.path(), &[&b], &d, &sample_rules(), &args);
    assert_eq!(o.code, Some(2), "{}", o.stderr);
    assert!(
        o.stderr.contains("usage-copy.csv") && o.stderr.contains("same content"),
        "{}",
        o.stderr
    );
    let args = usage_args(&["--allow-duplicate-inputs"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(dir.path(), &[&b], &d, &sample_rules(), &args);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
}

#[test]
fn a_tsv_exports_are_discovered_and_read() {
    let dir = tempfile::tempdir().unwrap();
    let bdir = dir.path().join("billing");
    std::fs::create_dir(&bdir).unwrap();
    // Tab-separated, camelCase headers as the APIs write them.
    let lines = invoice_lines();
    let mut text = String::new();
    for (i, l) in lines.iter().enumerate() {
        let mut fields: Vec<String> = l.split(',').map(str::to_string).collect();
        if i == 0 {
            for f in &mut fields {
                let mut c = f.chars();
                let first = c.next().unwrap().to_ascii_lowercase();
                *f = first.to_string() + c.as_str();
            }
        }
        text.push_str(&fields.join("\t"));
        text.push_str("\r\n");
    }
    write(&bdir, "invoice.tsv", text);
    let o = run(
        dir.path(),
        &[&bdir],
        &fixture("designations.csv"),
        &sample_rules(),
        &[],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.totals(), (10, 10, 0, 0));
}

const FOCUS_HEADER: &str =
    "BilledCost,BillingCurrency,ChargeCategory,ChargePeriodStart,ChargePeriodEnd,\
SubAccountId,x_CustomerId,PublisherName,x_ResellerId,ServiceName";

#[test]
fn a_focus_tax_rows_are_not_eligible_and_a_clean_file_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{FOCUS_HEADER}\n\
         100.00,EUR,Purchase,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,/subscriptions/s1,d1a5e3c2-7b4f-4c1e-9a8d-2f6b0c3e5a71,Microsoft,NULL,Microsoft 365\n\
         19.00,EUR,Tax,2026-10-01T00:00:00Z,2026-11-01T00:00:00Z,NULL,NULL,Microsoft,NULL,NULL\n"
    );
    let b = write(dir.path(), "focus.csv", text);
    let o = run(
        dir.path(),
        &[&b],
        &fixture("designations.csv"),
        &sample_rules(),
        &[],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.totals(), (2, 1, 1, 0));
    let s = o.summary();
    assert_eq!(
        s["rows"]["total"]["not_eligible_by_reason"]["not-revenue"],
        1
    );
}

#[test]
fn a_publisher_microsoft_accrues_and_third_parties_do_not() {
    let ms = |l: &str| l.replace(",Microsoft Corporation,,", ",Microsoft,,");
    let third = |l: &str| {
        l.replace(
            ",Microsoft Corporation,,",
            ",Contoso Marketplace Ltd,12345,",
        )
    };
    let corp = |l: &str| l.replace(",Microsoft Corporation,,", ",Microsoft Corp.,,");
    let text = invoice_with(&[(0, &ms), (1, &third), (2, &corp)]);
    let (_d, o) = run_invoice(&text);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.totals(), (10, 9, 1, 0));
    let ne = std::fs::read_to_string(o.out.join("not-eligible.csv")).unwrap();
    assert!(
        ne.contains("excluded-product") && ne.contains("Contoso Marketplace Ltd"),
        "{ne}"
    );
}

#[test]
fn a_graph_basic_attribute_set_is_read() {
    // Daily rated usage through Graph's `basic` set: no UsageDate, no MpnId,
    // Quantity or PublisherId; the columns porledger needs are there.
    let dir = tempfile::tempdir().unwrap();
    let text = "CustomerId,CustomerName,SubscriptionId,EntitlementId,ChargeStartDate,ChargeEndDate,\
ChargeType,BillingPreTaxTotal,BillingCurrency,PublisherName,ProductName\n\
d1a5e3c2-7b4f-4c1e-9a8d-2f6b0c3e5a71,Seed Example AG,plan-1,419b86a5-5768-43d2-9596-37879d202fdb,10/1/2026,10/31/2026,new,7.10833E-05,EUR,Microsoft,Azure plan\n";
    let b = write(dir.path(), "graph-basic.csv", text);
    let o = run(
        dir.path(),
        &[&b],
        &fixture("designations.csv"),
        &sample_rules(),
        &[],
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.totals(), (1, 1, 0, 0));
}

#[test]
fn a_designation_on_the_azure_subscription_matches_entitlement_id() {
    let dir = tempfile::tempdir().unwrap();
    let d = write(
        dir.path(),
        "d.csv",
        "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n\
         c-azure,500275,Contoso,DPOR,,azure-sub-1,,2025-01-01,\n",
    );
    let text = "CustomerId,SubscriptionId,EntitlementId,UsageDate,ChargeStartDate,BillingPreTaxTotal,BillingCurrency,PublisherName\n\
                c-azure,plan-1,AZURE-SUB-1,10/3/2026,10/1/2026,12.50,EUR,Microsoft\n\
                c-azure,plan-1,other-sub,10/3/2026,10/1/2026,7.50,EUR,Microsoft\n";
    let b = write(dir.path(), "daily.csv", text);
    let o = run(dir.path(), &[&b], &d, &sample_rules(), &[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.totals(), (2, 1, 1, 0));
}

/// `validate` and summary.json say through which billing column each
/// subscription designation named its lines: a designation on the Azure
/// subscription (`EntitlementId`), on the console ID of a legacy license
/// (`SyndicationPartnerSubscriptionNumber`) and on `SubscriptionId` itself.
#[test]
fn validate_and_summary_name_the_column_a_subscription_designation_matched() {
    let dir = tempfile::tempdir().unwrap();
    let d = write(
        dir.path(),
        "d.csv",
        "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n\
         c1,500275,Contoso,DPOR,,azure-sub-1,,2025-01-01,\n\
         c1,500275,Contoso,DPOR,,console-7,,2025-01-01,\n\
         c1,500275,Contoso,DPOR,,sub-3,,2025-01-01,\n",
    );
    let text = "CustomerId,SubscriptionId,EntitlementId,SyndicationPartnerSubscriptionNumber,UsageDate,ChargeStartDate,BillingPreTaxTotal,BillingCurrency,PublisherName\n\
                c1,plan-1,AZURE-SUB-1,,10/3/2026,10/1/2026,12.50,EUR,Microsoft\n\
                c1,plan-1,azure-sub-1,,10/4/2026,10/1/2026,2.50,EUR,Microsoft\n\
                c1,lic-9,,CONSOLE-7,10/3/2026,10/1/2026,7.50,EUR,Microsoft\n\
                c1,sub-3,,,10/3/2026,10/1/2026,1.00,EUR,Microsoft\n\
                c1,plan-1,other-sub,,10/3/2026,10/1/2026,7.50,EUR,Microsoft\n";
    let b = write(dir.path(), "mixed.csv", text);
    let o = run(dir.path(), &[&b], &d, &sample_rules(), &[]);
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert_eq!(o.totals(), (5, 4, 1, 0));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(o.out.join("summary.json")).unwrap())
            .unwrap();
    let m = &summary["rows"]["total"]["designation_matched_on"];
    assert_eq!(m["EntitlementId"], 2, "{summary}");
    assert_eq!(m["SyndicationPartnerSubscriptionNumber"], 1, "{summary}");
    assert_eq!(m["SubscriptionId"], 1, "{summary}");

    let v = crate::common::command()
        .current_dir(dir.path())
        .args(["validate", "--billing"])
        .arg(&b)
        .arg("--designations")
        .arg(&d)
        .arg("--rules")
        .arg(sample_rules())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&v.stdout);
    assert!(
        stdout.contains(
            "subscription designations matched lines on: EntitlementId 2, \
             SubscriptionId 1, SyndicationPartnerSubscriptionNumber 1"
        ),
        "{stdout}"
    );
}

/// B8: a template directory whose fonts are `/dev/zero` (or any endless or
/// special file) is refused at once, not read until memory runs out.
#[cfg(unix)]
#[test]
fn b8_endless_template_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let tpl = dir.path().join("tpl");
    std::fs::create_dir_all(tpl.join("locales")).unwrap();
    std::fs::create_dir_all(tpl.join("fonts")).unwrap();
    let src = crate::common::repo().join("templates");
    std::fs::copy(src.join("template.toml"), tpl.join("template.toml")).unwrap();
    for l in ["en.toml", "de.toml"] {
        std::fs::copy(src.join("locales").join(l), tpl.join("locales").join(l)).unwrap();
    }
    for f in ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf"] {
        std::os::unix::fs::symlink("/dev/zero", tpl.join("fonts").join(f)).unwrap();
    }
    let mut cmd = crate::common::command();
    cmd.args(["render", "--out"])
        .arg(dir.path().join("out"))
        .arg("--template")
        .arg(&tpl)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let (code, stderr) = finish_within_30s(&mut cmd);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("DejaVuSans") && stderr.contains("not a regular file"),
        "{stderr}"
    );
}
