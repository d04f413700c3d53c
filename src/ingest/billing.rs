//! Partner Center billing exports: recognising the format from the header, the
//! header alias table, and turning one CSV record into a typed [`BillingLine`].

use std::fmt;

use chrono::NaiveDate;
use rust_decimal::Decimal;

use crate::csv_text::within;
use crate::dates::parse_date;
use crate::money::{parse_amount, AmountError, Currency};
use crate::text::trim;

/// The billing file formats porledger reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BillingFormat {
    /// New-commerce invoice reconciliation (license-based, 46 columns).
    InvoiceReconciliation,
    /// Legacy license-based reconciliation (28 columns, `OfferId`).
    LegacyLicense,
    /// New-commerce daily rated usage (Azure; basis `BillingPreTaxTotal`, dated by `UsageDate`).
    DailyRatedUsage,
    /// FOCUS (FinOps Open Cost and Usage Specification) cost and usage, e.g.
    /// Azure Cost Management's `FocusCost` export: basis `BilledCost`, customer
    /// `x_CustomerId`, half-open charge periods, `NULL` for nulls.
    Focus,
}

impl BillingFormat {
    pub fn as_str(&self) -> &'static str {
        match self {
            BillingFormat::InvoiceReconciliation => "new-commerce invoice reconciliation",
            BillingFormat::LegacyLicense => "legacy license-based reconciliation",
            BillingFormat::DailyRatedUsage => "new-commerce daily rated usage",
            BillingFormat::Focus => "FOCUS cost and usage",
        }
    }
}

/// The fields porledger takes from a billing line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    CustomerId,
    CustomerName,
    SubscriptionId,
    ChargeStartDate,
    ChargeEndDate,
    Subtotal,
    Currency,
    MpnId,
    ResellerMpnId,
    PublisherName,
    ProductQualifiers,
    ChargeType,
    ProductId,
    ProductName,
    ReferenceId,
    /// Seats of a license charge (paid available units for usage attainment).
    Quantity,
    /// Matched against the rules' product table besides ProductName.
    SkuName,
    /// Daily rated usage: the Azure subscription (`SubscriptionId` is the Azure plan).
    EntitlementId,
    /// Legacy license-based: the subscription ID the partner sees in the console.
    SyndicationPartnerSubscriptionNumber,
    /// Units billed (reconciliation of license lines uses it, not `Quantity`).
    BillableQuantity,
    /// The SKU of the product (new commerce), one of the keys a credit
    /// without `ReferenceId` is matched on. FOCUS files carry the SKU as
    /// the product (`SkuId` is [`Field::ProductId`] there).
    SkuId,
    /// The invoice the line is billed on (new commerce `G...`; FOCUS
    /// `InvoiceId`); legacy license-based files have none. Carried to the
    /// ledger for the tie-out's grain.
    InvoiceNumber,
}

const N_FIELDS: usize = 22;

/// The date forms a billing file's charge dates may take, for the reject.
const DATE_FORMS: &str = "M/D/YYYY, M/D/YYYY H:MM:SS or YYYY-MM-DD";

impl Field {
    /// An ID: matched against other inputs' IDs or the history's, so text
    /// that shows as another ID is refused ([`super::id_problem`]).
    fn is_id(self) -> bool {
        matches!(
            self,
            Field::CustomerId
                | Field::SubscriptionId
                | Field::MpnId
                | Field::ResellerMpnId
                | Field::ProductId
                | Field::ReferenceId
                | Field::EntitlementId
                | Field::SyndicationPartnerSubscriptionNumber
                | Field::SkuId
                | Field::InvoiceNumber
        )
    }

    pub const ALL: [Field; N_FIELDS] = [
        Field::CustomerId,
        Field::CustomerName,
        Field::SubscriptionId,
        Field::ChargeStartDate,
        Field::ChargeEndDate,
        Field::Subtotal,
        Field::Currency,
        Field::MpnId,
        Field::ResellerMpnId,
        Field::PublisherName,
        Field::ProductQualifiers,
        Field::ChargeType,
        Field::ProductId,
        Field::ProductName,
        Field::ReferenceId,
        Field::Quantity,
        Field::SkuName,
        Field::EntitlementId,
        Field::SyndicationPartnerSubscriptionNumber,
        Field::BillableQuantity,
        Field::SkuId,
        Field::InvoiceNumber,
    ];

    /// Header names that mean this field, normalised (lower case, letters and
    /// digits only), in order of preference. The first is the documented name.
    fn aliases(self, format: BillingFormat) -> &'static [&'static str] {
        use BillingFormat::*;
        match (self, format) {
            // FOCUS: the customer is Microsoft's x_CustomerId (the tenant). There is
            // no fallback to SubAccountId: that is a subscription (or another
            // provider's account), not the customer that designations name.
            (Field::CustomerId, Focus) => &["xcustomerid"],
            (Field::CustomerName, Focus) => &["xcustomername"],
            (Field::SubscriptionId, Focus) => &["subaccountid", "xsubscriptionid"],
            (Field::ChargeStartDate, Focus) => &["chargeperiodstart"],
            (Field::ChargeEndDate, Focus) => &["chargeperiodend"],
            (Field::Subtotal, Focus) => &["billedcost"],
            (Field::Currency, Focus) => &["billingcurrency"],
            (Field::ResellerMpnId, Focus) => &["xresellerid", "xresellermpnid"],
            (Field::ChargeType, Focus) => &["chargecategory"],
            (Field::ProductId, Focus) => &["skuid"],
            (Field::ProductName, Focus) => &["servicename", "xskudescription"],
            (Field::SkuName, Focus) => &["xskudescription"],
            (Field::SkuId, Focus) => &[],
            (Field::InvoiceNumber, Focus) => &["invoiceid", "xinvoiceid"],
            (Field::CustomerId, _) => &["customerid", "customertenantid"],
            (Field::CustomerName, _) => &["customername", "customercompanyname"],
            (Field::SubscriptionId, _) => &["subscriptionid"],
            (Field::ChargeStartDate, DailyRatedUsage) => &["usagedate", "chargestartdate"],
            (Field::ChargeStartDate, _) => &["chargestartdate"],
            (Field::ChargeEndDate, DailyRatedUsage) => &["usagedate", "chargeenddate"],
            (Field::ChargeEndDate, _) => &["chargeenddate"],
            (Field::Subtotal, DailyRatedUsage) => &["billingpretaxtotal"],
            (Field::Subtotal, _) => &["subtotal"],
            (Field::Currency, _) => &["currency", "billingcurrency"],
            (Field::MpnId, _) => &["mpnid", "partnermpnid"],
            (Field::ResellerMpnId, _) => &["resellermpnid", "tier2mpnid"],
            (Field::PublisherName, _) => &["publishername"],
            (Field::ProductQualifiers, _) => &["productqualifiers"],
            (Field::ChargeType, _) => &["chargetype"],
            (Field::ProductId, LegacyLicense) => &["offerid", "durableofferid"],
            (Field::ProductId, _) => &["productid"],
            (Field::ProductName, LegacyLicense) => &["offername", "subscriptionname"],
            (Field::ProductName, DailyRatedUsage) => &["productname", "metername"],
            (Field::ProductName, _) => &["productname", "skuname"],
            (Field::ReferenceId, _) => &["referenceid"],
            (Field::Quantity, _) => &["quantity", "billablequantity"],
            (Field::SkuName, _) => &["skuname"],
            (Field::EntitlementId, _) => &["entitlementid"],
            (Field::SyndicationPartnerSubscriptionNumber, _) => {
                &["syndicationpartnersubscriptionnumber"]
            }
            (Field::BillableQuantity, _) => &["billablequantity"],
            (Field::SkuId, _) => &["skuid"],
            (Field::InvoiceNumber, _) => &["invoicenumber"],
        }
    }

    /// Whether the aliases are spellings of one column (so that two of them in
    /// one header are ambiguous), rather than distinct columns tried in order
    /// of preference (`UsageDate` before `ChargeStartDate`).
    fn synonyms(self, format: BillingFormat) -> bool {
        use BillingFormat::*;
        matches!(
            (self, format),
            (
                Field::CustomerId | Field::CustomerName | Field::Currency,
                InvoiceReconciliation
            ) | (
                Field::CustomerId | Field::CustomerName | Field::Currency,
                LegacyLicense
            ) | (Field::CustomerId | Field::CustomerName, DailyRatedUsage)
                | (Field::MpnId, _)
                | (
                    Field::ResellerMpnId,
                    InvoiceReconciliation | LegacyLicense | DailyRatedUsage
                )
        )
    }

    /// The documented header name, for messages.
    pub fn name(self, format: BillingFormat) -> &'static str {
        use BillingFormat::*;
        match (self, format) {
            (Field::ChargeStartDate | Field::ChargeEndDate, DailyRatedUsage) => "UsageDate",
            (Field::Subtotal, DailyRatedUsage) => "BillingPreTaxTotal",
            (Field::ProductId, LegacyLicense) => "OfferId",
            (Field::ProductName, LegacyLicense) => "OfferName",
            (Field::CustomerId, Focus) => "x_CustomerId",
            (Field::CustomerName, Focus) => "x_CustomerName",
            (Field::SubscriptionId, Focus) => "SubAccountId",
            (Field::ChargeStartDate, Focus) => "ChargePeriodStart",
            (Field::ChargeEndDate, Focus) => "ChargePeriodEnd",
            (Field::Subtotal, Focus) => "BilledCost",
            (Field::Currency, Focus) => "BillingCurrency",
            (Field::ResellerMpnId, Focus) => "x_ResellerId",
            (Field::ChargeType, Focus) => "ChargeCategory",
            (Field::ProductId, Focus) => "SkuId",
            (Field::ProductName, Focus) => "ServiceName",
            (Field::SkuName, Focus) => "x_SkuDescription",
            (Field::InvoiceNumber, Focus) => "InvoiceId",
            (Field::CustomerId, _) => "CustomerId",
            (Field::CustomerName, _) => "CustomerName",
            (Field::SubscriptionId, _) => "SubscriptionId",
            (Field::ChargeStartDate, _) => "ChargeStartDate",
            (Field::ChargeEndDate, _) => "ChargeEndDate",
            (Field::Subtotal, _) => "Subtotal",
            (Field::Currency, _) => "Currency",
            (Field::MpnId, _) => "MpnId",
            (Field::ResellerMpnId, _) => "ResellerMpnId",
            (Field::PublisherName, _) => "PublisherName",
            (Field::ProductQualifiers, _) => "ProductQualifiers",
            (Field::ChargeType, _) => "ChargeType",
            (Field::ProductId, _) => "ProductId",
            (Field::ProductName, _) => "ProductName",
            (Field::ReferenceId, _) => "ReferenceId",
            (Field::Quantity, _) => "Quantity",
            (Field::SkuName, _) => "SkuName",
            (Field::EntitlementId, _) => "EntitlementId",
            (Field::SyndicationPartnerSubscriptionNumber, _) => {
                "SyndicationPartnerSubscriptionNumber"
            }
            (Field::BillableQuantity, _) => "BillableQuantity",
            (Field::SkuId, _) => "SkuId",
            (Field::InvoiceNumber, _) => "InvoiceNumber",
        }
    }

    /// Whether a file without the column is unusable. A FOCUS file without
    /// `x_CustomerId` (any non-Microsoft provider) is read, and each of its rows
    /// is rejected naming the column, so that the rows are counted and reported.
    fn required(self, format: BillingFormat) -> bool {
        if (self, format) == (Field::CustomerId, BillingFormat::Focus) {
            return false;
        }
        matches!(
            self,
            Field::CustomerId
                | Field::SubscriptionId
                | Field::ChargeStartDate
                | Field::Subtotal
                | Field::Currency
        )
    }
}

/// Lower case, ASCII letters and digits only: `Tier2MpnId`, `tier2_mpn_id` and
/// `TIER2MPNID` all become `tier2mpnid`.
pub fn normalize_header(h: &str) -> String {
    h.trim_start_matches('\u{feff}')
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// How to read one billing file: its format, delimiter and where each field is.
#[derive(Clone, Debug)]
pub struct BillingLayout {
    pub format: BillingFormat,
    pub delimiter: u8,
    /// `;`-separated files come from Excel with German (decimal commas, `.`
    /// grouping thousands) or Swiss settings (decimal points): see
    /// [`crate::money::parse_amount`].
    pub decimal_comma: bool,
    /// The header as written in the file, for messages.
    pub header: Vec<String>,
    idx: [Option<usize>; N_FIELDS],
}

/// Why a header could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayoutError {
    Unrecognised {
        found: String,
    },
    MissingColumn {
        column: &'static str,
        aliases: String,
    },
    /// Two columns name one field.
    Ambiguous {
        message: String,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::Unrecognised { found } => write!(
                f,
                "not a Partner Center billing export: the header has none of the column sets of \
                 invoice reconciliation (Subtotal, ChargeStartDate), legacy license-based \
                 (OfferId, Subtotal), daily rated usage (BillingPreTaxTotal, UsageDate) or FOCUS \
                 (BilledCost, ChargePeriodStart, BillingCurrency); it starts: {found}"
            ),
            LayoutError::MissingColumn { column, aliases } => {
                write!(
                    f,
                    "required column '{column}' is missing (accepted spellings: {aliases})"
                )
            }
            LayoutError::Ambiguous { message } => f.write_str(message),
        }
    }
}

/// The revenue basis of each format, normalised: `Subtotal` (invoice
/// reconciliation, legacy), `BillingPreTaxTotal` (daily rated usage),
/// `BilledCost` (FOCUS). A header holds one of them.
const REVENUE_BASES: [&str; 3] = ["subtotal", "billingpretaxtotal", "billedcost"];

impl BillingLayout {
    /// Recognises the format from the header and maps every field to its column.
    pub fn from_header(header: &[String], delimiter: u8) -> Result<BillingLayout, LayoutError> {
        let norm: Vec<String> = header.iter().map(|h| normalize_header(h)).collect();
        let has = |n: &str| norm.iter().any(|h| h == n);
        let format = if has("billedcost") && has("chargeperiodstart") && has("billingcurrency") {
            BillingFormat::Focus
        } else if has("billingpretaxtotal") && (has("usagedate") || has("chargestartdate")) {
            // Graph's `basic` attribute set may leave out UsageDate.
            BillingFormat::DailyRatedUsage
        } else if (has("offerid") || has("durableofferid")) && has("subtotal") {
            BillingFormat::LegacyLicense
        } else if has("subtotal") && has("chargestartdate") {
            BillingFormat::InvoiceReconciliation
        } else {
            let mut found = header.iter().take(8).cloned().collect::<Vec<_>>().join(",");
            if header.len() > 8 {
                found.push_str(",...");
            }
            return Err(LayoutError::Unrecognised { found });
        };
        let mut idx = [None; N_FIELDS];
        for (slot, field) in idx.iter_mut().zip(Field::ALL) {
            *slot = super::find_column(&norm, field.aliases(format), field.synonyms(format))
                .map_err(|(i, j)| LayoutError::Ambiguous {
                    message: super::ambiguous_columns(header, i, j),
                })?;
            if slot.is_none() && field.required(format) {
                return Err(LayoutError::MissingColumn {
                    column: field.name(format),
                    aliases: field.aliases(format).join(", "),
                });
            }
        }
        // The revenue basis of another format beside this one's (`Subtotal`
        // and `BillingPreTaxTotal`): which of the two amounts is the basis
        // is not the header's to say by the order the formats are tried in.
        if let Some(basis) = idx[Field::Subtotal as usize] {
            let other = norm
                .iter()
                .enumerate()
                .find(|&(j, h)| j != basis && REVENUE_BASES.contains(&h.as_str()));
            if let Some((j, _)) = other {
                return Err(LayoutError::Ambiguous {
                    message: super::ambiguous_columns(header, basis.min(j), basis.max(j)),
                });
            }
        }
        Ok(BillingLayout {
            format,
            delimiter,
            decimal_comma: delimiter == b';',
            header: header.to_vec(),
            idx,
        })
    }

    pub fn column(&self, f: Field) -> Option<usize> {
        self.idx[f as usize]
    }

    /// The header as written in the file for a field (for reject messages).
    pub fn column_name(&self, f: Field) -> &str {
        match self.column(f) {
            Some(i) => self.header[i].trim_start_matches('\u{feff}'),
            None => f.name(self.format),
        }
    }
}

/// One billing line, borrowing its text from the record it was parsed from.
#[derive(Clone, Debug, PartialEq)]
pub struct BillingLine<'r> {
    pub customer_id: &'r str,
    pub customer_name: &'r str,
    pub subscription_id: &'r str,
    pub charge_start: NaiveDate,
    pub charge_end: Option<NaiveDate>,
    /// The revenue basis: pre-tax, in `currency`.
    pub subtotal: Decimal,
    pub currency: Currency,
    pub mpn_id: Option<&'r str>,
    pub reseller_mpn_id: Option<&'r str>,
    pub publisher: &'r str,
    pub qualifiers: &'r str,
    pub charge_type: &'r str,
    pub product_id: &'r str,
    pub product_name: &'r str,
    pub reference_id: &'r str,
    /// Daily rated usage: the Azure subscription a PAL or DPOR link is made on.
    pub entitlement_id: Option<&'r str>,
    /// Legacy license-based: the subscription ID shown in the console.
    pub syndication_id: Option<&'r str>,
    /// Seats billed (`BillableQuantity`, else `Quantity`), when the file
    /// has the column and the line a value.
    pub billable_quantity: Option<Decimal>,
    /// A tax row (FOCUS `ChargeCategory = Tax`): not revenue, never accrues.
    pub tax: bool,
    /// `SkuId`, when the file has the column and the line a value.
    pub sku_id: Option<&'r str>,
    /// The invoice number; empty when the file has no such column.
    pub invoice_number: &'r str,
}

/// A rejected record: which column, what value, why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowError {
    pub column: String,
    pub value: String,
    pub reason: String,
}

/// `s` without `prefix` (compared ASCII case-insensitively), or `s`.
fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> &'a str {
    match s.get(..prefix.len()) {
        Some(head) if head.eq_ignore_ascii_case(prefix) => &s[prefix.len()..],
        _ => s,
    }
}

/// FOCUS periods are half-open: `ChargePeriodEnd` is the first instant *after*
/// the charge. porledger's charge end is the last day charged, inclusive. So an
/// end at midnight (or a bare date) means the day before; an end later in a day
/// (an hourly usage row ending 23:00) means that day. A zero-length period
/// (end = start) is taken as its start day.
pub fn focus_inclusive_end(end: NaiveDate, raw: &str, start: NaiveDate) -> NaiveDate {
    if !is_midnight(raw) {
        return end;
    }
    match end.pred_opt() {
        Some(prev) if prev >= start => prev,
        // end == start: a zero-length period, taken as its start day; an end
        // before the start is rejected by the caller.
        _ => end,
    }
}

/// Whether a date-time text (as accepted by `parse_date`) has no time part or
/// a time of exactly 00:00:00 (or 12:00:00 AM).
fn is_midnight(raw: &str) -> bool {
    let raw = raw.trim();
    let time = if raw.len() > 10 && raw.as_bytes()[4] == b'-' {
        raw[10..].trim_start_matches(['T', ' '])
    } else {
        match raw.find(' ') {
            Some(i) => raw[i + 1..].trim(),
            None => "",
        }
    };
    if time.is_empty() {
        return true;
    }
    let upper = time.to_ascii_uppercase();
    let (clock, am) = match upper
        .strip_suffix("AM")
        .or_else(|| upper.strip_suffix("PM"))
    {
        Some(c) => (c.trim(), Some(upper.ends_with("AM"))),
        None => (upper.as_str(), None),
    };
    // Drop a zone (`Z`, `+hh:mm`, `-hh:mm`) after the seconds.
    let clock = clock
        .find(['Z', '+', '-'])
        .map(|i| &clock[..i])
        .unwrap_or(clock);
    let mut parts = clock.split([':', '.']).map(|p| p.parse::<u32>().ok());
    let hour = parts.next().flatten();
    let rest_zero = parts.all(|p| p == Some(0));
    match (hour, am) {
        (Some(0), None) => rest_zero,
        (Some(12), Some(true)) => rest_zero,
        _ => false,
    }
}

/// Whether two publisher names name the same publisher. Exports spell
/// Microsoft's own lines `Microsoft` (daily rated usage, FOCUS), `Microsoft
/// Corporation` (invoice reconciliation, sample rules) or `Microsoft Corp.`:
/// all are one publisher. Other names compare case-insensitively, trimmed, so a
/// third-party marketplace publisher never matches Microsoft.
pub fn same_publisher(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    a.eq_ignore_ascii_case(b) || (is_microsoft(a) && is_microsoft(b))
}

/// `Microsoft`, `Microsoft Corporation`, `Microsoft Corp.` (any case,
/// punctuation and spacing).
pub fn is_microsoft(publisher: &str) -> bool {
    let letters = || {
        publisher
            .bytes()
            .filter(|b| b.is_ascii_alphanumeric())
            .map(|b| b.to_ascii_lowercase())
    };
    ["microsoft", "microsoftcorporation", "microsoftcorp"]
        .iter()
        .any(|m| letters().eq(m.bytes()))
}

/// The canonical spelling of a publisher: Microsoft's spellings become
/// `Microsoft Corporation`; any other name is returned trimmed.
pub fn canonical_publisher(publisher: &str) -> &str {
    if is_microsoft(publisher) {
        "Microsoft Corporation"
    } else {
        publisher.trim()
    }
}

/// A partner ID of the billing line (`MpnId`, `ResellerMpnId`): `None` for
/// empty, `0` and `-1` (no partner, and the legacy "reseller removed").
/// An integer written as a number with zero decimals (`612884.0`, `0.0`:
/// a pandas or Excel round trip) is that integer, as in Parquet files.
/// A placeholder for a missing value (`NULL`, `N/A`, `#N/A`, `NaN`,
/// `None`, or no letter or digit at all, as `-`) is no partner ID and no
/// documented "none": an error, so that it is never credited as a partner.
fn partner_ref(s: &str) -> Result<Option<&str>, &'static str> {
    let t = s.trim();
    let t = match t.split_once('.') {
        Some((int, frac))
            if !frac.is_empty()
                && frac.bytes().all(|b| b == b'0')
                && !int.is_empty()
                && int
                    .strip_prefix('-')
                    .unwrap_or(int)
                    .bytes()
                    .all(|b| b.is_ascii_digit()) =>
        {
            int
        }
        _ => t,
    };
    match t {
        "" | "0" | "-0" | "-1" => Ok(None),
        t if is_placeholder(t) => Err(
            "not a partner ID but a placeholder for a missing value (empty, 0 and -1 mean no \
             partner)",
        ),
        t => Ok(Some(t)),
    }
}

/// A spreadsheet's or database's text for a missing value ([`partner_ref`]).
fn is_placeholder(t: &str) -> bool {
    const WORDS: [&str; 8] = [
        "null",
        "nil",
        "none",
        "nan",
        "n/a",
        "na",
        "#n/a",
        "undefined",
    ];
    !t.chars().any(char::is_alphanumeric) || WORDS.iter().any(|w| t.eq_ignore_ascii_case(w))
}

/// A parsed CSV record's fields: the csv crate's records (tests, small
/// inputs) and simd-csv's (the streaming hot path) both qualify.
pub trait Fields {
    fn field(&self, i: usize) -> Option<&[u8]>;
    fn count(&self) -> usize;
    /// The bytes every field is a sub-slice of.
    fn whole(&self) -> &[u8];
}

impl Fields for csv::ByteRecord {
    fn field(&self, i: usize) -> Option<&[u8]> {
        self.get(i)
    }
    fn count(&self) -> usize {
        self.len()
    }
    fn whole(&self) -> &[u8] {
        self.as_slice()
    }
}

impl Fields for simd_csv::ByteRecord {
    fn field(&self, i: usize) -> Option<&[u8]> {
        self.get(i)
    }
    fn count(&self) -> usize {
        self.len()
    }
    fn whole(&self) -> &[u8] {
        self.as_slice()
    }
}

impl BillingLayout {
    /// Why a number was refused: `what` with the forms this file's numbers
    /// may take (`comma` the example with a decimal comma, for a
    /// `;`-separated file; `plain` for any other), or why it is ambiguous.
    fn number_problem(&self, e: AmountError, what: &str, comma: &str, plain: &str) -> String {
        e.reason(if self.decimal_comma {
            crate::money::semicolon_forms(what, comma)
        } else {
            format!("{what} (expected a plain decimal like {plain})")
        })
    }

    fn err(&self, f: Field, value: &[u8], reason: impl Into<String>) -> RowError {
        RowError {
            column: self.column_name(f).to_string(),
            value: String::from_utf8_lossy(value).into_owned(),
            reason: reason.into(),
        }
    }

    /// Field `f` as a partner ID ([`partner_ref`]).
    fn partner<'r, R: Fields>(
        &self,
        rec: &'r R,
        whole: Option<&'r str>,
        f: Field,
    ) -> Result<Option<&'r str>, RowError> {
        let t = self.text(rec, whole, f)?;
        partner_ref(t).map_err(|why| self.err(f, t.as_bytes(), why))
    }

    /// Field `f` as trimmed text. `whole` is the record's bytes when they are
    /// all valid UTF-8 (checked once per record: much cheaper than per field).
    fn text<'r, R: Fields>(
        &self,
        rec: &'r R,
        whole: Option<&'r str>,
        f: Field,
    ) -> Result<&'r str, RowError> {
        match self.column(f) {
            None => Ok(""),
            Some(i) => {
                let raw = rec.field(i).unwrap_or(b"");
                let t = match whole.and_then(|w| within(w, raw)) {
                    Some(t) => t,
                    None => std::str::from_utf8(raw)
                        .map_err(|_| self.err(f, raw, "not valid UTF-8 text"))?,
                };
                let t = trim(t);
                // FOCUS CSV writes nulls as the literal NULL.
                if self.format == BillingFormat::Focus && t.eq_ignore_ascii_case("null") {
                    return Ok("");
                }
                let problem = if f.is_id() {
                    super::id_problem(t)
                } else {
                    super::text_problem(t)
                };
                if let Some(why) = problem {
                    return Err(self.err(f, t.as_bytes(), why));
                }
                Ok(t)
            }
        }
    }

    /// Parses one record. The caller has checked the field count. A record
    /// that repeats the header (files joined one after another) is named as
    /// such, not by the first field it fails on ("not a date").
    pub fn parse<'r, R: Fields>(&self, rec: &'r R) -> Result<BillingLine<'r>, RowError> {
        self.parse_fields(rec).map_err(|e| {
            let fields = (0..rec.count()).map(|i| rec.field(i).unwrap_or_default());
            match super::records::LineProblem::header_again(fields, &self.header) {
                Some(p) => RowError {
                    column: p.column,
                    value: p.value,
                    reason: p.reason,
                },
                None => e,
            }
        })
    }

    fn parse_fields<'r, R: Fields>(&self, rec: &'r R) -> Result<BillingLine<'r>, RowError> {
        let focus = self.format == BillingFormat::Focus;
        let whole = simdutf8::basic::from_utf8(rec.whole()).ok();
        // FOCUS tax rows are not revenue: read (so that they are counted as not
        // eligible, with their amount) even without a customer or subscription.
        let tax = focus
            && self
                .text(rec, whole, Field::ChargeType)?
                .eq_ignore_ascii_case("tax");
        let customer_id = self.text(rec, whole, Field::CustomerId)?;
        if customer_id.is_empty() && !tax {
            let reason = if focus {
                "customer ID is empty: FOCUS rows need x_CustomerId (the customer's tenant; \
                 only Microsoft partner exports carry it)"
            } else {
                "customer ID is empty"
            };
            return Err(self.err(Field::CustomerId, b"", reason));
        }
        let mut subscription_id = self.text(rec, whole, Field::SubscriptionId)?;
        if focus {
            // Azure's SubAccountId is the resource path `/subscriptions/<id>`.
            subscription_id = strip_prefix_ci(subscription_id, "/subscriptions/");
        }
        if subscription_id.is_empty() && !tax {
            return Err(self.err(Field::SubscriptionId, b"", "subscription ID is empty"));
        }
        let start_raw = self.text(rec, whole, Field::ChargeStartDate)?;
        let charge_start = parse_date(start_raw).map_err(|e| {
            self.err(
                Field::ChargeStartDate,
                start_raw.as_bytes(),
                e.reason(start_raw, DATE_FORMS),
            )
        })?;
        let end_raw = self.text(rec, whole, Field::ChargeEndDate)?;
        let charge_end = if end_raw.is_empty() {
            None
        } else {
            let d = parse_date(end_raw).map_err(|e| {
                self.err(
                    Field::ChargeEndDate,
                    end_raw.as_bytes(),
                    e.reason(end_raw, DATE_FORMS),
                )
            })?;
            let d = if focus {
                focus_inclusive_end(d, end_raw, charge_start)
            } else {
                d
            };
            if d < charge_start {
                return Err(self.err(
                    Field::ChargeEndDate,
                    end_raw.as_bytes(),
                    format!("charge ends before it starts ({charge_start})"),
                ));
            }
            Some(d)
        };
        let sub_raw = self.text(rec, whole, Field::Subtotal)?;
        let subtotal = parse_amount(sub_raw, self.decimal_comma).map_err(|e| {
            let what = self.number_problem(e, "not an amount", "1.234,56", "-1234.56");
            self.err(Field::Subtotal, sub_raw.as_bytes(), what)
        })?;
        let cur_raw = self.text(rec, whole, Field::Currency)?;
        let currency = Currency::parse(cur_raw).ok_or_else(|| {
            self.err(
                Field::Currency,
                cur_raw.as_bytes(),
                "not an ISO 4217 currency code (e.g. EUR, USD, JPY)",
            )
        })?;
        let optional = |f: Field| -> Result<Option<&'r str>, RowError> {
            let t = self.text(rec, whole, f)?;
            Ok((!t.is_empty()).then_some(t))
        };
        // The seats billed: `BillableQuantity` where the file has it
        // (license lines reconcile on it), else `Quantity`. Usage attainment
        // counts them, so a value that is not a number rejects the row
        // rather than dropping its seats.
        let seats_field = [Field::BillableQuantity, Field::Quantity]
            .into_iter()
            .find(|&f| self.column(f).is_some());
        let billable_quantity = match seats_field {
            None => None,
            Some(f) => match self.text(rec, whole, f)? {
                "" => None,
                q => Some(parse_amount(q, self.decimal_comma).map_err(|e| {
                    let what = self.number_problem(e, "not a quantity", "1.234,5", "25 or 0.5");
                    self.err(f, q.as_bytes(), what)
                })?),
            },
        };
        Ok(BillingLine {
            customer_id,
            customer_name: self.text(rec, whole, Field::CustomerName)?,
            subscription_id,
            charge_start,
            charge_end,
            subtotal,
            currency,
            mpn_id: self.partner(rec, whole, Field::MpnId)?,
            reseller_mpn_id: self.partner(rec, whole, Field::ResellerMpnId)?,
            publisher: match (self.column(Field::PublisherName), self.format) {
                // Legacy license-based files predate third-party offers in CSP and
                // carry no publisher column: every line is a Microsoft offer.
                (None, BillingFormat::LegacyLicense) => "Microsoft Corporation",
                _ => self.text(rec, whole, Field::PublisherName)?,
            },
            qualifiers: self.text(rec, whole, Field::ProductQualifiers)?,
            charge_type: self.text(rec, whole, Field::ChargeType)?,
            product_id: self.text(rec, whole, Field::ProductId)?,
            product_name: self.text(rec, whole, Field::ProductName)?,
            reference_id: self.text(rec, whole, Field::ReferenceId)?,
            entitlement_id: optional(Field::EntitlementId)?,
            syndication_id: optional(Field::SyndicationPartnerSubscriptionNumber)?,
            billable_quantity,
            tax,
            sku_id: optional(Field::SkuId)?,
            invoice_number: self.text(rec, whole, Field::InvoiceNumber)?,
        })
    }
}

/// The 46 columns of the new-commerce invoice reconciliation file, in documented order.
pub const INVOICE_RECONCILIATION_COLUMNS: [&str; 46] = [
    "PartnerId",
    "CustomerId",
    "CustomerName",
    "CustomerDomainName",
    "CustomerCountry",
    "InvoiceNumber",
    "MpnId",
    "ResellerMpnId",
    "OrderId",
    "OrderDate",
    "ProductId",
    "SkuId",
    "AvailabilityId",
    "SkuName",
    "ProductName",
    "ChargeType",
    "UnitPrice",
    "Quantity",
    "Subtotal",
    "TaxTotal",
    "Total",
    "Currency",
    "PriceAdjustmentDescription",
    "PublisherName",
    "PublisherId",
    "SubscriptionDescription",
    "SubscriptionId",
    "ChargeStartDate",
    "ChargeEndDate",
    "TermAndBillingCycle",
    "EffectiveUnitPrice",
    "UnitType",
    "AlternateId",
    "BillableQuantity",
    "BillingFrequency",
    "PricingCurrency",
    "PCToBCExchangeRate",
    "PCToBCExchangeRateDate",
    "MeterDescription",
    "ReservationOrderId",
    "CreditReasonCode",
    "SubscriptionStartDate",
    "SubscriptionEndDate",
    "ReferenceId",
    "ProductQualifiers",
    "PromotionId",
];

/// The 28 columns of the legacy license-based file, in documented order.
pub const LEGACY_LICENSE_COLUMNS: [&str; 28] = [
    "PartnerId",
    "CustomerId",
    "CustomerName",
    "MpnId",
    "ResellerMpnId",
    "OrderId",
    "SubscriptionId",
    "SyndicationPartnerSubscriptionNumber",
    "OfferId",
    "DurableOfferId",
    "OfferName",
    "SubscriptionStartDate",
    "SubscriptionEndDate",
    "ChargeStartDate",
    "ChargeEndDate",
    "ChargeType",
    "UnitPrice",
    "Quantity",
    "Amount",
    "TotalOtherDiscount",
    "Subtotal",
    "Tax",
    "TotalForCustomer",
    "Currency",
    "DomainName",
    "SubscriptionName",
    "SubscriptionDescription",
    "BillingCycleType",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(cols: &[&str]) -> Vec<String> {
        cols.iter().map(|s| s.to_string()).collect()
    }

    /// A header with the revenue basis of two formats (`Subtotal` and
    /// `BillingPreTaxTotal`, `BilledCost`) is ambiguous, whichever format
    /// would otherwise be recognised: one of the amounts would be ignored.
    #[test]
    fn two_revenue_bases_are_ambiguous() {
        for (extra, name) in [
            ("BillingPreTaxTotal", "'BillingPreTaxTotal'"),
            ("UsageDate,billingPreTaxTotal", "'billingPreTaxTotal'"),
            ("BilledCost", "'BilledCost'"),
        ] {
            let mut cols = vec![
                "CustomerId",
                "SubscriptionId",
                "ChargeStartDate",
                "Subtotal",
                "Currency",
            ];
            cols.extend(extra.split(','));
            let e = BillingLayout::from_header(&hdr(&cols), b',').unwrap_err();
            let LayoutError::Ambiguous { message } = &e else {
                panic!("{e:?}")
            };
            assert!(
                message.contains("column 4 'Subtotal'") && message.contains(name),
                "{message}"
            );
        }
        // Each format's own basis alone is recognised as before.
        let usage = [
            "CustomerId",
            "SubscriptionId",
            "UsageDate",
            "BillingPreTaxTotal",
            "BillingCurrency",
        ];
        let l = BillingLayout::from_header(&hdr(&usage), b',').unwrap();
        assert_eq!(l.format, BillingFormat::DailyRatedUsage);
    }

    #[test]
    fn recognises_formats_and_aliases() {
        let l = BillingLayout::from_header(&hdr(&INVOICE_RECONCILIATION_COLUMNS), b',').unwrap();
        assert_eq!(l.format, BillingFormat::InvoiceReconciliation);
        assert_eq!(l.column(Field::ResellerMpnId), Some(7));
        let l = BillingLayout::from_header(&hdr(&LEGACY_LICENSE_COLUMNS), b',').unwrap();
        assert_eq!(l.format, BillingFormat::LegacyLicense);
        assert_eq!(l.column(Field::ProductId), Some(8));
        // camelCase, BOM, reordered, Tier2MpnId, extra columns.
        let l = BillingLayout::from_header(
            &hdr(&[
                "\u{feff}subtotal",
                "Extra",
                "customerId",
                "SUBSCRIPTIONID",
                "chargeStartDate",
                "currency",
                "Tier2MpnId",
            ]),
            b';',
        )
        .unwrap();
        assert_eq!(l.column(Field::Subtotal), Some(0));
        assert_eq!(l.column(Field::ResellerMpnId), Some(6));
        assert!(l.decimal_comma);
        assert_eq!(l.column_name(Field::Subtotal), "subtotal");
    }

    #[test]
    fn missing_and_unknown_headers() {
        let e = BillingLayout::from_header(
            &hdr(&["Subtotal", "ChargeStartDate", "CustomerId", "Currency"]),
            b',',
        )
        .unwrap_err();
        assert!(e.to_string().contains("'SubscriptionId' is missing"), "{e}");
        let e = BillingLayout::from_header(&hdr(&["a", "b"]), b',').unwrap_err();
        assert!(
            e.to_string()
                .contains("not a Partner Center billing export"),
            "{e}"
        );
    }

    fn focus_layout() -> BillingLayout {
        BillingLayout::from_header(
            &hdr(&[
                "BilledCost",
                "BillingCurrency",
                "ChargeCategory",
                "ChargePeriodStart",
                "ChargePeriodEnd",
                "SubAccountId",
                "x_CustomerId",
                "PublisherName",
                "x_ResellerId",
            ]),
            b',',
        )
        .unwrap()
    }

    #[test]
    fn focus_is_recognised_and_mapped() {
        let l = focus_layout();
        assert_eq!(l.format, BillingFormat::Focus);
        assert_eq!(l.column(Field::Subtotal), Some(0));
        assert_eq!(l.column(Field::CustomerId), Some(6));
        assert_eq!(l.column(Field::ResellerMpnId), Some(8));
        let rec = csv::ByteRecord::from(vec![
            "12.3400",
            "EUR",
            "Purchase",
            "2026-10-01T00:00:00Z",
            "2026-11-01T00:00:00Z",
            "/subscriptions/S1",
            "C1",
            "Microsoft",
            "NULL",
        ]);
        let line = l.parse(&rec).unwrap();
        assert_eq!(line.subscription_id, "S1");
        assert_eq!(line.charge_end, NaiveDate::from_ymd_opt(2026, 10, 31));
        assert_eq!(line.reseller_mpn_id, None, "NULL is empty");
        assert_eq!(line.subtotal.to_string(), "12.3400");
    }

    #[test]
    fn invoice_numbers_are_read_where_the_file_has_them() {
        let l = BillingLayout::from_header(&hdr(&INVOICE_RECONCILIATION_COLUMNS), b',').unwrap();
        assert_eq!(l.column(Field::InvoiceNumber), Some(5));
        // FOCUS names it InvoiceId; legacy license-based files have none.
        let mut cols: Vec<&str> = vec!["BilledCost", "BillingCurrency", "ChargePeriodStart"];
        cols.extend(["SubAccountId", "x_CustomerId", "InvoiceId"]);
        let l = BillingLayout::from_header(&hdr(&cols), b',').unwrap();
        assert_eq!(l.format, BillingFormat::Focus);
        assert_eq!(l.column(Field::InvoiceNumber), Some(5));
        assert_eq!(Field::InvoiceNumber.name(BillingFormat::Focus), "InvoiceId");
        let rec = csv::ByteRecord::from(vec![
            "1",
            "EUR",
            "2026-10-01T00:00:00Z",
            "S1",
            "C1",
            " G012345678 ",
        ]);
        assert_eq!(l.parse(&rec).unwrap().invoice_number, "G012345678");
        let l = BillingLayout::from_header(&hdr(&LEGACY_LICENSE_COLUMNS), b',').unwrap();
        assert_eq!(l.column(Field::InvoiceNumber), None);
    }

    #[test]
    fn focus_without_customer_column_rejects_rows_not_the_file() {
        let l = BillingLayout::from_header(
            &hdr(&[
                "BilledCost",
                "BillingCurrency",
                "ChargePeriodStart",
                "SubAccountId",
            ]),
            b',',
        )
        .unwrap();
        let rec = csv::ByteRecord::from(vec!["1", "USD", "2024-09-18 22:00:00", "acct"]);
        let e = l.parse(&rec).unwrap_err();
        assert_eq!(e.column, "x_CustomerId");
        assert!(e.reason.contains("x_CustomerId"), "{}", e.reason);
    }

    #[test]
    fn focus_tax_rows_are_read_as_tax() {
        let l = focus_layout();
        let rec = csv::ByteRecord::from(vec![
            "1.90",
            "EUR",
            "Tax",
            "2026-10-01",
            "2026-11-01",
            "S1",
            "C1",
            "Microsoft",
            "",
        ]);
        let line = l.parse(&rec).unwrap();
        assert!(line.tax);
        assert_eq!(line.subtotal.to_string(), "1.90");
    }

    #[test]
    fn focus_half_open_periods_become_inclusive_days() {
        let d = |s: &str| parse_date(s).unwrap();
        let start = d("2026-10-01");
        for (end, want) in [
            ("2026-11-01", "2026-10-31"),
            ("2026-11-01 00:00:00", "2026-10-31"),
            ("2026-11-01T00:00:00.000Z", "2026-10-31"),
            ("2026-11-01T00:00:00+00:00", "2026-10-31"),
            ("11/1/2026 12:00:00 AM", "2026-10-31"),
            ("11/1/2026 0:00:00", "2026-10-31"),
            ("2026-10-01 23:00:00", "2026-10-01"),
            ("10/1/2026 11:00:00 PM", "2026-10-01"),
            ("2026-10-01T00:00:00Z", "2026-10-01"),
        ] {
            assert_eq!(
                focus_inclusive_end(d(end), end, start).to_string(),
                want,
                "{end}"
            );
        }
    }

    /// The five columns a line needs, then `sixth`.
    fn minimal_layout(sixth: &str) -> BillingLayout {
        BillingLayout::from_header(
            &hdr(&[
                "CustomerId",
                "SubscriptionId",
                "ChargeStartDate",
                "Subtotal",
                "Currency",
                sixth,
            ]),
            b',',
        )
        .unwrap()
    }

    /// Partner IDs as pandas or Excel write them back (`612884.0`, `0.0`,
    /// `-1.0`) are the integers; a placeholder for a missing value is
    /// rejected, never credited as a partner named `NULL`.
    #[test]
    fn partner_ids_written_as_numbers_or_placeholders() {
        let l = minimal_layout("ResellerMpnId");
        let reseller = |v: &str| {
            let rec = csv::ByteRecord::from(vec!["c1", "s1", "2026-10-01", "1.00", "EUR", v]);
            l.parse(&rec)
                .map(|line| line.reseller_mpn_id.map(str::to_string))
                .map_err(|e| (e.column, e.value, e.reason))
        };
        for (v, id) in [
            ("612884", Some("612884")),
            ("612884.0", Some("612884")),
            (" 612884.00 ", Some("612884")),
            ("0", None),
            ("0.0", None),
            ("-1.0", None),
            ("", None),
            ("612884.5", Some("612884.5")),
            ("R-12", Some("R-12")),
        ] {
            assert_eq!(reseller(v), Ok(id.map(str::to_string)), "{v}");
        }
        for v in ["NULL", "N/A", "#N/A", "-", "--", "none", "NaN", "?"] {
            let (column, value, reason) = reseller(v).unwrap_err();
            assert_eq!((column.as_str(), value.as_str()), ("ResellerMpnId", v));
            assert!(reason.starts_with("not a partner ID"), "{reason}");
        }
        // IDs of other shapes are IDs (a designation may name `P-A`).
        assert_eq!(reseller("p-a"), Ok(Some("p-a".to_string())));
    }

    #[test]
    fn parses_and_rejects_rows() {
        let l = minimal_layout("ResellerMpnId");
        let rec =
            csv::ByteRecord::from(vec!["c1", "s1", "10/1/2026 0:00:00", "-12.50", "eur", "-1"]);
        let line = l.parse(&rec).unwrap();
        assert_eq!(line.subtotal.to_string(), "-12.50");
        assert_eq!(line.currency.as_str(), "EUR");
        assert_eq!(line.reseller_mpn_id, None);
        let rec = csv::ByteRecord::from(vec!["c1", "s1", "2026-10-01", "12,50", "EUR", ""]);
        let e = l.parse(&rec).unwrap_err();
        assert_eq!((e.column.as_str(), e.value.as_str()), ("Subtotal", "12,50"));
        let rec = csv::ByteRecord::from(vec!["c1", "s1", "31/10/2026", "1", "EUR", ""]);
        assert_eq!(l.parse(&rec).unwrap_err().column, "ChargeStartDate");
        let rec = csv::ByteRecord::from(vec!["c1", "s1", "2026-10-01", "1", "EURO", ""]);
        assert_eq!(l.parse(&rec).unwrap_err().column, "Currency");
    }

    #[test]
    fn invalid_utf8_is_rejected_only_in_a_column_that_is_read() {
        let l = minimal_layout("Unused");
        let bad: &[u8] = b"caf\xe9";
        let row = |c: &[u8], u: &[u8]| {
            let fields: Vec<&[u8]> = vec![c, b" s1 ", b"2026-10-01", b"1", b"EUR", u];
            csv::ByteRecord::from(fields)
        };
        // The record is not UTF-8 as a whole, so each field read is checked alone.
        let rec = row(b"c1", bad);
        let line = l.parse(&rec).unwrap();
        assert_eq!((line.customer_id, line.subscription_id), ("c1", "s1"));
        let e = l.parse(&row(bad, b"")).unwrap_err();
        assert_eq!(
            (e.column.as_str(), e.reason.as_str()),
            ("CustomerId", "not valid UTF-8 text")
        );
        // Valid records take the fields from the record's text, trimmed.
        let rec = row("\u{a0}Müller ".as_bytes(), b"x");
        assert_eq!(l.parse(&rec).unwrap().customer_id, "Müller");
    }

    proptest::proptest! {
        /// A field of a record is found in the record's text at its own bytes.
        #[test]
        fn fields_are_found_within_the_record(fields in proptest::collection::vec("[a-zé€ ,\"]{0,6}", 1..6)) {
            let rec = csv::ByteRecord::from(fields.clone());
            let whole = std::str::from_utf8(rec.as_slice()).unwrap();
            for (i, f) in fields.iter().enumerate() {
                proptest::prop_assert_eq!(within(whole, rec.get(i).unwrap()), Some(f.as_str()));
            }
        }
    }
}
