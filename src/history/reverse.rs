//! Credits against closed months: which recorded accruals a credit line
//! reverses, and by how much. Pure: takes what the history returned, reads
//! and writes nothing.
//!
//! A credit (a negative billing line) refers to a charge of a closed period
//! by its `ReferenceId` when it has one, otherwise by subscription, product
//! and SKU with an overlapping charge period. It reverses each recorded
//! accrual of that charge in proportion to the credited amount: the recorded
//! basis x (credit / the charge's line amount), kept to
//! [`PRORATION_DP`] decimals like a prorated
//! basis (a full credit reverses the recorded basis exactly). Partial credits
//! are kept to those decimals on their running total ([`reversal_basis`]),
//! so together they never reverse more than the recorded basis. Money is
//! still rounded once, at the statement lines.

use chrono::NaiveDate;
use rust_decimal::{Decimal, RoundingStrategy};

use super::{AccrualRec, ClosedAccrual};
use crate::accrue::PRORATION_DP;
use crate::money::ExactArith;

/// What identifies the charge a credit line refers to. IDs as the ledger
/// writes them: the subscription as its key (lower case), the others as
/// read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChargeKey {
    /// The line's customer, as its key (trimmed, lower case): a credit
    /// reverses a charge of its own customer only ([`own_customer`]).
    pub customer_id: String,
    /// Empty when the line has none.
    pub reference_id: String,
    pub subscription_id: String,
    pub product_id: String,
    /// `None` when the file has no `SkuId` column or the line leaves it empty.
    pub sku_id: Option<String>,
    pub charge_start: NaiveDate,
    /// The start date when the line has no end date.
    pub charge_end: NaiveDate,
    /// How much of subscription, product and SKU a look-up compares.
    pub scope: Scope,
}

/// How much of a credit's key without a reference ID a look-up compares
/// ([`ChargeKey::unknown_parts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Scope {
    /// Subscription, product and SKU, a missing product or SKU as the
    /// empty one.
    #[default]
    Whole,
    /// Subscription and product, any SKU: the credit has no SKU.
    AnySku,
    /// The subscription alone, any product and SKU: the credit has no
    /// product.
    AnyProduct,
}

impl ChargeKey {
    /// The reference ID, when the line has one: then it alone decides.
    pub fn reference(&self) -> Option<&str> {
        let r = self.reference_id.trim();
        (!r.is_empty()).then_some(r)
    }

    /// The keys a credit without a reference ID is looked up under when its
    /// whole key finds no closed charge: a product or SKU one side does not
    /// know (a file without the `ProductId` or `SkuId` column, or a line
    /// leaving it empty) may be any value. A credit without a SKU looks at
    /// every SKU of its product ([`Scope::AnySku`]), one without a product
    /// at every charge of its subscription ([`Scope::AnyProduct`]); a credit
    /// with a SKU looks for the charge recorded without one, a credit with
    /// a product for the charge recorded without one (with its SKU, then
    /// without). The charges these find are disjoint (each key part is a
    /// different stored key), and all of them together are the candidates:
    /// two different charges make the credit ambiguous ([`one_charge`]),
    /// never a guess. Empty for a credit with a reference ID (it alone
    /// decides) and for a key already loosened.
    pub fn unknown_parts(&self) -> Vec<ChargeKey> {
        if self.reference().is_some() || self.scope != Scope::Whole {
            return Vec::new();
        }
        let blank = |s: &str| s.trim().is_empty();
        let sku = self.sku_id.as_deref().filter(|s| !blank(s));
        let with = |product: &str, sku: Option<&str>, scope: Scope| ChargeKey {
            product_id: product.to_string(),
            sku_id: sku.map(str::to_string),
            scope,
            ..self.clone()
        };
        if blank(&self.product_id) {
            return vec![with("", None, Scope::AnyProduct)];
        }
        let mut out = vec![match sku {
            None => with(&self.product_id, None, Scope::AnySku),
            Some(_) => with(&self.product_id, None, Scope::Whole),
        }];
        if let Some(sku) = sku {
            out.push(with("", Some(sku), Scope::Whole));
        }
        out.push(with("", None, Scope::Whole));
        out
    }
}

/// Whether `rec` is an accrual of the charge `key` refers to: the same
/// reference ID when the credit has one (a recorded accrual without one never
/// matches it); otherwise the same subscription, product and SKU (product
/// and SKU in any letter case, like every ID; a missing product or SKU
/// matches only a missing or empty one, unless the key's [`Scope`] leaves
/// it out) and overlapping charge periods (both ends included). A recorded accrual
/// without source keys (its run recorded none) never matches; neither does a
/// reversal row or the accrual of a credit line (a negative line amount): a
/// credit reverses charges, not other credits.
pub fn matches(key: &ChargeKey, rec: &AccrualRec) -> bool {
    if !matches_but_dates(key, rec) {
        return false;
    }
    if key.reference().is_some() {
        return true;
    }
    let date = |s: &Option<String>| {
        s.as_deref()
            .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
    };
    let Some(start) = date(&rec.charge_start) else {
        return false;
    };
    let end = date(&rec.charge_end).unwrap_or(start);
    start <= key.charge_end && key.charge_start <= end
}

/// [`matches()`] but for the charge dates (of a credit without a reference
/// ID): what the charges stored under one key of the history share, so
/// that it is asked once per charge and key, not per credit.
pub fn matches_but_dates(key: &ChargeKey, rec: &AccrualRec) -> bool {
    let credit = rec
        .line_amount
        .as_deref()
        .is_some_and(|a| a.trim_start().starts_with('-'));
    if rec.reverses.is_some() || credit {
        return false;
    }
    if let Some(r) = key.reference() {
        // Case-insensitively, like every ID (the history stores reference
        // IDs folded; in an older one the look-up tries three spellings).
        return rec
            .reference_id
            .as_deref()
            .is_some_and(|x| crate::ingest::id_key(x.trim()) == crate::ingest::id_key(r));
    }
    // Case-insensitively too (the history stores them folded from schema
    // version 5 on; in an older one the look-up tries three spellings).
    let id = |x: &str| crate::ingest::id_key(x.trim());
    // A missing product is the empty product, a missing SKU the empty SKU.
    let or_empty = |x: Option<&str>| id(x.unwrap_or(""));
    let product = key.scope == Scope::AnyProduct
        || or_empty(rec.product_id.as_deref()) == id(&key.product_id);
    let sku = key.scope != Scope::Whole
        || or_empty(rec.sku_id.as_deref()) == or_empty(key.sku_id.as_deref());
    rec.subscription_id == key.subscription_id && product && sku
}

/// Whether `other` (the head accrual of a charge recorded in another version
/// of a closed period) is the same charge as `charge` (the head accrual of
/// the charge a credit found), whatever file path or line either version
/// read it from: the same customer and, when `charge` has a reference ID,
/// the same reference ID; otherwise the same subscription, product and SKU
/// and the same charge start and end dates (IDs trimmed and in any letter
/// case; a missing product or SKU is the same as a missing one, a missing end date is
/// the start date). `other`'s own reference ID does not count then: the
/// charge found has none to compare, and counting a charge too many only
/// refuses a credit, never reverses one twice. A reversal row, the accrual of
/// a credit line or one without source keys is no charge at all.
pub fn same_charge(charge: &AccrualRec, other: &AccrualRec) -> bool {
    let credit = |a: &AccrualRec| {
        a.line_amount
            .as_deref()
            .is_none_or(|x| x.trim_start().starts_with('-'))
    };
    if other.reverses.is_some() || credit(other) {
        return false;
    }
    let id = |x: &str| crate::ingest::id_key(x.trim());
    if id(&charge.customer_id) != id(&other.customer_id) {
        return false;
    }
    let reference = |a: &AccrualRec| a.reference_id.as_deref().map(id).filter(|r| !r.is_empty());
    if let Some(r) = reference(charge) {
        return reference(other) == Some(r);
    }
    fn dates(a: &AccrualRec) -> (Option<&str>, Option<&str>) {
        let start = a.charge_start.as_deref().map(str::trim);
        (start, a.charge_end.as_deref().map(str::trim).or(start))
    }
    let or_empty = |x: Option<&str>| id(x.unwrap_or(""));
    id(&charge.subscription_id) == id(&other.subscription_id)
        && or_empty(charge.product_id.as_deref()) == or_empty(other.product_id.as_deref())
        && or_empty(charge.sku_id.as_deref()) == or_empty(other.sku_id.as_deref())
        && dates(charge).0.is_some()
        && dates(charge) == dates(other)
}

/// The one closed charge a credit refers to: its recorded accruals (one
/// billing line's) and what closed credits already took from it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Charge {
    pub accruals: Vec<ClosedAccrual>,
    /// The sum of the earlier credits recorded against it (zero or
    /// negative for a positive charge).
    pub credited: Decimal,
}

/// What the engine asks the history about a credit line (implemented over
/// the history by [`super::ClosedLookup`]). `Ok(None)`: the credit refers to
/// no closed charge. `Err`: it cannot be decided (several charges match, or
/// the history cannot be read), the reason for the credit line's reject.
pub trait ClosedCharges: Send + Sync {
    fn charge(&self, key: &ChargeKey) -> Result<Option<Charge>, String>;
}

/// The matched accruals grouped by the charge (billing line) they belong
/// to: exactly one group, or an error naming the candidates.
/// How many candidate charges an ambiguous credit's reject names.
pub const NAMED: usize = 4;

/// The one charge among `found` (accruals of one or more charges, each
/// charge's together) or an error naming a few of them; `more`: candidate
/// charges the look-up counted but did not return (see
/// `History::closed_charges_capped`).
pub fn one_charge(
    found: Vec<ClosedAccrual>,
    more: u64,
) -> Result<Option<Vec<ClosedAccrual>>, String> {
    let Some(first) = found.first() else {
        return Ok(None);
    };
    let label = reverses_label(first);
    let mut others: Vec<String> = found
        .iter()
        .map(reverses_label)
        .filter(|l| *l != label)
        .collect();
    if others.is_empty() && more == 0 {
        return Ok(Some(found));
    }
    others.dedup();
    // A few are named: a credit of one of an Azure plan's daily lines may
    // match hundreds.
    let total = others.len() as u64 + 1 + more;
    let more = match others.len().saturating_sub(NAMED) as u64 + more {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    others.truncate(NAMED);
    others.insert(0, label);
    Err(format!(
        "the credit matches {total} closed charges ({}{more}): give it the ReferenceId of the charge it credits",
        others.join(", ")
    ))
}

/// Refuses a charge of another customer than the credit's: a `ReferenceId`
/// (which alone decides the match) typed or reused across tenants would
/// otherwise book one customer's credit on another customer's statements.
pub fn own_customer(key: &ChargeKey, charge: &[ClosedAccrual]) -> Result<(), String> {
    let Some(first) = charge.first() else {
        return Ok(());
    };
    let theirs = crate::ingest::id_key(&first.accrual.customer_id);
    if theirs == key.customer_id {
        return Ok(());
    }
    let by = match key.reference() {
        Some(r) => format!("its ReferenceId {r} names"),
        None => "it matches".to_string(),
    };
    Err(format!(
        "{by} a closed charge of customer {} ({}), not of this line's customer {}: a credit \
         reverses its own customer's charges (correct the ReferenceId or the CustomerId)",
        first.accrual.customer_id,
        reverses_label(first),
        key.customer_id
    ))
}

/// `PERIOD vVERSION FILE:LINE`: the `reverses` value of a reversal row.
pub fn reverses_label(c: &ClosedAccrual) -> String {
    format!(
        "{} v{} {}:{}",
        c.period, c.version, c.accrual.source_file, c.accrual.source_line
    )
}

/// Why a credit cannot reverse the charge it matched. Each becomes a reject
/// of the credit line, naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReverseError {
    #[error("the closed accrual {0} has no line amount recorded, so the credit's proportion cannot be computed")]
    NoLineAmount(String),
    #[error("the closed accrual {at} has {what} '{value}': not an exact decimal; the history is damaged")]
    Damaged {
        at: String,
        what: &'static str,
        value: String,
    },
    #[error("the credit {credit} exceeds what is left of the charge it reverses ({at}: {left} of {line} not yet credited)")]
    OverCredit {
        at: String,
        credit: Decimal,
        left: Decimal,
        line: Decimal,
    },
    #[error("the reversal of {at} cannot be computed exactly: a value would be beyond about 7.9e28 or need more than 28 significant digits")]
    Overflow { at: String },
}

/// One reversal: the recorded accrual and the basis and amount that undo
/// the credited part of it (negative for a credit of a positive charge).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reversal {
    pub of: ClosedAccrual,
    /// `PERIOD vVERSION FILE:LINE`.
    pub reverses: String,
    /// The charge's line amount as recorded.
    pub line: Decimal,
    /// The recorded accrual's basis.
    pub recorded: Decimal,
    pub basis: Decimal,
    pub rate: Decimal,
    pub share: Decimal,
    /// `basis x rate x share`, exact (rounded once later, at the statement
    /// line, like every accrual).
    pub amount: Decimal,
}

fn exact(c: &ClosedAccrual, what: &'static str, v: &str) -> Result<Decimal, ReverseError> {
    v.parse::<Decimal>().map_err(|_| ReverseError::Damaged {
        at: reverses_label(c),
        what,
        value: v.to_string(),
    })
}

/// Whether `credit` can reverse a charge of the line amount `line` of which
/// `left` is not yet credited: a credit is the opposite sign of its charge
/// and at most what is left of it.
pub fn fits(credit: Decimal, line: Decimal, left: Decimal) -> bool {
    !line.is_zero()
        && credit.is_sign_negative() != line.is_sign_negative()
        && credit.abs() <= left.abs()
        && (left.is_zero() || left.is_sign_negative() == line.is_sign_negative())
}

/// The part of a recorded basis that credits totalling `credited` (of the
/// opposite sign to the charge, or zero) of a charge of the line amount
/// `line` reverse: `recorded x credited / line`, kept to [`PRORATION_DP`]
/// decimals half-even; exactly `-recorded` for the whole line. `None` on
/// overflow.
fn reversed_part(recorded: Decimal, line: Decimal, credited: Decimal) -> Option<Decimal> {
    if credited.is_zero() {
        return Some(Decimal::ZERO);
    }
    if credited.exact_add(line)? == Decimal::ZERO {
        return Some(-recorded);
    }
    Some(
        recorded
            .checked_mul(credited)?
            .checked_div(line)?
            .round_dp_with_strategy(PRORATION_DP, RoundingStrategy::MidpointNearestEven),
    )
}

/// The basis a credit of `credit` reverses of a recorded accrual of basis
/// `recorded`, after earlier credits of the same charge took `credited`:
/// what all of them reverse together less what the earlier ones reversed.
/// Each part is kept to [`PRORATION_DP`] decimals once, on the running
/// total, so partial credits never reverse more than the recorded basis
/// together, and the credit that completes the charge reverses exactly
/// what is left of it. `None` on overflow.
pub fn reversal_basis(
    recorded: Decimal,
    line: Decimal,
    credited: Decimal,
    credit: Decimal,
) -> Option<Decimal> {
    let after = reversed_part(recorded, line, credited.exact_add(credit)?)?;
    after.exact_sub(reversed_part(recorded, line, credited)?)
}

/// The reversals of `credit` (a negative amount) against the recorded
/// accruals `charge` of one charge (all from one billing line), given what
/// earlier credits already took from it (`credited`, negative or zero).
/// A credit larger than what is left of the charge reverses nothing: it is
/// an error naming the charge (the credit line is then rejected).
pub fn reversals(
    credit: Decimal,
    credited: Decimal,
    charge: &[ClosedAccrual],
) -> Result<Vec<Reversal>, ReverseError> {
    let mut out = Vec::with_capacity(charge.len());
    for c in charge {
        let at = reverses_label(c);
        let overflow = || ReverseError::Overflow { at: at.clone() };
        let line = match &c.accrual.line_amount {
            Some(l) => exact(c, "line_amount", l)?,
            None => return Err(ReverseError::NoLineAmount(at)),
        };
        let left = line.exact_add(credited).ok_or_else(overflow)?;
        if !fits(credit, line, left) {
            return Err(ReverseError::OverCredit {
                at,
                credit,
                left,
                line,
            });
        }
        let recorded = exact(c, "basis", &c.accrual.basis)?;
        let rate = exact(c, "rate", &c.accrual.rate)?;
        let share = exact(c, "share", &c.accrual.share)?;
        let basis = reversal_basis(recorded, line, credited, credit).ok_or_else(overflow)?;
        let amount = crate::accrue::accrual_amount(basis, rate, share).ok_or_else(overflow)?;
        out.push(Reversal {
            of: c.clone(),
            reverses: at,
            line,
            recorded,
            basis,
            rate,
            share,
            amount,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn rec(reference: Option<&str>, sku: Option<&str>, from: &str, to: &str) -> AccrualRec {
        AccrualRec {
            partner_id: "P1".into(),
            subscription_id: "sub-1".into(),
            source_file: "oct.csv".into(),
            source_line: 7,
            reference_id: reference.map(Into::into),
            product_id: Some("CFQ7".into()),
            sku_id: sku.map(Into::into),
            charge_start: Some(from.into()),
            charge_end: Some(to.into()),
            basis: "100.00".into(),
            rate: "0.05".into(),
            share: "1".into(),
            line_amount: Some("100.00".into()),
            ..AccrualRec::default()
        }
    }

    fn key(reference: &str, sku: Option<&str>, from: &str, to: &str) -> ChargeKey {
        ChargeKey {
            customer_id: "c1".into(),
            reference_id: reference.into(),
            subscription_id: "sub-1".into(),
            product_id: "CFQ7".into(),
            sku_id: sku.map(Into::into),
            charge_start: date(from),
            charge_end: date(to),
            scope: Scope::Whole,
        }
    }

    #[test]
    fn a_reference_id_alone_decides() {
        let r = rec(Some("REF-9"), Some("0001"), "2026-10-01", "2026-10-31");
        // Same reference, other subscription and dates: matches.
        let mut k = key("REF-9", None, "2026-11-01", "2026-11-30");
        k.subscription_id = "other".into();
        assert!(matches(&k, &r));
        // Another reference: no match, even on the same charge keys.
        assert!(!matches(
            &key("REF-8", Some("0001"), "2026-10-01", "2026-10-31"),
            &r
        ));
        // A recorded accrual without a reference never matches a credit that has one.
        let none = rec(None, Some("0001"), "2026-10-01", "2026-10-31");
        assert!(!matches(
            &key("REF-9", Some("0001"), "2026-10-01", "2026-10-31"),
            &none
        ));
    }

    #[test]
    fn without_reference_subscription_product_sku_and_overlapping_dates() {
        let r = rec(None, Some("0001"), "2026-10-01", "2026-10-31");
        assert!(matches(
            &key("", Some("0001"), "2026-10-15", "2026-10-31"),
            &r
        ));
        assert!(matches(
            &key(" ", Some("0001"), "2026-10-31", "2026-11-30"),
            &r
        ));
        assert!(!matches(
            &key("", Some("0001"), "2026-11-01", "2026-11-30"),
            &r
        ));
        assert!(!matches(
            &key("", Some("0002"), "2026-10-01", "2026-10-31"),
            &r
        ));
        assert!(!matches(&key("", None, "2026-10-01", "2026-10-31"), &r));
        let mut k = key("", Some("0001"), "2026-10-01", "2026-10-31");
        k.product_id = "OTHER".into();
        assert!(!matches(&k, &r));
        // No end date recorded: the charge is its start day.
        let mut one_day = r.clone();
        one_day.charge_end = None;
        assert!(matches(
            &key("", Some("0001"), "2026-09-01", "2026-10-01"),
            &one_day
        ));
        assert!(!matches(
            &key("", Some("0001"), "2026-10-02", "2026-10-31"),
            &one_day
        ));
        // No source keys recorded, or a reversal row: never.
        let mut bare = r.clone();
        bare.product_id = None;
        bare.charge_start = None;
        assert!(!matches(
            &key("", Some("0001"), "2026-10-01", "2026-10-31"),
            &bare
        ));
        let mut earlier_credit = r.clone();
        earlier_credit.line_amount = Some("-20.00".into());
        assert!(!matches(
            &key("", Some("0001"), "2026-10-01", "2026-10-31"),
            &earlier_credit
        ));
        let mut reversal = r;
        reversal.reverses = Some("2026-09 v1 sep.csv:3".into());
        assert!(!matches(
            &key("", Some("0001"), "2026-10-01", "2026-10-31"),
            &reversal
        ));
    }

    /// Product and SKU are IDs: any letter case, blanks around them
    /// ignored; a missing SKU still matches only a missing one.
    #[test]
    fn product_and_sku_match_in_any_letter_case() {
        let mut r = rec(None, Some("Dg7G"), "2026-10-01", "2026-10-31");
        r.product_id = Some("CFQ7TTC0LFLX".into());
        for (product, sku) in [
            ("CFQ7TTC0LFLX", "Dg7G"),
            ("cfq7ttc0lflx", "dg7g"),
            ("Cfq7TTc0lfLx", "DG7G"),
            (" cfq7ttc0lflx ", " dG7g"),
        ] {
            let mut k = key("", Some(sku), "2026-10-01", "2026-10-31");
            k.product_id = product.into();
            assert!(matches(&k, &r), "{product:?} {sku:?}");
        }
        let mut k = key("", Some("dg7g"), "2026-10-01", "2026-10-31");
        k.product_id = "cfq7ttc0lfly".into();
        assert!(!matches(&k, &r));
        k.product_id = "cfq7ttc0lflx".into();
        k.sku_id = None;
        assert!(!matches(&k, &r));
        let mut no_sku = r;
        no_sku.sku_id = None;
        assert!(matches(&k, &no_sku));
        k.sku_id = Some("DG7G".into());
        assert!(!matches(&k, &no_sku));
    }

    fn closed(r: AccrualRec) -> ClosedAccrual {
        ClosedAccrual {
            period: "2026-10".into(),
            version: 1,
            accrual: r,
        }
    }

    #[test]
    fn a_full_credit_reverses_exactly_a_partial_one_proportionally() {
        let mut prorated = rec(None, None, "2026-10-01", "2026-10-31");
        prorated.basis = "45.161290".into();
        prorated.share = "0.5".into();
        let charge = vec![
            closed(rec(None, None, "2026-10-01", "2026-10-31")),
            closed(prorated),
        ];
        let full = reversals(d("-100.00"), Decimal::ZERO, &charge).unwrap();
        assert_eq!(full[0].basis, d("-100.00"));
        assert_eq!(full[0].amount, d("-5.0000"));
        assert_eq!(full[1].basis, d("-45.161290"));
        assert_eq!(full[1].amount, d("-1.12903225"));
        assert_eq!(full[0].reverses, "2026-10 v1 oct.csv:7");
        let part = reversals(d("-25.00"), Decimal::ZERO, &charge).unwrap();
        assert_eq!(part[0].basis, d("-25"));
        assert_eq!(part[0].amount, d("-1.25"));
        // 45.161290 x 0.25 = 11.2903225, kept to 6 decimals half-even.
        assert_eq!(part[1].basis, d("-11.290322"));
        // 1/3 of the line: 33.333333 (not exact: kept to 6 decimals).
        let third = reversals(d("-33.333333"), Decimal::ZERO, &charge[..1]).unwrap();
        assert_eq!(third[0].basis, d("-33.333333"));
    }

    /// Partial credits are kept to 6 decimals on their running total: two
    /// halves of a charge whose half needs 7 decimals reverse exactly the
    /// recorded basis together (each half on its own would be 0.062500).
    #[test]
    fn partial_credits_together_reverse_exactly_the_recorded_basis() {
        let mut r = rec(None, None, "2026-10-01", "2026-10-31");
        r.basis = "0.124999".into();
        r.line_amount = Some("0.124999".into());
        let charge = vec![closed(r)];
        let first = reversals(d("-0.0624995"), Decimal::ZERO, &charge).unwrap();
        assert_eq!(first[0].basis, d("-0.062500"));
        let second = reversals(d("-0.0624995"), d("-0.0624995"), &charge).unwrap();
        assert_eq!(second[0].basis, d("-0.062499"));
        assert_eq!(first[0].basis + second[0].basis, d("-0.124999"));
        // Three thirds of 100.00 against a recorded basis of 10.00: 3.333333,
        // 3.333334, 3.333333.
        let third = d("-33.333333");
        let b = |credited| reversal_basis(d("10.00"), d("100.00"), credited, third).unwrap();
        assert_eq!(b(Decimal::ZERO), d("-3.333333"));
        assert_eq!(b(third), d("-3.333334"));
        let last = reversal_basis(d("10.00"), d("100.00"), third * d("2"), d("-33.333334"));
        assert_eq!(last, Some(d("-3.333333")));
        // The credits total the recorded basis exactly, whatever their sizes.
        for n in 1..=40u32 {
            let step = (d("-100.00") / Decimal::from(n)).round_dp(7);
            let (mut credited, mut reversed) = (Decimal::ZERO, Decimal::ZERO);
            for k in 0..n {
                let credit = if k + 1 == n {
                    d("-100.00") - credited
                } else {
                    step
                };
                reversed += reversal_basis(d("12.345678"), d("100.00"), credited, credit).unwrap();
                credited += credit;
            }
            assert_eq!(reversed, d("-12.345678"), "{n} credits");
        }
    }

    #[test]
    fn a_charge_of_another_customer_is_refused_naming_both() {
        let mut a = closed(rec(Some("REF-9"), None, "2026-10-01", "2026-10-31"));
        a.accrual.customer_id = "C1".into();
        let k = key("REF-9", None, "2026-10-01", "2026-10-31");
        assert_eq!(own_customer(&k, &[a.clone()]), Ok(()));
        assert_eq!(own_customer(&k, &[]), Ok(()));
        a.accrual.customer_id = "c2".into();
        let e = own_customer(&k, &[a]).unwrap_err();
        assert!(
            e.contains("ReferenceId REF-9 names a closed charge of customer c2 (2026-10 v1 oct.csv:7), not of this line's customer c1"),
            "{e}"
        );
    }

    /// The looser keys: any SKU for a credit without one, any product for
    /// one without a product; for a credit with them, the charge recorded
    /// without them. None for a credit with a reference ID.
    #[test]
    fn a_part_one_side_does_not_know_may_be_any_value() {
        let parts = |product: &str, sku: Option<&str>| -> Vec<(String, Option<String>, Scope)> {
            ChargeKey {
                product_id: product.into(),
                ..key("", sku, "2026-10-01", "2026-10-31")
            }
            .unknown_parts()
            .into_iter()
            .map(|k| (k.product_id, k.sku_id, k.scope))
            .collect()
        };
        let p = |product: &str, sku: Option<&str>, scope| {
            (product.to_string(), sku.map(str::to_string), scope)
        };
        assert_eq!(
            parts("CFQ7", None),
            [p("CFQ7", None, Scope::AnySku), p("", None, Scope::Whole)]
        );
        assert_eq!(
            parts("CFQ7", Some("0001")),
            [
                p("CFQ7", None, Scope::Whole),
                p("", Some("0001"), Scope::Whole),
                p("", None, Scope::Whole)
            ]
        );
        assert_eq!(parts(" ", Some(" ")), [p("", None, Scope::AnyProduct)]);
        assert!(key("REF", None, "2026-10-01", "2026-10-31")
            .unknown_parts()
            .is_empty());
        // Looser keys are not loosened again.
        for k in key("", None, "2026-10-01", "2026-10-31").unknown_parts() {
            assert!(k.scope == Scope::Whole || k.unknown_parts().is_empty());
        }
        // A scope leaves out what it says, and only that.
        let charge = rec(None, Some("0001"), "2026-10-01", "2026-10-31");
        let mut k = key("", None, "2026-10-05", "2026-10-06");
        assert!(!matches(&k, &charge));
        k.scope = Scope::AnySku;
        assert!(matches(&k, &charge));
        k.product_id = "CFQ8".into();
        assert!(!matches(&k, &charge));
        k.scope = Scope::AnyProduct;
        assert!(matches(&k, &charge));
        k.subscription_id = "sub-2".into();
        assert!(!matches(&k, &charge));
    }

    #[test]
    fn one_charge_or_an_error_naming_the_candidates() {
        assert_eq!(one_charge(Vec::new(), 0), Ok(None));
        let a = closed(rec(None, None, "2026-10-01", "2026-10-31"));
        let mut b = a.clone();
        b.accrual.partner_id = "P2".into();
        assert_eq!(
            one_charge(vec![a.clone(), b.clone()], 0)
                .unwrap()
                .unwrap()
                .len(),
            2
        );
        let mut other = a.clone();
        other.accrual.source_line = 8;
        let e = one_charge(vec![a.clone(), b, other], 0).unwrap_err();
        assert!(
            e.contains("2 closed charges (2026-10 v1 oct.csv:7, 2026-10 v1 oct.csv:8)"),
            "{e}"
        );
        // Hundreds of candidates (an Azure plan's daily lines): a few named.
        let many: Vec<ClosedAccrual> = (7..307)
            .map(|line| {
                let mut c = a.clone();
                c.accrual.source_line = line;
                c
            })
            .collect();
        let e = one_charge(many, 0).unwrap_err();
        assert!(
            e.contains("300 closed charges (2026-10 v1 oct.csv:7, 2026-10 v1 oct.csv:8, 2026-10 v1 oct.csv:9, 2026-10 v1 oct.csv:10, 2026-10 v1 oct.csv:11 and 295 more)"),
            "{e}"
        );
        // The same, as the capped look-up returns it: five, and a count.
        let five: Vec<ClosedAccrual> = (7..12)
            .map(|line| {
                let mut c = a.clone();
                c.accrual.source_line = line;
                c
            })
            .collect();
        assert_eq!(one_charge(five, 295).unwrap_err(), e);
        // One charge returned, others counted: still ambiguous.
        let e = one_charge(vec![a.clone()], 2).unwrap_err();
        assert!(
            e.contains("3 closed charges (2026-10 v1 oct.csv:7 and 2 more)"),
            "{e}"
        );
    }

    #[test]
    fn an_over_credit_is_refused_naming_the_charge() {
        let charge = vec![closed(rec(None, None, "2026-10-01", "2026-10-31"))];
        let e = reversals(d("-100.01"), Decimal::ZERO, &charge).unwrap_err();
        assert!(e.to_string().contains("2026-10 v1 oct.csv:7"), "{e}");
        // 60 credited before: 40 left.
        assert!(reversals(d("-40"), d("-60"), &charge).is_ok());
        assert!(matches!(
            reversals(d("-40.01"), d("-60"), &charge),
            Err(ReverseError::OverCredit { .. })
        ));
        // A positive "credit" does not reverse a positive charge.
        assert!(reversals(d("10"), Decimal::ZERO, &charge).is_err());
        let mut unknown = rec(None, None, "2026-10-01", "2026-10-31");
        unknown.line_amount = None;
        assert!(matches!(
            reversals(d("-1"), Decimal::ZERO, &[closed(unknown)]),
            Err(ReverseError::NoLineAmount(_))
        ));
    }

    #[test]
    fn a_charge_is_the_same_in_another_version_by_what_it_is_not_where_it_was_read() {
        let v2 = AccrualRec {
            customer_id: "C1".into(),
            ..rec(Some("Ref-1"), Some("0002"), "2026-10-01", "2026-10-31")
        };
        // Another path and line, the IDs in another letter case: the same.
        let v1 = AccrualRec {
            customer_id: "c1 ".into(),
            source_file: "/abs/copy/oct.csv".into(),
            source_line: 3,
            ..rec(Some(" ref-1"), Some("0002"), "2026-10-01", "2026-10-31")
        };
        assert!(same_charge(&v2, &v1));
        // With a reference ID, it alone decides (with the customer).
        let other_ref = rec(Some("ref-2"), Some("0002"), "2026-10-01", "2026-10-31");
        assert!(!same_charge(
            &v2,
            &AccrualRec {
                customer_id: "c1".into(),
                ..other_ref
            }
        ));
        let other_customer = AccrualRec {
            customer_id: "c2".into(),
            ..v1.clone()
        };
        assert!(!same_charge(&v2, &other_customer));
        // Without one: subscription, product, SKU and both dates.
        let plain = rec(None, Some("0002"), "2026-10-01", "2026-10-31");
        assert!(same_charge(
            &plain,
            &rec(None, Some("0002"), "2026-10-01", "2026-10-31")
        ));
        assert!(same_charge(
            &plain,
            &rec(Some("r"), Some("0002"), "2026-10-01", "2026-10-31")
        ));
        assert!(!same_charge(
            &plain,
            &rec(None, Some("0002"), "2026-10-02", "2026-10-31")
        ));
        assert!(!same_charge(
            &plain,
            &rec(None, Some("0002"), "2026-10-01", "2026-10-30")
        ));
        assert!(!same_charge(
            &plain,
            &rec(None, Some("0003"), "2026-10-01", "2026-10-31")
        ));
        assert!(!same_charge(
            &plain,
            &rec(None, None, "2026-10-01", "2026-10-31")
        ));
        assert!(same_charge(
            &rec(None, None, "2026-10-01", "2026-10-31"),
            &rec(None, Some(""), "2026-10-01", "2026-10-31")
        ));
        // A reversal or a credit line is no charge.
        let reversal = AccrualRec {
            reverses: Some("2026-10 v1 oct.csv:7".into()),
            ..plain.clone()
        };
        assert!(!same_charge(&plain, &reversal));
        let credit = AccrualRec {
            line_amount: Some("-100.00".into()),
            ..plain.clone()
        };
        assert!(!same_charge(&plain, &credit));
    }
}
