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
TENANT_WRITES = 400  # per tenant, per window: two apps at their limit use it up
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
        self.first_response_at: float | None = None  # time.monotonic()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "Retry-Attempt" in request.headers:
            self.retry_attempts += 1
        response = await self.inner.handle_async_request(request)
        if self.first_response_at is None:
            self.first_response_at = time.monotonic()
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
#
# The SDK costs some 30 ms of CPU per request here, so one Python client reaches ~20-40 creates/s: it cannot
# make 200 writes within a 3 s window by itself. Each item of a `$batch` counts as one write (README), so raw
# batches use up most of an app's window in well under a second; the SDK and the burst then hit the limit.

def _batch_create(api, url: str, bodies: list[dict]) -> list[dict]:
    """One raw `$batch` of creates; the item responses in request order."""
    requests = [{"id": str(i), "method": "POST", "url": url, "headers": {"Content-Type": "application/json"},
                 "body": b} for i, b in enumerate(bodies)]
    r = api.http.post("/$batch", json={"requests": requests})
    assert r.status_code == 200, f"$batch: {r.status_code} {r.text[:500]}"
    return sorted(r.json()["responses"], key=lambda x: int(x["id"]))


def _device_body(name: str) -> dict:
    return {"deviceName": name, "operatingSystem": "Windows", "osVersion": "10.0.22631.1"}


def _script_body(name: str) -> dict:
    return {"displayName": name, "publisher": "tests", "runAsAccount": "system",
            "detectionScriptContent": "V3JpdGUtT3V0cHV0ICdvayc="}


def _use_writes(api, writes: int, what: str, prefix: str) -> Counter:
    """`writes` creates (`what`: devices or scripts) in raw batches of 20; the item statuses."""
    url, body = {
        "devices": ("/deviceManagement/managedDevices", _device_body),
        "scripts": ("/deviceManagement/deviceHealthScripts", _script_body),
    }[what]
    statuses: Counter[int] = Counter()
    for start in range(0, writes, 20):
        items = _batch_create(api, url, [body(f"{prefix}-{i:04d}") for i in range(start, min(start + 20, writes))])
        statuses.update(x["status"] for x in items)
    return statuses


def _post_burst(server: Server, token: str, count: int, prefix: str) -> list[httpx.Response]:
    """`count` raw creates, all at once, without any retry."""

    async def go():
        async with httpx.AsyncClient(
            base_url=server.base, timeout=30.0,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        ) as client:
            async def one(i):
                r = await client.post("/deviceManagement/managedDevices", json=_device_body(f"{prefix}-{i:04d}"))
                await r.aread()
                return r

            return await asyncio.gather(*(one(i) for i in range(count)))

    return asyncio.run(go())


def _assert_throttle_headers(headers, what: str) -> int:
    retry_after = headers.get("retry-after")
    assert retry_after is not None and re.fullmatch(r"[0-9]+", retry_after), (
        f"{what}: 429 needs Retry-After in whole seconds, got {retry_after!r}"
    )
    seconds = int(retry_after)
    assert 1 <= seconds <= WINDOW_SECS, f"{what}: Retry-After {seconds} s is outside the {WINDOW_SECS} s window"
    return seconds


def _assert_throttle_response(r: httpx.Response) -> int:
    assert_error_body(r, 429, "TooManyRequests")
    return _assert_throttle_headers(r.headers, f"{r.request.method} {r.request.url.path}")


def _within_one_window(attempt, discard, tries: int = 3):
    """Runs attempt() (-> (elapsed seconds, result)) until it fits into one window (discard(result) otherwise):
    a loaded machine may need more than WINDOW_SECS for what normally takes a fraction of it."""
    for _ in range(tries):
        elapsed, result = attempt()
        if elapsed < WINDOW_SECS - 0.5:
            return result
        discard(result)
    pytest.fail(f"{tries} attempts each took {elapsed:.1f} s, more than one {WINDOW_SECS} s window")


def test_raw_burst_beyond_app_write_limit_is_429_with_retry_after(throttled_server, loop):
    """One app: 200 writes as 10 batches of 20 (all 201), then a burst of 20 single creates: 429 TooManyRequests
    with Retry-After (seconds) and the Graph error body, also inside a batch. Throttled requests store nothing,
    and after Retry-After the app may write again."""

    def attempt():
        api = make_api(throttled_server, loop, scopes=SCOPES_RW)
        started = time.monotonic()
        filled = _use_writes(api, APP_WRITES, "devices", "FILL")
        burst = _post_burst(throttled_server, api.token, 20, "BURST")
        in_batch = _batch_create(api, "/deviceManagement/managedDevices", [_device_body("BATCHED")])[0]
        return time.monotonic() - started, (api, filled, burst, in_batch)

    api, filled, burst, in_batch = _within_one_window(attempt, lambda result: result[0].close())
    try:
        assert filled == {201: APP_WRITES}, f"the app's first {APP_WRITES} writes in a window: {filled}"
        statuses = Counter(r.status_code for r in burst)
        assert statuses == {429: len(burst)}, f"writes beyond the app's {APP_WRITES} in one window: {statuses}"
        waits = [_assert_throttle_response(r) for r in burst]

        assert in_batch["status"] == 429, f"batch item beyond the limit: {in_batch}"
        # Batch item headers are a JSON object (Graph spells them `Retry-After`): compare names
        # case-insensitively, as HTTP does.
        item_headers = {k.lower(): v for k, v in (in_batch.get("headers") or {}).items()}
        waits.append(_assert_throttle_headers(item_headers, "$batch item"))
        assert in_batch["body"]["error"]["code"] == "TooManyRequests", in_batch

        # a throttled request touched nothing
        r = api.http.get("/deviceManagement/managedDevices", params={"$count": "true", "$top": "1"})
        assert r.status_code == 200, r.text
        assert r.json()["@odata.count"] == APP_WRITES, r.json()

        # after Retry-After the window is over and the app may write again
        time.sleep(max(waits) + 0.2)
        again = api.http.post("/deviceManagement/managedDevices", json=_device_body("AFTER"))
        assert again.status_code == 201, f"still throttled after Retry-After: {again.status_code} {again.text}"
    finally:
        api.close()


def test_tenant_write_limit_spans_apps(throttled_server, loop):
    """Two apps of one tenant use up the tenant's 400 writes between them (200 each, each within its own
    limit); a third app of that tenant is then throttled, the same app id in another tenant is not."""

    def attempt():
        tenant = str(uuid.uuid4())
        apps = [make_api(throttled_server, loop, tenant=tenant, app_id=f"app-{x}") for x in "abc"]
        apps.append(make_api(throttled_server, loop, app_id="app-c"))
        started = time.monotonic()
        filled = [_use_writes(x, TENANT_WRITES // 2, "devices", f"T{n}") for n, x in enumerate(apps[:2])]
        third = apps[2].http.post("/deviceManagement/managedDevices", json=_device_body("TC"))
        other = apps[3].http.post("/deviceManagement/managedDevices", json=_device_body("OTHER"))
        return time.monotonic() - started, (apps, filled, third, other)

    apps, filled, third, other = _within_one_window(attempt, lambda result: [x.close() for x in result[0]])
    try:
        assert filled == [{201: TENANT_WRITES // 2}] * 2, filled
        _assert_throttle_response(third)
        assert other.status_code == 201, f"another tenant was throttled: {other.status_code} {other.text}"
    finally:
        for x in apps:
            x.close()


def test_sdk_retry_handler_rides_out_throttling(throttled_server, loop):
    """260 creates of one app through the SDK, 20 at a time, as fast as possible, right after the app used 190 of
    its 200 writes of the window (raw batches of script creates): the SDK's default RetryHandler waits
    Retry-After and retries; every create succeeds and each device is stored exactly once."""
    transport = RecordingTransport()
    api = make_api(throttled_server, loop, scopes=SCOPES_RW, http_client=sdk_http_client(transport))
    try:
        # The SDK's first managedDevice body and response take seconds (lazy imports of the model tree, which block
        # the event loop): pay for them in another tenant, and for this client's first request with a GET; then
        # let the window that this GET opened run out, so that the fill and the SDK's writes share a fresh one.
        warm = make_api(throttled_server, loop, scopes=SCOPES_RW)
        try:
            warm.create_device()
            warm.run(warm.devices.get())
        finally:
            warm.close()
        api.run(api.devices.get(query_config(ManagedDevicesRequestBuilder, top=1)))
        time.sleep(WINDOW_SECS + 0.2)
        transport.statuses.clear()
        transport.first_response_at = None

        started = time.monotonic()
        filled = _use_writes(api, APP_WRITES - 10, "scripts", "FILL")
        assert filled == {201: APP_WRITES - 10}, filled
        created = _create_devices(api, SDK_CREATES, CHUNK, "SDK")
        elapsed = time.monotonic() - started
        attempts = dict(transport.statuses)

        first = transport.first_response_at - started
        assert transport.statuses[429] >= 1 or first >= WINDOW_SECS, (
            f"no 429 in {SDK_CREATES} SDK writes within {elapsed:.1f} s ({attempts}) although the first SDK write "
            f"was answered {first:.1f} s after the window was filled to {APP_WRITES - 10} writes"
        )
        assert transport.statuses[429] >= 1, (
            f"the machine is too slow for this test: the SDK's first write came {first:.1f} s after the fill began, "
            f"after the end of the {WINDOW_SECS} s window"
        )
        assert set(transport.statuses) == {201, 429}, attempts
        assert transport.statuses[201] == SDK_CREATES, f"a create succeeded more than once on the wire: {attempts}"
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
