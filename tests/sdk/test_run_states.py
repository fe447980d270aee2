"""deviceRunStates: the seed (Create deviceRunStates) and the item routes (SPEC §3.2, §11)."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import urljoin

from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph_beta.generated.device_management.device_health_scripts.item.device_run_states.device_run_states_request_builder import (
    DeviceRunStatesRequestBuilder,
)
from msgraph_beta.generated.models.device_health_script_device_state import (
    DeviceHealthScriptDeviceState,
)
from msgraph_beta.generated.models.remediation_state import RemediationState
from msgraph_beta.generated.models.run_state import RunState
from msgraph_core.tasks.page_iterator import PageIterator

from _support import (
    GRAPH_CONTENT_TYPE,
    MIN_DATETIME,
    SEED_ODATA_TYPE,
    STATE_JSON_PROPERTIES,
    STATE_ODATA_TYPE,
    STATE_WRITABLE,
    UTC_DATETIME_RE,
    bind_url,
)

PLUS2 = timezone(timedelta(hours=2))
MINUS8 = timezone(timedelta(hours=-8))


def _seed_model() -> DeviceHealthScriptDeviceState:
    """All eleven writable properties with real values (what a reporting agent sends)."""
    return DeviceHealthScriptDeviceState(
        detection_state=RunState.Fail,
        remediation_state=RemediationState.Success,
        last_state_update_date_time=datetime(2025, 3, 1, 10, 0, 0, 123456, tzinfo=PLUS2),
        expected_state_update_date_time=datetime(2025, 3, 2, 1, 30, 0, tzinfo=MINUS8),
        last_sync_date_time=datetime(2025, 3, 1, 7, 59, 58, 500000, tzinfo=timezone.utc),
        pre_remediation_detection_script_output=(
            "Checking service 'Spooler'…\r\nStatus: Stopped\r\nGrüße aus 東京 — issue found ✗\r\n"
        ),
        pre_remediation_detection_script_error=(
            "WARNUNG: Zugriff verweigert\r\n    + CategoryInfo : PermissionDenied\r\n"
        ),
        remediation_script_error=(
            "Start-Service : Der Dienst \"Spooler\" konnte nicht gestartet werden.\r\n"
            "In Zeile:1 Zeichen:1\r\n+ Start-Service Spooler\r\n+ ~~~~~~~~~~~~~\r\n"
        ),
        post_remediation_detection_script_output="Status: Running\r\n✔ remediated 🎉",
        post_remediation_detection_script_error='tab\tseparated\nquote " backslash \\ end',
        assignment_filter_ids=["9d8c3f3e-2d6a-4b0f-8a59-5c7e1f0a2b11"],
    )


def _assert_same_state(actual: DeviceHealthScriptDeviceState, expected: DeviceHealthScriptDeviceState):
    for name in STATE_WRITABLE:
        a, e = getattr(actual, name), getattr(expected, name)
        assert a == e, f"{name}: sent {e!r}, got {a!r}"  # aware datetimes compare as instants


def test_seed_create_via_sdk(api):
    script = api.create_script()
    device = api.create_device()
    body = _seed_model()
    body.additional_data = {"managedDevice@odata.bind": bind_url(device.id)}

    created = api.run(api.states(script.id).post(body))

    assert created.id == f"{script.id}:{device.id}"
    _assert_same_state(created, _seed_model())
    for name in ("last_state_update_date_time", "expected_state_update_date_time", "last_sync_date_time"):
        assert getattr(created, name).utcoffset() == timedelta(0), f"{name} not returned in UTC"
    # Minimal metadata: no @odata.type on the entity; the SDK deserializes the declared type.
    assert type(created) is DeviceHealthScriptDeviceState, type(created)
    assert created.odata_type in (None, STATE_ODATA_TYPE), created.odata_type

    got = api.run(api.state(script.id, created.id).get())
    assert got.id == created.id
    _assert_same_state(got, _seed_model())


def test_seed_raw_request(api):
    """The seed's request as a client sends it: its headers, its @odata.type, real values."""
    script = api.create_script()
    device = api.create_device()
    body = {
        "@odata.type": SEED_ODATA_TYPE,
        "managedDevice@odata.bind": bind_url(device.id),
        "detectionState": "fail",
        "lastStateUpdateDateTime": "2025-03-01T10:00:00.1234567+02:00",
        "expectedStateUpdateDateTime": "2025-03-02T00:00:00.0000000-08:00",
        "lastSyncDateTime": "2025-03-01T07:59:58.5000000Z",
        "preRemediationDetectionScriptOutput": "Status: Stopped\r\nGrüße — 東京",
        "preRemediationDetectionScriptError": "",
        "remediationScriptError": "Access denied\r\n",
        "postRemediationDetectionScriptOutput": "Status: Running",
        "postRemediationDetectionScriptError": "none",
        "remediationState": "success",
    }
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    r = api.http.post(
        f"/deviceManagement/deviceHealthScripts/{script.id}/deviceRunStates",
        content=payload,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api.token}"},
    )
    assert r.status_code == 201, r.text
    assert r.headers.get("content-type") == GRAPH_CONTENT_TYPE
    out = r.json()
    assert "@odata.type" not in out, out  # the declared type (minimal metadata, as Graph)
    assert "@odata.context" in out
    for prop in STATE_JSON_PROPERTIES:
        assert prop in out, f"response lacks {prop}: {out}"
    assert out["id"] == f"{script.id}:{device.id}"
    assert out["detectionState"] == "fail"
    assert out["remediationState"] == "success"
    # Same instants, in UTC with Z, 7 digits max, trailing zeros trimmed.
    assert out["lastStateUpdateDateTime"] == "2025-03-01T08:00:00.1234567Z"
    assert out["expectedStateUpdateDateTime"] == "2025-03-02T08:00:00Z"
    assert out["lastSyncDateTime"] == "2025-03-01T07:59:58.5Z"
    assert out["preRemediationDetectionScriptOutput"] == "Status: Stopped\r\nGrüße — 東京"
    assert out["preRemediationDetectionScriptError"] == ""
    assert out["remediationScriptError"] == "Access denied\r\n"
    assert out["postRemediationDetectionScriptOutput"] == "Status: Running"
    assert out["postRemediationDetectionScriptError"] == "none"

    location = r.headers.get("location")
    assert location, "201 without a Location header"
    loc_url = urljoin(str(r.request.url), location)
    g = api.http.get(loc_url)
    assert g.status_code == 200, g.text
    got = g.json()
    assert got["id"] == out["id"]
    for prop in STATE_JSON_PROPERTIES:
        assert got[prop] == out[prop], f"{prop}: POST said {out[prop]!r}, GET Location says {got[prop]!r}"


def test_defaults_when_omitted(api):
    script = api.create_script()
    device = api.create_device()
    r = api.http.post(
        f"/deviceManagement/deviceHealthScripts/{script.id}/deviceRunStates",
        json={"managedDevice@odata.bind": bind_url(device.id)},
    )
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["detectionState"] == "unknown"
    assert out["remediationState"] == "unknown"
    assert out["lastStateUpdateDateTime"] == "0001-01-01T00:00:00Z"
    assert out["lastSyncDateTime"] == "0001-01-01T00:00:00Z"
    assert out["expectedStateUpdateDateTime"] is None
    assert out["preRemediationDetectionScriptOutput"] is None

    got = api.run(api.state(script.id, out["id"]).get())
    assert got.detection_state == RunState.Unknown
    assert got.remediation_state == RemediationState.Unknown
    assert got.last_state_update_date_time == MIN_DATETIME
    assert got.last_sync_date_time == MIN_DATETIME
    assert got.expected_state_update_date_time is None


def test_seed_literal_placeholder_body_is_rejected(api):
    """The seed's example body verbatim ("String", "String (timestamp)"): 400, nothing stored."""
    script = api.create_script()
    seed_body = (
        "{\n"
        '  "@odata.type": "#microsoft.management.services.api.deviceHealthScriptDeviceState",\n'
        '  "detectionState": "String",\n'
        '  "lastStateUpdateDateTime": "String (timestamp)",\n'
        '  "expectedStateUpdateDateTime": "String (timestamp)",\n'
        '  "lastSyncDateTime": "String (timestamp)",\n'
        '  "preRemediationDetectionScriptOutput": "String",\n'
        '  "preRemediationDetectionScriptError": "String",\n'
        '  "remediationScriptError": "String",\n'
        '  "postRemediationDetectionScriptOutput": "String",\n'
        '  "postRemediationDetectionScriptError": "String",\n'
        '  "remediationState": "String"\n'
        "}"
    )
    r = api.http.post(
        f"/deviceManagement/deviceHealthScripts/{script.id}/deviceRunStates",
        content=seed_body.encode(),
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "BadRequest"
    offending = [
        "detectionState",
        "remediationState",
        "lastStateUpdateDateTime",
        "expectedStateUpdateDateTime",
        "lastSyncDateTime",
    ]
    assert any(p in err["message"] for p in offending), f"message names no offending property: {err['message']!r}"

    page = api.run(api.states(script.id).get())
    assert page.value == []
    assert api.http.get(f"/deviceManagement/deviceHealthScripts/{script.id}/deviceRunStates").json()["value"] == []


def test_bind_any_host_and_relative_path(api):
    device = api.create_device()
    s1 = api.create_script()
    s2 = api.create_script()
    for script, target in (
        (s1, bind_url(device.id, host="https://remediate.example.net:8443")),
        (s2, f"deviceManagement/managedDevices('{device.id}')"),
    ):
        r = api.http.post(
            f"/deviceManagement/deviceHealthScripts/{script.id}/deviceRunStates",
            json={"managedDevice@odata.bind": target, "detectionState": "success"},
        )
        assert r.status_code == 201, f"bind {target!r}: {r.status_code} {r.text}"
        assert r.json()["id"] == f"{script.id}:{device.id}"


def test_bind_to_missing_device_is_400(api):
    script = api.create_script()
    body = DeviceHealthScriptDeviceState(detection_state=RunState.Success)
    body.additional_data = {"managedDevice@odata.bind": bind_url(str(uuid.uuid4()))}
    api.expect_error(api.states(script.id).post(body), 400, "BadRequest")
    assert api.run(api.states(script.id).get()).value == []


def test_create_under_missing_script_is_404(api):
    device = api.create_device()
    body = DeviceHealthScriptDeviceState(detection_state=RunState.Success)
    body.additional_data = {"managedDevice@odata.bind": bind_url(device.id)}
    api.expect_error(api.states(str(uuid.uuid4())).post(body), 404, "ResourceNotFound")


def test_get_by_id_and_list(api):
    script = api.create_script()
    d1, d2 = api.create_device(), api.create_device()
    s1 = api.create_state(script.id, d1.id, detection_state=RunState.Success,
                          remediation_state=RemediationState.Skipped)
    s2 = api.create_state(script.id, d2.id, detection_state=RunState.Fail,
                          remediation_state=RemediationState.RemediationFailed,
                          remediation_script_error="boom\r\n")

    got = api.run(api.state(script.id, s2.id).get())
    assert got.id == f"{script.id}:{d2.id}"
    assert got.detection_state == RunState.Fail
    assert got.remediation_state == RemediationState.RemediationFailed
    assert got.remediation_script_error == "boom\r\n"

    page = api.run(api.states(script.id).get())
    by_id = {s.id: s for s in page.value}
    assert set(by_id) == {s1.id, s2.id}
    assert by_id[s1.id].remediation_state == RemediationState.Skipped
    assert page.odata_next_link is None

    # Raw: key syntax for the state id (it contains a colon), and the list's context.
    r = api.http.get(f"/deviceManagement/deviceHealthScripts('{script.id}')/deviceRunStates('{s1.id}')")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == s1.id
    lst = api.http.get(f"/deviceManagement/deviceHealthScripts/{script.id}/deviceRunStates").json()
    assert "@odata.context" in lst
    assert all("@odata.type" not in item for item in lst["value"])

    api.expect_error(api.state(script.id, f"{script.id}:{uuid.uuid4()}").get(), 404, "ResourceNotFound")


def _query(**kw):
    return RequestConfiguration(
        query_parameters=DeviceRunStatesRequestBuilder.DeviceRunStatesRequestBuilderGetQueryParameters(**kw)
    )


def _seven_states(api):
    script = api.create_script()
    ids = set()
    for i in range(7):
        device = api.create_device(device_name=f"PAGE-{i:02d}")
        state = api.create_state(script.id, device.id, detection_state=RunState.Success,
                                 pre_remediation_detection_script_output=f"device {i}")
        ids.add(state.id)
    assert len(ids) == 7
    return script, ids


def test_paging_with_page_iterator(api):
    script, ids = _seven_states(api)
    first = api.run(api.states(script.id).get(_query(top=3)))
    assert len(first.value) == 3
    assert first.odata_next_link, "first page of 7 with $top=3 has no @odata.nextLink"
    assert first.odata_next_link.startswith(api.server.origin + "/"), (
        f"nextLink is not absolute on this server: {first.odata_next_link}"
    )
    assert "$skiptoken=" in first.odata_next_link or "%24skiptoken=" in first.odata_next_link

    seen: list[str] = []

    def collect(item):
        seen.append(item.id)
        return len(seen) < 50  # stop a looping server instead of hanging

    iterator = PageIterator(first, api.adapter)
    api.run(iterator.iterate(collect))
    assert len(seen) == 7, f"PageIterator yielded {len(seen)} items: {seen}"
    assert len(set(seen)) == 7, f"duplicates across pages: {seen}"
    assert set(seen) == ids
    assert not iterator.current_page.odata_next_link


def test_paging_manual_with_url_and_count(api):
    script, ids = _seven_states(api)
    builder = api.states(script.id)
    page = api.run(builder.get(_query(top=3, count=True)))
    assert page.odata_count == 7
    pages = [page]
    while page.odata_next_link:
        assert len(pages) < 10, "nextLink chain does not end (paging loop)"
        page = api.run(builder.with_url(page.odata_next_link).get())
        pages.append(page)
    seen = [s.id for p in pages for s in p.value]
    assert all(len(p.value) <= 3 for p in pages), [len(p.value) for p in pages]
    assert len(seen) == 7 and set(seen) == ids, seen
    assert pages[-1].odata_next_link is None

    # $count=true without $top: one page, count 7
    whole = api.run(builder.get(_query(count=True)))
    assert whole.odata_count == 7
    assert len(whole.value) == 7
    assert whole.odata_next_link is None


def test_count_segment(api):
    """SPEC §2: `/$count` on every collection answers a text/plain integer."""
    script = api.create_script()
    for _ in range(2):
        api.create_state(script.id, api.create_device().id)
    for path, expected in (
        (f"/deviceManagement/deviceHealthScripts/{script.id}/deviceRunStates/$count", "2"),
        ("/deviceManagement/deviceHealthScripts/$count", "1"),
        ("/deviceManagement/managedDevices/$count", "2"),
    ):
        r = api.http.get(path)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
        assert r.text.strip() == expected, f"GET {path}: {r.text!r}"
        assert r.headers.get("content-type", "").startswith("text/plain"), r.headers.get("content-type")
    # and through the SDK's count builder
    assert api.run(api.states(script.id).count.get()) == 2


def test_patch_run_state(api):
    script = api.create_script()
    device = api.create_device()
    created = api.create_state(script.id, device.id, **{k: getattr(_seed_model(), k) for k in STATE_WRITABLE})

    result = api.run(
        api.state(script.id, created.id).patch(
            DeviceHealthScriptDeviceState(
                detection_state=RunState.Success,
                post_remediation_detection_script_output="Status: Running\r\nall good",
            )
        )
    )
    # 200 with the updated state, equal to what a GET reads
    assert type(result) is DeviceHealthScriptDeviceState, type(result)
    assert result.detection_state == RunState.Success
    assert result.remediation_state == RemediationState.Success
    got = api.run(api.state(script.id, created.id).get())
    assert got.detection_state == RunState.Success
    assert got.post_remediation_detection_script_output == "Status: Running\r\nall good"
    # merge: everything else unchanged
    assert got.remediation_state == RemediationState.Success
    assert got.last_state_update_date_time == _seed_model().last_state_update_date_time
    assert got.remediation_script_error == _seed_model().remediation_script_error

    # Bad enum value (PascalCase is not a member): 400 naming detectionState, nothing changed.
    r = api.http.patch(
        f"/deviceManagement/deviceHealthScripts/{script.id}/deviceRunStates/{created.id}",
        json={"detectionState": "Fail", "remediationScriptError": "should not be stored"},
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == "BadRequest"
    assert "detectionState" in err["message"], err["message"]
    after = api.run(api.state(script.id, created.id).get())
    assert after.detection_state == RunState.Success
    assert after.remediation_script_error == _seed_model().remediation_script_error

    assert api.run(api.state(script.id, created.id).delete()) is None
    api.expect_error(api.state(script.id, created.id).delete(), 404, "ResourceNotFound")
    api.expect_error(api.state(script.id, created.id).get(), 404, "ResourceNotFound")
    assert api.run(api.states(script.id).get()).value == []


def test_patch_status_is_200_with_the_entity_raw(api):
    script = api.create_script()
    device = api.create_device()
    state = api.create_state(script.id, device.id)
    path = f"/deviceManagement/deviceHealthScripts/{script.id}/deviceRunStates/{state.id}"
    r = api.http.patch(path, json={"remediationState": "skipped"})
    assert r.status_code == 200, r.text
    assert r.headers.get("content-type") == GRAPH_CONTENT_TYPE
    assert r.json() == api.http.get(path).json()
    assert r.json()["@odata.context"].endswith(
        f"$metadata#deviceManagement/deviceHealthScripts('{script.id}')/deviceRunStates/$entity")
    assert api.run(api.state(script.id, state.id).get()).remediation_state == RemediationState.Skipped


def test_managed_device_navigation(api):
    script = api.create_script()
    device = api.create_device(device_name="NAV-DEVICE", serial_number="SN-NAV")
    bound = api.create_state(script.id, device.id, detection_state=RunState.Success)

    md = api.run(api.state(script.id, bound.id).managed_device.get())
    assert md.id == device.id
    assert md.device_name == "NAV-DEVICE"
    assert md.serial_number == "SN-NAV"

    unbound = api.create_state(script.id, None, detection_state=RunState.Pending)
    uuid.UUID(unbound.id)  # no device: a new UUID
    api.expect_error(api.state(script.id, unbound.id).managed_device.get(), 404, "ResourceNotFound")


def test_delete_script_removes_its_run_states(api):
    script = api.create_script()
    device = api.create_device()
    state = api.create_state(script.id, device.id)
    api.run(api.script(script.id).delete())
    api.expect_error(api.state(script.id, state.id).get(), 404, "ResourceNotFound")
    # the device itself stays
    assert api.run(api.device(device.id).get()).id == device.id
