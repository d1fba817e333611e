"""The populations of the two measures as set-based SQL over the findings tables.

Numerators are the cohorts' own SELECTs (`server.cohorts.definitions.cohort_members_select`), so a
summary report's numerator counts are the cohort Groups' quantities by construction:

* `product-alignment`: initial population = denominator = members whose finding is not
  `not-evaluable` (active coverage that gives a line of business); numerator = cohort `misaligned`;
  stratified by enrolled product, by recommended product, by both (a component stratifier: the
  enrolled → recommended flows) and by alignment status.
* `nonclaims-bh-dx`: initial population = denominator = members with a counted diagnosis in a
  non-claims value set (`smi`, `sud`: mappings' `non_claims_valuesets`) from any source; numerator =
  the union of the cohorts `nonclaims-<category>`; stratified by category (a member with both
  categories is counted in both strata).

A summary is one GROUP BY query whose handful of rows (one per combination of stratum values) are
added up here; subject lists are ordered SELECTs of patient ids that the caller streams.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

from sqlalchemy import ColumnElement, Connection, Select, and_, case, func, select, union

from server.alignment.mappings import Mappings
from server.cohorts.definitions import COHORTS_BY_ID, NONCLAIMS_PREFIX, cohort_members_select
from server.store.alignment_schema import finding_categories, findings

Scope = Select | None  # the patient ids a report covers (a Group's members), None for everyone


StratumValue = str | None | tuple[str | None, ...]  # a code (None: the finding has none), or one per component


@dataclass(frozen=True)
class Stratum:
    value: StratumValue
    initial: int
    numerator: int


@dataclass(frozen=True)
class Summary:
    initial: int  # initial population = denominator
    numerator: int
    impact_cents: int | None  # sum of the numerator's estimated annual impact; None when none is known
    stratifiers: dict[str, list[Stratum]]  # stratifier id → strata


@dataclass(frozen=True)
class MeasureSql:
    id: str
    stratifiers: tuple[str, ...]
    summary: Callable[[Connection, Mappings, Scope], Summary]
    initial_ids: Callable[[Mappings, Scope], Select]  # ordered patient ids
    numerator_ids: Callable[[Mappings, Scope], Select]


def _in(column: ColumnElement, scope: Scope) -> list[ColumnElement[bool]]:
    return [] if scope is None else [column.in_(scope)]


def _order(value: StratumValue) -> tuple:
    values = value if isinstance(value, tuple) else (value,)
    return tuple((v is None, v or "") for v in values)


def _strata(rows: Iterable[tuple[StratumValue, int, int]]) -> list[Stratum]:
    totals: dict[StratumValue, list[int]] = {}
    for value, initial, numerator in rows:
        t = totals.setdefault(value, [0, 0])
        t[0] += initial
        t[1] += numerator
    return [Stratum(v, *totals[v]) for v in sorted(totals, key=_order)]


# -- product-alignment ---------------------------------------------------------------------------------

def _covered(scope: Scope) -> list[ColumnElement[bool]]:
    f = findings.c
    return [f.status != "not-evaluable", *_in(f.patient_id, scope)]


def _alignment_summary(conn: Connection, _m: Mappings, scope: Scope) -> Summary:
    f = findings.c
    misaligned = f.patient_id.in_(cohort_members_select("misaligned"))
    rows = conn.execute(
        select(f.enrolled_product, f.recommended_product, f.status, func.count(),
               func.sum(case((misaligned, 1), else_=0)), func.sum(case((misaligned, f.annual_impact_cents))))
        .where(*_covered(scope))
        .group_by(f.enrolled_product, f.recommended_product, f.status)
    ).all()
    impacts = [r[5] for r in rows if r[5] is not None]
    return Summary(
        initial=sum(r[3] for r in rows),
        numerator=sum(r[4] for r in rows),
        impact_cents=sum(impacts) if impacts else None,
        stratifiers={"enrolled-product": _strata((r[0], r[3], r[4]) for r in rows),
                     "recommended-product": _strata((r[1], r[3], r[4]) for r in rows),
                     "enrolled-recommended": _strata(((r[0], r[1]), r[3], r[4]) for r in rows),
                     "status": _strata((r[2], r[3], r[4]) for r in rows)},
    )


def _alignment_initial(_m: Mappings, scope: Scope) -> Select:
    return select(findings.c.patient_id).where(*_covered(scope)).order_by(findings.c.patient_id)


def _alignment_numerator(_m: Mappings, scope: Scope) -> Select:
    f = findings.c
    return (select(f.patient_id).where(f.patient_id.in_(cohort_members_select("misaligned")),
                                       *_in(f.patient_id, scope)).order_by(f.patient_id))


PRODUCT_ALIGNMENT = MeasureSql("product-alignment",
                               ("enrolled-product", "recommended-product", "enrolled-recommended", "status"),
                               _alignment_summary, _alignment_initial, _alignment_numerator)


# -- nonclaims-bh-dx -----------------------------------------------------------------------------------

def _nonclaims_members(category: str) -> Select:
    """The cohort of non-claims diagnoses of `category`; a category a customer's mappings add without a
    cohort of its own is read from the findings directly, by the same rule."""
    if NONCLAIMS_PREFIX + category in COHORTS_BY_ID:
        return cohort_members_select(NONCLAIMS_PREFIX + category)
    c = finding_categories.c
    return select(c.patient_id).where(c.category == category, c.non_claims.is_(True))


def _nonclaims_summary(conn: Connection, m: Mappings, scope: Scope) -> Summary:
    c = finding_categories.c
    categories = m.non_claims_valuesets
    has = [func.max(case((c.category == vs, 1), else_=0)).label(f"has_{i}") for i, vs in enumerate(categories)]
    gap = [func.max(case((and_(c.category == vs, c.patient_id.in_(_nonclaims_members(vs))), 1), else_=0))
           .label(f"gap_{i}") for i, vs in enumerate(categories)]
    per_member = (select(c.patient_id, *has, *gap).where(c.category.in_(categories), *_in(c.patient_id, scope))
                  .group_by(c.patient_id).subquery("per_member"))
    flags = [per_member.c[x.name] for x in (*has, *gap)]
    rows = conn.execute(
        select(*flags, func.count(), func.sum(findings.c.annual_impact_cents))
        .select_from(per_member.join(findings, findings.c.patient_id == per_member.c.patient_id))
        .group_by(*flags)
    ).all()
    n = len(categories)
    in_numerator = [any(r[n:2 * n]) for r in rows]
    impacts = [r[2 * n + 1] for r, num in zip(rows, in_numerator) if num and r[2 * n + 1] is not None]
    strata = [Stratum(vs, sum(r[2 * n] for r in rows if r[i]), sum(r[2 * n] for r in rows if r[n + i]))
              for i, vs in enumerate(categories)]
    return Summary(
        initial=sum(r[2 * n] for r in rows),
        numerator=sum(r[2 * n] for r, num in zip(rows, in_numerator) if num),
        impact_cents=sum(impacts) if impacts else None,
        stratifiers={"category": [s for s in strata if s.initial]},
    )


def _nonclaims_initial(m: Mappings, scope: Scope) -> Select:
    c = finding_categories.c
    return (select(c.patient_id).where(c.category.in_(m.non_claims_valuesets), *_in(c.patient_id, scope))
            .distinct().order_by(c.patient_id))


def _nonclaims_numerator(m: Mappings, scope: Scope) -> Select:
    members = union(*(_nonclaims_members(vs) for vs in m.non_claims_valuesets)).subquery("gaps")
    return select(members.c.patient_id).where(*_in(members.c.patient_id, scope)).order_by(members.c.patient_id)


NONCLAIMS_BH_DX = MeasureSql("nonclaims-bh-dx", ("category",), _nonclaims_summary, _nonclaims_initial,
                             _nonclaims_numerator)

MEASURES: dict[str, MeasureSql] = {m.id: m for m in (PRODUCT_ALIGNMENT, NONCLAIMS_BH_DX)}
