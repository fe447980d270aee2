"""Assignments: the `assign` action, assignment CRUD and `$expand=assignments`, through the SDK (SPEC §2, §4)."""
from __future__ import annotations

import re
import uuid
from datetime import date, time

from msgraph_beta.generated.device_management.device_health_scripts.device_health_scripts_request_builder import (
    DeviceHealthScriptsRequestBuilder,
)
from msgraph_beta.generated.device_management.device_health_scripts.item.assign.assign_post_request_body import (
    AssignPostRequestBody,
)
from msgraph_beta.generated.device_management.device_health_scripts.item.device_health_script_item_request_builder import (
    DeviceHealthScriptItemRequestBuilder,
)
from msgraph_beta.generated.device_management.device_health_scripts.item.assignments.assignments_request_builder import (
    AssignmentsRequestBuilder,
)
from msgraph_beta.generated.models.all_devices_assignment_target import AllDevicesAssignmentTarget
from msgraph_beta.generated.models.device_and_app_management_assignment_filter_type import (
    DeviceAndAppManagementAssignmentFilterType,
)
from msgraph_beta.generated.models.device_health_script_assignment import DeviceHealthScriptAssignment
from msgraph_beta.generated.models.device_health_script_daily_schedule import DeviceHealthScriptDailySchedule
from msgraph_beta.generated.models.device_health_script_hourly_schedule import DeviceHealthScriptHourlySchedule
from msgraph_beta.generated.models.device_health_script_run_once_schedule import DeviceHealthScriptRunOnceSchedule
from msgraph_beta.generated.models.exclusion_group_assignment_target import ExclusionGroupAssignmentTarget
from msgraph_beta.generated.models.group_assignment_target import GroupAssignmentTarget

from _support import ALL_DEVICES_GROUP, query_config, raw_items

TIME_OF_DAY_RE = r"^{}(\.0{{1,7}})?$"  # Edm.TimeOfDay; Graph writes 7 fraction digits


def _assign(api, script_id, assignments):
    body = AssignPostRequestBody(device_health_script_assignments=assignments)
    return api.run(api.script(script_id).assign.post(body))


def _four_assignments(g1, g2, g3):
    return [
        DeviceHealthScriptAssignment(
            target=AllDevicesAssignmentTarget(),
            run_remediation_script=True,
            run_schedule=DeviceHealthScriptDailySchedule(interval=1, time=time(20, 0), use_utc=False),
        ),
        DeviceHealthScriptAssignment(
            target=GroupAssignmentTarget(group_id=g1),
            run_remediation_script=False,
            run_schedule=DeviceHealthScriptHourlySchedule(interval=4),
        ),
        DeviceHealthScriptAssignment(
            target=GroupAssignmentTarget(group_id=g3),
            run_remediation_script=True,
            run_schedule=DeviceHealthScriptRunOnceSchedule(date=date(2025, 6, 1), time=time(8, 30), use_utc=True),
        ),
        DeviceHealthScriptAssignment(
            target=ExclusionGroupAssignmentTarget(group_id=g2),
            run_remediation_script=False,
        ),
    ]


def test_assign_then_list_polymorphic_types(api):
    script = api.create_script()
    g1, g2, g3 = (str(uuid.uuid4()) for _ in range(3))

    # 200 with the new set (docs/decisions.md); the SDK's assign builder reads no body (None).
    assert _assign(api, script.id, _four_assignments(g1, g2, g3)) is None

    page = api.run(api.script(script.id).assignments.get())
    by_id = {a.id: a for a in page.value}
    assert set(by_id) == {f"{script.id}:{g}" for g in (ALL_DEVICES_GROUP, g1, g2, g3)}, list(by_id)

    all_dev = by_id[f"{script.id}:{ALL_DEVICES_GROUP}"]
    assert type(all_dev.target) is AllDevicesAssignmentTarget, type(all_dev.target)
    assert all_dev.run_remediation_script is True
    assert type(all_dev.run_schedule) is DeviceHealthScriptDailySchedule, type(all_dev.run_schedule)
    assert all_dev.run_schedule.interval == 1
    assert all_dev.run_schedule.time == time(20, 0)
    assert all_dev.run_schedule.use_utc is False

    grp = by_id[f"{script.id}:{g1}"]
    assert type(grp.target) is GroupAssignmentTarget, type(grp.target)
    assert grp.target.group_id == g1
    assert grp.run_remediation_script is False
    assert type(grp.run_schedule) is DeviceHealthScriptHourlySchedule, type(grp.run_schedule)
    assert grp.run_schedule.interval == 4

    once = by_id[f"{script.id}:{g3}"]
    assert type(once.target) is GroupAssignmentTarget and once.target.group_id == g3
    assert type(once.run_schedule) is DeviceHealthScriptRunOnceSchedule, type(once.run_schedule)
    assert once.run_schedule.date == date(2025, 6, 1)
    assert once.run_schedule.time == time(8, 30)
    assert once.run_schedule.use_utc is True

    excl = by_id[f"{script.id}:{g2}"]
    assert type(excl.target) is ExclusionGroupAssignmentTarget, type(excl.target)
    assert excl.target.group_id == g2
    assert excl.run_schedule is None

    # The wire: discriminators and Edm.TimeOfDay / Edm.Date formats.
    raw = {a["id"]: a for a in raw_items(api.http.get(f"/deviceManagement/deviceHealthScripts/{script.id}/assignments"))}
    a = raw[f"{script.id}:{ALL_DEVICES_GROUP}"]
    assert a["target"]["@odata.type"] == "#microsoft.graph.allDevicesAssignmentTarget"
    assert a["runSchedule"]["@odata.type"] == "#microsoft.graph.deviceHealthScriptDailySchedule"
    assert re.match(TIME_OF_DAY_RE.format("20:00:00"), a["runSchedule"]["time"]), a["runSchedule"]
    o = raw[f"{script.id}:{g3}"]["runSchedule"]
    assert o["@odata.type"] == "#microsoft.graph.deviceHealthScriptRunOnceSchedule"
    assert o["date"] == "2025-06-01" and re.match(TIME_OF_DAY_RE.format("08:30:00"), o["time"]), o
    assert raw[f"{script.id}:{g2}"]["target"]["@odata.type"] == "#microsoft.graph.exclusionGroupAssignmentTarget"

    # Raw: assign answers 200 with the new set, as the list shows it.
    r = api.http.post(f"/deviceManagement/deviceHealthScripts/{script.id}/assign",
                      json={"deviceHealthScriptAssignments": [
                          {"target": {"@odata.type": "#microsoft.graph.allDevicesAssignmentTarget"}}]})
    assert r.status_code == 200, r.text
    assert r.json()["@odata.context"].endswith("$metadata#Collection(microsoft.graph.deviceHealthScriptAssignment)")
    assert r.json()["value"] == raw_items(api.http.get(f"/deviceManagement/deviceHealthScripts/{script.id}/assignments"))
    target = r.json()["value"][0]["target"]
    assert target["deviceAndAppManagementAssignmentFilterId"] == "00000000-0000-0000-0000-000000000000", target
    assert target["deviceAndAppManagementAssignmentFilterType"] == "none", target

    # assign replaces the whole set
    assert _assign(api, script.id, [
        DeviceHealthScriptAssignment(target=GroupAssignmentTarget(group_id=g1), run_remediation_script=True,
                                     run_schedule=DeviceHealthScriptHourlySchedule(interval=1)),
    ]) is None
    after = api.run(api.script(script.id).assignments.get()).value
    assert [a.id for a in after] == [f"{script.id}:{g1}"]
    assert after[0].run_remediation_script is True and after[0].run_schedule.interval == 1

    assert _assign(api, script.id, []) is None
    assert api.run(api.script(script.id).assignments.get()).value == []


def test_assign_invalid_schedule_is_400(api):
    script = api.create_script()
    bad = [DeviceHealthScriptAssignment(target=AllDevicesAssignmentTarget(),
                                        run_schedule=DeviceHealthScriptHourlySchedule(interval=24))]
    err = api.expect_error(api.script(script.id).assign.post(AssignPostRequestBody(device_health_script_assignments=bad)),
                           400, "BadRequest")
    assert "interval" in err.error.message, err.error.message
    assert api.run(api.script(script.id).assignments.get()).value == []  # nothing changed


def test_assignments_crud(api):
    script = api.create_script()
    group = str(uuid.uuid4())
    coll = api.script(script.id).assignments

    created = api.run(coll.post(DeviceHealthScriptAssignment(
        target=GroupAssignmentTarget(group_id=group),
        run_remediation_script=True,
        run_schedule=DeviceHealthScriptHourlySchedule(interval=2),
    )))
    assert created.id == f"{script.id}:{group}"
    assert type(created.target) is GroupAssignmentTarget and created.target.group_id == group
    assert type(created.run_schedule) is DeviceHealthScriptHourlySchedule and created.run_schedule.interval == 2
    # No filter: the zero GUID and `none`, as the real service answers.
    assert created.target.device_and_app_management_assignment_filter_id == "00000000-0000-0000-0000-000000000000"
    assert created.target.device_and_app_management_assignment_filter_type == DeviceAndAppManagementAssignmentFilterType.None_

    item = coll.by_device_health_script_assignment_id(created.id)
    got = api.run(item.get())
    assert got.id == created.id and got.target.group_id == group and got.run_remediation_script is True

    patched = api.run(item.patch(DeviceHealthScriptAssignment(
        run_remediation_script=False,
        run_schedule=DeviceHealthScriptDailySchedule(interval=2, time=time(6, 15), use_utc=True),
    )))  # 200 with the updated assignment
    assert type(patched) is DeviceHealthScriptAssignment, type(patched)
    assert patched.id == created.id and patched.run_remediation_script is False
    assert type(patched.run_schedule) is DeviceHealthScriptDailySchedule, type(patched.run_schedule)
    assert type(patched.target) is GroupAssignmentTarget and patched.target.group_id == group
    got = api.run(item.get())
    assert got.run_remediation_script is False
    assert type(got.run_schedule) is DeviceHealthScriptDailySchedule, type(got.run_schedule)
    assert (got.run_schedule.interval, got.run_schedule.time, got.run_schedule.use_utc) == (2, time(6, 15), True)
    assert type(got.target) is GroupAssignmentTarget and got.target.group_id == group  # merge: target unchanged

    all_devices = api.run(coll.post(DeviceHealthScriptAssignment(target=AllDevicesAssignmentTarget())))
    assert all_devices.id == f"{script.id}:{ALL_DEVICES_GROUP}"
    page = api.run(coll.get(query_config(AssignmentsRequestBuilder, count=True)))
    assert page.odata_count == 2 and {a.id for a in page.value} == {created.id, all_devices.id}

    assert api.run(item.delete()) is None
    api.expect_error(item.get(), 404, "ResourceNotFound")
    api.expect_error(item.delete(), 404, "ResourceNotFound")
    assert [a.id for a in api.run(coll.get()).value] == [all_devices.id]


def test_expand_assignments_on_scripts_list(api):
    assigned = api.create_script(display_name="assigned")
    bare = api.create_script(display_name="bare")
    group = str(uuid.uuid4())
    _assign(api, assigned.id, [
        DeviceHealthScriptAssignment(target=AllDevicesAssignmentTarget(), run_remediation_script=True,
                                     run_schedule=DeviceHealthScriptDailySchedule(interval=1, time=time(20, 0),
                                                                                  use_utc=False)),
        DeviceHealthScriptAssignment(target=ExclusionGroupAssignmentTarget(group_id=group)),
    ])

    page = api.run(api.scripts.get(query_config(DeviceHealthScriptsRequestBuilder, expand=["assignments"])))
    by_id = {s.id: s for s in page.value}
    assert set(by_id) == {assigned.id, bare.id}
    assert by_id[bare.id].assignments == []
    exp = {a.id: a for a in by_id[assigned.id].assignments}
    assert set(exp) == {f"{assigned.id}:{ALL_DEVICES_GROUP}", f"{assigned.id}:{group}"}
    assert type(exp[f"{assigned.id}:{ALL_DEVICES_GROUP}"].run_schedule) is DeviceHealthScriptDailySchedule
    assert type(exp[f"{assigned.id}:{group}"].target) is ExclusionGroupAssignmentTarget

    # and on the item
    one = api.run(api.script(assigned.id).get(query_config(DeviceHealthScriptItemRequestBuilder, expand=["assignments"])))
    assert {a.id for a in one.assignments} == set(exp)
    assert api.run(api.script(assigned.id).get()).assignments is None  # not expanded unless asked
    r = api.http.get(f"/deviceManagement/deviceHealthScripts/{assigned.id}", params={"$expand": "assignments"})
    assert r.status_code == 200, r.text
    assert {a["id"] for a in r.json()["assignments"]} == set(exp)
