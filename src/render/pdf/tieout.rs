//! The one-page tie-out of a partner (`partners/<id>/tieout.pdf`): per
//! currency what Microsoft paid, what porledger expected and the difference,
//! then the rows behind the differences, per currency (in the order of the
//! totals) and largest first within it, as many as fit on the page, shared
//! out so that every currency shows its largest (every row is in
//! `tieout.csv`). Amounts of two currencies are never ranked against each
//! other. Words come from the locale's
//! `[tieout]` table, numbers and dates from its formats (`--locale`).

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::format::fill;
use super::layout::{Col, Row, RowKind};
use super::template::Align;
use super::{Renderer, GREY};
use crate::money::Currency;
use crate::tieout::{Class, TieRow, Totals};

/// What the page shows about the tie-out as a whole.
pub struct TieoutPage<'a> {
    pub partner_id: &'a str,
    pub partner_name: &'a str,
    pub period: &'a str,
    pub as_of: NaiveDate,
    pub tolerance: Decimal,
    pub totals: Vec<(Currency, &'a Totals)>,
    /// The partner's differences, at least as many as fit on the page
    /// (more are counted from `totals`).
    pub differences: &'a [TieRow<'a>],
}

impl Renderer {
    /// Renders the one-page tie-out of a partner.
    pub fn tieout_statement(&self, t: &TieoutPage<'_>) -> Vec<u8> {
        let st = &self.t.spec.style;
        let l = &self.t.locale.tieout;
        let labels = &self.t.locale.labels;
        let mut cv = self.canvas();
        let width = cv.text_width();
        self.title(&mut cv, &l.title);
        let pairs = vec![
            (labels.partner.clone(), t.partner_name.to_string()),
            (labels.partner_id.clone(), t.partner_id.to_string()),
            (l.run_period.clone(), t.period.to_string()),
            (l.as_of.clone(), self.fmt.date(t.as_of)),
            (l.tolerance.clone(), self.fmt.units(t.tolerance)),
        ];
        cv.key_values(&pairs, st.body_size, width * 0.25);
        cv.space(6.0);
        cv.paragraph(&l.intro, false, st.body_size, GREY);
        cv.space(4.0);
        let col = |w: f32, align: Align, h: &str| Col {
            width: width * w,
            align,
            header: h.to_string(),
            numeric: align == Align::Right,
        };
        // Set whole like amounts: a row ID (what `explain --tieout-row`
        // takes), a month or a currency code shortened would be another.
        let whole = |w: f32, h: &str| Col {
            numeric: true,
            ..col(w, Align::Left, h)
        };
        let cols = [
            whole(0.10, &self.t.locale.columns.currency),
            col(0.16, Align::Right, &l.expected),
            col(0.16, Align::Right, &l.paid),
            col(0.16, Align::Right, &l.adjustments),
            col(0.16, Align::Right, &l.difference),
            col(0.26, Align::Right, &l.rows_differing),
        ];
        let rows = t.totals.iter().map(|(c, x)| {
            Row::Cells(
                vec![
                    c.as_str().to_string(),
                    self.fmt.amount(x.expected, *c),
                    self.fmt.amount(x.paid, *c),
                    self.fmt.amount(x.adjustments, *c),
                    self.fmt.amount(x.difference, *c),
                    fill(
                        &l.n_of,
                        &[
                            ("n", &self.fmt.count(x.differences)),
                            ("of", &self.fmt.count(x.rows)),
                        ],
                    ),
                ],
                RowKind::Subtotal,
            )
        });
        cv.table(&cols, rows.collect::<Vec<_>>(), &self.table_style(), "");
        // Rows not yet due are in the difference but are not differences.
        let pending: u64 = t.totals.iter().map(|(_, x)| x.not_yet_due).sum();
        if pending > 0 {
            cv.space(4.0);
            let note = match pending {
                1 => l.not_yet_due_one.clone(),
                n => fill(&l.not_yet_due, &[("n", &self.fmt.count(n))]),
            };
            cv.paragraph(&note, false, st.body_size, GREY);
        }
        cv.space(8.0);
        let mut diffs: Vec<&TieRow<'_>> =
            t.differences.iter().filter(|r| r.is_difference()).collect();
        diffs.sort_by(|a, b| TieRow::by_difference(a, b));
        let listed = diffs.len();
        if diffs.is_empty() {
            cv.paragraph(&l.all_tie, true, st.body_size, self.accent);
        } else {
            cv.heading(&l.differences, st.heading_size, self.accent, 40.0);
            // As many rows as fit on this page (each row: two lines of text).
            let row_h = cv.lh(st.table_size) * 2.0 + 4.0;
            let room = ((cv.y - cv.g.bottom - 3.0 * row_h) / row_h).max(1.0) as usize;
            let diffs = share_out(&diffs, room);
            let shown = diffs.len();
            let cols = [
                whole(0.09, &l.row),
                col(0.15, Align::Left, &l.class),
                whole(0.09, &self.t.locale.columns.month),
                col(0.28, Align::Left, &l.customer_reason),
                col(0.13, Align::Right, &l.expected),
                col(0.13, Align::Right, &l.paid),
                col(0.13, Align::Right, &l.difference),
            ];
            let rows: Vec<Row> = diffs
                .iter()
                .map(|r| {
                    let who = if r.customer_id.is_empty() {
                        r.reason.to_string()
                    } else if r.reason.is_empty() {
                        r.customer_id.to_string()
                    } else {
                        format!("{} ({})", r.customer_id, r.reason)
                    };
                    Row::Cells(
                        vec![
                            r.id.clone(),
                            class_label(l, r.class).to_string(),
                            r.month.to_string(),
                            who,
                            self.fmt.amount(r.expected, r.currency),
                            self.fmt.amount(r.paid, r.currency),
                            self.fmt.amount(r.difference, r.currency),
                        ],
                        RowKind::Normal,
                    )
                })
                .collect();
            cv.table(&cols, rows, &self.table_style(), "");
            cv.space(4.0);
            let all: u64 = t.totals.iter().map(|(_, x)| x.differences).sum();
            let more = (all as usize).max(listed) - shown;
            let note = match more {
                0 => l.explain_hint.clone(),
                1 => format!("{} {}", l.more_one, l.explain_hint),
                n => format!(
                    "{} {}",
                    fill(&l.more, &[("n", &self.fmt.count(n as u64))]),
                    l.explain_hint
                ),
            };
            cv.paragraph(&note, false, st.body_size, GREY);
        }
        let footer = format!(
            "{} · {} {}",
            t.partner_name, labels.partner_id, t.partner_id
        );
        let title = fill(
            &l.document_title,
            &[("partner", t.partner_id), ("period", t.period)],
        );
        self.save(cv, &footer, &title, t.as_of)
    }
}

/// The rows of `diffs` (sorted [`TieRow::by_difference`]: by currency,
/// largest first) that a page with room for `room` shows: the room is shared
/// out among the currencies a row at a time, in turn, so every currency with
/// differences shows its largest rows (as long as there is room for one row
/// per currency) and no room is left unused while rows remain. In the order
/// of `diffs`.
fn share_out<'r, 'a>(diffs: &[&'r TieRow<'a>], room: usize) -> Vec<&'r TieRow<'a>> {
    let groups: Vec<&[&TieRow<'a>]> = diffs.chunk_by(|a, b| a.currency == b.currency).collect();
    let mut taken = vec![0usize; groups.len()];
    let mut left = room.min(diffs.len());
    while left > 0 {
        for (g, t) in groups.iter().zip(taken.iter_mut()) {
            if left > 0 && *t < g.len() {
                *t += 1;
                left -= 1;
            }
        }
    }
    groups
        .iter()
        .zip(taken)
        .flat_map(|(g, t)| g[..t].iter().copied())
        .collect()
}

/// A class of `tieout.csv` in the locale's words.
fn class_label(l: &super::template::TieoutLabels, c: Class) -> &str {
    match c {
        Class::Matched => &l.matched,
        Class::Underpaid => &l.underpaid,
        Class::Overpaid => &l.overpaid,
        Class::RateDiffers => &l.rate_differs,
        Class::ExpectedNotPaid => &l.expected_not_paid,
        Class::PaidNotExpected => &l.paid_not_expected,
        Class::Adjustment => &l.adjustment,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn row(id: u32, currency: &str, difference: i64) -> TieRow<'static> {
        TieRow {
            id: format!("T{id:06}"),
            class: Class::Underpaid,
            partner_id: Cow::Borrowed("P1"),
            program_id: Cow::Borrowed("por"),
            customer_id: Cow::Borrowed("c"),
            difference: Decimal::from(difference),
            ..TieRow::unclassified(
                crate::dates::Month::from_ym(2026, 10),
                Currency::parse(currency).unwrap(),
            )
        }
    }

    /// 30 VND rows of -100,000 and one EUR row of -5,000: the EUR row is
    /// shown whatever the room, the VND rows largest first after it, and
    /// no room is left unused.
    #[test]
    fn every_currency_shows_its_largest_differences() {
        let mut rows: Vec<TieRow<'static>> = (1..=30)
            .map(|i| row(i + 1, "VND", -100_000 - i64::from(i)))
            .collect();
        rows.push(row(1, "EUR", -5000));
        rows.push(row(40, "EUR", 1));
        TieRow::keep_largest(&mut rows, 20);
        assert_eq!(rows.len(), 22, "20 VND and both EUR rows kept");
        let diffs: Vec<&TieRow<'_>> = rows.iter().collect();
        let ids = |room: usize| -> Vec<String> {
            share_out(&diffs, room)
                .iter()
                .map(|r| format!("{} {}", r.currency.as_str(), r.difference))
                .collect()
        };
        assert_eq!(ids(1), vec!["EUR -5000"]);
        assert_eq!(ids(3), vec!["EUR -5000", "EUR 1", "VND -100030"]);
        let shown = ids(20);
        assert_eq!(shown.len(), 20);
        assert_eq!(&shown[..3], &["EUR -5000", "EUR 1", "VND -100030"]);
        assert_eq!(shown.last().unwrap(), "VND -100013");
        assert_eq!(ids(100).len(), 22);
        assert!(share_out(&[], 5).is_empty());
    }
}
