"""Export jobs as database rows: creation, claiming, leases, completion, cancellation, expiry.

States: `queued` → `running` → `completed` | `failed`; `cancelled` from any of them.

A runner holds a lease (`lease_owner`, `lease_until_us`) and renews it while it works. Every
transition a runner makes is conditional on still holding the lease and the job still running,
so a cancelled job, or one taken over after the lease ran out, can never be completed by a runner
that lost it. A `running` job whose lease ran out belongs to a dead process: the next claim
starts it again (a new attempt, a new snapshot) until `max_attempts`, then marks it failed with
an OperationOutcome. No job is ever left behind silently.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import orjson
from sqlalchemy import Connection, Engine, and_, delete, func, insert, literal, or_, select, text, update

from server.bulk.ndjson import FileRecord
from server.fhir.errors import Issue, operation_outcome
from server.store.bulk_schema import BulkFile, BulkJob, bulk_files, bulk_jobs

j = bulk_jobs.c
ACTIVE = ("queued", "running")


@dataclass(frozen=True)
class Owner:
    """Who started an export: only the same client, user and patient context may see or cancel it."""

    client_id: str | None
    username: str | None
    patient: str | None

    def where(self):
        return and_(j.client_id.is_not_distinct_from(self.client_id), j.username.is_not_distinct_from(self.username),
                    j.patient.is_not_distinct_from(self.patient))


def _job(row) -> BulkJob:
    return BulkJob(**row._mapping)


def create(conn: Connection, job_id: str, owner: Owner, request: str, plan: bytes, now_us: int, cap: int) -> bool:
    """Queue a job unless its client already has `cap` jobs queued or running (False then). One
    INSERT … SELECT, so the count and the insert are one statement; on PostgreSQL a per-client advisory
    lock also orders concurrent kick-offs of one client (READ COMMITTED would let each see the other's
    count before its insert)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": f"planfit-export:{owner.client_id}"})
    in_flight = (select(func.count()).select_from(bulk_jobs)
                 .where(j.client_id.is_not_distinct_from(owner.client_id), j.status.in_(ACTIVE)).scalar_subquery())
    row = {"id": job_id, "client_id": owner.client_id, "username": owner.username, "patient": owner.patient,
           "status": "queued", "request": request, "plan": plan, "created_us": now_us, "attempts": 0}
    chosen = select(*(literal(value, bulk_jobs.c[name].type).label(name) for name, value in row.items()))
    done = conn.execute(insert(bulk_jobs).from_select(list(row), chosen.where(in_flight < cap)).returning(j.id))
    return done.first() is not None


def get(conn: Connection, job_id: str) -> BulkJob | None:
    row = conn.execute(select(bulk_jobs).where(j.id == job_id)).first()
    return _job(row) if row is not None else None


def files(conn: Connection, job_id: str) -> list[FileRecord]:
    """The job's files: outputs then errors, per type in file order (Condition-2 before Condition-10)."""
    f = bulk_files.c
    rows = conn.execute(select(f.name, f.kind, f.rtype, f.path, f.count, f.size).where(f.job_id == job_id))
    records = [FileRecord(**row._mapping) for row in rows]
    return sorted(records, key=lambda r: (r.kind != "output", r.rtype, int(r.name.rsplit("-", 1)[1].split(".")[0])))


def _orphaned(now_us: int):
    return and_(j.status == "running", j.lease_until_us < now_us)


def claim(engine: Engine, owner: str, now_us: int, lease_us: int, max_attempts: int, ttl_us: int) -> BulkJob | None:
    """Take the oldest queued or orphaned job (SKIP LOCKED on PostgreSQL; SQLite has one writer)."""
    give_up = and_(_orphaned(now_us), j.attempts >= max_attempts)
    claimable = or_(j.status == "queued", _orphaned(now_us))
    # Idle workers poll often: look first, so an empty queue costs no write transaction.
    with engine.connect() as conn:
        if conn.execute(select(j.id).where(or_(claimable, give_up)).limit(1)).first() is None:
            return None
    with engine.begin() as conn:
        conn.execute(
            update(bulk_jobs)
            .where(give_up)
            .values(
                status="failed",
                lease_owner=None,
                expires_us=now_us + ttl_us,
                outcome=failure_outcome(
                    f"The export was interrupted {max_attempts} time(s): the server process running it stopped"
                ),
            )
        )
        candidate = (
            select(j.id).where(claimable).order_by(j.created_us).limit(1).with_for_update(skip_locked=True).scalar_subquery()
        )
        row = conn.execute(
            update(bulk_jobs)
            .where(j.id == candidate, claimable)
            .values(
                status="running",
                lease_owner=owner,
                lease_until_us=now_us + lease_us,
                attempts=j.attempts + 1,
                progress="starting",
            )
            .returning(*bulk_jobs.c)
        ).first()
    return _job(row) if row is not None else None


def _held(job_id: str, owner: str):
    return and_(j.id == job_id, j.lease_owner == owner, j.status == "running")


def renew(engine: Engine, job_id: str, owner: str, until_us: int, progress: str) -> bool:
    """Extend the lease; False when it is lost (cancelled, taken over, or the job is gone)."""
    with engine.begin() as conn:
        done = conn.execute(
            update(bulk_jobs).where(_held(job_id, owner)).values(lease_until_us=until_us, progress=progress)
        )
        return done.rowcount == 1


def complete(
    engine: Engine,
    job_id: str,
    owner: str,
    records: list[FileRecord],
    snapshot_txid: int,
    transaction_us: int,
    expires_us: int,
) -> bool:
    """Publish the files and the snapshot in one transaction, if the lease is still ours."""
    with engine.begin() as conn:
        done = conn.execute(
            update(bulk_jobs)
            .where(_held(job_id, owner))
            .values(
                status="completed",
                lease_owner=None,
                progress="completed",
                snapshot_txid=snapshot_txid,
                transaction_us=transaction_us,
                expires_us=expires_us,
            )
        )
        if done.rowcount != 1:
            return False
        if records:
            conn.execute(
                insert(bulk_files),
                [BulkFile(job_id=job_id, **asdict(f)).model_dump() for f in records],
            )
        return True


def release(engine: Engine, job: BulkJob, owner: str, reason: str, max_attempts: int, now_us: int, ttl_us: int) -> None:
    """A run failed with an error: queue it for another attempt, or fail it if none are left."""
    values: dict = {"lease_owner": None, "progress": f"queued (attempt {job.attempts} failed)"}
    if job.attempts >= max_attempts:
        values.update(status="failed", expires_us=now_us + ttl_us, outcome=failure_outcome(reason))
    else:
        values.update(status="queued")
    with engine.begin() as conn:
        conn.execute(update(bulk_jobs).where(_held(job.id, owner)).values(**values))


# Writes below are single conditional UPDATEs, never read-then-write: on SQLite a transaction that
# reads first cannot upgrade to a write once another connection has written (SQLITE_BUSY).


def cancel(conn: Connection, job_id: str, owner: Owner, now_us: int) -> bool:
    """Cancel the owner's current job; False when there is no such job (for this owner)."""
    done = conn.execute(
        update(bulk_jobs)
        .where(
            j.id == job_id,
            owner.where(),
            j.status != "cancelled",
            or_(j.expires_us.is_(None), j.expires_us >= now_us),
        )
        .values(status="cancelled")
    )
    return done.rowcount == 1


def record_poll(conn: Connection, job_id: str, now_us: int, earliest_previous_us: int) -> bool:
    """Note a status poll; False when the previous one was later than `earliest_previous_us` (too soon)."""
    done = conn.execute(
        update(bulk_jobs)
        .where(j.id == job_id, or_(j.polled_us.is_(None), j.polled_us <= earliest_previous_us))
        .values(polled_us=now_us)
    )
    return done.rowcount == 1


def reapable(conn: Connection, now_us: int) -> list[str]:
    """Jobs whose files may go: expired ones, and cancelled ones no runner can still be writing."""
    cancelled = and_(j.status == "cancelled", or_(j.lease_until_us.is_(None), j.lease_until_us < now_us))
    expired = and_(j.status.not_in(ACTIVE), j.expires_us < now_us)
    return list(conn.execute(select(j.id).where(or_(cancelled, expired))).scalars())


def forget(conn: Connection, job_id: str) -> None:
    conn.execute(delete(bulk_files).where(bulk_files.c.job_id == job_id))
    conn.execute(delete(bulk_jobs).where(j.id == job_id))


def failure_outcome(diagnostics: str) -> bytes:
    return orjson.dumps(operation_outcome([Issue("error", "incomplete", diagnostics)]))
