#!/usr/bin/env python3
"""The GET page against its same-work floor, alone, and optionally under `perf record` (docs/benchmarks.md,
"Where a GET page's time goes"). Seeds a database as bench/run.sh does (bench.py's own functions: run states
written through the API, then copied with SQL), then measures remediate's GET page and `bench/floor page` on it,
interleaved, `--rounds` times.

  python3 bench/profile_get.py --db sqlite --rows 100000 --clients 8,64 --seconds 5 --rounds 2
  python3 bench/profile_get.py --db postgres --perf 64 --perf-seconds 10    # also perf record both
  REMEDIATE_BIN=/work/prof-target/release/remediate FLOOR_BIN=... python3 bench/profile_get.py ...
  ... --bin-b OTHER_BINARY   # measure a second remediate binary on the same database, interleaved (before/after)

Environment: REMEDIATE_BIN (default target/release/remediate), FLOOR_BIN (default bench/target/release/...).
Leaves the data in bench/.work/profile-<db> and perf files in bench/.work/perf-*.data.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench as b  # noqa: E402

b.BIN = os.environ.get("REMEDIATE_BIN", b.BIN)
b.FLOOR = os.environ.get("FLOOR_BIN", b.FLOOR)


def seed(db, rows, base=10_000):
    """Returns (data_dir, database url or None, script id, token)."""
    os.makedirs(b.WORK, exist_ok=True)
    disk = os.path.join(b.WORK, f"profile-{db}")
    shutil.rmtree(disk, ignore_errors=True)
    name = database = None
    if db == "postgres":
        name = "remediate_profile"
        b.psql(f'DROP DATABASE IF EXISTS "{name}"')
        b.psql(f'CREATE DATABASE "{name}"')
        b.PG_DATABASES.append(name)     # dropped at the end unless --seed-only
        database = f"{b.PG}/{name}"
        b.psql(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    srv = b.Remediate(disk, database, f"profile-{db}-load")
    token = b.mint_token(disk)
    script = b.call_json(srv.addr, token, "POST", "/beta/deviceManagement/deviceHealthScripts",
                         {"displayName": "bench read", "detectionScriptContent": "ZXhpdCAx"})["id"]
    url = f"/deviceManagement/deviceHealthScripts/{script}/deviceRunStates"
    b.batch_load(srv.addr, token, [(url, b.run_state_body(i)) for i in range(base)])
    srv.stop()
    if rows > base:
        b.replicate_states(db, disk, name, script, base, 1, rows // base - 1)
        b.recount(disk, database)
    if db == "postgres":
        b.psql(f'ALTER DATABASE "{name}" RESET synchronous_commit')
        b.psql("ANALYZE", name)
    return disk, database, script, token


def cpu_ticks(pid):
    """utime + stime of a process (and its threads), in clock ticks."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


TICK_US = 1e6 / os.sysconf("SC_CLK_TCK")


def perf(pid, seconds, out):
    return subprocess.Popen(["perf", "record", "--call-graph", "dwarf,16384", "-F", "499", "-p", str(pid), "-o", out, "--", "sleep",
                             str(seconds)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--clients", default="8,64")
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--perf", type=int, metavar="CLIENTS", help="also perf record each server at this load")
    ap.add_argument("--perf-seconds", type=int, default=10)
    ap.add_argument("--bin-b", action="append", default=[],
                    help="another remediate binary (or a script that execs one), measured interleaved with the first")
    ap.add_argument("--seed-only", action="store_true", help="seed, keep the database, and stop")
    ap.add_argument("--reuse", action="store_true", help="measure on the database of an earlier --seed-only")
    a = ap.parse_args()
    clients = [int(c) for c in a.clients.split(",")]
    saved = os.path.join(b.WORK, f"profile-{a.db}.json")
    if a.reuse:
        disk, database, script, token = json.load(open(saved))
    else:
        disk, database, script, token = seed(a.db, a.rows)
        with open(saved, "w") as f:
            json.dump([disk, database, script, token], f)
        if a.seed_only:
            b.PG_DATABASES.clear()      # kept for --reuse
            return
    path = f"/beta/deviceManagement/deviceHealthScripts/{script}/deviceRunStates?{b.PAGE_QUERY}"
    bins = [("remediate", b.BIN)] + [(f"remediate-{chr(98 + i)}", x) for i, x in enumerate(a.bin_b)]
    results = {}
    try:
        for rnd in range(a.rounds):
            for label, binary in bins + [("floor", b.FLOOR)]:
                if label == "floor":
                    port = b.free_port()
                    cmd = [b.FLOOR, "page", "--listen", f"127.0.0.1:{port}", "--tenant", b.TENANT, "--script",
                           script] + (["--db", os.path.join(disk, "remediate.db")] if a.db == "sqlite"
                                      else ["--postgres", database])
                    p = b.start(cmd, os.path.join(b.WORK, f"profile-floor-{a.db}.log"))
                    b.wait_port("127.0.0.1", port, proc=p)
                    base, pid, stop = f"http://127.0.0.1:{port}", p.pid, (lambda p=p: b.stop(p))
                else:
                    b.BIN = binary
                    srv = b.Remediate(disk, database, f"profile-{label}-{a.db}")
                    base, pid, stop = srv.base, srv.proc.pid, srv.stop
                try:
                    host, port_s = base[len("http://"):].rsplit(":", 1)
                    status, page = b.call((host, int(port_s)), token, "GET", path)
                    assert status == 200 and len(json.loads(page)["value"]) == 100, (status, page[:300])
                    b.wrk(base, "GET", path, clients[0], 1, token)      # warm-up
                    for c in clients:
                        t0 = cpu_ticks(pid)
                        r = b.wrk(base, "GET", path, c, a.seconds, token)
                        # the server's CPU per answered request: what contention on a shared machine moves least
                        r["cpu_us_per_req"] = round((cpu_ticks(pid) - t0) * TICK_US / max(1, r["requests"]), 1)
                        results.setdefault(label, {}).setdefault(c, []).append(r)
                        b.log(f"round {rnd} {label:<12} c={c:<3} {b.fmt_run(r)}  cpu {r['cpu_us_per_req']:.0f} us/req  "
                              f"load {os.getloadavg()[0]:.1f}")
                    if a.perf and rnd == 0:
                        out = os.path.join(b.WORK, f"perf-{label}-{a.db}.data")
                        rec = perf(pid, a.perf_seconds, out)
                        time.sleep(0.3)
                        r = b.wrk(base, "GET", path, a.perf, a.perf_seconds - 1, token)
                        rec.wait()
                        b.log(f"perf {label:<12} c={a.perf:<3} {b.fmt_run(r)} -> {out}")
                finally:
                    stop()
        b.log("summary (median req/s over rounds; ratio to the floor)")
        for c in clients:
            floor = sorted(r["req_per_s"] for r in results["floor"][c])[len(results["floor"][c]) // 2]
            for label in results:
                rs = sorted(results[label][c], key=lambda r: r["req_per_s"])
                m = rs[len(rs) // 2]
                cpu = sorted(r["cpu_us_per_req"] for r in results[label][c])[len(results[label][c]) // 2]
                floor_cpu = sorted(r["cpu_us_per_req"] for r in results["floor"][c])[len(results["floor"][c]) // 2]
                b.log(f"  c={c:<3} {label:<12} median CPU {cpu:.0f} us/request, floor's / this {floor_cpu / cpu:.3f}, "
                      f"all {[r['cpu_us_per_req'] for r in results[label][c]]}")
                per_round = [round(r["req_per_s"] / f["req_per_s"], 3)
                             for r, f in zip(results[label][c], results["floor"][c])]
                b.log(f"  c={c:<3} {label:<12} {m['req_per_s']:>8.1f} req/s  p99 {m['p99_ms']:.1f} ms  "
                      f"ratio {m['req_per_s'] / floor:.3f}  all {[r['req_per_s'] for r in results[label][c]]}  "
                      f"ratio per round {per_round}")
    finally:
        for p in list(b.CHILDREN):
            b.stop(p)
        for n in b.PG_DATABASES:
            try:
                b.psql(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)')
            except RuntimeError:
                pass


if __name__ == "__main__":
    main()
