"""Coverage facts kept at write time (issue 19): `alignment_coverages`, one row per current active Coverage
naming a Patient as beneficiary, with the raw values `facts.coverage_select` reads (the period bounds, the
dual status code, the NY HARP status code, the Medicaid aid category and the Medicare entitlement the risk
engine reads (OREC, long-term institutional), each as the index pivot took it),
and `alignment_coverage_codes`, that Coverage's plan class values and type codings (the product names).

`maintain` is the feature's IN_TRANSACTION hook, as `diagnoses.maintain` is: in the transaction that
writes Coverages, after their index rows, it rebuilds their rows from those index rows, set-based, so
they commit or roll back with the resource; without an id list (a reindexing of a Coverage parameter,
and the migration that created the tables, through a reindex request) for every Coverage.

Only raw codes are kept: which product, line of business or dual level a code means is mapping data,
read at evaluation time, so a new catalogue needs no rebuild. Nothing here depends on the evaluation date.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Collection, Mapping

from sqlalchemy import Connection, case, delete, exists, func, insert, literal, select

from server.alignment.diagnoses import Restrict, materialised_once, rebuild, restricted
from server.alignment.facts import EVERYONE, PLAN, TYPE, param_value, pivot
from server.alignment.index_keys import IndexKeys
from server.store.alignment_schema import alignment_coverage_codes, alignment_coverages
from server.store.schema import idx_date, idx_reference, idx_token

COVERAGE_FACT_COLUMNS = tuple(c.name for c in alignment_coverages.c)


def _coverage_rows(k: IndexKeys, own: Restrict) -> Any:
    """The rows of the active Coverages rebuilt, from their index rows."""
    t, d, r = idx_token, idx_date, idx_reference.c
    subjects = (select(r.rid, r.target_id.label("patient_id"))
                .where(r.rtype == "Coverage", *own(r.rid), r.h_param == k.coverage_beneficiary, r.target_type == "Patient")
                .cte("coverage_patients"))
    tokens = materialised_once(pivot(t, "coverage_tokens", "Coverage", subjects, EVERYONE, {
        "active": (k.coverage_status, func.max(param_value(k.coverage_status, t.c.code == "active", 1, t))),
        "dual_code": (k.coverage_dual_status, func.max(param_value(k.coverage_dual_status, None, t.c.code, t))),
        "harp_status": (k.coverage_harp_status, func.max(param_value(k.coverage_harp_status, None, t.c.code, t))),
        "aid_category": (k.coverage_aid_category, func.max(param_value(  # as rates.json spells it: trimmed, lower case
            k.coverage_aid_category, None, func.lower(func.trim(t.c.code)), t))),
        "orec": (k.coverage_orec, func.max(param_value(k.coverage_orec, None, t.c.code, t))),
        "institutional": (k.coverage_institutional, func.max(param_value(k.coverage_institutional, None, t.c.code, t))),
    }, sparse=True))
    period = materialised_once(pivot(d, "coverage_period", "Coverage", subjects, EVERYONE, {
        "lo": (k.coverage_period, func.min(d.c.lo)),
        "hi": (k.coverage_period, func.max(d.c.hi)),
    }, sparse=True))
    return (
        select(subjects.c.rid, subjects.c.patient_id, period.c.lo, period.c.hi, tokens.c.dual_code,
               tokens.c.harp_status, tokens.c.aid_category, tokens.c.orec, tokens.c.institutional)
        .select_from(subjects.join(tokens, tokens.c.rid == subjects.c.rid)
                     .outerjoin(period, period.c.rid == subjects.c.rid))
        .where(tokens.c.active == 1)
    )


def _code_rows(k: IndexKeys, own: Restrict) -> Any:
    """The plan class values and type codings of the Coverages rebuilt that have a row (read after it)."""
    t, a = idx_token.c, alignment_coverages.c
    return (
        select(t.rid, case((t.h_param == k.coverage_plan, literal(PLAN)), else_=literal(TYPE)), t.system, t.code)
        .where(t.rtype == "Coverage", *own(t.rid), t.h_param.in_([k.coverage_plan, k.coverage_type]),
               exists().where(a.rid == t.rid))
    )


@lru_cache(maxsize=None)
def _statements(every: bool) -> tuple[Any, ...]:
    """(delete, insert) of both tables for the Coverages bound as `IDS`, or for all of them."""
    k, own = IndexKeys.resolve(), restricted(every)
    codes = alignment_coverage_codes
    return (
        delete(alignment_coverages).where(*own(alignment_coverages.c.rid)),
        delete(codes).where(*own(codes.c.rid)),
        insert(alignment_coverages).from_select(list(COVERAGE_FACT_COLUMNS), _coverage_rows(k, own)),
        insert(codes).from_select([c.name for c in codes.c], _code_rows(k, own)),
    )


def maintain(conn: Connection, changed: Mapping[str, Collection[str] | None]) -> None:
    """The IN_TRANSACTION hook: rebuild the rows of the Coverages a write (or a reindexing) changed."""
    if "Coverage" in changed:
        rebuild(conn, changed["Coverage"], _statements)
