//! The tie-out: what porledger expected each partner to earn (the run's
//! ledger) against what Microsoft says it paid (the earnings export).
//!
//! Pure: [`TieOut`] is an accumulator fed by the command with ledger rows
//! and, with `--history`, the issued accruals of closed periods
//! ([`TieOut::add_accrual`], each with its [`Origin`]), not-eligible rows
//! ([`TieOut::add_not_eligible`]) and earnings rows ([`TieOut::add_earning`]);
//! [`TieOut::finish`] classifies. Which issued versions make the expected
//! side is decided by [`expected_versions`].
//!
//! # The grain
//!
//! Both sides are summed per **partner + porledger program + customer tenant +
//! subscription + month of the transaction + currency** before they are
//! compared (many-to-one both ways is normal: one billing line feeds several
//! levers, one earning sums many lines). IDs are compared as
//! [`crate::ingest::id_key`] normalises them (trimmed, case-insensitive).
//! Where an earning of a (partner, program, customer, month, currency) carries
//! no subscription, that whole group is compared without subscriptions.
//!
//! The **invoice number and product** refine the grain where both sides
//! carry them: the ledger's `invoice_number` and `product_id` (from the
//! billing line) against the export's `invoiceNumber` and `productId`. Where
//! a row of either side of a group lacks one (an adjustment-like earning
//! without invoice, a usage accrual, a ledger written before these columns,
//! an issued accrual of the history), that whole group is compared without
//! it, as for a missing subscription; where no earning of the export has
//! one, it is compared nowhere. Invoice numbers and products
//! are compared case-insensitively and shown in upper case, as Partner
//! Center writes them (`G012345678`, `CFQ7TTC0LF8Q`).
//!
//! # Classes
//!
//! See [`Class`]; `docs/tieout.md` explains each for partner managers.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::NaiveDate;
use hashbrown::hash_map::Entry;
use hashbrown::{HashMap, HashSet, HashTable};
use rayon::prelude::*;
use rust_decimal::Decimal;
use serde::Serialize;
use smallvec::SmallVec;

use crate::config::earnings::{EarningsLabels, EarningsMatch};
use crate::config::Rules;
use crate::dates::Month;
use crate::error::Fatal;
use crate::fold::ExactSum;
use crate::ingest::{id_key, id_key_into};
use crate::money::{round_money, Currency, Exact, ExactArith, RoundingMode};

/// A fast, deterministic hasher for the grain maps. Output order never
/// depends on it: rows are sorted by the text of their IDs.
type Fast = foldhash::fast::FixedState;
type FastMap<K, V> = HashMap<K, V, Fast>;

/// Slots of a table of [`Recent`] grains (~700 KiB: it stays in cache).
const RECENT_SLOTS: usize = 1 << 14;

/// The last grain per slot of a list of grains (appended as rows come), with
/// the index of its entry: a row of a grain seen shortly before is folded
/// into that entry. The keys are held here, so a row of a new grain (the
/// usual case) is told apart without touching the list.
struct Recent(Box<[Option<(Key, u32)>]>);

impl Recent {
    fn new(slots: usize) -> Recent {
        Recent(vec![None; slots.max(1)].into_boxed_slice())
    }

    /// The entry of `key` in `list`: the remembered one, or a new one made by
    /// `fresh` (then `true`).
    fn entry<'l, V>(
        &mut self,
        list: &'l mut Vec<(Key, V)>,
        key: Key,
        hash: u64,
        fresh: impl FnOnce() -> Result<V, Fatal>,
    ) -> Result<(&'l mut V, bool), Fatal> {
        let slot = (hash % self.0.len() as u64) as usize;
        if let Some((k, i)) = self.0[slot] {
            if k == key {
                return Ok((&mut list[i as usize].1, false));
            }
        }
        let i = list.len();
        list.push((key, fresh()?));
        // Past u32::MAX entries a grain is no longer remembered.
        self.0[slot] = u32::try_from(i).ok().map(|i| (key, i));
        Ok((&mut list[i].1, true))
    }
}
type FastSet<K> = HashSet<K, Fast>;

/// The class of one tie-out row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// Paid and expected agree within the tolerance.
    Matched,
    /// Paid less than expected (same rate).
    Underpaid,
    /// Paid more than expected (same rate).
    Overpaid,
    /// The amounts differ and Microsoft's `earningRate` is not porledger's rate.
    RateDiffers,
    /// porledger accrued, Microsoft paid nothing (yet: see the row's reason).
    ExpectedNotPaid,
    /// Microsoft paid, porledger accrued nothing.
    PaidNotExpected,
    /// A correction row of Microsoft's (`reasonCode`, or no customer).
    Adjustment,
}

impl Class {
    pub const ALL: [Class; 7] = [
        Class::Matched,
        Class::Underpaid,
        Class::Overpaid,
        Class::RateDiffers,
        Class::ExpectedNotPaid,
        Class::PaidNotExpected,
        Class::Adjustment,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Class::Matched => "matched",
            Class::Underpaid => "underpaid",
            Class::Overpaid => "overpaid",
            Class::RateDiffers => "rate-differs",
            Class::ExpectedNotPaid => "expected-not-paid",
            Class::PaidNotExpected => "paid-not-expected",
            Class::Adjustment => "adjustment",
        }
    }
}

/// How the tie-out compares.
#[derive(Clone, Copy, Debug)]
pub struct TieSettings {
    /// Largest |paid - expected| (in the currency) that still ties out.
    pub tolerance: Decimal,
    /// The day the tie-out is made: earnings due after it are `not-yet-due`.
    pub as_of: NaiveDate,
    /// The run's rounding (expected amounts are rounded as statements are).
    pub rounding: RoundingMode,
}

/// Where an expected amount comes from.
#[derive(Clone, Copy, Debug)]
pub enum Origin<'a> {
    /// A row of this run's `ledger.csv`, at this line.
    Ledger(u64),
    /// An issued accrual of a closed period (`tieout --history`): the
    /// version it was issued in and its billing source line.
    Issued {
        period: &'a str,
        version: u32,
        source_file: &'a str,
        source_line: u64,
    },
}

/// One expected accrual (a ledger row, or an issued one of the history), as
/// the tie-out needs it.
#[derive(Clone, Copy, Debug)]
pub struct Accrual<'a> {
    pub partner_id: &'a str,
    pub customer_id: &'a str,
    pub program_id: &'a str,
    pub subscription_id: &'a str,
    /// The billing line's invoice number and product; empty where unknown.
    pub invoice_number: &'a str,
    pub product_id: &'a str,
    pub month: Month,
    pub currency: Currency,
    pub amount: Decimal,
    pub rate: Decimal,
    pub origin: Origin<'a>,
}

/// One earnings row, as the tie-out needs it (see
/// [`crate::ingest::earnings::EarningRow`]).
#[derive(Clone, Copy, Debug)]
pub struct Earning<'a> {
    pub file: u32,
    pub line: u64,
    pub participant_id: &'a str,
    pub participant_name: &'a str,
    pub labels: EarningsLabels<'a>,
    pub customer_id: &'a str,
    pub customer_name: &'a str,
    pub subscription_id: &'a str,
    /// `invoiceNumber` and `productId`; empty where the export has none.
    pub invoice_number: &'a str,
    pub product_id: &'a str,
    pub month: Month,
    pub currency: Currency,
    pub amount: Decimal,
    pub rate: Option<Decimal>,
    pub reason_code: &'a str,
}

/// Every text the tie-out keeps (normalised IDs, IDs as shown, names,
/// labels, reasons), once; grains hold their small integer ids.
///
/// The texts lie one after another in one buffer, and the table holds each
/// text's place beside its id: a look-up of a known text reads the table and
/// the text. (A text of its own on the heap, reached through a list of
/// them, was one more cache miss per look-up, and the look-ups of millions
/// of IDs were the largest part of reading both sides.)
struct Strings {
    bytes: String,
    /// Where each text lies in `bytes`, by id.
    spans: Vec<Interned>,
    index: HashTable<Interned>,
    hasher: Fast,
    scratch: String,
}

/// A text of [`Strings`]: where it lies in [`Strings::bytes`], and its id
/// (16 bytes).
#[derive(Clone, Copy, Debug)]
struct Interned {
    start: usize,
    len: u32,
    id: u32,
}

/// The id of the empty text (interned first).
const EMPTY: u32 = 0;

impl Strings {
    fn new() -> Strings {
        let mut s = Strings {
            bytes: String::new(),
            spans: Vec::new(),
            index: HashTable::new(),
            hasher: Fast::default(),
            scratch: String::new(),
        };
        // Cannot fail: the table is empty.
        let _ = s.id("");
        s
    }

    fn at(bytes: &str, t: Interned) -> &str {
        &bytes[t.start..t.start + t.len as usize]
    }

    fn get(&self, s: &str) -> Option<u32> {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(s);
        self.index
            .find(h, |&t| Self::at(&self.bytes, t) == s)
            .map(|e| e.id)
    }

    /// The id of `s`, interned if new.
    fn id(&mut self, s: &str) -> Result<u32, Fatal> {
        use std::hash::BuildHasher;
        let h = self.hasher.hash_one(s);
        let Strings {
            bytes,
            spans,
            index,
            hasher,
            ..
        } = self;
        if let Some(t) = index.find(h, |&t| Self::at(bytes, t) == s) {
            return Ok(t.id);
        }
        let too_many = || Fatal::Overflow {
            what: "tie-out IDs and names".into(),
            cause: "more than 4,294,967,295 distinct texts, or a text of 4 GiB".into(),
        };
        let t = Interned {
            start: bytes.len(),
            len: u32::try_from(s.len()).map_err(|_| too_many())?,
            id: u32::try_from(spans.len()).map_err(|_| too_many())?,
        };
        bytes.push_str(s);
        spans.push(t);
        index.insert_unique(h, t, |&t| hasher.hash_one(Self::at(bytes, t)));
        Ok(t.id)
    }

    /// Every text, in id order.
    fn texts(&self) -> impl Iterator<Item = &str> + '_ {
        self.spans.iter().map(|&t| Self::at(&self.bytes, t))
    }

    /// The id of the normalised form of the raw ID `raw` (see [`id_key`]).
    fn key_id(&mut self, raw: &str) -> Result<u32, Fatal> {
        if raw.is_ascii() && !raw.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.id(raw);
        }
        let mut k = std::mem::take(&mut self.scratch);
        id_key_into(raw, &mut k);
        let r = self.id(&k);
        self.scratch = k;
        r
    }

    /// The ids of the normalised form of `raw` and of `raw` as given: one
    /// look-up where they are the same text.
    fn key_and_shown(&mut self, raw: &str) -> Result<(u32, u32), Fatal> {
        if raw.is_ascii() && !raw.bytes().any(|b| b.is_ascii_uppercase()) {
            let i = self.id(raw)?;
            return Ok((i, i));
        }
        Ok((self.key_id(raw)?, self.id(raw)?))
    }

    /// The id of an invoice number or product as compared and shown:
    /// trimmed, in upper case (one look-up for the usual upper-case text).
    fn upper_id(&mut self, raw: &str) -> Result<u32, Fatal> {
        let t = raw.trim();
        if t.is_empty() {
            return Ok(EMPTY);
        }
        if !t.bytes().any(|b| b.is_ascii_lowercase()) && t.is_ascii() {
            return self.id(t);
        }
        let mut k = std::mem::take(&mut self.scratch);
        k.clear();
        k.extend(t.chars().flat_map(char::to_uppercase));
        let r = self.id(&k);
        self.scratch = k;
        r
    }

    /// Like [`Strings::key_id`], without interning.
    fn find_key(&self, raw: &str) -> Option<u32> {
        if raw.is_ascii() && !raw.bytes().any(|b| b.is_ascii_uppercase()) {
            self.get(raw)
        } else {
            self.get(&id_key(raw))
        }
    }

    fn str(&self, i: u32) -> &str {
        Self::at(&self.bytes, self.spans[i as usize])
    }

    /// Each text's position in byte order (ids sort as their texts do).
    fn ranks(&self) -> Vec<u32> {
        let mut order: Vec<u32> = (0..self.spans.len() as u32).collect();
        order.par_sort_unstable_by(|&a, &b| self.str(a).cmp(self.str(b)));
        let mut rank = vec![0u32; order.len()];
        for (r, &i) in order.iter().enumerate() {
            rank[i as usize] = r as u32;
        }
        rank
    }
}

/// The grain (ids of normalised IDs; program as given; invoice and product
/// in upper case, [`EMPTY`] where unknown or not compared). Ordered by its
/// ids (not by text): the order the two sides are merge-joined in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    partner: u32,
    month: Month,
    program: u32,
    customer: u32,
    subscription: u32,
    invoice: u32,
    product: u32,
    currency: Currency,
}

/// The optional parts of the grain a group is compared without (bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Dims(u8);

impl Dims {
    const SUBSCRIPTION: u8 = 1;
    const INVOICE: u8 = 2;
    const PRODUCT: u8 = 4;

    /// What `k` lacks: the subscription counts on the earnings side only
    /// (`paid`; an accrual always has one), invoice and product on both.
    fn missing(k: &Key, paid: bool) -> Dims {
        let counted = if paid { Dims::SUBSCRIPTION } else { 0 } | Dims::INVOICE | Dims::PRODUCT;
        Dims(!Dims::present(k).0 & counted)
    }

    /// What `k` has.
    fn present(k: &Key) -> Dims {
        let mut d = 0;
        if k.subscription != EMPTY {
            d |= Dims::SUBSCRIPTION;
        }
        if k.invoice != EMPTY {
            d |= Dims::INVOICE;
        }
        if k.product != EMPTY {
            d |= Dims::PRODUCT;
        }
        Dims(d)
    }

    /// `k` without these parts.
    fn clear(self, k: &mut Key) {
        if self.0 & Dims::SUBSCRIPTION != 0 {
            k.subscription = EMPTY;
        }
        if self.0 & Dims::INVOICE != 0 {
            k.invoice = EMPTY;
        }
        if self.0 & Dims::PRODUCT != 0 {
            k.product = EMPTY;
        }
    }

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }
}

/// A grain without subscription, invoice and product: the group whose
/// optional parts are compared or dropped together ([`Dims`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Coarse {
    partner: u32,
    month: Month,
    program: u32,
    customer: u32,
    currency: Currency,
}

impl Key {
    /// The key as two integers that order as the key does (field by field,
    /// in the order declared): a sort of millions of keys compares these,
    /// two comparisons where the fields took up to eight.
    fn packed(&self) -> (u128, u128) {
        let w = |a: u32, b: u32, c: u32, d: u32| {
            (a as u128) << 96 | (b as u128) << 64 | (c as u128) << 32 | d as u128
        };
        // A month's number, moved so that unsigned order is signed order.
        let month = (self.month.0 as u32) ^ (1 << 31);
        (
            w(self.partner, month, self.program, self.customer),
            w(
                self.subscription,
                self.invoice,
                self.product,
                self.currency.ordinal(),
            ),
        )
    }

    fn coarse(&self) -> Coarse {
        Coarse {
            partner: self.partner,
            month: self.month,
            program: self.program,
            customer: self.customer,
            currency: self.currency,
        }
    }
}

/// The IDs of a grain as first seen (ids into [`Strings`]).
#[derive(Clone, Copy, Debug, Default)]
struct Shown {
    partner: u32,
    customer: u32,
    subscription: u32,
}

/// A small sorted set of (normalised) rates: one or two per grain, the
/// first held inline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Rates(SmallVec<[Decimal; 1]>);

impl Rates {
    fn insert(&mut self, r: Decimal) {
        if let Err(i) = self.0.binary_search(&r) {
            self.0.insert(i, r);
        }
    }

    fn extend(&mut self, o: Rates) {
        for r in o.0 {
            self.insert(r);
        }
    }

    fn is_subset(&self, o: &Rates) -> bool {
        self.0.iter().all(|r| o.0.binary_search(r).is_ok())
    }
}

#[derive(Clone, Debug, Default)]
struct Expected {
    amount: Decimal,
    rates: Rates,
    /// Lines of this run's `ledger.csv` (usually one or two: held inline).
    lines: SmallVec<[u64; 2]>,
    shown: Shown,
    /// What of it was issued in closed periods (`tieout --history`); boxed:
    /// a grain of the run alone pays one pointer for it.
    issued: Option<Box<IssuedPart>>,
}

/// The issued accruals of a grain.
#[derive(Clone, Debug, Default)]
struct IssuedPart {
    /// (index into [`TieOut::sources`], source line).
    lines: Vec<(u32, u64)>,
    /// The issued amount per issued version (index into [`TieOut::closes`]).
    by_close: Vec<(u32, Decimal)>,
    /// The grain's amount from this run's ledger.
    run_amount: Decimal,
}

impl IssuedPart {
    fn add(&mut self, close: u32, amount: Decimal) -> Result<(), Fatal> {
        match self.by_close.iter_mut().find(|(c, _)| *c == close) {
            Some((_, sum)) => *sum = add_checked(*sum, amount, || "issued amount".into())?,
            None => self.by_close.push((close, amount)),
        }
        Ok(())
    }
}

impl Expected {
    /// Adds an amount of this run's ledger.
    fn add_run(&mut self, amount: Decimal) -> Result<(), Fatal> {
        let what = || "expected amount".to_string();
        self.amount = add_checked(self.amount, amount, what)?;
        if let Some(i) = &mut self.issued {
            i.run_amount = add_checked(i.run_amount, amount, what)?;
        }
        Ok(())
    }

    /// Adds an issued amount of `close`, at `source`:`line`.
    fn add_issued(
        &mut self,
        close: u32,
        source: u32,
        line: u64,
        amount: Decimal,
    ) -> Result<(), Fatal> {
        // Everything summed before the first issued accrual is this run's.
        let run = self.amount;
        self.amount = add_checked(self.amount, amount, || "expected amount".into())?;
        let i = self.issued.get_or_insert_with(|| {
            Box::new(IssuedPart {
                run_amount: run,
                ..IssuedPart::default()
            })
        });
        i.lines.push((source, line));
        i.add(close, amount)
    }

    /// Adds `other` (the same grain) in.
    fn merge(&mut self, other: Expected) -> Result<(), Fatal> {
        let what = || "expected amount".to_string();
        let run = |e: &Expected| match &e.issued {
            Some(i) => i.run_amount,
            None => e.amount,
        };
        if self.issued.is_some() || other.issued.is_some() {
            let run_amount = add_checked(run(self), run(&other), what)?;
            let i = self.issued.get_or_insert_with(Box::default);
            i.run_amount = run_amount;
            if let Some(o) = other.issued {
                i.lines.extend(o.lines);
                for (c, d) in o.by_close {
                    i.add(c, d)?;
                }
            }
        }
        self.amount = add_checked(self.amount, other.amount, what)?;
        self.rates.extend(other.rates);
        self.lines.extend(other.lines);
        Ok(())
    }

    /// The issued accruals' references.
    fn issued_lines(&self) -> &[(u32, u64)] {
        self.issued.as_ref().map_or(&[], |i| &i.lines)
    }
}

#[derive(Clone, Debug, Default)]
struct Paid {
    amount: Decimal,
    rates: Rates,
    /// (earnings file, line): usually one, held inline.
    rows: SmallVec<[(u32, u64); 1]>,
    shown: Shown,
    partner_name: u32,
    customer_name: u32,
    /// programName / lever of the first row (named when no program maps it).
    labels: u32,
}

impl Paid {
    /// Adds `other` (the same grain, or one regrouped with it) in.
    fn merge(&mut self, other: Paid) -> Result<(), Fatal> {
        self.amount = add_checked(self.amount, other.amount, || "paid amount".into())?;
        self.rates.extend(other.rates);
        self.rows.extend(other.rows);
        Ok(())
    }
}

/// An adjustment group: partner, month, currency, program (or ""), reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct AdjKey {
    partner: u32,
    month: Month,
    program: u32,
    currency: Currency,
    reason: u32,
}

/// A not-eligible reason seen for a customer: how often, one example.
#[derive(Clone, Debug, Default)]
struct Miss {
    count: u64,
    detail: String,
    source: String,
}

/// A cached mapping of earnings labels (see [`TieOut::labels_of`]).
struct LabelEntry {
    text: [Box<str>; 4],
    program: u32,
    labels: u32,
}

impl LabelEntry {
    fn is(&self, text: &[&str; 4]) -> bool {
        self.text.iter().zip(text).all(|(a, b)| **a == **b)
    }
}

/// Where the spelling a partner's ID is shown in comes from, the first
/// preferred: the run's own (its ledger: as its statements spell it), then
/// a closed period's issued accruals, then the earnings export. Among
/// spellings of one kind, the first read wins.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Spelling {
    Run,
    Issued,
    Earnings,
}

/// Notes `shown` (an id into [`Strings`]) as a spelling of the partner
/// `key` from `from`: kept if no spelling preferred to it is known (see
/// [`Spelling`]).
fn note_spelling(map: &mut FastMap<u32, (Spelling, u32)>, key: u32, from: Spelling, shown: u32) {
    match map.entry(key) {
        Entry::Vacant(v) => {
            v.insert((from, shown));
        }
        Entry::Occupied(mut o) => {
            if from < o.get().0 {
                *o.get_mut() = (from, shown);
            }
        }
    }
}

/// The accumulator.
pub struct TieOut<'r> {
    rules: &'r Rules,
    settings: TieSettings,
    /// The explanation of a grain of this run's lines paid within the
    /// tolerance, not to the cent (see [`PAID_AS_EXPECTED`]).
    paid_within: String,
    strings: Strings,
    expected: FastMap<Key, Expected>,
    /// Grains taken from another tie-out ([`TieOut::add_accruals_of`]) while
    /// `expected` was empty, or a ledger side's accruals as read
    /// ([`TieOut::for_ledger`]), in that order: they come before every entry
    /// of `expected` with the same key, and a grain may have several entries,
    /// merged in order. Kept as a list, not put in the map: [`TieOut::finish`]
    /// sorts and merges instead of hashing each grain again.
    taken: Vec<(Key, Expected)>,
    /// [`TieOut::for_ledger`]: the run's accruals go to `taken` as they come
    /// (appended, not looked up in a table of every grain), each folded
    /// into the entry of a recent accrual of the same grain where this
    /// small table has it; the rest are merged in [`TieOut::finish`].
    recent: Option<Recent>,
    /// The earnings' grains as added: appended, each folded into the entry
    /// of a recent earning of the same grain where `paid_recent` has it (as
    /// `recent` does for a ledger side); the rest are merged in
    /// [`TieOut::finish`], in order.
    paid_rows: Vec<(Key, Paid)>,
    paid_recent: Recent,
    /// The earnings' grains as one map: only while [`TieOut::finish`]
    /// regroups them.
    paid: FastMap<Key, Paid>,
    adjustments: FastMap<AdjKey, Paid>,
    /// (customer, subscription or "", month) -> (reason, miss) in first-seen order.
    not_eligible: FastMap<(u32, u32, Month), Vec<(u32, Miss)>>,
    /// Customers that some earning names (the only not-eligible rows kept).
    earning_customers: FastSet<u32>,
    /// Partner (normalised) -> name, from the run's summary.
    partner_names: FastMap<u32, u32>,
    /// Partner (normalised) -> the one spelling of its ID every row, file
    /// and total of it shows, and where that spelling comes from (see
    /// [`Spelling`]): IDs are compared case-insensitively, so `P-A` in the
    /// run and `p-a` in the export are one partner, shown one way.
    partner_shown: FastMap<u32, (Spelling, u32)>,
    /// Earnings labels (programName, lever, engagementName, partnerAssociation)
    /// as read -> (program or "", the labels as explanations name them): a
    /// few distinct labels, looked up by their text without interning it.
    label_cache: HashTable<LabelEntry>,
    earnings_rows: u64,
    /// The optional parts of the grain some earning (not an adjustment)
    /// has: a part no earning has is compared nowhere.
    earnings_parts: Dims,
    /// The first and last transaction month of the earnings read.
    earnings_months: Option<(Month, Month)>,
    /// Issued versions expected amounts come from: (period, version).
    closes: Vec<(u32, u32)>,
    /// Billing files of issued accruals: (index into `closes`, file).
    sources: Vec<(u32, u32)>,
    source_index: FastMap<(u32, u32), u32>,
}

/// One row of `tieout.csv`. While rows stream ([`TieOut::finish_with`]) the
/// IDs, names, rates and line lists borrow from the tie-out, so a row costs
/// few allocations; [`TieRow::into_owned`] keeps one.
#[derive(Clone, Debug, Serialize)]
pub struct TieRow<'a> {
    pub id: String,
    pub class: Class,
    /// A short code: `not-yet-due`, `overdue`, `no-designation`, ...; empty
    /// where the class says it all.
    pub reason: Cow<'a, str>,
    pub partner_id: Cow<'a, str>,
    pub partner_name: Cow<'a, str>,
    pub program_id: Cow<'a, str>,
    pub customer_id: Cow<'a, str>,
    pub customer_name: Cow<'a, str>,
    pub subscription_id: Cow<'a, str>,
    /// The grain's invoice number and product; empty where the grain is
    /// compared without them (see the module documentation).
    pub invoice_number: Cow<'a, str>,
    pub product_id: Cow<'a, str>,
    pub month: Month,
    pub currency: Currency,
    /// Expected: the grain's exact sum, rounded to the currency's minor unit
    /// with the rules' rounding (per grain, which is finer than a statement
    /// line: a sum of grains can differ from the statement's by rounding).
    pub expected: Decimal,
    pub paid: Decimal,
    /// paid - expected.
    pub difference: Decimal,
    /// porledger's rates (fractions), and Microsoft's `earningRate` (as fractions).
    pub porledger_rates: Cow<'a, [Decimal]>,
    pub microsoft_rates: Cow<'a, [Decimal]>,
    /// When Microsoft pays an expected earning (expected-not-paid).
    pub due: Option<NaiveDate>,
    pub explanation: Cow<'a, str>,
    /// Lines of `ledger.csv` behind the expected amount, sorted.
    pub ledger_lines: Cow<'a, [u64]>,
    /// Issued accruals of the history behind the expected amount: (index
    /// into [`Report::issued_sources`], source line), sorted.
    pub issued_lines: Vec<(u32, u64)>,
    /// Earnings rows behind the paid amount: (file index, line), sorted.
    pub earnings_rows: Cow<'a, [(u32, u64)]>,
}

impl TieRow<'static> {
    /// The place of a row that could not be classified (its batch fails
    /// with the error; the row is never written): no IDs, no amounts.
    pub(crate) fn unclassified(month: Month, currency: Currency) -> TieRow<'static> {
        TieRow {
            id: String::new(),
            class: Class::Matched,
            reason: Cow::Borrowed(""),
            partner_id: Cow::Borrowed(""),
            partner_name: Cow::Borrowed(""),
            program_id: Cow::Borrowed(""),
            customer_id: Cow::Borrowed(""),
            customer_name: Cow::Borrowed(""),
            subscription_id: Cow::Borrowed(""),
            invoice_number: Cow::Borrowed(""),
            product_id: Cow::Borrowed(""),
            month,
            currency,
            expected: Decimal::ZERO,
            paid: Decimal::ZERO,
            difference: Decimal::ZERO,
            porledger_rates: Cow::Borrowed(&[]),
            microsoft_rates: Cow::Borrowed(&[]),
            due: None,
            explanation: Cow::Borrowed(""),
            ledger_lines: Cow::Borrowed(&[]),
            issued_lines: Vec::new(),
            earnings_rows: Cow::Borrowed(&[]),
        }
    }
}

impl TieRow<'_> {
    /// The row, owning everything it shows.
    pub fn into_owned(self) -> TieRow<'static> {
        fn own<T: ToOwned + ?Sized>(c: Cow<'_, T>) -> Cow<'static, T> {
            Cow::Owned(c.into_owned())
        }
        TieRow {
            id: self.id,
            class: self.class,
            reason: own(self.reason),
            partner_id: own(self.partner_id),
            partner_name: own(self.partner_name),
            program_id: own(self.program_id),
            customer_id: own(self.customer_id),
            customer_name: own(self.customer_name),
            subscription_id: own(self.subscription_id),
            invoice_number: own(self.invoice_number),
            product_id: own(self.product_id),
            month: self.month,
            currency: self.currency,
            expected: self.expected,
            paid: self.paid,
            difference: self.difference,
            porledger_rates: own(self.porledger_rates),
            microsoft_rates: own(self.microsoft_rates),
            due: self.due,
            explanation: own(self.explanation),
            ledger_lines: own(self.ledger_lines),
            issued_lines: self.issued_lines,
            earnings_rows: own(self.earnings_rows),
        }
    }

    /// The order of differences on a partner's page: by currency (in the
    /// order of its totals), then the largest first within the currency,
    /// the row id breaking ties. Amounts of two currencies are never
    /// compared: 100,000 VND is not more than 5,000.00 EUR.
    pub fn by_difference(a: &TieRow<'_>, b: &TieRow<'_>) -> std::cmp::Ordering {
        a.currency
            .cmp(&b.currency)
            .then_with(|| b.difference.abs().cmp(&a.difference.abs()))
            .then_with(|| a.id.cmp(&b.id))
    }

    /// Sorts `rows` [`TieRow::by_difference`] and keeps the `n` largest of
    /// each currency.
    pub fn keep_largest(rows: &mut Vec<TieRow<'_>>, n: usize) {
        rows.sort_by(TieRow::by_difference);
        let mut run: Option<(Currency, usize)> = None;
        rows.retain(|r| {
            let k = match &mut run {
                Some((c, k)) if *c == r.currency => {
                    *k += 1;
                    *k
                }
                _ => {
                    run = Some((r.currency, 1));
                    1
                }
            };
            k <= n
        });
    }

    /// Whether this row is a difference someone must look at (exit code 1).
    pub fn is_difference(&self) -> bool {
        is_difference(self.class, self.reason == NOT_YET_DUE)
    }
}

/// The reason code of an expected earning Microsoft does not owe yet.
const NOT_YET_DUE: &str = "not-yet-due";

/// The explanation of a grain paid to the cent as expected from this run's
/// lines. Its amounts, lines and rows are in the row's other columns, and
/// most rows of a tie-out are matched, so it is kept short (as is
/// [`TieOut::paid_within`]).
const PAID_AS_EXPECTED: &str = "Microsoft paid exactly what porledger expected.";

/// Whether a row of `class` is a difference someone must look at: not a
/// match, not an adjustment, not an earning that is not yet due.
fn is_difference(class: Class, not_yet_due: bool) -> bool {
    match class {
        Class::Matched | Class::Adjustment => false,
        Class::ExpectedNotPaid => !not_yet_due,
        _ => true,
    }
}

/// Sums of one partner, program, month and currency (or coarser).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub expected: Decimal,
    pub paid: Decimal,
    pub adjustments: Decimal,
    /// paid + adjustments - expected.
    pub difference: Decimal,
    pub rows: u64,
    pub differences: u64,
    /// Rows `expected-not-paid` that are not yet due (not differences, but
    /// part of `difference`), and what porledger expects of them.
    pub not_yet_due: u64,
    pub not_yet_due_amount: Decimal,
}

/// A [`Totals`] while rows are counted: exact sums of any number of terms
/// ([`ExactSum`]), whatever their scales, each converted to a decimal once
/// ([`TotalSums::into_totals`]), as a run's statement sums are.
#[derive(Clone, Debug, Default)]
struct TotalSums {
    expected: ExactSum,
    paid: ExactSum,
    adjustments: ExactSum,
    difference: ExactSum,
    not_yet_due_amount: ExactSum,
    rows: u64,
    differences: u64,
    not_yet_due: u64,
}

impl TotalSums {
    /// Counts a row with verdict `v`.
    fn add(&mut self, v: &Verdict) {
        if let Case::Adjustment(_) = v.case {
            self.adjustments.add(&ExactSum::of(v.paid));
        } else {
            self.expected.add(&ExactSum::of(v.expected));
            self.paid.add(&ExactSum::of(v.paid));
        }
        self.difference.add(&ExactSum::of(v.difference));
        if v.case == Case::NotYetDue {
            self.not_yet_due += 1;
            self.not_yet_due_amount.add(&ExactSum::of(v.expected));
        }
        self.rows += 1;
        self.differences += v.case.is_difference() as u64;
    }

    /// Adds the sums and counts of `o` (of the same group) in.
    fn merge(&mut self, o: &TotalSums) {
        self.expected.add(&o.expected);
        self.paid.add(&o.paid);
        self.adjustments.add(&o.adjustments);
        self.difference.add(&o.difference);
        self.not_yet_due_amount.add(&o.not_yet_due_amount);
        self.rows += o.rows;
        self.differences += o.differences;
        self.not_yet_due += o.not_yet_due;
    }

    /// The totals, each sum written canonically (trailing zeros dropped, as
    /// every total of the report is), or an error naming the partner and
    /// currency when a sum cannot be shown as a decimal.
    fn into_totals(self, partner_id: &str, currency: Currency) -> Result<Totals, Fatal> {
        let shown = |s: &ExactSum| {
            s.to_decimal()
                .map(|d| d.normalize())
                .map_err(|e| Fatal::Overflow {
                    what: format!("tie-out totals of partner {partner_id} in {currency}"),
                    cause: e.to_string(),
                })
        };
        Ok(Totals {
            expected: shown(&self.expected)?,
            paid: shown(&self.paid)?,
            adjustments: shown(&self.adjustments)?,
            difference: shown(&self.difference)?,
            rows: self.rows,
            differences: self.differences,
            not_yet_due: self.not_yet_due,
            not_yet_due_amount: shown(&self.not_yet_due_amount)?,
        })
    }
}

/// The result.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// The rows ([`TieOut::finish`]; empty after [`TieOut::finish_with`],
    /// where everything else is final before the first row is handed over).
    pub rows: Vec<TieRow<'static>>,
    /// How many rows the report has.
    pub row_count: u64,
    /// Per partner (display ID), program, month, currency.
    pub totals: BTreeMap<(String, String, Month, Currency), Totals>,
    /// Per partner (display ID) and currency.
    pub partner_totals: BTreeMap<String, BTreeMap<Currency, Totals>>,
    /// Per class: rows.
    pub classes: BTreeMap<Class, u64>,
    /// Earnings rows in grains with an accrual / without / adjustments.
    pub earnings_matched: u64,
    pub earnings_unmatched: u64,
    pub earnings_adjustments: u64,
    /// Rows with [`TieRow::is_difference`].
    pub differences: u64,
    /// Partner display ID -> name.
    pub partner_names: BTreeMap<String, String>,
    /// The issued versions and billing files of [`TieRow::issued_lines`],
    /// `PERIOD vVERSION FILE`, sorted (an index sorts as its text).
    pub issued_sources: Vec<String>,
}

/// Rows classified and handed on at a time by [`TieOut::finish_with`].
pub const BATCH: usize = 1 << 15;

/// The ID of the `n`th row (from 1): `T000012`, as `format!("T{n:06}")`
/// writes it, without the formatting machinery (one per row of millions).
fn row_id(n: usize) -> String {
    // One allocation: the digits written after the `T`, then padded in place.
    let mut id = String::with_capacity(24);
    id.push('T');
    crate::csv_text::push_uint_str(&mut id, n as u64);
    let digits = id.len() - 1;
    if digits < 6 {
        id.insert_str(1, &"000000"[digits..]);
    }
    id
}

fn percent(r: Decimal) -> String {
    let p = (r * Decimal::ONE_HUNDRED).normalize();
    format!("{p} %")
}

fn percents(rs: &[Decimal]) -> String {
    rs.iter()
        .map(|r| percent(*r))
        .collect::<Vec<_>>()
        .join(", ")
}

fn add_checked(a: Decimal, b: Decimal, what: impl Fn() -> String) -> Result<Decimal, Fatal> {
    a.exact_add(b).ok_or_else(|| Fatal::Overflow {
        what: what(),
        cause: crate::money::INEXACT_SUM.into(),
    })
}

/// Where a row of the report comes from (see [`TieOut::finish`]).
#[derive(Clone, Copy)]
enum Source {
    Grain(Key),
    Adjustment(AdjKey),
}

/// Each grain's entries (either side may be missing), moved out of the
/// two sides' lists into the report's order ([`TieOut::finish_in`]); none
/// for an adjustment. One side at a time: each list is freed when moved.
struct Gathered {
    expected: Vec<Option<Expected>>,
    paid: Vec<Option<Paid>>,
}

impl Gathered {
    /// The entries of the report's `i`-th row.
    fn at(&self, i: usize) -> (Option<&Expected>, Option<&Paid>) {
        (self.expected[i].as_ref(), self.paid[i].as_ref())
    }
}

/// A group of the report's totals: partner (display ID), program, month
/// and currency (ids into [`Strings`]).
type TotalsKey = (u32, u32, Month, Currency);

/// What one batch of the report's rows counts ([`TieOut::count_into`]):
/// the groups' sums in the order the rows reach them (a group may come
/// more than once).
#[derive(Default)]
struct Counted {
    rows: u64,
    matched: u64,
    unmatched: u64,
    adjustments: u64,
    differences: u64,
    classes: BTreeMap<Class, u64>,
    totals: Vec<(TotalsKey, TotalSums)>,
    partner_totals: Vec<(u32, BTreeMap<Currency, TotalSums>)>,
    /// (partner, fallback name) of each partner's first row in the batch.
    names: Vec<(u32, u32)>,
}

/// No entry on this side of a grain (an index into neither list).
const NONE: u32 = u32::MAX;

/// The order of the report's rows (see [`TieOut::finish`]): partner,
/// month, adjustment, program, customer, subscription, invoice, product,
/// currency, reason.
type SortKey = (u32, Month, bool, u32, u32, u32, u32, u32, Currency, u32);

/// `k` as three integers that order as `k` does (field by field): a sort
/// of millions of rows compares these, three comparisons where the fields
/// took up to ten.
fn packed_sort_key(k: &SortKey) -> (u128, u128, u64) {
    let &(
        partner,
        month,
        adjustment,
        program,
        customer,
        subscription,
        invoice,
        product,
        currency,
        reason,
    ) = k;
    // The month moved so that unsigned order is signed order (33 bits), then
    // whether the row is an adjustment.
    let month = ((month.0 as i64 - i32::MIN as i64) as u128) << 1 | adjustment as u128;
    (
        (partner as u128) << 65 | month << 32 | program as u128,
        (customer as u128) << 96
            | (subscription as u128) << 64
            | (invoice as u128) << 32
            | product as u128,
        (currency.ordinal() as u64) << 32 | reason as u64,
    )
}

/// An amount and its currency in an explanation (`12.50 EUR`).
struct Money(Decimal, Currency);

impl std::fmt::Display for Money {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", Exact::of(self.0, self.1), self.1)
    }
}

/// A count and a noun, plural unless one (`3 earnings rows`).
struct Plural(usize, &'static str);

impl std::fmt::Display for Plural {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = if self.0 == 1 { "" } else { "s" };
        write!(f, "{} {}{s}", self.0, self.1)
    }
}

/// How a row's class was reached (see [`TieOut::verdict`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    /// Both sides, within the tolerance.
    Within,
    RateDiffers,
    Underpaid,
    Overpaid,
    /// Expected only, within the tolerance of nothing.
    ExpectedWithin,
    NotYetDue,
    Overdue,
    /// Paid only, within the tolerance of nothing.
    PaidWithin,
    PaidNotExpected,
    /// An adjustment of this many earnings rows.
    Adjustment(u64),
    Nothing,
}

impl Case {
    fn class(self) -> Class {
        match self {
            Case::Within | Case::ExpectedWithin | Case::PaidWithin | Case::Nothing => {
                Class::Matched
            }
            Case::RateDiffers => Class::RateDiffers,
            Case::Underpaid => Class::Underpaid,
            Case::Overpaid => Class::Overpaid,
            Case::NotYetDue | Case::Overdue => Class::ExpectedNotPaid,
            Case::PaidNotExpected => Class::PaidNotExpected,
            Case::Adjustment(_) => Class::Adjustment,
        }
    }

    /// [`TieRow::is_difference`] of its row.
    fn is_difference(self) -> bool {
        is_difference(self.class(), self == Case::NotYetDue)
    }
}

/// A row's class and amounts, before any text: what the report counts.
#[derive(Clone, Copy, Debug)]
struct Verdict {
    case: Case,
    expected: Decimal,
    paid: Decimal,
    difference: Decimal,
    due: Option<NaiveDate>,
    /// Earnings rows it counts as matched / unmatched.
    matched: u64,
    unmatched: u64,
}

/// Who porledger credits per customer and month: (partner as shown, program).
type Credited = FastMap<(u32, Month), Vec<(u32, u32)>>;

/// A partner, program, customer and month (normalised ids): the grains of
/// one customer's billing lines of a month that pay one partner under one
/// program, whatever their subscription, invoice, product or currency.
type Group = (u32, u32, u32, Month);

fn group_of(k: &Key) -> Group {
    (k.partner, k.program, k.customer, k.month)
}

/// Per group with a grain Microsoft paid and porledger did not expect: the
/// grains of the group porledger did expect (their keys, and their
/// subscriptions as shown).
type Elsewhere = FastMap<Group, Vec<(Key, u32)>>;

/// The most grains a `paid-not-expected` row names as where porledger
/// expected its earnings instead.
const ELSEWHERE_ROWS: usize = 5;

impl<'r> TieOut<'r> {
    pub fn new(rules: &'r Rules, settings: TieSettings) -> TieOut<'r> {
        TieOut {
            rules,
            paid_within: format!(
                "Microsoft paid what porledger expected, within the tolerance of {}.",
                settings.tolerance
            ),
            settings,
            strings: Strings::new(),
            expected: FastMap::default(),
            taken: Vec::new(),
            recent: None,
            paid_rows: Vec::new(),
            paid_recent: Recent::new(RECENT_SLOTS),
            paid: FastMap::default(),
            adjustments: FastMap::default(),
            not_eligible: FastMap::default(),
            earning_customers: FastSet::default(),
            partner_names: FastMap::default(),
            partner_shown: FastMap::default(),
            label_cache: HashTable::new(),
            earnings_rows: 0,
            earnings_parts: Dims::default(),
            earnings_months: None,
            closes: Vec::new(),
            sources: Vec::new(),
            source_index: FastMap::default(),
        }
    }

    /// A tie-out that only takes this run's ledger rows, to be handed to
    /// [`TieOut::add_accruals_of`]: they are kept as a list in the order
    /// read, a grain's rows folded where they come close together (see
    /// `recent`). Grains are the same as with [`TieOut::new`]; reading
    /// costs appending instead of a look-up in a table of every grain.
    pub fn for_ledger(rules: &'r Rules, settings: TieSettings) -> TieOut<'r> {
        TieOut::with_recent(rules, settings, RECENT_SLOTS)
    }

    /// [`TieOut::for_ledger`] with `slots` slots of recent grains (for the
    /// ledger's rows and the earnings').
    fn with_recent(rules: &'r Rules, settings: TieSettings, slots: usize) -> TieOut<'r> {
        TieOut {
            recent: Some(Recent::new(slots)),
            ..TieOut::with_paid_slots(rules, settings, slots)
        }
    }

    /// [`TieOut::new`] with `slots` slots of recent earnings' grains.
    fn with_paid_slots(rules: &'r Rules, settings: TieSettings, slots: usize) -> TieOut<'r> {
        TieOut {
            paid_recent: Recent::new(slots),
            ..TieOut::new(rules, settings)
        }
    }

    /// Room for about `rows` earnings rows (a hint, see
    /// [`crate::ingest::rows_hint`]): their grains' list is allocated once,
    /// not grown by copies (each copy of millions of grains also loses the
    /// huge pages the list was given).
    pub fn reserve_earnings(&mut self, rows: usize) {
        let _ = self.paid_rows.try_reserve(rows);
    }

    /// Room for about `rows` ledger rows, for a ledger side
    /// ([`TieOut::for_ledger`]), as [`TieOut::reserve_earnings`].
    pub fn reserve_accruals(&mut self, rows: usize) {
        let _ = self.taken.try_reserve(rows);
    }

    /// The first and last transaction month of the earnings added so far.
    pub fn earnings_months(&self) -> Option<(Month, Month)> {
        self.earnings_months
    }

    /// The index of an issued version in `closes`.
    fn close_idx(&mut self, period: &str, version: u32) -> Result<u32, Fatal> {
        let p = self.strings.id(period)?;
        if let Some(i) = self.closes.iter().position(|&c| c == (p, version)) {
            return Ok(i as u32);
        }
        self.closes.push((p, version));
        Ok(self.closes.len() as u32 - 1)
    }

    /// The index of a billing file of an issued version in `sources`.
    fn source_idx(&mut self, close: u32, file: &str) -> Result<u32, Fatal> {
        let f = self.strings.id(file)?;
        if let Some(&i) = self.source_index.get(&(close, f)) {
            return Ok(i);
        }
        let i = u32::try_from(self.sources.len()).map_err(|_| Fatal::Overflow {
            what: "tie-out issued billing files".into(),
            cause: "more than 4,294,967,295".into(),
        })?;
        self.sources.push((close, f));
        self.source_index.insert((close, f), i);
        Ok(i)
    }

    /// A partner's name (from the run's summary).
    pub fn add_partner_name(&mut self, partner_id: &str, name: &str) -> Result<(), Fatal> {
        if !name.is_empty() {
            let k = self.strings.key_id(partner_id)?;
            if !self.partner_names.contains_key(&k) {
                let n = self.strings.id(name)?;
                self.partner_names.insert(k, n);
            }
        }
        Ok(())
    }

    /// Whether `program` is a usage program of the rules (its accruals are
    /// usage rows, not billing lines).
    fn is_usage_program(&self, program: &str) -> bool {
        self.rules
            .programs
            .iter()
            .any(|p| p.id == program && p.basis() == crate::config::Basis::Usage)
    }

    /// The porledger program an earning pays for, by the rules' `earnings`
    /// tables (first program in file order), or `None`.
    pub fn program_of(&self, labels: &EarningsLabels<'_>) -> Option<&'r str> {
        self.rules
            .programs
            .iter()
            .find(|p| p.earnings.iter().any(|m: &EarningsMatch| m.matches(labels)))
            .map(|p| p.id.as_str())
    }

    pub fn add_accrual(&mut self, a: &Accrual<'_>) -> Result<(), Fatal> {
        // The issued version and billing file: (close, source).
        let issued = match a.origin {
            Origin::Ledger(_) => None,
            Origin::Issued {
                period,
                version,
                source_file,
                ..
            } => {
                let close = self.close_idx(period, version)?;
                Some((close, self.source_idx(close, source_file)?))
            }
        };
        let s = &mut self.strings;
        let (partner, shown_partner) = s.key_and_shown(a.partner_id)?;
        let (customer, shown_customer) = s.key_and_shown(a.customer_id)?;
        let (subscription, shown_subscription) = s.key_and_shown(a.subscription_id)?;
        let key = Key {
            partner,
            month: a.month,
            program: s.id(a.program_id)?,
            customer,
            subscription,
            invoice: s.upper_id(a.invoice_number)?,
            product: s.upper_id(a.product_id)?,
            currency: a.currency,
        };
        let fresh = || Expected {
            shown: Shown {
                partner: shown_partner,
                customer: shown_customer,
                subscription: shown_subscription,
            },
            ..Expected::default()
        };
        let (e, new) = match (&mut self.recent, a.origin) {
            (Some(recent), Origin::Ledger(_)) => {
                use std::hash::BuildHasher;
                let h = s.hasher.hash_one(key);
                recent.entry(&mut self.taken, key, h, || Ok(fresh()))?
            }
            _ => match self.expected.entry(key) {
                Entry::Occupied(o) => (o.into_mut(), false),
                Entry::Vacant(v) => (v.insert(fresh()), true),
            },
        };
        // A partner's first row is always a new grain's (the partner is part
        // of the grain): its spelling is noted there, not looked up per row.
        if new {
            let from = match a.origin {
                Origin::Ledger(_) => Spelling::Run,
                Origin::Issued { .. } => Spelling::Issued,
            };
            note_spelling(&mut self.partner_shown, partner, from, shown_partner);
        }
        let named = |r: Result<(), Fatal>| {
            r.map_err(|_| Fatal::Overflow {
                what: format!(
                    "expected amount of partner {}, customer {}",
                    a.partner_id, a.customer_id
                ),
                cause: crate::money::INEXACT_SUM.into(),
            })
        };
        e.rates.insert(a.rate.normalize());
        match a.origin {
            Origin::Ledger(line) => {
                named(e.add_run(a.amount))?;
                e.lines.push(line);
            }
            Origin::Issued { source_line, .. } => {
                let (close, source) = issued.unwrap_or_default();
                named(e.add_issued(close, source, source_line, a.amount))?;
            }
        }
        Ok(())
    }

    /// Takes in the accruals of `other` (a tie-out fed only with ledger rows,
    /// read on another thread): the same as having added them here. Call it
    /// after the earnings are read: a part of the grain no earning has is
    /// dropped from the keys as they are taken in (one pass, instead of
    /// regrouping every grain in [`TieOut::finish`]).
    pub fn add_accruals_of(&mut self, other: TieOut<'_>) -> Result<(), Fatal> {
        let absent = self.absent_parts();
        let mut map = Vec::with_capacity(other.strings.spans.len());
        for t in other.strings.texts() {
            map.push(self.strings.id(t)?);
        }
        let mut close_map = Vec::with_capacity(other.closes.len());
        for &(p, v) in &other.closes {
            close_map.push(self.close_idx(other.strings.str(p), v)?);
        }
        let mut source_map = Vec::with_capacity(other.sources.len());
        for &(c, f) in &other.sources {
            source_map.push(self.source_idx(close_map[c as usize], other.strings.str(f))?);
        }
        let m = |i: u32| map[i as usize];
        // The other side's spellings count as read after this one's.
        for (&k, &(from, shown)) in &other.partner_shown {
            note_spelling(&mut self.partner_shown, m(k), from, m(shown));
        }
        let remap = |k: &mut Key, e: &mut Expected| {
            *k = Key {
                partner: m(k.partner),
                program: m(k.program),
                customer: m(k.customer),
                subscription: m(k.subscription),
                invoice: m(k.invoice),
                product: m(k.product),
                ..*k
            };
            absent.clear(k);
            e.shown = Shown {
                partner: m(e.shown.partner),
                customer: m(e.shown.customer),
                subscription: m(e.shown.subscription),
            };
            if let Some(i) = &mut e.issued {
                for (s, _) in &mut i.lines {
                    *s = source_map[*s as usize];
                }
                for (c, _) in &mut i.by_close {
                    *c = close_map[*c as usize];
                }
            }
        };
        if self.expected.is_empty() {
            // Nothing of this tie-out's own to merge into: the grains are
            // re-keyed in place, on the pool, and kept in the order taken.
            let mut entries: Vec<(Key, Expected)> = other.taken;
            entries.extend(other.expected);
            entries.par_iter_mut().for_each(|(k, e)| remap(k, e));
            if self.taken.is_empty() {
                // Moved, not copied (`append` copies every entry).
                self.taken = entries;
            } else {
                self.taken.append(&mut entries);
            }
            return Ok(());
        }
        self.expected.reserve(other.expected.len());
        let entries = other.taken.into_iter().chain(other.expected);
        merge_in_order(
            &mut self.expected,
            entries.map(|(mut key, mut e)| {
                remap(&mut key, &mut e);
                (key, e)
            }),
            Expected::merge,
        )
    }

    /// Moves the grains of `taken` into the map `expected`, each before the
    /// map's entry of the same key (the order they were added in).
    fn fold_taken(&mut self) -> Result<(), Fatal> {
        if self.taken.is_empty() {
            return Ok(());
        }
        // Grown from empty (see `merge_in_order`): how many entries a ledger
        // side kept of a grain does not change the map.
        let taken = std::mem::take(&mut self.taken);
        let rest = std::mem::take(&mut self.expected);
        merge_in_order(
            &mut self.expected,
            taken.into_iter().chain(rest),
            Expected::merge,
        )
    }

    /// Moves the earnings' grains of `paid_rows` into the map `paid`, merged
    /// in order: the map an earning at a time into it would have made.
    fn fold_paid(&mut self) -> Result<(), Fatal> {
        self.paid = FastMap::default();
        merge_in_order(
            &mut self.paid,
            std::mem::take(&mut self.paid_rows),
            Paid::merge,
        )
    }

    /// The parts of the grain (invoice, product) no earning has: compared
    /// nowhere.
    fn absent_parts(&self) -> Dims {
        Dims((Dims::INVOICE | Dims::PRODUCT) & !self.earnings_parts.0)
    }

    /// Whether some earning (not an adjustment) names this customer: only
    /// their not-eligible rows are worth reading.
    pub fn names_customer(&self, customer_id: &str) -> bool {
        self.strings
            .find_key(customer_id)
            .is_some_and(|c| self.earning_customers.contains(&c))
    }

    /// A row of the run's `not-eligible.csv`: the closest reason for an
    /// earning porledger did not expect. Only rows of customers the earnings
    /// name are kept (see [`TieOut::names_customer`]), so call this after
    /// every [`TieOut::add_earning`].
    pub fn add_not_eligible(
        &mut self,
        customer_id: &str,
        subscription_id: &str,
        month: Month,
        reason: &str,
        detail: &str,
        (source_file, source_line): (&str, &str),
    ) -> Result<(), Fatal> {
        let Some(c) = self.strings.find_key(customer_id) else {
            return Ok(());
        };
        if !self.earning_customers.contains(&c) {
            return Ok(());
        }
        let reason = self.strings.id(reason)?;
        // A subscription no grain names is only kept as the customer's "".
        let sub = self.strings.find_key(subscription_id);
        for sub in [sub, Some(EMPTY)].into_iter().flatten() {
            let m = self.not_eligible.entry((c, sub, month)).or_default();
            let i = match m.iter().position(|(r, _)| *r == reason) {
                Some(i) => i,
                None => {
                    m.push((
                        reason,
                        Miss {
                            count: 0,
                            detail: detail.to_string(),
                            source: format!("{source_file}:{source_line}"),
                        },
                    ));
                    m.len() - 1
                }
            };
            m[i].1.count += 1;
        }
        Ok(())
    }

    /// The program (or "") and the labels text of an earning's labels.
    fn labels_of(&mut self, l: &EarningsLabels<'_>) -> Result<(u32, u32), Fatal> {
        use std::hash::BuildHasher;
        let text = [
            l.program_name,
            l.lever,
            l.engagement_name,
            l.partner_association,
        ];
        let h = self.strings.hasher.hash_one(text);
        if let Some(e) = self.label_cache.find(h, |e| e.is(&text)) {
            return Ok((e.program, e.labels));
        }
        let program = self.program_of(l).unwrap_or("");
        let s = &mut self.strings;
        let entry = LabelEntry {
            text: text.map(Box::from),
            program: s.id(program)?,
            labels: s.id(&format!(
                "programName '{}', lever '{}'",
                l.program_name, l.lever
            ))?,
        };
        let v = (entry.program, entry.labels);
        let hasher = self.strings.hasher.clone();
        self.label_cache.insert_unique(h, entry, |e| {
            hasher.hash_one(e.text.each_ref().map(|t| &**t))
        });
        Ok(v)
    }

    pub fn add_earning(&mut self, e: &Earning<'_>) -> Result<(), Fatal> {
        self.earnings_rows += 1;
        self.earnings_months = Some(match self.earnings_months {
            None => (e.month, e.month),
            Some((a, b)) => (a.min(e.month), b.max(e.month)),
        });
        let (program, labels) = self.labels_of(&e.labels)?;
        let what = || {
            format!(
                "earnings of partner {} in {} (customer '{}', {}; adding the row at line {} of \
                 its earnings file)",
                e.participant_id, e.currency, e.customer_id, e.month, e.line
            )
        };
        let s = &mut self.strings;
        if !e.reason_code.is_empty() || e.customer_id.is_empty() {
            let reason = if e.reason_code.is_empty() {
                "(no customer)"
            } else {
                e.reason_code
            };
            let (partner, shown_partner) = s.key_and_shown(e.participant_id)?;
            let k = AdjKey {
                partner,
                month: e.month,
                program,
                currency: e.currency,
                reason: s.id(reason)?,
            };
            let p = match self.adjustments.entry(k) {
                Entry::Occupied(o) => o.into_mut(),
                Entry::Vacant(v) => {
                    note_spelling(
                        &mut self.partner_shown,
                        partner,
                        Spelling::Earnings,
                        shown_partner,
                    );
                    v.insert(Paid {
                        shown: Shown {
                            partner: shown_partner,
                            ..Shown::default()
                        },
                        partner_name: s.id(e.participant_name)?,
                        labels,
                        ..Paid::default()
                    })
                }
            };
            p.amount = add_checked(p.amount, e.amount, what)?;
            p.rows.push((e.file, e.line));
            return Ok(());
        }
        let (partner, shown_partner) = s.key_and_shown(e.participant_id)?;
        let (customer, shown_customer) = s.key_and_shown(e.customer_id)?;
        let (subscription, shown_subscription) = s.key_and_shown(e.subscription_id)?;
        let key = Key {
            partner,
            month: e.month,
            program,
            customer,
            subscription,
            invoice: s.upper_id(e.invoice_number)?,
            product: s.upper_id(e.product_id)?,
            currency: e.currency,
        };
        self.earnings_parts.0 |= Dims::present(&key).0;
        use std::hash::BuildHasher;
        let h = s.hasher.hash_one(key);
        let (p, new) = self.paid_recent.entry(&mut self.paid_rows, key, h, || {
            Ok(Paid {
                shown: Shown {
                    partner: shown_partner,
                    customer: shown_customer,
                    subscription: shown_subscription,
                },
                partner_name: s.id(e.participant_name)?,
                customer_name: s.id(e.customer_name)?,
                labels,
                ..Paid::default()
            })
        })?;
        if new {
            self.earning_customers.insert(key.customer);
            note_spelling(
                &mut self.partner_shown,
                partner,
                Spelling::Earnings,
                shown_partner,
            );
        }
        p.amount = add_checked(p.amount, e.amount, what)?;
        if let Some(r) = e.rate {
            p.rates.insert(r.normalize());
        }
        p.rows.push((e.file, e.line));
        Ok(())
    }

    /// Compares and classifies: the report with every row in it.
    pub fn finish(self) -> Result<Report, Fatal> {
        let mut rows = Vec::new();
        let mut report = self.finish_with(|_, batch, _| {
            rows.extend(batch.drain(..).map(TieRow::into_owned));
            Ok(())
        })?;
        report.rows = rows;
        Ok(report)
    }

    /// Compares and classifies, handing the rows to `sink` in report order,
    /// [`BATCH`] at a time, instead of keeping them: `sink(report, rows,
    /// done)`, where `report` is final from the first call (every row is
    /// counted first, from its verdict, before any row's text is built: a
    /// partner's file can start with its totals and stream its rows) and
    /// `done` names the partners (display IDs) whose every row has now been
    /// handed over. The next batch is classified while `sink` works on one.
    /// The returned report has no rows.
    pub fn finish_with(
        self,
        sink: impl FnMut(&Report, &mut Vec<TieRow<'_>>, Vec<String>) -> Result<(), Fatal> + Send,
    ) -> Result<Report, Fatal> {
        self.finish_in(BATCH, sink)
    }

    /// [`TieOut::finish_with`], `batch` rows at a time.
    fn finish_in(
        mut self,
        batch: usize,
        mut sink: impl FnMut(&Report, &mut Vec<TieRow<'_>>, Vec<String>) -> Result<(), Fatal> + Send,
    ) -> Result<Report, Fatal> {
        // An export without invoice numbers (or products) compares none:
        // they are dropped from every key (accruals taken in by
        // `add_accruals_of` have lost them already).
        let absent = self.absent_parts();
        let loses_part = |k: &Key| {
            let mut c = *k;
            absent.clear(&mut c);
            c != *k
        };
        // (Taken grains lose a part only when earnings came after them.)
        if self.taken.iter().any(|(k, _)| loses_part(k)) {
            self.fold_taken()?;
        }
        if self.expected.keys().any(loses_part) {
            let none = FastMap::default();
            self.expected = collapse(
                std::mem::take(&mut self.expected),
                &none,
                Some(absent),
                |_, _| {},
                Expected::merge,
            )?;
        }
        // Groups where an earning has no subscription, or a row of either
        // side no invoice or product, are compared without it.
        // (missing, present) per group; a part no row of the group has
        // changes nothing, so a group is only regrouped for a part that some
        // of its rows have and some lack.
        let mut coarse: FastMap<Coarse, (Dims, Dims)> = FastMap::default();
        let keys = || {
            self.paid_rows
                .iter()
                .map(|(k, _)| (k, true))
                .chain(self.expected.keys().map(|k| (k, false)))
                .chain(self.taken.iter().map(|(k, _)| (k, false)))
        };
        for (k, paid) in keys() {
            let d = Dims::missing(k, paid).0 & !absent.0;
            if d != 0 {
                coarse.entry(k.coarse()).or_default().0 .0 |= d;
            }
        }
        if !coarse.is_empty() {
            for (k, _) in keys() {
                if let Some((_, present)) = coarse.get_mut(&k.coarse()) {
                    present.0 |= Dims::present(k).0;
                }
            }
        }
        let coarse: FastMap<Coarse, Dims> = coarse
            .into_iter()
            .map(|(c, (missing, present))| (c, Dims(missing.0 & present.0)))
            .filter(|(_, d)| *d != Dims::default())
            .collect();
        if !coarse.is_empty() {
            self.fold_taken()?;
            self.expected = collapse(
                std::mem::take(&mut self.expected),
                &coarse,
                None,
                |e, d| {
                    if d.has(Dims::SUBSCRIPTION) {
                        e.shown.subscription = EMPTY
                    }
                },
                Expected::merge,
            )?;
            self.fold_paid()?;
            self.paid = collapse(
                std::mem::take(&mut self.paid),
                &coarse,
                None,
                |p, d| {
                    if d.has(Dims::SUBSCRIPTION) {
                        p.shown.subscription = EMPTY
                    }
                },
                Paid::merge,
            )?;
            self.paid_rows = std::mem::take(&mut self.paid).into_iter().collect();
        }
        // Each side as a list: the grains taken from the ledger's side first,
        // then the map's (an entry of both merges into the taken one).
        let mut expected: Vec<(Key, Expected)> = std::mem::take(&mut self.taken);
        expected.extend(std::mem::take(&mut self.expected));
        let mut paid: Vec<(Key, Paid)> = std::mem::take(&mut self.paid_rows);
        if expected.len().max(paid.len()) >= NONE as usize {
            return Err(Fatal::Overflow {
                what: "tie-out grains".into(),
                cause: "more than 4,294,967,294 grains on one side".into(),
            });
        }
        // Both sides sorted by key (each on its own thread), then joined in
        // one pass: no table of grains is looked up grain by grain.
        // Each with the IDs shown, so that later steps need not look the
        // entries up again.
        fn by_key<V: Send>(side: &[(Key, V)], shown: fn(&V) -> Shown) -> Vec<(Key, u32, Shown)>
        where
            (Key, V): Sync,
        {
            let mut order: Vec<(Key, u32, Shown)> = side
                .par_iter()
                .enumerate()
                .map(|(i, (k, v))| (*k, i as u32, shown(v)))
                .collect();
            // By key, then by position: the first of equal keys is the base.
            order.par_sort_unstable_by_key(|&(k, i, _)| (k.packed(), i));
            order
        }
        let (e_order, p_order) = rayon::join(
            || by_key(&expected, |e: &Expected| e.shown),
            || by_key(&paid, |p: &Paid| p.shown),
        );
        // The grains: key, expected entry and paid entry (or NONE), and the
        // IDs shown (the expected side's where it has the grain), by key.
        let mut grains: Vec<(Key, u32, u32, Shown)> =
            Vec::with_capacity(e_order.len().max(p_order.len()));
        let (mut i, mut j) = (0, 0);
        while i < e_order.len() || j < p_order.len() {
            let ek = e_order.get(i).map(|x| x.0);
            let pk = p_order.get(j).map(|x| x.0);
            let key = match (ek, pk) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) => a,
                (None, Some(b)) => b,
                (None, None) => break,
            };
            let mut e = NONE;
            let mut shown = None;
            if ek == Some(key) {
                e = e_order[i].1;
                shown = Some(e_order[i].2);
                i += 1;
                // Entries of the same key after the first merge into it.
                while let Some(&(k, later, _)) = e_order.get(i) {
                    if k != key {
                        break;
                    }
                    let other = std::mem::take(&mut expected[later as usize].1);
                    expected[e as usize].1.merge(other)?;
                    i += 1;
                }
            }
            let mut p = NONE;
            if pk == Some(key) {
                p = p_order[j].1;
                shown = shown.or(Some(p_order[j].2));
                j += 1;
                while let Some(&(k, later, _)) = p_order.get(j) {
                    if k != key {
                        break;
                    }
                    let other = std::mem::take(&mut paid[later as usize].1);
                    paid[p as usize].1.merge(other)?;
                    j += 1;
                }
            }
            grains.push((key, e, p, shown.unwrap_or_default()));
        }
        drop((e_order, p_order));
        // Every grain's lines and rows in order, once (after the merges):
        // the rows borrow them.
        expected
            .par_iter_mut()
            .for_each(|(_, e)| e.lines.sort_unstable());
        paid.par_iter_mut()
            .for_each(|(_, p)| p.rows.sort_unstable());
        let mut rows: Vec<&mut [(u32, u64)]> = self
            .adjustments
            .values_mut()
            .map(|p| &mut p.rows[..])
            .collect();
        rows.par_iter_mut().for_each(|r| r.sort_unstable());
        drop(rows);
        // Who porledger credits per customer and month (for paid-not-expected).
        let mut credited: Credited = FastMap::default();
        for &(k, e, _, shown) in &grains {
            if e == NONE {
                continue;
            }
            let who = credited.entry((k.customer, k.month)).or_default();
            let v = (self.partner_id(k.partner, shown.partner), k.program);
            if !who.contains(&v) {
                who.push(v);
            }
        }
        // The order of the rows: partner, month, adjustments last, program,
        // customer and subscription as shown, invoice, product, currency,
        // reason; by text.
        let rank = self.strings.ranks();
        let r = |i: u32| rank[i as usize];
        // A grain sorts by its key and the customer and subscription shown
        // (the expected side's where it has one).
        let mut sources: Vec<(SortKey, Source, (u32, u32))> = grains
            .par_iter()
            .map(|&(k, e, p, shown)| {
                let sk = (
                    r(k.partner),
                    k.month,
                    false,
                    r(k.program),
                    r(shown.customer),
                    r(shown.subscription),
                    r(k.invoice),
                    r(k.product),
                    k.currency,
                    0,
                );
                (sk, Source::Grain(k), (e, p))
            })
            .collect();
        drop(grains);
        for k in self.adjustments.keys() {
            let sk = (
                r(k.partner),
                k.month,
                true,
                r(k.program),
                r(EMPTY),
                r(EMPTY),
                r(EMPTY),
                r(EMPTY),
                k.currency,
                r(k.reason),
            );
            sources.push((sk, Source::Adjustment(*k), (NONE, NONE)));
        }
        // Total order: no two sources share a sort key.
        sources.par_sort_unstable_by_key(|a| packed_sort_key(&a.0));
        drop(rank);
        // Each grain's entries copied into the rows' order, once, on the
        // pool: counting, classifying and writing then read them in sequence.
        fn gather<V: Clone + Send + Sync>(
            sources: &[(SortKey, Source, (u32, u32))],
            pick: fn(&(u32, u32)) -> u32,
            side: &[(Key, V)],
        ) -> Vec<Option<V>> {
            sources
                .par_iter()
                .map(|s| {
                    let i = pick(&s.2);
                    (i != NONE).then(|| side[i as usize].1.clone())
                })
                .collect()
        }
        // One side at a time: each list is freed before the next is gathered.
        let expected_rows = gather(&sources, |p| p.0, &expected);
        drop(expected);
        let paid_rows = gather(&sources, |p| p.1, &paid);
        drop(paid);
        let entries = Gathered {
            expected: expected_rows,
            paid: paid_rows,
        };
        let sources: Vec<(SortKey, Source)> = sources.into_iter().map(|(k, s, _)| (k, s)).collect();
        // The issued billing files by text; a row's lines sort by it.
        let source_text: Vec<String> = self
            .sources
            .iter()
            .map(|&(c, f)| {
                let (p, v) = self.closes[c as usize];
                format!("{} v{v} {}", self.strings.str(p), self.strings.str(f))
            })
            .collect();
        let mut order: Vec<u32> = (0..source_text.len() as u32).collect();
        order.sort_unstable_by(|&a, &b| source_text[a as usize].cmp(&source_text[b as usize]));
        let mut source_rank = vec![0u32; order.len()];
        for (r, &i) in order.iter().enumerate() {
            source_rank[i as usize] = r as u32;
        }
        let mut report = Report {
            issued_sources: order
                .iter()
                .map(|&i| source_text[i as usize].clone())
                .collect(),
            ..Report::default()
        };
        // Every row counted from its verdict first (no text built), a batch
        // at a time: the totals are final before the first row is handed on.
        self.count_into(&mut report, &sources, &entries, batch)?;
        // Where a grain paid but not expected has grains of its partner,
        // program, customer and month that porledger did expect: their rows
        // (for its closest reason). Only groups with such a grain are kept.
        let mut elsewhere: Elsewhere = FastMap::default();
        for (i, (_, s)) in sources.iter().enumerate() {
            if let (Source::Grain(k), (None, Some(_))) = (s, entries.at(i)) {
                elsewhere.entry(group_of(k)).or_default();
            }
        }
        if !elsewhere.is_empty() {
            let found: Vec<(Key, u32)> = sources
                .par_iter()
                .enumerate()
                .filter_map(|(i, (_, s))| match (s, &entries.expected[i]) {
                    (Source::Grain(k), Some(e)) if elsewhere.contains_key(&group_of(k)) => {
                        Some((*k, e.shown.subscription))
                    }
                    _ => None,
                })
                .collect();
            for (k, sub) in found {
                if let Some(rows) = elsewhere.get_mut(&group_of(&k)) {
                    rows.push((k, sub));
                }
            }
        }
        let this = &self;
        let credited = &credited;
        let elsewhere = &elsewhere;
        let source_rank = &source_rank;
        let gathered = &entries;
        // A batch's rows are collected by position into `rows` (emptied
        // and reused from batch to batch): an indexed collect writes each row
        // (hundreds of bytes) once, into memory the previous batches paged
        // in. A collect into a `Result` would go through a list of growing
        // vectors and move every row two or three times, and a fresh vector
        // per batch (megabytes, so mapped afresh) has every page zeroed and
        // faulted in again. A row that cannot be classified leaves a
        // placeholder; the first such row by position is the error, whatever
        // the threads.
        let classify =
            |first: usize, chunk: &[(SortKey, Source)], rows: &mut Vec<_>| -> Result<(), Fatal> {
                let failed: std::sync::Mutex<Option<(usize, Fatal)>> = Default::default();
                chunk
                    .par_iter()
                    .enumerate()
                    .map(|(i, (_, s))| {
                        let row = match s {
                            Source::Grain(k) => this
                                .classify(
                                    k,
                                    gathered.at(first + i),
                                    (credited, elsewhere),
                                    source_rank,
                                )
                                .unwrap_or_else(|e| {
                                    let mut f = failed.lock().unwrap_or_else(|p| p.into_inner());
                                    if f.as_ref().is_none_or(|(j, _)| i < *j) {
                                        *f = Some((i, e));
                                    }
                                    TieRow::unclassified(k.month, k.currency)
                                }),
                            Source::Adjustment(k) => this.adjustment_row(k),
                        };
                        TieRow {
                            id: row_id(first + i + 1),
                            ..row
                        }
                    })
                    .collect_into_vec(rows);
                match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
                    Some((_, e)) => Err(e),
                    None => Ok(()),
                }
            };
        // The partner (rank of the normalised ID) of the rows handed on
        // last, and the display IDs seen in it.
        let mut block: Option<u32> = None;
        let mut block_ids: Vec<String> = Vec::new();
        let mut pending: Option<(Vec<TieRow<'_>>, Vec<String>)> = None;
        // The vector of the batch the sink had last, for the next batch.
        let mut spare: Vec<TieRow<'_>> = Vec::new();
        let step = batch.max(1);
        let mut chunks = sources.chunks(step).enumerate().peekable();
        while let Some((n, chunk)) = chunks.next() {
            let report_now = &report;
            let mut rows = std::mem::take(&mut spare);
            let (classified, sunk) = rayon::join(
                || classify(n * step, chunk, &mut rows),
                || match pending.take() {
                    Some((mut rows, done)) => sink(report_now, &mut rows, done).map(|()| {
                        rows.clear();
                        Some(rows)
                    }),
                    None => Ok(None),
                },
            );
            if let Some(back) = sunk? {
                spare = back;
            }
            classified?;
            let mut done = Vec::new();
            for ((sk, _), r) in chunk.iter().zip(&rows) {
                if block != Some(sk.0) {
                    done.append(&mut block_ids);
                    block = Some(sk.0);
                }
                let id = &*r.partner_id;
                if !block_ids.iter().any(|b| b == id) {
                    block_ids.push(id.to_string());
                }
            }
            if chunks.peek().is_none() {
                done.append(&mut block_ids);
            }
            pending = Some((rows, done));
        }
        if let Some((mut rows, done)) = pending {
            sink(&report, &mut rows, done)?;
        }
        drop(spare);
        // Millions of small allocations (~1 s to free at 1M billing rows):
        // freed on the pool while the caller goes on publishing.
        let TieOut {
            strings,
            expected,
            paid,
            adjustments,
            not_eligible,
            ..
        } = self;
        let heavy = (strings, expected, paid, adjustments, not_eligible, entries);
        rayon::spawn(move || drop(heavy));
        Ok(report)
    }

    /// Counts every row of `sources` (in report order) into `report`: row
    /// count, classes, the earnings row accounting, differences and the
    /// totals per partner (display ID), program, month and currency.
    ///
    /// Each `batch` of rows is counted on its own, on the pool, and the
    /// batches' counts are then added up in order. The sums are the same
    /// whatever the threads: batches are cut by position, not per thread.
    fn count_into(
        &self,
        report: &mut Report,
        sources: &[(SortKey, Source)],
        entries: &Gathered,
        batch: usize,
    ) -> Result<(), Fatal> {
        let step = batch.max(1);
        let counted: Vec<Result<Counted, Fatal>> = sources
            .par_chunks(step)
            .enumerate()
            .map(|(n, chunk)| self.count_batch(chunk, n * step, entries))
            .collect();
        let mut totals: FastMap<TotalsKey, TotalSums> = FastMap::default();
        let mut partner_totals: FastMap<u32, BTreeMap<Currency, TotalSums>> = FastMap::default();
        let mut names: FastMap<u32, u32> = FastMap::default();
        let s = &self.strings;
        for c in counted {
            let c = c?;
            report.row_count += c.rows;
            report.earnings_matched += c.matched;
            report.earnings_unmatched += c.unmatched;
            report.earnings_adjustments += c.adjustments;
            report.differences += c.differences;
            for (class, n) in c.classes {
                *report.classes.entry(class).or_default() += n;
            }
            for (k, t) in c.totals {
                totals.entry(k).or_default().merge(&t);
            }
            for (p, by_currency) in c.partner_totals {
                let into = partner_totals.entry(p).or_default();
                for (currency, t) in by_currency {
                    into.entry(currency).or_default().merge(&t);
                }
            }
            for (p, name) in c.names {
                names.entry(p).or_insert(name);
            }
        }
        report.totals = totals
            .into_iter()
            .map(|((p, g, m, c), t)| {
                let id = s.str(p);
                Ok((
                    (id.to_string(), s.str(g).to_string(), m, c),
                    t.into_totals(id, c)?,
                ))
            })
            .collect::<Result<_, Fatal>>()?;
        report.partner_totals = partner_totals
            .into_iter()
            .map(|(p, t)| {
                let id = s.str(p);
                let t = t
                    .into_iter()
                    .map(|(c, t)| Ok((c, t.into_totals(id, c)?)))
                    .collect::<Result<_, Fatal>>()?;
                Ok((id.to_string(), t))
            })
            .collect::<Result<_, Fatal>>()?;
        report.partner_names = names
            .into_iter()
            .map(|(p, n)| (s.str(p).to_string(), s.str(n).to_string()))
            .collect();
        Ok(())
    }

    /// The counts of one batch of rows, the report's rows from `first` on.
    fn count_batch(
        &self,
        chunk: &[(SortKey, Source)],
        first: usize,
        entries: &Gathered,
    ) -> Result<Counted, Fatal> {
        let mut out = Counted::default();
        let mut cur: Option<(TotalsKey, TotalSums)> = None;
        let mut cur_partner: Option<(u32, BTreeMap<Currency, TotalSums>)> = None;
        for (i, (_, src)) in chunk.iter().enumerate() {
            let (v, partner, name, program) = self.verdict_of(src, entries.at(first + i))?;
            let (currency, month) = match src {
                Source::Grain(k) => (k.currency, k.month),
                Source::Adjustment(k) => (k.currency, k.month),
            };
            out.rows += 1;
            out.matched += v.matched;
            out.unmatched += v.unmatched;
            if let Case::Adjustment(n) = v.case {
                out.adjustments += n;
            }
            *out.classes.entry(v.case.class()).or_default() += 1;
            out.differences += v.case.is_difference() as u64;
            // Rows come in report order, so one group's rows follow each
            // other: its totals are summed outside the list while they do
            // (fewer look-ups; the list is summed up in order later).
            let key = (partner, program, month, currency);
            if cur.as_ref().map(|c| c.0) != Some(key) {
                out.totals.extend(cur.take());
                cur = Some((key, TotalSums::default()));
            }
            if let Some((_, t)) = &mut cur {
                t.add(&v);
            }
            if cur_partner.as_ref().map(|c| c.0) != Some(partner) {
                out.partner_totals.extend(cur_partner.take());
                cur_partner = Some((partner, BTreeMap::new()));
                out.names.push((partner, name));
            }
            if let Some((_, t)) = &mut cur_partner {
                t.entry(currency).or_default().add(&v);
            }
        }
        out.totals.extend(cur);
        out.partner_totals.extend(cur_partner);
        Ok(out)
    }

    fn adjustment_row(&self, k: &AdjKey) -> TieRow<'_> {
        let s = &self.strings;
        let p = &self.adjustments[k];
        let name = s.str(self.name_id(k.partner, p.partner_name));
        let amount = p.amount;
        let program_id = s.str(k.program);
        let program = if program_id.is_empty() {
            "no porledger program".to_string()
        } else {
            format!("program {program_id}")
        };
        let reason = s.str(k.reason);
        TieRow {
            id: String::new(),
            class: Class::Adjustment,
            reason: Cow::Borrowed(reason),
            partner_id: Cow::Borrowed(s.str(self.partner_id(k.partner, p.shown.partner))),
            partner_name: Cow::Borrowed(name),
            program_id: Cow::Borrowed(program_id),
            customer_id: Cow::Borrowed(""),
            customer_name: Cow::Borrowed(""),
            subscription_id: Cow::Borrowed(""),
            invoice_number: Cow::Borrowed(""),
            product_id: Cow::Borrowed(""),
            month: k.month,
            currency: k.currency,
            expected: Decimal::ZERO,
            paid: amount,
            difference: amount,
            porledger_rates: Cow::Borrowed(&[]),
            microsoft_rates: Cow::Borrowed(&[]),
            due: None,
            explanation: Cow::Owned(format!(
                "Microsoft adjustment '{}' of {} for {} ({}, {}): a correction \
                 Microsoft makes without naming billing lines; listed, not matched.",
                reason,
                Money(amount, k.currency),
                k.month,
                Plural(p.rows.len(), "row"),
                program
            )),
            ledger_lines: Cow::Borrowed(&[]),
            issued_lines: Vec::new(),
            earnings_rows: Cow::Borrowed(&p.rows),
        }
    }

    /// How a partner (normalised ID) is shown: its one spelling (see
    /// `partner_shown`), else `fallback`.
    fn partner_id(&self, partner_key: u32, fallback: u32) -> u32 {
        self.partner_shown
            .get(&partner_key)
            .map_or(fallback, |&(_, shown)| shown)
    }

    /// The name of a partner (normalised ID): the run's, else `fallback`.
    fn name_id(&self, partner_key: u32, fallback: u32) -> u32 {
        self.partner_names
            .get(&partner_key)
            .copied()
            .unwrap_or(fallback)
    }

    fn due(&self, program: &str, month: Month) -> NaiveDate {
        let (months, day) = self
            .rules
            .programs
            .iter()
            .find(|p| p.id == program)
            .map(|p| (p.earnings_due_months, p.earnings_due_day))
            .unwrap_or((1, 16));
        month.plus(months).day(day).unwrap_or(month.last_day())
    }

    /// A grain's verdict: its class and amounts, without any text.
    fn verdict(&self, k: &Key, e: Option<&Expected>, p: Option<&Paid>) -> Result<Verdict, Fatal> {
        let tol = self.settings.tolerance;
        let cur = k.currency;
        let expected = e
            .map(|e| round_money(e.amount, cur, self.settings.rounding))
            .unwrap_or_default();
        let paid = p.map(|p| p.amount).unwrap_or_default();
        // Both sums are exact; their difference may not fit (an export paying
        // near the decimal range): the grain is named, nothing is published.
        let difference = paid.exact_sub(expected).ok_or_else(|| Fatal::Overflow {
            what: format!(
                "the tie-out difference of partner {}, customer {}, {} {}",
                self.strings.str(k.partner),
                self.strings.str(k.customer),
                k.month,
                cur
            ),
            cause: format!(
                "paid {paid} minus expected {expected} does not fit a decimal exactly (beyond \
                 about 7.9e28, or more than 28 significant digits)"
            ),
        })?;
        let n_rows = p.map(|p| p.rows.len() as u64).unwrap_or(0);
        let (matched, unmatched) = match e {
            Some(_) => (n_rows, 0),
            None => (0, n_rows),
        };
        let mut due = None;
        let case = match (e, p) {
            (Some(_), Some(_)) if difference.abs() <= tol => Case::Within,
            (Some(e), Some(p)) if !p.rates.0.is_empty() && !p.rates.is_subset(&e.rates) => {
                Case::RateDiffers
            }
            (Some(_), Some(_)) if difference < Decimal::ZERO => Case::Underpaid,
            (Some(_), Some(_)) => Case::Overpaid,
            (Some(_), None) if expected.abs() <= tol => Case::ExpectedWithin,
            (Some(_), None) => {
                let d = self.due(self.strings.str(k.program), k.month);
                due = Some(d);
                if self.settings.as_of < d {
                    Case::NotYetDue
                } else {
                    Case::Overdue
                }
            }
            // An earning no program maps is always shown (`no-program`):
            // the rules lack a table, whatever the amount.
            (None, Some(_)) if paid.abs() <= tol && !self.strings.str(k.program).is_empty() => {
                Case::PaidWithin
            }
            (None, Some(_)) => Case::PaidNotExpected,
            (None, None) => Case::Nothing,
        };
        Ok(Verdict {
            case,
            expected,
            paid,
            difference,
            due,
            matched,
            unmatched,
        })
    }

    /// The verdict of a row of the report, and who it counts for: (display
    /// partner, fallback name, program).
    fn verdict_of(
        &self,
        s: &Source,
        (e, p): (Option<&Expected>, Option<&Paid>),
    ) -> Result<(Verdict, u32, u32, u32), Fatal> {
        Ok(match s {
            Source::Grain(k) => {
                let v = self.verdict(k, e, p)?;
                let (shown, name) = match (e, p) {
                    (Some(e), p) => (e.shown.partner, p.map_or(EMPTY, |p| p.partner_name)),
                    (None, Some(p)) => (p.shown.partner, p.partner_name),
                    (None, None) => (EMPTY, EMPTY),
                };
                (
                    v,
                    self.partner_id(k.partner, shown),
                    self.name_id(k.partner, name),
                    k.program,
                )
            }
            Source::Adjustment(k) => {
                let p = &self.adjustments[k];
                let v = Verdict {
                    case: Case::Adjustment(p.rows.len() as u64),
                    expected: Decimal::ZERO,
                    paid: p.amount,
                    difference: p.amount,
                    due: None,
                    matched: 0,
                    unmatched: 0,
                };
                (
                    v,
                    self.partner_id(k.partner, p.shown.partner),
                    self.name_id(k.partner, p.partner_name),
                    k.program,
                )
            }
        })
    }

    /// The row of a grain.
    fn classify<'a>(
        &'a self,
        k: &Key,
        (e, p): (Option<&'a Expected>, Option<&'a Paid>),
        (credited, elsewhere): (&Credited, &Elsewhere),
        source_rank: &[u32],
    ) -> Result<TieRow<'a>, Fatal> {
        let s = &self.strings;
        let tol = self.settings.tolerance;
        let cur = k.currency;
        let Verdict {
            case,
            expected,
            paid,
            difference,
            due,
            ..
        } = self.verdict(k, e, p)?;
        let shown = e
            .map(|e| e.shown)
            .or(p.map(|p| p.shown))
            .unwrap_or_default();
        let money = |d: Decimal| Money(d, cur);
        // Paid within the tolerance from this run's lines alone: the row's
        // columns say the rest. From issued accruals, the explanation names
        // the closes.
        let short = case == Case::Within && e.is_some_and(|e| e.issued.is_none());
        let lines_text = match e {
            Some(e) if !short => self.basis_text(e, s.str(k.program), cur),
            _ => String::new(),
        };
        let n_rows = p.map(|p| p.rows.len()).unwrap_or(0);
        let rows_text = Plural(n_rows, "earnings row");
        let e_rates: &[Decimal] = e.map_or(&[], |e| &e.rates.0);
        let p_rates: &[Decimal] = p.map_or(&[], |p| &p.rates.0);
        let program = s.str(k.program);
        let d = due.unwrap_or_default();
        let (reason, explanation): (_, Cow<'_, str>) = match (case, p) {
            (Case::Within, _) if short => (
                Cow::Borrowed(""),
                Cow::Borrowed(if difference.is_zero() {
                    PAID_AS_EXPECTED
                } else {
                    &self.paid_within
                }),
            ),
            (Case::Within, _) if difference.is_zero() => (
                Cow::Borrowed(""),
                format!(
                    "Microsoft paid exactly what porledger expected: {} ({lines_text}, \
                     {rows_text}).",
                    money(paid),
                )
                .into(),
            ),
            (Case::Within, _) => (
                Cow::Borrowed(""),
                format!(
                    "Microsoft paid {} and porledger expected {} ({lines_text}, {rows_text}): \
                     the difference {} is within the tolerance of {tol}.",
                    money(paid),
                    money(expected),
                    money(difference)
                )
                .into(),
            ),
            (Case::RateDiffers, _) => (
                Cow::Borrowed("rate"),
                format!(
                    "Microsoft paid {} at an earning rate of {}; porledger's rule pays {} and \
                     expected {} ({lines_text}): Microsoft paid {} {}.",
                    money(paid),
                    percents(p_rates),
                    percents(e_rates),
                    money(expected),
                    money(difference.abs()),
                    if difference < Decimal::ZERO {
                        "less"
                    } else {
                        "more"
                    }
                )
                .into(),
            ),
            (Case::Underpaid | Case::Overpaid, _) => (
                Cow::Borrowed(""),
                format!(
                    "Microsoft paid {} ({rows_text}), {} {} than porledger expected: {} \
                     from {lines_text} at {}.",
                    money(paid),
                    money(difference.abs()),
                    if case == Case::Underpaid {
                        "less"
                    } else {
                        "more"
                    },
                    money(expected),
                    percents(e_rates)
                )
                .into(),
            ),
            (Case::ExpectedWithin, _) => (
                Cow::Borrowed(""),
                format!(
                    "porledger expected {} ({lines_text}), within the tolerance of {tol} of \
                     nothing, and Microsoft paid nothing.",
                    money(expected)
                )
                .into(),
            ),
            (Case::NotYetDue, _) => (
                Cow::Borrowed(NOT_YET_DUE),
                format!(
                    "porledger expected {} for {} ({lines_text}); Microsoft pays it by \
                     {d}, which is after {}: not yet due.",
                    money(expected),
                    k.month,
                    self.settings.as_of
                )
                .into(),
            ),
            (Case::Overdue, _) => (
                Cow::Borrowed("overdue"),
                format!(
                    "porledger expected {} for {} ({lines_text}) and Microsoft paid \
                     nothing; it was due by {d}.",
                    money(expected),
                    k.month
                )
                .into(),
            ),
            (Case::PaidWithin, Some(p)) => (
                Cow::Borrowed(""),
                format!(
                    "Microsoft paid {} ({rows_text}, {}), within the tolerance of {tol} of \
                     nothing, and porledger expected nothing.",
                    money(paid),
                    s.str(p.labels)
                )
                .into(),
            ),
            (Case::PaidNotExpected, Some(p)) => {
                let (reason, why) = self.closest_reason(k, p, credited, elsewhere);
                (
                    reason,
                    format!(
                        "Microsoft paid {} ({rows_text}) that porledger did not expect: {why}",
                        money(paid)
                    )
                    .into(),
                )
            }
            _ => (Cow::Borrowed(""), Cow::Borrowed("")),
        };
        Ok(TieRow {
            id: String::new(),
            class: case.class(),
            reason,
            partner_name: Cow::Borrowed(
                s.str(self.name_id(k.partner, p.map(|p| p.partner_name).unwrap_or(EMPTY))),
            ),
            partner_id: Cow::Borrowed(s.str(self.partner_id(k.partner, shown.partner))),
            program_id: Cow::Borrowed(program),
            customer_id: Cow::Borrowed(s.str(shown.customer)),
            customer_name: Cow::Borrowed(s.str(p.map(|p| p.customer_name).unwrap_or(EMPTY))),
            subscription_id: Cow::Borrowed(s.str(shown.subscription)),
            invoice_number: Cow::Borrowed(s.str(k.invoice)),
            product_id: Cow::Borrowed(s.str(k.product)),
            month: k.month,
            currency: cur,
            expected,
            paid,
            difference,
            porledger_rates: Cow::Borrowed(e_rates),
            microsoft_rates: Cow::Borrowed(p_rates),
            due,
            explanation,
            ledger_lines: Cow::Borrowed(e.map_or(&[], |e| &e.lines)),
            issued_lines: e
                .map(|e| {
                    sorted(
                        e.issued_lines()
                            .iter()
                            .map(|&(s, l)| (source_rank[s as usize], l))
                            .collect(),
                    )
                })
                .unwrap_or_default(),
            earnings_rows: Cow::Borrowed(p.map_or(&[], |p| &p.rows)),
        })
    }

    /// What the expected amount of a grain was computed from, in words:
    /// `3 billing lines` (this run), `3 billing lines issued in 2026-10 v1`,
    /// or, from several, each part's exact amount (`2 billing lines: 124.00
    /// EUR issued in 2026-10 v1 and -62.00 EUR from this run`). A usage
    /// program's accruals are usage rows (compensable units times a unit
    /// rate), never billing lines, and are named so.
    fn basis_text(&self, e: &Expected, program: &str, cur: Currency) -> String {
        let n = e.lines.len() + e.issued_lines().len();
        let what = if self.is_usage_program(program) {
            "usage row"
        } else {
            "billing line"
        };
        let mut t = format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let Some(issued) = &e.issued else {
            return t;
        };
        let version = |c: u32| {
            let (p, v) = self.closes[c as usize];
            format!("{} v{v}", self.strings.str(p))
        };
        match (e.lines.is_empty(), issued.by_close.as_slice()) {
            (_, []) => {}
            (true, [(c, _)]) => {
                t.push_str(" issued in ");
                t.push_str(&version(*c));
            }
            (_, parts) => {
                let mut parts: Vec<(String, Decimal)> =
                    parts.iter().map(|&(c, d)| (version(c), d)).collect();
                parts.sort_unstable();
                let mut words: Vec<String> = parts
                    .into_iter()
                    .map(|(v, d)| format!("{} issued in {v}", Money(d, cur)))
                    .collect();
                if !e.lines.is_empty() {
                    words.push(format!("{} from this run", Money(issued.run_amount, cur)));
                }
                t.push_str(": ");
                t.push_str(&words.join(" and "));
            }
        }
        t
    }

    /// Why an earning of grain `k` was not expected although porledger read
    /// billing lines of its customer and month that pay its partner under
    /// its program: they are on `rows` (grains porledger expected), which
    /// differ from `k` in subscription, invoice, product or currency. Each
    /// is named by what differs (not by its row number, which depends on
    /// how IDs are spelled).
    fn expected_elsewhere(&self, k: &Key, shown_sub: u32, rows: &[(Key, u32)]) -> String {
        let s = &self.strings;
        let differs = |f: &dyn Fn(&Key) -> bool| rows.iter().any(|(o, _)| f(o));
        type Part = (&'static str, fn(&TieOut<'_>, &Key, u32) -> String);
        let all: [(bool, Part); 4] = [
            (
                differs(&|o| o.subscription != k.subscription),
                ("subscription", |t, k, sub| {
                    t.strings
                        .str(if k.subscription == EMPTY { EMPTY } else { sub })
                        .to_string()
                }),
            ),
            (
                differs(&|o| o.invoice != k.invoice),
                ("invoice number", |t, k, _| {
                    t.strings.str(k.invoice).to_string()
                }),
            ),
            (
                differs(&|o| o.product != k.product),
                ("product", |t, k, _| t.strings.str(k.product).to_string()),
            ),
            (
                differs(&|o| o.currency != k.currency),
                ("currency", |_, k, _| k.currency.as_str().to_string()),
            ),
        ];
        let parts: Vec<Part> = all.into_iter().filter(|p| p.0).map(|p| p.1).collect();
        let value = |v: String| {
            if v.is_empty() {
                "(none)".to_string()
            } else {
                v
            }
        };
        let names: Vec<&str> = parts.iter().map(|p| p.0).collect();
        let names = match names.split_last() {
            None => "billing line".to_string(),
            Some((last, [])) => (*last).to_string(),
            Some((last, first)) => format!("{} or {last}", first.join(", ")),
        };
        let describe = |k: &Key, sub: u32| -> String {
            parts
                .iter()
                .map(|(name, f)| format!("{name} {}", value(f(self, k, sub))))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut there: Vec<String> = rows.iter().map(|(o, sub)| describe(o, *sub)).collect();
        // In an order that does not depend on how the IDs are spelled.
        there.sort_by_cached_key(|t| (id_key(t), t.clone()));
        there.dedup();
        let more = there.len().saturating_sub(ELSEWHERE_ROWS);
        there.truncate(ELSEWHERE_ROWS);
        let mut there = there.join("; ");
        if more > 0 {
            there.push_str(&format!("; and {more} more"));
        }
        format!(
            "porledger read this customer's billing lines of {} and expects this partner's \
             earnings of them under {}, on another {names} ({there}); Microsoft's earning has \
             {}, which none of these billing lines has: compare the rows of this customer \
             and month.",
            k.month,
            s.str(k.program),
            describe(k, shown_sub)
        )
    }

    /// Why porledger expected nothing for an earning: a code and words.
    fn closest_reason(
        &self,
        k: &Key,
        p: &Paid,
        credited: &Credited,
        elsewhere: &Elsewhere,
    ) -> (Cow<'_, str>, String) {
        let s = &self.strings;
        let program = s.str(k.program);
        if program.is_empty() {
            return (
                "no-program".into(),
                format!(
                    "its {} maps to no porledger program; add a [[program.earnings]] table \
                     for it to the rules (docs/rules.md).",
                    s.str(p.labels)
                ),
            );
        }
        if let Some(rows) = elsewhere.get(&group_of(k)).filter(|r| !r.is_empty()) {
            return (
                "other-billing-line".into(),
                self.expected_elsewhere(k, p.shown.subscription, rows),
            );
        }
        if let Some(who) = credited.get(&(k.customer, k.month)) {
            let mut who: Vec<(&str, &str)> = who
                .iter()
                .map(|&(partner, program)| (s.str(partner), s.str(program)))
                .collect();
            who.sort_unstable();
            let partner_key = s.str(k.partner);
            let others: Vec<&str> = who
                .iter()
                .filter(|(partner, prog)| id_key(partner) != partner_key && *prog == program)
                .map(|(partner, _)| *partner)
                .collect();
            if !others.is_empty() {
                return (
                    "credited-to-another-partner".into(),
                    format!(
                        "porledger credits {} on this customer in {} under {}, not this \
                         partner (check the designations).",
                        others.join(", "),
                        k.month,
                        program
                    ),
                );
            }
            let programs: Vec<&str> = who
                .iter()
                .filter(|(partner, prog)| id_key(partner) == partner_key && *prog != program)
                .map(|(_, prog)| *prog)
                .collect();
            if !programs.is_empty() {
                return (
                    "other-program".into(),
                    format!(
                        "porledger pays this partner for this customer in {} under {} instead \
                         (check the [[program.earnings]] patterns).",
                        k.month,
                        programs.join(", ")
                    ),
                );
            }
        }
        let miss = self
            .not_eligible
            .get(&(k.customer, k.subscription, k.month))
            .or_else(|| self.not_eligible.get(&(k.customer, EMPTY, k.month)));
        if let Some(m) = miss {
            // The most frequent reason, then the first by name.
            if let Some((reason, miss)) = m
                .iter()
                .map(|(r, miss)| (s.str(*r), miss))
                .max_by(|a, b| a.1.count.cmp(&b.1.count).then_with(|| b.0.cmp(a.0)))
            {
                let words = match reason {
                    "no-designation" => "the customer's billing lines earn nothing because no partner holds a designation porledger pays for it",
                    "outside-window" => "the designation is older than the program's window",
                    "excluded-product" => "the product is excluded by the rules (publisher or qualifier such as Trial)",
                    "rule-not-in-force" => "no program was in force on the charge date",
                    "not-revenue" => "the line is not revenue (a tax row)",
                    _ => "porledger found the customer's billing lines not eligible",
                };
                return (
                    Cow::Borrowed(reason),
                    format!(
                        "{words} ({} line{} not eligible in {}, e.g. {}{}).",
                        miss.count,
                        if miss.count == 1 { "" } else { "s" },
                        k.month,
                        miss.source,
                        if miss.detail.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", miss.detail)
                        }
                    ),
                );
            }
        }
        (
            "no-billing-line".into(),
            format!(
                "porledger read no billing line of this customer in {} (an export missing \
                 from the run, or a month outside its period).",
                k.month
            ),
        )
    }
}

/// One issued version of a closed period, as the history lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedVersion {
    pub period: String,
    pub version: u32,
    /// The rounding of the run that was closed (`half-up`, ...).
    pub rounding: String,
}

/// Which issued versions make the expected side (see [`expected_versions`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExpectedVersions {
    /// The latest version of every closed period but the run's own.
    pub used: Vec<IssuedVersion>,
    /// The latest version of the run's own period, if it is closed: the run
    /// is its restatement (or the run that was closed), so the run's ledger
    /// is expected in its place.
    pub replaced: Option<IssuedVersion>,
}

/// The rule of `tieout --history`: the expected side is the run's own
/// ledger plus the issued accruals of the **latest version of every other
/// closed period**. The run's own period (same label) is never taken from
/// the history: the run re-accrued it from its files. Months are not the
/// unit, periods are: a later period's reversal of a closed month's accrual
/// (accrual month of the closed month) adds to what was issued for that
/// month, it does not replace it. A closed period that overlaps the run's
/// period without being it (`2026-10` against a run of `2026-09..2026-10`)
/// is refused: its months would be counted twice. `closes`: every issued
/// version, any order.
pub fn expected_versions(
    run_period: &str,
    closes: &[IssuedVersion],
) -> Result<ExpectedVersions, String> {
    let run: crate::dates::Period = run_period.parse().map_err(|e| {
        format!("the run's period '{run_period}' cannot be read ({e}); tie out without --history")
    })?;
    let mut latest: BTreeMap<&str, &IssuedVersion> = BTreeMap::new();
    for c in closes {
        let e = latest.entry(c.period.as_str()).or_insert(c);
        if c.version > e.version {
            *e = c;
        }
    }
    let mut out = ExpectedVersions::default();
    for (label, c) in latest {
        if label == run_period {
            out.replaced = Some(c.clone());
            continue;
        }
        let p: crate::dates::Period = label.parse().map_err(|e| {
            format!("closed period '{label}' cannot be read ({e}); the history is damaged")
        })?;
        if p.start < run.end && run.start < p.end {
            return Err(format!(
                "closed period {label} overlaps this run's period {run_period} without being it: \
                 its months would be expected twice; tie out a run of {label} (or of periods \
                 that do not overlap it)"
            ));
        }
        out.used.push(c.clone());
    }
    Ok(out)
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort_unstable();
    v
}

/// Adds `entries` to `map`, in the order given: an entry whose key the map
/// has merges into it with `merge`. A map grown this way from empty, never
/// sized up front, has a layout (and so an order a later regrouping merges
/// entries in) that depends on the keys alone.
fn merge_in_order<V>(
    map: &mut FastMap<Key, V>,
    entries: impl IntoIterator<Item = (Key, V)>,
    mut merge: impl FnMut(&mut V, V) -> Result<(), Fatal>,
) -> Result<(), Fatal> {
    for (k, v) in entries {
        match map.entry(k) {
            Entry::Vacant(slot) => {
                slot.insert(v);
            }
            Entry::Occupied(mut o) => merge(o.get_mut(), v)?,
        }
    }
    Ok(())
}

/// Moves every entry whose group is in `coarse` (every entry, with `all`)
/// to the key without the parts its group is compared without (`clear`
/// drops them from what the entry shows), merging with `merge`.
fn collapse<V>(
    map: FastMap<Key, V>,
    coarse: &FastMap<Coarse, Dims>,
    all: Option<Dims>,
    clear: impl Fn(&mut V, Dims),
    merge: impl FnMut(&mut V, V) -> Result<(), Fatal>,
) -> Result<FastMap<Key, V>, Fatal> {
    let mut out: FastMap<Key, V> = FastMap::with_capacity_and_hasher(map.len(), Fast::default());
    let rekeyed = map.into_iter().map(|(mut k, mut v)| {
        if let Some(d) = all.or_else(|| coarse.get(&k.coarse()).copied()) {
            d.clear(&mut k);
            clear(&mut v, d);
        }
        (k, v)
    });
    merge_in_order(&mut out, rekeyed, merge)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_rules;
    use proptest::prelude::*;

    const RULES: &str = r#"
[[program]]
id = "core"
associations = ["POR"]
rate = "0.04"
[[program.earnings]]
partnerAssociation = "POR"

[[program]]
id = "usage"
associations = ["PAL"]
rate = "0.01"
earnings_due_months = 2
earnings_due_day = 10
[[program.earnings]]
lever = "*usage*"
"#;

    fn rules() -> Rules {
        parse_rules(RULES).unwrap()
    }

    fn d(s: &str) -> Decimal {
        s.parse().unwrap()
    }

    fn eur() -> Currency {
        Currency::parse("EUR").unwrap()
    }

    fn settings(tol: &str) -> TieSettings {
        TieSettings {
            tolerance: d(tol),
            as_of: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
            rounding: RoundingMode::HalfUp,
        }
    }

    fn accrual<'a>(
        partner: &'a str,
        customer: &'a str,
        sub: &'a str,
        m: Month,
        amount: &str,
        line: u64,
    ) -> Accrual<'a> {
        Accrual {
            partner_id: partner,
            customer_id: customer,
            program_id: "core",
            subscription_id: sub,
            invoice_number: "",
            product_id: "",
            month: m,
            currency: eur(),
            amount: d(amount),
            rate: d("0.04"),
            origin: Origin::Ledger(line),
        }
    }

    fn earning<'a>(
        partner: &'a str,
        customer: &'a str,
        sub: &'a str,
        m: Month,
        amount: &str,
        rate: Option<&str>,
        line: u64,
    ) -> Earning<'a> {
        Earning {
            file: 0,
            line,
            participant_id: partner,
            participant_name: "P",
            labels: EarningsLabels {
                program_name: "CSP",
                lever: "Core",
                engagement_name: "",
                partner_association: "POR",
            },
            customer_id: customer,
            customer_name: "",
            subscription_id: sub,
            invoice_number: "",
            product_id: "",
            month: m,
            currency: eur(),
            amount: d(amount),
            rate: rate.map(d),
            reason_code: "",
        }
    }

    const JAN: Month = Month::from_ym(2026, 1);
    const FEB: Month = Month::from_ym(2026, 2);

    fn one(report: &Report) -> &TieRow<'static> {
        assert_eq!(report.rows.len(), 1, "{:#?}", report.rows);
        &report.rows[0]
    }

    /// A tie-out over three partners (one under two spellings), with
    /// adjustments and grains on either side only.
    fn three_partners(r: &Rules) -> TieOut<'_> {
        let mut t = TieOut::new(r, settings("0.01"));
        let mut line = 1;
        for (p, shown) in [("P1", "P1"), ("P2", "P2"), ("P3", "p3"), ("P3", "P3")] {
            for (c, m) in [("C1", JAN), ("C2", JAN), ("C1", FEB), ("C3", FEB)] {
                line += 1;
                t.add_accrual(&accrual(p, c, "S1", m, "10.00", line))
                    .unwrap();
                if c != "C3" {
                    t.add_earning(&earning(shown, c, "s1", m, "0.40", Some("0.04"), line))
                        .unwrap();
                }
            }
            let mut adj = earning(shown, "", "", FEB, "-1.00", None, line + 100);
            adj.reason_code = "Ops Adjustment";
            t.add_earning(&adj).unwrap();
            t.add_earning(&earning(shown, "C9", "S9", JAN, "0.70", None, line + 200))
                .unwrap();
        }
        t
    }

    proptest! {
        #[test]
        fn packed_keys_order_as_keys_do(
            a in proptest::array::uniform8(0u32..4),
            b in proptest::array::uniform8(0u32..4),
            big in any::<[u32; 6]>(),
            months in any::<(i32, i32)>(),
        ) {
            // Four values per field, so that equal fields are common: 0, 1,
            // any value, the largest.
            let codes = ["EUR", "USD", "CHF", "JPY"];
            let v = |f: u32, j: usize| [0, 1, big[j], u32::MAX][f as usize];
            let key = |f: [u32; 8], m: i32| Key {
                partner: v(f[0], 0),
                month: Month([0, -1, m, i32::MIN][f[1] as usize]),
                program: v(f[2], 1),
                customer: v(f[3], 2),
                subscription: v(f[4], 3),
                invoice: v(f[5], 4),
                product: v(f[6], 5),
                currency: Currency::parse(codes[f[7] as usize]).unwrap(),
            };
            let (x, y) = (key(a, months.0), key(b, months.1));
            prop_assert_eq!(x.packed().cmp(&y.packed()), x.cmp(&y));
            prop_assert_eq!(x.packed() == y.packed(), x == y);
        }
    }

    proptest! {
        #[test]
        fn packed_sort_keys_order_as_sort_keys_do(
            a in proptest::array::uniform10(0usize..4),
            b in proptest::array::uniform10(0usize..4),
            big in any::<[u32; 8]>(),
            months in any::<(i32, i32)>(),
        ) {
            // Four values per field, so that equal fields are common.
            let codes = ["EUR", "USD", "CHF", "JPY"];
            let v = |f: usize, j: usize| [0, 1, big[j], u32::MAX][f];
            let key = |f: [usize; 10], m: i32| -> SortKey {
                (
                    v(f[0], 0),
                    Month([0, -1, m, i32::MIN][f[1]]),
                    f[2] % 2 == 1,
                    v(f[3], 1),
                    v(f[4], 2),
                    v(f[5], 3),
                    v(f[6], 4),
                    v(f[7], 5),
                    Currency::parse(codes[f[8]]).unwrap(),
                    v(f[9], 6),
                )
            };
            let (x, y) = (key(a, months.0), key(b, months.1));
            prop_assert_eq!(packed_sort_key(&x).cmp(&packed_sort_key(&y)), x.cmp(&y));
        }
    }

    #[test]
    fn row_ids_are_as_format_writes_them() {
        for n in [1, 12, 999_999, 1_000_000, 12_345_678, usize::MAX] {
            assert_eq!(row_id(n), format!("T{n:06}"));
        }
    }

    #[test]
    fn streamed_rows_are_the_report_in_any_batch_size() {
        let r = rules();
        let whole = three_partners(&r).finish().unwrap();
        assert!(whole.rows.len() > 10);
        for batch in [1, 2, 3, 5, 7, whole.rows.len(), 1000] {
            let mut rows: Vec<TieRow<'static>> = Vec::new();
            let mut done_at: Vec<(String, usize)> = Vec::new();
            let rep = three_partners(&r)
                .finish_in(batch, |report, b, done| {
                    assert!(b.len() <= batch);
                    // The report is final from the first batch on.
                    assert_eq!(report.row_count, whole.row_count);
                    assert_eq!(
                        format!("{:?}", report.totals),
                        format!("{:?}", whole.totals)
                    );
                    assert_eq!(
                        format!("{:?}", report.partner_totals),
                        format!("{:?}", whole.partner_totals)
                    );
                    assert_eq!(report.partner_names, whole.partner_names);
                    rows.extend(b.drain(..).map(TieRow::into_owned));
                    for id in done {
                        // Final totals: every row of the partner is counted.
                        let n = rows.iter().filter(|x| x.partner_id == id).count() as u64;
                        let t: u64 = report.partner_totals[&id].values().map(|t| t.rows).sum();
                        assert_eq!(t, n, "{id} at batch {batch}");
                        done_at.push((id, rows.len()));
                    }
                    Ok(())
                })
                .unwrap();
            assert!(rep.rows.is_empty());
            assert_eq!(rep.row_count, whole.row_count);
            assert_eq!(
                format!("{rows:?}"),
                format!("{:?}", whole.rows),
                "batch {batch}"
            );
            assert_eq!(format!("{:?}", rep.totals), format!("{:?}", whole.totals));
            // Every display ID is done once, after its last row.
            let mut ids: Vec<&str> = whole.rows.iter().map(|x| &*x.partner_id).collect();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(done_at.len(), ids.len(), "{done_at:?}");
            for (id, at) in &done_at {
                assert!(
                    !rows[*at..].iter().any(|x| &x.partner_id == id),
                    "{id} after done"
                );
            }
        }
    }

    #[test]
    fn matched_many_to_one_both_ways_and_case_insensitive_ids() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("500275", "C1", "S1", JAN, "1.001", 2))
            .unwrap();
        t.add_accrual(&accrual("500275", "C1", "S1", JAN, "2.003", 3))
            .unwrap();
        t.add_earning(&earning("500275", "c1", "s1", JAN, "1.5", Some("0.04"), 2))
            .unwrap();
        t.add_earning(&earning("500275", "c1", "s1", JAN, "1.5", Some("0.04"), 3))
            .unwrap();
        let rep = t.finish().unwrap();
        let row = one(&rep);
        assert_eq!(row.class, Class::Matched);
        assert_eq!(row.expected, d("3.00"));
        assert_eq!(row.ledger_lines, vec![2, 3]);
        assert_eq!(row.earnings_rows, vec![(0, 2), (0, 3)]);
        assert_eq!(rep.earnings_matched, 2);
        assert_eq!(rep.differences, 0);
        // Paid to the cent: the row's columns say the rest.
        assert_eq!(row.explanation, PAID_AS_EXPECTED);
    }

    #[test]
    fn tolerance_is_inclusive_at_the_boundary() {
        for (paid, class) in [
            ("9.99", Class::Matched),
            ("10.01", Class::Matched),
            ("9.98", Class::Underpaid),
            ("10.02", Class::Overpaid),
        ] {
            let r = rules();
            let mut t = TieOut::new(&r, settings("0.01"));
            t.add_accrual(&accrual("1", "C", "S", JAN, "10", 2))
                .unwrap();
            t.add_earning(&earning("1", "C", "S", JAN, paid, Some("0.04"), 2))
                .unwrap();
            let rep = t.finish().unwrap();
            let row = one(&rep);
            assert_eq!(row.class, class, "paid {paid}");
            if class == Class::Matched {
                // Not to the cent: the difference is in its column.
                assert_eq!(
                    row.explanation,
                    "Microsoft paid what porledger expected, within the tolerance of 0.01."
                );
            }
        }
    }

    #[test]
    fn underpaid_and_overpaid_say_the_difference() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("1", "C", "S", JAN, "10", 2))
            .unwrap();
        t.add_earning(&earning("1", "C", "S", JAN, "8", None, 2))
            .unwrap();
        let rep = t.finish().unwrap();
        let row = one(&rep);
        assert_eq!(row.class, Class::Underpaid);
        assert_eq!(row.difference, d("-2.00"));
        assert!(
            row.explanation.contains("2.00 EUR less"),
            "{}",
            row.explanation
        );
        assert_eq!(rep.differences, 1);
    }

    #[test]
    fn rate_differs_names_both_rates() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("1", "C", "S", JAN, "40", 2))
            .unwrap();
        t.add_earning(&earning("1", "C", "S", JAN, "30", Some("0.03"), 2))
            .unwrap();
        let rep = t.finish().unwrap();
        let row = one(&rep);
        assert_eq!(row.class, Class::RateDiffers);
        assert!(row.explanation.contains("3 %"), "{}", row.explanation);
        assert!(row.explanation.contains("4 %"), "{}", row.explanation);
        assert_eq!(row.microsoft_rates, vec![d("0.03")]);
    }

    #[test]
    fn expected_not_paid_overdue_or_not_yet_due() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("1", "C", "S", JAN, "5", 2)).unwrap();
        t.add_accrual(&accrual("1", "C", "S", FEB, "5", 3)).unwrap();
        let rep = t.finish().unwrap();
        assert_eq!(rep.rows.len(), 2);
        // January: due 2026-02-16, before 2026-03-01.
        assert_eq!(rep.rows[0].class, Class::ExpectedNotPaid);
        assert_eq!(rep.rows[0].reason, "overdue");
        assert!(rep.rows[0].is_difference());
        // February: due 2026-03-16, after 2026-03-01.
        assert_eq!(rep.rows[1].reason, "not-yet-due");
        assert_eq!(rep.rows[1].due, NaiveDate::from_ymd_opt(2026, 3, 16));
        assert!(!rep.rows[1].is_difference());
        assert_eq!(rep.differences, 1);
        // The totals count the row not yet due apart: it is in the
        // difference, not among the differences, and the answer says so.
        let t = &rep.partner_totals["1"][&eur()];
        assert_eq!((t.rows, t.differences, t.not_yet_due), (2, 1, 1));
        assert_eq!(t.not_yet_due_amount, d("5"));
        assert_eq!(t.difference, d("-10"));
        let a = crate::render::tieout::answer(t, eur());
        assert_eq!(
            a,
            "1 of 2 rows differ; Microsoft paid 10.00 EUR less than porledger expected \
             (adjustments included; 5.00 EUR of it is expected in 1 row not yet due)"
        );
    }

    #[test]
    fn only_rows_not_yet_due_tie_out_so_far() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("1", "C", "S", JAN, "5", 2)).unwrap();
        t.add_earning(&earning("1", "C", "S", JAN, "5", None, 2))
            .unwrap();
        t.add_accrual(&accrual("1", "C", "S", FEB, "2.5", 3))
            .unwrap();
        t.add_accrual(&accrual("1", "D", "S", FEB, "1", 4)).unwrap();
        let rep = t.finish().unwrap();
        assert_eq!(rep.differences, 0);
        let t = &rep.partner_totals["1"][&eur()];
        assert_eq!((t.rows, t.differences, t.not_yet_due), (3, 0, 2));
        assert_eq!(t.not_yet_due_amount, d("3.5"));
        assert_eq!(
            crate::render::tieout::answer(t, eur()),
            "ties out so far: every row due is within the tolerance, and 3.50 EUR expected \
             in 2 rows is not yet due (3 rows)"
        );
        // A partner with no row open: the plain answer.
        let done = Totals {
            rows: 4,
            ..Totals::default()
        };
        assert_eq!(
            crate::render::tieout::answer(&done, eur()),
            "ties out: every row within the tolerance (4 rows)"
        );
    }

    /// A partner's totals are exact sums converted once: grains of
    /// 79228162514264337593543950000 and of 0.40 (ten customers) total
    /// ...950004, where a decimal running sum drops every 0.40 (or, checked,
    /// refuses the sum), on any order of the grains.
    #[test]
    fn totals_of_many_grains_are_exact_sums_converted_once() {
        let r = rules();
        let customers: Vec<String> = (0..10).map(|k| format!("D{k}")).collect();
        for big_first in [true, false] {
            let mut t = TieOut::new(&r, settings("0.01"));
            let big = earning(
                "P1",
                "C",
                "S",
                JAN,
                "79228162514264337593543950000",
                None,
                1,
            );
            if big_first {
                t.add_earning(&big).unwrap();
            }
            for (k, c) in customers.iter().enumerate() {
                t.add_earning(&earning("P1", c, "S", JAN, "0.40", None, 2 + k as u64))
                    .unwrap();
            }
            if !big_first {
                t.add_earning(&big).unwrap();
            }
            let rep = t.finish().unwrap();
            let total = &rep.partner_totals["P1"][&eur()];
            assert_eq!(total.paid, d("79228162514264337593543950004"));
            assert_eq!(total.difference, d("79228162514264337593543950004"));
            assert_eq!(total.rows, 11);
            let by_program: Decimal = rep
                .totals
                .iter()
                .filter(|((p, ..), _)| p == "P1")
                .map(|(_, t)| t.paid)
                .sum();
            assert_eq!(by_program, d("79228162514264337593543950004"));
        }
    }

    #[test]
    fn paid_not_expected_gets_the_closest_reason() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_earning(&earning("1", "NODES", "S", JAN, "5", None, 2))
            .unwrap();
        t.add_earning(&earning("1", "OTHER", "S", JAN, "5", None, 3))
            .unwrap();
        t.add_earning(&earning("1", "NOTHING", "S", JAN, "5", None, 4))
            .unwrap();
        let mut unmapped = earning("1", "X", "S", JAN, "5", None, 5);
        unmapped.labels.partner_association = "Tier1";
        t.add_earning(&unmapped).unwrap();
        // Within the tolerance of nothing, and still shown: no table maps it.
        let mut small = earning("1", "Y", "S", JAN, "0.01", None, 6);
        small.labels.partner_association = "Tier1";
        t.add_earning(&small).unwrap();
        t.add_accrual(&accrual("2", "OTHER", "S", JAN, "5", 9))
            .unwrap();
        t.add_not_eligible("nodes", "s", JAN, "no-designation", "", ("b.csv", "7"))
            .unwrap();
        let rep = t.finish().unwrap();
        let reason = |c: &str| {
            rep.rows
                .iter()
                .find(|r| r.customer_id == c && r.partner_id == "1")
                .map(|r| (r.class, r.reason.clone()))
                .unwrap()
        };
        assert_eq!(
            reason("NODES"),
            (Class::PaidNotExpected, "no-designation".into())
        );
        assert_eq!(
            reason("OTHER"),
            (Class::PaidNotExpected, "credited-to-another-partner".into())
        );
        assert_eq!(
            reason("NOTHING"),
            (Class::PaidNotExpected, "no-billing-line".into())
        );
        assert_eq!(reason("X"), (Class::PaidNotExpected, "no-program".into()));
        assert_eq!(reason("Y"), (Class::PaidNotExpected, "no-program".into()));
        assert_eq!(rep.earnings_unmatched, 5);
    }

    /// An earning whose invoice number is not the billing line's: the
    /// customer's billing lines of the month were read (they are the other
    /// row), so the reason is not `no-billing-line`; it names the invoice
    /// porledger expected the earnings on.
    #[test]
    fn paid_not_expected_on_another_invoice_names_the_expected_rows() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&billed_accrual("S1", "G001", "P-A", "5", 2))
            .unwrap();
        t.add_earning(&billed_earning("S1", "GXXX", "P-A", "5", 1))
            .unwrap();
        // Another customer of the same partner: nothing read of it.
        t.add_earning(&Earning {
            customer_id: "C2",
            ..billed_earning("S1", "GXXX", "P-A", "5", 2)
        })
        .unwrap();
        let rep = t.finish().unwrap();
        let rows: Vec<(&str, Class, &str, &str)> = rep
            .rows
            .iter()
            .map(|r| (&*r.id, r.class, &*r.reason, &*r.invoice_number))
            .collect();
        assert_eq!(
            rows,
            [
                ("T000001", Class::ExpectedNotPaid, "overdue", "G001"),
                (
                    "T000002",
                    Class::PaidNotExpected,
                    "other-billing-line",
                    "GXXX"
                ),
                ("T000003", Class::PaidNotExpected, "no-billing-line", "GXXX"),
            ]
        );
        let why = &rep.rows[1].explanation;
        assert!(
            why.contains(
                "under core, on another invoice number (invoice number G001); Microsoft's \
                 earning has invoice number GXXX, which none"
            ),
            "{why}"
        );
        assert!(!why.contains("no billing line"), "{why}");
    }

    /// Two spellings of one partner that differ only in letter case are one
    /// partner: every row, total and name shows one ID, the run's where the
    /// run has the partner (whichever side is read first), else the first
    /// in the export; non-ASCII letters too (IDs are lower-cased with
    /// Unicode's rules).
    #[test]
    fn a_partner_spelled_in_two_cases_is_one_partner_shown_one_way() {
        let r = rules();
        let feed_accruals = |t: &mut TieOut<'_>| {
            t.add_accrual(&accrual("P-A", "C1", "S1", JAN, "10", 2))
                .unwrap();
        };
        let feed_earnings = |t: &mut TieOut<'_>| {
            for (i, (p, c, amount)) in [
                ("p-a", "C1", "10"),
                ("p-a", "C9", "5"),
                ("MÜLLER-01", "C1", "15"),
                ("müller-01", "C2", "20"),
                ("Müller-01", "C1", "5"),
            ]
            .into_iter()
            .enumerate()
            {
                t.add_earning(&earning(p, c, "S1", JAN, amount, None, i as u64 + 2))
                    .unwrap();
            }
            let mut adj = earning("P-a", "", "", FEB, "-1", None, 9);
            adj.reason_code = "Ops Adjustment";
            t.add_earning(&adj).unwrap();
        };
        // The run's ledger read before the earnings, after them, and on an
        // accumulator of its own.
        let mut before = TieOut::new(&r, settings("0.01"));
        feed_accruals(&mut before);
        feed_earnings(&mut before);
        let mut after = TieOut::new(&r, settings("0.01"));
        feed_earnings(&mut after);
        feed_accruals(&mut after);
        let mut joined = TieOut::new(&r, settings("0.01"));
        feed_earnings(&mut joined);
        let mut side = TieOut::for_ledger(&r, settings("0.01"));
        feed_accruals(&mut side);
        joined.add_accruals_of(side).unwrap();
        for (what, t) in [("before", before), ("after", after), ("joined", joined)] {
            let rep = t.finish().unwrap();
            let ids: Vec<(&str, &str, Class)> = rep
                .rows
                .iter()
                .map(|r| (&*r.partner_id, &*r.customer_id, r.class))
                .collect();
            assert_eq!(
                ids,
                [
                    ("MÜLLER-01", "C1", Class::PaidNotExpected),
                    ("MÜLLER-01", "C2", Class::PaidNotExpected),
                    ("P-A", "C1", Class::Matched),
                    ("P-A", "C9", Class::PaidNotExpected),
                    ("P-A", "", Class::Adjustment),
                ],
                "{what}"
            );
            let totals: Vec<(&str, String, String, u64)> = rep
                .partner_totals
                .iter()
                .flat_map(|(p, by)| {
                    by.values().map(move |t| {
                        (
                            p.as_str(),
                            t.paid.to_string(),
                            t.adjustments.to_string(),
                            t.rows,
                        )
                    })
                })
                .collect();
            assert_eq!(
                totals,
                [
                    ("MÜLLER-01", "40".into(), "0".into(), 2),
                    ("P-A", "15".into(), "-1".into(), 3),
                ],
                "{what}"
            );
            let partners: Vec<&str> = rep.totals.keys().map(|k| k.0.as_str()).collect();
            assert_eq!(partners, ["MÜLLER-01", "P-A", "P-A"], "{what}");
            let named: Vec<&str> = rep.partner_names.keys().map(|k| k.as_str()).collect();
            assert_eq!(named, ["MÜLLER-01", "P-A"], "{what}");
        }
    }

    #[test]
    fn adjustments_are_listed_per_month_and_reason_never_matched() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("1", "C", "S", JAN, "5", 2)).unwrap();
        t.add_earning(&earning("1", "C", "S", JAN, "5", None, 2))
            .unwrap();
        let mut adj = earning("1", "", "", JAN, "-3", None, 3);
        adj.reason_code = "";
        t.add_earning(&adj).unwrap();
        let mut adj2 = earning("1", "C", "S", JAN, "1", None, 4);
        adj2.reason_code = "Ops Adjustment";
        t.add_earning(&adj2).unwrap();
        let rep = t.finish().unwrap();
        let classes: Vec<_> = rep.rows.iter().map(|r| (r.class, &*r.reason)).collect();
        assert_eq!(
            classes,
            vec![
                (Class::Matched, ""),
                (Class::Adjustment, "(no customer)"),
                (Class::Adjustment, "Ops Adjustment")
            ]
        );
        assert_eq!(rep.earnings_adjustments, 2);
        let tot = &rep.partner_totals["1"][&eur()];
        assert_eq!(tot.adjustments, d("-2"));
        assert_eq!(tot.difference, d("-2.00"));
        assert_eq!(rep.differences, 0);
    }

    #[test]
    fn currencies_are_separate_grains() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("1", "C", "S", JAN, "5", 2)).unwrap();
        let mut usd = earning("1", "C", "S", JAN, "5", None, 2);
        usd.currency = Currency::parse("USD").unwrap();
        t.add_earning(&usd).unwrap();
        let rep = t.finish().unwrap();
        let classes: Vec<_> = rep
            .rows
            .iter()
            .map(|r| (r.class, r.currency.as_str()))
            .collect();
        assert_eq!(
            classes,
            vec![
                (Class::ExpectedNotPaid, "EUR"),
                (Class::PaidNotExpected, "USD")
            ]
        );
    }

    #[test]
    fn an_earning_without_subscription_compares_the_whole_customer_month() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("1", "C", "S1", JAN, "5", 2))
            .unwrap();
        t.add_accrual(&accrual("1", "C", "S2", JAN, "5", 3))
            .unwrap();
        t.add_earning(&earning("1", "C", "", JAN, "10", None, 2))
            .unwrap();
        let rep = t.finish().unwrap();
        let row = one(&rep);
        assert_eq!(row.class, Class::Matched);
        assert_eq!(row.subscription_id, "");
        assert_eq!(row.ledger_lines, vec![2, 3]);
    }

    /// An accrual and an earning with invoice number and product.
    fn billed_accrual<'a>(
        sub: &'a str,
        invoice: &'a str,
        product: &'a str,
        amount: &str,
        line: u64,
    ) -> Accrual<'a> {
        Accrual {
            invoice_number: invoice,
            product_id: product,
            ..accrual("1", "C", sub, JAN, amount, line)
        }
    }

    fn billed_earning<'a>(
        sub: &'a str,
        invoice: &'a str,
        product: &'a str,
        amount: &str,
        line: u64,
    ) -> Earning<'a> {
        Earning {
            invoice_number: invoice,
            product_id: product,
            ..earning("1", "C", sub, JAN, amount, Some("0.04"), line)
        }
    }

    fn classes(rep: &Report) -> Vec<(Class, &str, &str, String, String)> {
        rep.rows
            .iter()
            .map(|r| {
                (
                    r.class,
                    &*r.invoice_number,
                    &*r.product_id,
                    r.expected.normalize().to_string(),
                    r.paid.normalize().to_string(),
                )
            })
            .collect()
    }

    #[test]
    fn invoice_and_product_split_the_grain_where_both_sides_have_them() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        // One subscription, one month: two invoices, two products.
        for (inv, prod, amount, line) in [
            ("G001", "P-A", "5", 2),
            ("G001", "P-B", "3", 3),
            ("G002", "P-A", "2", 4),
        ] {
            t.add_accrual(&billed_accrual("S1", inv, prod, amount, line))
                .unwrap();
        }
        // Case and spaces do not matter; the first is paid short.
        t.add_earning(&billed_earning("S1", " g001 ", "p-a", "4", 1))
            .unwrap();
        t.add_earning(&billed_earning("S1", "G001", "P-B", "3", 2))
            .unwrap();
        t.add_earning(&billed_earning("S1", "G002", "P-A", "2", 3))
            .unwrap();
        let rep = t.finish().unwrap();
        assert_eq!(
            classes(&rep),
            [
                (Class::Underpaid, "G001", "P-A", "5".into(), "4".into()),
                (Class::Matched, "G001", "P-B", "3".into(), "3".into()),
                (Class::Matched, "G002", "P-A", "2".into(), "2".into()),
            ]
        );
        assert_eq!(rep.rows[0].ledger_lines, vec![2]);
        assert_eq!(rep.rows[0].earnings_rows, vec![(0, 1)]);
    }

    #[test]
    fn a_row_without_invoice_compares_its_group_without_invoices() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&billed_accrual("S1", "G001", "P-A", "5", 2))
            .unwrap();
        t.add_accrual(&billed_accrual("S1", "G002", "P-A", "2", 3))
            .unwrap();
        // An earning of the group without invoice number: the group is
        // compared per product only. Another customer keeps its invoices.
        t.add_earning(&billed_earning("S1", "", "P-A", "7", 1))
            .unwrap();
        t.add_accrual(&Accrual {
            customer_id: "D",
            ..billed_accrual("S9", "G009", "P-A", "1", 4)
        })
        .unwrap();
        t.add_earning(&Earning {
            customer_id: "D",
            ..billed_earning("S9", "G009", "P-A", "1", 2)
        })
        .unwrap();
        let rep = t.finish().unwrap();
        assert_eq!(
            classes(&rep),
            [
                (Class::Matched, "", "P-A", "7".into(), "7".into()),
                (Class::Matched, "G009", "P-A", "1".into(), "1".into()),
            ]
        );
        assert_eq!(rep.rows[0].ledger_lines, vec![2, 3]);
        // A ledger written before the columns (no invoice, no product) ties
        // out against an export that has them, at the coarser grain.
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("1", "C", "S1", JAN, "7", 2))
            .unwrap();
        t.add_earning(&billed_earning("S1", "G001", "P-A", "5", 1))
            .unwrap();
        t.add_earning(&billed_earning("S1", "G002", "P-B", "2", 2))
            .unwrap();
        let rep = t.finish().unwrap();
        assert_eq!(
            classes(&rep),
            [(Class::Matched, "", "", "7".into(), "7".into())]
        );
    }

    #[test]
    fn an_export_without_invoices_splits_no_expected_row_by_invoice() {
        let r = rules();
        let mut t = TieOut::new(&r, settings("0.01"));
        // Paid (without invoice or product) and unpaid groups alike are
        // compared without them: one row per subscription and month.
        t.add_accrual(&billed_accrual("S1", "G001", "P-A", "5", 2))
            .unwrap();
        t.add_accrual(&billed_accrual("S1", "G002", "P-B", "2", 3))
            .unwrap();
        t.add_accrual(&Accrual {
            customer_id: "D",
            ..billed_accrual("S9", "G009", "P-A", "1", 4)
        })
        .unwrap();
        t.add_accrual(&Accrual {
            customer_id: "D",
            ..billed_accrual("S9", "G010", "P-A", "1", 5)
        })
        .unwrap();
        t.add_earning(&earning("1", "C", "S1", JAN, "7", Some("0.04"), 1))
            .unwrap();
        let rep = t.finish().unwrap();
        assert_eq!(
            classes(&rep),
            [
                (Class::Matched, "", "", "7".into(), "7".into()),
                (Class::ExpectedNotPaid, "", "", "2".into(), "0".into()),
            ]
        );
        assert_eq!(rep.rows[1].ledger_lines, vec![4, 5]);
    }

    #[test]
    fn programs_map_by_the_earnings_tables_and_due_dates_follow_the_program() {
        let r = rules();
        let t = TieOut::new(&r, settings("0.01"));
        let l = |lever| EarningsLabels {
            program_name: "",
            lever,
            engagement_name: "",
            partner_association: "",
        };
        assert_eq!(t.program_of(&l("Modern Work Usage")), Some("usage"));
        assert_eq!(t.program_of(&l("Core")), None);
        assert_eq!(
            t.due("usage", JAN),
            NaiveDate::from_ymd_opt(2026, 3, 10).unwrap()
        );
    }

    #[test]
    fn accruals_read_on_another_accumulator_give_the_same_report() {
        let r = rules();
        let feed_accruals = |t: &mut TieOut<'_>| {
            t.add_accrual(&accrual("1", "C", "S1", JAN, "5", 2))
                .unwrap();
            t.add_accrual(&accrual("1", "c", "S2", JAN, "4", 3))
                .unwrap();
            t.add_accrual(&accrual("2", "OTHER", "S", JAN, "5", 4))
                .unwrap();
            t.add_accrual(&accrual("1", "C", "S1", FEB, "1", 5))
                .unwrap();
        };
        let feed_earnings = |t: &mut TieOut<'_>| {
            t.add_earning(&earning("1", "C", "s1", JAN, "5", Some("0.04"), 2))
                .unwrap();
            t.add_earning(&earning("1", "OTHER", "S", JAN, "5", None, 3))
                .unwrap();
            t.add_earning(&earning("1", "C", "S2", JAN, "3", Some("0.03"), 4))
                .unwrap();
        };
        let mut one = TieOut::new(&r, settings("0.01"));
        feed_earnings(&mut one);
        feed_accruals(&mut one);
        let mut two = TieOut::new(&r, settings("0.01"));
        feed_earnings(&mut two);
        let mut side = TieOut::new(&r, settings("0.01"));
        feed_accruals(&mut side);
        two.add_accruals_of(side).unwrap();
        let (a, b) = (one.finish().unwrap(), two.finish().unwrap());
        assert_eq!(format!("{:?}", a.rows), format!("{:?}", b.rows));
        assert_eq!(a.rows.len(), 5);
        assert_eq!(a.differences, b.differences);
    }

    #[allow(clippy::too_many_arguments)]
    fn issued<'a>(
        partner: &'a str,
        customer: &'a str,
        m: Month,
        amount: &str,
        period: &'a str,
        version: u32,
        file: &'a str,
        line: u64,
    ) -> Accrual<'a> {
        Accrual {
            origin: Origin::Issued {
                period,
                version,
                source_file: file,
                source_line: line,
            },
            ..accrual(partner, customer, "S", m, amount, 0)
        }
    }

    /// A usage program's accruals are named usage rows, not billing lines,
    /// from this run and issued alike.
    #[test]
    fn usage_accruals_are_named_usage_rows() {
        let r = parse_rules(&format!(
            "{RULES}\n[[program]]\nid = \"units\"\nassociations = [\"CPOR\"]\nbasis = \"usage\"\n\
             [[program.workload]]\nname = \"Teams\"\nunit_rates = [\"1.00\", \"2.50\"]\n"
        ))
        .unwrap();
        let units = |a: Accrual<'static>| Accrual {
            program_id: "units",
            ..a
        };
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&units(issued(
            "1",
            "C",
            JAN,
            "10",
            "2026-01",
            1,
            "usage.csv",
            2,
        )))
        .unwrap();
        t.add_accrual(&units(accrual("1", "C", "S", FEB, "4", 3)))
            .unwrap();
        let rep = t.finish().unwrap();
        assert_eq!(rep.rows.len(), 2, "{:#?}", rep.rows);
        for row in &rep.rows {
            assert!(
                !row.explanation.contains("billing line"),
                "{}",
                row.explanation
            );
        }
        assert!(
            rep.rows[0]
                .explanation
                .contains("1 usage row issued in 2026-01 v1"),
            "{}",
            rep.rows[0].explanation
        );
        assert!(
            rep.rows[1].explanation.contains("1 usage row"),
            "{}",
            rep.rows[1].explanation
        );
        // A revenue program's are still billing lines.
        let mut t = TieOut::new(&r, settings("0.01"));
        t.add_accrual(&accrual("1", "C", "S", FEB, "4", 3)).unwrap();
        let rep = t.finish().unwrap();
        assert!(
            rep.rows[0].explanation.contains("1 billing line"),
            "{}",
            rep.rows[0].explanation
        );
    }

    #[test]
    fn issued_accruals_are_expected_and_say_where_they_come_from() {
        let r = rules();
        // Either order of the two sides gives the same report.
        let a = {
            let mut t = TieOut::new(&r, settings("0.01"));
            t.add_accrual(&accrual("1", "C", "S", JAN, "-4", 3))
                .unwrap();
            t.add_accrual(&issued("1", "C", JAN, "10", "2026-01", 2, "jan.csv", 7))
                .unwrap();
            t.add_earning(&earning("1", "C", "S", JAN, "6", None, 2))
                .unwrap();
            t.finish().unwrap()
        };
        let mut t = TieOut::new(&r, settings("0.01"));
        // January: issued in 2026-01 v2, plus this run's reversal of part of it.
        t.add_accrual(&issued("1", "C", JAN, "10", "2026-01", 2, "jan.csv", 7))
            .unwrap();
        t.add_accrual(&accrual("1", "C", "S", JAN, "-4", 3))
            .unwrap();
        // February: issued only.
        t.add_accrual(&issued("1", "C", FEB, "3", "2026-02", 1, "feb.csv", 5))
            .unwrap();
        t.add_accrual(&issued("1", "C", FEB, "2", "2026-02", 1, "feb.csv", 4))
            .unwrap();
        t.add_earning(&earning("1", "C", "S", JAN, "6", None, 2))
            .unwrap();
        t.add_earning(&earning("1", "C", "S", FEB, "5", None, 3))
            .unwrap();
        let rep = t.finish().unwrap();
        assert_eq!(rep.rows.len(), 2, "{:#?}", rep.rows);
        let (jan, feb) = (&rep.rows[0], &rep.rows[1]);
        assert_eq!((jan.class, feb.class), (Class::Matched, Class::Matched));
        assert_eq!(jan.expected, d("6.00"));
        assert!(
            jan.explanation.contains(
                "2 billing lines: 10.00 EUR issued in 2026-01 v2 and -4.00 EUR from this run"
            ),
            "{}",
            jan.explanation
        );
        assert!(
            feb.explanation
                .contains("2 billing lines issued in 2026-02 v1"),
            "{}",
            feb.explanation
        );
        assert_eq!(
            rep.issued_sources,
            vec![
                "2026-01 v2 jan.csv".to_string(),
                "2026-02 v1 feb.csv".to_string()
            ]
        );
        assert_eq!(
            (jan.ledger_lines.to_vec(), jan.issued_lines.clone()),
            (vec![3], vec![(0, 7)])
        );
        assert_eq!(feb.issued_lines, vec![(1, 4), (1, 5)]);
        assert!(feb.ledger_lines.is_empty());
        assert_eq!(a.rows[0].explanation, jan.explanation);
    }

    #[test]
    fn issued_accruals_read_on_another_accumulator_give_the_same_report() {
        let r = rules();
        let feed = |t: &mut TieOut<'_>, reversed: bool| {
            let mut rows = vec![
                issued("1", "C", JAN, "1", "2026-01", 1, "a.csv", 2),
                issued("1", "C", JAN, "2", "2026-01", 1, "b.csv", 3),
                issued("2", "D", FEB, "4", "2026-02", 3, "a.csv", 9),
            ];
            if reversed {
                rows.reverse();
            }
            for a in &rows {
                t.add_accrual(a).unwrap();
            }
        };
        let mut one = TieOut::new(&r, settings("0.01"));
        one.add_accrual(&accrual("1", "C", "S", JAN, "5", 2))
            .unwrap();
        feed(&mut one, false);
        let mut two = TieOut::new(&r, settings("0.01"));
        two.add_accrual(&accrual("1", "C", "S", JAN, "5", 2))
            .unwrap();
        let mut side = TieOut::new(&r, settings("0.01"));
        // Another order of first sight: other indexes, the same report.
        feed(&mut side, true);
        two.add_accruals_of(side).unwrap();
        let (a, b) = (one.finish().unwrap(), two.finish().unwrap());
        assert_eq!(format!("{:?}", a.rows), format!("{:?}", b.rows));
        assert_eq!(a.issued_sources, b.issued_sources);
        assert_eq!(a.issued_sources.len(), 3);
    }

    /// Ledger rows taken in from another accumulator, then issued accruals
    /// of the same grains (and of others) added here, as `tieout --history`
    /// does: the same report as adding them all here in that order.
    #[test]
    fn issued_accruals_after_taken_ledger_rows_give_the_same_report() {
        let r = rules();
        let ledger = [
            accrual("1", "C", "S", JAN, "5", 2),
            // The same grain, its IDs in other cases: shown as first seen.
            accrual("1", "c", "s", JAN, "1", 3),
            accrual("2", "D", "S", FEB, "3", 4),
        ];
        let issued_rows = [
            issued("1", "c", JAN, "10", "2026-01", 1, "jan.csv", 7),
            issued("3", "E", JAN, "2", "2026-01", 1, "jan.csv", 8),
        ];
        let earn = |t: &mut TieOut<'_>| {
            for e in [
                earning("1", "C", "S", JAN, "16", None, 1),
                earning("2", "D", "S", FEB, "3", None, 2),
            ] {
                t.add_earning(&e).unwrap();
            }
        };
        let mut one = TieOut::new(&r, settings("0.01"));
        earn(&mut one);
        for a in ledger.iter().chain(&issued_rows) {
            one.add_accrual(a).unwrap();
        }
        let mut two = TieOut::new(&r, settings("0.01"));
        earn(&mut two);
        let mut side = TieOut::new(&r, settings("0.01"));
        for a in &ledger {
            side.add_accrual(a).unwrap();
        }
        two.add_accruals_of(side).unwrap();
        for a in &issued_rows {
            two.add_accrual(a).unwrap();
        }
        let (a, b) = (one.finish().unwrap(), two.finish().unwrap());
        assert_eq!(format!("{:?}", a.rows), format!("{:?}", b.rows));
        assert_eq!(a.issued_sources, b.issued_sources);
        assert_eq!(a.rows.len(), 3);
        assert_eq!(a.rows[0].customer_id, "C");
        assert_eq!(a.rows[0].expected, d("16.00"));
        assert_eq!(&*a.rows[0].ledger_lines, &[2, 3]);
    }

    /// A ledger side that appends its rows ([`TieOut::for_ledger`]), with
    /// any number of slots of recent grains (one: nearly every row its own
    /// entry), taken in after the earnings (also appended, with as many
    /// slots), gives the report of adding every row to one tie-out; so does
    /// taking it into a tie-out that has grains of its own.
    #[test]
    fn a_ledger_side_that_appends_its_rows_gives_the_same_report() {
        const IDS: [&str; 4] = ["C", "c", "D", ""];
        let row = |(p, c, s, feb, inv, prod, cents, rate): (
            usize,
            usize,
            usize,
            bool,
            bool,
            bool,
            i64,
            bool,
        ),
                   line: u64| Accrual {
            partner_id: ["1", "2"][p],
            customer_id: IDS[c % 3],
            subscription_id: IDS[s],
            invoice_number: if inv { "g1" } else { "" },
            product_id: if prod { "P" } else { "" },
            month: if feb { FEB } else { JAN },
            amount: Decimal::new(cents, 2),
            rate: if rate { d("0.05") } else { d("0.04") },
            ..accrual("1", "C", "S", JAN, "0", line)
        };
        let spec = (
            0..2usize,
            0..3usize,
            0..4usize,
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            -500i64..5000,
            any::<bool>(),
        );
        let earned = (
            0..2usize,
            0..3usize,
            0..4usize,
            any::<bool>(),
            any::<bool>(),
            0i64..5000,
        );
        proptest!(ProptestConfig::with_cases(64), |(
            specs in proptest::collection::vec(spec, 1..40),
            earns in proptest::collection::vec(earned, 0..12),
            slots in prop_oneof![Just(1usize), Just(2), Just(3), Just(RECENT_SLOTS)],
        )| {
            let r = rules();
            let rows: Vec<Accrual<'_>> = specs.iter().enumerate().map(|(i, &x)| row(x, i as u64 + 2)).collect();
            let amounts: Vec<String> = earns.iter().map(|e| Decimal::new(e.5, 2).to_string()).collect();
            let earn = |t: &mut TieOut<'_>| {
                for (i, (&(p, c, s, feb, inv, _), amount)) in earns.iter().zip(&amounts).enumerate() {
                    let e = Earning {
                        invoice_number: if inv { "G1" } else { "" },
                        ..earning(["1", "2"][p], IDS[c % 3], IDS[s], if feb { FEB } else { JAN }, amount, Some("0.04"), i as u64 + 2)
                    };
                    t.add_earning(&e).unwrap();
                }
            };
            let mut one = TieOut::new(&r, settings("0.01"));
            earn(&mut one);
            for a in &rows {
                one.add_accrual(a).unwrap();
            }
            let taken = |slots: usize| {
                let mut two = TieOut::with_paid_slots(&r, settings("0.01"), slots);
                earn(&mut two);
                let mut side = TieOut::with_recent(&r, settings("0.01"), slots);
                for a in &rows {
                    side.add_accrual(a).unwrap();
                }
                two.add_accruals_of(side).unwrap();
                two.finish().unwrap()
            };
            // Taken into a tie-out with a grain of its own (the first row).
            let mut three = TieOut::new(&r, settings("0.01"));
            earn(&mut three);
            three.add_accrual(&rows[0]).unwrap();
            let mut side = TieOut::with_recent(&r, settings("0.01"), slots);
            for a in &rows[1..] {
                side.add_accrual(a).unwrap();
            }
            three.add_accruals_of(side).unwrap();
            // Exactly the same report whatever the slots.
            let two = taken(slots);
            let all = taken(RECENT_SLOTS);
            prop_assert_eq!(format!("{:?}", two.rows), format!("{:?}", all.rows));
            // Where grains of IDs spelled differently merge because a part
            // is compared nowhere, the spelling shown may differ between the
            // ways of adding (a map regroups in its own order); the rest is
            // the same.
            // (The rows sort by the spelling shown: compared as a set.)
            let spelled = |rep: &Report| {
                let mut rows: Vec<String> = rep.rows.iter().map(|r| TieRow {
                    customer_id: r.customer_id.to_lowercase().into(),
                    subscription_id: r.subscription_id.to_lowercase().into(),
                    explanation: r.explanation.to_lowercase().into(),
                    id: String::new(),
                    ..r.clone()
                }).map(|r| format!("{r:?}")).collect();
                rows.sort_unstable();
                format!("{rows:?} {:?}", rep.totals)
            };
            for b in [one.finish().unwrap(), three.finish().unwrap()] {
                prop_assert_eq!(spelled(&two), spelled(&b));
            }
        });
    }

    #[test]
    fn ledger_rows_taken_in_from_another_accumulator_give_the_same_report() {
        let r = rules();
        // With and without invoice numbers in the export.
        for billed in [false, true] {
            let rows = [
                billed_accrual("S1", "G001", "P-A", "5", 2),
                billed_accrual("S1", "G002", "P-A", "2", 3),
                billed_accrual("S2", "G002", "P-B", "1", 4),
            ];
            let earn = |t: &mut TieOut<'_>| {
                let (i1, i2) = if billed { ("G001", "G002") } else { ("", "") };
                for e in [
                    billed_earning("S1", i1, "P-A", "5", 1),
                    billed_earning("S1", i2, "P-A", "1", 2),
                    billed_earning("S2", i2, "P-B", "1", 3),
                ] {
                    t.add_earning(&e).unwrap();
                }
            };
            let mut one = TieOut::new(&r, settings("0.01"));
            earn(&mut one);
            for a in &rows {
                one.add_accrual(a).unwrap();
            }
            let mut two = TieOut::new(&r, settings("0.01"));
            earn(&mut two);
            let mut side = TieOut::new(&r, settings("0.01"));
            for a in rows.iter().rev() {
                side.add_accrual(a).unwrap();
            }
            two.add_accruals_of(side).unwrap();
            let (a, b) = (one.finish().unwrap(), two.finish().unwrap());
            assert_eq!(format!("{:?}", a.rows), format!("{:?}", b.rows));
            let want: &[(Class, &str, &str, String, String)] = if billed {
                &[
                    (Class::Matched, "G001", "P-A", "5".into(), "5".into()),
                    (Class::Underpaid, "G002", "P-A", "2".into(), "1".into()),
                    (Class::Matched, "G002", "P-B", "1".into(), "1".into()),
                ]
            } else {
                &[
                    // Products are still on both sides.
                    (Class::Underpaid, "", "P-A", "7".into(), "6".into()),
                    (Class::Matched, "", "P-B", "1".into(), "1".into()),
                ]
            };
            assert_eq!(classes(&a), want);
        }
    }

    fn version(period: &str, version: u32) -> IssuedVersion {
        IssuedVersion {
            period: period.into(),
            version,
            rounding: "half-up".into(),
        }
    }

    #[test]
    fn the_latest_version_of_every_other_closed_period_is_expected() {
        let closes = [
            version("2026-09", 1),
            version("2026-10", 2),
            version("2026-10", 1),
            version("2026-11", 1),
            version("2026-09", 3),
            version("2026-09", 2),
        ];
        let v = expected_versions("2026-11", &closes).unwrap();
        assert_eq!(v.used, vec![version("2026-09", 3), version("2026-10", 2)]);
        assert_eq!(v.replaced, Some(version("2026-11", 1)));
        // An open period: nothing replaced.
        let v = expected_versions("2026-12", &closes).unwrap();
        assert_eq!(v.used.len(), 3);
        assert_eq!(v.replaced, None);
        // A run of a range overlapping a closed month is refused, naming both.
        let e = expected_versions("2026-10..2026-12", &closes).unwrap_err();
        assert!(
            e.contains("2026-10") && e.contains("2026-10..2026-12"),
            "{e}"
        );
        // A closed range overlapping the run's month, too.
        let e = expected_versions("2026-02", &[version("2026-01..2026-03", 1)]).unwrap_err();
        assert!(e.contains("overlaps"), "{e}");
    }

    proptest! {
        /// An export generated from the run's own accruals (one earning per
        /// grain, rounded to the cent as Microsoft does) ties out: only `matched`.
        #[test]
        fn an_export_of_the_runs_own_accruals_only_matches(
            lines in proptest::collection::vec(
                (0u8..3, 0u8..4, 0u8..3, 0u8..3, 0u8..2, -100_000i64..1_000_000, 1u32..4, 0u8..4),
                1..60,
            ),
            billed in any::<bool>(),
        ) {
            let r = rules();
            let mut t = TieOut::new(&r, settings("0.01"));
            let ids = ["a", "b", "c", "d"];
            // With `billed`, both sides carry invoice and product (the
            // export's in another case): each of them a grain of its own.
            let invoices = ["G1", "g2"];
            let products = ["P1", "p2"];
            let billing = |ip: u8| -> (&str, &str) {
                if billed {
                    (invoices[(ip & 1) as usize], products[(ip >> 1) as usize])
                } else {
                    ("", "")
                }
            };
            let curs = [eur(), Currency::parse("USD").unwrap()];
            let mut grains: BTreeMap<(u8, u8, u8, u8, u8, u8), Decimal> = BTreeMap::new();
            for (n, &(p, c, s, m, cur, cents, scale, ip)) in lines.iter().enumerate() {
                let amount = Decimal::new(cents, scale);
                let mut a = accrual(ids[p as usize], ids[c as usize], ids[s as usize],
                    Month::from_ym(2026, 1 + m as u32), "0", n as u64 + 2);
                a.amount = amount;
                a.currency = curs[cur as usize];
                (a.invoice_number, a.product_id) = billing(ip);
                t.add_accrual(&a).unwrap();
                let ip = if billed { ip } else { 0 };
                *grains.entry((p, c, s, m, cur, ip)).or_default() += amount;
            }
            for (n, (&(p, c, s, m, cur, ip), amount)) in grains.iter().enumerate() {
                let cur = curs[cur as usize];
                let paid = round_money(*amount, cur, RoundingMode::HalfUp).to_string();
                let mut e = earning(ids[p as usize], ids[c as usize], ids[s as usize],
                    Month::from_ym(2026, 1 + m as u32), &paid, Some("0.04"), n as u64 + 2);
                e.currency = cur;
                let (inv, prod) = billing(ip);
                let (inv, prod) = (inv.to_ascii_uppercase(), prod.to_ascii_lowercase());
                e.invoice_number = &inv;
                e.product_id = &prod;
                t.add_earning(&e).unwrap();
            }
            let rep = t.finish().unwrap();
            prop_assert!(rep.rows.iter().all(|r| r.class == Class::Matched),
                "{:#?}", rep.rows.iter().filter(|r| r.class != Class::Matched).collect::<Vec<_>>());
            prop_assert_eq!(rep.differences, 0);
            prop_assert_eq!(rep.earnings_matched, grains.len() as u64);
        }
    }
}
