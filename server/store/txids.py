"""Transaction ids and the watermark: how a write transaction numbers its versions (`begin_versions`),
how a reader knows which txids have all committed (`latest_txid`), and the whole-transaction retry
(`retried`) for the conflicts side-by-side writes can meet. `resources.py` writes with them; the readers of
the log (history, the alignment watermark, Bulk export) read with them.

PostgreSQL: a txid is the transaction id plus `txid_offset` (0954), taken with lastUpdated under the ORDER
advisory lock; writers in flight hold the WRITER lock shared. SQLite: one writer at a time increments the
`write_counter` row.
"""

from __future__ import annotations

import time
from typing import Callable, TypeVar

from sqlalchemy import Connection, exc, func, select, text, update

from server.store.schema import resource_history, write_counter

T = TypeVar("T")


class WriteConflict(Exception):
    """A transaction read a resource a later-started transaction wrote: run it again (`retried`)."""


_RETRIED_SQLSTATES = {"40P01", "40001"}  # deadlock detected, serialization failure
_ATTEMPTS = 5


def retried(attempt: Callable[[], T]) -> T:
    """`attempt()`, called again (up to `_ATTEMPTS` times in all) while it fails on a deadlock, a
    serialization failure or a `WriteConflict`, each of which rolled its transaction back whole."""
    for remaining in range(_ATTEMPTS - 1, -1, -1):
        try:
            return attempt()
        except (WriteConflict, exc.DBAPIError) as error:
            if remaining == 0 or not (isinstance(error, WriteConflict)
                                      or getattr(error.orig, "sqlstate", None) in _RETRIED_SQLSTATES):
                raise
    raise AssertionError("unreachable")


# PostgreSQL advisory lock keys: any constants, the same in every process sharing a database. Advisory locks
# are per database, so each key's low 32 bits take the schema's hash: stores in other schemas of the
# database (another deployment, a test's schema) neither hold back this one's watermark nor wait on it.
WRITER_LOCK = 0x706C616E77726974  # held shared by every write transaction, from its first statement
_ORDER_LOCK = 0x706C616E6F726472  # held for the one statement that gives a write its txid and lastUpdated
_WRITER = "(:writer # (hashtext(current_schema())::bigint & 4294967295))"
_ORDER = "(:order # (hashtext(current_schema())::bigint & 4294967295))"

# A version's txid is its transaction id plus this (0954; raised by `db.migrate` after a restore).
_TXID_OFFSET = "(SELECT value FROM txid_offset WHERE id = 1)"
_MARK_WRITER = text("SELECT pg_current_xact_id_if_assigned() FROM "
                    "(SELECT pg_advisory_xact_lock_shared(" + _WRITER + ") OFFSET 0) AS marked")
# Innermost first (OFFSET 0 keeps each level a separate step): lock, transaction id and clock, unlock.
_STAMP = text(
    "SELECT stamped.txid, stamped.lu, pg_advisory_unlock(" + _ORDER + ") AS unlocked FROM ("
    " SELECT pg_current_xact_id()::text::bigint + " + _TXID_OFFSET + " AS txid,"
    " (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS lu"
    " FROM (SELECT pg_advisory_lock(" + _ORDER + ") OFFSET 0) AS ordered OFFSET 0) AS stamped")
# Just below the oldest writer in flight. The statement's snapshot (t0) comes before its read of the lock
# table (t1): a txid at or below the result was assigned before t0 and its writer held no lock at t1, so it
# had ended, and every later snapshot sees it. A writer without a transaction id yet gets one above t0's
# xmax. Writers are the holders of WRITER_LOCK for this schema; their transaction ids, from the lock
# table's 32-bit `transactionid` rows, are matched with the snapshot's 64-bit in-flight list.
_WRITERS_IN_FLIGHT = ("pg_locks AS w WHERE w.locktype = 'advisory' AND w.objsubid = 1"
                      " AND w.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                      " AND ((w.classid::bigint << 32) | w.objid::bigint) = " + _WRITER)
_WATERMARK = text(
    "WITH writers AS (SELECT t.transactionid::text::bigint AS xid FROM pg_locks AS t"
    " WHERE t.locktype = 'transactionid' AND t.mode = 'ExclusiveLock' AND t.granted"
    " AND t.virtualtransaction IN (SELECT w.virtualtransaction FROM " + _WRITERS_IN_FLIGHT + "))"
    " SELECT coalesce((SELECT min(x) FROM pg_snapshot_xip(pg_current_snapshot()) AS x"
    " WHERE x::text::bigint % 4294967296 IN (SELECT xid FROM writers)),"
    " pg_snapshot_xmax(pg_current_snapshot()))::text::bigint - 1 + " + _TXID_OFFSET)
# The statement's start, or the start of the oldest writer in flight if earlier: a writer's lastUpdated is
# read after its transaction began, and one that marks itself after this read of the lock table does so
# after the statement began.
_EARLIEST_PENDING = text(
    "SELECT (extract(epoch FROM least(statement_timestamp(), (SELECT min(a.xact_start)"
    " FROM pg_stat_activity AS a WHERE a.pid IN (SELECT w.pid FROM " + _WRITERS_IN_FLIGHT + "))))"
    " * 1000000)::bigint")


def begin_versions(conn: Connection) -> tuple[int, int]:
    """(txid, lastUpdated in µs) of every version `conn`'s transaction writes; call it first in the
    transaction. PostgreSQL: mark the transaction as a writer, then take both in one statement under the
    ORDER lock. SQLite: increment the counter row (its write lock is held from BEGIN IMMEDIATE on)."""
    if conn.dialect.name != "postgresql":
        txid = conn.execute(
            update(write_counter).where(write_counter.c.id == 1).values(value=write_counter.c.value + 1)
            .returning(write_counter.c.value)
        ).scalar_one()
        return txid, time.time_ns() // 1000
    if conn.execute(_MARK_WRITER, {"writer": WRITER_LOCK}).scalar() is not None:
        # Marked after its transaction id, a writer could be taken for a reader and passed by the watermark.
        raise RuntimeError("a transaction that writes versions must begin with begin_versions")
    try:
        txid, lu, _unlocked = conn.execute(_STAMP, {"order": _ORDER_LOCK}).one()
    except BaseException:
        conn.invalidate()  # the ORDER lock is the session's: it ends with the connection
        raise
    return txid, lu


def latest_txid(conn: Connection) -> int:
    """The watermark: every write with a txid at or below it has committed (or rolled back), and the
    statements `conn` runs after this one see it. A statement of its own: the snapshot that sees the
    versions must be taken after it. PostgreSQL: just below the oldest writer in flight (with none, the
    newest transaction id). SQLite: the counter, in the read transaction's snapshot."""
    if conn.dialect.name == "postgresql":
        return conn.execute(_WATERMARK, {"writer": WRITER_LOCK}).scalar_one()
    return conn.execute(select(write_counter.c.value).where(write_counter.c.id == 1)).scalar_one()


def earliest_pending_lu(conn: Connection) -> int:
    """PostgreSQL: a lower bound (µs) on the lastUpdated of every write that commits after this statement,
    so a reader that takes its snapshot next can give it as the `_since` that misses none of them. It must
    be the first statement of `conn`'s transaction (the activity view is read once per transaction)."""
    return conn.execute(_EARLIEST_PENDING, {"writer": WRITER_LOCK}).scalar_one()


def newest_txid(conn: Connection) -> int:
    """The txid of the newest write `conn`'s next statement sees committed (0 before any write), as a
    search's paging snapshot: unlike `latest_txid`, it includes this caller's own latest write even while
    an older writer is still in flight."""
    if conn.dialect.name == "postgresql":
        return conn.execute(select(func.coalesce(func.max(resource_history.c.txid), 0))).scalar_one()
    return latest_txid(conn)
