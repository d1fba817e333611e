"""The in-process tier: the assembled app (`create_app`, SMART on, the same two Backend Services clients
as the server processes) served through Starlette's TestClient on a real database, a SQLite file and a
fresh PostgreSQL schema, started once per session and database.

A test module moves onto it by importing its `server` and `claims_server` fixtures, which replace the
server processes of tests/conftest.py for that module; `client` and `claims_client` then reach the app in
process. Tests that need a process (kill -9, workers, a browser, the CLI, raw sockets) stay on the
process tier.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Iterator

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from server.app import create_app
from server.config import Settings
from tests.support.servers import (
    DATABASES,
    FHIR_JSON,
    BackendToken,
    ClientKey,
    backend_auth,
    fresh_database,
    write_clients_file,
)

BASE = "http://testserver"


class _AppClient(TestClient):
    """A TestClient on an app another client started: its requests run on that client's event loop, and
    entering it starts nothing (the app's start-up ran once, for the session)."""

    def __init__(self, started: TestClient, auth: httpx.Auth | None, **options: Any):
        super().__init__(started.app, raise_server_exceptions=False, **{"follow_redirects": False, **options})
        self.portal = started.portal
        self.auth = auth

    def __enter__(self) -> "_AppClient":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass
class AppServer:
    """What tests read of a server (`RunningServer` of tests/support/servers.py), for the app in process."""

    kind: str
    database_url: str
    app: FastAPI
    started: TestClient
    auth: BackendToken
    claims_auth: BackendToken
    url: str = BASE

    @property
    def fhir(self) -> str:
        return self.url + "/fhir"

    @property
    def token_url(self) -> str:
        return self.url + "/auth/token"

    def http(self, auth: httpx.Auth | None, headers: dict[str, str] | None = None, **_options: Any) -> _AppClient:
        """A FHIR client of the app (`_options` such as a timeout mean nothing in process)."""
        return _AppClient(self.started, auth, base_url=self.fhir, headers={**FHIR_JSON, **(headers or {})})

    def site(self, follow_redirects: bool = False, **_options: Any) -> _AppClient:
        """A client of the app's root (`/auth/...`, pages), as `RunningServer.site`."""
        return _AppClient(self.started, None, base_url=self.url, follow_redirects=follow_redirects)


def _app_server(kind: str, tmp_path_factory: pytest.TempPathFactory,
                keys: tuple[ClientKey, ClientKey]) -> Iterator[AppServer]:
    work = tmp_path_factory.mktemp(f"app-{kind}")
    with fresh_database(kind, work) as database_url:
        clients_file = write_clients_file(work / "clients.json", *keys)
        app = create_app(Settings(database_url=database_url, clients_file=str(clients_file)))
        try:
            with TestClient(app, base_url=BASE) as started:  # runs the start-up tasks, and the shutdown ones after
                yield AppServer(kind, database_url, app, started, **backend_auth(BASE + "/auth/token", keys))
        finally:
            app.state.store.engine.dispose()


@pytest.fixture(scope="session")
def sqlite_app(tmp_path_factory, backend_client_keys) -> Iterator[AppServer]:
    yield from _app_server("sqlite", tmp_path_factory, backend_client_keys)


@pytest.fixture(scope="session")
def postgres_app(tmp_path_factory, backend_client_keys) -> Iterator[AppServer]:
    yield from _app_server("postgres", tmp_path_factory, backend_client_keys)


@pytest.fixture(scope="session", params=DATABASES)
def app_server(request) -> AppServer:
    return request.getfixturevalue(f"{request.param}_app")


# Imported by a test module, these two replace the process tier's fixtures of the same names there.
@pytest.fixture(scope="session")
def server(app_server: AppServer) -> AppServer:
    return app_server


@pytest.fixture(scope="session")
def claims_server(app_server: AppServer) -> AppServer:
    return dataclasses.replace(app_server, auth=app_server.claims_auth)
