#!/usr/bin/env bash
# The CI version of benches/compare.py: 200,000 rows, one run, correctness only
# matters. Fails (non-zero exit) when porledger's totals differ from DuckDB's by
# a cent, or when summary.csv differs between --threads 1 and 2, or between the
# same rows as one file and as 10 files.
#
# Builds the release binary first (the bulk of the time: ~2.5 min on 2 cores
# with the release profile's thin LTO); the comparison itself takes ~20 s.
# With COMPILE_BENCHES=1 it also compiles the criterion benchmarks
# (`cargo bench --no-run`, ~3 min more) so they cannot rot.
#
# Needs python3 (3.11+), GNU time (/usr/bin/time) and network access for
# `pip install duckdb` into bench-data/.venv on the first run.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --locked
if [[ "${COMPILE_BENCHES:-0}" == 1 ]]; then
    cargo bench --locked --no-run
fi
exec python3 benches/compare.py --rows 200000 --runs 1 --check --bin "$target/release/porledger"
