"""Response headers every Graph client relies on (SPEC §10)."""
from __future__ import annotations

import uuid

from _support import GRAPH_CONTENT_TYPE


def _check_common(r, client_request_id=None):
    assert r.headers.get("request-id"), f"no request-id header: {dict(r.headers)}"
    assert r.headers.get("odata-version") == "4.0", r.headers.get("odata-version")
    if client_request_id is not None:
        assert r.headers.get("client-request-id") == client_request_id, (
            f"client-request-id not echoed: sent {client_request_id}, got {r.headers.get('client-request-id')}"
        )


def test_list_headers(api):
    cid = str(uuid.uuid4())
    r = api.http.get("/deviceManagement/deviceHealthScripts", headers={"client-request-id": cid})
    assert r.status_code == 200, r.text
    _check_common(r, cid)
    assert r.headers.get("content-type") == GRAPH_CONTENT_TYPE


def test_request_ids_are_unique(api):
    a = api.http.get("/deviceManagement/deviceHealthScripts").headers.get("request-id")
    b = api.http.get("/deviceManagement/deviceHealthScripts").headers.get("request-id")
    assert a and b and a != b


def test_create_and_item_headers(api):
    cid = str(uuid.uuid4())
    r = api.http.post(
        "/deviceManagement/managedDevices",
        json={"deviceName": "HDR-PC"},
        headers={"client-request-id": cid},
    )
    assert r.status_code == 201, r.text
    _check_common(r, cid)
    assert r.headers.get("content-type") == GRAPH_CONTENT_TYPE
    r = api.http.get(f"/deviceManagement/managedDevices/{r.json()['id']}")
    _check_common(r)
    assert r.headers.get("content-type") == GRAPH_CONTENT_TYPE


def test_error_headers_and_inner_error_ids(api):
    cid = str(uuid.uuid4())
    r = api.http.get(
        f"/deviceManagement/deviceHealthScripts/{uuid.uuid4()}", headers={"client-request-id": cid}
    )
    assert r.status_code == 404, r.text
    _check_common(r, cid)
    assert r.headers.get("content-type") == GRAPH_CONTENT_TYPE
    inner = r.json()["error"]["innerError"]
    assert inner["request-id"] == r.headers["request-id"]
    assert inner["client-request-id"] == cid


def test_sdk_client_request_id_is_echoed(api):
    """A client-request-id set through the SDK comes back in the ODataError's innerError."""
    from kiota_abstractions.base_request_configuration import RequestConfiguration

    cid = str(uuid.uuid4())
    cfg = RequestConfiguration()
    cfg.headers.add("client-request-id", cid)
    err = api.expect_error(api.script(str(uuid.uuid4())).get(cfg), 404, "ResourceNotFound")
    inner = err.error.inner_error
    assert inner is not None and inner.request_id
    assert inner.client_request_id == cid
    assert err.response_headers.get("client-request-id") == cid


def test_no_content_responses_have_ids(api):
    script = api.create_script()
    r = api.http.patch(f"/deviceManagement/deviceHealthScripts/{script.id}", json={"description": "h"})
    assert r.status_code == 200, r.text  # the updated entity
    _check_common(r)
    r = api.http.delete(f"/deviceManagement/deviceHealthScripts/{script.id}")
    assert r.status_code == 204, r.text
    _check_common(r)
