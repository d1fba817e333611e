"""Planner statistics kept fresh by the server itself, on PostgreSQL and SQLite.

The alignment statements join the search-index tables; PostgreSQL plans them from the statistics of
the last ANALYZE. While a population is loaded those tables grow from nothing to millions of rows,
and with statistics from when they were small the planner picks plans that scan them once per member
(minutes instead of a second). Autovacuum analyzes a table after 10% of it changed, but it may be off
or behind. So before evaluating, `analyze_grown` analyzes each table the evaluation reads once a
`growth` share of its rows changed since its last ANALYZE, per PostgreSQL's own counters
(`pg_stat_user_tables.n_mod_since_analyze`).

SQLite never analyzes by itself, and without `sqlite_stat1` rows its planner drives the per-member
statements from a whole index (every Condition's code) instead of the member's rows: one `$alignment`
read cost 30 ms on 2,000 members, 3 ms once analyzed. SQLite counts no changes, so the rows inserted
since (the highest rowid, which only grows) stand in for them, against the row count `sqlite_stat1` holds
from the last ANALYZE; each ANALYZE samples at most `_SQLITE_SAMPLE` rows per index (`analysis_limit`).
"""

from __future__ import annotations

from functools import cache
from typing import Iterable
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, TextClause, bindparam, text

_GROWN = text(
    "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname IN :tables "
    "AND n_mod_since_analyze > :floor + :growth * GREATEST(n_live_tup - n_mod_since_analyze, 0)"
).bindparams(bindparam("tables", expanding=True))


def analyze_grown(engine: Engine, tables: Iterable[str], growth: float = 0.2, floor: int = 1000) -> list[str]:
    """ANALYZE the tables (of the current schema) with over `floor` + `growth` × (rows at the last ANALYZE)
    rows changed since; returns their names. Each ANALYZE commits on its own: it samples a fixed number
    of rows, takes no lock that writes wait for, and its statistics help every connection at once."""
    if engine.dialect.name == "sqlite":
        return _analyze_grown_sqlite(engine, tables, growth, floor)
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        grown = list(conn.execute(_GROWN, {"tables": sorted(tables), "floor": floor, "growth": growth}).scalars())
        if grown:
            conn.rollback()  # end the check's transaction: each ANALYZE below then commits by itself
            conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in grown:
                conn.exec_driver_sql(f'ANALYZE "{table}"')
    return grown


def analyze_written(conn: Connection, table: str) -> None:
    """ANALYZE `table` inside the caller's transaction, after a bulk write the same transaction's next
    statements join: PostgreSQL's sample counts the transaction's own rows, so a 100,000-row load is no
    longer planned as the one row the stale statistics promise (a nested loop per row, quadratic)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f'ANALYZE "{table}"')


def plan_locally(conn: Connection, **settings: str) -> None:
    """Set PostgreSQL planner settings (`enable_nestloop="off"`, `jit="off"`, ...) for the rest of `conn`'s
    transaction only, as SET LOCAL does; nothing on SQLite, which has none. Each caller says which estimate
    misleads its statements and what that cost."""
    if conn.dialect.name == "postgresql" and settings:  # one statement, one round trip
        params = {}
        for i, (name, value) in enumerate(settings.items()):
            params[f"n{i}"], params[f"v{i}"] = name, value
        conn.execute(_set_local(len(settings)), params)


@cache
def _set_local(count: int) -> TextClause:
    return text("SELECT " + ", ".join(f"set_config(:n{i}, :v{i}, true)" for i in range(count)))


_SQLITE_SAMPLE = 1000
# Per engine: each table's highest rowid when this process last analyzed it. Rows deleted since do not
# lower the rowid, so after many replacements it stays above the row count `sqlite_stat1` holds.
_analyzed_at: "WeakKeyDictionary[Engine, dict[str, int]]" = WeakKeyDictionary()


def _analyze_grown_sqlite(engine: Engine, tables: Iterable[str], growth: float, floor: int) -> list[str]:
    seen = _analyzed_at.setdefault(engine, {})
    with engine.connect() as conn:
        existing = set(conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'table'").scalars())
        counted: dict[str, int] = {}
        if "sqlite_stat1" in existing:  # the first integer of `stat` is the table's row count
            counted = dict(conn.exec_driver_sql(
                "SELECT tbl, max(CAST(stat AS INTEGER)) FROM sqlite_stat1 GROUP BY tbl").all())
        highest = {table: conn.exec_driver_sql(f'SELECT coalesce(max(rowid), 0) FROM "{table}"').scalar_one()
                   for table in sorted(set(tables) & existing)}
    grown = [table for table, top in highest.items()
             if top - seen.get(table, counted.get(table, 0)) > floor + growth * counted.get(table, 0)]
    if grown:
        # A write transaction of its own (BEGIN IMMEDIATE, `server.store.db`): the check's read snapshot
        # above may be stale by now, and a stale snapshot cannot take the write lock ANALYZE needs.
        with engine.begin() as conn:
            conn.exec_driver_sql(f"PRAGMA analysis_limit = {_SQLITE_SAMPLE}")
            for table in grown:
                conn.exec_driver_sql(f'ANALYZE "{table}"')
        for table in grown:
            seen[table] = highest[table]
    return grown
