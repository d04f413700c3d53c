//! Fold: mergeable aggregates of accruals and row counts.
//!
//! Each chunk of input is folded into its own [`Fold`]; folds are merged in input
//! order. Merging is exact decimal addition, so one thread or many, one file or
//! ten, the merged fold is the same. Memory grows with the number of distinct
//! (partner, customer, program, association, subscription, rate, share, currency)
//! groups, never with the number of rows.

use std::collections::HashMap as StdHashMap;

use hashbrown::{Equivalent, HashMap};
use rust_decimal::Decimal;

use crate::accrue::{Accrual, Reason};
use crate::money::Currency;
use crate::rules::Association;

/// The finest grouping of accruals that statements show.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DetailKey {
    pub partner_id: Box<str>,
    pub customer_id: Box<str>,
    pub program: u16,
    pub currency: Currency,
    pub association: Association,
    pub subscription_id: Box<str>,
    pub rate: Decimal,
    pub share: Decimal,
}

/// A borrowed [`DetailKey`] for allocation-free lookups. Field order and types
/// hash exactly like `DetailKey` (a `Box<str>` hashes as its `str`).
#[derive(Hash)]
struct DetailRef<'a> {
    partner_id: &'a str,
    customer_id: &'a str,
    program: u16,
    currency: Currency,
    association: Association,
    subscription_id: &'a str,
    rate: Decimal,
    share: Decimal,
}

impl Equivalent<DetailKey> for DetailRef<'_> {
    fn equivalent(&self, k: &DetailKey) -> bool {
        self.program == k.program
            && self.association == k.association
            && self.currency == k.currency
            && *self.partner_id == *k.partner_id
            && *self.customer_id == *k.customer_id
            && *self.subscription_id == *k.subscription_id
            && self.rate == k.rate
            && self.share == k.share
    }
}

/// Sums for one group.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sums {
    pub lines: u64,
    pub basis: Decimal,
    pub accrual: Decimal,
}

impl Sums {
    pub fn add(&mut self, o: &Sums) {
        self.lines += o.lines;
        self.basis += o.basis;
        self.accrual += o.accrual;
    }
}

/// Where the rows of one input file went. `rows = accrued + not eligible + rejected`.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FileCounts {
    pub rows: u64,
    pub accrued: u64,
    pub not_eligible: u64,
    pub not_eligible_by_reason: [u64; 4],
    pub rejected: u64,
    /// Data-quality warning: charges dated after the end of the period.
    pub dated_after_period: u64,
}

impl FileCounts {
    pub fn add(&mut self, o: &FileCounts) {
        self.rows += o.rows;
        self.accrued += o.accrued;
        self.not_eligible += o.not_eligible;
        for (a, b) in self
            .not_eligible_by_reason
            .iter_mut()
            .zip(o.not_eligible_by_reason)
        {
            *a += b;
        }
        self.rejected += o.rejected;
        self.dated_after_period += o.dated_after_period;
    }

    pub fn balanced(&self) -> bool {
        self.rows == self.accrued + self.not_eligible + self.rejected
            && self.not_eligible == self.not_eligible_by_reason.iter().sum::<u64>()
    }

    pub fn note_not_eligible(&mut self, r: Reason) {
        self.not_eligible += 1;
        self.not_eligible_by_reason[r as usize] += 1;
    }
}

/// The mergeable result of folding any number of lines.
#[derive(Debug, Default)]
pub struct Fold {
    pub details: HashMap<DetailKey, Sums>,
    /// Customer ID (lower case) -> name, first seen in input order.
    pub customer_names: StdHashMap<String, String>,
    /// Indexed by input file.
    pub files: Vec<FileCounts>,
}

impl Fold {
    pub fn new(n_files: usize) -> Fold {
        Fold {
            files: vec![FileCounts::default(); n_files],
            ..Fold::default()
        }
    }

    /// Adds one accrual. `customer_key` and `subscription_key` are lower case.
    pub fn add(
        &mut self,
        a: &Accrual<'_>,
        customer_key: &str,
        subscription_key: &str,
        currency: Currency,
    ) {
        let r = DetailRef {
            partner_id: a.partner_id,
            customer_id: customer_key,
            program: a.program as u16,
            currency,
            association: a.association,
            subscription_id: subscription_key,
            rate: a.rate,
            share: a.share,
        };
        let s = Sums {
            lines: 1,
            basis: a.basis,
            accrual: a.amount,
        };
        match self.details.get_mut(&r) {
            Some(v) => v.add(&s),
            None => {
                self.details.insert(
                    DetailKey {
                        partner_id: a.partner_id.into(),
                        customer_id: customer_key.into(),
                        program: a.program as u16,
                        currency,
                        association: a.association,
                        subscription_id: subscription_key.into(),
                        rate: a.rate,
                        share: a.share,
                    },
                    s,
                );
            }
        }
    }

    pub fn note_customer(&mut self, customer_key: &str, name: &str) {
        if !name.is_empty() && !self.customer_names.contains_key(customer_key) {
            self.customer_names
                .insert(customer_key.to_string(), name.to_string());
        }
    }

    /// Merges a fold of *later* input into this one (earlier names win).
    pub fn merge(&mut self, later: Fold) {
        if self.details.is_empty() {
            self.details = later.details;
        } else {
            for (k, v) in later.details {
                self.details.entry(k).or_default().add(&v);
            }
        }
        for (k, v) in later.customer_names {
            self.customer_names.entry(k).or_insert(v);
        }
        if self.files.len() < later.files.len() {
            self.files.resize(later.files.len(), FileCounts::default());
        }
        for (a, b) in self.files.iter_mut().zip(&later.files) {
            a.add(b);
        }
    }

    pub fn totals(&self) -> FileCounts {
        let mut t = FileCounts::default();
        for f in &self.files {
            t.add(f);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acc(partner: &'static str, amount: &str) -> Accrual<'static> {
        Accrual {
            program: 0,
            partner_id: partner,
            association: Association::Dpor,
            basis: Decimal::from(100),
            rate: "0.04".parse().unwrap(),
            share: Decimal::ONE,
            amount: amount.parse().unwrap(),
            designation: None,
            days: None,
        }
    }

    #[test]
    fn merge_equals_single_fold() {
        let eur = Currency::parse("EUR").unwrap();
        let mut one = Fold::new(1);
        let mut a = Fold::new(1);
        let mut b = Fold::new(1);
        for (i, (p, x)) in [("p1", "4"), ("p2", "1.5"), ("p1", "-4"), ("p1", "0.0001")]
            .iter()
            .enumerate()
        {
            one.add(&acc(p, x), "c", "s", eur);
            if i < 2 {
                a.add(&acc(p, x), "c", "s", eur)
            } else {
                b.add(&acc(p, x), "c", "s", eur)
            }
        }
        a.merge(b);
        let sorted = |f: &Fold| {
            let mut v: Vec<_> = f.details.iter().map(|(k, v)| (k.clone(), *v)).collect();
            v.sort_by(|x, y| x.0.cmp(&y.0));
            v
        };
        assert_eq!(sorted(&one), sorted(&a));
        let p1 = sorted(&a)[0].1;
        assert_eq!(
            (p1.lines, p1.accrual.to_string()),
            (3, "0.0001".to_string())
        );
    }
}
