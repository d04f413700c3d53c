//! The hard cases of credit, end to end, with hand-computed results:
//! day proration, conflicting designations under each policy, credits after a
//! designation moved, priority de-duplication, several currencies and FX.

use std::process::Output;

use crate::common::{porledger_in, read};

const HEADER: &str = "CustomerId,CustomerName,SubscriptionId,ChargeStartDate,ChargeEndDate,Subtotal,Currency,PublisherName,ProductQualifiers\n";
const DHEADER: &str = "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to\n";

fn rules(extra_top: &str, extra_program: &str) -> String {
    format!(
        "{extra_top}\n[[program]]\nid = \"por-core\"\nassociations = [\"POR\", \"DPOR\"]\nrate = \"0.04\"\nwindow_months = 36\n{extra_program}\n"
    )
}

struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(billing: &str, designations: &str, rules: &str) -> Case {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.csv"), format!("{HEADER}{billing}")).unwrap();
        std::fs::write(dir.path().join("d.csv"), format!("{DHEADER}{designations}")).unwrap();
        std::fs::write(dir.path().join("r.toml"), rules).unwrap();
        Case { dir }
    }

    fn run(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "run",
            "--period",
            "2026-10",
            "--billing",
            "b.csv",
            "--designations",
            "d.csv",
            "--rules",
            "r.toml",
            "--out",
            "out",
            "-q",
        ];
        args.extend_from_slice(extra);
        porledger_in(self.dir.path(), args)
    }

    fn read(&self, rel: &str) -> String {
        read(self.dir.path().join(rel))
    }

    /// `partner:amount` for every summary row.
    fn amounts(&self) -> Vec<String> {
        self.read("out/summary.csv")
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                format!("{}:{}:{}", f[0], f[2], f[6])
            })
            .collect()
    }
}

#[test]
fn day_proration_on_first_last_and_inner_days() {
    // Each line: October, 31 days. 3100.00 EUR = 100.00 a day; 4% = 4.00 a day.
    let billing = "\
c1,C1,s1,10/1/2026,10/31/2026,3100.00,EUR,Microsoft Corporation,[]
c2,C2,s2,10/1/2026,10/31/2026,3100.00,EUR,Microsoft Corporation,[]
c3,C3,s3,10/1/2026,10/31/2026,3100.00,EUR,Microsoft Corporation,[]
c4,C4,s4,10/1/2026,10/31/2026,3100.00,EUR,Microsoft Corporation,[]
c5,C5,s5,10/1/2026,10/31/2026,1000.00,EUR,Microsoft Corporation,[]
";
    let designations = "\
c1,P-A,A,DPOR,,,,2024-01-01,2026-10-11
c1,P-B,B,DPOR,,,,2026-10-11,
c2,P-C,C,DPOR,,,,2026-10-01,
c3,P-D,D,DPOR,,,,2026-10-31,
c4,P-E,E,DPOR,,,,2024-01-01,2026-10-31
c5,P-F,F,DPOR,,,,2024-01-01,2026-10-11
c5,P-G,G,DPOR,,,,2026-10-11,
";
    let c = Case::new(billing, designations, &rules("", ""));
    let o = c.run(&[]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // A: Oct 1-10 (10 days) 40.00; B: Oct 11-31 (21 days) 84.00; C from the first
    // day: all 31 days 124.00; D only the last day 4.00; E ends (exclusive) on the
    // last day: 30 days 120.00; F/G: 1000.00 x 10/31 = 322.580645 (6 dp) -> 12.90,
    // the rest 677.419355 -> 27.10; together exactly 40.00.
    assert_eq!(
        c.amounts(),
        [
            "P-A:por-core:40.00",
            "P-B:por-core:84.00",
            "P-C:por-core:124.00",
            "P-D:por-core:4.00",
            "P-E:por-core:120.00",
            "P-F:por-core:12.90",
            "P-G:por-core:27.10"
        ]
    );
    let ledger = c.read("out/ledger.csv");
    assert!(ledger.contains("P-F,c5,por-core,DPOR,s5,2026-10-01,2026-10,b.csv,6,322.580645,0.04,1.0,12.9032258,EUR,7,10,31,,,\r\n"), "{ledger}");
    assert!(ledger.contains("P-G,c5,por-core,DPOR,s5,2026-10-01,2026-10,b.csv,6,677.419355,0.04,1.0,27.0967742,EUR,8,21,31,,,\r\n"), "{ledger}");
    assert!(
        ledger.contains(
            "P-D,c3,por-core,DPOR,s3,2026-10-01,2026-10,b.csv,4,100.00,0.04,1.0,4.00,EUR,5,1,31,,,\r\n"
        ),
        "{ledger}"
    );
    assert!(
        ledger.contains(
            "P-C,c2,por-core,DPOR,s2,2026-10-01,2026-10,b.csv,3,3100.00,0.04,1.0,124.00,EUR,4,31,31,,,\r\n"
        ),
        "{ledger}"
    );
}

#[test]
fn conflicting_dpor_under_each_policy() {
    let billing = "c6,C6,s6,10/1/2026,10/1/2026,1000.00,EUR,Microsoft Corporation,[]\n";
    let designations = "c6,P-H,H,DPOR,,,,2024-01-01,\nc6,P-I,I,DPOR,,,,2025-01-01,\n";
    let c = Case::new(billing, designations, &rules("conflicts = \"split\"", ""));
    assert_eq!(c.run(&[]).status.code(), Some(0));
    assert_eq!(c.amounts(), ["P-H:por-core:20.00", "P-I:por-core:20.00"]);
    let c = Case::new(
        billing,
        designations,
        &rules("conflicts = \"latest-wins\"", ""),
    );
    assert_eq!(c.run(&[]).status.code(), Some(0));
    assert_eq!(c.amounts(), ["P-I:por-core:40.00"]);
    let c = Case::new(billing, designations, &rules("conflicts = \"reject\"", ""));
    assert_eq!(c.run(&[]).status.code(), Some(1));
    assert!(c.amounts().is_empty());
    let rejects = c.read("out/rejects.csv");
    assert!(rejects.contains("b.csv,2,association,DPOR,\"partners P-H, P-I all hold DPOR for this subscription on the charge date (d.csv lines 2, 3)"), "{rejects}");
    // validate names both rows.
    let o = porledger_in(
        c.dir.path(),
        [
            "validate",
            "--billing",
            "b.csv",
            "--designations",
            "d.csv",
            "--rules",
            "r.toml",
        ],
    );
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(
        report.contains("d.csv lines 2 and 3: two DPOR partners (P-H and P-I)"),
        "{report}"
    );
    assert_eq!(o.status.code(), Some(1));
}

/// POR and DPOR are one role, the partner of record, which a subscription
/// has one partner at a time: in a program paying both, a POR partner and
/// another DPOR partner of one subscription conflict like two DPOR partners
/// (each policy), a subscription's own DPOR row takes precedence over a
/// customer-wide POR row, and a partner holding both is paid once. A program
/// paying only DPOR pays its DPOR partner, whoever holds POR.
#[test]
fn por_and_dpor_are_one_role_the_partner_of_record() {
    let billing = "c6,C6,s6,10/1/2026,10/1/2026,1000.00,EUR,Microsoft Corporation,[]\n";
    let designations = "c6,P-H,H,POR,,,,2024-01-01,\nc6,P-I,I,DPOR,,,,2025-01-01,\n";
    let c = Case::new(billing, designations, &rules("conflicts = \"split\"", ""));
    assert_eq!(c.run(&[]).status.code(), Some(0));
    assert_eq!(c.amounts(), ["P-H:por-core:20.00", "P-I:por-core:20.00"]);
    let ledger = c.read("out/ledger.csv");
    assert!(ledger.contains("P-H,c6,por-core,POR,s6,"), "{ledger}");
    assert!(ledger.contains("P-I,c6,por-core,DPOR,s6,"), "{ledger}");
    let c = Case::new(
        billing,
        designations,
        &rules("conflicts = \"latest-wins\"", ""),
    );
    assert_eq!(c.run(&[]).status.code(), Some(0));
    assert_eq!(c.amounts(), ["P-I:por-core:40.00"]);
    let c = Case::new(billing, designations, &rules("conflicts = \"reject\"", ""));
    assert_eq!(c.run(&[]).status.code(), Some(1));
    assert!(c.amounts().is_empty());
    let rejects = c.read("out/rejects.csv");
    assert!(rejects.contains("b.csv,2,association,POR/DPOR,\"partners P-H, P-I all hold POR/DPOR for this subscription on the charge date (d.csv lines 2, 3)"), "{rejects}");
    let o = porledger_in(
        c.dir.path(),
        [
            "validate",
            "--billing",
            "b.csv",
            "--designations",
            "d.csv",
            "--rules",
            "r.toml",
        ],
    );
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(
        report.contains("d.csv lines 2 and 3: a POR partner (P-H) and a DPOR partner (P-I)"),
        "{report}"
    );
    assert_eq!(o.status.code(), Some(1));
    // The subscription's own DPOR row takes precedence over the customer's POR.
    let own = "c6,P-H,H,POR,,,,2024-01-01,\nc6,P-I,I,DPOR,,s6,,2025-01-01,\n";
    let c = Case::new(billing, own, &rules("", ""));
    assert_eq!(c.run(&[]).status.code(), Some(0));
    assert_eq!(c.amounts(), ["P-I:por-core:40.00"]);
    // One partner holding both is paid once.
    let both = "c6,P-H,H,POR,,,,2024-01-01,\nc6,P-H,H,DPOR,,,,2025-01-01,\n";
    let c = Case::new(billing, both, &rules("", ""));
    assert_eq!(c.run(&[]).status.code(), Some(0));
    assert_eq!(c.amounts(), ["P-H:por-core:40.00"]);
    // A program paying DPOR alone.
    let dpor_only = "[[program]]\nid = \"por-core\"\nassociations = [\"DPOR\"]\nrate = \"0.04\"\n";
    let c = Case::new(billing, designations, dpor_only);
    assert_eq!(c.run(&[]).status.code(), Some(0));
    assert_eq!(c.amounts(), ["P-I:por-core:40.00"]);
}

#[test]
fn a_partner_holding_an_association_twice_is_credited_once() {
    // PAL of P-M is in the file twice (and a second window of P-M overlaps
    // October): the equal split is per partner, 50:50 with P-N, not 2:1.
    let billing = "c9,C9,s9,10/1/2026,10/1/2026,1000.00,EUR,Microsoft Corporation,[]\n";
    let program = "[[program]]\nid = \"pal\"\nassociations = [\"PAL\"]\nrate = \"0.1\"\n";
    let designations = "\
c9,P-M,M,PAL,,,,2024-01-01,
c9,P-M,M,PAL,,,,2024-01-01,
c9,P-M,M,PAL,,,,2026-06-01,2027-01-01
c9,P-N,N,PAL,,,,2024-01-01,
";
    let c = Case::new(billing, designations, program);
    assert_eq!(c.run(&[]).status.code(), Some(0));
    assert_eq!(c.amounts(), ["P-M:pal:50.00", "P-N:pal:50.00"]);
    let ledger = c.read("out/ledger.csv");
    assert_eq!(
        ledger.lines().filter(|l| l.starts_with("P-M,")).count(),
        1,
        "{ledger}"
    );
    // The same for an exclusive association of one partner: one ledger row.
    let dpor = "c9,P-M,M,DPOR,,,,2024-01-01,\nc9,P-M,M,DPOR,,,,2024-01-01,\n";
    let c = Case::new(billing, dpor, &rules("conflicts = \"reject\"", ""));
    assert_eq!(c.run(&[]).status.code(), Some(0));
    assert_eq!(c.amounts(), ["P-M:por-core:40.00"]);
    assert_eq!(
        c.read("out/ledger.csv")
            .lines()
            .filter(|l| l.starts_with("P-M,"))
            .count(),
        1
    );
    // Different shares of one partner: which is meant cannot be told.
    let shares = "c9,P-M,M,PAL,,,0.3,2024-01-01,\nc9,P-M,M,PAL,,,0.2,2024-01-01,\n";
    let c = Case::new(billing, shares, program);
    assert_eq!(c.run(&[]).status.code(), Some(1));
    assert!(c.amounts().is_empty());
    let rejects = c.read("out/rejects.csv");
    assert!(
        rejects.contains("b.csv,2,share,\"0.3, 0.2\",\"partner P-M holds PAL for this customer on the charge date through designations with different shares (d.csv lines 2 (share 0.3), 3 (share 0.2))"),
        "{rejects}"
    );
    // validate names the rows either way.
    let o = porledger_in(
        c.dir.path(),
        [
            "validate",
            "--billing",
            "b.csv",
            "--designations",
            "d.csv",
            "--rules",
            "r.toml",
        ],
    );
    let report = String::from_utf8_lossy(&o.stdout);
    assert!(
        report.contains("d.csv lines 2 and 3: partner P-M holds PAL for customer c9 through both rows at the same time: with different shares (0.3 and 0.2)"),
        "{report}"
    );
}

#[test]
fn a_credit_follows_the_designation_in_force_at_the_date_it_refers_to() {
    // The designation moved from J to K on 2026-09-01. October's invoice holds
    // October's charge (K earns) and a credit for August (J carries the reversal).
    let billing = "\
c7,C7,s7,10/1/2026,10/31/2026,1000.00,EUR,Microsoft Corporation,[]
c7,C7,s7,8/1/2026,8/31/2026,-500.00,EUR,Microsoft Corporation,[]
";
    let designations = "c7,P-J,J,DPOR,,,,2024-01-01,2026-09-01\nc7,P-K,K,DPOR,,,,2026-09-01,\n";
    let c = Case::new(billing, designations, &rules("", ""));
    assert_eq!(c.run(&[]).status.code(), Some(0));
    assert_eq!(c.amounts(), ["P-J:por-core:-20.00", "P-K:por-core:40.00"]);
}

#[test]
fn priority_deduplication_pays_a_partner_once() {
    let billing = "c8,C8,s8,10/1/2026,10/1/2026,1000.00,EUR,Microsoft Corporation,[]\n";
    let designations = "c8,P-L,L,PAL,,,,2024-01-01,\nc8,P-L,L,DPOR,,,,2024-01-01,\n";
    let program =
        "[[program]]\nid = \"combo\"\nassociations = [\"PAL\", \"DPOR\"]\nrate = \"0.01\"\n";
    let c = Case::new(
        billing,
        designations,
        &format!("{program}dedupe = \"priority\"\n"),
    );
    assert_eq!(c.run(&[]).status.code(), Some(0));
    assert_eq!(c.amounts(), ["P-L:combo:10.00"]);
    assert!(c.read("out/ledger.csv").contains("P-L,c8,combo,PAL,"));
    let c = Case::new(billing, designations, program);
    assert_eq!(c.run(&[]).status.code(), Some(0));
    assert_eq!(c.amounts(), ["P-L:combo:20.00"]);
}

#[test]
fn currencies_are_never_added_and_fx_converts_totals() {
    let billing = "\
c9,C9,s9,10/1/2026,10/1/2026,1000.00,USD,Microsoft Corporation,[]
c10,C10,s10,10/1/2026,10/1/2026,500.00,EUR,Microsoft Corporation,[]
";
    let designations = "c9,P-M,M,DPOR,,,,2024-01-01,\nc10,P-M,M,DPOR,,,,2024-01-01,\n";
    let c = Case::new(
        billing,
        designations,
        &rules("reporting_currency = \"EUR\"", ""),
    );
    std::fs::write(
        c.dir.path().join("fx.csv"),
        "date,from,to,rate\n2026-10-15,USD,EUR,0.9\n2026-11-01,USD,EUR,0.92\n",
    )
    .unwrap();
    let o = c.run(&["--fx", "fx.csv"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(c.amounts(), ["P-M:por-core:20.00", "P-M:por-core:40.00"]);
    let st = c.read("out/partners/P-M/statement.csv");
    assert!(st.contains("total,EUR,500.00,20.00,EUR,1.0,,20.00\r\ntotal,USD,1000.00,40.00,EUR,0.9,2026-10-15,36.00\r\ntotal_converted,EUR,,56.00\r\n"), "{st}");
    // The FX file's rows are accounted for like the designations'.
    let summary: serde_json::Value = serde_json::from_str(&c.read("out/summary.json")).unwrap();
    let fx = &summary["rows"]["fx"];
    assert_eq!(fx["file"], "fx.csv", "{fx}");
    assert_eq!(
        (&fx["rows"], &fx["accepted"], &fx["rejected"]),
        (&2.into(), &2.into(), &0.into()),
        "{fx}"
    );
    // Without a rate on or before the statement date: exit 2, nothing published.
    std::fs::write(
        c.dir.path().join("fx.csv"),
        "date,from,to,rate\n2026-11-01,USD,EUR,0.92\n",
    )
    .unwrap();
    let o = c.run(&["--fx", "fx.csv"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no USD->EUR rate on or before 2026-10-31"));
    // A rate the FX file has but that was rejected is named: nothing is
    // published, so no rejects.csv would say why.
    std::fs::write(
        c.dir.path().join("fx.csv"),
        "date,from,to,rate\n2026-10-15,USD,EUR,0\n",
    )
    .unwrap();
    let o = c.run(&["--fx", "fx.csv"]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no USD->EUR rate on or before 2026-10-31")
            && err.contains("1 row of the FX file was rejected: line 2 (rate '0'"),
        "{err}"
    );
}

/// A usage program (CPOR, Teams: 40 active users of 100 paid reach the 0.40
/// target, so 40 units x 2.50 = 100.00 USD) next to `por-core`.
const USAGE_PROGRAM: &str = "\
[[program]]
id = \"usage\"
associations = [\"CPOR\"]
basis = \"usage\"
[[program.workload]]
name = \"Teams\"
unit_rates = [\"1.00\", \"2.50\"]
";

const USAGE: &str = "CustomerTenantId,CustomerName,WorkloadName,MonthlyActiveUsers,PaidAvailableUnits,Date\nt1,T1,Teams,40,100,10/1/2026\n";

impl Case {
    /// A case with the usage report [`USAGE`] as `u.csv`.
    fn with_usage(billing: &str, designations: &str, rules: &str) -> Case {
        let c = Case::new(billing, designations, rules);
        std::fs::write(c.dir.path().join("u.csv"), USAGE).unwrap();
        c
    }

    /// `validate` of the case's inputs, with the usage report, for 2026-10.
    fn validate_usage(&self) -> Output {
        porledger_in(
            self.dir.path(),
            [
                "validate",
                "--period",
                "2026-10",
                "--billing",
                "b.csv",
                "--designations",
                "d.csv",
                "--rules",
                "r.toml",
                "--usage",
                "u.csv",
            ],
        )
    }
}

/// Two CPOR partners of one tenant and workload: the usage row follows the
/// rules' `conflicts` exactly as the billing line of the same two partners'
/// DPOR does (split, latest `valid_from`, or neither paid, naming both rows).
#[test]
fn conflicting_cpor_usage_under_each_policy() {
    let billing = "t1,T1,s1,10/1/2026,10/1/2026,1000.00,EUR,Microsoft Corporation,[]\n";
    let designations = "\
t1,P-A,A,CPOR,Teams,,,2025-01-01,
t1,P-B,B,CPOR,Teams,,,2026-06-01,
t1,P-A,A,DPOR,,,,2025-01-01,
t1,P-B,B,DPOR,,,,2026-06-01,
";
    let case = |policy: &str| {
        let c = Case::with_usage(
            billing,
            designations,
            &rules(&format!("conflicts = \"{policy}\""), USAGE_PROGRAM),
        );
        let o = c.run(&["--usage", "u.csv"]);
        (c, o)
    };
    let (c, o) = case("split");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(
        c.amounts(),
        [
            "P-A:por-core:20.00",
            "P-A:usage:50.00",
            "P-B:por-core:20.00",
            "P-B:usage:50.00"
        ]
    );
    let (c, o) = case("latest-wins");
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(c.amounts(), ["P-B:por-core:40.00", "P-B:usage:100.00"]);
    assert!(c
        .read("out/ledger.csv")
        .contains("P-B,t1,usage,CPOR,Teams,2026-10-01,2026-10,u.csv,2,40,2.5,1.0,100.00,USD,3,"));

    let (c, o) = case("reject");
    // The billing line is rejected (exit 1); the usage row is not eligible.
    assert_eq!(o.status.code(), Some(1));
    assert!(c.amounts().is_empty());
    let rejects = c.read("out/rejects.csv");
    assert!(rejects.contains("b.csv,2,association,DPOR,"), "{rejects}");
    assert!(!rejects.contains("u.csv"), "{rejects}");
    let not_eligible = c.read("out/not-eligible.csv");
    assert!(
        not_eligible.contains(
            "share-conflict,\"usage: Teams: partners P-A, P-B all hold CPOR for this tenant \
             and workload on 2026-10-01 (d.csv lines 2, 3); the rules say conflicts = \"\"reject\"\"\""
        ),
        "{not_eligible}"
    );
    let summary = crate::common::read_json(c.dir.path().join("out/summary.json"));
    let usage = &summary["usage"]["total"];
    assert_eq!(
        usage["not_eligible_by_reason"]["share-conflict"], 1,
        "{usage}"
    );
    assert_eq!(usage["accrued"], 0, "{usage}");
    // validate counts the row as run does, and names both CPOR rows.
    let v = c.validate_usage();
    let report = String::from_utf8_lossy(&v.stdout);
    assert!(
        report.contains("d.csv lines 2 and 3: two CPOR partners (P-A and P-B)"),
        "{report}"
    );
    assert!(report.contains("share-conflict 1"), "{report}");

    // The same outputs, byte for byte, with one thread and with two.
    for threads in ["1", "2"] {
        let out = format!("out-{threads}");
        let o = porledger_in(
            c.dir.path(),
            [
                "run",
                "--period",
                "2026-10",
                "--billing",
                "b.csv",
                "--designations",
                "d.csv",
                "--rules",
                "r.toml",
                "--usage",
                "u.csv",
                "--out",
                &out,
                "-q",
                "--threads",
                threads,
            ],
        );
        assert_eq!(o.status.code(), Some(1));
    }
    crate::common::assert_same_tree(&c.dir.path().join("out-1"), &c.dir.path().join("out-2"));
}

/// `dedupe = "priority"` on a usage program: a partner holding CPOR and DPOR
/// for the tenant is paid the usage once, through DPOR, as a revenue
/// program with the same key pays a billing line once.
#[test]
fn usage_priority_deduplication_pays_a_partner_once() {
    let billing = "t1,T1,s1,10/1/2026,10/1/2026,1000.00,EUR,Microsoft Corporation,[]\n";
    let designations = "\
t1,P-A,A,CPOR,Teams,,,2025-01-01,
t1,P-A,A,DPOR,,,,2025-01-01,
t1,P-A,A,POR,,,,2025-01-01,
";
    let usage_program = USAGE_PROGRAM.replace("[\"CPOR\"]", "[\"CPOR\", \"DPOR\"]");
    let deduped = usage_program.replace("basis", "dedupe = \"priority\"\nbasis");
    let c = Case::with_usage(
        billing,
        designations,
        &rules("", &format!("dedupe = \"priority\"\n{deduped}")),
    );
    assert_eq!(c.run(&["--usage", "u.csv"]).status.code(), Some(0));
    assert_eq!(c.amounts(), ["P-A:por-core:40.00", "P-A:usage:100.00"]);
    let ledger = c.read("out/ledger.csv");
    assert!(ledger.contains("P-A,t1,usage,DPOR,Teams,"), "{ledger}");
    assert!(!ledger.contains("P-A,t1,usage,CPOR,"), "{ledger}");
    assert!(ledger.contains("P-A,t1,por-core,DPOR,s1,"), "{ledger}");
    assert!(!ledger.contains("P-A,t1,por-core,POR,"), "{ledger}");
    // Without the key, each association pays, except POR and DPOR: one
    // role (the partner of record), so por-core pays P-A once.
    let c = Case::with_usage(billing, designations, &rules("", &usage_program));
    assert_eq!(c.run(&["--usage", "u.csv"]).status.code(), Some(0));
    assert_eq!(c.amounts(), ["P-A:por-core:40.00", "P-A:usage:200.00"]);
}
