//! Billing files: the styles real exports have had (header spellings, dates,
//! BOM, quoting, line endings), and one billing line per row.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::catalogue::PRODUCTS;
use super::charges::{charge, tax_cents, ChargeType};
use super::rng::{guid, SplitMix64, TAG_ROW};
use super::rowbuf::RowBuf;
use super::world::World;
use crate::error::Fatal;
use crate::ingest::billing::INVOICE_RECONCILIATION_COLUMNS;

/// Header spellings seen in real exports over the years.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum HeaderStyle {
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
pub(super) enum DateStyle {
    /// `10/1/2026`
    Slash,
    /// `10/1/2026 0:00:00`
    SlashTime,
    /// `2026-10-01T00:00:00Z`
    Iso,
}

/// How one billing file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FileStyle {
    pub(super) header: HeaderStyle,
    pub(super) dates: DateStyle,
    pub(super) bom: bool,
    pub(super) quote_all: bool,
    pub(super) crlf: bool,
}

impl FileStyle {
    /// File `k`'s style: the styles cycle so that any four consecutive files
    /// show every header spelling, both quoting styles and a BOM.
    pub(super) fn of_file(k: usize) -> FileStyle {
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

    pub(super) fn header(&self) -> [&'static str; 46] {
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

impl World {
    /// Writes billing row `r` (global index) into `w`.
    fn write_row(&self, r: u64, style: &FileStyle, w: &mut RowBuf) {
        let plan = &self.plan;
        let month_offset = r / plan.slots as u64;
        let month = plan.first_month().plus(month_offset as u32);
        let slot = &self.slots[(r % plan.slots as u64) as usize];
        let cust = &self.customers[slot.customer as usize];
        let product = &PRODUCTS[slot.product as usize];
        let mut rng = SplitMix64::stream(plan.seed, TAG_ROW, r);
        let ch = charge(&self.calendar, slot, cust.usd, month, &mut rng);
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
        w.date(self.calendar.on(month, 1), ds);
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
    pub(super) fn write_billing_file(&self, dir: &Path, k: usize) -> Result<u64, Fatal> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Any four consecutive files show every header spelling, both quoting
    /// styles, both line endings and a BOM.
    #[test]
    fn styles_cycle() {
        let styles: Vec<FileStyle> = (5..9).map(FileStyle::of_file).collect();
        for h in [
            HeaderStyle::Pascal,
            HeaderStyle::Camel,
            HeaderStyle::Tier2,
            HeaderStyle::UpperMpn,
        ] {
            assert!(styles.iter().any(|s| s.header == h));
        }
        assert!(styles.iter().any(|s| s.bom) && styles.iter().any(|s| !s.bom));
        assert!(styles.iter().any(|s| s.quote_all) && styles.iter().any(|s| !s.quote_all));
        assert!(styles.iter().any(|s| s.crlf) && styles.iter().any(|s| !s.crlf));
        assert_eq!(FileStyle::of_file(1).header()[20], "totalForCustomer");
        assert_eq!(FileStyle::of_file(2).header()[7], "Tier2MpnId");
        assert_eq!(FileStyle::of_file(3).header()[6], "MPNID");
    }
}
