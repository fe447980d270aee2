"""The official SDK reads what a real `remediate-agent` reported (issue 14): a script created and
assigned through the SDK, an agent enrolled with a secret made over HTTP and run once, then the run
state — detection and remediation results and outputs, bound to the agent's managed device — read
back through the SDK exactly as report tools read Intune's."""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from msgraph_beta.generated.device_management.device_health_scripts.item.assign.assign_post_request_body import (
    AssignPostRequestBody,
)
from msgraph_beta.generated.device_management.device_health_scripts.item.device_run_states.device_run_states_request_builder import (
    DeviceRunStatesRequestBuilder,
)
from msgraph_beta.generated.models.all_devices_assignment_target import AllDevicesAssignmentTarget
from msgraph_beta.generated.models.device_health_script_assignment import DeviceHealthScriptAssignment
from msgraph_beta.generated.models.remediation_state import RemediationState
from msgraph_beta.generated.models.run_state import RunState

from _support import query_config, server_binary


def _agent_binary() -> Path:
    return server_binary().parent / "remediate-agent"


def _agent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(_agent_binary()), *args], capture_output=True, text=True, timeout=120)


def test_the_sdk_reads_what_the_agent_reported(api, tmp_path):
    marker = tmp_path / "fixed"
    script = api.create_script(
        detection_script_content=f"#!/bin/sh\n[ -f {marker} ] && exit 0\necho 'spooler stopped'\nexit 1\n".encode(),
        remediation_script_content=f"#!/bin/sh\ntouch {marker}\necho restarted >&2\n".encode(),
    )
    body = AssignPostRequestBody(
        device_health_script_assignments=[
            DeviceHealthScriptAssignment(target=AllDevicesAssignmentTarget(), run_remediation_script=True)
        ]
    )
    api.run(api.script(script.id).assign.post(body))
    made = api.http.post("/deviceManagement/agentEnrollmentSecrets", json={"displayName": "sdk"})
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    state_dir = tmp_path / "agent"
    server = api.server.base.removesuffix("/beta")
    enrolled = _agent("enroll", "--server", server, "--secret", secret, "--state-dir", str(state_dir), "--name", "SDK-AGENT")
    assert enrolled.returncode == 0, enrolled.stderr
    device_id = enrolled.stdout.strip().split()[-1]
    ran = _agent("run", "--once", "--state-dir", str(state_dir))
    assert ran.returncode == 0, ran.stderr

    config = query_config(DeviceRunStatesRequestBuilder, expand=["managedDevice"])
    states = api.run(api.states(script.id).get(request_configuration=config)).value
    assert len(states) == 1
    state = states[0]
    assert state.id == f"{script.id}:{device_id}"
    assert state.detection_state == RunState.Fail
    assert state.remediation_state == RemediationState.Success
    assert state.pre_remediation_detection_script_output == "spooler stopped\n"
    assert state.remediation_script_error == "restarted\n"
    assert state.last_state_update_date_time is not None
    assert state.managed_device is not None and state.managed_device.device_name == "SDK-AGENT"
    device = api.run(api.device(device_id).get())
    assert device.device_name == "SDK-AGENT" and device.operating_system == "Linux"
