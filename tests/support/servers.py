"""Test servers and their clients: a real `uvicorn` process per database (fresh SQLite file, fresh
PostgreSQL schema), the Backend Services clients' keys and tokens. The fixtures built on these live in
tests/conftest.py; tests import what they need from here.

Each test session gets a fresh SQLite file and a fresh PostgreSQL schema. PostgreSQL at
127.0.0.1:5432 (trust auth, database `test`) is optional locally; with PLANFIT_TEST_POSTGRES=1
(as CI sets) an unreachable PostgreSQL fails the run instead of skipping.

Servers run with SMART authorization on, as in production. Two Backend Services clients are
registered through PLANFIT_CLIENTS_FILE: `pytest-clinical` (RS384 key, `system/*.cruds`, clinical
evidence) behind the `client` fixture and `server.auth`, and `pytest-claims` (ES384 key,
`system/*.cruds`, claims evidence from urn:planfit:test-claims-feed) behind `claims_client`. Their
tokens come from the server's real token endpoint and are renewed before they expire.
"""

from __future__ import annotations

import functools
import json
import os
import ssl
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import psycopg
import pytest
from joserfc import jws
from joserfc.jwk import ECKey, Key, RSAKey

from server.ops import process as serve_process
from server.ops.process import free_port

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
PG_ADMIN_DSN = os.environ.get("PLANFIT_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("PLANFIT_TEST_POSTGRES") == "1"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLINICAL_CLIENT = "pytest-clinical"
CLAIMS_CLIENT = "pytest-claims"
CLAIMS_SOURCE = "urn:planfit:test-claims-feed"
DATABASES = ("sqlite", "postgres")
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@functools.cache
def _tls_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def http_client(**options) -> httpx.Client:
    """An httpx.Client with httpx's default certificate checks, on one SSL context built once: building it
    (loading the CA bundle) costs ~20 ms of CPU, and the process tier makes a client per test."""
    return httpx.Client(**{"verify": _tls_context(), **options})


@dataclass(frozen=True)
class ClientKey:
    """A Backend Services client's key pair, as the client (not the server) holds it."""

    client_id: str
    key: Key
    alg: str

    @classmethod
    def generate(cls, client_id: str, alg: str = "ES384", kid: str | None = None) -> "ClientKey":
        params = {"kid": kid or f"{client_id}-{alg.lower()}"}
        if alg == "RS384":
            return cls(client_id, RSAKey.generate_key(2048, parameters=params, private=True), alg)
        return cls(client_id, ECKey.generate_key("P-384", parameters=params, private=True), alg)

    @property
    def kid(self) -> str:
        return self.key.kid

    def jwks(self) -> dict:
        return {"keys": [{**self.key.as_dict(private=False), "kid": self.kid, "alg": self.alg, "use": "sig"}]}

    def assertion(self, token_url: str, header: dict | None = None, **claims) -> str:
        """A signed authentication JWT; `claims` override (None removes) the standard ones."""
        now = int(time.time())
        body = {"iss": self.client_id, "sub": self.client_id, "aud": token_url, "iat": now, "exp": now + 240,
                "jti": uuid.uuid4().hex}
        body.update(claims)
        body = {k: v for k, v in body.items() if v is not None}
        head = {"alg": self.alg, "kid": self.kid, "typ": "JWT", **(header or {})}
        return jws.serialize_compact(head, json.dumps(body).encode(), self.key, algorithms=[head["alg"]])

    def token_form(self, token_url: str, scope: str, **claims) -> dict[str, str]:
        return {"grant_type": "client_credentials", "scope": scope, "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": self.assertion(token_url, **claims)}


class BackendToken(httpx.Auth):
    """httpx auth that sends a Backend Services access token, fetched again shortly before expiry."""

    def __init__(self, token_url: str, client_key: ClientKey, scope: str):
        self.token_url = token_url
        self.client_key = client_key
        self.scope = scope
        self._token: str | None = None
        self._renew_at = 0.0
        self._lock = threading.Lock()

    def _current(self) -> str | None:
        with self._lock:
            return self._token if self._token is not None and time.time() < self._renew_at else None

    def _token_request(self) -> httpx.Request:
        return httpx.Request("POST", self.token_url, data=self.client_key.token_form(self.token_url, self.scope))

    def _keep(self, response: httpx.Response) -> str:
        response.read()
        assert response.status_code == 200, response.text
        body = response.json()
        with self._lock:
            self._token, self._renew_at = body["access_token"], time.time() + body["expires_in"] - 60
        return body["access_token"]

    def token(self) -> str:
        """The current token, fetched over a connection of its own when stale (from a server process)."""
        token = self._current()
        if token is None:
            with http_client(timeout=30) as c:
                token = self._keep(c.send(self._token_request()))
        return token

    def auth_flow(self, request: httpx.Request):
        # The token request goes through the client's own transport: an in-process client
        # (tests/support/inprocess.py) gets its token from the app in process too.
        token = self._current()
        if token is None:
            token = self._keep((yield self._token_request()))
        request.headers["Authorization"] = f"Bearer {token}"
        yield request


@dataclass
class RunningServer:
    kind: str
    url: str
    database_url: str
    process: subprocess.Popen
    log_path: Path
    auth: BackendToken | None = None  # the full-access clinical test client
    claims_auth: BackendToken | None = None
    clients_file: Path | None = None

    @property
    def fhir(self) -> str:
        return self.url + "/fhir"

    @property
    def token_url(self) -> str:
        return self.url + "/auth/token"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def http(self, auth: httpx.Auth | None, headers: dict[str, str] | None = None, **options) -> httpx.Client:
        """A FHIR client of this server (the in-process tier's servers have the same method)."""
        return http_client(base_url=self.fhir, headers={**FHIR_JSON, **(headers or {})}, auth=auth,
                           **{"timeout": 60, **options})

    def site(self, **options) -> httpx.Client:
        """A client of the server's root (`/auth/...`, pages), as a browser or an OAuth client reaches it."""
        return http_client(base_url=self.url, **{"timeout": 60, **options})


def start_server(database_url: str, log_path: Path, extra_env: dict[str, str] | None = None,
                 cwd: Path = ROOT) -> tuple[subprocess.Popen, str]:
    """A `planfit serve` process on the database (`server/ops/process.py`), ready; its root URL."""
    port = free_port()
    env = {**os.environ, "PLANFIT_DATABASE_URL": database_url, "PLANFIT_PORT": str(port), **(extra_env or {})}
    process = serve_process.start(env, log_path, "--port", str(port), cwd=cwd)
    url = f"http://127.0.0.1:{port}"
    # A start takes seconds alone; the margin is for a machine busy with other work.
    serve_process.wait_ready(process, url, log_path, timeout=180)
    return process, url


def stop_server(process: subprocess.Popen) -> None:
    serve_process.stop(process, timeout=15)


def postgres_schema_url() -> tuple[str, str]:
    """A fresh schema in the test database, and a SQLAlchemy URL whose search_path is that schema."""
    schema = "pf_" + uuid.uuid4().hex[:12]
    try:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE SCHEMA "{schema}"')
    except psycopg.OperationalError as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL is required (PLANFIT_TEST_POSTGRES=1) but unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    dsn = PG_ADMIN_DSN.replace("postgresql://", "postgresql+psycopg://", 1)
    return schema, f"{dsn}?options=-csearch_path%3D{schema}"


def drop_schema(schema: str) -> None:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def write_clients_file(path: Path, clinical: ClientKey, claims: ClientKey) -> Path:
    clients = [
        {"id": clinical.client_id, "jwks": clinical.jwks(), "scope": "system/*.cruds", "source_kind": "clinical"},
        {"id": claims.client_id, "jwks": claims.jwks(), "scope": "system/*.cruds", "source_kind": "claims",
         "source_uri": CLAIMS_SOURCE},
    ]
    path.write_text(json.dumps({"clients": clients}))
    return path


@contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[str]:
    """The URL of a new SQLite file in `workdir`, or of a new PostgreSQL schema (dropped afterwards)."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'planfit.db'}"
        return
    schema, database_url = postgres_schema_url()
    try:
        yield database_url
    finally:
        drop_schema(schema)


def backend_auth(token_url: str, keys: tuple[ClientKey, ClientKey]) -> dict[str, BackendToken]:
    """The `auth` (clinical source) and `claims_auth` (claims source) of a test server's two clients."""
    clinical, claims = keys
    return {"auth": BackendToken(token_url, clinical, "system/*.cruds"),
            "claims_auth": BackendToken(token_url, claims, "system/*.cruds")}


def running_server(kind: str, tmp_path_factory: pytest.TempPathFactory,
                    keys: tuple[ClientKey, ClientKey]) -> Iterator[RunningServer]:
    workdir = tmp_path_factory.mktemp(f"server-{kind}")
    log_path = workdir / "server.log"
    with fresh_database(kind, workdir) as database_url:
        clients_file = write_clients_file(workdir / "clients.json", *keys)
        process, url = start_server(database_url, log_path, {"PLANFIT_CLIENTS_FILE": str(clients_file)})
        try:
            yield RunningServer(kind, url, database_url, process, log_path, **backend_auth(url + "/auth/token", keys),
                                clients_file=clients_file)
        finally:
            stop_server(process)


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"
