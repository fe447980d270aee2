"""Tenant isolation: the tid claim partitions all data; another tenant's resource is a 404 (SPEC §6)."""
from __future__ import annotations

from msgraph_beta.generated.models.device_health_script import DeviceHealthScript
from msgraph_beta.generated.models.device_health_script_device_state import (
    DeviceHealthScriptDeviceState,
)
from msgraph_beta.generated.models.run_state import RunState

from _support import SCOPES_RW, bind_url, device_patch


def test_second_tenant_sees_nothing_of_the_first(api, tenant_factory):
    script = api.create_script(display_name="tenant A script")
    device = api.create_device(device_name="TENANT-A-PC")
    state = api.create_state(script.id, device.id, detection_state=RunState.Fail)

    other = tenant_factory(scopes=SCOPES_RW)
    assert other.tenant != api.tenant

    # lists are empty
    assert other.run(other.scripts.get()).value == []
    assert other.run(other.devices.get()).value == []

    # every item is a 404, indistinguishable from a missing one
    other.expect_error(other.script(script.id).get(), 404, "ResourceNotFound")
    other.expect_error(other.device(device.id).get(), 404, "ResourceNotFound")
    other.expect_error(other.states(script.id).get(), 404, "ResourceNotFound")
    other.expect_error(other.state(script.id, state.id).get(), 404, "ResourceNotFound")
    other.expect_error(other.state(script.id, state.id).managed_device.get(), 404, "ResourceNotFound")
    r = other.http.get(f"/deviceManagement/deviceHealthScripts('{script.id}')")
    assert r.status_code == 404, r.text

    # writes do not reach the first tenant's data
    other.expect_error(other.script(script.id).patch(DeviceHealthScript(display_name="hijacked")), 404, "ResourceNotFound")
    other.expect_error(other.device(device.id).patch(device_patch(device_name="hijacked")), 404, "ResourceNotFound")
    other.expect_error(
        other.state(script.id, state.id).patch(DeviceHealthScriptDeviceState(detection_state=RunState.Success)),
        404,
        "ResourceNotFound",
    )
    body = DeviceHealthScriptDeviceState(detection_state=RunState.Success)
    body.additional_data = {"managedDevice@odata.bind": bind_url(device.id)}
    other.expect_error(other.states(script.id).post(body), 404, "ResourceNotFound")
    other.expect_error(other.state(script.id, state.id).delete(), 404, "ResourceNotFound")
    other.expect_error(other.script(script.id).delete(), 404, "ResourceNotFound")
    other.expect_error(other.device(device.id).delete(), 404, "ResourceNotFound")

    # binding the first tenant's device from the second tenant's own script: no such device there
    own = other.create_script()
    body = DeviceHealthScriptDeviceState(detection_state=RunState.Success)
    body.additional_data = {"managedDevice@odata.bind": bind_url(device.id)}
    other.expect_error(other.states(own.id).post(body), 400, "BadRequest")

    # tenant A still has everything, unchanged
    assert api.run(api.script(script.id).get()).display_name == "tenant A script"
    assert api.run(api.device(device.id).get()).device_name == "TENANT-A-PC"
    got = api.run(api.state(script.id, state.id).get())
    assert got.detection_state == RunState.Fail
    assert [s.id for s in api.run(api.scripts.get()).value] == [script.id]


def test_same_ids_in_two_tenants_do_not_collide(api, tenant_factory):
    """The run-state id is {scriptId}:{deviceId}; each tenant has its own namespace."""
    other = tenant_factory(scopes=SCOPES_RW)
    a_script, b_script = api.create_script(), other.create_script()
    assert a_script.id != b_script.id
    assert [s.id for s in other.run(other.scripts.get()).value] == [b_script.id]
    assert [s.id for s in api.run(api.scripts.get()).value] == [a_script.id]
