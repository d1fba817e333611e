"""Real `planfit serve` processes for the benchmark, on a fresh PostgreSQL schema or SQLite file.

With PLANFIT_AUTH=off a process stamps every write with one evidence kind (PLANFIT_DEFAULT_SOURCE_KIND),
so the benchmark runs one process per kind of feed: the clinical bundles go to the "clinical" process and
the claims bundles to the "claims" one, as an EMR feed and a claims feed would send them. Both share the
database and hold no state of their own.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import psycopg
from psycopg import sql

from server.ops import process as serve_process
from server.ops.process import free_port
from server.store.db import normalise_url

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2026-01-01"  # the synthetic population's evaluation date
KINDS = ("clinical", "claims")


@dataclass
class Server:
    kind: str
    proc: subprocess.Popen
    url: str  # the FHIR base, …/fhir
    log: Path  # the process's output: warnings and errors as exception types and stack frames, never PHI

    @property
    def pid(self) -> int:
        return self.proc.pid


@contextmanager
def postgres_schema(dsn: str) -> Iterator[str]:
    """A fresh schema, dropped afterwards; yields the SQLAlchemy URL whose search_path is that schema."""
    schema = "bench_" + uuid.uuid4().hex[:8]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield schema_url(dsn, schema)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            # A request cut off by the server's timeout may still be running its statement: end it, or
            # the DROP waits for it.
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
                         (schema,))
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def schema_url(dsn: str, schema: str) -> str:
    """The SQLAlchemy URL of `dsn` whose search_path is `schema` (named in pg_stat_activity too)."""
    separator = "&" if "?" in dsn else "?"
    return normalise_url(dsn) + f"{separator}application_name={schema}&options=-csearch_path%3D{schema}"


def schema_of(database_url: str) -> str:
    return database_url.rsplit("search_path%3D", 1)[1]


def analyze(dsn: str, schema: str) -> None:
    """Planner statistics for the freshly loaded schema now, as autovacuum would give them a little later.
    Its own tables only: a bare ANALYZE visits every schema of the database and waits on other users' locks."""
    with psycopg.connect(dsn, autocommit=True, options=f"-csearch_path={schema}") as conn:
        tables = [name for (name,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,))]
        if tables:
            conn.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(sql.Identifier(schema, t) for t in tables)))


def _start(kind: str, database_url: str, export_dir: Path, alignment_mode: str, workers: int,
           clients_file: Path | None) -> Server:
    port = free_port()
    env = {
        **os.environ,
        "PLANFIT_DATABASE_URL": database_url,
        # SMART authorization only for a stage that reads with a token (`clients_file` registers its client).
        **({"PLANFIT_AUTH": "on", "PLANFIT_CLIENTS_FILE": str(clients_file)} if clients_file else {"PLANFIT_AUTH": "off"}),
        "PLANFIT_DEFAULT_SOURCE": f"urn:planfit:bench-{kind}",
        "PLANFIT_DEFAULT_SOURCE_KIND": kind,
        "PLANFIT_EVALUATION_DATE": AS_OF,
        "PLANFIT_EXPORT_DIR": str(export_dir),
        "PLANFIT_LOG_LEVEL": "warning",
        "PLANFIT_ALIGNMENT_MODE": alignment_mode,
        # A full re-evaluation of a large population answers after minutes: no request timeout.
        "PLANFIT_REQUEST_TIMEOUT_SECONDS": "0",
    }
    log = export_dir.parent / f"server-{kind}.log"
    proc = serve_process.start(env, log, "--port", str(port), "--workers", str(workers), cwd=ROOT)
    return Server(kind, proc, f"http://127.0.0.1:{port}/fhir", log)


@contextmanager
def running(database_url: str, export_dir: Path, alignment_mode: str, workers: int = 1,
            clients_file: Path | None = None) -> Iterator[dict[str, Server]]:
    """One server per feed kind on the database (`planfit serve --workers`), stopped afterwards. The first
    starts alone, so only one process creates the schema. With `clients_file` (PLANFIT_CLIENTS_FILE) the
    servers run with SMART authorization on, otherwise off."""
    servers: dict[str, Server] = {}
    try:
        for kind in KINDS:
            servers[kind] = _start(kind, database_url, export_dir, alignment_mode, workers, clients_file)
            serve_process.wait_ready(servers[kind].proc, servers[kind].url.removesuffix("/fhir"),
                                     servers[kind].log, timeout=180)
        yield servers
    except Exception:
        # A failed stage's cause is in the servers' logs, which go with the benchmark's temporary directory.
        for server in servers.values():
            tail = server.log.read_text(errors="replace").splitlines()[-60:]
            print(f"--- {server.kind} server log ({server.log}), last lines", *tail, sep="\n", file=sys.stderr)
        raise
    finally:
        for server in servers.values():
            serve_process.stop(server.proc)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process on this machine (a server or a PostgreSQL backend), from /proc;
    0 for one that has ended."""
    try:  # fields 14 and 15 of /proc/PID/stat, after the parenthesised command name
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def backend_pids(dsn: str, application: str) -> list[int]:
    """The PostgreSQL backends of the connections named `application` (a schema's URL names them so)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [pid for (pid,) in conn.execute("SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                                               (application,))]


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory (VmHWM) since start or the last `reset_peak`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc")


def reset_peak(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")


class StageFailed(Exception):
    """A stage could not measure (an endpoint missing or failing): reported as such, never as a figure."""


def expect(response: httpx.Response, status: int, what: str) -> httpx.Response:
    if response.status_code != status:
        response.read()
        raise StageFailed(f"{what}: HTTP {response.status_code} {response.text[:200]}")
    return response


@contextmanager
def profiled(servers: dict[str, Server], out: Path | None, stage: str) -> Iterator[None]:
    """With `out`, py-spy samples each server process during the stage into `<out>/<stage>-<kind>.svg`."""
    if out is None:
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    spies = [subprocess.Popen(["py-spy", "record", "--rate", "200", "--pid", str(server.pid),
                               "--output", str(out / f"{stage}-{kind}.svg")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for kind, server in servers.items()]
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)
        for spy in spies:
            spy.wait(timeout=120)
