"""Render the list/count/aggregate statements remediate generates for common requests, then show their
plans and time them on the SQLite file and the PostgreSQL database made by load.sh.

The SQL is built the way crates/store/src/sql.rs (`SqlStore::list`) and translate.rs build it: the same
select list (from the model in crates/domain/src/model.rs), the same `$n` numbering, the same two-valued
filters, keyset OR-chains, `ASC NULLS FIRST` / `DESC NULLS LAST` and `LIMIT top + 1`. The literal form
(parameters inlined) is printed with each result; SQLite is also run with bound parameters, as sqlx does.

Usage: explain.py VARIANT [--stats full|none|optimize] [--only NAME,...] [--keep]
  VARIANT  baseline         the schema as migrated, the SQL as the server renders it today
           indexes          + INDEX_SETS["indexes"] (index-only fixes; undone at the end unless --keep)
           rewrite          the SQL with the REWRITE changes described below, schema as migrated
           rewrite-indexes  REWRITE + INDEX_SETS["rewrite-indexes"]
  --stats  SQLite statistics: full = ANALYZE (load.sh ran it; default), none = no sqlite_stat1/4 (what a
           database the server created has: it never runs ANALYZE), optimize = what
           `PRAGMA optimize=0x10002` produces on a connection that has run the queries.
           With none/optimize only SQLite is run; the full statistics are restored at the end.

Also: explain.py server-check LOG   compare with the statements in a server log (verify-server.sh)
      explain.py rewrite-check      check that the REWRITE SQL returns the right rows
"""

import json
import os
import re
import statistics
import subprocess
import sys
import time

import apsw

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
PLANS_DIR = os.environ.get("PLANS_DIR", "/tmp/remediate-plans")
SQLITE_DB = os.path.join(PLANS_DIR, "remediate.db")
PGDB = os.environ.get("PGDATABASE_PLANS", "remediate_plans")
PSQL = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", PGDB]

TENANT = "c0ffee00-1111-4222-8333-444455556666"
NOW = 638975520000000000  # 2025-11-01T00:00:00Z, as in load.sh
DAY = 864000000000
TOP = 100  # api::query::DEFAULT_TOP

# Index sets tried by the `indexes` and `rewrite-indexes` variants: per dialect, migration indexes dropped
# (restored afterwards from the migration file) and indexes created (dropped afterwards).
# SQLite rejects NULLS FIRST/LAST in an index; its ASC index already orders NULLs first and a backward
# scan gives DESC NULLS LAST, which is what the server's ORDER BY asks for. PostgreSQL's default index
# order is ASC NULLS LAST, so it can use an index for `ASC NULLS FIRST` / `DESC NULLS LAST` only when
# the index is declared that way.
INDEX_SETS = {
    # Index-only fixes for the SQL as the server renders it today.
    "indexes": {
        "sqlite": {
            "drop": [],
            "create": [
                'CREATE INDEX "device_run_states_updated_desc" ON "device_run_states" '
                '("tenant", "scriptId", "lastStateUpdateDateTime" DESC, "id")',
                'CREATE INDEX "device_run_states_det_updated" ON "device_run_states" '
                '("tenant", "scriptId", "detectionState", "lastStateUpdateDateTime" DESC, "id")',
                'CREATE INDEX "device_run_states_summary" ON "device_run_states" '
                '("tenant", "scriptId", "detectionState", "remediationState", "lastStateUpdateDateTime")',
            ],
        },
        "postgres": {
            "drop": ["device_run_states_detection", "device_run_states_updated", "managed_devices_name"],
            "create": [
                'CREATE INDEX "device_run_states_id_nf" ON "device_run_states" ("tenant", "scriptId", "id" NULLS FIRST)',
                'CREATE INDEX "device_run_states_detection_nf" ON "device_run_states" '
                '("tenant", "scriptId", "detectionState", "id" NULLS FIRST)',
                'CREATE INDEX "device_run_states_updated_desc" ON "device_run_states" '
                '("tenant", "scriptId", "lastStateUpdateDateTime" DESC NULLS LAST, "id" NULLS FIRST)',
                'CREATE INDEX "device_run_states_det_updated" ON "device_run_states" '
                '("tenant", "scriptId", "detectionState", "lastStateUpdateDateTime" DESC NULLS LAST, "id" NULLS FIRST)',
                'CREATE INDEX "managed_devices_name_nf" ON "managed_devices" '
                '("tenant", "deviceName_lc" NULLS FIRST, "deviceName" NULLS FIRST, "id" NULLS FIRST)',
                'CREATE INDEX "device_run_states_summary" ON "device_run_states" '
                '("tenant", "scriptId", "detectionState", "remediationState", "lastStateUpdateDateTime")',
            ],
        },
    },
    # With the REWRITE changes the migration's ASC indexes serve an order and its reverse; one index is
    # added on both databases, and PostgreSQL's device-name index is declared NULLS FIRST (deviceName
    # is nullable, so its ORDER BY keeps NULLS FIRST).
    "rewrite-indexes": {
        "sqlite": {
            "drop": [],
            "create": [
                'CREATE INDEX "device_run_states_det_updated" ON "device_run_states" '
                '("tenant", "scriptId", "detectionState", "lastStateUpdateDateTime", "id")',
            ],
        },
        "postgres": {
            "drop": ["managed_devices_name"],
            "create": [
                'CREATE INDEX "device_run_states_det_updated" ON "device_run_states" '
                '("tenant", "scriptId", "detectionState", "lastStateUpdateDateTime", "id")',
                'CREATE INDEX "managed_devices_name_nf" ON "managed_devices" '
                '("tenant", "deviceName_lc" NULLS FIRST, "deviceName" NULLS FIRST, "id")',
            ],
        },
    },
}


def migration_index(dialect, name):
    text = open(os.path.join(REPO, f"crates/store/migrations/{dialect}/0001_initial.sql")).read()
    m = re.search(rf'CREATE (UNIQUE )?INDEX "{name}" [^;]*;', text)
    return m.group(0)


# `rewrite` variants: SQL-shape changes (no code is changed by this bench; these show what a change to
# translate.rs would buy). They use the model's nullability: a property declared non-nullable
# (`prop(name, kind, false, default)`, e.g. detectionState, lastStateUpdateDateTime) and `id` are never NULL
# in a row (wire::decode rejects null, defaults fill them), so NULL handling for them is dead weight:
#  R1. ORDER BY: no NULLS FIRST/LAST for such keys (plain ASC/DESC), so PostgreSQL can use ordinary indexes;
#  R2. the `id` tie-breaker takes the direction of the last $orderby key instead of always ASC, so one ASC
#      index serves an order and its reverse exactly (forward or backward scan) on both databases;
#  R3. keyset: no `OR x IS NULL` branch for such keys, and, when the order has two or more keys, a redundant
#      sargable bound on the first key before the OR-chain (`k1 >= v` ascending; `k1 <= v` descending and
#      non-nullable), so both databases seek to the position instead of scanning or OR-unioning the rest;
#  R4. filters: comparisons on such columns of the run state itself (not through the LEFT JOINed device,
#      which may be missing) without the `x IS NOT NULL AND` guard (`x <> v` without `x IS NULL OR`).
REWRITE = False

# ---------------------------------------------------------------- the model (parsed, not copied)
def entity_columns(static_name):
    """[(property, in_list)] and link columns of `pub static NAME: EntityType` in model.rs."""
    text = open(os.path.join(REPO, "crates/domain/src/model.rs")).read()
    start = text.index(f"pub static {static_name}: EntityType")
    body = text[start : text.index("\n};", start)]
    links = re.findall(r"Link::(\w+)", body.split("properties:")[0])
    props = []
    props_text = body.split("properties:")[1]
    matches = list(re.finditer(r'prop\(\s*"(\w+)"', props_text))
    prev = 0
    for m in matches:
        wrappers = props_text[prev : m.start()]
        props.append((m.group(1), "detail_only(" not in wrappers))
        prev = m.end()
    link_column = {"Script": "scriptId", "State": "stateId", "Device": "managedDeviceId"}
    return props, [link_column[l] for l in links]


def select_columns(static_name, alias, listing):
    props, links = entity_columns(static_name)
    cols = [f'{alias}."{p}"' if (in_list or not listing) else "NULL" for p, in_list in props]
    cols += [f'{alias}."{c}"' for c in links]
    return ", ".join(cols)


# ---------------------------------------------------------------- SQL builder (mirrors translate.rs)
class Sql:
    def __init__(self):
        self.text = ""
        self.args = []

    def push(self, s):
        self.text += s
        return self

    def arg(self, value):
        self.args.append(value)
        self.text += f"${len(self.args)}"
        return self


def compare(sql, expr, op, value, nullable=True):
    """translate::compare for a non-null literal: `(x IS NOT NULL AND x op $n)` / `(x IS NULL OR x <> $n)`."""
    if REWRITE and not nullable:
        sql.push(f"({expr} {op} ").arg(value).push(")")
    elif op == "<>":
        sql.push(f"({expr} IS NULL OR {expr} <> ").arg(value).push(")")
    else:
        sql.push(f"({expr} IS NOT NULL AND {expr} {op} ").arg(value).push(")")


def and_(*parts):
    """Filter::And(a, b): `(a AND b)`, nested left to right as the parser builds `a and b and c`."""

    def render(sql, items):
        if len(items) == 1:
            items[0](sql)
            return
        sql.push("(")
        render(sql, items[:-1])
        sql.push(" AND ")
        items[-1](sql)
        sql.push(")")

    return lambda sql: render(sql, list(parts))


def cmp(expr, op, value, nullable=True):
    return lambda sql: compare(sql, expr, op, value, nullable)


def in_(expr, values):
    def f(sql):
        sql.push(f"(({expr} IS NOT NULL AND {expr} IN (")
        for i, v in enumerate(values):
            if i:
                sql.push(", ")
            sql.arg(v)
        sql.push(")))")

    return f


def after_condition(sql, keys, values):
    """keys: [(expr, descending, nullable)], values: sort values then id (None = NULL)."""
    if REWRITE and values[0] is not None and len(keys) > 1:
        expr, desc, nullable = keys[0]
        if not desc:
            sql.push(f" AND {expr} >= ").arg(values[0])
        elif not nullable:
            sql.push(f" AND {expr} <= ").arg(values[0])
    sql.push(" AND (")
    first = True
    for i, ((expr, desc, nullable), value) in enumerate(zip(keys, values)):
        if desc and value is None:
            continue
        if not first:
            sql.push(" OR ")
        first = False
        sql.push("(")
        for (kexpr, _, _), v in zip(keys[:i], values[:i]):
            if v is None:
                sql.push(f"{kexpr} IS NULL AND ")
            else:
                sql.push(f"{kexpr} = ").arg(v).push(" AND ")
        if not desc and value is None:
            sql.push(f"{expr} IS NOT NULL")
        elif not desc:
            sql.push(f"{expr} > ").arg(value)
        elif REWRITE and not nullable:
            sql.push(f"{expr} < ").arg(value)
        else:
            sql.push(f"({expr} < ").arg(value).push(f" OR {expr} IS NULL)")
        sql.push(")")
    if first:
        sql.push("1 = 0")
    sql.push(")")


def direction(desc, nullable):
    if REWRITE and not nullable:
        return "DESC" if desc else "ASC"
    return "DESC NULLS LAST" if desc else "ASC NULLS FIRST"


def list_sql(entity, table, script_id, keys, filt=None, join_device=False, after=None, top=TOP):
    """SqlStore::list: returns (page Sql, count Sql). keys exclude the final t."id"."""
    id_desc = REWRITE and bool(keys) and keys[-1][1]
    keys = list(keys) + [('t."id"', id_desc, False)]
    frm = Sql()
    frm.push(f' FROM "{table}" t')
    if join_device:
        frm.push(' LEFT JOIN managed_devices d ON d."tenant" = t."tenant" AND d."id" = t."managedDeviceId"')
    frm.push(' WHERE t."tenant" = ').arg(TENANT)
    if script_id is not None:
        frm.push(' AND t."scriptId" = ').arg(script_id)
    if filt is not None:
        frm.push(" AND ")
        filt(frm)
    count = Sql()
    count.text = "SELECT COUNT(*)" + frm.text
    count.args = list(frm.args)
    page = Sql()
    page.push("SELECT ").push(select_columns(entity, "t", True))
    for expr, _, _ in keys:
        page.push(", ").push(expr)
    page.text += frm.text
    page.args = list(frm.args)
    if after is not None:
        after_condition(page, keys, after)
    page.push(" ORDER BY ")
    page.push(", ".join(f"{e} {direction(d, n)}" for e, d, n in keys))
    page.push(" LIMIT ").arg(top + 1)
    return page, count


RUN_SUMMARY = (
    "SELECT "
    'COUNT(CASE WHEN "detectionState" = 1 AND "remediationState" <> 2 THEN 1 END), '
    'COUNT(CASE WHEN "detectionState" = 2 THEN 1 END), '
    'COUNT(CASE WHEN "detectionState" = 3 THEN 1 END), '
    'COUNT(CASE WHEN "detectionState" = 4 THEN 1 END), '
    'COUNT(CASE WHEN "detectionState" = 5 THEN 1 END), '
    'COUNT(CASE WHEN "remediationState" = 2 THEN 1 END), '
    'COUNT(CASE WHEN "remediationState" = 1 THEN 1 END), '
    'COUNT(CASE WHEN "remediationState" = 3 THEN 1 END), '
    'COUNT(CASE WHEN "remediationState" = 4 THEN 1 END), '
    'MAX("lastStateUpdateDateTime") '
    'FROM device_run_states WHERE "tenant" = $1 AND "scriptId" = $2'
)


def literal(sql):
    def lit(m):
        v = sql.args[int(m.group(1)) - 1]
        if v is None:
            return "NULL"
        if isinstance(v, int):
            return str(v)
        return "'" + v.replace("'", "''") + "'"

    return re.sub(r"\$(\d+)", lit, sql.text)


# ---------------------------------------------------------------- the data's fixed points
def sqlite_conn():
    c = apsw.Connection(SQLITE_DB, flags=apsw.SQLITE_OPEN_READWRITE)
    # The server's connection pragmas (sql.rs); the cache stays at SQLite's default (2 MB), as there.
    for p in ("PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL", "PRAGMA busy_timeout = 10000",
              "PRAGMA foreign_keys = ON"):
        c.execute(p).fetchall()
    return c


def fixed_points(c):
    big = c.execute(
        'SELECT "scriptId" FROM device_run_states WHERE "tenant" = ? GROUP BY "scriptId" ORDER BY COUNT(*) DESC LIMIT 1',
        (TENANT,),
    ).fetchall()[0][0]
    return {"big": big}


def nth(c, sql_text, args, n):
    """The sort values of the n-th row (0-based) of a statement: what the server puts in $skiptoken
    for the page that ends there (the last row of the page, `rows[top - 1]`)."""
    rows = c.execute(sql_text + f" LIMIT 1 OFFSET {n}", args).fetchall()
    return list(rows[0])


def build_queries(c):
    fp = fixed_points(c)
    big = fp["big"]
    run_cols = "DEVICE_RUN_STATE"
    q = []

    def add(name, title, sql):
        q.append({"name": name, "title": title, "sql": sql})

    # a. first page
    page, count_all = list_sql(run_cols, "device_run_states", big, [])
    add("a", "deviceRunStates of the big script, first page (ORDER BY id)", page)

    # b. detectionState eq 'fail'
    fail = cmp('t."detectionState"', "=", 2, nullable=False)
    page, count_fail = list_sql(run_cols, "device_run_states", big, [], filt=fail)
    add("b1", "$filter=detectionState eq 'fail', first page", page)
    pos = nth(c, 'SELECT "id" FROM device_run_states WHERE "tenant" = ? AND "scriptId" = ? AND "detectionState" = 2 ORDER BY "id"',
              (TENANT, big), 45000 - 1)
    page, _ = list_sql(run_cols, "device_run_states", big, [], filt=fail, after=[pos[0]])
    add("b2", "$filter=detectionState eq 'fail', keyset page after row 45,000 of ~90,000", page)

    # c. $orderby=lastStateUpdateDateTime desc
    keys = [('t."lastStateUpdateDateTime"', True, False)]  # non-nullable in the model
    page, _ = list_sql(run_cols, "device_run_states", big, keys)
    add("c1", "$orderby=lastStateUpdateDateTime desc, first page", page)
    order_sql = ('SELECT "lastStateUpdateDateTime", "id" FROM device_run_states WHERE "tenant" = ? AND "scriptId" = ? '
                 'ORDER BY "lastStateUpdateDateTime" DESC, "id" ' + ("DESC" if REWRITE else "ASC"))
    for name, n, label in (("c2", TOP - 1, "page 2"), ("c3", 450000 - 1, "keyset page after row 450,000")):
        pos = nth(c, order_sql, (TENANT, big), n)
        page, _ = list_sql(run_cols, "device_run_states", big, keys, after=pos)
        add(name, f"$orderby=lastStateUpdateDateTime desc, {label}", page)

    page, _ = list_sql(run_cols, "device_run_states", big, [('t."lastStateUpdateDateTime"', False, False)])
    add("c4", "$orderby=lastStateUpdateDateTime (asc), first page", page)

    # d. fail and recent, newest first
    since = NOW - 60 * DAY
    filt = and_(cmp('t."detectionState"', "=", 2, nullable=False),
                cmp('t."lastStateUpdateDateTime"', ">=", since, nullable=False))
    page, _ = list_sql(run_cols, "device_run_states", big, keys, filt=filt)
    add("d1", "$filter=detectionState eq 'fail' and lastStateUpdateDateTime ge (NOW-60d), $orderby=lastStateUpdateDateTime desc, first page", page)
    pos = nth(c, 'SELECT "lastStateUpdateDateTime", "id" FROM device_run_states WHERE "tenant" = ? AND "scriptId" = ? '
              'AND "detectionState" = 2 AND "lastStateUpdateDateTime" >= ? ORDER BY "lastStateUpdateDateTime" DESC, "id" '
              + ("DESC" if REWRITE else "ASC"),
              (TENANT, big, since), 30000 - 1)
    page, _ = list_sql(run_cols, "device_run_states", big, keys, filt=filt, after=pos)
    add("d2", "same as d1, keyset page after row 30,000 of ~60,000", page)

    # e. filter through the device
    dev = cmp('d."deviceName_lc"', "=", "pc-00042")
    page, _ = list_sql(run_cols, "device_run_states", big, [], filt=dev, join_device=True)
    add("e", "$filter=managedDevice/deviceName eq 'pc-00042' (LEFT JOIN managed_devices)", page)

    # f. counts
    add("f1", "$count=true of (a): COUNT(*) of the big script", count_all)
    add("f2", "$count=true of (b): COUNT(*) of detectionState eq 'fail'", count_fail)

    # g. runSummary
    s = Sql()
    s.text, s.args = RUN_SUMMARY, [TENANT, big]
    add("g", "runSummary aggregate over the big script (views.rs)", s)

    # h. managedDevices $orderby=deviceName
    dkeys = [('t."deviceName_lc"', False, True), ('t."deviceName"', False, True)]  # nullable in the model
    page, _ = list_sql("MANAGED_DEVICE", "managed_devices", None, dkeys)
    add("h1", "managedDevices $orderby=deviceName, first page", page)
    dorder = 'SELECT "deviceName_lc", "deviceName", "id" FROM managed_devices WHERE "tenant" = ? ORDER BY 1, 2, 3'
    for name, n, label in (("h2", TOP - 1, "page 2"), ("h3", 50000 - 1, "keyset page after row 50,000")):
        pos = nth(c, dorder, (TENANT,), n)
        page, _ = list_sql("MANAGED_DEVICE", "managed_devices", None, dkeys, after=pos)
        add(name, f"managedDevices $orderby=deviceName, {label}", page)

    # i. (extra) a device token reading its own run state: api::device adds `managedDevice/id in (me)`.
    me = c.execute('SELECT "id" FROM managed_devices WHERE "tenant" = ? AND "deviceName_lc" = ?',
                   (TENANT, "pc-00042")).fetchall()[0][0]
    page, _ = list_sql(run_cols, "device_run_states", big, [], filt=in_('d."id"', [me]), join_device=True)
    add("i", "(extra) device token: its own deviceRunStates of the big script (d.id IN (me))", page)
    return q


# ---------------------------------------------------------------- SQLite
def sqlite_plan(c, text, args=None):
    """EXPLAIN QUERY PLAN as an indented tree. With args, the statement is prepared with `$n` placeholders
    and bound, as sqlx does; SQLite (built with STAT4, as the server's is) re-plans with the bound values."""
    rows = c.execute("EXPLAIN QUERY PLAN " + text, args).fetchall() if args else \
        c.execute("EXPLAIN QUERY PLAN " + text).fetchall()
    depth = {0: -1}
    out = []
    for node, parent, _, detail in rows:
        depth[node] = depth.get(parent, -1) + 1
        out.append("  " * depth[node] + detail)
    return out


def timed(fn, budget=8.0, max_runs=7):
    """Run once to warm, then up to max_runs times within ~budget seconds; return (median ms, runs, result)."""
    result = fn()
    times = []
    spent = 0.0
    while len(times) < max_runs and (len(times) < 3 or spent < budget):
        t = time.perf_counter()
        result = fn()
        dt = time.perf_counter() - t
        times.append(dt * 1000)
        spent += dt
        if dt > budget:
            break
    return statistics.median(times), len(times), result


def run_sqlite(queries, out):
    c = sqlite_conn()
    res = {}
    for q in queries:
        text = literal(q["sql"])
        plan = sqlite_plan(c, text)
        plan_bound = sqlite_plan(c, q["sql"].text, q["sql"].args)
        # As the server runs it: `$n` placeholders, bound values, a cached prepared statement.
        ms, runs, rows = timed(lambda: c.execute(q["sql"].text, q["sql"].args).fetchall())
        ms_lit, runs_lit, rows_l = timed(lambda: c.execute(text).fetchall(), budget=4, max_runs=5)
        assert rows == rows_l, q["name"]
        res[q["name"]] = {"ms": ms, "ms_literal": ms_lit, "rows": len(rows), "plan": plan,
                          "plan_bound": plan_bound}
        out.write(f"\n### {q['name']} sqlite: {ms:.2f} ms bound (median of {runs}); literal {ms_lit:.2f} ms "
                  f"(median of {runs_lit}); {len(rows)} rows\n")
        out.write("\n".join(plan) + "\n")
        if plan_bound != plan:
            out.write("-- with bound parameters (as the server runs it):\n" + "\n".join(plan_bound) + "\n")
        out.flush()
    return res


# ---------------------------------------------------------------- PostgreSQL
def psql(script):
    p = subprocess.run(PSQL + ["-f", "-"], input=script, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(p.stderr)
    return p.stdout


def pg_types(args):
    return ", ".join("bigint" if isinstance(a, int) else "text" for a in args)


def run_postgres(queries, out, runs=5):
    res = {}
    for q in queries:
        text = literal(q["sql"])
        # Plan with literals (a custom plan, as the server's first five executions of a statement get).
        # (The first EXPLAIN warms the cache and is discarded.)
        plan = psql(f"\\o /dev/null\nEXPLAIN (ANALYZE, BUFFERS) {text};\n\\o\n"
                    f"EXPLAIN (ANALYZE, BUFFERS) {text};\n").rstrip().split("\n")
        # Wall time as a client sees it, literal statement, warm.
        script = "\\timing on\n\\o /dev/null\n" + "".join(f"{text};\n" for _ in range(runs + 1))
        times = [float(m) for m in re.findall(r"Time: ([0-9.]+) ms", psql(script))][1:]
        ms = statistics.median(times)
        # Generic plan: what a prepared statement may switch to after five executions.
        args = ", ".join(literal(_one(a)) for a in q["sql"].args)
        gen = psql(
            f"PREPARE s({pg_types(q['sql'].args)}) AS {q['sql'].text};\n"
            "SET plan_cache_mode = force_generic_plan;\n"
            f"\\o /dev/null\nEXPLAIN (ANALYZE) EXECUTE s({args});\n\\o\nEXPLAIN (ANALYZE) EXECUTE s({args});\n"
        ).rstrip().split("\n")
        gen_ms = _exec_time(gen)
        res[q["name"]] = {"ms": ms, "plan": plan, "exec_ms": _exec_time(plan), "generic_ms": gen_ms,
                          "generic_plan": gen}
        out.write(f"\n### {q['name']} postgres: {ms:.2f} ms (median of {len(times)}, psql \\timing); "
                  f"EXPLAIN ANALYZE execution {_exec_time(plan):.2f} ms; generic plan {gen_ms:.2f} ms\n")
        out.write("\n".join(plan) + "\n")
        out.write("-- generic plan (plan_cache_mode = force_generic_plan):\n" + "\n".join(gen) + "\n")
        out.flush()
    return res


def _one(a):
    s = Sql()
    s.text, s.args = "$1", [a]
    return s


def _exec_time(lines):
    for l in lines:
        m = re.search(r"Execution Time: ([0-9.]+) ms", l)
        if m:
            return float(m.group(1))
    return float("nan")


# ---------------------------------------------------------------- variants
def apply_index_set(name, undo=False):
    sets = INDEX_SETS[name]
    lite, pg = sets["sqlite"], sets["postgres"]
    created = lambda ddl: re.search(r'INDEX "(\w+)"', ddl).group(1)
    c = sqlite_conn()
    c.execute("BEGIN")
    if undo:
        for ddl in lite["create"]:
            c.execute(f'DROP INDEX IF EXISTS "{created(ddl)}"')
        for idx in lite["drop"]:
            c.execute(migration_index("sqlite", idx))
    else:
        for idx in lite["drop"]:
            c.execute(f'DROP INDEX "{idx}"')
        for ddl in lite["create"]:
            c.execute(ddl)
    c.execute("COMMIT")
    c.execute("ANALYZE")
    c.close()
    script = ["BEGIN;"]
    if undo:
        script += [f'DROP INDEX IF EXISTS "{created(ddl)}";' for ddl in pg["create"]]
        script += [migration_index("postgres", idx) for idx in pg["drop"]]
    else:
        script += [f'DROP INDEX "{idx}";' for idx in pg["drop"]]
        script += [ddl + ";" for ddl in pg["create"]]
    script += ["COMMIT;", "VACUUM (ANALYZE) device_run_states;", "VACUUM (ANALYZE) managed_devices;"]
    psql("\n".join(script) + "\n")


def set_sqlite_stats(mode, queries):
    """Replace the SQLite statistics: none, or what `PRAGMA optimize=0x10002` makes of a connection that ran
    `queries` (it analyzes only tables the connection used and limits the work with analysis_limit)."""
    c = sqlite_conn()
    c.execute("DELETE FROM sqlite_stat1; DELETE FROM sqlite_stat4;")
    c.close()
    if mode == "optimize":
        c = sqlite_conn()
        for q in queries:
            c.execute(q["sql"].text, q["sql"].args).fetchall()
        c.execute("PRAGMA optimize=0x10002").fetchall()
        c.close()


def server_check(log_path):
    """Compare the statements the release binary logged (REMEDIATE_LOG=sqlx=debug) with the ones rendered here."""
    log = open(log_path).read()
    logged = {" ".join(s.encode().decode("unicode_escape").split())
              for s in re.findall(r'db\.statement="((?:[^"\\]|\\.)*)"', log)}
    c = sqlite_conn()
    ok = True
    for q in build_queries(c):
        text = " ".join(q["sql"].text.split())
        found = text in logged
        ok &= found or q["name"] == "i"
        print(f"{q['name']:3} {'same text as the server' if found else 'NOT SEEN in the server log'}  {q['title']}")
    return ok


def rewrite_check():
    """R1-R4 must not change results: same rows as today where the order is unchanged, and for the orders
    whose id tie-breaker changes direction (c, d) the rows of a plain sort by (time, id) in that direction."""
    global REWRITE
    c = sqlite_conn()
    REWRITE = False
    base = {q["name"]: q["sql"] for q in build_queries(c)}
    REWRITE = True
    new = {q["name"]: q["sql"] for q in build_queries(c)}
    ok = True
    run = lambda s: c.execute(s.text, s.args).fetchall()
    for n in ("a", "b1", "b2", "e", "f1", "f2", "g", "h1", "h2", "h3", "i"):
        same = run(base[n]) == run(new[n])
        ok &= same
        print(f"{n:3} {'same rows as today' if same else 'DIFFERENT'}")
    big = fixed_points(c)["big"]
    rows = c.execute('SELECT "lastStateUpdateDateTime", "id", "detectionState" FROM device_run_states '
                     'WHERE "tenant" = ? AND "scriptId" = ?', (TENANT, big)).fetchall()
    recent = [r for r in rows if r[2] == 2 and r[0] >= NOW - 60 * DAY]
    for n, subset, desc in (("c1", rows, True), ("c2", rows, True), ("c3", rows, True), ("c4", rows, False),
                            ("d1", recent, True), ("d2", recent, True)):
        ordered = sorted(((t, i) for t, i, _ in subset), reverse=desc)
        s = new[n]
        if n in ("c2", "c3", "d2"):  # the keyset position: first-key bound and id are the last args before LIMIT
            pos = (s.args[-5], s.args[-2])
            ordered = ordered[ordered.index(pos) + 1:]
        expected = [i for _, i in ordered[:TOP + 1]]
        same = [r[0] for r in run(s)] == expected
        ok &= same
        print(f"{n:3} {'rows of a plain sort in the new direction' if same else 'MISMATCH'}")
    return ok


def main():
    global REWRITE
    if sys.argv[1] == "rewrite-check":
        sys.exit(0 if rewrite_check() else 1)
    if sys.argv[1] == "server-check":
        sys.exit(0 if server_check(sys.argv[2]) else 1)
    variant = sys.argv[1] if len(sys.argv) > 1 else "baseline"
    assert variant in ("baseline", "indexes", "rewrite", "rewrite-indexes"), variant
    only = None
    if "--only" in sys.argv:
        only = set(sys.argv[sys.argv.index("--only") + 1].split(","))
    keep = "--keep" in sys.argv
    stats = sys.argv[sys.argv.index("--stats") + 1] if "--stats" in sys.argv else "full"
    assert stats in ("full", "none", "optimize"), stats
    REWRITE = variant.startswith("rewrite")
    index_set = variant if variant in INDEX_SETS else None
    tag = variant + ("" if stats == "full" else f"-stats-{stats}") + ("-partial" if only else "")
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    out_path = os.path.join(HERE, "results", f"{tag}.txt")
    results = {"variant": tag, "sqlite": {}, "postgres": {}}
    if index_set:
        apply_index_set(index_set)
    try:
        c = sqlite_conn()
        queries = build_queries(c)
        c.close()
        if only:
            queries = [q for q in queries if q["name"] in only]
        with open(out_path, "w") as out:
            out.write(f"# variant: {variant}, SQLite statistics: {stats}\n")
            out.write(f"# sqlite {apsw.sqlite_lib_version()} (apsw), {SQLITE_DB}\n")
            out.write("# " + psql("SELECT version();\n").strip() + f", database {PGDB}\n")
            if index_set:
                out.write("# index set:\n" + json.dumps(INDEX_SETS[index_set], indent=1) + "\n")
            for q in queries:
                out.write(f"\n## {q['name']}: {q['title']}\n{literal(q['sql'])}\n")
            if stats != "full":
                set_sqlite_stats(stats, queries)
                try:
                    c = sqlite_conn()
                    out.write("\n# sqlite_stat1:\n" + "\n".join(
                        " | ".join(map(str, r)) for r in c.execute("SELECT * FROM sqlite_stat1 ORDER BY 1, 2")) + "\n")
                    out.write(f"# sqlite_stat4 rows: {c.execute('SELECT COUNT(*) FROM sqlite_stat4').fetchall()[0][0]}\n")
                    c.close()
                    results["sqlite"] = run_sqlite(queries, out)
                finally:
                    c = sqlite_conn()
                    c.execute("ANALYZE")
                    c.close()
            else:
                results["sqlite"] = run_sqlite(queries, out)
                results["postgres"] = run_postgres(queries, out)
    finally:
        if index_set and not keep:
            apply_index_set(index_set, undo=True)
    results["queries"] = [{"name": q["name"], "title": q["title"], "sql": literal(q["sql"]), "text": q["sql"].text,
                           "args": q["sql"].args} for q in queries]
    with open(os.path.join(HERE, "results", f"{tag}.json"), "w") as f:
        json.dump(results, f, indent=1)
    nan = float("nan")
    print(f"== {tag}")
    print(f"{'query':6} {'sqlite ms':>10} {'literal':>10} {'pg ms':>10} {'pg generic':>10}  title")
    for q in queries:
        s = results["sqlite"].get(q["name"], {})
        p = results["postgres"].get(q["name"], {})
        print(f"{q['name']:6} {s.get('ms', nan):10.2f} {s.get('ms_literal', nan):10.2f} {p.get('ms', nan):10.2f} "
              f"{p.get('generic_ms', nan):10.2f}  {q['title']}")
    print(f"plans: {out_path}")


if __name__ == "__main__":
    main()
