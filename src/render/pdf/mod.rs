//! PDF statements (printpdf): the partner statement and the customer
//! transparency statement, laid out from a template.
//!
//! - [`template`] loads `templates/` (embedded) or `--template DIR`;
//! - [`format`](mod@format) formats numbers, amounts and dates per locale;
//! - [`layout`] measures text and flows blocks and tables over pages;
//! - this module builds the two documents from the statement model and writes
//!   them.
//!
//! A [`Renderer`] parses the fonts and the template once per run and is shared
//! by reference across rayon threads. Output is deterministic: fixed font
//! resource ids, dates from the period, and a document ID derived from the
//! hash of the drawn content, so two runs give byte-identical files.

mod adjustment;
mod chart;
pub mod format;
pub mod layout;
pub mod template;
pub mod tieout;
mod usage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use printpdf::{Mm, OffsetDateTime, Op, ParsedFont, PdfDocument, PdfFont, PdfPage, PdfSaveOptions};
use rayon::prelude::*;
use rust_decimal::Decimal;

use self::format::{fill, Formatter};
use self::layout::{Canvas, Col, Face, Geometry, Row, RowKind, TableStyle, PT_PER_MM};
use self::template::{
    parse_color, Align, Column, DesignationField, LineField, Loaded, LogoPosition, PartnerSection,
    SummaryField, TemplateInfo, TransparencySection,
};
use self::usage::{LineWithDetails, UsagePrograms};
use super::ordered_json::OrderedJson;
use super::publish::Written;
use super::sanitize_file_name;
use crate::config::Association;
use crate::error::Fatal;
use crate::money::Currency;
use crate::statements::{
    CustomerStatement, DetailLine, PartnerStatement, ProgramTotal, StatementSet,
};

/// Everything needed to render documents, loaded once per run.
pub struct Renderer {
    t: Loaded,
    fmt: Formatter,
    regular: Face,
    bold: Face,
    accent: [f32; 3],
    rule: [f32; 3],
    header_fill: [f32; 3],
    subtotal_fill: [f32; 3],
}

/// Which PDFs to write.
#[derive(Debug, Clone, Copy, Default)]
pub struct PdfOptions {
    /// Also write one transparency statement per customer at the top level
    /// (`customers/<id>.pdf`) listing every partner that earned on it.
    pub transparency_by_customer: bool,
}

pub(crate) const GREY: [f32; 3] = [0.35, 0.38, 0.42];
const BLACK: [f32; 3] = [0.0, 0.0, 0.0];

impl Renderer {
    /// Loads the template (`None`: the built-in one) for `locale` and parses
    /// its fonts.
    pub fn load(template_dir: Option<&Path>, locale: &str) -> Result<Renderer, Fatal> {
        let t = template::load(template_dir, locale)?;
        let parse = |bytes: &[u8], key: &str, path: &str| {
            ParsedFont::from_bytes(bytes, 0, &mut Vec::new())
                .ok_or_else(|| template::font_error(template_dir, key, path))
        };
        let regular = Face::new(
            parse(&t.regular_font, "fonts.regular", &t.spec.fonts.regular)?,
            "PLREGU",
        );
        let bold = Face::new(
            parse(&t.bold_font, "fonts.bold", &t.spec.fonts.bold)?,
            "PLBOLD",
        );
        // Colours were validated when the template was loaded.
        let c = |s: &str| parse_color(s).unwrap_or(BLACK);
        Ok(Renderer {
            fmt: Formatter::new(t.locale.format.clone()),
            accent: c(&t.spec.style.accent_color),
            rule: c(&t.spec.style.rule_color),
            header_fill: c(&t.spec.style.header_fill),
            subtotal_fill: c(&t.spec.style.subtotal_fill),
            regular,
            bold,
            t,
        })
    }

    /// What the manifest records about the template.
    pub fn info(&self) -> &TemplateInfo {
        &self.t.info
    }

    fn canvas(&self) -> Canvas<'_> {
        let p = &self.t.spec.page;
        Canvas::new(Geometry {
            regular: &self.regular,
            bold: &self.bold,
            width: p.width_mm * PT_PER_MM,
            height: p.height_mm * PT_PER_MM,
            left: p.margin_left_mm * PT_PER_MM,
            right: p.margin_right_mm * PT_PER_MM,
            top: p.margin_top_mm * PT_PER_MM,
            bottom: p.margin_bottom_mm * PT_PER_MM,
            line_height: self.t.spec.style.line_height,
        })
    }

    fn table_style(&self) -> TableStyle {
        TableStyle {
            size: self.t.spec.style.table_size,
            header_fill: self.header_fill,
            subtotal_fill: self.subtotal_fill,
            rule: self.rule,
            caption_color: self.accent,
        }
    }

    fn association(&self, a: Association) -> &str {
        let l = &self.t.locale.associations;
        match a {
            Association::Por => &l.POR,
            Association::Dpor => &l.DPOR,
            Association::Cpor => &l.CPOR,
            Association::Pal => &l.PAL,
            Association::Reseller => &l.RESELLER,
            Association::Tier1 => &l.TIER1,
        }
    }

    fn period_text(&self, set: &StatementSet) -> String {
        format!(
            "{} – {}",
            self.fmt.date(set.period.start),
            self.fmt.date(set.period.last_day())
        )
    }

    /// Columns scaled to the text width: `numeric` ones aligned right by
    /// default, and set whole like `whole` ones (months, currency codes,
    /// dates: data a shortened cell would change; see [`Col::numeric`]).
    fn cols<F: Copy>(
        &self,
        c: &[Column<F>],
        width: f32,
        header: impl Fn(F) -> String,
        numeric: impl Fn(F) -> bool,
        whole: impl Fn(F) -> bool,
    ) -> Vec<Col> {
        let total: f32 = c.iter().map(|c| c.width).sum();
        c.iter()
            .map(|col| Col {
                width: col.width / total * width,
                align: col.align.unwrap_or(if numeric(col.field) {
                    Align::Right
                } else {
                    Align::Left
                }),
                header: header(col.field),
                numeric: numeric(col.field) || whole(col.field),
            })
            .collect()
    }

    fn line_header(&self, f: LineField) -> String {
        let c = &self.t.locale.columns;
        match f {
            LineField::Subscription => &c.subscription,
            LineField::Program => &c.program,
            LineField::Month => &c.month,
            LineField::Association => &c.association,
            LineField::Currency => &c.currency,
            LineField::Lines => &c.lines,
            LineField::Basis => &c.basis,
            LineField::Rate => &c.rate,
            LineField::Share => &c.share,
            LineField::Amount => &c.amount,
        }
        .clone()
    }

    /// The title block shared by both documents: logo, title.
    fn title(&self, cv: &mut Canvas<'_>, title: &str) {
        let st = &self.t.spec.style;
        let title_w = self.bold.width(title, st.title_size);
        if let Some(logo) = &self.t.spec.logo {
            let y = cv.y - logo.size;
            let w = self.bold.width(&logo.text, logo.size);
            let x = match logo.position {
                LogoPosition::TopLeft => cv.g.left,
                LogoPosition::TopCenter => (cv.g.width - w) / 2.0,
                LogoPosition::TopRight => cv.g.width - cv.g.right - w,
            };
            cv.text_at(x, y, &logo.text, true, logo.size, self.accent);
            // A logo beside the title only where they cannot overlap.
            if logo.position != LogoPosition::TopRight || title_w + w + 12.0 > cv.text_width() {
                cv.space(cv.lh(logo.size));
            }
        }
        cv.paragraph(title, true, st.title_size, self.accent);
        let x1 = cv.g.width - cv.g.right;
        let (x0, y) = (cv.g.left, cv.y - 3.0);
        cv.hline(x0, x1, y, 0.8, self.accent);
        cv.space(8.0);
    }

    /// Renders one partner statement.
    pub fn partner_statement(&self, set: &StatementSet, p: &PartnerStatement) -> Vec<u8> {
        let l = &self.t.locale.labels;
        let mut cv = self.canvas();
        let width = cv.text_width();
        let usage = UsagePrograms::of(set);
        for section in &self.t.spec.partner_statement.sections {
            match section {
                PartnerSection::Header => self.partner_header(&mut cv, set, p),
                PartnerSection::Summary => {
                    self.summary(&mut cv, set, p, &usage, width);
                    self.month_chart(&mut cv, p, set.period);
                }
                PartnerSection::Customers => self.customers(&mut cv, p, &usage, width),
                PartnerSection::Attainment => {
                    self.attainment(&mut cv, p, width);
                    self.tier_rates(&mut cv, p, width);
                }
                PartnerSection::Totals => {
                    let kinds = usage.by_currency(p.lines());
                    self.totals(&mut cv, &p.totals, &kinds, width);
                    self.converted_totals(&mut cv, p, width);
                }
            }
        }
        let footer = format!("{} · {} {}", p.partner_name, l.partner_id, p.partner_id);
        let title = format!(
            "{} {} {}",
            l.partner_statement_title,
            p.partner_id,
            set.period.label()
        );
        self.save(cv, &footer, &title, set.period.last_day())
    }

    fn partner_header(&self, cv: &mut Canvas<'_>, set: &StatementSet, p: &PartnerStatement) {
        let l = &self.t.locale.labels;
        let st = &self.t.spec.style;
        self.title(cv, &l.partner_statement_title);
        let currencies: Vec<&str> = p.totals.iter().map(|t| t.currency.as_str()).collect();
        let pairs = vec![
            (l.partner.clone(), p.partner_name.clone()),
            (l.partner_id.clone(), p.partner_id.clone()),
            (l.period.clone(), self.period_text(set)),
            (
                l.statement_date.clone(),
                self.fmt.date(set.period.last_day()),
            ),
            (l.currencies.clone(), currencies.join(", ")),
        ];
        let width = cv.text_width();
        cv.key_values(&pairs, st.body_size, width * 0.25);
        cv.space(6.0);
        let intro = self.fill_vars(&self.t.locale.paragraphs.partner_intro, set, Some(p), None);
        cv.paragraph(&intro, false, st.body_size, GREY);
    }

    /// One row per program and currency; a usage program's basis is a count
    /// of units.
    fn summary(
        &self,
        cv: &mut Canvas<'_>,
        set: &StatementSet,
        p: &PartnerStatement,
        usage: &UsagePrograms<'_>,
        width: f32,
    ) {
        let l = &self.t.locale.labels;
        let program_names: BTreeMap<&str, &str> = p
            .lines()
            .map(|l| (&*l.program_id, &*l.program_name))
            .collect();
        let program_name = |id: &str| -> String {
            match program_names.get(id) {
                Some(n) if !n.is_empty() => n.to_string(),
                _ => id.to_string(),
            }
        };
        let spec = &self.t.spec.partner_statement.summary_columns;
        let rows: Vec<Row> = set
            .summary
            .iter()
            .filter(|s| s.partner_id == p.partner_id)
            .map(|s| {
                let cells = spec
                    .iter()
                    .map(|c| match c.field {
                        SummaryField::Program => program_name(&s.program_id),
                        SummaryField::Currency => s.currency.to_string(),
                        SummaryField::Lines => self.fmt.count(s.lines),
                        SummaryField::Basis if usage.is(&s.program_id) => {
                            self.units_text(s.basis_amount)
                        }
                        SummaryField::Basis => self.fmt.amount(s.basis_amount, s.currency),
                        SummaryField::Amount => self.fmt.amount(s.accrual_amount, s.currency),
                    })
                    .collect();
                Row::Cells(cells, RowKind::Normal)
            })
            .collect();
        if rows.is_empty() {
            return;
        }
        cv.heading(
            &l.summary,
            self.t.spec.style.heading_size,
            self.accent,
            40.0,
        );
        let c = &self.t.locale.columns;
        let cols = self.cols(
            spec,
            width,
            |f| {
                match f {
                    SummaryField::Program => &c.program,
                    SummaryField::Currency => &c.currency,
                    SummaryField::Lines => &c.lines,
                    SummaryField::Basis => &c.basis,
                    SummaryField::Amount => &c.amount,
                }
                .clone()
            },
            |f| {
                matches!(
                    f,
                    SummaryField::Lines | SummaryField::Basis | SummaryField::Amount
                )
            },
            |f| matches!(f, SummaryField::Currency),
        );
        cv.table(&cols, rows, &self.table_style(), &l.continued);
        cv.space(6.0);
    }

    /// Per customer a caption and its lines; usage-program lines get their
    /// own column header (units, amount per unit).
    fn customers(
        &self,
        cv: &mut Canvas<'_>,
        p: &PartnerStatement,
        usage: &UsagePrograms<'_>,
        width: f32,
    ) {
        if p.customers.is_empty() {
            return;
        }
        let l = &self.t.locale.labels;
        let ts = self.table_style();
        cv.heading(
            &l.customers,
            self.t.spec.style.heading_size,
            self.accent,
            60.0,
        );
        let spec = &self.t.spec.partner_statement.customer_columns;
        for c in &p.customers {
            let caption = format!(
                "{} · {}: {}",
                display_name(&c.customer_name, &c.customer_id),
                l.tenant_id,
                c.customer_id
            );
            for (k, (is_usage, run)) in usage.runs(c).into_iter().enumerate() {
                let cols = self.line_cols(spec, width, is_usage);
                let rows = self.line_rows(&run, &c.program_totals, spec, is_usage);
                if k == 0 {
                    let caption = std::iter::once(Row::Caption(caption.clone()));
                    cv.table(&cols, caption.chain(rows), &ts, &l.continued);
                } else {
                    cv.table_under(&cols, rows, &ts, &l.continued, Some(&caption));
                }
            }
        }
        cv.space(6.0);
    }

    /// Totals per currency. `kinds` tells, per currency, whether every line
    /// is a usage-program line (basis in units), none is, or both are (`None`:
    /// the basis adds units and money and is left blank).
    fn totals(
        &self,
        cv: &mut Canvas<'_>,
        totals: &[crate::statements::CurrencyTotal],
        kinds: &BTreeMap<Currency, Option<bool>>,
        width: f32,
    ) {
        if totals.is_empty() {
            return;
        }
        let l = &self.t.locale.labels;
        let c = &self.t.locale.columns;
        let st = &self.t.spec.style;
        cv.heading(&l.totals, st.heading_size, self.accent, 30.0);
        let cols = vec![
            Col {
                width: width * 0.5,
                align: Align::Left,
                header: String::new(),
                numeric: false,
            },
            Col {
                width: width * 0.25,
                align: Align::Right,
                header: c.basis.clone(),
                numeric: true,
            },
            Col {
                width: width * 0.25,
                align: Align::Right,
                header: c.amount.clone(),
                numeric: true,
            },
        ];
        let rows = totals.iter().map(|t| {
            Row::Cells(
                vec![
                    fill(&l.total_in, &[("currency", t.currency.as_str())]),
                    self.total_basis(t, kinds),
                    self.fmt.amount(t.amount, t.currency),
                ],
                RowKind::Subtotal,
            )
        });
        cv.table(&cols, rows, &self.table_style(), &l.continued);
        cv.space(6.0);
    }

    /// With an FX table (`--fx`): each currency's total converted into the
    /// reporting currency, with the rate and its date, and the sum of the
    /// converted totals: the `total` and `total_converted` rows of
    /// `statement.csv`.
    fn converted_totals(&self, cv: &mut Canvas<'_>, p: &PartnerStatement, width: f32) {
        let Some((reporting, sum)) = p.reporting_total else {
            return;
        };
        let l = &self.t.locale.labels;
        let c = &self.t.locale.columns;
        let st = &self.t.spec.style;
        let code = [("currency", reporting.as_str())];
        cv.heading(
            &fill(&l.converted_totals, &code),
            st.heading_size,
            self.accent,
            30.0,
        );
        let col = |w: f32, align: Align, header: String, numeric: bool| Col {
            width: width * w,
            align,
            header,
            numeric,
        };
        let cols = vec![
            col(0.26, Align::Left, String::new(), false),
            col(0.22, Align::Right, c.amount.clone(), true),
            col(0.14, Align::Right, l.fx_rate.clone(), true),
            col(0.14, Align::Right, l.fx_rate_date.clone(), true),
            col(0.24, Align::Right, fill(&l.converted_amount, &code), true),
        ];
        let rows = p.totals.iter().filter_map(|t| {
            let x = t.converted.as_ref()?;
            Some(Row::Cells(
                vec![
                    fill(&l.total_in, &[("currency", t.currency.as_str())]),
                    self.fmt.amount(t.amount, t.currency),
                    self.fmt.digits(&crate::money::format_exact_dp(x.rate, 1)),
                    x.rate_date.map(|d| self.fmt.date(d)).unwrap_or_default(),
                    self.fmt.amount(x.amount, x.currency),
                ],
                RowKind::Normal,
            ))
        });
        let total = Row::Cells(
            vec![
                fill(&l.converted_total, &code),
                String::new(),
                String::new(),
                String::new(),
                self.fmt.amount(sum, reporting),
            ],
            RowKind::Subtotal,
        );
        let rows = rows.chain(std::iter::once(total));
        cv.table(&cols, rows, &self.table_style(), &l.continued);
        cv.space(6.0);
    }

    /// The statement's currencies grouped by their number of decimals, for
    /// the rounding sentence: `EUR, USD: 2 decimal places; JPY: 0 decimal
    /// places`.
    fn minor_units(&self, p: &PartnerStatement) -> String {
        let mut by: BTreeMap<u32, Vec<&str>> = BTreeMap::new();
        for t in &p.totals {
            by.entry(t.currency.minor_units())
                .or_default()
                .push(t.currency.as_str());
        }
        // Most currencies have 2: list them first.
        let mut groups: Vec<(u32, Vec<&str>)> = by.into_iter().collect();
        groups.sort_by_key(|(d, _)| (*d != 2, *d));
        groups
            .iter()
            .map(|(d, cs)| {
                fill(
                    &self.t.locale.labels.decimals,
                    &[("currencies", &cs.join(", ")), ("decimals", &d.to_string())],
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn total_basis(
        &self,
        t: &crate::statements::CurrencyTotal,
        kinds: &BTreeMap<Currency, Option<bool>>,
    ) -> String {
        match kinds.get(&t.currency) {
            Some(Some(true)) => self.units_text(t.basis),
            Some(None) => String::new(),
            _ => self.fmt.amount(t.basis, t.currency),
        }
    }

    /// `22` -> `22 units`: a usage basis in a column headed "Basis".
    fn units_text(&self, d: Decimal) -> String {
        fill(
            &self.t.locale.labels.units,
            &[("units", &self.fmt.units(d))],
        )
    }

    /// Columns of a table of lines; a usage run's basis and rate columns are
    /// headed as units and amount per unit.
    fn line_cols(&self, spec: &[Column<LineField>], width: f32, usage: bool) -> Vec<Col> {
        let c = &self.t.locale.columns;
        let mut cols = self.cols(
            spec,
            width,
            |f| match f {
                // A usage line's "subscription" is the workload.
                LineField::Subscription if usage => c.workload.clone(),
                LineField::Basis if usage => c.compensable_units.clone(),
                LineField::Rate if usage => c.per_unit.clone(),
                f => self.line_header(f),
            },
            numeric_line,
            |f| {
                matches!(
                    f,
                    LineField::Month | LineField::Currency | LineField::Association
                )
            },
        );
        if usage {
            widen_usage_columns(spec, &mut cols);
        }
        cols
    }

    /// Detail rows of a run of lines, each line closed by a subtotal row
    /// carrying the line's rounded amount (the only amounts printed: the model's);
    /// a program of several accrual months is closed by its total over the
    /// months (from `totals`, the customer's [`ProgramTotal`]s).
    fn line_rows<'s>(
        &'s self,
        run: &'s [LineWithDetails<'s>],
        totals: &'s [ProgramTotal],
        spec: &'s [Column<LineField>],
        usage: bool,
    ) -> impl Iterator<Item = Row> + 's {
        let l = &self.t.locale.labels;
        run.iter()
            .enumerate()
            .flat_map(move |(k, &(line, details))| {
                let detail_rows = details.iter().map(move |d| {
                    Row::Cells(
                        spec.iter()
                            .map(|col| self.detail_cell(d, col.field, usage))
                            .collect(),
                        RowKind::Normal,
                    )
                });
                let name = if line.program_name.is_empty() {
                    &line.program_id
                } else {
                    &line.program_name
                };
                let subtotal: Vec<String> = spec
                    .iter()
                    .enumerate()
                    .map(|(i, col)| match col.field {
                        LineField::Amount => self.fmt.amount(line.amount, line.currency),
                        LineField::Basis => self.basis_cell(line.basis, line.currency, usage),
                        LineField::Currency => line.currency.to_string(),
                        LineField::Month => line.month.to_string(),
                        LineField::Lines => self.fmt.count(line.lines),
                        LineField::Rate => line
                            .rate
                            .map(|r| self.rate_cell(r, line.currency, usage))
                            .unwrap_or_else(|| l.various.clone()),
                        _ if i == 0 => fill(&l.program_total, &[("program", name)]),
                        _ => String::new(),
                    })
                    .collect();
                // After a program's last month line: its total over the months.
                let months_total = totals
                    .iter()
                    .find(|t| {
                        t.months > 1
                            && t.program_id == line.program_id
                            && t.currency == line.currency
                            && run.get(k + 1).is_none_or(|(n, _)| {
                                n.program_id != line.program_id || n.currency != line.currency
                            })
                    })
                    .map(|t| {
                        let cells = spec
                            .iter()
                            .enumerate()
                            .map(|(i, col)| match col.field {
                                LineField::Amount => self.fmt.amount(t.amount, t.currency),
                                LineField::Basis => self.basis_cell(t.basis, t.currency, usage),
                                LineField::Currency => t.currency.to_string(),
                                LineField::Lines => self.fmt.count(t.lines),
                                _ if i == 0 => fill(&l.months_total, &[("program", name)]),
                                _ => String::new(),
                            })
                            .collect();
                        Row::Cells(cells, RowKind::Subtotal)
                    });
                detail_rows
                    .chain(std::iter::once(Row::Cells(subtotal, RowKind::Subtotal)))
                    .chain(months_total)
            })
    }

    /// A basis: money, or for a usage program a count of units.
    fn basis_cell(&self, d: Decimal, c: Currency, usage: bool) -> String {
        if usage {
            self.fmt.units(d)
        } else {
            self.fmt.amount(d, c)
        }
    }

    /// A rate: a percentage, or for a usage program an amount per unit.
    fn rate_cell(&self, d: Decimal, c: Currency, usage: bool) -> String {
        if usage {
            self.fmt.amount(d, c)
        } else {
            self.fmt.percent(d)
        }
    }

    fn detail_cell(&self, d: &DetailLine, f: LineField, usage: bool) -> String {
        match f {
            LineField::Subscription => d.subscription_id.to_string(),
            LineField::Program => {
                if d.program_name.is_empty() {
                    d.program_id.to_string()
                } else {
                    d.program_name.to_string()
                }
            }
            LineField::Month => d.month.to_string(),
            LineField::Association => d.association.as_str().to_string(),
            LineField::Currency => d.currency.to_string(),
            LineField::Lines => self.fmt.count(d.lines),
            LineField::Basis => self.basis_cell(d.basis, d.currency, usage),
            LineField::Rate => self.rate_cell(d.rate, d.currency, usage),
            LineField::Share => self.fmt.percent(d.share),
            // Detail accruals are exact (unrounded); the rounded amount is on
            // the program's subtotal row.
            LineField::Amount => String::new(),
        }
    }

    fn vars<'v>(
        &self,
        set: &StatementSet,
        p: Option<&'v PartnerStatement>,
        c: Option<&'v CustomerStatement>,
    ) -> Vec<(&'static str, String)> {
        let mut v = vec![
            ("period", self.period_text(set)),
            ("date", self.fmt.date(set.period.last_day())),
        ];
        if let Some(p) = p {
            v.push(("partner_name", display_name(&p.partner_name, &p.partner_id)));
            v.push(("partner_id", p.partner_id.clone()));
            v.push(("minor_units", self.minor_units(p)));
        }
        if let Some(c) = c {
            v.push((
                "customer_name",
                display_name(&c.customer_name, &c.customer_id),
            ));
            v.push(("customer_id", c.customer_id.clone()));
        }
        v
    }

    /// A paragraph of the locale with its placeholders filled in.
    fn fill_vars(
        &self,
        text: &str,
        set: &StatementSet,
        p: Option<&PartnerStatement>,
        c: Option<&CustomerStatement>,
    ) -> String {
        let v = self.vars(set, p, c);
        let refs: Vec<(&str, &str)> = v.iter().map(|(k, s)| (*k, s.as_str())).collect();
        fill(text, &refs)
    }

    /// Renders a transparency statement for one customer: `entries` are the
    /// partners that earned on it (one for `partners/<id>/customers/<cid>.pdf`,
    /// all of them for `customers/<cid>.pdf`).
    pub fn transparency(
        &self,
        set: &StatementSet,
        entries: &[(&PartnerStatement, &CustomerStatement)],
    ) -> Vec<u8> {
        let l = &self.t.locale.labels;
        let para = &self.t.locale.paragraphs;
        let st = &self.t.spec.style;
        let mut cv = self.canvas();
        let Some(&(_, first)) = entries.first() else {
            return self.save(cv, "", "", set.period.last_day());
        };
        let sections = &self.t.spec.transparency.sections;
        let mut i = 0;
        while i < sections.len() {
            if per_partner(sections[i]) {
                let mut j = i;
                while j < sections.len() && per_partner(sections[j]) {
                    j += 1;
                }
                self.per_partner_sections(&mut cv, set, entries, &sections[i..j]);
                i = j;
                continue;
            }
            match sections[i] {
                TransparencySection::Address => self.address(&mut cv, set, entries),
                TransparencySection::Intro => {
                    let intro = self.fill_vars(&para.transparency_intro, set, None, Some(first));
                    cv.paragraph(&intro, false, st.body_size, BLACK);
                    cv.space(4.0);
                }
                TransparencySection::Programs => self.programs(&mut cv, set, entries),
                TransparencySection::Closing => {
                    cv.space(4.0);
                    let closing = self.fill_vars(&para.closing, set, None, Some(first));
                    cv.paragraph(&closing, false, st.body_size, GREY);
                }
                TransparencySection::Designations | TransparencySection::Earnings => {}
            }
            i += 1;
        }
        let footer = format!(
            "{} · {} {}",
            display_name(&first.customer_name, &first.customer_id),
            l.tenant_id,
            first.customer_id
        );
        let title = format!(
            "{} {} {}",
            l.transparency_title,
            first.customer_id,
            set.period.label()
        );
        self.save(cv, &footer, &title, set.period.last_day())
    }

    /// The per-partner sections (designations, earnings), repeated for every
    /// partner, under the partner's name when there are several.
    fn per_partner_sections(
        &self,
        cv: &mut Canvas<'_>,
        set: &StatementSet,
        entries: &[(&PartnerStatement, &CustomerStatement)],
        sections: &[TransparencySection],
    ) {
        let l = &self.t.locale.labels;
        let st = &self.t.spec.style;
        for &(p, c) in entries {
            if entries.len() > 1 {
                let h = format!(
                    "{}: {} ({} {})",
                    l.partner,
                    display_name(&p.partner_name, &p.partner_id),
                    l.partner_id,
                    p.partner_id
                );
                cv.heading(&h, st.heading_size + 1.0, BLACK, 60.0);
            }
            for s in sections {
                match s {
                    TransparencySection::Designations => self.designations(cv, set, p, c, entries),
                    TransparencySection::Earnings => self.earnings(cv, set, p, c, entries),
                    _ => {}
                }
            }
        }
    }

    fn designations(
        &self,
        cv: &mut Canvas<'_>,
        set: &StatementSet,
        p: &PartnerStatement,
        c: &CustomerStatement,
        entries: &[(&PartnerStatement, &CustomerStatement)],
    ) {
        let l = &self.t.locale.labels;
        let para = &self.t.locale.paragraphs;
        let st = &self.t.spec.style;
        // Placeholders name the document's customer (the first entry's).
        let first = entries.first().map(|e| e.1).unwrap_or(c);
        cv.heading(&l.designations, st.heading_size, self.accent, 30.0);
        if c.designations.is_empty() {
            let text = self.fill_vars(&para.no_designation, set, Some(p), Some(first));
            cv.paragraph(&text, false, st.body_size, BLACK);
        } else {
            let text = self.fill_vars(&para.designations_intro, set, Some(p), Some(first));
            cv.paragraph(&text, false, st.body_size, BLACK);
            cv.space(2.0);
            let width = cv.text_width();
            self.designation_table(cv, c, width, &self.table_style());
        }
        cv.space(6.0);
    }

    /// What the partner earned from the customer: the lines with their
    /// details, then totals per currency.
    fn earnings(
        &self,
        cv: &mut Canvas<'_>,
        set: &StatementSet,
        p: &PartnerStatement,
        c: &CustomerStatement,
        entries: &[(&PartnerStatement, &CustomerStatement)],
    ) {
        let l = &self.t.locale.labels;
        let st = &self.t.spec.style;
        let first = entries.first().map(|e| e.1).unwrap_or(c);
        cv.heading(&l.earnings, st.heading_size, self.accent, 40.0);
        let intro = self.fill_vars(
            &self.t.locale.paragraphs.earnings_intro,
            set,
            Some(p),
            Some(first),
        );
        cv.paragraph(&intro, false, st.body_size, GREY);
        cv.space(2.0);
        let usage = UsagePrograms::of(set);
        let kinds = usage.by_currency(&c.lines);
        let spec = &self.t.spec.transparency.earning_columns;
        let width = cv.text_width();
        let ts = self.table_style();
        let runs = usage.runs(c);
        for (k, (is_usage, run)) in runs.iter().enumerate() {
            let cols = self.line_cols(spec, width, *is_usage);
            let rows = self.line_rows(run, &c.program_totals, spec, *is_usage);
            if k + 1 < runs.len() {
                cv.table(&cols, rows, &ts, &l.continued);
            } else {
                let totals = c
                    .totals
                    .iter()
                    .map(|t| self.earnings_total(t, spec, &kinds, *is_usage));
                cv.table(&cols, rows.chain(totals), &ts, &l.continued);
            }
        }
        cv.space(6.0);
    }

    /// The total row of a currency in the earnings table.
    fn earnings_total(
        &self,
        t: &crate::statements::CurrencyTotal,
        spec: &[Column<LineField>],
        kinds: &BTreeMap<Currency, Option<bool>>,
        units_column: bool,
    ) -> Row {
        let l = &self.t.locale.labels;
        let cells = spec
            .iter()
            .enumerate()
            .map(|(k, col)| match col.field {
                LineField::Amount => self.fmt.amount(t.amount, t.currency),
                LineField::Basis => match kinds.get(&t.currency) {
                    // Under a "Compensable units" header the bare count.
                    Some(Some(true)) if units_column => self.fmt.units(t.basis),
                    _ => self.total_basis(t, kinds),
                },
                LineField::Currency => t.currency.to_string(),
                _ if k == 0 => fill(&l.total_in, &[("currency", t.currency.as_str())]),
                _ => String::new(),
            })
            .collect();
        Row::Cells(cells, RowKind::Subtotal)
    }

    fn address(
        &self,
        cv: &mut Canvas<'_>,
        set: &StatementSet,
        entries: &[(&PartnerStatement, &CustomerStatement)],
    ) {
        let l = &self.t.locale.labels;
        let first = entries[0].1;
        self.title(cv, &l.transparency_title);
        let mut pairs = vec![
            (
                l.addressed_to.clone(),
                display_name(&first.customer_name, &first.customer_id),
            ),
            (l.tenant_id.clone(), first.customer_id.clone()),
        ];
        if entries.len() == 1 {
            let p = entries[0].0;
            pairs.push((
                l.partner.clone(),
                format!(
                    "{} ({} {})",
                    display_name(&p.partner_name, &p.partner_id),
                    l.partner_id,
                    p.partner_id
                ),
            ));
        }
        pairs.push((l.period.clone(), self.period_text(set)));
        pairs.push((
            l.statement_date.clone(),
            self.fmt.date(set.period.last_day()),
        ));
        let width = cv.text_width();
        cv.key_values(&pairs, self.t.spec.style.body_size, width * 0.25);
        cv.space(6.0);
    }

    /// Name, description and basis of every program the partners earned from.
    fn programs(
        &self,
        cv: &mut Canvas<'_>,
        set: &StatementSet,
        entries: &[(&PartnerStatement, &CustomerStatement)],
    ) {
        let l = &self.t.locale.labels;
        let para = &self.t.locale.paragraphs;
        let st = &self.t.spec.style;
        let mut ids: Vec<&str> = entries
            .iter()
            .flat_map(|(_, c)| c.lines.iter().map(|l| &*l.program_id))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return;
        }
        cv.heading(&l.programs, st.heading_size, self.accent, 30.0);
        cv.paragraph(&para.programs_intro, false, st.body_size, BLACK);
        cv.space(2.0);
        for id in ids {
            let info = set.programs.iter().find(|p| p.id == id);
            let name = info
                .map(|p| p.name.as_str())
                .filter(|n| !n.is_empty())
                .unwrap_or(id);
            cv.space(2.0);
            cv.paragraph(name, true, st.body_size, BLACK);
            let desc = info
                .map(|p| p.description.trim())
                .filter(|d| !d.is_empty())
                .unwrap_or(&para.no_description);
            cv.paragraph(desc, false, st.body_size, BLACK);
            let basis = match info.map(|p| p.basis.as_str()) {
                Some("billed-revenue") => Some(&para.basis_billed_revenue),
                Some(usage::USAGE_BASIS) => Some(&para.basis_usage),
                _ => None,
            };
            if let Some(b) = basis {
                cv.paragraph(b, false, st.body_size, GREY);
            }
        }
        cv.space(6.0);
    }

    fn designation_table(
        &self,
        cv: &mut Canvas<'_>,
        c: &CustomerStatement,
        width: f32,
        ts: &TableStyle,
    ) {
        let l = &self.t.locale.labels;
        let cl = &self.t.locale.columns;
        let spec = &self.t.spec.transparency.designation_columns;
        let cols = self.cols(
            spec,
            width,
            |f| {
                match f {
                    DesignationField::Association => &cl.association,
                    DesignationField::Subscription => &cl.subscription,
                    DesignationField::Workload => &cl.workload,
                    DesignationField::Share => &cl.share,
                    DesignationField::ValidFrom => &cl.valid_from,
                    DesignationField::ValidTo => &cl.valid_to,
                }
                .clone()
            },
            |f| matches!(f, DesignationField::Share),
            |f| {
                matches!(
                    f,
                    DesignationField::Association
                        | DesignationField::ValidFrom
                        | DesignationField::ValidTo
                )
            },
        );
        let date = |d: Option<NaiveDate>, none: &str| {
            d.map(|d| self.fmt.date(d))
                .unwrap_or_else(|| none.to_string())
        };
        let rows = c.designations.iter().map(|d| {
            let cells = spec
                .iter()
                .map(|col| match col.field {
                    DesignationField::Association => self.association(d.association).to_string(),
                    DesignationField::Subscription => d
                        .subscription_id
                        .clone()
                        .unwrap_or_else(|| l.all_subscriptions.clone()),
                    DesignationField::Workload => {
                        if d.workload.is_empty() {
                            l.all_workloads.clone()
                        } else {
                            d.workload.clone()
                        }
                    }
                    DesignationField::Share => d
                        .share
                        .map(|s| self.fmt.percent(s))
                        .unwrap_or_else(|| l.equal_split.clone()),
                    DesignationField::ValidFrom => date(d.valid_from, &l.not_recorded),
                    // valid_to is exclusive; print the last day it applies.
                    DesignationField::ValidTo => {
                        date(d.valid_to.and_then(|t| t.pred_opt()), &l.open_ended)
                    }
                })
                .collect();
            Row::Cells(cells, RowKind::Normal)
        });
        cv.table(&cols, rows, ts, &l.continued);
    }

    /// Adds footers and serialises the pages. Dates come from the period and
    /// the document ID from the content hash: no clock, no randomness.
    fn save(&self, cv: Canvas<'_>, footer: &str, title: &str, date: NaiveDate) -> Vec<u8> {
        let st = &self.t.spec.style;
        let label = &self.t.locale.labels.page;
        let (pages, hash) = cv.finish(
            footer,
            |i, n| {
                fill(
                    label,
                    &[("page", &i.to_string()), ("pages", &n.to_string())],
                )
            },
            st.footer_size,
            GREY,
        );
        let p = &self.t.spec.page;
        let pages: Vec<PdfPage> = pages
            .into_iter()
            .map(|ops: Vec<Op>| PdfPage::new(Mm(p.width_mm), Mm(p.height_mm), ops))
            .collect();
        let mut doc = PdfDocument::new(title);
        let ts = date
            .and_hms_opt(0, 0, 0)
            .map(|d| d.and_utc().timestamp())
            .unwrap_or(0);
        if let Ok(t) = OffsetDateTime::from_unix_timestamp(ts) {
            doc.metadata.info.creation_date = t;
            doc.metadata.info.modification_date = t;
            doc.metadata.info.metadata_date = t;
        }
        doc.metadata.info.producer = format!("porledger {}", env!("CARGO_PKG_VERSION"));
        doc.metadata.info.creator = format!("porledger template {}", self.t.info.name);
        for face in [&self.regular, &self.bold] {
            doc.resources
                .fonts
                .map
                .insert(face.id.clone(), PdfFont::new(face.font.clone()));
        }
        doc.with_pages(pages);
        let mut warnings = Vec::new();
        let mut lo = doc.to_lopdf_document(&PdfSaveOptions::default(), &mut warnings);
        let id = crate::ingest::hex(&hash[..16]);
        lo.trailer.set(
            "ID",
            lopdf::Object::Array(vec![
                lopdf::Object::String(id.clone().into_bytes(), lopdf::StringFormat::Literal),
                lopdf::Object::String(id.into_bytes(), lopdf::StringFormat::Literal),
            ]),
        );
        compress_streams(&mut lo);
        let mut out = Vec::new();
        // Writing into a Vec cannot fail.
        let _ = lo.save_to(&mut out);
        out
    }
}

/// Deflates every stream that is not yet filtered, at flate2's fast level.
/// lopdf's own `compress` uses the best (slowest) level: that was a third of
/// the run time of thousands of statements, for files a few percent smaller.
fn compress_streams(doc: &mut lopdf::Document) {
    use std::io::Write as _;
    for object in doc.objects.values_mut() {
        if let lopdf::Object::Stream(stream) = object {
            if !stream.allows_compression || stream.dict.get(b"Filter").is_ok() {
                continue;
            }
            let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            if enc.write_all(&stream.content).is_err() {
                continue;
            }
            if let Ok(compressed) = enc.finish() {
                if compressed.len() + 19 < stream.content.len() {
                    stream.dict.set("Filter", "FlateDecode");
                    stream.set_content(compressed);
                }
            }
        }
    }
}

/// Workload names are short and the usage headers long: a usage table gives
/// part of the subscription column to the units and per-unit columns.
fn widen_usage_columns(spec: &[Column<LineField>], cols: &mut [Col]) {
    let find = |f: LineField| spec.iter().position(|c| c.field == f);
    let (Some(sub), Some(basis), Some(rate)) = (
        find(LineField::Subscription),
        find(LineField::Basis),
        find(LineField::Rate),
    ) else {
        return;
    };
    let spare = (cols[sub].width - 60.0).max(0.0);
    cols[sub].width -= spare;
    cols[basis].width += spare * 0.55;
    cols[rate].width += spare * 0.45;
}

/// Sections printed once per partner in a customer-level document.
fn per_partner(s: TransparencySection) -> bool {
    matches!(
        s,
        TransparencySection::Designations | TransparencySection::Earnings
    )
}

fn numeric_line(f: LineField) -> bool {
    matches!(
        f,
        LineField::Lines
            | LineField::Basis
            | LineField::Rate
            | LineField::Share
            | LineField::Amount
    )
}

/// A name, or the ID when the name is empty.
fn display_name(name: &str, id: &str) -> String {
    if name.trim().is_empty() {
        id.to_string()
    } else {
        name.to_string()
    }
}

fn write(files: &Written, path: &Path, bytes: &[u8]) -> Result<(), Fatal> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).map_err(|e| Fatal::io(d, e))?;
    }
    super::publish::write_file(files, path, bytes)
}

/// Writes every PDF of `set` under `dir` (in parallel on the current rayon
/// pool) and returns the written paths relative to `dir`, sorted:
/// `partners/<id>/statement.pdf`, `partners/<id>/customers/<cid>.pdf` and,
/// with [`PdfOptions::transparency_by_customer`], `customers/<cid>.pdf`.
pub fn write_all(
    dir: &Path,
    set: &StatementSet,
    r: &Renderer,
    opts: PdfOptions,
    files: &Written,
) -> Result<Vec<PathBuf>, Fatal> {
    let mut written = write_partner_pdfs(dir, set, r, files)?;
    if opts.transparency_by_customer {
        written.extend(write_customer_pdfs(dir, set, r, files)?);
    }
    written.sort();
    Ok(written)
}

/// Writes each partner's PDFs of `set` (`partners/<id>/statement.pdf` and
/// `partners/<id>/customers/<cid>.pdf`), in parallel on the current rayon
/// pool; returns the written paths relative to `dir`. A partner's documents
/// depend on that partner alone (and the set's period and programs), so a
/// run can write them a batch of partners at a time.
pub fn write_partner_pdfs(
    dir: &Path,
    set: &StatementSet,
    r: &Renderer,
    files: &Written,
) -> Result<Vec<PathBuf>, Fatal> {
    Ok(set
        .partners
        .par_iter()
        .map(|p| -> Result<Vec<PathBuf>, Fatal> {
            let pdir = PathBuf::from("partners").join(sanitize_file_name(&p.partner_id));
            let rel = pdir.join("statement.pdf");
            write(files, &dir.join(&rel), &r.partner_statement(set, p))?;
            // A run renders a few partners at a time: their customers'
            // documents keep the threads busy.
            let mut out = p
                .customers
                .par_iter()
                .map(|c| -> Result<PathBuf, Fatal> {
                    let rel = pdir
                        .join("customers")
                        .join(format!("{}.pdf", sanitize_file_name(&c.customer_id)));
                    write(files, &dir.join(&rel), &r.transparency(set, &[(p, c)]))?;
                    Ok(rel)
                })
                .collect::<Result<Vec<_>, Fatal>>()?;
            out.insert(0, rel);
            Ok(out)
        })
        .collect::<Result<Vec<_>, Fatal>>()?
        .into_iter()
        .flatten()
        .collect())
}

/// Writes one transparency statement per customer of `set`
/// (`customers/<cid>.pdf`), listing every partner of `set` that earned on
/// it; returns the written paths relative to `dir`.
pub fn write_customer_pdfs(
    dir: &Path,
    set: &StatementSet,
    r: &Renderer,
    files: &Written,
) -> Result<Vec<PathBuf>, Fatal> {
    let mut by_customer: BTreeMap<&str, Vec<(&PartnerStatement, &CustomerStatement)>> =
        BTreeMap::new();
    for p in &set.partners {
        for c in &p.customers {
            by_customer.entry(&c.customer_id).or_default().push((p, c));
        }
    }
    let by_customer: Vec<_> = by_customer.into_iter().collect();
    by_customer
        .par_iter()
        .map(|(cid, entries)| -> Result<PathBuf, Fatal> {
            let rel = PathBuf::from("customers").join(format!("{}.pdf", sanitize_file_name(cid)));
            write(files, &dir.join(&rel), &r.transparency(set, entries))?;
            Ok(rel)
        })
        .collect()
}

/// What the manifest records about the PDFs of a run (`"pdf"`).
#[derive(serde::Serialize, Clone, Debug)]
pub struct PdfManifest {
    pub template: TemplateInfo,
    pub transparency_by_customer: bool,
    pub documents: usize,
}

impl PdfManifest {
    /// The PDFs of a run: `documents` written with `r` and `opts`.
    pub fn new(r: &Renderer, opts: PdfOptions, documents: usize) -> PdfManifest {
        PdfManifest {
            template: r.info().clone(),
            transparency_by_customer: opts.transparency_by_customer,
            documents,
        }
    }
}

/// `porledger render`: re-renders the PDFs of a finished run from its
/// `statements.json`, publishing atomically: the run's other files are
/// hard-linked (or copied) into a staging directory, the PDFs are written
/// there, the manifest is updated and the set is moved into place.
///
/// Nothing read is trusted: `--out` must be porledger's (see
/// [`super::publish`]), `statements.json` must match the SHA-256 the manifest
/// gives for it (the bytes that are parsed are the bytes that are hashed), and
/// so must every file carried over; a mismatch refuses with nothing changed.
/// The new manifest lists exactly the files of the new output.
pub fn rerender(
    out: &Path,
    r: &Renderer,
    opts: PdfOptions,
    pool: &rayon::ThreadPool,
) -> Result<PdfManifest, Fatal> {
    let json_path = out.join("statements.json");
    let text = crate::ingest::read_regular(&json_path).map_err(|e| {
        Fatal::Input(format!(
            "{e} (render needs the output directory of a finished `porledger run`)"
        ))
    })?;
    let manifest_path = out.join("manifest.json");
    let manifest_text =
        String::from_utf8(crate::ingest::read_regular(&manifest_path)?).map_err(|e| {
            Fatal::io(
                &manifest_path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, e),
            )
        })?;
    // Read keeping its layout: only `outputs` and `pdf` are rewritten, so a
    // render with the run's locale and template gives the same bytes.
    let mut manifest: OrderedJson =
        serde_json::from_str(&manifest_text).map_err(|e| Fatal::Data {
            file: manifest_path.display().to_string(),
            line: e.line() as u64,
            column: None,
            message: e.to_string(),
        })?;
    // Refuses a directory (or a manifest) that is not porledger's.
    let staging = super::publish::Staging::new(out, super::publish::Kind::Run)?;
    let listed = super::publish::manifest_outputs(&staging_source(out))?;
    let changed = |rel: &str, why: &str| {
        Fatal::Input(format!(
            "{}: {why}; the output was changed after porledger wrote it, so render refuses \
             to publish from it (nothing was changed; run `porledger run` again)",
            out.join(rel).display()
        ))
    };
    let digest = crate::ingest::FileDigest {
        sha256: crate::ingest::sha256_hex(&text),
        bytes: text.len() as u64,
    };
    match listed.get("statements.json") {
        None => return Err(changed("statements.json", "not listed in manifest.json")),
        Some(d) if (&d.sha256, d.bytes) != (&digest.sha256, digest.bytes) => {
            return Err(changed(
                "statements.json",
                "its SHA-256 differs from the one in manifest.json",
            ))
        }
        Some(_) => {}
    }
    let set = StatementSet::from_json(&text).map_err(|e| Fatal::Data {
        file: json_path.display().to_string(),
        line: e.line() as u64,
        column: None,
        message: format!("cannot read the statement model: {e}"),
    })?;
    // Carry over every listed file but the statement PDFs, and check each
    // copy. The adjustment PDFs of a restatement are carried over as the run
    // wrote them: their lines come from the history, not from
    // statements.json.
    let mut keep: Vec<(&String, &crate::ingest::FileDigest)> = listed
        .iter()
        .filter(|(rel, _)| !rel.ends_with(".pdf") || super::adjustment::is_adjustment_pdf(rel))
        .collect();
    keep.sort_by(|a, b| a.0.cmp(b.0));
    for (rel, _) in &keep {
        let src = out.join(rel.as_str());
        let dst = staging.dir.join(rel.as_str());
        if !src.is_file() {
            return Err(changed(rel, "listed in manifest.json but missing"));
        }
        if let Some(d) = dst.parent() {
            std::fs::create_dir_all(d).map_err(|e| Fatal::io(d, e))?;
        }
        if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(|e| Fatal::io(&src, e))?;
        }
    }
    pool.install(|| {
        keep.par_iter().try_for_each(|(rel, want)| {
            let dst = staging.dir.join(rel.as_str());
            let got = crate::ingest::sha256_file(&dst)?;
            if (&got.sha256, got.bytes) != (&want.sha256, want.bytes) {
                return Err(changed(
                    rel,
                    "its SHA-256 differs from the one in manifest.json",
                ));
            }
            staging.files.claim(&dst)?;
            staging.files.remember(&dst, got);
            Ok(())
        })
    })?;
    let written = pool.install(|| write_all(&staging.dir, &set, r, opts, &staging.files))?;
    let carried = keep.iter().filter(|(rel, _)| rel.ends_with(".pdf")).count();
    let info = PdfManifest::new(r, opts, written.len() + carried);
    // Exactly the files of the new output (the digests were taken above).
    let outputs = super::publish::hash_outputs(&staging.dir, &staging.files)?;
    let unwritable = |e: serde_json::Error| Fatal::Io {
        path: manifest_path.display().to_string(),
        source: std::io::Error::other(e),
    };
    let outputs = OrderedJson::of(&outputs).map_err(unwritable)?;
    let info_json = OrderedJson::of(&info).map_err(unwritable)?;
    // Where a run writes them: `pdf` after `counts`, before `history`.
    if !(manifest.set("outputs", outputs, &["counts", "pdf", "history"])
        && manifest.set("pdf", info_json, &["history"]))
    {
        return Err(Fatal::Data {
            file: manifest_path.display().to_string(),
            line: 1,
            column: None,
            message: "not a porledger manifest (not a JSON object)".into(),
        });
    }
    super::publish::write_json(
        &staging.files,
        &staging.dir.join("manifest.json"),
        &manifest,
    )?;
    staging.commit()?;
    Ok(info)
}

/// The directory `--out` names (through a symbolic link, where it is one).
fn staging_source(out: &Path) -> PathBuf {
    std::fs::canonicalize(out).unwrap_or_else(|_| out.to_path_buf())
}
