//! `designations.csv`: who holds DPOR, POR, PAL or CPOR for each customer.

use chrono::{Datelike, NaiveDate};

use super::calendar::on;
use super::catalogue::WORKLOADS;
use super::rng::{Guid, SplitMix64, TAG_DESIGNATION};
use super::rowbuf::RowBuf;
use super::style::{DateStyle, FileStyle, HeaderStyle};
use super::world::{Customer, Partner, World};
use super::LAST_MONTH;
use crate::dates::Month;
use crate::render::csv::push_date;

/// One row of `designations.csv`.
struct DesignationRow<'a> {
    customer: &'a Customer,
    partner: &'a Partner,
    association: &'static str,
    workload: &'static str,
    subscription: Option<&'a Guid>,
    share: &'static str,
    valid_from: NaiveDate,
    valid_to: Option<NaiveDate>,
}

impl<'a> DesignationRow<'a> {
    /// A tenant-wide designation, open-ended, without a share.
    fn new(
        customer: &'a Customer,
        partner: &'a Partner,
        association: &'static str,
        valid_from: NaiveDate,
    ) -> DesignationRow<'a> {
        DesignationRow {
            customer,
            partner,
            association,
            workload: "",
            subscription: None,
            share: "",
            valid_from,
            valid_to: None,
        }
    }
}

const DESIGNATIONS_HEADER: &str =
    "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to";

/// A random day in months `from..=to`.
fn day_between(rng: &mut SplitMix64, from: Month, to: Month) -> NaiveDate {
    let m = from.plus(rng.below((to.0 - from.0).max(0) as u64 + 1) as u32);
    on(m, 1 + rng.below(28) as u8)
}

impl World {
    /// A partner for customer `c`: its reseller more often than not.
    fn partner_for<'a>(&'a self, c: &Customer, rng: &mut SplitMix64) -> &'a Partner {
        match c.reseller {
            Some(p) if rng.chance(600) => &self.partners[p],
            _ => rng.pick(&self.partners),
        }
    }

    /// Two different partners.
    fn two_partners(&self, rng: &mut SplitMix64) -> (&Partner, &Partner) {
        let n = self.partners.len() as u64;
        let a = rng.below(n);
        let b = (a + 1 + rng.below(n - 1)) % n;
        (&self.partners[a as usize], &self.partners[b as usize])
    }

    /// The designation rows of customer `c`, in file order.
    fn designations_of<'a>(
        &'a self,
        c: usize,
        subscriptions: &[&'a Guid],
        out: &mut Vec<DesignationRow<'a>>,
    ) {
        let cust = &self.customers[c];
        let mut rng = SplitMix64::stream(self.plan.seed, TAG_DESIGNATION, c as u64);
        let first = self.plan.first_month();
        // Most designations start before or early in the timeline.
        let early = first.plus(((LAST_MONTH.0 - first.0) / 3) as u32);
        let from = day_between(&mut rng, first.minus(12), early);
        let row = |partner, association| DesignationRow::new(cust, partner, association, from);
        match rng.below(1000) {
            // No designation at all.
            0..=99 => {}
            // DPOR for every subscription.
            100..=499 => out.push(row(self.partner_for(cust, &mut rng), "DPOR")),
            // DPOR per subscription (Microsoft's real granularity).
            500..=649 => {
                let p = self.partner_for(cust, &mut rng);
                for &s in subscriptions {
                    let partner = if rng.chance(200) {
                        rng.pick(&self.partners)
                    } else {
                        p
                    };
                    out.push(DesignationRow {
                        subscription: Some(s),
                        ..row(partner, "DPOR")
                    });
                }
            }
            // POR for the tenant.
            650..=749 => out.push(row(self.partner_for(cust, &mut rng), "POR")),
            // Two PAL partners, equal split.
            750..=829 => {
                let (a, b) = self.two_partners(&mut rng);
                out.push(row(a, "PAL"));
                out.push(row(b, "PAL"));
            }
            // Two PAL partners with explicit shares (0.6/0.4, or 0.7 and the rest).
            830..=859 => {
                let (a, b) = self.two_partners(&mut rng);
                let (sa, sb) = if rng.chance(500) {
                    ("0.6", "0.4")
                } else {
                    ("0.7", "")
                };
                out.push(DesignationRow {
                    share: sa,
                    ..row(a, "PAL")
                });
                out.push(DesignationRow {
                    share: sb,
                    ..row(b, "PAL")
                });
            }
            // DPOR whose 36-month window ends inside the timeline.
            860..=939 => {
                let window_end = day_between(&mut rng, first, LAST_MONTH);
                let from = on(Month::of(window_end).minus(36), window_end.day() as u8);
                let p = self.partner_for(cust, &mut rng);
                out.push(DesignationRow::new(cust, p, "DPOR", from));
            }
            // The customer changed its DPOR partner during the timeline.
            _ => {
                let (a, b) = self.two_partners(&mut rng);
                let change = day_between(&mut rng, first.max(Month::of(from).next()), LAST_MONTH);
                out.push(DesignationRow {
                    valid_to: Some(change),
                    ..row(a, "DPOR")
                });
                out.push(DesignationRow::new(cust, b, "DPOR", change));
            }
        }
        // A CPOR claim for one workload: accepted, but no program here pays CPOR.
        if rng.chance(50) {
            let workload = *rng.pick(&WORKLOADS);
            out.push(DesignationRow {
                workload,
                ..row(rng.pick(&self.partners), "CPOR")
            });
        }
    }

    /// The whole `designations.csv`.
    pub(super) fn designations_csv(&self) -> Vec<u8> {
        let mut subs: Vec<Vec<&Guid>> = vec![Vec::new(); self.customers.len()];
        for s in &self.slots {
            let list = &mut subs[s.customer as usize];
            list.push(&s.subscription[0]);
            if s.cancel.is_some() {
                list.push(&s.subscription[1]);
            }
        }
        let style = FileStyle {
            header: HeaderStyle::Pascal,
            dates: DateStyle::Iso,
            bom: false,
            quote_all: false,
            crlf: false,
        };
        let mut w = RowBuf::new(&style);
        w.buf.extend_from_slice(DESIGNATIONS_HEADER.as_bytes());
        w.end();
        let mut rows = Vec::new();
        for (c, list) in subs.iter().enumerate() {
            rows.clear();
            self.designations_of(c, list, &mut rows);
            for d in &rows {
                write_designation(&mut w, d);
            }
        }
        w.buf
    }
}

/// One row; dates as `YYYY-MM-DD`, an open end as an empty field.
fn write_designation(w: &mut RowBuf, d: &DesignationRow) {
    w.ascii(&d.customer.id);
    w.text(&d.partner.mpn);
    w.text(&d.partner.name);
    w.text(d.association);
    w.text(d.workload);
    w.ascii(d.subscription.map(|s| &s[..]).unwrap_or(b""));
    w.text(d.share);
    w.plain(|o| push_date(o, d.valid_from));
    match d.valid_to {
        Some(to) => w.plain(|o| push_date(o, to)),
        None => w.text(""),
    }
    w.end();
}
