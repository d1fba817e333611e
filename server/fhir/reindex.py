"""Building index rows for search parameters that were added after resources were stored.

Migrations and `planfit reindex` only record requests (`reindex_request`); this module carries them
out with the live parameter definitions, the ones new writes use, so rebuilt and newly written rows
are the same. Like HAPI's `$reindex`: a parameter's rows of one resource type are deleted and
extracted anew from each current version, so running it twice never doubles a row.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import orjson
from sqlalchemy import Connection, Engine, delete, insert, select, text

from server.fhir import searchparams
from server.store.resources import Derivation, current_contents, delete_parameter_rows, derive, insert_index_rows
from server.store.schema import reindex_request

_PAGE = 1000
# Any constant works; the same in every PlanFit process sharing a database.
_REINDEX_LOCK_KEY = 0x706C616E72656978


def request(engine: Engine, parameters: dict[str, list[str]]) -> None:
    """Ask for these parameters (resource type → codes) to be indexed anew; unknown ones are refused."""
    unknown = [f"{rtype}.{code}" for rtype, codes in parameters.items() for code in codes
               if searchparams.lookup(rtype, code) is None]
    if unknown:
        raise ValueError(f"unknown search parameters: {', '.join(sorted(unknown))}")
    with engine.begin() as conn:
        present = set(conn.execute(select(reindex_request.c.rtype, reindex_request.c.code)).tuples())
        rows = [{"rtype": rtype, "code": code} for rtype, codes in parameters.items() for code in codes
                if (rtype, code) not in present]
        if rows:
            conn.execute(insert(reindex_request), rows)


def run_requested(engine: Engine, derivations: Sequence[Derivation] = ()) -> int:
    """Carry out every pending request in one transaction; the number of resources reindexed. The
    `derivations` (tables derived from index rows) are rebuilt for every resource of the types reindexed.

    Several servers may start at once: on PostgreSQL an advisory lock lets one do the work while the
    others wait and then find nothing left; SQLite's single writer does the same by itself.
    """
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _REINDEX_LOCK_KEY})
        pending: dict[str, list[str]] = defaultdict(list)
        for rtype, code in conn.execute(select(reindex_request.c.rtype, reindex_request.c.code)):
            if searchparams.lookup(rtype, code) is not None:  # a parameter since removed has nothing to build
                pending[rtype].append(code)
        done = sum(_reindex_type(conn, rtype, codes) for rtype, codes in pending.items())
        if pending:
            derive(conn, derivations, dict.fromkeys(pending))
        conn.execute(delete(reindex_request))
    return done


def _reindex_type(conn: Connection, rtype: str, codes: list[str]) -> int:
    delete_parameter_rows(conn, rtype, [searchparams.param_hash(rtype, code) for code in codes])
    count, after = 0, ""
    while page := current_contents(conn, rtype, after, _PAGE):
        insert_index_rows(conn, [(rtype, rid, searchparams.index_rows(orjson.loads(content), codes))
                                 for rid, content in page])
        count += len(page)
        after = page[-1][0]
    return count
