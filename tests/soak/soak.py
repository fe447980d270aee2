#!/usr/bin/env python3
"""SIGKILL soak (issue 17): kill `remediate serve` at random moments under concurrent writers,
restart it, and check every acknowledged write, the run history and the counters after each kill.

Python standard library only. Usually started by tests/soak/run.sh; see tests/soak/README.md.

One cycle:
  1. W writer threads each create a managed device (POST), a run state bound to it (POST), then
     PATCH the run state (new output counter, states and lastStateUpdateDateTime each time) and,
     every third step, the device (new deviceName), until a request fails. Every 2xx answer is
     recorded as acknowledged; the one request that fails is recorded as "attempted".
  2. After a random 50-650 ms the server gets SIGKILL; the writers stop at their first error.
  3. The server is restarted on the same data and everything is checked:
     (PostgreSQL: once the killed server's database sessions have ended — a statement running
     at the kill still commits or rolls back on the database server a moment later.)
     - every acknowledged device and run state of every cycle so far is stored, with the
       acknowledged value or the one attempted after it (never older, never anything else), and
       each run state row is whole (its states and time belong to its counter value);
     - nothing exists that was never sent (unknown run states / devices at most the unanswered
       creates);
     - the history of every run state written in this cycle is exactly one record per applied
       change: outputs 0, 1, ..., stored counter, each once;
     - `remediate recount --check` reports no difference between the counters and the rows.
Any failure stops the run with exit status 1 and says what differs.
"""

import argparse
import datetime
import http.client
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

SCOPES = [
    "DeviceManagementScripts.ReadWrite.All",
    "DeviceManagementManagedDevices.ReadWrite.All",
]
# (detectionState, remediationState) of counter value n: STATES[n % 3].
STATES = [("fail", "success"), ("success", "skipped"), ("fail", "remediationFailed")]
EPOCH = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)


def stamp(n):
    """lastStateUpdateDateTime of counter value n: distinct and increasing."""
    return (EPOCH + datetime.timedelta(seconds=n)).strftime("%Y-%m-%dT%H:%M:%SZ")


def whole_seconds(text):
    """An ISO date-time without a fraction of zeros ("…:05.0000000Z" -> "…:05Z")."""
    head, _, tail = text.partition(".")
    if tail and tail.rstrip("Z").strip("0") == "":
        return head + "Z"
    return text


class Failure(Exception):
    pass


class Server:
    def __init__(self, binary, data_dir, database, log):
        self.binary, self.data_dir, self.database, self.log = binary, data_dir, database, log
        self.proc = None
        self.host = self.port = None

    def db_args(self):
        args = ["--data-dir", self.data_dir]
        if self.database:
            args += ["--database", self.database]
        return args

    def start(self):
        env = dict(os.environ, REMEDIATE_LOG="warn")
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--listen", "127.0.0.1:0"] + self.db_args(),
            stdout=subprocess.PIPE, stderr=self.log, env=env, text=True)
        deadline = time.monotonic() + 60
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise Failure(f"the server exited before listening (status {self.proc.wait()})")
            if line.startswith("listening on "):
                url = urllib.parse.urlsplit(line[len("listening on "):].strip())
                self.host, self.port = url.hostname, url.port
                break
            if time.monotonic() > deadline:
                raise Failure("the server did not listen within 60 s")
        out = self.proc.stdout
        threading.Thread(target=lambda: [None for _ in out], daemon=True).start()

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None
        if self.database:
            self.wait_for_backends()

    def wait_for_backends(self):
        """PostgreSQL: wait until the killed server's sessions have ended. A statement that was
        running when the process died still finishes on the database server (it commits or rolls
        back a moment later), so the state is only settled, and checkable, once no session of
        the database is left (no other client uses it)."""
        url = urllib.parse.urlsplit(self.database)
        dbname = url.path.lstrip("/")
        query = f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{dbname}'"
        deadline = time.monotonic() + 60
        while True:
            r = subprocess.run(
                ["psql", "-h", url.hostname, "-p", str(url.port or 5432), "-U", url.username or "postgres",
                 "-d", "postgres", "-Atc", query], capture_output=True, text=True)
            if r.returncode == 0 and r.stdout.strip() == "0":
                return
            if time.monotonic() > deadline:
                raise Failure(f"sessions of {dbname} still open 60 s after the kill: {r.stdout}{r.stderr}")
            time.sleep(0.02)

    def stop(self):
        if self.proc:
            self.proc.terminate()
            self.proc.wait()
            self.proc = None

    def recount_check(self):
        r = subprocess.run([self.binary, "recount", "--check"] + self.db_args(),
                           capture_output=True, text=True, env=dict(os.environ, REMEDIATE_LOG="warn"))
        return r.returncode == 0, r.stdout + r.stderr


class Client:
    """One keep-alive HTTP/1.1 connection; any transport error raises OSError/HTTPException."""

    def __init__(self, server, token, timeout=5.0):
        self.conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        self.conn.request(method, "/beta/" + path, body=data, headers=self.headers)
        r = self.conn.getresponse()
        raw = r.read()
        if r.status >= 300:
            return r.status, raw[:300].decode("utf-8", "replace")
        return r.status, (json.loads(raw) if raw else None)

    def close(self):
        self.conn.close()


class Tracked:
    """What the soak knows about one entity: the acknowledged value and, when the last request
    for it got no answer, the value attempted after it."""

    def __init__(self, acked):
        self.acked = acked
        self.pending = None

    def allowed(self):
        return {self.acked} if self.pending is None else {self.acked, self.pending}


class Soak:
    def __init__(self, args, database):
        self.args = args
        self.rng = random.Random(args.seed)
        self.data_dir = tempfile.mkdtemp(prefix="remediate-soak-")
        self.log = open(os.path.join(self.data_dir, "server.log"), "a")
        self.server = Server(args.binary, self.data_dir, database, self.log)
        self.script = None
        self.token = None
        # device id -> Tracked(deviceName); run state id -> Tracked(counter)
        self.devices = {}
        self.states = {}
        self.state_device = {}
        self.unacked_device_creates = 0
        self.unacked_state_creates = {}  # run state id -> counter it was created with
        self.unknown_devices = set()
        self.writer_failures = []
        self.lock = threading.Lock()
        self.stats = dict(acked_writes=0, checked_states=0, checked_devices=0,
                          history_records=0, recounts=0, failed_requests=0)

    # ------------------------------------------------------------------ writers
    def writer(self, w, cycle, stop):
        client = Client(self.server, self.token)
        try:
            self._write(client, w, cycle, stop)
        except (OSError, http.client.HTTPException):
            with self.lock:
                self.stats["failed_requests"] += 1
        except Failure as e:
            with self.lock:
                self.writer_failures.append(str(e))
        finally:
            client.close()

    def _write(self, client, w, cycle, stop):
        name = f"soak-{w}-{cycle}-0"
        with self.lock:
            self.unacked_device_creates += 1
        status, body = client.call("POST", "deviceManagement/managedDevices", {"deviceName": name})
        if status != 201:
            raise Failure(f"writer {w}: device create answered {status}: {body}")
        device = body["id"]
        with self.lock:
            self.unacked_device_creates -= 1
            self.devices[device] = Tracked(name)
            self.stats["acked_writes"] += 1
        state_id = f"{self.script}:{device}"
        collection = f"deviceManagement/deviceHealthScripts/{self.script}/deviceRunStates"
        with self.lock:
            self.unacked_state_creates[state_id] = 0
        status, body = client.call("POST", collection, {
            "managedDevice@odata.bind": f"managedDevices('{device}')",
            "preRemediationDetectionScriptOutput": "0",
            "detectionState": STATES[0][0], "remediationState": STATES[0][1],
            "lastStateUpdateDateTime": stamp(0)})
        if status != 201:
            raise Failure(f"writer {w}: run state create answered {status}: {body}")
        with self.lock:
            del self.unacked_state_creates[state_id]
            self.states[state_id] = Tracked(0)
            self.state_device[state_id] = device
            self.stats["acked_writes"] += 1
        n = 0
        k = 0
        while not stop.is_set():
            n += 1
            tracked = self.states[state_id]
            with self.lock:
                tracked.pending = n
            detection, remediation = STATES[n % 3]
            status, body = client.call("PATCH", f"{collection}/{state_id}", {
                "preRemediationDetectionScriptOutput": str(n),
                "detectionState": detection, "remediationState": remediation,
                "lastStateUpdateDateTime": stamp(n)})
            if not 200 <= status < 300:
                raise Failure(f"writer {w}: run state PATCH answered {status}: {body}")
            with self.lock:
                tracked.acked, tracked.pending = n, None
                self.stats["acked_writes"] += 1
            if n % 3 == 0:
                k += 1
                new = f"soak-{w}-{cycle}-{k}"
                dev = self.devices[device]
                with self.lock:
                    dev.pending = new
                status, body = client.call("PATCH", f"deviceManagement/managedDevices/{device}",
                                           {"deviceName": new})
                if not 200 <= status < 300:
                    raise Failure(f"writer {w}: device PATCH answered {status}: {body}")
                with self.lock:
                    dev.acked, dev.pending = new, None
                    self.stats["acked_writes"] += 1

    # ------------------------------------------------------------------ checks
    def list_all(self, client, path):
        items = []
        status, body = client.call("GET", path)
        while True:
            if status != 200:
                raise Failure(f"GET {path} answered {status}: {body}")
            items += body["value"]
            link = body.get("@odata.nextLink")
            if not link:
                return items
            rel = link.split("/beta/", 1)[1]
            status, body = client.call("GET", rel)

    def verify(self, cycle, written):
        client = Client(self.server, self.token, timeout=60)
        try:
            self._verify(client, cycle, written)
        finally:
            client.close()

    def _verify(self, client, cycle, written):
        where = f"cycle {cycle}"
        # Run states: every acknowledged one, exact and whole.
        rows = self.list_all(client, (
            f"deviceManagement/deviceHealthScripts/{self.script}/deviceRunStates"
            "?$select=id,preRemediationDetectionScriptOutput,detectionState,remediationState,"
            "lastStateUpdateDateTime&$top=1000"))
        stored = {}
        for row in rows:
            stored[row["id"]] = row
        for sid, tracked in self.states.items():
            row = stored.pop(sid, None)
            if row is None:
                raise Failure(f"{where}: the acknowledged run state {sid} is lost")
            n = int(row["preRemediationDetectionScriptOutput"])
            if n not in tracked.allowed():
                raise Failure(f"{where}: run state {sid} holds {n}; acknowledged {tracked.acked}, "
                              f"attempted {tracked.pending}")
            want = (STATES[n % 3][0], STATES[n % 3][1], stamp(n))
            got = (row["detectionState"], row["remediationState"],
                   whole_seconds(row["lastStateUpdateDateTime"]))
            if got != want:
                raise Failure(f"{where}: run state {sid} is torn: counter {n} with {got}, "
                              f"expected {want}")
            tracked.acked, tracked.pending = n, None
            self.stats["checked_states"] += 1
        for sid, row in stored.items():
            # An unanswered create may have been stored; nothing else may exist.
            if sid not in self.unacked_state_creates:
                raise Failure(f"{where}: run state {sid} exists but was never sent: {row}")
            self.states[sid] = Tracked(int(row["preRemediationDetectionScriptOutput"]))
            self.state_device[sid] = sid.split(":", 1)[1]
            written.add(sid)
        self.unacked_state_creates.clear()
        # Devices: every acknowledged one, with its acknowledged name (or the one attempted).
        rows = self.list_all(client, "deviceManagement/managedDevices?$select=id,deviceName&$top=1000")
        stored = {row["id"]: row for row in rows}
        for did, tracked in self.devices.items():
            row = stored.pop(did, None)
            if row is None:
                raise Failure(f"{where}: the acknowledged device {did} is lost")
            if row["deviceName"] not in tracked.allowed():
                raise Failure(f"{where}: device {did} is named {row['deviceName']!r}; acknowledged "
                              f"{tracked.acked!r}, attempted {tracked.pending!r}")
            tracked.acked, tracked.pending = row["deviceName"], None
            self.stats["checked_devices"] += 1
        self.unknown_devices |= set(stored)
        if len(self.unknown_devices) > self.unacked_device_creates:
            raise Failure(f"{where}: {len(self.unknown_devices)} devices exist that were never "
                          f"acknowledged, but only {self.unacked_device_creates} creates went "
                          f"unanswered")
        # History: one record per applied change of each run state written in this cycle.
        for sid in sorted(written):
            n = self.states[sid].acked
            records = self.list_all(client, (
                f"deviceManagement/deviceHealthScripts/{self.script}/deviceRunStates/{sid}/history"
                "?$top=1000"))
            outputs = sorted(int(r["preRemediationDetectionScriptOutput"]) for r in records)
            if outputs != list(range(n + 1)):
                raise Failure(f"{where}: history of {sid} (stored counter {n}) holds the outputs "
                              f"{outputs}, expected 0..{n}")
            self.stats["history_records"] += len(records)
        ok, output = self.server.recount_check()
        if not ok:
            raise Failure(f"{where}: recount --check found differences:\n{output}")
        self.stats["recounts"] += 1

    # ------------------------------------------------------------------ the run
    def setup(self):
        self.server.start()
        r = subprocess.run(
            [self.args.binary, "token", "--tenant", "tenant-soak", "--expires-in", "7d",
             "--data-dir", self.data_dir] + sum((["--scope", s] for s in SCOPES), []),
            capture_output=True, text=True, check=True)
        self.token = r.stdout.strip()
        client = Client(self.server, self.token)
        status, body = client.call("POST", "deviceManagement/deviceHealthScripts", {
            "displayName": "soak", "detectionScriptContent": "ZWNobyAx"})
        client.close()
        if status != 201:
            raise Failure(f"creating the script answered {status}: {body}")
        self.script = body["id"]

    def run(self):
        started = time.monotonic()
        self.setup()
        for cycle in range(1, self.args.cycles + 1):
            stop = threading.Event()
            before = set(self.states)
            threads = [threading.Thread(target=self.writer, args=(w, cycle, stop))
                       for w in range(self.args.writers)]
            for t in threads:
                t.start()
            time.sleep(self.rng.uniform(0.05, 0.65))
            self.server.kill()
            stop.set()
            for t in threads:
                t.join()
            if self.writer_failures:
                raise Failure(f"cycle {cycle}: " + "; ".join(self.writer_failures))
            self.server.start()
            written = (set(self.states) - before) | {
                sid for sid, t in self.states.items() if sid in before and t.pending is not None}
            self.verify(cycle, written)
            if cycle % self.args.report_every == 0 or cycle == self.args.cycles:
                elapsed = time.monotonic() - started
                print(f"[{self.args.label}] cycle {cycle}/{self.args.cycles}: "
                      f"{self.stats['acked_writes']} acknowledged writes, "
                      f"{len(self.states)} run states and {len(self.devices)} devices checked "
                      f"after this kill, {elapsed:.0f} s", flush=True)
        self.server.stop()
        return time.monotonic() - started


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--binary", required=True)
    p.add_argument("--database", help="PostgreSQL URL; SQLite (in the data directory) without it")
    p.add_argument("--label", default="sqlite")
    p.add_argument("--cycles", type=int, default=1000)
    p.add_argument("--writers", type=int, default=8)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--report-every", type=int, default=50)
    p.add_argument("--keep", action="store_true", help="keep the data directory")
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 32)
    soak = Soak(args, args.database)
    print(f"[{args.label}] {args.cycles} cycles, {args.writers} writers, seed {args.seed}, "
          f"data {soak.data_dir}", flush=True)
    status = 0
    try:
        duration = soak.run()
        s = soak.stats
        print(f"[{args.label}] RESULT: {args.cycles} SIGKILL cycles, {s['acked_writes']} "
              f"acknowledged writes (all checked after the next kill), {s['checked_states']} run "
              f"state and {s['checked_devices']} device checks, {s['history_records']} history "
              f"records checked, {s['recounts']} recount --check clean, failures 0, "
              f"{duration:.0f} s", flush=True)
    except Failure as e:
        print(f"[{args.label}] FAILURE: {e}\n(seed {args.seed}; data kept in {soak.data_dir})",
              flush=True)
        args.keep = True
        status = 1
    finally:
        soak.server.stop()
        soak.log.close()
        if not args.keep:
            shutil.rmtree(soak.data_dir, ignore_errors=True)
    sys.exit(status)


if __name__ == "__main__":
    main()
