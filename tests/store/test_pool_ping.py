"""The PostgreSQL pool pings a connection only when it sat idle: one returned a moment ago goes straight
to its statement (no round trip per request), one idle past `_PING_AFTER_IDLE_S` is pinged, and one the
database dropped meanwhile is replaced before the caller sees it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy import Engine, text

from server.store import db
from tests.support.servers import PG_ADMIN_DSN, drop_schema, postgres_schema_url


@pytest.fixture
def engine() -> Iterator[Engine]:
    schema, url = postgres_schema_url()
    made = db.make_engine(url, pool_size=1)
    try:
        yield made
    finally:
        made.dispose()
        drop_schema(schema)


MARKED = "SELECT pg_backend_pid() /* pool-ping-marker */"


def _backend(engine: Engine) -> int:
    with db.reading(engine) as conn:  # autocommit: no ROLLBACK follows the statement
        return conn.execute(text(MARKED)).scalar_one()


def _last_statement(pid: int) -> str:
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        return admin.execute(
            "SELECT query FROM pg_stat_activity WHERE pid = %s", (pid,)
        ).fetchone()[0]


def _idle_past_threshold() -> None:
    time.sleep(db._PING_AFTER_IDLE_S + 0.2)


def test_recently_returned_connection_is_not_pinged_an_idle_one_is(engine):
    pid = _backend(engine)
    with engine.connect():
        assert _last_statement(pid) == MARKED  # checked out again at once: no ping sent
    _idle_past_threshold()
    with engine.connect():
        assert _last_statement(pid) != MARKED  # the ping ran on it at checkout


def test_connection_dropped_while_idle_is_replaced_before_use(engine):
    pid = _backend(engine)
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        assert admin.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone()[0]
    _idle_past_threshold()
    assert _backend(engine) != pid  # the ping found it dead: a new connection answered, no error
