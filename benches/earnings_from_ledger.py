#!/usr/bin/env python3
"""Write a Partner Center earnings export (Default report layout) from a
porledger run's ledger.csv: what Microsoft would list if it paid exactly what
porledger accrued.

Used by benches/compare.py (--tieout) for an export of the same size as the
run, and as the starting point of sample-data/earnings/ (whose committed files
were then edited by hand: see its README).

  python3 benches/earnings_from_ledger.py --ledger out/ledger.csv --out earnings.csv
      [--per-line]       one earning per ledger row (exact amounts; the default
                         is one earning per partner, program, customer,
                         subscription, accrual month and currency, the exact
                         sum rounded once half-up, as the tie-out's grain;
                         ledgers without accrual_month: month of charge_date)
      [--billed]         also per invoice number and product (the ledger's
                         invoice_number and product_id, written as invoiceNumber
                         and productId), as Microsoft's Default report lists them
      [--tsv]            tab-separated
      [--program-map por-core='CSP Indirect Provider|Core|POR' ...]
                         programName|lever|partnerAssociation written for a
                         program (default: programName = the program ID)

Standard library only. Amounts are computed with decimal.Decimal, never float.
"""
import argparse
import csv
import uuid
from collections import OrderedDict
from decimal import Decimal, ROUND_HALF_UP

COLUMNS = [
    "earningId", "participantId", "participantIdType", "participantName",
    "programName", "engagementName", "lever", "partnerAssociation",
    "transactionId", "transactionDate", "transactionAmount", "transactionCurrency",
    "earningRate", "earningAmount", "earningType", "earningDate", "paymentStatus",
    "customerTenantId", "customerName", "subscriptionId", "invoiceNumber",
    "productId", "reasonCode",
]


def month_of(row):
    m = row.get("accrual_month") or ""
    return m if m else row["charge_date"][:7]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ledger", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--per-line", action="store_true")
    ap.add_argument("--billed", action="store_true")
    ap.add_argument("--tsv", action="store_true")
    ap.add_argument("--program-map", nargs="*", default=[])
    a = ap.parse_args()
    pmap = {}
    for m in a.program_map:
        pid, spec = m.split("=", 1)
        parts = (spec.split("|") + ["", "", ""])[:3]
        pmap[pid] = parts
    seq = [0]

    def eid():
        seq[0] += 1
        return str(uuid.UUID(int=seq[0]))

    delim = "\t" if a.tsv else ","
    with open(a.ledger, newline="", encoding="utf-8") as f, open(
        a.out, "w", newline="", encoding="utf-8"
    ) as o:
        w = csv.writer(o, delimiter=delim, lineterminator="\r\n")
        w.writerow(COLUMNS)

        def key_of(row):
            k = (row["partner_id"], row["program_id"], row["customer_id"],
                 row["subscription_id"], month_of(row), row["currency"])
            if a.billed:
                return k + (row.get("invoice_number") or "", row.get("product_id") or "")
            return k + ("", "")

        def write(key, basis, amount, rate):
            partner, program, customer, sub, month, cur, invoice, product = key
            name, lever, assoc = pmap.get(program, [program, "", ""])
            pct = (Decimal(rate) * 100).normalize()
            w.writerow([
                eid(), partner, "PartnerID", "", name, "", lever, assoc,
                "", month + "-01", basis, cur, format(pct, "f"), amount, "REBATE",
                month + "-28", "Sent", customer, "", sub, invoice, product, "",
            ])

        if a.per_line:
            for row in csv.DictReader(f):
                write(key_of(row), row["basis_amount"], row["accrual_amount"], row["rate"])
            return
        groups = OrderedDict()
        for row in csv.DictReader(f):
            g = groups.setdefault(key_of(row), [Decimal(0), Decimal(0), row["rate"]])
            g[0] += Decimal(row["basis_amount"])
            g[1] += Decimal(row["accrual_amount"])
        for key, (basis, amount, rate) in groups.items():
            q = Decimal("0.01")
            write(key, basis.quantize(q, ROUND_HALF_UP), amount.quantize(q, ROUND_HALF_UP), rate)


if __name__ == "__main__":
    main()
