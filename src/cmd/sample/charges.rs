//! What a subscription slot is charged in a month: charge type, amounts in
//! integer cents, and the charge, term and subscription dates.

use chrono::NaiveDate;

use super::calendar::Calendar;
use super::catalogue::{Product, MICROSOFT, PRODUCTS};
use super::rng::SplitMix64;
use super::world::Slot;
use crate::dates::Month;

/// `ChargeType` values, with the sign of their amounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ChargeType {
    New,
    Renew,
    CycleCharge,
    AddQuantity,
    RemoveQuantity,
    CancelImmediate,
    CustomerCredit,
}

impl ChargeType {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            ChargeType::New => "new",
            ChargeType::Renew => "renew",
            ChargeType::CycleCharge => "cycleCharge",
            ChargeType::AddQuantity => "addQuantity",
            ChargeType::RemoveQuantity => "removeQuantity",
            ChargeType::CancelImmediate => "cancelImmediate",
            ChargeType::CustomerCredit => "customerCredit",
        }
    }
}

/// The varying part of one billing line.
pub(super) struct Charge {
    pub(super) kind: ChargeType,
    pub(super) generation: usize,
    /// Cents; negative for credits.
    pub(super) unit_cents: i64,
    /// Negative for removed seats and cancellations.
    pub(super) quantity: i64,
    pub(super) start: NaiveDate,
    pub(super) end: NaiveDate,
    pub(super) term_start: NaiveDate,
    pub(super) term_end: NaiveDate,
    pub(super) subscription_start: NaiveDate,
    pub(super) trial: bool,
}

impl Charge {
    pub(super) fn subtotal(&self) -> i64 {
        self.unit_cents * self.quantity
    }
}

/// VAT in cents, rounded half away from zero.
pub(super) fn tax_cents(subtotal: i64, per_mille: i64) -> i64 {
    let t = (subtotal.abs() * per_mille + 500) / 1000;
    if subtotal < 0 {
        -t
    } else {
        t
    }
}

/// What `slot` is charged in `month`, using `rng` (the row's stream).
pub(super) fn charge(
    cal: &Calendar,
    slot: &Slot,
    usd: bool,
    month: Month,
    rng: &mut SplitMix64,
) -> Charge {
    let generation = match slot.cancel {
        Some(c) if month > c => 1,
        _ => 0,
    };
    let gen_start = match (generation, slot.cancel) {
        (1, Some(c)) => c.next(),
        _ => slot.start,
    };
    // Never negative: a slot's first subscription starts before the timeline.
    let age = month.0 - gen_start.0;
    let product = &PRODUCTS[slot.product as usize];
    let seats = slot.quantity[generation];
    let kind = if generation == 0 && slot.cancel == Some(month) {
        ChargeType::CancelImmediate
    } else if age == 0 {
        ChargeType::New
    } else if age % 12 == 0 {
        ChargeType::Renew
    } else {
        match rng.below(1000) {
            0..=24 => ChargeType::AddQuantity,
            25..=39 => ChargeType::RemoveQuantity,
            40..=49 => ChargeType::CustomerCredit,
            _ => ChargeType::CycleCharge,
        }
    };
    let trial = kind == ChargeType::New && product.publisher == MICROSOFT && rng.chance(100);
    let (unit_cents, quantity, start_day) =
        amounts(kind, trial, product, usd, slot.day, seats, rng);
    let day = slot.day;
    let term_start_month = gen_start.plus(12 * (age / 12) as u32);
    Charge {
        kind,
        generation,
        unit_cents,
        quantity,
        start: cal.on(month, start_day),
        end: cal.day_before(month.next(), day),
        term_start: cal.on(term_start_month, day),
        term_end: cal.day_before(term_start_month.plus(12), day),
        subscription_start: cal.on(gen_start, day),
        trial,
    }
}

/// Unit price (cents), quantity and charge start day of a charge of `kind`
/// for a slot billed on `day` with `seats` seats.
fn amounts(
    kind: ChargeType,
    trial: bool,
    product: &Product,
    usd: bool,
    day: u8,
    seats: i64,
    rng: &mut SplitMix64,
) -> (i64, i64, u8) {
    let price = if usd {
        product.usd_cents
    } else {
        product.eur_cents
    };
    let later = |rng: &mut SplitMix64, max: u64| (day + 1 + rng.below(max) as u8).min(28);
    let changed = |rng: &mut SplitMix64| 1 + rng.below((seats as u64 / 5).max(1)) as i64;
    match kind {
        ChargeType::New if trial => (0, seats, day),
        ChargeType::New | ChargeType::Renew | ChargeType::CycleCharge => (price, seats, day),
        ChargeType::AddQuantity => (price, changed(rng), later(rng, 20)),
        ChargeType::RemoveQuantity => (price, -changed(rng), later(rng, 6)),
        ChargeType::CancelImmediate => (price, -seats, later(rng, 6)),
        ChargeType::CustomerCredit => {
            let percent = 5 + rng.below(21) as i64;
            (-(price * seats * percent / 100).max(1), 1, later(rng, 20))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::calendar::{day_before, on};
    use super::*;
    use chrono::Datelike;

    /// The calendar this module used before it shared `crate::dates`: months
    /// as `year * 12 + month - 1`, dates as (year, month, day).
    mod old_calendar {
        fn is_leap(y: i64) -> bool {
            (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
        }

        fn days_in_month(month: i64) -> u8 {
            let (y, m) = (month.div_euclid(12), month.rem_euclid(12) + 1);
            match m {
                2 if is_leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            }
        }

        pub fn of(month: i64, d: u8) -> (i64, u8, u8) {
            (month.div_euclid(12), (month.rem_euclid(12) + 1) as u8, d)
        }

        pub fn day_before(month: i64, d: u8) -> (i64, u8, u8) {
            if d > 1 {
                of(month, d - 1)
            } else {
                of(month - 1, days_in_month(month - 1))
            }
        }
    }

    fn ymd(d: NaiveDate) -> (i64, u8, u8) {
        (d.year() as i64, d.month() as u8, d.day() as u8)
    }

    /// Every date a charge can carry, for every month 2019-2027 (leap years
    /// 2020 and 2024 included) and every billing day, is the old calendar's.
    #[test]
    fn dates_equal_the_old_calendar() {
        for month in Month::from_ym(2019, 1).0..=Month::from_ym(2027, 12).0 {
            for day in 1..=28u8 {
                let (m, old) = (Month(month), month as i64);
                assert_eq!(ymd(on(m, day)), old_calendar::of(old, day));
                assert_eq!(ymd(day_before(m, day)), old_calendar::day_before(old, day));
                assert_eq!(
                    ymd(day_before(m.plus(12), day)),
                    old_calendar::day_before(old + 12, day)
                );
            }
        }
        let cal = Calendar::new(Month::from_ym(2022, 1));
        for month in Month::from_ym(2019, 1).0..=Month::from_ym(2027, 10).0 {
            for day in 1..=28u8 {
                let m = Month(month);
                assert_eq!(cal.on(m, day), on(m, day));
                assert_eq!(cal.day_before(m, day), day_before(m, day));
            }
        }
        let leap = day_before(Month::from_ym(2024, 3), 1);
        assert_eq!(leap, NaiveDate::from_ymd_opt(2024, 2, 29).unwrap());
    }

    #[test]
    fn tax_rounds_half_away_from_zero() {
        assert_eq!((tax_cents(-1005, 190), tax_cents(1005, 190)), (-191, 191));
        assert_eq!(tax_cents(0, 190), 0);
    }

    /// The charge type follows the subscription's life.
    #[test]
    fn charge_types_follow_the_subscription() {
        let start = Month::from_ym(2024, 1);
        let slot = Slot {
            customer: 0,
            product: 0,
            day: 1,
            start,
            cancel: Some(Month::from_ym(2025, 6)),
            promotion: false,
            quantity: [10, 20],
            subscription: [[b'a'; 36]; 2],
            order: [[b'o'; 32]; 2],
            alternate: [[b'x'; 12]; 2],
        };
        let cal = Calendar::new(start);
        let mut rng = SplitMix64::new(1);
        let c = charge(&cal, &slot, false, start, &mut rng);
        assert_eq!((c.generation, c.quantity), (0, 10));
        assert!(matches!(c.kind, ChargeType::New));
        let c = charge(&cal, &slot, false, start.plus(12), &mut rng);
        assert_eq!(c.kind, ChargeType::Renew);
        assert_eq!(c.term_end, NaiveDate::from_ymd_opt(2025, 12, 31).unwrap());
        let c = charge(&cal, &slot, false, Month::from_ym(2025, 6), &mut rng);
        assert_eq!((c.kind, c.quantity), (ChargeType::CancelImmediate, -10));
        let c = charge(&cal, &slot, true, Month::from_ym(2025, 7), &mut rng);
        assert_eq!(
            (c.kind, c.generation, c.unit_cents),
            (ChargeType::New, 1, 3600)
        );
        assert_eq!(
            c.subscription_start,
            NaiveDate::from_ymd_opt(2025, 7, 1).unwrap()
        );
    }
}
