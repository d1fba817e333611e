"""Tables of Bulk Data export jobs and the files they wrote.

A job is a row, not a process: whichever server process claims it runs it, and a lease
(`lease_owner`, `lease_until_us`) that the runner keeps renewing lets any other process take it
over when the runner dies. Times are microseconds since the epoch, like the resource tables.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Table, Text
from sqlmodel import Field, SQLModel

from server.store.schema import TYPE_LEN, metadata

JOB_ID_LEN = 36

class BulkJob(SQLModel, table=True):
    """One export job, as stored and as read back (`server.bulk.jobs` queries `bulk_jobs` with Core)."""

    __tablename__ = "bulk_jobs"
    __table_args__ = (
        Index("ix_bulk_jobs_status", "status", "created_us"),
        Index("ix_bulk_jobs_client", "client_id", "status"),
    )
    metadata = metadata

    id: str = Field(sa_type=String(JOB_ID_LEN), primary_key=True)
    # Who kicked the export off: client, signed-in user and patient context (NULL where absent, and
    # all three without auth). Only the same (client, user, patient) may poll, download or cancel.
    client_id: str | None = Field(default=None, sa_type=Text)
    username: str | None = Field(default=None, sa_type=Text)
    patient: str | None = Field(default=None, sa_type=Text)
    # queued → running → completed | failed; cancelled from any state (see server.bulk.jobs).
    status: str = Field(sa_type=String(16))
    # The kick-off URL, echoed as the manifest's `request`.
    request: str = Field(sa_type=Text)
    # What to export (server.bulk.plan.ExportPlan as JSON), access clauses included.
    plan: bytes = Field(sa_type=LargeBinary)
    created_us: int = Field(sa_type=BigInteger)
    attempts: int = Field(default=0, sa_type=Integer)
    lease_owner: str | None = Field(default=None, sa_type=String(64))
    lease_until_us: int | None = Field(default=None, sa_type=BigInteger)
    progress: str | None = Field(default=None, sa_type=Text)
    polled_us: int | None = Field(default=None, sa_type=BigInteger)
    # The snapshot: write-counter value and the instant reported as `transactionTime`.
    snapshot_txid: int | None = Field(default=None, sa_type=BigInteger)
    transaction_us: int | None = Field(default=None, sa_type=BigInteger)
    expires_us: int | None = Field(default=None, sa_type=BigInteger)
    # OperationOutcome (JSON) of a failed job.
    outcome: bytes | None = Field(default=None, sa_type=LargeBinary)


bulk_jobs: Table = BulkJob.__table__  # type: ignore[assignment]


class BulkFile(SQLModel, table=True):
    """One file a completed job wrote (the model builds the row; `server.bulk.jobs` reads with Core)."""

    __tablename__ = "bulk_files"
    metadata = metadata

    job_id: str = Field(sa_type=String(JOB_ID_LEN), primary_key=True)
    name: str = Field(sa_type=String(160), primary_key=True)
    kind: str = Field(sa_type=String(8))  # output | error
    rtype: str = Field(sa_type=String(TYPE_LEN))
    # Path relative to the export directory.
    path: str = Field(sa_type=Text)
    count: int = Field(sa_type=BigInteger)
    size: int = Field(sa_type=BigInteger)


bulk_files: Table = BulkFile.__table__  # type: ignore[assignment]
