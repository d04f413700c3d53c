//! The adjustment statement of a restatement (`partners/<id>/adjustment.pdf`,
//! and per customer `partners/<id>/adjustments/<customer_id>.pdf`): the
//! issued version and this run, per line previously issued / now /
//! difference, the totals per currency and the traced reasons, numbered. The
//! same lines as `adjustment.csv`, in the language of the run.

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use super::format::fill;
use super::layout::{Col, Row, RowKind};
use super::template::Align;
use super::{display_name, Renderer, GREY};
use crate::history::adjust::{AdjustmentLine, Reason};
use crate::money::{Currency, ExactArith};
use crate::statements::StatementSet;

/// The sums of one currency: previously issued, now, difference; `None`
/// where a sum would overflow.
type Sums = (Option<Decimal>, Option<Decimal>, Option<Decimal>);

impl Renderer {
    /// Renders the adjustment statement of one partner (`customer`: only
    /// that customer's lines, for the per-customer document). `lines` are one
    /// partner's, in key order; `version` is the issued version restated.
    pub fn adjustment_statement(
        &self,
        set: &StatementSet,
        version: u32,
        lines: &[&AdjustmentLine],
        customer: Option<&str>,
    ) -> Vec<u8> {
        let st = &self.t.spec.style;
        let l = &self.t.locale.labels;
        let c = &self.t.locale.columns;
        let a = &self.t.locale.adjustment;
        let mut cv = self.canvas();
        let width = cv.text_width();
        let (partner_id, partner_name) = lines
            .first()
            .map(|x| (x.key.partner_id.as_str(), x.partner_name.as_str()))
            .unwrap_or_default();
        let partner_name = display_name(partner_name, partner_id);
        let (v, next) = (version.to_string(), (u64::from(version) + 1).to_string());
        self.title(&mut cv, &a.title);
        let mut pairs = vec![
            (l.partner.clone(), partner_name.clone()),
            (l.partner_id.clone(), partner_id.to_string()),
        ];
        if let (Some(cid), Some(first)) = (customer, lines.first()) {
            pairs.push((l.customer.clone(), display_name(&first.customer_name, cid)));
            pairs.push((l.tenant_id.clone(), cid.to_string()));
        }
        let period = self.period_text(set);
        pairs.extend([
            (l.period.clone(), period.clone()),
            (a.issued_version.clone(), v.clone()),
            (
                a.this_run.clone(),
                fill(&a.this_run_value, &[("version", &v), ("next", &next)]),
            ),
        ]);
        cv.key_values(&pairs, st.body_size, width * 0.25);
        cv.space(6.0);
        let vars = [
            ("partner_name", partner_name.as_str()),
            ("partner_id", partner_id),
            ("period", period.as_str()),
            ("version", v.as_str()),
            ("next", next.as_str()),
        ];
        cv.paragraph(&fill(&a.intro, &vars), false, st.body_size, GREY);
        cv.space(4.0);
        // The reasons, numbered in order of first appearance.
        let mut numbers: BTreeMap<&Reason, usize> = BTreeMap::new();
        let mut reasons: Vec<&Reason> = Vec::new();
        let refs: Vec<String> = lines
            .iter()
            .map(|x| {
                let ns: Vec<String> = x
                    .reasons
                    .iter()
                    .map(|r| {
                        let n = *numbers.entry(r).or_insert_with(|| {
                            reasons.push(r);
                            reasons.len()
                        });
                        n.to_string()
                    })
                    .collect();
                if ns.is_empty() {
                    "–".to_string()
                } else {
                    ns.join(", ")
                }
            })
            .collect();
        let col = |w: f32, align: Align, h: &str| Col {
            width: width * w,
            align,
            header: h.to_string(),
            numeric: align == Align::Right,
        };
        let cols = [
            col(0.19, Align::Left, &l.customer),
            col(0.13, Align::Left, &c.program),
            col(0.08, Align::Left, &c.month),
            col(0.09, Align::Left, &c.currency),
            col(0.17, Align::Right, &a.previously),
            col(0.12, Align::Right, &a.now),
            col(0.13, Align::Right, &a.difference),
            col(0.09, Align::Right, &a.reasons_column),
        ];
        let mut totals: BTreeMap<&str, Sums> = BTreeMap::new();
        let mut rows: Vec<Row> = Vec::with_capacity(lines.len() + 4);
        for (x, r) in lines.iter().zip(refs) {
            let k = &x.key;
            let t = totals.entry(&k.currency).or_insert((
                Some(Decimal::ZERO),
                Some(Decimal::ZERO),
                Some(Decimal::ZERO),
            ));
            let add = |s: Option<Decimal>, d: Decimal| s.and_then(|s| s.exact_add(d));
            *t = (add(t.0, x.issued), add(t.1, x.now), add(t.2, x.difference));
            rows.push(Row::Cells(
                vec![
                    display_name(&x.customer_name, &k.customer_id),
                    k.program_id.clone(),
                    k.accrual_month.clone(),
                    k.currency.clone(),
                    self.money(Some(x.issued), &k.currency),
                    self.money(Some(x.now), &k.currency),
                    self.money(Some(x.difference), &k.currency),
                    r,
                ],
                RowKind::Normal,
            ));
        }
        for (cur, (i, n, d)) in &totals {
            rows.push(Row::Cells(
                vec![
                    fill(&l.total_in, &[("currency", cur)]),
                    String::new(),
                    String::new(),
                    String::new(),
                    self.money(*i, cur),
                    self.money(*n, cur),
                    self.money(*d, cur),
                    String::new(),
                ],
                RowKind::Subtotal,
            ));
        }
        cv.heading(&a.lines, st.heading_size, self.accent, 40.0);
        cv.table(&cols, rows, &self.table_style(), &l.continued);
        cv.space(8.0);
        cv.heading(&a.reasons, st.heading_size, self.accent, 30.0);
        if reasons.is_empty() {
            cv.paragraph(&a.untraced, false, st.body_size, GREY);
        }
        for (i, r) in reasons.iter().enumerate() {
            let text = format!("{}. {}", i + 1, self.reason(r));
            cv.paragraph(&text, false, st.body_size, super::BLACK);
        }
        let footer = format!("{partner_name} · {} {partner_id}", l.partner_id);
        let title = match customer {
            Some(cid) => format!("{} {partner_id} {cid} {}", a.title, set.period.label()),
            None => format!("{} {partner_id} {}", a.title, set.period.label()),
        };
        self.save(cv, &footer, &title, set.period.last_day())
    }

    /// An amount in the locale's format; `n/a` text where a sum overflowed.
    fn money(&self, d: Option<Decimal>, currency: &str) -> String {
        match (d, Currency::parse(currency)) {
            (Some(d), Some(c)) => self.fmt.amount(d, c),
            (Some(d), None) => format!("{currency} {d}"),
            (None, _) => self.t.locale.labels.not_computable.clone(),
        }
    }

    /// A reason in the locale's wording.
    fn reason(&self, r: &Reason) -> String {
        let a = &self.t.locale.adjustment;
        match r {
            Reason::DesignationGone {
                line,
                association,
                valid,
            } => fill(
                &a.designation_gone,
                &[
                    ("line", &line.to_string()),
                    ("association", association),
                    ("valid", valid),
                ],
            ),
            Reason::DesignationNew {
                line,
                association,
                valid,
            } => fill(
                &a.designation_new,
                &[
                    ("line", &line.to_string()),
                    ("association", association),
                    ("valid", valid),
                ],
            ),
            Reason::InputRemoved { role, path } => {
                fill(&a.input_removed, &[("role", role), ("path", path)])
            }
            Reason::InputChanged {
                role,
                path,
                from,
                to,
            } => fill(
                &a.input_changed,
                &[("role", role), ("path", path), ("from", from), ("to", to)],
            ),
            Reason::InputAdded { role, path } => {
                fill(&a.input_added, &[("role", role), ("path", path)])
            }
        }
    }
}
