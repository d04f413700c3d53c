#!/usr/bin/env python3
"""porledger vs DuckDB vs `wc -l`: speed, peak memory and correctness in one run.

Usage (from the repository root):

    python3 benches/compare.py                      # 5,000,000 rows, best of 3
    python3 benches/compare.py --rows 200000 --runs 1 --check   # what CI runs
    python3 benches/compare.py --memory-scaling     # also 20,000,000 rows (~14 GB disk)

What it does, in one run, on the same files:

1. Generates the input with `porledger sample --rows N --seed 1` into
   `bench-data/<N>` unless it is there already.
2. Times `wc -l` over the billing files (the floor: reading the bytes once).
3. Times DuckDB (threads=2) twice:
   - `duckdb-core`: the issue's core query (read the CSVs with exact DECIMAL
     money, join the designations on customer and subscription, filter by the
     validity dates, multiply by the rate, group by partner, customer and
     program). It ignores the finer rules, so its totals are not porledger's.
   - `duckdb-exact`: the same computation as porledger for the generated rules
     (program dates, 36-month window, Trial and publisher exclusions, RESELLER
     from ResellerMpnId, subscription designations before customer-wide ones,
     explicit and equal PAL shares, POR and DPOR as one role in a program
     paying both, day proration where a designation boundary falls inside a
     charge period, rounding per statement line). Its totals must equal
     porledger's summary.csv to the cent. (Not modelled, so that a generated
     set holding it fails the check: one partner holding two designations of
     one role and scope, which porledger credits once.)
   Each DuckDB run is a separate process, timed like porledger (wall clock and
   peak RSS from `/usr/bin/time`), so Python start-up and `import duckdb`
   (about 0.1 s) are included, as porledger's start-up and output writing are.
4. Times `porledger run` (all CSV outputs) at --threads 1 and --threads 2,
   each run into a fresh --out directory (deleted at the end).
5. Checks: summary.csv byte-identical between --threads 1 and 2; between the
   same rows as one big file and split into 10 files; per (partner, program,
   currency) `lines`, `basis_amount` and `accrual_amount` equal to DuckDB's.

With --tieout, also: writes an earnings export with one earning per ledger row of
the run (benches/earnings_from_ledger.py --per-line --billed: the same size as the
run, with invoice numbers and products, so the tie-out matches at its finest grain),
and times `porledger tieout` on it against `porledger run` (both --threads 2,
--no-pdf, taking turns: run, tieout, run, tieout, ...); every row must tie out
(exit 0). `--tieout-only` skips everything else.

Every timing is the best of --runs runs (default 3). Timings on a machine
shared with other work are noisy: compare ratios taken in the same run.

Only the standard library and `duckdb` are used. When `duckdb` cannot be
imported, the script creates `bench-data/.venv` and `pip install`s it there.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEED = 1
PERIOD = "2026-10"  # the generator's last month; the period only dates statements
DUCKDB_THREADS = 2

# ---------------------------------------------------------------------------
# Billing file layouts (mirrors src/ingest/billing.rs for the fields we need)
# ---------------------------------------------------------------------------

# Normalised header names (lower case, letters and digits) per field, in
# porledger's order of preference.
ALIASES = {
    "customer": ["customerid", "customertenantid"],
    "subscription": ["subscriptionid"],
    "start": ["chargestartdate"],
    "end": ["chargeenddate"],
    "subtotal": ["subtotal"],
    "currency": ["currency", "billingcurrency"],
    "reseller": ["resellermpnid", "tier2mpnid"],
    "publisher": ["publishername"],
    "qualifiers": ["productqualifiers"],
}


def normalize_header(name: str) -> str:
    """As porledger: drop a BOM, keep ASCII letters and digits, lower-cased."""
    return "".join(c.lower() for c in name.lstrip("\ufeff") if c.isascii() and c.isalnum())


def date_format(value: str) -> str:
    """The strptime format of one of the generator's date styles."""
    if "T" in value:
        return "%Y-%m-%dT%H:%M:%SZ"  # 2026-10-01T00:00:00Z
    if " " in value:
        return "%m/%d/%Y %H:%M:%S"  # 10/1/2026 0:00:00
    if "/" in value:
        return "%m/%d/%Y"  # 10/1/2026
    return "%Y-%m-%d"


@dataclass
class Layout:
    """Where the fields are in one billing file, and how its dates are written."""

    path: Path
    ncols: int
    index: dict[str, int]
    date_format: str


def file_layout(path: Path) -> Layout:
    """Reads the header and the first record of `path` (each file has its own style)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        first = next(reader)
    names = [normalize_header(h) for h in header]
    index = {}
    for field, aliases in ALIASES.items():
        for a in aliases:
            if a in names:
                index[field] = names.index(a)
                break
        else:
            raise SystemExit(f"{path}: no column for {field} (looked for {aliases})")
    return Layout(path, len(header), index, date_format(first[index["start"]]))


def billing_files(data: Path) -> list[Path]:
    return sorted((data / "billing").glob("*.csv"))


# ---------------------------------------------------------------------------
# The DuckDB queries
# ---------------------------------------------------------------------------


def sql_str(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def lines_sql(layouts: list[Layout], programs: list[dict]) -> str:
    """All billing lines as (ck, sk, s, e, amt, cur, rsl, ok_<i>), one file at a time.

    Every column is read as VARCHAR except Subtotal, read as DECIMAL(18,2).
    `ok_<i>` says program i's publisher and qualifier exclusions let the line through.
    """
    parts = []
    for lay in layouts:
        cols = {f"c{i}": "VARCHAR" for i in range(lay.ncols)}
        cols[f"c{lay.index['subtotal']}"] = "DECIMAL(18,2)"
        col = {k: f"c{v}" for k, v in lay.index.items()}
        fmt = sql_str(lay.date_format)
        columns = "{" + ", ".join(f"'{k}': '{v}'" for k, v in cols.items()) + "}"
        parts.append(
            f"""SELECT lower({col['customer']}) AS ck, lower({col['subscription']}) AS sk,
       CAST(strptime({col['start']}, {fmt}) AS DATE) AS s,
       CAST(strptime({col['end']}, {fmt}) AS DATE) AS e,
       {col['subtotal']} AS amt, upper(trim({col['currency']})) AS cur,
       CASE WHEN coalesce(trim({col['reseller']}), '') IN ('', '0', '-1') THEN NULL
            ELSE trim({col['reseller']}) END AS rsl,
       lower(coalesce(trim({col['publisher']}), '')) AS pub,
       list_transform(string_split_regex(coalesce({col['qualifiers']}, ''), '[,;\\[\\]|]'),
                      lambda t: lower(trim(trim(trim(t), '"'''))) ) AS quals
FROM read_csv({sql_str(str(lay.path))}, header = true, auto_detect = false, delim = ',',
              quote = '"', escape = '"', columns = {columns})"""
        )
    oks = []
    for i, p in enumerate(programs):
        cond = ["true"]
        if p["publishers"]:
            cond.append("pub IN (" + ", ".join(sql_str(x.lower()) for x in p["publishers"]) + ")")
        for q in p["exclude_qualifiers"]:
            cond.append(f"NOT list_contains(quals, {sql_str(q.lower())})")
        oks.append(" AND ".join(cond) + f" AS ok_{i}")
    union = "\nUNION ALL\n".join(parts)
    return f"SELECT ck, sk, s, e, amt, cur, rsl, {', '.join(oks)} FROM (\n{union}\n)"


# POR and DPOR are one role, the partner of record, in a program that pays
# both (src/attribute.rs `Role`): their designations are gathered together
# before precedence and shares apply.
RECORD = ("POR", "DPOR")
RECORD_ROLE = "POR/DPOR"


def record_role(programs: list[dict]) -> bool:
    """Whether the programs pay POR and DPOR as one role (load_programs merged them)."""
    return any(RECORD_ROLE in p["assocs"] for p in programs)


def designations_sql(data: Path, programs: list[dict]) -> str:
    """The designations with their file line (header = line 1), keys lower-cased.

    The association is the role: POR and DPOR rows are both `POR/DPOR` when the
    programs pay them as one role.
    """
    a = "upper(trim(association))"
    if record_role(programs):
        record = ", ".join(sql_str(x) for x in RECORD)
        a = f"CASE WHEN {a} IN ({record}) THEN {sql_str(RECORD_ROLE)} ELSE {a} END"
    cols = (
        "{'customer_id': 'VARCHAR', 'partner_id': 'VARCHAR', 'partner_name': 'VARCHAR', "
        "'association': 'VARCHAR', 'workload': 'VARCHAR', 'subscription_id': 'VARCHAR', "
        "'share': 'DECIMAL(38,10)', 'valid_from': 'DATE', 'valid_to': 'DATE'}"
    )
    path = sql_str(str(data / "designations.csv"))
    return f"""SELECT row_number() OVER () + 1 AS line, lower(trim(customer_id)) AS ck,
       trim(partner_id) AS partner, {a} AS a,
       coalesce(trim(workload), '') AS wl, lower(trim(subscription_id)) AS sub,
       share, valid_from AS vf, valid_to AS vt
FROM read_csv({path}, header = true, auto_detect = false, delim = ',', quote = '"',
              escape = '"', columns = {cols})"""


RATE_DP = 6  # rates are carried as integers of 1e-6
SHARE_DP = 10  # porledger keeps shares to 10 decimals (src/attribute.rs)
BASIS_DP = 6  # prorated bases are rounded to 6 decimals (src/accrue.rs)
# amount units: basis 1e-6 x rate 1e-6 x share 1e-10 = 1e-22
AMOUNT_DP = BASIS_DP + RATE_DP + SHARE_DP


def load_programs(rules_path: Path) -> list[dict]:
    """The programs of rules.toml; refuses rule features the SQL does not model."""
    rules = tomllib.loads(rules_path.read_text())
    if rules.get("rounding", "half-up") != "half-up":
        raise SystemExit("compare.py models rounding = \"half-up\" only")
    if rules.get("conflicts", "split") != "split":
        raise SystemExit("compare.py models conflicts = \"split\" only")
    if rules.get("product"):
        raise SystemExit("compare.py does not model [[product]] tables")
    programs = []
    for p in rules["program"]:
        unsupported = {"tiers", "workload", "dedupe"} & set(p)
        if p.get("basis", "billed-revenue") != "billed-revenue" or unsupported:
            raise SystemExit(f"program {p['id']}: compare.py models billed-revenue programs only")
        assocs = [a.upper() for a in p["associations"]]
        if "TIER1" in assocs:
            raise SystemExit(f"program {p['id']}: TIER1 credit is not modelled")
        if set(RECORD) <= set(assocs):
            # One role in place of the first of them.
            at = min(assocs.index(x) for x in RECORD)
            assocs = [x for x in assocs if x not in RECORD]
            assocs.insert(at, RECORD_ROLE)
        rate = Decimal(p["rate"])
        rate_u = rate.scaleb(RATE_DP)
        if rate_u != rate_u.to_integral_value():
            raise SystemExit(f"program {p['id']}: rate {rate} has more than {RATE_DP} decimals")
        programs.append(
            {
                "id": p["id"],
                "assocs": assocs,
                "rate": rate,
                "rate_u": int(rate_u),
                "window": p.get("window_months"),
                "valid_from": p.get("valid_from"),
                "valid_to": p.get("valid_to"),
                "publishers": p.get("publishers", []),
                "exclude_qualifiers": p.get("exclude_qualifiers", []),
            }
        )
    if record_role(programs) and any(
        x in RECORD for p in programs for x in p["assocs"]
    ):
        raise SystemExit(
            "compare.py models POR and DPOR as one role in every program or in none: "
            "a program paying one of them beside one paying both is not modelled"
        )
    return programs


def programs_sql(programs: list[dict]) -> str:
    rows = []
    for i, p in enumerate(programs):
        vf = f"DATE {sql_str(p['valid_from'])}" if p["valid_from"] else "NULL::DATE"
        vt = f"DATE {sql_str(p['valid_to'])}" if p["valid_to"] else "NULL::DATE"
        win = str(p["window"]) if p["window"] else "NULL::INTEGER"
        rows.append(
            f"({i}, {sql_str(p['id'])}, {p['rate_u']}::HUGEINT, {p['rate']}::DECIMAL(18,6), "
            f"{win}, {vf}, {vt})"
        )
    return "SELECT * FROM (VALUES " + ", ".join(rows) + ") AS t(i, pid, rate_u, rate, win, pvf, pvt)"


def program_assocs_sql(programs: list[dict]) -> str:
    rows = [f"({sql_str(p['id'])}, {sql_str(a)})" for p in programs for a in p["assocs"]]
    return "SELECT * FROM (VALUES " + ", ".join(rows) + ") AS t(pid, a)"


def core_query(data: Path, layouts: list[Layout], programs: list[dict]) -> str:
    """The issue's core query: join, validity filter, rate, group. Timing reference only."""
    return f"""
WITH lines AS ({lines_sql(layouts, programs)}),
d AS ({designations_sql(data, programs)}),
prog AS ({programs_sql(programs)}),
pa AS ({program_assocs_sql(programs)})
SELECT d.partner, l.ck, pa.pid, l.cur, sum(l.amt * prog.rate) AS amount
FROM lines l
JOIN d ON d.ck = l.ck AND (d.sub IS NULL OR d.sub = l.sk)
      AND (d.vf IS NULL OR d.vf <= l.s) AND (d.vt IS NULL OR l.s < d.vt)
JOIN pa ON pa.a = d.a
JOIN prog ON prog.pid = pa.pid
GROUP BY ALL
"""


def exact_query(data: Path, layouts: list[Layout], programs: list[dict]) -> str:
    """porledger's computation (src/accrue.rs, src/attribute.rs) for billed-revenue programs.

    Money is exact throughout: amounts are read as DECIMAL(18,2) and shares as
    DECIMAL(38,10), then carried as HUGEINT counts of 1e-6 (basis), 1e-6 (rate),
    1e-10 (share) and 1e-22 (amount) so that proration and equal splits round
    exactly as porledger does.
    """
    ok_case = "CASE p.i " + " ".join(f"WHEN {i} THEN l.ok_{i}" for i in range(len(programs))) + " END"
    one = "CAST(10000000000 AS HUGEINT)"  # a share of 1 in 1e-10 units
    half_cent = "CAST('50000000000000000000' AS HUGEINT)"  # 0.005 in 1e-22 units
    cent = "CAST('100000000000000000000' AS HUGEINT)"  # 0.01 in 1e-22 units
    bounds = "\nUNION ALL\n".join(
        f"""SELECT ck, {sql_str(p['id'])} AS pid, unnest([vf, vt{
            f", CAST(vf + INTERVAL {p['window']} MONTH AS DATE)" if p['window'] else ''}]) AS b
FROM d WHERE a IN ({', '.join(sql_str(a) for a in p['assocs'])})"""
        for p in programs
    )
    return f"""
WITH lines AS ({lines_sql(layouts, programs)}),
d AS ({designations_sql(data, programs)}),
prog AS ({programs_sql(programs)}),
pa AS ({program_assocs_sql(programs)}),
-- Designated credit: customer-wide designations (no workload), and the
-- intervals of dates in which the set of valid designations does not change.
dd AS (SELECT * FROM d WHERE wl = '' AND a <> 'RESELLER'),
bnd AS (SELECT DISTINCT ck, a, lo FROM (
          SELECT ck, a, unnest([DATE '0001-01-01', vf, vt]) AS lo FROM dd) WHERE lo IS NOT NULL),
iv AS (SELECT ck, a, lo,
              coalesce(lead(lo) OVER (PARTITION BY ck, a ORDER BY lo), DATE '9999-12-31') AS hi
       FROM bnd),
valid AS (SELECT iv.ck, iv.a, iv.lo, iv.hi, dd.line, dd.partner, dd.sub, dd.share, dd.vf
          FROM iv JOIN dd ON dd.ck = iv.ck AND dd.a = iv.a
          WHERE (dd.vf IS NULL OR dd.vf <= iv.lo) AND (dd.vt IS NULL OR iv.lo < dd.vt)),
-- Shares within one scope (the subscription's own designations, or the
-- customer-wide ones): explicit shares as given; the rest split equally,
-- truncated to 10 decimals, the last (by partner, line) taking the remainder.
sh AS (SELECT *,
              coalesce(sum(CAST(share * 10000000000 AS HUGEINT)) OVER g, 0) AS e_u,
              count(*) FILTER (WHERE share IS NULL) OVER g AS nb,
              row_number() OVER (PARTITION BY ck, a, lo, sub, share IS NULL
                                 ORDER BY partner, line) AS k
       FROM valid WINDOW g AS (PARTITION BY ck, a, lo, sub)),
cr0 AS (SELECT ck, a, lo, hi, sub, partner, vf, nb, e_u,
               CASE WHEN share IS NOT NULL THEN CAST(share * 10000000000 AS HUGEINT)
                    WHEN k < nb THEN ({one} - e_u) // nb
                    ELSE ({one} - e_u) - (({one} - e_u) // nb) * (nb - 1) END AS share_u
        FROM sh),
cr AS (SELECT * FROM cr0 WHERE NOT (nb > 0 AND share_u = 0)),
-- (customer, association, interval, subscription) with a subscription designation:
-- there the customer-wide designations of that association do not count.
spec_keys AS (SELECT DISTINCT ck, a, lo, hi, sub FROM valid WHERE sub IS NOT NULL),
-- Each line under each program in force on its charge date that does not
-- exclude it (publisher, qualifiers).
lp AS (SELECT l.ck, l.sk, l.s, l.e, l.amt, l.cur, l.rsl, p.pid, p.rate_u, p.win
       FROM lines l CROSS JOIN prog p
       WHERE (p.pvf IS NULL OR p.pvf <= l.s) AND (p.pvt IS NULL OR l.s < p.pvt) AND {ok_case}),
-- Day proration: the dates at which one of the customer's designations of the
-- program's associations starts, ends or leaves its window cut the charge period.
cb AS (SELECT ck, pid, list_sort(list_distinct(list(b))) AS bl
       FROM ({bounds}) WHERE b IS NOT NULL GROUP BY ck, pid),
-- Calendar months cut it too: every part lies in one accrual month.
lpc AS (SELECT lp.*, CASE WHEN lp.e > lp.s
                          THEN list_sort(list_distinct(list_concat(
                                 list_filter(coalesce(cb.bl, []), lambda b: b > lp.s AND b <= lp.e),
                                 list_transform(generate_series(
                                     CAST(date_trunc('month', lp.s) + INTERVAL 1 MONTH AS TIMESTAMP),
                                     CAST(lp.e AS TIMESTAMP), INTERVAL 1 MONTH),
                                   lambda x: CAST(x AS DATE)))))
                          ELSE [] END AS cuts
        FROM lp LEFT JOIN cb ON cb.ck = lp.ck AND cb.pid = lp.pid),
seg1 AS (SELECT ck, sk, cur, rsl, pid, rate_u, win, s AS f,
                CAST(amt * 1000000 AS HUGEINT) AS bu
         FROM lpc WHERE len(cuts) = 0),
-- Parts but the last: amt x days / total days, rounded half-even to 6 decimals
-- (integer arithmetic on |amount| in cents); the last part takes the remainder.
cutl AS (SELECT *, [s] || cuts AS froms, cuts || [e + 1] AS tos, e - s + 1 AS total,
                CAST(amt * 100 AS HUGEINT) AS c
         FROM lpc WHERE len(cuts) > 0),
cutp AS (SELECT *, list_transform(range(1, len(froms)), lambda i:
                 sign(c) * ((abs(c) * (tos[i] - froms[i]) * 10000) // total
                   + CASE WHEN 2 * ((abs(c) * (tos[i] - froms[i]) * 10000) % total) > total
                            OR (2 * ((abs(c) * (tos[i] - froms[i]) * 10000) % total) = total
                                AND ((abs(c) * (tos[i] - froms[i]) * 10000) // total) % 2 = 1)
                          THEN 1 ELSE 0 END)) AS parts
         FROM cutl),
segn AS (SELECT ck, sk, cur, rsl, pid, rate_u, win, unnest(froms) AS f,
                unnest(parts || [c * 10000 - coalesce(list_sum(parts), 0)]) AS bu
         FROM cutp),
segs AS (SELECT * FROM seg1 UNION ALL SELECT * FROM segn),
sa AS (SELECT segs.*, pa.a FROM segs JOIN pa ON pa.pid = segs.pid),
credited AS (
  -- RESELLER: the line's ResellerMpnId, whole share.
  SELECT rsl AS partner, ck, pid, cur, date_trunc('month', f) AS m, bu, rate_u, {one} AS share_u
  FROM sa WHERE a = 'RESELLER' AND rsl IS NOT NULL
  UNION ALL
  -- The subscription's own designations.
  SELECT cr.partner, sa.ck, sa.pid, sa.cur, date_trunc('month', sa.f) AS m, sa.bu, sa.rate_u,
         cr.share_u
  FROM sa JOIN cr ON cr.ck = sa.ck AND cr.a = sa.a AND cr.sub = sa.sk
                 AND cr.lo <= sa.f AND sa.f < cr.hi
  WHERE sa.win IS NULL OR cr.vf IS NULL OR sa.f < CAST(cr.vf + to_months(sa.win) AS DATE)
  UNION ALL
  -- Customer-wide designations, where the subscription has none of its own.
  SELECT cr.partner, sa.ck, sa.pid, sa.cur, date_trunc('month', sa.f) AS m, sa.bu, sa.rate_u,
         cr.share_u
  FROM sa JOIN cr ON cr.ck = sa.ck AND cr.a = sa.a AND cr.sub IS NULL
                 AND cr.lo <= sa.f AND sa.f < cr.hi
  WHERE (sa.win IS NULL OR cr.vf IS NULL OR sa.f < CAST(cr.vf + to_months(sa.win) AS DATE))
    AND NOT EXISTS (SELECT 1 FROM spec_keys k
                    WHERE k.ck = sa.ck AND k.a = sa.a AND k.sub = sa.sk
                      AND k.lo <= sa.f AND sa.f < k.hi)
),
-- Statement lines: exact sum per (partner, customer, program, currency,
-- accrual month), rounded half-up (away from zero) to the cent.
stmt AS (SELECT partner, ck, pid, cur, m, count(*) AS n, sum(bu) AS b,
                sum(bu * rate_u * share_u) AS a
         FROM credited GROUP BY ALL)
SELECT partner, pid, cur, sum(n)::BIGINT AS lines, sum(b)::VARCHAR AS basis_u,
       sum(sign(a) * ((abs(a) + {half_cent}) // {cent}))::VARCHAR AS cents
FROM stmt GROUP BY ALL ORDER BY ALL
"""


def duckdb_worker(args) -> None:
    """Runs one query (in its own process, timed from outside) and writes its result."""
    import duckdb

    data = Path(args.data)
    layouts = [file_layout(p) for p in billing_files(data)]
    programs = load_programs(data / "rules.toml")
    con = duckdb.connect()
    con.execute(f"SET threads = {args.threads}")
    t0 = time.perf_counter()
    if args.duckdb_worker == "core":
        con.execute(f"CREATE TEMP TABLE r AS {core_query(data, layouts, programs)}")
        rows = con.execute("SELECT count(*) FROM r").fetchall()
        result = {"groups": rows[0][0]}
    else:
        rows = con.execute(exact_query(data, layouts, programs)).fetchall()
        result = {
            f"{p}|{g}|{c}": {"lines": n, "basis_u": b, "cents": cents}
            for p, g, c, n, b, cents in rows
        }
    elapsed = time.perf_counter() - t0
    Path(args.result).write_text(json.dumps({"query_s": elapsed, "result": result}))


# ---------------------------------------------------------------------------
# Running and timing
# ---------------------------------------------------------------------------


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def timed(cmd: list[str], ok=(0,)) -> tuple[float, float]:
    """Runs `cmd` under /usr/bin/time; returns (wall seconds, peak RSS in MB of `cmd`)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["/usr/bin/time", "-o", tf.name, "-f", "%M"] + cmd,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        if proc.returncode not in ok:
            raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
        wall = time.perf_counter() - t0  # finer than time's %e (1/100 s)
        kb = tf.read().split()[-1]
    return wall, int(kb) / 1024


def best_of(runs: int, cmd, ok=(0,)) -> tuple[float, float]:
    """Best wall time of `runs` runs, with the peak RSS of that run.

    `cmd` is a command, or a function of the run number (0, 1, ...) returning one."""
    results = [timed(cmd(k) if callable(cmd) else cmd, ok) for k in range(runs)]
    return min(results)


def ensure_time() -> None:
    if not Path("/usr/bin/time").exists():
        raise SystemExit("needs GNU time: sudo apt-get install time")


def duckdb_python() -> str:
    """A Python that can `import duckdb`: this one, or bench-data/.venv (created once)."""
    try:
        import duckdb  # noqa: F401

        return sys.executable
    except ImportError:
        pass
    venv = REPO / "bench-data" / ".venv"
    py = venv / "bin" / "python"
    if not py.exists():
        log(f"installing duckdb into {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "duckdb"], check=True)
    return str(py)


def build_binary() -> Path:
    log("cargo build --release")
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    if not target.is_absolute():
        target = REPO / target
    return target / "release" / "porledger"


def ensure_data(bin_: Path, data: Path, rows: int) -> None:
    if (data / "rules.toml").exists() and billing_files(data):
        return
    need = rows * 700  # bytes on disk per row, with room to spare
    free = shutil.disk_usage(data.parent if data.parent.exists() else REPO).free
    if free < need:
        raise SystemExit(f"generating {rows} rows needs ~{need / 1e9:.1f} GB, {free / 1e9:.1f} GB free")
    log(f"porledger sample --out {data} --rows {rows} --seed {SEED}")
    data.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [str(bin_), "sample", "--out", str(data), "--rows", str(rows), "--seed", str(SEED)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def porledger_cmd(bin_: Path, billing: Path, data: Path, out: Path, threads: int) -> list[str]:
    return [
        str(bin_), "run", "--quiet", "--no-pdf", "--period", PERIOD,
        "--billing", str(billing),
        "--designations", str(data / "designations.csv"),
        "--rules", str(data / "rules.toml"),
        "--out", str(out), "--threads", str(threads),
    ]  # fmt: skip


# Exit 1 = done with some rows rejected: still a complete run (rejects are checked below).
PORLEDGER_OK = (0, 1)


def resplit(data: Path, tmp: Path) -> tuple[Path, Path]:
    """The same rows as one big file and as 10 files, each file with a header.

    Rows are copied as bytes (each keeps its line ending and date style); each
    output file takes the header of the input file its first row comes from.
    Splitting at physical lines is only right when no quoted field holds a line
    break; the caller checks the row counts porledger reports.
    """
    one, ten = tmp / "one", tmp / "ten"
    one.mkdir()
    ten.mkdir()
    files = billing_files(data)
    total = 0
    for p in files:
        with open(p, "rb") as f:
            total += sum(buf.count(b"\n") for buf in iter(lambda: f.read(1 << 24), b"")) - 1
    per = -(-total // 10)
    big = open(one / "all.csv", "wb")
    part, written, out = 0, 0, None
    for k, p in enumerate(files):
        with open(p, "rb") as f:
            header = f.readline()
            if k == 0:
                big.write(header)
            for row in f:
                if out is None or written == per:
                    if out:
                        out.close()
                    part += 1
                    out = open(ten / f"part-{part:02d}.csv", "wb")
                    out.write(header)
                    written = 0
                out.write(row)
                big.write(row)
                written += 1
    if out:
        out.close()
    big.close()
    return one, ten


def rows_read(out: Path) -> int | None:
    """Billing rows porledger read, from the run's manifest.json."""
    try:
        return json.loads((out / "manifest.json").read_text())["counts"]["billing_rows"]
    except (OSError, ValueError, KeyError):
        return None


def read_summary(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {
            f"{r['partner_id']}|{r['program_id']}|{r['currency']}": {
                "lines": int(r["lines"]),
                "basis": Decimal(r["basis_amount"]),
                "accrual": Decimal(r["accrual_amount"]),
            }
            for r in csv.DictReader(f)
        }


def compare_totals(summary: dict, duck: dict) -> list[str]:
    """Differences between summary.csv and DuckDB's result, one message each."""
    problems = []
    for key in sorted(set(summary) | set(duck)):
        s, d = summary.get(key), duck.get(key)
        if s is None or d is None:
            problems.append(f"{key}: only in {'DuckDB' if s is None else 'porledger'}")
            continue
        d_accrual = Decimal(d["cents"]).scaleb(-2)
        d_basis = Decimal(d["basis_u"]).scaleb(-BASIS_DP)
        if s["accrual"] != d_accrual:
            problems.append(f"{key}: accrual porledger {s['accrual']} DuckDB {d_accrual}")
        if s["basis"] != d_basis:
            problems.append(f"{key}: basis porledger {s['basis']} DuckDB {d_basis}")
        if s["lines"] != d["lines"]:
            problems.append(f"{key}: lines porledger {s['lines']} DuckDB {d['lines']}")
    return problems


def comparison(args, data: Path, bin_: Path, py: str) -> list[str]:
    """Times every engine, runs the checks, prints the table; returns the failed checks."""
    files = billing_files(data)
    nbytes = sum(p.stat().st_size for p in files)
    failures: list[str] = []
    table = []

    with tempfile.TemporaryDirectory(prefix="porledger-bench-", dir=REPO / "bench-data") as t:
        tmp = Path(t)
        disk_before = shutil.disk_usage(tmp)

        # The floor; the first run also warms the page cache.
        log("wc -l")
        subprocess.run(["cat"] + [str(p) for p in files], stdout=subprocess.DEVNULL, check=True)
        table.append(("wc -l", 1, *best_of(args.runs, ["wc", "-l"] + [str(p) for p in files])))

        # DuckDB, in a process of its own per run.
        duck_results = {}
        for kind in ("core", "exact"):
            log(f"duckdb {kind}")
            res = tmp / f"duckdb-{kind}.json"
            cmd = [py, str(Path(__file__).resolve()), "--duckdb-worker", kind,
                   "--data", str(data), "--threads", str(DUCKDB_THREADS), "--result", str(res)]  # fmt: skip
            table.append((f"duckdb {kind}", DUCKDB_THREADS, *best_of(args.runs, cmd)))
            duck_results[kind] = json.loads(res.read_text())

        # porledger at 1 and 2 threads. Every run writes a fresh --out, as a
        # monthly run writes a new period's folder, and the outputs are deleted
        # only at the end: right after a mass delete, a journal-less ext4 (this
        # machine's) creates files several times slower for minutes, which would
        # charge the 30,000 statement files of one run to the next.
        outs = {}
        for threads in (1, 2):
            log(f"porledger --threads {threads}")

            def cmd(k: int, threads=threads) -> list[str]:
                return porledger_cmd(bin_, data / "billing", data, tmp / f"out-t{threads}-{k}", threads)

            table.append(("porledger", threads, *best_of(args.runs, cmd, PORLEDGER_OK)))
            outs[threads] = tmp / f"out-t{threads}-{args.runs - 1}"
        # A disk near full makes every writing run slower: say how full it got.
        disk_after = shutil.disk_usage(tmp)

        # `validate`: the same reading and computing of every line, nothing
        # written (its target is DuckDB's core query).
        log("porledger validate --threads 2")
        validate = [str(bin_), "validate", "--period", PERIOD, "--billing", str(data / "billing"),
                    "--designations", str(data / "designations.csv"),
                    "--rules", str(data / "rules.toml"), "--threads", "2"]  # fmt: skip
        table.append(("validate", 2, *best_of(args.runs, validate, PORLEDGER_OK)))

        # Correctness.
        checks = []

        def check(name: str, ok: bool, detail: str = "") -> None:
            checks.append((name, ok, detail))
            if not ok:
                failures.append(f"{name}: {detail}")

        s1 = (outs[1] / "summary.csv").read_bytes()
        s2 = (outs[2] / "summary.csv").read_bytes()
        check("summary.csv --threads 1 == --threads 2", s1 == s2)
        # Each run's outputs take ~1.3 GB per million rows: the timed runs'
        # but the last make room for the re-split input and its two runs.
        for k in range(args.runs):
            for threads in (1, 2):
                if tmp / f"out-t{threads}-{k}" != outs[2]:
                    shutil.rmtree(tmp / f"out-t{threads}-{k}", ignore_errors=True)

        log("re-splitting the input: one file, and 10 files")
        one, ten = resplit(data, tmp)
        summaries = {}
        for name, billing in (("one", one), ("ten", ten)):
            p = subprocess.run(porledger_cmd(bin_, billing, data, tmp / f"out-{name}", 2),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
            if p.returncode not in PORLEDGER_OK:
                tail = p.stderr.decode(errors="replace").strip().splitlines()[-3:]
                raise SystemExit(f"porledger run on the re-split input ({name}) failed "
                                 f"(exit {p.returncode}): " + " / ".join(tail))  # fmt: skip
            summaries[name] = (tmp / f"out-{name}" / "summary.csv").read_bytes()
        s_one, s_ten = summaries["one"], summaries["ten"]
        check("summary.csv one file == 10 files", s_one == s_ten)
        check("summary.csv 10 files == generated files", s_ten == s2)
        counts = {rows_read(outs[2]), rows_read(tmp / "out-one"), rows_read(tmp / "out-ten")}
        check("rows read == --rows in every layout", counts == {args.rows}, f"read {counts}")
        rejects = sum(1 for _ in open(outs[2] / "rejects.csv")) - 1
        check("no rejected rows", rejects == 0, f"{rejects} rejected")

        problems = compare_totals(read_summary(outs[2] / "summary.csv"), duck_results["exact"]["result"])
        check(
            "totals == DuckDB (lines, basis, accrual per partner/program/currency)",
            not problems,
            "; ".join(problems[:10]) + (f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""),
        )

    # The table.
    floor = next(w for e, _, w, _ in table if e == "wc -l")
    duck_exact = next(w for e, _, w, _ in table if e == "duckdb exact")
    duck_core = next(w for e, _, w, _ in table if e == "duckdb core")
    print()
    print(f"{args.rows:,} rows, {nbytes / 1e6:,.0f} MB in {len(files)} files; best of {args.runs}")
    full = disk_after.used / (disk_after.used + disk_after.free)
    print(f"disk: {disk_before.free / 1e9:,.1f} GB free before, {disk_after.free / 1e9:,.1f} GB"
          f" ({100 * full:.0f} % used, as df counts) after porledger's timed runs")  # fmt: skip
    if full > 0.9:
        print("WARNING: the disk was over 90 % full: writing runs were timed on a slow disk")
    print(f"{'engine':<14} {'threads':>7} {'wall s':>8} {'rows/s':>11} {'MB/s':>7} {'peak RSS MB':>11}"
          f" {'/ duckdb exact':>14} {'/ duckdb core':>13} {'/ wc -l':>8}")  # fmt: skip
    for engine, threads, wall, rss in table:
        print(
            f"{engine:<14} {threads:>7} {wall:>8.2f} {args.rows / wall:>11,.0f} {nbytes / 1e6 / wall:>7,.0f}"
            f" {rss:>11,.0f} {wall / duck_exact:>14.2f} {wall / duck_core:>13.2f} {wall / floor:>8.1f}"
        )
    print("DuckDB query time alone, in-process, last run: "
          + ", ".join(f"{k} {v['query_s']:.2f} s" for k, v in duck_results.items()))  # fmt: skip
    print()
    for name, ok, detail in checks:
        print(f"{'ok  ' if ok else 'FAIL'} {name}" + (f": {detail}" if detail and not ok else ""))

    return failures


def rules_with_earnings(rules: str) -> str:
    """The rules with a `[[program.earnings]]` table (programName = the program's
    id) in every program, inserted before the program's first sub-table or the
    next table: what the generated earnings export names."""
    out, pending = [], None
    for line in rules.splitlines():
        stripped = line.strip()
        if stripped.startswith("[") and pending:
            out += ["[[program.earnings]]", f'programName = "{pending}"', ""]
            pending = None
        if stripped == "[[program]]":
            pending = ""
        elif pending == "" and stripped.startswith("id"):
            pending = stripped.split("=", 1)[1].strip().strip('"')
        out.append(line)
    if pending:
        out += ["[[program.earnings]]", f'programName = "{pending}"']
    return "\n".join(out) + "\n"


def tieout_timing(args, data: Path, bin_: Path) -> list[str]:
    """Times `tieout` against `run` on an earnings export of the run's size."""
    failures = []
    with tempfile.TemporaryDirectory(prefix="porledger-bench-", dir=REPO / "bench-data") as t:
        tmp = Path(t)
        log("porledger run --threads 2 (for tieout)")
        out = tmp / "run-0"
        runs = [timed(porledger_cmd(bin_, data / "billing", data, out, 2), PORLEDGER_OK)]
        earnings = tmp / "earnings.csv"
        log("earnings export from the ledger (one earning per ledger row)")
        subprocess.run(
            [sys.executable, str(Path(__file__).resolve().parent / "earnings_from_ledger.py"),
             "--ledger", str(out / "ledger.csv"), "--out", str(earnings), "--per-line", "--billed"],
            check=True,
        )  # fmt: skip
        rules = tmp / "rules-earnings.toml"
        rules.write_text(rules_with_earnings((data / "rules.toml").read_text()))
        n_earnings = sum(1 for _ in open(earnings, "rb")) - 1
        log(f"porledger tieout --threads 2 ({n_earnings:,} earnings rows), alternated with run")

        def cmd(k: int) -> list[str]:
            # The same threads as the run it is timed against.
            return [str(bin_), "tieout", "--threads", "2", "--quiet", "--no-pdf", "--out", str(out),
                    "--earnings", str(earnings), "--rules", str(rules), "--as-of", "2100-01-01",
                    "--tieout-out", str(tmp / f"tie-{k}")]  # fmt: skip

        # tieout and run take turns (run, tieout, run, tieout, ...), so that a
        # machine that slows down or speeds up meanwhile weighs on both. Outputs
        # are deleted only right before a tie-out, never right before a run:
        # ext4 creates files slowly for minutes after a mass delete, and a run
        # creates ~32,000 files, a tie-out a few dozen (so the deletes, if they
        # weigh on either, weigh on the tie-out). The first run's output is the
        # tie-out's input.
        ties, stale = [], []
        for k in range(args.runs):
            for d in stale:
                shutil.rmtree(d, ignore_errors=True)
            stale = [tmp / f"tie-{k}"]
            ties.append(timed(cmd(k), (0,)))
            if k + 1 < args.runs:
                again = tmp / f"run-{k + 1}"
                runs.append(timed(porledger_cmd(bin_, data / "billing", data, again, 2), PORLEDGER_OK))
                stale.append(again)
        (run_wall, run_rss), (tie_wall, tie_rss) = min(runs), min(ties)
        print()
        print(f"tie-out: {args.rows:,} billing rows, {n_earnings:,} earnings rows; best of {args.runs}")
        print(f"{'command':<10} {'wall s':>8} {'peak RSS MB':>11}")
        print(f"{'run':<10} {run_wall:>8.2f} {run_rss:>11,.0f}")
        print(f"{'tieout':<10} {tie_wall:>8.2f} {tie_rss:>11,.0f}")
        print(f"tieout / run: {tie_wall / run_wall:.2f} (goal <= 1.00)")
        if tie_wall > run_wall:
            failures.append(f"tieout {tie_wall:.2f} s slower than run {run_wall:.2f} s")
    return failures


def memory_scaling(args, data: Path, bin_: Path) -> None:
    """Peak RSS of porledger --threads 2 on --rows and on 20,000,000 rows (generated if missing)."""
    print()
    big_rows = 20_000_000
    big = REPO / "bench-data" / str(big_rows)
    ensure_data(bin_, big, big_rows)
    with tempfile.TemporaryDirectory(prefix="porledger-bench-", dir=REPO / "bench-data") as t:
        rss = {}
        for rows, d in ((args.rows, data), (big_rows, big)):
            log(f"porledger --threads 2 on {rows:,} rows (memory)")
            cmd = porledger_cmd(bin_, d / "billing", d, Path(t) / f"out-{rows}", 2)
            wall, rss[rows] = timed(cmd, PORLEDGER_OK)
            print(f"porledger --threads 2, {rows:>12,} rows: {wall:8.2f} s, peak RSS {rss[rows]:,.0f} MB")
    ratio = rss[big_rows] / rss[args.rows]
    print(f"peak RSS {big_rows:,} / {args.rows:,} rows: {ratio:.2f} (goal <= 1.20, and < 1024 MB)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--data", type=Path, help="input dir [default: bench-data/<rows>]")
    ap.add_argument("--bin", type=Path, help="porledger binary [default: cargo build --release]")
    ap.add_argument("--runs", type=int, default=3, help="best of this many runs")
    ap.add_argument("--check", action="store_true", help="exit 1 when a correctness check fails")
    ap.add_argument("--memory-scaling", action="store_true", help="also run 20,000,000 rows")
    ap.add_argument("--memory-only", action="store_true",
                    help="with --memory-scaling: skip the timing table and checks")  # fmt: skip
    ap.add_argument("--tieout", action="store_true", help="also time tieout against run")
    ap.add_argument("--tieout-only", action="store_true", help="only time tieout against run")
    ap.add_argument("--duckdb-worker", choices=["core", "exact"], help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=DUCKDB_THREADS, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.duckdb_worker:
        duckdb_worker(args)
        return 0

    ensure_time()
    data = (args.data or REPO / "bench-data" / str(args.rows)).resolve()
    bin_ = (args.bin or build_binary()).resolve()
    ensure_data(bin_, data, args.rows)
    load_programs(data / "rules.toml")  # fail early on rules the SQL does not model
    if args.tieout_only:
        failures = tieout_timing(args, data, bin_)
    else:
        failures = [] if args.memory_only else comparison(args, data, bin_, duckdb_python())
        if args.tieout:
            failures += tieout_timing(args, data, bin_)

    if args.memory_scaling:
        memory_scaling(args, data, bin_)

    if failures:
        print("\n" + "\n".join(f"FAIL {f}" for f in failures), file=sys.stderr)
        return 1 if args.check else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
