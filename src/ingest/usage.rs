//! Usage files (`--usage`): Partner Center's CPOR / Microsoft 365 usage report and
//! Microsoft Graph `getOffice365ServicesUserCounts` exports.
//!
//! The format is recognised from the header; headers are matched by name through
//! an alias table (case, spaces and `_` ignored; a UTF-8 BOM is skipped); dates
//! are read like billing dates. A record that cannot be used is rejected with
//! file, line, column, value and reason. Every accepted record yields one
//! [`UsageObs`] per workload (one for the CPOR report, up to seven for Graph).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::config::products::{workload_display, workload_key};
use crate::dates::parse_date;
use crate::dates::Month;
use crate::error::Fatal;
use crate::money::parse_amount;

use super::billing::normalize_header;
use super::designations::Reject;
use super::{discover, read_header, FileDigest, InputFile};

/// The usage file formats porledger reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageFormat {
    /// One row per tenant, workload and month, with MAU and PAU.
    CporReport,
    /// One row per refresh date of one tenant, MAU per workload; PAU from billing.
    GraphUserCounts,
}

impl UsageFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            UsageFormat::CporReport => "Partner Center CPOR usage report",
            UsageFormat::GraphUserCounts => "Graph getOffice365ServicesUserCounts",
        }
    }
}

/// The largest user count read (a tenant has at most a few million users).
pub const MAX_USERS: u64 = 1_000_000_000;

/// One usage observation: a tenant's workload in one month.
#[derive(Clone, Debug, PartialEq)]
pub struct UsageObs {
    /// Index into [`UsageInput::files`].
    pub file: usize,
    pub line: u64,
    /// Lower-cased tenant ID.
    pub customer_id: String,
    /// [`workload_key`] of the workload.
    pub workload: String,
    /// Display name of the workload.
    pub workload_name: String,
    /// The row's date (CPOR `Date`, Graph `Report Refresh Date`).
    pub date: NaiveDate,
    pub month: Month,
    pub mau: Decimal,
    /// `None`: the file has no paid units (Graph); they come from billing.
    pub pau: Option<Decimal>,
}

/// One usage file as read.
#[derive(Clone, Debug)]
pub struct UsageFile {
    pub input: InputFile,
    pub format: UsageFormat,
    pub digest: FileDigest,
    /// Data records read.
    pub rows: u64,
    /// Of which rejected.
    pub rejected: u64,
    /// Graph files: the tenant, and where it came from.
    pub tenant: Option<(String, &'static str)>,
}

/// Every usage file, loaded.
#[derive(Clone, Debug, Default)]
pub struct UsageInput {
    pub files: Vec<UsageFile>,
    pub obs: Vec<UsageObs>,
    pub rejects: Vec<Reject>,
    /// Tenant (lower case) -> name from the CPOR report, first seen.
    pub customer_names: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Col {
    Tenant,
    Name,
    Workload,
    Mau,
    Pau,
    Date,
}

const CPOR_COLS: [(Col, &str, &[&str], bool); 6] = [
    (
        Col::Tenant,
        "CustomerTenantId",
        &["customertenantid", "tenantid", "customerid"],
        true,
    ),
    (Col::Name, "CustomerName", &["customername"], false),
    (
        Col::Workload,
        "WorkloadName",
        &["workloadname", "workload"],
        true,
    ),
    (
        Col::Mau,
        "MonthlyActiveUsers",
        &["monthlyactiveusers", "mau", "activeusers"],
        true,
    ),
    (
        Col::Pau,
        "PaidAvailableUnits",
        &["paidavailableunits", "pau", "paidunits"],
        true,
    ),
    (
        Col::Date,
        "Date",
        &["date", "month", "reportdate", "usagedate"],
        true,
    ),
];

/// Graph workloads: the `<Workload> Active` column prefix (normalised).
const GRAPH_WORKLOADS: [&str; 7] = [
    "exchange",
    "onedrive",
    "sharepoint",
    "skypeforbusiness",
    "yammer",
    "teams",
    "office365",
];

/// How one usage file is read.
#[derive(Clone, Debug)]
struct Layout {
    format: UsageFormat,
    header: Vec<String>,
    cpor: [Option<usize>; 6],
    /// Graph: (workload display name, column).
    graph: Vec<(String, usize)>,
    refresh: Option<usize>,
    period: Option<usize>,
    decimal_comma: bool,
}

fn layout(header: &[String], delimiter: u8) -> Result<Layout, String> {
    let norm: Vec<String> = header.iter().map(|h| normalize_header(h)).collect();
    // Two columns under one name are ambiguous (which holds the data?).
    for (j, n) in norm.iter().enumerate() {
        if let Some(i) = norm[..j].iter().position(|m| m == n && !m.is_empty()) {
            return Err(super::ambiguous_columns(header, i, j));
        }
    }
    let find = |names: &[&str]| names.iter().find_map(|n| norm.iter().position(|h| h == n));
    let mut l = Layout {
        format: UsageFormat::CporReport,
        header: header.to_vec(),
        cpor: [None; 6],
        graph: Vec::new(),
        refresh: find(&["reportrefreshdate"]),
        period: find(&["reportperiod"]),
        decimal_comma: delimiter == b';',
    };
    if l.refresh.is_some() {
        l.format = UsageFormat::GraphUserCounts;
        for w in GRAPH_WORKLOADS {
            if let Some(i) = find(&[&format!("{w}active")]) {
                let name = header[i].trim_start_matches('\u{feff}').trim();
                // Drop the trailing "Active" (char-safe: the header may hold
                // anything between the letters that normalise to `<w>active`).
                let cut = name.len().saturating_sub(6);
                let name = match name.get(cut..) {
                    Some(tail) if tail.eq_ignore_ascii_case("active") => name[..cut].trim(),
                    _ => name,
                };
                l.graph.push((workload_display(name), i));
            }
        }
        if l.graph.is_empty() {
            return Err(
                "Graph user-count export without any '<Workload> Active' column \
                        (expected e.g. 'Exchange Active', 'Teams Active')"
                    .into(),
            );
        }
        return Ok(l);
    }
    if find(&["monthlyactiveusers", "mau"]).is_none() {
        let mut found = header.iter().take(8).cloned().collect::<Vec<_>>().join(",");
        if header.len() > 8 {
            found.push_str(",...");
        }
        return Err(format!(
            "not a usage export: the header has neither the CPOR usage report's \
             MonthlyActiveUsers nor Graph's 'Report Refresh Date'; it starts: {found}"
        ));
    }
    for (slot, (_, name, aliases, required)) in l.cpor.iter_mut().zip(CPOR_COLS) {
        *slot = find(aliases);
        if slot.is_none() && required {
            return Err(format!(
                "required column '{name}' is missing (accepted spellings: {})",
                aliases.join(", ")
            ));
        }
    }
    Ok(l)
}

type RowErr = (String, String, String);

impl Layout {
    fn col_name(&self, i: usize) -> String {
        self.header[i].trim_start_matches('\u{feff}').to_string()
    }

    fn get<'r>(&self, rec: &'r csv::StringRecord, c: Col) -> (&'r str, String) {
        match self.cpor[c as usize] {
            Some(i) => (rec.get(i).unwrap_or("").trim(), self.col_name(i)),
            None => ("", String::new()),
        }
    }

    fn count(&self, raw: &str, col: String) -> Result<Decimal, RowErr> {
        let v = parse_amount(raw, self.decimal_comma).map_err(|e| {
            (
                col.clone(),
                raw.to_string(),
                e.reason("not a number of users"),
            )
        })?;
        if v.is_sign_negative() && !v.is_zero() {
            return Err((col, raw.into(), "a user count cannot be negative".into()));
        }
        if !v.fract().is_zero() {
            return Err((col, raw.into(), "not a whole number of users".into()));
        }
        // Bounded, so that the sums and differences of counts over a run
        // (attainment, high-water marks) stay far inside the decimal range.
        if v > Decimal::from(MAX_USERS) {
            return Err((
                col,
                raw.into(),
                format!("more than {MAX_USERS} users: not a count of one tenant's users"),
            ));
        }
        Ok(v.trunc().normalize())
    }

    fn date(&self, raw: &str, col: String) -> Result<NaiveDate, RowErr> {
        parse_date(raw).map_err(|e| {
            (
                col,
                raw.to_string(),
                e.reason(raw, "M/D/YYYY, M/D/YYYY H:MM:SS or YYYY-MM-DD"),
            )
        })
    }
}

/// Is this a tenant GUID (`8-4-4-4-12` hex digits)?
pub fn is_guid(s: &str) -> bool {
    crate::text::guid_value(s).is_some()
}

/// Reads the `--usage-tenant-map` CSV: `file,customer_id`. Keys are file names
/// (or paths as given), compared case-sensitively after trimming.
pub fn parse_tenant_map(path: &Path) -> Result<BTreeMap<String, String>, Fatal> {
    let display = path.to_string_lossy().into_owned();
    let bytes = super::read_limited(path, super::limits::TENANT_MAP, "usage tenant map")?;
    let data_err = |line: u64, column: Option<String>, message: String| Fatal::Data {
        file: display.clone(),
        line,
        column,
        message,
    };
    let h = read_header(&display, &bytes)?;
    let norm: Vec<String> = h.fields.iter().map(|f| normalize_header(f)).collect();
    let fi = norm
        .iter()
        .position(|n| n == "file" || n == "filename" || n == "path");
    let ci = norm
        .iter()
        .position(|n| n == "customerid" || n == "customertenantid" || n == "tenantid");
    let (Some(fi), Some(ci)) = (fi, ci) else {
        return Err(data_err(
            1,
            None,
            "expected the header file,customer_id".into(),
        ));
    };
    let mut out = BTreeMap::new();
    let mut fatal = None;
    let body = &bytes[h.byte_len..];
    super::records::for_each_text_row(
        body,
        h.next_line,
        h.delimiter,
        &h.fields,
        &mut |line, rec| {
            if fatal.is_some() {
                return;
            }
            let rec = match rec {
                Ok(r) => r,
                Err(p) => {
                    fatal = Some(data_err(line, Some(p.column), p.reason));
                    return;
                }
            };
            let f = rec.get(fi).unwrap_or("").trim();
            let c = rec.get(ci).unwrap_or("").trim();
            if f.is_empty() && c.is_empty() {
                return;
            }
            if f.is_empty() || c.is_empty() {
                fatal = Some(data_err(
                    line,
                    None,
                    "both file and customer_id are needed".into(),
                ));
                return;
            }
            if let Some(why) = super::id_problem(c) {
                fatal = Some(data_err(line, Some(h.fields[ci].clone()), why));
                return;
            }
            if out.insert(f.to_string(), super::id_key(c)).is_some() {
                fatal = Some(data_err(line, None, format!("'{f}' is listed twice")));
            }
        },
    );
    match fatal {
        Some(e) => Err(e),
        None => Ok(out),
    }
}

/// Refuses a tenant map entry keyed by a bare file name that more than one
/// of `files` has (and that is not listed by its path): exports of several
/// tenants often share a name (`usage.csv` in a folder per tenant), and each
/// would be given the one tenant.
fn ambiguous_names(
    files: &[InputFile],
    map: &BTreeMap<String, String>,
    map_path: &Path,
) -> Result<(), Fatal> {
    let mut by_name: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for f in files {
        if map.contains_key(&f.display) {
            continue;
        }
        let name = f
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if map.contains_key(&name) {
            by_name.entry(name).or_default().push(&f.display);
        }
    }
    match by_name.into_iter().find(|(_, v)| v.len() > 1) {
        None => Ok(()),
        Some((name, shared)) => Err(Fatal::Input(format!(
            "--usage-tenant-map {}: '{name}' names {} --usage files ({}), which would all be \
             given tenant {}: list each of them by its path as given",
            map_path.display(),
            shared.len(),
            shared.join(", "),
            map[&name]
        ))),
    }
}

fn tenant_of(file: &InputFile, map: &BTreeMap<String, String>) -> Option<(String, &'static str)> {
    let name = file
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(t) = map.get(&file.display).or_else(|| map.get(&name)) {
        return Some((t.clone(), "tenant map"));
    }
    let stem = file
        .path
        .file_stem()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    is_guid(&stem).then(|| (super::id_key(&stem), "file name"))
}

/// Loads every usage file. Unknown formats, and Graph files whose tenant cannot be
/// told, are fatal; bad records are rejects.
pub fn load_usage(paths: &[PathBuf], tenant_map: Option<&Path>) -> Result<UsageInput, Fatal> {
    let mut out = UsageInput::default();
    if paths.is_empty() {
        if let Some(m) = tenant_map {
            return Err(Fatal::Input(format!(
                "--usage-tenant-map {} given without --usage",
                m.display()
            )));
        }
        return Ok(out);
    }
    let map = match tenant_map {
        Some(p) => parse_tenant_map(p)?,
        None => BTreeMap::new(),
    };
    let files = discover(paths, "--usage")?;
    if let Some(m) = tenant_map {
        ambiguous_names(&files, &map, m)?;
    }
    for f in files {
        let bytes = super::read_limited(&f.path, super::limits::USAGE, "usage")?;
        let digest = FileDigest {
            sha256: super::sha256_hex(&bytes),
            bytes: bytes.len() as u64,
        };
        let idx = out.files.len();
        let file = parse_usage_file(idx, f, &bytes, digest, &map, &mut out)?;
        out.files.push(file);
    }
    Ok(out)
}

/// Parses the bytes of one usage file named `name` (its tenant, for a Graph
/// export, from a `<tenant-guid>.csv` name): an entry point for tests and
/// fuzzing, without touching the file system.
pub fn parse_usage_bytes(name: &str, bytes: &[u8]) -> Result<UsageInput, Fatal> {
    let input = InputFile {
        path: PathBuf::from(name),
        display: name.to_string(),
        size: bytes.len() as u64,
    };
    let digest = FileDigest {
        sha256: String::new(),
        bytes: bytes.len() as u64,
    };
    let mut out = UsageInput::default();
    let file = parse_usage_file(0, input, bytes, digest, &BTreeMap::new(), &mut out)?;
    out.files.push(file);
    Ok(out)
}

/// Parses one usage file's bytes, appending observations and rejects to `out`.
fn parse_usage_file(
    idx: usize,
    input: InputFile,
    bytes: &[u8],
    digest: FileDigest,
    map: &BTreeMap<String, String>,
    out: &mut UsageInput,
) -> Result<UsageFile, Fatal> {
    let data_err = |line: u64, message: String| Fatal::Data {
        file: input.display.clone(),
        line,
        column: None,
        message,
    };
    let h = read_header(&input.display, bytes)?;
    let l = layout(&h.fields, h.delimiter).map_err(|m| data_err(1, m))?;
    let tenant = match l.format {
        UsageFormat::CporReport => None,
        UsageFormat::GraphUserCounts => Some(tenant_of(&input, map).ok_or_else(|| {
            data_err(
                1,
                "a Graph user-count export does not name its tenant: name the file \
                 <tenant-guid>.csv or list it in --usage-tenant-map (file,customer_id)"
                    .into(),
            )
        })?),
    };
    let mut file = UsageFile {
        input,
        format: l.format,
        digest,
        rows: 0,
        rejected: 0,
        tenant,
    };
    let body = &bytes[h.byte_len..];
    super::records::for_each_text_row(
        body,
        h.next_line,
        h.delimiter,
        &h.fields,
        &mut |line, rec| {
            let res = match rec {
                Ok(rec) => parse_record(idx, &l, rec, line, &file, out),
                Err(p) => Err((p.column, p.value, p.reason)),
            };
            file.rows += 1;
            if let Err((column, value, reason)) = res {
                file.rejected += 1;
                out.rejects.push(Reject {
                    file: file.input.display.clone(),
                    line,
                    column,
                    value,
                    reason,
                });
            }
        },
    );
    Ok(file)
}

fn parse_record(
    idx: usize,
    l: &Layout,
    rec: &csv::StringRecord,
    line: u64,
    file: &UsageFile,
    out: &mut UsageInput,
) -> Result<(), RowErr> {
    match l.format {
        UsageFormat::CporReport => {
            let (tenant, col) = l.get(rec, Col::Tenant);
            if tenant.is_empty() {
                return Err((col, String::new(), "customer tenant ID is empty".into()));
            }
            if let Some(why) = super::id_problem(tenant) {
                return Err((col, tenant.into(), why));
            }
            let (wl, col) = l.get(rec, Col::Workload);
            if workload_key(wl).is_empty() {
                return Err((col, wl.into(), "workload name is empty".into()));
            }
            let (d, col) = l.get(rec, Col::Date);
            let date = l.date(d, col)?;
            let (m, col) = l.get(rec, Col::Mau);
            let mau = l.count(m, col)?;
            let (p, col) = l.get(rec, Col::Pau);
            let pau = l.count(p, col)?;
            let customer_id = super::id_key(tenant);
            let (name, _) = l.get(rec, Col::Name);
            if !name.is_empty() && !out.customer_names.contains_key(&customer_id) {
                out.customer_names
                    .insert(customer_id.clone(), name.to_string());
            }
            out.obs.push(UsageObs {
                file: idx,
                line,
                customer_id,
                workload: workload_key(wl),
                workload_name: workload_display(wl),
                date,
                month: Month::of(date),
                mau,
                pau: Some(pau),
            });
        }
        UsageFormat::GraphUserCounts => {
            let ri = l.refresh.unwrap_or(0);
            let raw = rec.get(ri).unwrap_or("").trim();
            let date = l.date(raw, l.col_name(ri))?;
            if let Some(pi) = l.period {
                let raw = rec.get(pi).unwrap_or("").trim();
                let days = raw.trim_start_matches(['D', 'd']);
                if !raw.is_empty() && days != "28" && days != "30" {
                    return Err((
                        l.col_name(pi),
                        raw.into(),
                        "monthly active users need a 30-day report (period D30)".into(),
                    ));
                }
            }
            let tenant = file
                .tenant
                .as_ref()
                .map(|t| t.0.clone())
                .unwrap_or_default();
            let mut found = Vec::new();
            for (name, ci) in &l.graph {
                let raw = rec.get(*ci).unwrap_or("").trim();
                if raw.is_empty() {
                    continue;
                }
                let mau = l.count(raw, l.col_name(*ci))?;
                found.push(UsageObs {
                    file: idx,
                    line,
                    customer_id: tenant.clone(),
                    workload: workload_key(name),
                    workload_name: name.clone(),
                    date,
                    month: Month::of(date),
                    mau,
                    pau: None,
                });
            }
            if found.is_empty() {
                return Err((
                    "(row)".into(),
                    String::new(),
                    "no '<Workload> Active' count on this row".into(),
                ));
            }
            out.obs.extend(found);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str, text: &str, map: &[(&str, &str)]) -> Result<UsageInput, Fatal> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        let m = if map.is_empty() {
            None
        } else {
            let mp = dir.path().join("map.csv");
            let mut t = String::from("file,customer_id\n");
            for (f, c) in map {
                t.push_str(&format!("{f},{c}\n"));
            }
            std::fs::write(&mp, t).unwrap();
            Some(mp)
        };
        load_usage(&[p], m.as_deref())
    }

    /// A file name that two Graph exports share (one folder per tenant) is
    /// not a key of one of them: refused, naming both; by path, each gets
    /// its own tenant.
    #[test]
    fn a_tenant_map_name_shared_by_two_files_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let graph = "Report Refresh Date,Teams Active,Teams Inactive,Report Period\n\
                     2026-10-30,30,1,30\n";
        let mut files = Vec::new();
        for t in ["contoso", "fabrikam"] {
            std::fs::create_dir(dir.path().join(t)).unwrap();
            let f = dir.path().join(t).join("usage.csv");
            std::fs::write(&f, graph).unwrap();
            files.push(f);
        }
        let map = dir.path().join("map.csv");
        std::fs::write(&map, "file,customer_id\nusage.csv,t1\n").unwrap();
        let e = load_usage(&files, Some(&map)).unwrap_err().to_string();
        assert!(
            e.contains("'usage.csv' names 2 --usage files")
                && e.contains("contoso/usage.csv")
                && e.contains("fabrikam/usage.csv"),
            "{e}"
        );
        let by_path = format!(
            "file,customer_id\n{},t1\n{},t2\n",
            files[0].display(),
            files[1].display()
        );
        std::fs::write(&map, by_path).unwrap();
        let u = load_usage(&files, Some(&map)).unwrap();
        let tenants: Vec<&str> = u.obs.iter().map(|o| o.customer_id.as_str()).collect();
        assert_eq!(tenants, ["t1", "t2"]);
        // One file by its name is as before.
        std::fs::write(&map, "file,customer_id\nusage.csv,t1\n").unwrap();
        assert!(load_usage(&files[..1], Some(&map)).is_ok());
    }

    /// A tenant with a zero-width space (in the tenant map or a report's
    /// row) would be another tenant than the one it shows: its usage would
    /// match no customer, without a word. The map is refused, the row
    /// rejected, naming the character.
    #[test]
    fn a_tenant_with_a_hidden_character_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("usage.csv");
        std::fs::write(
            &f,
            "Report Refresh Date,Teams Active,Teams Inactive,Report Period\n2026-10-30,30,1,30\n",
        )
        .unwrap();
        let map = dir.path().join("map.csv");
        std::fs::write(&map, "file,customer_id\nusage.csv,t1\u{200B}\n").unwrap();
        let e = load_usage(&[f], Some(&map)).unwrap_err().to_string();
        assert!(e.contains("map.csv") && e.contains("U+200B"), "{e}");
        let text = "customerTenantId,Customer Name,Workload,MAU,PaidAvailableUnits,Date\n\
                    t1\u{FEFF},Contoso,Teams,15,100,2026-10-01\n\
                    t1,Contoso,Teams,15,100,2026-10-01\n";
        let u = load("report.csv", text, &[]).unwrap();
        assert_eq!((u.obs.len(), u.rejects.len()), (1, 1));
        assert_eq!(u.rejects[0].column, "customerTenantId");
        assert!(u.rejects[0].reason.contains("U+FEFF"), "{:?}", u.rejects);
    }

    #[test]
    fn cpor_report_with_bom_aliases_and_rejects() {
        let text =
            "\u{feff}customerTenantId;Customer Name;Workload;MAU;PaidAvailableUnits;Date;Extra\n\
            AAA;Contoso;Exchange Online;15;100;2026-10-01;x\n\
            bbb;Fabrikam;Teams;1,5;10;10/1/2026;\n\
            ccc;X;Teams;-3;10;10/1/2026;\n\
            ddd;X;Teams;3;10;31/10/2026;\n\
            ;X;Teams;3;10;10/1/2026;\n\
            eee;X\n";
        let u = load("report.csv", text, &[]).unwrap();
        assert_eq!(u.files[0].format, UsageFormat::CporReport);
        assert_eq!(u.files[0].rows, 6);
        assert_eq!(u.files[0].rejected, 5);
        assert_eq!(u.obs.len(), 1);
        assert_eq!(u.obs[0].customer_id, "aaa");
        assert_eq!(u.obs[0].workload_name, "Exchange");
        assert_eq!(u.obs[0].pau, Some(Decimal::from(100)));
        let r: Vec<(u64, &str)> = u
            .rejects
            .iter()
            .map(|r| (r.line, r.column.as_str()))
            .collect();
        assert_eq!(
            r,
            [
                (3, "MAU"),
                (4, "MAU"),
                (5, "Date"),
                (6, "customerTenantId"),
                (7, "(row)")
            ]
        );
        assert_eq!(u.rejects[0].value, "1,5");
        assert!(u.rejects[0].reason.contains("whole"));
    }

    /// Counts past MAX_USERS are rejected: sums and differences of counts
    /// over a run then stay far inside the decimal range.
    #[test]
    fn a_user_count_past_the_limit_is_rejected() {
        let text = "customerTenantId,Workload,MAU,PaidAvailableUnits,Date\n\
            aaa,Teams,1000000000,1000000000,2026-10-01\n\
            bbb,Teams,1000000001,10,2026-10-01\n\
            ccc,Teams,3,79228162514264337593543950335,2026-10-01\n";
        let u = load("report.csv", text, &[]).unwrap();
        assert_eq!(u.obs.len(), 1);
        let r: Vec<(u64, &str, &str)> = u
            .rejects
            .iter()
            .map(|r| (r.line, r.column.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(
            r,
            [
                (3, "MAU", "1000000001"),
                (4, "PaidAvailableUnits", "79228162514264337593543950335")
            ]
        );
        assert!(u.rejects[0].reason.contains("more than 1000000000 users"));
    }

    const GRAPH: &str = "Report Refresh Date,Exchange Active,Exchange Inactive,OneDrive Active,OneDrive Inactive,SharePoint Active,SharePoint Inactive,Skype For Business Active,Skype For Business Inactive,Yammer Active,Yammer Inactive,Teams Active,Teams Inactive,Office 365 Active,Office 365 Inactive,Report Period\n\
        2026-10-31,40,60,10,90,,,0,0,,,25,75,45,55,30\n\
        2026-10-31,40,60,10,90,,,0,0,,,25,75,45,55,7\n";

    #[test]
    fn graph_tenant_from_file_name_and_map() {
        let g = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";
        let u = load(&format!("{}.csv", g.to_uppercase()), GRAPH, &[]).unwrap();
        assert_eq!(u.files[0].tenant.as_ref().unwrap().0, g);
        assert_eq!(u.files[0].tenant.as_ref().unwrap().1, "file name");
        let wl: Vec<(&str, String)> = u
            .obs
            .iter()
            .map(|o| (o.workload_name.as_str(), o.mau.to_string()))
            .collect();
        assert_eq!(
            wl,
            [
                ("Exchange", "40".to_string()),
                ("OneDrive", "10".into()),
                ("Skype For Business", "0".into()),
                ("Teams", "25".into()),
                ("Office 365", "45".into())
            ]
        );
        assert!(u.obs.iter().all(|o| o.pau.is_none() && o.line == 2));
        assert_eq!(u.rejects.len(), 1);
        assert_eq!(u.rejects[0].column, "Report Period");
        let u = load("contoso-usage.csv", GRAPH, &[("contoso-usage.csv", "T-1")]).unwrap();
        assert_eq!(u.files[0].tenant, Some(("t-1".to_string(), "tenant map")));
        let e = load("contoso-usage.csv", GRAPH, &[]).unwrap_err();
        assert!(e.to_string().contains("does not name its tenant"), "{e}");
    }

    #[test]
    fn crlf_line_numbers() {
        let text = "CustomerTenantId,WorkloadName,MonthlyActiveUsers,PaidAvailableUnits,Date\r\n\
            a,Teams,1,10,2026-10-01\r\n\
            b,Teams,x,10,2026-10-01\r\n\
            c,Teams,1,10,2026-10-01\r\n\
            d,Teams,y,10,2026-10-01\r\n";
        let u = load("r.csv", text, &[]).unwrap();
        let lines: Vec<u64> = u.obs.iter().map(|o| o.line).collect();
        assert_eq!(lines, [2, 4]);
        let lines: Vec<u64> = u.rejects.iter().map(|r| r.line).collect();
        assert_eq!(lines, [3, 5]);
    }

    /// Found by fuzzing (usage): a Graph header whose `Teams Active` has
    /// non-UTF-8 bytes inside normalised to `teamsactive`, and cutting off
    /// "Active" by byte count split a character: a panic.
    #[test]
    fn fuzz_graph_header_with_bytes_inside_active_does_not_panic() {
        let mut bytes =
            b"Report Refresh Date,Teams Acti\xaa\xaa\xaa\xaave,Report Period\n".to_vec();
        bytes.extend_from_slice(b"2026-10-31,25,30\n");
        let u = parse_usage_bytes("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0.csv", &bytes).unwrap();
        assert_eq!(u.obs.len(), 1);
    }

    #[test]
    fn unknown_header_is_fatal() {
        let e = load("x.csv", "a,b\n1,2\n", &[]).unwrap_err();
        assert!(e.to_string().contains("not a usage export"), "{e}");
        let e = load("x.csv", "MonthlyActiveUsers,Date\n1,2\n", &[]).unwrap_err();
        assert!(
            e.to_string().contains("'CustomerTenantId' is missing"),
            "{e}"
        );
    }
}
