"""NY HARP referral risk factors seen in claims (SPEC §4.3, issue 17), from `mappings/harp_risk_factors.json`.

A mainstream member with a qualifying SMI/SUD diagnosis and no State code is a *referral candidate*; the
State decides, but the plan can show the risk factors its claims carry: psychiatric inpatient days and
months of ACT or targeted case management. They are listed on the finding (reason codes) and, with the
claims that make them, on `Patient/{id}/$alignment`. They are never a criterion of a rule.

Set-based: one statement per claim type finds the claims whose line codes (`service`, kept at write time in
`alignment_claim_lines`) name a factor, dated by their service dates; the per-member figures are one GROUP BY
over them, joined to a small table of calendar months so "months with a claim" is a COUNT(DISTINCT) on both
dialects.
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
    false,
    func,
    literal,
    select,
    union_all,
)

from server.alignment.facts import MEMBER_IDS, Members, member_exists, own_rows
from server.alignment.index_keys import CLAIM_TYPES
from server.alignment.window import EvaluationWindow
from server.data_files import MappingFile, MappingModel, Source, read_mapping
from server.store.alignment_schema import alignment_claim_lines

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


def factor_claims(rf: RiskFactors, window: EvaluationWindow, members: Members) -> Select:
    """(patient_id, factor, resource_type, resource_id, lo, hi): active claims with a line code of a factor,
    first served inside the factor's years; `hi` is capped at the evaluation day (an open period). Read from
    the claim-line facts kept at write time (`alignment_claim_lines`, see `claim_facts.py`)."""
    codes = sorted({code for f in rf.factors for code in f.codes})
    parts = []
    for rt in CLAIM_TYPES:
        a = alignment_claim_lines.alias(f"rf_{rt.lower()}")
        own = [member_exists(a.c.patient_id), *members.patients.where(a.c.patient_id)]
        match = [a.c.rtype == rt, a.c.code.in_(codes)]
        source, patient, bounds, own = own_rows(a, f"rf_{rt.lower()}", match, own, window)
        factor = case(*((a.c.code.in_(f.codes), f.code) for f in rf.factors))
        start = case(*((factor == f.code, bounds.months_back_us(12 * f.years)) for f in rf.factors))
        parts.append(  # a claim with several codes of one factor counts once
            select(patient.label("patient_id"), factor.label("factor"), literal(rt).label("resource_type"),
                   a.c.rid.label("resource_id"), a.c.service_lo.label("lo"),
                   case((a.c.service_hi > bounds.as_of_hi_us, bounds.as_of_hi_us), else_=a.c.service_hi).label("hi"))
            .distinct()
            .select_from(source)
            .where(*own, a.c.service_lo >= start, a.c.service_lo <= bounds.as_of_hi_us)
        )
    return union_all(*parts)


def _measure(rf: RiskFactors, factor: RiskFactor, claims: Any, months: Any) -> ColumnElement[int]:
    mine = claims.c.factor == factor.code
    if factor.measure == "months":
        return func.count(distinct(case((mine, months.c.month), else_=None)))
    days = (claims.c.hi + 1 - claims.c.lo) // DAY_US - 1  # closed ranges; the discharge day is not a day
    return func.coalesce(func.sum(case((mine, case((days < 1, 1), else_=days)), else_=None)), 0)


def risk_factor_facts(rf: RiskFactors, window: EvaluationWindow, members: Members) -> Subquery:
    """One row per member with factor claims: a column per factor (`rf.column`) holding its measure."""
    if not rf.factors:
        return select(literal("").label("patient_id")).where(false()).subquery("risk_factors")
    claims = factor_claims(rf, window, members).subquery("factor_claims")
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


def member_risk_factors(conn: Connection, rf: RiskFactors, window: EvaluationWindow,
                        patient_id: str) -> list[MemberFactor]:
    """The member's factors with any claim, read by the engine's own statements for one member."""
    if not rf.factors:
        return []
    figures_statement, claims_statement = _member_statements(rf, window, conn.dialect.name)
    params = {MEMBER_IDS: [patient_id]}
    figures = conn.execute(figures_statement, params).mappings().first()
    if figures is None:
        return []
    rows = conn.execute(claims_statement, params).all()
    return [MemberFactor(f, int(figures[rf.column(f)]),
                         tuple(f"{r.resource_type}/{r.resource_id}" for r in rows if r.factor == f.code))
            for f in rf.factors if figures[rf.column(f)]]


@functools.lru_cache(maxsize=16)
def _member_statements(rf: RiskFactors, window: EvaluationWindow, dialect: str) -> tuple[Select, Select]:
    """`member_risk_factors`' two statements, built once per evaluation date: building them takes longer
    than running them for one member (SQLite, empty database, load ~7: 29 ms a call built anew, 0.6 ms reused)."""
    members = Members.listed(dialect)
    claims = factor_claims(rf, window, members).subquery("claims")
    return (select(risk_factor_facts(rf, window, members)),
            select(claims.c.factor, claims.c.resource_type, claims.c.resource_id)
            .order_by(claims.c.lo, claims.c.resource_id))
