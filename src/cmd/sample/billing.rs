//! Billing files: the styles real exports have had (header spellings, dates,
//! BOM, quoting, line endings), and one billing line per row.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use super::catalogue::PRODUCTS;
use super::charges::{charge, tax_cents, ChargeType};
use super::rng::{guid, SplitMix64, TAG_ROW};
use super::rowbuf::RowBuf;
use super::style::FileStyle;
use super::world::World;
use crate::error::Fatal;
use crate::render::publish::{HashingWriter, Written};

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

    /// Writes billing file `k` into `dir` (hashed as it is written, for the
    /// manifest: `files`); returns its size in bytes.
    pub(super) fn write_billing_file(
        &self,
        dir: &Path,
        k: usize,
        files: &Written,
    ) -> Result<u64, Fatal> {
        let path = dir.join(self.plan.file_name(k));
        let style = FileStyle::of_file(k);
        let file = File::create(&path).map_err(|e| Fatal::io(&path, e))?;
        let mut out = HashingWriter::new(&path, BufWriter::with_capacity(1 << 20, file), files);
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
        out.finish()?;
        Ok(bytes)
    }
}
