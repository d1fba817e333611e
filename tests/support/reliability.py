"""Real server processes on a database of their own, for the reliability, limits and security tests.

`Servers` starts `planfit serve` processes (SMART on, the conftest's two Backend Services clients),
kills them with SIGKILL and reads the database directly (SQLAlchemy on the same URL) to check what a
killed process left behind. `member_bundle` builds a transaction bundle whose every resource carries the
bundle's marker identifier, so what a bundle stored can be counted after the fact.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import httpx
from sqlalchemy import Engine, func, select, update

from server.alignment.index_keys import READ_TYPES
from server.store.alignment_schema import FINDING_TABLES, alignment_evaluated, alignment_lock, alignment_watermark
from server.store.db import make_engine
from server.store.schema import resource_history
from tests.support.alignment import COVERAGE_CLASS, ICD, condition_resource, days_ago, months_ago
from tests.support.servers import (
    BackendToken,
    ClientKey,
    drop_schema,
    http_client,
    postgres_schema_url,
    start_server,
    stop_server,
    write_clients_file,
)

MARKER = "urn:planfit:test:bundle"
MARKED_TYPES = ("Patient", "Coverage", "Condition", "Claim")
# Per member: a Patient, a Coverage, two Conditions (one SMI) and a Claim with an SUD diagnosis.
RESOURCES_PER_MEMBER = 5


@dataclass
class Database:
    """A fresh SQLite file or PostgreSQL schema, and a SQLAlchemy engine the test reads it with."""

    kind: str
    url: str
    workdir: Path
    schema: str | None = None
    engine: Engine = field(init=False)

    def __post_init__(self) -> None:
        self.engine = make_engine(self.url)

    @classmethod
    def create(cls, kind: str, workdir: Path) -> "Database":
        if kind == "sqlite":
            return cls(kind, f"sqlite:///{workdir / 'planfit.db'}", workdir)
        schema, url = postgres_schema_url()
        return cls(kind, url, workdir, schema)

    def drop(self) -> None:
        self.engine.dispose()
        if self.schema:
            drop_schema(self.schema)


@dataclass
class Process:
    process: subprocess.Popen
    url: str
    log: Path

    @property
    def fhir(self) -> str:
        return self.url + "/fhir"


class Servers:
    """Server processes on one database, with the clinical and claims test clients registered."""

    def __init__(self, database: Database):
        self.database = database
        self.clinical = ClientKey.generate("reliability-clinical", "RS384")
        self.claims = ClientKey.generate("reliability-claims", "ES384")
        self.clients_file = write_clients_file(database.workdir / "clients.json", self.clinical, self.claims)
        self.processes: list[Process] = []
        self._numbers = itertools.count()  # log file names, also when processes start from several threads

    def start(self, **settings: str) -> Process:
        env = {"PLANFIT_CLIENTS_FILE": str(self.clients_file), **{f"PLANFIT_{k.upper()}": v for k, v in settings.items()}}
        log = self.database.workdir / f"server-{next(self._numbers)}.log"
        process, url = start_server(self.database.url, log, env)
        self.processes.append(Process(process, url, log))
        return self.processes[-1]

    def client(self, process: Process, kind: str = "clinical", scope: str = "system/*.cruds", **kwargs: Any) -> httpx.Client:
        key = self.clinical if kind == "clinical" else self.claims
        auth = BackendToken(process.url + "/auth/token", key, scope)
        return http_client(base_url=process.fhir, timeout=60, auth=auth,
                           headers={"Content-Type": "application/fhir+json"}, **kwargs)

    @staticmethod
    def kill(process: Process) -> None:
        os.kill(process.process.pid, signal.SIGKILL)
        process.process.wait()

    def stop_all(self) -> None:
        for p in self.processes:
            if p.process.poll() is None:
                stop_server(p.process)


@contextmanager
def fresh_database(kind: str, workdir: Path) -> Iterator[Database]:
    """A `Database` of that kind (`sqlite` or `postgres`), dropped afterwards."""
    database = Database.create(kind, workdir)
    try:
        yield database
    finally:
        database.drop()


@contextmanager
def servers_on(database: Database) -> Iterator[Servers]:
    """`Servers` on the database, every process stopped afterwards."""
    running = Servers(database)
    try:
        yield running
    finally:
        running.stop_all()


def metric_sample(text: str, name: str, **labels: str) -> float:
    """The value of one Prometheus sample in a `/metrics` text (0 when absent)."""
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match.group(1).split(",") for k, v in labels.items()):
            return float(match.group(2))
    return 0.0


def _marked(resource: dict[str, Any], marker: str) -> dict[str, Any]:
    return {**resource, "identifier": [{"system": MARKER, "value": marker}]}


def member_bundle(marker: str, members: int) -> dict[str, Any]:
    """A transaction creating `members` members, each HARP-eligible Medicaid (SMI + SUD diagnoses)."""
    entries = []
    for _ in range(members):
        p_url = f"urn:uuid:{uuid.uuid4()}"
        patient = {"resourceType": "Patient", "birthDate": "1980-05-05"}
        coverage = {
            "resourceType": "Coverage", "status": "active", "beneficiary": {"reference": p_url},
            "payor": [{"display": "Test plan"}], "period": {"start": months_ago(30)},
            "class": [{"type": {"coding": [{"system": COVERAGE_CLASS, "code": "plan"}]}, "value": "ny-mmc"}],
        }
        smi = {**condition_resource("", [(ICD, "F20.9")]), "subject": {"reference": p_url}}
        other = {**condition_resource("", [(ICD, "J45.909")]), "subject": {"reference": p_url}}
        claim = {
            "resourceType": "Claim", "status": "active", "use": "claim", "patient": {"reference": p_url},
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
            "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
            "billablePeriod": {"start": days_ago(20), "end": days_ago(20)}, "created": days_ago(20),
            "provider": {"display": "Test provider"},
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Test coverage"}}],
            "diagnosis": [{"sequence": 1, "diagnosisCodeableConcept": {"coding": [{"system": ICD, "code": "F10.20"}]}}],
        }
        for i, resource in enumerate((patient, coverage, smi, other, claim)):
            full_url = p_url if i == 0 else f"urn:uuid:{uuid.uuid4()}"
            entries.append({"fullUrl": full_url, "resource": _marked(resource, marker),
                            "request": {"method": "POST", "url": resource["resourceType"]}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def pages(client: httpx.Client, path: str, params: dict[str, str], mode: str | None = "match") -> Iterator[dict[str, Any]]:
    """The resources of every page of a search (its entries of search mode `mode`) or, with `mode` None,
    of a history, following the next links."""
    r = client.get(path, params=params)
    while True:
        assert r.status_code == 200, r.text
        body = r.json()
        yield from (e["resource"] for e in body.get("entry", [])
                    if "resource" in e and (mode is None or e.get("search", {}).get("mode") == mode))
        nxt = next((link["url"] for link in body.get("link", []) if link["relation"] == "next"), None)
        if nxt is None:
            return
        r = client.get(nxt)


def stored_per_marker(client: httpx.Client) -> Counter:
    """Resources stored per bundle marker, over the marked types, found by search."""
    counts: Counter = Counter()
    for rtype in MARKED_TYPES:
        for resource in pages(client, f"/{rtype}", {"identifier": f"{MARKER}|", "_count": "1000"}):
            counts.update(i["value"] for i in resource["identifier"] if i["system"] == MARKER)
    return counts


def findings_snapshot(engine: Engine) -> dict[str, list[tuple]]:
    """Every findings table, sorted, without the evaluation time stamp."""
    out = {}
    with engine.connect() as conn:
        for table in FINDING_TABLES:
            columns = [c for c in table.c if c.name != "evaluated_at"]
            out[table.name] = sorted(tuple(row) for row in conn.execute(select(*columns)))
    return out


def awaiting_evaluation(engine: Engine) -> int:
    """Written versions of the types the engine reads whose evaluation is not recorded (above the watermark)."""
    h = resource_history.c
    with engine.connect() as conn:
        watermark = conn.execute(select(alignment_watermark.c.txid)).scalar_one()
        done = select(alignment_evaluated.c.txid)
        return conn.execute(select(func.count()).where(
            h.rtype.in_(sorted(READ_TYPES)), h.txid > watermark, h.txid.not_in(done))).scalar_one()


def assert_findings_match_full_evaluation(client: httpx.Client, engine: Engine) -> int:
    """The findings as kept by the server equal a full re-evaluation's; returns the member count."""
    kept = findings_snapshot(engine)
    r = client.post("/$evaluate-alignment")
    assert r.status_code == 200, r.text
    full = findings_snapshot(engine)
    assert kept.keys() == full.keys()
    for table in full:
        missing, extra = set(full[table]) - set(kept[table]), set(kept[table]) - set(full[table])
        assert not missing and not extra, (table, sorted(missing)[:3], sorted(extra)[:3])
    return len(full["findings"])


@contextmanager
def evaluation_lock_held(database: "Database") -> Iterator[None]:
    """Hold the engine's lock row (SQLite: the write lock): writes still commit on PostgreSQL, their
    evaluations wait (and die with a killed process)."""
    with database.engine.connect() as conn:
        conn.begin()
        conn.execute(update(alignment_lock).where(alignment_lock.c.id == 1).values(evaluations=alignment_lock.c.evaluations))
        yield
        conn.rollback()
