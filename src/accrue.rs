//! Accrue: apply the rules to one attributed billing line.
//!
//! For each program in force on the charge date that covers the product, every
//! credit of the program's associations earns `basis x rate x share`, kept exact.
//! A line no program pays is *not eligible*, with the reason of the program that
//! came closest to paying it.

use std::fmt::Write as _;

use rust_decimal::Decimal;

use chrono::NaiveDate;

use crate::attribute::{
    resolve_conflict, split_shares, window_closed, AttributionError, Credit, DesignationIndex,
    Role, Terms,
};
use crate::config::{workload_key, Association, Basis, Program, Rules, WorkloadRate, PRIORITY};
use crate::dates::{Month, Period};
use crate::ingest::designations::Designation;
use crate::ingest::usage::{UsageInput, UsageObs};
use crate::ingest::BillingLine;
use crate::model::{Attainment, TierNotes};
use crate::money::ExactArith;

/// One accrual: a partner's exact earning on one line under one program.
#[derive(Clone, Debug, PartialEq)]
pub struct Accrual<'a> {
    pub program: usize,
    pub partner_id: &'a str,
    pub association: Association,
    pub basis: Decimal,
    pub rate: Decimal,
    pub share: Decimal,
    pub amount: Decimal,
    pub designation: Option<&'a Designation>,
    /// Days of the charge period credited and the period's days, when the line
    /// has a charge end date (day proration).
    pub days: Option<(u32, u32)>,
    /// The accrual month: the month of the charge days this accrual pays for
    /// (a billing line is cut at month boundaries, so its days lie in one
    /// month), or the month of the usage record.
    pub month: Month,
}

/// Why no program pays a record (a billing line or a usage record), for both
/// kinds of program. Ordered from "furthest from paying" to "closest": a
/// record's reason is the closest of its programs' (and workloads') misses.
///
/// A revenue program checks, in this order, that it is in force on the charge
/// date, that some partner holds credit, that the charge is inside the window,
/// and that the product is covered. A usage program also checks the period,
/// the report, the workload, and attainment and growth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reason {
    /// Usage: dated outside the period: history (high-water mark, usage growth).
    OutsidePeriod = 0,
    /// Usage: a later report for the same tenant, workload and month replaced it.
    Superseded,
    /// No program is in force on the record's date.
    RuleNotInForce,
    /// Usage: no usage program lists the workload.
    WorkloadNotCovered,
    /// No partner holds an association the programs pay.
    NoDesignation,
    /// Usage: the designation starts after the usage date (CPOR: usage before the claim).
    BeforeAssociation,
    /// Designated, but the date falls outside the program's window.
    OutsideWindow,
    /// Billing: a partner would earn, but the publisher is not covered or a
    /// product qualifier (e.g. Trial) is excluded.
    ExcludedProduct,
    /// Usage: paid available units are 0: attainment not computable.
    PauZero,
    /// Usage: attainment below the program's first target.
    BelowTarget,
    /// Usage: nothing above the prior high-water mark (compensable units 0).
    NoGrowth,
    /// Usage: explicit designation shares above 1.
    ShareConflict,
    /// Billing: not a charge: a tax row (FOCUS `ChargeCategory = Tax`).
    NotRevenue,
}

impl Reason {
    /// Every reason, in rank order (`r as usize` indexes this array).
    pub const ALL: [Reason; 13] = [
        Reason::OutsidePeriod,
        Reason::Superseded,
        Reason::RuleNotInForce,
        Reason::WorkloadNotCovered,
        Reason::NoDesignation,
        Reason::BeforeAssociation,
        Reason::OutsideWindow,
        Reason::ExcludedProduct,
        Reason::PauZero,
        Reason::BelowTarget,
        Reason::NoGrowth,
        Reason::ShareConflict,
        Reason::NotRevenue,
    ];

    /// The reasons a billing line can have, in the order reports list them.
    pub const BILLING: [Reason; 5] = [
        Reason::RuleNotInForce,
        Reason::NoDesignation,
        Reason::OutsideWindow,
        Reason::ExcludedProduct,
        Reason::NotRevenue,
    ];

    /// The reasons a usage record can have, in the order reports list them.
    pub const USAGE: [Reason; 11] = [
        Reason::OutsidePeriod,
        Reason::Superseded,
        Reason::RuleNotInForce,
        Reason::WorkloadNotCovered,
        Reason::NoDesignation,
        Reason::BeforeAssociation,
        Reason::OutsideWindow,
        Reason::PauZero,
        Reason::BelowTarget,
        Reason::NoGrowth,
        Reason::ShareConflict,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            Reason::OutsidePeriod => "outside-period",
            Reason::Superseded => "superseded",
            Reason::RuleNotInForce => "rule-not-in-force",
            Reason::WorkloadNotCovered => "workload-not-covered",
            Reason::NoDesignation => "no-designation",
            Reason::BeforeAssociation => "before-association",
            Reason::OutsideWindow => "outside-window",
            Reason::ExcludedProduct => "excluded-product",
            Reason::PauZero => "pau-zero",
            Reason::BelowTarget => "below-target",
            Reason::NoGrowth => "no-growth",
            Reason::ShareConflict => "share-conflict",
            Reason::NotRevenue => "not-revenue",
        }
    }

    /// The reason named `s` ([`Reason::as_str`]).
    pub fn parse(s: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// The billing columns (a bit per `MatchedId as usize`) through which the
/// subscription designations behind `accruals` named `line`: 0 when every
/// accrual came from a customer-wide designation or the bill itself.
pub fn matched_columns(line: &BillingLine<'_>, accruals: &[Accrual<'_>]) -> u8 {
    accruals
        .iter()
        .filter_map(|a| a.designation?.subscription_id.as_deref())
        .filter_map(|s| crate::attribute::matched_id(s, line))
        .fold(0, |bits, m| bits | 1 << m as u8)
}

/// What happened to one line.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// At least one accrual was appended.
    Accrued,
    NotEligible {
        reason: Reason,
        detail: String,
    },
    /// The line cannot be attributed (shares of one association above 1).
    Rejected {
        column: String,
        value: String,
        reason: String,
    },
}

/// Scratch space reused across lines (no allocation per line on the hot path).
#[derive(Default)]
pub struct Scratch<'a> {
    credits: Vec<Credit<'a>>,
    segments: Vec<Segment>,
    /// The dates where a line's segments start (see [`segments`]).
    cuts: Vec<NaiveDate>,
    misses: Vec<(usize, Reason, Option<u64>)>,
    /// Tier decisions of the lines accrued with this scratch (a worker's).
    pub tier_notes: TierNotes,
}

impl Scratch<'_> {
    /// Empty buffers that add tier decisions to `tier_notes`.
    pub fn with_notes(tier_notes: TierNotes) -> Self {
        Scratch {
            tier_notes,
            ..Scratch::default()
        }
    }

    /// The same buffers, for borrowing from another record.
    pub fn recycle<'b>(self) -> Scratch<'b> {
        Scratch {
            credits: crate::util::recycle(self.credits),
            segments: self.segments,
            cuts: self.cuts,
            misses: self.misses,
            tier_notes: self.tier_notes,
        }
    }
}

fn has_qualifier(qualifiers: &str, wanted: &str) -> bool {
    // `["AddOn","Trial"]`, or a bare `Trial`, or `AddOn;Trial`.
    !qualifiers.is_empty()
        && qualifiers
            .split([',', ';', '[', ']', '|'])
            .map(|t| t.trim().trim_matches(['"', '\'']).trim())
            .any(|t| t.eq_ignore_ascii_case(wanted))
}

fn excluded(p: &Program, line: &BillingLine<'_>) -> bool {
    (!p.publishers.is_empty()
        && !p
            .publishers
            .iter()
            .any(|x| crate::ingest::billing::same_publisher(x, line.publisher)))
        || p.exclude_qualifiers
            .iter()
            .any(|q| has_qualifier(line.qualifiers, q))
}

/// Decimals kept on the prorated part of a line's basis; the last part takes
/// the remainder so the parts sum to exactly the line.
pub const PRORATION_DP: u32 = 6;

/// A line amount that cannot be computed exactly: the row is rejected,
/// naming its `Subtotal`, `what` and `why`.
fn amount_rejected(line: &BillingLine<'_>, what: &str, why: &str) -> Outcome {
    Outcome::Rejected {
        column: "Subtotal".into(),
        value: line.subtotal.to_string(),
        reason: format!("{what} cannot be computed: {why}"),
    }
}

/// Why a product cannot be computed ([`amount_rejected`]).
const BEYOND: &str = "it would exceed the largest decimal (about 7.9e28)";

/// `basis x rate x share`, or `None` when it exceeds `Decimal::MAX`.
///
/// A product with more digits than a `Decimal` holds is rounded by `Decimal`
/// to the digits its 96-bit mantissa holds (28 or 29), half to even (see "Precision" in docs/accruals.md):
/// a function of this line alone, the same on every thread.
pub fn accrual_amount(basis: Decimal, rate: Decimal, share: Decimal) -> Option<Decimal> {
    basis.checked_mul(rate)?.checked_mul(share)
}

/// A part of a line's charge period in which the same designations hold, inside
/// one calendar month.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Segment {
    from: NaiveDate,
    days: u32,
    basis: Decimal,
}

/// Splits the line's charge period `[ChargeStartDate, ChargeEndDate]` (both
/// inclusive) where a designation of one of the program's associations starts
/// or ends, where its window closes, and where a calendar month starts (so each
/// part has one accrual month). Each part gets its days' share of the basis,
/// kept to [`PRORATION_DP`] decimals; the last part takes the remainder, so the
/// parts sum to exactly the line. Without a charge end date, or without such a
/// date inside the period, there is one part: the whole line. `None` when a
/// part cannot be computed (a `Subtotal` so large that `Subtotal x days`
/// exceeds `Decimal::MAX`).
fn segments(
    p: &Program,
    designations: &[Designation],
    line: &BillingLine<'_>,
    cuts: &mut Vec<NaiveDate>,
    out: &mut Vec<Segment>,
) -> Option<u32> {
    out.clear();
    cuts.clear();
    let start = line.charge_start;
    let end = match line.charge_end {
        Some(e) if e > start => e,
        _ => {
            let days = line.charge_end.map(|_| 1).unwrap_or(0);
            out.push(Segment {
                from: start,
                days,
                basis: line.subtotal,
            });
            return Some(days);
        }
    };
    let total = (end - start).num_days() as u32 + 1;
    for d in designations {
        if !p.pays(d.association) {
            continue;
        }
        for b in [d.valid_from, d.valid_to].into_iter().flatten() {
            if start < b && b <= end {
                cuts.push(b);
            }
        }
        // The window's end, when the line's dates reach it.
        if let (Some(w), Some(f)) = (p.window_months, d.valid_from) {
            cuts.extend(crate::dates::add_months_within(f, w, start, end));
        }
    }
    month_cuts(start, end, cuts);
    if cuts.is_empty() {
        out.push(Segment {
            from: start,
            days: total,
            basis: line.subtotal,
        });
        return Some(total);
    }
    cuts.sort();
    cuts.dedup();
    let mut from = start;
    let mut given = Decimal::ZERO;
    for next in cuts
        .iter()
        .copied()
        .chain(std::iter::once(end + chrono::Days::new(1)))
    {
        let days = (next - from).num_days() as u32;
        out.push(Segment {
            from,
            days,
            basis: Decimal::ZERO,
        });
        from = next;
    }
    let last = out.len() - 1;
    for (i, seg) in out.iter_mut().enumerate() {
        if i == last {
            seg.basis = line.subtotal.exact_sub(given)?;
        } else {
            seg.basis = prorate(line.subtotal, seg.days, total)?;
            given = given.exact_add(seg.basis)?;
        }
    }
    Some(total)
}

/// `subtotal x days / total`, rounded half-even to [`PRORATION_DP`] decimals.
fn prorate(subtotal: Decimal, days: u32, total: u32) -> Option<Decimal> {
    match prorate_in_integers(subtotal, days, total) {
        Some(d) => Some(d),
        None => prorate_decimal(subtotal, days, total),
    }
}

fn prorate_decimal(subtotal: Decimal, days: u32, total: u32) -> Option<Decimal> {
    let quotient = subtotal
        .checked_mul(Decimal::from(days))?
        .checked_div(Decimal::from(total))?;
    Some(quotient.round_dp_with_strategy(
        PRORATION_DP,
        rust_decimal::RoundingStrategy::MidpointNearestEven,
    ))
}

/// [`prorate`] in 128-bit integers, where it gives the decimal division's
/// value and scale: a subtotal of a real invoice (at most [`PRORATION_DP`]
/// decimals, under 10^9) whose part does not come out exactly within
/// [`PRORATION_DP`] decimals. The decimal division computes 28 digits before
/// rounding (a tenth of `validate`'s time); its result then has more than
/// six decimals, so the rounding gives scale six, and the same value: the
/// digits of such a quotient past the sixth decimal hold no run of zeros or
/// nines long enough for the 28th digit's rounding to move it across a half
/// (its denominator is a number of days). `None` otherwise, the decimal
/// division's case: an exact part keeps the scale that division gives it,
/// and a negative part that rounds to zero keeps the decimal's sign.
fn prorate_in_integers(subtotal: Decimal, days: u32, total: u32) -> Option<Decimal> {
    let scale = subtotal.scale();
    if scale > PRORATION_DP || total == 0 {
        return None;
    }
    let m = subtotal.mantissa();
    if m.unsigned_abs() >= 10u128.pow(9 + scale) {
        return None;
    }
    let t = u128::from(total);
    // At most 10^15 x 2^32: far inside 128 bits.
    let n = m.unsigned_abs() * u128::from(days) * 10u128.pow(PRORATION_DP - scale);
    let (mut q, r) = (n / t, n % t);
    if r == 0 {
        return None;
    }
    if 2 * r > t || (2 * r == t && q % 2 == 1) {
        q += 1;
    }
    if q == 0 && m < 0 {
        return None;
    }
    let q = i128::try_from(q).ok()?;
    Some(Decimal::from_i128_with_scale(
        if m < 0 { -q } else { q },
        PRORATION_DP,
    ))
}

/// Appends to `cuts` the first day of every calendar month that starts inside
/// `(start, end]`: the month boundaries of a charge period.
pub fn month_cuts(start: NaiveDate, end: NaiveDate, cuts: &mut Vec<NaiveDate>) {
    let mut m = Month::of(start).next();
    loop {
        let first = m.first_day();
        if first > end || first <= start {
            break;
        }
        cuts.push(first);
        m = m.next();
    }
}

/// Keeps, for each partner, only the accruals of its highest-priority
/// association (Microsoft's de-duplication order).
fn dedupe_by_priority(out: &mut Vec<Accrual<'_>>, from: usize) {
    let rank = |a: Association| {
        PRIORITY
            .iter()
            .position(|x| *x == a)
            .unwrap_or(PRIORITY.len())
    };
    let mut i = from;
    while i < out.len() {
        let best = out[from..]
            .iter()
            .filter(|o| o.partner_id == out[i].partner_id)
            .map(|o| rank(o.association))
            .min()
            .unwrap_or(0);
        if rank(out[i].association) > best {
            out.remove(i);
        } else {
            i += 1;
        }
    }
}

fn rejected(e: AttributionError, designations_file: &str) -> Outcome {
    let join = |lines: &[u64]| {
        lines
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match e {
        AttributionError::SharesAboveOne { association, sum, lines } => Outcome::Rejected {
            column: "share".into(),
            value: sum.normalize().to_string(),
            reason: format!(
                "{association} shares for this customer and subscription sum to {} (above 1) in {designations_file} lines {}",
                sum.normalize(),
                join(&lines)
            ),
        },
        AttributionError::PartnerTwice { association, shares } => Outcome::Rejected {
            column: "share".into(),
            value: shares.values(),
            reason: format!(
                "partner {} holds {association} for this customer on the charge date through \
                 designations with different shares ({designations_file} {}); a partner's share \
                 is given once",
                shares.partner,
                shares.lines()
            ),
        },
        AttributionError::Conflict { association, partners, lines } => Outcome::Rejected {
            column: "association".into(),
            value: association.to_string(),
            reason: format!(
                "partners {} all hold {association} for this subscription on the charge date ({designations_file} lines {}); \
                 the rules say conflicts = \"reject\"",
                partners.join(", "),
                join(&lines)
            ),
        },
    }
}

/// Applies every program to `line`, appending accruals to `out`.
pub fn accrue_line<'a>(
    rules: &'a Rules,
    index: &'a DesignationIndex,
    designations_file: &str,
    line: &BillingLine<'a>,
    customer_key: &str,
    scratch: &mut Scratch<'a>,
    out: &mut Vec<Accrual<'a>>,
) -> Outcome {
    let ctx = Context {
        rules,
        index,
        designations_file,
        attainment: None,
    };
    accrue_line_with(
        &ctx,
        index.customer(customer_key),
        line,
        customer_key,
        scratch,
        out,
    )
}

/// What accruing a record reads besides the record: the same for every record
/// of a run.
#[derive(Clone, Copy)]
pub struct Context<'a, 'f> {
    pub rules: &'a Rules,
    pub index: &'a DesignationIndex,
    /// The designations file as given (named in details and rejects).
    pub designations_file: &'f str,
    /// Decides the rate of programs with `tiers` (see [`crate::attain::rate_for`]).
    pub attainment: Option<&'f crate::attain::AttainmentTable>,
}

/// What one credit earns on one segment of a billing line under program `p`
/// (index `pi`): `Ok(Some(accrual))`; `Ok(None)` for a usage program;
/// `Err(what)` naming the amount that cannot be computed exactly. The
/// credit's designation is inside the program's window on the segment
/// ([`DesignationIndex::credits`] credits no other).
fn credit_accrual<'a>(
    p: &Program,
    pi: usize,
    seg: Segment,
    rate: Decimal,
    total_days: u32,
    c: Credit<'a>,
) -> Result<Option<Accrual<'a>>, String> {
    let basis = match p.basis() {
        Basis::BilledRevenue => seg.basis,
        Basis::Usage => return Ok(None),
    };
    let Some(amount) = accrual_amount(basis, rate, c.share) else {
        return Err(format!("the accrual {basis} x {rate} x {}", c.share));
    };
    Ok(Some(Accrual {
        program: pi,
        partner_id: c.partner_id,
        association: c.association,
        basis,
        rate,
        share: c.share,
        amount,
        designation: c.designation,
        days: (total_days > 0).then_some((seg.days, total_days)),
        month: Month::of(seg.from),
    }))
}

/// [`accrue_line`] with a [`Context`] (which may carry the attainment table)
/// and the customer's designations already looked up
/// (`index.customer(customer_key)`).
pub fn accrue_line_with<'a>(
    ctx: &Context<'a, '_>,
    designations: &'a [Designation],
    line: &BillingLine<'a>,
    customer_key: &str,
    scratch: &mut Scratch<'a>,
    out: &mut Vec<Accrual<'a>>,
) -> Outcome {
    if line.tax {
        return Outcome::NotEligible {
            reason: Reason::NotRevenue,
            detail: "tax row: incentives accrue on pre-tax charges".into(),
        };
    }
    let Context {
        rules,
        index,
        designations_file,
        attainment,
    } = *ctx;
    let date = line.charge_start;
    let start = out.len();
    scratch.misses.clear();
    for (pi, p) in rules.programs.iter().enumerate() {
        if p.basis() == Basis::Usage {
            // Earns from --usage rows (accrue_observation), never from billing lines.
            continue;
        }
        if !p.in_force(date) {
            scratch.misses.push((pi, Reason::RuleNotInForce, None));
            continue;
        }
        let rate = crate::attain::rate_for(
            p,
            pi,
            rules,
            line,
            customer_key,
            attainment,
            &mut scratch.tier_notes,
        );
        let before = out.len();
        let mut window_miss = None;
        let Some(total_days) = segments(
            p,
            designations,
            line,
            &mut scratch.cuts,
            &mut scratch.segments,
        ) else {
            out.truncate(start);
            return amount_rejected(
                line,
                "the prorated part of the charge (Subtotal x days)",
                "it would be beyond about 7.9e28, or the parts' sum would need more than 28 \
                 significant digits",
            );
        };
        for si in 0..scratch.segments.len() {
            let seg = scratch.segments[si];
            let seg_start = out.len();
            for i in 0..p.associations.len() {
                let Some(role) = Role::of(&p.associations, i) else {
                    continue;
                };
                scratch.credits.clear();
                let terms = Terms {
                    conflicts: rules.conflicts,
                    window_months: p.window_months,
                };
                if let Err(e) = index.credits(
                    line,
                    designations,
                    seg.from,
                    role,
                    terms,
                    &mut scratch.credits,
                ) {
                    out.truncate(start);
                    return rejected(e, designations_file);
                }
                if scratch.credits.is_empty() && window_miss.is_none() {
                    window_miss = index
                        .closed_window(line, designations, seg.from, role, p.window_months)
                        .map(|d| d.line);
                }
                for c in scratch.credits.drain(..) {
                    match credit_accrual(p, pi, seg, rate, total_days, c) {
                        Ok(Some(a)) => out.push(a),
                        Ok(None) => {}
                        Err(what) => {
                            out.truncate(start);
                            return amount_rejected(line, &what, BEYOND);
                        }
                    }
                }
            }
            if p.dedupe_by_priority {
                dedupe_by_priority(out, seg_start);
            }
        }
        // Asked only of a program that credits someone: most lines of most
        // programs do not, and the publisher and qualifier tests were ~3 % of
        // `validate`.
        if out.len() > before && excluded(p, line) {
            out.truncate(before);
            scratch.misses.push((pi, Reason::ExcludedProduct, None));
        } else if out.len() == before {
            match window_miss {
                Some(l) => scratch.misses.push((pi, Reason::OutsideWindow, Some(l))),
                None => scratch.misses.push((pi, Reason::NoDesignation, None)),
            }
        }
    }
    if out.len() > start {
        return Outcome::Accrued;
    }
    let reason = scratch
        .misses
        .iter()
        .map(|m| m.1)
        .max()
        .unwrap_or(Reason::RuleNotInForce);
    let detail = miss_detail(rules, &scratch.misses, line, designations_file);
    Outcome::NotEligible { reason, detail }
}

/// The usage arm of the accrue stage: applies every usage program to one usage
/// observation `o` (index `oi` in `usage`), appending accruals to `out`.
/// Programs pay, per tenant, workload and month of the period,
/// `min(compensable units, cap_units) x unit rate` of the highest target
/// reached, times the designation's share, as for billing: the rules'
/// `conflicts` policy ([`resolve_conflict`]), then [`split_shares`], then
/// `dedupe = "priority"` (`dedupe_by_priority`).
pub fn accrue_observation<'a>(
    ctx: &Context<'a, '_>,
    usage: &UsageInput,
    oi: usize,
    o: &UsageObs,
    period: Period,
    out: &mut Vec<Accrual<'a>>,
) -> Outcome {
    let not_eligible = |reason: Reason, detail: String| Outcome::NotEligible { reason, detail };
    if !period.contains(o.date) {
        return not_eligible(
            Reason::OutsidePeriod,
            format!(
                "{}: {} is outside the period {period} (kept as history for the high-water mark and usage growth)",
                o.workload_name, o.date
            ),
        );
    }
    let Some(table) = ctx.attainment else {
        return not_eligible(Reason::Superseded, "no attainment row".into());
    };
    if let Some(&w) = table.superseded.get(&oi) {
        let wo = &usage.obs[w];
        return not_eligible(
            Reason::Superseded,
            format!(
                "{}: replaced by the later report {}:{} for {} {}",
                o.workload_name,
                usage.files[wo.file].input.display,
                wo.line,
                o.workload_name,
                o.month
            ),
        );
    }
    let Some(att) = table.winner_of.get(&oi).and_then(|k| table.rows.get(k)) else {
        return not_eligible(Reason::Superseded, "no attainment row".into());
    };
    let start = out.len();
    let mut misses: Vec<(Reason, String)> = Vec::new();
    for (pi, p) in ctx.rules.programs.iter().enumerate() {
        if p.basis() != Basis::Usage {
            continue;
        }
        let paid = usage_program(ctx, p, o).and_then(|(wr, credits)| {
            let (units, rate) = usage_units(att, wr)?;
            Ok((units, rate, credits))
        });
        match paid {
            Ok((units, rate, credits)) => {
                let program_start = out.len();
                for (d, share) in credits {
                    let Some(amount) = accrual_amount(units, rate, share) else {
                        out.truncate(start);
                        return Outcome::Rejected {
                            column: "units".into(),
                            value: units.to_string(),
                            reason: format!(
                                "{}: the accrual {units} x {rate} x {share} would exceed the largest decimal (about 7.9e28)",
                                o.workload_name
                            ),
                        };
                    };
                    out.push(Accrual {
                        program: pi,
                        partner_id: &d.partner_id,
                        association: d.association,
                        basis: units,
                        rate,
                        share,
                        amount,
                        designation: Some(d),
                        days: None,
                        month: o.month,
                    });
                }
                if p.dedupe_by_priority {
                    dedupe_by_priority(out, program_start);
                }
            }
            Err((r, d)) => misses.push((r, format!("{}: {}: {d}", p.id, o.workload_name))),
        }
    }
    if out.len() > start {
        return Outcome::Accrued;
    }
    if misses.is_empty() {
        return not_eligible(
            Reason::RuleNotInForce,
            format!("{}: the rules have no usage program", o.workload_name),
        );
    }
    let reason = misses
        .iter()
        .map(|m| m.0)
        .max()
        .unwrap_or(Reason::RuleNotInForce);
    let detail = misses
        .into_iter()
        .map(|m| m.1)
        .collect::<Vec<_>>()
        .join("; ");
    not_eligible(reason, detail)
}

/// A usage miss: the reason and its detail (without the program and workload).
type UsageMiss = (Reason, String);

/// Usage program `p` for observation `o`: the workload's rates and the
/// partners credited (designations of the program's associations for the
/// tenant and workload, valid on the date, inside the window; two partners
/// of an exclusive association resolved by the rules' `conflicts`, as on a
/// billing line; shares split); or why none is.
#[allow(clippy::type_complexity)]
fn usage_program<'a, 'p>(
    ctx: &Context<'a, '_>,
    p: &'p Program,
    o: &UsageObs,
) -> Result<(&'p WorkloadRate, Vec<(&'a Designation, Decimal)>), UsageMiss> {
    let date = o.date;
    if !p.in_force(date) {
        return Err((
            Reason::RuleNotInForce,
            format!("rule not in force on {date}"),
        ));
    }
    let Some(wr) = p.workloads().iter().find(|w| w.workload == o.workload) else {
        return Err((
            Reason::WorkloadNotCovered,
            "workload not in the program".into(),
        ));
    };
    let mut credits: Vec<(&'a Designation, Decimal)> = Vec::new();
    let mut before: Option<&Designation> = None;
    let mut window: Option<&Designation> = None;
    let mut conflict = None;
    for i in 0..p.associations.len() {
        let Some(a) = Role::of(&p.associations, i) else {
            continue;
        };
        let mut split: Vec<Credit<'a>> = Vec::new();
        for d in ctx.index.of_customer(&o.customer_id) {
            if !a.holds(d.association)
                || !(d.workload.is_empty() || workload_key(&d.workload) == o.workload)
            {
                continue;
            }
            if d.valid_from.is_some_and(|f| date < f) {
                before = before.or(Some(d));
                continue;
            }
            if !d.valid_on(date) {
                continue;
            }
            if window_closed(d, p.window_months, date) {
                window = window.or(Some(d));
                continue;
            }
            split.push(Credit {
                partner_id: &d.partner_id,
                association: d.association,
                share: d.share.unwrap_or_default(),
                designation: Some(d),
            });
        }
        // The rules' `conflicts` policy, as for a billing line: the partners
        // that would share this tenant and workload.
        match resolve_conflict(&mut split, 0, a, ctx.rules.conflicts) {
            Ok(true) => {
                credits.extend(split.iter().filter_map(|c| Some((c.designation?, c.share))));
                continue;
            }
            Ok(false) => {}
            Err(e) => return Err(usage_conflict(e, ctx.designations_file, date)),
        }
        let designation = |c: &Credit<'a>| c.designation.map(|d| (d.share, d.line));
        if let Err(shares) = crate::attribute::one_per_partner(
            &mut split,
            0,
            |c| c.partner_id,
            |c| designation(c).and_then(|d| d.0),
            |c| designation(c).map_or(0, |d| d.1),
        ) {
            return Err((
                Reason::ShareConflict,
                format!(
                    "partner {} holds {} for this customer through designations with \
                     different shares ({} {}); a partner's share is given once",
                    shares.partner,
                    a.as_held(&split),
                    ctx.designations_file,
                    shares.lines()
                ),
            ));
        }
        match split_shares(
            &mut split,
            |c| c.designation.and_then(|d| d.share),
            |c, s| c.share = s,
        ) {
            Ok(_) => credits.extend(split.iter().filter_map(|c| Some((c.designation?, c.share)))),
            Err(sum) => conflict = Some((a.as_held(&split), sum)),
        }
    }
    if let Some((a, sum)) = conflict {
        return Err((
            Reason::ShareConflict,
            format!("{a} shares add up to {} (more than 1)", sum.normalize()),
        ));
    }
    if !credits.is_empty() {
        return Ok((wr, credits));
    }
    let file = ctx.designations_file;
    Err(match (window, before) {
        (Some(d), _) => (
            Reason::OutsideWindow,
            format!(
                "outside the {}-month window of the designation ({file} line {})",
                p.window_months.unwrap_or(0),
                d.line
            ),
        ),
        (None, Some(d)) => (
            Reason::BeforeAssociation,
            format!(
                "usage dated {date} is before the {} designation's valid_from {} ({file} line {})",
                d.association,
                d.valid_from.map(|f| f.to_string()).unwrap_or_default(),
                d.line
            ),
        ),
        (None, None) => {
            let assoc: Vec<&str> = p.associations.iter().map(|a| a.as_str()).collect();
            (
                Reason::NoDesignation,
                format!("no {} credit on {date}", assoc.join("/")),
            )
        }
    })
}

/// The usage miss of a conflict the rules reject (`conflicts = "reject"`):
/// the partners and their designation lines, like a billing line's reject.
fn usage_conflict(e: AttributionError, designations_file: &str, date: NaiveDate) -> UsageMiss {
    match e {
        AttributionError::Conflict {
            association,
            partners,
            lines,
        } => {
            let lines: Vec<String> = lines.iter().map(u64::to_string).collect();
            (
                Reason::ShareConflict,
                format!(
                    "partners {} all hold {association} for this tenant and workload on {date} \
                     ({designations_file} lines {}); the rules say conflicts = \"reject\"",
                    partners.join(", "),
                    lines.join(", ")
                ),
            )
        }
        // Not a result of the policy step; worded as a billing line's reject.
        other => match rejected(other, designations_file) {
            Outcome::Rejected { reason, .. } => (Reason::ShareConflict, reason),
            _ => (Reason::ShareConflict, String::new()),
        },
    }
}

/// The compensable units and unit rate of a tenant-workload-month: attainment
/// must be computable and reach the first target, and usage must grow above
/// the prior high-water mark (capped at `cap_units`).
fn usage_units(att: &Attainment, wr: &WorkloadRate) -> Result<(Decimal, Decimal), UsageMiss> {
    let Some(a) = att.attainment else {
        return Err((
            Reason::PauZero,
            format!(
                "paid available units are 0 ({}): attainment not computable",
                att.pau_source.as_str()
            ),
        ));
    };
    let Some(level) = crate::attain::highest_target(Some(a), &wr.targets) else {
        return Err((
            Reason::BelowTarget,
            format!(
                "attainment {}/{} = {a} is below the first target {}",
                att.mau, att.pau, wr.targets[0]
            ),
        ));
    };
    let units = match wr.cap_units {
        Some(c) => att.compensable.min(Decimal::from(c)),
        None => att.compensable,
    };
    if units <= Decimal::ZERO {
        return Err((
            Reason::NoGrowth,
            format!(
                "min(MAU {}, PAU {}) does not exceed the prior high-water mark {}",
                att.mau, att.pau, att.prior_hwm
            ),
        ));
    }
    Ok((units, wr.unit_rates[level]))
}

/// The not-eligible detail of a billing line: every program's miss, in rules order.
fn miss_detail(
    rules: &Rules,
    misses: &[(usize, Reason, Option<u64>)],
    line: &BillingLine<'_>,
    designations_file: &str,
) -> String {
    let date = line.charge_start;
    let mut detail = String::new();
    for &(pi, r, dline) in misses {
        let p = &rules.programs[pi];
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        let _ = write!(detail, "{}: ", p.id);
        match r {
            Reason::RuleNotInForce => {
                let _ = write!(detail, "rule not in force on {date}");
            }
            Reason::ExcludedProduct => {
                if !p.publishers.is_empty()
                    && !p
                        .publishers
                        .iter()
                        .any(|x| crate::ingest::billing::same_publisher(x, line.publisher))
                {
                    let _ = write!(detail, "publisher '{}' not covered", line.publisher);
                } else {
                    let _ = write!(detail, "product qualifiers {} excluded", line.qualifiers);
                }
            }
            Reason::NotRevenue => detail.push_str("tax row"),
            Reason::NoDesignation => {
                let assoc: Vec<&str> = p.associations.iter().map(|a| a.as_str()).collect();
                let _ = write!(detail, "no {} credit on {date}", assoc.join("/"));
            }
            Reason::OutsideWindow => {
                let _ = write!(
                    detail,
                    "outside the {}-month window of the designation ({} line {})",
                    p.window_months.unwrap_or(0),
                    designations_file,
                    dline.unwrap_or(0)
                );
            }
            // The usage-only reasons: a billing line never gets them.
            other => detail.push_str(other.as_str()),
        }
    }
    detail
}

/// For tests of the later stages: an accrual of program 0 to reseller
/// `partner` of `amount` (at 1 %, the whole share) in `month` of 2026.
#[cfg(test)]
pub(crate) fn reseller_accrual(partner: &str, amount: Decimal, month: u32) -> Accrual<'_> {
    Accrual {
        program: 0,
        partner_id: partner,
        association: Association::Reseller,
        basis: amount * Decimal::from(100),
        rate: Decimal::new(1, 2),
        share: Decimal::ONE,
        amount,
        designation: None,
        days: None,
        month: Month::from_ym(2026, month),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 20_000, .. Default::default() })]

        /// Wherever the integer proration answers, it gives the decimal
        /// division's value and scale (the text printed in the ledger).
        #[test]
        fn proration_in_integers_is_the_decimal_divisions(
            mantissa in -10_000_000_000_000i64..10_000_000_000_000i64,
            scale in 0u32..9,
            total in 1u32..400,
            part in 0u32..400,
        ) {
            // Mostly inside the integer range (under 10^9), some beyond it.
            let bound = 10i64.pow(9 + scale.min(PRORATION_DP));
            let subtotal = Decimal::new(if part % 8 == 0 { mantissa } else { mantissa % bound }, scale);
            let days = 1 + part % total;
            let slow = prorate_decimal(subtotal, days, total).unwrap();
            proptest::prop_assert_eq!(
                prorate(subtotal, days, total).unwrap().to_string(),
                slow.to_string(),
                "{} x {}/{}", subtotal, days, total
            );
        }
    }

    #[test]
    fn proration_in_integers_on_its_edges() {
        for (subtotal, days, total, integers) in [
            ("100", 1, 3, true),
            ("999999999.999998", 30, 31, true),
            ("0.000001", 1, 3, true),
            ("0.000002", 1, 4, true),
            ("0.000003", 1, 4, true),
            ("-0.000003", 1, 4, true),
            // Exact within six decimals: the division's scale decides.
            ("1.1", 1, 2, false),
            ("100.00", 15, 30, false),
            // A negative part that rounds to zero keeps the decimal's sign.
            ("-0.000001", 1, 3, false),
            // Beyond the range of real invoices.
            ("1000000000", 1, 3, false),
            ("1.0000001", 1, 3, false),
        ] {
            let s: Decimal = subtotal.parse().unwrap();
            let what = format!("{subtotal} x {days}/{total}");
            assert_eq!(
                prorate_in_integers(s, days, total).is_some(),
                integers,
                "{what}"
            );
            let slow = prorate_decimal(s, days, total).unwrap();
            assert_eq!(
                prorate(s, days, total).unwrap().to_string(),
                slow.to_string(),
                "{what}"
            );
        }
    }
    use crate::config::parse_rules;

    #[test]
    fn every_reason_has_its_own_name_and_each_kind_lists_its_own_in_rank_order() {
        let mut names: Vec<&str> = Reason::ALL.iter().map(Reason::as_str).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len(), "duplicate reason name");
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(Reason::parse(r.as_str()), Some(*r));
            assert_eq!(*r as usize, i, "ALL is indexed by the discriminant");
            assert!(
                Reason::BILLING.contains(r) || Reason::USAGE.contains(r),
                "{r:?} unused"
            );
        }
        for kind in [&Reason::BILLING[..], &Reason::USAGE[..]] {
            assert!(
                kind.windows(2).all(|w| w[0] < w[1]),
                "not in rank order: {kind:?}"
            );
        }
        // A usage record's reason never shows in a billing file's counts, and back.
        assert!(!Reason::BILLING.contains(&Reason::PauZero));
        assert!(!Reason::USAGE.contains(&Reason::ExcludedProduct));
        assert_eq!(Reason::parse("no-such-reason"), None);
    }
    use crate::money::Currency;

    const RULES: &str = r#"
[[program]]
id = "por"
associations = ["DPOR"]
rate = "0.04"
window_months = 36
valid_from = "2019-07-01"
exclude_qualifiers = ["Trial"]
publishers = ["Microsoft Corporation"]
[[program]]
id = "resale"
associations = ["RESELLER"]
rate = "0.01"
"#;

    fn dsg(from: (i32, u32, u32)) -> Designation {
        Designation {
            line: 2,
            customer_id: "c1".into(),
            partner_id: "p1".into(),
            partner_name: String::new(),
            association: Association::Dpor,
            workload: String::new(),
            subscription_id: None,
            share: None,
            valid_from: NaiveDate::from_ymd_opt(from.0, from.1, from.2),
            valid_to: None,
        }
    }

    fn line(
        date: (i32, u32, u32),
        amount: &str,
        reseller: Option<&'static str>,
    ) -> BillingLine<'static> {
        BillingLine {
            customer_id: "C1",
            customer_name: "",
            subscription_id: "S1",
            charge_start: NaiveDate::from_ymd_opt(date.0, date.1, date.2).unwrap(),
            charge_end: None,
            subtotal: amount.parse().unwrap(),
            currency: Currency::parse("EUR").unwrap(),
            mpn_id: None,
            reseller_mpn_id: reseller,
            publisher: "Microsoft Corporation",
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

    fn run(
        rules: &Rules,
        idx: &DesignationIndex,
        l: &BillingLine<'static>,
    ) -> (Outcome, Vec<String>) {
        let mut out = Vec::new();
        let mut s = Scratch::default();
        let o = accrue_line(rules, idx, "d.csv", l, "c1", &mut s, &mut out);
        (
            o,
            out.iter()
                .map(|a| {
                    format!(
                        "{}:{}:{}",
                        rules.programs[a.program].id, a.partner_id, a.amount
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn pays_each_program_and_reverses_credits() {
        let rules = parse_rules(RULES).unwrap();
        let idx = DesignationIndex::new(vec![dsg((2024, 1, 1))]);
        let (o, acc) = run(&rules, &idx, &line((2024, 2, 1), "2000.00", Some("r9")));
        assert_eq!(o, Outcome::Accrued);
        assert_eq!(acc, ["por:p1:80.0000", "resale:r9:20.0000"]);
        let (_, acc) = run(&rules, &idx, &line((2024, 2, 1), "-2000.00", None));
        assert_eq!(acc, ["por:p1:-80.0000"]);
    }

    #[test]
    fn window_is_exclusive_at_its_end() {
        let rules = parse_rules(RULES).unwrap();
        let idx = DesignationIndex::new(vec![dsg((2024, 1, 1))]);
        let (o, _) = run(&rules, &idx, &line((2026, 12, 31), "10", None));
        assert_eq!(o, Outcome::Accrued);
        let (o, _) = run(&rules, &idx, &line((2027, 1, 1), "10", None));
        match o {
            Outcome::NotEligible { reason, detail } => {
                assert_eq!(reason, Reason::OutsideWindow);
                assert!(detail.contains("36-month window"), "{detail}");
                assert!(detail.contains("resale: no RESELLER credit"), "{detail}");
            }
            o => panic!("{o:?}"),
        }
    }

    /// A designation whose window has closed credits nothing and takes part
    /// in nothing, whatever the rows' order: a partner re-designated (a
    /// 2020 row, window closed in 2023, and a 2026 row) is paid through the
    /// open one; an expired partner beside the current one neither halves
    /// its credit (`split`) nor makes the line a conflict (`reject`). As a
    /// usage row is paid.
    #[test]
    fn a_closed_window_credits_nothing_whatever_the_rows_order() {
        let row = |line: u64, partner: &str, year: i32| Designation {
            line,
            partner_id: partner.into(),
            ..dsg((year, 1, 1))
        };
        let charge = line((2026, 10, 1), "100.00", None);
        for conflicts in ["split", "reject", "latest-wins"] {
            let rules = parse_rules(&format!("conflicts = \"{conflicts}\"\n{RULES}")).unwrap();
            for rows in [
                vec![row(2, "p1", 2020), row(3, "p1", 2026)],
                vec![row(2, "p1", 2026), row(3, "p1", 2020)],
                vec![row(2, "p0", 2020), row(3, "p1", 2026)],
                vec![row(2, "p1", 2026), row(3, "p0", 2020)],
            ] {
                let idx = DesignationIndex::new(rows.clone());
                let (o, acc) = run(&rules, &idx, &charge);
                assert_eq!(o, Outcome::Accrued, "{conflicts} {rows:?}");
                assert_eq!(acc, ["por:p1:4.0000"], "{conflicts} {rows:?}");
            }
        }
        // Only closed windows: not eligible, naming one.
        let rules = parse_rules(RULES).unwrap();
        let idx = DesignationIndex::new(vec![row(2, "p0", 2020), row(3, "p1", 2021)]);
        match run(&rules, &idx, &charge).0 {
            Outcome::NotEligible { reason, detail } => {
                assert_eq!(reason, Reason::OutsideWindow);
                assert!(
                    detail.contains("window of the designation (d.csv line 2)"),
                    "{detail}"
                );
            }
            o => panic!("{o:?}"),
        }
    }

    #[test]
    fn reasons() {
        let rules = parse_rules(RULES).unwrap();
        let idx = DesignationIndex::new(vec![dsg((2019, 1, 1))]);
        let mut l = line((2019, 6, 30), "10", None);
        assert!(matches!(
            run(&rules, &idx, &l).0,
            Outcome::NotEligible {
                reason: Reason::NoDesignation,
                ..
            }
        ));
        let rules2 = parse_rules(&RULES.replace(
            "[[program]]\nid = \"resale\"\nassociations = [\"RESELLER\"]\nrate = \"0.01\"\n",
            "",
        ))
        .unwrap();
        assert!(matches!(
            run(&rules2, &idx, &l).0,
            Outcome::NotEligible {
                reason: Reason::RuleNotInForce,
                ..
            }
        ));
        l.charge_start = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap();
        l.qualifiers = "[\"AddOn\",\"Trial\"]";
        assert!(matches!(
            run(&rules2, &idx, &l).0,
            Outcome::NotEligible {
                reason: Reason::ExcludedProduct,
                ..
            }
        ));
        l.qualifiers = "[\"AddOn\",\"TrialPlus\"]";
        assert_eq!(run(&rules2, &idx, &l).0, Outcome::Accrued);
        l.publisher = "Contoso Apps Ltd";
        assert!(matches!(
            run(&rules2, &idx, &l).0,
            Outcome::NotEligible {
                reason: Reason::ExcludedProduct,
                ..
            }
        ));
    }

    proptest::proptest! {
        /// Proration never creates or loses basis: the parts sum to the line; and
        /// the partners' shares of one program on a line never exceed the line.
        #[test]
        fn proration_keeps_the_basis_and_shares_never_exceed_the_line(
            cents in -10_000_000i64..10_000_000,
            len in 0u32..400,
            cuts in proptest::collection::vec((0u32..420, proptest::option::of(1u32..420), 0usize..3, proptest::option::of(1u32..100)), 0..6),
        ) {
            let rules = parse_rules(RULES).unwrap();
            let start = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap();
            let rows: Vec<Designation> = cuts
                .iter()
                .enumerate()
                .map(|(i, (from, dur, partner, share))| {
                    let mut d = dsg((2026, 1, 1));
                    d.line = i as u64 + 2;
                    d.partner_id = ["p1", "p2", "p3"][*partner].into();
                    d.valid_from = Some(start + chrono::Days::new(*from as u64));
                    d.valid_to = dur.map(|x| start + chrono::Days::new((*from + x) as u64));
                    d.share = share.map(|s| Decimal::new(s as i64, 3));
                    d
                })
                .collect();
            let idx = DesignationIndex::new(rows);
            let mut l = line((2026, 1, 1), "0", None);
            l.subtotal = Decimal::new(cents, 2);
            l.charge_end = Some(start + chrono::Days::new(len as u64));
            let mut segs = Vec::new();
            let total = segments(
                &rules.programs[0],
                idx.customer("c1"),
                &l,
                &mut Vec::new(),
                &mut segs,
            )
            .unwrap();
            proptest::prop_assert_eq!(segs.iter().map(|s| s.basis).sum::<Decimal>(), l.subtotal);
            proptest::prop_assert_eq!(segs.iter().map(|s| s.days).sum::<u32>(), total);
            proptest::prop_assert_eq!(total, len + 1);
            for s in &segs {
                // Each part lies in one month.
                let last = s.from + chrono::Days::new(u64::from(s.days.max(1)) - 1);
                proptest::prop_assert_eq!(Month::of(s.from), Month::of(last));
            }
            let mut out = Vec::new();
            let mut sc = Scratch::default();
            if accrue_line(&rules, &idx, "d.csv", &l, "c1", &mut sc, &mut out) == Outcome::Accrued {
                let por: Decimal = out.iter().filter(|a| a.program == 0).map(|a| a.amount).sum();
                proptest::prop_assert!(por.abs() <= (l.subtotal * rules.programs[0].rate).abs(), "{} > line", por);
                let basis: Decimal = out.iter().filter(|a| a.program == 0).map(|a| a.basis * a.share).sum();
                proptest::prop_assert!(basis.abs() <= l.subtotal.abs());
            }
        }
    }

    /// The accrual months and amounts of a line from `from` to `to` (EUR, no
    /// designations: the reseller program pays it).
    /// (accrual month, basis, amount, days) of each accrual.
    type MonthPart = (String, Decimal, Decimal, Option<(u32, u32)>);

    fn months_of(from: (i32, u32, u32), to: (i32, u32, u32), amount: &str) -> Vec<MonthPart> {
        let rules = parse_rules(RULES).unwrap();
        let idx = DesignationIndex::new(Vec::new());
        let mut l = line(from, amount, Some("r9"));
        l.charge_end = NaiveDate::from_ymd_opt(to.0, to.1, to.2);
        let mut out = Vec::new();
        let mut sc = Scratch::default();
        assert_eq!(
            accrue_line(&rules, &idx, "d.csv", &l, "c1", &mut sc, &mut out),
            Outcome::Accrued
        );
        out.iter()
            .map(|a| (a.month.to_string(), a.basis, a.amount, a.days))
            .collect()
    }

    #[test]
    fn a_line_spanning_three_months_is_cut_at_each_month() {
        // 15 Oct to 14 Dec: 17 + 30 + 14 = 61 days; 6100.00 is 100.00 a day.
        let m = months_of((2026, 10, 15), (2026, 12, 14), "6100.00");
        let d = |s: &str| s.parse::<Decimal>().unwrap();
        assert_eq!(
            m,
            [
                (
                    "2026-10".to_string(),
                    d("1700.000000"),
                    d("17.00000000"),
                    Some((17, 61))
                ),
                (
                    "2026-11".to_string(),
                    d("3000.000000"),
                    d("30.00000000"),
                    Some((30, 61))
                ),
                (
                    "2026-12".to_string(),
                    d("1400.00"),
                    d("14.0000"),
                    Some((14, 61))
                ),
            ]
        );
        // A credit spanning the same months mirrors it.
        let c = months_of((2026, 10, 15), (2026, 12, 14), "-6100.00");
        assert_eq!(c.iter().map(|x| x.2).sum::<Decimal>(), d("-61"));
        assert_eq!(
            c.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
            ["2026-10", "2026-11", "2026-12"]
        );
        // Uneven days: the last month takes the remainder, the parts sum to the line.
        let m = months_of((2026, 10, 20), (2026, 11, 11), "1000.00");
        assert_eq!(m[0].1, d("521.739130"));
        assert_eq!(m[1].1, d("478.260870"));
        assert_eq!(m.iter().map(|x| x.1).sum::<Decimal>(), d("1000.00"));
        // Inside one month, or without an end date: one accrual, the line's month.
        assert_eq!(months_of((2026, 10, 1), (2026, 10, 31), "10").len(), 1);
        assert_eq!(months_of((2026, 2, 1), (2026, 2, 1), "10")[0].0, "2026-02");
    }

    #[test]
    fn month_cuts_are_the_first_days_inside_the_period() {
        let d = |y, m, dd| NaiveDate::from_ymd_opt(y, m, dd).unwrap();
        let mut cuts = Vec::new();
        month_cuts(d(2024, 12, 31), d(2025, 3, 1), &mut cuts);
        assert_eq!(cuts, [d(2025, 1, 1), d(2025, 2, 1), d(2025, 3, 1)]);
        cuts.clear();
        month_cuts(d(2025, 1, 1), d(2025, 1, 31), &mut cuts);
        assert!(cuts.is_empty());
    }

    proptest::proptest! {
        /// Month-boundary proration over random charge periods and amounts: the
        /// parts sum exactly to the line (basis and accrual), each lies in one
        /// month, and the months follow each other without gaps.
        #[test]
        fn month_proration_sums_to_the_line(
            start in 0u32..3000,
            len in 0u32..800,
            cents in -100_000_000_000i64..100_000_000_000,
        ) {
            let rules = parse_rules(RULES).unwrap();
            let idx = DesignationIndex::new(Vec::new());
            let from = NaiveDate::from_ymd_opt(2020, 1, 1).unwrap() + chrono::Days::new(u64::from(start));
            let mut l = line((2020, 1, 1), "0", Some("r9"));
            l.charge_start = from;
            l.charge_end = Some(from + chrono::Days::new(u64::from(len)));
            l.subtotal = Decimal::new(cents, 2);
            let mut out = Vec::new();
            let mut sc = Scratch::default();
            proptest::prop_assert_eq!(accrue_line(&rules, &idx, "d.csv", &l, "c1", &mut sc, &mut out), Outcome::Accrued);
            proptest::prop_assert_eq!(out.iter().map(|a| a.basis).sum::<Decimal>(), l.subtotal);
            proptest::prop_assert_eq!(out.iter().map(|a| a.amount).sum::<Decimal>(), l.subtotal * rules.programs[1].rate);
            proptest::prop_assert_eq!(out.iter().map(|a| a.days.unwrap().0).sum::<u32>(), len + 1);
            let end = l.charge_end.unwrap();
            proptest::prop_assert_eq!(out.first().unwrap().month, Month::of(from));
            proptest::prop_assert_eq!(out.last().unwrap().month, Month::of(end));
            for w in out.windows(2) {
                proptest::prop_assert_eq!(w[1].month, w[0].month.next());
            }
        }
    }

    /// Usage program 0 of `rules` for a Teams row of tenant c1 dated
    /// 2026-10-01: the partner, association and share of each credit, or the
    /// miss.
    fn usage_credits(
        rules: &str,
        designations: Vec<Designation>,
    ) -> Result<Vec<String>, UsageMiss> {
        let rules = parse_rules(rules).unwrap();
        let index = DesignationIndex::new(designations);
        let ctx = Context {
            rules: &rules,
            index: &index,
            designations_file: "d.csv",
            attainment: None,
        };
        let o = UsageObs {
            file: 0,
            line: 2,
            customer_id: "c1".into(),
            workload: workload_key("Teams"),
            workload_name: "Teams".into(),
            date: NaiveDate::from_ymd_opt(2026, 10, 1).unwrap(),
            month: Month::from_ym(2026, 10),
            mau: Decimal::from(40),
            pau: Some(Decimal::from(100)),
        };
        usage_program(&ctx, &rules.programs[0], &o).map(|(_, credits)| {
            credits
                .iter()
                .map(|(d, s)| format!("{}:{}:{}", d.partner_id, d.association, s.normalize()))
                .collect()
        })
    }

    fn cpor(line: u64, partner: &str, from: (i32, u32, u32)) -> Designation {
        Designation {
            line,
            partner_id: partner.into(),
            association: Association::Cpor,
            workload: "Teams".into(),
            ..dsg(from)
        }
    }

    const USAGE_PROGRAM: &str = r#"
[[program]]
id = "usage"
associations = ["CPOR"]
basis = "usage"
[[program.workload]]
name = "Teams"
unit_rates = ["1.00", "2.50"]
"#;

    #[test]
    fn usage_credits_follow_the_conflicts_policy_like_billing() {
        let two = || vec![cpor(2, "pa", (2025, 1, 1)), cpor(3, "pb", (2026, 6, 1))];
        let rules = |policy: &str| format!("conflicts = \"{policy}\"\n{USAGE_PROGRAM}");
        assert_eq!(
            usage_credits(&rules("split"), two()).unwrap(),
            ["pa:CPOR:0.5", "pb:CPOR:0.5"]
        );
        assert_eq!(
            usage_credits(&rules("latest-wins"), two()).unwrap(),
            ["pb:CPOR:1"]
        );
        // The same valid_from: the later file line wins, as on a billing line.
        let tie = vec![cpor(3, "pa", (2026, 6, 1)), cpor(2, "pb", (2026, 6, 1))];
        assert_eq!(
            usage_credits(&rules("latest-wins"), tie).unwrap(),
            ["pa:CPOR:1"]
        );
        let (reason, detail) = usage_credits(&rules("reject"), two()).unwrap_err();
        assert_eq!(reason, Reason::ShareConflict);
        assert_eq!(
            detail,
            "partners pa, pb all hold CPOR for this tenant and workload on 2026-10-01 \
             (d.csv lines 2, 3); the rules say conflicts = \"reject\""
        );
        // One partner through two rows is no conflict under any policy.
        let twice = || vec![cpor(2, "pa", (2025, 1, 1)), cpor(3, "pa", (2026, 6, 1))];
        for policy in ["split", "latest-wins", "reject"] {
            assert_eq!(
                usage_credits(&rules(policy), twice()).unwrap(),
                ["pa:CPOR:1"],
                "{policy}"
            );
        }
        // A designation that starts after the row takes no part.
        let later = vec![cpor(2, "pa", (2025, 1, 1)), cpor(3, "pb", (2026, 10, 2))];
        assert_eq!(
            usage_credits(&rules("reject"), later).unwrap(),
            ["pa:CPOR:1"]
        );
    }
}
