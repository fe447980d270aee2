"""JSON $batch through msgraph-core's batch helpers, and $metadata (SPEC §2, §5)."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import httpx
from kiota_serialization_json.json_serialization_writer import JsonSerializationWriter
from msgraph_beta.generated.device_management.device_health_scripts.item.device_run_states.device_run_states_request_builder import (
    DeviceRunStatesRequestBuilder,
)
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.device_health_script_device_state import DeviceHealthScriptDeviceState
from msgraph_beta.generated.models.remediation_state import RemediationState
from msgraph_beta.generated.models.run_state import RunState
from msgraph_core.requests.batch_request_builder import BatchRequestBuilder
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_item import BatchRequestItem
from msgraph_core.requests.batch_response_content import BatchResponseContent

from _support import bind_url, query_config


def _mixed_items(api, script_id, device_id):
    """Unmodified msgraph-core items (msgraph-core 1.5.2 writes the dependency list as `"depends_on"`, Graph's
    member is `dependsOn`; remediate reads both, docs/decisions.md). BatchRequestContent wants dependencies
    added first. 1 POST a run state · 2 GET the script's runSummary after 1 · 3 a bad request · 4 GET after 3 (→ 424)."""
    body = DeviceHealthScriptDeviceState(detection_state=RunState.Fail, remediation_state=RemediationState.Success)
    body.additional_data = {"managedDevice@odata.bind": bind_url(device_id)}
    post = BatchRequestItem(api.states(script_id).to_post_request_information(body), id="1")
    summary = BatchRequestItem(api.script(script_id).run_summary.to_get_request_information(), id="2",
                               depends_on=["1"])
    bad = BatchRequestItem(api.states(script_id).to_get_request_information(
        query_config(DeviceRunStatesRequestBuilder, filter="detectionState eq")), id="3")
    after_bad = BatchRequestItem(api.device(device_id).to_get_request_information(), id="4", depends_on=["3"])
    return [post, summary, bad, after_bad]


def _post_batch(api, items) -> BatchResponseContent:
    for item in items:
        # BatchRequestItem keeps the request's absolute URL once the adapter has set the base URL; Graph
        # (and remediate) want it relative (msgraph-sdk-python#1015). set_url is msgraph-core's own fix-up.
        item.set_url(item.url)
        assert "://" not in item.url, item.url
    content = BatchRequestContent({item.id: item for item in items})
    response = api.run(BatchRequestBuilder(api.adapter, error_map={"XXX": ODataError}).post(content))
    assert isinstance(response, BatchResponseContent)
    return response


def _serialized(items) -> bytes:
    """The JSON msgraph-core puts on the wire for these items."""
    writer = JsonSerializationWriter()
    BatchRequestContent({item.id: item for item in items}).serialize(writer)
    return writer.get_serialized_content()


def test_batch_sdk_helpers_unmodified(api):
    """msgraph-core's BatchRequestItem as shipped (it always writes `"depends_on": [...]`); no dependencies used."""
    script = api.create_script()
    device = api.create_device()
    body = DeviceHealthScriptDeviceState(detection_state=RunState.Success)
    body.additional_data = {"managedDevice@odata.bind": bind_url(device.id)}
    items = [
        BatchRequestItem(api.states(script.id).to_post_request_information(body), id="post"),
        BatchRequestItem(api.device(device.id).to_get_request_information(), id="device"),
        BatchRequestItem(api.script("00000000-0000-0000-0000-00000000dead").to_get_request_information(), id="missing"),
    ]
    response = _post_batch(api, items)
    assert response.get_response_status_codes() == {"post": 201, "device": 200, "missing": 404}
    state = api.run(api.state(script.id, f"{script.id}:{device.id}").get())
    assert state.detection_state == RunState.Success


def test_batch_sdk_helpers_unmodified_with_depends_on(api):
    script = api.create_script()
    device = api.create_device()
    items = _mixed_items(api, script.id, device.id)
    assert b'"depends_on"' in _serialized(items), "msgraph-core no longer sends depends_on; update the comment"
    response = _post_batch(api, items)

    assert response.get_response_status_codes() == {"1": 201, "2": 200, "3": 400, "4": 424}
    for rid, item in response.responses.items():
        assert item.id == rid
        assert item.headers, f"response {rid} has no headers"
    assert "json" in (response.get_response_by_id("2").content_type or "")
    # 4 → 424 shows that `depends_on` was read. (Request 2's body, which shows the order, is checked on the wire
    # in test_batch_raw_bodies_and_order: msgraph-core 1.5.2's BatchResponseContent.response_body hands kiota a
    # BytesIO where it wants bytes and cannot deserialize any item.)

    # The POST ran exactly once.
    states = api.run(api.states(script.id).get()).value
    assert [s.id for s in states] == [f"{script.id}:{device.id}"]


def test_batch_raw_bodies_and_order(api):
    """The same mixed batch on the wire: bodies of every response."""
    script = api.create_script()
    device = api.create_device()
    bad = _mixed_items(api, script.id, device.id)[2]
    bad.set_url(bad.url)
    # request 2 listed first: dependsOn, not position, orders execution
    payload = {"requests": [
        {"id": "2", "method": "GET", "url": f"/deviceManagement/deviceHealthScripts/{script.id}/runSummary",
         "dependsOn": ["1"]},
        {"id": "1", "method": "POST", "url": f"/deviceManagement/deviceHealthScripts/{script.id}/deviceRunStates",
         "headers": {"Content-Type": "application/json"},
         "body": {"detectionState": "fail", "remediationState": "success",
                  "managedDevice@odata.bind": bind_url(device.id)}},
        {"id": "3", "method": "GET", "url": bad.url},
        {"id": "4", "method": "GET", "url": f"/deviceManagement/managedDevices/{device.id}", "dependsOn": ["3"]},
    ]}
    r = api.http.post("/$batch", json=payload)
    assert r.status_code == 200, r.text
    responses = {x["id"]: x for x in r.json()["responses"]}
    assert {k: v["status"] for k, v in responses.items()} == {"1": 201, "2": 200, "3": 400, "4": 424}
    assert responses["1"]["body"]["id"] == f"{script.id}:{device.id}"
    summary = responses["2"]["body"]
    assert summary["id"] == script.id
    assert (summary["issueDetectedDeviceCount"], summary["issueRemediatedDeviceCount"]) == (1, 1), summary
    assert responses["3"]["body"]["error"]["code"] == "BadRequest"
    assert "error" in responses["4"]["body"], responses["4"]


def test_metadata_without_token(server):
    r = httpx.get(server.base + "/$metadata", timeout=30.0)
    assert r.status_code == 200, r.text[:500]
    assert "xml" in r.headers.get("content-type", ""), r.headers.get("content-type")
    text = r.text
    assert 'EntityType Name="deviceHealthScriptDeviceState"' in text
    root = ET.fromstring(r.content)  # well-formed
    names = {el.get("Name") for el in root.iter() if el.tag.endswith("}EntityType")}
    assert {"deviceHealthScript", "deviceHealthScriptDeviceState", "deviceHealthScriptRunSummary",
            "deviceHealthScriptAssignment", "managedDevice"} <= names, sorted(names)
