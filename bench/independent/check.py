#!/usr/bin/env python3
"""Independent helpers for bench/independent/run.sh (stdlib only; no code shared with bench/bench.py).

Subcommands:
  load ADDR TOKEN N            create a script, N unbound run states through $batch (20 per batch, 4 threads);
                               prints the script id
  replicate DB FACTOR          copy the run states (and their history) of the database FACTOR-1 times with SQL
                               (new ids: the id's first 8 hex digits replaced), server stopped
  pgreplicate URL FACTOR       same on PostgreSQL (via psql)
  summary ADDR TOKEN SID       print runSummary and $count as JSON
  sqlite-floor SCHEMA_DB OUT_DB SECONDS ROWS_PER_TX MODE
                               insert floor with python's sqlite3 (MODE: seed = the row remediate stored for a
                               POST, kb = the same row padded to ~1 KB, seq = seed row with sequential keys
                               like bench/floor; seed and kb use random UUIDs like the server)
  http-floor PORT PAGEFILE MODE  asyncio HTTP/1.1 keep-alive server answering GET with the page
                               (MODE: json = json.dumps of the parsed page per request, static = the bytes)
  oha-summary FILE             extract rps / p50 / status counts from oha's JSON output
"""
import asyncio, json, os, random, sqlite3, subprocess, sys, threading, time, urllib.request, uuid

def req(addr, token, method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(addr + path, data=data, method=method,
                               headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(r, timeout=60) as resp:
        return resp.status, resp.read()

DET = ["success"] * 6 + ["fail", "scriptError", "pending", "notApplicable"]  # 10% fail
REM = ["success", "skipped", "remediationFailed", "skipped"]

def run_state(i):
    t = 1740816000 + i  # 2025-03-01T08:00:00Z + i seconds
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".%07dZ" % (i * 7919 % 10_000_000)
    return {"detectionState": DET[i % 10], "remediationState": REM[(i // 10) % 4],
            "lastStateUpdateDateTime": ts, "lastSyncDateTime": "2025-03-01T08:00:00Z",
            "preRemediationDetectionScriptOutput": "Disk %d%% full" % (50 + i % 50),
            "postRemediationDetectionScriptOutput": "Disk 40% full"}

def load(addr, token, n):
    n = int(n)
    st, b = req(addr, token, "POST", "/beta/deviceManagement/deviceHealthScripts",
                {"displayName": "indep", "detectionScriptContent": "ZWNobyAx"})
    sid = json.loads(b)["id"]
    batches = [list(range(s, min(s + 20, n))) for s in range(0, n, 20)]
    lock = threading.Lock(); bad = []
    def worker():
        while True:
            with lock:
                if not batches: return
                bt = batches.pop()
            body = {"requests": [{"id": str(k + 1), "method": "POST",
                                  "url": "/deviceManagement/deviceHealthScripts/%s/deviceRunStates" % sid,
                                  "headers": {"Content-Type": "application/json"}, "body": run_state(i)}
                                 for k, i in enumerate(bt)]}
            st, b = req(addr, token, "POST", "/beta/$batch", body)
            for r in json.loads(b)["responses"]:
                if r["status"] != 201: bad.append(r)
    ts = [threading.Thread(target=worker) for _ in range(4)]
    [t.start() for t in ts]; [t.join() for t in ts]
    if bad: sys.exit("load: %d non-201, first %r" % (len(bad), bad[0]))
    print(sid)

def cols(c, table):
    return [r[1] for r in c.execute('PRAGMA table_info("%s")' % table)]

def replicate(db, factor):
    factor = int(factor)
    c = sqlite3.connect(db); c.execute("PRAGMA journal_mode=WAL")
    rs = cols(c, "device_run_states"); rh = cols(c, "run_history")
    def sel(cs, sub):
        return ", ".join(sub.get(x, '"%s"' % x) for x in cs)
    t0 = time.time()
    for k in range(1, factor):
        p = "'%08x'" % k
        c.execute('INSERT INTO device_run_states (%s) SELECT %s FROM src_rs' % (
            ", ".join('"%s"' % x for x in rs),
            sel(rs, {"id": "%s || substr(id, 9)" % p,
                     "lastStateUpdateDateTime": '"lastStateUpdateDateTime" + %d' % k})))
        c.execute('INSERT INTO run_history (%s) SELECT %s FROM src_rh' % (
            ", ".join('"%s"' % x for x in rh),
            sel(rh, {"stateId": "%s || substr(stateId, 9)" % p, "id": "%s || substr(id, 9)" % p,
                     "lastStateUpdateDateTime": '"lastStateUpdateDateTime" + %d' % k})))
        if k % 10 == 0:
            c.commit(); print("replicate: %d copies, %.0f s" % (k, time.time() - t0), flush=True)
    c.commit()
    print("replicate: rows", c.execute("SELECT count(*) FROM device_run_states").fetchone()[0],
          "history", c.execute("SELECT count(*) FROM run_history").fetchone()[0], "%.0f s" % (time.time() - t0))
    c.execute("DROP TABLE src_rs"); c.execute("DROP TABLE src_rh"); c.commit()
    c.execute("ANALYZE"); c.execute("PRAGMA wal_checkpoint(TRUNCATE)"); c.close()

def replicate_sqlite(db, factor):
    c = sqlite3.connect(db)
    c.execute('CREATE TABLE src_rs AS SELECT * FROM device_run_states WHERE "managedDeviceId" IS NULL')  # not the bound seed row
    c.execute('CREATE TABLE src_rh AS SELECT * FROM run_history WHERE "managedDeviceId" IS NULL')
    c.commit(); c.close()
    replicate(db, factor)

def pgreplicate(url, factor):
    factor = int(factor)
    def psql(sql):
        return subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", url, "-c", sql],
                              check=True, capture_output=True, text=True).stdout
    def colnames(t):
        return psql("SELECT column_name FROM information_schema.columns WHERE table_name='%s' "
                    "AND table_schema=current_schema() ORDER BY ordinal_position" % t).split()
    rs, rh = colnames("device_run_states"), colnames("run_history")
    def sel(cs, sub):
        return ", ".join(sub.get(x, '"%s"' % x) for x in cs)
    gs = "lpad(to_hex(k), 8, '0')"
    t0 = time.time()
    psql("SET synchronous_commit=off; "
         "INSERT INTO device_run_states (%s) SELECT %s FROM device_run_states, generate_series(1, %d) k WHERE \"managedDeviceId\" IS NULL; "
         "INSERT INTO run_history (%s) SELECT %s FROM run_history, generate_series(1, %d) k WHERE \"managedDeviceId\" IS NULL; ANALYZE;" % (
             ", ".join('"%s"' % x for x in rs),
             sel(rs, {"id": "%s || substr(id, 9)" % gs,
                      "lastStateUpdateDateTime": '"lastStateUpdateDateTime" + k'}), factor - 1,
             ", ".join('"%s"' % x for x in rh),
             sel(rh, {"stateId": '%s || substr("stateId", 9)' % gs, "id": "%s || substr(id, 9)" % gs,
                      "lastStateUpdateDateTime": '"lastStateUpdateDateTime" + k'}), factor - 1))
    print("pgreplicate:", psql("SELECT count(*) FROM device_run_states").strip(), "rows, %.0f s" % (time.time() - t0))

def summary(addr, token, sid):
    base = "/beta/deviceManagement/deviceHealthScripts/" + sid
    s = json.loads(req(addr, token, "GET", base + "/runSummary")[1])
    n = int(req(addr, token, "GET", base + "/deviceRunStates/$count")[1])
    nf = int(req(addr, token, "GET", base + "/deviceRunStates/$count?$filter=detectionState%20eq%20'fail'")[1])
    out = {k: v for k, v in s.items() if k.endswith("Count")}
    out["$count"] = n; out["$count_fail"] = nf
    print(json.dumps(out))

def sqlite_floor(schema_db, out_db, seconds, per_tx, mode):
    seconds, per_tx = float(seconds), int(per_tx)
    src = sqlite3.connect(schema_db)
    ddl = [r[0] for r in src.execute("SELECT sql FROM sqlite_master WHERE tbl_name='device_run_states' AND sql IS NOT NULL")]
    cs = cols(src, "device_run_states")
    # the row remediate stored for the seed-like POST (the one with a managedDeviceId, i.e. a bound POST)
    row = src.execute("SELECT * FROM device_run_states WHERE managedDeviceId IS NOT NULL LIMIT 1").fetchone()
    src.close()
    row = list(row)
    if mode == "kb":  # pad the text columns so that the row is ~1 KB
        for name in ["preRemediationDetectionScriptOutput", "postRemediationDetectionScriptOutput",
                     "preRemediationDetectionScriptError", "remediationScriptError"]:
            i = cs.index(name); row[i] = "x" * 120; row[cs.index(name + "_lc")] = "x" * 120
    for p in [out_db, out_db + "-wal", out_db + "-shm"]:
        if os.path.exists(p): os.remove(p)
    c = sqlite3.connect(out_db, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA synchronous=FULL")
    for d in ddl: c.execute(d)
    nidx = c.execute("SELECT count(*) FROM sqlite_master WHERE type='index' AND tbl_name='device_run_states'").fetchone()[0]
    iid, idev, iupd = cs.index("id"), cs.index("managedDeviceId"), cs.index("lastStateUpdateDateTime")
    sql = 'INSERT INTO device_run_states (%s) VALUES (%s)' % (", ".join('"%s"' % x for x in cs), ", ".join("?" * len(cs)))
    rowbytes = sum(len(str(v)) if v is not None else 0 for v in row)
    n = 0; lat = []; t0 = time.perf_counter(); end = t0 + seconds
    while time.perf_counter() < end:
        ts = time.perf_counter()
        c.execute("BEGIN")
        for _ in range(per_tx):
            if mode == "seq":  # sequential keys, as bench/floor (Rust) forms them: append-only index inserts
                k = "%08x-0000-4000-8000-%012x" % (os.getpid(), n + _); row[idev] = k; row[iid] = row[1] + ":" + k
            else:  # random v4 UUIDs, as remediate's devices and run states have
                d = str(uuid.uuid4()); row[idev] = d; row[iid] = row[1] + ":" + d  # id = scriptId:deviceId
            row[iupd] += 1
            c.execute(sql, row)
        c.execute("COMMIT")
        lat.append(time.perf_counter() - ts); n += per_tx
    el = time.perf_counter() - t0
    lat.sort()
    print(json.dumps({"mode": mode, "rows_per_tx": per_tx, "rows": n, "seconds": round(el, 2),
                      "rows_per_s": round(n / el, 1), "tx_p50_ms": round(lat[len(lat) // 2] * 1e3, 3),
                      "columns": len(cs), "indexes_incl_pk": nidx, "approx_row_value_bytes": rowbytes,
                      "sqlite_version": sqlite3.sqlite_version}))
    c.close()

def http_floor(port, pagefile, mode):
    page = open(pagefile, "rb").read()
    obj = json.loads(page)
    head = b"HTTP/1.1 200 OK\r\ncontent-type: application/json;odata.metadata=minimal\r\ncontent-length: %d\r\n\r\n"
    class P(asyncio.Protocol):
        def connection_made(self, tr): self.tr = tr; self.buf = b""
        def data_received(self, d):
            self.buf += d
            while b"\r\n\r\n" in self.buf:
                _, self.buf = self.buf.split(b"\r\n\r\n", 1)  # GETs only: no body
                body = json.dumps(obj, separators=(",", ":")).encode() if mode == "json" else page
                self.tr.write(head % len(body) + body)
    async def main():
        srv = await asyncio.get_running_loop().create_server(P, "127.0.0.1", int(port), backlog=1024)
        print("listening", port, flush=True)
        await srv.serve_forever()
    asyncio.run(main())

def oha_summary(path):
    d = json.load(open(path))
    s = d["summary"]; st = d.get("statusCodeDistribution", {})
    pct = d.get("latencyPercentiles", {})
    ok = sum(v for k, v in st.items() if k.startswith("2"))
    tot = sum(st.values())
    el = s.get("total")
    print(json.dumps({"seconds": round(el, 2), "requests": tot, "req_per_s": round(tot / el, 1),
                      "ok_per_s": round(ok / el, 1), "statuses": st, "p50_ms": round(pct.get("p50", 0) * 1e3, 3),
                      "p99_ms": round(pct.get("p99", 0) * 1e3, 3), "errors": d.get("errorDistribution", {})}))

if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"load": load, "replicate": replicate_sqlite, "pgreplicate": pgreplicate, "summary": summary,
     "sqlite-floor": sqlite_floor, "http-floor": http_floor, "oha-summary": oha_summary}[cmd](*args)
