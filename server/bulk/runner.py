"""Running one claimed export job: snapshot, stream rows to NDJSON files, publish.

Consistency: the export reads inside one snapshot transaction (REPEATABLE READ on PostgreSQL; a
WAL read transaction on SQLite), and the snapshot txid is the newest write it sees (every exported
version has `txid <= snapshot`). `transactionTime` is a lastUpdated no write outside the snapshot is
stamped before, so a client that passes it as the next `_since` misses nothing. PostgreSQL writes run
side by side: it is read just before the snapshot is taken, as the start of the oldest writer then in
flight (or the time then, with none), and a few versions in the snapshot may come again in the next
`_since` export. SQLite: the snapshot is opened while its writer lock is held for an instant, so no write
is in flight and the clock read then is exact.

A restart does not resume half-written files: the next attempt takes a new snapshot and writes
everything again into its own directory. The manifest only ever describes one attempt.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import orjson
from sqlalchemy import Connection, Engine, Select

from server.bulk import jobs
from server.bulk.members import GroupMembership
from server.bulk.ndjson import FileRecord, NdjsonFiles
from server.bulk.plan import ExportPlan
from server.bulk.query import export_statement, materialize_patients
from server.config import Settings
from server.store.bulk_schema import BulkJob
from server.store.db import begin_writing
from server.store.txids import earliest_pending_lu, latest_txid, newest_txid

log = logging.getLogger("planfit.bulk")
_US = 1_000_000
_FETCH_ROWS = 2_000


def now_us() -> int:
    return time.time_ns() // 1000


class LeaseLost(Exception):
    """The job was cancelled or taken over by another process; stop without publishing."""


class Lease:
    """Renews the job's lease from its own thread, so a slow query cannot let it lapse."""

    def __init__(self, engine: Engine, job_id: str, owner: str, lease_seconds: int):
        self.engine = engine
        self.job_id = job_id
        self.owner = owner
        self.lease_us = lease_seconds * _US
        self.progress = "starting"
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew_loop, name=f"export-lease-{job_id[:8]}", daemon=True)

    def __enter__(self) -> "Lease":
        self._thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self._stop.set()
        self._thread.join()

    def check(self) -> None:
        if self.lost.is_set():
            raise LeaseLost()

    def _renew_loop(self) -> None:
        last_ok = now_us()
        while not self._stop.wait(self.lease_us / _US / 3):
            try:
                if not jobs.renew(self.engine, self.job_id, self.owner, now_us() + self.lease_us, self.progress):
                    self.lost.set()
                    return
                last_ok = now_us()
            except Exception as exc:  # a database hiccup: keep trying until the lease would have run out
                log.warning("export lease renewal failed: %s", type(exc).__name__)
                if now_us() - last_ok > self.lease_us:
                    self.lost.set()
                    return


class Throttle:
    """Caps rows per second (PLANFIT_EXPORT_MAX_RATE) so an export cannot starve ingest; 0 = off."""

    def __init__(self, rate: int):
        self.rate = rate
        self.start = time.monotonic()
        self.rows = 0

    @property
    def batch_rows(self) -> int:
        """Rows fetched per round trip: small enough under a cap that the pace stays even."""
        return _FETCH_ROWS if self.rate <= 0 else max(1, min(_FETCH_ROWS, self.rate // 10))

    def tick(self, rows: int) -> None:
        if self.rate <= 0:
            return
        self.rows += rows
        ahead = self.rows / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            time.sleep(ahead)


@contextmanager
def snapshot(engine: Engine) -> Iterator[tuple[Connection, int, int]]:
    """(read connection, snapshot txid, transactionTime in µs); see the module docstring."""
    with engine.connect() as read:
        if read.dialect.name == "postgresql":
            transaction_us = earliest_pending_lu(read)
            read.rollback()
            read.execution_options(isolation_level="REPEATABLE READ")
            read.begin()
            txid = newest_txid(read)
        else:
            with engine.connect() as lock:
                begin_writing(lock)  # BEGIN IMMEDIATE: no write commits until the rollback below
                read.begin()
                txid = latest_txid(read)
                transaction_us = now_us()
                lock.rollback()
        try:
            yield read, txid, transaction_us
        finally:
            read.rollback()


def run_job(store: Store, settings: Settings, groups: GroupMembership, job: BulkJob, owner: str) -> None:
    """Run one claimed attempt to completion, or leave the job for a retry or as failed."""
    export_dir = Path(settings.export_dir)
    relative_dir = f"{job.id}/{job.attempts}"
    engine = store.engine
    with Lease(engine, job.id, owner, settings.export_lease_seconds) as lease:
        try:
            _clear_other_attempts(export_dir / job.id, keep=str(job.attempts))
            (export_dir / relative_dir).mkdir(parents=True, exist_ok=True)
            plan = ExportPlan.from_json(job.plan)
            records, txid, transaction_us = _export(engine, plan, export_dir, relative_dir, settings, groups, lease)
            lease.check()
            published = jobs.complete(
                engine, job.id, owner, records, txid, transaction_us, now_us() + settings.export_ttl_seconds * _US
            )
        except LeaseLost:
            published = False
        except Exception as exc:
            log.error("export job %s attempt %d failed: %s", job.id, job.attempts, type(exc).__name__)
            jobs.release(
                engine, job, owner, f"The export failed: {type(exc).__name__}", settings.export_max_attempts,
                now_us(), settings.export_ttl_seconds * _US,
            )
            published = False
    if not published:
        shutil.rmtree(export_dir / relative_dir, ignore_errors=True)


def _export(
    engine: Engine, plan: ExportPlan, export_dir: Path, relative_dir: str, settings: Settings,
    groups: GroupMembership, lease: Lease,
) -> tuple[list[FileRecord], int, int]:
    records: list[FileRecord] = []
    throttle = Throttle(settings.export_max_rate)
    total = 0
    with snapshot(engine) as (conn, txid, transaction_us):
        patients = materialize_patients(conn, plan, groups)
        for number, type_plan in enumerate(plan.types, start=1):
            step = f"exporting {type_plan.rtype} (type {number} of {len(plan.types)})"
            files = NdjsonFiles(export_dir, relative_dir, type_plan.rtype, "output", settings.export_file_lines)
            try:
                statement = export_statement(plan, type_plan, txid, patients)
                whole = _whole_group(conn, plan, groups) if type_plan.rtype == "Group" else None
                total += _export_type(conn, statement, files, lease, throttle, step, total, whole)
            except BaseException:
                files.discard()
                raise
            records.extend(files.close())
    records.extend(_warning_files(plan, export_dir, relative_dir, settings.export_file_lines))
    return records, txid, transaction_us


def _whole_group(conn: Connection, plan: ExportPlan, groups: GroupMembership) -> Callable[[bytes], bytes] | None:
    """For a Group export, the exported Group as its member resolver renders it."""
    if plan.level != "group" or plan.group_id is None:
        return None
    group_id = plan.group_id
    return lambda stored: groups.document(conn, group_id, stored)


def _export_type(
    conn: Connection, statement: Select, files: NdjsonFiles, lease: Lease, throttle: Throttle, step: str, before: int,
    render: Callable[[bytes], bytes] | None = None,
) -> int:
    """Stream one type's rows (a server-side cursor on PostgreSQL) into its files."""
    lease.progress = f"{step}, {before} resources written"
    result = conn.execute(statement, execution_options={"yield_per": throttle.batch_rows})
    written = 0
    for batch in result.scalars().partitions():
        for content in batch:
            files.write(render(content) if render else content)
        written += len(batch)
        lease.progress = f"{step}, {before + written} resources written"
        lease.check()
        throttle.tick(len(batch))
    return written


def _warning_files(plan: ExportPlan, export_dir: Path, relative_dir: str, max_lines: int) -> list[FileRecord]:
    """Parameters ignored under `Prefer: handling=lenient`, one OperationOutcome per line."""
    files = NdjsonFiles(export_dir, relative_dir, "OperationOutcome", "error", max_lines)
    for issue in plan.warnings:
        files.write(orjson.dumps({"resourceType": "OperationOutcome", "issue": [issue]}))
    return files.close()


def _clear_other_attempts(job_dir: Path, keep: str) -> None:
    """Earlier attempts belonged to a runner that is gone; their files are never published."""
    if job_dir.is_dir():
        for child in job_dir.iterdir():
            if child.name != keep:
                shutil.rmtree(child, ignore_errors=True)
