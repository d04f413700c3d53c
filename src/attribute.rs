//! Attribute: who gets credit for a billing line, and with which share.
//!
//! Designated credit (POR, DPOR, CPOR, PAL) is an as-of join of the line with the
//! designations file on customer, subscription (a designation without one covers
//! every subscription) and charge date. Reseller (`ResellerMpnId`) and Tier 1
//! (`MpnId`) credit come from the line itself.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::config::{Association, ConflictPolicy};
use crate::ingest::designations::Designation;
use crate::ingest::BillingLine;

/// Shares computed by equal split are kept to this many decimals; the last
/// partner in the split takes the remainder so the shares sum to exactly 1.
pub const SHARE_DP: u32 = 10;

/// One partner's credit on one line through one association.
#[derive(Clone, Debug, PartialEq)]
pub struct Credit<'a> {
    pub partner_id: &'a str,
    pub association: Association,
    pub share: Decimal,
    /// The designation row behind the credit; `None` for RESELLER and TIER1.
    pub designation: Option<&'a Designation>,
}

/// Why a line cannot be attributed.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributionError {
    /// Explicit shares of one association on one line add up to more than 1.
    SharesAboveOne {
        association: Role,
        sum: Decimal,
        lines: Vec<u64>,
    },
    /// Two partners hold an exclusive association at once and the policy is `reject`.
    Conflict {
        association: Role,
        partners: Vec<String>,
        lines: Vec<u64>,
    },
    /// One partner holds the association through several designations at
    /// once, with different shares (see [`one_per_partner`]).
    PartnerTwice {
        association: Role,
        shares: PartnerShares,
    },
}

/// A partner that holds one association through designations with
/// different shares: its designation lines, each with its share (`None`:
/// blank), in line order.
#[derive(Clone, Debug, PartialEq)]
pub struct PartnerShares {
    pub partner: String,
    pub rows: Vec<(u64, Option<Decimal>)>,
}

impl PartnerShares {
    /// The shares, as a reject's value: `0.5, 0.6` (`blank` for none).
    pub fn values(&self) -> String {
        let mut v: Vec<String> = Vec::with_capacity(self.rows.len());
        for (_, s) in &self.rows {
            let t = s.map_or("blank".to_string(), |s| s.normalize().to_string());
            if !v.contains(&t) {
                v.push(t);
            }
        }
        v.join(", ")
    }

    /// Each line with its share: `lines 2 (share 0.5), 3 (share 0.6)`.
    pub fn lines(&self) -> String {
        let each: Vec<String> = self
            .rows
            .iter()
            .map(|(l, s)| match s {
                Some(s) => format!("{l} (share {})", s.normalize()),
                None => format!("{l} (share blank)"),
            })
            .collect();
        format!("lines {}", each.join(", "))
    }
}

/// POR, DPOR and CPOR (per workload) are held by one partner at a time.
pub fn is_exclusive(a: Association) -> bool {
    matches!(a, Association::Por | Association::Dpor | Association::Cpor)
}

/// The associations whose partners a program credits and resolves together.
/// POR and DPOR are one role, the partner of record, of which a subscription
/// has one at a time: a program that pays both gathers the partners of both
/// before the subscription's precedence, the `conflicts` policy and the
/// shares apply, so a POR partner and another DPOR partner of one
/// subscription conflict like two DPOR partners, and a partner holding both
/// is credited once. Every other association (and POR or DPOR in a program
/// that pays only one of them) is a role of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Role {
    pub lead: Association,
    /// DPOR beside POR.
    pub with: Option<Association>,
}

impl Role {
    /// The role of `program`'s association at `i`, or `None` when an
    /// earlier association of `program` already gathered its partners.
    pub fn of(program: &[Association], i: usize) -> Option<Role> {
        let a = program[i];
        let record = |x: Association| matches!(x, Association::Por | Association::Dpor);
        if !record(a) {
            return Some(a.into());
        }
        if program[..i].iter().any(|&x| record(x)) {
            return None;
        }
        Some(Role {
            lead: a,
            with: program[i + 1..]
                .iter()
                .copied()
                .find(|&x| record(x) && x != a),
        })
    }

    /// Whether a designation of association `a` credits this role.
    pub fn holds(&self, a: Association) -> bool {
        a == self.lead || self.with == Some(a)
    }
}

impl Role {
    /// The role as `credits` hold it, for a message: their one association
    /// when they all hold the same (two DPOR partners), else the role
    /// (`POR/DPOR`).
    pub fn as_held(self, credits: &[Credit<'_>]) -> Role {
        match credits.split_first() {
            Some((first, rest)) if rest.iter().all(|c| c.association == first.association) => {
                first.association.into()
            }
            _ => self,
        }
    }
}

/// What a program decides of who is credited ([`DesignationIndex::credits`]):
/// the rules' conflict policy and the program's window, in months from a
/// designation's `valid_from` (`None`: no window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Terms {
    pub conflicts: ConflictPolicy,
    pub window_months: Option<u32>,
}

impl From<ConflictPolicy> for Terms {
    /// No window.
    fn from(conflicts: ConflictPolicy) -> Terms {
        Terms {
            conflicts,
            window_months: None,
        }
    }
}

/// Whether `d`'s window of `months` from its `valid_from` has closed by
/// `date` (the window's end is exclusive).
pub fn window_closed(d: &Designation, months: Option<u32>, date: NaiveDate) -> bool {
    match (months, d.valid_from) {
        (Some(w), Some(from)) => crate::dates::months_later_cmp(from, w, date).is_le(),
        _ => false,
    }
}

impl From<Association> for Role {
    fn from(a: Association) -> Role {
        Role {
            lead: a,
            with: None,
        }
    }
}

/// `DPOR`, or `POR/DPOR` for the partner-of-record role of a program paying
/// both.
impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.with {
            Some(w) => {
                let (a, b) = if self.lead <= w {
                    (self.lead, w)
                } else {
                    (w, self.lead)
                };
                write!(f, "{a}/{b}")
            }
            None => write!(f, "{}", self.lead),
        }
    }
}

/// The designations, indexed by customer. Each row is held once: sorted by
/// customer, partner and file line, with each customer's rows one slice.
#[derive(Debug, Default)]
pub struct DesignationIndex {
    /// Sorted by (customer, partner, line).
    sorted: Vec<Designation>,
    /// Positions in `sorted`, in file order.
    file_order: Vec<u32>,
    /// Each customer's slice of `sorted` (lower-case key).
    by_customer: hashbrown::HashMap<crate::text::IdText, (u32, u32)>,
    names: BTreeMap<String, String>,
    /// Each partner's ID as [`crate::ingest::id_key`] normalises it: the
    /// position in `sorted` of its first row in file order (whose spelling
    /// is the partner's, see [`DesignationIndex::partner_spelling`]).
    spellings: hashbrown::HashMap<String, u32>,
}

impl DesignationIndex {
    pub fn new(rows: Vec<Designation>) -> DesignationIndex {
        let mut names = BTreeMap::new();
        for d in &rows {
            if !d.partner_name.is_empty() && !names.contains_key(&d.partner_id) {
                names.insert(d.partner_id.clone(), d.partner_name.clone());
            }
        }
        // Deterministic order within a customer: by partner, then file line
        // (a stable sort keeps input order among equals).
        let mut indexed: Vec<(u32, Designation)> = (0..).zip(rows).collect();
        indexed.sort_by(|(_, x), (_, y)| {
            (&x.customer_id, &x.partner_id, x.line).cmp(&(&y.customer_id, &y.partner_id, y.line))
        });
        let mut file_order = vec![0u32; indexed.len()];
        for (at, (i, _)) in (0..).zip(&indexed) {
            file_order[*i as usize] = at;
        }
        let sorted: Vec<Designation> = indexed.into_iter().map(|(_, d)| d).collect();
        let mut spellings = hashbrown::HashMap::new();
        for &at in &file_order {
            let id = crate::ingest::id_key(&sorted[at as usize].partner_id);
            spellings.entry(id).or_insert(at);
        }
        let mut by_customer = hashbrown::HashMap::new();
        let mut start = 0u32;
        for rows in sorted.chunk_by(|a, b| a.customer_id == b.customer_id) {
            let end = start + rows.len() as u32;
            by_customer.insert(rows[0].customer_id.as_str().into(), (start, end));
            start = end;
        }
        DesignationIndex {
            sorted,
            file_order,
            by_customer,
            names,
            spellings,
        }
    }

    /// The designations' spelling of a partner ID read elsewhere (a billing
    /// line's `ResellerMpnId` or `MpnId`, the partner of a closed accrual a
    /// credit reverses): IDs are case-insensitive, so a `p-a` there is the
    /// partner the designations spell `P-A`, and is credited as `P-A` (one
    /// partner, one statement). Where the designations spell one partner in
    /// two ways (which `run` refuses), the first row's spelling. An ID that
    /// no designation names is returned as given. No allocation for an ASCII
    /// ID of up to 64 bytes (it runs once per billing line and reseller or
    /// Tier 1 credit).
    pub fn partner_spelling<'s>(&'s self, id: &'s str) -> &'s str {
        if self.spellings.is_empty() {
            return id;
        }
        let mut buf = [0u8; 64];
        let at = if id.is_ascii() && id.len() <= buf.len() {
            let key = &mut buf[..id.len()];
            key.copy_from_slice(id.as_bytes());
            key.make_ascii_lowercase();
            std::str::from_utf8(key)
                .ok()
                .and_then(|k| self.spellings.get(k))
        } else {
            self.spellings.get(crate::ingest::id_key(id).as_str())
        };
        match at {
            Some(&at) => &self.sorted[at as usize].partner_id,
            None => id,
        }
    }

    /// Every designation, in file order.
    pub fn rows(&self) -> impl ExactSizeIterator<Item = &Designation> + Clone {
        self.file_order.iter().map(|&i| &self.sorted[i as usize])
    }

    /// How many designations there are.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// Partner names from the designations file (first non-empty name per partner).
    pub fn partner_names(&self) -> &BTreeMap<String, String> {
        &self.names
    }

    /// The designations of one customer (key lower-cased), sorted by partner and line.
    pub fn customer(&self, customer_key: &str) -> &[Designation] {
        self.customer_slot(customer_key).1
    }

    /// [`DesignationIndex::customer`], with a number for the customer that is
    /// unique among the designated customers and below [`DesignationIndex::len`]
    /// (`None` for a customer without designations).
    pub fn customer_slot(&self, customer_key: &str) -> (Option<u32>, &[Designation]) {
        match self.by_customer.get(customer_key) {
            Some(&(a, b)) => (Some(a), &self.sorted[a as usize..b as usize]),
            None => (None, &[]),
        }
    }

    /// The designations of one customer (key lower-cased).
    pub fn of_customer(&self, customer_key: &str) -> impl Iterator<Item = &Designation> {
        self.customer(customer_key).iter()
    }

    /// The first of `designations` that would credit `role` on `line` on
    /// `date` but for its window of `months` having closed: why a line no
    /// designation credits is not eligible ([`DesignationIndex::credits`]).
    pub fn closed_window<'a>(
        &self,
        line: &BillingLine<'a>,
        designations: &'a [Designation],
        date: NaiveDate,
        role: Role,
        months: Option<u32>,
    ) -> Option<&'a Designation> {
        months?;
        designations.iter().find(|d| {
            role.holds(d.association)
                && d.valid_on(date)
                && window_closed(d, months, date)
                && d.workload.is_empty()
                && d.subscription_id
                    .as_deref()
                    .is_none_or(|s| subscription_matches(s, line))
        })
    }

    /// Appends to `out` the credits of `role` on `line`, dated `date`, each
    /// under the association of its designation. `designations` are the
    /// line's customer's ([`DesignationIndex::customer`]).
    ///
    /// A designation for the line's subscription takes precedence over the
    /// customer-wide designations of the same role. When several partners
    /// hold an exclusive role (POR/DPOR, CPOR) at once, the `terms`' conflict
    /// policy decides. A designation whose window (the `terms`' months from
    /// its `valid_from`) has closed by `date` credits nothing and takes part
    /// in none of this: whatever the rows' order, a partner's later row
    /// whose window is open credits it, and an expired partner neither
    /// halves nor blocks the current one's credit.
    /// A reseller or Tier 1 partner is credited under the designations'
    /// spelling of its ID ([`DesignationIndex::partner_spelling`]).
    pub fn credits<'a>(
        &'a self,
        line: &BillingLine<'a>,
        designations: &'a [Designation],
        date: NaiveDate,
        role: Role,
        terms: impl Into<Terms>,
        out: &mut Vec<Credit<'a>>,
    ) -> Result<(), AttributionError> {
        let Terms {
            conflicts: policy,
            window_months,
        } = terms.into();
        let a = role.lead;
        match a {
            Association::Reseller => {
                if let Some(p) = line.reseller_mpn_id {
                    out.push(Credit {
                        partner_id: self.partner_spelling(p),
                        association: a,
                        share: Decimal::ONE,
                        designation: None,
                    });
                }
                return Ok(());
            }
            Association::Tier1 => {
                if let Some(p) = line.mpn_id {
                    out.push(Credit {
                        partner_id: self.partner_spelling(p),
                        association: a,
                        share: Decimal::ONE,
                        designation: None,
                    });
                }
                return Ok(());
            }
            _ => {}
        }
        let start = out.len();
        for d in designations {
            if !role.holds(d.association)
                || !d.valid_on(date)
                || window_closed(d, window_months, date)
                || !d.workload.is_empty()
                || !d
                    .subscription_id
                    .as_deref()
                    .is_none_or(|s| subscription_matches(s, line))
            {
                continue;
            }
            out.push(Credit {
                partner_id: &d.partner_id,
                association: d.association,
                share: d.share.unwrap_or_default(),
                designation: Some(d),
            });
        }
        let mut sole_winner = false;
        if out.len() - start > 1 {
            sole_winner = resolve(out, start, role, policy)?;
            if !sole_winner {
                let designation = |c: &Credit<'_>| c.designation.map(|d| (d.share, d.line));
                one_per_partner(
                    out,
                    start,
                    |c| c.partner_id,
                    |c| designation(c).and_then(|d| d.0),
                    |c| designation(c).map_or(0, |d| d.1),
                )
                .map_err(|shares| AttributionError::PartnerTwice {
                    association: role.as_held(&out[start..]),
                    shares,
                })?;
            }
        }
        if sole_winner {
            return Ok(());
        }
        let split = split_shares(
            &mut out[start..],
            |c| c.designation.and_then(|d| d.share),
            |c, s| c.share = s.normalize(),
        );
        let blanks = match split {
            Ok(blanks) => blanks,
            Err(sum) => {
                let lines = out[start..]
                    .iter()
                    .filter(|c| c.designation.is_some_and(|d| d.share.is_some()))
                    .filter_map(|c| c.designation.map(|d| d.line))
                    .collect();
                let association = role.as_held(&out[start..]);
                out.truncate(start);
                return Err(AttributionError::SharesAboveOne {
                    association,
                    sum,
                    lines,
                });
            }
        };
        if blanks > 0 {
            // Rows left with no share (explicit shares already took all) earn nothing.
            let mut i = start;
            while i < out.len() {
                if out[i].share.is_zero() {
                    out.remove(i);
                } else {
                    i += 1;
                }
            }
        }
        Ok(())
    }
}

/// One credit per partner, for billing credits and usage credits alike: a
/// partner that holds one association through several designations in force
/// on the same date (a row repeated in the file, or two windows that overlap)
/// is credited once, through the first of them, and does not take a second
/// part of an equal split. Its rows must then give the same share (or none):
/// different shares of one partner are an `Err` naming its rows, as which one
/// is meant cannot be told. `out[start..]` are the credits of one association;
/// the first of a partner's credits is kept, in place.
pub fn one_per_partner<T>(
    out: &mut Vec<T>,
    start: usize,
    partner: impl Fn(&T) -> &str,
    share: impl Fn(&T) -> Option<Decimal>,
    line: impl Fn(&T) -> u64,
) -> Result<(), PartnerShares> {
    let mut i = start;
    while i < out.len() {
        let mut j = i + 1;
        while j < out.len() {
            if partner(&out[j]) != partner(&out[i]) {
                j += 1;
                continue;
            }
            if share(&out[j]) != share(&out[i]) {
                let p = partner(&out[i]).to_string();
                let mut rows: Vec<(u64, Option<Decimal>)> = out[start..]
                    .iter()
                    .filter(|c| partner(c) == p)
                    .map(|c| (line(c), share(c)))
                    .collect();
                rows.sort_unstable_by_key(|r| r.0);
                return Err(PartnerShares { partner: p, rows });
            }
            out.remove(j);
        }
        i += 1;
    }
    Ok(())
}

/// The one share splitter, for billing credits and usage credits alike: the
/// credits of one association get their explicit `share`, and what is left of
/// 1 goes to the blank ones equally, rounded down to [`SHARE_DP`] decimals, the
/// last blank taking the remainder (so the shares sum to exactly 1).
/// `explicit` reads a credit's explicit share; `assign` gives a blank credit
/// its share. Returns the number of blank credits, or `Err(sum)` when the
/// explicit shares sum to more than 1.
/// No allocation: it runs once per billing line and association.
pub fn split_shares<T>(
    credits: &mut [T],
    explicit: impl Fn(&T) -> Option<Decimal>,
    mut assign: impl FnMut(&mut T, Decimal),
) -> Result<u32, Decimal> {
    let mut given = Decimal::ZERO;
    let mut blanks = 0u32;
    for c in credits.iter() {
        match explicit(c) {
            Some(s) => given += s,
            None => blanks += 1,
        }
    }
    if given > Decimal::ONE {
        return Err(given);
    }
    if blanks == 0 {
        return Ok(0);
    }
    let left = Decimal::ONE - given;
    let each = (left / Decimal::from(blanks))
        .round_dp_with_strategy(SHARE_DP, rust_decimal::RoundingStrategy::ToZero);
    let mut seen = 0;
    for c in credits.iter_mut() {
        if explicit(c).is_none() {
            seen += 1;
            let share = if seen == blanks {
                left - each * Decimal::from(blanks - 1)
            } else {
                each
            };
            assign(c, share);
        }
    }
    Ok(blanks)
}

/// The billing column through which a subscription designation named a line.
///
/// Real exports put the ID a partner sees in different columns: the
/// subscription itself (`SubscriptionId`), the Azure subscription of an Azure
/// plan line (`EntitlementId`; `SubscriptionId` is the plan there), or the
/// console ID of a legacy license line (`SyndicationPartnerSubscriptionNumber`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchedId {
    SubscriptionId,
    EntitlementId,
    SyndicationPartnerSubscriptionNumber,
}

impl MatchedId {
    /// Every column, in the order they are tried.
    pub const ALL: [MatchedId; 3] = [
        MatchedId::SubscriptionId,
        MatchedId::EntitlementId,
        MatchedId::SyndicationPartnerSubscriptionNumber,
    ];

    /// The billing column's name, as in the export's header.
    pub fn column(self) -> &'static str {
        match self {
            MatchedId::SubscriptionId => "SubscriptionId",
            MatchedId::EntitlementId => "EntitlementId",
            MatchedId::SyndicationPartnerSubscriptionNumber => {
                "SyndicationPartnerSubscriptionNumber"
            }
        }
    }
}

/// Which of the line's IDs a designation's subscription (normalised) names:
/// its `SubscriptionId`, else the Azure subscription of a daily-usage line
/// (`EntitlementId`), else the ID a legacy license line shows in the console
/// (`SyndicationPartnerSubscriptionNumber`); `None` when it names none.
pub fn matched_id(designated: &str, line: &BillingLine<'_>) -> Option<MatchedId> {
    use crate::ingest::id_matches;
    if id_matches(designated, line.subscription_id) {
        Some(MatchedId::SubscriptionId)
    } else if line
        .entitlement_id
        .is_some_and(|e| id_matches(designated, e))
    {
        Some(MatchedId::EntitlementId)
    } else if line
        .syndication_id
        .is_some_and(|e| id_matches(designated, e))
    {
        Some(MatchedId::SyndicationPartnerSubscriptionNumber)
    } else {
        None
    }
}

/// Whether a designation's subscription names the line (see [`matched_id`]).
fn subscription_matches(designated: &str, line: &BillingLine<'_>) -> bool {
    matched_id(designated, line).is_some()
}

/// Applies subscription precedence and the conflict policy to `out[start..]`
/// (several designations of `role` matched one line).
/// Returns true when one winner was chosen (its share is then the whole line).
fn resolve(
    out: &mut Vec<Credit<'_>>,
    start: usize,
    role: Role,
    policy: ConflictPolicy,
) -> Result<bool, AttributionError> {
    let specific = |c: &Credit<'_>| c.designation.is_some_and(|d| d.subscription_id.is_some());
    if out[start..].iter().any(specific) {
        let mut i = start;
        while i < out.len() {
            if specific(&out[i]) {
                i += 1;
            } else {
                out.remove(i);
            }
        }
    }
    resolve_conflict(out, start, role, policy)
}

/// The conflict policy, for billing credits and usage credits alike:
/// `out[start..]` are the credits of association `a` that would share one
/// record (a billing line, or a usage row's tenant and workload). When they
/// name more than one partner and `role` is exclusive ([`is_exclusive`]),
/// `Split` leaves them, `Reject` is an `Err` naming the partners and the
/// designation lines, and `LatestWins` keeps the credit of the designation
/// with the latest `valid_from` (then the latest line), with the whole share.
/// Returns true when one winner was chosen.
pub fn resolve_conflict(
    out: &mut Vec<Credit<'_>>,
    start: usize,
    role: Role,
    policy: ConflictPolicy,
) -> Result<bool, AttributionError> {
    if !is_exclusive(role.lead)
        || out[start..]
            .iter()
            .all(|c| c.partner_id == out[start].partner_id)
    {
        return Ok(false);
    }
    match policy {
        ConflictPolicy::Split => Ok(false),
        ConflictPolicy::Reject => {
            let mut partners: Vec<String> = out[start..]
                .iter()
                .map(|c| c.partner_id.to_string())
                .collect();
            partners.dedup();
            let lines = out[start..]
                .iter()
                .filter_map(|c| c.designation.map(|d| d.line))
                .collect();
            let association = role.as_held(&out[start..]);
            out.truncate(start);
            Err(AttributionError::Conflict {
                association,
                partners,
                lines,
            })
        }
        ConflictPolicy::LatestWins => {
            let key = |c: &Credit<'_>| c.designation.map(|d| (d.valid_from, d.line));
            let best = (start..out.len())
                .max_by_key(|&i| key(&out[i]))
                .unwrap_or(start);
            let winner = out[best].clone();
            out.truncate(start);
            out.push(Credit {
                share: Decimal::ONE,
                ..winner
            });
            Ok(true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn por_and_dpor_are_one_role_in_a_program_paying_both() {
        use Association::{Cpor, Dpor, Pal, Por};
        let both = [Pal, Dpor, Cpor, Por];
        let role = Role::of(&both, 1).unwrap();
        assert!(role.holds(Dpor) && role.holds(Por) && !role.holds(Cpor));
        assert_eq!(role.to_string(), "POR/DPOR");
        assert_eq!(Role::of(&both, 3), None);
        assert_eq!(Role::of(&both, 0), Some(Pal.into()));
        let alone = Role::of(&[Dpor, Cpor], 0).unwrap();
        assert!(!alone.holds(Por));
        assert_eq!(alone.to_string(), "DPOR");
    }

    #[test]
    fn split_shares_gives_blanks_the_rest_and_refuses_above_one() {
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        let split = |explicit: &[Option<&str>]| {
            let mut v: Vec<(Option<Decimal>, Decimal)> = explicit
                .iter()
                .map(|e| (e.map(d), e.map(d).unwrap_or_default()))
                .collect();
            split_shares(&mut v, |c| c.0, |c, s| c.1 = s)
                .map(|_| v.into_iter().map(|c| c.1).collect::<Vec<_>>())
        };
        let thirds = split(&[None, None, None]).unwrap();
        assert_eq!(thirds.iter().sum::<Decimal>(), Decimal::ONE);
        assert_eq!(thirds[0].to_string(), "0.3333333333");
        assert_eq!(thirds[2].to_string(), "0.3333333334");
        assert_eq!(split(&[Some("0.7"), None]).unwrap(), [d("0.7"), d("0.3")]);
        assert_eq!(split(&[Some("0.7"), Some("0.5")]), Err(d("1.2")));
        assert_eq!(split(&[]).unwrap(), Vec::<Decimal>::new());
    }
    use crate::money::Currency;

    fn dsg(
        line: u64,
        partner: &str,
        a: Association,
        sub: Option<&str>,
        share: Option<&str>,
    ) -> Designation {
        Designation {
            line,
            customer_id: "c1".into(),
            partner_id: partner.into(),
            partner_name: format!("Partner {partner}"),
            association: a,
            workload: String::new(),
            subscription_id: sub.map(str::to_string),
            share: share.map(|s| s.parse().unwrap()),
            valid_from: NaiveDate::from_ymd_opt(2024, 1, 1),
            valid_to: NaiveDate::from_ymd_opt(2025, 1, 1),
        }
    }

    fn line() -> BillingLine<'static> {
        BillingLine {
            customer_id: "C1",
            customer_name: "",
            subscription_id: "S1",
            charge_start: NaiveDate::from_ymd_opt(2024, 6, 1).unwrap(),
            charge_end: None,
            subtotal: Decimal::from(100),
            currency: Currency::parse("EUR").unwrap(),
            mpn_id: Some("9"),
            reseller_mpn_id: Some("7"),
            publisher: "",
            qualifiers: "",
            charge_type: "",
            product_id: "",
            product_name: "",
            reference_id: "",
            sku_id: None,
            invoice_number: "",
            entitlement_id: None,
            syndication_id: None,
            billable_quantity: None,
            tax: false,
        }
    }

    #[test]
    fn index_holds_rows_once_by_customer_and_in_file_order() {
        let mut rows = vec![
            dsg(1, "b", Association::Pal, None, None),
            dsg(2, "a", Association::Pal, None, None),
            dsg(3, "b", Association::Dpor, Some("s1"), None),
            dsg(4, "a", Association::Dpor, None, None),
        ];
        rows[1].customer_id = "c2".into();
        let idx = DesignationIndex::new(rows);
        assert_eq!(idx.len(), 4);
        assert_eq!(idx.rows().map(|d| d.line).collect::<Vec<_>>(), [1, 2, 3, 4]);
        // A customer's rows: by partner, then line.
        let c1: Vec<u64> = idx.customer("c1").iter().map(|d| d.line).collect();
        assert_eq!(c1, [4, 1, 3]);
        assert_eq!(idx.customer("c2").len(), 1);
        assert!(idx.customer("c3").is_empty());
    }

    #[test]
    fn equal_split_sums_to_one() {
        let idx = DesignationIndex::new(vec![
            dsg(2, "a", Association::Pal, None, None),
            dsg(3, "b", Association::Pal, None, None),
            dsg(4, "c", Association::Pal, None, None),
        ]);
        let mut out = Vec::new();
        let l = line();
        idx.credits(
            &l,
            idx.customer("c1"),
            l.charge_start,
            Association::Pal.into(),
            ConflictPolicy::Split,
            &mut out,
        )
        .unwrap();
        let shares: Vec<String> = out.iter().map(|c| c.share.to_string()).collect();
        assert_eq!(shares, ["0.3333333333", "0.3333333333", "0.3333333334"]);
        assert_eq!(out.iter().map(|c| c.share).sum::<Decimal>(), Decimal::ONE);
    }

    #[test]
    fn explicit_shares_subscription_and_dates() {
        let idx = DesignationIndex::new(vec![
            dsg(2, "a", Association::Pal, None, Some("0.7")),
            dsg(3, "b", Association::Pal, None, None),
            dsg(4, "d", Association::Dpor, Some("s1"), None),
            dsg(5, "e", Association::Dpor, Some("s2"), None),
        ]);
        let l = line();
        let mut out = Vec::new();
        idx.credits(
            &l,
            idx.customer("c1"),
            l.charge_start,
            Association::Pal.into(),
            ConflictPolicy::Split,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out.iter()
                .map(|c| (c.partner_id, c.share.to_string()))
                .collect::<Vec<_>>(),
            [("a", "0.7".to_string()), ("b", "0.3".to_string())]
        );
        out.clear();
        idx.credits(
            &l,
            idx.customer("c1"),
            l.charge_start,
            Association::Dpor.into(),
            ConflictPolicy::Split,
            &mut out,
        )
        .unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].partner_id, "d");
        out.clear();
        let late = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        idx.credits(
            &l,
            idx.customer("c1"),
            late,
            Association::Dpor.into(),
            ConflictPolicy::Split,
            &mut out,
        )
        .unwrap();
        assert!(out.is_empty(), "valid_to is exclusive");
        idx.credits(
            &l,
            idx.customer("c1"),
            late,
            Association::Reseller.into(),
            ConflictPolicy::Split,
            &mut out,
        )
        .unwrap();
        assert_eq!(out[0].partner_id, "7");
    }

    #[test]
    fn a_partner_id_from_the_line_takes_the_designations_spelling() {
        let mut other = dsg(4, "P-A", Association::Pal, None, None);
        other.customer_id = "c9".into();
        let idx = DesignationIndex::new(vec![
            dsg(2, "Ré-7", Association::Pal, None, None),
            dsg(3, "p-9", Association::Pal, None, None),
            other,
            dsg(5, "p-a", Association::Pal, None, None),
        ]);
        assert_eq!(
            idx.partner_spelling("p-a"),
            "P-A",
            "the first row's spelling"
        );
        assert_eq!(idx.partner_spelling("P-9"), "p-9");
        assert_eq!(idx.partner_spelling("RÉ-7"), "Ré-7");
        let long = "X".repeat(65);
        assert_eq!(
            idx.partner_spelling(&long),
            long,
            "no designation: as given"
        );
        assert_eq!(idx.partner_spelling("7"), "7");
        assert_eq!(DesignationIndex::default().partner_spelling("p-a"), "p-a");
        // The credits of the line's own partner IDs (RESELLER, TIER1).
        let mut l = line();
        (l.reseller_mpn_id, l.mpn_id) = (Some("P-a"), Some("P-9"));
        let mut out = Vec::new();
        for a in [Association::Reseller, Association::Tier1] {
            idx.credits(
                &l,
                idx.customer("c1"),
                l.charge_start,
                a.into(),
                ConflictPolicy::Split,
                &mut out,
            )
            .unwrap();
        }
        let got: Vec<&str> = out.iter().map(|c| c.partner_id).collect();
        assert_eq!(got, ["P-A", "p-9"]);
    }

    #[test]
    fn shares_above_one_conflict() {
        let idx = DesignationIndex::new(vec![
            dsg(2, "a", Association::Pal, None, Some("0.7")),
            dsg(3, "b", Association::Pal, None, Some("0.5")),
        ]);
        let l = line();
        let mut out = Vec::new();
        let e = idx
            .credits(
                &l,
                idx.customer("c1"),
                l.charge_start,
                Association::Pal.into(),
                ConflictPolicy::Split,
                &mut out,
            )
            .unwrap_err();
        assert_eq!(
            e,
            AttributionError::SharesAboveOne {
                association: Association::Pal.into(),
                sum: "1.2".parse().unwrap(),
                lines: vec![2, 3]
            }
        );
        assert!(out.is_empty());
    }

    #[test]
    fn exclusive_conflicts_follow_the_policy() {
        let mut early = dsg(2, "a", Association::Dpor, None, None);
        early.valid_from = NaiveDate::from_ymd_opt(2023, 1, 1);
        let idx = DesignationIndex::new(vec![early, dsg(3, "b", Association::Dpor, None, None)]);
        let l = line();
        let mut out = Vec::new();
        idx.credits(
            &l,
            idx.customer("c1"),
            l.charge_start,
            Association::Dpor.into(),
            ConflictPolicy::Split,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out.iter()
                .map(|c| (c.partner_id, c.share.to_string()))
                .collect::<Vec<_>>(),
            [("a", "0.5".to_string()), ("b", "0.5".to_string())]
        );
        out.clear();
        idx.credits(
            &l,
            idx.customer("c1"),
            l.charge_start,
            Association::Dpor.into(),
            ConflictPolicy::LatestWins,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out.iter()
                .map(|c| (c.partner_id, c.share.to_string()))
                .collect::<Vec<_>>(),
            [("b", "1".to_string())]
        );
        out.clear();
        let e = idx
            .credits(
                &l,
                idx.customer("c1"),
                l.charge_start,
                Association::Dpor.into(),
                ConflictPolicy::Reject,
                &mut out,
            )
            .unwrap_err();
        assert_eq!(
            e,
            AttributionError::Conflict {
                association: Association::Dpor.into(),
                partners: vec!["a".into(), "b".into()],
                lines: vec![2, 3]
            }
        );
        assert!(out.is_empty());
    }

    #[test]
    fn subscription_designation_beats_customer_wide() {
        let idx = DesignationIndex::new(vec![
            dsg(2, "wide", Association::Dpor, None, None),
            dsg(3, "sub", Association::Dpor, Some("s1"), None),
        ]);
        let l = line();
        let mut out = Vec::new();
        idx.credits(
            &l,
            idx.customer("c1"),
            l.charge_start,
            Association::Dpor.into(),
            ConflictPolicy::Reject,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            out.iter()
                .map(|c| (c.partner_id, c.share.to_string()))
                .collect::<Vec<_>>(),
            [("sub", "1".to_string())]
        );
    }

    proptest::proptest! {
        /// Equal and mixed splits always sum to exactly 1 and never exceed it.
        #[test]
        fn shares_sum_to_exactly_one(blanks in 1usize..13, explicit in proptest::collection::vec(1u32..25, 0..4)) {
            let mut rows = Vec::new();
            for (i, e) in explicit.iter().enumerate() {
                rows.push(dsg(2 + i as u64, &format!("e{i}"), Association::Pal, None, Some(&format!("0.{e:02}"))));
            }
            for i in 0..blanks {
                rows.push(dsg(100 + i as u64, &format!("b{i:02}"), Association::Pal, None, None));
            }
            let idx = DesignationIndex::new(rows);
            let l = line();
            let mut out = Vec::new();
            idx.credits(&l, idx.customer("c1"), l.charge_start, Association::Pal.into(), ConflictPolicy::Split, &mut out).unwrap();
            let sum: Decimal = out.iter().map(|c| c.share).sum();
            proptest::prop_assert_eq!(sum, Decimal::ONE);
            proptest::prop_assert!(out.iter().all(|c| c.share > Decimal::ZERO));
        }
    }
}
