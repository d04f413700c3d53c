//! Usage in the PDF statements: which programs pay per unit of usage (their
//! lines show compensable units and an amount per unit, not a basis and a
//! percentage), and the partner statement's attainment section (the usage
//! attainment of every tenant-workload the partner holds, and how attainment
//! chose tiered rates): the same rows as the CSV statement's `attainment` and
//! `tier_rate` sections, laid out as tables, ratios rounded for people.
//!
//! The fields of the attainment model are read in two places only,
//! [`attainment_rows`] and [`tier_rows`], so that a change of the model touches
//! little here.

use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::Decimal;

use super::layout::{Canvas, Col, Row, RowKind};
use super::template::Align;
use super::{display_name, fill, Renderer, GREY};
use crate::money::Currency;
use crate::statements::{
    CustomerStatement, DetailLine, PartnerStatement, StatementLine, StatementSet,
};

/// `ProgramInfo::basis` of a program that pays per unit of usage.
pub const USAGE_BASIS: &str = "usage";

/// A statement line and its detail lines.
pub type LineWithDetails<'a> = (&'a StatementLine, &'a [DetailLine]);

/// The programs of a run that pay per unit of usage.
pub struct UsagePrograms<'a>(BTreeSet<&'a str>);

impl<'a> UsagePrograms<'a> {
    pub fn of(set: &'a StatementSet) -> UsagePrograms<'a> {
        UsagePrograms(
            set.programs
                .iter()
                .filter(|p| p.basis == USAGE_BASIS)
                .map(|p| p.id.as_str())
                .collect(),
        )
    }

    pub fn is(&self, program_id: &str) -> bool {
        self.0.contains(program_id)
    }

    /// Per currency: are all lines usage lines (`Some(true)`), none
    /// (`Some(false)`), or some (`None`: their basis adds units to money).
    pub fn by_currency<'l>(
        &self,
        lines: impl IntoIterator<Item = &'l StatementLine>,
    ) -> BTreeMap<Currency, Option<bool>> {
        let mut m: BTreeMap<Currency, Option<bool>> = BTreeMap::new();
        for l in lines {
            let u = self.is(&l.program_id);
            let e = m.entry(l.currency).or_insert(Some(u));
            if *e != Some(u) {
                *e = None;
            }
        }
        m
    }

    /// A customer's lines with their details, in runs of one kind (usage or
    /// not), in statement order. Details follow the order of the lines
    /// (grouped by program, currency and month), so one forward pass pairs them.
    pub fn runs<'c>(&self, c: &'c CustomerStatement) -> Vec<(bool, Vec<LineWithDetails<'c>>)> {
        let mut runs: Vec<(bool, Vec<LineWithDetails<'c>>)> = Vec::new();
        let mut di = 0;
        for line in &c.lines {
            let start = di;
            while di < c.details.len()
                && *c.details[di].program_id == *line.program_id
                && c.details[di].currency == line.currency
                && c.details[di].month == line.month
            {
                di += 1;
            }
            let u = self.is(&line.program_id);
            let item = (line, &c.details[start..di]);
            match runs.last_mut() {
                Some((k, run)) if *k == u => run.push(item),
                _ => runs.push((u, vec![item])),
            }
        }
        runs
    }
}

/// One attainment row as printed.
struct AttainmentRow<'a> {
    customer: String,
    workload: &'a str,
    month: String,
    association: &'a str,
    mau: Decimal,
    pau: Decimal,
    attainment: Option<Decimal>,
    target: Option<Decimal>,
    prior_high: Decimal,
    units: Decimal,
}

/// The partner's attainment rows (the only place reading the model's fields).
fn attainment_rows(p: &PartnerStatement) -> Vec<AttainmentRow<'_>> {
    p.attainment
        .iter()
        .map(|l| AttainmentRow {
            customer: display_name(&l.customer_name, &l.customer_id),
            workload: &l.row.workload_name,
            month: l.row.month.to_string(),
            association: &l.associations,
            mau: l.row.mau,
            pau: l.row.pau,
            attainment: l.row.attainment,
            target: l.row.target_reached,
            prior_high: l.row.prior_hwm,
            units: l.row.compensable,
        })
        .collect()
}

/// One tier decision as printed.
struct TierRow<'a> {
    customer: String,
    program: String,
    product: &'a str,
    month: String,
    workloads: &'a [(String, Option<Decimal>)],
    decisive: Option<Decimal>,
    rate: Decimal,
}

/// The partner's tier decisions (the only place reading the model's fields).
fn tier_rows(p: &PartnerStatement) -> Vec<TierRow<'_>> {
    let customer = |id: &str| {
        p.customers
            .iter()
            .find(|c| c.customer_id == id)
            .map(|c| display_name(&c.customer_name, &c.customer_id))
            .unwrap_or_else(|| id.to_string())
    };
    let program = |id: &str| {
        p.lines()
            .find(|l| &*l.program_id == id && !l.program_name.is_empty())
            .map(|l| l.program_name.to_string())
            .unwrap_or_else(|| id.to_string())
    };
    p.tier_notes
        .iter()
        .map(|t| TierRow {
            customer: customer(&t.customer_id),
            program: program(&t.program_id),
            product: &t.product,
            month: t.month.to_string(),
            workloads: &t.workloads,
            decisive: t.decisive,
            rate: t.rate,
        })
        .collect()
}

/// Relative column widths (the columns share the text width in proportion).
fn cols(spec: &[(f32, Align, &str)], width: f32) -> Vec<Col> {
    let total: f32 = spec.iter().map(|c| c.0).sum();
    spec.iter()
        .map(|&(w, align, header)| Col {
            width: w / total * width,
            align,
            header: header.to_string(),
            numeric: align == Align::Right,
        })
        .collect()
}

impl Renderer {
    fn attainment_cell(&self, a: Option<Decimal>) -> String {
        a.map(|a| self.fmt.ratio_rounded(a))
            .unwrap_or_else(|| self.t.locale.labels.not_computable.clone())
    }

    /// The attainment table: one row per tenant, workload and month the
    /// partner holds, as in the CSV statement.
    pub(super) fn attainment(&self, cv: &mut Canvas<'_>, p: &PartnerStatement, width: f32) {
        let rows = attainment_rows(p);
        if rows.is_empty() {
            return;
        }
        let l = &self.t.locale.labels;
        let c = &self.t.locale.columns;
        let st = &self.t.spec.style;
        cv.heading(&l.attainment, st.heading_size, self.accent, 40.0);
        let intro = &self.t.locale.paragraphs.attainment_intro;
        cv.paragraph(intro, false, st.body_size, GREY);
        cv.space(2.0);
        let (left, right) = (Align::Left, Align::Right);
        let cols = cols(
            &[
                (80.0, left, &l.customer),
                (50.0, left, &c.workload),
                (38.0, left, &c.month),
                (50.0, left, &c.association),
                (34.0, right, &c.mau),
                (36.0, right, &c.pau),
                (66.0, right, &c.attainment),
                (40.0, right, &c.target),
                (56.0, right, &c.prior_high),
                (50.0, right, &c.units),
            ],
            width,
        );
        let rows = rows.into_iter().map(|a| {
            let cells = vec![
                a.customer,
                a.workload.to_string(),
                a.month,
                a.association.to_string(),
                self.fmt.units(a.mau),
                self.fmt.units(a.pau),
                self.attainment_cell(a.attainment),
                a.target
                    .map(|t| self.fmt.percent(t))
                    .unwrap_or_else(|| l.no_target.clone()),
                self.fmt.units(a.prior_high),
                self.fmt.units(a.units),
            ];
            Row::Cells(cells, RowKind::Normal)
        });
        cv.table(&cols, rows, &self.table_style(), &l.continued);
        cv.space(6.0);
    }

    /// How attainment chose tiered rates: per decision the workloads of the
    /// product with their attainment, closed by the decisive (lowest)
    /// attainment and the rate.
    pub(super) fn tier_rates(&self, cv: &mut Canvas<'_>, p: &PartnerStatement, width: f32) {
        let notes = tier_rows(p);
        if notes.is_empty() {
            return;
        }
        let l = &self.t.locale.labels;
        let c = &self.t.locale.columns;
        let st = &self.t.spec.style;
        cv.heading(&l.tier_rates, st.heading_size, self.accent, 40.0);
        let intro = &self.t.locale.paragraphs.tier_intro;
        cv.paragraph(intro, false, st.body_size, GREY);
        cv.space(2.0);
        let (left, right) = (Align::Left, Align::Right);
        let cols = cols(
            &[
                (3.0, left, &l.customer),
                (3.0, left, &c.product),
                (1.2, left, &c.month),
                (1.6, left, &c.workload),
                (1.8, right, &c.attainment),
                (1.4, right, &c.rate),
            ],
            width,
        );
        let rows = notes.into_iter().flat_map(|t| {
            let first = std::iter::once((t.customer.clone(), t.product.to_string(), t.month));
            let heads = first.chain(std::iter::repeat((
                String::new(),
                String::new(),
                String::new(),
            )));
            let mut rows: Vec<Row> = t
                .workloads
                .iter()
                .zip(heads)
                .map(|((w, a), (cust, product, month))| {
                    let cells = vec![cust, product, month, w.clone(), self.attainment_cell(*a)];
                    Row::Cells(
                        cells.into_iter().chain([String::new()]).collect(),
                        RowKind::Normal,
                    )
                })
                .collect();
            let label = fill(&l.tier_rate, &[("program", &t.program)]);
            let cells = vec![
                label,
                String::new(),
                String::new(),
                String::new(),
                self.attainment_cell(t.decisive),
                self.fmt.percent(t.rate),
            ];
            rows.push(Row::Cells(cells, RowKind::Subtotal));
            rows
        });
        cv.table(&cols, rows, &self.table_style(), &l.continued);
        cv.space(6.0);
    }
}
