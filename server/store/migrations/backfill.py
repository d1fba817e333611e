"""Index rows for search parameters added after resources were stored, used by the migrations that add
them. It reads the parameter definitions of the code that runs it, which is what the server writing new
rows uses as well, so backfilled and newly written rows are the same."""

from __future__ import annotations

from typing import Iterable

import orjson
import sqlalchemy as sa

from server.fhir import searchparams

_CHUNK = 1000
_INDEX_TABLES = {
    "tokens": ("idx_token", ("h_param", "h_value", "h_sys_value", "h_sys", "system", "code")),
    "strings": ("idx_string", ("h_param", "value_norm", "value_exact")),
    "dates": ("idx_date", ("h_param", "lo", "hi")),
    "references": ("idx_reference", ("h_param", "target_type", "target_id", "target_url")),
}


def backfill(conn: sa.Connection, parameters: dict[str, Iterable[str]]) -> None:
    """Index rows of the given parameters (resource type → codes) for the current versions already
    stored, chunk by chunk."""
    resources = sa.table("resources", sa.column("rtype"), sa.column("rid"), sa.column("deleted"), sa.column("content"))
    for rtype, codes in parameters.items():
        codes = list(codes)
        after = ""
        while True:
            rows = conn.execute(
                sa.select(resources.c.rid, resources.c.content)
                .where(resources.c.rtype == rtype, resources.c.rid > after, resources.c.deleted.is_(False))
                .order_by(resources.c.rid)
                .limit(_CHUNK)
            ).all()
            if not rows:
                break
            indexed = [(row.rid, searchparams.index_rows(orjson.loads(row.content), codes)) for row in rows]
            _insert_rows(conn, rtype, indexed)
            after = rows[-1].rid


def _insert_rows(conn: sa.Connection, rtype: str, indexed: list) -> None:
    for attr, (table, columns) in _INDEX_TABLES.items():
        values = [
            dict(zip(("rtype", "rid", *columns), (rtype, rid, *row)))
            for rid, rows in indexed
            for row in getattr(rows, attr)
        ]
        if values:
            conn.execute(sa.table(table, *(sa.column(c) for c in ("rtype", "rid", *columns))).insert(), values)
