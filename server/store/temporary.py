"""Temporary tables that hold an intermediate row set with real statistics.

PostgreSQL must guess the size of a windowed or filtered sub-select; when two such sub-selects meet in a
join it guesses a few hundred rows each and picks nested loops, quadratic at 100,000 members. Materialised
into a temporary table with a primary key and ANALYZE-d, the same rows get hash or merge joins (and index
probes when they are few). The table is private to the connection.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from sqlalchemy import Column, Connection, MetaData, Select, Table, insert

from server.store.statistics import analyze_written


def temporary_table(name: str, rows: Select, key: tuple[str, ...] = ()) -> Table:
    """A temporary table shaped like the columns of `rows`; `key` names its primary key columns."""
    columns = (Column(c.name, c.type, primary_key=c.name in key) for c in rows.selected_columns)
    return Table(name, MetaData(), *columns, prefixes=["TEMPORARY"])


def fill(conn: Connection, table: Table, rows: Select) -> None:
    """Create `table` and insert `rows`, then give PostgreSQL its statistics."""
    table.create(conn)
    conn.execute(insert(table).from_select([c.name for c in table.c], rows))
    analyze_written(conn, table.name)


@contextmanager
def materialized(conn: Connection, name: str, rows: Select, key: tuple[str, ...] = ()) -> Iterator[Table]:
    """`rows` in a temporary table for the block's statements; dropped after it. A table left by an
    earlier failure on this pooled connection is dropped first (SQLite keeps temporary DDL outside the
    transaction)."""
    table = temporary_table(name, rows, key)
    table.drop(conn, checkfirst=True)
    fill(conn, table, rows)
    yield table
    table.drop(conn)
