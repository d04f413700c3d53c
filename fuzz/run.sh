#!/usr/bin/env bash
# Usage: fuzz/run.sh TARGET SECONDS
# Fuzzes one target (billing_records, designations, rules, usage, fx, earnings)
# for SECONDS seconds with libFuzzer, starting from the committed seed corpus.
# Works on a stable toolchain: cargo-fuzz needs nightly flags (-Z), which
# RUSTC_BOOTSTRAP=1 allows. The address sanitizer is tried first; where its
# runtime is missing the build is retried without a sanitizer (-s none; Rust
# code is memory-safe, the assertions and panics are what is hunted).
# Installs cargo-fuzz (from crates.io) if missing. Exit status: 0 when nothing
# was found; otherwise non-zero, with the crashing input in
# fuzz/artifacts/TARGET/.
set -euo pipefail
target=${1:?usage: fuzz/run.sh TARGET SECONDS}
seconds=${2:?usage: fuzz/run.sh TARGET SECONDS}
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi
export RUSTC_BOOTSTRAP=1
# The fuzz package builds into fuzz/target, apart from the main build.
export CARGO_TARGET_DIR="$here/target"
sanitizer=${FUZZ_SANITIZER:-}
if [ -z "$sanitizer" ]; then
    if cargo fuzz build -s address "$target" >/dev/null 2>&1; then
        sanitizer=address
    else
        sanitizer=none
    fi
fi
# Work on a copy of the seeds: what libFuzzer adds stays out of git.
work="$here/target/corpus/$target"
mkdir -p "$work" "$here/artifacts/$target"
cp -n "$here/corpus/$target"/* "$work"/ 2>/dev/null || true
echo "fuzzing $target for ${seconds}s (sanitizer: $sanitizer)" >&2
exec cargo fuzz run -s "$sanitizer" "$target" "$work" -- \
    -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
    -artifact_prefix="$here/artifacts/$target/"
