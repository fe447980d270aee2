// The dashboard in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core), on SQLite and
// on PostgreSQL: sign in with a `remediate login-link` link, the overview (summary, bars, filter by name), a
// script's page (device status filter), a device's page (Run remediation → pending), sign-out; axe-core runs in
// every page and must find no serious or critical violation. Prints the bytes each page downloads.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { CHROMIUM, IN_CI, Server, checkA11y, postgresReachable } from "./support.mjs";

const TENANT = "contoso";
const SCOPES = [
  "DeviceManagementScripts.ReadWrite.All",
  "DeviceManagementManagedDevices.ReadWrite.All",
  "DeviceManagementManagedDevices.PrivilegedOperations.All",
];

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
      // The pages' own CSP stays in force (axe is evaluated through the DevTools protocol: `checkA11y`).
      const context = await browser.newContext();
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
