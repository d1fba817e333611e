"""Tables of Bulk Data export jobs and the files they wrote.

A job is a row, not a process: whichever server process claims it runs it, and a lease
(`lease_owner`, `lease_until_us`) that the runner keeps renewing lets any other process take it
over when the runner dies. Times are microseconds since the epoch, like the resource tables.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, LargeBinary, String, Table, Text

from server.store.schema import TYPE_LEN, metadata

JOB_ID_LEN = 36

bulk_jobs = Table(
    "bulk_jobs",
    metadata,
    Column("id", String(JOB_ID_LEN), primary_key=True),
    # Who kicked the export off: client, signed-in user and patient context (NULL where absent, and
    # all three without auth). Only the same (client, user, patient) may poll, download or cancel.
    Column("client_id", Text, nullable=True),
    Column("username", Text, nullable=True),
    Column("patient", Text, nullable=True),
    # queued → running → completed | failed; cancelled from any state (see server.bulk.jobs).
    Column("status", String(16), nullable=False),
    # The kick-off URL, echoed as the manifest's `request`.
    Column("request", Text, nullable=False),
    # What to export (server.bulk.plan.ExportPlan as JSON), access clauses included.
    Column("plan", LargeBinary, nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until_us", BigInteger, nullable=True),
    Column("progress", Text, nullable=True),
    Column("polled_us", BigInteger, nullable=True),
    # The snapshot: write-counter value and the instant reported as `transactionTime`.
    Column("snapshot_txid", BigInteger, nullable=True),
    Column("transaction_us", BigInteger, nullable=True),
    Column("expires_us", BigInteger, nullable=True),
    # OperationOutcome (JSON) of a failed job.
    Column("outcome", LargeBinary, nullable=True),
    Index("ix_bulk_jobs_status", "status", "created_us"),
    Index("ix_bulk_jobs_client", "client_id", "status"),
)

bulk_files = Table(
    "bulk_files",
    metadata,
    Column("job_id", String(JOB_ID_LEN), primary_key=True),
    Column("name", String(160), primary_key=True),
    Column("kind", String(8), nullable=False),  # output | error
    Column("rtype", String(TYPE_LEN), nullable=False),
    # Path relative to the export directory.
    Column("path", Text, nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("size", BigInteger, nullable=False),
)
