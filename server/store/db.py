"""Engine creation and schema migration for SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, RootTransaction, create_engine, event, exc, text

log = logging.getLogger("planfit")

_MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every PlanFit process sharing a database.
_MIGRATION_LOCK_KEY = 0x706C616E666974
# The execution option that makes a SQLite transaction take the write lock at BEGIN (see `_SqliteEngine`).
_WRITES = "planfit_writes"
_PING_AFTER_IDLE_S = 1.0
_RETURNED = "planfit_returned"  # when the connection went back to the pool (time.monotonic())


def normalise_url(url: str) -> str:
    """Accept the plain `postgresql://` spelling and route it to psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str, sqlite_lock_wait_seconds: int = 60, pool_size: int = 40) -> Engine:
    """The engine for `url`. On SQLite a write waits up to `sqlite_lock_wait_seconds` for another
    writer (of this or another process) to commit; past that it raises `OperationalError`, which
    `is_lock_timeout` recognises. On PostgreSQL the pool keeps up to `pool_size` connections
    (`PLANFIT_DATABASE_POOL_SIZE`): were it smaller than the number of threads using connections at once,
    each return beyond it would close a connection that a following request opens again, a new backend
    each time."""
    url = normalise_url(url)
    # hide_parameters: a logged database error never carries the statement's values (PHI).
    if url.startswith("sqlite"):
        made = create_engine(url, connect_args={"check_same_thread": False, "timeout": sqlite_lock_wait_seconds},
                             hide_parameters=True)
        # The same pool, dialect and URL (the dialect's first-connect set-up listens on the pool), in the
        # engine class whose `begin()` writes.
        engine = _SqliteEngine(made.pool, made.dialect, made.url, hide_parameters=True)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
        return engine
    engine = create_engine(url, pool_size=pool_size, max_overflow=20, hide_parameters=True)
    _ping_idle_connections(engine)
    return engine


def _ping_idle_connections(engine: Engine) -> None:
    """SQLAlchemy's pre-ping, for a connection that sat in the pool `_PING_AFTER_IDLE_S` or longer: one that
    went back less than that ago worked then. Pinging at every checkout cost a round trip per request, about
    half of the worker thread's CPU of a `$evaluate-measure` (BENCHMARKS.md). A connection the database
    dropped within that second fails its statement instead, and SQLAlchemy then discards the whole pool, as
    after a failed ping. HikariCP makes the same trade (`aliveBypassWindowMs`, 500 ms)."""

    @event.listens_for(engine, "checkin")
    def note_return(_dbapi_connection, record) -> None:
        record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def ping_if_idle(dbapi_connection, record, _proxy) -> None:
        returned = record.info.get(_RETURNED)
        if returned is None or time.monotonic() - returned < _PING_AFTER_IDLE_S:
            return  # just connected (SQLAlchemy's pre-ping skips those too) or used a moment ago
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as err:
            if not engine.dialect.is_disconnect(err, dbapi_connection, None):
                raise
            raise exc.InvalidatePoolError() from err  # as a failed pre-ping: a new connection, the others discarded


class _SqliteEngine(Engine):
    """`begin()` is how PlanFit opens a transaction that writes; on SQLite it starts with BEGIN IMMEDIATE.

    A deferred BEGIN reads from a snapshot and asks for the write lock only at its first write. If another
    connection committed since the snapshot, SQLite cannot upgrade it and fails at once with SQLITE_BUSY
    ("database is locked"), without waiting the busy timeout: a post-commit ANALYZE did exactly that while
    a second server process committed a bundle, and the client got 500. BEGIN IMMEDIATE takes the write
    lock first (waiting the busy timeout like any writer), so the snapshot is never stale. Reads
    (`connect()`) stay deferred: in WAL mode they never wait for a writer.
    """

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        with self.connect() as conn:
            with begin_writing(conn):
                yield conn


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads that need no snapshot shared by several statements. On PostgreSQL it is in
    autocommit: each statement is one round trip, with no BEGIN before it and no ROLLBACK after (a statement
    reads one snapshot anyway, and READ COMMITTED gave each statement its own). SQLite's transactions are
    begun by `_sqlite_on_begin`, so there it is a plain connection."""
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


def begin_writing(conn: Connection) -> RootTransaction:
    """Begin `conn`'s transaction as one that writes (on SQLite BEGIN IMMEDIATE, see `_SqliteEngine`), for a
    connection from `connect()` whose transaction writes, even when it rolls back at the end."""
    conn.execution_options(**{_WRITES: True})
    return conn.begin()


def is_lock_timeout(error: BaseException) -> bool:
    """Whether `error` is SQLite's write lock not had within the busy timeout: transient, worth a retry."""
    orig = getattr(error, "orig", None) if isinstance(error, exc.OperationalError) else None
    return isinstance(orig, sqlite3.OperationalError) and (
        getattr(orig, "sqlite_errorcode", 0) & 0xFF) == sqlite3.SQLITE_BUSY


def _sqlite_on_connect(dbapi_conn, _record) -> None:
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's implicit BEGIN is deferred
    # and unreliable); WAL lets readers proceed while one writer commits. The busy timeout comes
    # from the driver's `timeout` argument.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _sqlite_on_begin(conn: Connection) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITES) else "BEGIN")


def _alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    return cfg


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest migration; safe when several servers start at once."""
    cfg = _alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK_KEY})
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "heads")
        if conn.dialect.name == "postgresql":
            _keep_txids_ahead(conn)


# Restored into a cluster whose transaction ids are behind the stored txids, new versions would number
# before old ones: raise the offset (`txids.begin_versions`) so the next transaction id is past them.
# Under the migration lock; in a database that has not moved clusters it never matches.
_RAISE_TXID_OFFSET = text(
    "UPDATE txid_offset SET value = stored.newest - pg_current_xact_id()::text::bigint + 1"
    " FROM (SELECT max(txid) AS newest FROM resource_history) AS stored"
    " WHERE txid_offset.id = 1 AND stored.newest >= pg_current_xact_id()::text::bigint + txid_offset.value"
    " RETURNING txid_offset.value")


def _keep_txids_ahead(conn: Connection) -> None:
    raised = conn.execute(_RAISE_TXID_OFFSET).scalar()
    if raised is not None:
        log.warning("stored txids are ahead of this cluster's transaction ids: versions now number from "
                    "transaction id + %d", raised)


def schema_is_current(engine: Engine) -> bool:
    heads = set(ScriptDirectory.from_config(_alembic_config()).get_heads())
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads()) == heads
