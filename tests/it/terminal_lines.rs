//! Names and IDs from the inputs on a terminal: a newline, carriage return,
//! NEL or line separator inside one is shown escaped (`\u{a}`, ...), so the
//! rest of the value stays on the line that quotes it and can never pass for
//! a line of porledger's own (`explain`, `history`, `validate`, and the
//! messages on stderr). An ID holding one is a rejected line (an ID holds no
//! control character), quoted escaped among the rejects.

use std::path::Path;

use crate::common::{assert_code, command, output, repo, stderr, stdout};

/// A line porledger prints itself in `explain`, forged into a partner name.
const FORGED_SUM: &str =
    "  sum of 1 exact amounts 0.00 -> rounded half-up EUR = 0.00 (matches the statement)";
/// A line forged into a subscription ID (a CSV field quoted across lines).
const FORGED_TOTAL: &str = "FORGED total EUR: 0.00 (the sum of the rounded lines above)";

fn name() -> String {
    format!("Evil GmbH\n{FORGED_SUM}\u{2028}FORGED after LS\rFORGED after CR")
}

fn subscription() -> String {
    format!("s-1\r\n{FORGED_TOTAL}\u{85}FORGED after NEL")
}

/// A customer name with a forged line of its own.
fn customer_name() -> String {
    format!("Cust\n{FORGED_TOTAL}\u{85}FORGED after NEL")
}

/// A CSV field, quoted.
fn q(v: &str) -> String {
    format!("\"{}\"", v.replace('"', "\"\""))
}

fn write_inputs(dir: &Path) {
    let des = format!(
        "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n\
         c1,P-1,{},DPOR,,,,2024-01-01,\n",
        q(&name())
    );
    std::fs::write(dir.join("des.csv"), des).unwrap();
    let bill = format!(
        "CustomerId,CustomerName,SubscriptionId,ProductId,SkuId,ChargeStartDate,ChargeEndDate,ChargeType,Subtotal,Currency,PublisherName\n\
         c1,{},s-1,p,s,10/1/2026,10/31/2026,cycleCharge,100.00,EUR,Microsoft Corporation\n\
         c1,Cust,{},p,s,10/1/2026,10/31/2026,cycleCharge,100.00,EUR,Microsoft Corporation\n",
        q(&customer_name()),
        q(&subscription())
    );
    std::fs::write(dir.join("bill.csv"), bill).unwrap();
}

/// No line of `text` is one of the forged ones, and none holds a raw line
/// break of any kind.
#[track_caller]
fn assert_no_forged_line(what: &str, text: &str) {
    for line in text.split('\n') {
        let t = line.trim_start();
        assert!(
            !t.starts_with("sum of 1 exact amounts 0.00") && !t.starts_with("FORGED"),
            "{what}: a forged line:\n{text}"
        );
    }
    for c in ['\r', '\u{85}', '\u{2028}', '\u{2029}'] {
        assert!(!text.contains(c), "{what}: a raw {c:?}:\n{text}");
    }
}

/// The partner name as one escaped line.
fn escaped_name() -> String {
    format!("Evil GmbH\\u{{a}}{FORGED_SUM}\\u{{2028}}FORGED after LS\\u{{d}}FORGED after CR")
}

fn escaped_subscription() -> String {
    format!("s-1\\u{{d}}\\u{{a}}{FORGED_TOTAL}\\u{{85}}FORGED after NEL")
}

#[test]
fn names_and_ids_with_line_breaks_stay_on_their_line_in_explain_history_and_validate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_inputs(d);
    let rules = repo().join("sample-data/rules.toml");
    let run = output(
        command()
            .current_dir(d)
            .args(["run", "--no-pdf", "--period", "2026-10"])
            .args(["--billing", "bill.csv", "--designations", "des.csv"])
            .arg("--rules")
            .arg(&rules)
            .args(["--out", "out"]),
    );
    assert_code(&run, 1);
    let err = stderr(&run);
    assert_no_forged_line("run", &err);
    // The subscription ID with line breaks: a rejected line, quoted on one.
    assert!(
        err.lines()
            .any(|l| l.contains("SubscriptionId") && l.contains(&escaped_subscription())),
        "{err}"
    );

    let explain =
        output(
            command()
                .current_dir(d)
                .args(["explain", "--out", "out", "--partner", "P-1"]),
        );
    assert_code(&explain, 0);
    let text = stdout(&explain);
    assert_no_forged_line("explain", &text);
    assert!(
        text.lines().next().unwrap().contains(&escaped_name()),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("  bill.csv:2  ") && l.contains("subscription s-1")),
        "{text}"
    );
    // porledger's own lines are still there, as before.
    assert!(
        text.lines()
            .any(|l| l.starts_with("  sum of 1 exact amounts 4.00 -> rounded")),
        "{text}"
    );

    let close =
        output(
            command()
                .current_dir(d)
                .args(["close", "--out", "out", "--history", "h.db"]),
        );
    assert_code(&close, 0);
    assert_no_forged_line("close", &stderr(&close));
    let history =
        output(
            command()
                .current_dir(d)
                .args(["history", "--history", "h.db", "--partner", "P-1"]),
        );
    assert_code(&history, 0);
    let text = stdout(&history);
    assert_no_forged_line("history", &text);
    assert!(
        text.lines()
            .any(|l| l.starts_with("  P-1") && l.contains(&escaped_name())),
        "{text}"
    );
    let explain = output(command().current_dir(d).args([
        "explain",
        "--out",
        "out",
        "--partner",
        "P-1",
        "--history",
        "h.db",
    ]));
    assert_code(&explain, 0);
    assert_no_forged_line("explain --history", &stdout(&explain));

    // validate: a rejected value and a designation's values in the problems.
    let bill = format!(
        "CustomerId,CustomerName,SubscriptionId,ProductId,SkuId,ChargeStartDate,ChargeEndDate,ChargeType,Subtotal,Currency,PublisherName\n\
         c1,Cust,s-2,p,s,10/1/2026,10/31/2026,cycleCharge,{},EUR,Microsoft Corporation\n",
        q(&format!("1x\n{FORGED_TOTAL}\u{2029}FORGED after PS"))
    );
    std::fs::write(d.join("bad.csv"), bill).unwrap();
    let des = format!(
        "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n\
         c1,P-1,{},DPOR,,,,2024-01-01,\n\
         c2,P-2,x,DPOR,,s-2,{},2024-01-01,\n\
         c3,P-3,x,DPOR,,{},,2024-01-01,\n",
        q(&name()),
        q(&format!("0.5\n{FORGED_SUM}")),
        q(&subscription())
    );
    std::fs::write(d.join("des2.csv"), des).unwrap();
    let validate = output(
        command()
            .current_dir(d)
            .args(["validate", "--period", "2026-10"])
            .args(["--billing", "bad.csv", "--designations", "des2.csv"])
            .arg("--rules")
            .arg(&rules),
    );
    assert_code(&validate, 1);
    let text = stdout(&validate);
    assert_no_forged_line("validate", &text);
    assert!(
        text.contains(&format!(
            "1x\\u{{a}}{FORGED_TOTAL}\\u{{2029}}FORGED after PS"
        )),
        "{text}"
    );
    assert!(text.contains(&format!("0.5\\u{{a}}{FORGED_SUM}")), "{text}");
    assert!(
        text.contains(&format!("'{}': the ID holds", escaped_subscription())),
        "{text}"
    );
}

/// A fatal error quoting a value prints as one line too.
#[test]
fn an_error_quoting_an_id_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let o = output(command().current_dir(dir.path()).args([
        "explain",
        "--out",
        "out",
        "--tieout-row",
        &format!("T-1\n{FORGED_SUM}"),
        "--tieout-out",
        "nowhere",
    ]));
    assert_code(&o, 2);
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_no_forged_line("error", &err);
}
