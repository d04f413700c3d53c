//! The styles real billing exports have had: header spellings, date formats,
//! BOM, quoting and line endings, and which file gets which.

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
