//! `porledger tieout`: the committed sample export (every class, derived by
//! hand in sample-data/earnings/README.md), and exports generated from a run's
//! own ledger (only `matched`, whatever the layout).

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;

use crate::common::{
    assert_code, assert_published, change_a_digit, code, command, csv_rows, output, pdftext, read,
    read_json, run_sample, stderr, stdout, tree, write, Sample,
};

/// One earning per partner, program, customer, subscription, month and
/// currency of `ledger`, rounded half-up to the cent: what Microsoft pays when
/// it pays exactly what porledger accrued. `delim` `,` or TAB; `reverse`
/// writes the columns in reverse order; `repeat` writes every row that many
/// times (a Growth report repeating the earningId).
fn export_from_ledger(ledger: &Path, delim: char, reverse: bool, repeat: usize) -> String {
    export_from_ledgers(&[ledger], delim, reverse, repeat)
}

/// [`export_from_ledger`] of several runs' ledgers together: one earning per
/// grain of their sum (a later run's reversal of a closed month nets with
/// the closed month's accrual, as Microsoft pays it).
pub(crate) fn export_from_ledgers(
    ledgers: &[&Path],
    delim: char,
    reverse: bool,
    repeat: usize,
) -> String {
    let mut grains = Grains::new();
    for ledger in ledgers {
        add_grains(ledger, &mut grains, false);
    }
    export_of_grains(&grains, delim, reverse, repeat, false)
}

/// [`export_from_ledger`] with `invoiceNumber` and `productId`: one earning
/// per invoice and product of each grain.
fn billed_export_from_ledger(ledger: &Path) -> String {
    let mut grains = Grains::new();
    add_grains(ledger, &mut grains, true);
    export_of_grains(&grains, ',', false, 1, true)
}

/// (partner, program, customer, subscription, month, currency, invoice, product).
type Grains = BTreeMap<
    (
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
    ),
    Decimal,
>;

fn add_grains(ledger: &Path, grains: &mut Grains, billed: bool) {
    let rows = csv_rows(&read(ledger));
    let h = &rows[0];
    let col = |n: &str| h.iter().position(|c| c == n).unwrap();
    let (p, prog, c, s, d, amt, cur) = (
        col("partner_id"),
        col("program_id"),
        col("customer_id"),
        col("subscription_id"),
        col("charge_date"),
        col("accrual_amount"),
        col("currency"),
    );
    let (inv, prod) = (col("invoice_number"), col("product_id"));
    for r in &rows[1..] {
        let month = h
            .iter()
            .position(|c| c == "accrual_month")
            .map(|i| r[i].clone())
            .unwrap_or_else(|| r[d][..7].to_string());
        let k = (
            r[p].clone(),
            r[prog].clone(),
            r[c].clone(),
            r[s].clone(),
            month,
            r[cur].clone(),
            if billed {
                r[inv].clone()
            } else {
                String::new()
            },
            if billed {
                r[prod].clone()
            } else {
                String::new()
            },
        );
        *grains.entry(k).or_default() += r[amt].parse::<Decimal>().unwrap();
    }
}

fn export_of_grains(
    grains: &Grains,
    delim: char,
    reverse: bool,
    repeat: usize,
    billed: bool,
) -> String {
    let assoc = |program: &str| match program {
        "por-core" => ("CSP", "DPOR"),
        "pal" => ("CSP", "PAL.Owner"),
        _ => ("CSP Indirect Reseller", "reseller"),
    };
    let mut header = vec![
        "earningId",
        "participantId",
        "programName",
        "partnerAssociation",
        "customerTenantId",
        "subscriptionId",
        "transactionDate",
        "transactionCurrency",
        "earningAmount",
        "earningRate",
        "paymentStatus",
    ];
    if billed {
        header.extend(["invoiceNumber", "productId"]);
    }
    if reverse {
        header.reverse();
    }
    let sep = delim.to_string();
    let mut out = format!("\u{feff}{}\r\n", header.join(&sep));
    for (i, ((partner, program, customer, sub, month, cur, inv, prod), amount)) in
        grains.iter().enumerate()
    {
        let (name, assoc) = assoc(program);
        let rate = match program.as_str() {
            "por-core" => "4",
            "pal" => "1.5",
            _ => "1",
        };
        let paid =
            amount.round_dp_with_strategy(2, rust_decimal::RoundingStrategy::MidpointAwayFromZero);
        let id = format!("E{i:05}");
        let date = format!("{month}-15");
        let paid = paid.to_string();
        let mut cells = vec![
            id.as_str(),
            partner,
            name,
            assoc,
            customer,
            sub,
            date.as_str(),
            cur,
            paid.as_str(),
            rate,
            "Sent",
        ];
        if billed {
            cells.extend([inv.as_str(), prod.as_str()]);
        }
        if reverse {
            cells.reverse();
        }
        for _ in 0..repeat {
            out.push_str(&cells.join(&sep));
            out.push_str("\r\n");
        }
    }
    out
}

/// `porledger tieout --out RUN --as-of 2026-11-10 --quiet EXTRA...`.
fn tieout_command(run: &Path, extra: &[&str]) -> std::process::Command {
    let mut c = command();
    c.arg("tieout")
        .arg("--out")
        .arg(run)
        .args(["--as-of", "2026-11-10", "--quiet"])
        .args(extra);
    c
}

fn tieout(run: &Path, extra: &[&str]) -> std::process::Output {
    output(&mut tieout_command(run, extra))
}

/// Ties `run` out against the committed sample export into `out_dir`,
/// with `extra` flags.
fn tie_sample(run: &Path, out_dir: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--earnings",
        "sample-data/earnings",
        "--tieout-out",
        out_dir.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    tieout(run, &args)
}

/// Writes `text` as `dir/earnings/NAME` and ties `run` out against it into
/// `dir/t-NAME` (no PDFs): the output and that directory.
fn tie_export(
    dir: &Path,
    run: &Path,
    name: &str,
    text: &str,
) -> (std::process::Output, std::path::PathBuf) {
    let file = dir.join("earnings").join(name);
    write(&file, text);
    let out_dir = dir.join(format!("t-{name}"));
    let o = tieout(
        run,
        &[
            "--earnings",
            file.to_str().unwrap(),
            "--tieout-out",
            out_dir.to_str().unwrap(),
            "--no-pdf",
        ],
    );
    (o, out_dir)
}

#[test]
fn an_export_of_the_runs_own_ledger_ties_out_in_every_layout() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let ledger = run.join("ledger.csv");
    for (name, delim, reverse, repeat) in [
        ("default.csv", ',', false, 1),
        ("reversed.tsv", '\t', true, 1),
        ("growth.csv", ',', false, 3),
    ] {
        let export = export_from_ledger(&ledger, delim, reverse, repeat);
        let (o, out_dir) = tie_export(dir.path(), &run, name, &export);
        assert_code(&o, 0);
        let rows = csv_rows(&read(out_dir.join("tieout.csv")));
        let class = rows[0].iter().position(|c| c == "class").unwrap();
        assert!(rows.len() > 100, "{name}: {} rows", rows.len());
        assert!(
            rows[1..].iter().all(|r| r[class] == "matched"),
            "{name}: {:?}",
            rows.iter().find(|r| r[class] != "matched")
        );
        let j = read_json(out_dir.join("tieout.json"));
        let a = &j["accounting"];
        assert_eq!(a["balanced"], true, "{name}: {a}");
        assert_eq!(a["unmatched"], 0, "{name}");
        assert_eq!(
            a["duplicates"].as_u64().unwrap(),
            a["rows"].as_u64().unwrap() * (repeat as u64 - 1),
            "{name}: {a}"
        );
    }
}

/// A tie-out replaces only an earlier tie-out: never the run it reads (nor
/// a directory inside it, nor a link to it), never another run's output; and
/// a run never replaces a tie-out. Each refusal exits 2, names the flag and
/// changes nothing.
#[test]
fn a_tieout_never_replaces_a_run_and_a_run_never_a_tieout() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let ran = tree(&run);
    // Another run's output: a copy of this one (its manifest lists every file).
    let other = dir.path().join("other");
    for (rel, bytes) in &ran {
        write(other.join(rel), bytes);
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink(&run, dir.path().join("link")).unwrap();
    let earnings = ["--earnings", "sample-data/earnings", "--no-pdf"];
    let mut targets = vec![
        (run.clone(), "is the run directory"),
        (run.join("partners/new"), "is inside the run directory"),
        (run.join("partners"), "is inside the run directory"),
        (other.clone(), "holds the output of `porledger run`"),
    ];
    if cfg!(unix) {
        targets.push((dir.path().join("link"), "is the run directory"));
    }
    for (target, why) in targets {
        let o = tieout(
            &run,
            &[&earnings[..], &["--tieout-out", target.to_str().unwrap()]].concat(),
        );
        assert_code(&o, 2);
        let e = stderr(&o);
        assert!(e.contains("--tieout-out") && e.contains(why), "{e}");
        assert!(e.contains("nothing was changed"), "{e}");
        assert!(tree(&run) == ran, "{}: the run changed", target.display());
        assert!(
            tree(&other) == ran,
            "{}: the other run changed",
            target.display()
        );
        assert!(!run.join("partners/new").exists());
    }
    // A tie-out beside the run, then a run asked to replace it.
    let t = dir.path().join("t");
    let o = tieout(
        &run,
        &[&earnings[..], &["--tieout-out", t.to_str().unwrap()]].concat(),
    );
    assert_code(&o, 1);
    let tied = tree(&t);
    let mut c = command();
    c.args(Sample::Main.args())
        .arg("--out")
        .arg(&t)
        .args(["--no-pdf", "--quiet"]);
    let o = output(&mut c);
    assert_code(&o, 2);
    let e = stderr(&o);
    assert!(e.contains("--out") && e.contains("holds a tie-out"), "{e}");
    assert!(tree(&t) == tied, "the tie-out changed");
    // An earlier tie-out is replaced by the next.
    let o = tieout(
        &run,
        &[&earnings[..], &["--tieout-out", t.to_str().unwrap()]].concat(),
    );
    assert_code(&o, 1);
    assert!(tree(&run) == ran);
}

/// A run changed after porledger wrote it (an amount in ledger.csv, a line
/// of not-eligible.csv, summary.json; sizes unchanged) is never tied out
/// (exit 2 naming the file, nothing published) nor explained.
#[test]
fn a_changed_run_is_refused_not_tied_out() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let original = tree(&run);
    for name in ["ledger.csv", "not-eligible.csv", "summary.json"] {
        for (rel, bytes) in &original {
            write(run.join(rel), bytes);
        }
        change_a_digit(run.join(name));
        let t = dir.path().join(format!("t-{name}"));
        let o = tie_sample(&run, &t, &["--no-pdf"]);
        assert_code(&o, 2);
        let e = stderr(&o);
        assert!(
            e.contains(name) && e.contains("changed after porledger wrote it"),
            "{e}"
        );
        assert!(!t.exists(), "{name}: published");
        // explain reads the ledger and the summary: refused the same way.
        if name != "not-eligible.csv" {
            let o = output(
                command()
                    .arg("explain")
                    .arg("--out")
                    .arg(&run)
                    .args(["--partner", "500275"]),
            );
            assert_code(&o, 2);
            let e = stderr(&o);
            assert!(e.contains(name) && e.contains("explain refuses"), "{e}");
        }
    }
}

/// `explain --tieout-row` explains only from files as porledger wrote them
/// (tieout.csv, the run's ledger.csv; sizes unchanged), and only from the
/// run the tie-out read: after the run is written again (here with its
/// PDFs), the ledger lines a row names may not be the same, so it is
/// refused (exit 2, naming the file or the run).
#[test]
fn a_tieout_row_is_explained_only_from_the_unchanged_run_it_read() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let t = dir.path().join("t");
    assert_code(&tie_sample(&run, &t, &["--no-pdf"]), 1);
    let rows = csv_rows(&read(t.join("tieout.csv")));
    let class = rows[0].iter().position(|c| c == "class").unwrap();
    let row = rows[1..]
        .iter()
        .find(|r| r[class] == "rate-differs")
        .unwrap()[0]
        .clone();
    let explain = || {
        output(
            command()
                .args(["explain", "--out"])
                .arg(&run)
                .args(["--tieout-row", &row, "--tieout-out"])
                .arg(&t),
        )
    };
    assert_code(&explain(), 0);
    let (ran, tied) = (tree(&run), tree(&t));
    // Each names the command that writes the changed file again.
    for (changed, name, again) in [
        (&t, "tieout.csv", "porledger tieout"),
        (&run, "ledger.csv", "porledger run"),
    ] {
        for (base, files) in [(&run, &ran), (&t, &tied)] {
            for (rel, bytes) in files {
                write(base.join(rel), bytes);
            }
        }
        change_a_digit(changed.join(name));
        let o = explain();
        assert_code(&o, 2);
        let e = stderr(&o);
        assert!(
            e.contains(name)
                && e.contains("explain refuses to explain from it")
                && e.contains(&format!("run `{again}` again")),
            "{e}"
        );
    }
    for (rel, bytes) in &ran {
        write(run.join(rel), bytes);
    }
    assert_code(&explain(), 0);
    // Its PDFs rendered in German: another manifest, but the same ledger,
    // inputs and counts, which is what the tie-out ties itself to.
    let o = output(
        command()
            .args(["render", "--locale", "de", "--quiet", "--out"])
            .arg(&run),
    );
    assert_code(&o, 0);
    assert_ne!(tree(&run)["manifest.json"], ran["manifest.json"]);
    assert_code(&explain(), 0);
    // The run written again from another designations file (the same rows
    // and one more line end): refused, though its ledger is the same.
    let designations = dir.path().join("designations.csv");
    write(
        &designations,
        format!("{}\n", read("sample-data/designations.csv")),
    );
    let mut c = command();
    c.args(Sample::Main.args().iter().map(|a| match *a {
        "sample-data/designations.csv" => designations.as_os_str(),
        a => std::ffi::OsStr::new(a),
    }))
    .arg("--out")
    .arg(&run)
    .arg("--quiet");
    assert_code(&output(&mut c), 0);
    assert_eq!(tree(&run)["ledger.csv"], ran["ledger.csv"]);
    let o = explain();
    assert_code(&o, 2);
    let e = stderr(&o);
    assert!(
        e.contains("not the run the tie-out") && e.contains("porledger tieout` again"),
        "{e}"
    );
    // A run's directory given as the tie-out's.
    let o = output(
        command()
            .args(["explain", "--out"])
            .arg(&run)
            .args(["--tieout-row", &row, "--tieout-out"])
            .arg(&run),
    );
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("not a porledger tie-out"),
        "{}",
        stderr(&o)
    );
}

/// The same export under two names is refused (exit 2, both named, nothing
/// published): without earningIds its rows would be counted twice. With
/// `--allow-duplicate-inputs` it is read, its earningIds counted once.
#[test]
fn the_same_earnings_export_twice_is_an_error_unless_allowed() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let first = "sample-data/earnings/earnings-2025-11-to-2026-06.csv";
    let copy = dir.path().join("copy.csv");
    std::fs::copy(first, &copy).unwrap();
    let t = dir.path().join("t");
    let args = |extra: &'static str| {
        let mut a = vec![
            "--earnings".to_string(),
            first.to_string(),
            copy.display().to_string(),
            "--tieout-out".into(),
            t.display().to_string(),
            "--no-pdf".into(),
        ];
        a.extend((!extra.is_empty()).then(|| extra.to_string()));
        a
    };
    let a = args("");
    let o = tieout(&run, &a.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert_code(&o, 2);
    let e = stderr(&o);
    assert!(e.contains(first) && e.contains("copy.csv"), "{e}");
    assert!(e.contains("--allow-duplicate-inputs"), "{e}");
    assert!(!t.exists());
    let a = args("--allow-duplicate-inputs");
    let o = tieout(&run, &a.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert_code(&o, 1);
    let acc = &read_json(t.join("tieout.json"))["accounting"];
    assert_eq!(acc["rows_read"].as_u64().unwrap(), 2 * 225, "{acc}");
    assert_eq!(acc["duplicates"].as_u64().unwrap(), 225 + 1, "{acc}");
}

#[test]
fn the_committed_sample_export_shows_every_class() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let out_dir = dir.path().join("t");
    assert_code(&tie_sample(&run, &out_dir, &[]), 1);
    // The numbers of sample-data/earnings/README.md, derived by hand.
    let j = read_json(out_dir.join("tieout.json"));
    let classes = &j["classes"];
    for (c, n) in [
        ("matched", 317),
        ("underpaid", 1),
        ("overpaid", 1),
        ("rate-differs", 1),
        ("expected-not-paid", 30),
        ("paid-not-expected", 1),
        ("adjustment", 1),
    ] {
        assert_eq!(classes[c], n, "class {c}: {classes}");
    }
    assert_eq!(j["differences"], 5);
    let a = &j["accounting"];
    for (k, n) in [
        ("rows_read", 323),
        ("duplicates", 1),
        ("rows", 322),
        ("matched", 320),
        ("unmatched", 1),
        ("adjustments", 1),
        ("rejected", 0),
    ] {
        assert_eq!(a[k], n, "{k}: {a}");
    }
    assert_eq!(a["balanced"], true);
    let diff = |p: &str, cur: &str| {
        j["partners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["partner_id"] == p && t["currency"] == cur)
            .map(|t| t["difference"].as_str().unwrap().to_string())
            .unwrap()
    };
    assert_eq!(diff("500275", "EUR"), "-87.07");
    assert_eq!(diff("612884", "EUR"), "-34.42");
    assert_eq!(diff("845002", "EUR"), "-71.82");
    assert_eq!(diff("731150", "EUR"), "-7.07");
    assert_eq!(diff("1093377", "EUR"), "0.00");
    assert_eq!(diff("1093377", "USD"), "-5.53");
    let rows = csv_rows(&read(out_dir.join("tieout.csv")));
    let col = |n: &str| rows[0].iter().position(|c| c == n).unwrap();
    let (class, reason) = (col("class"), col("reason"));
    let find = |c: &str| rows.iter().find(|r| r[class] == c).unwrap();
    assert_eq!(find("paid-not-expected")[reason], "no-designation");
    assert!(find("paid-not-expected")[col("explanation")]
        .contains("sample-data/billing/2025-11.csv:17"));
    assert_eq!(find("rate-differs")[col("difference")], "-2.66");
    assert_eq!(find("underpaid")[col("difference")], "-1.00");
    assert_eq!(find("overpaid")[col("difference")], "0.40");
    assert_eq!(find("adjustment")[col("month")], "2026-06");
    // Not yet due: 845002's October (edit 8) and every grain of accrual month
    // 2026-11 (the last charge periods run into November; due 2026-12-16).
    let not_yet = |m: &str| {
        rows.iter()
            .filter(|r| r[class] == "expected-not-paid" && r[reason] == "not-yet-due")
            .filter(|r| r[col("month")] == m)
            .count()
    };
    assert_eq!((not_yet("2026-10"), not_yet("2026-11")), (7, 22));
    // Every partner gets its one-page answer.
    for p in ["500275", "612884", "731150"] {
        let pdf = out_dir.join("partners").join(p).join("tieout.pdf");
        assert!(pdf.exists(), "{}", pdf.display());
        assert!(out_dir.join("partners").join(p).join("tieout.csv").exists());
    }
    // A partner's file: its totals, then exactly its rows that are not
    // matched (the rows behind its difference), as in `tieout.csv`.
    for p in ["1093377", "500275", "612884", "731150", "845002"] {
        let text = read(out_dir.join("partners").join(p).join("tieout.csv"));
        let (totals, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(totals.starts_with("currency,expected,paid,"), "{totals}");
        let mine = csv_rows(body);
        assert_eq!(mine[0], rows[0]);
        let all: Vec<&Vec<String>> = rows[1..]
            .iter()
            .filter(|r| r[col("partner_id")] == p && r[class] != "matched")
            .collect();
        assert!(!all.is_empty(), "{p}");
        assert_eq!(mine[1..].iter().collect::<Vec<_>>(), all, "{p}");
    }
    // 1093377's only open rows are not yet due: it ties out so far.
    let p = read(out_dir.join("partners/1093377/tieout.csv"));
    assert!(
        p.contains(
            "USD,342.00,336.47,0.00,-5.53,52,0,\"ties out so far: every row due is within the \
             tolerance, and 5.53 USD expected in 4 rows is not yet due (52 rows)\""
        ),
        "{p}"
    );
    // A row explains itself, down to the billing lines.
    let under = rows
        .iter()
        .find(|r| r[class] == "rate-differs")
        .unwrap()
        .clone();
    let mut c = command();
    c.args(["explain", "--out"])
        .arg(&run)
        .args(["--tieout-row", &under[0], "--tieout-out"])
        .arg(&out_dir);
    let o = output(&mut c);
    assert_code(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("rate-differs"), "{text}");
    assert!(text.contains("sample-data/billing/"), "{text}");
    assert!(text.contains("sample-data/earnings/"), "{text}");
}

#[test]
fn invoice_and_product_refine_the_grain_and_name_an_underpaid_line() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let export = billed_export_from_ledger(&run.join("ledger.csv"));
    let tie = |name: &str, text: &str| tie_export(dir.path(), &run, name, text);
    // Paid exactly, per invoice and product: every row matched, at that grain.
    let (o, out_dir) = tie("billed.csv", &export);
    assert_code(&o, 0);
    let rows = csv_rows(&read(out_dir.join("tieout.csv")));
    let col = |n: &str| rows[0].iter().position(|c| c == n).unwrap();
    let (class, inv, prod) = (col("class"), col("invoice_number"), col("product_id"));
    assert!(rows[1..].iter().all(|r| r[class] == "matched"));
    assert!(rows[1..]
        .iter()
        .all(|r| r[inv].starts_with('G') && !r[prod].is_empty()));
    // More rows than grains of partner, program, customer, subscription,
    // month and currency: a subscription's month can span two invoices.
    let plain = export_from_ledger(&run.join("ledger.csv"), ',', false, 1);
    assert!(export.lines().count() > plain.lines().count());

    // One earning paid 1.00 short: the row names its invoice and product.
    let mut lines: Vec<String> = export.lines().map(str::to_string).collect();
    let mut cells: Vec<String> = lines[1].split(',').map(str::to_string).collect();
    let (want_inv, want_prod) = (cells[11].clone(), cells[12].clone());
    let paid: Decimal = cells[8].parse().unwrap();
    cells[8] = (paid - Decimal::ONE).to_string();
    lines[1] = cells.join(",");
    let (o, out_dir) = tie("short.csv", &(lines.join("\r\n") + "\r\n"));
    assert_code(&o, 1);
    let rows = csv_rows(&read(out_dir.join("tieout.csv")));
    let off: Vec<&Vec<String>> = rows[1..].iter().filter(|r| r[class] != "matched").collect();
    assert_eq!(off.len(), 1, "{off:?}");
    assert_eq!(
        (
            off[0][class].as_str(),
            off[0][inv].as_str(),
            off[0][prod].as_str()
        ),
        ("underpaid", want_inv.as_str(), want_prod.as_str())
    );
    let mut c = command();
    c.args(["explain", "--out"])
        .arg(&run)
        .args(["--tieout-row", &off[0][0], "--tieout-out"])
        .arg(&out_dir);
    let o = output(&mut c);
    assert_code(&o, 0);
    let text = stdout(&o);
    assert!(text.contains(&format!("invoice {want_inv}")), "{text}");
    assert!(text.contains(&format!("product {want_prod}")), "{text}");
}

#[test]
fn a_missing_column_is_fatal_and_names_it() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let file = dir.path().join("e.csv");
    write(
        &file,
        "participantId,transactionDate,earningAmount\r\n1,2026-01-01,1\r\n",
    );
    let o = tieout(&run, &["--earnings", file.to_str().unwrap()]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("transactionCurrency"), "{}", stderr(&o));
    assert!(!dir.path().join("out-tieout").exists());
}

/// The one-page tie-out speaks the run's language: `--locale de` gives German
/// words, German numbers and German class names; the default is English.
#[test]
fn the_tieout_page_speaks_the_locale() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    for (locale, words) in [
        (
            "en",
            &[
                "Tie-out: was this partner paid",
                "Expected",
                "Paid",
                "underpaid",
                "not yet due",
            ][..],
        ),
        (
            "de",
            &[
                "Abgleich mit Microsofts Auszahlungen",
                "Erwartet",
                "Ausgezahlt",
                "zu wenig",
                "noch nicht fällig",
            ][..],
        ),
    ] {
        let out_dir = dir.path().join(format!("t-{locale}"));
        let o = tie_sample(&run, &out_dir, &["--locale", locale]);
        assert_code(&o, 1);
        // Every partner's page together: the underpaid row is one partner's.
        let mut text = String::new();
        for e in std::fs::read_dir(out_dir.join("partners")).unwrap() {
            let pdf = e.unwrap().path().join("tieout.pdf");
            text.push_str(&pdftext(&pdf));
        }
        for w in words {
            assert!(text.contains(w), "{locale}: no '{w}' in\n{text}");
        }
    }
}

/// `PORLEDGER_TIMINGS` prints one `timings:` line for a tie-out: each stage
/// named, and the earnings rows and tie-out rows counted.
#[test]
fn timings_name_the_tieout_stages() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let export = export_from_ledger(&run.join("ledger.csv"), ',', false, 1);
    let file = dir.path().join("earnings.csv");
    write(&file, &export);
    let out_dir = dir.path().join("t");
    let mut c = tieout_command(
        &run,
        &[
            "--earnings",
            file.to_str().unwrap(),
            "--tieout-out",
            out_dir.to_str().unwrap(),
            "--no-pdf",
        ],
    );
    let o = output(c.env("PORLEDGER_TIMINGS", "1"));
    assert_code(&o, 0);
    let err = stderr(&o);
    let line: Vec<&str> = err.lines().filter(|l| l.starts_with("timings: ")).collect();
    assert_eq!(line.len(), 1, "{err}");
    let rows = export.lines().count() - 1;
    for stage in [
        "tieout read (earnings ".to_string(),
        ", ledger ".to_string(),
        "), join ".to_string(),
        "not-eligible and history ".to_string(),
        "sort and count ".to_string(),
        "classify and write ".to_string(),
        "publish ".to_string(),
        "total ".to_string(),
        format!("earnings rows {rows},"),
        "tie-out rows ".to_string(),
    ] {
        assert!(line[0].contains(&stage), "{stage:?} missing: {}", line[0]);
    }
}

/// More earnings rows than the reader hands over at once (4,096 per batch),
/// with Growth duplicates and a reject among them: one thread (rows read
/// and added in turn) and two (read on one thread, added on another) give
/// the same tie-out, byte for byte, and every row is accounted for.
#[test]
fn a_large_export_ties_out_the_same_on_one_thread_and_two() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let export = export_from_ledger(&run.join("ledger.csv"), ',', false, 1);
    let mut lines = export.lines();
    let header = lines.next().unwrap();
    let mut text = format!("{header}\r\n");
    let mut first_seen = 0usize;
    for (i, row) in lines.enumerate() {
        text.push_str(row);
        text.push_str("\r\n");
        let cells: Vec<&str> = row.split(',').collect();
        // The same earning again (a Growth report), then 30 earnings of
        // nothing under IDs of their own.
        text.push_str(row);
        text.push_str("\r\n");
        for k in 0..30 {
            let mut c = cells.clone();
            let id = format!("Z{i:05}-{k:02}");
            c[0] = &id;
            c[8] = "0.00";
            text.push_str(&c.join(","));
            text.push_str("\r\n");
        }
        first_seen += 31;
    }
    text.push_str("Z-bad,426918,CSP,DPOR,C,S,2026-10-15,EUR,twelve,4,Sent\r\n");
    assert!(first_seen > 2 * 4096, "{first_seen} rows");
    let file = dir.path().join("earnings.csv");
    write(&file, &text);
    let mut dirs = Vec::new();
    for threads in ["1", "2"] {
        let to = dir.path().join(format!("t{threads}"));
        let o = tieout_on_threads(&run, &file, &to, threads);
        assert_code(&o, 1);
        let j = read_json(to.join("tieout.json"));
        let a = &j["accounting"];
        assert_eq!(a["balanced"], true, "{a}");
        let read = first_seen as u64 / 31 * 32 + 1;
        assert_eq!(a["rows_read"].as_u64(), Some(read), "{a}");
        assert_eq!(a["rows"].as_u64(), Some(first_seen as u64 + 1), "{a}");
        assert_eq!(a["matched"].as_u64(), Some(first_seen as u64), "{a}");
        assert_eq!(
            a["duplicates"].as_u64(),
            Some(first_seen as u64 / 31),
            "{a}"
        );
        assert_eq!(a["rejected"].as_u64(), Some(1), "{a}");
        assert_eq!(a["unmatched"], 0, "{a}");
        dirs.push(to);
    }
    crate::common::assert_same_tree(&dirs[0], &dirs[1]);
}

/// `tieout` of `run` against `earnings` into `to`, without PDFs, on
/// `threads` worker threads.
fn tieout_on_threads(
    run: &Path,
    earnings: &Path,
    to: &Path,
    threads: &str,
) -> std::process::Output {
    let mut c = tieout_command(
        run,
        &[
            "--earnings",
            earnings.to_str().unwrap(),
            "--tieout-out",
            to.to_str().unwrap(),
            "--no-pdf",
        ],
    );
    output(c.args(["--threads", threads]))
}

/// Earnings of one grain whose sum leaves the decimal range end the tie-out
/// (exit 2, the sum named, nothing published), whether the rows are added
/// on the reading thread or on another one, with many rows still to read.
/// Paid and expected each fit, their difference does not (a payment near
/// the lower end of the decimal range against an expected amount): fatal,
/// naming the grain, nothing published; never a panic.
#[test]
fn a_difference_out_of_range_is_fatal_not_a_panic() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let export = export_from_ledger(&run.join("ledger.csv"), ',', false, 1);
    let mut lines = export.lines();
    let mut text = format!("{}\n", lines.next().unwrap());
    let mut changed = false;
    for row in lines {
        let mut c: Vec<String> = row.split(',').map(String::from).collect();
        if !changed && c[8].parse::<Decimal>().unwrap() > Decimal::ZERO {
            c[8] = "-79228162514264337593543950335".into();
            changed = true;
        }
        text.push_str(&c.join(","));
        text.push('\n');
    }
    assert!(changed);
    fatal_on_one_thread_and_two(
        dir.path(),
        &run,
        &text,
        &[
            "the tie-out difference of partner",
            "does not fit a decimal exactly",
        ],
    );
}

/// Earnings whose sum has more digits than a decimal holds (one near the
/// decimal range, then small ones) stop the tie-out naming the partner and
/// the row: the small ones were dropped one by one by the decimal's
/// rounding, and the partner shown as paid exactly the large one.
#[test]
fn a_sum_that_would_be_rounded_is_fatal_not_rounded() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let export = export_from_ledger(&run.join("ledger.csv"), ',', false, 1);
    let mut text = format!("{}\n", export.lines().next().unwrap());
    text.push_str("BIG,426918,CSP,DPOR,C,S,2026-10-15,EUR,79228162514264337593543950000,4,Sent\n");
    for k in 0..10 {
        text.push_str(&format!(
            "S{k},426918,CSP,DPOR,C,S,2026-10-15,EUR,0.40,4,Sent\n"
        ));
    }
    fatal_on_one_thread_and_two(
        dir.path(),
        &run,
        &text,
        &[
            "earnings of partner 426918 in EUR (customer 'C', 2026-10",
            "does not fit a decimal exactly",
        ],
    );
}

/// Ties `run` out against the export `text` on 1 and on 2 threads: each
/// exits 2 saying every one of `says`, and publishes nothing.
fn fatal_on_one_thread_and_two(dir: &Path, run: &Path, text: &str, says: &[&str]) {
    let file = dir.join("earnings.csv");
    write(&file, text);
    for threads in ["1", "2"] {
        let to = dir.join(format!("t{threads}"));
        let o = tieout_on_threads(run, &file, &to, threads);
        assert_code(&o, 2);
        let err = stderr(&o);
        for s in says {
            assert!(err.contains(s), "{threads} threads: {err}");
        }
        assert!(!to.exists(), "{threads} threads published");
    }
}

#[test]
fn a_sum_out_of_range_is_fatal_on_one_thread_and_two() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let export = export_from_ledger(&run.join("ledger.csv"), ',', false, 1);
    let mut lines = export.lines();
    let mut text = format!("{}\r\n", lines.next().unwrap());
    let huge = "79228162514264337593543950335";
    for id in ["H1", "H2"] {
        text.push_str(&format!(
            "{id},426918,CSP,DPOR,C,S,2026-10-15,EUR,{huge},4,Sent\r\n"
        ));
    }
    let rows: Vec<&str> = lines.collect();
    for k in 0..30 {
        for row in &rows {
            let mut c: Vec<&str> = row.split(',').collect();
            let id = format!("{}-{k}", c[0]);
            c[0] = &id;
            text.push_str(&c.join(","));
            text.push_str("\r\n");
        }
    }
    fatal_on_one_thread_and_two(
        dir.path(),
        &run,
        &text,
        &["earnings of partner 426918 in EUR"],
    );
}

/// The month-close October run (partner `P-A`, two customers) tied out
/// against `text` (written as `e.csv`) into `t/`.
fn tie_october(text: &str) -> (tempfile::TempDir, std::process::Output) {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("run");
    let mut c = command();
    c.args(["run", "--period", "2026-10", "--billing"])
        .arg("sample-data/month-close/billing-2026-10.csv")
        .args([
            "--designations",
            "sample-data/month-close/designations-2026-10.csv",
            "--rules",
            "sample-data/rules.toml",
            "--no-pdf",
            "--quiet",
            "--out",
        ])
        .arg(&run);
    assert_published(&output(&mut c));
    let file = dir.path().join("e.csv");
    write(&file, text);
    let t = dir.path().join("t");
    let mut c = command();
    c.arg("tieout")
        .arg("--out")
        .arg(&run)
        .arg("--earnings")
        .arg(&file)
        .arg("--tieout-out")
        .arg(&t)
        .args(["--as-of", "2026-12-20", "--quiet"]);
    let o = output(&mut c);
    (dir, o)
}

/// An export that spells the run's partner `P-A` as `p-a` (and a partner
/// not in the run two ways, with non-ASCII letters): one partner each, in
/// one file with one total, shown as the run spells it (else as first read).
#[test]
fn a_partner_spelled_in_another_letter_case_is_one_partner() {
    let text = "earningId,participantId,transactionDate,transactionCurrency,earningAmount,customerTenantId,partnerAssociation\n\
                E1,p-a,2026-10-01,EUR,124.00,c1000000-0000-4000-8000-000000000001,DPOR\n\
                E2,p-a,2026-10-01,EUR,124.00,c2000000-0000-4000-8000-000000000002,DPOR\n\
                E3,p-a,2026-10-01,EUR,5.00,c9000000-0000-4000-8000-000000000009,DPOR\n\
                E4,MÜLLER-01,2026-10-01,EUR,15.00,cx,DPOR\n\
                E5,müller-01,2026-10-01,EUR,20.00,cy,DPOR\n";
    let (dir, o) = tie_october(text);
    assert_code(&o, 1);
    let t = dir.path().join("t");
    let partners: Vec<String> = std::fs::read_dir(t.join("partners"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(partners, ["M%C3%9CLLER-01", "P-A"]);
    let rows = csv_rows(&read(t.join("tieout.csv")));
    let col = |n: &str| rows[0].iter().position(|c| c == n).unwrap();
    let got: Vec<(&str, &str, &str)> = rows[1..]
        .iter()
        .map(|r| {
            (
                r[col("partner_id")].as_str(),
                r[col("class")].as_str(),
                r[col("paid")].as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("MÜLLER-01", "paid-not-expected", "15.00"),
            ("MÜLLER-01", "paid-not-expected", "20.00"),
            ("P-A", "matched", "124.00"),
            ("P-A", "matched", "124.00"),
            ("P-A", "paid-not-expected", "5.00"),
        ]
    );
    let json = read_json(t.join("tieout.json"));
    let totals: Vec<(String, String)> = json["partners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["partner_id"].as_str().unwrap().to_string(),
                p["paid"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        totals,
        [
            ("MÜLLER-01".to_string(), "35.00".to_string()),
            ("P-A".to_string(), "253.00".to_string()),
        ]
    );
    let mine = csv_rows(&read(t.join("partners/P-A/tieout.csv")));
    assert!(
        mine.iter()
            .any(|r| r.iter().any(|c| c == "paid-not-expected")),
        "{mine:?}"
    );
}

/// A row repeating an `earningId` with another amount is a reject naming
/// the first row, not a silent duplicate; the row accounting balances.
#[test]
fn a_conflicting_earning_id_repeat_is_rejected_not_dropped() {
    let text = "earningId,participantId,transactionDate,transactionCurrency,earningAmount,customerTenantId,partnerAssociation,transactionId\n\
                E1,P-A,2026-10-01,EUR,124.00,c1000000-0000-4000-8000-000000000001,DPOR,T1\n\
                E1,P-A,2026-10-02,EUR,124.00,c1000000-0000-4000-8000-000000000001,DPOR,T2\n\
                E1,P-A,2026-10-01,EUR,999.00,c1000000-0000-4000-8000-000000000001,DPOR,T3\n\
                E2,P-A,2026-10-01,EUR,124.00,c2000000-0000-4000-8000-000000000002,DPOR,T4\n";
    let (dir, o) = tie_october(text);
    assert_code(&o, 1);
    let t = dir.path().join("t");
    let json = read_json(t.join("tieout.json"));
    let a = &json["accounting"];
    assert_eq!(
        (
            a["rows_read"].as_u64(),
            a["duplicates"].as_u64(),
            a["rejected"].as_u64(),
            a["matched"].as_u64()
        ),
        (Some(4), Some(1), Some(1), Some(2)),
        "{a}"
    );
    assert_eq!(a["balanced"], serde_json::Value::Bool(true), "{a}");
    let rejects = csv_rows(&read(t.join("rejects.csv")));
    assert_eq!(rejects.len(), 2, "{rejects:?}");
    assert_eq!(rejects[1][1..4], ["4", "earningAmount", "999.00"]);
    assert!(
        rejects[1][4].contains("of ")
            && rejects[1][4].contains("e.csv:2, whose earningAmount is 124.00"),
        "{:?}",
        rejects[1]
    );
}

/// `--tieout-out` naming a file is named as `--tieout-out`; `explain` of a
/// tie-out row without a tie-out says there is none and how to make one.
#[test]
fn messages_about_the_tieout_directory_name_the_right_flag_and_command() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let file = dir.path().join("f");
    write(&file, "x\n");
    let o = tieout(
        &run,
        &[
            "--earnings",
            "sample-data/earnings",
            "--tieout-out",
            file.to_str().unwrap(),
            "--no-pdf",
        ],
    );
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains(&format!(
            "--tieout-out {}: exists and is not a directory",
            file.display()
        )),
        "{}",
        stderr(&o)
    );
    for extra in [
        vec![],
        vec!["--tieout-out", "/nonexistent/porledger-tieout"],
    ] {
        let mut c = command();
        c.args(["explain", "--out"])
            .arg(&run)
            .args(["--tieout-row", "T000001"])
            .args(&extra);
        let o = output(&mut c);
        assert_code(&o, 2);
        let e = stderr(&o);
        assert!(e.contains("no tie-out there"), "{e}");
        assert!(e.contains("porledger tieout --out"), "{e}");
        assert!(!e.contains("replace"), "{e}");
    }
}

/// A tie-out's directory given where a run's is read is named as a tie-out,
/// not reported as a run without its `summary.json` (at "line 0") or with a
/// manifest that is "not porledger's".
#[test]
fn a_tieout_directory_given_as_a_run_is_named_as_a_tieout() {
    let dir = run_sample(Sample::Main, &["--no-pdf", "--quiet"]);
    let run = dir.path().join("out");
    let o = tieout(&run, &["--earnings", "sample-data/earnings", "--no-pdf"]);
    assert!(o.status.code().is_some_and(|c| c <= 1), "{}", stderr(&o));
    let tie = dir.path().join("out-tieout");
    assert!(tie.join("tieout.json").exists());
    let t = tie.to_str().unwrap();
    for args in [
        vec!["explain", "--out", t, "--partner", "500275"],
        vec!["tieout", "--out", t, "--earnings", "sample-data/earnings"],
        vec!["close", "--out", t, "--history", "h.db"],
    ] {
        let mut c = command();
        c.current_dir(dir.path()).args(&args);
        let o = output(&mut c);
        assert_code(&o, 2);
        let e = stderr(&o);
        assert!(
            e.contains("holds a tie-out")
                && e.contains(&format!("{} reads a run's --out", args[0])),
            "{args:?}: {e}"
        );
    }
    assert!(!dir.path().join("h.db").exists());
}

/// Rules of one program `por` paying 4 % on POR designations, mapped to
/// every earning of association POR.
const POR_RULES: &str = "[[program]]\nid = \"por\"\nassociations = [\"POR\"]\nrate = \"0.04\"\n\
                         [[program.earnings]]\npartnerAssociation = \"POR\"\n";

/// A run of October 2026 of `billing` (rows after the header) with every
/// customer of `customers` designated POR to partner P1, tied out against
/// `earnings` (rows after the header) into `t/`, with its PDF.
fn tie_por(billing: &[String], customers: &[&str], earnings: &[String]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write(
        d.join("billing.csv"),
        format!(
            "CustomerId,CustomerName,SubscriptionId,ChargeStartDate,ChargeEndDate,ChargeType,\
             Subtotal,Currency,PublisherName,ProductName\n{}\n",
            billing.join("\n")
        ),
    );
    let des: Vec<String> = customers
        .iter()
        .map(|c| format!("{c},P1,Partner One,POR,,,,2025-01-01,"))
        .collect();
    write(
        d.join("des.csv"),
        format!(
            "customer_id,partner_id,partner_name,association,workload,subscription_id,share,\
             valid_from,valid_to\n{}\n",
            des.join("\n")
        ),
    );
    write(d.join("rules.toml"), POR_RULES);
    write(
        d.join("earn.csv"),
        format!(
            "earningId,participantId,programName,partnerAssociation,transactionDate,\
             transactionCurrency,earningAmount,earningRate,customerTenantId,subscriptionId\n{}\n",
            earnings.join("\n")
        ),
    );
    let mut c = command();
    c.current_dir(d).args([
        "run",
        "--period",
        "2026-10",
        "--billing",
        "billing.csv",
        "--designations",
        "des.csv",
        "--rules",
        "rules.toml",
        "--no-pdf",
        "--quiet",
        "--out",
        "out",
    ]);
    assert_published(&output(&mut c));
    let mut c = command();
    c.current_dir(d).args([
        "tieout",
        "--out",
        "out",
        "--earnings",
        "earn.csv",
        "--tieout-out",
        "t",
        "--as-of",
        "2026-12-31",
        "--quiet",
    ]);
    let o = output(&mut c);
    assert!(code(&o) < 2, "{}", stderr(&o));
    dir
}

/// A partner underpaid by 5,000.00 EUR on one customer and by 100,000 VND
/// (about 3.60 EUR) on each of 30: the page never ranks VND against EUR, so
/// the EUR row is on it, with the largest VND rows, and the rest counted.
#[test]
fn the_tieout_page_shows_the_largest_differences_of_every_currency() {
    let mut billing = vec![
        "c-eur,Euro GmbH,s-eur,10/1/2026,10/31/2026,cycleCharge,250000.00,EUR,Microsoft Corporation,M365"
            .to_string(),
    ];
    let mut customers = vec!["c-eur".to_string()];
    let mut earnings = vec!["e0,P1,CSP,POR,2026-10-01,EUR,5000.00,4,c-eur,s-eur".to_string()];
    for i in 1..=30 {
        billing.push(format!(
            "c-vn{i},Viet {i},s-vn{i},10/1/2026,10/31/2026,cycleCharge,25000000,VND,Microsoft Corporation,M365"
        ));
        customers.push(format!("c-vn{i}"));
        earnings.push(format!(
            "e{i},P1,CSP,POR,2026-10-01,VND,900000,4,c-vn{i},s-vn{i}"
        ));
    }
    let customers: Vec<&str> = customers.iter().map(String::as_str).collect();
    let dir = tie_por(&billing, &customers, &earnings);
    let t = dir.path().join("t");
    let csv = read(t.join("partners/P1/tieout.csv"));
    assert_eq!(csv.matches(",underpaid,").count(), 31, "{csv}");
    let text = pdftext(&t.join("partners/P1/tieout.pdf"));
    let shown: Vec<&str> = text
        .lines()
        .map(str::trim_start)
        .filter(|l| l.starts_with("T0"))
        .collect();
    assert!(shown.len() > 2 && shown.len() < 31, "{text}");
    // EUR first (the totals' order), then VND.
    assert!(shown[0].contains("c-eur"), "{text}");
    assert!(shown[1..].iter().all(|l| l.contains("c-vn")), "{text}");
    assert!(
        text.contains(&format!(
            "{} more differing rows in tieout.csv",
            31 - shown.len()
        )),
        "{text}"
    );
    assert!(
        text.contains("Differences by currency, largest first"),
        "{text}"
    );
}

/// Ten subscriptions accruing 0.005 EUR each: the statement's line is
/// 0.05 EUR, the tie-out rounds each subscription's grain (0.01 each, 0.10
/// in all). tieout.json shows the statement's total beside the expected
/// total, and the page does not claim they are rounded alike.
#[test]
fn the_expected_total_is_shown_beside_the_statement_total() {
    let billing: Vec<String> = (1..=10)
        .map(|i| {
            format!(
                "c1,Cust,s{i},10/1/2026,10/31/2026,cycleCharge,0.125,EUR,Microsoft Corporation,M365"
            )
        })
        .collect();
    let earnings: Vec<String> = (1..=10)
        .map(|i| format!("e{i},P1,CSP,POR,2026-10-01,EUR,0.01,4,c1,s{i}"))
        .collect();
    let dir = tie_por(&billing, &["c1"], &earnings);
    let statement = read(dir.path().join("out/partners/P1/statement.csv"));
    assert!(statement.contains("\ntotal,EUR,1.25,0.05"), "{statement}");
    let j = read_json(dir.path().join("t/tieout.json"));
    let p = &j["partners"][0];
    assert_eq!(
        (&p["partner_id"], &p["expected"], &p["statement_total"]),
        (&"P1".into(), &"0.10".into(), &"0.05".into()),
        "{p}"
    );
    assert!(j["totals"][0].get("statement_total").is_none());
    let text = pdftext(&dir.path().join("t/partners/P1/tieout.pdf"));
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(!flat.contains("rounded as on the statement"), "{flat}");
    assert!(
        flat.contains("each row's amount rounded to the currency's minor unit"),
        "{flat}"
    );
}
