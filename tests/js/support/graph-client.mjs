// The scenarios the @microsoft/microsoft-graph-client 3.x tests run, written as a user of that client writes
// them: `client.api(path)` with its query helpers, PageIterator, BatchRequestContent / BatchResponseContent,
// and GraphError. The client gets its tokens from @azure/msal-node's ConfidentialClientApplication (client
// credentials) through a small AuthenticationProvider, the pattern graph-client's docs give for MSAL.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { ConfidentialClientApplication } from "@azure/msal-node";
import {
  BatchRequestContent,
  BatchResponseContent,
  Client,
  GraphError,
  PageIterator,
  ResponseType,
} from "@microsoft/microsoft-graph-client";
import { GRAPH_DEFAULT } from "./server.mjs";

export const SEED_TYPE = "#microsoft.management.services.api.deviceHealthScriptDeviceState";

/** graph-client's AuthenticationProvider interface over an msal-node confidential client. */
export class MsalAuthenticationProvider {
  constructor(cca, scopes = [GRAPH_DEFAULT]) {
    this.cca = cca;
    this.scopes = scopes;
  }

  async getAccessToken() {
    const result = await this.cca.acquireTokenByClientCredential({ scopes: this.scopes });
    if (!result?.accessToken) throw new Error("MSAL returned no access token");
    return result.accessToken;
  }
}

export function confidentialClient({ tenant, clientId, secret, authorityHost = "https://login.microsoftonline.com", knownAuthorities }) {
  return new ConfidentialClientApplication({
    auth: {
      clientId,
      clientSecret: secret,
      authority: `${authorityHost}/${tenant}`,
      ...(knownAuthorities ? { knownAuthorities } : {}),
    },
  });
}

const b64 = (text) => Buffer.from(text, "utf8").toString("base64");

export function scriptBody(name) {
  return {
    displayName: name,
    description: "created by tests/js",
    publisher: "tests/js",
    runAsAccount: "system",
    runAs32Bit: false,
    enforceSignatureCheck: false,
    detectionScriptContent: b64("Write-Output 'ok'\r\nexit 0\r\n"),
    remediationScriptContent: b64("Write-Output 'fixed'\r\nexit 0\r\n"),
    roleScopeTagIds: ["0"],
  };
}

export function deviceBody(name) {
  return { deviceName: name, operatingSystem: "Windows", osVersion: "10.0.22631.4037", serialNumber: name };
}

/** The seed request's body: what Intune's reporting sends to Create deviceRunStates. */
export function seedBody(deviceId, i = 0) {
  const fail = i % 2 === 0;
  return {
    "@odata.type": SEED_TYPE,
    "managedDevice@odata.bind": `https://graph.microsoft.com/beta/deviceManagement/managedDevices('${deviceId}')`,
    detectionState: fail ? "fail" : "success",
    remediationState: fail ? "success" : "skipped",
    lastStateUpdateDateTime: "2025-03-01T10:00:00.1234567+02:00",
    lastSyncDateTime: "2025-03-01T08:00:00Z",
    expectedStateUpdateDateTime: "2025-03-02T08:00:00Z",
    preRemediationDetectionScriptOutput: fail ? `Disk 91% full (${i})` : `Disk fine (${i})`,
    preRemediationDetectionScriptError: "",
    remediationScriptError: "",
    postRemediationDetectionScriptOutput: fail ? "Disk 40% full" : "",
    postRemediationDetectionScriptError: "",
  };
}

const ASSIGNMENT = {
  target: { "@odata.type": "#microsoft.graph.allDevicesAssignmentTarget" },
  runRemediationScript: true,
  runSchedule: { "@odata.type": "#microsoft.graph.deviceHealthScriptDailySchedule", interval: 1, time: "08:00:00", useUtc: true },
};

/**
 * A graph-client Client as a user builds it: `baseUrl` (and the host in `customHosts`, or graph-client sends no
 * token there) only when it is not Graph's own.
 */
export function graphClient(authProvider, origin) {
  const options = { authProvider, defaultVersion: "beta" };
  if (origin) {
    options.baseUrl = `${origin}/`;
    options.customHosts = new Set([new URL(origin).hostname]);
  }
  return Client.initWithMiddleware(options);
}

/** Posts `bodies` to `path` through $batch requests of 20 (four batches at a time); returns the created entities. */
export async function batchCreate(client, base, path, bodies) {
  const chunks = [];
  for (let i = 0; i < bodies.length; i += 20) chunks.push(bodies.slice(i, i + 20));
  const created = [];
  for (let i = 0; i < chunks.length; i += 4) {
    const results = await Promise.all(chunks.slice(i, i + 4).map(async (chunk) => {
      const steps = chunk.map((body, j) => ({
        id: String(j + 1),
        request: new Request(`${base}${path}`, {
          method: "POST",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify(body),
        }),
      }));
      const content = await new BatchRequestContent(steps).getContent();
      const response = new BatchResponseContent(await client.api("/$batch").post(content));
      const out = [];
      for (let j = 1; j <= chunk.length; j++) {
        const item = response.getResponseById(String(j));
        assert.ok(item, `$batch answered nothing for request ${j}`);
        const json = await item.json();
        assert.equal(item.status, 201, `$batch item ${j} of POST ${path}: ${JSON.stringify(json)}`);
        out.push(json);
      }
      return out;
    }));
    for (const r of results) created.push(...r);
  }
  return created;
}

/** Script → assign → device → the seed POST → queries with $filter / $select / $expand → the run summary. */
export async function lifecycle(client, linkOrigin) {
  const name = `js lifecycle ${randomUUID().slice(0, 8)}`;
  const created = await client.api("/deviceManagement/deviceHealthScripts").responseType(ResponseType.RAW).post(scriptBody(name));
  assert.equal(created.status, 201);
  const script = await created.json();
  assert.ok(script.id, "POST deviceHealthScripts returned no id");
  assert.equal(created.headers.get("location"), `${linkOrigin}/beta/deviceManagement/deviceHealthScripts/${script.id}`);
  assert.ok(script["@odata.context"].startsWith(`${linkOrigin}/beta/$metadata#`), script["@odata.context"]);
  assert.match(created.headers.get("content-type"), /^application\/json;odata\.metadata=minimal/);
  assert.equal(script.displayName, name);
  assert.equal(script.version, "1");
  const read = await client.api(`/deviceManagement/deviceHealthScripts/${script.id}`).get();
  assert.equal(read.detectionScriptContent, scriptBody(name).detectionScriptContent, "detection content round trip");

  const scriptPath = `/deviceManagement/deviceHealthScripts/${script.id}`;
  await client.api(`${scriptPath}/assign`).post({ deviceHealthScriptAssignments: [ASSIGNMENT] });
  const assignments = await client.api(`${scriptPath}/assignments`).get();
  assert.equal(assignments.value.length, 1, JSON.stringify(assignments));
  const [assignment] = assignments.value;
  assert.equal(assignment.target["@odata.type"], "#microsoft.graph.allDevicesAssignmentTarget");
  assert.equal(assignment.runRemediationScript, true);
  assert.equal(assignment.runSchedule["@odata.type"], "#microsoft.graph.deviceHealthScriptDailySchedule");
  assert.equal(assignment.runSchedule.interval, 1);
  assert.match(assignment.runSchedule.time, /^08:00:00/);
  assert.equal(assignment.runSchedule.useUtc, true);

  const devices = [];
  for (const n of ["A", "B"]) {
    const device = await client.api("/deviceManagement/managedDevices").post(deviceBody(`JS-${n}-${randomUUID().slice(0, 6)}`));
    assert.ok(device.id, "POST managedDevices returned no id");
    devices.push(device);
  }

  // The seed: a device reports its detection and remediation results.
  const states = `${scriptPath}/deviceRunStates`;
  const seeded = await client.api(states).post(seedBody(devices[0].id, 0));
  assert.equal(seeded.id, `${script.id}:${devices[0].id}`);
  assert.equal(seeded.detectionState, "fail");
  assert.equal(seeded.lastStateUpdateDateTime, "2025-03-01T08:00:00.1234567Z", "offset normalized to UTC");
  const other = await client.api(states).post(seedBody(devices[1].id, 1));
  assert.equal(other.detectionState, "success");

  const failing = await client
    .api(states)
    .filter("detectionState eq 'fail'")
    .select(["id", "detectionState", "preRemediationDetectionScriptOutput"])
    .expand("managedDevice($select=deviceName)")
    .count(true)
    .get();
  assert.equal(failing["@odata.count"], 1);
  assert.equal(failing.value.length, 1);
  const [row] = failing.value;
  assert.equal(row.id, seeded.id);
  assert.equal(row.preRemediationDetectionScriptOutput, "Disk 91% full (0)");
  assert.equal(row.managedDevice.deviceName, devices[0].deviceName);
  assert.deepEqual(
    Object.keys(row).filter((k) => !k.startsWith("@")).sort(),
    ["detectionState", "id", "managedDevice", "preRemediationDetectionScriptOutput"],
    "$select limits the properties",
  );

  const byDevice = await client.api(states).filter(`managedDevice/id eq '${devices[1].id}'`).select("id,remediationState").get();
  assert.deepEqual(byDevice.value.map((s) => [s.id, s.remediationState]), [[other.id, "skipped"]]);

  const one = await client.api(`${states}/${encodeURIComponent(seeded.id)}`).get();
  assert.equal(one.postRemediationDetectionScriptOutput, "Disk 40% full");

  const summary = await client.api(`${scriptPath}/runSummary`).get();
  assert.equal(summary.issueDetectedDeviceCount, 1, JSON.stringify(summary));
  assert.equal(summary.noIssueDetectedDeviceCount, 1, JSON.stringify(summary));
  assert.equal(summary.issueRemediatedDeviceCount, 1, JSON.stringify(summary));
  return { script, devices };
}

/**
 * 250 devices and their run states, made with $batch requests of 20, then read with PageIterator (Graph's
 * default page of 100: three pages), whose nextLinks must lead back to `linkOrigin`.
 */
export async function pageIterator250(client, base, linkOrigin) {
  const N = 250;
  const script = await client.api("/deviceManagement/deviceHealthScripts").post(scriptBody(`js paging ${randomUUID().slice(0, 8)}`));
  const tag = randomUUID().slice(0, 6).toUpperCase();
  const devices = await batchCreate(
    client, base, "/deviceManagement/managedDevices",
    Array.from({ length: N }, (_, i) => deviceBody(`PG-${tag}-${String(i).padStart(3, "0")}`)),
  );
  assert.equal(new Set(devices.map((d) => d.id)).size, N);
  const states = `/deviceManagement/deviceHealthScripts/${script.id}/deviceRunStates`;
  const created = await batchCreate(client, base, states, devices.map((d, i) => seedBody(d.id, i)));
  const expected = new Set(devices.map((d) => `${script.id}:${d.id}`));
  assert.deepEqual(new Set(created.map((s) => s.id)), expected);

  const first = await client.api(states).count(true).select("id,detectionState").get();
  assert.equal(first["@odata.count"], N);
  assert.equal(first.value.length, 100, "Graph's default page size");
  assert.ok(first["@odata.nextLink"]?.startsWith(`${linkOrigin}/beta/`), `nextLink ${first["@odata.nextLink"]} is not on ${linkOrigin}`);

  const seen = [];
  let fails = 0;
  const iterator = new PageIterator(client, first, (state) => {
    seen.push(state.id);
    if (state.detectionState === "fail") fails += 1;
    return true;
  });
  await iterator.iterate();
  assert.ok(iterator.isComplete(), "PageIterator did not reach the last page");
  assert.equal(seen.length, N, "each run state exactly once");
  assert.deepEqual(new Set(seen), expected);
  assert.equal(fails, N / 2);

  // A callback returning false stops the iteration; resume() continues it.
  const partial = [];
  const stopping = new PageIterator(client, await client.api(states).top(40).get(), (s) => {
    partial.push(s.id);
    return partial.length % 90 !== 0;
  });
  await stopping.iterate();
  assert.equal(partial.length, 90);
  assert.equal(stopping.isComplete(), false);
  await stopping.resume();
  assert.equal(partial.length, 180);
  while (!stopping.isComplete()) await stopping.resume();
  assert.deepEqual(new Set(partial), expected);
  assert.equal(partial.length, N);
}

/**
 * One $batch with writes of every kind and a failing item, read through BatchResponseContent. graph-client accepts
 * only three dependency shapes (none, a chain, or all on the first request); this is the third: everything after
 * the PATCH depends on it.
 */
export async function batchWrites(client, base, linkOrigin) {
  const { script, devices } = await lifecycle(client, linkOrigin);
  const scriptUrl = `${base}/deviceManagement/deviceHealthScripts/${script.id}`;
  const json = { "Content-Type": "application/json" };
  const missingDevice = randomUUID();
  const batch = new BatchRequestContent([
    { id: "patch", request: new Request(scriptUrl, { method: "PATCH", headers: json, body: JSON.stringify({ description: "patched in a batch" }) }) },
    { id: "read", request: new Request(`${scriptUrl}?$select=id,description`, { method: "GET" }), dependsOn: ["patch"] },
    { id: "device", request: new Request(`${base}/deviceManagement/managedDevices`, { method: "POST", headers: json, body: JSON.stringify(deviceBody(`JS-BATCH-${randomUUID().slice(0, 6)}`)) }), dependsOn: ["patch"] },
    { id: "delete", request: new Request(`${base}/deviceManagement/managedDevices/${devices[1].id}`, { method: "DELETE" }), dependsOn: ["patch"] },
    { id: "bad", request: new Request(`${scriptUrl}/deviceRunStates`, { method: "POST", headers: json, body: JSON.stringify(seedBody(missingDevice)) }), dependsOn: ["patch"] },
  ]);
  const content = await batch.getContent();
  assert.equal(content.requests.length, 5);
  const reply = new BatchResponseContent(await client.api("/$batch").post(content));

  const status = Object.fromEntries([...reply.getResponses()].map(([id, r]) => [id, r.status]));
  assert.equal(status.patch, 200, JSON.stringify(status));
  assert.equal(status.read, 200);
  assert.equal(status.device, 201);
  assert.equal(status.delete, 204);
  assert.ok(status.bad >= 400 && status.bad < 500, `a bind to a missing device fails: ${JSON.stringify(status)}`);

  assert.equal((await reply.getResponseById("patch").json()).description, "patched in a batch");
  const read = await reply.getResponseById("read").json();
  assert.equal(read.description, "patched in a batch", "dependsOn: the GET ran after the PATCH");
  const device = await reply.getResponseById("device").json();
  assert.ok(device.id);
  const bad = await reply.getResponseById("bad").json();
  assert.ok(bad.error?.code && bad.error?.message, JSON.stringify(bad));
  assert.match(bad.error.message, new RegExp(missingDevice), "the error names the missing device");

  // The writes happened.
  assert.equal((await client.api(`/deviceManagement/managedDevices/${device.id}`).get()).id, device.id);
  await assert.rejects(client.api(`/deviceManagement/managedDevices/${devices[1].id}`).get(), (e) => e instanceof GraphError && e.statusCode === 404);
}

function checkGraphError(err, status, code) {
  assert.ok(err instanceof GraphError, `expected a GraphError, got ${err?.constructor?.name}: ${err}`);
  assert.equal(err.statusCode, status, `${err.code}: ${err.message}`);
  assert.equal(err.code, code, err.message);
  assert.ok(err.message && err.message.length > 10, `message: ${err.message}`);
  assert.match(err.requestId ?? "", /^[0-9a-f-]{36}$/i, "requestId from innerError.request-id");
  assert.equal(err.headers?.get("request-id"), err.requestId, "innerError.request-id is the request-id header");
  assert.ok(err.date instanceof Date && !Number.isNaN(err.date.getTime()) && Math.abs(Date.now() - err.date) < 5 * 60_000, `date ${err.date}`);
  const body = JSON.parse(err.body);
  assert.equal(body.code, code);
  assert.equal(body.innerError["request-id"], err.requestId);
  return err;
}

/** GraphError details on a 400 and a 404. */
export async function graphErrors(client) {
  let err = await client.api("/deviceManagement/deviceHealthScripts").filter("displayName eq").get().then(() => null, (e) => e);
  checkGraphError(err, 400, "BadRequest");
  assert.match(err.message, /filter/i);

  err = await client.api("/deviceManagement/deviceHealthScripts").post({ displayName: "x", runAsAccount: "nobody" }).then(() => null, (e) => e);
  checkGraphError(err, 400, "BadRequest");
  assert.match(err.message, /runAsAccount/);

  const missing = randomUUID();
  err = await client.api(`/deviceManagement/deviceHealthScripts/${missing}`).get().then(() => null, (e) => e);
  checkGraphError(err, 404, "ResourceNotFound");

  err = await client.api(`/deviceManagement/managedDevices/${missing}`).delete().then(() => null, (e) => e);
  checkGraphError(err, 404, "ResourceNotFound");
}
