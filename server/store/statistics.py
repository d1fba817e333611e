"""Planner statistics kept fresh by the server itself, on PostgreSQL.

The alignment statements join the search-index tables; PostgreSQL plans them from the statistics of
the last ANALYZE. While a population is loaded those tables grow from nothing to millions of rows,
and with statistics from when they were small the planner picks plans that scan them once per member
(minutes instead of a second). Autovacuum analyzes a table after 10% of it changed, but it may be off
or behind. So before evaluating, `analyze_grown` analyzes each table the evaluation reads once a
`growth` share of its rows changed since its last ANALYZE, per PostgreSQL's own counters
(`pg_stat_user_tables.n_mod_since_analyze`). SQLite plans without table statistics of this kind.
"""

from __future__ import annotations

from typing import Iterable

from sqlalchemy import Connection, Engine, bindparam, text

_GROWN = text(
    "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() AND relname IN :tables "
    "AND n_mod_since_analyze > :floor + :growth * GREATEST(n_live_tup - n_mod_since_analyze, 0)"
).bindparams(bindparam("tables", expanding=True))


def analyze_grown(engine: Engine, tables: Iterable[str], growth: float = 0.2, floor: int = 1000) -> list[str]:
    """ANALYZE the tables (of the current schema) with over `floor` + `growth` × (rows at the last ANALYZE)
    rows changed since; returns their names. Each ANALYZE commits on its own: it samples a fixed number
    of rows, takes no lock that writes wait for, and its statistics help every connection at once."""
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
