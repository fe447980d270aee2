"""Shared helpers for the msgraph-beta-sdk compatibility suite.

The server under test is the `remediate` binary. Tests drive it with the official
Python SDK (msgraph-beta-sdk) pointed at http://127.0.0.1:PORT/beta with a token
minted by `remediate token`, plus raw HTTP (httpx) where the wire itself matters.
"""
from __future__ import annotations

import asyncio
import os
import queue
import re
import signal
import subprocess
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional
from urllib.parse import urlparse

import httpx
import pytest
from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from msgraph_beta import GraphRequestAdapter, GraphServiceClient
from msgraph_beta.generated.models.device_health_script import DeviceHealthScript
from msgraph_beta.generated.models.device_health_script_device_state import (
    DeviceHealthScriptDeviceState,
)
from msgraph_beta.generated.models.managed_device import ManagedDevice
from msgraph_beta.generated.models.o_data_errors.o_data_error import ODataError
from msgraph_beta.generated.models.run_as_account_type import RunAsAccountType

REPO_ROOT = Path(__file__).resolve().parents[2]

SCOPES_RW = [
    "DeviceManagementScripts.ReadWrite.All",
    "DeviceManagementManagedDevices.ReadWrite.All",
]
SCOPES_READ_ONLY = ["DeviceManagementScripts.Read.All"]

GRAPH_CONTENT_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;"
    "IEEE754Compatible=false;charset=utf-8"
)
STATE_ODATA_TYPE = "#microsoft.graph.deviceHealthScriptDeviceState"
SEED_ODATA_TYPE = "#microsoft.management.services.api.deviceHealthScriptDeviceState"

# Output format of Edm.DateTimeOffset: UTC, 'Z', up to 7 fraction digits, trailing zeros trimmed.
UTC_DATETIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{0,6}[1-9])?Z$")
MIN_DATETIME = datetime(1, 1, 1, tzinfo=timezone.utc)
# The main listener's line (http, or https with --tls); "proxy listening on http://…" (--proxy-listen)
# is another line, not this one.
LISTEN_RE = re.compile(r"^listening on (https?://[^\s]+)")

# The eleven writable properties of deviceHealthScriptDeviceState (all twelve but id), SDK names.
STATE_WRITABLE = [
    "detection_state",
    "remediation_state",
    "last_state_update_date_time",
    "expected_state_update_date_time",
    "last_sync_date_time",
    "pre_remediation_detection_script_output",
    "pre_remediation_detection_script_error",
    "remediation_script_error",
    "post_remediation_detection_script_output",
    "post_remediation_detection_script_error",
    "assignment_filter_ids",
]
STATE_JSON_PROPERTIES = [
    "id",
    "detectionState",
    "lastStateUpdateDateTime",
    "expectedStateUpdateDateTime",
    "lastSyncDateTime",
    "preRemediationDetectionScriptOutput",
    "preRemediationDetectionScriptError",
    "remediationScriptError",
    "postRemediationDetectionScriptOutput",
    "postRemediationDetectionScriptError",
    "remediationState",
    "assignmentFilterIds",
]


def server_binary() -> Path:
    env = os.environ.get("REMEDIATE_BIN")
    if env:
        return Path(env).resolve()
    return REPO_ROOT / "target" / "release" / "remediate"


def _child_env() -> dict[str, str]:
    # The server reads REMEDIATE_* configuration; keep the caller's out of the tests.
    env = {k: v for k, v in os.environ.items() if not k.startswith("REMEDIATE_")}
    env.setdefault("NO_COLOR", "1")
    return env


class Server:
    """One `remediate serve` process on a free port with its own data dir."""

    def __init__(
        self,
        binary: Path,
        backend: str,
        data_dir: Path,
        database_url: Optional[str],
        extra_args: tuple[str, ...] = (),
    ):
        self.binary = binary
        self.extra_args = list(extra_args)  # more `serve` flags, e.g. --throttle-window-secs 3
        self.backend = backend
        self.data_dir = data_dir
        self.database_url = database_url
        self.proc: Optional[subprocess.Popen] = None
        self.origin = ""
        self.base = ""
        self.stdout_lines: list[str] = []
        self.stderr_path = data_dir / "server.stderr.log"

    def stderr_text(self, limit: int = 6000) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return "<no stderr>"
        return text[-limit:]

    def start(self, timeout: float = 60.0) -> None:
        args = [str(self.binary), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(self.data_dir)]
        if self.database_url:
            args += ["--database", self.database_url]
        args += self.extra_args
        stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=self.data_dir,
            env=_child_env(),
        )
        stderr.close()
        found: "queue.Queue[Optional[str]]" = queue.Queue()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            announced = False
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", errors="replace")
                self.stdout_lines.append(line)
                m = LISTEN_RE.search(line)
                if m and not announced:
                    announced = True
                    found.put(m.group(1))
            found.put(None)

        threading.Thread(target=pump, name=f"remediate-{self.backend}-stdout", daemon=True).start()
        try:
            url = found.get(timeout=timeout)
        except queue.Empty:
            url = None
        if not url:
            rc = self.proc.poll()
            self.stop(check=False)
            raise RuntimeError(
                f"`{' '.join(args)}` did not print 'listening on http://…' within {timeout:.0f} s "
                f"(exit code {rc}).\nstdout:\n{''.join(self.stdout_lines)[-3000:]}\n"
                f"stderr:\n{self.stderr_text()}"
            )
        self.origin = url.rstrip("/")
        self.base = self.origin + "/beta"

    def stop(self, check: bool = True, timeout: float = 20.0) -> Optional[str]:
        """SIGTERM, wait. Returns a problem description, or None when it exited cleanly."""
        if self.proc is None or self.proc.poll() is not None:
            return None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return f"server did not exit within {timeout:.0f} s of SIGTERM"
        if check and rc != 0:
            return f"server exited with code {rc} after SIGTERM; stderr:\n{self.stderr_text(2000)}"
        return None

    def token(
        self,
        tenant: str,
        scopes: list[str],
        roles: list[str] = (),
        expires_in: Optional[int] = None,
        app_id: Optional[str] = None,
    ) -> str:
        args = [str(self.binary), "token", "--data-dir", str(self.data_dir), "--tenant", tenant]
        for s in scopes:
            args += ["--scope", s]
        for r in roles:
            args += ["--role", r]
        if expires_in is not None:
            args += ["--expires-in", str(expires_in)]
        if app_id is not None:
            args += ["--app-id", app_id]
        p = subprocess.run(
            args, capture_output=True, text=True, timeout=60, cwd=self.data_dir, env=_child_env()
        )
        lines = [l.strip() for l in p.stdout.splitlines() if l.strip()]
        if p.returncode != 0 or not lines or lines[-1].count(".") != 2:
            raise RuntimeError(
                f"`{' '.join(args)}` failed (exit {p.returncode}).\nstdout:\n{p.stdout}\nstderr:\n{p.stderr}"
            )
        return lines[-1]


class StaticTokenProvider(AccessTokenProvider):
    """Hands the SDK a fixed bearer token, only for the server's host."""

    def __init__(self, token: str, host: str):
        self._token = token
        self._validator = AllowedHostsValidator([host])

    async def get_authorization_token(
        self, uri: str, additional_authentication_context: dict[str, Any] = {}
    ) -> str:
        if not self._validator.is_url_host_valid(uri):
            return ""
        return self._token

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self._validator


def make_graph_client(
    base_url: str, token: str, http_client: Optional[httpx.AsyncClient] = None
) -> tuple[GraphServiceClient, GraphRequestAdapter]:
    """`http_client`: one built by GraphClientFactory (custom middleware options); default: the SDK's own."""
    host = urlparse(base_url).hostname or "127.0.0.1"
    auth = BaseBearerTokenAuthenticationProvider(StaticTokenProvider(token, host))
    adapter = GraphRequestAdapter(auth, client=http_client)
    # Must be set before the client is built: the client copies it into its path parameters.
    adapter.base_url = base_url
    return GraphServiceClient(request_adapter=adapter), adapter


# The SDK serializes only the properties the CSDL docs mark writable; the others (deviceName,
# osVersion, serialNumber, …) a client must put into additional_data under their JSON names.
_SDK_SKIPS = {
    "device_name": "deviceName",
    "operating_system": "operatingSystem",
    "os_version": "osVersion",
    "serial_number": "serialNumber",
    "manufacturer": "manufacturer",
    "model": "model",
    "user_principal_name": "userPrincipalName",
    "user_display_name": "userDisplayName",
    "email_address": "emailAddress",
    "azure_a_d_device_id": "azureADDeviceId",
    "enrolled_date_time": "enrolledDateTime",
    "last_sync_date_time": "lastSyncDateTime",
    "is_encrypted": "isEncrypted",
    "is_supervised": "isSupervised",
    "total_storage_space_in_bytes": "totalStorageSpaceInBytes",
    "free_storage_space_in_bytes": "freeStorageSpaceInBytes",
    "physical_memory_in_bytes": "physicalMemoryInBytes",
}


def device_model(**props) -> ManagedDevice:
    """ManagedDevice for POST/PATCH: writable properties typed, the rest in additional_data."""
    props.setdefault("device_name", f"LAB-{uuid.uuid4().hex[:6].upper()}")
    props.setdefault("operating_system", "Windows")
    props.setdefault("os_version", "10.0.22631.4037")
    return device_patch(**props)


def device_patch(**props) -> ManagedDevice:
    extra: dict[str, Any] = {}
    for name in list(props):
        if name in _SDK_SKIPS:
            value = props.pop(name)
            extra[_SDK_SKIPS[name]] = value.isoformat() if isinstance(value, datetime) else value
    model = ManagedDevice(**props)
    model.additional_data = extra
    return model


def bind_url(device_id: str, host: str = "https://graph.microsoft.com") -> str:
    return f"{host}/beta/deviceManagement/managedDevices('{device_id}')"


@dataclass
class Api:
    """One tenant's view of the server: SDK client + raw HTTP client."""

    server: Server
    loop: asyncio.AbstractEventLoop
    tenant: str
    token: str
    graph: GraphServiceClient
    adapter: GraphRequestAdapter
    http: httpx.Client
    _closed: bool = field(default=False)

    def run(self, coro):
        return self.loop.run_until_complete(coro)

    # --- SDK request builders -------------------------------------------------
    @property
    def scripts(self):
        return self.graph.device_management.device_health_scripts

    def script(self, script_id: str):
        return self.scripts.by_device_health_script_id(script_id)

    def states(self, script_id: str):
        return self.script(script_id).device_run_states

    def state(self, script_id: str, state_id: str):
        return self.states(script_id).by_device_health_script_device_state_id(state_id)

    @property
    def devices(self):
        return self.graph.device_management.managed_devices

    def device(self, device_id: str):
        return self.devices.by_managed_device_id(device_id)

    # --- creation helpers -----------------------------------------------------
    def create_script(self, **overrides) -> DeviceHealthScript:
        props: dict[str, Any] = dict(
            display_name=f"sdk-test {uuid.uuid4().hex[:8]}",
            description="created by tests/sdk",
            publisher="tests",
            detection_script_content=b"Write-Output 'ok'\r\nexit 0\r\n",
            remediation_script_content=b"Write-Output 'fixed'\r\nexit 0\r\n",
            run_as_account=RunAsAccountType.System,
            run_as32_bit=False,
            enforce_signature_check=False,
            role_scope_tag_ids=["0"],
        )
        props.update(overrides)
        created = self.run(self.scripts.post(DeviceHealthScript(**props)))
        assert created is not None and created.id, "POST deviceHealthScripts returned no entity"
        return created

    def create_device(self, **overrides) -> ManagedDevice:
        created = self.run(self.devices.post(device_model(**overrides)))
        assert created is not None and created.id, "POST managedDevices returned no entity"
        return created

    def create_state(
        self, script_id: str, device_id: Optional[str] = None, **props
    ) -> DeviceHealthScriptDeviceState:
        body = DeviceHealthScriptDeviceState(**props)
        if device_id is not None:
            body.additional_data = {"managedDevice@odata.bind": bind_url(device_id)}
        created = self.run(self.states(script_id).post(body))
        assert created is not None and created.id, "POST deviceRunStates returned no entity"
        return created

    def expect_error(self, coro, status: int, code: str) -> ODataError:
        """Runs an SDK call that must fail with an ODataError of this status and code."""
        with pytest.raises(ODataError) as info:
            self.run(coro)
        err = info.value
        assert err.response_status_code == status, (
            f"expected HTTP {status}, got {err.response_status_code}: "
            f"{getattr(err.error, 'code', None)}: {getattr(err.error, 'message', None)}"
        )
        assert err.error is not None, "error body has no 'error' object"
        assert err.error.code == code, f"expected code {code!r}, got {err.error.code!r} ({err.error.message!r})"
        assert err.error.message, "error message is empty"
        return err

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.http.close()
        client = getattr(self.adapter, "_http_client", None)
        if client is not None:
            self.run(client.aclose())


def make_api(
    server: Server, loop, tenant: Optional[str] = None, scopes=None, roles=(), token=None,
    app_id: Optional[str] = None, http_client: Optional[httpx.AsyncClient] = None,
) -> Api:
    tenant = tenant or str(uuid.uuid4())
    if token is None:
        token = server.token(tenant, list(scopes if scopes is not None else SCOPES_RW), list(roles), app_id=app_id)
    graph, adapter = make_graph_client(server.base, token, http_client)
    http = httpx.Client(
        base_url=server.base,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        timeout=30.0,
    )
    return Api(server=server, loop=loop, tenant=tenant, token=token, graph=graph, adapter=adapter, http=http)


def assert_error_body(resp: httpx.Response, status: int, code: str) -> dict:
    """Raw-HTTP check of a Graph error response; returns error.message etc."""
    assert resp.status_code == status, f"expected {status}, got {resp.status_code}: {resp.text[:500]}"
    try:
        body = resp.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {resp.text[:500]!r}")
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), f"no 'error' object: {body}"
    err = body["error"]
    assert err.get("code") == code, f"expected code {code!r}, got {err.get('code')!r}: {err.get('message')!r}"
    assert isinstance(err.get("message"), str) and err["message"], f"empty message: {err}"
    inner = err.get("innerError")
    assert isinstance(inner, dict), f"no innerError: {err}"
    for k in ("date", "request-id", "client-request-id"):
        assert k in inner, f"innerError lacks {k!r}: {inner}"
    return err


def parse_graph_datetime(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# --- additions for the query / assignment / computed-view / batch tests ------------------------

PRIVILEGED_SCOPE = "DeviceManagementManagedDevices.PrivilegedOperations.All"
ALL_DEVICES_GROUP = "adadadad-808e-44e2-905a-0b7873a8a531"


def query_config(builder_cls, **params):
    """RequestConfiguration with the builder's own generated GetQueryParameters class,
    e.g. query_config(DeviceRunStatesRequestBuilder, filter=…, top=5)."""
    from kiota_abstractions.base_request_configuration import RequestConfiguration

    qp_cls = getattr(builder_cls, builder_cls.__name__ + "GetQueryParameters")
    return RequestConfiguration(query_parameters=qp_cls(**params))


def raw_items(resp: httpx.Response) -> list[dict]:
    assert resp.status_code == 200, f"{resp.request.method} {resp.request.url}: {resp.status_code} {resp.text[:500]}"
    body = resp.json()
    assert isinstance(body.get("value"), list), f"no 'value' array: {body}"
    return body["value"]


def plain_keys(obj: dict) -> set[str]:
    """The property names of a JSON entity, without OData annotations (`@odata.*`, `x@odata.*`)."""
    return {k for k in obj if "@" not in k}
