"""NY HARP referral risk factors seen in claims (SPEC §4.3, issue 17), from `mappings/harp_risk_factors.json`.

A mainstream member with a qualifying SMI/SUD diagnosis and no State code is a *referral candidate*; the
State decides, but the plan can show the risk factors its claims carry: psychiatric inpatient days and
months of ACT or targeted case management. They are listed on the finding (reason codes) and, with the
claims that make them, on `Patient/{id}/$alignment`. They are never a criterion of a rule.

Set-based: one statement per claim type finds the claims whose line codes (`service`) name a factor,
dated by their service dates; the per-member figures are one GROUP BY over them, joined to a small table
of calendar months so "months with a claim" is a COUNT(DISTINCT) on both dialects.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import Field
from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    Subquery,
    case,
    distinct,
    exists,
    false,
    func,
    literal,
    select,
    union_all,
)

from server.alignment.facts import MEMBER_IDS, Members, _subjects
from server.alignment.index_keys import IndexKeys
from server.alignment.window import EvaluationWindow
from server.data_files import MappingFile, MappingModel, Source, read_mapping
from server.store.schema import idx_date, idx_token

FILE = "harp_risk_factors.json"
DAY_US = 86_400_000_000


class RiskFactor(MappingModel):
    code: Literal["psychiatric-inpatient-days", "act-tcm-months"]  # each has its reason code in rules.REASONS
    display: str
    measure: Literal["days", "months"]
    at_least: int = Field(ge=1)
    years: int = Field(ge=1, le=10)
    codes: tuple[str, ...] = Field(min_length=1)

    @property
    def reason(self) -> str:
        """The reason code a referral candidate's finding carries when this factor is met."""
        return f"risk-factor-{self.code}"


class RiskFactors(MappingFile):
    description: str
    product: str
    factors: tuple[RiskFactor, ...]

    def column(self, factor: RiskFactor) -> str:
        return f"rf_{self.factors.index(factor)}"

    def __hash__(self) -> int:
        # The statements built from a file are cached by it (`_member_statements`); what they read of it
        # is the factors (`source`, a list, cannot be hashed). Equal files have equal factors.
        return hash(self.factors)


NONE = RiskFactors(description="", source=[Source(name="none", read=date(2026, 12, 3))], product="", factors=())


@functools.lru_cache(maxsize=8)
def load_risk_factors(directory: Path) -> RiskFactors:
    """The file of a mappings directory; a directory without one has no factors (test catalogues)."""
    path = Path(directory) / FILE
    if not path.is_file():
        return NONE
    return read_mapping(path, RiskFactors, FILE)


def _months(window: EvaluationWindow, years: int) -> Subquery:
    """(month, lo, hi): the calendar months from `years` before the evaluation date to its month."""
    rows = [select(literal(n).label("month"), lo.label("lo"), hi.label("hi"))
            for n, (lo, hi) in enumerate(window.calendar_months(years))]
    return union_all(*rows).subquery("calendar_months")


def factor_claims(keys: IndexKeys, rf: RiskFactors, window: EvaluationWindow, members: Members) -> Select:
    """(patient_id, factor, resource_type, resource_id, lo, hi): active claims with a line code of a factor,
    first served inside the factor's years; `hi` is capped at the evaluation day (an open period)."""
    codes = sorted({code for f in rf.factors for code in f.codes})
    parts = []
    for claim in keys.claims:
        rt, name = claim.rtype, f"rf_{claim.rtype.lower()}"
        subjects = _subjects(f"{name}s", rt, claim.patient, members, window)
        bounds = window.on(subjects)
        t, d, s = idx_token.alias(f"{name}_line"), idx_date.alias(f"{name}_served"), idx_token.alias(f"{name}_status")
        coded = (
            select(t.c.rid, case(*((t.c.code.in_(f.codes), f.code) for f in rf.factors)).label("factor"))
            .where(t.c.rtype == rt, t.c.h_param == claim.service, t.c.code.in_(codes), *members.among(t.c.rid, subjects))
            .distinct()
            .subquery(f"{name}_coded")
        )
        served = (  # only the factor claims' dates: a full run must not group every claim's service dates
            select(d.c.rid, func.min(d.c.lo).label("lo"), func.max(d.c.hi).label("hi"))
            .select_from(d.join(coded, d.c.rid == coded.c.rid))
            .where(d.c.rtype == rt, d.c.h_param == claim.service_date)
            .group_by(d.c.rid)
            .subquery(f"{name}_dates")
        )
        active = exists().where(s.c.rtype == rt, s.c.rid == coded.c.rid, s.c.h_param == claim.status,
                                s.c.code == "active")
        start = case(*((coded.c.factor == f.code, bounds.months_back_us(12 * f.years)) for f in rf.factors))
        parts.append(
            select(subjects.c.patient_id, coded.c.factor, literal(rt).label("resource_type"),
                   coded.c.rid.label("resource_id"), served.c.lo,
                   case((served.c.hi > bounds.as_of_hi_us, bounds.as_of_hi_us), else_=served.c.hi).label("hi"))
            .select_from(coded.join(subjects, subjects.c.rid == coded.c.rid).join(served, served.c.rid == coded.c.rid))
            .where(active, served.c.lo >= start, served.c.lo <= bounds.as_of_hi_us)
        )
    return union_all(*parts)


def _measure(rf: RiskFactors, factor: RiskFactor, claims: Any, months: Any) -> ColumnElement[int]:
    mine = claims.c.factor == factor.code
    if factor.measure == "months":
        return func.count(distinct(case((mine, months.c.month), else_=None)))
    days = (claims.c.hi + 1 - claims.c.lo) // DAY_US - 1  # closed ranges; the discharge day is not a day
    return func.coalesce(func.sum(case((mine, case((days < 1, 1), else_=days)), else_=None)), 0)


def risk_factor_facts(keys: IndexKeys, rf: RiskFactors, window: EvaluationWindow, members: Members) -> Subquery:
    """One row per member with factor claims: a column per factor (`rf.column`) holding its measure."""
    if not rf.factors:
        return select(literal("").label("patient_id")).where(false()).subquery("risk_factors")
    claims = factor_claims(keys, rf, window, members).subquery("factor_claims")
    months = _months(window, max(f.years for f in rf.factors))
    return (
        select(claims.c.patient_id, *(_measure(rf, f, claims, months).label(rf.column(f)) for f in rf.factors))
        .select_from(claims.join(months, claims.c.lo.between(months.c.lo, months.c.hi)))
        .group_by(claims.c.patient_id)
        .subquery("risk_factors")
    )


def met(rf: RiskFactors, factor: RiskFactor, row: Any) -> ColumnElement[bool]:
    """The factor's figure in a facts/decisions row reaches its threshold."""
    return row.c[rf.column(factor)] >= factor.at_least


@dataclass(frozen=True)
class MemberFactor:
    """One risk factor of one member, as `Patient/{id}/$alignment` shows it."""

    factor: RiskFactor
    value: int
    claims: tuple[str, ...]  # Claim/… references, oldest service first

    @property
    def met(self) -> bool:
        return self.value >= self.factor.at_least


def member_risk_factors(conn: Connection, keys: IndexKeys, rf: RiskFactors, window: EvaluationWindow,
                        patient_id: str) -> list[MemberFactor]:
    """The member's factors with any claim, read by the engine's own statements for one member."""
    if not rf.factors:
        return []
    figures_statement, claims_statement = _member_statements(keys, rf, window, conn.dialect.name)
    params = {MEMBER_IDS: [patient_id]}
    figures = conn.execute(figures_statement, params).mappings().first()
    if figures is None:
        return []
    rows = conn.execute(claims_statement, params).all()
    return [MemberFactor(f, int(figures[rf.column(f)]),
                         tuple(f"{r.resource_type}/{r.resource_id}" for r in rows if r.factor == f.code))
            for f in rf.factors if figures[rf.column(f)]]


@functools.lru_cache(maxsize=16)
def _member_statements(keys: IndexKeys, rf: RiskFactors, window: EvaluationWindow,
                       dialect: str) -> tuple[Select, Select]:
    """`member_risk_factors`' two statements, built once per evaluation date: building them takes longer
    than running them for one member (SQLite, empty database, load ~7: 29 ms a call built anew, 0.6 ms reused)."""
    members = Members.listed(dialect)
    claims = factor_claims(keys, rf, window, members).subquery("claims")
    return (select(risk_factor_facts(keys, rf, window, members)),
            select(claims.c.factor, claims.c.resource_type, claims.c.resource_id)
            .order_by(claims.c.lo, claims.c.resource_id))
