//! The attainment outputs: `attainment.csv` (every tenant, workload and month
//! of the period), `partners/<id>/attainment.csv` (a partner's usage view:
//! attainment, seats, competencies, capability score) and the attainment and
//! tier-rate sections of a partner statement CSV.

use std::collections::BTreeMap;
use std::path::Path;

use rust_decimal::Decimal;

use super::{excel_safe, sanitize_file_name};
use crate::attain::{AttainmentTable, PartnerUsage};
use crate::dates::Period;
use crate::error::Fatal;
use crate::model::Attainment;
use crate::money::format_exact_dp;
use crate::statements::PartnerStatement;

// The CSV dialect of `render::csv` (CRLF, flexible, formulas neutralised,
// rates with at least one decimal), restated here so that `render::csv` can
// call this module for the statement sections without an import cycle.
fn writer(w: Vec<u8>) -> csv::Writer<Vec<u8>> {
    csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .flexible(true)
        .from_writer(w)
}

fn row(w: &mut csv::Writer<Vec<u8>>, fields: &[&str]) -> csv::Result<()> {
    for f in fields {
        w.write_field(excel_safe(f).as_bytes())?;
    }
    w.write_record(None::<&[u8]>)
}

fn ratio(d: Decimal) -> String {
    format_exact_dp(d, 1)
}

/// Header of `attainment.csv`.
pub const ATTAINMENT_HEADER: [&str; 15] = [
    "customer_id",
    "customer_name",
    "workload",
    "month",
    "mau",
    "pau",
    "pau_source",
    "attainment",
    "target_reached",
    "prior_hwm",
    "compensable_units",
    "source_file",
    "source_line",
    "date",
    "note",
];

fn opt(d: Option<Decimal>) -> String {
    d.map(|d| d.normalize().to_string()).unwrap_or_default()
}

fn n(d: Decimal) -> String {
    format_exact_dp(d, 0)
}

/// The columns of one attainment row (after any leading columns).
pub fn attainment_fields(name: &str, a: &Attainment) -> Vec<String> {
    vec![
        a.customer_id.clone(),
        name.to_string(),
        a.workload_name.clone(),
        a.month.to_string(),
        n(a.mau),
        n(a.pau),
        a.pau_source.as_str().to_string(),
        opt(a.attainment),
        a.target_reached.map(|t| t.to_string()).unwrap_or_default(),
        n(a.prior_hwm),
        n(a.compensable),
        a.source_file.clone(),
        a.line.to_string(),
        a.date.to_string(),
        if a.attainment.is_none() {
            "PAU 0: attainment not computable".into()
        } else {
            String::new()
        },
    ]
}

fn csv_err(path: &Path) -> impl Fn(csv::Error) -> Fatal + '_ {
    move |e| Fatal::Io {
        path: path.display().to_string(),
        source: std::io::Error::other(e.to_string()),
    }
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Writes `attainment.csv`: every tenant, workload and month of the period,
/// sorted by customer, workload, month.
pub fn write_attainment(
    dir: &Path,
    table: &AttainmentTable,
    customer_names: &BTreeMap<String, String>,
    period: Period,
) -> Result<(), Fatal> {
    let path = dir.join("attainment.csv");
    let err = csv_err(&path);
    let mut w = writer(Vec::new());
    row(&mut w, &ATTAINMENT_HEADER).map_err(&err)?;
    for a in table.rows.values() {
        if !period.contains(a.month.first_day()) {
            continue;
        }
        let name = customer_names
            .get(&a.customer_id)
            .cloned()
            .unwrap_or_default();
        row(&mut w, &strs(&attainment_fields(&name, a))).map_err(&err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))
        .map_err(&err)?;
    std::fs::write(&path, bytes).map_err(|e| Fatal::io(&path, e))
}

/// Appends the attainment section (and tier notes) to a partner statement CSV.
pub fn statement_sections(p: &PartnerStatement) -> csv::Result<Vec<u8>> {
    let mut out = Vec::new();
    if !p.attainment.is_empty() {
        out.extend_from_slice(b"\r\n");
        let mut w = writer(Vec::new());
        let mut h = vec!["attainment", "association"];
        h.extend(ATTAINMENT_HEADER);
        row(&mut w, &h)?;
        for l in &p.attainment {
            let mut f = vec!["attainment".to_string(), l.associations.clone()];
            f.extend(attainment_fields(&l.customer_name, &l.row));
            row(&mut w, &strs(&f))?;
        }
        out.extend(
            w.into_inner()
                .map_err(|e| csv::Error::from(e.into_error()))?,
        );
    }
    if !p.tier_notes.is_empty() {
        out.extend_from_slice(b"\r\n");
        let mut w = writer(Vec::new());
        row(
            &mut w,
            &[
                "tier_rate",
                "customer_id",
                "program_id",
                "product",
                "month",
                "workload_attainment",
                "decisive_attainment",
                "rate",
                "explanation",
            ],
        )?;
        for t in &p.tier_notes {
            let wl: Vec<String> = t
                .workloads
                .iter()
                .map(|(n, a)| {
                    format!(
                        "{n}={}",
                        a.map(|a| a.to_string()).unwrap_or_else(|| "n/a".into())
                    )
                })
                .collect();
            row(
                &mut w,
                &[
                    "tier_rate",
                    &t.customer_id,
                    &t.program_id,
                    &t.product,
                    &t.month.to_string(),
                    &wl.join(";"),
                    &opt(t.decisive),
                    &ratio(t.rate),
                    &t.explanation,
                ],
            )?;
        }
        out.extend(
            w.into_inner()
                .map_err(|e| csv::Error::from(e.into_error()))?,
        );
    }
    Ok(out)
}

/// Writes `partners/<id>/attainment.csv` for every partner with usage.
pub fn write_partner_attainment(
    dir: &Path,
    partners: &[PartnerUsage],
    period: Period,
) -> Result<(), Fatal> {
    type Section<'a> = &'a dyn Fn(&mut csv::Writer<Vec<u8>>, &PartnerUsage) -> csv::Result<()>;
    let header = |w: &mut csv::Writer<Vec<u8>>, p: &PartnerUsage| header_section(w, p, period);
    let sections: [Section<'_>; 5] = [
        &header,
        &attainment_section,
        &seats_section,
        &competency_section,
        &capability_section,
    ];
    for p in partners {
        let pdir = dir.join("partners").join(sanitize_file_name(&p.partner_id));
        std::fs::create_dir_all(&pdir).map_err(|e| Fatal::io(&pdir, e))?;
        let path = pdir.join("attainment.csv");
        let err = csv_err(&path);
        let mut buf = Vec::new();
        for section in sections {
            if !buf.is_empty() {
                buf.extend_from_slice(b"\r\n");
            }
            let mut w = writer(Vec::new());
            section(&mut w, p).map_err(&err)?;
            buf.extend(
                w.into_inner()
                    .map_err(|e| csv::Error::from(e.into_error()))
                    .map_err(&err)?,
            );
        }
        std::fs::write(&path, buf).map_err(|e| Fatal::io(&path, e))?;
    }
    Ok(())
}

/// The partner, its name, the period and its capability points.
fn header_section(
    w: &mut csv::Writer<Vec<u8>>,
    p: &PartnerUsage,
    period: Period,
) -> csv::Result<()> {
    row(w, &["porledger partner attainment"])?;
    row(w, &["partner_id", &p.partner_id])?;
    row(w, &["partner_name", &p.partner_name])?;
    row(w, &["period", &period.label()])?;
    row(
        w,
        &[
            "capability_points",
            &p.capability_points.normalize().to_string(),
        ],
    )
}

/// The attainment rows of the tenant-workloads the partner holds.
fn attainment_section(w: &mut csv::Writer<Vec<u8>>, p: &PartnerUsage) -> csv::Result<()> {
    let mut h = vec!["association"];
    h.extend(ATTAINMENT_HEADER);
    row(w, &h)?;
    for l in &p.lines {
        let mut f = vec![l.associations.clone()];
        f.extend(attainment_fields(&l.customer_name, &l.row));
        row(w, &strs(&f))?;
    }
    Ok(())
}

/// Seats and active users per workload.
fn seats_section(w: &mut csv::Writer<Vec<u8>>, p: &PartnerUsage) -> csv::Result<()> {
    row(
        w,
        &[
            "workload",
            "workload_name",
            "month",
            "customers",
            "seats",
            "active",
        ],
    )?;
    for s in &p.workloads {
        row(
            w,
            &[
                "workload",
                &s.workload,
                &s.month,
                &s.customers.to_string(),
                &n(s.seats),
                &n(s.active),
            ],
        )?;
    }
    Ok(())
}

/// The competency thresholds, met or not.
fn competency_section(w: &mut csv::Writer<Vec<u8>>, p: &PartnerUsage) -> csv::Result<()> {
    row(
        w,
        &[
            "competency",
            "workload",
            "level",
            "seats",
            "seats_threshold",
            "customers",
            "customers_threshold",
            "reached",
        ],
    )?;
    for c in &p.competencies {
        row(
            w,
            &[
                "competency",
                &c.workload,
                &c.level,
                &n(c.seats),
                &c.seats_threshold.to_string(),
                &c.customers.to_string(),
                &c.customers_threshold.to_string(),
                if c.reached { "yes" } else { "no" },
            ],
        )?;
    }
    Ok(())
}

/// The capability-score metrics.
fn capability_section(w: &mut csv::Writer<Vec<u8>>, p: &PartnerUsage) -> csv::Result<()> {
    row(
        w,
        &[
            "capability",
            "metric",
            "associations",
            "actual",
            "threshold",
            "max_points",
            "points",
            "detail",
        ],
    )?;
    for m in &p.capability {
        row(
            w,
            &[
                "capability",
                m.metric,
                &m.associations,
                &m.actual.normalize().to_string(),
                &m.threshold.to_string(),
                &m.max_points.to_string(),
                &m.points.normalize().to_string(),
                &m.detail,
            ],
        )?;
    }
    Ok(())
}
