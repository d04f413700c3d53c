//! End-to-end checks of the real binary: the committed `sample-data/` gives
//! exactly the results `sample-data/README.md` promises, and `porledger sample`
//! writes the same bytes twice and an input set `porledger run` accepts whole.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn porledger(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_porledger"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run porledger")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// `summary.csv` of the committed sample, as in the README's table.
const EXPECTED_SUMMARY: &str = "\
partner_id,partner_name,program_id,currency,lines,basis_amount,accrual_amount\r\n\
1093377,Woodgrove Advisory LLC,por-core,EUR,12,7128.00,285.12\r\n\
1093377,Woodgrove Advisory LLC,por-core,USD,24,6840.00,273.60\r\n\
1093377,Woodgrove Advisory LLC,reseller,USD,24,6840.00,68.40\r\n\
500275,Contoso Consulting GmbH,por-core,EUR,46,31430.80,1257.23\r\n\
612884,Müller & Partner IT-Systemhaus GmbH,por-core,EUR,26,12020.50,480.82\r\n\
612884,Müller & Partner IT-Systemhaus GmbH,reseller,EUR,88,23294.50,232.95\r\n\
731150,\"Fabrikam Cloud Solutions, Inc.\",pal,EUR,24,16372.80,122.80\r\n\
731150,\"Fabrikam Cloud Solutions, Inc.\",por-core,EUR,12,4852.80,194.11\r\n\
845002,Nordwind Digital AG,pal,EUR,24,16372.80,122.80\r\n\
845002,Nordwind Digital AG,por-core,EUR,53,13668.80,546.75\r\n";

#[test]
fn committed_sample_gives_the_readme_results() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = porledger(
        &repo(),
        &[
            "run",
            "--period",
            "2025-11..2026-10",
            "--billing",
            "sample-data/billing",
            "--designations",
            "sample-data/designations.csv",
            "--rules",
            "sample-data/rules.toml",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");

    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    assert_eq!(summary, EXPECTED_SUMMARY);

    let s = json(&out.join("summary.json"));
    let totals: BTreeMap<String, String> = s["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["currency"].as_str().unwrap().to_string(),
                t["accrual_amount"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        totals,
        BTreeMap::from([
            ("EUR".to_string(), "3242.58".to_string()),
            ("USD".to_string(), "342.00".to_string())
        ])
    );

    let rows = &s["rows"];
    let t = &rows["total"];
    assert_eq!(t["rows"], 270);
    assert_eq!(t["accrued"], 221);
    assert_eq!(t["not_eligible"], 49);
    assert_eq!(t["rejected"], 0);
    assert_eq!(t["dated_after_period"], 0);
    assert_eq!(t["balanced"], true);
    let reasons = &t["not_eligible_by_reason"];
    assert_eq!(reasons["excluded-product"], 13);
    assert_eq!(reasons["no-designation"], 24);
    assert_eq!(reasons["outside-window"], 12);
    assert_eq!(reasons["rule-not-in-force"], 0);
    let per_file: Vec<u64> = rows["billing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rows"].as_u64().unwrap())
        .collect();
    assert_eq!(per_file, [22, 22, 23, 23, 24, 23, 22, 22, 23, 22, 22, 22]);
    let d = &rows["designations"];
    assert_eq!(
        (&d["rows"], &d["accepted"], &d["rejected"]),
        (&13.into(), &13.into(), &0.into())
    );

    let rejects = std::fs::read_to_string(out.join("rejects.csv")).unwrap();
    assert_eq!(rejects, "source_file,source_line,column,value,reason\r\n");
}

/// Every file under `dir`, by relative path.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

#[test]
fn sample_command_is_deterministic_and_runs_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let gen = |name: &str| {
        let o = porledger(
            tmp.path(),
            &["sample", "--out", name, "--rows", "2000", "--seed", "7"],
        );
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        assert_eq!(o.status.code(), Some(0), "{stderr}");
        assert!(stderr.contains("2,000 rows"), "{stderr}");
        tree(&tmp.path().join(name))
    };
    let a = gen("a");
    let b = gen("b");
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        [
            Path::new("billing/invoice-reconciliation-0001.csv"),
            Path::new("designations.csv"),
            Path::new("rules.toml")
        ]
    );
    assert!(a == b, "two runs with the same --rows and --seed differ");

    let o = porledger(
        tmp.path(),
        &[
            "run",
            "--period",
            "2025-11..2026-10",
            "--billing",
            "a/billing",
            "--designations",
            "a/designations.csv",
            "--rules",
            "a/rules.toml",
            "--out",
            "out",
            "--quiet",
        ],
    );
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let t = &json(&tmp.path().join("out/summary.json"))["rows"]["total"];
    assert_eq!(t["rows"], 2000);
    assert_eq!(t["rejected"], 0);
    assert!(t["accrued"].as_u64().unwrap() > 1000, "{t}");
}

/// Runs `porledger run --period 2026-10 --quiet --no-pdf` from the repository
/// with `inputs`, into `out` of the returned directory, and requires exit 0.
fn run_sample(inputs: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut args = vec!["run", "--period", "2026-10", "--quiet", "--no-pdf"];
    args.extend_from_slice(inputs);
    args.extend(["--out", out.to_str().unwrap()]);
    let o = porledger(&repo(), &args);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    dir
}

/// `sample-data/hard-cases/`: the expectations of its README table.
#[test]
fn hard_cases_sample_matches_its_readme() {
    let dir = run_sample(&[
        "--billing",
        "sample-data/hard-cases/billing-2026-10.csv",
        "--designations",
        "sample-data/hard-cases/designations.csv",
        "--rules",
        "sample-data/hard-cases/rules.toml",
        "--fx",
        "sample-data/hard-cases/fx.csv",
    ]);
    let out = dir.path().join("out");
    let summary = std::fs::read_to_string(out.join("summary.csv")).unwrap();
    let expected = "partner_id,partner_name,program_id,currency,lines,basis_amount,accrual_amount\r
P-A,Amsel IT,por-core,EUR,1,1000.00,40.00\r
P-B,Buchfink Cloud,por-core,EUR,1,2100.00,84.00\r
P-C,Cirrus Partner,por-core,EUR,1,3100.00,124.00\r
P-D,Dohle Digital,por-core,EUR,1,100.00,4.00\r
P-E,Eisvogel Systems,por-core,EUR,1,3000.00,120.00\r
P-F,Falke Services,por-core,EUR,1,322.580645,12.90\r
P-G,Gimpel GmbH,por-core,EUR,1,677.419355,27.10\r
P-H,Habicht AG,por-core,EUR,1,1000.00,20.00\r
P-I,Ibis Solutions,por-core,EUR,1,1000.00,20.00\r
P-J,Johannes Sperling KG,por-core,EUR,1,-500.00,-20.00\r
P-K,Kranich Cloud,por-core,EUR,1,1000.00,40.00\r
P-L,Lerche & Co.,engagement,EUR,1,1000.00,10.00\r
P-L,Lerche & Co.,por-core,EUR,1,1000.00,40.00\r
P-M,Möwe Managed Services,por-core,EUR,1,500.00,20.00\r
P-M,Möwe Managed Services,por-core,USD,1,1000.00,40.00\r
";
    assert_eq!(summary, expected);
    let st = std::fs::read_to_string(out.join("partners/P-M/statement.csv")).unwrap();
    assert!(
        st.ends_with(
            "total,USD,1000.00,40.00,EUR,0.9,2026-10-15,36.00\r\ntotal_converted,EUR,,56.00\r\n"
        ),
        "{st}"
    );
}

/// `sample-data/usage/`: the expectations of its README table.
#[test]
fn usage_sample_matches_its_readme() {
    let dir = run_sample(&[
        "--billing",
        "sample-data/usage/billing-usage-demo.csv",
        "--designations",
        "sample-data/usage/designations-usage.csv",
        "--rules",
        "sample-data/usage/rules-usage.toml",
        "--usage",
        "sample-data/usage/cpor-usage.csv",
    ]);
    let out = dir.path().join("out");
    assert_eq!(
        std::fs::read_to_string(out.join("summary.csv")).unwrap(),
        "partner_id,partner_name,program_id,currency,lines,basis_amount,accrual_amount\r\n\
         5000101,Fourth Coffee Consulting,cpor-usage,USD,3,62.00,140.00\r\n\
         5000202,Tailspin Partners,dpor-tiered,USD,1,43200.00,864.00\r\n"
    );
    let t = &json(&out.join("summary.json"))["usage"]["total"];
    assert_eq!(
        (
            t["rows"].as_u64(),
            t["accrued"].as_u64(),
            t["not_eligible"].as_u64(),
            t["rejected"].as_u64()
        ),
        (Some(126), Some(3), Some(123), Some(0))
    );
}
