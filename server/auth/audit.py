"""Audit trail of FHIR interactions: who, what, when, outcome — exported as FHIR AuditEvent.

Recording must be cheap and must never wait for the resource store's writer lock, so a request only
appends an `AuditRecord` to an in-memory queue; one background thread per process INSERTs queued
records in batches into the append-only `audit_events` table, on its own connection and in its own
short transaction; it gathers a batch for `_GATHER_S` after the first record, so under load one transaction
carries many requests' records. The queue is bounded: if the database falls behind, requests wait for room rather
than records being dropped. At shutdown the queue is drained. Records of a process killed with
SIGKILL may be lost for the last flush interval (`FLUSH_INTERVAL_S`, longer than `_GATHER_S`).

Audit rows may contain PHI (search parameters, resource ids) and stay in the database; nothing of
them is logged. `planfit audit export` renders them as AuditEvent NDJSON.
"""

from __future__ import annotations

import base64
import json
import logging
import queue
import threading
import time
from typing import Iterator

from sqlalchemy import Engine, exc, insert, select

from server.fhir.context import AuditRecord
from server.fhir.dates import instant_text
from server.store.auth_schema import audit_events

log = logging.getLogger("planfit.auth")

FLUSH_INTERVAL_S = 0.2
# After a record arrives the writer waits this long for others, so concurrent requests share one INSERT
# (and one pool checkout, BEGIN and COMMIT) instead of each paying for its own.
_GATHER_S = 0.05
_BATCH = 500
_QUEUE_SIZE = 100_000
_EXPORT_CHUNK = 1000
_WRITE_ATTEMPTS = 8

CLIENT_ID_SYSTEM = "https://planfit.dev/fhir/NamingSystem/client-id"
USERNAME_SYSTEM = "https://planfit.dev/fhir/NamingSystem/username"
_ACTIONS = {"create": "C", "read": "R", "vread": "R", "history-instance": "R", "history-type": "R",
            "history-system": "R", "update": "U", "delete": "D"}


def describe(method: str, parts: list[str]) -> tuple[str, str | None, str | None]:
    """(interaction, type, id) of a request under /fhir, from method and path segments (after /fhir):
    what the audit record says was done. It decides nothing; the FHIR layer checks access."""
    if not parts:
        return ("transaction" if method == "POST" else "operation"), None, None
    if any(p.startswith("$") for p in parts):
        rtype = parts[0] if parts[0][:1].isupper() else None
        return "operation", rtype, parts[1] if rtype and len(parts) > 2 else None
    if parts[0] == "_history":
        return "history-system", None, None
    rtype = parts[0]
    if len(parts) == 1:
        return {"GET": "search-type", "POST": "create", "PUT": "update", "DELETE": "delete"}.get(method, "operation"), rtype, None
    if parts[1] == "_search":
        return "search-type", rtype, None
    if parts[1] == "_history":
        return "history-type", rtype, None
    if len(parts) == 2:
        return {"GET": "read", "PUT": "update", "DELETE": "delete"}.get(method, "operation"), rtype, parts[1]
    if parts[2] == "_history":
        return ("history-instance" if len(parts) == 3 else "vread"), rtype, parts[1]
    return "operation", rtype, None


def row_of(record: AuditRecord) -> dict:
    """The table row; values from the request path are cut to their column widths, so no request can
    make the INSERT fail."""
    return {
        "recorded_us": record.recorded_us,
        "client_id": _cut(record.client_id, 128),
        "username": _cut(record.username, 128),
        "fhir_user": _cut(record.fhir_user, 200),
        "patient": _cut(record.patient, 64),
        "action": _ACTIONS.get(record.interaction, "E"),  # search, transaction, batch, operations: execute
        "interaction": _cut(record.interaction, 32),
        "rtype": _cut(record.rtype, 64),
        "rid": _cut(record.rid, 64),
        "query": _cut(record.query, None),
        "entities": json.dumps(record.entities) if record.entities else None,
        "status": record.status,
        "remote_addr": _cut(record.remote_addr, 64),
    }


def _cut(value: str | None, size: int | None) -> str | None:
    """The value within `size` characters, NUL written as `\\u0000` (PostgreSQL text cannot hold NUL; a
    request for `/Patient/a%00b` would otherwise make the whole batch fail)."""
    return value.replace("\x00", "\\u0000")[:size] if value is not None else None


class AuditTrail:
    """The queue and the background writer of one process."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self._queue: queue.Queue[AuditRecord | None] = queue.Queue(maxsize=_QUEUE_SIZE)
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="planfit-audit", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Drain the queue and stop the writer."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
            self._thread = None

    def offer(self, record: AuditRecord) -> bool:
        """Enqueue without blocking; False when the queue is full (then call `put` off the event loop)."""
        try:
            self._queue.put_nowait(record)
            return True
        except queue.Full:
            return False

    def put(self, record: AuditRecord) -> None:
        self._queue.put(record)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch: list[AuditRecord] = []
            try:
                item = self._queue.get(timeout=FLUSH_INTERVAL_S)
            except queue.Empty:
                continue
            if self._queue.qsize() < _BATCH:
                time.sleep(_GATHER_S)
            while item is not None:
                batch.append(item)
                if len(batch) >= _BATCH:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            stopping = item is None
            if batch:
                self._write(batch)

    def _write(self, batch: list[AuditRecord]) -> None:
        """INSERT a batch. A database that is away (restarting, unreachable, locked) is waited for; a
        batch the database refuses for its content is written record by record, so one bad record never
        costs the others."""
        rows = [row_of(r) for r in batch]
        for attempt in range(_WRITE_ATTEMPTS):
            try:
                self._insert(rows)
                return
            except Exception as error:  # the error type only: rows hold PHI
                if not _transient(error):
                    self._write_each(rows)
                    return
                log.error("audit write failed (%s), attempt %d", type(error).__name__, attempt + 1)
                time.sleep(min(2**attempt, 10))
        log.error("audit write gave up on %d records", len(batch))

    def _write_each(self, rows: list[dict]) -> None:
        """Each row in its own transaction; a row still refused is kept as the fact of the access (who,
        when, which interaction, outcome) without the request text that made it unwritable."""
        for row in rows:
            try:
                self._insert([row])
            except Exception as error:
                log.error("audit record refused (%s); kept without its request text", type(error).__name__)
                try:
                    self._insert([_without_request_text(row, type(error).__name__)])
                except Exception as again:
                    log.error("audit record dropped (%s)", type(again).__name__)

    def _insert(self, rows: list[dict]) -> None:
        with self.engine.begin() as conn:
            conn.execute(insert(audit_events), rows)


def _transient(error: Exception) -> bool:
    """True when the database itself is away (worth waiting for), not refusing what was sent."""
    if isinstance(error, exc.DBAPIError):
        return error.connection_invalidated or isinstance(error, (exc.OperationalError, exc.InterfaceError))
    return isinstance(error, exc.TimeoutError)  # no pooled connection came free


def _without_request_text(row: dict, reason: str) -> dict:
    return {**row, "rtype": None, "rid": None, "entities": None,
            "query": f"request text not recordable ({reason})"}


# ---- export -------------------------------------------------------------------------------------


def export(engine: Engine, since_us: int | None = None) -> Iterator[dict]:
    """Every audit record (recorded at or after `since_us`) as an AuditEvent, oldest first."""
    last_id = 0
    t = audit_events.c
    while True:
        stmt = select(audit_events).where(t.id > last_id).order_by(t.id).limit(_EXPORT_CHUNK)
        if since_us is not None:
            stmt = stmt.where(t.recorded_us >= since_us)
        with engine.connect() as conn:
            rows = conn.execute(stmt).all()
        if not rows:
            return
        for row in rows:
            yield audit_event(row)
        last_id = rows[-1].id


def _coding(system: str, code: str, display: str | None = None) -> dict:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def _outcome(status: int) -> str:
    """AuditEvent.outcome: 0 success, 4 minor failure (refused, not found…), 8 serious failure."""
    return "0" if status < 400 else "4" if status < 500 else "8"


def _is_patient_ref(ref: str | None) -> bool:
    """fhirUser is `…/Patient/id` (absolute or relative)."""
    parts = (ref or "").rstrip("/").split("/")
    return len(parts) >= 2 and parts[-2] == "Patient"


def _agents(row) -> list[dict]:
    client = {
        "type": {"coding": [_coding("http://dicom.nema.org/resources/ontology/DCM", "110150", "Application")]},
        "who": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": row.client_id or "anonymous"}},
        "requestor": row.username is None,
    }
    if row.remote_addr:
        client["network"] = {"address": row.remote_addr, "type": "2"}
    agents = [client]
    if row.username is not None:
        role = ("PAT", "patient") if _is_patient_ref(row.fhir_user) else ("PROV", "healthcare provider")
        user: dict = {
            "type": {"coding": [_coding("http://terminology.hl7.org/CodeSystem/v3-RoleClass", *role)]},
            "who": {"identifier": {"system": USERNAME_SYSTEM, "value": row.username}},
            "requestor": True,
        }
        if row.fhir_user:
            user["who"]["reference"] = row.fhir_user
        agents.append(user)
    return agents


def _entities(row) -> list[dict]:
    object_type = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
    role = "http://terminology.hl7.org/CodeSystem/object-role"
    out = []
    if row.patient:
        out.append({"what": {"reference": f"Patient/{row.patient}"}, "type": _coding(object_type, "1", "Person"),
                    "role": _coding(role, "1", "Patient")})
    for ref in json.loads(row.entities) if row.entities else ([f"{row.rtype}/{row.rid}"] if row.rid else []):
        out.append({"what": {"reference": ref}, "type": _coding(object_type, "2", "System Object"),
                    "role": _coding(role, "4", "Domain Resource")})
    if row.query is not None:
        out.append({"type": _coding(object_type, "2", "System Object"), "role": _coding(role, "24", "Query"),
                    "description": row.rtype or "all types",
                    "query": base64.b64encode(row.query.encode("utf-8")).decode("ascii")})
    return out


def audit_event(row) -> dict:
    event = {
        "resourceType": "AuditEvent",
        "id": f"audit-{row.id}",
        "type": _coding("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest", "RESTful Operation"),
        "subtype": [_coding("http://hl7.org/fhir/restful-interaction", row.interaction)],
        "action": row.action,
        "recorded": instant_text(row.recorded_us),
        "outcome": _outcome(row.status),
        "agent": _agents(row),
        "source": {
            "observer": {"display": "PlanFit FHIR server"},
            "type": [_coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")],
        },
    }
    if row.status >= 400:
        event["outcomeDesc"] = f"HTTP {row.status}"
    entities = _entities(row)
    if entities:
        event["entity"] = entities
    return event
