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
use crate::money::{format_exact, Currency};
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
            *e = e.checked_add(l.amount).ok_or_else(|| Fatal::Overflow {
                what: format!(
                    "partner {}: journal entry of program {} for {} ({})",
                    p.partner_id, l.program_id, l.month, l.currency
                ),
                cause: format!(
                    "{e} + {} is larger than the largest decimal (about 7.9e28)",
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

/// `journal.csv` as bytes.
pub fn journal_csv(set: &StatementSet, journal: &JournalSettings) -> Result<Vec<u8>, Fatal> {
    let err = |e: csv::Error| Fatal::Input(format!("journal.csv: {e}"));
    let mut w = super::csv::writer(Vec::new());
    super::csv::row(&mut w, &JOURNAL_HEADER).map_err(err)?;
    let period = set.period.label();
    let posting_date = set.period.last_day().to_string();
    for (i, e) in entries(set)?.iter().enumerate() {
        let accounts = journal.accounts(e.program_id);
        let entry = (i + 1).to_string();
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
                &mut w,
                &[
                    &entry,
                    &posting_date,
                    &period,
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
            .map_err(err)?;
        }
    }
    w.into_inner()
        .map_err(|e| Fatal::Input(format!("journal.csv: {e}")))
}

/// Writes `journal.csv` into the run's staging directory `dir`.
pub fn write_journal(
    dir: &std::path::Path,
    set: &StatementSet,
    journal: &JournalSettings,
    files: &super::publish::Written,
) -> Result<(), Fatal> {
    let bytes = journal_csv(set, journal)?;
    super::publish::write_file(files, &dir.join("journal.csv"), &bytes)
}
