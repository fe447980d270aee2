"""The Entra-shaped token endpoint with unmodified Microsoft clients: azure-identity's ClientSecretCredential
(MSAL's real client-credentials flow: OpenID discovery, then the token endpoint) and the official
msgraph-beta SDK's GraphServiceClient, for an app registered with `remediate app create`.

- Through the proxy mode with Graph's real base URL: only `HTTPS_PROXY=http://ADDR` and the local CA trusted
  (`REQUESTS_CA_BUNDLE` for MSAL's requests, `SSL_CERT_FILE` for the SDK's httpx); the credential and the
  client are built exactly as against Microsoft Graph.
- Over `--tls`, with the server's own https address as the authority (instance discovery off, as for any
  authority that is not Microsoft's) and as the SDK's base URL.

Each runs the lifecycle: script, assign, managed devices, the seed POST of deviceRunStates, a $batch of
seed POSTs, a $filter query and paging; and MSAL's view of refusals (wrong secret, revoked app).
"""
from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from datetime import time as daytime
from pathlib import Path
from urllib.parse import urlparse

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import AzureAuthorityHosts, ClientSecretCredential
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph_beta import GraphRequestAdapter, GraphServiceClient
from msgraph_beta.generated.device_management.device_health_scripts.item.assign.assign_post_request_body import (
    AssignPostRequestBody,
)
from msgraph_beta.generated.device_management.device_health_scripts.item.device_run_states.device_run_states_request_builder import (
    DeviceRunStatesRequestBuilder,
)
from msgraph_beta.generated.models.all_devices_assignment_target import AllDevicesAssignmentTarget
from msgraph_beta.generated.models.device_health_script import DeviceHealthScript
from msgraph_beta.generated.models.device_health_script_assignment import DeviceHealthScriptAssignment
from msgraph_beta.generated.models.device_health_script_daily_schedule import DeviceHealthScriptDailySchedule
from msgraph_beta.generated.models.device_health_script_device_state import DeviceHealthScriptDeviceState
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.remediation_state import RemediationState
from msgraph_beta.generated.models.run_as_account_type import RunAsAccountType
from msgraph_beta.generated.models.run_state import RunState
from msgraph_core.requests.batch_request_builder import BatchRequestBuilder
from msgraph_core.requests.batch_request_content import BatchRequestContent
from msgraph_core.requests.batch_request_item import BatchRequestItem
from msgraph_core.tasks.page_iterator import PageIterator

from _support import _child_env, bind_url, device_model, query_config

GRAPH_DEFAULT = "https://graph.microsoft.com/.default"
ROLES = ["DeviceManagementScripts.ReadWrite.All", "DeviceManagementManagedDevices.ReadWrite.All"]
DEVICES = 7  # with pages of 3: three pages


def _app(server, *args: str) -> list[str]:
    """`remediate app ARGS` on the server's data directory and database; its stdout lines."""
    cmd = [str(server.binary), "app", *args, "--data-dir", str(server.data_dir)]
    if server.database_url:
        cmd += ["--database", server.database_url]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=server.data_dir, env=_child_env())
    if p.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` failed (exit {p.returncode}):\n{p.stdout}\n{p.stderr}")
    return [line for line in p.stdout.splitlines() if line.strip()]


def register_app(server, tenant: str, roles=ROLES) -> tuple[str, str]:
    """`remediate app create`: its last two stdout lines are the client id and the client secret."""
    args = ["create", "--tenant", tenant, "--name", "sdk-entra"]
    for role in roles:
        args += ["--role", role]
    *_, client_id, secret = _app(server, *args)
    assert uuid.UUID(client_id), client_id
    return client_id, secret


def proxy_address(server) -> str:
    """The proxy's address, from its startup line `proxy listening on http://ADDR …`."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for line in server.stdout_lines:
            if line.startswith("proxy listening on http://"):
                return line.split("http://", 1)[1].split()[0]
        time.sleep(0.05)
    raise AssertionError(f"no 'proxy listening on' line in:\n{''.join(server.stdout_lines)}")


def ca_file(server) -> str:
    path = Path(server.data_dir) / "ca.pem"
    assert path.is_file(), f"--tls did not create the local CA certificate {path}"
    return str(path)


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


@pytest.fixture
def trusted(entra_server, monkeypatch):
    """The local CA trusted by MSAL (requests) and the SDK (httpx), and no proxy bypass from outside."""
    ca = ca_file(entra_server)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca)
    monkeypatch.setenv("SSL_CERT_FILE", ca)
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def _close(loop, adapter) -> None:
    client = getattr(adapter, "_http_client", None)
    if client is not None:
        loop.run_until_complete(client.aclose())


def run_lifecycle(loop, graph: GraphServiceClient, adapter, link_origin: str) -> None:
    """Script → assign → devices → the seed POST → a $batch of seed POSTs → $filter → paging, all through `graph`."""
    run = loop.run_until_complete
    scripts = graph.device_management.device_health_scripts
    script = run(scripts.post(DeviceHealthScript(
        display_name=f"entra {uuid.uuid4().hex[:8]}",
        publisher="tests/sdk/test_entra.py",
        detection_script_content=b"Write-Output 'ok'\r\nexit 0\r\n",
        remediation_script_content=b"Write-Output 'fixed'\r\nexit 0\r\n",
        run_as_account=RunAsAccountType.System,
        role_scope_tag_ids=["0"],
    )))
    assert script is not None and script.id
    script_builder = scripts.by_device_health_script_id(script.id)
    assignment = DeviceHealthScriptAssignment(
        target=AllDevicesAssignmentTarget(),
        run_remediation_script=True,
        run_schedule=DeviceHealthScriptDailySchedule(interval=1, time=daytime(8, 0), use_utc=True),
    )
    run(script_builder.assign.post(AssignPostRequestBody(device_health_script_assignments=[assignment])))
    assignments = run(script_builder.assignments.get()).value
    assert len(assignments) == 1 and type(assignments[0].target) is AllDevicesAssignmentTarget

    devices = graph.device_management.managed_devices
    device_ids = [run(devices.post(device_model(device_name=f"ENTRA-{i:02d}"))).id for i in range(DEVICES)]
    assert len(set(device_ids)) == DEVICES and all(device_ids)

    def state(i: int) -> DeviceHealthScriptDeviceState:
        body = DeviceHealthScriptDeviceState(
            detection_state=RunState.Fail if i % 2 else RunState.Success,
            remediation_state=RemediationState.Success if i % 2 else RemediationState.Skipped,
        )
        body.additional_data = {"managedDevice@odata.bind": bind_url(device_ids[i])}
        return body

    # The seed: Create deviceRunStates, as Intune's reporting does.
    states = script_builder.device_run_states
    created = run(states.post(state(0)))
    assert created.id == f"{script.id}:{device_ids[0]}"
    # The rest in one $batch of writes.
    items = []
    for i in range(1, DEVICES):
        item = BatchRequestItem(states.to_post_request_information(state(i)), id=str(i))
        item.set_url(item.url)  # relative, as Graph wants (see test_batch_metadata.py)
        items.append(item)
    response = run(BatchRequestBuilder(adapter, error_map={"XXX": ODataError}).post(
        BatchRequestContent({item.id: item for item in items})))
    assert response.get_response_status_codes() == {str(i): 201 for i in range(1, DEVICES)}

    # A query with $filter.
    failing = run(states.get(query_config(DeviceRunStatesRequestBuilder, filter="detectionState eq 'fail'")))
    assert {s.id for s in failing.value} == {f"{script.id}:{device_ids[i]}" for i in range(DEVICES) if i % 2}

    # Paging: three pages of at most 3, the links on the origin the client used.
    first = run(states.get(query_config(DeviceRunStatesRequestBuilder, top=3, count=True)))
    assert first.odata_count == DEVICES and len(first.value) == 3
    assert first.odata_next_link and first.odata_next_link.startswith(f"{link_origin}/beta/"), first.odata_next_link
    seen: list[str] = []
    run(PageIterator(first, adapter).iterate(lambda s: seen.append(s.id) or len(seen) < 3 * DEVICES))
    assert sorted(seen) == sorted(f"{script.id}:{d}" for d in device_ids), seen

    summary = run(script_builder.run_summary.get())
    assert summary.issue_detected_device_count == DEVICES // 2, summary


def test_entra_lifecycle_through_the_proxy_with_graphs_real_base_url(entra_server, trusted, loop):
    tenant = str(uuid.uuid4())
    client_id, secret = register_app(entra_server, tenant)
    trusted.setenv("HTTPS_PROXY", f"http://{proxy_address(entra_server)}")

    # As against Microsoft: the public cloud's authority, Graph's scope, the SDK's default base URL.
    credential = ClientSecretCredential(tenant, client_id, secret, authority=AzureAuthorityHosts.AZURE_PUBLIC_CLOUD)
    token = credential.get_token(GRAPH_DEFAULT)
    c = claims(token.token)
    assert (c["tid"], c["appid"], c["azp"], c["roles"]) == (tenant, client_id, client_id, ROLES), c
    assert 3000 < token.expires_on - time.time() <= 3600

    graph = GraphServiceClient(credentials=credential, scopes=[GRAPH_DEFAULT])
    adapter = graph.request_adapter
    assert adapter.base_url.rstrip("/") == "https://graph.microsoft.com/beta"
    try:
        run_lifecycle(loop, graph, adapter, "https://graph.microsoft.com")
    finally:
        _close(loop, adapter)


def test_entra_lifecycle_over_tls_with_the_servers_authority(entra_server, trusted, loop):
    assert entra_server.origin.startswith("https://"), entra_server.origin
    authority = urlparse(entra_server.origin).netloc
    tenant = str(uuid.uuid4())
    client_id, secret = register_app(entra_server, tenant)

    # Not one of Microsoft's authorities: MSAL would ask Microsoft's instance discovery about it, so it is off.
    credential = ClientSecretCredential(
        tenant, client_id, secret, authority=authority, disable_instance_discovery=True,
    )
    # The scope of remediate's own URL, as Kiota derives it without explicit scopes, also yields a token.
    assert claims(credential.get_token(f"{entra_server.origin}/.default").token)["tid"] == tenant

    auth = AzureIdentityAuthenticationProvider(credential, scopes=[GRAPH_DEFAULT], allowed_hosts=[urlparse(entra_server.origin).hostname])
    adapter = GraphRequestAdapter(auth)
    adapter.base_url = entra_server.base  # before the client is built: it copies it
    graph = GraphServiceClient(request_adapter=adapter)
    try:
        run_lifecycle(loop, graph, adapter, entra_server.origin)
    finally:
        _close(loop, adapter)


def test_entra_refusals_reach_azure_identity_with_their_aadsts_codes(entra_server, trusted, loop):
    tenant = str(uuid.uuid4())
    client_id, secret = register_app(entra_server, tenant, roles=["DeviceManagementScripts.Read.All"])
    trusted.setenv("HTTPS_PROXY", f"http://{proxy_address(entra_server)}")

    wrong = ClientSecretCredential(tenant, client_id, "rma~wrong")
    with pytest.raises(ClientAuthenticationError) as info:
        wrong.get_token(GRAPH_DEFAULT)
    assert "AADSTS7000215" in str(info.value), info.value

    unknown = ClientSecretCredential(tenant, str(uuid.uuid4()), secret)
    with pytest.raises(ClientAuthenticationError) as info:
        unknown.get_token(GRAPH_DEFAULT)
    assert "AADSTS700016" in str(info.value), info.value

    # A role the app lacks: Graph's 403 through the SDK.
    credential = ClientSecretCredential(tenant, client_id, secret)
    graph = GraphServiceClient(credentials=credential, scopes=[GRAPH_DEFAULT])
    try:
        assert loop.run_until_complete(graph.device_management.device_health_scripts.get()).value == []
        with pytest.raises(ODataError) as denied:
            loop.run_until_complete(graph.device_management.managed_devices.get())
        assert denied.value.response_status_code == 403
    finally:
        _close(loop, graph.request_adapter)

    # Revoked: no new token (a fresh credential, so nothing comes from MSAL's cache).
    lines = _app(entra_server, "revoke", "--tenant", tenant, "--client-id", client_id)
    assert "revoked" in lines[-1], lines
    with pytest.raises(ClientAuthenticationError) as info:
        ClientSecretCredential(tenant, client_id, secret).get_token(GRAPH_DEFAULT)
    assert "AADSTS7000215" in str(info.value) and "revoked" in str(info.value), info.value
