"""OData queries through the SDK's query-parameter classes on deviceRunStates and managedDevices (SPEC §4)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from msgraph_beta.generated.device_management.device_health_scripts.item.device_run_states.count.count_request_builder import (
    CountRequestBuilder as StatesCountRequestBuilder,
)
from msgraph_beta.generated.device_management.device_health_scripts.item.device_run_states.device_run_states_request_builder import (
    DeviceRunStatesRequestBuilder,
)
from msgraph_beta.generated.device_management.managed_devices.count.count_request_builder import (
    CountRequestBuilder as DevicesCountRequestBuilder,
)
from msgraph_beta.generated.device_management.managed_devices.managed_devices_request_builder import (
    ManagedDevicesRequestBuilder,
)
from msgraph_beta.generated.models.remediation_state import RemediationState
from msgraph_beta.generated.models.run_state import RunState
from msgraph_core.tasks.page_iterator import PageIterator

from _support import SCOPES_RW, make_api, plain_keys, query_config, raw_items

PLUS2 = timezone(timedelta(hours=2))
DETECTION = [RunState.Success, RunState.Fail, RunState.ScriptError, RunState.Pending, RunState.NotApplicable]
REMEDIATION = [RemediationState.Unknown, RemediationState.Skipped, RemediationState.Success,
               RemediationState.RemediationFailed]
# Four run times, so every fourth row ties; one is just before the 2025 boundary, one exactly on it.
TIMES = [
    datetime(2024, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
    datetime(2025, 1, 1, 0, 0, 0, tzinfo=timezone.utc),
    datetime(2025, 2, 1, 0, 0, 0, tzinfo=timezone.utc),
    datetime(2025, 3, 1, 12, 0, 0, tzinfo=PLUS2),
]
OS_VERSIONS = ["10.0.19045.4780", "10.0.22631.4037", "10.0.26100.1742"]
N = 26  # more than five pages of five


@dataclass
class Row:
    state_id: str
    device_id: str
    device_name: str
    os_version: str
    detection: RunState
    remediation: RemediationState
    time: datetime


@dataclass
class Dataset:
    api: object
    script_id: str
    rows: list[Row]

    def ids(self, pred) -> set[str]:
        return {r.state_id for r in self.rows if pred(r)}

    def device_ids(self, pred) -> set[str]:
        return {r.device_id for r in self.rows if pred(r)}


@pytest.fixture(scope="module")
def data(server, loop):
    """One tenant per backend with 26 devices (14 'PC-…', 12 'LAB-…') and one run state each."""
    api = make_api(server, loop, scopes=SCOPES_RW)
    script = api.create_script()
    rows = []
    for i in range(N):
        name = f"PC-{i:02d}" if i < 14 else f"LAB-{i:02d}"
        device = api.create_device(device_name=name, os_version=OS_VERSIONS[i % 3])
        state = api.create_state(
            script.id, device.id,
            detection_state=DETECTION[i % 5],
            remediation_state=REMEDIATION[i % 4],
            last_state_update_date_time=TIMES[i % 4],
            pre_remediation_detection_script_output=f"row {i}",
        )
        rows.append(Row(state.id, device.id, name, OS_VERSIONS[i % 3], DETECTION[i % 5], REMEDIATION[i % 4],
                        TIMES[i % 4]))
    yield Dataset(api, script.id, rows)
    api.close()


def _states(data, **params):
    page = data.api.run(data.api.states(data.script_id).get(query_config(DeviceRunStatesRequestBuilder, **params)))
    assert page.odata_next_link is None, "expected one page"
    return page


def _state_ids(data, flt: str) -> set[str]:
    ids = [s.id for s in _states(data, filter=flt).value]
    assert len(ids) == len(set(ids)), f"duplicates for $filter={flt}: {ids}"
    return set(ids)


def _devices(data, **params):
    page = data.api.run(data.api.devices.get(query_config(ManagedDevicesRequestBuilder, **params)))
    assert page.odata_next_link is None, "expected one page"
    return page


# --- $filter ------------------------------------------------------------------------------------

def test_filter_enum_plain_and_qualified_literal(data):
    fails = data.ids(lambda r: r.detection == RunState.Fail)
    assert len(fails) == 5
    assert _state_ids(data, "detectionState eq 'fail'") == fails
    assert _state_ids(data, "detectionState eq microsoft.graph.runState'fail'") == fails
    assert _state_ids(data, "remediationState eq microsoft.graph.remediationState'remediationFailed'") == data.ids(
        lambda r: r.remediation == RemediationState.RemediationFailed
    )
    # enums compare by declared member value: unknown < success < fail < scriptError < pending < notApplicable
    assert _state_ids(data, "detectionState gt 'fail'") == data.ids(
        lambda r: r.detection in (RunState.ScriptError, RunState.Pending, RunState.NotApplicable)
    )


def test_filter_datetime_ge(data):
    boundary = datetime(2025, 1, 1, tzinfo=timezone.utc)
    expected = data.ids(lambda r: r.time >= boundary)
    assert 0 < len(expected) < N
    assert _state_ids(data, "lastStateUpdateDateTime ge 2025-01-01T00:00:00Z") == expected
    assert _state_ids(data, "lastStateUpdateDateTime lt 2025-01-01T00:00:00Z") == data.ids(lambda r: r.time < boundary)
    # an offset literal is the same instant
    assert _state_ids(data, "lastStateUpdateDateTime eq 2025-03-01T10:00:00Z") == data.ids(lambda r: r.time == TIMES[3])


def test_filter_managed_device_path(data):
    row = data.rows[7]
    assert _state_ids(data, f"managedDevice/id eq '{row.device_id}'") == {row.state_id}
    assert _state_ids(data, "startswith(managedDevice/deviceName,'LAB')") == data.ids(
        lambda r: r.device_name.startswith("LAB")
    )


def test_filter_in_not_and_or(data):
    assert _state_ids(data, "detectionState in ('fail','scriptError')") == data.ids(
        lambda r: r.detection in (RunState.Fail, RunState.ScriptError)
    )
    assert _state_ids(data, "not (detectionState eq 'success')") == data.ids(lambda r: r.detection != RunState.Success)
    assert _state_ids(
        data, "not (detectionState eq 'success' or remediationState eq 'success') and lastStateUpdateDateTime ge 2025-01-01T00:00:00Z"
    ) == data.ids(
        lambda r: not (r.detection == RunState.Success or r.remediation == RemediationState.Success)
        and r.time >= datetime(2025, 1, 1, tzinfo=timezone.utc)
    )


def test_filter_managed_devices_strings(data):
    pcs = data.device_ids(lambda r: r.device_name.startswith("PC"))
    assert len(pcs) == 14

    def ids(flt):
        return {d.id for d in _devices(data, filter=flt).value}

    assert ids("startswith(deviceName,'PC')") == pcs
    assert ids("startswith(deviceName,'pc')") == pcs, "startswith must ignore case (SPEC §4)"
    assert ids("deviceName in ('PC-01','lab-20')") == data.device_ids(lambda r: r.device_name in ("PC-01", "LAB-20"))
    assert ids("not (startswith(deviceName,'PC'))") == data.device_ids(lambda r: not r.device_name.startswith("PC"))
    assert ids("endswith(deviceName,'-03') or contains(deviceName,'B-2')") == data.device_ids(
        lambda r: r.device_name.endswith("-03") or "B-2" in r.device_name
    )


# --- $orderby -----------------------------------------------------------------------------------

def _expected_order(rows, key, desc):
    # final tie-break: id, in the direction of the (last) $orderby key
    ordered = sorted(rows, key=lambda r: r.state_id, reverse=desc)
    return sorted(ordered, key=key, reverse=desc)                # stable: ties keep id order


def test_orderby_with_id_tie_break(data):
    for clause, key, desc in (
        ("lastStateUpdateDateTime desc", lambda r: r.time, True),
        ("lastStateUpdateDateTime asc", lambda r: r.time, False),
        ("lastStateUpdateDateTime", lambda r: r.time, False),
        ("detectionState desc", lambda r: DETECTION.index(r.detection), True),
    ):
        got = [s.id for s in _states(data, orderby=[clause]).value]
        want = [r.state_id for r in _expected_order(data.rows, key, desc)]
        assert got == want, f"$orderby={clause}"

    # two keys: detectionState asc, then lastStateUpdateDateTime desc, then id desc (the last key's direction)
    got = [s.id for s in _states(data, orderby=["detectionState asc", "lastStateUpdateDateTime desc"]).value]
    by_id = sorted(data.rows, key=lambda r: r.state_id, reverse=True)
    by_time = sorted(by_id, key=lambda r: r.time, reverse=True)
    want = [r.state_id for r in sorted(by_time, key=lambda r: DETECTION.index(r.detection))]
    assert got == want


def test_orderby_managed_devices_ties(data):
    got = [d.id for d in _devices(data, orderby=["osVersion desc"]).value]
    rows = sorted(data.rows, key=lambda r: r.device_id, reverse=True)   # ties: id, descending like the key
    want = [r.device_id for r in sorted(rows, key=lambda r: r.os_version, reverse=True)]
    assert got == want
    names = [d.device_name for d in _devices(data, orderby=["deviceName"]).value]
    assert names == sorted((r.device_name for r in data.rows), key=str.lower)


# --- $select / $expand / $count ------------------------------------------------------------------

def test_select_top_level(data):
    page = _states(data, select=["detectionState", "lastStateUpdateDateTime"], filter="detectionState eq 'fail'")
    assert len(page.value) == 5
    for s in page.value:
        assert s.id and s.detection_state == RunState.Fail and s.last_state_update_date_time is not None
        for name in ("remediation_state", "pre_remediation_detection_script_output", "last_sync_date_time",
                     "assignment_filter_ids", "managed_device"):
            assert getattr(s, name) is None, f"{name} not selected but came back: {getattr(s, name)!r}"

    r = data.api.http.get(
        f"/deviceManagement/deviceHealthScripts/{data.script_id}/deviceRunStates",
        params={"$select": "detectionState,lastStateUpdateDateTime"},
    )
    for item in raw_items(r):
        assert plain_keys(item) == {"id", "detectionState", "lastStateUpdateDateTime"}, item

    dev = _devices(data, select=["deviceName"], filter="deviceName eq 'PC-02'").value
    assert len(dev) == 1 and dev[0].device_name == "PC-02" and dev[0].os_version is None
    r = data.api.http.get("/deviceManagement/managedDevices", params={"$select": "deviceName,osVersion"})
    items = raw_items(r)
    assert len(items) == N
    assert all(plain_keys(i) == {"id", "deviceName", "osVersion"} for i in items), items[0]


def test_expand_managed_device_with_nested_select(data):
    page = _states(data, expand=["managedDevice($select=deviceName,osVersion)"], filter="startswith(managedDevice/deviceName,'PC-1')")
    by_device = {r.device_id: r for r in data.rows}
    assert len(page.value) == 4  # PC-10 … PC-13
    for s in page.value:
        assert s.managed_device is not None, "managedDevice not expanded"
        row = by_device[s.managed_device.id]
        assert s.id == row.state_id
        assert s.managed_device.device_name == row.device_name
        assert s.managed_device.os_version == row.os_version
        assert s.managed_device.serial_number is None  # not in the nested $select

    r = data.api.http.get(
        f"/deviceManagement/deviceHealthScripts/{data.script_id}/deviceRunStates",
        params={"$expand": "managedDevice($select=deviceName,osVersion)", "$select": "detectionState"},
    )
    for item in raw_items(r):
        assert plain_keys(item) == {"id", "detectionState", "managedDevice"}, item
        assert plain_keys(item["managedDevice"]) == {"id", "deviceName", "osVersion"}, item["managedDevice"]


def test_count_true(data):
    page = _states(data, count=True, filter="detectionState eq 'fail'")
    assert page.odata_count == 5
    page = _states(data, count=True)
    assert page.odata_count == N
    assert _devices(data, count=True, filter="startswith(deviceName,'LAB')").odata_count == 12


def test_count_segment_via_sdk_builder(data):
    builder = data.api.states(data.script_id).count
    assert data.api.run(builder.get()) == N
    cfg = query_config(StatesCountRequestBuilder, filter="detectionState eq microsoft.graph.runState'fail'")
    assert data.api.run(builder.get(cfg)) == 5
    cfg = query_config(DevicesCountRequestBuilder, filter="startswith(deviceName,'PC')")
    assert data.api.run(data.api.devices.count.get(cfg)) == 14


def test_top_with_page_iterator_walk(data):
    builder = data.api.states(data.script_id)
    first = data.api.run(builder.get(query_config(
        DeviceRunStatesRequestBuilder, top=5, count=True, orderby=["lastStateUpdateDateTime desc"],
    )))
    assert len(first.value) == 5 and first.odata_count == N and first.odata_next_link
    seen: list[str] = []

    def collect(item):
        seen.append(item.id)
        return len(seen) < 3 * N  # stops a looping server instead of hanging

    iterator = PageIterator(first, data.api.adapter)
    data.api.run(iterator.iterate(collect))
    assert len(seen) == len(set(seen)) == N, f"{len(seen)} rows, {len(set(seen))} distinct"
    want = [r.state_id for r in _expected_order(data.rows, lambda r: r.time, True)]
    assert seen == want, "pages are not in $orderby order (with the id tie-break) or lost rows at page ties"
    assert not iterator.current_page.odata_next_link

    # managed devices, filtered, small pages
    first = data.api.run(data.api.devices.get(query_config(
        ManagedDevicesRequestBuilder, top=3, filter="startswith(deviceName,'PC')", orderby=["osVersion"],
    )))
    devices: list[str] = []
    data.api.run(PageIterator(first, data.api.adapter).iterate(lambda d: devices.append(d.id) or len(devices) < 100))
    assert len(devices) == len(set(devices)) == 14
    assert set(devices) == data.device_ids(lambda r: r.device_name.startswith("PC"))


# --- unsupported options ------------------------------------------------------------------------

def test_unsupported_options_are_400_naming_them(data):
    api = data.api
    err = api.expect_error(
        api.states(data.script_id).get(query_config(DeviceRunStatesRequestBuilder, search='"spooler"')),
        400, "BadRequest",
    )
    assert "$search" in err.error.message or "search" in err.error.message.lower(), err.error.message

    err = api.expect_error(
        api.devices.get(query_config(ManagedDevicesRequestBuilder, filter="tolower(deviceName) eq 'x'")),
        400, "BadRequest",
    )
    assert "tolower" in err.error.message, err.error.message

    err = api.expect_error(
        api.states(data.script_id).get(query_config(DeviceRunStatesRequestBuilder, filter="tolower(managedDevice/deviceName) eq 'pc-01'")),
        400, "BadRequest",
    )
    assert "tolower" in err.error.message, err.error.message
