//! `journal.csv`: the period's accrual journal for the general ledger.
//!
//! One entry per partner, program, accrual month and currency, of two rows
//! (legs): a debit and a credit of the same amount. The amount is the sum of
//! the partner's statement lines of that program, month and currency (each
//! rounded once), so the journal ties out to the statements to the cent. A
//! positive accrual debits the expense account (`debit_account`) and credits
//! the accrued-liability account (`credit_account`); a negative one (credits
//! larger than charges) posts the other way round, so `debit` and `credit`
//! are never negative. `amount` is the signed leg (debit positive, credit
//! negative): the rows of a period sum to zero per currency. An entry whose
//! amount rounds to zero is left out (ledgers refuse zero postings). Accounts
//! and the cost centre come from the rules' `[journal]` table
//! ([`crate::config::JournalSettings`]).

use std::collections::BTreeMap;

use rust_decimal::Decimal;

use crate::config::JournalSettings;
use crate::dates::Month;
use crate::error::Fatal;
use crate::money::{format_exact, Currency, ExactArith};
use crate::statements::StatementSet;

/// The header of `journal.csv`.
pub const JOURNAL_HEADER: [&str; 14] = [
    "entry",
    "posting_date",
    "period",
    "partner_id",
    "partner_name",
    "program_id",
    "accrual_month",
    "currency",
    "account",
    "cost_centre",
    "debit",
    "credit",
    "amount",
    "description",
];

/// One journal entry (its two legs are rows of the file).
#[derive(Clone, Debug, PartialEq)]
pub struct JournalEntry<'a> {
    pub partner_id: &'a str,
    pub partner_name: &'a str,
    pub program_id: &'a str,
    pub month: Month,
    pub currency: Currency,
    /// The accrual: the sum of the statement lines, each rounded once.
    pub amount: Decimal,
}

/// The entries of `set`, in partner, program, month and currency order;
/// zero amounts left out.
pub fn entries(set: &StatementSet) -> Result<Vec<JournalEntry<'_>>, Fatal> {
    let mut out = Vec::new();
    for p in &set.partners {
        let mut m: BTreeMap<(&str, Month, Currency), Decimal> = BTreeMap::new();
        for l in p.lines() {
            let e = m
                .entry((&*l.program_id, l.month, l.currency))
                .or_insert(Decimal::ZERO);
            *e = e.exact_add(l.amount).ok_or_else(|| Fatal::Overflow {
                what: format!(
                    "partner {}: journal entry of program {} for {} ({})",
                    p.partner_id, l.program_id, l.month, l.currency
                ),
                cause: format!(
                    "{e} + {} does not fit a decimal exactly (beyond about 7.9e28, or more than \
                     28 significant digits)",
                    l.amount
                ),
            })?;
        }
        out.extend(m.into_iter().filter(|(_, a)| !a.is_zero()).map(
            |((program_id, month, currency), amount)| JournalEntry {
                partner_id: &p.partner_id,
                partner_name: &p.partner_name,
                program_id,
                month,
                currency,
                amount,
            },
        ));
    }
    Ok(out)
}

/// `journal.csv` as bytes, the whole set at once: the tests' oracle for
/// [`Journal`], which `porledger run` fills a batch of partners at a time.
#[cfg(test)]
pub(crate) fn journal_csv(set: &StatementSet, journal: &JournalSettings) -> Result<Vec<u8>, Fatal> {
    let mut j = Journal::new(set.period, journal)?;
    j.add(set)?;
    j.into_bytes()
}

/// `journal.csv` built a batch of partners at a time (`porledger run` drops
/// each batch once written): entries are numbered across batches, so the
/// bytes are those of the whole set at once.
pub struct Journal<'s> {
    w: csv::Writer<Vec<u8>>,
    settings: &'s JournalSettings,
    period: String,
    posting_date: String,
    entries: usize,
}

fn journal_error(e: csv::Error) -> Fatal {
    Fatal::Input(format!("journal.csv: {e}"))
}

impl<'s> Journal<'s> {
    pub fn new(period: crate::dates::Period, settings: &'s JournalSettings) -> Result<Self, Fatal> {
        let mut w = super::csv::writer(Vec::new());
        super::csv::row(&mut w, &JOURNAL_HEADER).map_err(journal_error)?;
        Ok(Journal {
            w,
            settings,
            period: period.label(),
            posting_date: period.last_day().to_string(),
            entries: 0,
        })
    }

    /// Adds the entries of `set`'s partners (which follow those added before).
    pub fn add(&mut self, set: &StatementSet) -> Result<(), Fatal> {
        let (period, posting_date) = (&self.period, &self.posting_date);
        for e in entries(set)? {
            self.entries += 1;
            let accounts = self.settings.accounts(e.program_id);
            let entry = self.entries.to_string();
            let month = e.month.to_string();
            let abs = format_exact(e.amount.abs(), e.currency);
            let neg = format_exact(-e.amount.abs(), e.currency);
            let description = format!(
                "Partner incentive accrual: {} {} for {}, {}",
                e.program_id, e.partner_id, month, period
            );
            // Expense debited for a positive accrual; liability debited for a negative one.
            let (debit_account, credit_account) = if e.amount.is_sign_negative() {
                (&accounts.credit_account, &accounts.debit_account)
            } else {
                (&accounts.debit_account, &accounts.credit_account)
            };
            for (account, debit, credit, amount) in [
                (debit_account, abs.as_str(), "", abs.as_str()),
                (credit_account, "", abs.as_str(), neg.as_str()),
            ] {
                super::csv::row(
                    &mut self.w,
                    &[
                        &entry,
                        posting_date,
                        period,
                        e.partner_id,
                        e.partner_name,
                        e.program_id,
                        &month,
                        e.currency.as_str(),
                        account,
                        &accounts.cost_centre,
                        debit,
                        credit,
                        amount,
                        &description,
                    ],
                )
                .map_err(journal_error)?;
            }
        }
        Ok(())
    }

    pub fn into_bytes(self) -> Result<Vec<u8>, Fatal> {
        self.w
            .into_inner()
            .map_err(|e| Fatal::Input(format!("journal.csv: {e}")))
    }

    /// Writes `journal.csv` into the run's staging directory `dir`.
    pub fn write(
        self,
        dir: &std::path::Path,
        files: &super::publish::Written,
    ) -> Result<(), Fatal> {
        let bytes = self.into_bytes()?;
        super::publish::write_file(files, &dir.join("journal.csv"), &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::DesignationIndex;
    use crate::config::parse_rules;
    use crate::fold::Fold;

    #[test]
    fn written_a_partner_at_a_time_the_entries_number_on() {
        let rules = parse_rules(
            "[[program]]\nid = \"p\"\nassociations = [\"RESELLER\"]\nrate = \"0.01\"\n",
        )
        .unwrap();
        let mut fold = Fold::new(1);
        for (i, partner) in ["r1", "r2", "r3"].into_iter().enumerate() {
            for month in [10, 11] {
                let amount = Decimal::new(1234 + i as i64, 2);
                let a = crate::accrue::reseller_accrual(partner, amount, month);
                fold.add(&a, "c1", "s1", Currency::parse("EUR").unwrap());
            }
        }
        let period: crate::dates::Period = "2026-10..2026-11".parse().unwrap();
        let set = crate::statements::build(
            &mut fold,
            &rules,
            &DesignationIndex::new(Vec::new()),
            period,
            None,
        )
        .unwrap();
        let whole = journal_csv(&set, &rules.journal).unwrap();
        let mut j = Journal::new(period, &rules.journal).unwrap();
        for p in &set.partners {
            let one = StatementSet {
                partners: vec![p.clone()],
                ..set.clone()
            };
            j.add(&one).unwrap();
        }
        let parts = j.into_bytes().unwrap();
        assert_eq!(
            String::from_utf8(parts).unwrap(),
            String::from_utf8(whole.clone()).unwrap()
        );
        // Six entries (three partners, two months), two legs each.
        let text = String::from_utf8(whole).unwrap();
        assert_eq!(text.lines().count(), 1 + 12, "{text}");
        assert!(text.lines().last().unwrap().starts_with("6,"), "{text}");
    }
}
