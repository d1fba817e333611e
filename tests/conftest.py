"""Test servers: every HTTP test runs against a real `uvicorn` process on SQLite and on PostgreSQL.

Each test session gets a fresh SQLite file and a fresh PostgreSQL schema. PostgreSQL at
127.0.0.1:5432 (trust auth, database `test`) is optional locally; with PLANFIT_TEST_POSTGRES=1
(as CI sets) an unreachable PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
PG_ADMIN_DSN = os.environ.get("PLANFIT_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("PLANFIT_TEST_POSTGRES") == "1"


@dataclass
class RunningServer:
    kind: str
    url: str
    database_url: str
    process: subprocess.Popen
    log_path: Path

    @property
    def fhir(self) -> str:
        return self.url + "/fhir"

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(database_url: str, log_path: Path, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "PLANFIT_DATABASE_URL": database_url, "PLANFIT_PORT": str(port), **(extra_env or {})}
    log = open(log_path, "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early:\n{log_path.read_text(errors='replace')}")
        try:
            if httpx.get(url + "/fhir/metadata", timeout=2).status_code == 200:
                return process, url
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"server did not start:\n{log_path.read_text(errors='replace')}")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


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


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def server(request, tmp_path_factory) -> RunningServer:
    workdir = tmp_path_factory.mktemp(f"server-{request.param}")
    schema = None
    if request.param == "sqlite":
        database_url = f"sqlite:///{workdir / 'planfit.db'}"
    else:
        schema, database_url = postgres_schema_url()
    log_path = workdir / "server.log"
    process, url = start_server(database_url, log_path)
    running = RunningServer(request.param, url, database_url, process, log_path)
    yield running
    stop_server(process)
    if schema:
        drop_schema(schema)


@pytest.fixture
def client(server: RunningServer):
    with httpx.Client(base_url=server.fhir, timeout=60, headers={"Content-Type": "application/fhir+json"}) as c:
        yield c


def unique(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def claims_server(server: RunningServer, tmp_path_factory) -> RunningServer:
    """A second server process on the same database whose anonymous writes count as claims evidence."""
    log_path = tmp_path_factory.mktemp(f"claims-{server.kind}") / "server.log"
    env = {"PLANFIT_DEFAULT_SOURCE_KIND": "claims", "PLANFIT_DEFAULT_SOURCE": "urn:planfit:test-claims-feed"}
    process, url = start_server(server.database_url, log_path, env)
    yield RunningServer(server.kind, url, server.database_url, process, log_path)
    stop_server(process)


@pytest.fixture
def claims_client(claims_server: RunningServer):
    with httpx.Client(base_url=claims_server.fhir, timeout=60, headers={"Content-Type": "application/fhir+json"}) as c:
        yield c
