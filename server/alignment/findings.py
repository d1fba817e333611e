"""Reading one member's persisted finding back as plain data (rendering is the REST layer's job)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal

from sqlalchemy import Connection, select

from server.alignment.facts import QUALIFYING, lobs_with
from server.store.alignment_schema import (
    finding_categories,
    finding_coverage,
    finding_evidence,
    finding_products,
    findings,
)


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


def read_finding(conn: Connection, patient_id: str) -> Finding | None:
    row = conn.execute(select(findings).where(findings.c.patient_id == patient_id)).first()
    if row is None:
        return None
    p, c, e, v = finding_products.c, finding_categories.c, finding_evidence.c, finding_coverage.c
    products = conn.execute(select(p.product, p.priority, p.criteria).where(p.patient_id == patient_id)
                            .order_by(p.priority.desc())).all()
    categories = conn.execute(select(c.category, c.clinical, c.claims, c.non_claims)
                              .where(c.patient_id == patient_id).order_by(c.category)).all()
    evidence = conn.execute(
        select(e.category, e.resource_type, e.resource_id, e.system, e.code, e.date_lo, e.source_kind, e.grade,
               e.lifelong, e.affirmed_lo)
        .where(e.patient_id == patient_id)
        .order_by(e.category, e.date_lo, e.resource_type, e.resource_id, e.system, e.code)
    ).all()
    coverages = conn.execute(select(v.coverage_id, v.product, v.line_of_business, v.dual_code, v.dual_level,
                                    v.current, v.harp_status, v.period_lo)
                             .where(v.patient_id == patient_id).order_by(v.coverage_id)).all()
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
        eligible=tuple(EligibleProduct(r.product, r.priority, _criteria(r.criteria)) for r in products),
        categories=tuple(Category(r.category, bool(r.clinical), bool(r.claims), bool(r.non_claims))
                         for r in categories),
        evidence=tuple(Evidence(r.category, r.resource_type, r.resource_id, r.system, r.code, _date_of(r.date_lo),
                                r.source_kind, r.grade, bool(r.lifelong), _date_of(r.affirmed_lo)) for r in evidence),
        coverages=tuple(CoverageFact(r.coverage_id, r.product, r.line_of_business, r.dual_code, r.dual_level,
                                     bool(r.current), r.harp_status,
                                     None if r.period_lo is None else _date_of(r.period_lo)) for r in coverages),
    )
