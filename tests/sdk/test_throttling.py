"""Graph realism through the SDK's own middleware: Intune throttling (`--throttle-window-secs`, 429 with
Retry-After) and injected 503s (`--inject-error-rate`, Retry-After: 1), each on its own SQLite server.

The SDK's default pipeline (GraphClientFactory.create_with_default_middleware) includes kiota's RetryHandler,
which retries 429/503/504 after the Retry-After seconds. The clients here are built the same way as
GraphRequestAdapter builds its own, on a transport that records every attempt the middleware sends."""
from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter

import httpx
import pytest
from kiota_http.middleware.options import RetryHandlerOption
from msgraph_beta.generated.device_management.managed_devices.managed_devices_request_builder import (
    ManagedDevicesRequestBuilder,
)
from msgraph_beta.generated.models.managed_device import ManagedDevice
from msgraph_beta.graph_request_adapter import apiVersion as SDK_API_VERSION
from msgraph_beta.graph_request_adapter import options as SDK_DEFAULT_OPTIONS
from msgraph_core import GraphClientFactory
from msgraph_core.tasks.page_iterator import PageIterator

from _support import SCOPES_RW, Server, assert_error_body, device_model, make_api, query_config, server_binary

WINDOW_SECS = 3
APP_WRITES = 200  # Intune: per application (appid) in a tenant, per window
TENANT_WRITES = 400  # per tenant, per window
SDK_CREATES = 260
CHUNK = 20  # concurrent SDK requests at a time


# --- servers ----------------------------------------------------------------------------------------

def _start(tmp_path_factory, name: str, *flags: str) -> Server:
    binary = server_binary()
    if not binary.is_file():
        pytest.fail(f"server binary not found: {binary} (set REMEDIATE_BIN)", pytrace=False)
    srv = Server(binary, "sqlite", tmp_path_factory.mktemp(name), None, extra_args=flags)
    try:
        srv.start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    return srv


def _stop(srv: Server) -> None:
    problem = srv.stop()
    if problem:
        pytest.fail(f"[{srv.backend} {' '.join(srv.extra_args)}] {problem}", pytrace=False)


@pytest.fixture(scope="module")
def throttled_server(tmp_path_factory):
    srv = _start(tmp_path_factory, "remediate-throttle", "--throttle-window-secs", str(WINDOW_SECS))
    yield srv
    _stop(srv)


@pytest.fixture(scope="module")
def chaos_server(tmp_path_factory):
    srv = _start(tmp_path_factory, "remediate-chaos", "--inject-error-rate", "0.3", "--chaos-seed", "5")
    yield srv
    _stop(srv)


# --- an SDK client whose transport records every attempt ----------------------------------------------

class RecordingTransport(httpx.AsyncBaseTransport):
    """Below the SDK middleware: sees each attempt, retries included."""

    def __init__(self):
        self.inner = httpx.AsyncHTTPTransport()
        self.statuses: Counter[int] = Counter()
        self.rejections: list[tuple[int, str | None, bytes]] = []  # (status, Retry-After, body) of 429/503
        self.retry_attempts = 0  # requests that carried the RetryHandler's Retry-Attempt header

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "Retry-Attempt" in request.headers:
            self.retry_attempts += 1
        response = await self.inner.handle_async_request(request)
        self.statuses[response.status_code] += 1
        if response.status_code in (429, 503):
            body = await response.aread()
            self.rejections.append((response.status_code, response.headers.get("retry-after"), body))
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def sdk_http_client(transport: RecordingTransport, retry: RetryHandlerOption | None = None) -> httpx.AsyncClient:
    """What GraphRequestAdapter builds by default (same middleware, same options), on `transport`;
    `retry` replaces the RetryHandler's default option (3 retries) through the documented options dict."""
    options = dict(SDK_DEFAULT_OPTIONS)
    if retry is not None:
        options[RetryHandlerOption.get_key()] = retry
    client = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(100, connect=30))
    return GraphClientFactory.create_with_default_middleware(
        api_version=SDK_API_VERSION, client=client, options=options
    )


def _create_devices(api, count: int, chunk: int, prefix: str) -> list[ManagedDevice]:
    async def go():
        created: list[ManagedDevice] = []
        for start in range(0, count, chunk):
            batch = [
                api.devices.post(device_model(device_name=f"{prefix}-{i:04d}", serial_number=f"{prefix}{i:04d}"))
                for i in range(start, min(start + chunk, count))
            ]
            created += await asyncio.gather(*batch)
        return created

    created = api.run(go())
    assert all(d is not None and d.id for d in created), "a create returned no entity"
    return created


def _list_all_devices(api) -> tuple[int, list[ManagedDevice]]:
    """GET managedDevices?$count=true&$top=100 and every nextLink (PageIterator), through the SDK."""
    first = api.run(api.devices.get(query_config(ManagedDevicesRequestBuilder, count=True, top=100)))
    seen: list[ManagedDevice] = []

    def take(d):
        seen.append(d)
        return len(seen) < 5000  # stops a looping server instead of hanging

    api.run(PageIterator(first, api.adapter).iterate(take))
    return first.odata_count, seen


def _assert_stored_exactly(api, created: list[ManagedDevice], prefix: str) -> None:
    ids = [d.id for d in created]
    assert len(set(ids)) == len(ids), f"the server handed out {len(ids) - len(set(ids))} duplicate ids"
    count, listed = _list_all_devices(api)
    listed_ids = Counter(d.id for d in listed)
    dupes = {i: n for i, n in listed_ids.items() if n > 1}
    assert not dupes, f"listed more than once: {dupes}"
    assert count == len(ids), f"@odata.count is {count}, created {len(ids)}"
    assert len(listed) == len(ids), f"listed {len(listed)} devices, created {len(ids)}"
    assert set(listed_ids) == set(ids), (
        f"missing: {sorted(set(ids) - set(listed_ids))[:5]}, unexpected: {sorted(set(listed_ids) - set(ids))[:5]}"
    )
    names = sorted(d.device_name for d in listed)
    assert names == [f"{prefix}-{i:04d}" for i in range(len(ids))], "a device was stored twice or not at all"


# --- throttling ---------------------------------------------------------------------------------------

def _post_burst(server: Server, token: str, count: int, prefix: str, concurrency: int = 50) -> list[httpx.Response]:
    """`count` raw creates, `concurrency` at a time, without any retry."""

    async def go():
        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(
            base_url=server.base, timeout=30.0, limits=limits,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        ) as client:
            gate = asyncio.Semaphore(concurrency)

            async def one(i):
                body = {"deviceName": f"{prefix}-{i:04d}", "operatingSystem": "Windows", "osVersion": "10.0.22631.1"}
                async with gate:
                    r = await client.post("/deviceManagement/managedDevices", json=body)
                    await r.aread()
                    return r

            return await asyncio.gather(*(one(i) for i in range(count)))

    return asyncio.run(go())


def _assert_throttle_response(r: httpx.Response) -> int:
    assert_error_body(r, 429, "TooManyRequests")
    retry_after = r.headers.get("retry-after")
    assert retry_after is not None and re.fullmatch(r"[0-9]+", retry_after), (
        f"429 needs Retry-After in whole seconds, got {retry_after!r}"
    )
    seconds = int(retry_after)
    assert 1 <= seconds <= WINDOW_SECS, f"Retry-After {seconds} s is outside the {WINDOW_SECS} s window"
    return seconds


def test_raw_burst_beyond_app_write_limit_is_429_with_retry_after(throttled_server, loop):
    api = make_api(throttled_server, loop, scopes=SCOPES_RW)
    try:
        responses = _post_burst(throttled_server, api.token, APP_WRITES + 60, "RAW")
        statuses = Counter(r.status_code for r in responses)
        assert set(statuses) <= {201, 429}, f"unexpected statuses: {statuses}"
        assert statuses[429] >= 1, (
            f"{APP_WRITES + 60} writes of one app in a burst: no 429 ({statuses}); "
            f"the per-app limit is {APP_WRITES} writes per {WINDOW_SECS} s"
        )
        waits = [_assert_throttle_response(r) for r in responses if r.status_code == 429]

        # a throttled request touched nothing: exactly the 201s are stored
        r = api.http.get("/deviceManagement/managedDevices", params={"$count": "true", "$top": "1"})
        assert r.status_code == 200, r.text
        assert r.json()["@odata.count"] == statuses[201], (r.json()["@odata.count"], statuses)

        # after Retry-After the window is over and the app may write again
        time.sleep(max(waits) + 0.2)
        again = api.http.post("/deviceManagement/managedDevices", json={"deviceName": "RAW-after"})
        assert again.status_code == 201, f"still throttled after Retry-After: {again.status_code} {again.text}"
    finally:
        api.close()


def test_tenant_write_limit_spans_apps(throttled_server, loop):
    """Two apps of one tenant use up the tenant's 400 writes between them (200 each, both under their own
    limit); a third app of that tenant is then throttled, an app of another tenant is not."""
    tenant = str(uuid.uuid4())
    a, b, c = (make_api(throttled_server, loop, tenant=tenant, app_id=f"app-{x}") for x in "abc")
    stranger = make_api(throttled_server, loop, app_id="app-c")
    try:
        async def both():
            return await asyncio.gather(
                asyncio.to_thread(_post_burst, throttled_server, a.token, APP_WRITES, "TA"),
                asyncio.to_thread(_post_burst, throttled_server, b.token, APP_WRITES, "TB"),
            )

        started = time.monotonic()
        ra, rb = asyncio.run(both())
        c_reply = c.http.post("/deviceManagement/managedDevices", json={"deviceName": "TC"})
        other = stranger.http.post("/deviceManagement/managedDevices", json={"deviceName": "OTHER"})
        elapsed = time.monotonic() - started
        statuses = Counter(r.status_code for r in ra + rb)
        if elapsed >= WINDOW_SECS or statuses[429]:
            pytest.skip(f"{2 * APP_WRITES} writes took {elapsed:.1f} s ({statuses}); cannot fill one {WINDOW_SECS} s window here")
        assert statuses == {201: 2 * APP_WRITES}, statuses
        _assert_throttle_response(c_reply)
        assert other.status_code == 201, f"another tenant was throttled: {other.status_code} {other.text}"
    finally:
        for x in (a, b, c, stranger):
            x.close()


def test_sdk_retry_handler_rides_out_throttling(throttled_server, loop):
    """260 creates of one app through the SDK, 20 at a time, as fast as possible: 60 over the app's write limit.
    The default RetryHandler waits Retry-After and retries; every create succeeds, each is stored once."""
    transport = RecordingTransport()
    api = make_api(throttled_server, loop, scopes=SCOPES_RW, http_client=sdk_http_client(transport))
    try:
        started = time.monotonic()
        created = _create_devices(api, SDK_CREATES, CHUNK, "SDK")
        elapsed = time.monotonic() - started
        attempts = dict(transport.statuses)

        assert transport.statuses[429] >= 1, (
            f"no 429 in {SDK_CREATES} writes of one app within {elapsed:.1f} s ({attempts}): "
            f"the throttle (per app {APP_WRITES} writes / {WINDOW_SECS} s) never engaged"
        )
        assert set(transport.statuses) == {201, 429}, attempts
        assert transport.statuses[201] == SDK_CREATES, f"a create was stored more than once on the wire: {attempts}"
        assert transport.retry_attempts == transport.statuses[429], (
            f"{transport.statuses[429]} throttled attempts but {transport.retry_attempts} retries"
        )
        for status, retry_after, body in transport.rejections:
            assert retry_after is not None and retry_after.isdigit() and 1 <= int(retry_after) <= WINDOW_SECS, retry_after
            assert b'"TooManyRequests"' in body, body[:300]

        _assert_stored_exactly(api, created, "SDK")
    finally:
        api.close()


# --- injected 503s ------------------------------------------------------------------------------------

def test_sdk_retry_handler_rides_out_injected_503s(chaos_server, loop):
    """30 % of requests get a 503 (Retry-After: 1) before touching anything; 50 SDK creates all succeed, once each.
    The RetryHandler's default of 3 retries fails a request with probability 0.3**4 (~1 in 123), so about one run
    in three of 50 creates would lose one; the documented RetryHandlerOption raises it to its maximum of 10."""
    transport = RecordingTransport()
    retry = RetryHandlerOption(max_retries=RetryHandlerOption.MAX_MAX_RETRIES)
    api = make_api(chaos_server, loop, scopes=SCOPES_RW, http_client=sdk_http_client(transport, retry))
    try:
        created = _create_devices(api, 50, 10, "CHAOS")
        posts = dict(transport.statuses)
        assert transport.statuses[503] >= 1, f"no injected 503 in {sum(posts.values())} attempts: {posts}"
        assert set(transport.statuses) == {201, 503}, posts
        assert transport.statuses[201] == 50, posts
        for status, retry_after, body in transport.rejections:
            assert retry_after == "1", f"injected 503 with Retry-After {retry_after!r}"
            assert b'"ServiceUnavailable"' in body, body[:300]

        _assert_stored_exactly(api, created, "CHAOS")  # the listing GETs are retried the same way
    finally:
        api.close()
