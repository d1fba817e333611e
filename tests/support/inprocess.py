"""The in-process tier: the assembled app (`create_app`, SMART on, the same two Backend Services clients
as the server processes) served through Starlette's TestClient on a real database, a SQLite file and a
fresh PostgreSQL schema, started once per session and database.

A test module moves onto it by importing its `server` and `claims_server` fixtures, which replace the
server processes of tests/conftest.py for that module; `client` and `claims_client` then reach the app in
process. A browser reaches the same app at `server.url`: uvicorn serves it on a local port, on the
TestClient's event loop (so both see one app, one database and one start-up). Tests that need a process
(kill -9, workers, the CLI, its logging) stay on the process tier.
"""

from __future__ import annotations

import dataclasses
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import httpx
import pytest
import uvicorn
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
    url: str  # where uvicorn serves the app, for a browser; TestClient requests carry it as their Host

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


def started_app_server(kind: str, tmp_path_factory: pytest.TempPathFactory,
                       keys: tuple[ClientKey, ClientKey]) -> Iterator[AppServer]:
    """The app started on a fresh database of `kind`, until the generator closes: the session's servers, or
    a test's own where what it checks depends on a database no other test wrote."""
    work = tmp_path_factory.mktemp(f"app-{kind}")
    with fresh_database(kind, work) as database_url:
        clients_file = write_clients_file(work / "clients.json", *keys)
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            # The port, as `planfit serve` is told it: the dashboard's redirect URIs are registered on it.
            port = listener.getsockname()[1]
            app = create_app(Settings(database_url=database_url, clients_file=str(clients_file), port=port))
            try:
                with TestClient(app) as started, served(started, listener):  # start-up tasks run, shutdown ones after
                    url = f"http://127.0.0.1:{port}"
                    yield AppServer(kind, database_url, app, started, url=url, **backend_auth(url + "/auth/token", keys))
            finally:
                app.state.store.engine.dispose()


@contextmanager
def served(started: TestClient, listener: socket.socket) -> Iterator[None]:
    """The started app, also served over HTTP on `listener` (uvicorn as `planfit serve` runs it, without its
    own lifespan: the app has started already)."""
    # No log configuration: uvicorn would otherwise replace the test process's logging set-up.
    server = uvicorn.Server(uvicorn.Config(started.app, lifespan="off", log_config=None, access_log=False,
                                           timeout_keep_alive=75))
    serving = started.portal.start_task_soon(server.serve, [listener])
    while not server.started:
        if serving.done():
            serving.result()  # raises what stopped it
        time.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        serving.result(timeout=30)


@pytest.fixture(scope="session")
def sqlite_app(tmp_path_factory, backend_client_keys) -> Iterator[AppServer]:
    yield from started_app_server("sqlite", tmp_path_factory, backend_client_keys)


@pytest.fixture(scope="session")
def postgres_app(tmp_path_factory, backend_client_keys) -> Iterator[AppServer]:
    yield from started_app_server("postgres", tmp_path_factory, backend_client_keys)


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
