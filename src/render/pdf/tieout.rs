//! The one-page tie-out of a partner (`partners/<id>/tieout.pdf`): per
//! currency what Microsoft paid, what porledger expected and the difference,
//! then the rows behind the differences, largest first, as many as fit on
//! the page (every row is in `tieout.csv`). Labels are English for now; numbers
//! and dates follow the `--locale`.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::layout::{Col, Row, RowKind};
use super::template::Align;
use super::{Renderer, GREY};
use crate::money::Currency;
use crate::tieout::{TieRow, Totals};

/// What the page shows about the tie-out as a whole.
pub struct TieoutPage<'a> {
    pub partner_id: &'a str,
    pub partner_name: &'a str,
    pub period: &'a str,
    pub as_of: NaiveDate,
    pub tolerance: Decimal,
    pub totals: Vec<(Currency, &'a Totals)>,
    pub rows: &'a [&'a TieRow],
}

impl Renderer {
    /// Renders the one-page tie-out of a partner.
    pub fn tieout_statement(&self, t: &TieoutPage<'_>) -> Vec<u8> {
        let st = &self.t.spec.style;
        let mut cv = self.canvas();
        let width = cv.text_width();
        self.title(&mut cv, "Tie-out: was this partner paid what it earned?");
        let pairs = vec![
            ("Partner".to_string(), t.partner_name.to_string()),
            ("Partner ID".to_string(), t.partner_id.to_string()),
            ("Run period".to_string(), t.period.to_string()),
            ("As of".to_string(), self.fmt.date(t.as_of)),
            ("Tolerance".to_string(), t.tolerance.normalize().to_string()),
        ];
        cv.key_values(&pairs, st.body_size, width * 0.25);
        cv.space(6.0);
        cv.paragraph(
            "Paid is what Microsoft's earnings export lists; expected is what porledger \
             accrued from the billing lines (rounded as on the statement). Adjustments are \
             Microsoft's corrections without billing lines. The difference is paid plus \
             adjustments minus expected.",
            false,
            st.body_size,
            GREY,
        );
        cv.space(4.0);
        let col = |w: f32, align: Align, h: &str| Col {
            width: width * w,
            align,
            header: h.to_string(),
        };
        let cols = [
            col(0.10, Align::Left, "Currency"),
            col(0.16, Align::Right, "Expected"),
            col(0.16, Align::Right, "Paid"),
            col(0.16, Align::Right, "Adjustments"),
            col(0.16, Align::Right, "Difference"),
            col(0.26, Align::Right, "Rows differing"),
        ];
        let rows = t.totals.iter().map(|(c, x)| {
            Row::Cells(
                vec![
                    c.as_str().to_string(),
                    self.fmt.amount(x.expected, *c),
                    self.fmt.amount(x.paid, *c),
                    self.fmt.amount(x.adjustments, *c),
                    self.fmt.amount(x.difference, *c),
                    format!(
                        "{} of {}",
                        self.fmt.count(x.differences),
                        self.fmt.count(x.rows)
                    ),
                ],
                RowKind::Subtotal,
            )
        });
        cv.table(&cols, rows.collect::<Vec<_>>(), &self.table_style(), "");
        cv.space(8.0);
        let mut diffs: Vec<&&TieRow> = t.rows.iter().filter(|r| r.is_difference()).collect();
        diffs.sort_by(|a, b| {
            b.difference
                .abs()
                .cmp(&a.difference.abs())
                .then_with(|| a.id.cmp(&b.id))
        });
        if diffs.is_empty() {
            cv.paragraph(
                "Everything ties out: no row differs beyond the tolerance.",
                true,
                st.body_size,
                self.accent,
            );
        } else {
            cv.heading(
                "Differences, largest first",
                st.heading_size,
                self.accent,
                40.0,
            );
            // As many rows as fit on this page (each row: two lines of text).
            let row_h = cv.lh(st.table_size) * 2.0 + 4.0;
            let room = ((cv.y - cv.g.bottom - 3.0 * row_h) / row_h).max(1.0) as usize;
            let shown = diffs.len().min(room);
            let cols = [
                col(0.09, Align::Left, "Row"),
                col(0.15, Align::Left, "Class"),
                col(0.09, Align::Left, "Month"),
                col(0.28, Align::Left, "Customer / reason"),
                col(0.13, Align::Right, "Expected"),
                col(0.13, Align::Right, "Paid"),
                col(0.13, Align::Right, "Difference"),
            ];
            let rows: Vec<Row> = diffs[..shown]
                .iter()
                .map(|r| {
                    let who = if r.customer_id.is_empty() {
                        r.reason.clone()
                    } else if r.reason.is_empty() {
                        r.customer_id.clone()
                    } else {
                        format!("{} ({})", r.customer_id, r.reason)
                    };
                    Row::Cells(
                        vec![
                            r.id.clone(),
                            r.class.as_str().to_string(),
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
            let more = diffs.len() - shown;
            let note = if more > 0 {
                format!(
                    "{more} more differing row{} in tieout.csv. Each row's explanation and the \
                     ledger and earnings lines behind it: tieout.csv, or `porledger explain \
                     --tieout-row <row>`.",
                    if more == 1 { "" } else { "s" }
                )
            } else {
                "Each row's explanation and the ledger and earnings lines behind it: \
                 tieout.csv, or `porledger explain --tieout-row <row>`."
                    .to_string()
            };
            cv.paragraph(&note, false, st.body_size, GREY);
        }
        let footer = format!("{} · Partner ID {}", t.partner_name, t.partner_id);
        let title = format!("Tie-out {} {}", t.partner_id, t.period);
        self.save(cv, &footer, &title, t.as_of)
    }
}
