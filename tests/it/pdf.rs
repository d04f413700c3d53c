//! PDF statements, end to end: the real binary on small hand-made fixtures,
//! checked through `pdftotext -layout` (Debian `poppler-utils`).

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::common::{assert_code, command, output, pdftext, porledger_in, repo};

const RULES: &str = r#"
rounding = "half-up"

[[program]]
id = "dpor"
name = "Digital Partner of Record"
associations = ["DPOR"]
rate = "0.04"
description = "Pays the partner a customer designated as its digital partner of record."

[[program]]
id = "resale"
name = "Reseller incentive"
associations = ["RESELLER"]
rate = "0.0125"
"#;

const C_MUELLER: &str = "11111111-1111-4111-8111-111111111111";
const C_CONTOSO: &str = "22222222-2222-4222-8222-222222222222";

const BILLING_HEADER: &str = "CustomerId,CustomerName,SubscriptionId,ChargeStartDate,ChargeEndDate,Subtotal,Currency,MpnId,ResellerMpnId,PublisherName,ChargeType,ProductId,ProductName,ReferenceId";

/// Writes billing, designations and rules for two partners and two customers,
/// plus `bulk` customers of a third partner (for page breaks).
fn fixture(dir: &Path, bulk: usize) -> (PathBuf, PathBuf, PathBuf) {
    let mut billing = String::from(BILLING_HEADER);
    billing.push('\n');
    let mut desig = String::from(
        "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n",
    );
    // Müller: Alpha is DPOR for the whole tenant, Beta resells.
    desig.push_str(&format!(
        "{C_MUELLER},100001,Alpha Partner GmbH,DPOR,,,,2025-03-01,\n"
    ));
    desig.push_str(&format!(
        "{C_CONTOSO},200002,Beta Consulting Ltd,DPOR,,sub-c-1,,2024-07-15,2027-01-01\n"
    ));
    billing.push_str(&format!(
        "{C_MUELLER},Müller & Söhne Gärtnerei GmbH,sub-m-1,2026-10-01,2026-10-31,1234.5678,EUR,900000,100001,Microsoft Corporation,new,P1,Microsoft 365 E3,r1\n"
    ));
    billing.push_str(&format!(
        "{C_MUELLER},Müller & Söhne Gärtnerei GmbH,sub-m-2,2026-10-01,2026-10-31,98765.4321,EUR,900000,100001,Microsoft Corporation,new,P2,Azure plan,r2\n"
    ));
    billing.push_str(&format!(
        "{C_CONTOSO},Contoso Straße AG,sub-c-1,2026-10-01,2026-10-31,555.55,EUR,900000,,Microsoft Corporation,new,P1,Microsoft 365 E5,r3\n"
    ));
    for i in 0..bulk {
        let c = format!("33333333-0000-4000-8000-{i:012}");
        desig.push_str(&format!(
            "{c},300003,Gamma Bulk Partner,DPOR,,,,2025-01-01,\n"
        ));
        billing.push_str(&format!(
            "{c},Bulk customer {i} with a rather long company name that cannot fit in one column,sub-b-{i},2026-10-01,2026-10-31,{}.{:02},EUR,900000,,Microsoft Corporation,new,P1,Microsoft 365 E3,rb{i}\n",
            100 + i * 7,
            i % 100
        ));
    }
    let b = dir.join("billing.csv");
    let d = dir.join("designations.csv");
    let r = dir.join("rules.toml");
    std::fs::write(&b, billing).unwrap();
    std::fs::write(&d, desig).unwrap();
    std::fs::write(&r, RULES).unwrap();
    (b, d, r)
}

fn run(dir: &Path, out: &Path, extra: &[&str]) -> Output {
    let (b, d, r) = fixture(dir, 0);
    run_with(&b, &d, &r, out, extra)
}

fn run_with(b: &Path, d: &Path, r: &Path, out: &Path, extra: &[&str]) -> Output {
    let mut c = command();
    c.args(["run", "--period", "2026-10", "--quiet", "--billing"])
        .arg(b)
        .arg("--designations")
        .arg(d)
        .arg("--rules")
        .arg(r)
        .arg("--out")
        .arg(out)
        .args(extra);
    output(&mut c)
}

/// `1234.56` -> `€1,234.56` (en) or `1.234,56 €` (de).
fn fmt_amount(plain: &str, de: bool) -> String {
    let (neg, plain) = match plain.strip_prefix('-') {
        Some(p) => (true, p),
        None => (false, plain),
    };
    let (int, frac) = plain.split_once('.').unwrap_or((plain, ""));
    let (g, dsep) = if de { ('.', ',') } else { (',', '.') };
    let mut s = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            s.push(g);
        }
        s.push(c);
    }
    let num = format!("{s}{dsep}{frac}");
    let out = if de {
        format!("{num} €")
    } else {
        format!("€{num}")
    };
    if neg {
        format!("-{out}")
    } else {
        out
    }
}

/// The accrual amounts (`accrual_amount`) and totals of a CSV partner statement.
fn csv_amounts(csv: &Path) -> (Vec<String>, Vec<String>) {
    let text = std::fs::read_to_string(csv).unwrap();
    let mut lines = Vec::new();
    let mut totals = Vec::new();
    let mut in_lines = false;
    for row in text.lines() {
        let f: Vec<&str> = row.split(',').collect();
        if f.first() == Some(&"customer_id") {
            in_lines = true;
            continue;
        }
        if row.is_empty() {
            in_lines = false;
            continue;
        }
        if in_lines {
            lines.push(f.last().unwrap().to_string());
        } else if f.first() == Some(&"total") && f.get(1) != Some(&"currency") {
            totals.push(f[3].to_string());
        }
    }
    (lines, totals)
}

#[test]
fn partner_statement_shows_every_csv_amount_in_both_locales() {
    let tmp = tempfile::tempdir().unwrap();
    for (locale, de) in [("en", false), ("de", true)] {
        let out = tmp.path().join(format!("out-{locale}"));
        assert_code(&run(tmp.path(), &out, &["--locale", locale]), 0);
        let p = out.join("partners/100001");
        let text = pdftext(&p.join("statement.pdf"));
        let (lines, totals) = csv_amounts(&p.join("statement.csv"));
        assert_eq!(lines.len(), 2);
        // 99999.9999 * 0.04 = 3999.999996 and * 0.0125 = 1249.99999875
        assert_eq!(lines, vec!["4000.00", "1250.00"]);
        assert_eq!(totals, vec!["5250.00"]);
        for a in lines.iter().chain(&totals) {
            let f = fmt_amount(a, de);
            assert!(text.contains(&f), "{locale}: {f} missing in:\n{text}");
        }
        assert!(text.contains("Alpha Partner GmbH"));
        assert!(text.contains("Müller & Söhne Gärtnerei GmbH"), "{text}");
        if de {
            assert!(text.contains("31.10.2026"), "{text}");
            assert!(text.contains("Seite 1 von 1"), "{text}");
            assert!(
                text.contains("99.999,99 €") || text.contains("99.999,9999 €"),
                "{text}"
            );
        } else {
            assert!(text.contains("2026-10-31"), "{text}");
            assert!(text.contains("Page 1 of 1"), "{text}");
            assert!(text.contains("€99,999.9999"), "{text}");
        }
        // No other partner or customer.
        for other in ["Beta Consulting", "200002", "Contoso", C_CONTOSO] {
            assert!(!text.contains(other), "{locale}: {other} in:\n{text}");
        }
    }
}

#[test]
fn transparency_statement_discloses_one_partner_to_one_customer() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_code(
        &run(
            tmp.path(),
            &out,
            &["--locale", "de", "--transparency-by-customer"],
        ),
        0,
    );
    let t = pdftext(&out.join(format!("partners/100001/customers/{C_MUELLER}.pdf")));
    for want in [
        "Müller & Söhne Gärtnerei GmbH",
        "Alpha Partner GmbH",
        "100001",
        "Digital Partner of Record (DPOR)",
        "01.03.2025",
        "1,25 %",
        "1.234,5678 €",
        "4.000,00 €",
        "1.250,00 €",
        "5.250,00 €",
        "Pays the partner a customer designated",
        "Seite 1 von",
    ] {
        assert!(t.contains(want), "{want} missing in:\n{t}");
    }
    for other in ["Beta Consulting", "Contoso", C_CONTOSO, "200002"] {
        assert!(!t.contains(other), "{other} in:\n{t}");
    }
    // The customer-level document lists every partner that earned on it.
    let t = pdftext(&out.join(format!("customers/{C_CONTOSO}.pdf")));
    assert!(t.contains("Beta Consulting Ltd"), "{t}");
    assert!(t.contains("22,22 €"), "{t}"); // 555.55 * 0.04 = 22.222
    assert!(!t.contains("Alpha Partner") && !t.contains("Müller"), "{t}");
}

#[test]
fn page_numbers_run_across_page_breaks() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, d, r) = fixture(tmp.path(), 120);
    let out = tmp.path().join("out");
    assert_code(
        &run_with(&b, &d, &r, &out, &["--locale", "en", "--no-pdf"]),
        0,
    );
    assert!(!out.join("partners/300003/statement.pdf").exists());
    assert_code(&run_with(&b, &d, &r, &out, &["--locale", "en"]), 0);
    let text = pdftext(&out.join("partners/300003/statement.pdf"));
    let pages: Vec<&str> = text
        .split('\u{c}')
        .filter(|p| !p.trim().is_empty())
        .collect();
    let n = pages.len();
    assert!(n >= 3, "expected 3+ pages, got {n}");
    for (i, p) in pages.iter().enumerate() {
        assert!(
            p.contains(&format!("Page {} of {n}", i + 1)),
            "page {} lacks its number:\n{p}",
            i + 1
        );
        // The table header is repeated on every page that shows rows.
        if p.contains("Digital Partner of Record") && i > 0 {
            assert!(
                p.contains("Subscription"),
                "page {} has no header:\n{p}",
                i + 1
            );
        }
    }
    let (lines, totals) = csv_amounts(&out.join("partners/300003/statement.csv"));
    assert_eq!(lines.len(), 120);
    for a in lines.iter().chain(&totals) {
        assert!(text.contains(&fmt_amount(a, false)), "{a} missing");
    }
    // Long customer names are wrapped in the caption, not cut or overlapped.
    assert!(
        text.contains("Bulk customer 7 with a rather long company name"),
        "{text}"
    );
}

#[test]
fn output_is_byte_identical_across_runs_and_thread_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, d, r) = fixture(tmp.path(), 40);
    let a = tmp.path().join("a");
    let c = tmp.path().join("c");
    assert_code(
        &run_with(
            &b,
            &d,
            &r,
            &a,
            &["--threads", "1", "--transparency-by-customer"],
        ),
        0,
    );
    assert_code(
        &run_with(
            &b,
            &d,
            &r,
            &c,
            &["--threads", "2", "--transparency-by-customer"],
        ),
        0,
    );
    // Spilled groups, merged back and written a partner per batch.
    let e = tmp.path().join("e");
    assert_code(
        &run_with(
            &b,
            &d,
            &r,
            &e,
            &[
                "--threads",
                "2",
                "--transparency-by-customer",
                "--chunk-bytes",
                "4096",
                "--spill-after",
                "0",
                "--batch-groups",
                "1",
            ],
        ),
        0,
    );
    let manifest = |dir: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap()
    };
    let va = manifest(&a);
    assert_eq!(va["outputs"], manifest(&c)["outputs"]);
    assert_eq!(va["outputs"], manifest(&e)["outputs"]);
    let pdfs = va["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["path"].as_str().unwrap().ends_with(".pdf"))
        .count();
    assert!(pdfs > 40, "{pdfs}");
    assert_eq!(va["pdf"]["template"]["name"], "porledger-default");
    assert_eq!(va["pdf"]["template"]["sha256"].as_str().unwrap().len(), 64);
}

/// The bytes of every output, PDFs included, are the same in every build of
/// porledger: CI runs this test with the default features and with every
/// feature, against one snapshot. (A dependency that switches a shared crate's
/// backend, as polars did with flate2's, changes the PDFs' compressed streams.)
/// After a deliberate change to an output, `cargo insta review` updates it.
#[test]
fn output_bytes_do_not_depend_on_the_build_features() {
    let tmp = tempfile::tempdir().unwrap();
    fixture(tmp.path(), 3);
    // Relative paths: the ledger and summary name the inputs as given.
    let o = porledger_in(
        tmp.path(),
        [
            "run",
            "--period",
            "2026-10",
            "--quiet",
            "--billing",
            "billing.csv",
            "--designations",
            "designations.csv",
            "--rules",
            "rules.toml",
            "--out",
            "out",
            "--transparency-by-customer",
        ],
    );
    assert_code(&o, 0);
    let out = tmp.path().join("out");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    let listing: Vec<String> = manifest["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["sha256"].as_str().unwrap(),
                e["path"].as_str().unwrap()
            )
        })
        .collect();
    assert!(listing.iter().any(|l| l.ends_with(".pdf")), "{listing:?}");
    insta::assert_snapshot!("output_sha256", listing.join("\n"));
}

#[test]
fn render_re_renders_a_finished_run_atomically() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_code(&run(tmp.path(), &out, &["--locale", "en"]), 0);
    let csv_before = std::fs::read(out.join("partners/100001/statement.csv")).unwrap();
    let mut c = command();
    c.args([
        "render",
        "--quiet",
        "--locale",
        "de",
        "--transparency-by-customer",
        "--out",
    ])
    .arg(&out);
    let o = output(&mut c);
    assert_code(&o, 0);
    let text = pdftext(&out.join("partners/100001/statement.pdf"));
    assert!(text.contains("5.250,00 €"), "{text}");
    assert!(out.join(format!("customers/{C_MUELLER}.pdf")).is_file());
    assert_eq!(
        std::fs::read(out.join("partners/100001/statement.csv")).unwrap(),
        csv_before
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["pdf"]["template"]["locale"], "de");
    let entry = m["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "partners/100001/statement.pdf")
        .unwrap()
        .clone();
    let bytes = std::fs::read(out.join("partners/100001/statement.pdf")).unwrap();
    assert_eq!(entry["bytes"].as_u64().unwrap(), bytes.len() as u64);
    assert!(m["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["path"] == "ledger.csv"));
    // Nothing left behind beside the output (but its lock file, kept by
    // design).
    let beside = std::fs::read_dir(tmp.path())
        .unwrap()
        .filter(|e| {
            !e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".porledger-lock")
        })
        .count();
    assert_eq!(beside, 4);
}

/// `render` keeps the manifest's layout: with the run's locale and template
/// it changes no byte of the output, `manifest.json` included; in another
/// locale the manifest's fields stay in the order the run wrote them (only
/// `outputs` and `pdf` change).
#[test]
fn render_with_the_runs_locale_changes_no_byte() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    assert_code(&run(tmp.path(), &out, &["--locale", "en"]), 0);
    let before = crate::common::tree(&out);
    let manifest = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    let render = |locale: &str| {
        let mut c = command();
        c.args(["render", "--quiet", "--locale", locale, "--out"])
            .arg(&out);
        assert_code(&output(&mut c), 0);
    };
    render("en");
    assert!(
        crate::common::tree(&out) == before,
        "a render with the run's locale changed the output"
    );
    render("de");
    let again = std::fs::read_to_string(out.join("manifest.json")).unwrap();
    assert_ne!(again, manifest);
    // The top-level keys, in order.
    let keys = |text: &str| -> Vec<String> {
        text.lines()
            .filter(|l| l.starts_with("  \"") && !l.starts_with("   "))
            .map(|l| l.split('"').nth(1).unwrap().to_string())
            .collect()
    };
    assert_eq!(keys(&again), keys(&manifest));
    assert_eq!(keys(&manifest)[..3], ["tool", "version", "period"]);
    // Everything before `outputs` is as the run wrote it.
    let head = |text: &str| text.split("\"outputs\"").next().unwrap().to_string();
    assert_eq!(head(&again), head(&manifest));
    render("en");
    assert!(
        crate::common::tree(&out) == before,
        "rendered back in English"
    );
}

#[test]
fn a_broken_template_names_file_and_key_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let tpl = tmp.path().join("tpl");
    copy_dir(&repo().join("templates"), &tpl);
    let f = tpl.join("template.toml");
    let text = std::fs::read_to_string(&f).unwrap();
    std::fs::write(&f, text.replace("margin_top_mm", "margin_tpo_mm")).unwrap();
    let out = tmp.path().join("out");
    let o = run(tmp.path(), &out, &["--template", tpl.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("template.toml"), "{err}");
    assert!(err.contains("margin_tpo_mm"), "{err}");
    assert!(!out.exists(), "nothing published");
    // A bad value names its key too.
    std::fs::write(&f, &text).unwrap();
    let l = tpl.join("locales/en.toml");
    let lt = std::fs::read_to_string(&l).unwrap();
    std::fs::write(&l, lt.replace("date = \"%Y-%m-%d\"", "date = \"%Q\"")).unwrap();
    let o = run(tmp.path(), &out, &["--template", tpl.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("en.toml") && err.contains("format.date"),
        "{err}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let t = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_dir(&p, &t);
        } else {
            std::fs::copy(&p, &t).unwrap();
        }
    }
}

/// Writes a billing file (simple export columns) with one line per
/// `(customer, subscription, amount, currency)`, all in October 2026, and
/// designations making partner P1 the POR of every customer.
fn por_fixture(dir: &Path, lines: &[(&str, &str, &str, &str)]) -> (PathBuf, PathBuf, PathBuf) {
    let mut billing = String::from(
        "CustomerId,CustomerName,SubscriptionId,ChargeStartDate,ChargeEndDate,ChargeType,ProductName,Subtotal,Currency,PublisherName\n",
    );
    let mut desig = String::from(
        "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n",
    );
    for (customer, sub, amount, currency) in lines {
        billing.push_str(&format!(
            "{customer},Customer {customer},{sub},10/1/2026,10/31/2026,cycleCharge,Microsoft 365 E3,{amount},{currency},Microsoft Corporation\n"
        ));
        let row = format!("{customer},P1,One,POR,,,,2025-01-01,\n");
        if !desig.contains(&row) {
            desig.push_str(&row);
        }
    }
    let (b, d, r) = (
        dir.join("billing.csv"),
        dir.join("des.csv"),
        dir.join("r.toml"),
    );
    std::fs::write(&b, billing).unwrap();
    std::fs::write(&d, desig).unwrap();
    std::fs::write(
        &r,
        "reporting_currency = \"EUR\"\n[[program]]\nid = \"por\"\nassociations = [\"POR\"]\nrate = \"0.04\"\n",
    )
    .unwrap();
    (b, d, r)
}

/// pdftotext's text with every run of white space one space (a paragraph
/// may wrap anywhere).
fn flat(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn large_amounts_are_printed_whole_in_both_locales() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, d, r) = por_fixture(
        tmp.path(),
        &[
            ("c-id", "s-id", "250000000.00", "IDR"),
            ("c-eu", "s-eu", "1250000000.00", "EUR"),
        ],
    );
    for (locale, want) in [
        (
            "en",
            [
                "IDR 250,000,000.00",
                "IDR 10,000,000.00",
                "€1,250,000,000.00",
                "€50,000,000.00",
            ],
        ),
        (
            "de",
            [
                "250.000.000,00 IDR",
                "10.000.000,00 IDR",
                "1.250.000.000,00 €",
                "50.000.000,00 €",
            ],
        ),
    ] {
        let out = tmp.path().join(format!("out-{locale}"));
        assert_code(&run_with(&b, &d, &r, &out, &["--locale", locale]), 0);
        let p = out.join("partners/P1");
        let statement = pdftext(&p.join("statement.pdf"));
        for w in want {
            assert!(
                statement.contains(w),
                "{locale}: {w} missing in:\n{statement}"
            );
        }
        assert!(!statement.contains('…'), "{locale}:\n{statement}");
        let (customer, amounts) = ("c-id", &want[..2]);
        let t = pdftext(&p.join(format!("customers/{customer}.pdf")));
        for w in amounts {
            assert!(t.contains(w), "{locale}: {w} missing in:\n{t}");
        }
        assert!(!t.contains('…'), "{locale}:\n{t}");
        let t = pdftext(&p.join("customers/c-eu.pdf"));
        for w in &want[2..] {
            assert!(t.contains(w), "{locale}: {w} missing in:\n{t}");
        }
        assert!(!t.contains('…'), "{locale}:\n{t}");
    }
}

#[test]
fn fx_converted_totals_are_on_the_pdf_and_in_render() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, d, r) = por_fixture(
        tmp.path(),
        &[
            ("c1", "s1", "1000.00", "USD"),
            ("c1", "s2", "500.00", "EUR"),
        ],
    );
    let fx = tmp.path().join("fx.csv");
    std::fs::write(&fx, "date,from,to,rate\n2026-10-15,USD,EUR,0.9000\n").unwrap();
    let en = [
        "Totals converted into EUR",
        "Total USD $40.00 0.9 2026-10-15 €36.00",
        "Total in EUR €56.00",
    ];
    let de = [
        "Summen umgerechnet in EUR",
        "Summe USD 40,00 $ 0,9 15.10.2026 36,00 €",
        "Summe in EUR 56,00 €",
    ];
    for (locale, want) in [("en", en), ("de", de)] {
        let out = tmp.path().join(format!("out-{locale}"));
        let fx_arg = fx.to_str().unwrap();
        assert_code(
            &run_with(&b, &d, &r, &out, &["--locale", locale, "--fx", fx_arg]),
            0,
        );
        let csv = std::fs::read_to_string(out.join("partners/P1/statement.csv")).unwrap();
        assert!(
            csv.contains("total,USD,1000.00,40.00,EUR,0.9,2026-10-15,36.00"),
            "{csv}"
        );
        assert!(csv.contains("total_converted,EUR,,56.00"), "{csv}");
        let text = flat(&pdftext(&out.join("partners/P1/statement.pdf")));
        for w in want {
            assert!(text.contains(w), "{locale}: {w} missing in:\n{text}");
        }
    }
    // render of the English run in German shows them too.
    let out = tmp.path().join("out-en");
    let mut c = command();
    c.args(["render", "--quiet", "--locale", "de", "--out"])
        .arg(&out);
    assert_code(&output(&mut c), 0);
    let text = flat(&pdftext(&out.join("partners/P1/statement.pdf")));
    for w in de {
        assert!(text.contains(w), "render: {w} missing in:\n{text}");
    }
    // Without --fx there is no such section.
    let out = tmp.path().join("out-plain");
    assert_code(&run_with(&b, &d, &r, &out, &[]), 0);
    let text = flat(&pdftext(&out.join("partners/P1/statement.pdf")));
    assert!(!text.contains("converted"), "{text}");
}

#[test]
fn the_rounding_sentence_names_each_currency_s_decimals() {
    let tmp = tempfile::tempdir().unwrap();
    let (b, d, r) = por_fixture(
        tmp.path(),
        &[
            ("c1", "s1", "1000.00", "EUR"),
            ("c1", "s2", "100000", "JPY"),
            ("c1", "s3", "100.125", "KWD"),
        ],
    );
    for (locale, want) in [
        (
            "en",
            "to the smallest unit of their currency (EUR: 2 decimal places; JPY: 0 decimal places; KWD: 3 decimal places)",
        ),
        (
            "de",
            "auf die kleinste Einheit ihrer Währung gerundet (EUR: 2 Nachkommastellen; JPY: 0 Nachkommastellen; KWD: 3 Nachkommastellen)",
        ),
    ] {
        let out = tmp.path().join(format!("out-{locale}"));
        assert_code(&run_with(&b, &d, &r, &out, &["--locale", locale]), 0);
        let text = flat(&pdftext(&out.join("partners/P1/statement.pdf")));
        assert!(text.contains(want), "{locale}: {want} missing in:\n{text}");
        assert!(
            !text.contains("to the cent") && !text.contains("auf den Cent"),
            "{text}"
        );
    }
}
