"""Transactional resource store: versions, history and index rows written together.

Writes run side by side; no lock is held through a transaction's work (issue 19). On PostgreSQL:
- every write transaction starts by taking the WRITER advisory lock shared (it marks writers in flight)
  and then, under the ORDER advisory lock held for that one statement, its `txid` (its transaction id)
  and `lastUpdated` (the database clock): txid order and lastUpdated order agree;
- a reader of the log (`_history`, `_since`, the alignment watermark, Bulk export) stops at
  `latest_txid`, just below the oldest writer still in flight, so a version that commits later with a
  smaller txid is never skipped;
- a transaction claims the resources it reads and the conditional queries it answers (`claim`): two
  transactions claiming one key take turns on a unique index, so a conditional create cannot race and no
  update is lost; a transaction that would write a version older (by txid) than the current one fails
  with `WriteConflict` and is run again (`Store.write`), as are deadlocks between claims.
SQLite has one writer at a time anyway: every write transaction increments the `write_counter` row
under its BEGIN IMMEDIATE lock, and `latest_txid` is that counter. The txids, the watermark and the retry
live in `txids.py`.
Parsing, validation and index extraction happen before the transaction.
"""

from __future__ import annotations

from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Collection, Iterable, Iterator, Mapping, Sequence, TypeVar

from sqlalchemy import Connection, Engine, Select, and_, bindparam, delete, func, or_, select, text, tuple_, update

from server.store.db import begin_writing
from server.store.hashing import h64
from server.store.schema import (
    idx_date,
    idx_number,
    idx_reference,
    idx_string,
    idx_token,
    resource_history,
    resources,
)
from server.store.txids import WriteConflict, begin_versions, latest_txid, retried

T = TypeVar("T")

_INDEX_COLUMNS = {
    "tokens": (idx_token, ("h_param", "h_value", "h_sys_value", "h_sys", "system", "code")),
    "strings": (idx_string, ("h_param", "value_norm", "value_exact")),
    "dates": (idx_date, ("h_param", "lo", "hi")),
    "numbers": (idx_number, ("h_param", "value")),
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
        after: tuple[int, str, str] | None,
        limit: int,
    ) -> list[StoredVersion]:
        """Versions newest first, up to the watermark (`latest_txid`); `after`, the (txid, type, id) of the
        last version of the previous page, pages backwards through the log. A transaction writes one version
        of a resource, and never one older (by txid) than the current one, so txid order is each resource's
        version order, and (txid, type, id) orders the many versions one transaction writes (a bundle's)."""
        h = resource_history.c
        with self.engine.connect() as conn:
            stmt = _history_of(select(h.rtype, h.rid, h.version, h.txid, h.lu, h.deleted, h.content, h.method),
                               rtype, rid, since_us, _history_cap(conn, rid))
            if after is not None:
                txid, after_type, after_id = after
                later = tuple_(h.rtype, h.rid) > tuple_(after_type, after_id)
                stmt = stmt.where(or_(h.txid < txid, and_(h.txid == txid, later)))
            stmt = stmt.order_by(h.txid.desc(), h.rtype, h.rid).limit(limit)
            return [StoredVersion(**row._mapping) for row in conn.execute(stmt)]

    def history_count(self, rtype: str | None, rid: str | None, since_us: int | None) -> int:
        with self.engine.connect() as conn:
            stmt = _history_of(select(func.count()).select_from(resource_history), rtype, rid, since_us,
                               _history_cap(conn, rid))
            return conn.execute(stmt).scalar_one()

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

    def write(self, work: "Callable[[WriteTransaction], T]") -> T:
        """`work` in a write transaction, run again from the start (a few times at most) when it failed
        on a deadlock, a serialization failure or a `WriteConflict`: for work whose only effects are on
        the transaction and on objects it makes afresh on each run."""
        def attempt() -> T:
            with self.begin_write() as tx:
                return work(tx)
        return retried(attempt)


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
        self.claimed: set[int] = set()

    def __enter__(self) -> "WriteTransaction":
        self.conn = self.store.engine.connect()
        try:
            begin_writing(self.conn)
            self.txid, self.now_us = begin_versions(self.conn)
            if self.conn.dialect.name == "postgresql":
                # A parallel plan's worker start-up (~10 ms) costs more than the lookups of a few index rows
                # a write makes, and holds its claims that much longer.
                self.conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
        except BaseException:
            self.conn.close()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        assert self.conn is not None
        try:
            if exc_type is None:
                self.flush()
                self._release_claims()
                self.conn.commit()
            else:
                self.conn.rollback()
        finally:
            self.conn.close()

    def claim(self, keys: Iterable[str]) -> None:
        """Claim these keys (a resource's "type/id", a conditional query's `claim_key`) until commit: a
        concurrent transaction claiming one of them waits until this one ends, then sees what it wrote.
        Keys go in sorted order, so two transactions claiming overlapping sets at once do not deadlock
        (claims made in several calls can; `Store.write` runs the loser again). A no-op on SQLite."""
        assert self.conn is not None
        if self.conn.dialect.name != "postgresql":
            return
        new = sorted({h64("claim", key) for key in keys} - self.claimed)
        if new:
            self.conn.execute(_CLAIM, {"claims": new})
            self.claimed.update(new)

    def _release_claims(self) -> None:
        """Delete the claim rows before the commit, so a waiting claim of the same key then succeeds."""
        if self.claimed:
            self.conn.execute(_RELEASE, {"claims": sorted(self.claimed)})
            self.claimed.clear()

    def current(self, keys: Iterable[tuple[str, str]]) -> dict[tuple[str, str], StoredVersion]:
        """Current rows (deleted ones included) as seen inside this transaction, claimed first (so the
        versions this transaction writes from them cannot race another writer's). A row a later-started
        transaction wrote (a larger txid) raises `WriteConflict`: versions written from it would be
        older in the log than the one they follow."""
        keys = [k for k in dict.fromkeys(keys)]
        self.claim(f"{rtype}/{rid}" for rtype, rid in keys)
        found: dict[tuple[str, str], StoredVersion] = {}
        r = resources.c
        for chunk in chunks(keys):
            stmt = select(r.rtype, r.rid, r.version, r.txid, r.lu, r.deleted, r.content).where(
                tuple_(r.rtype, r.rid).in_(chunk)
            )
            for row in self.conn.execute(stmt):
                if row.txid > self.txid:
                    raise WriteConflict(f"{row.rtype}/{row.rid} was written by a later transaction")
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


def _history_cap(conn: Connection, rid: str | None) -> int | None:
    """The txid type and system history stop at (`latest_txid`). One resource's history needs none: its
    writers take turns (claims), each with a larger txid than the last, so none commits behind a page."""
    return latest_txid(conn) if rid is None else None


def _history_of(stmt: Select, rtype: str | None, rid: str | None, since_us: int | None,
                through_txid: int | None) -> Select:
    """`stmt` over the versions of a type, of one resource, and/or since an instant (history's filters), up
    to a txid."""
    h = resource_history.c
    if through_txid is not None:
        stmt = stmt.where(h.txid <= through_txid)
    if rtype is not None:
        stmt = stmt.where(h.rtype == rtype)
    if rid is not None:
        stmt = stmt.where(h.rid == rid)
    if since_us is not None:
        stmt = stmt.where(h.lu >= since_us)
    return stmt


_CLAIM = text("INSERT INTO write_claims (claim) SELECT unnest(CAST(:claims AS bigint[]))")
_RELEASE = text("DELETE FROM write_claims WHERE claim = ANY(CAST(:claims AS bigint[]))")


def append_versions(conn: Connection, rtype: str, versions: Sequence[tuple[str, int]],
                    render: Callable[[str, int, int], bytes], stamp: tuple[int, int]) -> None:
    """New versions of existing resources, written on `conn`'s transaction as one write of the log.

    For a feature that derives a resource inside a larger transaction of its own (a cohort Group's
    header after a membership change) rather than through `WriteTransaction`. `stamp` is what
    `begin_versions` gave at that transaction's start. `render(id, version, lastUpdated µs)` gives each
    version's content. Index rows stay the caller's. A resource whose current version has a larger txid
    raises `WriteConflict` (the caller runs the transaction again).
    """
    txid, now = stamp
    r = resources.c
    ids = [rid for rid, _version in versions]
    if conn.execute(select(func.count()).where(r.rtype == rtype, r.rid.in_(ids), r.txid > txid)).scalar_one():
        raise WriteConflict(f"a {rtype} was written by a later transaction")
    rows = [(rtype, rid, version, txid, now, "PUT", False, render(rid, version, now)) for rid, version in versions]
    bulk_insert(conn, resource_history.name, _HISTORY_COLUMNS, rows)
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
