"""Requests to (re)index search parameters, as migrations record them.

A migration that adds search parameters cannot extract their index rows itself: that needs the live
parameter definitions (`server/fhir/searchparams.py`), and a migration importing live code would
change meaning whenever that code changes. It records the (resource type, parameter code) pairs
here instead; the server indexes them from the stored resources at its next start
(`server/fhir/reindex.py`), and `planfit reindex` asks for the same on demand.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import sqlalchemy as sa

# Frozen here, not imported from `server.store.schema`: a migration's tables are the ones of its time.
_metadata = sa.MetaData()
reindex_request = sa.Table(
    "reindex_request",
    _metadata,
    sa.Column("rtype", sa.String(64), primary_key=True),
    sa.Column("code", sa.String(64), primary_key=True),
)


def request_reindex(conn: sa.Connection, parameters: Mapping[str, Iterable[str]]) -> None:
    """Ask for index rows of these parameters (resource type → codes) for every stored resource."""
    reindex_request.create(conn, checkfirst=True)
    wanted = {(rtype, code) for rtype, codes in parameters.items() for code in codes}
    present = set(conn.execute(sa.select(reindex_request.c.rtype, reindex_request.c.code)).tuples())
    rows = [{"rtype": rtype, "code": code} for rtype, code in sorted(wanted - present)]
    if rows:
        conn.execute(reindex_request.insert(), rows)
