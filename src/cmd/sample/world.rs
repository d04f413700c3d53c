//! The world: partners, customers and subscription slots, decided before the
//! first row is written.

use super::calendar::Calendar;
use super::catalogue::{
    vat_per_mille, CITIES, CUSTOMER_FORMS, CUSTOMER_STEMS, EUR_COUNTRIES, EUR_COUNTRY_WEIGHTS,
    FIXED_CUSTOMERS, NAME_SECOND_LINES, PARTNER_FORMS, PARTNER_STEMS, PRODUCTS, PRODUCT_WEIGHTS,
    REGIONS,
};
use super::rng::{
    alphanumeric, guid, Guid, SplitMix64, TAG_CUSTOMER, TAG_PARTNER, TAG_SLOT, TAG_WORLD,
};
use super::{Plan, LAST_MONTH};
use crate::dates::Month;

/// A partner: MPN ID (6 or 7 digits, distinct) and name.
pub(super) struct Partner {
    pub(super) mpn: String,
    pub(super) name: String,
}

/// A customer tenant with everything a billing line says about it.
pub(super) struct Customer {
    pub(super) id: Guid,
    pub(super) name: String,
    pub(super) domain: String,
    pub(super) country: &'static str,
    pub(super) usd: bool,
    pub(super) vat_per_mille: i64,
    /// Index into `World::distributors` (the `MpnId` column).
    pub(super) distributor: usize,
    /// Index of the reseller partner, if any.
    pub(super) reseller: Option<usize>,
    /// The `ResellerMpnId` text: a partner's MPN ID, empty or `0`.
    pub(super) reseller_text: String,
}

/// One subscription slot: a subscription billed every month, replaced by a new
/// one (generation 1) the month after it is cancelled.
pub(super) struct Slot {
    pub(super) customer: u32,
    pub(super) product: u8,
    /// Billing day of the month (the subscription's anniversary), 1..=28.
    pub(super) day: u8,
    /// Month the first subscription started (may precede the timeline).
    pub(super) start: Month,
    /// Month the first subscription is cancelled, if it is.
    pub(super) cancel: Option<Month>,
    pub(super) promotion: bool,
    pub(super) quantity: [i64; 2],
    pub(super) subscription: [Guid; 2],
    pub(super) order: [[u8; 32]; 2],
    pub(super) alternate: [[u8; 12]; 2],
}

/// Everything decided before the first row is written.
pub(super) struct World {
    pub(super) plan: Plan,
    /// The billing account's tenant (the `PartnerId` column).
    pub(super) provider: Guid,
    /// MPN IDs of the indirect provider's locations (the `MpnId` column).
    pub(super) distributors: [String; 2],
    pub(super) partners: Vec<Partner>,
    pub(super) customers: Vec<Customer>,
    pub(super) slots: Vec<Slot>,
    /// Invoice number per month of the timeline, EUR and USD.
    pub(super) invoices: Vec<[[u8; 10]; 2]>,
    /// The dates billing rows carry.
    pub(super) calendar: Calendar,
}

impl World {
    pub(super) fn new(plan: Plan) -> World {
        let seed = plan.seed;
        let mut rng = SplitMix64::stream(seed, TAG_WORLD, 0);
        let provider = guid(&mut rng);
        let distributors = [mpn_id(seed, 60), mpn_id(seed, 61)];
        let partners: Vec<Partner> = (0..plan.partners)
            .map(|i| Partner {
                mpn: mpn_id(seed, i),
                name: partner_name(i),
            })
            .collect();
        let customers = (0..plan.customers)
            .map(|c| customer(&plan, &partners, c))
            .collect();
        let slots = (0..plan.slots).map(|s| slot(&plan, s)).collect();
        // Drawn after the provider, from the same stream.
        let base = 100_000_000 + rng.below(800_000_000);
        let invoices = (0..plan.months)
            .map(|m| [invoice(base + 2 * m), invoice(base + 2 * m + 1)])
            .collect();
        World {
            calendar: Calendar::new(plan.first_month()),
            plan,
            provider,
            distributors,
            partners,
            customers,
            slots,
            invoices,
        }
    }
}

/// Distinct MPN IDs: `i` < 64 is kept in the low 6 bits; every third ID has 6
/// digits, the others 7.
fn mpn_id(seed: u64, i: usize) -> String {
    let mut rng = SplitMix64::stream(seed, TAG_PARTNER, i as u64);
    let (lo, hi) = if i.is_multiple_of(3) {
        (100_000u64, 1_000_000u64)
    } else {
        (1_000_000, 10_000_000)
    };
    let v = lo + rng.below((hi - lo) / 64 - 1) * 64 + i as u64;
    v.to_string()
}

fn partner_name(i: usize) -> String {
    let stem = PARTNER_STEMS[i % PARTNER_STEMS.len()];
    if i == 3 {
        return format!("{stem}, Inc.");
    }
    let form = PARTNER_FORMS[(i * 7 + i / PARTNER_STEMS.len()) % PARTNER_FORMS.len()];
    if i < PARTNER_STEMS.len() {
        format!("{stem} {form}")
    } else {
        let region = REGIONS[(i / PARTNER_STEMS.len() + i) % REGIONS.len()];
        format!("{stem} {region} {form}")
    }
}

/// Customer `c`, from its own stream.
fn customer(plan: &Plan, partners: &[Partner], c: usize) -> Customer {
    let resellers = (plan.partners * 3 / 5).max(1);
    let mut rng = SplitMix64::stream(plan.seed, TAG_CUSTOMER, c as u64);
    let id = guid(&mut rng);
    let (name, country) = customer_name(c, &mut rng);
    let domain = format!("{}{}.onmicrosoft.com", domain_slug(&name), c);
    let (reseller, reseller_text) = match rng.below(100) {
        0..=69 => {
            let p = rng.below(resellers as u64) as usize;
            (Some(p), partners[p].mpn.clone())
        }
        70..=84 => (None, String::new()),
        _ => (None, "0".to_string()),
    };
    Customer {
        id,
        name,
        domain,
        country,
        usd: country == "US",
        vat_per_mille: vat_per_mille(country),
        distributor: rng.below(2) as usize,
        reseller,
        reseller_text,
    }
}

/// `müller & söhne` -> `muellersoehne`.
fn domain_slug(name: &str) -> String {
    let mut s = String::new();
    for c in name.split('\n').next().unwrap_or("").chars() {
        match c {
            'ä' | 'Ä' => s.push_str("ae"),
            'ö' | 'Ö' => s.push_str("oe"),
            'ü' | 'Ü' => s.push_str("ue"),
            'ß' => s.push_str("ss"),
            c if c.is_ascii_alphanumeric() => s.push(c.to_ascii_lowercase()),
            _ => {}
        }
        if s.len() >= 24 {
            break;
        }
    }
    s
}

fn customer_name(c: usize, rng: &mut SplitMix64) -> (String, &'static str) {
    if let Some((name, country)) = FIXED_CUSTOMERS.get(c) {
        return (name.to_string(), country);
    }
    let stem = rng.pick(&CUSTOMER_STEMS);
    let city = rng.pick(&CITIES);
    let form = rng.pick(&CUSTOMER_FORMS);
    let usd = rng.chance(100);
    let country = if usd {
        "US"
    } else {
        EUR_COUNTRIES[rng.weighted(&EUR_COUNTRY_WEIGHTS)].0
    };
    let mut name = match (usd, form.starts_with(',')) {
        (true, _) => format!("{stem} {city}, Inc."),
        (false, true) => format!("{stem} {city}{form}"),
        (false, false) => format!("{stem} {city} {form}"),
    };
    if rng.chance(5) {
        let second = rng.pick(&NAME_SECOND_LINES);
        name.push('\n');
        name.push_str(second);
    }
    (name, country)
}

/// Subscription slot `s`, from its own stream.
fn slot(plan: &Plan, s: usize) -> Slot {
    let first = plan.first_month();
    let mut rng = SplitMix64::stream(plan.seed, TAG_SLOT, s as u64);
    let customer = if s < plan.customers {
        s
    } else {
        let a = rng.below(plan.customers as u64);
        rng.below(a + 1) as usize
    };
    let product = rng.weighted(&PRODUCT_WEIGHTS);
    let max_seats = PRODUCTS[product].seats;
    let cancel = if rng.chance(250) {
        let timeline = (LAST_MONTH.0 - first.0 + 1) as u64;
        Some(first.plus(rng.below(timeline) as u32))
    } else {
        None
    };
    Slot {
        customer: customer as u32,
        product: product as u8,
        day: 1 + rng.below(28) as u8,
        start: first.minus(rng.below(36) as u32),
        cancel,
        promotion: rng.chance(50),
        quantity: [seats(&mut rng, max_seats), seats(&mut rng, max_seats)],
        subscription: [guid(&mut rng), guid(&mut rng)],
        order: [alphanumeric(&mut rng), alphanumeric(&mut rng)],
        alternate: [alphanumeric(&mut rng), alphanumeric(&mut rng)],
    }
}

fn seats(rng: &mut SplitMix64, max: u64) -> i64 {
    // Skewed towards small tenants: the minimum of two uniform draws.
    let a = rng.below(max);
    1 + rng.below(a + 1) as i64
}

/// Invoice number `n` as `G` and nine digits.
fn invoice(mut n: u64) -> [u8; 10] {
    let mut b = *b"G000000000";
    for c in b[1..].iter_mut().rev() {
        *c = b'0' + (n % 10) as u8;
        n /= 10;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_ids() {
        assert_eq!(
            domain_slug("Müller & Söhne GmbH\nAbt. IT"),
            "muellersoehnegmbh"
        );
        assert_eq!(invoice(123_456_789), *b"G123456789");
        assert_eq!(partner_name(3), "Fabrikam Cloud Solutions, Inc.");
        let ids: std::collections::HashSet<String> = (0..64).map(|i| mpn_id(1, i)).collect();
        assert_eq!(ids.len(), 64);
    }
}
