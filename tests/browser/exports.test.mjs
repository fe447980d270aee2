// The dashboard's Export buttons in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core),
// on SQLite and on PostgreSQL: on a script page filtered by detection status, "Export" makes a Graph export job;
// its page shows the status (a plain Refresh link, no script) and, once completed, the signed download link; the
// zip's CSV holds exactly the rows the API returns for that filter (more than the page shows). "Export everything"
// on the overview holds every script's rows. axe-core on the job's page.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { inflateRawSync } from "node:zlib";
import { chromium } from "playwright-core";
import { CHROMIUM, IN_CI, Server, checkA11y, postgresReachable } from "./support.mjs";

const TENANT = "contoso";
const SCOPES = [
  "DeviceManagementScripts.ReadWrite.All",
  "DeviceManagementManagedDevices.ReadWrite.All",
];
const DEVICES = 40;

/** Two scripts; the first with DEVICES run states (every third with issues), the second with three. */
async function seed(server) {
  const token = await server.cli("token", "--tenant", TENANT, "--data-dir", server.dataDir,
    ...SCOPES.flatMap((s) => ["--scope", s]));
  const api = async (method, path, body) => {
    const url = path.startsWith("http") ? path : `${server.origin}/beta/deviceManagement/${path}`;
    const response = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body && JSON.stringify(body),
    });
    const text = await response.text();
    assert.ok(response.ok, `${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const scripts = [];
  for (const [name, count] of [["Disk cleanup", DEVICES], ["Printer spooler", 3]]) {
    const script = await api("POST", "deviceHealthScripts", {
      displayName: name, detectionScriptContent: Buffer.from("exit 1").toString("base64"),
    });
    scripts.push(script.id);
    for (let i = 0; i < count; i++) {
      const device = await api("POST", "managedDevices", { deviceName: `${name.split(" ")[0]}-${i}` });
      await api("POST", `deviceHealthScripts/${script.id}/deviceRunStates`, {
        "managedDevice@odata.bind": `https://graph.microsoft.com/beta/deviceManagement/managedDevices('${device.id}')`,
        detectionState: i % 3 === 0 ? "fail" : "success",
        preRemediationDetectionScriptOutput: `line "one", two\nfrom ${i}`,
      });
    }
  }
  return { scripts, api };
}

/** The API's run states of a script with this $filter (every page): id → device name. */
async function apiRows(api, script, filter) {
  const rows = new Map();
  let url = `deviceHealthScripts/${script}/deviceRunStates?$expand=managedDevice&$top=10` +
    (filter ? `&$filter=${encodeURIComponent(filter)}` : "");
  while (url) {
    const page = await api("GET", url);
    for (const row of page.value) rows.set(row.id, row.managedDevice?.deviceName ?? "");
    url = page["@odata.nextLink"];
  }
  return rows;
}

/** The one entry of a zip (local header, deflated), as text. */
function unzip(bytes) {
  assert.equal(bytes.readUInt32LE(0), 0x04034b50, "a zip");
  assert.equal(bytes.readUInt16LE(8), 8, "deflated");
  const nameLength = bytes.readUInt16LE(26);
  const extraLength = bytes.readUInt16LE(28);
  const name = bytes.subarray(30, 30 + nameLength).toString("utf8");
  const data = bytes.subarray(30 + nameLength + extraLength);
  return { name, text: inflateRawSync(data).toString("utf8") };
}

/** RFC 4180 records by column name. */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') { field += '"'; i++; } else if (c === '"') quoted = false; else field += c;
    } else if (c === '"') quoted = true;
    else if (c === ",") { row.push(field); field = ""; }
    else if (c === "\r" && text[i + 1] === "\n") { row.push(field); rows.push(row); row = []; field = ""; i++; }
    else field += c;
  }
  const [header, ...records] = rows;
  return records.map((r) => Object.fromEntries(header.map((h, i) => [h, r[i]])));
}

/** On the job's page: Refresh until completed; the CSV's records through the download link. */
async function download(page, what) {
  assert.match(new URL(page.url()).pathname, /^\/export-jobs\/./);
  await checkA11y(page, `the job page of ${what}`);
  for (let i = 0; i < 300; i++) {
    const status = await page.locator("#export-status").getAttribute("data-status");
    if (status === "completed") break;
    assert.notEqual(status, "failed", await page.locator("main").textContent());
    await new Promise((r) => setTimeout(r, 100));
    await page.getByRole("link", { name: "Refresh" }).click();
    await page.waitForLoadState("load");
  }
  assert.equal(await page.locator("#export-status").getAttribute("data-status"), "completed");
  await checkA11y(page, `the completed job page of ${what}`);
  const href = await page.locator("#export-download").getAttribute("href");
  const job = decodeURIComponent(new URL(page.url()).pathname.split("/").pop());
  // The link works without the session (no cookie, no token).
  const response = await fetch(href);
  assert.equal(response.status, 200);
  const { name, text } = unzip(Buffer.from(await response.arrayBuffer()));
  assert.equal(name, `${job}.csv`);
  return { job, records: parseCsv(text) };
}

for (const backend of ["sqlite", "postgres"]) {
  describe(`dashboard exports in Chromium (${backend})`, async () => {
    const reachable = backend === "sqlite" || (await postgresReachable());
    if (!reachable && IN_CI) throw new Error("PostgreSQL at 127.0.0.1:5432 is required under CI=true");
    const skip = reachable ? false : "PostgreSQL is not reachable";
    let server;
    let browser;
    let data;

    before(async () => {
      if (skip) return;
      server = new Server(backend, "exports");
      await server.start();
      data = await seed(server);
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    });

    after(async () => {
      await browser?.close();
      await server?.stop();
    });

    test("Export on a filtered script page and Export everything equal the API's rows", { skip }, async () => {
      const context = await browser.newContext();
      context.setDefaultTimeout(15_000);
      const page = await context.newPage();
      const link = await server.cli("login-link", "--tenant", TENANT, ...SCOPES.flatMap((s) => ["--scope", s]),
        "--listen", new URL(server.origin).host, ...server.storageArgs());
      await page.goto(link);

      // The script page, filtered by detection status "With issues": Export.
      await page.getByRole("link", { name: "Disk cleanup" }).click();
      await page.getByLabel("Detection status").selectOption("fail");
      await page.getByRole("button", { name: "Apply" }).click();
      await page.waitForURL(/detection=fail/);
      await page.getByRole("button", { name: "Export", exact: true }).click();
      const filtered = await download(page, "a filtered script");
      assert.match(filtered.job, /^DeviceRunStatesByProactiveRemediation_/);
      const expected = await apiRows(data.api, data.scripts[0], "detectionState eq 'fail'");
      assert.equal(expected.size, Math.ceil(DEVICES / 3));
      assert.deepEqual(
        new Map(filtered.records.map((r) => [r.UniqueKustoKey, r.DeviceName])),
        expected,
      );
      assert.ok(filtered.records.every((r) => r.DetectionStatus === "2" && r.PolicyId === data.scripts[0]));
      assert.ok(filtered.records.every((r) => /^line "one", two\nfrom \d+$/.test(r.PreRemediationDetectionScriptOutput)));

      // The same script unfiltered: all its rows, not the 25 on screen.
      await page.getByRole("link", { name: "Remediations" }).click();
      await page.getByRole("link", { name: "Disk cleanup" }).click();
      assert.equal(await page.locator("#device-status tbody tr").count(), 25);
      await page.getByRole("button", { name: "Export", exact: true }).click();
      const all = await download(page, "a script");
      assert.equal(all.records.length, DEVICES);
      assert.deepEqual(
        new Map(all.records.map((r) => [r.UniqueKustoKey, r.DeviceName])),
        await apiRows(data.api, data.scripts[0], ""),
      );

      // The overview: Export everything.
      await page.getByRole("link", { name: "Remediations" }).click();
      await page.getByRole("button", { name: "Export everything" }).click();
      const everything = await download(page, "everything");
      assert.match(everything.job, /^PolicyRunStatesByProactiveRemediation_/);
      const every = new Map([
        ...(await apiRows(data.api, data.scripts[0], "")),
        ...(await apiRows(data.api, data.scripts[1], "")),
      ]);
      assert.deepEqual(new Map(everything.records.map((r) => [r.UniqueKustoKey, r.DeviceName])), every);

      // The API sees the jobs the dashboard made.
      const jobs = await data.api("GET", "reports/exportJobs");
      assert.deepEqual(
        new Set(jobs.value.map((j) => j.id)),
        new Set([filtered.job, all.job, everything.job]),
      );
      await context.close();
    });
  });
}
