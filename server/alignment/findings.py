"""Reading one member's persisted finding back as plain data (rendering is the REST layer's job).

One statement reads it (`member_finding`): the Patient row, whether it lies within the caller's reach
(the access clauses compiled into SQL), the findings row and, as JSON arrays, its products, categories,
evidence and coverages. `$evaluate-measure` for one subject and `Patient/{id}/$alignment` answer with it:
one round trip instead of one per table plus the read and visibility checks.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from functools import lru_cache

from typing import Any, Iterable

import orjson
from sqlalchemy import ColumnElement, Connection, Select, and_, bindparam, func, select, true

from server.alignment.facts import QUALIFYING, lobs_with
from server.store.alignment_schema import (
    finding_categories,
    finding_coverage,
    finding_evidence,
    finding_products,
    findings,
)
from server.store.schema import resources
from server.store.search import clause_sql


@dataclass(frozen=True)
class Evidence:
    category: str
    resource_type: str
    resource_id: str
    system: str | None
    code: str | None
    date: date
    source_kind: str
    grade: str  # qualifying | suspect
    lifelong: bool
    last_affirmed: date

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"

    @property
    def qualifying(self) -> bool:
        return self.grade == QUALIFYING


@dataclass(frozen=True)
class Criterion:
    name: str  # requires_lob | excludes_lob | min_age | max_age | dual_level | valueset | state_status |
    # excludes_state | excludes_flag
    value: str


@dataclass(frozen=True)
class EligibleProduct:
    product: str
    priority: int
    criteria: tuple[Criterion, ...]

    @property
    def plan(self) -> str:
        """The plan that takes the member: named by a `plan` criterion for a product with several plans,
        else the product's own."""
        return next((c.value for c in self.criteria if c.name == "plan"), self.product)


@dataclass(frozen=True)
class Category:
    category: str
    clinical: bool
    claims: bool
    non_claims: bool


@dataclass(frozen=True)
class CoverageFact:
    coverage_id: str
    product: str | None
    line_of_business: str | None
    dual_code: str | None
    dual_level: str | None
    current: bool
    harp_status: str | None
    period_start: date | None = None
    aid_category: str | None = None  # Medicaid aid category (Coverage.class of type class), rate cells

    @property
    def reference(self) -> str:
        return f"Coverage/{self.coverage_id}"


@dataclass(frozen=True)
class Finding:
    patient_id: str
    status: str
    kind: str | None  # compliance | opportunity
    enrolled_product: str | None
    recommended_product: str | None
    dual_level: str | None
    reasons: tuple[str, ...]
    annual_impact: Decimal | None
    currency: str
    birth_date: date | None
    as_of: date
    lookback_start: date
    evaluated_at_us: int  # epoch microseconds
    eligible: tuple[EligibleProduct, ...]  # highest priority first
    categories: tuple[Category, ...]
    evidence: tuple[Evidence, ...]
    coverages: tuple[CoverageFact, ...]
    recommended_rate_cell: str | None = None  # the rate cell the impact used (`Rates.cells`), or a product code
    enrolled_rate_cell: str | None = None
    enrolled_plan: str | None = None  # InsurancePlan ids (`plan_choice.py`); the enrolled one may be unknown
    recommended_plan: str | None = None

    @property
    def age(self) -> int | None:
        if self.birth_date is None:
            return None
        before_birthday = (self.as_of.month, self.as_of.day) < (self.birth_date.month, self.birth_date.day)
        return self.as_of.year - self.birth_date.year - before_birthday

    @property
    def exposure_months(self) -> int | None:
        """Of a compliance finding paid above what the data supports: the whole months from the start of the
        enrolled product's current coverage (or the lookback start, if later: the evidence speaks for that
        window only) to the evaluation date; at least 1."""
        if self.kind != "compliance" or self.annual_impact is None or self.annual_impact >= 0:
            return None
        starts = [c.period_start or self.lookback_start for c in self.coverages
                  if c.current and c.product == self.enrolled_product]
        start = max(min(starts, default=self.lookback_start), self.lookback_start)
        months = (self.as_of.year - start.year) * 12 + self.as_of.month - start.month - (self.as_of.day < start.day)
        return max(months, 1)

    @property
    def overpayment_exposure(self) -> Decimal | None:
        """A compliance finding's overpayment exposure (SPEC §4.3): the monthly rate difference between the
        enrolled product and the recommended one, times `exposure_months`."""
        months = self.exposure_months
        if months is None:
            return None
        return (-self.annual_impact / 12 * months).quantize(Decimal("0.01"))

    @property
    def non_claims_categories(self) -> tuple[str, ...]:
        return tuple(c.category for c in self.categories if c.non_claims)

    def criterion_evidence(self, criterion: Criterion) -> tuple[str, ...]:
        """References supporting a met criterion: the diagnoses of a value set, the coverages that give a
        program or carry the dual status, the Patient for an age bound; none for an exclusion."""
        if criterion.name == "valueset":  # suspect evidence (patient-reported too) never qualifies: not cited
            refs = [e.reference for e in self.evidence if e.category == criterion.value and e.qualifying]
        elif criterion.name == "requires_lob":
            refs = [c.reference for c in self.coverages
                    if c.current and c.line_of_business in lobs_with(criterion.value)]
            if criterion.value == "medicaid":  # a dual status code evidences Medicaid (SPEC §4.3)
                refs += [c.reference for c in self.coverages if c.dual_level is not None]
        elif criterion.name == "dual_level":
            refs = [c.reference for c in self.coverages if c.dual_code is not None or c.line_of_business == "dual"]
        elif criterion.name == "state_status":
            refs = [c.reference for c in self.coverages if c.current and c.harp_status == criterion.value]
            refs = refs or [f"Patient/{self.patient_id}"]
        elif criterion.name in ("min_age", "max_age"):
            refs = [f"Patient/{self.patient_id}"]
        else:
            refs = []
        return tuple(dict.fromkeys(refs))


def _date_of(us: int) -> date:
    return datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc).date()


def _criteria(text: str) -> tuple[Criterion, ...]:
    return tuple(Criterion(*token.split(":", 1)) for token in text.split())


@dataclass(frozen=True)
class MemberFinding:
    """A Patient as the caller sees it, and its finding: `found` is false when the Patient does not exist
    or lies beyond the caller's reach; `finding` is None until the member has been evaluated."""

    found: bool
    deleted: bool
    finding: Finding | None


_PARTS = {  # part → (table, columns in the order `_finding` reads them)
    "products": (finding_products, ("product", "priority", "criteria")),
    "categories": (finding_categories, ("category", "clinical", "claims", "non_claims")),
    "evidence": (finding_evidence, ("category", "resource_type", "resource_id", "system", "code", "date_lo",
                                    "source_kind", "grade", "lifelong", "affirmed_lo")),
    "coverages": (finding_coverage, ("coverage_id", "product", "line_of_business", "dual_code", "dual_level",
                                     "current", "harp_status", "period_lo", "aid_category")),
}


_PATIENT_ID = "member_patient_id"


def _json_rows(dialect: str, table, columns: Iterable[str]) -> ColumnElement:
    """The member's rows of a finding table as one JSON array of arrays (PostgreSQL json_agg, SQLite
    json_group_array), correlated with the Patient row of the enclosing statement."""
    cols = [table.c[name] for name in columns]
    agg = func.json_agg(func.json_build_array(*cols)) if dialect == "postgresql" else \
        func.json_group_array(func.json_array(*cols))
    return select(agg).where(table.c.patient_id == resources.c.rid).scalar_subquery()


def _member_statement(dialect: str, visible: ColumnElement) -> Select:
    r = resources.c
    parts = [_json_rows(dialect, table, cols).label(part) for part, (table, cols) in _PARTS.items()]
    return (
        select(r.deleted, visible.label("visible"), findings.c.patient_id.label("evaluated"),
               *(c for c in findings.c if c.name != "patient_id"), *parts)
        .select_from(resources.outerjoin(findings, findings.c.patient_id == r.rid))
        .where(r.rtype == "Patient", r.rid == bindparam(_PATIENT_ID))
    )


@lru_cache(maxsize=None)
def _unrestricted_statement(dialect: str) -> Select:
    """The statement for a caller without access clauses (full or system-wide access), built once: building
    it and its cache key at each request cost about a tenth of an individual report's CPU."""
    return _member_statement(dialect, true())


def member_finding(conn: Connection, patient_id: str, clauses: list) -> MemberFinding:
    """The Patient, its visibility under the caller's access clauses and its finding, in one statement."""
    dialect = conn.dialect.name
    stmt = _member_statement(dialect, and_(*(clause_sql(c, "Patient") for c in clauses))) if clauses \
        else _unrestricted_statement(dialect)
    row = conn.execute(stmt, {_PATIENT_ID: patient_id}).first()
    if row is None or (clauses and (row.deleted or not row.visible)):
        return MemberFinding(False, False, None)
    if row.deleted or row.evaluated is None:
        return MemberFinding(True, bool(row.deleted), None)
    return MemberFinding(True, False, _finding(patient_id, row))


def read_finding(conn: Connection, patient_id: str) -> Finding | None:
    """The member's finding (the server's own reads: no access clauses), None when not evaluated."""
    return member_finding(conn, patient_id, []).finding


def _parsed(value: Any) -> list:
    """A JSON array from the driver: parsed already (psycopg), text (SQLite), or NULL for no rows."""
    if value is None:
        return []
    return orjson.loads(value) if isinstance(value, (str, bytes)) else value


def _finding(patient_id: str, row) -> Finding:
    products = sorted(_parsed(row.products), key=lambda p: -p[1])
    categories = sorted(_parsed(row.categories), key=lambda c: c[0])
    evidence = sorted(_parsed(row.evidence), key=lambda e: (e[0], e[5], e[1], e[2], e[3] or "", e[4] or ""))
    coverages = sorted(_parsed(row.coverages), key=lambda v: v[0])
    cents = row.annual_impact_cents
    return Finding(
        patient_id=patient_id,
        status=row.status,
        kind=row.kind,
        enrolled_product=row.enrolled_product,
        recommended_product=row.recommended_product,
        dual_level=row.dual_level,
        reasons=tuple(row.reasons.split()),
        annual_impact=None if cents is None else Decimal(cents) / 100,
        currency=row.currency,
        birth_date=None if row.birth_lo is None else _date_of(row.birth_lo),
        as_of=row.as_of,
        lookback_start=row.lookback_start,
        evaluated_at_us=row.evaluated_at,
        eligible=tuple(EligibleProduct(product, priority, _criteria(criteria)) for product, priority, criteria in products),
        categories=tuple(Category(c[0], bool(c[1]), bool(c[2]), bool(c[3])) for c in categories),
        evidence=tuple(Evidence(e[0], e[1], e[2], e[3], e[4], _date_of(e[5]), e[6], e[7], bool(e[8]), _date_of(e[9]))
                       for e in evidence),
        coverages=tuple(CoverageFact(v[0], v[1], v[2], v[3], v[4], bool(v[5]), v[6],
                                     None if v[7] is None else _date_of(v[7]), v[8]) for v in coverages),

        recommended_rate_cell=row.recommended_rate_cell,
        enrolled_rate_cell=row.enrolled_rate_cell,
        enrolled_plan=row.enrolled_plan,
        recommended_plan=row.recommended_plan,
    )
