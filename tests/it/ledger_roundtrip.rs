//! The ledger's keys read back as they were written. `ledger.csv` escapes
//! formula-like text for spreadsheets (`-P1` is stored as `'-P1`); `explain`
//! must still find partner `-P1` (it found nothing before the ledger reader
//! undid the escape).

use std::process::Output;

use porledger::ingest::billing::INVOICE_RECONCILIATION_COLUMNS;

use crate::common::{assert_code, command as bin, stdout};

fn ok(o: &Output) -> String {
    assert_code(o, 0);
    stdout(o)
}

/// One invoice-reconciliation billing line of 1000.00 EUR for customer `-C1`.
fn billing() -> String {
    let value = |col: &str| match col {
        "PartnerId" => "9c1e2d3f-0000-4000-8000-00000000aaaa",
        "CustomerId" => "-C1",
        "CustomerName" => "Minus Customer",
        "MpnId" => "4711001",
        "SubscriptionId" => "sub-1",
        "ChargeStartDate" | "ChargeEndDate" => "2026-10-01",
        "Subtotal" | "Total" => "1000.00",
        "TaxTotal" => "0",
        "Currency" => "EUR",
        "PublisherName" => "Microsoft Corporation",
        "ProductQualifiers" => "[]",
        "ProductName" | "SkuName" | "OfferName" => "Microsoft 365 E3",
        "ChargeType" => "cycleCharge",
        "Quantity" | "BillableQuantity" => "1",
        _ => "",
    };
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(INVOICE_RECONCILIATION_COLUMNS).unwrap();
    w.write_record(INVOICE_RECONCILIATION_COLUMNS.iter().map(|c| value(c)))
        .unwrap();
    String::from_utf8(w.into_inner().unwrap()).unwrap()
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
"#;

const DESIGNATIONS: &str = "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to
-C1,-P1,Minus Partner,DPOR,,,,2024-01-01,
";

#[test]
fn explain_finds_a_partner_whose_id_looks_like_a_formula() {
    let dir = tempfile::tempdir().unwrap();
    let p = |rel: &str| dir.path().join(rel);
    std::fs::create_dir(p("billing")).unwrap();
    std::fs::write(p("billing/2026-10.csv"), billing()).unwrap();
    std::fs::write(p("designations.csv"), DESIGNATIONS).unwrap();
    std::fs::write(p("rules.toml"), RULES).unwrap();
    ok(&bin()
        .current_dir(dir.path())
        .args(["run", "--period", "2026-10", "--billing", "billing"])
        .args([
            "--designations",
            "designations.csv",
            "--rules",
            "rules.toml",
        ])
        .args(["--out", "out", "--no-pdf", "--quiet"])
        .output()
        .unwrap());

    // The ledger still escapes the IDs for spreadsheets.
    let ledger = std::fs::read_to_string(p("out/ledger.csv")).unwrap();
    assert!(ledger.contains("\r\n'-P1,'-c1,por-core,DPOR,"), "{ledger}");

    let text = ok(&bin()
        .current_dir(dir.path())
        .args(["explain", "--out", "out", "--partner=-P1"])
        .output()
        .unwrap());
    for needle in [
        "Partner -P1 (Minus Partner), period 2026-10",
        "customer -c1, program por-core, EUR",
        "1000.00 x rate 0.04 x share 1.0 = 40.00",
        "rounded half-up EUR = 40.00 (matches the statement)",
        "total EUR: 40.00",
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
    assert!(!text.contains("no ledger line matches"), "{text}");

    // The customer filter works on the unescaped ID too.
    let text = ok(&bin()
        .current_dir(dir.path())
        .args(["explain", "--out", "out", "--partner=-P1", "--customer=-C1"])
        .output()
        .unwrap());
    assert!(text.contains("= 40.00"), "{text}");

    // A filter that matches nothing is named, not taken for a partner that
    // earned nothing; a program ID that is not the partner's lists those it has.
    let explain = |filter: &str| {
        ok(&bin()
            .current_dir(dir.path())
            .args(["explain", "--out", "out", "--partner=-P1", filter])
            .output()
            .unwrap())
    };
    let text = explain("--customer=nonexist");
    assert!(
        text.contains("no ledger line matches --customer nonexist"),
        "{text}"
    );
    assert!(!text.contains("earned nothing"), "{text}");
    let text = explain("--program=POR-CORE");
    assert!(
        text.contains("no ledger line matches --program POR-CORE"),
        "{text}"
    );
    assert!(text.contains("of program por-core"), "{text}");
}
