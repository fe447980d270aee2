#!/usr/bin/env python3
"""The driver of bench/run.sh (see docs/benchmarks.md). Run through bench/run.sh, which prepares the tools.

One run measures, on this machine and under the same load generator (wrk):
  floors   SQLite inserts (1 and 100 rows per transaction; remediate's schema and a minimal one), PostgreSQL inserts
           (pgbench), a minimal HTTP server, and a same-work GET page server (remediate's page statement on the
           same database, the same JSON) on SQLite and PostgreSQL;
  remediate on SQLite and on PostgreSQL: POST and PATCH of run states, the GET page and runSummary at each size;
  peers    json-server (1k and 50k records) and Stoplight Prism (mock of the POST route);
then prints a table and the goals' ratios, writes bench/results/latest.json and docs/bench-scaling.png.
"""
import argparse
import datetime
import http.client
import json
import os
import platform
import queue
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BIN = os.path.join(REPO, "target", "release", "remediate")
FLOOR = os.path.join(HERE, "target", "release", "remediate-bench-floor")
LUA = os.path.join(HERE, "wrk", "bench.lua")
NODE_BIN = os.path.join(HERE, "node_modules", ".bin")
WORK = os.path.join(HERE, ".work")                    # on disk: the measured data directories
SHM = f"/dev/shm/remediate-bench-{os.getpid()}"       # tmpfs: only for loading rows (fsync is free there)
PG = "postgres://postgres@127.0.0.1:5432"
PSQL_ENV = dict(os.environ, PGHOST="127.0.0.1", PGPORT="5432", PGUSER="postgres")
TENANT = "bench"
SCOPES = ["DeviceManagementScripts.ReadWrite.All", "DeviceManagementManagedDevices.ReadWrite.All"]

MODES = {
    # clients: concurrent connections of every remediate scenario; sizes: run states in the read script.
    "quick": dict(clients=[8, 64], sizes=[10_000, 100_000], seconds=3, devices=100_000,
                  pg_floor=[(1, 1), (1, 64), (100, 1)], peer_clients=[64], http_floor_clients=[8, 64],
                  jsonserver_slow_seconds=8),
    "full": dict(clients=[1, 8, 64, 256], sizes=[10_000, 100_000, 1_000_000], seconds=10, devices=600_000,
                 pg_floor=[(1, 1), (1, 8), (1, 64), (100, 1), (100, 8)], peer_clients=[8, 64],
                 http_floor_clients=[1, 8, 64, 256], jsonserver_slow_seconds=20),
}

# The seed request of the README (a device reports detection and remediation results); {{DEV}} is a distinct
# device per request, {{T}}/{{N7}} vary the run time so that no two requests are the same.
SEED_BODY = (
    '{"@odata.type":"#microsoft.management.services.api.deviceHealthScriptDeviceState",'
    '"managedDevice@odata.bind":"https://graph.microsoft.com/beta/deviceManagement/managedDevices(\'{{DEV}}\')",'
    '"detectionState":"fail","remediationState":"success",'
    '"lastStateUpdateDateTime":"2025-03-01T10:00:0{{T}}.{{N7}}+02:00","lastSyncDateTime":"2025-03-01T08:00:00Z",'
    '"expectedStateUpdateDateTime":"2025-03-02T08:00:00Z",'
    '"preRemediationDetectionScriptOutput":"Disk 91% full","preRemediationDetectionScriptError":"",'
    '"remediationScriptError":"","postRemediationDetectionScriptOutput":"Disk 40% full",'
    '"postRemediationDetectionScriptError":""}'
)
PATCH_BODY = ('{"detectionState":"success","remediationState":"skipped",'
              '"lastStateUpdateDateTime":"2025-03-02T10:00:0{{T}}.{{N7}}Z"}')
PAGE_QUERY = "$filter=detectionState%20eq%20'fail'&$orderby=lastStateUpdateDateTime%20desc&$top=100"

CHILDREN = []          # processes this run started (ended on exit)
PG_DATABASES = []      # databases this run created (dropped on exit)


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------- processes -----------------------------------------

def start(cmd, log_path, env=None, cwd=None):
    out = open(log_path, "wb")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    CHILDREN.append(p)
    return p


def stop(p, timeout=30):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in CHILDREN:
        CHILDREN.remove(p)


def wait_port(host, port, timeout=60, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            socket.create_connection((host, port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{host}:{port} did not open")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def vm_hwm_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def psql(sql, db="postgres"):
    r = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", db, "-c", sql],
                       env=PSQL_ENV, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"psql failed: {sql[:80]}: {r.stderr.strip()}")
    return r.stdout.strip()


class Remediate:
    """One `remediate serve` process on port 0."""

    count = 0

    def __init__(self, data_dir, database=None, name="remediate"):
        os.makedirs(data_dir, exist_ok=True)
        Remediate.count += 1
        self.log_path = os.path.join(WORK, f"{name}-{Remediate.count}.log")
        cmd = [BIN, "serve", "--listen", "127.0.0.1:0", "--data-dir", data_dir]
        if database:
            cmd += ["--database", database]
        self.proc = start(cmd, self.log_path)
        deadline = time.time() + 120
        self.addr = None
        while time.time() < deadline and self.addr is None:
            if self.proc.poll() is not None:
                raise RuntimeError(f"remediate exited: {open(self.log_path).read()[-2000:]}")
            m = re.search(r"listening on http://([0-9.]+):(\d+)", open(self.log_path, errors="replace").read())
            if m:
                self.addr = (m.group(1), int(m.group(2)))
            else:
                time.sleep(0.05)
        if self.addr is None:
            raise RuntimeError("remediate did not start")
        self.base = f"http://{self.addr[0]}:{self.addr[1]}"

    def hwm(self):
        return vm_hwm_mb(self.proc.pid)

    def panics(self):
        """The panic messages in the server's log (a panicked SQLite writer answers every later write 503)."""
        text = open(self.log_path, errors="replace").read()
        return re.findall(r"panicked at [^\n]*\n[^\n]*", text)

    def stop(self):
        hwm = self.hwm()
        stop(self.proc)
        return hwm


def mint_token(data_dir):
    cmd = [BIN, "token", "--data-dir", data_dir, "--tenant", TENANT]
    for s in SCOPES:
        cmd += ["--scope", s]
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


# ---------------------------------------------------------------- HTTP helpers --------------------------------------

def call(addr, token, method, path, body=None, conn=None):
    c = conn or http.client.HTTPConnection(addr[0], addr[1], timeout=300)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        headers["Content-Type"] = "application/json"
    c.request(method, path, body=data, headers=headers)
    r = c.getresponse()
    raw = r.read()
    if conn is None:
        c.close()
    return r.status, raw


def call_json(addr, token, method, path, body=None, expect=(200, 201, 204)):
    status, raw = call(addr, token, method, path, body)
    if status not in expect:
        raise RuntimeError(f"{method} {path}: {status} {raw[:300]!r}")
    return json.loads(raw) if raw else None


def batch_load(addr, token, items, clients=4):
    """POSTs items [(url, body)] through $batch, 20 requests per batch, `clients` connections in parallel."""
    batches = [items[i:i + 20] for i in range(0, len(items), 20)]
    q = queue.Queue()
    for b in batches:
        q.put(b)
    errors = []
    results = []
    failed = []          # items answered 503 (not committed): the caller retries them on a fresh server

    def worker():
        conn = http.client.HTTPConnection(addr[0], addr[1], timeout=300)
        while not errors:
            try:
                b = q.get_nowait()
            except queue.Empty:
                break
            body = {"requests": [{"id": str(i + 1), "method": "POST", "url": url,
                                  "headers": {"Content-Type": "application/json"}, "body": payload}
                                 for i, (url, payload) in enumerate(b)]}
            status, raw = call(addr, token, "POST", "/beta/$batch", json.dumps(body), conn)
            if status != 200:
                errors.append(f"$batch {status}: {raw[:300]!r}")
                break
            for r in json.loads(raw)["responses"]:
                if r["status"] == 503:
                    failed.append(b[int(r["id"]) - 1])
                elif r["status"] != 201:
                    errors.append(f"$batch item {r['status']}: {json.dumps(r)[:300]}")
                    break
                else:
                    results.append(r["body"].get("id"))
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(errors[0])
    return results, failed


DETECTION = ["fail", "fail", "scriptError", "pending", "notApplicable"] + ["success"] * 15   # 10% fail


def run_state_body(i):
    """Run state number i of the read script (unbound: no device), the seed's fields, varied by i."""
    det = DETECTION[i % 20]
    if det == "fail":
        rem = ["skipped", "remediationFailed", "success", "scriptError"][(i // 20) % 4]
    elif det == "success":
        rem = "success" if i % 5 == 0 else "skipped"
    else:
        rem = "unknown"
    t = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(
        seconds=(i * 7919) % 7_776_000)
    return {
        "@odata.type": "#microsoft.management.services.api.deviceHealthScriptDeviceState",
        "detectionState": det, "remediationState": rem,
        "lastStateUpdateDateTime": t.strftime("%Y-%m-%dT%H:%M:%S") + f".{i % 10_000_000:07d}Z",
        "lastSyncDateTime": "2025-03-01T08:00:00Z", "expectedStateUpdateDateTime": "2025-03-02T08:00:00Z",
        "preRemediationDetectionScriptOutput": "Disk 91% full", "preRemediationDetectionScriptError": "",
        "remediationScriptError": "", "postRemediationDetectionScriptOutput": "Disk 40% full",
        "postRemediationDetectionScriptError": "",
    }


# ---------------------------------------------------------------- wrk -----------------------------------------------

def wrk(base, method, path, clients, seconds, token=None, body=None, ids=None, offset=0, timeout=10):
    threads = min(2, clients)
    env = dict(os.environ, BENCH_METHOD=method, BENCH_PATH=path, BENCH_TOKEN=token or "",
               BENCH_BODY=body or "", BENCH_IDS=ids or "", BENCH_OFFSET=str(offset), BENCH_THREADS=str(threads))
    cmd = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{seconds}s", f"--timeout={timeout}s", "-s", LUA, base]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + timeout + 120)
    m = re.search(r"^WRKJSON (\{.*\})$", r.stdout, re.M)
    if not m:
        raise RuntimeError(f"wrk failed: {r.stdout[-1000:]} {r.stderr[-1000:]}")
    j = json.loads(m.group(1))
    secs = j["duration_us"] / 1e6
    errors = j["errors_connect"] + j["errors_read"] + j["errors_write"] + j["errors_timeout"]
    return {
        "clients": clients, "seconds": round(secs, 2), "requests": j["requests"],
        "req_per_s": round(j["requests"] / secs, 1),
        # successful answers only: a write answered 409 or 5xx stored nothing and does not count
        "ok_per_s": round((j["requests"] - j["errors_status"]) / secs, 1),
        "p50_ms": round(j["lat_p50_us"] / 1000, 3), "p90_ms": round(j["lat_p90_us"] / 1000, 3),
        "p99_ms": round(j["lat_p99_us"] / 1000, 3), "max_ms": round(j["lat_max_us"] / 1000, 3),
        "non_2xx": j["errors_status"], "socket_errors": errors,
        "bytes_per_response": round(j["bytes"] / max(1, j["requests"])),
        "statuses": j.get("statuses") or None,
        "_sent_per_thread": j["max_thread_requests"], "_threads": threads,
    }


def fmt_run(r):
    e = ""
    if r.get("non_2xx") or r.get("socket_errors"):
        e = f"  ERRORS non-2xx={r['non_2xx']} socket={r['socket_errors']} statuses={r.get('statuses')}"
    return f"{r['req_per_s']:>9.1f} req/s  p50 {r['p50_ms']:8.2f} ms  p99 {r['p99_ms']:8.2f} ms{e}"


# ---------------------------------------------------------------- remediate scenarios -------------------------------

class Bench:
    def __init__(self, mode, only=None):
        self.mode = mode
        self.cfg = MODES[mode]
        self.only = only
        self.results = {"remediate": {}, "floors": {}, "peers": {}, "incidents": []}
        self.files = {}

    def secs(self):
        return self.cfg["seconds"]

    def write_file(self, name, text):
        path = os.path.join(WORK, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    # -- the measured scenarios on one running server
    def measure(self, srv, token, label, scenario, path, clients_list, method="GET", body=None, ids=None,
                offset=0, ids_len=None):
        """wrk at each concurrency. A run that completes fewer than 5 requests is repeated for longer; once the
        median latency passes 1 s, higher concurrencies are skipped (their requests would only queue)."""
        runs = []
        slow = None
        for c in clients_list:
            if slow:
                runs.append({"clients": c, "skipped": slow})
                log(f"  {label:<9} {scenario:<26} c={c:<4} skipped: {slow}")
                continue
            r = wrk(srv.base, method, path, c, self.secs(), token, body, ids, offset)
            if r["requests"] < 5:
                r = wrk(srv.base, method, path, c, max(20, 2 * self.secs()), token, body, ids, offset, timeout=120)
            if ids and method == "POST":
                offset += r["_threads"] * r["_sent_per_thread"]
                if ids_len is not None and offset > ids_len:
                    log(f"  warning: {offset} POSTs exceed the {ids_len} prepared devices (later POSTs are 409s)")
            runs.append(r)
            log(f"  {label:<9} {scenario:<26} c={c:<4} {fmt_run(r)}")
            if r["p50_ms"] > 1000:
                slow = f"median latency was {r['p50_ms'] / 1000:.1f} s at {c} clients"
        return runs, offset

    def remediate(self, db, load_mode):
        """Rows are written through the API by a server whose commits need no fsync (SQLite on tmpfs, then the file
        moves to disk; PostgreSQL with synchronous_commit=off for the load, then reset). In `--load replicate`
        (default) only the first size goes through the API: larger sizes copy those rows with SQL (fresh ids,
        the same stored values), checked afterwards against $count and runSummary. Measurements always run on
        a server with its own durability (data on disk, synchronous_commit on)."""
        sizes, clients = self.cfg["sizes"], self.cfg["clients"]
        summary_clients = sorted(set([1] + clients))      # runSummary at 1 client: its cost per request
        disk_dir = os.path.join(WORK, f"data-{db}")
        shutil.rmtree(disk_dir, ignore_errors=True)
        name = None
        if db == "sqlite":
            load_dir, database = os.path.join(SHM, "sqlite"), None
            shutil.rmtree(load_dir, ignore_errors=True)
        else:
            name = f"remediate_bench_{os.getpid()}"
            psql(f'DROP DATABASE IF EXISTS "{name}"')
            psql(f'CREATE DATABASE "{name}"')
            PG_DATABASES.append(name)
            load_dir, database = disk_dir, f"{PG}/{name}"
        out = {"sizes": {}, "load": [], "load_mode": load_mode}
        hwm = []

        def load_server():
            if db == "postgres":
                psql(f'ALTER DATABASE "{name}" SET synchronous_commit = off')
            return Remediate(load_dir, database, f"{db}-load")

        def to_disk():
            """Stop loading: SQLite's file moves to disk; PostgreSQL gets its durability back."""
            if db == "sqlite":
                shutil.rmtree(disk_dir, ignore_errors=True)
                shutil.copytree(load_dir, disk_dir)
            else:
                psql(f'ALTER DATABASE "{name}" RESET synchronous_commit')

        def measure_server():
            if db == "postgres":
                psql("ANALYZE", name)    # what autovacuum does after a bulk load, done now so plans are stable
            os.sync()
            return Remediate(disk_dir, database, f"{db}-measure")

        srv = load_server()
        token = mint_token(load_dir)   # the signing key moves with the data directory: valid on both servers

        def incident(server, phase, detail):
            panics = server.panics()
            self.results["incidents"].append({"database": db, "phase": phase, "detail": detail,
                                              "panics": panics[:3], "log": os.path.basename(server.log_path)})
            log(f"{db}: INCIDENT in {phase}: {detail}; {panics[0] if panics else 'no panic in the log'}")

        def load(items, what):
            nonlocal srv
            done = []
            for _ in range(4):
                got, failed = batch_load(srv.addr, token, items)
                done += got
                if not failed:
                    return done
                incident(srv, f"load {what}", f"{len(failed)} writes answered 503; server restarted, writes retried")
                hwm.append(srv.stop())
                srv = load_server()
                items = failed
            raise RuntimeError(f"{db}: loading {what} keeps failing")

        def checked(m, phase):
            """A server whose log shows a panic is restarted (on the same data) for the next scenario."""
            if m.panics():
                incident(m, phase, "panic during the measurement (its failed requests count as errors)")
                hwm.append(m.stop())
                return Remediate(disk_dir, database, f"{db}-measure")
            return m

        a = srv.addr
        read_script = call_json(a, token, "POST", "/beta/deviceManagement/deviceHealthScripts",
                                {"displayName": "bench read", "detectionScriptContent": "ZXhpdCAx"})["id"]
        write_script = call_json(a, token, "POST", "/beta/deviceManagement/deviceHealthScripts",
                                 {"displayName": "bench write", "detectionScriptContent": "ZXhpdCAx"})["id"]
        n_dev = self.cfg["devices"]
        t0 = time.time()
        device = lambda i: ("/deviceManagement/managedDevices",   # noqa: E731
                            {"deviceName": f"BENCH-{i:07d}", "operatingSystem": "Windows"})
        devices = load([device(i) for i in range(n_dev if load_mode == "api" else 20)], "devices")
        base = sizes[0]
        url = f"/deviceManagement/deviceHealthScripts/{read_script}/deviceRunStates"
        load([(url, run_state_body(i)) for i in range(base)], f"run states to {base}")
        dt = time.time() - t0
        log(f"{db}: {len(devices)} devices and {base} run states written through the API in {dt:.1f}s "
            f"({(len(devices) + base) / dt:.0f}/s, $batch of 20, 4 clients)")
        out["load"].append({"what": f"{len(devices)} devices and {base} run states through the API",
                            "seconds": round(dt, 1)})
        hwm.append(srv.stop())
        srv = None
        to_disk()
        if load_mode != "api":
            t0 = time.time()
            devices += replicate_devices(db, disk_dir, name, devices[0], len(devices), n_dev)
            recount(disk_dir, database)
            log(f"{db}: devices {20} -> {len(devices)} copied with SQL in {time.time() - t0:.1f}s")
        # Devices are used in random order: each POST lands at a random place in every index, as reports from
        # real devices (random GUIDs) do; the copied ids share a suffix, and in file order they would only append.
        random.Random(7).shuffle(devices)
        ids_file = self.write_file(f"devices-{db}.txt", "\n".join(devices) + "\n")
        post_body = self.write_file("post-body.json", SEED_BODY)
        patch_body = self.write_file("patch-body.json", PATCH_BODY)
        rs_path = f"/beta/deviceManagement/deviceHealthScripts/{read_script}/deviceRunStates"
        sp = f"/beta/deviceManagement/deviceHealthScripts/{read_script}/runSummary"
        base_summary = None
        loaded = base
        for size in sizes:
            if size > loaded:
                t0 = time.time()
                if load_mode == "api":
                    srv = load_server()
                    load([(url, run_state_body(i)) for i in range(loaded, size)], f"run states to {size}")
                    hwm.append(srv.stop())
                    srv = None
                    to_disk()
                    how = "through the API"
                else:
                    replicate_states(db, disk_dir, name, read_script, base, loaded // base, size // base - 1)
                    recount(disk_dir, database)
                    how = "copied with SQL"
                dt = time.time() - t0
                log(f"{db}: run states {loaded} -> {size} {how} in {dt:.1f}s")
                out["load"].append({"what": f"run states {loaded} -> {size} {how}", "seconds": round(dt, 1)})
                loaded = size
            m = measure_server()
            count = int(call(m.addr, token, "GET", rs_path + "/$count")[1])
            summary = call_json(m.addr, token, "GET", sp)
            counters = {k: v for k, v in summary.items() if k.endswith("Count")}
            if base_summary is None:
                base_summary = counters
            elif load_mode != "api":
                expected = {k: v * size // base for k, v in base_summary.items()}
                if count != size or counters != expected:
                    raise RuntimeError(
                        f"{db}: rows copied with SQL do not add up (count {count}, runSummary {counters}, expected "
                        f"{expected}): the storage format has changed; run with --load api")
            page_path = f"{rs_path}?{PAGE_QUERY}"
            status, page = call(m.addr, token, "GET", page_path)
            assert status == 200 and len(json.loads(page)["value"]) == 100, (status, page[:300])
            if size == sizes[-1]:
                # the same-work floor (bench/floor page) runs the same query on this database later
                self.files[f"page-db-{db}"] = {"db": os.path.join(disk_dir, "remediate.db") if db == "sqlite"
                                               else database, "script": read_script, "path": page_path,
                                               "token": token, "size": size}
            if size == sizes[-1] and db == "sqlite":
                self.files["page"] = os.path.join(WORK, "page.json")
                with open(self.files["page"], "wb") as f:
                    f.write(page)
            s = {"rows": count, "page_bytes": len(page), "run_summary_counters": counters}
            s["get_page"], _ = self.measure(m, token, db, f"GET page @{size:,}", page_path, clients)
            m = checked(m, f"GET page @{size}")
            s["run_summary"], _ = self.measure(m, token, db, f"runSummary @{size:,}", sp, summary_clients)
            m = checked(m, f"runSummary @{size}")
            if size == sizes[-1]:
                wp = f"/beta/deviceManagement/deviceHealthScripts/{write_script}/deviceRunStates"
                s["post"], used = self.measure(m, token, db, "POST run state", wp, clients, "POST", post_body,
                                               ids_file, 0, len(devices))
                m = checked(m, "POST")
                posted = stored_ids(db, disk_dir, name, write_script)   # the run states POST created
                states = self.write_file(f"states-{db}.txt", "\n".join(posted) + "\n")
                # one stored row as POST wrote it: what the insert floors insert
                self.files[f"row-{db}"] = self.write_file(f"row-{db}.json", json.dumps(
                    stored_row(db, disk_dir, name, write_script)))
                s["patch"], _ = self.measure(m, token, db, "PATCH run state", wp, clients, "PATCH", patch_body,
                                             states)
                m = checked(m, "PATCH")
                s["posted_states"] = len(posted)
            hwm.append(m.stop())
            out["sizes"][str(size)] = s
        out["peak_rss_mb"] = round(max(h for h in hwm if h is not None), 1)
        out["peak_rss_mb_per_process"] = [round(h, 1) for h in hwm if h is not None]
        log(f"{db}: peak RSS (VmHWM) {out['peak_rss_mb']} MB")
        row = json.load(open(self.files[f"row-{db}"]))
        out["stored_row_bytes"] = sum(len(v) if isinstance(v, str) else 8 for v in row.values() if v is not None)
        out["post_body_bytes"] = len(SEED_BODY.replace("{{DEV}}", devices[0]).replace("{{T}}", "0")
                                     .replace("{{N7}}", "0000000"))
        self.results["remediate"][db] = out

    # -- floors
    def sqlite_floor(self, minimal=False):
        """The SQLite insert floor on remediate's own table and indexes, or (minimal) on the same table with only
        its primary key and the (tenant, scriptId, managedDeviceId) unique index."""
        ddl = self.write_file("ddl-sqlite-minimal.sql" if minimal else "ddl-sqlite.sql",
                              table_ddl("sqlite", only_indexes=MINIMAL_INDEXES if minimal else None))
        out = {}
        for per_tx in (1, 100):
            db = os.path.join(WORK, "floor.db")
            r = subprocess.run([FLOOR, "sqlite", "--db", db, "--ddl", ddl, "--row", self.files["row-sqlite"],
                                "--rows-per-tx", str(per_tx), "--seconds", str(self.secs())],
                               check=True, capture_output=True, text=True)
            j = json.loads(r.stdout)
            out[f"{per_tx}_per_tx"] = j
            log(f"  floor     SQLite{' minimal' if minimal else ''} {per_tx:>3} row(s)/tx        "
                f"{j['rows_per_s']:>9.1f} rows/s  "
                f"tx p50 {j['tx_p50_ms']:.2f} ms  p99 {j['tx_p99_ms']:.2f} ms")
            for suffix in ("", "-wal", "-shm"):
                if os.path.exists(db + suffix):
                    os.remove(db + suffix)
        self.results["floors"]["sqlite_minimal" if minimal else "sqlite"] = out

    def page_floor(self):
        """The same-work floor of the GET page: `bench/floor page` runs remediate's page statement on the database
        remediate was measured on (its largest size) and serializes the page; wrk as for remediate's GET page."""
        out = {}
        # postgres_pool: the same floor taking one connection per request as a pool does (no pipelining): a
        # reference line that tells the driver's pipelining apart from the rest of the gap
        for key in ("sqlite", "postgres", "postgres_pool"):
            db = key.split("_")[0]
            info = self.files.get(f"page-db-{db}")
            if not info:
                continue
            port = free_port()
            cmd = [FLOOR, "page", "--listen", f"127.0.0.1:{port}", "--tenant", TENANT, "--script", info["script"],
                   "--db" if db == "sqlite" else "--postgres", info["db"]] + (["--pool"] if key.endswith("pool") else [])
            p = start(cmd, os.path.join(WORK, f"floor-page-{key}.log"))
            try:
                wait_port("127.0.0.1", port, proc=p)
                base = f"http://127.0.0.1:{port}"
                status, raw = call(("127.0.0.1", port), info["token"], "GET", info["path"])
                page = json.loads(raw)
                assert status == 200 and len(page["value"]) == 100 and "@odata.nextLink" in page, (status, raw[:300])
                res = {"size": info["size"], "page_bytes": len(raw), "runs": []}
                for c in self.cfg["clients"]:
                    r = wrk(base, "GET", info["path"], c, self.secs(), info["token"])
                    res["runs"].append(r)
                    log(f"  floor     {key} same-work GET page  c={c:<4} {fmt_run(r)}")
                res["peak_rss_mb"] = vm_hwm_mb(p.pid)
                out[key] = res
            except Exception as e:  # noqa: BLE001 - recorded, not fatal
                out[key] = {"error": str(e)[:500]}
                log(f"  floor     {key} same-work GET page: {e}")
            finally:
                stop(p)
        self.results["floors"]["page"] = out

    def pg_floor(self):
        name = f"remediate_floor_{os.getpid()}"
        psql(f'DROP DATABASE IF EXISTS "{name}"')
        psql(f'CREATE DATABASE "{name}"')
        PG_DATABASES.append(name)
        ddl = table_ddl("postgres")
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", name], input=ddl, text=True,
                       env=PSQL_ENV, check=True, capture_output=True)
        row = json.load(open(self.files["row-postgres"]))
        insert = pg_insert(row)
        runs = []
        for per_tx, clients in self.cfg["pg_floor"]:
            script = insert if per_tx == 1 else "BEGIN;\n" + insert * per_tx + "COMMIT;\n"
            path = self.write_file(f"pgbench-{per_tx}.sql", script)
            logdir = os.path.join(WORK, "pgbench-log")
            shutil.rmtree(logdir, ignore_errors=True)
            os.makedirs(logdir)
            r = subprocess.run(["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(min(2, clients)),
                                "-T", str(self.secs()), "-f", path, "-l", "--log-prefix", os.path.join(logdir, "x"),
                                name], env=PSQL_ENV, capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"pgbench: {r.stderr[-1000:]}")
            tps = float(re.search(r"tps = ([0-9.]+) \(without initial connection time\)", r.stdout).group(1))
            lat = []
            for fn in os.listdir(logdir):
                for line in open(os.path.join(logdir, fn)):
                    parts = line.split()
                    if len(parts) >= 3:
                        lat.append(int(parts[2]) / 1000.0)
            lat.sort()
            res = {"rows_per_tx": per_tx, "clients": clients, "tx_per_s": round(tps, 1),
                   "rows_per_s": round(tps * per_tx, 1), "tx_p50_ms": round(pct(lat, 50), 3),
                   "tx_p99_ms": round(pct(lat, 99), 3)}
            runs.append(res)
            log(f"  floor     PostgreSQL {per_tx:>3} row(s)/tx c={clients:<4} {res['rows_per_s']:>9.1f} rows/s  "
                f"tx p50 {res['tx_p50_ms']:.2f} ms  p99 {res['tx_p99_ms']:.2f} ms")
        shutil.rmtree(os.path.join(WORK, "pgbench-log"), ignore_errors=True)
        best = max(runs, key=lambda r: r["rows_per_s"])
        self.results["floors"]["postgres"] = {"runs": runs, "best": best}
        psql(f'DROP DATABASE IF EXISTS "{name}"')
        PG_DATABASES.remove(name)

    def http_floor(self):
        port = free_port()
        p = start([FLOOR, "http", "--listen", f"127.0.0.1:{port}", "--page", self.files["page"]],
                  os.path.join(WORK, "floor-http.log"))
        try:
            wait_port("127.0.0.1", port, proc=p)
            base = f"http://127.0.0.1:{port}"
            post_body = os.path.join(WORK, "post-body.json")
            ids = os.path.join(WORK, "devices-sqlite.txt")
            out = {"page_bytes": os.path.getsize(self.files["page"]), "get_page": [], "get_page_static": [],
                   "post": []}
            for c in self.cfg["http_floor_clients"]:
                r = wrk(base, "GET", "/serialized", c, self.secs())
                out["get_page"].append(r)
                log(f"  floor     HTTP GET page (serialized) c={c:<4} {fmt_run(r)}")
            for c in self.cfg["http_floor_clients"]:
                r = wrk(base, "GET", "/page", c, self.secs())
                out["get_page_static"].append(r)
                log(f"  floor     HTTP GET page (stored bytes) c={c:<4} {fmt_run(r)}")
            for c in self.cfg["http_floor_clients"]:
                r = wrk(base, "POST", "/echo", c, self.secs(), None, post_body, ids)
                out["post"].append(r)
                log(f"  floor     HTTP POST echo (same body) c={c:<4} {fmt_run(r)}")
            out["peak_rss_mb"] = vm_hwm_mb(p.pid)
            self.results["floors"]["http"] = out
        finally:
            stop(p)

    # -- peers
    def peers(self):
        post_body = os.path.join(WORK, "post-body.json")
        ids = os.path.join(WORK, "devices-sqlite.txt")
        # Prism: a mock of the POST route, from remediate's own OpenAPI document
        prism = os.path.join(NODE_BIN, "prism")
        if not os.path.exists(prism):
            self.results["peers"]["prism"] = {"error": "not installed (npm install in bench/ failed)"}
        else:
            try:
                self.results["peers"]["prism"] = self.prism(prism, post_body, ids)
            except Exception as e:  # noqa: BLE001 - a peer that fails is recorded, not fatal
                self.results["peers"]["prism"] = {"error": str(e)[:500]}
                log(f"  prism: {e}")
        js = os.path.join(NODE_BIN, "json-server")
        for records in (1_000, 50_000):
            key = f"json_server_{records // 1000}k"
            if not os.path.exists(js):
                self.results["peers"][key] = {"error": "not installed (npm install in bench/ failed)"}
                continue
            try:
                self.results["peers"][key] = self.json_server(js, records, post_body, ids)
            except Exception as e:  # noqa: BLE001
                self.results["peers"][key] = {"error": str(e)[:500]}
                log(f"  json-server: {e}")

    def prism(self, prism, post_body, ids):
        status, raw = call(self.spec_source, None, "GET", "/openapi.json")
        spec = json.loads(raw)
        route = "/deviceManagement/deviceHealthScripts/{scriptId}/deviceRunStates"
        item = {k: v for k, v in spec["paths"][route].items() if k in ("post", "parameters")}
        spec["paths"] = {route: item}
        # remediate accepts the seed's "#microsoft.management.services.api.…" @odata.type (README), but its
        # OpenAPI write schema lists only "#microsoft.graph.…": add the seed's values so Prism accepts the seed body.
        fixed = []
        for sname, schema in spec.get("components", {}).get("schemas", {}).items():
            odata = schema.get("properties", {}).get("@odata.type", {})
            if "deviceHealthScriptDeviceState" in sname and "enum" in odata:
                seed = "#microsoft.management.services.api.deviceHealthScriptDeviceState"
                for v in (seed, seed[1:]):
                    if v not in odata["enum"]:
                        odata["enum"].append(v)
                        fixed.append(sname)
        spec_path = self.write_file("prism-openapi.json", json.dumps(spec))
        port = free_port()
        p = start([prism, "mock", "-h", "127.0.0.1", "-p", str(port), spec_path], os.path.join(WORK, "prism.log"))
        try:
            wait_port("127.0.0.1", port, 120, p)
            path = "/deviceManagement/deviceHealthScripts/00000000-0000-4000-8000-000000000001/deviceRunStates"
            body = open(post_body).read().replace("{{DEV}}", "00000000-0000-4000-8000-000000000002") \
                .replace("{{T}}", "0").replace("{{N7}}", "0000000")
            status, raw = call(("127.0.0.1", port), "x", "POST", path, body)
            out = {"version": npm_version("@stoplight/prism-cli"), "check_status": status, "runs": [],
                   "spec": f"remediate's /openapi.json reduced to POST {route}" +
                           (f"; seed @odata.type added to the enum of {sorted(set(fixed))}" if fixed else "")}
            if status >= 300:
                raise RuntimeError(f"Prism answers the seed POST with {status}: {raw[:300]!r}")
            log(f"  prism: a POST answers {status}")
            for c in self.cfg["peer_clients"]:
                r = wrk(f"http://127.0.0.1:{port}", "POST", path, c, self.secs(), "x", post_body, ids)
                out["runs"].append(r)
                log(f"  peer      Prism POST (mock)           c={c:<4} {fmt_run(r)}")
            out["peak_rss_mb"] = vm_hwm_mb(p.pid)
            return out
        finally:
            stop(p)

    def json_server(self, js, records, post_body, ids):
        with open(self.files["page"]) as f:
            record = json.loads(f.read())["value"][0]
        db_path = os.path.join(WORK, f"json-server-{records}.json")
        with open(db_path, "w") as f:
            json.dump({"deviceRunStates": [dict(record, id=f"r{i:07d}") for i in range(records)]}, f)
        port = free_port()
        p = start([js, db_path, "--host", "127.0.0.1", "--port", str(port), "--quiet"],
                  os.path.join(WORK, "json-server.log"))
        try:
            wait_port("127.0.0.1", port, 120, p)
            out = {"version": npm_version("json-server"), "records": records, "db_bytes": os.path.getsize(db_path),
                   "runs": []}
            seconds = self.secs() if records <= 1000 else self.cfg["jsonserver_slow_seconds"]
            for c in self.cfg["peer_clients"]:
                r = wrk(f"http://127.0.0.1:{port}", "POST", "/deviceRunStates", c, seconds, None, post_body, ids,
                        timeout=60)
                out["runs"].append(r)
                log(f"  peer      json-server POST @{records // 1000}k     c={c:<4} {fmt_run(r)}")
            return out
        finally:
            stop(p)
            os.remove(db_path)



# ---------------------------------------------------------------- rows copied with SQL ------------------------------
# Only rows the server itself wrote are copied, column by column (the column lists come from the database, so new
# columns are copied too); what changes is the id (a new first group of its GUID), and, for run states, the run time
# by a few ticks so that copies do not tie. remediate() checks $count and runSummary afterwards.

def sql_columns(db, disk_dir, name, table):
    if db == "sqlite":
        c = sqlite3.connect(os.path.join(disk_dir, "remediate.db"))
        cols = [r[1] for r in c.execute(f'PRAGMA table_info("{table}")')]
        c.close()
        return cols
    return psql(f"SELECT column_name FROM information_schema.columns WHERE table_name = '{table}' "
                f"ORDER BY ordinal_position", name).split("\n")


def run_sql(db, disk_dir, name, sql):
    if db == "sqlite":
        c = sqlite3.connect(os.path.join(disk_dir, "remediate.db"))
        c.execute("PRAGMA synchronous = FULL")
        c.executescript("BEGIN;" + sql + ";COMMIT;")
        c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        c.close()
    else:
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-1", "-d", name], input=sql, text=True,
                       env=PSQL_ENV, check=True, capture_output=True)


def series(db, k0, k1):
    if db == "sqlite":
        return f"(WITH RECURSIVE k(i) AS (SELECT {k0} UNION ALL SELECT i + 1 FROM k WHERE i < {k1}) SELECT i FROM k) k"
    return f"generate_series({k0}, {k1}) AS k(i)"


def new_id(db, expr):
    """The GUID in expr with its first 8 hex digits replaced by copy number k.i."""
    hexk = "printf('%08x', k.i)" if db == "sqlite" else "lpad(to_hex(k.i), 8, '0')"
    return f"{hexk} || substr({expr}, 9)"


def recount(disk_dir, database):
    """Rows copied with SQL bypass the server's counters: rebuild them from the rows (`remediate recount`)."""
    cmd = [BIN, "recount", "--data-dir", disk_dir] + (["--database", database] if database else [])
    r = subprocess.run(cmd, capture_output=True, text=True, env=dict(os.environ, REMEDIATE_LOG="warn"))
    if r.returncode != 0:
        raise RuntimeError(f"remediate recount failed: {r.stdout[-500:]} {r.stderr[-500:]}")


def replicate_devices(db, disk_dir, name, template, have, want):
    """Copies of device `template` (written through the API) up to `want` devices; returns the new ids."""
    if want <= have:
        return []
    cols = sql_columns(db, disk_dir, name, "managed_devices")
    k0, k1 = have, want - 1
    pad = "printf('%07d', k.i)" if db == "sqlite" else "lpad(k.i::text, 7, '0')"
    exprs = []
    for c in cols:
        if c == "id":
            exprs.append(new_id(db, 'd."id"'))
        elif c == "deviceName":
            exprs.append(f"'BENCH-' || {pad}")
        elif c == "deviceName_lc":
            exprs.append(f"'bench-' || {pad}")
        else:
            exprs.append(f'd."{c}"')
    run_sql(db, disk_dir, name,
            f'INSERT INTO "managed_devices" ({", ".join(chr(34) + c + chr(34) for c in cols)}) '
            f'SELECT {", ".join(exprs)} FROM "managed_devices" d, {series(db, k0, k1)} '
            f"WHERE d.\"tenant\" = '{TENANT}' AND d.\"id\" = '{template}'")
    return [f"{k:08x}{template[8:]}" for k in range(k0, k1 + 1)]


def replicate_states(db, disk_dir, name, script, base, k0, k1):
    """Copies k0..k1 of the script's first `base` run states (those the API wrote: their run times end in a
    7-digit fraction below `base`) and of their run history."""
    lst = '"lastStateUpdateDateTime"'
    original = f"s.{lst} % 10000000 < {base}"
    cols = sql_columns(db, disk_dir, name, "device_run_states")
    exprs = [new_id(db, 's."id"') if c == "id" else f"s.{lst} + k.i * {base}" if c == "lastStateUpdateDateTime"
             else f's."{c}"' for c in cols]
    hcols = sql_columns(db, disk_dir, name, "run_history")
    hexprs = [new_id(db, 'h."stateId"') if c == "stateId" else f"h.{lst} + k.i * {base}"
              if c == "lastStateUpdateDateTime" else f'h."{c}"' for c in hcols]
    where = f"s.\"tenant\" = '{TENANT}' AND s.\"scriptId\" = '{script}' AND {original}"
    q = lambda cs: ", ".join(f'"{c}"' for c in cs)   # noqa: E731
    run_sql(db, disk_dir, name, f"""
INSERT INTO "run_history" ({q(hcols)}) SELECT {", ".join(hexprs)}
  FROM "run_history" h JOIN "device_run_states" s
    ON s."tenant" = h."tenant" AND s."scriptId" = h."scriptId" AND s."id" = h."stateId", {series(db, k0, k1)}
  WHERE {where};
INSERT INTO "device_run_states" ({q(cols)}) SELECT {", ".join(exprs)}
  FROM "device_run_states" s, {series(db, k0, k1)} WHERE {where}""")


def stored_ids(db, disk_dir, name, script):
    if db == "sqlite":
        c = sqlite3.connect(f"file:{os.path.join(disk_dir, 'remediate.db')}?mode=ro", uri=True)
        ids = [r[0] for r in c.execute('SELECT id FROM device_run_states WHERE "scriptId" = ?', (script,))]
        c.close()
        return ids
    return psql(f"SELECT id FROM device_run_states WHERE \"scriptId\" = '{script}'", name).split("\n")


def stored_row(db, disk_dir, name, script):
    """One run state of `script` as the server stored it (column -> value)."""
    if db == "sqlite":
        c = sqlite3.connect(f"file:{os.path.join(disk_dir, 'remediate.db')}?mode=ro", uri=True)
        c.row_factory = sqlite3.Row
        row = dict(c.execute('SELECT * FROM device_run_states WHERE "scriptId" = ? LIMIT 1', (script,)).fetchone())
        c.close()
        return row
    return json.loads(psql(f"SELECT row_to_json(t) FROM device_run_states t WHERE \"scriptId\" = '{script}' LIMIT 1",
                           name))


def pct(sorted_values, p):
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, round((len(sorted_values) - 1) * p / 100))]


def npm_version(pkg):
    try:
        with open(os.path.join(HERE, "node_modules", pkg, "package.json")) as f:
            return json.load(f)["version"]
    except OSError:
        return None


# The minimal schema of the insert floor: the table, its primary key and this one index (what a device report
# needs: one run state per device and script).
MINIMAL_INDEXES = ("device_run_states_device",)


def table_ddl(dialect, only_indexes=None):
    """remediate's own CREATE TABLE and CREATE INDEX statements of device_run_states, as its migrations leave them
    (only_indexes: keep only these indexes)."""
    folder = os.path.join(REPO, "crates", "store", "migrations", dialect)
    table, indexes = None, {}
    for fn in sorted(os.listdir(folder)):
        text = "\n".join(line for line in open(os.path.join(folder, fn)).read().splitlines()
                         if not line.strip().startswith("--"))
        for stmt in (x.strip() for x in text.split(";")):
            if stmt.startswith('CREATE TABLE "device_run_states"'):
                table = stmt
            m = re.match(r'CREATE (?:UNIQUE )?INDEX "([^"]+)" ON "device_run_states"', stmt)
            if m:
                indexes[m.group(1)] = stmt
            m = re.match(r'DROP INDEX (?:IF EXISTS )?"([^"]+)"', stmt)
            if m:
                indexes.pop(m.group(1), None)
    assert table, "device_run_states DDL not found"
    if only_indexes is not None:
        missing = set(only_indexes) - set(indexes)
        assert not missing, f"indexes not found in the migrations: {missing}"
        indexes = {k: v for k, v in indexes.items() if k in only_indexes}
    return ";\n".join([table] + list(indexes.values())) + ";\n"


def pg_literal(v):
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, (int, float)):
        return str(v)
    return "'" + str(v).replace("'", "''") + "'"


def pg_insert(row):
    """One INSERT of the stored row with a fresh device id (and the run-state id formed from it)."""
    cols, vals = [], []
    for k, v in row.items():
        cols.append(f'"{k}"')
        if k == "managedDeviceId" and v is not None:
            vals.append("d.dev")
        elif k == "id":
            vals.append(f"{pg_literal(row['scriptId'])} || ':' || d.dev" if ":" in str(v) else "d.dev")
        else:
            vals.append(pg_literal(v))
    return (f'INSERT INTO "device_run_states" ({", ".join(cols)}) SELECT {", ".join(vals)} '
            f"FROM (SELECT gen_random_uuid()::text AS dev) d;\n")


# ---------------------------------------------------------------- report --------------------------------------------

def at(runs, clients):
    for r in runs or []:
        if r["clients"] == clients and "skipped" not in r:
            return r
    return None


def measured(runs):
    return [r for r in runs or [] if "skipped" not in r]


def ratios(res, mode_cfg):
    R = res["remediate"]
    F = res["floors"]
    P = res["peers"]
    largest = str(mode_cfg["sizes"][-1])
    smallest = str(mode_cfg["sizes"][0])
    goals = []
    good = lambda r: r.get("ok_per_s", r["req_per_s"])   # noqa: E731  (successful writes per second)

    def goal(name, value, op, target, detail):
        if value is None:
            goals.append({"goal": name, "value": None, "target": f"{op} {target}", "pass": False, "detail": detail})
            return
        ok = value >= target if op == ">=" else value <= target
        goals.append({"goal": name, "value": round(value, 3), "target": f"{op} {target}", "pass": ok,
                      "detail": detail})

    sq = R.get("sqlite", {}).get("sizes", {}).get(largest, {})
    pg = R.get("postgres", {}).get("sizes", {}).get(largest, {})
    post_sq = at(sq.get("post"), 64)
    floor100 = F.get("sqlite", {}).get("100_per_tx", {}).get("rows_per_s")
    goal("POST SQLite 64 clients / SQLite floor (100 rows/tx)",
         good(post_sq) / floor100 if post_sq and floor100 else None, ">=", 0.5,
         f"{post_sq and good(post_sq)} req/s vs {floor100 and round(floor100, 1)} rows/s")
    # issue 17, the cost of the schema: the same-schema floor (remediate's table and indexes) and a minimal one
    # (primary key and the (tenant, scriptId, managedDeviceId) index), both at 100 rows per transaction
    goal("durable POST SQLite 64 clients / same-schema floor (100 rows/tx)",
         good(post_sq) / floor100 if post_sq and floor100 else None, ">=", 0.9,
         f"{post_sq and good(post_sq)} req/s vs {floor100 and round(floor100, 1)} rows/s")
    floor_min = F.get("sqlite_minimal", {}).get("100_per_tx", {}).get("rows_per_s")
    goal("durable POST SQLite 64 clients / minimal-schema floor (PK + 1 index, 100 rows/tx)",
         good(post_sq) / floor_min if post_sq and floor_min else None, ">=", 0.25,
         f"{post_sq and good(post_sq)} req/s vs {floor_min and round(floor_min, 1)} rows/s")
    goal("POST SQLite 64 clients p99/p50", post_sq["p99_ms"] / post_sq["p50_ms"] if post_sq else None, "<=", 20,
         f"p99 {post_sq and post_sq['p99_ms']} ms, p50 {post_sq and post_sq['p50_ms']} ms")
    post_pg = at(pg.get("post"), 64)
    best = F.get("postgres", {}).get("best")
    goal("POST PostgreSQL 64 clients / best PostgreSQL insert floor",
         good(post_pg) / best["rows_per_s"] if post_pg and best else None, ">=", 0.5,
         f"{post_pg and good(post_pg)} req/s vs {best and best['rows_per_s']} rows/s "
         f"({best and best['rows_per_tx']} row(s)/tx, {best and best['clients']} clients)")
    get_sq = at(sq.get("get_page"), 64)
    fl_get = at(F.get("http", {}).get("get_page"), 64)
    fl_static = at(F.get("http", {}).get("get_page_static"), 64)
    goal(f"GET page @{int(largest):,} (SQLite, 64 clients) / minimal HTTP server serializing a page of the same bytes",
         get_sq["req_per_s"] / fl_get["req_per_s"] if get_sq and fl_get else None, ">=", 0.5,
         f"{get_sq and get_sq['req_per_s']} vs {fl_get and fl_get['req_per_s']} req/s; the same server answering "
         f"stored bytes: {fl_static and fl_static['req_per_s']} req/s "
         f"({get_sq and fl_static and round(get_sq['req_per_s'] / fl_static['req_per_s'], 3)})")
    goal(f"GET page @{int(largest):,} p99 / minimal HTTP server p99 (64 clients)",
         get_sq["p99_ms"] / fl_get["p99_ms"] if get_sq and fl_get else None, "<=", 2,
         f"{get_sq and get_sq['p99_ms']} vs {fl_get and fl_get['p99_ms']} ms")
    # issue 17: against a server doing the same work (the same statement on the same database, the same JSON)
    for db, label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        get = at(R.get(db, {}).get("sizes", {}).get(largest, {}).get("get_page"), 64)
        pf = F.get("page", {}).get(db, {})
        fl = at(pf.get("runs"), 64)
        fl8, get8 = at(pf.get("runs"), 8), at(R.get(db, {}).get("sizes", {}).get(largest, {}).get("get_page"), 8)
        if not get and not pf:
            continue
        goal(f"GET page @{int(largest):,} ({label}, 64 clients) / same-work floor (same SQL, same database)",
             get["req_per_s"] / fl["req_per_s"] if get and fl else None, ">=", 0.7,
             f"{get and get['req_per_s']} vs {fl and fl['req_per_s']} req/s; at 8 clients "
             f"{get8 and get8['req_per_s']} vs {fl8 and fl8['req_per_s']}"
             + (f"; floor failed: {pf['error'][:80]}" if "error" in pf else "")
             + (f"; the floor with pooled connections (no pipelining): "
                f"{at(F['page'][db + '_pool'].get('runs'), 64)['req_per_s']} req/s"
                if at(F.get("page", {}).get(db + "_pool", {}).get("runs"), 64) else ""))
        goal(f"GET page @{int(largest):,} p99 / same-work floor p99 ({label}, 64 clients)",
             get["p99_ms"] / fl["p99_ms"] if get and fl else None, "<=", 2,
             f"{get and get['p99_ms']} vs {fl and fl['p99_ms']} ms")
    for db, label in (("sqlite", "SQLite"), ("postgres", "PostgreSQL")):
        s = R.get(db, {}).get("sizes", {})
        big, small = at(s.get(largest, {}).get("run_summary"), 1), at(s.get(smallest, {}).get("run_summary"), 1)
        goal(f"runSummary p50 @{int(largest):,} / @{int(smallest):,} ({label}, 1 client)",
             big["p50_ms"] / small["p50_ms"] if big and small else None, "<=", 2,
             f"{big and big['p50_ms']} vs {small and small['p50_ms']} ms")
    rss = [R[d]["peak_rss_mb"] for d in R if "peak_rss_mb" in R[d]]
    goal("peak RSS of remediate (VmHWM, MB)", max(rss) if rss else None, "<=", 150,
         ", ".join(f"{d}: {R[d].get('peak_rss_mb')} MB" for d in R))
    prism = at(P.get("prism", {}).get("runs"), 64)
    goal("POST SQLite / Prism mock (64 clients)",
         good(post_sq) / prism["req_per_s"] if post_sq and prism and prism["req_per_s"] else None, ">=", 5,
         f"Prism {prism['req_per_s'] if prism else P.get('prism', {}).get('error')} req/s")
    js = at(P.get("json_server_50k", {}).get("runs"), 64)
    goal("POST SQLite / json-server @50k records (64 clients)",
         good(post_sq) / js["req_per_s"] if post_sq and js and js["req_per_s"] else None, ">=", 1000,
         f"json-server {js['req_per_s'] if js else P.get('json_server_50k', {}).get('error')} req/s")
    return goals


def print_table(res):
    lines = []
    add = lines.append
    add(f"{'scenario':<44} {'clients':>7} {'req/s':>10} {'p50 ms':>9} {'p99 ms':>9} {'errors':>7}")
    add("-" * 91)

    def row(name, r):
        if "skipped" in r:
            add(f"{name:<44} {r['clients']:>7}   skipped: {r['skipped']}")
            return
        err = r.get("non_2xx", 0) + r.get("socket_errors", 0)
        add(f"{name:<44} {r['clients']:>7} {r['req_per_s']:>10.1f} {r['p50_ms']:>9.2f} {r['p99_ms']:>9.2f} {err:>7}")

    F = res["floors"]
    for key, what in (("sqlite", "floor SQLite insert, "), ("sqlite_minimal", "floor SQLite insert, PK+1 index, ")):
        for k, v in F.get(key, {}).items():
            add(f"{what + k.replace('_', ' '):<44} {1:>7} {v['rows_per_s']:>10.1f} "
                f"{v['tx_p50_ms']:>9.2f} {v['tx_p99_ms']:>9.2f} {'':>7}  (rows/s; tx latency)")
    for v in F.get("postgres", {}).get("runs", []):
        add(f"{'floor PostgreSQL insert, ' + str(v['rows_per_tx']) + ' per tx':<44} {v['clients']:>7} "
            f"{v['rows_per_s']:>10.1f} {v['tx_p50_ms']:>9.2f} {v['tx_p99_ms']:>9.2f} {'':>7}  (rows/s; tx latency)")
    for r in F.get("http", {}).get("get_page", []):
        row("floor HTTP GET page (serialized, same bytes)", r)
    for r in F.get("http", {}).get("get_page_static", []):
        row("floor HTTP GET page (stored bytes)", r)
    for r in F.get("http", {}).get("post", []):
        row("floor HTTP POST echo (same body)", r)
    for db, p in F.get("page", {}).items():
        if "error" in p:
            add(f"{'floor ' + db + ' same-work GET page':<44} not measured: {p['error'][:60]}")
        for r in p.get("runs", []):
            row(f"floor {db.replace('_pool', ' (pool)')} same-work GET page @{int(p['size']):,}", r)
    for db, d in res["remediate"].items():
        for size, s in d["sizes"].items():
            for key, label in (("get_page", "GET page"), ("run_summary", "runSummary"), ("post", "POST run state"),
                               ("patch", "PATCH run state")):
                for r in s.get(key, []):
                    row(f"remediate {db} {label} @{int(size):,}", r)
    for name, p in res["peers"].items():
        if "error" in p:
            add(f"{name:<44} not measured: {p['error'][:60]}")
        for r in p.get("runs", []):
            row(f"peer {name} POST", r)
    return "\n".join(lines)


def markdown(res):
    """The results as Markdown tables (for docs/benchmarks.md)."""
    out = ["| scenario | clients | req/s (rows/s for inserts) | p50 ms | p99 ms | errors |", "|---|---:|---:|---:|---:|---:|"]
    for line in print_table(res).splitlines()[2:]:
        if "skipped:" in line:
            name, rest = line[:44].rstrip(), line[44:].split("skipped:")
            out.append(f"| {name} | {rest[0].strip()} | skipped: {rest[1].strip()} | | | |")
        elif "not measured:" in line:
            out.append(f"| {line.split('not measured:')[0].strip()} | | not measured: {line.split('not measured:')[1]} | | | |")
        else:
            # the name may run past its 44 columns: take the five figures from the right
            figures = re.search(r"\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*(\d*)(\s+\(.*\))?$", line)
            name = line[:figures.start()].strip()
            cols = figures.groups()
            out.append(f"| {name} | {cols[0]} | {cols[1]} | {cols[2]} | {cols[3]} | {cols[4]} |")
    out += ["", "| goal | value | target | result |", "|---|---:|---:|---|"]
    for g in res["goals"]:
        v = "n/a" if g["value"] is None else f"{g['value']:.3f}"
        out.append(f"| {g['goal']} ({g['detail']}) | {v} | {g['target']} | {'PASS' if g['pass'] else 'FAIL'} |")
    return "\n".join(out)


def plot(res, path, mode):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(18, 5.5))
    ax1, ax2, ax3 = axes
    styles = {"sqlite": "-", "postgres": "--"}
    colors = {"post": "tab:red", "patch": "tab:orange", "get_page": "tab:blue", "run_summary": "tab:green"}
    names = {"post": "POST", "patch": "PATCH", "get_page": "GET page", "run_summary": "runSummary"}
    for db, d in res["remediate"].items():
        sizes = list(d["sizes"])
        largest = d["sizes"][sizes[-1]]
        for key in ("post", "patch", "get_page", "run_summary"):
            runs = measured(largest.get(key))
            if not runs:
                continue
            xs = [r["clients"] for r in runs]
            ax1.plot(xs, [r["req_per_s"] for r in runs], styles[db], marker="o", color=colors[key],
                     label=f"{db} {names[key]}")
            ax2.plot(xs, [r["p99_ms"] for r in runs], styles[db], marker="o", color=colors[key],
                     label=f"{db} {names[key]}")
        for key in ("get_page", "run_summary"):
            pts = [(int(s), at(d["sizes"][s].get(key), 8 if key == "get_page" else 1)) for s in sizes]
            pts = [(s, r) for s, r in pts if r]
            if pts:
                ax3.plot([s for s, _ in pts], [r["p50_ms"] for _, r in pts], styles[db], marker="o",
                         color=colors[key], label=f"{db} {names[key]} ({pts[0][1]['clients']} client(s))")
    F = res["floors"]
    if F.get("http"):
        for key, color in (("get_page", "tab:purple"), ("post", "tab:gray")):
            runs = F["http"][key]
            ax1.plot([r["clients"] for r in runs], [r["req_per_s"] for r in runs], ":", marker="s", color=color,
                     label=f"floor HTTP {'GET page (serialized)' if key == 'get_page' else 'POST echo'}")
            ax2.plot([r["clients"] for r in runs], [r["p99_ms"] for r in runs], ":", marker="s", color=color,
                     label=f"floor HTTP {'GET page (serialized)' if key == 'get_page' else 'POST echo'}")
    for db, p in F.get("page", {}).items():
        runs = measured(p.get("runs"))
        if runs:
            for ax, key in ((ax1, "req_per_s"), (ax2, "p99_ms")):
                ax.plot([r["clients"] for r in runs], [r[key] for r in runs], styles[db.split("_")[0]],
                        marker="s", color="tab:olive" if db.endswith("pool") else "tab:cyan",
                        label=f"floor {db.replace('_', ' ')} same-work GET page")
    if F.get("sqlite"):
        for k, ls in (("1_per_tx", (0, (1, 3))), ("100_per_tx", (0, (5, 2)))):
            ax1.axhline(F["sqlite"][k]["rows_per_s"], color="black", linestyle=ls, linewidth=1,
                        label=f"floor SQLite {k.replace('_', ' ')} (rows/s)")
    if F.get("postgres"):
        ax1.axhline(F["postgres"]["best"]["rows_per_s"], color="tab:brown", linestyle=(0, (3, 1, 1, 1)), linewidth=1,
                    label="floor PostgreSQL best (rows/s)")
    for (name, p), marker in zip(res["peers"].items(), ("x", "+", "1")):
        runs = measured(p.get("runs"))
        if runs:
            ax1.plot([r["clients"] for r in runs], [r["req_per_s"] for r in runs], marker=marker, linestyle="none",
                     markersize=10, color="black", label=f"peer {name.replace('_', ' ')} POST")
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    ticks = sorted(set(res["meta"]["config"]["clients"]) | {1})
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
    for ax in (ax1, ax2):
        ax.set_xticks(ticks)
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax1.set_title(f"Throughput vs clients (at {int(list(res['remediate']['sqlite']['sizes'])[-1]):,} rows)"
                  if res["remediate"].get("sqlite") else "Throughput vs clients")
    ax1.set_xlabel("concurrent clients")
    ax1.set_ylabel("requests/s")
    ax2.set_title("p99 latency vs clients")
    ax2.set_xlabel("concurrent clients")
    ax2.set_ylabel("p99 ms")
    ax3.set_title("Read latency vs rows in the script")
    ax3.set_xlabel("run states in the script")
    ax3.set_ylabel("p50 ms")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.suptitle(f"remediate bench ({mode} mode, {res['meta']['date']}, {res['meta']['cores']} cores; "
                 f"wrk and the server share them)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", help="comma list of: sqlite,postgres,floors,peers (default: all)")
    ap.add_argument("--load", choices=["replicate", "api"], default="replicate",
                    help="rows beyond the first size: copied with SQL from API-written ones (default), or all "
                         "written through the API (slow: about 1,000 writes/s here)")
    ap.add_argument("--out", default=os.path.join(HERE, "results", "latest.json"))
    ap.add_argument("--png", default=os.path.join(REPO, "docs", "bench-scaling.png"))
    ap.add_argument("--report", metavar="JSON", help="print the Markdown tables of a results file and exit")
    args = ap.parse_args()
    if args.report:
        print(markdown(json.load(open(args.report))))
        return
    mode = "quick" if args.quick else "full"
    # SIGTERM (and SIGINT, which a background shell ignores) end the run through the cleanup below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(130))
    only = set((args.only or "sqlite,postgres,floors,peers").split(","))
    t_start = time.time()
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    os.makedirs(SHM, exist_ok=True)
    b = Bench(mode)
    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    b.results["meta"] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "mode": mode,
        "cores": os.cpu_count(), "cpu": cpu, "memory_gb": round(mem_gb, 1), "kernel": platform.release(),
        "commit": commit, "config": b.cfg,
        "binary_built": datetime.datetime.fromtimestamp(os.path.getmtime(BIN), datetime.timezone.utc)
        .strftime("%Y-%m-%d %H:%M UTC"),
        "wrk": subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.split("\n")[0].strip(),
        "postgres": psql("SHOW server_version"),
        "notes": "wrk runs on the same cores as the server; latencies are wrk's (from send to full response)",
    }
    log(f"mode {mode}: clients {b.cfg['clients']}, sizes {b.cfg['sizes']}, {b.cfg['seconds']} s per measurement")
    try:
        if "sqlite" in only:
            b.remediate("sqlite", args.load)
        if "postgres" in only:
            b.remediate("postgres", args.load)
        if "floors" in only:
            log("floors")
            if "row-sqlite" in b.files:
                b.sqlite_floor()
                b.sqlite_floor(minimal=True)
            if "row-postgres" in b.files:
                b.pg_floor()
            if "page" in b.files:
                b.http_floor()
            b.page_floor()
        if "peers" in only and "page" in b.files:
            log("peers")
            # remediate's OpenAPI document, for Prism
            srv = Remediate(os.path.join(WORK, "data-openapi"), None, "openapi")
            b.spec_source = srv.addr
            try:
                b.peers()
            finally:
                srv.stop()
    finally:
        for p in list(CHILDREN):
            stop(p)
        for name in list(PG_DATABASES):
            try:
                psql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as e:  # noqa: BLE001
                log(f"could not drop {name}: {e}")
        shutil.rmtree(SHM, ignore_errors=True)
    b.results["goals"] = ratios(b.results, b.cfg)
    b.results["meta"]["elapsed_s"] = round(time.time() - t_start)
    for d in b.results["remediate"].values():
        for s in d["sizes"].values():
            for runs in s.values():
                if isinstance(runs, list):
                    for r in runs:
                        r.pop("_sent_per_thread", None)
                        r.pop("_threads", None)
    for part in ("http",):
        for runs in b.results["floors"].get(part, {}).values():
            if isinstance(runs, list):
                for r in runs:
                    r.pop("_sent_per_thread", None)
                    r.pop("_threads", None)
    for p in b.results["floors"].get("page", {}).values():
        for r in p.get("runs", []):
            r.pop("_sent_per_thread", None)
            r.pop("_threads", None)
    for p in b.results["peers"].values():
        for r in p.get("runs", []):
            r.pop("_sent_per_thread", None)
            r.pop("_threads", None)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(b.results, f, indent=1)
    print()
    print(print_table(b.results))
    print()
    print(f"{'goal':<72} {'value':>10} {'target':>8}  result")
    for g in b.results["goals"]:
        v = "n/a" if g["value"] is None else f"{g['value']:.3f}"
        print(f"{g['goal']:<72} {v:>10} {g['target']:>8}  {'PASS' if g['pass'] else 'FAIL'}  ({g['detail']})")
    for i in b.results["incidents"]:
        print(f"INCIDENT {i['database']} {i['phase']}: {i['detail']}; {(i['panics'] or ['no panic'])[0]}")
    try:
        plot(b.results, args.png, mode)
        print(f"\nwrote {args.out} and {args.png} in {b.results['meta']['elapsed_s']} s")
    except Exception as e:  # noqa: BLE001
        print(f"\nwrote {args.out}; plot failed: {e}")
    keep = {i["log"] for i in b.results["incidents"]}
    for name in os.listdir(WORK):      # keep the logs in bench/.work (large ones only if an incident names them)
        path = os.path.join(WORK, name)
        if name.startswith("data-") or name.endswith(".db"):
            shutil.rmtree(path, ignore_errors=True)
        elif name.endswith(".log") and name not in keep and os.path.getsize(path) > 50 * 2**20:
            os.remove(path)


if __name__ == "__main__":
    main()
