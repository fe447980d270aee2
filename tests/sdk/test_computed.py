"""Computed views and functions through the SDK: runSummary (and $expand=runSummary), getRemediationHistory,
getRemediationSummary, global-script functions, the run-history extension route, a device's
deviceHealthScriptStates and initiateOnDemandProactiveRemediation (SPEC §2, §3.2 History, §3.4, §6)."""
from __future__ import annotations

import json
from datetime import date, datetime, timedelta, timezone

from msgraph_beta.generated.device_management.device_health_scripts.device_health_scripts_request_builder import (
    DeviceHealthScriptsRequestBuilder,
)
from msgraph_beta.generated.device_management.device_health_scripts.item.device_health_script_item_request_builder import (
    DeviceHealthScriptItemRequestBuilder,
)
from msgraph_beta.generated.device_management.managed_devices.item.initiate_on_demand_proactive_remediation.initiate_on_demand_proactive_remediation_post_request_body import (
    InitiateOnDemandProactiveRemediationPostRequestBody,
)
from msgraph_beta.generated.models.device_health_script_device_state import DeviceHealthScriptDeviceState
from msgraph_beta.generated.models.device_health_script_remediation_history import (
    DeviceHealthScriptRemediationHistory,
)
from msgraph_beta.generated.models.device_health_script_remediation_summary import (
    DeviceHealthScriptRemediationSummary,
)
from msgraph_beta.generated.models.device_health_script_run_summary import DeviceHealthScriptRunSummary
from msgraph_beta.generated.models.remediation_state import RemediationState
from msgraph_beta.generated.models.run_state import RunState

from _support import PRIVILEGED_SCOPE, SCOPES_RW, parse_graph_datetime, query_config, raw_items

D, R = RunState, RemediationState
UTC = timezone.utc
COUNTERS = [
    "no_issue_detected_device_count", "issue_detected_device_count", "detection_script_error_device_count",
    "detection_script_pending_device_count", "detection_script_not_applicable_device_count",
    "issue_remediated_device_count", "remediation_skipped_device_count", "issue_reoccurred_device_count",
    "remediation_script_error_device_count",
]


def _expected_summary(states: list[tuple[RunState, RemediationState]]) -> dict[str, int]:
    """SPEC §3.4, written out independently of the server."""
    c = dict.fromkeys(COUNTERS, 0)
    for det, rem in states:
        c["no_issue_detected_device_count"] += det == D.Success and rem != R.Success
        c["issue_detected_device_count"] += det == D.Fail
        c["detection_script_error_device_count"] += det == D.ScriptError
        c["detection_script_pending_device_count"] += det == D.Pending
        c["detection_script_not_applicable_device_count"] += det == D.NotApplicable
        c["issue_remediated_device_count"] += rem == R.Success
        c["remediation_skipped_device_count"] += rem == R.Skipped
        c["issue_reoccurred_device_count"] += rem == R.RemediationFailed
        c["remediation_script_error_device_count"] += rem == R.ScriptError
    return c


def _counts(summary: DeviceHealthScriptRunSummary) -> dict[str, int]:
    return {name: getattr(summary, name) for name in COUNTERS}


# (detection, remediation, bound to a device?) — every counter is hit, some rows hit two.
SUMMARY_ROWS = [
    (D.Success, R.Unknown, True),            # noIssue
    (D.Success, R.Skipped, True),            # noIssue + skipped
    (D.Success, R.Success, True),            # remediated (not noIssue)
    (D.Fail, R.Success, True),               # issueDetected + remediated
    (D.Fail, R.RemediationFailed, True),     # issueDetected + reoccurred
    (D.Fail, R.ScriptError, True),           # issueDetected + remediationScriptError
    (D.ScriptError, R.Unknown, True),
    (D.Pending, R.Unknown, True),
    (D.NotApplicable, R.Unknown, True),
    (D.Unknown, R.Unknown, True),            # counts nowhere
    (D.Fail, R.Skipped, False),              # unbound run state counts too
]


def test_run_summary_counts(api):
    script = api.create_script()
    base = datetime(2025, 4, 1, 8, 0, tzinfo=UTC)
    created = []
    for i, (det, rem, bound) in enumerate(SUMMARY_ROWS):
        device_id = api.create_device().id if bound else None
        created.append(api.create_state(script.id, device_id, detection_state=det, remediation_state=rem,
                                        last_state_update_date_time=base + timedelta(hours=i)))

    summary = api.run(api.script(script.id).run_summary.get())
    assert summary.id == script.id
    want = _expected_summary([(d, r) for d, r, _ in SUMMARY_ROWS])
    assert want == {
        "no_issue_detected_device_count": 2, "issue_detected_device_count": 4,
        "detection_script_error_device_count": 1, "detection_script_pending_device_count": 1,
        "detection_script_not_applicable_device_count": 1, "issue_remediated_device_count": 2,
        "remediation_skipped_device_count": 2, "issue_reoccurred_device_count": 1,
        "remediation_script_error_device_count": 1,
    }
    assert _counts(summary) == want
    assert summary.last_script_run_date_time == base + timedelta(hours=len(SUMMARY_ROWS) - 1)
    assert summary.issue_remediated_cumulative_device_count == 2

    # A remediated device regresses: current counts move, the cumulative count does not.
    api.run(api.state(script.id, created[3].id).patch(
        DeviceHealthScriptDeviceState(remediation_state=R.RemediationFailed)))
    rows = [(d, r) for d, r, _ in SUMMARY_ROWS]
    rows[3] = (D.Fail, R.RemediationFailed)
    summary = api.run(api.script(script.id).run_summary.get())
    assert _counts(summary) == _expected_summary(rows)
    assert summary.issue_remediated_device_count == 1 and summary.issue_reoccurred_device_count == 2
    assert summary.issue_remediated_cumulative_device_count == 2

    # Deleting a state drops it from the counts.
    api.run(api.state(script.id, created[0].id).delete())
    assert _counts(api.run(api.script(script.id).run_summary.get())) == _expected_summary(rows[1:])


def test_run_summary_of_script_without_states(api):
    script = api.create_script()
    summary = api.run(api.script(script.id).run_summary.get())
    assert summary.id == script.id
    assert _counts(summary) == dict.fromkeys(COUNTERS, 0)
    assert summary.issue_remediated_cumulative_device_count == 0
    assert summary.last_script_run_date_time is None


def test_expand_run_summary(api):
    busy = api.create_script()
    idle = api.create_script()
    for det, rem in ((D.Fail, R.Success), (D.Fail, R.ScriptError), (D.Success, R.Unknown)):
        api.create_state(busy.id, api.create_device().id, detection_state=det, remediation_state=rem)

    page = api.run(api.scripts.get(query_config(DeviceHealthScriptsRequestBuilder, expand=["runSummary"])))
    by_id = {s.id: s for s in page.value}
    assert set(by_id) == {busy.id, idle.id}
    s = by_id[busy.id].run_summary
    assert s is not None, "runSummary not expanded"
    assert s.id == busy.id
    assert (s.issue_detected_device_count, s.issue_remediated_device_count, s.remediation_script_error_device_count,
            s.no_issue_detected_device_count) == (2, 1, 1, 1)
    assert by_id[idle.id].run_summary is not None and by_id[idle.id].run_summary.issue_detected_device_count == 0

    one = api.run(api.script(busy.id).get(query_config(DeviceHealthScriptItemRequestBuilder, expand=["runSummary"])))
    assert one.run_summary is not None and one.run_summary.issue_detected_device_count == 2


# --- getRemediationHistory / getRemediationSummary ------------------------------------------------

def _history_scenario(api):
    """Four devices, two UTC days; per day each device counts once, by its last record of that day."""
    script = api.create_script()
    d1, d2, d3, d4 = (api.create_device().id for _ in range(4))
    t = lambda day, hour: datetime(2025, 3, day, hour, 0, tzinfo=UTC)  # noqa: E731
    s1 = api.create_state(script.id, d1, detection_state=D.Fail, remediation_state=R.Success,
                          last_state_update_date_time=t(1, 10))
    api.create_state(script.id, d2, detection_state=D.Success, remediation_state=R.Unknown,
                     last_state_update_date_time=t(1, 11))
    s3 = api.create_state(script.id, d3, detection_state=D.Fail, remediation_state=R.RemediationFailed,
                          last_state_update_date_time=t(1, 9))
    # d1's last record of 1 March is a detection script error
    api.run(api.state(script.id, s1.id).patch(DeviceHealthScriptDeviceState(
        detection_state=D.ScriptError, remediation_state=R.ScriptError, last_state_update_date_time=t(1, 12))))
    # d3 recovers late on 1 March (given as 2 March 01:00+02:00, i.e. 1 March 23:00Z: the day is the UTC day)
    api.run(api.state(script.id, s3.id).patch(DeviceHealthScriptDeviceState(
        detection_state=D.Success, remediation_state=R.Unknown,
        last_state_update_date_time=datetime(2025, 3, 2, 1, 0, tzinfo=timezone(timedelta(hours=2))))))
    api.run(api.state(script.id, s3.id).patch(DeviceHealthScriptDeviceState(last_state_update_date_time=t(2, 9))))
    api.create_state(script.id, d4, detection_state=D.Fail, remediation_state=R.Success,
                     last_state_update_date_time=t(2, 8))
    expected = {
        date(2025, 3, 1): (0, 2, 1),  # remediated, noIssue, detectFailed: d2, d3 (23:00Z) no issue; d1 failed
        date(2025, 3, 2): (1, 1, 0),  # d4 remediated; d3 no issue
    }
    return script, expected, (d1, d2, d3, d4)


def test_get_remediation_history_via_sdk_function_builder(api):
    before = datetime.now(UTC) - timedelta(minutes=5)
    script, expected, _ = _history_scenario(api)

    history = api.run(api.script(script.id).get_remediation_history.get())  # GET …/getRemediationHistory()
    assert isinstance(history, DeviceHealthScriptRemediationHistory)
    assert history.history_data is not None, (
        "SDK model has no historyData; the body was parsed into additional_data: "
        f"{sorted(history.additional_data)}"
    )
    got = {h.date: (h.remediated_device_count, h.no_issue_device_count, h.detect_failed_device_count)
           for h in history.history_data}
    assert got == expected
    assert history.last_modified_date_time is not None
    assert before <= history.last_modified_date_time <= datetime.now(UTC) + timedelta(minutes=5)


def _complex_result(body: dict) -> dict:
    """A function's complex result (docs/decisions.md): its properties at the top level, which the SDK reads,
    and the same object under `value` (SPEC §2, Microsoft's docs). Returns the properties."""
    top = {k: v for k, v in body.items() if k != "value" and "@" not in k}
    assert top, f"no properties at the top level (the SDK reads nothing): {body}"
    assert isinstance(body.get("value"), dict), f"no 'value' object: {body}"
    assert {k: v for k, v in body["value"].items() if "@" not in k} == top, f"top level and value differ: {body}"
    return top


def test_get_remediation_history_raw_with_and_without_parens(api):
    script, expected, _ = _history_scenario(api)
    bodies = []
    for suffix in ("getRemediationHistory()", "getRemediationHistory"):
        r = api.http.get(f"/deviceManagement/deviceHealthScripts/{script.id}/{suffix}")
        assert r.status_code == 200, f"{suffix}: {r.status_code} {r.text}"
        body = r.json()
        value = _complex_result(body)
        bodies.append(value)
        got = {date.fromisoformat(h["date"]): (h["remediatedDeviceCount"], h["noIssueDeviceCount"],
                                               h["detectFailedDeviceCount"]) for h in value["historyData"]}
        assert got == expected, suffix
        assert all(len(h["date"]) == 10 for h in value["historyData"]), "Edm.Date is YYYY-MM-DD"
    assert bodies[0] == bodies[1]

    empty = api.create_script()
    r = api.http.get(f"/deviceManagement/deviceHealthScripts/{empty.id}/getRemediationHistory")
    value = _complex_result(r.json())
    assert value["historyData"] == [] and value["lastModifiedDateTime"] is None, value


def test_get_remediation_summary_via_sdk_function_builder(api):
    script, _, (d1, d2, d3, d4) = _history_scenario(api)  # d4 remediated in this script
    other = api.create_script()
    api.create_state(other.id, d4, detection_state=D.Fail, remediation_state=R.Success)  # same device again
    api.create_state(other.id, d2, detection_state=D.Fail, remediation_state=R.Success)
    api.create_script()  # a third script without states

    summary = api.run(api.scripts.get_remediation_summary.get())  # GET …/getRemediationSummary()
    assert isinstance(summary, DeviceHealthScriptRemediationSummary)
    assert (summary.script_count, summary.remediated_device_count) == (3, 2), (
        f"typed: {summary.script_count}, {summary.remediated_device_count}; additional_data: {summary.additional_data}"
    )

    for suffix in ("getRemediationSummary()", "getRemediationSummary"):
        r = api.http.get(f"/deviceManagement/deviceHealthScripts/{suffix}")
        assert r.status_code == 200, f"{suffix}: {r.status_code} {r.text}"
        value = _complex_result(r.json())
        assert (value["scriptCount"], value["remediatedDeviceCount"]) == (3, 2), value


def _send_bytes(api, request_info) -> bytes:
    return api.run(api.adapter.send_primitive_async(request_info, "bytes", {}))


def test_global_scripts_functions(api):
    builder = api.scripts.are_global_scripts_available
    # The SDK's own .get() cannot deserialize an enum primitive (kiota-http 1.16 raises TypeError for
    # 'globalDeviceHealthScriptState'), so send the builder's request and read the body.
    def state():
        body = json.loads(_send_bytes(api, builder.to_get_request_information()))
        return body["value"]

    assert state() == "notConfigured"
    assert api.run(api.scripts.enable_global_scripts.post()) is None  # 204
    assert state() == "enabled"
    r = api.http.get("/deviceManagement/deviceHealthScripts/areGlobalScriptsAvailable")
    assert r.status_code == 200 and r.json()["value"] == "enabled", r.text


# --- run history extension route -----------------------------------------------------------------

def test_run_history_route(api):
    script = api.create_script()
    device = api.create_device()
    t1 = datetime(2025, 5, 1, 6, 0, tzinfo=UTC)
    t2 = datetime(2025, 5, 2, 6, 0, tzinfo=UTC)
    state = api.create_state(script.id, device.id, detection_state=D.Fail, remediation_state=R.Unknown,
                             last_state_update_date_time=t1, pre_remediation_detection_script_output="disk 91%")
    item = api.state(script.id, state.id)
    patches = [
        (DeviceHealthScriptDeviceState(remediation_state=R.Success), True),
        (DeviceHealthScriptDeviceState(post_remediation_detection_script_output="disk 40%"), False),  # outputs only
        (DeviceHealthScriptDeviceState(detection_state=D.Fail), False),                           # same value
        (DeviceHealthScriptDeviceState(last_state_update_date_time=t2), True),
        (DeviceHealthScriptDeviceState(detection_state=D.Success, remediation_state=R.Unknown), True),
    ]
    for body, _ in patches:
        patched = api.run(item.patch(body))  # 200 with the updated state
        assert type(patched) is DeviceHealthScriptDeviceState and patched.id == state.id, patched
    want = 1 + sum(changes for _, changes in patches)

    path = f"/deviceManagement/deviceHealthScripts/{script.id}/deviceRunStates/{state.id}/history"
    r = api.http.get(path, params={"$orderby": "recordedDateTime", "$count": "true"})
    records = raw_items(r)
    assert r.json().get("@odata.count") == want, r.json().get("@odata.count")
    assert len(records) == want, json.dumps(records, indent=1)[:3000]
    assert [(x["detectionState"], x["remediationState"], parse_graph_datetime(x["lastStateUpdateDateTime"]))
            for x in records] == [
        ("fail", "unknown", t1),
        ("fail", "success", t1),
        ("fail", "success", t2),
        ("success", "unknown", t2),
    ]
    assert all(x.get("managedDeviceId") == device.id for x in records), records
    assert records[0]["preRemediationDetectionScriptOutput"] == "disk 91%"
    assert len({x["id"] for x in records}) == want
    stamps = [parse_graph_datetime(x["recordedDateTime"]) for x in records]
    assert stamps == sorted(stamps)

    # the usual query options
    fails = raw_items(api.http.get(path, params={"$filter": "detectionState eq 'fail'", "$select": "detectionState"}))
    assert len(fails) == 3 and all(set(k for k in x if "@" not in k) == {"id", "detectionState"} for x in fails)
    page = api.http.get(path, params={"$top": "2", "$orderby": "recordedDateTime desc"}).json()
    assert len(page["value"]) == 2 and page.get("@odata.nextLink"), page
    assert [x["detectionState"] for x in page["value"]] == ["success", "fail"]


# --- a device's script states, on-demand runs ------------------------------------------------------

def test_device_health_script_states_via_sdk(api):
    device = api.create_device(device_name="KIOSK-07", os_version="10.0.26100.1742",
                               user_principal_name="ada@contoso.example")
    other = api.create_device(device_name="OTHER")
    disk = api.create_script(display_name="Disk space")
    spool = api.create_script(display_name="Print spooler")
    api.create_state(disk.id, device.id, detection_state=D.Fail, remediation_state=R.Success,
                     pre_remediation_detection_script_output="disk 91%")
    api.create_state(spool.id, device.id, detection_state=D.Success)
    api.create_state(disk.id, other.id, detection_state=D.Pending)

    page = api.run(api.device(device.id).device_health_script_states.get())
    by_policy = {s.policy_id: s for s in page.value}
    assert set(by_policy) == {disk.id, spool.id}
    d = by_policy[disk.id]
    assert d.policy_name == "Disk space"
    assert d.device_name == "KIOSK-07" and d.device_id == device.id
    assert d.os_version == "10.0.26100.1742" and d.user_name == "ada@contoso.example"
    assert d.detection_state == D.Fail and d.remediation_state == R.Success
    assert d.pre_remediation_detection_script_output == "disk 91%"
    assert d.id == f"{disk.id}:{device.id}"
    s = by_policy[spool.id]
    assert s.policy_name == "Print spooler" and s.detection_state == D.Success and s.device_name == "KIOSK-07"

    assert api.run(api.device(other.id).device_health_script_states.get()).value[0].detection_state == D.Pending
    bare = api.create_device()
    assert api.run(api.device(bare.id).device_health_script_states.get()).value == []


def test_initiate_on_demand_remediation_needs_privileged_scope(api, tenant_factory):
    script = api.create_script()
    device = api.create_device()
    body = InitiateOnDemandProactiveRemediationPostRequestBody(script_policy_id=script.id)

    err = api.expect_error(api.device(device.id).initiate_on_demand_proactive_remediation.post(body), 403, "Forbidden")
    assert PRIVILEGED_SCOPE in err.error.message, err.error.message

    priv = tenant_factory(tenant=api.tenant, scopes=SCOPES_RW + [PRIVILEGED_SCOPE])
    assert priv.run(priv.device(device.id).initiate_on_demand_proactive_remediation.post(body)) is None  # 204
    r = priv.http.post(f"/deviceManagement/managedDevices/{device.id}/initiateOnDemandProactiveRemediation",
                       json={"scriptPolicyId": script.id})
    assert r.status_code == 204 and r.content == b"", r.text

    pending = priv.http.get(f"/deviceManagement/managedDevices/{device.id}/pendingOnDemandRemediations")
    assert pending.status_code == 200, pending.text
    assert [p["scriptPolicyId"] for p in pending.json()["value"]] == [script.id], pending.text

    # a missing device (the addressed resource) is a 404; a body naming a missing script is a 400 naming it
    priv.expect_error(priv.device("00000000-0000-0000-0000-000000000002").initiate_on_demand_proactive_remediation.post(
        body), 404, "ResourceNotFound")
    err = priv.expect_error(priv.device(device.id).initiate_on_demand_proactive_remediation.post(
        InitiateOnDemandProactiveRemediationPostRequestBody(script_policy_id="00000000-0000-0000-0000-000000000001")),
        400, "BadRequest")
    assert "scriptPolicyId" in err.error.message, err.error.message
