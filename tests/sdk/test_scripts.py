"""deviceHealthScripts through the SDK (SPEC §2, §3.1)."""
from __future__ import annotations

import base64
import time
import uuid
from datetime import datetime, timedelta, timezone

from msgraph_beta.generated.models.device_health_script import DeviceHealthScript
from msgraph_beta.generated.models.run_as_account_type import RunAsAccountType

from _support import UTC_DATETIME_RE

# A real-world detection script: doubled UTF-8 BOM (as observed in Intune), CRLF, non-ASCII.
DETECTION = (
    b"\xef\xbb\xbf\xef\xbb\xbf"
    + "$svc = Get-Service -Name 'Spooler'\r\nif ($svc.Status -ne 'Running') {\r\n"
    "  Write-Output \"Spooler läuft nicht — 東京\"\r\n  exit 1\r\n}\r\nexit 0\r\n".encode("utf-8")
)
# Not valid UTF-8 at all: the content is Edm.Binary and must round-trip byte-exact.
REMEDIATION = bytes(range(256)) + b"\r\nStart-Service Spooler\r\n"


def _full_script(**over) -> DeviceHealthScript:
    props = dict(
        display_name="Restart Print Spooler",
        description="Detects a stopped spooler\nand starts it.",
        publisher="Contoso IT",
        detection_script_content=DETECTION,
        remediation_script_content=REMEDIATION,
        run_as_account=RunAsAccountType.User,
        run_as32_bit=True,
        enforce_signature_check=True,
        role_scope_tag_ids=["0"],
    )
    props.update(over)
    return DeviceHealthScript(**props)


def _scope_tag(api, tenant_factory) -> str:
    """A role scope tag of the tenant (scripts may name only existing tags)."""
    admin = tenant_factory(tenant=api.tenant, scopes=["DeviceManagementRBAC.ReadWrite.All"])
    resp = admin.http.post("/deviceManagement/roleScopeTags", json={"displayName": "Paris"})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


def test_create_returns_full_entity(api, tenant_factory):
    before = datetime.now(timezone.utc) - timedelta(minutes=5)
    tag = _scope_tag(api, tenant_factory)
    created = api.run(api.scripts.post(_full_script(role_scope_tag_ids=["0", tag])))

    uuid.UUID(created.id)  # server-assigned UUID string
    assert created.display_name == "Restart Print Spooler"
    assert created.description == "Detects a stopped spooler\nand starts it."
    assert created.publisher == "Contoso IT"
    assert created.detection_script_content == DETECTION
    assert created.remediation_script_content == REMEDIATION
    assert created.run_as_account == RunAsAccountType.User
    assert created.run_as32_bit is True
    assert created.enforce_signature_check is True
    assert created.role_scope_tag_ids == ["0", tag]
    assert created.version == "1"
    assert created.created_date_time is not None and created.created_date_time >= before
    assert created.last_modified_date_time is not None and created.last_modified_date_time >= before


def test_get_round_trips_content_byte_exact(api, tenant_factory):
    tag = _scope_tag(api, tenant_factory)
    created = api.run(api.scripts.post(_full_script(role_scope_tag_ids=["0", tag])))
    got = api.run(api.script(created.id).get())
    assert got.id == created.id
    assert got.detection_script_content == DETECTION
    assert got.remediation_script_content == REMEDIATION
    assert got.display_name == "Restart Print Spooler"
    assert got.run_as_account == RunAsAccountType.User
    assert got.role_scope_tag_ids == ["0", tag]
    assert got.version == "1"
    assert got.created_date_time == created.created_date_time


def test_get_raw_wire_format(api):
    created = api.create_script(detection_script_content=DETECTION)
    r = api.http.get(f"/deviceManagement/deviceHealthScripts/{created.id}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["id"] == created.id
    assert body["@odata.context"].endswith("$metadata#deviceManagement/deviceHealthScripts/$entity")
    assert base64.b64decode(body["detectionScriptContent"], validate=True) == DETECTION
    assert UTC_DATETIME_RE.match(body["createdDateTime"]), body["createdDateTime"]
    assert UTC_DATETIME_RE.match(body["lastModifiedDateTime"]), body["lastModifiedDateTime"]


def test_list_returns_contents_as_null(api):
    a = api.create_script(display_name="A")
    b = api.create_script(display_name="B")
    page = api.run(api.scripts.get())
    by_id = {s.id: s for s in page.value}
    assert set(by_id) == {a.id, b.id}  # fresh tenant: exactly ours
    for s in by_id.values():
        assert s.detection_script_content is None
        assert s.remediation_script_content is None
        assert s.version == "1"
    assert by_id[a.id].display_name == "A"

    raw = api.http.get("/deviceManagement/deviceHealthScripts").json()
    assert raw["@odata.context"].endswith("$metadata#deviceManagement/deviceHealthScripts")
    for item in raw["value"]:
        assert "detectionScriptContent" in item and item["detectionScriptContent"] is None, item
        assert "remediationScriptContent" in item and item["remediationScriptContent"] is None, item


def test_patch_changes_and_version_increments_on_content_change(api):
    created = api.create_script(display_name="before")
    result = api.run(api.script(created.id).patch(DeviceHealthScript(display_name="after", description="d2")))
    # 200 with the updated script (Graph docs), deserialized by the SDK as the declared type
    assert type(result) is DeviceHealthScript, type(result)
    assert (result.id, result.display_name, result.description, result.version) == (created.id, "after", "d2", "1")

    got = api.run(api.script(created.id).get())
    assert got.display_name == "after"
    assert got.description == "d2"
    assert got.detection_script_content == created.detection_script_content  # untouched
    assert got.version == "1", "version must not change when script content does not change"

    time.sleep(0.01)
    patched = api.run(api.script(created.id).patch(DeviceHealthScript(detection_script_content=b"exit 1\r\n")))
    assert patched.version == "2" and patched.detection_script_content == b"exit 1\r\n"
    got2 = api.run(api.script(created.id).get())
    assert got2.detection_script_content == b"exit 1\r\n"
    assert got2.version == "2"
    assert got2.display_name == "after"
    assert got2.last_modified_date_time > created.last_modified_date_time
    assert got2.created_date_time == created.created_date_time


def test_patch_status_is_200_with_the_entity_raw(api):
    created = api.create_script()
    path = f"/deviceManagement/deviceHealthScripts/{created.id}"
    r = api.http.patch(path, json={"description": "raw patch"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body == api.http.get(path).json()
    assert body["description"] == "raw patch"
    assert body["@odata.context"].endswith("$metadata#deviceManagement/deviceHealthScripts/$entity")
    assert "@odata.type" not in body, body


def test_delete_then_get_is_404(api):
    created = api.create_script()
    assert api.run(api.script(created.id).delete()) is None
    api.expect_error(api.script(created.id).get(), 404, "ResourceNotFound")
    page = api.run(api.scripts.get())
    assert created.id not in [s.id for s in page.value]


def test_create_without_detection_content_is_400(api):
    err = api.expect_error(
        api.scripts.post(DeviceHealthScript(display_name="no content")), 400, "BadRequest"
    )
    assert "detectionScriptContent" in err.error.message
    assert api.run(api.scripts.get()).value == []


def test_key_syntax_addressing(api):
    created = api.create_script(display_name="keyed")
    r = api.http.get(f"/deviceManagement/deviceHealthScripts('{created.id}')")
    assert r.status_code == 200, r.text
    assert r.json()["id"] == created.id
    assert r.json()["detectionScriptContent"] is not None

    r = api.http.patch(
        f"/deviceManagement/deviceHealthScripts('{created.id}')", json={"displayName": "keyed-2"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["displayName"] == "keyed-2"
    assert api.run(api.script(created.id).get()).display_name == "keyed-2"

    r = api.http.delete(f"/deviceManagement/deviceHealthScripts('{created.id}')")
    assert r.status_code == 204, r.text
    api.expect_error(api.script(created.id).get(), 404, "ResourceNotFound")
