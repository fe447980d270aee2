// The dashboard's editing pages in a real headless Chromium (Debian's /usr/bin/chromium driven by playwright-core),
// on SQLite and on PostgreSQL, with the pages' own Content-Security-Policy in force (the rule check runs the
// served /assets/dashboard.js): create a script uploading its detection and remediation files (and first a
// validation error showing the API's message), edit it, create an assignment filter and a dynamic group whose
// rules are checked while typing, static groups, assign the script (group with a filter and a daily schedule, an
// excluded group) and compare with the API's assignments, create an enrollment secret (shown once with a copyable
// install command) and revoke it, delete the script; a read-only session sees no write controls and its forged
// post is 403; a form posted from another origin is refused. axe-core on every editing page.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { chromium } from "playwright-core";
import { CHROMIUM, IN_CI, Server, checkA11y, postgresReachable } from "./support.mjs";

const TENANT = "contoso";
const EDITOR = [
  "DeviceManagementScripts.ReadWrite.All",
  "DeviceManagementConfiguration.ReadWrite.All",
  "DeviceManagementManagedDevices.ReadWrite.All",
  "Group.ReadWrite.All",
  "Device.Read.All",
];
const READER = ["DeviceManagementScripts.Read.All", "DeviceManagementConfiguration.Read.All", "Group.Read.All"];
const DETECTION = "#!/bin/sh\n# Is the disk full?\ndf -h / | tail -1\nexit 1\n";
const REMEDIATION = "#!/bin/sh\nrm -rf /tmp/cache\n";
const b64 = (text) => Buffer.from(text).toString("base64");

/** A page on another origin whose form posts to the dashboard as soon as it loads. */
async function foreignSite(action, fields) {
  const inputs = Object.entries(fields)
    .map(([name, value]) => `<input type="hidden" name="${name}" value="${value}">`)
    .join("");
  const html = `<!doctype html><title>elsewhere</title><form method="post" action="${action}">${inputs}</form>` +
    "<script>document.forms[0].submit()</script>";
  const server = createServer((_, response) => {
    response.writeHead(200, { "content-type": "text/html" });
    response.end(html);
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { url: `http://127.0.0.1:${server.address().port}/`, close: () => server.close() };
}

for (const backend of ["sqlite", "postgres"]) {
  describe(`dashboard editing in Chromium (${backend})`, async () => {
    const reachable = backend === "sqlite" || (await postgresReachable());
    if (!reachable && IN_CI) throw new Error("PostgreSQL at 127.0.0.1:5432 is required under CI=true");
    const skip = reachable ? false : "PostgreSQL is not reachable";
    let server;
    let browser;
    let api;

    before(async () => {
      if (skip) return;
      server = new Server(backend, "editing");
      await server.start();
      api = await server.api(TENANT, EDITOR);
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
    });

    after(async () => {
      await browser?.close();
      await server?.stop();
    });

    test("create, edit, assign and delete a script; groups, filters, enrollment secrets", { skip }, async () => {
      // No bypassCSP: the page's CSP (script-src 'self', connect-src 'self') is what runs the rule check.
      const context = await browser.newContext();
      context.setDefaultTimeout(15_000);
      await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.origin });
      const page = await context.newPage();
      const blocked = [];
      page.on("console", (m) => {
        if (/Content Security Policy/i.test(m.text())) blocked.push(m.text());
      });
      await page.goto(await server.loginLink(TENANT, EDITOR));
      assert.equal(new URL(page.url()).pathname, "/");

      // A new script without its detection file: the API's message, the input kept.
      await page.getByRole("link", { name: "New script" }).click();
      await page.waitForURL(/\/scripts\/new$/);
      await page.getByLabel("Name", { exact: true }).fill("Disk cleanup");
      await page.getByLabel("Publisher").fill("IT ops");
      await page.getByRole("button", { name: "Create script" }).click();
      // The browser's own check (required name) passes; the API refuses the missing file.
      await page.locator("#form-error").waitFor();
      assert.match(await page.locator("#form-error").textContent(),
        /The property 'detectionScriptContent' is required and must not be null or empty\./);
      assert.equal(await page.getByLabel("Name", { exact: true }).inputValue(), "Disk cleanup");
      await checkA11y(page, "the new script form with an error");

      // Upload both files.
      await page.getByLabel("Detection script file (required)").setInputFiles({
        name: "detect.sh", mimeType: "text/x-sh", buffer: Buffer.from(DETECTION),
      });
      await page.getByLabel("Remediation script file (optional)").setInputFiles({
        name: "fix.sh", mimeType: "text/x-sh", buffer: Buffer.from(REMEDIATION),
      });
      await page.getByLabel("Enforce script signature check").check();
      await page.getByRole("button", { name: "Create script" }).click();
      await page.waitForURL(/\/scripts\/[0-9a-f-]{36}$/);
      const scriptId = new URL(page.url()).pathname.split("/").pop();
      assert.equal(await page.locator("h1").textContent(), "Disk cleanup");
      assert.match(await page.locator("pre.code").first().textContent(), /Is the disk full\?/);
      let script = await api("GET", `deviceManagement/deviceHealthScripts/${scriptId}`);
      assert.equal(script.json.detectionScriptContent, b64(DETECTION));
      assert.equal(script.json.remediationScriptContent, b64(REMEDIATION));
      assert.equal(script.json.publisher, "IT ops");
      assert.equal(script.json.enforceSignatureCheck, true);

      // Edit it: a new name, the files kept.
      await page.getByRole("link", { name: "Edit", exact: true }).click();
      await page.waitForURL(/\/edit$/);
      await checkA11y(page, "the edit form");
      await page.getByLabel("Name", { exact: true }).fill("Disk cleanup v2");
      await page.getByLabel("Run script in 32-bit PowerShell").check();
      await page.getByRole("button", { name: "Save changes" }).click();
      await page.waitForURL(new RegExp(`/scripts/${scriptId}$`));
      assert.equal(await page.locator("h1").textContent(), "Disk cleanup v2");
      script = await api("GET", `deviceManagement/deviceHealthScripts/${scriptId}`);
      assert.equal(script.json.displayName, "Disk cleanup v2");
      assert.equal(script.json.runAs32Bit, true);
      assert.equal(script.json.detectionScriptContent, b64(DETECTION));

      // An assignment filter; its rule is checked as it is typed.
      await page.getByRole("link", { name: "Assignment filters" }).click();
      await page.getByRole("link", { name: "New filter" }).click();
      await page.getByLabel("Name", { exact: true }).fill("Lab devices");
      await page.locator("#rule").pressSequentially("(device.deviceName -startsWith");
      await page.locator("#rule-check").filter({ hasText: "The 'rule' is not valid" }).waitFor();
      assert.equal(await page.locator("#rule").getAttribute("aria-invalid"), "true");
      await checkA11y(page, "the filter form with a rule message");
      await page.locator("#rule").pressSequentially(' "LAB")');
      await page.locator("#rule-check").filter({ hasText: "Valid rule." }).waitFor();
      assert.equal(await page.locator("#rule").getAttribute("aria-invalid"), null);
      await page.getByRole("button", { name: "Create filter" }).click();
      await page.waitForURL(/\/filters$/);
      assert.match(await page.locator("#filters").textContent(), /Lab devices/);
      await checkA11y(page, "the filters list");
      const filters = await api("GET", "deviceManagement/assignmentFilters");
      const filter = filters.json.value.find((f) => f.displayName === "Lab devices");
      assert.equal(filter.rule, '(device.deviceName -startsWith "LAB")');

      // A dynamic group: an invalid rule shows the API's message while typing.
      await page.getByRole("link", { name: "Groups", exact: true }).click();
      await page.getByRole("link", { name: "New group" }).click();
      await page.getByLabel("Name", { exact: true }).fill("Lab machines");
      await page.getByLabel("Mail nickname").fill("labmachines");
      await page.getByLabel("Dynamic device (members by rule)").check();
      await page.locator("#membershipRule").pressSequentially('device.displayName -sartsWith "LAB-"');
      const message = page.locator("#membershipRule-check");
      await message.filter({ hasText: "The 'membershipRule' is not valid" }).waitFor();
      // The same message the API gives on submit.
      const refused = await api("POST", "groups", {
        displayName: "x", mailNickname: "x", mailEnabled: false, securityEnabled: true,
        groupTypes: ["DynamicMembership"], membershipRule: 'device.displayName -sartsWith "LAB-"',
      });
      assert.equal(refused.status, 400);
      assert.equal(await message.textContent(), refused.json.error.message);
      await checkA11y(page, "the new group form with a rule message");
      await page.locator("#membershipRule").fill('device.displayName -startsWith "LAB-"');
      await message.filter({ hasText: "Valid rule." }).waitFor();
      await page.getByRole("button", { name: "Create group" }).click();
      await page.waitForURL(/\/groups\/[0-9a-f-]{36}$/);
      assert.match(await page.locator("dl.props").textContent(), /Dynamic/);
      await checkA11y(page, "a dynamic group's page");

      // Two assigned groups.
      const groups = {};
      for (const name of ["Pilot", "VIP"]) {
        await page.goto(`${server.origin}/groups/new`);
        await page.getByLabel("Name", { exact: true }).fill(name);
        await page.getByLabel("Mail nickname").fill(name.toLowerCase());
        await page.getByRole("button", { name: "Create group" }).click();
        await page.waitForURL(/\/groups\/[0-9a-f-]{36}$/);
        groups[name] = new URL(page.url()).pathname.split("/").pop();
      }
      await page.getByRole("link", { name: "Groups", exact: true }).click();
      assert.deepEqual(await page.locator("#groups tbody th").allTextContents(), ["Lab machines", "Pilot", "VIP"]);
      await checkA11y(page, "the groups list");

      // Assign the script: Pilot with the filter, remediation and a daily schedule; VIP excluded.
      await page.goto(`${server.origin}/scripts/${scriptId}`);
      await page.getByRole("link", { name: "Assign", exact: true }).click();
      await page.waitForURL(/\/assign$/);
      await page.getByLabel("Row 1 target").selectOption("include");
      await page.getByLabel("Row 1 group").selectOption({ label: "Pilot" });
      await page.getByLabel("Row 1 filter", { exact: true }).selectOption({ label: "Lab devices" });
      await page.getByLabel("Row 1 filter mode").selectOption("include");
      await page.getByLabel("Row 1 runs the remediation script").check();
      await page.getByLabel("Row 1 schedule").selectOption("daily");
      await page.getByLabel("Row 1 interval (days or hours)").fill("1");
      await page.getByLabel("Row 1 time", { exact: true }).fill("09:30:00");
      await page.getByLabel("Row 2 target").selectOption("exclude");
      await page.getByLabel("Row 2 group").selectOption({ label: "VIP" });
      await checkA11y(page, "the assign form");
      await page.getByRole("button", { name: "Save assignments" }).click();
      await page.waitForURL(new RegExp(`/scripts/${scriptId}#assignments$`));
      const assignments = await api("GET", `deviceManagement/deviceHealthScripts/${scriptId}/assignments`);
      const got = assignments.json.value
        .map(({ target, runRemediationScript, runSchedule }) => ({ target, runRemediationScript, runSchedule }))
        .sort((a, b) => a.target["@odata.type"].localeCompare(b.target["@odata.type"]));
      assert.deepEqual(got, [
        {
          target: {
            "@odata.type": "#microsoft.graph.exclusionGroupAssignmentTarget",
            deviceAndAppManagementAssignmentFilterId: "00000000-0000-0000-0000-000000000000",
            deviceAndAppManagementAssignmentFilterType: "none",
            groupId: groups.VIP,
          },
          runRemediationScript: false,
          runSchedule: null,
        },
        {
          target: {
            "@odata.type": "#microsoft.graph.groupAssignmentTarget",
            deviceAndAppManagementAssignmentFilterId: filter.id,
            deviceAndAppManagementAssignmentFilterType: "include",
            groupId: groups.Pilot,
          },
          runRemediationScript: true,
          runSchedule: {
            "@odata.type": "#microsoft.graph.deviceHealthScriptDailySchedule",
            interval: 1,
            time: "09:30:00.0000000",
            useUtc: false,
          },
        },
      ]);
      // The script page lists them.
      assert.match(await page.locator("#assignments + table").textContent(), /Every 1 day\(s\) at 09:30:00/);

      // An enrollment secret for Pilot: shown once, with a copyable install command.
      await page.getByRole("link", { name: "Enrollment secrets" }).click();
      await page.getByLabel("Name", { exact: true }).fill("Lab rollout");
      await page.getByLabel("Pilot").check();
      await page.getByRole("button", { name: "Create secret" }).click();
      const secret = (await page.locator("#secret").textContent()).trim();
      assert.match(secret, /^rmd_/);
      const command = (await page.locator("#install-command").textContent()).trim();
      assert.equal(command, `remediate-agent install --server ${server.origin} --secret ${secret}`);
      const copy = page.getByRole("button", { name: "Copy command" });
      assert.ok(await copy.isVisible(), "the copy button is shown when the script runs");
      await copy.click();
      await page.getByRole("button", { name: "Copied" }).waitFor();
      assert.equal(await page.evaluate(() => navigator.clipboard.readText()), command);
      await checkA11y(page, "the enrollment secrets page with a new secret");
      const secrets = await api("GET", "deviceManagement/agentEnrollmentSecrets");
      assert.deepEqual(secrets.json.value.map((s) => [s.displayName, s.groupIds]), [["Lab rollout", [groups.Pilot]]]);
      // Reloaded: the form answered with a redirect, so this is a GET — nothing is posted again,
      // and the secret is not shown again.
      assert.equal(new URL(page.url()).pathname, "/secrets");
      await page.reload();
      assert.ok(!(await page.content()).includes(secret), "the secret is shown only once");
      const again = await api("GET", "deviceManagement/agentEnrollmentSecrets");
      assert.equal(again.json.value.length, 1, "reloading made no second secret");
      const row = page.locator("#secrets tbody tr", { hasText: "Lab rollout" });
      assert.match(await row.textContent(), /Pilot/);
      await row.getByRole("button", { name: "Revoke Lab rollout" }).click();
      await page.waitForURL(/\/secrets$/);
      assert.equal(await page.locator("#secrets").count(), 0);
      assert.deepEqual((await api("GET", "deviceManagement/agentEnrollmentSecrets")).json.value, []);

      // Delete the script (a disclosure, then the button).
      await page.goto(`${server.origin}/scripts/${scriptId}`);
      await page.locator("details.danger summary").click();
      await page.getByRole("button", { name: "Delete script" }).click();
      await page.waitForURL((u) => u.pathname === "/");
      assert.equal((await api("GET", `deviceManagement/deviceHealthScripts/${scriptId}`)).status, 404);
      assert.deepEqual(blocked, [], "nothing blocked by the CSP");
      await context.close();
    });

    test("a read-only session sees no write controls; forged and cross-site posts are refused", { skip }, async () => {
      const created = await api("POST", "deviceManagement/deviceHealthScripts", {
        displayName: "Printer spooler", detectionScriptContent: b64("exit 0"),
      });
      const scriptId = created.json.id;
      const context = await browser.newContext();
      context.setDefaultTimeout(15_000);
      const page = await context.newPage();
      await page.goto(await server.loginLink(TENANT, READER));
      assert.equal(await page.getByRole("link", { name: "New script" }).count(), 0);
      await page.getByRole("link", { name: "Printer spooler" }).click();
      assert.equal(await page.locator("h1").textContent(), "Printer spooler");
      for (const name of ["Edit", "Assign"]) {
        assert.equal(await page.getByRole("link", { name, exact: true }).count(), 0, name);
      }
      assert.equal(await page.getByRole("button", { name: "Delete script" }).count(), 0);
      await page.getByRole("link", { name: "Groups", exact: true }).click();
      assert.equal(await page.getByRole("link", { name: "New group" }).count(), 0);
      await checkA11y(page, "the groups list of a read-only session");

      // A forged write from the page itself (its own CSRF token, same origin): 403 naming the permission.
      const forged = await page.evaluate(async (id) => {
        const csrf = document.querySelector("input[name=csrf]").value;
        const response = await fetch(`/scripts/${id}/delete`, { method: "POST", body: new URLSearchParams({ csrf }) });
        return { status: response.status, text: await response.text() };
      }, scriptId);
      assert.equal(forged.status, 403);
      assert.match(forged.text, /DeviceManagementScripts\.ReadWrite\.All/);
      assert.equal((await api("GET", `deviceManagement/deviceHealthScripts/${scriptId}`)).status, 200);
      // The form page itself is a 403 page.
      const response = await page.goto(`${server.origin}/scripts/new`);
      assert.equal(response.status(), 403);
      await context.close();

      // A form on another origin posting to the dashboard (with an editor's valid CSRF token and cookie): refused.
      const editor = await browser.newContext();
      editor.setDefaultTimeout(15_000);
      const signedIn = await editor.newPage();
      await signedIn.goto(await server.loginLink(TENANT, EDITOR));
      const csrf = await signedIn.locator("input[name=csrf]").first().inputValue();
      const site = await foreignSite(`${server.origin}/scripts/${scriptId}/delete`, { csrf });
      try {
        const attack = await editor.newPage();
        const answer = attack.waitForResponse((r) => r.url().endsWith(`/scripts/${scriptId}/delete`));
        await attack.goto(site.url);
        const refused = await answer;
        assert.equal(refused.status(), 403);
        assert.match(await refused.text(), /CSRF token or origin is wrong/);
      } finally {
        site.close();
      }
      assert.equal((await api("GET", `deviceManagement/deviceHealthScripts/${scriptId}`)).status, 200);
      await editor.close();
    });
  });
}
