//! End-to-end tests of the `porledger` binary on small hand-made fixtures with
//! hand-computed expectations. See the fixture comments for the arithmetic.

use std::path::PathBuf;
use std::process::Output;

use porledger::ingest::billing::{INVOICE_RECONCILIATION_COLUMNS, LEGACY_LICENSE_COLUMNS};

use crate::common::{
    assert_code, code, command, output, porledger, porledger_in, read, stderr, stdout, tree,
};

/// One billing row: the fields we care about; the other columns get neutral values.
#[derive(Clone)]
struct Row {
    customer: &'static str,
    name: &'static str,
    sub: &'static str,
    date: &'static str,
    subtotal: &'static str,
    currency: &'static str,
    reseller: &'static str,
    qualifiers: &'static str,
    publisher: &'static str,
}

fn r(
    customer: &'static str,
    sub: &'static str,
    date: &'static str,
    subtotal: &'static str,
    currency: &'static str,
    reseller: &'static str,
) -> Row {
    Row {
        customer,
        name: "Customer",
        sub,
        date,
        subtotal,
        currency,
        reseller,
        qualifiers: "[]",
        publisher: "Microsoft Corporation",
    }
}

fn value(col: &str, row: &Row) -> String {
    match col {
        "PartnerId" => "9c1e2d3f-0000-4000-8000-00000000aaaa".into(),
        "CustomerId" => row.customer.into(),
        "CustomerName" => row.name.into(),
        "MpnId" => "4711001".into(),
        "ResellerMpnId" => row.reseller.into(),
        "SubscriptionId" => row.sub.into(),
        "ChargeStartDate" => row.date.into(),
        "ChargeEndDate" => row.date.into(),
        "Subtotal" => row.subtotal.into(),
        "TaxTotal" => "0".into(),
        "Total" => row.subtotal.into(),
        "Currency" => row.currency.into(),
        "PublisherName" => row.publisher.into(),
        "ProductQualifiers" => row.qualifiers.into(),
        "ProductName" | "SkuName" | "OfferName" => "Microsoft 365 E3".into(),
        "ChargeType" => "cycleCharge".into(),
        "Quantity" | "BillableQuantity" => "1".into(),
        _ => String::new(),
    }
}

/// Renders rows as CSV with the given header names (one per column of `cols`).
fn csv_text(cols: &[&str], header: &[String], rows: &[Row], delim: u8) -> String {
    let mut w = csv::WriterBuilder::new()
        .delimiter(delim)
        .from_writer(Vec::new());
    w.write_record(header).unwrap();
    for row in rows {
        let rec: Vec<String> = cols.iter().map(|c| value(c, row)).collect();
        w.write_record(&rec).unwrap();
    }
    String::from_utf8(w.into_inner().unwrap()).unwrap()
}

fn invoice(rows: &[Row]) -> String {
    let header: Vec<String> = INVOICE_RECONCILIATION_COLUMNS
        .iter()
        .map(|s| s.to_string())
        .collect();
    csv_text(&INVOICE_RECONCILIATION_COLUMNS, &header, rows, b',')
}

const RULES: &str = r#"
rounding = "half-up"

[[program]]
id = "por-core"
name = "Partner of Record incentive"
associations = ["POR", "DPOR"]
basis = "billed-revenue"
rate = "0.04"
window_months = 36
valid_from = "2019-07-01"
exclude_qualifiers = ["Trial"]
publishers = ["Microsoft Corporation"]

[[program]]
id = "pal"
name = "Partner Admin Link"
associations = ["PAL"]
rate = "0.015"
valid_from = "2020-01-01"

[[program]]
id = "resale"
name = "Reseller incentive"
associations = ["RESELLER"]
rate = "0.01"
valid_from = "2026-01-01"
"#;

const DESIGNATIONS: &str = "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to
c-alpha,100001,Alpha Partner,DPOR,,,,2024-01-01,
c-beta,100002,Beta Partner,POR,,,,2022-03-15,
C-BETA,100001,Alpha Partner,DPOR,,SUB-B2,,2025-01-01,
c-gamma,100003,Gamma Partner,PAL,,,0.7,2024-01-01,
c-gamma,100004,Delta Partner,PAL,,,,2024-01-01,
c-delta,100005,Eps Partner,PAL,,,0.6,,
c-delta,100006,Zeta Partner,PAL,,,0.6,,
";

/// The main fixture. Lines (file line = index + 2):
///  2 c-alpha 1000.00 EUR, reseller 200001: DPOR 100001 40.00; resale 200001 10.00
///  3 c-alpha -250.00 EUR credit: DPOR 100001 -10.00
///  4 c-beta sub-b1: POR window (36 months from 2022-03-15) ended -> outside-window
///  5 c-beta sub-b2 500.00: DPOR 100001 (subscription-level) 20.00
///  6 c-gamma 333.33 USD: PAL 0.7 -> 3.4999650 (3.50), PAL 0.3 -> 1.4999850 (1.50)
///  7 c-alpha Trial 50.00: excluded-product
///  8 c-delta: PAL shares 0.6 + 0.6 > 1 -> rejected (share)
///  9 c-none 100.00, reseller 200001: resale 1.00
/// 10 c-none 2019-05-01: no program in force -> rule-not-in-force
/// 11 bad date -> rejected (ChargeStartDate)
/// 12 bad amount -> rejected (Subtotal)
/// 13 c-none2 12.50, reseller 200002: resale 0.125 -> 0.13 half-up, 0.12 half-even
fn fixture_rows() -> Vec<Row> {
    let mut trial = r("c-alpha", "sub-a2", "2026-10-01", "50.00", "EUR", "");
    trial.qualifiers = "[\"AddOn\",\"Trial\"]";
    vec![
        r("c-alpha", "sub-a1", "10/1/2026", "1000.00", "EUR", "200001"),
        r(
            "c-alpha",
            "sub-a1",
            "10/15/2026 0:00:00",
            "-250.00",
            "EUR",
            "0",
        ),
        r("c-beta", "sub-b1", "2026-10-01", "300.00", "EUR", ""),
        r(
            "c-beta",
            "sub-b2",
            "2026-10-01T00:00:00Z",
            "500.00",
            "EUR",
            "-1",
        ),
        r("c-gamma", "sub-g1", "2026-10-01", "333.33", "USD", ""),
        trial,
        r("c-delta", "sub-d1", "2026-10-01", "100.00", "EUR", ""),
        r("c-none", "sub-n1", "2026-10-01", "100.00", "EUR", "200001"),
        r("c-none", "sub-n1", "2019-05-01", "100.00", "EUR", "200001"),
        r("c-none", "sub-n1", "31/10/2026", "100.00", "EUR", ""),
        r("c-none", "sub-n1", "2026-10-01", "12,50", "EUR", ""),
        r("c-none2", "sub-x", "2026-10-01", "12.50", "EUR", "200002"),
    ]
}

const EXPECTED_SUMMARY: &str =
    "partner_id,partner_name,program_id,currency,lines,basis_amount,accrual_amount\r
100001,Alpha Partner,por-core,EUR,3,1250.00,50.00\r
100003,Gamma Partner,pal,USD,1,333.33,3.50\r
100004,Delta Partner,pal,USD,1,333.33,1.50\r
200001,,resale,EUR,2,1100.00,11.00\r
200002,,resale,EUR,1,12.50,0.13\r
";

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(billing: &[(&str, String)]) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("billing")).unwrap();
        for (name, text) in billing {
            std::fs::write(dir.path().join("billing").join(name), text).unwrap();
        }
        std::fs::write(dir.path().join("designations.csv"), DESIGNATIONS).unwrap();
        std::fs::write(dir.path().join("rules.toml"), RULES).unwrap();
        Fixture { dir }
    }

    fn standard() -> Fixture {
        Fixture::new(&[("2026-10.csv", invoice(&fixture_rows()))])
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `run` of the fixture into `out`, `--quiet`, with `extra` options.
    fn run(&self, out: &str, extra: &[&str]) -> Output {
        self.run_saying(out, &[&["--quiet"], extra].concat())
    }

    /// `run` of the fixture into `out`, with `extra` options, saying what
    /// it does on stderr unless they say `--quiet`.
    fn run_saying(&self, out: &str, extra: &[&str]) -> Output {
        let mut c = command();
        c.current_dir(self.dir.path())
            .args(["run", "--period", "2026-10", "--billing", "billing"])
            .args([
                "--designations",
                "designations.csv",
                "--rules",
                "rules.toml",
                "--out",
                out,
            ])
            .args(extra);
        output(&mut c)
    }

    fn read(&self, rel: &str) -> String {
        read(self.p(rel))
    }
}

#[test]
fn hand_computed_fixture() {
    let f = Fixture::standard();
    let o = f.run("out", &[]);
    assert_eq!(code(&o), 1, "rows were rejected: {}", stderr(&o));
    assert_eq!(f.read("out/summary.csv"), EXPECTED_SUMMARY);

    let rejects = f.read("out/rejects.csv");
    let expected_rejects = [
        "billing/2026-10.csv,8,share,1.2,",
        "billing/2026-10.csv,11,ChargeStartDate,31/10/2026,\"not a date",
        "billing/2026-10.csv,12,Subtotal,\"12,50\",not an amount",
    ];
    for e in expected_rejects {
        assert!(rejects.contains(e), "{e} not in\n{rejects}");
    }
    assert!(rejects.contains("designations.csv lines 7, 8"), "{rejects}");
    assert_eq!(rejects.lines().count(), 4);

    let ne = f.read("out/not-eligible.csv");
    assert!(
        ne.contains("billing/2026-10.csv,4,c-beta,sub-b1,2026-10-01,300.00,EUR,outside-window,"),
        "{ne}"
    );
    assert!(
        ne.contains("billing/2026-10.csv,7,c-alpha,sub-a2,2026-10-01,50.00,EUR,excluded-product,"),
        "{ne}"
    );
    assert!(
        ne.contains(
            "billing/2026-10.csv,10,c-none,sub-n1,2019-05-01,100.00,EUR,rule-not-in-force,"
        ),
        "{ne}"
    );
    assert_eq!(ne.lines().count(), 4);

    // Row accounting: 12 read = 6 accrued + 3 not eligible + 3 rejected.
    let json: serde_json::Value = serde_json::from_str(&f.read("out/summary.json")).unwrap();
    let t = &json["rows"]["total"];
    assert_eq!(
        (
            t["rows"].as_u64(),
            t["accrued"].as_u64(),
            t["not_eligible"].as_u64(),
            t["rejected"].as_u64()
        ),
        (Some(12), Some(6), Some(3), Some(3))
    );
    assert_eq!(t["balanced"], true);
    assert_eq!(json["rows"]["designations"]["rows"], 7);

    // Ledger: provenance of every accrual, exact amounts.
    let ledger = f.read("out/ledger.csv");
    assert!(ledger.contains("100003,c-gamma,pal,PAL,sub-g1,2026-10-01,2026-10,billing/2026-10.csv,6,333.33,0.015,0.7,3.499965,USD,5,1,1,,,\r\n"), "{ledger}");
    assert!(ledger.contains("100001,c-alpha,por-core,DPOR,sub-a1,2026-10-15,2026-10,billing/2026-10.csv,3,-250.00,0.04,1.0,-10.00,EUR,2,1,1,,,\r\n"), "{ledger}");
    assert_eq!(ledger.lines().count(), 1 + 8);

    // Partner statement adds up on paper; the customer statement shows the detail.
    let st = f.read("out/partners/100001/statement.csv");
    assert!(st.contains("c-alpha,Customer,por-core,Partner of Record incentive,2026-10,EUR,2,750.00,0.04,30.00,30.00\r\n"), "{st}");
    assert!(st.contains("c-beta,Customer,por-core,Partner of Record incentive,2026-10,EUR,1,500.00,0.04,20.00,20.00\r\n"), "{st}");
    assert!(
        st.ends_with("total,currency,basis_amount,accrual_amount\r\ntotal,EUR,1250.00,50.00\r\n"),
        "{st}"
    );
    let cs = f.read("out/partners/100003/customers/c-gamma.csv");
    assert!(
        cs.contains("designation,PAL,(all),,0.7,2024-01-01,\r\n"),
        "{cs}"
    );
    assert!(
        cs.contains(
            "pal,Partner Admin Link,2026-10,PAL,sub-g1,USD,1,333.33,0.015,0.7,3.499965\r\n"
        ),
        "{cs}"
    );
    assert!(
        !cs.contains("Delta"),
        "another partner's data leaked:\n{cs}"
    );
    // Isolation: partner 100001's statements never mention other partners' customers.
    // (The PDFs are checked through pdftotext in tests/it/pdf.rs.)
    for (path, bytes) in tree(&f.p("out/partners/100001")) {
        if path.ends_with(".pdf") {
            continue;
        }
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            !text.contains("c-gamma") && !text.contains("c-none"),
            "{path}"
        );
    }

    let manifest: serde_json::Value = serde_json::from_str(&f.read("out/manifest.json")).unwrap();
    assert_eq!(manifest["period"], "2026-10");
    let outputs: Vec<&str> = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert!(
        outputs.contains(&"summary.csv") && outputs.contains(&"partners/100001/statement.csv"),
        "{outputs:?}"
    );
    assert_eq!(manifest["inputs"][0]["path"], "billing/2026-10.csv");
    assert_eq!(manifest["inputs"][0]["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn rounding_mode_comes_from_the_rules() {
    let f = Fixture::standard();
    std::fs::write(f.p("rules.toml"), RULES.replace("half-up", "half-even")).unwrap();
    f.run("out", &[]);
    assert!(f
        .read("out/summary.csv")
        .contains("200002,,resale,EUR,1,12.50,0.12\r\n"));
    std::fs::write(f.p("rules.toml"), RULES.replace("half-up", "down")).unwrap();
    f.run("out", &[]);
    let s = f.read("out/summary.csv");
    assert!(s.contains("200002,,resale,EUR,1,12.50,0.12\r\n"), "{s}");
    assert!(
        s.contains("100003,Gamma Partner,pal,USD,1,333.33,3.49\r\n"),
        "{s}"
    );
}

#[test]
fn seed_example_960_eur_a_year() {
    // 100 users x 20 EUR x 12 monthly charges, POR at 4%: 960.00 EUR.
    let rows: Vec<Row> = (1..=12)
        .map(|m| {
            let date: &'static str = Box::leak(format!("{m}/1/2026").into_boxed_str());
            r("c-alpha", "sub-e4", date, "2000.00", "EUR", "")
        })
        .collect();
    let f = Fixture::new(&[("year.csv", invoice(&rows))]);
    let o = porledger_in(
        f.dir.path(),
        [
            "run",
            "--period",
            "2026-01..2026-12",
            "--billing",
            "billing/year.csv",
            "--designations",
            "designations.csv",
            "--rules",
            "rules.toml",
            "--out",
            "out",
            "--quiet",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        f.read("out/summary.csv"),
        "partner_id,partner_name,program_id,currency,lines,basis_amount,accrual_amount\r\n100001,Alpha Partner,por-core,EUR,12,24000.00,960.00\r\n"
    );
}

#[test]
fn header_variants_bom_quoted_newlines_and_formats_give_the_same_result() {
    let rows = fixture_rows();
    let base = Fixture::standard();
    base.run("out", &[]);
    let expected = base.read("out/summary.csv");

    // camelCase headers, Tier2MpnId, BOM, CRLF, reordered columns, an extra column,
    // quoted customer names with commas, quotes and newlines.
    let mut cols: Vec<&str> = INVOICE_RECONCILIATION_COLUMNS.to_vec();
    cols.reverse();
    let header: Vec<String> = cols
        .iter()
        .map(|c| match *c {
            "ResellerMpnId" => "Tier2MpnId".to_string(),
            c => {
                let mut s = c.to_string();
                s[..1].make_ascii_lowercase();
                s
            }
        })
        .collect();
    let mut named = rows.clone();
    for (i, row) in named.iter_mut().enumerate() {
        row.name = [
            "Müller & Söhne GmbH",
            "Contoso, \"Ltd.\"",
            "Line one\nline two",
            "=HYPERLINK(\"http://x\")",
        ][i % 4];
    }
    let camel = format!(
        "\u{feff}{}",
        csv_text(&cols, &header, &named, b',').replace('\n', "\r\n")
    );
    let camel = camel.replace("Line one\r\nline two", "Line one\nline two");
    let f = Fixture::new(&[("camel.csv", camel)]);
    f.run("out", &[]);
    assert_eq!(
        f.read("out/summary.csv"),
        expected,
        "{}",
        f.read("out/not-eligible.csv")
    );
    let st = f.read("out/partners/100001/statement.csv");
    assert!(st.contains("c-alpha,Müller & Söhne GmbH,"), "{st}");
    // The formula-looking name is neutralised wherever it appears.
    let all: String = tree(&f.p("out"))
        .into_values()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect();
    assert!(!all.contains(",=HYPERLINK") && !all.contains("\n=HYPERLINK"));

    // German Excel: semicolons and decimal commas.
    let header: Vec<String> = INVOICE_RECONCILIATION_COLUMNS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let mut german = rows.clone();
    for row in german.iter_mut() {
        if row.subtotal != "12,50" {
            row.subtotal = Box::leak(row.subtotal.replace('.', ",").into_boxed_str());
        } else {
            row.subtotal = "12.50,0"; // still malformed
        }
    }
    let f = Fixture::new(&[(
        "de.csv",
        csv_text(&INVOICE_RECONCILIATION_COLUMNS, &header, &german, b';'),
    )]);
    f.run("out", &[]);
    assert_eq!(f.read("out/summary.csv"), expected);

    // Legacy license-based layout.
    let header: Vec<String> = LEGACY_LICENSE_COLUMNS
        .iter()
        .map(|s| s.to_string())
        .collect();
    let f = Fixture::new(&[(
        "legacy.csv",
        csv_text(&LEGACY_LICENSE_COLUMNS, &header, &rows, b','),
    )]);
    let o = f.run("out", &[]);
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    // Legacy files carry no ProductQualifiers/PublisherName: the Trial line earns there.
    let s = f.read("out/summary.csv");
    assert!(
        s.contains("100001,Alpha Partner,por-core,EUR,4,1300.00,52.00\r\n"),
        "{s}"
    );
}

#[test]
fn splitting_files_and_threads_change_no_output_byte() {
    let rows = fixture_rows();
    let one = Fixture::standard();
    let split = Fixture::new(&[
        ("a.csv", invoice(&rows[..3])),
        ("b.csv", invoice(&rows[3..4])),
        ("c.csv", invoice(&rows[4..])),
    ]);
    one.run("out", &["--threads", "1"]);
    one.run("out2", &["--threads", "2", "--chunk-bytes", "4096"]);
    // Every group spilled to a sorted run file after each chunk, merged back,
    // and the statements written a partner per batch.
    one.run(
        "out3",
        &[
            "--threads",
            "1",
            "--chunk-bytes",
            "4096",
            "--spill-after",
            "0",
            "--batch-groups",
            "1",
        ],
    );
    split.run("out", &["--threads", "2"]);
    let a = tree(&one.p("out"));
    for (out, what) in [
        ("out2", "--threads 1 and 2"),
        ("out3", "spilled groups and a partner per batch"),
    ] {
        let b = tree(&one.p(out));
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{what}"
        );
        for (k, v) in &a {
            assert!(v == &b[k], "{k} differs with {what}");
        }
    }
    let c = tree(&split.p("out"));
    for (k, v) in &a {
        // Provenance (file and line) and the manifest's input list differ by design.
        if k == "ledger.csv"
            || k == "not-eligible.csv"
            || k == "rejects.csv"
            || k == "manifest.json"
            || k == "summary.json"
        {
            continue;
        }
        assert!(v == &c[k], "{k} differs when the input is split into files");
    }
}

#[test]
fn exit_codes() {
    let f = Fixture::standard();
    // 1: rejects.
    assert_eq!(code(&f.run("out", &[])), 1);
    // 0: clean input.
    let rows: Vec<Row> = fixture_rows()
        .into_iter()
        .filter(|r| r.customer != "c-delta" && !r.date.starts_with("31/") && r.subtotal != "12,50")
        .collect();
    std::fs::write(f.p("billing/2026-10.csv"), invoice(&rows)).unwrap();
    std::fs::write(
        f.p("designations.csv"),
        DESIGNATIONS.replace("0.6,,\n", "0.4,,\n"),
    )
    .unwrap();
    let o = f.run("clean", &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // 2: bad arguments.
    let o = porledger(["run", "--billing", "x"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--period"), "{}", stderr(&o));
    let o = porledger([
        "run",
        "--period",
        "2026-13",
        "--billing",
        "x",
        "--designations",
        "d",
        "--rules",
        "r",
        "--out",
        "o",
    ]);
    assert_eq!(code(&o), 2);
    // 2: unreadable rules.
    std::fs::write(f.p("rules.toml"), "rounding = \"nearest\"\n").unwrap();
    let o = f.run("out", &[]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("rules.toml: rounding: unknown rounding mode 'nearest'"),
        "{}",
        stderr(&o)
    );
    std::fs::write(
        f.p("rules.toml"),
        RULES.replace("rate = \"0.04\"", "rate = 0.04"),
    )
    .unwrap();
    let o = f.run("out", &[]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("rules.toml"), "{}", stderr(&o));
    // 2: missing input file.
    std::fs::write(f.p("rules.toml"), RULES).unwrap();
    let o = porledger_in(
        f.dir.path(),
        [
            "run",
            "--period",
            "2026-10",
            "--billing",
            "nope.csv",
            "--designations",
            "designations.csv",
            "--rules",
            "rules.toml",
            "--out",
            "o",
        ],
    );
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("nope.csv"), "{}", stderr(&o));
}

#[test]
fn fatal_input_errors_name_file_line_and_column() {
    // Missing required column.
    let text = invoice(&fixture_rows()).replacen("SubscriptionId", "SubscriptionIdentifier", 1);
    let f = Fixture::new(&[("bad.csv", text)]);
    let o = f.run("out", &[]);
    assert_eq!(code(&o), 2);
    let e = stderr(&o);
    assert!(
        e.contains("billing/bad.csv:1")
            && e.contains("required column 'SubscriptionId' is missing"),
        "{e}"
    );
    // Not a billing file at all.
    let f = Fixture::new(&[("x.csv", "a,b,c\n1,2,3\n".into())]);
    let o = f.run("out", &[]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("not a Partner Center billing export"),
        "{}",
        stderr(&o)
    );
    // Designations with a missing column.
    let f = Fixture::standard();
    std::fs::write(f.p("designations.csv"), "customer_id,partner\nc,1\n").unwrap();
    let o = f.run("out", &[]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("designations.csv:1 column 'partner_id'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn bad_designation_rows_are_rejected_with_line_and_column() {
    let f = Fixture::standard();
    let d = format!(
        "{DESIGNATIONS}c-x,1,X,XPOR,,,,,\nc-y,1,X,PAL,,,1.5,,\nc-z,1,X,PAL,,,,2024-02-30,\n"
    );
    std::fs::write(f.p("designations.csv"), d).unwrap();
    let o = f.run("out", &[]);
    assert_eq!(code(&o), 1);
    let rejects = f.read("out/rejects.csv");
    assert!(
        rejects.contains("designations.csv,9,association,XPOR,\"unknown association"),
        "{rejects}"
    );
    assert!(
        rejects
            .contains("designations.csv,10,share,1.5,share must be greater than 0 and at most 1"),
        "{rejects}"
    );
    assert!(
        rejects.contains("designations.csv,11,valid_from,2024-02-30,not a date"),
        "{rejects}"
    );
}

#[test]
fn too_many_rejects_publish_nothing_and_keep_the_previous_output() {
    let f = Fixture::standard();
    assert_eq!(code(&f.run("out", &[])), 1);
    let before = tree(&f.p("out"));
    // A failing run: 3 rejects, at most 2 allowed.
    std::fs::write(f.p("rules.toml"), RULES.replace("0.04", "0.05")).unwrap();
    let o = f.run("out", &["--max-rejects", "2"]);
    assert_eq!(code(&o), 2);
    assert!(
        stderr(&o).contains("more than --max-rejects 2"),
        "{}",
        stderr(&o)
    );
    // Without --quiet, the first of them are listed before the error that
    // says so, billing lines' included (the error said so, and listed only
    // designations').
    let o = f.run_saying("out", &["--no-pdf", "--max-rejects", "2"]);
    assert_eq!(code(&o), 2);
    let err = stderr(&o);
    let listed = err.find("first rejects (3 in all):\n  billing");
    let error = err.find("porledger: error: 3 rows rejected");
    assert!(listed.is_some() && listed < error, "{err}");
    assert_eq!(
        tree(&f.p("out")),
        before,
        "previous output must be untouched"
    );
    let leftovers: Vec<String> = std::fs::read_dir(f.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("porledger-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A new good run replaces it.
    assert_eq!(code(&f.run("out", &["--max-rejects", "3"])), 1);
    assert!(f
        .read("out/summary.csv")
        .contains("100001,Alpha Partner,por-core,EUR,3,1250.00,62.50\r\n"));
}

#[test]
fn refuses_to_overwrite_a_directory_it_did_not_write() {
    let f = Fixture::standard();
    std::fs::create_dir(f.p("mine")).unwrap();
    std::fs::write(f.p("mine/thesis.docx"), "precious").unwrap();
    let o = f.run("mine", &[]);
    assert_eq!(code(&o), 2);
    assert_eq!(f.read("mine/thesis.docx"), "precious");
}

#[test]
fn validate_reports_and_writes_nothing() {
    let f = Fixture::standard();
    let o = porledger_in(
        f.dir.path(),
        [
            "validate",
            "--billing",
            "billing",
            "--designations",
            "designations.csv",
            "--rules",
            "rules.toml",
            "--period",
            "2026-09",
        ],
    );
    assert_eq!(code(&o), 1, "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "billing/2026-10.csv: new-commerce invoice reconciliation (comma-separated), 12 rows: 6 would accrue, 3 not eligible, 3 rejected",
        "designations.csv lines 7 and 8: PAL shares for customer c-delta sum to 1.2",
        "billing/2026-10.csv:11 column 'ChargeStartDate' value '31/10/2026'",
        "9 charges dated after the end of the period",
    ] {
        assert!(out.contains(needle), "{needle} not in\n{out}");
    }
    assert_eq!(
        std::fs::read_dir(f.dir.path()).unwrap().count(),
        3,
        "validate wrote files"
    );
}

#[test]
fn partner_ids_become_safe_directory_names() {
    let f = Fixture::standard();
    std::fs::write(f.p("designations.csv"), "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\nc-alpha,../../evil,Evil,DPOR,,,,2024-01-01,\n").unwrap();
    f.run("out", &[]);
    let files: Vec<String> = tree(&f.p("out")).into_keys().collect();
    // `../../evil` keeps no path separator: `/` and the leading dot are escaped.
    assert!(
        files.contains(&"partners/%2E.%2F..%2Fevil/statement.csv".to_string()),
        "{files:?}"
    );
    assert!(!f.p("evil").exists());
}

#[test]
fn help_teaches() {
    let o = porledger(["run", "--help"]);
    let h = String::from_utf8_lossy(&o.stdout);
    for flag in [
        "--period",
        "--billing",
        "--designations",
        "--rules",
        "--out",
        "--threads",
        "--max-rejects",
        "--quiet",
    ] {
        assert!(h.contains(flag), "{flag}");
    }
    let o = porledger(["--help"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("Exit codes"));
}

#[test]
fn explain_traces_a_statement_line_to_source_rows() {
    let f = Fixture::standard();
    f.run("out", &[]);
    let o = porledger_in(
        f.dir.path(),
        [
            "explain",
            "--out",
            "out",
            "--partner",
            "100001",
            "--customer",
            "c-alpha",
        ],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    for needle in [
        "Partner 100001 (Alpha Partner), period 2026-10, rounding half-up",
        "customer c-alpha, program por-core, EUR, accrual month 2026-10",
        "billing/2026-10.csv:2  charge 2026-10-01  accrual month 2026-10  subscription sub-a1  DPOR by designations.csv:2 [c-alpha,100001,Alpha Partner,DPOR,,,,2024-01-01,]",
        "1000.00 x rate 0.04 x share 1.0 = 40.00",
        "-250.00 x rate 0.04 x share 1.0 = -10.00",
        "sum of 2 exact amounts 30.00 -> rounded half-up EUR = 30.00 (matches the statement)",
        "total EUR: 30.00",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
    assert!(!text.contains("c-beta"), "filtered by customer");
    let o = porledger_in(
        f.dir.path(),
        ["explain", "--out", "out", "--partner", "100003"],
    );
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("333.33 x rate 0.015 x share 0.7 = 3.499965"),
        "{text}"
    );
    assert!(
        text.contains(
            "sum of 1 exact amounts 3.499965 -> rounded half-up USD = 3.50 (matches the statement)"
        ),
        "{text}"
    );
    let o = porledger_in(
        f.dir.path(),
        ["explain", "--out", "nowhere", "--partner", "1"],
    );
    assert_eq!(code(&o), 2);
}

/// Regression: the csv crate counts lines one short after a CRLF record; rejects
/// and provenance must still name the real line (Partner Center files are CRLF).
#[test]
fn crlf_files_report_the_real_line_numbers() {
    let rows = fixture_rows();
    let f = Fixture::new(&[("crlf.csv", invoice(&rows).replace('\n', "\r\n"))]);
    f.run("out", &[]);
    let rejects = f.read("out/rejects.csv");
    assert!(rejects.contains("billing/crlf.csv,8,share,"), "{rejects}");
    assert!(
        rejects.contains("billing/crlf.csv,11,ChargeStartDate,"),
        "{rejects}"
    );
    assert!(
        rejects.contains("billing/crlf.csv,12,Subtotal,"),
        "{rejects}"
    );
    assert!(f
        .read("out/ledger.csv")
        .contains(",billing/crlf.csv,13,12.50,"));
    let d = DESIGNATIONS.replace('\n', "\r\n") + "c-x,1,X,XPOR,,,,,\r\n";
    std::fs::write(f.p("designations.csv"), d).unwrap();
    f.run("out", &[]);
    assert!(f
        .read("out/rejects.csv")
        .contains("designations.csv,9,association,XPOR"));
}

/// `PORLEDGER_TIMINGS` prints one `timings:` line on stderr, with the
/// statement phase split into its merge, build and write time.
#[test]
fn timings_name_the_statement_stages() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = command();
    c.env("PORLEDGER_TIMINGS", "1")
        .args(crate::common::Sample::Main.args())
        .args(["--quiet", "--no-pdf", "--out"])
        .arg(tmp.path().join("out"));
    let o = output(&mut c);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let err = stderr(&o);
    let line: Vec<&str> = err.lines().filter(|l| l.starts_with("timings: ")).collect();
    assert_eq!(line.len(), 1, "{err}");
    for stage in [
        "stream ",
        "statements ",
        "(merge ",
        ", build ",
        ", write ",
        "manifest ",
    ] {
        assert!(line[0].contains(stage), "{stage:?} missing: {}", line[0]);
    }
}

/// A partner name with terminal escape sequences (clear screen, colours) is
/// a rejected designation row, and its value reaches the terminal escaped in
/// the run's list of rejects; a file name with them reaches it escaped through
/// `explain`. Never a sequence the terminal would act on.
#[test]
fn names_with_escape_sequences_reach_the_terminal_escaped() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    std::fs::create_dir(dir.join("b")).unwrap();
    std::fs::write(
        dir.join("b/bill\u{1b}[2J.csv"),
        "CustomerId,CustomerName,SubscriptionId,ChargeStartDate,ChargeEndDate,ChargeType,Subtotal,Currency,PublisherName,ProductName\n\
         c1,A,s1,10/1/2026,10/31/2026,cycleCharge,100.00,EUR,Microsoft Corporation,M365\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("des.csv"),
        "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n\
         c1,P1,\"Evil\u{1b}[2J\u{1b}[31mRED\u{1b}[0m\",POR,,,,2025-01-01,\n\
         c1,P1,Fabrikam,POR,,,,2025-01-01,\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("rules.toml"),
        "[[program]]\nid = \"por\"\nassociations = [\"POR\"]\nrate = \"0.04\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut c = command();
        c.current_dir(dir).args(args);
        output(&mut c)
    };
    let o = run(&[
        "run",
        "--period",
        "2026-10",
        "--billing",
        "b",
        "--designations",
        "des.csv",
        "--rules",
        "rules.toml",
        "--out",
        "out",
        "--no-pdf",
    ]);
    assert_code(&o, 1);
    let text = stderr(&o);
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(
        text.contains("des.csv:2 column 'partner_name' value 'Evil\\u{1b}[2J\\u{1b}[31mRED")
            && text.contains("control character (U+001B, character 5 of"),
        "{text}"
    );
    let o = run(&["explain", "--out", "out", "--partner", "P1"]);
    assert_code(&o, 0);
    let text = stdout(&o);
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("bill\\u{1b}[2J.csv:2"), "{text}");
    let statement = std::fs::read_to_string(dir.join("out/partners/P1/statement.csv")).unwrap();
    assert!(
        statement.contains("Fabrikam") && !statement.contains("Evil"),
        "{statement:?}"
    );
}
