"""Markdown tables from bench/plans/results/*.json (written by explain.py).

  summary.py VARIANT [VARIANT...]   one table per variant: times and plan shape of every query
  summary.py --compare V1 V2 ...     one table: the SQLite (bound) and PostgreSQL time of each query per variant
"""

import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def load(tag):
    with open(os.path.join(HERE, "results", f"{tag}.json")) as f:
        return json.load(f)


def sqlite_shape(plan):
    text = " | ".join(l.strip() for l in plan)
    parts = []
    if "MULTI-INDEX OR" in text:
        parts.append("MULTI-INDEX OR")
    for m in re.finditer(r"(SEARCH|SCAN) (\w+)(?: USING (COVERING )?INDEX (\w+) \((.*?)\)(?= \||$))?", text):
        verb, table, covering, index, cond = m.groups()
        if index:
            parts.append(f"{verb} {table} {'covering ' if covering else ''}{index} ({cond})")
        else:
            parts.append(f"{verb} {table}")
    m = re.search(r"USE TEMP B-TREE FOR ([A-Z ]+)", text)
    if m:
        parts.append("sort: " + m.group(1).lower())
    return "; ".join(dict.fromkeys(parts))


def pg_shape(plan):
    parts = []
    for l in plan:
        m = re.search(r"(Parallel )?(Index Only Scan|Index Scan Backward|Index Scan|Bitmap Index Scan|Seq Scan)"
                      r"(?: using (\w+))? on (\w+)", l)
        if m:
            parallel, kind, index, table = m.groups()
            parts.append(f"{'parallel ' if parallel else ''}{kind.lower()}{' ' + index if index else ''}")
        m = re.search(r"^(?:->\s+)?(Incremental Sort|Sort)\s+\(cost", l.strip())
        if m:
            parts.append(m.group(1).lower())
        m = re.search(r"Rows Removed by Filter: (\d+)", l)
        if m and int(m.group(1)) > 1000:
            parts.append(f"filter removed {int(m.group(1)):,}")
    return "; ".join(parts)


def fmt(ms):
    if ms is None:
        return "–"
    return f"{ms:,.0f}" if ms >= 10 else f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


def table(tag):
    r = load(tag)
    print(f"\n#### {tag}\n")
    has_pg = bool(r["postgres"])
    if has_pg:
        print("| query | SQLite ms | SQLite plan | PostgreSQL ms | PostgreSQL plan |")
        print("|---|---:|---|---:|---|")
    else:
        print("| query | SQLite ms | SQLite plan |")
        print("|---|---:|---|")
    for q in r["queries"]:
        n = q["name"]
        s = r["sqlite"][n]
        row = f"| {n} | {fmt(s['ms'])} | {sqlite_shape(s['plan_bound'])} |"
        if has_pg:
            p = r["postgres"][n]
            row += f" {fmt(p['ms'])} | {pg_shape(p['plan'])} |"
        print(row)


def compare(tags):
    rs = [load(t) for t in tags]
    head = "| query |" + "".join(f" {t} SQLite | {t} PG |" if r["postgres"] else f" {t} SQLite |"
                                for t, r in zip(tags, rs))
    print(head)
    print("|---|" + "".join("---:|---:|" if r["postgres"] else "---:|" for r in rs))
    for q in rs[0]["queries"]:
        n = q["name"]
        row = f"| {n} |"
        for r in rs:
            row += f" {fmt(r['sqlite'].get(n, {}).get('ms'))} |"
            if r["postgres"]:
                row += f" {fmt(r['postgres'].get(n, {}).get('ms'))} |"
        print(row)


if __name__ == "__main__":
    if sys.argv[1] == "--compare":
        compare(sys.argv[2:])
    else:
        for t in sys.argv[1:]:
            table(t)
