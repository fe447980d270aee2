// @microsoft/msgraph-beta-sdk (Kiota, preview) against `remediate serve` over plain http.
//
// The SDK's device-management request builders ship in @microsoft/msgraph-beta-sdk-devicemanagement, which the npm
// registry does not serve (404), so `createGraphBetaServiceClient(adapter).deviceManagement` does not exist. These
// tests use what the SDK does ship, as its request builders would: its request adapter (GraphBetaRequestAdapter,
// with Graph's middleware), Kiota's RequestInformation with the URI templates the builders use, the SDK's own
// models, serializers and parsers (models/index.js), its ODataError mapping, and msgraph-sdk-core's
// BatchRequestContent and PageIterator. The workarounds for the SDK's defects are in README.md.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import {
  AllowedHostsValidator,
  BaseBearerTokenAuthenticationProvider,
  HttpMethod,
  RequestInformation,
  TimeOnly,
} from "@microsoft/kiota-abstractions";
import { JsonSerializationWriter } from "@microsoft/kiota-serialization-json";
import { BatchRequestContent, BatchResponseContent, PageIterator, serializeBatchRequestBody } from "@microsoft/msgraph-sdk-core";
import { GraphBetaRequestAdapter, createGraphBetaServiceClient } from "@microsoft/msgraph-beta-sdk";
import {
  createDeviceHealthScriptAssignmentCollectionResponseFromDiscriminatorValue,
  createDeviceHealthScriptDeviceStateCollectionResponseFromDiscriminatorValue,
  createDeviceHealthScriptDeviceStateFromDiscriminatorValue,
  createDeviceHealthScriptFromDiscriminatorValue,
  createDeviceHealthScriptRunSummaryFromDiscriminatorValue,
  createManagedDeviceFromDiscriminatorValue,
  serializeDeviceHealthScript,
  serializeDeviceHealthScriptAssignment,
  serializeDeviceHealthScriptDailySchedule,
  serializeDeviceHealthScriptDeviceState,
  serializeDeviceHealthScriptHourlySchedule,
  serializeDeviceHealthScriptRunOnceSchedule,
  serializeDeviceHealthScriptTimeSchedule,
  serializeGroupAssignmentTarget,
  serializeExclusionGroupAssignmentTarget,
  serializeDeviceAndAppManagementAssignmentTarget,
  serializeManagedDevice,
} from "@microsoft/msgraph-beta-sdk/models/index.js";
import { createODataErrorFromDiscriminatorValue } from "@microsoft/msgraph-beta-sdk/models/oDataErrors/index.js";
import { BACKENDS, Server, backendOptions, newTenant } from "./support/server.mjs";

const ERRORS = { XXX: createODataErrorFromDiscriminatorValue };
const JSON_TYPE = "application/json";
// The request builders' URI templates (as Kiota generates them for these paths).
const LIST_QUERY = "{?%24count,%24expand,%24filter,%24orderby,%24search,%24select,%24skip,%24top}";
const QUERY_MAPPER = {
  count: "%24count", expand: "%24expand", filter: "%24filter", orderby: "%24orderby",
  search: "%24search", select: "%24select", skip: "%24skip", top: "%24top",
};
const SCRIPTS = "{+baseurl}/deviceManagement/deviceHealthScripts";
const SCRIPT = `${SCRIPTS}/{deviceHealthScript%2Did}`;
const STATES = `${SCRIPT}/deviceRunStates`;
const DEVICES = "{+baseurl}/deviceManagement/managedDevices";
const SEED_TYPE = "#microsoft.management.services.api.deviceHealthScriptDeviceState";

/** Kiota's AccessTokenProvider with a token of `remediate token`, for the server's host only. */
class StaticTokenProvider {
  constructor(token, host) {
    this.token = token;
    this.validator = new AllowedHostsValidator(new Set([host]));
  }

  async getAuthorizationToken(url) {
    return this.validator.isUrlHostValid(url) ? this.token : "";
  }

  getAllowedHostsValidator() {
    return this.validator;
  }
}

// --- Workaround for the SDK's serializers of derived types (README: "derived types under a base-typed property").
const DERIVED_SCHEDULES = {
  "#microsoft.graph.deviceHealthScriptDailySchedule": serializeDeviceHealthScriptDailySchedule,
  "#microsoft.graph.deviceHealthScriptHourlySchedule": serializeDeviceHealthScriptHourlySchedule,
  "#microsoft.graph.deviceHealthScriptRunOnceSchedule": serializeDeviceHealthScriptRunOnceSchedule,
  "#microsoft.graph.deviceHealthScriptTimeSchedule": serializeDeviceHealthScriptTimeSchedule,
};
const DERIVED_TARGETS = {
  "#microsoft.graph.groupAssignmentTarget": serializeGroupAssignmentTarget,
  "#microsoft.graph.exclusionGroupAssignmentTarget": serializeExclusionGroupAssignmentTarget,
};

/** serializeDeviceHealthScriptAssignment, but with the schedule and the target written by their own types' serializers. */
function serializeAssignmentFixed(writer, assignment = {}) {
  serializeDeviceHealthScriptAssignment(writer, { ...assignment, runSchedule: undefined, target: undefined });
  const schedule = assignment.runSchedule;
  if (schedule) writer.writeObjectValue("runSchedule", schedule, DERIVED_SCHEDULES[schedule.odataType]);
  const target = assignment.target;
  if (target) writer.writeObjectValue("target", target, DERIVED_TARGETS[target.odataType] ?? serializeDeviceAndAppManagementAssignmentTarget);
}

/** The body of the `assign` action (its model ships only in the missing device-management package). */
function serializeAssignBody(serializeAssignment) {
  return (writer, body = {}) => {
    writer.writeCollectionOfObjectValues("deviceHealthScriptAssignments", body.deviceHealthScriptAssignments, serializeAssignment);
  };
}

function toJson(value, serializer) {
  const writer = new JsonSerializationWriter();
  writer.writeObjectValue(undefined, value, serializer);
  return JSON.parse(new TextDecoder().decode(writer.getSerializedContent()));
}

// --- Workaround for msgraph-sdk-core's $batch (README: "$batch bodies and headers").
/** serializeBatchItem, fixed: the step's headers and its JSON body written as JSON. */
function serializeBatchItemFixed(writer, item = {}) {
  writer.writeStringValue("id", item.id);
  writer.writeStringValue("method", item.method);
  writer.writeStringValue("url", item.url);
  if (item.headers) writer.writeAnyValue("headers", item.headers);
  if (item.body) writer.writeAnyValue("body", JSON.parse(new TextDecoder().decode(item.body)));
  writer.writeCollectionOfPrimitiveValues("dependsOn", item.dependsOn);
}

/**
 * BatchRequestContent.postAsync, fixed: posts the steps with serializeBatchItemFixed and gives each response's JSON
 * body to BatchResponseContent as the bytes its getParsableResponseById parses (msgraph-sdk-core reads a body only
 * when it is a base64 string, which Graph sends for binary content only).
 */
async function postBatchFixed(adapter, batch) {
  const info = new RequestInformation(HttpMethod.POST, "{+baseurl}/$batch", { baseurl: adapter.baseUrl });
  info.headers.tryAdd("Accept", JSON_TYPE);
  info.setContentFromParsable(adapter, JSON_TYPE, batch.getContent(), (writer, content) => {
    writer.writeCollectionOfObjectValues("requests", content.requests, serializeBatchItemFixed);
  });
  const raw = await adapter.sendPrimitive(info, "ArrayBuffer", ERRORS);
  const { responses } = JSON.parse(new TextDecoder().decode(raw));
  return new BatchResponseContent({
    responses: responses.map((r) => ({
      ...r,
      body: r.body === undefined ? undefined : new TextEncoder().encode(JSON.stringify(r.body)).buffer,
    })),
  });
}

const dailyAssignment = () => ({
  target: { odataType: "#microsoft.graph.allDevicesAssignmentTarget" },
  runRemediationScript: true,
  runSchedule: {
    odataType: "#microsoft.graph.deviceHealthScriptDailySchedule",
    interval: 1,
    time: new TimeOnly({ hours: 8 }),
    useUtc: true,
  },
});

test("SDK defect still present: derived types under a base-typed property lose their own properties", () => {
  // If this fails after an SDK upgrade, the defect is fixed: drop serializeAssignmentFixed (and this test).
  const groupId = randomUUID();
  const assignment = { ...dailyAssignment(), target: { odataType: "#microsoft.graph.groupAssignmentTarget", groupId } };
  const sdk = toJson(assignment, serializeDeviceHealthScriptAssignment);
  assert.equal(sdk.runSchedule["@odata.type"], "#microsoft.graph.deviceHealthScriptDailySchedule");
  assert.equal(sdk.runSchedule.time, undefined, "the SDK drops time");
  assert.equal(sdk.runSchedule.useUtc, undefined, "the SDK drops useUtc");
  assert.equal(sdk.target.groupId, undefined, "the SDK drops groupId");

  const fixed = toJson(assignment, serializeAssignmentFixed);
  assert.deepEqual(fixed, {
    runRemediationScript: true,
    runSchedule: { "@odata.type": "#microsoft.graph.deviceHealthScriptDailySchedule", interval: 1, time: "08:00:00.0000000", useUtc: true },
    target: { "@odata.type": "#microsoft.graph.groupAssignmentTarget", groupId },
  });
});

for (const backend of BACKENDS) {
  const { problem, skip } = await backendOptions(backend);
  describe(`msgraph-beta-sdk over http [${backend}]`, { skip }, () => {
    let server;
    let adapter;

    before(async () => {
      if (problem) throw new Error(problem);
      server = new Server(backend);
      await server.start();
      assert.match(server.origin, /^http:\/\/127\.0\.0\.1:\d+$/);
      const token = await server.token(newTenant());
      const auth = new BaseBearerTokenAuthenticationProvider(new StaticTokenProvider(token, new URL(server.origin).hostname));
      adapter = new GraphBetaRequestAdapter(auth);
      adapter.baseUrl = server.base;
    });

    after(async () => {
      const trouble = await server?.stop();
      if (trouble) throw new Error(trouble);
    });

    function request(method, template, ids = {}, query) {
      const info = new RequestInformation(method, template, { baseurl: adapter.baseUrl, ...ids });
      info.headers.tryAdd("Accept", JSON_TYPE);
      if (query) info.configure({ queryParameters: query }, QUERY_MAPPER);
      return info;
    }

    function post(template, ids, body, serializer) {
      const info = request(HttpMethod.POST, template, ids);
      info.setContentFromParsable(adapter, JSON_TYPE, body, serializer);
      return info;
    }

    test("the service client has no deviceManagement without the device-management package", () => {
      // Why the tests below build requests themselves; if this fails, the package is back: use its builders.
      const client = createGraphBetaServiceClient(adapter);
      assert.throws(() => client.deviceManagement, /couldn't find navigation property deviceManagement/);
    });

    test("lifecycle: script, assign, devices, the seed POST, a $batch of seeds, $filter/$select, paging, errors", async () => {
      const detection = new TextEncoder().encode("Write-Output 'ok'\r\nexit 0\r\n");
      const name = `kiota ${randomUUID().slice(0, 8)}`;
      const script = await adapter.send(post(SCRIPTS, {}, {
        displayName: name,
        description: "created by tests/js (Kiota)",
        publisher: "tests/js",
        runAsAccount: "system",
        runAs32Bit: false,
        enforceSignatureCheck: false,
        detectionScriptContent: detection,
        remediationScriptContent: new TextEncoder().encode("exit 0"),
        roleScopeTagIds: ["0"],
      }, serializeDeviceHealthScript), createDeviceHealthScriptFromDiscriminatorValue, ERRORS);
      assert.ok(script?.id, "POST deviceHealthScripts returned no entity");
      assert.equal(script.displayName, name);
      assert.equal(script.runAsAccount, "system");
      assert.equal(script.version, "1");
      const ids = { "deviceHealthScript%2Did": script.id };
      const read = await adapter.send(request(HttpMethod.GET, SCRIPT, ids), createDeviceHealthScriptFromDiscriminatorValue, ERRORS);
      assert.deepEqual(new Uint8Array(read.detectionScriptContent), detection, "the byte content round trip");

      // assign (its body serialized with the fixed assignment serializer), then the assignments as the SDK reads them.
      await adapter.sendNoResponseContent(
        post(`${SCRIPT}/assign`, ids, { deviceHealthScriptAssignments: [dailyAssignment()] }, serializeAssignBody(serializeAssignmentFixed)),
        ERRORS,
      );
      const assignments = await adapter.send(request(HttpMethod.GET, `${SCRIPT}/assignments`, ids),
        createDeviceHealthScriptAssignmentCollectionResponseFromDiscriminatorValue, ERRORS);
      assert.equal(assignments.value.length, 1);
      const [assignment] = assignments.value;
      assert.equal(assignment.target.odataType, "#microsoft.graph.allDevicesAssignmentTarget");
      assert.equal(assignment.runSchedule.odataType, "#microsoft.graph.deviceHealthScriptDailySchedule");
      assert.equal(assignment.runSchedule.interval, 1);
      assert.equal(assignment.runSchedule.useUtc, true);
      assert.equal(assignment.runSchedule.time?.hours, 8);
      assert.equal(assignment.runRemediationScript, true);

      // Devices: deviceName, operatingSystem… are read-only in Graph's schema, so the SDK's serializer skips them;
      // a client puts them into additionalData (as the Python SDK suite does).
      const devices = [];
      for (let i = 0; i < 7; i++) {
        const device = await adapter.send(post(DEVICES, {}, {
          managedDeviceName: `kiota device ${i}`,
          managedDeviceOwnerType: "company",
          additionalData: { deviceName: `KIOTA-${i}`, operatingSystem: "Windows", osVersion: "10.0.22631.4037" },
        }, serializeManagedDevice), createManagedDeviceFromDiscriminatorValue, ERRORS);
        assert.ok(device?.id);
        assert.equal(device.deviceName, `KIOTA-${i}`);
        assert.equal(device.managedDeviceName, `kiota device ${i}`);
        assert.equal(device.managedDeviceOwnerType, "company");
        devices.push(device);
      }

      const state = (i) => ({
        odataType: SEED_TYPE,
        detectionState: i % 2 ? "fail" : "success",
        remediationState: i % 2 ? "success" : "skipped",
        lastStateUpdateDateTime: new Date("2025-03-01T10:00:00.123Z"),
        lastSyncDateTime: new Date("2025-03-01T08:00:00Z"),
        preRemediationDetectionScriptOutput: `output ${i}`,
        preRemediationDetectionScriptError: "",
        remediationScriptError: "",
        postRemediationDetectionScriptOutput: "",
        postRemediationDetectionScriptError: "",
        additionalData: {
          "managedDevice@odata.bind": `https://graph.microsoft.com/beta/deviceManagement/managedDevices('${devices[i].id}')`,
        },
      });

      // The seed: Create deviceRunStates, as Intune's reporting does.
      const seeded = await adapter.send(post(STATES, ids, state(1), serializeDeviceHealthScriptDeviceState),
        createDeviceHealthScriptDeviceStateFromDiscriminatorValue, ERRORS);
      assert.equal(seeded.id, `${script.id}:${devices[1].id}`);
      assert.equal(seeded.detectionState, "fail");
      assert.equal(seeded.lastStateUpdateDateTime.toISOString(), "2025-03-01T10:00:00.123Z");

      // The rest in one $batch: msgraph-sdk-core's BatchRequestContent makes the steps (ids, methods, URLs relative to
      // the adapter's base URL); postBatchFixed sends them and reads the answers (README, defect 3).
      const batch = new BatchRequestContent(adapter, ERRORS);
      const steps = {};
      for (const i of [0, 2, 3, 4, 5, 6]) {
        const step = batch.addBatchRequest(post(STATES, ids, state(i), serializeDeviceHealthScriptDeviceState));
        assert.equal(step.headers, undefined, "msgraph-sdk-core now copies the headers: drop postBatchFixed");
        step.headers = { "Content-Type": JSON_TYPE };
        steps[i] = step.id;
      }
      assert.ok(batch.getContent().requests.every((r) => r.url.startsWith("/deviceManagement/")), "relative URLs");
      assert.deepEqual(toJson(batch.getContent(), serializeBatchRequestBody).requests[0].body, {},
        "msgraph-sdk-core now serializes JSON bodies: drop postBatchFixed");
      const replies = await postBatchFixed(adapter, batch);
      const codes = await replies.getResponsesStatusCodes();
      for (const [i, id] of Object.entries(steps)) assert.equal(codes.get(id), 201, `batch item for device ${i}`);
      const parsed = replies.getParsableResponseById(steps[3], adapter.parseNodeFactory, createDeviceHealthScriptDeviceStateFromDiscriminatorValue);
      assert.equal(parsed.id, `${script.id}:${devices[3].id}`);
      assert.equal(parsed.preRemediationDetectionScriptOutput, "output 3");

      // $filter / $select / $expand / $count.
      const failing = await adapter.send(
        request(HttpMethod.GET, `${STATES}${LIST_QUERY}`, ids, {
          filter: "detectionState eq 'fail'", select: ["id", "detectionState"], expand: ["managedDevice($select=deviceName)"], count: true,
        }),
        createDeviceHealthScriptDeviceStateCollectionResponseFromDiscriminatorValue, ERRORS,
      );
      assert.equal(failing.odataCount, 3);
      assert.deepEqual(new Set(failing.value.map((s) => s.id)), new Set([1, 3, 5].map((i) => `${script.id}:${devices[i].id}`)));
      assert.ok(failing.value.every((s) => s.detectionState === "fail" && s.preRemediationDetectionScriptOutput === undefined), "$select");
      assert.deepEqual(new Set(failing.value.map((s) => s.managedDevice.deviceName)), new Set(["KIOTA-1", "KIOTA-3", "KIOTA-5"]));

      // Paging: pages of 3 through msgraph-sdk-core's PageIterator; the nextLinks on the server's http origin.
      const first = await adapter.send(request(HttpMethod.GET, `${STATES}${LIST_QUERY}`, ids, { top: 3 }),
        createDeviceHealthScriptDeviceStateCollectionResponseFromDiscriminatorValue, ERRORS);
      assert.equal(first.value.length, 3);
      assert.ok(first.odataNextLink?.startsWith(`${server.base}/`), first.odataNextLink);
      const seen = [];
      const pages = new PageIterator(adapter, first, (s) => { seen.push(s.id); return true; },
        createDeviceHealthScriptDeviceStateCollectionResponseFromDiscriminatorValue, ERRORS);
      await pages.iterate();
      assert.equal(pages.getPagingState(), "Complete");
      assert.equal(seen.length, 7);
      assert.deepEqual(new Set(seen), new Set(devices.map((d) => `${script.id}:${d.id}`)));

      const summary = await adapter.send(request(HttpMethod.GET, `${SCRIPT}/runSummary`, ids),
        createDeviceHealthScriptRunSummaryFromDiscriminatorValue, ERRORS);
      assert.equal(summary.issueDetectedDeviceCount, 3);
      assert.equal(summary.noIssueDetectedDeviceCount, 4);

      // Errors arrive as the SDK's ODataError, with Graph's fields.
      const missing = randomUUID();
      const notFound = await adapter.send(request(HttpMethod.GET, SCRIPT, { "deviceHealthScript%2Did": missing }),
        createDeviceHealthScriptFromDiscriminatorValue, ERRORS).then(() => null, (e) => e);
      assert.equal(notFound?.responseStatusCode, 404, notFound?.message);
      assert.equal(notFound.errorEscaped.code, "ResourceNotFound");
      assert.match(notFound.errorEscaped.innerError?.requestId ?? "", /^[0-9a-f-]{36}$/i);
      const badFilter = await adapter.send(request(HttpMethod.GET, `${STATES}${LIST_QUERY}`, ids, { filter: "detectionState eq" }),
        createDeviceHealthScriptDeviceStateCollectionResponseFromDiscriminatorValue, ERRORS).then(() => null, (e) => e);
      assert.equal(badFilter?.responseStatusCode, 400, badFilter?.message);
      assert.equal(badFilter.errorEscaped.code, "BadRequest");
      assert.ok(badFilter.message.length > 10, badFilter.message);
    });
  });
}
