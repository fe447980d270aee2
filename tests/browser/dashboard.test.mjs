// The dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core), on SQLite and
// on PostgreSQL: sign in with a `remediate login-link` link, the overview (summary, bars, filter by name), a
// script's page (device status filter), a device's page (Run remediation → pending), sign-out; axe-core is injected
// into every page and must find no serious or critical violation. Prints the bytes each page downloads.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { randomBytes } from "node:crypto";
import { chromium } from "playwright-core";

const run = promisify(execFile);
const require = createRequire(import.meta.url);
const AXE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");
const BIN = process.env.REMEDIATE_BIN;
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const IN_CI = (process.env.CI ?? "").toLowerCase() === "true";
const TENANT = "contoso";
const SCOPES = [
  "DeviceManagementScripts.ReadWrite.All",
  "DeviceManagementManagedDevices.ReadWrite.All",
  "DeviceManagementManagedDevices.PrivilegedOperations.All",
];

function childEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith("REMEDIATE_") || /^(https?|all|no)_proxy$/i.test(k)) continue;
    env[k] = v;
  }
  return env;
}

async function postgresReachable() {
  try {
    await run("pg_isready", ["-h", "127.0.0.1", "-p", "5432", "-q"]);
    return true;
  } catch {
    return false;
  }
}

/** One `remediate serve` on a free port with its own data directory (and PostgreSQL database). */
class Server {
  constructor(backend) {
    this.dataDir = mkdtempSync(join(tmpdir(), `remediate-browser-${backend}-`));
    this.db = backend === "postgres" ? `remediate_browser_${randomBytes(6).toString("hex")}` : null;
  }

  storageArgs() {
    const args = ["--data-dir", this.dataDir];
    if (this.db) args.push("--database", `postgres://postgres@127.0.0.1:5432/${this.db}`);
    return args;
  }

  async start() {
    this.proc = spawn(BIN, ["serve", "--listen", "127.0.0.1:0", ...this.storageArgs()], {
      cwd: this.dataDir,
      env: childEnv(),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    this.proc.stderr.on("data", (d) => (err = (err + d).slice(-8000)));
    this.origin = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no listener within 60 s\n${err}`)), 60_000);
      this.proc.on("exit", (code) => reject(new Error(`serve exited with ${code}\n${err}`)));
      this.proc.stdout.on("data", (d) => {
        out += d;
        const m = /^listening on (http:\/\/\S+)/m.exec(out);
        if (m) {
          clearTimeout(timer);
          resolve(m[1].replace(/\/$/, ""));
        }
      });
    });
  }

  async cli(...args) {
    const { stdout } = await run(BIN, args, { cwd: this.dataDir, env: childEnv(), timeout: 60_000 });
    return stdout.trim().split("\n").pop().trim();
  }

  async stop() {
    if (this.proc && this.proc.exitCode === null) {
      const exited = new Promise((r) => this.proc.on("exit", r));
      this.proc.kill("SIGTERM");
      await exited;
    }
    if (this.db) {
      await run("psql", ["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-q", "-c",
        `DROP DATABASE IF EXISTS ${this.db} WITH (FORCE)`]).catch(() => {});
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** Seed through the API: two scripts, three devices with run states of the first. */
async function seed(server) {
  const token = await server.cli("token", "--tenant", TENANT, "--data-dir", server.dataDir,
    ...SCOPES.flatMap((s) => ["--scope", s]));
  const api = async (method, path, body) => {
    const response = await fetch(`${server.origin}/beta/deviceManagement/${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body && JSON.stringify(body),
    });
    const text = await response.text();
    assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const content = (text) => Buffer.from(text).toString("base64");
  const script = await api("POST", "deviceHealthScripts", {
    displayName: "Disk cleanup", publisher: "IT <ops>",
    detectionScriptContent: content("#!/bin/sh\ndf -h / | tail -1\nexit 1\n"),
    remediationScriptContent: content("#!/bin/sh\nrm -rf /tmp/cache\n"),
  });
  await api("POST", "deviceHealthScripts", { displayName: "Printer spooler", detectionScriptContent: content("exit 0") });
  const states = [
    ["laptop-01", { detectionState: "fail", remediationState: "success",
      preRemediationDetectionScriptOutput: "Disk 91% full", postRemediationDetectionScriptOutput: "Disk 40% full" }],
    ["laptop-02", { detectionState: "success", preRemediationDetectionScriptOutput: "Disk 12% full" }],
    ["desktop-03", { detectionState: "scriptError", preRemediationDetectionScriptError: "df: not found" }],
  ];
  const devices = {};
  for (const [name, members] of states) {
    const device = await api("POST", "managedDevices", { deviceName: name, userPrincipalName: `${name}@contoso.com` });
    devices[name] = device.id;
    await api("POST", `deviceHealthScripts/${script.id}/deviceRunStates`, {
      "managedDevice@odata.bind": `https://graph.microsoft.com/beta/deviceManagement/managedDevices('${device.id}')`,
      ...members,
    });
  }
  const summary = await api("GET", `deviceHealthScripts/${script.id}/runSummary`);
  return { script: script.id, devices, summary, api };
}

/** Inject axe-core and fail on serious or critical violations. */
async function checkA11y(page, what) {
  await page.addScriptTag({ content: AXE });
  const result = await page.evaluate(async () => await globalThis.axe.run(document));
  const bad = result.violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  assert.deepEqual(
    bad.map((v) => `${v.id} (${v.impact}): ${v.nodes.map((n) => n.target.join(" ")).join(", ")}`),
    [],
    `axe on ${what}`,
  );
}

/**
 * What the browser downloaded for the page `go` navigates to (Resource Timing): bytes over the wire (headers
 * included; 0 for the stylesheet once cached) and the decoded size of the document and its subresources.
 */
async function measured(page, sizes, name, go) {
  await go();
  await page.waitForLoadState("load");
  const { transfer, decoded } = await page.evaluate(() => {
    const entries = [...performance.getEntriesByType("navigation"), ...performance.getEntriesByType("resource")];
    return {
      transfer: entries.reduce((n, e) => n + e.transferSize, 0),
      decoded: entries.reduce((n, e) => n + e.decodedBodySize, 0),
    };
  });
  sizes.push([name, transfer, decoded]);
}

for (const backend of ["sqlite", "postgres"]) {
  describe(`dashboard in Chromium (${backend})`, async () => {
    const reachable = backend === "sqlite" || (await postgresReachable());
    if (!reachable && IN_CI) throw new Error("PostgreSQL at 127.0.0.1:5432 is required under CI=true");
    const skip = reachable ? false : "PostgreSQL is not reachable";
    let server;
    let browser;
    let data;
    const sizes = [];

    before(async () => {
      if (skip) return;
      server = new Server(backend);
      await server.start();
      data = await seed(server);
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    });

    after(async () => {
      await browser?.close();
      await server?.stop();
      if (sizes.length) {
        process.stdout.write(`bytes per page (${backend}; over the wire, decoded): ${sizes.map(([n, t, d]) => `${n} ${t} B, ${d} B`).join("; ")}\n`);
      }
    });

    test("sign in, read every page, filter, run a remediation, sign out", { skip }, async () => {
      // The CSP forbids inline scripts; axe is injected by the test only (bypassCSP).
      const context = await browser.newContext({ bypassCSP: true });
      context.setDefaultTimeout(15_000);
      const page = await context.newPage();

      // Signed out: sent to the sign-in page.
      await page.goto(`${server.origin}/`);
      assert.equal(new URL(page.url()).pathname, "/login");
      await checkA11y(page, "the sign-in page");

      const link = await server.cli("login-link", "--tenant", TENANT, ...SCOPES.flatMap((s) => ["--scope", s]),
        "--listen", new URL(server.origin).host, ...server.storageArgs());
      assert.ok(link.startsWith(`${server.origin}/login/`), link);
      await measured(page, sizes, "overview", () => page.goto(link));
      assert.equal(new URL(page.url()).pathname, "/");
      const cookies = await context.cookies();
      const session = cookies.find((c) => c.name === "remediate_session");
      assert.ok(session?.httpOnly, "HttpOnly");
      assert.equal(session.sameSite, "Strict");

      // Overview: the bar's counts are runSummary's.
      assert.equal(await page.locator("h1").textContent(), "Remediations");
      const row = page.locator(`tr[data-script="${data.script}"]`);
      for (const key of ["noIssueDetectedDeviceCount", "issueDetectedDeviceCount", "issueRemediatedDeviceCount",
        "detectionScriptErrorDeviceCount"]) {
        const count = await row.locator(`li[data-count="${key}"] strong`).textContent();
        assert.equal(Number(count), data.summary[key], key);
      }
      await checkA11y(page, "the overview");
      // Filter by name (keyboard: the label names the field).
      await page.getByLabel("Filter by name").fill("printer");
      await page.getByRole("button", { name: "Apply" }).click();
      await page.waitForURL(/q=printer/);
      assert.deepEqual(await page.locator("table tbody th[scope=row]").allTextContents(), ["Printer spooler"]);
      await page.getByLabel("Filter by name").fill("");
      await page.getByRole("button", { name: "Apply" }).click();
      await page.waitForURL((u) => !u.search.includes("printer"));

      // Script page: content readable, device status filtered by detection state.
      await measured(page, sizes, "script", () => page.getByRole("link", { name: "Disk cleanup" }).click());
      assert.equal(await page.locator("h1").textContent(), "Disk cleanup");
      assert.match(await page.locator("pre.code").first().textContent(), /df -h/);
      assert.equal(await page.locator("#device-status tbody tr").count(), 3);
      await checkA11y(page, "the script page");
      await page.getByLabel("Detection status").selectOption("fail");
      await page.getByRole("button", { name: "Apply" }).click();
      await page.waitForURL(/detection=fail/);
      assert.deepEqual(await page.locator("#device-status tbody th[scope=row]").allTextContents(), ["laptop-01"]);
      assert.match(await page.locator("#device-status").textContent(), /Disk 91% full/);
      await checkA11y(page, "the filtered script page");

      // Device page: Run remediation → pending.
      await measured(page, sizes, "device", () => page.getByRole("link", { name: "laptop-01" }).click());
      assert.equal(await page.locator("h1").textContent(), "laptop-01");
      await checkA11y(page, "the device page");
      await page.getByLabel("Script", { exact: true }).selectOption({ label: "Disk cleanup" });
      await page.getByRole("button", { name: "Run remediation" }).click();
      await page.waitForURL(/queued=1/);
      assert.match(await page.locator("#pending-runs").textContent(), /Pending.*Disk cleanup/);
      const pending = await data.api("GET", `managedDevices/${data.devices["laptop-01"]}/pendingOnDemandRemediations`);
      assert.equal(pending.value[0].scriptPolicyId, data.script);
      await checkA11y(page, "the device page after Run remediation");

      // Sign out.
      await page.getByRole("button", { name: "Sign out" }).click();
      await page.waitForURL(/\/login$/);
      await page.goto(`${server.origin}/`);
      assert.equal(new URL(page.url()).pathname, "/login");
      await context.close();
    });
  });
}
