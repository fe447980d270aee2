// Screenshots of every dashboard page at realistic data, for the README (not a test; not run in CI):
//   cargo build --release && cd tests/browser && npm ci && node screenshots.mjs [OUT_DIR]
// Starts `remediate serve` on SQLite in a temporary directory, seeds through the API 300 devices, 6 scripts with
// varied states and outputs, groups, an assignment filter, assignments and a week of history, signs in with a
// `remediate login-link` link and writes one PNG per page to OUT_DIR (default: docs/screenshots). Uses Debian's
// Chromium (/usr/bin/chromium, or $CHROMIUM) through playwright-core.
import { execFile, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { chromium } from "playwright-core";

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const BIN = process.env.REMEDIATE_BIN ?? resolve(here, "../../target/release/remediate");
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const OUT = resolve(process.argv[2] ?? join(here, "../../docs/screenshots"));
const TENANT = "contoso";
const SCOPES = [
  "DeviceManagementScripts.ReadWrite.All",
  "DeviceManagementManagedDevices.ReadWrite.All",
  "DeviceManagementManagedDevices.PrivilegedOperations.All",
  "DeviceManagementConfiguration.ReadWrite.All",
  "Group.ReadWrite.All",
];
const DEVICES = 300;

function childEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith("REMEDIATE_") || /^(https?|all|no)_proxy$/i.test(k)) continue;
    env[k] = v;
  }
  return env;
}

const dataDir = mkdtempSync(join(tmpdir(), "remediate-screenshots-"));
const server = spawn(BIN, ["serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir], {
  cwd: dataDir, env: childEnv(), stdio: ["ignore", "pipe", "ignore"],
});
const origin = await new Promise((ok, fail) => {
  let out = "";
  server.on("exit", (code) => fail(new Error(`serve exited with ${code}`)));
  server.stdout.on("data", (d) => {
    out += d;
    const m = /^listening on (http:\/\/\S+)/m.exec(out);
    if (m) ok(m[1].replace(/\/$/, ""));
  });
});
const cli = async (...args) =>
  (await run(BIN, args, { cwd: dataDir, env: childEnv() })).stdout.trim().split("\n").pop().trim();

try {
  const token = await cli("token", "--tenant", TENANT, "--data-dir", dataDir, ...SCOPES.flatMap((s) => ["--scope", s]));
  const api = async (method, path, body) => {
    const url = path.startsWith("/") ? `${origin}/beta${path}` : `${origin}/beta/deviceManagement/${path}`;
    const response = await fetch(url, {
      method,
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: body && JSON.stringify(body),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const b64 = (text) => Buffer.from(text).toString("base64");
  const inBatches = async (items, size, f) => {
    for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(f));
  };

  // Devices: a fleet of laptops and desktops with users.
  const models = ["Latitude 7440", "EliteBook 840 G10", "ThinkPad T14 Gen 4", "Surface Laptop 5", "OptiPlex 7010"];
  const makers = ["Dell", "HP", "Lenovo", "Microsoft", "Dell"];
  const devices = new Array(DEVICES);
  await inBatches([...Array(DEVICES).keys()], 16, async (i) => {
    const kind = i % 4 === 0 ? "DESKTOP" : "LAPTOP";
    const user = `user${String(i).padStart(3, "0")}`;
    devices[i] = (await api("POST", "managedDevices", {
      deviceName: `${kind}-${(0x4a2f + i * 37).toString(16).toUpperCase()}`,
      userPrincipalName: `${user}@contoso.com`, userDisplayName: `User ${i}`, emailAddress: `${user}@contoso.com`,
      operatingSystem: "Windows", osVersion: i % 5 === 0 ? "10.0.19045.4529" : "10.0.22631.3880",
      manufacturer: makers[i % 5], model: models[i % 5], serialNumber: `SN${100000 + i}`,
      joinType: "azureADJoined", ownerType: "company",
    })).id;
  });

  // Groups, a filter, scripts and their assignments.
  const group = async (displayName) => (await api("POST", "/groups", {
    displayName, mailEnabled: false, mailNickname: displayName.replace(/\W/g, ""), securityEnabled: true,
  })).id;
  const finance = await group("Finance laptops");
  const kiosks = await group("Kiosks");
  await inBatches(devices.slice(0, 60), 16, (id) =>
    api("POST", `/groups/${finance}/members/$ref`, { "@odata.id": `https://graph.microsoft.com/v1.0/directoryObjects/${id}` }));
  const dell = (await api("POST", "assignmentFilters", {
    displayName: "Dell hardware", platform: "windows10AndLater", rule: '(device.manufacturer -eq "Dell")',
  })).id;

  const scripts = [
    ["Clear temp files when disk is low", "IT Operations", 0.35, "Disk C: 92% full (free 9.8 GB)", "Freed 14.2 GB"],
    ["Restart stuck print spooler", "IT Operations", 0.12, "Spooler service state: Stopped", "Spooler running"],
    ["BitLocker recovery key escrowed", "Security", 0.08, "No recovery key backed up to Entra ID", "Key escrowed"],
    ["Outdated Teams classic removed", "Workplace", 0.22, "Teams classic 1.6.00.4472 found", "Removed"],
    ["Time sync drift", "IT Operations", 0.05, "Offset 312 s from time.windows.com", "Resynced"],
    ["Local admin account check", "Security", 0.15, "Unexpected local administrator: helpdesk", ""],
  ];
  const day = 24 * 3600 * 1000;
  const now = Date.now();
  const ids = [];
  for (const [n, [displayName, publisher, issueRate, issue, fixed]] of scripts.entries()) {
    const script = await api("POST", "deviceHealthScripts", {
      displayName, publisher, description: `${displayName} (detect and remediate).`, runAsAccount: "system",
      detectionScriptContent: b64(`# Detection: ${displayName}\n$ok = Test-Condition\nif (-not $ok) { Write-Output "${issue}"; exit 1 }\nWrite-Output "OK"\nexit 0\n`),
      remediationScriptContent: b64(`# Remediation: ${displayName}\nRepair-Condition -Verbose\nWrite-Output "${fixed}"\n`),
    });
    ids.push(script.id);
    await api("POST", `deviceHealthScripts/${script.id}/assign`, {
      deviceHealthScriptAssignments: n % 2 === 0
        ? [{ target: { "@odata.type": "#microsoft.graph.allDevicesAssignmentTarget" }, runRemediationScript: true,
          runSchedule: { "@odata.type": "#microsoft.graph.deviceHealthScriptDailySchedule", interval: 1, time: "09:00:00", useUtc: false } },
        { target: { "@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget", groupId: kiosks }, runRemediationScript: false }]
        : [{ target: { "@odata.type": "#microsoft.graph.groupAssignmentTarget", groupId: finance,
          deviceAndAppManagementAssignmentFilterId: dell, deviceAndAppManagementAssignmentFilterType: "include" },
        runRemediationScript: true,
        runSchedule: { "@odata.type": "#microsoft.graph.deviceHealthScriptHourlySchedule", interval: 4 } }],
    });
    // A week of runs: each device reports once a day for the last 7 days (varied results).
    const count = n < 3 ? DEVICES : Math.round(DEVICES * (0.4 + n * 0.1));
    for (let d = 6; d >= 0; d--) {
      await inBatches(devices.slice(0, count), 24, async (device, i) => {
        const r = ((i * 7919 + d * 104729 + n * 31) % 1000) / 1000;
        const at = new Date(now - d * day - (i % 600) * 60_000).toISOString();
        let state;
        if (r < issueRate * 0.7) state = { detectionState: "fail", remediationState: "success",
          preRemediationDetectionScriptOutput: issue, postRemediationDetectionScriptOutput: "OK" };
        else if (r < issueRate) state = { detectionState: "fail", remediationState: "remediationFailed",
          preRemediationDetectionScriptOutput: issue, remediationScriptError: "Access is denied. (0x80070005)",
          postRemediationDetectionScriptOutput: issue };
        else if (r < issueRate + 0.03) state = { detectionState: "scriptError",
          preRemediationDetectionScriptError: "The term 'Test-Condition' is not recognized" };
        else if (r < issueRate + 0.05) state = { detectionState: "pending" };
        else state = { detectionState: "success", preRemediationDetectionScriptOutput: "OK" };
        await api("POST", `deviceHealthScripts/${script.id}/deviceRunStates`, {
          "managedDevice@odata.bind": `https://graph.microsoft.com/beta/deviceManagement/managedDevices('${device}')`,
          lastStateUpdateDateTime: at, lastSyncDateTime: at, ...state,
        }).catch(async () => {
          // Later days update the run state of the day before.
          await api("PATCH", `deviceHealthScripts/${script.id}/deviceRunStates/${script.id}:${device}`, {
            lastStateUpdateDateTime: at, lastSyncDateTime: at, remediationState: "unknown",
            preRemediationDetectionScriptOutput: "", postRemediationDetectionScriptOutput: "",
            remediationScriptError: "", preRemediationDetectionScriptError: "", ...state,
          });
        });
      });
    }
  }

  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  mkdirSync(OUT, { recursive: true });
  const shot = async (name) => {
    await page.waitForLoadState("load");
    await page.screenshot({ path: join(OUT, `${name}.png`), fullPage: false });
    process.stdout.write(`${join(OUT, `${name}.png`)}\n`);
  };
  await page.goto(`${origin}/login`);
  await shot("sign-in");
  await page.goto(await cli("login-link", "--tenant", TENANT, ...SCOPES.flatMap((s) => ["--scope", s]),
    "--listen", new URL(origin).host, "--data-dir", dataDir));
  await shot("overview");
  await page.goto(`${origin}/scripts/${ids[0]}`);
  await shot("script");
  await page.evaluate(() => document.getElementById("assignments").scrollIntoView());
  await shot("script-assignments");
  await page.goto(`${origin}/scripts/${ids[0]}/history`);
  await shot("script-history");
  await page.goto(`${origin}/scripts/${ids[0]}?detection=fail&cols=1&col=pre&col=remerr&col=post`);
  await page.evaluate(() => document.getElementById("status").scrollIntoView());
  await shot("script-device-status");
  await page.goto(`${origin}/devices/${devices[0]}`);
  await shot("device");
  await page.goto(`${origin}/scripts/${ids[0]}`);
  await page.getByRole("button", { name: "Export", exact: true }).click();
  for (let i = 0; i < 100; i++) {
    if ((await page.locator("#export-status").getAttribute("data-status")) === "completed") break;
    await new Promise((r) => setTimeout(r, 200));
    await page.getByRole("link", { name: "Refresh" }).click();
  }
  await shot("export");
  // The editing pages, where this build has them.
  for (const [name, path] of [["groups", "/groups"], ["filters", "/filters"], ["secrets", "/secrets"]]) {
    const response = await page.goto(`${origin}${path}`);
    if (response?.ok()) await shot(name);
  }
  await browser.close();
} finally {
  server.kill("SIGTERM");
  await new Promise((r) => server.on("exit", r));
  rmSync(dataDir, { recursive: true, force: true });
}
