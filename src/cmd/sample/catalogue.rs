//! Static catalogues: the price list, partner and customer names, countries.
//!
//! Names are realistic and fictitious; some carry umlauts, commas, quotes or
//! a second line, as real tenant names do, so every sample exercises quoting.

/// A product of the price list. Prices are per seat and month, in cents.
/// Product and SKU IDs imitate the Partner Center catalogue's format.
pub(super) struct Product {
    pub(super) id: &'static str,
    pub(super) sku: &'static str,
    pub(super) availability: &'static str,
    pub(super) name: &'static str,
    pub(super) publisher: &'static str,
    pub(super) publisher_id: &'static str,
    pub(super) eur_cents: i64,
    pub(super) usd_cents: i64,
    /// Typical seat count (upper bound of the skewed draw).
    pub(super) seats: u64,
}

pub(super) const MICROSOFT: &str = "Microsoft Corporation";

pub(super) const PRODUCTS: [Product; 7] = [
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
pub(super) const PRODUCT_WEIGHTS: [u64; 7] = [30, 10, 15, 15, 15, 7, 8];

/// Partner names: realistic, fictitious; some with umlauts, one with a comma.
pub(super) const PARTNER_STEMS: [&str; 25] = [
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
pub(super) const PARTNER_FORMS: [&str; 6] = ["GmbH", "AG", "GmbH & Co. KG", "e.K.", "Ltd.", "SE"];
pub(super) const REGIONS: [&str; 4] = ["Nord", "Süd", "West", "Ost"];

/// The first customers of every sample show the awkward cases at once, even
/// for a handful of rows: umlauts, a comma, a newline and quotes in the name.
pub(super) const FIXED_CUSTOMERS: [(&str, &str); 5] = [
    ("Müller & Söhne GmbH", "DE"),
    ("Contoso, Ltd.", "NL"),
    ("Northwind Traders GmbH\nNiederlassung Süd", "DE"),
    ("Gasthaus \"Zum Löwen\" KG", "AT"),
    ("Tailspin Toys, Inc.", "US"),
];

pub(super) const CUSTOMER_STEMS: [&str; 40] = [
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
pub(super) const CITIES: [&str; 16] = [
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
pub(super) const CUSTOMER_FORMS: [&str; 9] = [
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
pub(super) const NAME_SECOND_LINES: [&str; 3] =
    ["Abteilung IT", "z. Hd. Buchhaltung", "Niederlassung West"];

/// (country, VAT per mille, weight) of the EUR customers.
pub(super) const EUR_COUNTRIES: [(&str, i64); 6] = [
    ("DE", 190),
    ("AT", 200),
    ("NL", 210),
    ("FR", 200),
    ("BE", 210),
    ("IE", 230),
];
pub(super) const EUR_COUNTRY_WEIGHTS: [u64; 6] = [55, 15, 10, 8, 6, 6];

pub(super) fn vat_per_mille(country: &str) -> i64 {
    EUR_COUNTRIES
        .iter()
        .find(|(c, _)| *c == country)
        .map(|(_, v)| *v)
        .unwrap_or(0)
}

pub(super) const WORKLOADS: [&str; 4] = ["Exchange", "Teams", "SharePoint", "Intune"];
