"""Errors as the SDK surfaces them (ODataError), and raw error bodies (SPEC §2, §3.2, §6, §10)."""
from __future__ import annotations

import uuid

import httpx
import pytest
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph_beta.generated.device_management.device_health_scripts.device_health_scripts_request_builder import (
    DeviceHealthScriptsRequestBuilder,
)
from msgraph_beta.generated.models.device_health_script import DeviceHealthScript
from msgraph_beta.generated.models.device_health_script_device_state import (
    DeviceHealthScriptDeviceState,
)
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.run_state import RunState

from _support import SCOPES_READ_ONLY, UTC_DATETIME_RE, assert_error_body, bind_url, make_api


def test_404_unknown_script(api):
    missing = str(uuid.uuid4())
    err = api.expect_error(api.script(missing).get(), 404, "ResourceNotFound")
    inner = err.error.inner_error
    assert inner is not None, "ODataError without innerError"
    assert inner.request_id, "innerError.request-id missing"
    assert inner.date is not None, "innerError.date missing or not a DateTimeOffset"

    r = api.http.get(f"/deviceManagement/deviceHealthScripts/{missing}")
    e = assert_error_body(r, 404, "ResourceNotFound")
    assert UTC_DATETIME_RE.match(e["innerError"]["date"]), e["innerError"]["date"]

    api.expect_error(api.script(missing).patch(DeviceHealthScript(description="x")), 404, "ResourceNotFound")
    api.expect_error(api.script(missing).delete(), 404, "ResourceNotFound")
    api.expect_error(api.device(missing).get(), 404, "ResourceNotFound")


def test_403_read_only_token_cannot_write(api, tenant_factory):
    existing = api.create_script(display_name="existing")
    reader = tenant_factory(tenant=api.tenant, scopes=SCOPES_READ_ONLY)

    # reads are allowed
    page = reader.run(reader.scripts.get())
    assert [s.id for s in page.value] == [existing.id]
    assert reader.run(reader.script(existing.id).get()).display_name == "existing"

    err = reader.expect_error(
        reader.scripts.post(DeviceHealthScript(display_name="nope", detection_script_content=b"exit 0")),
        403,
        "Forbidden",
    )
    assert "DeviceManagementScripts.ReadWrite.All" in err.error.message, (
        f"403 does not name the permission that would allow the call: {err.error.message!r}"
    )
    reader.expect_error(reader.script(existing.id).patch(DeviceHealthScript(display_name="x")), 403, "Forbidden")
    reader.expect_error(reader.script(existing.id).delete(), 403, "Forbidden")
    reader.expect_error(
        reader.states(existing.id).post(DeviceHealthScriptDeviceState(detection_state=RunState.Success)),
        403,
        "Forbidden",
    )

    # nothing changed
    after = api.run(api.scripts.get())
    assert [(s.id, s.display_name) for s in after.value] == [(existing.id, "existing")]
    assert api.run(api.states(existing.id).get()).value == []


def test_409_duplicate_run_state(api):
    script = api.create_script()
    device = api.create_device()
    first = api.create_state(script.id, device.id, detection_state=RunState.Success)

    body = DeviceHealthScriptDeviceState(detection_state=RunState.Fail)
    body.additional_data = {"managedDevice@odata.bind": bind_url(device.id)}
    err = api.expect_error(api.states(script.id).post(body), 409, "Conflict")
    assert first.id in err.error.message, f"409 message does not name the existing id: {err.error.message!r}"

    # the first state is untouched
    got = api.run(api.state(script.id, first.id).get())
    assert got.detection_state == RunState.Success
    assert len(api.run(api.states(script.id).get()).value) == 1


def test_400_bad_values_through_sdk(api):
    script = api.create_script()
    body = DeviceHealthScriptDeviceState(detection_state=RunState.Success)
    body.additional_data = {"detectionOutcome": "ok"}  # not a property of the type
    err = api.expect_error(api.states(script.id).post(body), 400, "BadRequest")
    assert "detectionOutcome" in err.error.message, err.error.message

    bad_enum = DeviceHealthScriptDeviceState()
    bad_enum.additional_data = {"remediationState": "Remediated"}
    err = api.expect_error(api.states(script.id).post(bad_enum), 400, "BadRequest")
    assert "remediationState" in err.error.message, err.error.message

    bad_date = DeviceHealthScriptDeviceState()
    bad_date.additional_data = {"lastSyncDateTime": "2025-03-01T10:00:00"}  # no zone offset
    err = api.expect_error(api.states(script.id).post(bad_date), 400, "BadRequest")
    assert "lastSyncDateTime" in err.error.message, err.error.message

    assert api.run(api.states(script.id).get()).value == []


def test_400_wrong_json_types_raw(api):
    script = api.create_script()
    url = f"/deviceManagement/deviceHealthScripts/{script.id}/deviceRunStates"
    for body, prop in (
        ({"detectionState": None}, "detectionState"),  # null for a non-nullable property
        ({"preRemediationDetectionScriptOutput": 42}, "preRemediationDetectionScriptOutput"),
        ({"assignmentFilterIds": "not-a-list"}, "assignmentFilterIds"),
        ({"@odata.type": "#microsoft.graph.managedDevice"}, "@odata.type"),
    ):
        r = api.http.post(url, json=body)
        err = assert_error_body(r, 400, "BadRequest")
        assert prop in err["message"], f"{body}: message does not name {prop}: {err['message']!r}"
    r = api.http.post(url, content=b'{"detectionState": "success",', headers={"Content-Type": "application/json"})
    assert_error_body(r, 400, "BadRequest")
    assert api.http.get(url).json()["value"] == []


def test_401_garbage_token(server, loop):
    bad = make_api(server, loop, token="garbage.token.value")
    try:
        bad.expect_error(bad.scripts.get(), 401, "InvalidAuthenticationToken")
        r = bad.http.get("/deviceManagement/deviceHealthScripts")
        assert_error_body(r, 401, "InvalidAuthenticationToken")
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer"), r.headers
        r = httpx.get(server.base + "/deviceManagement/deviceHealthScripts", timeout=30)  # no token
        assert_error_body(r, 401, "InvalidAuthenticationToken")
        assert r.headers.get("www-authenticate", "").lower().startswith("bearer"), r.headers
    finally:
        bad.close()


def test_401_token_signed_by_another_key(api, tmp_path):
    """A well-formed token from a different data dir (different key) is rejected."""
    from _support import SCOPES_RW, Server

    other = Server(api.server.binary, "other", tmp_path, None)
    foreign = other.token(api.tenant, SCOPES_RW)
    r = api.http.get(
        "/deviceManagement/deviceHealthScripts", headers={"Authorization": f"Bearer {foreign}"}
    )
    assert_error_body(r, 401, "InvalidAuthenticationToken")


def test_search_is_400(api):
    cfg = RequestConfiguration(
        query_parameters=DeviceHealthScriptsRequestBuilder.DeviceHealthScriptsRequestBuilderGetQueryParameters(
            search='"spooler"'
        )
    )
    err = api.expect_error(api.scripts.get(cfg), 400, "BadRequest")
    assert "search" in err.error.message.lower(), err.error.message
    r = api.http.get("/deviceManagement/deviceHealthScripts", params={"$search": "spooler"})
    assert_error_body(r, 400, "BadRequest")


def test_unknown_segment_is_400(api):
    r = api.http.get("/deviceManagement/deviceHealthScriptz")
    err = assert_error_body(r, 400, "BadRequest")
    assert err["message"] == "Resource not found for the segment 'deviceHealthScriptz'.", err["message"]


def test_405_415_413(api):
    r = api.http.put("/deviceManagement/deviceHealthScripts", json={})
    assert_error_body(r, 405, "MethodNotAllowed")

    script = api.create_script()
    url = f"/deviceManagement/deviceHealthScripts/{script.id}/deviceRunStates"
    r = api.http.post(url, content=b'{"detectionState":"success"}', headers={"Content-Type": "text/plain"})
    assert_error_body(r, 415, "UnsupportedMediaType")
    r = api.http.post(url, content=b'{"detectionState":"success"}')  # no Content-Type at all
    assert "content-type" not in r.request.headers
    assert_error_body(r, 415, "UnsupportedMediaType")

    big = b'{"preRemediationDetectionScriptOutput":"' + b"x" * (4 * 1024 * 1024 + 16) + b'"}'
    r = api.http.post(url, content=big, headers={"Content-Type": "application/json"})
    assert_error_body(r, 413, "RequestEntityTooLarge")
    assert api.http.get(url).json()["value"] == []


def test_output_over_64k_is_400_not_truncated(api):
    script = api.create_script()
    url = f"/deviceManagement/deviceHealthScripts/{script.id}/deviceRunStates"
    r = api.http.post(url, json={"remediationScriptError": "e" * (64 * 1024 + 1)})
    err = assert_error_body(r, 400, "BadRequest")
    assert "remediationScriptError" in err["message"], err["message"]
    assert api.http.get(url).json()["value"] == []
    # exactly at the limit is fine and is stored whole
    r = api.http.post(url, json={"remediationScriptError": "e" * (64 * 1024)})
    assert r.status_code == 201, r.text[:300]
    sid = r.json()["id"]
    assert len(api.run(api.state(script.id, sid).get()).remediation_script_error) == 64 * 1024
