"""`analyze_grown` on a real PostgreSQL schema and a SQLite file: a table is analyzed once enough of it changed since its
last ANALYZE, and not again until it grows by the share given; the same on SQLite."""

from __future__ import annotations

import time

from sqlalchemy import Engine, text

from server.store.db import make_engine
from server.store.statistics import analyze_grown
from tests.support.servers import drop_schema, postgres_schema_url


def _insert(engine: Engine, rows: int) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO grows SELECT g FROM generate_series(1, :n) g"), {"n": rows})


def _changed_since_analyze(engine: Engine, expected: int) -> None:
    """Wait until PostgreSQL's statistics collector counts the rows changed (it reports with a delay)."""
    deadline = time.monotonic() + 30
    query = text("SELECT n_mod_since_analyze FROM pg_stat_user_tables "
                 "WHERE schemaname = current_schema() AND relname = 'grows'")
    while True:
        with engine.connect() as conn:
            seen = conn.execute(query).scalar_one_or_none()
        if seen is not None and seen >= expected:
            return
        assert time.monotonic() < deadline, f"the statistics collector reported {seen} changes, not {expected}"
        time.sleep(0.2)


def _last_analyze(engine: Engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT last_analyze FROM pg_stat_user_tables "
                                 "WHERE schemaname = current_schema() AND relname = 'grows'")).scalar_one()


def test_grown_tables_are_analyzed_once_per_growth_step():
    schema, url = postgres_schema_url()
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE grows (n integer)"))
        _insert(engine, 500)
        _changed_since_analyze(engine, 500)
        assert analyze_grown(engine, ["grows"]) == []  # below the floor of 1,000 changed rows
        _insert(engine, 9_500)
        _changed_since_analyze(engine, 10_000)
        assert analyze_grown(engine, ["grows", "not_a_table"]) == ["grows"]
        assert _last_analyze(engine) is not None
        _insert(engine, 2_000)  # 2,000 changed < 1,000 + 20% of 10,000
        _changed_since_analyze(engine, 2_000)
        assert analyze_grown(engine, ["grows"]) == []
        _insert(engine, 2_000)
        _changed_since_analyze(engine, 4_000)
        assert analyze_grown(engine, ["grows"]) == ["grows"]
    finally:
        engine.dispose()
        drop_schema(schema)


def test_sqlite_tables_are_analyzed_once_per_growth_step(tmp_path):
    """SQLite counts no changes: rows inserted since the last ANALYZE stand in for them."""
    engine = make_engine(f"sqlite:///{tmp_path / 'planfit.db'}")

    def insert(rows: int) -> None:
        with engine.begin() as conn:
            conn.execute(text("WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :n) "
                              "INSERT INTO grows SELECT n FROM g"), {"n": rows})

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE grows (n integer)"))
    insert(500)
    assert analyze_grown(engine, ["grows"]) == []  # below the floor of 1,000 new rows
    insert(9_500)
    assert analyze_grown(engine, ["grows", "not_a_table"]) == ["grows"]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT stat FROM sqlite_stat1 WHERE tbl = 'grows'")).scalar_one() == "10000"
    insert(2_000)  # 2,000 new < 1,000 + 20% of 10,000
    assert analyze_grown(engine, ["grows"]) == []
    insert(2_000)
    assert analyze_grown(engine, ["grows"]) == ["grows"]
    engine.dispose()
