"""Diagnosis facts kept at write time (issue 19): `alignment_diagnoses`, one row per diagnosis coding of
the current version of each Condition, Claim and ExplanationOfBenefit, with what the evidence statement
grades it by (`facts.evidence_select`): the source kind, the dates, the verification and clinical status
flags and the problem-list flag of a Condition, the status, created date and service dates of a claim.

`maintain` is the feature's IN_TRANSACTION hook: in the transaction that writes resources, after their
index rows, it rebuilds the rows of the resources written from those index rows, with set-based
statements, so the rows commit or roll back with the resource. Facts taken from other resources are
rebuilt when those change too: a Condition's last-affirmed date reads the Encounter it cites, and a
claim's `diagnosisReference` the cited Condition's codes. For every resource of a type (the reindexing
of a parameter, and the migration that created the table, through a reindex request) the same
statements run without an id list.

Nothing here depends on the evaluation date: the window and the grading stay in the evidence statement.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Callable, Collection, Mapping, Sequence

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    null,
    select,
    union_all,
)

from server.alignment.facts import EVERYONE, flag, later_of, param_value, pivot
from server.alignment.index_keys import (
    INACTIVE_CLINICAL,
    PROBLEM_LIST,
    SUSPECT_VERIFICATION,
    WITHDRAWN_VERIFICATION,
    ClaimKeys,
    IndexKeys,
)
from server.fhir.context import PATIENT_REPORTED
from server.fhir.versions import SOURCE_KIND_SYSTEM
from server.store.alignment_schema import alignment_diagnoses
from server.store.resources import chunks
from server.store.schema import idx_date, idx_reference, idx_token

IDS = "diagnosis_ids"
DIAGNOSIS_COLUMNS = tuple(c.name for c in alignment_diagnoses.c)
Restrict = Callable[[Any], list[ColumnElement[bool]]]  # the rows of the resources rebuilt, by id column


def materialised_once(cte: Any) -> Any:
    """A CTE PostgreSQL computes once: inlined, its few grouped rows are estimated at one, and a nested loop
    then groups them again for every coding (a 300-Condition bundle's insert took 108-191 ms, 2026-12-04)."""
    return cte.prefix_with("MATERIALIZED", dialect="postgresql")


@lru_cache(maxsize=1)
def _keys() -> IndexKeys:
    return IndexKeys.resolve()


def _subjects(rtype: str, h_param: int, own: Restrict) -> Any:
    """(rid, patient_id) of the resources rebuilt whose patient reference names a Patient."""
    r = idx_reference.c
    return (select(r.rid, r.target_id.label("patient_id"))
            .where(r.rtype == rtype, *own(r.rid), r.h_param == h_param, r.target_type == "Patient")
            .cte(f"{rtype.lower()}_patients"))


def _condition_rows(k: IndexKeys, own: Restrict) -> Select:
    t, d = idx_token, idx_date
    subjects = _subjects("Condition", k.condition_patient, own)
    codings = (select(t.c.rid, t.c.h_sys_value, t.c.system, t.c.code)
               .where(t.c.rtype == "Condition", *own(t.c.rid), t.c.h_param == k.condition_code).cte("condition_codings"))
    problem_system, problem_code = PROBLEM_LIST
    states = materialised_once(pivot(t, "condition_states", "Condition", subjects, EVERYONE, {
        "withdrawn": (k.condition_verification, func.max(
            param_value(k.condition_verification, t.c.code.in_(WITHDRAWN_VERIFICATION), 1, t))),
        "uncertain": (k.condition_verification, func.max(
            param_value(k.condition_verification, t.c.code.in_(SUSPECT_VERIFICATION), 1, t))),
        "inactive": (k.condition_clinical, func.max(param_value(k.condition_clinical, t.c.code.in_(INACTIVE_CLINICAL), 1, t))),
        "problem_list": (k.condition_category, func.max(param_value(
            k.condition_category, and_(t.c.system == problem_system, t.c.code == problem_code), 1, t))),
        "claims": (k.condition_tag, func.max(
            param_value(k.condition_tag, and_(t.c.system == SOURCE_KIND_SYSTEM, t.c.code == "claims"), 1, t))),
        "reported": (k.condition_tag, func.max(param_value(
            k.condition_tag, and_(t.c.system == SOURCE_KIND_SYSTEM, t.c.code == PATIENT_REPORTED), 1, t))),
    }, sparse=True))
    dates = materialised_once(pivot(d, "condition_dates", "Condition", subjects, EVERYONE, {
        "recorded": (k.condition_recorded, func.min(param_value(k.condition_recorded, None, d.c.lo, d))),
        "onset": (k.condition_onset, func.min(param_value(k.condition_onset, None, d.c.lo, d))),
        "abated": (k.condition_abatement, func.max(param_value(k.condition_abatement, None, d.c.hi, d))),
        "asserted": (k.condition_asserted, func.max(param_value(k.condition_asserted, None, d.c.lo, d))),
    }, sparse=True))
    r, e = idx_reference.alias("condition_encounter"), idx_date.alias("encounter_period")
    encounters = materialised_once(  # the latest day of the Encounter a Condition cites
        select(r.c.rid, func.max(e.c.lo).label("seen"))
        .select_from(r.join(e, and_(e.c.rtype == "Encounter", e.c.rid == r.c.target_id, e.c.h_param == k.encounter_date)))
        .where(r.c.rtype == "Condition", *own(r.c.rid), r.c.h_param == k.condition_encounter,
               r.c.target_type == "Encounter")
        .group_by(r.c.rid)
        .cte("condition_encounters")
    )

    def state(name: str) -> ColumnElement[bool]:
        return flag(func.coalesce(states.c[name], 0) == 1)

    return (
        select(
            literal("Condition"), codings.c.rid, subjects.c.patient_id, codings.c.h_sys_value, codings.c.system,
            codings.c.code,
            case((states.c.claims == 1, literal("claims")), (states.c.reported == 1, literal(PATIENT_REPORTED)),
                 else_=literal("clinical")),
            state("reported"),
            dates.c.recorded, dates.c.onset, dates.c.abated,
            later_of(later_of(dates.c.recorded, dates.c.onset), later_of(dates.c.asserted, encounters.c.seen)),
            null(), null(),
            state("withdrawn"), state("uncertain"), state("inactive"), state("problem_list"),
            null(),
        )
        .select_from(
            codings.join(subjects, subjects.c.rid == codings.c.rid)
            .outerjoin(states, states.c.rid == codings.c.rid)
            .outerjoin(dates, dates.c.rid == codings.c.rid)
            .outerjoin(encounters, encounters.c.rid == codings.c.rid)
        )
    )


def _claim_rows(k: ClaimKeys, condition_code: int, own: Restrict) -> Select:
    """A claim's diagnoses, coded or by `diagnosisReference` (the cited Condition's codings), each with
    every distinct service date of the claim (one row without when it has none)."""
    rt, name = k.rtype, k.rtype.lower()
    t, d, s = idx_token, idx_date, idx_token.alias(f"{name}_status_token")
    subjects = _subjects(rt, k.patient, own)
    coded = select(t.c.rid, t.c.h_sys_value, t.c.system, t.c.code).where(t.c.rtype == rt, *own(t.c.rid),
                                                                        t.c.h_param == k.diagnosis)
    ref, cited = idx_reference.alias(f"{name}_cites"), idx_token.alias(f"{name}_cited_code")
    by_reference = (
        select(ref.c.rid, cited.c.h_sys_value, cited.c.system, cited.c.code)
        .select_from(ref.join(cited, and_(cited.c.rtype == "Condition", cited.c.rid == ref.c.target_id,
                                          cited.c.h_param == condition_code)))
        .where(ref.c.rtype == rt, *own(ref.c.rid), ref.c.h_param == k.diagnosis_reference,
               ref.c.target_type == "Condition")
    )
    diagnoses = union_all(coded, by_reference).cte(f"{name}_diagnoses")
    active = materialised_once(select(s.c.rid, func.max(case((s.c.code == "active", 1), else_=0)).label("active"))
              .where(s.c.rtype == rt, *own(s.c.rid), s.c.h_param == k.status).group_by(s.c.rid).cte(f"{name}_active"))
    created = materialised_once(select(d.c.rid, func.min(d.c.lo).label("lo"))
               .where(d.c.rtype == rt, *own(d.c.rid), d.c.h_param == k.created).group_by(d.c.rid).cte(f"{name}_created"))
    served = idx_date.alias(f"{name}_served")
    service = materialised_once(select(served.c.rid, served.c.lo).distinct()
               .where(served.c.rtype == rt, *own(served.c.rid), served.c.h_param == k.service_date)
               .cte(f"{name}_service"))
    return (
        select(
            literal(rt), diagnoses.c.rid, subjects.c.patient_id, diagnoses.c.h_sys_value, diagnoses.c.system,
            diagnoses.c.code, literal("claims"), null(),
            null(), null(), null(), null(),
            created.c.lo, service.c.lo,
            null(), null(), null(), null(),
            flag(func.coalesce(active.c.active, 0) == 1),
        )
        .select_from(
            diagnoses.join(subjects, subjects.c.rid == diagnoses.c.rid)
            .outerjoin(active, active.c.rid == diagnoses.c.rid)
            .outerjoin(created, created.c.rid == diagnoses.c.rid)
            .outerjoin(service, service.c.rid == diagnoses.c.rid)
        )
    )


def restricted(every: bool) -> Restrict:
    """The WHERE clauses a derivation's statements put on a resource id column: none for every resource,
    else membership in the ids bound as `IDS` (shared by the diagnosis, coverage and Patient facts)."""
    if every:
        return lambda _rid: []
    return lambda rid: [rid.in_(bindparam(IDS, expanding=True))]


def rebuild(conn: Connection, ids: Collection[str] | None, statements: Callable[[bool], Sequence[Any]]) -> None:
    """Run a derivation's statements (`statements(every)`, built with `restricted`) for the resources
    written, their ids bound as `IDS` a chunk at a time, or for every resource (None)."""
    if ids is None:
        for statement in statements(True):
            conn.execute(statement)
        return
    for chunk in chunks(list(ids)):
        for statement in statements(False):
            conn.execute(statement, {IDS: chunk})


@lru_cache(maxsize=None)
def _statements(rtype: str, every: bool) -> tuple[Any, Any]:
    """(delete, insert) of the rows of resources of one type: the ids bound as `IDS`, or all of them."""
    k, own = _keys(), restricted(every)
    claims = {c.rtype: c for c in k.claims}
    rows = _condition_rows(k, own) if rtype == "Condition" else _claim_rows(claims[rtype], k.condition_code, own)
    a = alignment_diagnoses.c
    return (delete(alignment_diagnoses).where(a.rtype == rtype, *own(a.rid)),
            insert(alignment_diagnoses).from_select(list(DIAGNOSIS_COLUMNS), rows))


def _citing(conn: Connection, rtype: str, h_param: int, target_type: str, targets: Collection[str]) -> set[str]:
    """Ids of the resources of `rtype` whose reference parameter cites one of `targets`."""
    r = idx_reference.c
    found: set[str] = set()
    for chunk in chunks(list(targets)):
        found.update(conn.execute(select(r.rid).distinct().where(
            r.target_id.in_(chunk), r.target_type == target_type, r.h_param == h_param, r.rtype == rtype)).scalars())
    return found


def _affected(conn: Connection, changed: Mapping[str, Collection[str] | None]) -> dict[str, list[str] | None]:
    """The resources whose rows to rebuild, by type (None: all): the diagnosis resources written, the
    Conditions citing an Encounter written and the claims citing a Condition written."""
    k = _keys()
    depends = {"Condition": ("Encounter", k.condition_encounter),
               **{c.rtype: ("Condition", c.diagnosis_reference) for c in k.claims}}
    affected: dict[str, list[str] | None] = {}
    for rtype, (cited_type, h_param) in depends.items():
        own, cited = changed.get(rtype, ()), changed.get(cited_type, ())
        if own is None or cited is None:
            affected[rtype] = None
            continue
        ids = set(own) | (_citing(conn, rtype, h_param, cited_type, cited) if cited else set())
        if ids:
            affected[rtype] = sorted(ids)
    return affected


def maintain(conn: Connection, changed: Mapping[str, Collection[str] | None]) -> None:
    """The IN_TRANSACTION hook: rebuild the rows of the resources a write (or a reindexing) changed."""
    for rtype, ids in _affected(conn, changed).items():
        remove, fill = _statements(rtype, ids is None)
        if ids is None:
            conn.execute(remove)
            conn.execute(fill)
            continue
        for chunk in chunks(ids):
            conn.execute(remove, {IDS: chunk})
            conn.execute(fill, {IDS: chunk})
