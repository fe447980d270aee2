"""managedDevices CRUD through the SDK (SPEC §2, §3.3)."""
from __future__ import annotations

import uuid
from datetime import datetime, timezone

from msgraph_beta.generated.models.compliance_state import ComplianceState
from msgraph_beta.generated.models.managed_device import ManagedDevice
from msgraph_beta.generated.models.managed_device_owner_type import ManagedDeviceOwnerType
from msgraph_beta.generated.models.management_agent_type import ManagementAgentType

from _support import MIN_DATETIME, device_model, device_patch

ENROLLED = datetime(2023, 12, 14, 18, 5, 18, tzinfo=timezone.utc)


def _device(**over):
    props = dict(
        device_name="CPC-achak-A17OZ",
        managed_device_name="21fa9ef6_Windows_12/14/2023_6:05 PM",
        operating_system="Windows",
        os_version="10.0.19044.3693",
        serial_number="0000-0014-0657-8375-4585-0309-11",
        manufacturer="Microsoft Corporation",
        model="Cloud PC Enterprise 2vCPU/4GB/128GB",
        user_principal_name="adele.vance@contoso.example",
        email_address="adele.vance@contoso.example",
        azure_a_d_device_id="21fa9ef6-f319-4ee2-8c87-097e34eeada7",
        enrolled_date_time=ENROLLED,
        compliance_state=ComplianceState.Noncompliant,
        management_agent=ManagementAgentType.Mdm,
        managed_device_owner_type=ManagedDeviceOwnerType.Company,
        is_encrypted=True,
        total_storage_space_in_bytes=136844410880,  # > 2^32: Int64 on the wire
        free_storage_space_in_bytes=110705508352,
        role_scope_tag_ids=["0"],
    )
    props.update(over)
    return device_model(**props)


def test_create_returns_entity_with_defaults(api):
    created = api.run(api.devices.post(_device()))
    uuid.UUID(created.id)
    assert created.device_name == "CPC-achak-A17OZ"
    assert created.managed_device_name == "21fa9ef6_Windows_12/14/2023_6:05 PM"
    assert created.operating_system == "Windows"
    assert created.os_version == "10.0.19044.3693"
    assert created.serial_number == "0000-0014-0657-8375-4585-0309-11"
    assert created.manufacturer == "Microsoft Corporation"
    assert created.model == "Cloud PC Enterprise 2vCPU/4GB/128GB"
    assert created.user_principal_name == "adele.vance@contoso.example"
    assert created.azure_a_d_device_id == "21fa9ef6-f319-4ee2-8c87-097e34eeada7"
    assert created.enrolled_date_time == ENROLLED
    assert created.compliance_state == ComplianceState.Noncompliant
    assert created.management_agent == ManagementAgentType.Mdm
    assert created.managed_device_owner_type == ManagedDeviceOwnerType.Company
    assert created.is_encrypted is True
    assert created.total_storage_space_in_bytes == 136844410880
    assert created.free_storage_space_in_bytes == 110705508352
    assert created.role_scope_tag_ids == ["0"]
    # SPEC §3.3: unset strings are "", unset non-nullable dates are 0001-01-01T00:00:00Z
    assert created.user_display_name == ""
    assert created.user_id == ""
    assert created.last_sync_date_time == MIN_DATETIME


def test_get_list_patch_delete(api):
    a = api.run(api.devices.post(_device(device_name="LAB-A")))
    b = api.run(api.devices.post(_device(device_name="LAB-B", serial_number="SN-B")))

    got = api.run(api.device(a.id).get())
    assert got.id == a.id
    assert got.device_name == "LAB-A"
    assert got.total_storage_space_in_bytes == 136844410880
    assert got.enrolled_date_time == ENROLLED

    page = api.run(api.devices.get())
    by_id = {d.id: d for d in page.value}
    assert set(by_id) == {a.id, b.id}
    assert by_id[b.id].serial_number == "SN-B"

    result = api.run(
        api.device(a.id).patch(
            device_patch(device_name="LAB-A-renamed", os_version="10.0.22631.4037", managed_device_name="LAB-A_Windows_renamed")
        )
    )
    # 200 with the updated device, deserialized by the SDK (no @odata.type: the declared type)
    assert type(result) is ManagedDevice, type(result)
    assert result.id == a.id and result.device_name == "LAB-A-renamed"
    got = api.run(api.device(a.id).get())
    assert got.device_name == "LAB-A-renamed"
    assert got.os_version == "10.0.22631.4037"
    assert got.managed_device_name == "LAB-A_Windows_renamed"
    assert got.serial_number == "0000-0014-0657-8375-4585-0309-11"  # unchanged by the merge

    assert api.run(api.device(a.id).delete()) is None
    api.expect_error(api.device(a.id).get(), 404, "ResourceNotFound")
    page = api.run(api.devices.get())
    assert [d.id for d in page.value] == [b.id]


def test_raw_wire_format(api):
    created = api.run(api.devices.post(_device()))
    r = api.http.get(f"/deviceManagement/managedDevices/{created.id}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["totalStorageSpaceInBytes"] == 136844410880  # a JSON number, not a string
    assert body["enrolledDateTime"] == "2023-12-14T18:05:18Z"
    assert body["lastSyncDateTime"] == "0001-01-01T00:00:00Z"
    assert body["complianceState"] == "noncompliant"
    assert body["userDisplayName"] == ""
