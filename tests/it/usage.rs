//! End-to-end tests of `--usage`: the real binary on hand-made fixtures whose
//! results were computed by hand (see the comments next to each number).

use std::path::{Path, PathBuf};

use crate::common::{
    assert_code, assert_same_tree, code, command, csv_rows, output, porledger, read, stderr,
    stdout, write,
};

const T1: &str = "11111111-1111-1111-1111-111111111111";
const T2: &str = "22222222-2222-2222-2222-222222222222";
const T3: &str = "33333333-3333-3333-3333-333333333333";
const T4: &str = "44444444-4444-4444-4444-444444444444";
const T5: &str = "55555555-5555-5555-5555-555555555555";
const T6: &str = "66666666-6666-6666-6666-666666666666";
const T7: &str = "77777777-7777-7777-7777-777777777777";
const T8: &str = "88888888-8888-8888-8888-888888888888";

const RULES: &str = r#"
[[program]]
id = "cpor-usage"
associations = ["CPOR"]
basis = "usage"
[[program.workload]]
name = "Teams"
targets = ["0.15", "0.40"]
unit_rates = ["1.00", "2.50"]
cap_units = 50
[[program.workload]]
name = "Exchange"
unit_rates = ["0.50", "1.00"]

[[program]]
id = "por-tiered"
associations = ["DPOR"]
tiers = [{ min_attainment = "0.15", rate = "0.02" }, { min_attainment = "0.40", rate = "0.05" }]

[[product]]
match = "Microsoft 365 E3"
workloads = ["Exchange", "Teams"]

[usage]
lookback_months = 12
[[usage.competency]]
workload = "Teams"
level = "silver"
seats = 1000
customers = 3
[[usage.competency]]
workload = "Teams"
level = "gold"
seats = 1500
customers = 5
[[usage.capability]]
metric = "net-customer-adds"
max_points = 20
threshold = 10
[[usage.capability]]
metric = "usage-growth"
max_points = 30
threshold = 100
[[usage.capability]]
metric = "deployments"
max_points = 25
threshold = 5
"#;

fn designations() -> String {
    format!(
        "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n\
         {T1},500001,Alpha,CPOR,Teams,,,2026-01-01,\n\
         {T1},500001,Alpha,CPOR,Exchange Online,,,2026-10-15,\n\
         {T2},500002,Beta,CPOR,Teams,,,2026-01-01,\n\
         {T3},500001,Alpha,CPOR,Teams,,,2026-01-01,\n\
         {T3},500003,Gamma,DPOR,,,,2025-01-01,\n\
         {T4},500002,Beta,CPOR,teams,,,2026-01-01,\n\
         {T6},500002,Beta,CPOR,Teams,,,2026-01-01,\n\
         {T7},500002,Beta,CPOR,Teams,,,2026-01-01,\n\
         {T8},500002,Beta,CPOR,Teams,,,2026-01-01,\n"
    )
}

fn billing() -> String {
    format!(
        "CustomerId,CustomerName,SubscriptionId,ChargeStartDate,ChargeEndDate,ChargeType,ProductName,Quantity,Subtotal,Currency,PublisherName\n\
         {T3},Tailspin,sub-3,10/1/2026,10/31/2026,cycleCharge,Microsoft 365 E3,40,1440.00,EUR,Microsoft Corporation\n\
         {T4},Woodgrove,sub-4,10/1/2026,10/31/2026,cycleCharge,microsoft 365 e3,10,360.00,EUR,Microsoft Corporation\n"
    )
}

/// CPOR usage report: BOM, camelCase headers, columns reordered.
fn cpor_report() -> String {
    let h = "\u{feff}date,customerTenantId,customerName,workloadName,monthlyActiveUsers,paidAvailableUnits,claimId,mpnId,dateAssociated,partnerAttributionType";
    let rows = [
        format!("2026-08-01,{T1},Contoso,Teams,20,100,c1,500001,2026-01-01,CPOR"), // 2 history
        format!("2026-09-01,{T1},Contoso,Teams,30,100,c1,500001,2026-01-01,CPOR"), // 3 history
        format!("10/1/2026,{T1},Contoso,Teams,40,100,c1,500001,2026-01-01,CPOR"),  // 4 40% exactly
        format!("2026-10-01,{T1},Contoso,Exchange,60,100,c2,500001,2026-10-15,CPOR"), // 5 before claim
        format!("2026-10-01,{T2},Fabrikam,Teams,5,0,c3,500002,2026-01-01,CPOR"),      // 6 PAU 0
        format!("2026-09-01,{T2},Fabrikam,Teams,abc,10,c3,500002,2026-01-01,CPOR"),   // 7 reject
        format!("2026-10-01,{T5},Nobody,Teams,30,100,,,,"), // 8 no designation
        format!("2026-07-01,{T1},Contoso,Teams,15,100,c1,500001,2026-01-01,CPOR"), // 9 history
        format!("2026-10-01,{T6},Litware,Teams,500,1000,c4,500002,2026-01-01,CPOR"), // 10 cap
        format!("2026-10-01,{T7},Adatum,Teams,15,100,c5,500002,2026-01-01,CPOR"), // 11 15% exactly
        format!("2026-10-01,{T8},Proseware,Teams,14,100,c6,500002,2026-01-01,CPOR"), // 12 below
    ];
    format!("{h}\n{}\n", rows.join("\n"))
}

const GRAPH_HEADER: &str = "Report Refresh Date,Exchange Active,Exchange Inactive,OneDrive Active,OneDrive Inactive,SharePoint Active,SharePoint Inactive,Skype For Business Active,Skype For Business Inactive,Yammer Active,Yammer Inactive,Teams Active,Teams Inactive,Office 365 Active,Office 365 Inactive,Report Period";

/// Graph export of T3, tenant from the file name.
fn graph_t3() -> String {
    format!(
        "{GRAPH_HEADER}\n\
         2026-09-30,10,30,,,,,,,,,5,35,,,30\n\
         2026-10-31,30,10,,,,,,,,,12,28,,,30\n"
    )
}

/// Graph export of T4 with camelCase headers, tenant from the map.
fn graph_t4() -> String {
    "reportRefreshDate;teamsActive;teamsInactive;reportPeriod\n\
     2026-10-31;8;2;D30\n\
     31/10/2026;9;1;D30\n"
        .to_string()
}

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        let w = |p: &str, t: &str| write(root.join(p), t);
        w("rules.toml", RULES);
        w("designations.csv", &designations());
        w("billing/invoice.csv", &billing());
        w("usage/cpor.csv", &cpor_report());
        w(&format!("graph/{T3}.csv"), &graph_t3());
        w("graph/tenant4-usage.csv", &graph_t4());
        w(
            "tenant-map.csv",
            &format!("file,customer_id\ntenant4-usage.csv,{T4}\n"),
        );
        Fixture { _dir: dir, root }
    }

    fn p(&self, rel: &str) -> String {
        self.root.join(rel).to_string_lossy().into_owned()
    }

    fn run(&self, extra: &[&str]) -> (i32, String) {
        let out = self.run_into("out", "2", extra);
        (code(&out), stderr(&out))
    }

    /// The usage run into `<root>/<out>` with `--threads <threads>`.
    fn run_into(&self, out: &str, threads: &str, extra: &[&str]) -> std::process::Output {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--period".into(),
            "2026-10".into(),
            "--billing".into(),
            self.p("billing"),
            "--designations".into(),
            self.p("designations.csv"),
            "--rules".into(),
            self.p("rules.toml"),
            "--out".into(),
            self.p(out),
            "--threads".into(),
            threads.into(),
            "--usage".into(),
            self.p("usage/cpor.csv"),
            self.p(&format!("graph/{T3}.csv")),
            self.p("graph/tenant4-usage.csv"),
            "--usage-tenant-map".into(),
            self.p("tenant-map.csv"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        porledger(&args)
    }

    fn read(&self, rel: &str) -> String {
        read(self.root.join("out").join(rel))
    }
}

fn find<'a>(rows: &'a [Vec<String>], pred: &dyn Fn(&[String]) -> bool) -> &'a Vec<String> {
    rows.iter()
        .find(|r| pred(r))
        .unwrap_or_else(|| panic!("no such row in {rows:?}"))
}

#[test]
fn usage_run_end_to_end() {
    let f = Fixture::new();
    let (code, err) = f.run(&[]);
    assert_eq!(code, 1, "two usage rows are rejected: {err}");

    // summary.csv: usage accruals in USD, the tiered revenue accrual in EUR.
    let summary = csv_rows(&f.read("summary.csv"));
    let amounts: Vec<(String, String, String, String)> = summary[1..]
        .iter()
        .map(|r| (r[0].clone(), r[2].clone(), r[3].clone(), r[6].clone()))
        .collect();
    assert_eq!(
        amounts,
        [
            // T1 Teams: min(40,100) - HWM 30 = 10 units x 2.50 (40% reached) = 25.00
            // T3 Teams (Graph, PAU 40 from billing): 12 - 5 = 7 units x 1.00 (30%) = 7.00
            (
                "500001".into(),
                "cpor-usage".into(),
                "USD".into(),
                "32.00".into()
            ),
            // T6: 500 units capped at 50 x 2.50 = 125.00; T7: 15 x 1.00 (15% reached) = 15.00;
            // T4 (Graph, tenant map, PAU 10): 8 x 2.50 = 20.00
            (
                "500002".into(),
                "cpor-usage".into(),
                "USD".into(),
                "160.00".into()
            ),
            // T3 M365 E3 maps to Exchange (30/40 = 0.75) and Teams (12/40 = 0.3): lowest 0.3
            // reaches the 0.15 tier: 1440.00 x 0.02 = 28.80
            (
                "500003".into(),
                "por-tiered".into(),
                "EUR".into(),
                "28.80".into()
            ),
        ]
    );

    // Rejects: file, line, column as written, value.
    let rejects = csv_rows(&f.read("rejects.csv"));
    assert_eq!(rejects.len(), 3, "{rejects:?}");
    assert!(rejects[1][0].ends_with("cpor.csv"));
    assert_eq!(
        &rejects[1][1..4],
        &["7".to_string(), "monthlyActiveUsers".into(), "abc".into()]
    );
    assert!(rejects[2][0].ends_with("tenant4-usage.csv"));
    assert_eq!(
        &rejects[2][1..4],
        &[
            "3".to_string(),
            "reportRefreshDate".into(),
            "31/10/2026".into()
        ]
    );

    // Every usage row accounted for.
    let summary_json: serde_json::Value = serde_json::from_str(&f.read("summary.json")).unwrap();
    let u = &summary_json["usage"];
    let t = &u["total"];
    assert_eq!(t["rows"], 15);
    assert_eq!(t["accrued"], 5);
    assert_eq!(t["not_eligible"], 8);
    assert_eq!(t["rejected"], 2);
    assert_eq!(t["balanced"], true);
    let r = &t["not_eligible_by_reason"];
    assert_eq!(r["outside-period"], 4);
    assert_eq!(r["before-association"], 1);
    assert_eq!(r["pau-zero"], 1);
    assert_eq!(r["no-designation"], 1);
    assert_eq!(r["below-target"], 1);
    let files = u["files"].as_array().unwrap();
    assert_eq!(
        files
            .iter()
            .map(|f| (f["rows"].as_u64().unwrap(), f["accrued"].as_u64().unwrap()))
            .collect::<Vec<_>>(),
        [(11, 3), (2, 1), (2, 1)]
    );

    // Not eligible: CPOR usage before the claim's valid_from is not paid.
    let ne = csv_rows(&f.read("not-eligible.csv"));
    let before = find(&ne, &|r| r[1] == "5" && r[0].ends_with("cpor.csv"));
    assert_eq!(before[7], "before-association");
    assert!(before[8].contains("valid_from 2026-10-15"), "{before:?}");
    assert_eq!(find(&ne, &|r| r[1] == "6")[7], "pau-zero");
    assert_eq!(find(&ne, &|r| r[1] == "12")[7], "below-target");

    // Ledger: provenance of usage accruals is the usage file and line.
    let ledger = csv_rows(&f.read("ledger.csv"));
    let t6 = find(&ledger, &|r| r[1] == T6);
    assert_eq!(
        (
            &t6[0][..],
            &t6[4][..],
            &t6[8][..],
            &t6[9][..],
            &t6[10][..],
            &t6[12][..]
        ),
        ("500002", "Teams", "10", "50", "2.5", "125.00")
    );
    assert!(t6[7].ends_with("cpor.csv"));
    // A usage accrual's month is the month of its usage record.
    assert_eq!(t6[6], t6[5][..7]);
    let t3 = find(&ledger, &|r| r[1] == T3 && r[2] == "cpor-usage");
    assert!(t3[7].ends_with(&format!("{T3}.csv")));
    assert_eq!((&t3[8][..], &t3[9][..]), ("3", "7"));

    // attainment.csv: every tenant-workload of the period, sorted.
    let att = csv_rows(&f.read("attainment.csv"));
    let keys: Vec<(String, String)> = att[1..]
        .iter()
        .map(|r| (r[0].clone(), r[2].clone()))
        .collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    let t1 = find(&att, &|r| r[0] == T1 && r[2] == "Teams");
    // mau, pau, source, attainment, target, prior hwm, compensable
    assert_eq!(
        &t1[4..11],
        &["40", "100", "usage-report", "0.4", "0.40", "30", "10"].map(String::from)
    );
    let t2 = find(&att, &|r| r[0] == T2);
    assert_eq!(t2[7], "");
    assert!(t2[14].contains("not computable"));
    let t3a = find(&att, &|r| r[0] == T3 && r[2] == "Teams");
    assert_eq!(
        &t3a[4..11],
        &["12", "40", "billing", "0.3", "0.15", "5", "7"].map(String::from)
    );

    // Partner statement: extra attainment section and the tier explanation.
    let st = f.read("partners/500003/statement.csv");
    assert!(st.contains("attainment,association,customer_id"), "{st}");
    assert!(st.contains(&format!("attainment,DPOR,{T3}")), "{st}");
    assert!(
        st.contains("lowest attainment of the product's workloads: Teams 0.3"),
        "{st}"
    );
    // explain prints the attainment tier behind the tiered rate.
    let ex = porledger(["explain", "--out", &f.p("out"), "--partner", "500003"]);
    let err = stderr(&ex);
    let ex = String::from_utf8_lossy(&ex.stdout);
    assert!(ex.contains("attainment tier: product "), "{ex}{err}");
    assert!(
        ex.contains("lowest attainment of the product's workloads: Teams 0.3"),
        "{ex}"
    );
    assert!(ex.contains("x rate 0.02 x share"), "{ex}");
    // Every ledger row has the header's 20 columns (usage rows included).
    for l in csv_rows(&f.read("ledger.csv")) {
        assert_eq!(l.len(), 20, "{l:?}");
    }

    // Partner metrics.
    let pa = csv_rows(&f.read("partners/500002/attainment.csv"));
    let silver = find(&pa, &|r| r[0] == "competency" && r[2] == "silver");
    // PAU of Teams: 0 + 10 + 1000 + 100 + 100 = 1210 seats, 4 customers with seats.
    assert_eq!(
        &silver[3..8],
        &["1210", "1000", "4", "3", "yes"].map(String::from)
    );
    let gold = find(&pa, &|r| r[0] == "competency" && r[2] == "gold");
    assert_eq!(gold[7], "no");
    // 5 CPOR customers now, 0 a year ago: 5 / 10 x 20 = 10 points.
    let adds = find(&pa, &|r| {
        r[0] == "capability" && r[1] == "net-customer-adds"
    });
    assert_eq!((&adds[3][..], &adds[6][..]), ("5", "10"));
    // T6 (50%) and T4 (80%) are deployments: 2 / 5 x 25 = 10 points.
    let dep = find(&pa, &|r| r[0] == "capability" && r[1] == "deployments");
    assert_eq!((&dep[3][..], &dep[6][..]), ("2", "10"));
    let p1 = csv_rows(&f.read("partners/500001/attainment.csv"));
    // T1 Teams 40 - 15 (July, first month since the association) + T3 Teams 12 - 5 = 32:
    // 32 / 100 x 30 = 9.6 points; the Exchange claim started in October: no growth yet.
    let growth = find(&p1, &|r| r[0] == "capability" && r[1] == "usage-growth");
    assert_eq!((&growth[3][..], &growth[6][..]), ("32", "9.6"));
    assert_eq!(find(&p1, &|r| r[0] == "capability_points")[1], "18.6");
    let partners = u["partners"].as_array().unwrap();
    assert_eq!(partners[1]["partner_id"], "500002");
    assert_eq!(partners[1]["capability_points"], "20");
}

/// The usage run with 1, 2 and 4 threads (and small chunks), each into a
/// fresh folder: the same exit code and every output file byte for byte the same.
#[test]
fn output_is_deterministic_across_threads() {
    let f = Fixture::new();
    let runs = [
        ("t1", "1", &[][..]),
        ("t2", "2", &[][..]),
        ("t4", "4", &[][..]),
        ("t4-small-chunks", "4", &["--chunk-bytes", "4096"][..]),
        (
            "t2-spilled",
            "2",
            &["--chunk-bytes", "4096", "--spill-after", "1"][..],
        ),
    ];
    for (out, threads, extra) in runs {
        assert!(!f.root.join(out).exists());
        // Two usage rows are rejected (see usage_run_end_to_end): exit 1.
        assert_code(&f.run_into(out, threads, extra), 1);
        assert!(f.root.join(out).join("attainment.csv").is_file(), "{out}");
    }
    for (out, _, _) in &runs[1..] {
        assert_same_tree(&f.root.join("t1"), &f.root.join(out));
    }
}

#[test]
fn graph_without_tenant_is_fatal_and_validate_reports_usage() {
    let f = Fixture::new();
    let bad = Path::new(&f.root).join("graph/unknown.csv");
    std::fs::write(&bad, graph_t3()).unwrap();
    let out = porledger([
        "validate",
        "--billing",
        &f.p("billing"),
        "--designations",
        &f.p("designations.csv"),
        "--rules",
        &f.p("rules.toml"),
        "--usage",
        &bad.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not name its tenant"), "{err}");

    let out = porledger([
        "validate",
        "--period",
        "2026-10",
        "--billing",
        &f.p("billing"),
        "--designations",
        &f.p("designations.csv"),
        "--rules",
        &f.p("rules.toml"),
        "--usage",
        &f.p("usage/cpor.csv"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("Partner Center CPOR usage report, 11 rows, 1 rejected"),
        "{text}"
    );
    assert!(
        text.contains("column 'monthlyActiveUsers' value 'abc'"),
        "{text}"
    );
}

/// A CPOR row repeated in the designations file does not give its partner a
/// second part of the split: two partners of one tenant and workload get
/// half each, however often one of them is listed.
#[test]
fn a_repeated_cpor_row_does_not_double_a_partners_share() {
    let f = Fixture::new();
    let extra = format!(
        "{T7},500002,Beta,CPOR,Teams,,,2026-01-01,\n{T7},500009,Iota,CPOR,Teams,,,2026-01-01,\n"
    );
    write(f.root.join("designations.csv"), &(designations() + &extra));
    let (c, err) = f.run(&[]);
    assert!(c <= 1, "{err}");
    let ledger = csv_rows(&f.read("ledger.csv"));
    let t7: Vec<&Vec<String>> = ledger
        .iter()
        .filter(|r| r[1] == T7 && r[2] == "cpor-usage")
        .collect();
    let got: Vec<(&str, &str)> = t7.iter().map(|r| (r[0].as_str(), r[11].as_str())).collect();
    assert_eq!(got, [("500002", "0.5"), ("500009", "0.5")], "{t7:?}");
    assert_eq!(t7[0][12], t7[1][12]);
}

/// A Graph export's row counts every workload at once: `explain` shows each
/// usage accrual with its own workload's attainment row (Exchange 80 of 100
/// users, Teams 30), not the last workload's facts under both amounts.
#[test]
fn explain_shows_each_workload_of_a_graph_row_with_its_own_facts() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path();
    let t = "a1b2c3d4-0009-4000-8000-000000000009";
    write(
        dir.join("billing.csv"),
        format!(
            "CustomerId,CustomerName,SubscriptionId,ChargeStartDate,ChargeEndDate,ChargeType,ProductName,Subtotal,Currency,PublisherName,Quantity\n\
             {t},Contoso,s1,10/1/2026,10/31/2026,cycleCharge,Microsoft 365 E3,3600.00,USD,Microsoft Corporation,100\n"
        ),
    );
    write(
        dir.join("des.csv"),
        format!(
            "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n\
             {t},PA,Alpha,CPOR,Exchange,,,2025-01-01,\n{t},PA,Alpha,CPOR,Teams,,,2025-01-01,\n"
        ),
    );
    write(
        dir.join("rules.toml"),
        "[[program]]\nid = \"usage\"\nassociations = [\"CPOR\"]\nbasis = \"usage\"\ncurrency = \"USD\"\n\
         [[program.workload]]\nname = \"Exchange\"\nunit_rates = [\"0.50\", \"1.00\"]\n\
         [[program.workload]]\nname = \"Teams\"\nunit_rates = [\"1.00\", \"2.50\"]\n\
         [[product]]\nmatch = \"Microsoft 365 E3\"\nworkloads = [\"Exchange\", \"Teams\"]\n",
    );
    write(
        dir.join(format!("{t}.csv")),
        "Report Refresh Date,Exchange Active,Exchange Inactive,Teams Active,Teams Inactive,Report Period\n\
         2026-10-31,80,20,30,70,30\n",
    );
    let mut c = command();
    c.current_dir(dir)
        .args(["run", "--period", "2026-10", "--billing", "billing.csv"])
        .args([
            "--designations",
            "des.csv",
            "--rules",
            "rules.toml",
            "--no-pdf",
        ])
        .args(["--usage", &format!("{t}.csv"), "--out", "out", "-q"]);
    assert_code(&output(&mut c), 0);
    let mut c = command();
    c.current_dir(dir)
        .args(["explain", "--out", "out", "--partner", "PA"]);
    let o = output(&mut c);
    assert_code(&o, 0);
    let text = stdout(&o);
    let block = |workload: &str| {
        let at = text
            .find(&format!("workload {workload}"))
            .unwrap_or_else(|| panic!("no {workload}: {text}"));
        text[at..].lines().take(3).collect::<Vec<_>>().join("\n")
    };
    let exchange = block("Exchange");
    assert!(
        exchange.contains("80 monthly active users of 100 paid units")
            && exchange.contains("80 units x rate 1.0"),
        "{exchange}"
    );
    let teams = block("Teams");
    assert!(
        teams.contains("30 monthly active users of 100 paid units")
            && teams.contains("30 units x rate 1.0"),
        "{teams}"
    );

    // Tied out, the usage accrual's row is explained as usage rows (units
    // times a unit rate), not as billing lines.
    write(
        dir.join("earnings.csv"),
        format!(
            "participantId,customerTenantId,transactionDate,transactionCurrency,earningAmount\n\
             PB,{t},2026-10-15,USD,1.00\n"
        ),
    );
    let mut c = command();
    c.current_dir(dir)
        .args(["tieout", "--out", "out", "--earnings", "earnings.csv"])
        .args(["--as-of", "2026-11-10", "--quiet"]);
    output(&mut c);
    let rows = csv_rows(&read(dir.join("out-tieout").join("tieout.csv")));
    let program = rows[0].iter().position(|h| h == "program_id").unwrap();
    let explanation = rows[0].iter().position(|h| h == "explanation").unwrap();
    let row = find(&rows, &|r| r[program] == "usage");
    assert!(row[explanation].contains("(1 usage row)"), "{row:?}");
    assert!(!row[explanation].contains("billing line"), "{row:?}");
    let mut c = command();
    c.current_dir(dir)
        .args(["explain", "--out", "out", "--tieout-row", &row[0]]);
    let o = output(&mut c);
    assert_code(&o, 0);
    let text = stdout(&o);
    assert!(!text.contains("billing line"), "{text}");
    assert!(!text.contains("  charge "), "{text}");
    assert!(text.contains("usage of 2026-10-31"), "{text}");
    assert!(text.contains("workload "), "{text}");
    assert!(text.contains("80 units x rate 1.0"), "{text}");
}
