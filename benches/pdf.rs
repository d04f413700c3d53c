//! PDF throughput: N two-page partner statements rendered in parallel with
//! rayon, sharing one `Renderer` (fonts and template parsed once), plus one
//! 1,000-line and one 5,000-line statement to show that layout is linear.
//!
//! `CARGO_TARGET_DIR=... cargo bench --bench pdf`

#![allow(clippy::print_stderr)] // says where the sample statement is

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use porledger::config::Association;
use porledger::dates::{Month, Period};
use porledger::money::{Currency, RoundingMode};
use porledger::render::pdf::Renderer;
use porledger::statements::{
    CurrencyTotal, CustomerStatement, DesignationInfo, DetailLine, PartnerStatement, ProgramInfo,
    StatementLine, StatementSet,
};
use rayon::prelude::*;
use rust_decimal::Decimal;

/// A partner with `customers` customers of `subs` subscriptions each.
fn partner(i: usize, customers: usize, subs: usize) -> PartnerStatement {
    let eur = Currency::parse("EUR").expect("EUR");
    let rate = Decimal::new(4, 2);
    let mut lines = Vec::new();
    let mut cs = Vec::new();
    for c in 0..customers {
        let cid = format!("{:08x}-0000-4000-8000-{:012x}", i, c);
        let mut details = Vec::new();
        let mut basis = Decimal::ZERO;
        for s in 0..subs {
            let b = Decimal::new(123_456 + (c * 31 + s * 7) as i64 * 1_000, 4);
            basis += b;
            details.push(DetailLine {
                program_id: "dpor".into(),
                program_name: "Digital Partner of Record".into(),
                month: Month::from_ym(2026, 10),
                association: Association::Dpor,
                subscription_id: format!("sub-{c}-{s}-aaaaaaaa-bbbb").into(),
                currency: eur,
                rate,
                share: Decimal::ONE,
                lines: 3,
                basis: b,
                accrual_exact: b * rate,
            });
        }
        let exact = basis * rate;
        let line = StatementLine {
            customer_id: cid.as_str().into(),
            customer_name: format!("Kunde {c} Müller & Söhne GmbH").into(),
            program_id: "dpor".into(),
            program_name: "Digital Partner of Record".into(),
            month: Month::from_ym(2026, 10),
            currency: eur,
            lines: 3 * subs as u64,
            basis,
            rate: Some(rate),
            accrual_exact: exact,
            amount: exact.round_dp(2),
        };
        lines.push(line.clone());
        cs.push(CustomerStatement {
            customer_id: cid,
            customer_name: line.customer_name.to_string(),
            designations: vec![DesignationInfo {
                association: Association::Dpor,
                subscription_id: None,
                workload: String::new(),
                share: None,
                valid_from: chrono::NaiveDate::from_ymd_opt(2024, 1, 1),
                valid_to: None,
                source_line: 2,
            }],
            totals: vec![CurrencyTotal {
                currency: eur,
                basis: line.basis,
                amount: line.amount,
                converted: None,
            }],
            lines: vec![line],
            program_totals: Vec::new(),
            details,
        });
    }
    let total = CurrencyTotal {
        currency: eur,
        basis: lines.iter().map(|l| l.basis).sum(),
        amount: lines.iter().map(|l| l.amount).sum(),
        converted: None,
    };
    PartnerStatement {
        partner_id: format!("P{i:06}"),
        partner_name: format!("Partner {i} Beratung AG"),
        program_totals: Vec::new(),
        totals: vec![total],
        customers: cs,
        reporting_total: None,
        attainment: Vec::new(),
        tier_notes: Vec::new(),
    }
}

fn set(partners: Vec<PartnerStatement>) -> StatementSet {
    StatementSet {
        period: "2026-10".parse::<Period>().expect("period"),
        rounding: RoundingMode::HalfUp,
        partners,
        summary: Vec::new(),
        programs: vec![ProgramInfo {
            id: "dpor".into(),
            name: "Digital Partner of Record".into(),
            description: "Pays the designated partner.".into(),
            basis: "billed-revenue".into(),
        }],
    }
}

fn bench(c: &mut Criterion) {
    let r = Renderer::load(None, "de").expect("built-in template");
    // 12 customers x 2 subscriptions: a two-page statement.
    let n = 200;
    let s = set((0..n).map(|i| partner(i, 12, 2)).collect());
    // Kept for a look (`pdfinfo`): the statement measured is two pages long.
    let sample = std::env::temp_dir().join("porledger-bench-statement.pdf");
    let _ = std::fs::write(&sample, r.partner_statement(&s, &s.partners[0]));
    eprintln!("sample statement: {}", sample.display());
    let mut g = c.benchmark_group("partner_statements");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(20));
    g.throughput(Throughput::Elements(n as u64));
    g.bench_function(BenchmarkId::new("parallel", n), |b| {
        b.iter(|| {
            s.partners
                .par_iter()
                .map(|p| r.partner_statement(&s, p).len())
                .sum::<usize>()
        })
    });
    g.finish();
    let mut g = c.benchmark_group("statement_lines");
    g.sample_size(10);
    for lines in [1_000usize, 5_000] {
        let big = set(vec![partner(0, lines / 2, 1)]);
        // lines/2 customers x (1 detail + 1 subtotal) = `lines` table rows.
        g.throughput(Throughput::Elements(lines as u64));
        g.bench_function(BenchmarkId::new("one_statement", lines), |b| {
            b.iter(|| r.partner_statement(&big, &big.partners[0]).len())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
