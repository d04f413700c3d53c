//! Criterion micro-benchmarks of the hot stages of `porledger run`:
//!
//! - `parse`: one billing record -> typed `BillingLine` (`BillingLayout::parse`);
//! - `accrue_line`: one designated, accruing line through every program;
//! - `fold_add` / `fold_merge`: adding one line's accruals to a fold, merging
//!   the folds of two 8 MiB chunks;
//! - `process_chunk`: a whole 8 MiB chunk (the unit of work of one thread).
//!
//! Input: `porledger sample --rows 20000 --seed 1` (about 12 MB), generated
//! into a temporary directory. Run with `cargo bench --bench hot`; CI only
//! compiles it (`cargo bench --no-run`).

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

use porledger::accrue::{accrue_line, Accrual, Outcome, Scratch};
use porledger::cmd::sample::{generate, Plan};
use porledger::fold::Fold;
use porledger::ingest::records::{Cutter, Shape, Step, MAX_RECORD_BYTES};
use porledger::ingest::Chunk;
use porledger::pipeline::{self, Inputs, OutBufs, StreamSettings};

/// Bytes of billing input per chunk, as `porledger run` (--chunk-bytes) uses.
const CHUNK: usize = 8 * 1024 * 1024;

fn inputs(dir: &Path) -> Inputs {
    let digests = porledger::render::publish::Written::new();
    generate(dir, Plan::new(20_000, 1, Some(1)).expect("plan"), &digests).expect("generate sample");
    pipeline::load_inputs(
        &[dir.join("billing")],
        &dir.join("designations.csv"),
        &dir.join("rules.toml"),
    )
    .expect("load inputs")
}

/// The first `CHUNK` bytes of records after the header of the (only) billing file.
fn chunk(inputs: &Inputs, skip: usize) -> Chunk {
    let bytes = std::fs::read(&inputs.files[0].path).expect("read billing file");
    let body_start = bytes.iter().position(|&b| b == b'\n').expect("header") + 1;
    let from = body_start
        + match skip {
            0 => 0,
            _ => porledger::ingest::split::first_record_end_after(&bytes[body_start..], skip, b'"')
                .expect("a record end after skip"),
        };
    let upto = (from + CHUNK).min(bytes.len());
    // Cut where the reader thread cuts.
    let header = porledger::ingest::read_header("billing", &bytes).expect("header");
    let mut cutter = Cutter::new(Shape {
        delimiter: header.delimiter,
        fields: header.fields.len(),
        max_record: MAX_RECORD_BYTES,
    });
    let Step::Emit { end, .. } = cutter.step(&bytes[from..upto], false) else {
        panic!("no whole record in the first chunk");
    };
    Chunk {
        file: 0,
        first_line: 2,
        data: bytes[from..from + end].to_vec(),
        kind: porledger::ingest::records::ChunkKind::Records,
    }
}

fn records(data: &[u8]) -> Vec<csv::ByteRecord> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(data);
    rdr.byte_records().map(|r| r.expect("record")).collect()
}

fn settings() -> StreamSettings {
    StreamSettings {
        threads: 1,
        chunk_size: CHUNK,
        period: None,
        max_rejects: None,
        outputs: true,
        spill: None,
    }
}

fn hot(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let inputs = inputs(dir.path());
    let layout = &inputs.opened[0].layout;
    let rules = &inputs.rules;
    let index = &inputs.index;
    let chunk0 = chunk(&inputs, 0);
    let recs = records(&chunk0.data);

    // A typical paying line: the first one with a designation behind an accrual.
    let mut scratch = Scratch::default();
    let mut out: Vec<Accrual<'_>> = Vec::new();
    let (typical, ckey) = recs
        .iter()
        .find_map(|rec| {
            let line = layout.parse(rec).ok()?;
            let ckey = line.customer_id.to_ascii_lowercase();
            out.clear();
            let outcome = accrue_line(rules, index, "d", &line, &ckey, &mut scratch, &mut out);
            (outcome == Outcome::Accrued && out.iter().any(|a| a.designation.is_some()))
                .then_some((rec, ckey))
        })
        .expect("an accruing line");

    let mut g = c.benchmark_group("hot");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse", |b| {
        b.iter(|| black_box(layout.parse(black_box(typical)).is_ok()))
    });

    let line = layout.parse(typical).expect("parse");
    g.bench_function("accrue_line", |b| {
        b.iter(|| {
            out.clear();
            black_box(accrue_line(
                rules,
                index,
                "d",
                black_box(&line),
                &ckey,
                &mut scratch,
                &mut out,
            ))
        })
    });

    out.clear();
    accrue_line(rules, index, "d", &line, &ckey, &mut scratch, &mut out);
    let skey = line.subscription_id.to_ascii_lowercase();
    let mut fold = Fold::new(1);
    g.bench_function("fold_add", |b| {
        b.iter(|| {
            for a in &out {
                fold.add(black_box(a), &ckey, &skey, line.currency);
            }
        })
    });

    let chunk1 = chunk(&inputs, CHUNK / 2);
    g.bench_function("fold_merge", |b| {
        b.iter_batched(
            || {
                let a =
                    pipeline::process_chunk(&inputs, &settings(), 0, &chunk0, OutBufs::default());
                let b =
                    pipeline::process_chunk(&inputs, &settings(), 1, &chunk1, OutBufs::default());
                (a.fold, b.fold)
            },
            |(mut a, b)| {
                a.merge(b);
                a
            },
            BatchSize::LargeInput,
        )
    });

    g.throughput(Throughput::Bytes(chunk0.data.len() as u64));
    g.sample_size(20);
    g.bench_function("process_chunk_8MiB", |b| {
        b.iter(|| {
            black_box(pipeline::process_chunk(
                &inputs,
                &settings(),
                0,
                black_box(&chunk0),
                OutBufs::default(),
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, hot);
criterion_main!(benches);
