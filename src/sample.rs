//! `porledger sample`: a realistic, deterministic input set of any size.
//!
//! `porledger sample --out DIR [--rows N] [--seed S] [--files K]` writes
//!
//! - `DIR/billing/invoice-reconciliation-0001.csv ...`: Partner Center new-commerce
//!   invoice reconciliation exports with all 46 documented columns, in the
//!   documented order, with the header spellings, BOMs, quoting, line endings and
//!   date formats that real exports have used (one style per file, see [`FileStyle`]);
//! - `DIR/designations.csv`: who holds DPOR, POR, PAL or CPOR for each customer;
//! - `DIR/rules.toml`: the programs `por-core`, `pal` and `reseller`.
//!
//! # Determinism
//! Same `--rows`, `--seed` and `--files` give byte-identical files. Every value
//! comes from a [`SplitMix64`] stream keyed by the seed and by *what* is being
//! generated (a partner, a customer, a subscription slot, a billing row), so a
//! row does not depend on the rows before it, on the thread that writes it or
//! on the clock (this module never reads it: the billing timeline always ends
//! in [`LAST_MONTH`]).
//!
//! # The model
//! - `customers = clamp(N / 250, 5, 20,000)`, `partners = clamp(customers / 8, 4, 50)`;
//! - about five subscription *slots* per customer (more when N exceeds
//!   `5 x customers x 120`); a slot holds one subscription, or two when the
//!   first is cancelled (`cancelImmediate`) and replaced by a new one;
//! - every slot is billed once a month: row `r` is slot `r % slots` in month
//!   `r / slots` of a timeline of `ceil(N / slots)` months ending in October 2026;
//! - the charge type follows the subscription's life (`new` in its first month,
//!   `renew` on each anniversary, otherwise mostly `cycleCharge`, sometimes
//!   `addQuantity`, `removeQuantity` or `customerCredit`; the last three and
//!   `cancelImmediate` are negative or positive as in real exports);
//! - amounts are integer cents: `Subtotal = UnitPrice x Quantity` exactly,
//!   `TaxTotal` is the customer country's VAT rounded half-up to the cent,
//!   `Total = Subtotal + TaxTotal`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::cli::SampleArgs;
use crate::error::Fatal;
use crate::ingest::billing::INVOICE_RECONCILIATION_COLUMNS;

// ---------------------------------------------------------------------------
// The PRNG
// ---------------------------------------------------------------------------

/// SplitMix64 (Steele, Lea and Flood, "Fast splittable pseudorandom number
/// generators", OOPSLA 2014; constants of Vigna's reference implementation).
///
/// The state is a counter advanced by the golden-ratio increment; each output
/// is the counter passed through a 64-bit finaliser ([`mix`]). It passes
/// BigCrush, needs no warm-up and costs a handful of instructions, and since
/// [`mix`] is a good hash, [`SplitMix64::stream`] derives independent streams
/// from a key. Not for cryptography.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 finaliser (a variant of MurmurHash3's `fmix64`): a bijection
/// on `u64` that spreads every input bit over every output bit.
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// An independent stream for one thing to generate: `tag` says what kind of
    /// thing (see the `TAG_*` constants), `index` which one.
    pub fn stream(seed: u64, tag: u64, index: u64) -> SplitMix64 {
        SplitMix64::new(mix(seed ^ mix(tag ^ mix(index.wrapping_add(GOLDEN_GAMMA)))))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix(self.state)
    }

    /// Uniform in `0..n` (Lemire's multiply-shift; `n` = 0 gives 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Index into `weights`, with probability proportional to the weight.
    pub fn weighted(&mut self, weights: &[u64]) -> usize {
        let total: u64 = weights.iter().sum();
        let mut x = self.below(total);
        for (i, &w) in weights.iter().enumerate() {
            if x < w {
                return i;
            }
            x -= w;
        }
        weights.len() - 1
    }
}

const TAG_WORLD: u64 = 1;
const TAG_PARTNER: u64 = 2;
const TAG_CUSTOMER: u64 = 3;
const TAG_SLOT: u64 = 4;
const TAG_ROW: u64 = 5;
const TAG_DESIGNATION: u64 = 6;

// ---------------------------------------------------------------------------
// Calendar (months as integers, no clock)
// ---------------------------------------------------------------------------

/// A month as `year * 12 + (month - 1)`.
type Month = i64;

/// The last billed month: October 2026.
pub const LAST_MONTH: Month = 2026 * 12 + 9;
/// The timeline never reaches back further than this many months.
const MAX_MONTHS: u64 = 120;
/// Default rows per billing file.
const ROWS_PER_FILE: u64 = 500_000;

/// A calendar date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Ymd {
    y: i64,
    m: u8,
    d: u8,
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(month: Month) -> u8 {
    let (y, m) = (month.div_euclid(12), month.rem_euclid(12) + 1);
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl Ymd {
    /// Day `d` (at most 28 in this module) of `month`.
    fn of(month: Month, d: u8) -> Ymd {
        Ymd {
            y: month.div_euclid(12),
            m: (month.rem_euclid(12) + 1) as u8,
            d,
        }
    }

    /// The day before day `d` of `month`.
    fn day_before(month: Month, d: u8) -> Ymd {
        if d > 1 {
            Ymd::of(month, d - 1)
        } else {
            Ymd::of(month - 1, days_in_month(month - 1))
        }
    }
}

// ---------------------------------------------------------------------------
// Static catalogues: products, names
// ---------------------------------------------------------------------------

/// A product of the price list. Prices are per seat and month, in cents.
/// Product and SKU IDs imitate the Partner Center catalogue's format.
struct Product {
    id: &'static str,
    sku: &'static str,
    availability: &'static str,
    name: &'static str,
    publisher: &'static str,
    publisher_id: &'static str,
    eur_cents: i64,
    usd_cents: i64,
    /// Typical seat count (upper bound of the skewed draw).
    seats: u64,
}

const MICROSOFT: &str = "Microsoft Corporation";

const PRODUCTS: [Product; 7] = [
    Product {
        id: "CFQ7TTC0LFLX",
        sku: "0002",
        availability: "CFQ7TTC0K5BF",
        name: "Microsoft 365 E3",
        publisher: MICROSOFT,
        publisher_id: "",
        eur_cents: 3370,
        usd_cents: 3600,
        seats: 300,
    },
    Product {
        id: "CFQ7TTC0LFK5",
        sku: "0002",
        availability: "CFQ7TTC0K5DJ",
        name: "Microsoft 365 E5",
        publisher: MICROSOFT,
        publisher_id: "",
        eur_cents: 5470,
        usd_cents: 5700,
        seats: 150,
    },
    Product {
        id: "CFQ7TTC0LF8Q",
        sku: "0001",
        availability: "CFQ7TTC0K5C9",
        name: "Office 365 E1",
        publisher: MICROSOFT,
        publisher_id: "",
        eur_cents: 940,
        usd_cents: 1000,
        seats: 200,
    },
    Product {
        id: "CFQ7TTC0RQN9",
        sku: "0001",
        availability: "CFQ7TTC0RQ7M",
        name: "Microsoft Teams Essentials",
        publisher: MICROSOFT,
        publisher_id: "",
        eur_cents: 370,
        usd_cents: 400,
        seats: 50,
    },
    Product {
        id: "CFQ7TTC0LH16",
        sku: "0001",
        availability: "CFQ7TTC0K5G3",
        name: "Exchange Online (Plan 1)",
        publisher: MICROSOFT,
        publisher_id: "",
        eur_cents: 370,
        usd_cents: 400,
        seats: 100,
    },
    Product {
        id: "CFQ7TTC0LHSL",
        sku: "0001",
        availability: "CFQ7TTC0K6NZ",
        name: "Dynamics 365 Sales Enterprise",
        publisher: MICROSOFT,
        publisher_id: "",
        eur_cents: 8850,
        usd_cents: 10500,
        seats: 40,
    },
    Product {
        id: "DZH318Z0BQ3T",
        sku: "0003",
        availability: "DZH318Z0C2TW",
        name: "Litware Backup for Microsoft 365",
        publisher: "Litware Software Ltd.",
        publisher_id: "litwaresoftware1591234567",
        eur_cents: 450,
        usd_cents: 500,
        seats: 100,
    },
];

/// Relative frequency of each product among subscriptions.
const PRODUCT_WEIGHTS: [u64; 7] = [30, 10, 15, 15, 15, 7, 8];

/// Partner names: realistic, fictitious; some with umlauts, one with a comma.
const PARTNER_STEMS: [&str; 25] = [
    "Contoso Consulting",
    "Müller & Partner IT-Systemhaus",
    "Nordwind Digital",
    "Fabrikam Cloud Solutions",
    "Adatum Systemhaus",
    "Bergblick Software",
    "Litware Informatik",
    "Schäfer & Söhne EDV",
    "Proseware Managed Services",
    "Größl Netzwerktechnik",
    "Woodgrove Advisory",
    "Alpenwolke IT",
    "Trey Research Cloud",
    "Lüneburger Datenwerk",
    "Coho Digital",
    "Wingtip Solutions",
    "Kölner Cloudwerk",
    "Datenhafen Süd",
    "Blue Yonder IT Services",
    "Humongous Security",
    "Jürgensen Informatik",
    "Tailwind Modern Work",
    "Weißbach Systeme",
    "Margie's IT Service",
    "Fourth Coffee Digital",
];
const PARTNER_FORMS: [&str; 6] = ["GmbH", "AG", "GmbH & Co. KG", "e.K.", "Ltd.", "SE"];
const REGIONS: [&str; 4] = ["Nord", "Süd", "West", "Ost"];

/// The first customers of every sample show the awkward cases at once, even
/// for a handful of rows: umlauts, a comma, a newline and quotes in the name.
const FIXED_CUSTOMERS: [(&str, &str); 5] = [
    ("Müller & Söhne GmbH", "DE"),
    ("Contoso, Ltd.", "NL"),
    ("Northwind Traders GmbH\nNiederlassung Süd", "DE"),
    ("Gasthaus \"Zum Löwen\" KG", "AT"),
    ("Tailspin Toys, Inc.", "US"),
];

const CUSTOMER_STEMS: [&str; 40] = [
    "Bäckerei Schäfer",
    "Köhler Maschinenbau",
    "Jürgens Immobilien",
    "Straßenbau Weiß",
    "Adventure Works",
    "Alpine Ski House",
    "Blue Yonder Airlines",
    "Coho Winery",
    "Fourth Coffee",
    "Graphic Design Institute",
    "Humongous Insurance",
    "Lamna Healthcare",
    "Litware",
    "Lucerne Publishing",
    "Margie's Travel",
    "Proseware",
    "Relecloud",
    "Southridge Video",
    "Trey Research",
    "Wide World Importers",
    "Wingtip Toys",
    "Woodgrove Bank",
    "Fabrikam",
    "Contoso",
    "Northwind Traders",
    "Tailspin Toys",
    "Hotel \"Alpenblick\"",
    "Gärtnerei Böhm",
    "Möbelhaus Günther",
    "Brauerei Füssen",
    "Zahnarztpraxis Dr. Özdemir",
    "Steuerkanzlei Groß",
    "Autohaus Lüders",
    "Käserei Allgäu",
    "Elektro Schütz",
    "Sanitär Krämer",
    "Druckerei Mönch",
    "Ärztehaus am Markt",
    "Stadtwerke Überlingen",
    "Weingut Zöller",
];
const CITIES: [&str; 16] = [
    "München",
    "Köln",
    "Düsseldorf",
    "Nürnberg",
    "Berlin",
    "Hamburg",
    "Lübeck",
    "Göttingen",
    "Wien",
    "Graz",
    "Zürich",
    "Amsterdam",
    "Lyon",
    "Brüssel",
    "Würzburg",
    "Saarbrücken",
];
const CUSTOMER_FORMS: [&str; 9] = [
    "GmbH",
    "AG",
    "GmbH & Co. KG",
    "KG",
    "e.K.",
    "SE",
    ", Ltd.",
    "B.V.",
    "S.A.",
];
/// Second lines some customers carry inside their (quoted) name.
const NAME_SECOND_LINES: [&str; 3] = ["Abteilung IT", "z. Hd. Buchhaltung", "Niederlassung West"];

/// (country, VAT per mille, weight) of the EUR customers.
const EUR_COUNTRIES: [(&str, i64); 6] = [
    ("DE", 190),
    ("AT", 200),
    ("NL", 210),
    ("FR", 200),
    ("BE", 210),
    ("IE", 230),
];
const EUR_COUNTRY_WEIGHTS: [u64; 6] = [55, 15, 10, 8, 6, 6];

fn vat_per_mille(country: &str) -> i64 {
    EUR_COUNTRIES
        .iter()
        .find(|(c, _)| *c == country)
        .map(|(_, v)| *v)
        .unwrap_or(0)
}

const WORKLOADS: [&str; 4] = ["Exchange", "Teams", "SharePoint", "Intune"];

/// The rules written next to the generated data.
pub const RULES_TOML: &str = r#"# Incentive rules of the generated sample (porledger sample).
# Rates and shares are decimal strings: "0.04" is 4 %.
rounding = "half-up"

[[program]]
id = "por-core"
name = "Partner of Record core incentive"
associations = ["POR", "DPOR"]
basis = "billed-revenue"
rate = "0.04"
window_months = 36
valid_from = "2019-07-01"
exclude_qualifiers = ["Trial"]
publishers = ["Microsoft Corporation"]
description = "4 % of billed revenue of Microsoft products for 36 months from the designation."

[[program]]
id = "pal"
name = "Partner Admin Link incentive"
associations = ["PAL"]
basis = "billed-revenue"
rate = "0.015"
valid_from = "2021-01-01"
exclude_qualifiers = ["Trial"]
publishers = ["Microsoft Corporation"]
description = "1.5 % of billed revenue, split between the PAL partners of a customer."

[[program]]
id = "reseller"
name = "Indirect reseller rebate"
associations = ["RESELLER"]
basis = "billed-revenue"
rate = "0.01"
valid_from = "2022-01-01"
exclude_qualifiers = ["Trial"]
description = "1 % of billed revenue to the reseller on the billing line (ResellerMpnId)."
"#;

// ---------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------

/// How big the generated world is, derived from `--rows`, `--seed` and `--files`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub rows: u64,
    pub seed: u64,
    pub files: usize,
    pub partners: usize,
    pub customers: usize,
    pub slots: usize,
    pub months: u64,
}

impl Plan {
    /// Derives the sizes; `files` = `None` means one file per 500,000 rows.
    pub fn new(rows: u64, seed: u64, files: Option<usize>) -> Result<Plan, Fatal> {
        let files = match files {
            Some(0) => return Err(Fatal::Input("--files must be at least 1".into())),
            Some(k) if k as u64 > rows.max(1) => {
                return Err(Fatal::Input(format!(
                    "--files {k} is more than --rows {rows}: every file needs a row"
                )))
            }
            Some(k) => k,
            None => rows.div_ceil(ROWS_PER_FILE).max(1) as usize,
        };
        let customers = (rows / 250).clamp(5, 20_000) as usize;
        let partners = (customers / 8).clamp(4, 50);
        let slots = (customers as u64 * 5).max(rows.div_ceil(MAX_MONTHS)) as usize;
        let months = rows.div_ceil(slots as u64).max(1);
        Ok(Plan {
            rows,
            seed,
            files,
            partners,
            customers,
            slots,
            months,
        })
    }

    fn first_month(&self) -> Month {
        LAST_MONTH + 1 - self.months as Month
    }

    /// Rows `[start, end)` of file `k`.
    fn file_rows(&self, k: usize) -> (u64, u64) {
        let part = |i: usize| (self.rows as u128 * i as u128 / self.files as u128) as u64;
        (part(k), part(k + 1))
    }

    /// `billing/invoice-reconciliation-0001.csv`: zero-padded so that name
    /// order (the order porledger reads a directory in) is row order.
    fn file_name(&self, k: usize) -> String {
        let width = self.files.to_string().len().max(4);
        format!("invoice-reconciliation-{:0width$}.csv", k + 1)
    }
}

// ---------------------------------------------------------------------------
// The world: partners, customers, subscription slots
// ---------------------------------------------------------------------------

/// A GUID in lower-case text form.
type Guid = [u8; 36];

fn guid(rng: &mut SplitMix64) -> Guid {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hi = rng.next_u64();
    let lo = rng.next_u64();
    // Version 4, RFC 4122 variant.
    let hi = (hi & !0xF000) | 0x4000;
    let lo = (lo & !(0xC << 60)) | (0x8 << 60);
    let mut nibbles = [0u8; 32];
    for i in 0..16 {
        nibbles[i] = ((hi >> (60 - 4 * i)) & 0xF) as u8;
        nibbles[16 + i] = ((lo >> (60 - 4 * i)) & 0xF) as u8;
    }
    let mut out = [b'-'; 36];
    let mut n = 0;
    for (i, slot) in out.iter_mut().enumerate() {
        if !matches!(i, 8 | 13 | 18 | 23) {
            *slot = HEX[nibbles[n] as usize];
            n += 1;
        }
    }
    out
}

/// `N` characters of `[0-9A-Za-z]`, like Partner Center order IDs.
fn alphanumeric<const N: usize>(rng: &mut SplitMix64) -> [u8; N] {
    const ABC: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut out = [0u8; N];
    for c in out.iter_mut() {
        *c = ABC[rng.below(62) as usize];
    }
    out
}

/// A partner: MPN ID (6 or 7 digits, distinct) and name.
struct Partner {
    mpn: String,
    name: String,
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

/// A customer tenant with everything a billing line says about it.
struct Customer {
    id: Guid,
    name: String,
    domain: String,
    country: &'static str,
    usd: bool,
    vat_per_mille: i64,
    /// Index into `World::distributors` (the `MpnId` column).
    distributor: usize,
    /// Index of the reseller partner, if any.
    reseller: Option<usize>,
    /// The `ResellerMpnId` text: a partner's MPN ID, empty or `0`.
    reseller_text: String,
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

/// One subscription slot: a subscription billed every month, replaced by a new
/// one (generation 1) the month after it is cancelled.
struct Slot {
    customer: u32,
    product: u8,
    /// Billing day of the month (the subscription's anniversary), 1..=28.
    day: u8,
    /// Month the first subscription started (may precede the timeline).
    start: Month,
    /// Month the first subscription is cancelled, if it is.
    cancel: Option<Month>,
    promotion: bool,
    quantity: [i64; 2],
    subscription: [Guid; 2],
    order: [[u8; 32]; 2],
    alternate: [[u8; 12]; 2],
}

/// Everything decided before the first row is written.
struct World {
    plan: Plan,
    /// The billing account's tenant (the `PartnerId` column).
    provider: Guid,
    /// MPN IDs of the indirect provider's locations (the `MpnId` column).
    distributors: [String; 2],
    partners: Vec<Partner>,
    customers: Vec<Customer>,
    slots: Vec<Slot>,
    /// Invoice number per month of the timeline, EUR and USD.
    invoices: Vec<[[u8; 10]; 2]>,
}

fn seats(rng: &mut SplitMix64, max: u64) -> i64 {
    // Skewed towards small tenants: the minimum of two uniform draws.
    let a = rng.below(max);
    1 + rng.below(a + 1) as i64
}

impl World {
    fn new(plan: Plan) -> World {
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
        let resellers = (plan.partners * 3 / 5).max(1);
        let customers: Vec<Customer> = (0..plan.customers)
            .map(|c| {
                let mut rng = SplitMix64::stream(seed, TAG_CUSTOMER, c as u64);
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
            })
            .collect();
        let first = plan.first_month();
        let last = LAST_MONTH;
        let slots = (0..plan.slots)
            .map(|s| {
                let mut rng = SplitMix64::stream(seed, TAG_SLOT, s as u64);
                let customer = if s < plan.customers {
                    s
                } else {
                    let a = rng.below(plan.customers as u64);
                    rng.below(a + 1) as usize
                };
                let product = rng.weighted(&PRODUCT_WEIGHTS);
                let max_seats = PRODUCTS[product].seats;
                let cancel = if rng.chance(250) {
                    Some(first + rng.below((last - first + 1) as u64) as Month)
                } else {
                    None
                };
                Slot {
                    customer: customer as u32,
                    product: product as u8,
                    day: 1 + rng.below(28) as u8,
                    start: first - rng.below(36) as Month,
                    cancel,
                    promotion: rng.chance(50),
                    quantity: [seats(&mut rng, max_seats), seats(&mut rng, max_seats)],
                    subscription: [guid(&mut rng), guid(&mut rng)],
                    order: [alphanumeric(&mut rng), alphanumeric(&mut rng)],
                    alternate: [alphanumeric(&mut rng), alphanumeric(&mut rng)],
                }
            })
            .collect();
        let base = 100_000_000 + rng.below(800_000_000);
        let invoices = (0..plan.months)
            .map(|m| {
                let inv = |k: u64| {
                    let mut b = *b"G000000000";
                    let mut n = base + 2 * m + k;
                    for c in b[1..].iter_mut().rev() {
                        *c = b'0' + (n % 10) as u8;
                        n /= 10;
                    }
                    b
                };
                [inv(0), inv(1)]
            })
            .collect();
        World {
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

// ---------------------------------------------------------------------------
// One billing line
// ---------------------------------------------------------------------------

/// `ChargeType` values, with the sign of their amounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChargeType {
    New,
    Renew,
    CycleCharge,
    AddQuantity,
    RemoveQuantity,
    CancelImmediate,
    CustomerCredit,
}

impl ChargeType {
    fn as_str(self) -> &'static str {
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
struct Charge {
    kind: ChargeType,
    generation: usize,
    /// Cents; negative for credits.
    unit_cents: i64,
    /// Negative for removed seats and cancellations.
    quantity: i64,
    start: Ymd,
    end: Ymd,
    term_start: Ymd,
    term_end: Ymd,
    subscription_start: Ymd,
    trial: bool,
}

impl Charge {
    fn subtotal(&self) -> i64 {
        self.unit_cents * self.quantity
    }
}

/// VAT in cents, rounded half away from zero.
fn tax_cents(subtotal: i64, per_mille: i64) -> i64 {
    let t = (subtotal.abs() * per_mille + 500) / 1000;
    if subtotal < 0 {
        -t
    } else {
        t
    }
}

impl World {
    /// What slot `slot` is charged in `month`, using `rng` (the row's stream).
    fn charge(&self, slot: &Slot, usd: bool, month: Month, rng: &mut SplitMix64) -> Charge {
        let generation = match slot.cancel {
            Some(c) if month > c => 1,
            _ => 0,
        };
        let gen_start = match (generation, slot.cancel) {
            (1, Some(c)) => c + 1,
            _ => slot.start,
        };
        let age = month - gen_start;
        let product = &PRODUCTS[slot.product as usize];
        let price = if usd {
            product.usd_cents
        } else {
            product.eur_cents
        };
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
        let day = slot.day;
        let later = |rng: &mut SplitMix64, max: u64| (day + 1 + rng.below(max) as u8).min(28);
        let changed = |rng: &mut SplitMix64| 1 + rng.below((seats as u64 / 5).max(1)) as i64;
        let trial = kind == ChargeType::New && product.publisher == MICROSOFT && rng.chance(100);
        let (unit_cents, quantity, start_day) = match kind {
            ChargeType::New if trial => (0, seats, day),
            ChargeType::New | ChargeType::Renew | ChargeType::CycleCharge => (price, seats, day),
            ChargeType::AddQuantity => (price, changed(rng), later(rng, 20)),
            ChargeType::RemoveQuantity => (price, -changed(rng), later(rng, 6)),
            ChargeType::CancelImmediate => (price, -seats, later(rng, 6)),
            ChargeType::CustomerCredit => {
                let percent = 5 + rng.below(21) as i64;
                (-(price * seats * percent / 100).max(1), 1, later(rng, 20))
            }
        };
        let term_start_month = gen_start + 12 * (age / 12);
        Charge {
            kind,
            generation,
            unit_cents,
            quantity,
            start: Ymd::of(month, start_day),
            end: Ymd::day_before(month + 1, day),
            term_start: Ymd::of(term_start_month, day),
            term_end: Ymd::day_before(term_start_month + 12, day),
            subscription_start: Ymd::of(gen_start, day),
            trial,
        }
    }
}

// ---------------------------------------------------------------------------
// File styles and CSV formatting
// ---------------------------------------------------------------------------

/// Header spellings seen in real exports over the years.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HeaderStyle {
    /// The documented PascalCase names (`MpnId`, `ResellerMpnId`).
    Pascal,
    /// The API's camelCase (`mpnId`, `resellerMpnId`, `totalForCustomer`).
    Camel,
    /// PascalCase with the older `Tier2MpnId`.
    Tier2,
    /// PascalCase with an upper-case `MPNID`.
    UpperMpn,
}

/// Date formats seen in real exports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DateStyle {
    /// `10/1/2026`
    Slash,
    /// `10/1/2026 0:00:00`
    SlashTime,
    /// `2026-10-01T00:00:00Z`
    Iso,
}

/// How one billing file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileStyle {
    header: HeaderStyle,
    dates: DateStyle,
    bom: bool,
    quote_all: bool,
    crlf: bool,
}

impl FileStyle {
    /// File `k`'s style: the styles cycle so that any four consecutive files
    /// show every header spelling, both quoting styles and a BOM.
    fn of_file(k: usize) -> FileStyle {
        let header = [
            HeaderStyle::Pascal,
            HeaderStyle::Camel,
            HeaderStyle::Tier2,
            HeaderStyle::UpperMpn,
        ][k % 4];
        FileStyle {
            header,
            dates: [DateStyle::Slash, DateStyle::SlashTime, DateStyle::Iso][k % 3],
            bom: k % 4 >= 2,
            quote_all: k % 2 == 1,
            // API exports (camelCase) end lines with LF, the portal with CRLF.
            crlf: header != HeaderStyle::Camel,
        }
    }

    fn header(&self) -> [&'static str; 46] {
        let mut h = INVOICE_RECONCILIATION_COLUMNS;
        match self.header {
            HeaderStyle::Pascal => {}
            HeaderStyle::Camel => h = CAMEL_COLUMNS,
            HeaderStyle::Tier2 => h[7] = "Tier2MpnId",
            HeaderStyle::UpperMpn => h[6] = "MPNID",
        }
        h
    }
}

/// The 46 columns as the Partner Center API spells them.
const CAMEL_COLUMNS: [&str; 46] = [
    "partnerId",
    "customerId",
    "customerName",
    "customerDomainName",
    "customerCountry",
    "invoiceNumber",
    "mpnId",
    "resellerMpnId",
    "orderId",
    "orderDate",
    "productId",
    "skuId",
    "availabilityId",
    "skuName",
    "productName",
    "chargeType",
    "unitPrice",
    "quantity",
    "subtotal",
    "taxTotal",
    "totalForCustomer",
    "currency",
    "priceAdjustmentDescription",
    "publisherName",
    "publisherId",
    "subscriptionDescription",
    "subscriptionId",
    "chargeStartDate",
    "chargeEndDate",
    "termAndBillingCycle",
    "effectiveUnitPrice",
    "unitType",
    "alternateId",
    "billableQuantity",
    "billingFrequency",
    "pricingCurrency",
    "pcToBCExchangeRate",
    "pcToBCExchangeRateDate",
    "meterDescription",
    "reservationOrderId",
    "creditReasonCode",
    "subscriptionStartDate",
    "subscriptionEndDate",
    "referenceId",
    "productQualifiers",
    "promotionId",
];

/// Builds one CSV record at a time into a reusable buffer, without allocating
/// per field. Text is quoted when the style says so or when it holds a comma,
/// a quote or a line break; numbers and dates are written digit by digit.
struct RowBuf {
    buf: Vec<u8>,
    quote_all: bool,
    first: bool,
    eol: &'static [u8],
}

impl RowBuf {
    fn new(style: &FileStyle) -> RowBuf {
        RowBuf {
            buf: Vec::with_capacity(2048),
            quote_all: style.quote_all,
            first: true,
            eol: if style.crlf { b"\r\n" } else { b"\n" },
        }
    }

    fn start_field(&mut self) {
        if !self.first {
            self.buf.push(b',');
        }
        self.first = false;
    }

    fn text(&mut self, s: &str) {
        self.start_field();
        let b = s.as_bytes();
        if self.quote_all || b.iter().any(|&c| matches!(c, b',' | b'"' | b'\n' | b'\r')) {
            self.buf.push(b'"');
            for part in b.split_inclusive(|&c| c == b'"') {
                self.buf.extend_from_slice(part);
                if part.last() == Some(&b'"') {
                    self.buf.push(b'"');
                }
            }
            self.buf.push(b'"');
        } else {
            self.buf.extend_from_slice(b);
        }
    }

    /// A value known to need no quoting (digits, dates, IDs), quoted only
    /// when every field is.
    fn plain(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        self.start_field();
        if self.quote_all {
            self.buf.push(b'"');
        }
        write(&mut self.buf);
        if self.quote_all {
            self.buf.push(b'"');
        }
    }

    fn ascii(&mut self, b: &[u8]) {
        self.plain(|o| o.extend_from_slice(b));
    }

    fn int(&mut self, n: i64) {
        self.plain(|o| push_int(o, n));
    }

    fn cents(&mut self, c: i64) {
        self.plain(|o| push_cents(o, c));
    }

    fn date(&mut self, d: Ymd, style: DateStyle) {
        self.plain(|o| push_date(o, d, style));
    }

    fn end(&mut self) {
        self.buf.extend_from_slice(self.eol);
        self.first = true;
    }
}

fn push_uint(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

fn push_int(out: &mut Vec<u8>, n: i64) {
    if n < 0 {
        out.push(b'-');
    }
    push_uint(out, n.unsigned_abs());
}

/// `-1234` cents -> `-12.34`.
fn push_cents(out: &mut Vec<u8>, c: i64) {
    if c < 0 {
        out.push(b'-');
    }
    let a = c.unsigned_abs();
    push_uint(out, a / 100);
    out.push(b'.');
    out.push(b'0' + (a % 100 / 10) as u8);
    out.push(b'0' + (a % 10) as u8);
}

fn push_2(out: &mut Vec<u8>, n: u8) {
    out.push(b'0' + n / 10);
    out.push(b'0' + n % 10);
}

fn push_date(out: &mut Vec<u8>, d: Ymd, style: DateStyle) {
    match style {
        DateStyle::Slash | DateStyle::SlashTime => {
            push_uint(out, d.m as u64);
            out.push(b'/');
            push_uint(out, d.d as u64);
            out.push(b'/');
            push_uint(out, d.y as u64);
            if style == DateStyle::SlashTime {
                out.extend_from_slice(b" 0:00:00");
            }
        }
        DateStyle::Iso => {
            push_uint(out, d.y as u64);
            out.push(b'-');
            push_2(out, d.m);
            out.push(b'-');
            push_2(out, d.d);
            out.extend_from_slice(b"T00:00:00Z");
        }
    }
}

fn iso_date(d: Ymd) -> String {
    format!("{:04}-{:02}-{:02}", d.y, d.m, d.d)
}

impl World {
    /// Writes billing row `r` (global index) into `w`.
    fn write_row(&self, r: u64, style: &FileStyle, w: &mut RowBuf) {
        let plan = &self.plan;
        let month_offset = r / plan.slots as u64;
        let month = plan.first_month() + month_offset as Month;
        let slot = &self.slots[(r % plan.slots as u64) as usize];
        let cust = &self.customers[slot.customer as usize];
        let product = &PRODUCTS[slot.product as usize];
        let mut rng = SplitMix64::stream(plan.seed, TAG_ROW, r);
        let ch = self.charge(slot, cust.usd, month, &mut rng);
        let g = ch.generation;
        let currency = if cust.usd { "USD" } else { "EUR" };
        let subtotal = ch.subtotal();
        let tax = tax_cents(subtotal, cust.vat_per_mille);
        let ds = style.dates;
        let reference = guid(&mut rng);

        w.ascii(&self.provider);
        w.ascii(&cust.id);
        w.text(&cust.name);
        w.text(&cust.domain);
        w.ascii(cust.country.as_bytes());
        w.ascii(&self.invoices[month_offset as usize][cust.usd as usize]);
        w.ascii(self.distributors[cust.distributor].as_bytes());
        w.ascii(cust.reseller_text.as_bytes());
        w.ascii(&slot.order[g]);
        w.date(ch.term_start, ds);
        w.ascii(product.id.as_bytes());
        w.ascii(product.sku.as_bytes());
        w.ascii(product.availability.as_bytes());
        w.text(product.name);
        w.text(product.name);
        w.ascii(ch.kind.as_str().as_bytes());
        w.cents(ch.unit_cents);
        w.int(ch.quantity);
        w.cents(subtotal);
        w.cents(tax);
        w.cents(subtotal + tax);
        w.ascii(currency.as_bytes());
        w.text("");
        w.text(product.publisher);
        w.text(product.publisher_id);
        w.text(product.name);
        w.ascii(&slot.subscription[g]);
        w.date(ch.start, ds);
        w.date(ch.end, ds);
        w.text("One-Year commitment for monthly/yearly billing");
        w.cents(ch.unit_cents);
        w.text("Licenses");
        w.ascii(&slot.alternate[g]);
        w.int(ch.quantity);
        w.text("Monthly");
        w.ascii(currency.as_bytes());
        w.ascii(b"1");
        w.date(Ymd::of(month, 1), ds);
        w.text("");
        w.text("");
        w.text(if ch.kind == ChargeType::CustomerCredit {
            "Service credit"
        } else {
            ""
        });
        w.date(ch.subscription_start, ds);
        w.date(ch.term_end, ds);
        w.ascii(&reference);
        w.text(if ch.trial { "[\"Trial\"]" } else { "" });
        w.text(if slot.promotion && g == 0 {
            "39NFJQT1Q5KL:0002"
        } else {
            ""
        });
        w.end();
    }

    /// Writes billing file `k` into `dir`; returns its size in bytes.
    fn write_billing_file(&self, dir: &Path, k: usize) -> Result<u64, Fatal> {
        let path = dir.join(self.plan.file_name(k));
        let style = FileStyle::of_file(k);
        let file = File::create(&path).map_err(|e| Fatal::io(&path, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let mut w = RowBuf::new(&style);
        if style.bom {
            w.buf.extend_from_slice(b"\xEF\xBB\xBF");
        }
        for name in style.header() {
            w.text(name);
        }
        w.end();
        let mut bytes = 0u64;
        let (start, end) = self.plan.file_rows(k);
        for r in start..end {
            self.write_row(r, &style, &mut w);
            if w.buf.len() >= 1 << 16 {
                out.write_all(&w.buf).map_err(|e| Fatal::io(&path, e))?;
                bytes += w.buf.len() as u64;
                w.buf.clear();
            }
        }
        out.write_all(&w.buf).map_err(|e| Fatal::io(&path, e))?;
        bytes += w.buf.len() as u64;
        out.flush().map_err(|e| Fatal::io(&path, e))?;
        Ok(bytes)
    }
}

// ---------------------------------------------------------------------------
// Designations
// ---------------------------------------------------------------------------

/// One row of `designations.csv`.
struct DesignationRow<'a> {
    customer: &'a Customer,
    partner: &'a Partner,
    association: &'static str,
    workload: &'static str,
    subscription: Option<&'a Guid>,
    share: &'static str,
    valid_from: Ymd,
    valid_to: Option<Ymd>,
}

const DESIGNATIONS_HEADER: &str =
    "customer_id,partner_id,partner_name,association,workload,subscription_id,share,valid_from,valid_to";

impl World {
    /// A random day in months `from..=to`.
    fn day_between(rng: &mut SplitMix64, from: Month, to: Month) -> Ymd {
        let m = from + rng.below((to - from).max(0) as u64 + 1) as Month;
        Ymd::of(m, 1 + rng.below(28) as u8)
    }

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
        let from = Self::day_between(&mut rng, first - 12, first + (LAST_MONTH - first) / 3);
        let row = |partner, association, from| DesignationRow {
            customer: cust,
            partner,
            association,
            workload: "",
            subscription: None,
            share: "",
            valid_from: from,
            valid_to: None,
        };
        match rng.below(1000) {
            // No designation at all.
            0..=99 => {}
            // DPOR for every subscription.
            100..=499 => out.push(row(self.partner_for(cust, &mut rng), "DPOR", from)),
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
                        ..row(partner, "DPOR", from)
                    });
                }
            }
            // POR for the tenant.
            650..=749 => out.push(row(self.partner_for(cust, &mut rng), "POR", from)),
            // Two PAL partners, equal split.
            750..=829 => {
                let (a, b) = self.two_partners(&mut rng);
                out.push(row(a, "PAL", from));
                out.push(row(b, "PAL", from));
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
                    ..row(a, "PAL", from)
                });
                out.push(DesignationRow {
                    share: sb,
                    ..row(b, "PAL", from)
                });
            }
            // DPOR whose 36-month window ends inside the timeline.
            860..=939 => {
                let window_end = Self::day_between(&mut rng, first, LAST_MONTH);
                let from = Ymd {
                    y: window_end.y - 3,
                    ..window_end
                };
                out.push(row(self.partner_for(cust, &mut rng), "DPOR", from));
            }
            // The customer changed its DPOR partner during the timeline.
            _ => {
                let (a, b) = self.two_partners(&mut rng);
                let change =
                    Self::day_between(&mut rng, first.max(from_month(from) + 1), LAST_MONTH);
                out.push(DesignationRow {
                    valid_to: Some(change),
                    ..row(a, "DPOR", from)
                });
                out.push(row(b, "DPOR", change));
            }
        }
        // A CPOR claim for one workload: accepted, but no program here pays CPOR.
        if rng.chance(50) {
            let workload = *rng.pick(&WORKLOADS);
            out.push(DesignationRow {
                workload,
                ..row(rng.pick(&self.partners), "CPOR", from)
            });
        }
    }

    /// The whole `designations.csv`.
    fn designations_csv(&self) -> Vec<u8> {
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
                w.ascii(&d.customer.id);
                w.text(&d.partner.mpn);
                w.text(&d.partner.name);
                w.text(d.association);
                w.text(d.workload);
                w.ascii(d.subscription.map(|s| &s[..]).unwrap_or(b""));
                w.text(d.share);
                w.text(&iso_date(d.valid_from));
                w.text(&d.valid_to.map(iso_date).unwrap_or_default());
                w.end();
            }
        }
        w.buf
    }
}

fn from_month(d: Ymd) -> Month {
    d.y * 12 + d.m as Month - 1
}

// ---------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------

/// What [`generate`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    pub plan: Plan,
    pub billing_files: Vec<PathBuf>,
    /// Bytes of all files written (billing, designations, rules).
    pub bytes: u64,
    /// First and last billed month, `YYYY-MM`.
    pub first_month: String,
    pub last_month: String,
}

fn month_label(m: Month) -> String {
    format!("{:04}-{:02}", m.div_euclid(12), m.rem_euclid(12) + 1)
}

/// Refuses to mix with billing files of another run: porledger reads every
/// `*.csv` in the directory.
fn check_billing_dir(dir: &Path, plan: &Plan) -> Result<(), Fatal> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Fatal::io(dir, e)),
    };
    let ours: Vec<String> = (0..plan.files).map(|k| plan.file_name(k)).collect();
    for e in entries {
        let e = e.map_err(|e| Fatal::io(dir, e))?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.to_ascii_lowercase().ends_with(".csv") && !ours.contains(&name) {
            return Err(Fatal::Input(format!(
                "{} already holds {name}, which this run would not overwrite; \
                 porledger reads every *.csv there, so choose an empty --out directory",
                dir.display()
            )));
        }
    }
    Ok(())
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<u64, Fatal> {
    std::fs::write(path, bytes).map_err(|e| Fatal::io(path, e))?;
    Ok(bytes.len() as u64)
}

/// Writes the whole sample into `out`. Billing files are written in parallel.
pub fn generate(out: &Path, plan: Plan) -> Result<Written, Fatal> {
    let billing = out.join("billing");
    check_billing_dir(&billing, &plan)?;
    std::fs::create_dir_all(&billing).map_err(|e| Fatal::io(&billing, e))?;
    let world = World::new(plan);
    let plan = &world.plan;
    let (designations, sizes) = rayon::join(
        || world.designations_csv(),
        || {
            (0..plan.files)
                .into_par_iter()
                .map(|k| world.write_billing_file(&billing, k))
                .collect::<Result<Vec<u64>, Fatal>>()
        },
    );
    let mut bytes: u64 = sizes?.iter().sum();
    bytes += write_file(&out.join("designations.csv"), &designations)?;
    bytes += write_file(&out.join("rules.toml"), RULES_TOML.as_bytes())?;
    Ok(Written {
        billing_files: (0..plan.files)
            .map(|k| billing.join(plan.file_name(k)))
            .collect(),
        bytes,
        first_month: month_label(plan.first_month()),
        last_month: month_label(LAST_MONTH),
        plan: plan.clone(),
    })
}

/// `porledger sample`.
pub fn command(args: &SampleArgs) -> Result<(), Fatal> {
    let plan = Plan::new(args.rows, args.seed, args.files)?;
    let w = generate(&args.out, plan)?;
    let g = crate::app::group;
    eprintln!(
        "sample: wrote {} billing file{} with {} rows ({} customers, {} subscription slots, \
         {} partners, charges {}..{}), {} bytes in all, to {}",
        w.plan.files,
        if w.plan.files == 1 { "" } else { "s" },
        g(w.plan.rows),
        g(w.plan.customers as u64),
        g(w.plan.slots as u64),
        w.plan.partners,
        w.first_month,
        w.last_month,
        g(w.bytes),
        args.out.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::designations::parse_designations;
    use crate::ingest::{self, open_billing, read_chunks, InputFile};
    use crate::pipeline::{self, ChunkOutput, Sink, StreamSettings};
    use crate::rules::parse_rules;
    use rust_decimal::Decimal;

    fn read_all(dir: &Path) -> Vec<(String, Vec<u8>)> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("billing"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        files.push(dir.join("designations.csv"));
        files.push(dir.join("rules.toml"));
        files
            .into_iter()
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect()
    }

    fn sample(rows: u64, seed: u64, files: Option<usize>) -> (tempfile::TempDir, Written) {
        let dir = tempfile::tempdir().unwrap();
        let w = generate(dir.path(), Plan::new(rows, seed, files).unwrap()).unwrap();
        (dir, w)
    }

    #[test]
    fn prng_is_splitmix64() {
        // First outputs of Vigna's reference splitmix64.c seeded with 1234567.
        let mut r = SplitMix64::new(1234567);
        assert_eq!(r.next_u64(), 6457827717110365317);
        assert_eq!(r.next_u64(), 3203168211198807973);
        let mut r = SplitMix64::new(7);
        assert!((0..1000).all(|_| r.below(10) < 10));
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let (a, _) = sample(3_000, 42, Some(4));
        let (b, _) = sample(3_000, 42, Some(4));
        let (c, _) = sample(3_000, 43, Some(4));
        assert_eq!(read_all(a.path()), read_all(b.path()));
        let (fa, fc) = (read_all(a.path()), read_all(c.path()));
        for i in 0..4 {
            assert_ne!(fa[i].1, fc[i].1, "billing file {i} should differ");
        }
        assert_ne!(fa[4].1, fc[4].1, "designations should differ");
    }

    #[test]
    fn sizes_scale_with_rows() {
        let p = Plan::new(5_000_000, 1, None).unwrap();
        assert_eq!((p.files, p.customers, p.partners), (10, 20_000, 50));
        assert_eq!((p.slots, p.months), (100_000, 50));
        let p = Plan::new(10, 1, None).unwrap();
        assert_eq!((p.files, p.customers, p.partners), (1, 5, 4));
        assert!(Plan::new(10, 1, Some(0)).is_err());
        assert!(Plan::new(3, 1, Some(4)).is_err());
        let p = Plan::new(7, 1, Some(3)).unwrap();
        let parts: Vec<(u64, u64)> = (0..3).map(|k| p.file_rows(k)).collect();
        assert_eq!(parts, [(0, 2), (2, 4), (4, 7)]);
    }

    /// Every file is read by porledger's own ingest: the format is recognised,
    /// every record has 46 fields and parses, the row count is exact and
    /// amounts add up (`Subtotal = UnitPrice x Quantity`, `Total = Subtotal + TaxTotal`).
    #[test]
    fn output_parses_with_porledger_ingest() {
        let rows = 20_001;
        let (dir, w) = sample(rows, 9, Some(4));
        let mut seen = 0u64;
        let mut trials = 0;
        let mut negative = 0;
        let mut multi_line_names = 0;
        for path in &w.billing_files {
            let file = InputFile {
                path: path.clone(),
                display: path.display().to_string(),
                size: std::fs::metadata(path).unwrap().len(),
            };
            let opened = open_billing(&file).unwrap();
            let layout = &opened.layout;
            assert_eq!(layout.format, ingest::BillingFormat::InvoiceReconciliation);
            assert_eq!(layout.header.len(), 46);
            let col = |names: &[&str]| {
                layout
                    .header
                    .iter()
                    .position(|h| names.contains(&ingest::billing::normalize_header(h).as_str()))
                    .unwrap()
            };
            let (unit, qty, sub, tax, total) = (
                col(&["unitprice"]),
                col(&["quantity"]),
                col(&["subtotal"]),
                col(&["taxtotal"]),
                col(&["total", "totalforcustomer"]),
            );
            read_chunks(0, &file, &opened.header, 1 << 16, Vec::new, |chunk| {
                let mut rdr = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .from_reader(&chunk.data[..]);
                for rec in rdr.byte_records() {
                    let rec = rec.unwrap();
                    assert_eq!(rec.len(), 46);
                    let line = layout.parse(&rec).unwrap();
                    let num = |i: usize| -> Decimal {
                        std::str::from_utf8(&rec[i]).unwrap().parse().unwrap()
                    };
                    assert_eq!(num(unit) * num(qty), line.subtotal);
                    assert_eq!(num(sub) + num(tax), num(total));
                    trials += line.qualifiers.contains("Trial") as u32;
                    negative += line.subtotal.is_sign_negative() as u32;
                    multi_line_names += line.customer_name.contains('\n') as u32;
                    seen += 1;
                }
                true
            })
            .unwrap();
        }
        assert_eq!(seen, rows);
        assert!(trials > 0 && negative > 0 && multi_line_names > 0);
        let d = std::fs::read(dir.path().join("designations.csv")).unwrap();
        let d = parse_designations("designations.csv", &d).unwrap();
        assert!(d.rejects.is_empty(), "{:?}", d.rejects);
        assert!(d.rows.len() > 5);
        parse_rules(RULES_TOML).unwrap();
    }

    struct Count(u64);
    impl Sink for Count {
        fn chunk(&mut self, out: &ChunkOutput) -> Result<(), Fatal> {
            self.0 += out.n_rejects;
            Ok(())
        }
    }

    /// The whole pipeline accepts every generated row: nothing is rejected, and
    /// the sample shows every kind of outcome.
    #[test]
    fn pipeline_rejects_nothing() {
        let (dir, _) = sample(6_000, 3, Some(4));
        let inputs = pipeline::load_inputs(
            &[dir.path().join("billing")],
            &dir.path().join("designations.csv"),
            &dir.path().join("rules.toml"),
        )
        .unwrap();
        assert!(inputs.designations.rejects.is_empty());
        assert!(crate::quality::check_designations(inputs.index.rows(), "d").is_empty());
        let settings = StreamSettings {
            threads: 2,
            chunk_size: 1 << 16,
            period: None,
            max_rejects: None,
        };
        let mut sink = Count(0);
        let s = pipeline::stream(&inputs, &settings, &mut sink, &(), 0).unwrap();
        let t = s.fold.totals();
        assert_eq!((s.rejects, sink.0, t.rejected), (0, 0, 0));
        assert_eq!(t.rows, 6_000);
        assert!(t.accrued > t.rows / 2, "{t:?}");
        for reason in crate::accrue::Reason::ALL {
            // Tax rows (not-revenue) come only from FOCUS files, which the
            // sample does not write.
            if !matches!(
                reason,
                crate::accrue::Reason::RuleNotInForce | crate::accrue::Reason::NotRevenue
            ) {
                assert!(
                    t.not_eligible_by_reason[reason as usize] > 0,
                    "{reason:?}: {t:?}"
                );
            }
        }
    }

    #[test]
    fn refuses_foreign_billing_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("billing")).unwrap();
        std::fs::write(dir.path().join("billing/old.csv"), "x").unwrap();
        let e = generate(dir.path(), Plan::new(100, 1, None).unwrap()).unwrap_err();
        assert!(e.to_string().contains("old.csv"), "{e}");
        // Re-running into the same directory is fine.
        let (dir, _) = sample(100, 1, None);
        generate(dir.path(), Plan::new(100, 1, None).unwrap()).unwrap();
    }

    #[test]
    fn formatting_helpers() {
        let mut v = Vec::new();
        push_cents(&mut v, -1234);
        v.push(b' ');
        push_cents(&mut v, 5);
        v.push(b' ');
        push_date(&mut v, Ymd::of(LAST_MONTH, 1), DateStyle::SlashTime);
        v.push(b' ');
        push_date(&mut v, Ymd::day_before(2024 * 12 + 2, 1), DateStyle::Iso);
        assert_eq!(
            String::from_utf8(v).unwrap(),
            "-12.34 0.05 10/1/2026 0:00:00 2024-02-29T00:00:00Z"
        );
        assert_eq!((tax_cents(-1005, 190), tax_cents(1005, 190)), (-191, 191));
        let mut w = RowBuf::new(&FileStyle::of_file(0));
        w.text("a,b");
        w.text("say \"hi\"");
        w.text("x");
        w.end();
        assert_eq!(w.buf, b"\"a,b\",\"say \"\"hi\"\"\",x\r\n");
    }
}
