"""Transactional resource store: versions, history and index rows written together.

Every write transaction first increments the single `write_counter` row. That row lock
serialises writers across all server processes (as Blaze's single transaction log does), so:
- `txid` order equals commit order, which makes `_since` and paging exact;
- conditional create/update decisions made inside the transaction cannot race;
- a version number is read and incremented under the lock, so no update is ever lost.
Only the database work runs under the lock; parsing, validation and index extraction happen
before it is taken.
"""

from __future__ import annotations

import time
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Iterator, Mapping, Sequence

from sqlalchemy import Connection, Engine, ScalarSelect, Select, bindparam, delete, func, select, tuple_, update

from server.store.db import begin_writing
from server.store.schema import (
    idx_date,
    idx_reference,
    idx_string,
    idx_token,
    resource_history,
    resources,
    write_counter,
)

_INDEX_COLUMNS = {
    "tokens": (idx_token, ("h_param", "h_value", "h_sys_value", "h_sys", "system", "code")),
    "strings": (idx_string, ("h_param", "value_norm", "value_exact")),
    "dates": (idx_date, ("h_param", "lo", "hi")),
    "references": (idx_reference, ("h_param", "target_type", "target_id", "target_url")),
}
_CHUNK = 2000


@dataclass(frozen=True)
class StoredVersion:
    rtype: str
    rid: str
    version: int
    txid: int
    lu: int
    deleted: bool
    content: bytes | None
    method: str = ""


@dataclass
class StagedWrite:
    rtype: str
    rid: str
    version: int
    method: str  # POST | PUT | DELETE
    content: bytes | None
    index: object | None  # searchparams.IndexRows; None for a delete
    existed: bool


# A feature's table derived from index rows, brought up to date in the transaction that writes them, after
# their index rows: (connection, the ids written by resource type, None for every resource of the type).
Derivation = Callable[[Connection, Mapping[str, "Collection[str] | None"]], None]


class Store:
    """Reads go straight to the engine; writes go through `WriteTransaction`, which runs the
    `derivations` (the features' IN_TRANSACTION hooks) on what it writes."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.derivations: list[Derivation] = []

    @contextmanager
    def connection(self, conn: Connection | None = None) -> Iterator[Connection]:
        """The caller's connection (e.g. inside a write transaction) or a fresh one."""
        if conn is not None:
            yield conn
        else:
            with self.engine.connect() as own:
                yield own

    def read(self, rtype: str, rid: str, conn: Connection | None = None) -> StoredVersion | None:
        stmt = select(
            resources.c.version, resources.c.txid, resources.c.lu, resources.c.deleted, resources.c.content
        ).where(resources.c.rtype == rtype, resources.c.rid == rid)
        with self.connection(conn) as c:
            rows = c.execute(stmt).all()
        if not rows:
            return None
        row = rows[0]
        return StoredVersion(rtype, rid, row.version, row.txid, row.lu, row.deleted, row.content)

    def vread(self, rtype: str, rid: str, version: int, conn: Connection | None = None) -> StoredVersion | None:
        h = resource_history.c
        stmt = select(h.txid, h.lu, h.deleted, h.content, h.method).where(
            h.rtype == rtype, h.rid == rid, h.version == version
        )
        with self.connection(conn) as c:
            row = c.execute(stmt).first()
        if row is None:
            return None
        return StoredVersion(rtype, rid, version, row.txid, row.lu, row.deleted, row.content, row.method)

    def history(
        self,
        rtype: str | None,
        rid: str | None,
        since_us: int | None,
        before_txid: int | None,
        limit: int,
    ) -> list[StoredVersion]:
        """Versions newest first; `before_txid` (exclusive) pages backwards through the log."""
        h = resource_history.c
        stmt = _history_of(select(h.rtype, h.rid, h.version, h.txid, h.lu, h.deleted, h.content, h.method),
                           rtype, rid, since_us)
        if before_txid is not None:
            stmt = stmt.where(h.txid < before_txid)
        stmt = stmt.order_by(h.txid.desc(), h.rtype, h.rid, h.version.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [StoredVersion(**row._mapping) for row in conn.execute(stmt)]

    def history_count(self, rtype: str | None, rid: str | None, since_us: int | None) -> int:
        stmt = _history_of(select(func.count()).select_from(resource_history), rtype, rid, since_us)
        with self.engine.connect() as conn:
            return conn.execute(stmt).scalar_one()

    @staticmethod
    def current_txid(conn: Connection) -> int:
        return conn.execute(_LATEST_TXID).scalar_one()

    def fetch(self, keys: Iterable[tuple[str, str]], conn: Connection | None = None) -> dict[tuple[str, str], StoredVersion]:
        """Current, non-deleted versions of many resources in one round trip per chunk."""
        keys = list(dict.fromkeys(keys))
        found: dict[tuple[str, str], StoredVersion] = {}
        r = resources.c
        for chunk in chunks(keys):
            stmt = select(r.rtype, r.rid, r.version, r.txid, r.lu, r.deleted, r.content).where(
                tuple_(r.rtype, r.rid).in_(chunk), r.deleted.is_(False)
            )
            with self.connection(conn) as c:
                for row in c.execute(stmt):
                    found[(row.rtype, row.rid)] = StoredVersion(**row._mapping)
        return found

    def begin_write(self) -> "WriteTransaction":
        return WriteTransaction(self)


class WriteTransaction:
    """One atomic unit of writes. Use as a context manager; commits on clean exit.

    Staged writes are flushed with a handful of multi-row statements at commit, so a bundle of
    500 resources costs a few round trips, not thousands of ORM objects.
    """

    def __init__(self, store: Store):
        self.store = store
        self.conn: Connection | None = None
        self.txid = 0
        self.now_us = 0
        self.staged: dict[tuple[str, str], StagedWrite] = {}

    def __enter__(self) -> "WriteTransaction":
        self.conn = self.store.engine.connect()
        begin_writing(self.conn)
        self.txid = next_txid(self.conn)
        if self.conn.dialect.name == "postgresql":
            # Under the writer lock, a parallel plan's worker start-up (~10 ms for a lookup of a few
            # index rows) is time every other writer waits.
            self.conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
        self.now_us = time.time_ns() // 1000
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.conn is not None
        try:
            if exc_type is None:
                self.flush()
                self.conn.commit()
            else:
                self.conn.rollback()
        finally:
            self.conn.close()

    def current(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], StoredVersion]:
        """Current rows (deleted ones included) as seen inside this transaction."""
        keys = [k for k in dict.fromkeys(keys)]
        found: dict[tuple[str, str], StoredVersion] = {}
        r = resources.c
        for chunk in chunks(keys):
            stmt = select(r.rtype, r.rid, r.version, r.txid, r.lu, r.deleted, r.content).where(
                tuple_(r.rtype, r.rid).in_(chunk)
            )
            for row in self.conn.execute(stmt):
                found[(row.rtype, row.rid)] = StoredVersion(**row._mapping)
        for key in keys:
            staged = self.staged.get(key)
            if staged is not None:
                found[key] = StoredVersion(
                    key[0], key[1], staged.version, self.txid, self.now_us, staged.content is None, staged.content
                )
        return found

    def stage(self, write: StagedWrite) -> None:
        self.staged[(write.rtype, write.rid)] = write

    def flush(self) -> None:
        """Write what is staged, so later statements in this transaction see it.

        Rows go through the driver directly (COPY on PostgreSQL, executemany of tuples on
        SQLite): this is the ingest hot path, and per-row ORM or Core parameter processing would
        cost more than the database work itself.
        """
        if not self.staged:
            return
        writes = list(self.staged.values())
        self.staged = {}
        txid, lu = self.txid, self.now_us
        history = [(w.rtype, w.rid, w.version, txid, lu, w.method, w.content is None, w.content) for w in writes]
        self._bulk_insert(resource_history.name, _HISTORY_COLUMNS, history)
        self._bulk_insert(resources.name, _RESOURCE_COLUMNS, [row[:5] + row[6:] for row, w in zip(history, writes) if not w.existed])
        existing = [w for w in writes if w.existed]
        if existing:
            self.conn.execute(
                update(resources)
                .where(resources.c.rtype == bindparam("k_rtype"), resources.c.rid == bindparam("k_rid"))
                .values(version=bindparam("v"), txid=txid, lu=lu, deleted=bindparam("del"), content=bindparam("body")),
                [{"k_rtype": w.rtype, "k_rid": w.rid, "v": w.version, "del": w.content is None, "body": w.content} for w in existing],
            )
            by_type = written_ids((w.rtype, w.rid) for w in existing)
            for table, _cols in _INDEX_COLUMNS.values():
                for rtype, rids in by_type.items():
                    for chunk in chunks(rids):
                        self.conn.execute(delete(table).where(table.c.rtype == rtype, table.c.rid.in_(chunk)))
        insert_index_rows(self.conn, [(w.rtype, w.rid, w.index) for w in writes if w.index is not None])
        derive(self.conn, self.store.derivations, written_ids((w.rtype, w.rid) for w in writes))

    def _bulk_insert(self, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
        bulk_insert(self.conn, table, columns, rows)


def _history_of(stmt: Select, rtype: str | None, rid: str | None, since_us: int | None) -> Select:
    """`stmt` over the versions of a type, of one resource, and/or since an instant (history's filters)."""
    h = resource_history.c
    if rtype is not None:
        stmt = stmt.where(h.rtype == rtype)
    if rid is not None:
        stmt = stmt.where(h.rid == rid)
    if since_us is not None:
        stmt = stmt.where(h.lu >= since_us)
    return stmt


def next_txid(conn: Connection) -> int:
    """The number of the write that `conn`'s transaction makes. As the transaction's first statement
    it takes the writer lock (the counter row; SQLite's RESERVED lock), held until commit."""
    return conn.execute(
        update(write_counter).where(write_counter.c.id == 1).values(value=write_counter.c.value + 1)
        .returning(write_counter.c.value)
    ).scalar_one()


_LATEST_TXID = select(write_counter.c.value).where(write_counter.c.id == 1)


def latest_txid() -> ScalarSelect[int]:
    """The number of the newest committed write, as a sub-select (read in the caller's snapshot)."""
    return _LATEST_TXID.scalar_subquery()


def hold_writes(conn: Connection) -> None:
    """Take the writer lock without writing (the counter row set to itself): no write commits until `conn`'s
    transaction ends; rolling it back changes nothing."""
    conn.execute(update(write_counter).where(write_counter.c.id == 1).values(value=write_counter.c.value))


def append_versions(conn: Connection, rtype: str, versions: Sequence[tuple[str, int]],
                    render: Callable[[str, int, int], bytes]) -> None:
    """New versions of existing resources, written on `conn`'s transaction as one write of the log.

    For a feature that derives a resource inside a larger transaction of its own (a cohort Group's
    header after a membership change) rather than through `WriteTransaction`. The writer lock comes
    first and the time after it, as in every write, so `lastUpdated` and `txid` order agree.
    `render(id, version, lastUpdated µs)` gives each version's content. Index rows stay the caller's.
    """
    txid = next_txid(conn)
    now = time.time_ns() // 1000
    rows = [(rtype, rid, version, txid, now, "PUT", False, render(rid, version, now)) for rid, version in versions]
    bulk_insert(conn, resource_history.name, _HISTORY_COLUMNS, rows)
    r = resources.c
    conn.execute(
        update(resources).where(r.rtype == rtype, r.rid == bindparam("k_rid"))
        .values(version=bindparam("v"), txid=txid, lu=now, deleted=False, content=bindparam("body")),
        [{"k_rid": row[1], "v": row[2], "body": row[7]} for row in rows],
    )


def insert_index_rows(conn: Connection, indexed: Sequence[tuple[str, str, object]]) -> None:
    """Insert the index rows (`searchparams.IndexRows`) of (resource type, id) pairs, one bulk insert per table."""
    for attr, (table, cols) in _INDEX_COLUMNS.items():
        rows = [(rtype, rid, *values) for rtype, rid, index in indexed for values in getattr(index, attr)]
        bulk_insert(conn, table.name, ("rtype", "rid", *cols), rows)


def written_ids(keys: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """(resource type, id) pairs as ids by type."""
    by_type: dict[str, list[str]] = defaultdict(list)
    for rtype, rid in keys:
        by_type[rtype].append(rid)
    return by_type


def derive(conn: Connection, derivations: Sequence[Derivation], changed: Mapping[str, "Collection[str] | None"]) -> None:
    """Bring the derived tables up to date with index rows just written on `conn`'s transaction."""
    for derivation in derivations:
        derivation(conn, changed)


def delete_parameter_rows(conn: Connection, rtype: str, h_params: Collection[int]) -> None:
    """Delete every index row of these parameters of one resource type (before they are indexed anew)."""
    for table, _cols in _INDEX_COLUMNS.values():
        conn.execute(delete(table).where(table.c.rtype == rtype, table.c.h_param.in_(list(h_params))))


def current_contents(conn: Connection, rtype: str, after: str, limit: int) -> list[tuple[str, bytes]]:
    """(id, content) of the live resources of one type with ids after `after`, in id order: a keyset page."""
    r = resources.c
    stmt = (select(r.rid, r.content).where(r.rtype == rtype, r.rid > after, r.deleted.is_(False))
            .order_by(r.rid).limit(limit))
    return [tuple(row) for row in conn.execute(stmt)]


def bulk_insert(conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence]) -> None:
    """Insert rows through the driver: COPY on PostgreSQL, executemany of tuples on SQLite. For hot
    paths and large loads, where per-row Core parameter processing costs more than the database work.
    Table and column names must be constants of the caller, never request data."""
    rows = list(rows)
    if not rows:
        return
    driver = conn.connection.driver_connection
    names = ", ".join(columns)
    if conn.dialect.name == "postgresql":
        with driver.cursor() as cur, cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    else:
        marks = ", ".join("?" for _ in columns)
        cur = driver.cursor()
        try:
            cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})", rows)
        finally:
            cur.close()


_HISTORY_COLUMNS = ("rtype", "rid", "version", "txid", "lu", "method", "deleted", "content")
_RESOURCE_COLUMNS = ("rtype", "rid", "version", "txid", "lu", "deleted", "content")


def chunks(items: list, size: int = _CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
