#!/usr/bin/env python3
"""Month close at scale: `run --history` against `run`, `close` against `run`.

Usage (from the repository root):

    python3 benches/history.py                       # 12 closed months of 1,000,000 rows, best of 3
    python3 benches/history.py --rows 100000 --months 3 --runs 1 --check   # a quick look

What it does:

1. Builds a history of `--months` closed months, one month at a time, the way
   a partner would: month k is `porledger sample --rows N --seed k` (the
   generator of compare.py; each seed is another month's exports), run with
   `--period` set to that month and `--history`, then `close`d into the one
   history file. Each run and each close is timed (they alternate, month by
   month), and after each close the script records the history's size on disk
   (the database and its write-ahead log) and its accrual rows.
2. Month `--months + 1` (seed `--months + 1`, the next period): times `run`
   without and with `--history` (the full history of step 1), alternating,
   `--runs` times each.
3. Times one restatement: month 1's period run again with `--history` on the
   new month's data, so every issued line of month 1 is compared and most
   differ (the largest adjustment set a run can meet).

Bars (`--check` exits 1 when one is missed):

- run with history / run without history <= 1.3 (best of `--runs` each);
- close / run <= 1.0, taken as the median over the months of each month's
  close wall time divided by the same month's run wall time (each close
  follows its run, on the same machine minute).

All runs use `--threads 2 --no-pdf`, like compare.py's porledger rows. The
generated data and the outputs live in a temporary directory under
`bench-data/` and are deleted at the end (`--keep` keeps them). Disk: one
month's input (~0.7 GB at 1M rows) and output at a time, plus the history
(~0.3 GB per closed 1M-row month: ~3.6 GB for the default 12 months).
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare import PORLEDGER_OK, REPO, build_binary, ensure_time, log, timed  # noqa: E402

RUN_BAR = 1.3
CLOSE_BAR = 1.0


def month_label(first: str, k: int) -> str:
    """`first` plus `k` months, as YYYY-MM."""
    y, m = map(int, first.split("-"))
    n = y * 12 + (m - 1) + k
    return f"{n // 12:04d}-{n % 12 + 1:02d}"


def generate(bin_: Path, data: Path, rows: int, seed: int) -> None:
    if data.exists():
        shutil.rmtree(data)
    subprocess.run(
        [str(bin_), "sample", "--out", str(data), "--rows", str(rows), "--seed", str(seed)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def run_cmd(bin_: Path, data: Path, out: Path, period: str, history: Path | None) -> list[str]:
    cmd = [
        str(bin_), "run", "--quiet", "--no-pdf", "--period", period,
        "--billing", str(data / "billing"),
        "--designations", str(data / "designations.csv"),
        "--rules", str(data / "rules.toml"),
        "--out", str(out), "--threads", "2",
    ]  # fmt: skip
    if history is not None:
        cmd += ["--history", str(history)]
    return cmd


def history_bytes(h: Path) -> int:
    return sum(p.stat().st_size for p in (h, Path(f"{h}-wal")) if p.exists())


def history_rows(h: Path) -> tuple[int, int]:
    """(closes, accrual rows) recorded in the history."""
    db = sqlite3.connect(f"file:{h}?mode=ro", uri=True)
    try:
        closes, rows = db.execute("SELECT count(*), coalesce(sum(accruals), 0) FROM closes").fetchone()
    finally:
        db.close()
    return closes, rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="billing rows per month")
    ap.add_argument("--months", type=int, default=12, help="closed months in the history")
    ap.add_argument("--first", default="2025-10", help="period of the first closed month")
    ap.add_argument("--bin", type=Path, help="porledger binary [default: cargo build --release]")
    ap.add_argument("--runs", type=int, default=3, help="timed runs of the new month, each way")
    ap.add_argument("--check", action="store_true", help="exit 1 when a bar is missed")
    ap.add_argument("--keep", action="store_true", help="keep the generated data and history")
    args = ap.parse_args()

    ensure_time()
    bin_ = (args.bin or build_binary()).resolve()
    (REPO / "bench-data").mkdir(exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="porledger-history-", dir=REPO / "bench-data"))
    failures = []
    try:
        h = tmp / "history.db"
        data = tmp / "data"
        months = []
        print(f"history of {args.months} closed months, {args.rows:,} billing rows each (--threads 2 --no-pdf)")
        print(f"{'month':<8} {'period':<8} {'run s':>8} {'close s':>8} {'close/run':>9} "
              f"{'accruals':>10} {'history MB':>11} {'bytes/row':>9}")  # fmt: skip
        prev_rows = 0
        for k in range(1, args.months + 1):
            period = month_label(args.first, k - 1)
            log(f"month {k}: sample --seed {k}, run --period {period} --history, close")
            generate(bin_, data, args.rows, k)
            out = tmp / "out"
            run_s, _ = timed(run_cmd(bin_, data, out, period, h), PORLEDGER_OK)
            close_s, _ = timed([str(bin_), "close", "--quiet", "--out", str(out), "--history", str(h)])
            shutil.rmtree(out)
            size = history_bytes(h)
            _, rows = history_rows(h)
            months.append((k, period, run_s, close_s, rows - prev_rows, size, rows))
            print(f"{k:<8} {period:<8} {run_s:>8.2f} {close_s:>8.2f} {close_s / run_s:>9.2f} "
                  f"{rows - prev_rows:>10,} {size / 1e6:>11,.1f} {size / rows:>9.0f}", flush=True)  # fmt: skip
            prev_rows = rows

        k = args.months + 1
        period = month_label(args.first, k - 1)
        log(f"month {k}: sample --seed {k}; run --period {period} without and with --history, alternating")
        generate(bin_, data, args.rows, k)
        without, with_ = [], []
        for i in range(args.runs):
            for hist, sink in ((None, without), (h, with_)):
                out = tmp / "out"
                wall, rss = timed(run_cmd(bin_, data, out, period, hist), PORLEDGER_OK)
                sink.append((wall, rss))
                shutil.rmtree(out)
        log(f"restatement: run --period {month_label(args.first, 0)} --history on month {k}'s data")
        out = tmp / "out"
        restate_s, restate_rss = timed(run_cmd(bin_, data, out, month_label(args.first, 0), h), PORLEDGER_OK)
        adjusted = sum(1 for _ in out.glob("partners/*/adjustment.csv"))
        shutil.rmtree(out)

        best_without, best_with = min(without), min(with_)
        ratio = best_with[0] / best_without[0]
        close_ratios = [c / r for (_, _, r, c, *_rest) in months]
        close_median = statistics.median(close_ratios)
        size = months[-1][5]
        rows = months[-1][6]
        print()
        print(f"month {k} ({period}), {args.rows:,} rows; best of {args.runs}, alternating")
        print(f"{'run':<26} {'wall s':>8} {'all runs s':<28} {'peak RSS MB':>11}")
        for name, res, best in (("without --history", without, best_without),
                                (f"with --history ({args.months} months)", with_, best_with)):  # fmt: skip
            runs = " ".join(f"{w:.2f}" for w, _ in res)
            print(f"{name:<26} {best[0]:>8.2f} {runs:<28} {best[1]:>11,.0f}")
        print(f"run with history / without: {ratio:.2f} (bar <= {RUN_BAR})")
        print(f"close / run per month: median {close_median:.2f}, min {min(close_ratios):.2f}, "
              f"max {max(close_ratios):.2f} (bar: median <= {CLOSE_BAR})")  # fmt: skip
        print(f"restatement of {month_label(args.first, 0)} (version 2 against version 1): "
              f"{restate_s:.2f} s, peak RSS {restate_rss:,.0f} MB, {adjusted:,} partners with adjustments")  # fmt: skip
        print(f"history after {args.months} closes: {size / 1e6:,.1f} MB, {rows:,} accrual rows, "
              f"{size / rows:.0f} bytes per accrual row")  # fmt: skip
        if ratio > RUN_BAR:
            failures.append(f"run with history {ratio:.2f}x the run without (bar {RUN_BAR})")
        if close_median > CLOSE_BAR:
            failures.append(f"close {close_median:.2f}x its run (median; bar {CLOSE_BAR})")
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if failures:
        print("\n" + "\n".join(f"FAIL {f}" for f in failures), file=sys.stderr)
        return 1 if args.check else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
