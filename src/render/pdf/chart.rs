//! The bar chart of a partner statement: the amount accrued per accrual month,
//! one chart per currency, drawn only when the period spans more than one
//! month. Bars are the sums of the statement's rounded month lines (the
//! amounts printed in the tables); their heights are geometry, not money.

use std::collections::BTreeMap;

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;

use super::layout::Canvas;
use super::{Renderer, GREY};
use crate::dates::{Month, Period};
use crate::money::Currency;
use crate::statements::PartnerStatement;

/// Height of the bars' area, in pt.
const CHART_HEIGHT: f32 = 56.0;
/// Size of the chart's labels, in pt.
const LABEL_SIZE: f32 = 6.5;

/// The months of `period`, first to last.
pub fn period_months(period: Period) -> Vec<Month> {
    let mut out = Vec::new();
    let mut m = Month::of(period.start);
    while m.first_day() < period.end {
        out.push(m);
        m = m.next();
    }
    out
}

/// Per currency, the amount of every month of the period and of any other
/// accrual month the statement has; `None` for a currency whose month sums
/// cannot be computed (then no chart is drawn for it).
pub fn monthly_amounts(
    p: &PartnerStatement,
    period: Period,
) -> BTreeMap<Currency, Option<BTreeMap<Month, Decimal>>> {
    let months = period_months(period);
    let mut out: BTreeMap<Currency, Option<BTreeMap<Month, Decimal>>> = BTreeMap::new();
    for l in p.lines() {
        let e = out
            .entry(l.currency)
            .or_insert_with(|| Some(months.iter().map(|m| (*m, Decimal::ZERO)).collect()));
        if let Some(m) = e {
            let v = m.entry(l.month).or_insert(Decimal::ZERO);
            match v.checked_add(l.amount) {
                Some(s) => *v = s,
                None => *e = None,
            }
        }
    }
    out
}

impl Renderer {
    /// The bar charts of `p` (nothing for a one-month period).
    pub(super) fn month_chart(&self, cv: &mut Canvas<'_>, p: &PartnerStatement, period: Period) {
        if period_months(period).len() < 2 {
            return;
        }
        let st = &self.t.spec.style;
        let label = &self.t.locale.labels.by_month;
        for (currency, months) in monthly_amounts(p, period) {
            let Some(months) = months else { continue };
            let heading = format!("{label} ({currency})");
            cv.heading(&heading, st.heading_size, self.accent, CHART_HEIGHT + 30.0);
            self.bars(cv, currency, &months);
        }
        cv.space(6.0);
    }

    fn bars(&self, cv: &mut Canvas<'_>, currency: Currency, months: &BTreeMap<Month, Decimal>) {
        let lh = cv.lh(LABEL_SIZE);
        let top = cv.y - lh;
        let bottom = top - CHART_HEIGHT;
        let max_pos = months.values().copied().fold(Decimal::ZERO, Decimal::max);
        let max_neg = months
            .values()
            .copied()
            .fold(Decimal::ZERO, Decimal::min)
            .abs();
        let range = max_pos.checked_add(max_neg).unwrap_or(Decimal::MAX);
        // Height in pt of `d`, from the ratio computed in decimals.
        let height = |d: Decimal| -> f32 {
            if range.is_zero() {
                return 0.0;
            }
            d.abs()
                .checked_div(range)
                .and_then(|r| {
                    (r * Decimal::from(CHART_HEIGHT as i64))
                        .round_dp(2)
                        .to_f32()
                })
                .unwrap_or(0.0)
        };
        let base = bottom + height(max_neg);
        let left = cv.g.left;
        let slot = cv.text_width() / months.len() as f32;
        let bar = (slot * 0.6).min(40.0);
        cv.hline(left, left + cv.text_width(), base, 0.4, GREY);
        let face = cv.face_of(false);
        for (i, (m, amount)) in months.iter().enumerate() {
            let x = left + slot * i as f32 + (slot - bar) / 2.0;
            let h = height(*amount);
            let y = if amount.is_sign_negative() {
                base - h
            } else {
                base
            };
            cv.rect(x, y, bar, h, self.accent);
            let centre = x + bar / 2.0;
            let text = self.fmt.amount(*amount, currency);
            let w = face.width(&text, LABEL_SIZE);
            if w <= slot {
                let ty = if amount.is_sign_negative() {
                    y - lh
                } else {
                    y + h + 2.0
                };
                cv.text_at(centre - w / 2.0, ty, &text, false, LABEL_SIZE, GREY);
            }
            let month = m.to_string();
            let w = face.width(&month, LABEL_SIZE);
            cv.text_at(
                centre - w / 2.0,
                bottom - lh,
                &month,
                false,
                LABEL_SIZE,
                GREY,
            );
        }
        cv.y = bottom - 2.0 * lh;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_of_a_period() {
        let p: Period = "2025-11..2026-02".parse().unwrap();
        let m: Vec<String> = period_months(p).iter().map(|m| m.to_string()).collect();
        assert_eq!(m, ["2025-11", "2025-12", "2026-01", "2026-02"]);
        assert_eq!(period_months("2026-10".parse().unwrap()).len(), 1);
    }
}
