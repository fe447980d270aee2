"""A configuration-as-code round trip, the way Intune backup/restore tools drive Graph (issue 13):
back up every Remediations script with its assignments, naming their groups, filters and role
scope tags; delete everything; restore from the backup by name; the server's state then equals
the backup, field by field. The official SDK builds the neighbours and reads the backup; the
backup's batch and the restore are raw HTTP exactly as such tools send them (numeric `$batch`
ids, exact status checks: 201 on create, 200 on assign and PATCH)."""
from __future__ import annotations

import base64
import uuid
from datetime import time

from msgraph_beta.generated.device_management.device_health_scripts.device_health_scripts_request_builder import (
    DeviceHealthScriptsRequestBuilder,
)
from msgraph_beta.generated.device_management.device_health_scripts.item.assign.assign_post_request_body import (
    AssignPostRequestBody,
)
from msgraph_beta.generated.groups.groups_request_builder import GroupsRequestBuilder
from msgraph_beta.generated.models.device_and_app_management_assignment_filter import (
    DeviceAndAppManagementAssignmentFilter,
)
from msgraph_beta.generated.models.device_and_app_management_assignment_filter_type import (
    DeviceAndAppManagementAssignmentFilterType,
)
from msgraph_beta.generated.models.device_health_script_assignment import DeviceHealthScriptAssignment
from msgraph_beta.generated.models.device_health_script_daily_schedule import DeviceHealthScriptDailySchedule
from msgraph_beta.generated.models.device_platform_type import DevicePlatformType
from msgraph_beta.generated.models.exclusion_group_assignment_target import ExclusionGroupAssignmentTarget
from msgraph_beta.generated.models.group import Group
from msgraph_beta.generated.models.group_assignment_target import GroupAssignmentTarget
from msgraph_beta.generated.models.role_scope_tag import RoleScopeTag

from _support import SCOPES_RW, query_config

SCOPES_TOOLING = SCOPES_RW + [
    "DeviceManagementRBAC.ReadWrite.All",
    "DeviceManagementConfiguration.ReadWrite.All",
    "Group.ReadWrite.All",
]
SERVER_SET = {"id", "createdDateTime", "lastModifiedDateTime", "version", "highestAvailableVersion"}


def _ok(resp, status):
    assert resp.status_code == status, f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text}"
    return resp.json() if resp.content else None


def _setup(api):
    """An admin's tenant, built with the SDK: a scope tag, two groups, a filter, two scripts."""
    g = api.graph
    tag = api.run(g.device_management.role_scope_tags.post(RoleScopeTag(display_name="Paris", description="Paris office")))
    lab = api.run(g.groups.post(Group(display_name="Lab devices", mail_enabled=False, mail_nickname="lab", security_enabled=True)))
    vip = api.run(g.groups.post(Group(display_name="VIP", mail_enabled=False, mail_nickname="vip", security_enabled=True)))
    dell = api.run(
        g.device_management.assignment_filters.post(
            DeviceAndAppManagementAssignmentFilter(
                display_name="Dell only", platform=DevicePlatformType.Windows10AndLater,
                rule='(device.manufacturer -eq "Dell")',
            )
        )
    )
    assert tag.id and lab.id and vip.id and dell.id
    for name in ("Clear temp", "Restart spooler"):
        script = api.create_script(display_name=name, role_scope_tag_ids=["0", tag.id])
        body = AssignPostRequestBody(
            device_health_script_assignments=[
                DeviceHealthScriptAssignment(
                    target=GroupAssignmentTarget(
                        group_id=lab.id,
                        device_and_app_management_assignment_filter_id=dell.id,
                        device_and_app_management_assignment_filter_type=DeviceAndAppManagementAssignmentFilterType.Include,
                    ),
                    run_remediation_script=True,
                    run_schedule=DeviceHealthScriptDailySchedule(interval=1, time=time(20, 0), use_utc=False),
                ),
                DeviceHealthScriptAssignment(target=ExclusionGroupAssignmentTarget(group_id=vip.id)),
            ]
        )
        api.run(api.script(script.id).assign.post(body))


def _backup(api):
    """What a backup tool stores: each script's settings and content, its assignments with the
    names of their groups and filters, and the names of its scope tags."""
    http = api.http
    tags = {t["id"]: t["displayName"] for t in _ok(http.get("/deviceManagement/roleScopeTags"), 200)["value"]}
    filters = {f["id"]: f["displayName"] for f in _ok(http.get("/deviceManagement/assignmentFilters"), 200)["value"]}
    # The SDK lists the scripts with their assignments expanded.
    config = query_config(DeviceHealthScriptsRequestBuilder, expand=["assignments"])
    listed = api.run(api.scripts.get(request_configuration=config))
    ids = [s.id for s in listed.value]
    assert len(ids) == 2 and all(s.assignments for s in listed.value)
    # Full items (with content) through one $batch with numeric ids, read back with int().
    batch = {"requests": [{"id": i + 1, "method": "GET", "url": f"/deviceManagement/deviceHealthScripts/{sid}?$expand=assignments"} for i, sid in enumerate(ids)]}
    answers = _ok(http.post("/$batch", json=batch), 200)["responses"]
    by_number = {int(a["id"]): a for a in answers}
    assert sorted(by_number) == [1, 2]
    backup = []
    for number, sid in enumerate(ids, start=1):
        answer = by_number[number]
        assert answer["status"] == 200 and answer["headers"]["Content-Type"].startswith("application/json")
        item = answer["body"]
        # Minimal metadata: no @odata.type on an entity of the declared type.
        assert "@odata.type" not in item, item.get("@odata.type")
        # Like backup tools: no annotations (`@odata.context`, `assignments@odata.context`), no server-set values.
        entry = {k: v for k, v in item.items() if "@" not in k and k not in SERVER_SET and k != "assignments"}
        entry["roleScopeTagIds"] = [tags[t] for t in item["roleScopeTagIds"]]
        entry["assignments"] = []
        for a in item["assignments"]:
            target = dict(a["target"])
            group = _ok(http.get(f"/groups/{target.pop('groupId')}"), 200)
            target["groupName"] = group["displayName"]
            fid = target.pop("deviceAndAppManagementAssignmentFilterId")
            target["filterName"] = filters.get(fid)
            entry["assignments"].append({"target": target, "runRemediationScript": a["runRemediationScript"], "runSchedule": a["runSchedule"]})
        backup.append(entry)
    return backup


def _restore(api, backup):
    http = api.http
    tags = {t["displayName"]: t["id"] for t in _ok(http.get("/deviceManagement/roleScopeTags"), 200)["value"]}
    filters = {f["displayName"]: f["id"] for f in _ok(http.get("/deviceManagement/assignmentFilters"), 200)["value"]}
    for entry in backup:
        body = {k: v for k, v in entry.items() if k != "assignments"}
        body["roleScopeTagIds"] = [tags[name] for name in entry["roleScopeTagIds"]]
        created = _ok(http.post("/deviceManagement/deviceHealthScripts", json=body), 201)
        assignments = []
        for a in entry["assignments"]:
            target = dict(a["target"])
            name = target.pop("groupName")
            found = _ok(http.get("/groups", params={"$filter": f"displayName eq '{name}'"}), 200)["value"]
            assert len(found) == 1, found
            target["groupId"] = found[0]["id"]
            filter_name = target.pop("filterName")
            target["deviceAndAppManagementAssignmentFilterId"] = filters[filter_name] if filter_name else None
            if not filter_name:
                target.pop("deviceAndAppManagementAssignmentFilterId")
                target["deviceAndAppManagementAssignmentFilterType"] = "none"
            assignments.append({"target": target, "runRemediationScript": a["runRemediationScript"], "runSchedule": a["runSchedule"]})
        _ok(http.post(f"/deviceManagement/deviceHealthScripts/{created['id']}/assign", json={"deviceHealthScriptAssignments": assignments}), 200)


def test_a_backup_restores_field_by_field(tenant_factory):
    api = tenant_factory(scopes=SCOPES_TOOLING)
    _setup(api)
    backup = _backup(api)
    assert backup[0]["detectionScriptContent"] == base64.b64encode(b"Write-Output 'ok'\r\nexit 0\r\n").decode()
    # Delete everything the backup covers.
    for s in _ok(api.http.get("/deviceManagement/deviceHealthScripts"), 200)["value"]:
        _ok(api.http.delete(f"/deviceManagement/deviceHealthScripts/{s['id']}"), 204)
    assert _ok(api.http.get("/deviceManagement/deviceHealthScripts"), 200)["value"] == []
    _restore(api, backup)
    # A change pushed back: PATCH answers 200 with the updated entity.
    first = _ok(api.http.get("/deviceManagement/deviceHealthScripts", params={"$filter": f"displayName eq '{backup[0]['displayName']}'"}), 200)["value"][0]
    patched = _ok(api.http.patch(f"/deviceManagement/deviceHealthScripts/{first['id']}", json={"description": "changed in git"}), 200)
    assert patched["description"] == "changed in git" and patched["id"] == first["id"]
    backup[0]["description"] = "changed in git"
    # The server's state now equals the backup, field by field (names resolved again).
    again = sorted(_backup(api), key=lambda e: e["displayName"])
    expected = sorted(backup, key=lambda e: e["displayName"])
    assert again == expected


def test_groups_resolve_by_name_through_the_sdk(tenant_factory):
    api = tenant_factory(scopes=SCOPES_TOOLING)
    name = f"Lab {uuid.uuid4().hex[:6]}"
    made = api.run(api.graph.groups.post(Group(display_name=name, mail_enabled=False, mail_nickname="lab", security_enabled=True)))
    config = query_config(GroupsRequestBuilder, filter=f"displayName eq '{name}'")
    found = api.run(api.graph.groups.get(request_configuration=config))
    assert [g.id for g in found.value] == [made.id]
    got = api.run(api.graph.groups.by_group_id(made.id).get())
    assert got.display_name == name and got.security_enabled is True
    tags = api.run(api.graph.device_management.role_scope_tags.get())
    assert [(t.id, t.display_name, t.is_built_in) for t in tags.value] == [("0", "Default", True)]
