"""Claim-line facts kept at write time (issue 19): `alignment_claim_lines`, one row per distinct line code
(`service`: productOrService, revenue) of the current active Claims and ExplanationOfBenefits that name a
Patient and carry a service date, with the claim's earliest and latest service dates. The HARP risk
factors (`risk_factors.py`) read these narrow rows instead of the claims' search-index rows.

`maintain` is the feature's IN_TRANSACTION hook, as `coverage_facts.maintain` is: in the transaction that
writes claims, after their index rows, it rebuilds their rows, set-based, so they commit or roll back with
the resource; without an id list (a reindexing of a claim parameter, and the migration that created the
table, through a reindex request) for every claim of the type.

Only raw codes are kept: which codes make a risk factor is mapping data, read at evaluation time. Nothing
here depends on the evaluation date.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from functools import cache, partial
from typing import Any

from sqlalchemy import Connection, delete, func, insert, literal, select

from server.alignment.diagnoses import Restrict, materialised_once, rebuild, restricted
from server.alignment.facts import EVERYONE, param_value, pivot
from server.alignment.index_keys import CLAIM_TYPES, ClaimKeys, IndexKeys
from server.store.alignment_schema import alignment_claim_lines
from server.store.schema import idx_date, idx_reference, idx_token


def _line_rows(k: ClaimKeys, own: Restrict) -> Any:
    """The rows of the claims of one type rebuilt, from their index rows: active, naming a Patient, dated."""
    rt, name = k.rtype, k.rtype.lower()
    t, d, r = idx_token, idx_date, idx_reference.c
    subjects = (select(r.rid, r.target_id.label("patient_id"))
                .where(r.rtype == rt, *own(r.rid), r.h_param == k.patient, r.target_type == "Patient")
                .cte(f"{name}_line_patients"))
    active = materialised_once(pivot(t, f"{name}_line_status", rt, subjects, EVERYONE, {
        "active": (k.status, func.max(param_value(k.status, t.c.code == "active", 1, t))),
    }, sparse=True))
    served = materialised_once(pivot(d, f"{name}_line_served", rt, subjects, EVERYONE, {
        "lo": (k.service_date, func.min(d.c.lo)),
        "hi": (k.service_date, func.max(d.c.hi)),
    }, sparse=True))
    codes = (select(t.c.rid, t.c.code).distinct()
             .where(t.c.rtype == rt, *own(t.c.rid), t.c.h_param == k.service, t.c.code.is_not(None))
             .cte(f"{name}_line_codes"))
    return (
        select(literal(rt), codes.c.rid, subjects.c.patient_id, codes.c.code, served.c.lo, served.c.hi)
        .select_from(codes.join(subjects, subjects.c.rid == codes.c.rid)
                     .join(active, active.c.rid == codes.c.rid)
                     .join(served, served.c.rid == codes.c.rid))
        .where(active.c.active == 1, served.c.lo.is_not(None))
    )


@cache
def _statements(rtype: str, every: bool) -> tuple[Any, Any]:
    """(delete, insert) of the rows of the claims of one type bound as `IDS`, or of all of them."""
    keys, own = {c.rtype: c for c in IndexKeys.resolve().claims}[rtype], restricted(every)
    a = alignment_claim_lines.c
    return (delete(alignment_claim_lines).where(a.rtype == rtype, *own(a.rid)),
            insert(alignment_claim_lines).from_select([c.name for c in alignment_claim_lines.c], _line_rows(keys, own)))


def maintain(conn: Connection, changed: Mapping[str, Collection[str] | None]) -> None:
    """The IN_TRANSACTION hook: rebuild the rows of the claims a write (or a reindexing) changed."""
    for rtype in CLAIM_TYPES:
        if rtype in changed:
            rebuild(conn, changed[rtype], partial(_statements, rtype))
