"""Fixtures: one `remediate serve` per storage backend (SQLite, PostgreSQL) for the session,
and per-test tenants with an SDK client and a raw HTTP client."""
from __future__ import annotations

import asyncio
import os
import secrets
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _support import SCOPES_RW, Server, make_api, server_binary  # noqa: E402

PG_ADMIN = dict(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _pg_connect():
    import psycopg

    return psycopg.connect(**PG_ADMIN, connect_timeout=5, autocommit=True)


@pytest.fixture(scope="session")
def loop():
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(request, tmp_path_factory):
    backend = request.param
    binary = server_binary()
    if not binary.is_file():
        pytest.fail(f"server binary not found: {binary} (set REMEDIATE_BIN)", pytrace=False)

    database_url = None
    db_name = None
    if backend == "postgres":
        try:
            with _pg_connect():
                pass
        except Exception as exc:  # unreachable, no driver, auth…
            reason = f"PostgreSQL at {PG_ADMIN['host']}:{PG_ADMIN['port']} unreachable: {exc}".strip()
            if _in_ci():
                pytest.fail(reason + " (CI=true: PostgreSQL is required)", pytrace=False)
            pytest.skip(reason)
        db_name = f"remediate_sdk_{secrets.token_hex(6)}"
        database_url = f"postgres://postgres@127.0.0.1:5432/{db_name}"

    data_dir = tmp_path_factory.mktemp(f"remediate-{backend}")
    srv = Server(binary, backend, data_dir, database_url)
    try:
        srv.start()
    except RuntimeError as exc:
        _drop_database(db_name)
        pytest.fail(str(exc), pytrace=False)

    yield srv

    problem = srv.stop()
    _drop_database(db_name)
    if problem:
        pytest.fail(f"[{backend}] {problem}", pytrace=False)


def _drop_database(name):
    if not name:
        return
    try:
        with _pg_connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except Exception as exc:  # best effort; report but do not mask test results
        print(f"warning: could not drop database {name}: {exc}", file=sys.stderr)


@pytest.fixture
def tenant_factory(server, loop):
    """make(scopes=…, tenant=…, roles=…, token=…) -> Api for a (by default new) tenant."""
    made = []

    def make(**kw):
        api = make_api(server, loop, **kw)
        made.append(api)
        return api

    yield make
    for api in made:
        api.close()


@pytest.fixture
def api(tenant_factory):
    """A fresh tenant with read/write scopes for scripts and managed devices."""
    return tenant_factory(scopes=SCOPES_RW)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def entra_server(request, tmp_path_factory):
    """A `remediate serve` of its own with --tls (https on the main listener, certificate from the local CA
    in its data directory) and --proxy-listen (the CONNECT proxy for graph.microsoft.com and
    login.microsoftonline.com), per storage backend, for the Entra-shaped token endpoint's tests."""
    backend = request.param
    binary = server_binary()
    if not binary.is_file():
        pytest.fail(f"server binary not found: {binary} (set REMEDIATE_BIN)", pytrace=False)
    database_url = db_name = None
    if backend == "postgres":
        try:
            with _pg_connect():
                pass
        except Exception as exc:
            reason = f"PostgreSQL at {PG_ADMIN['host']}:{PG_ADMIN['port']} unreachable: {exc}".strip()
            if _in_ci():
                pytest.fail(reason + " (CI=true: PostgreSQL is required)", pytrace=False)
            pytest.skip(reason)
        db_name = f"remediate_sdk_entra_{secrets.token_hex(6)}"
        database_url = f"postgres://postgres@127.0.0.1:5432/{db_name}"
    data_dir = tmp_path_factory.mktemp(f"remediate-entra-{backend}")
    srv = Server(
        binary, backend, data_dir, database_url,
        extra_args=("--tls", "--proxy-listen", "127.0.0.1:0"),
    )
    try:
        srv.start()
    except RuntimeError as exc:
        _drop_database(db_name)
        pytest.fail(str(exc), pytrace=False)
    yield srv
    problem = srv.stop()
    _drop_database(db_name)
    if problem:
        pytest.fail(f"[{backend}] {problem}", pytrace=False)
