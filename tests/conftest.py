"""Fixtures: every HTTP test runs against a real server on SQLite and on PostgreSQL (tests/support/servers.py
starts them; tests/support/inprocess.py is the in-process tier), and the scheduling of work units."""

from __future__ import annotations

import dataclasses
from typing import Iterator

import pytest

from tests.support.servers import (
    CLAIMS_CLIENT,
    CLINICAL_CLIENT,
    DATABASES,
    ClientKey,
    RunningServer,
    running_server,
)


@pytest.fixture(scope="session")
def backend_client_keys() -> tuple[ClientKey, ClientKey]:
    return ClientKey.generate(CLINICAL_CLIENT, "RS384"), ClientKey.generate(CLAIMS_CLIENT, "ES384")


# One server per database for the whole session: `server` switching between them (once per test file
# and database) must not stop one and start the other each time.
@pytest.fixture(scope="session")
def sqlite_server(tmp_path_factory, backend_client_keys) -> Iterator[RunningServer]:
    yield from running_server("sqlite", tmp_path_factory, backend_client_keys)


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory, backend_client_keys) -> Iterator[RunningServer]:
    yield from running_server("postgres", tmp_path_factory, backend_client_keys)


@pytest.fixture(scope="session", params=DATABASES)
def server(request) -> RunningServer:
    return request.getfixturevalue(f"{request.param}_server")


@pytest.fixture
def client(server: RunningServer):
    """Full access (`system/*.cruds`) as the clinical test client."""
    with server.http(server.auth) as c:
        yield c


@pytest.fixture(scope="session")
def claims_server(server: RunningServer) -> RunningServer:
    """The same server, seen by the claims test client: what it writes is claims evidence from
    urn:planfit:test-claims-feed, because that is how the client is registered."""
    return dataclasses.replace(server, auth=server.claims_auth)


@pytest.fixture
def claims_client(claims_server: RunningServer):
    with claims_server.http(claims_server.auth) as c:
        yield c


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    """Work units for `--dist loadgroup` (pyproject addopts): a test file's tests on one database, so
    the two halves of a slow file run side by side on two workers while each half still loads its
    module data once. Files marked `heavy` are collected (so scheduled) first: started last, one of
    them would run alone at the end of the session."""
    for item in items:  # before xdist's own hook turns the group into the node id
        params = item.callspec.params if hasattr(item, "callspec") else {}
        database = next((value for value in params.values() if value in DATABASES), None)
        item.add_marker(pytest.mark.xdist_group(f"{item.path.name}[{database}]" if database else item.path.name))
    yield
    # After pytest grouped the tests by database: a heavy file's halves first and side by side, so xdist
    # hands them to the two workers before anything else.
    items.sort(key=lambda item: ("", item.path.name) if item.get_closest_marker("heavy") else ("~", ""))



def pytest_configure(config: pytest.Config) -> None:
    # The in-process tier's session fixtures, shared by the modules that import its `server`; as a plugin,
    # its own `server` and `claims_server` rank below this file's everywhere else.
    config.pluginmanager.import_plugin("tests.support.inprocess")
