//! `statements.json`: the whole statement set as compact JSON.
//!
//! The bytes are exactly `serde_json::to_writer(set)` plus a newline (a test
//! holds them to it), but the partners, which are nearly all of it (one entry
//! per statement line and per group: hundreds of megabytes in a large run),
//! are cut into pieces of a few thousand customers' details, serialised a
//! few pieces at a time on the worker pool while the previous ones are
//! written and hashed. Only two batches are held at once, however large one
//! partner's statement is.

use std::io::Write;
use std::path::Path;

use rayon::prelude::*;

use rust_decimal::Decimal;

use crate::csv_text::{push_decimal_display, push_month, push_uint};
use crate::error::Fatal;
use crate::render::publish::{HashingWriter, Written};
use crate::statements::{
    CustomerStatement, DetailLine, PartnerStatement, StatementLine, StatementSet,
};

/// `statements.json` written a batch of partners at a time (`porledger run`
/// drops each batch once written): the same bytes as the whole set at once.
pub struct StatementsJson {
    w: std::io::BufWriter<HashingWriter<std::fs::File>>,
    path: std::path::PathBuf,
    /// Whether a partner was written (the next one follows a comma).
    any: bool,
    max_details: usize,
}

impl StatementsJson {
    /// Creates `path` and writes what comes before the partners: `head`'s
    /// period and rounding (its partners are not written).
    pub fn begin(files: &Written, path: &Path, head: &StatementSet) -> Result<Self, Fatal> {
        let f = std::fs::File::create(path).map_err(|e| Fatal::io(path, e))?;
        let mut s = StatementsJson {
            w: std::io::BufWriter::with_capacity(1 << 16, HashingWriter::new(path, f, files)),
            path: path.to_path_buf(),
            any: false,
            max_details: PIECE_DETAILS,
        };
        let r = write_head(&mut s.w, head);
        s.check(r)?;
        Ok(s)
    }

    fn check(&self, r: std::io::Result<()>) -> Result<(), Fatal> {
        r.map_err(|e| Fatal::io(&self.path, e))
    }

    /// Writes `partners`, which follow those written before.
    pub fn partners(&mut self, partners: &[PartnerStatement]) -> Result<(), Fatal> {
        let r = write_partners(&mut self.w, partners, self.max_details, !self.any);
        self.any |= !partners.is_empty();
        self.check(r)
    }

    /// Writes what follows the partners: `tail`'s summary and programs.
    pub fn finish(mut self, tail: &StatementSet) -> Result<(), Fatal> {
        let r = write_tail(&mut self.w, tail);
        self.check(r)?;
        self.w
            .into_inner()
            .map_err(|e| Fatal::io(&self.path, e.into_error()))?
            .finish()
    }
}

fn write_head(w: &mut impl Write, set: &StatementSet) -> std::io::Result<()> {
    // The fields in `StatementSet`'s order, as serde's derive writes them.
    w.write_all(b"{\"period\":")?;
    serde_json::to_writer(&mut *w, &set.period)?;
    w.write_all(b",\"rounding\":")?;
    serde_json::to_writer(&mut *w, &set.rounding)?;
    w.write_all(b",\"partners\":[")
}

fn write_tail(w: &mut impl Write, set: &StatementSet) -> std::io::Result<()> {
    w.write_all(b"],\"summary\":")?;
    serde_json::to_writer(&mut *w, &set.summary)?;
    w.write_all(b",\"programs\":")?;
    serde_json::to_writer(&mut *w, &set.programs)?;
    w.write_all(b"}\n")
}

#[cfg(test)]
fn write_set_in(
    w: &mut (impl Write + Send),
    set: &StatementSet,
    max_details: usize,
) -> std::io::Result<()> {
    write_head(w, set)?;
    write_partners(w, &set.partners, max_details, true)?;
    write_tail(w, set)
}

/// Details per piece of the partners' JSON (about 8 MB of text).
const PIECE_DETAILS: usize = 30_000;

/// A piece of the partners' JSON: a partner's fields before its customers
/// (and the comma before it, unless it is the first), a run of its customers,
/// or its fields after them. Field order is serde's derive order for
/// [`PartnerStatement`].
enum Piece<'a> {
    Head(&'a PartnerStatement, bool),
    /// Customers, and whether the first is the partner's first.
    Customers(&'a [CustomerStatement], bool),
    Tail(&'a PartnerStatement),
}

/// The partners cut into pieces of at most `max_details` details (at least
/// one customer each): a large partner's JSON (tens of megabytes) is never
/// held whole, and its customers are serialised on every thread.
fn pieces(partners: &[PartnerStatement], max_details: usize, first: bool) -> Vec<Piece<'_>> {
    let mut out = Vec::new();
    for (i, p) in partners.iter().enumerate() {
        out.push(Piece::Head(p, first && i == 0));
        let mut from = 0;
        while from < p.customers.len() {
            let mut to = from + 1;
            let mut n = p.customers[from].details.len();
            while to < p.customers.len() && n + p.customers[to].details.len() <= max_details {
                n += p.customers[to].details.len();
                to += 1;
            }
            out.push(Piece::Customers(&p.customers[from..to], from == 0));
            from = to;
        }
        out.push(Piece::Tail(p));
    }
    out
}

fn render_piece(b: &mut Vec<u8>, piece: &Piece<'_>) -> serde_json::Result<()> {
    b.clear();
    match *piece {
        Piece::Head(p, first) => {
            if !first {
                b.push(b',');
            }
            b.extend_from_slice(b"{\"partner_id\":");
            serde_json::to_writer(&mut *b, &p.partner_id)?;
            b.extend_from_slice(b",\"partner_name\":");
            serde_json::to_writer(&mut *b, &p.partner_name)?;
            b.extend_from_slice(b",\"program_totals\":");
            serde_json::to_writer(&mut *b, &p.program_totals)?;
            b.extend_from_slice(b",\"totals\":");
            serde_json::to_writer(&mut *b, &p.totals)?;
            b.extend_from_slice(b",\"customers\":[");
        }
        Piece::Customers(cs, first) => {
            for (j, c) in cs.iter().enumerate() {
                if j > 0 || !first {
                    b.push(b',');
                }
                write_customer(b, c)?;
            }
        }
        Piece::Tail(p) => {
            b.extend_from_slice(b"],\"reporting_total\":");
            serde_json::to_writer(&mut *b, &p.reporting_total)?;
            b.extend_from_slice(b",\"attainment\":");
            serde_json::to_writer(&mut *b, &p.attainment)?;
            b.extend_from_slice(b",\"tier_notes\":");
            serde_json::to_writer(&mut *b, &p.tier_notes)?;
            b.push(b'}');
        }
    }
    Ok(())
}

/// A customer's statement as `serde_json::to_writer` writes it (fields in
/// the derive's order, those skipped left out), its statement lines and
/// details (nearly all of the file) without the serialiser: the field names
/// are written as they are, the amounts by the ledger's digit writer, and
/// texts are copied unless JSON must escape a byte of them. Serde's
/// serialisation of these was ~9 % of a large run's CPU.
fn write_customer(b: &mut Vec<u8>, c: &CustomerStatement) -> serde_json::Result<()> {
    b.extend_from_slice(b"{\"customer_id\":");
    push_str(b, &c.customer_id)?;
    b.extend_from_slice(b",\"customer_name\":");
    push_str(b, &c.customer_name)?;
    b.extend_from_slice(b",\"designations\":");
    serde_json::to_writer(&mut *b, &c.designations)?;
    b.extend_from_slice(b",\"lines\":[");
    for (i, l) in c.lines.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        write_line(b, l)?;
    }
    b.extend_from_slice(b"],\"program_totals\":");
    serde_json::to_writer(&mut *b, &c.program_totals)?;
    b.extend_from_slice(b",\"details\":[");
    for (i, d) in c.details.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        write_detail(b, d)?;
    }
    b.extend_from_slice(b"],\"totals\":");
    serde_json::to_writer(&mut *b, &c.totals)?;
    b.push(b'}');
    Ok(())
}

/// A [`StatementLine`] as serde writes it.
fn write_line(b: &mut Vec<u8>, l: &StatementLine) -> serde_json::Result<()> {
    b.extend_from_slice(b"{\"customer_id\":");
    push_str(b, &l.customer_id)?;
    b.extend_from_slice(b",\"program_id\":");
    push_str(b, &l.program_id)?;
    b.extend_from_slice(b",\"month\":\"");
    push_month(b, l.month);
    b.extend_from_slice(b"\",\"currency\":\"");
    b.extend_from_slice(l.currency.as_str().as_bytes());
    b.extend_from_slice(b"\",\"lines\":");
    push_uint(b, l.lines);
    b.extend_from_slice(b",\"basis\":");
    push_decimal(b, l.basis);
    b.extend_from_slice(b",\"rate\":");
    match l.rate {
        Some(r) => push_decimal(b, r),
        None => b.extend_from_slice(b"null"),
    }
    b.extend_from_slice(b",\"accrual_exact\":");
    push_decimal(b, l.accrual_exact);
    b.extend_from_slice(b",\"amount\":");
    push_decimal(b, l.amount);
    b.push(b'}');
    Ok(())
}

/// A [`DetailLine`] as serde writes it.
fn write_detail(b: &mut Vec<u8>, d: &DetailLine) -> serde_json::Result<()> {
    b.extend_from_slice(b"{\"program_id\":");
    push_str(b, &d.program_id)?;
    b.extend_from_slice(b",\"month\":\"");
    push_month(b, d.month);
    b.extend_from_slice(b"\",\"association\":\"");
    b.extend_from_slice(d.association.as_str().as_bytes());
    b.extend_from_slice(b"\",\"subscription_id\":");
    push_str(b, &d.subscription_id)?;
    b.extend_from_slice(b",\"currency\":\"");
    b.extend_from_slice(d.currency.as_str().as_bytes());
    b.extend_from_slice(b"\",\"rate\":");
    push_decimal(b, d.rate);
    b.extend_from_slice(b",\"share\":");
    push_decimal(b, d.share);
    b.extend_from_slice(b",\"lines\":");
    push_uint(b, d.lines);
    b.extend_from_slice(b",\"basis\":");
    push_decimal(b, d.basis);
    b.extend_from_slice(b",\"accrual_exact\":");
    push_decimal(b, d.accrual_exact);
    b.push(b'}');
    Ok(())
}

/// `s` as a JSON string: copied between quotes, or written by serde_json
/// when it holds a byte JSON escapes (`"`, `\`, a control character).
fn push_str(b: &mut Vec<u8>, s: &str) -> serde_json::Result<()> {
    // Every byte tested (no early exit), so that the test is vectorised.
    let escaped = s.bytes().fold(false, |any, c| {
        any | (c < 0x20) | (c == b'"') | (c == b'\\')
    });
    if escaped {
        return serde_json::to_writer(&mut *b, s);
    }
    b.push(b'"');
    b.extend_from_slice(s.as_bytes());
    b.push(b'"');
    Ok(())
}

/// A decimal as serde writes it: its `Display` text between quotes.
fn push_decimal(b: &mut Vec<u8>, d: Decimal) {
    b.push(b'"');
    push_decimal_display(b, d);
    b.push(b'"');
}

/// The partners, comma-separated (`first`: the first of them is the file's
/// first, with no comma before it): each batch of pieces serialised in
/// parallel while the one before it is written. The batches' buffers are
/// reused (two sets): a fresh buffer of several megabytes is fresh memory for
/// the kernel to fault in and zero, which cost as much as writing it.
fn write_partners(
    w: &mut (impl Write + Send),
    partners: &[PartnerStatement],
    max_details: usize,
    first: bool,
) -> std::io::Result<()> {
    let render = |ps: &[Piece<'_>], mut bufs: Vec<Vec<u8>>| -> serde_json::Result<Vec<Vec<u8>>> {
        bufs.resize_with(ps.len(), Vec::new);
        bufs.par_iter_mut()
            .zip(ps.par_iter())
            .try_for_each(|(b, p)| render_piece(b, p))?;
        Ok(bufs)
    };
    let pieces = pieces(partners, max_details, first);
    // A batch holds as many runs of customers as there are threads (and the
    // heads and tails between them).
    let threads = rayon::current_num_threads().max(1);
    let mut batches = Vec::new();
    let (mut from, mut runs) = (0, 0);
    for (i, p) in pieces.iter().enumerate() {
        if matches!(p, Piece::Customers(..)) {
            runs += 1;
        }
        if runs == threads || i + 1 == pieces.len() {
            batches.push(&pieces[from..=i]);
            (from, runs) = (i + 1, 0);
        }
    }
    let mut batches = batches.into_iter();
    let mut ready = match batches.next() {
        Some(ps) => render(ps, Vec::new())?,
        None => return Ok(()),
    };
    let mut spare = Vec::new();
    loop {
        let next = batches.next();
        let (written, rendered) = rayon::join(
            || -> std::io::Result<()> {
                for j in &ready {
                    w.write_all(j)?;
                }
                Ok(())
            },
            || {
                next.map(|ps| render(ps, std::mem::take(&mut spare)))
                    .transpose()
            },
        );
        written?;
        match rendered? {
            Some(r) => spare = std::mem::replace(&mut ready, r),
            None => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attribute::DesignationIndex;
    use crate::config::parse_rules;
    use crate::dates::Period;
    use crate::fold::Fold;
    use crate::money::Currency;
    use proptest::prelude::*;

    /// A set of `partners` partners, each with two customers in two months
    /// and two currencies.
    fn set(partners: usize) -> StatementSet {
        let rules = parse_rules(
            "rounding = \"half-up\"\n[[program]]\nid = \"p\"\nname = \"Program \\\"P\\\"\"\nassociations = [\"RESELLER\"]\nrate = \"0.01\"\n",
        )
        .unwrap();
        let ids: Vec<String> = (0..partners).map(|i| format!("r{i}")).collect();
        let mut fold = Fold::new(1);
        for (i, partner) in ids.iter().enumerate() {
            for (j, (customer, month, currency)) in [
                ("c1", 10, "EUR"),
                ("c1", 11, "EUR"),
                ("c2, Ltd.", 10, "USD"),
                ("c2, Ltd.", 10, "EUR"),
            ]
            .into_iter()
            .enumerate()
            {
                let amount = Decimal::new((i * 10 + j) as i64 + 5, 3);
                let a = crate::accrue::reseller_accrual(partner, amount, month);
                fold.add(
                    &a,
                    customer,
                    &format!("s{j}"),
                    Currency::parse(currency).unwrap(),
                );
            }
        }
        let period: Period = "2026-10..2026-11".parse().unwrap();
        crate::statements::build(
            &mut fold,
            &rules,
            &DesignationIndex::new(Vec::new()),
            period,
            None,
        )
        .unwrap()
    }

    /// Any decimal: every scale, mantissas small and beyond a `u64`, and
    /// negative zeros.
    fn any_decimal() -> impl Strategy<Value = Decimal> {
        let mantissa = prop_oneof![
            -1_000_000i128..1_000_000,
            -(1i128 << 95)..(1i128 << 95),
            Just(0i128),
        ];
        (mantissa, 0u32..=28, any::<bool>()).prop_map(|(m, scale, negative)| {
            let mut d = Decimal::from_i128_with_scale(m, scale);
            if m == 0 && negative {
                d.set_sign_negative(true);
            }
            d
        })
    }

    /// Any month, years before 0 and after 9999 among them.
    fn any_month() -> impl Strategy<Value = crate::dates::Month> {
        prop_oneof![24_000i32..24_400, -200_000i32..3_000_000].prop_map(crate::dates::Month)
    }

    /// Text that needs no escape, and any text (quotes, backslashes, control
    /// characters, any Unicode).
    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-zA-Z0-9 ,.-]{0,40}",
            any::<String>(),
            "[\"\\\\\\x00-\\x1f\\x7f]{0,4}"
        ]
    }

    proptest! {
        #[test]
        fn lines_and_details_are_written_as_serde_writes_them(
            (customer, program, subscription) in (any_text(), any_text(), any_text()),
            month in any_month(),
            association in proptest::sample::select(crate::config::Association::ALL.to_vec()),
            currency in proptest::sample::select(vec!["EUR", "USD", "JPY", "KWD"]),
            amounts in proptest::array::uniform5(any_decimal()),
            rate in proptest::option::of(any_decimal()),
            lines in any::<u64>(),
        ) {
            let currency = Currency::parse(currency).unwrap();
            let line = StatementLine {
                customer_id: customer.as_str().into(),
                customer_name: "not written".into(),
                program_id: program.as_str().into(),
                program_name: "not written".into(),
                month,
                currency,
                lines,
                basis: amounts[0],
                rate,
                accrual_exact: amounts[1],
                amount: amounts[2],
            };
            let mut got = Vec::new();
            write_line(&mut got, &line).unwrap();
            prop_assert_eq!(
                String::from_utf8(got).unwrap(),
                serde_json::to_string(&line).unwrap()
            );
            let detail = DetailLine {
                program_id: program.as_str().into(),
                program_name: "not written".into(),
                month,
                association,
                subscription_id: subscription.as_str().into(),
                currency,
                rate: amounts[3],
                share: amounts[4],
                lines,
                basis: amounts[0],
                accrual_exact: amounts[1],
            };
            let mut got = Vec::new();
            write_detail(&mut got, &detail).unwrap();
            prop_assert_eq!(
                String::from_utf8(got).unwrap(),
                serde_json::to_string(&detail).unwrap()
            );
        }
    }

    #[test]
    fn what_the_file_leaves_out_is_read_back() {
        let set = set(3);
        let json = serde_json::to_vec(&set).unwrap();
        let text = String::from_utf8(json.clone()).unwrap();
        // The program's name once, in `programs`.
        assert_eq!(text.matches("Program \\\"P\\\"").count(), 1, "{text}");
        assert_eq!(text.matches("\"program_name\"").count(), 0);
        assert_eq!(StatementSet::from_json(&json).unwrap(), set);
    }

    #[test]
    fn written_a_batch_of_partners_at_a_time_the_file_is_the_same() {
        let set = set(7);
        let mut want = serde_json::to_vec(&set).unwrap();
        want.push(b'\n');
        let dir = tempfile::tempdir().unwrap();
        // Batches of every size, an empty batch among them (no stray comma).
        for size in [1, 2, 3, 7] {
            let files = Written::new();
            let path = dir.path().join(format!("statements-{size}.json"));
            let mut w = StatementsJson::begin(&files, &path, &set).unwrap();
            w.partners(&[]).unwrap();
            for batch in set.partners.chunks(size) {
                w.partners(batch).unwrap();
                w.partners(&[]).unwrap();
            }
            w.finish(&set).unwrap();
            let got = std::fs::read(&path).unwrap();
            assert_eq!(
                String::from_utf8(got).unwrap(),
                String::from_utf8(want.clone()).unwrap(),
                "batches of {size}"
            );
        }
    }

    #[test]
    fn the_bytes_are_serdes_whatever_the_threads() {
        for partners in [0, 1, 2, 3, 7] {
            let set = set(partners);
            let mut want = serde_json::to_vec(&set).unwrap();
            want.push(b'\n');
            for threads in [1, 2, 3] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                // Customers one, two or three at a time, or a partner's all.
                for max_details in [0, 2, 5, PIECE_DETAILS] {
                    let mut got = Vec::new();
                    pool.install(|| write_set_in(&mut got, &set, max_details))
                        .unwrap();
                    assert_eq!(
                        String::from_utf8(got).unwrap(),
                        String::from_utf8(want.clone()).unwrap(),
                        "{partners} partners, {threads} threads, {max_details} details"
                    );
                }
            }
        }
    }
}
