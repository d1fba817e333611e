"""Reading one member's evaluated risk back: the demographic cell, raw and payment scores per basis, and
each condition category with its evidence and its coding-gap status (Da Vinci RA 2.1 semantics).

Gap rules (reference/standards.md §5.3; Da Vinci RA 2.1 CodeSystems cc-type, evidence-status,
hierarchical-status, read 2026-12-03):
* `ccType`: `historic` when claims coded the CC in the year before the diagnosis year; else
  `suspected` when clinical (non-claims) evidence of the diagnosis year supports it; else `net-new`
  (coded by claims of the diagnosis year only, so closed or pending, as the IG requires).
* `evidenceStatus`: `closed-gap` when adjudicated claims of the diagnosis year code it (the plan will be
  paid for it); else `pending` when a claim of the diagnosis year that codes it is received but not
  yet adjudicated (ExplanationOfBenefit.outcome queued or partial; the IG: "evidence was received by
  the payer and is in the process of being evaluated"); else `open-gap`.
* `hierarchicalStatus`: `applied-superseded` when a higher CC of the same hierarchy is present,
  else `applied-not-superseded`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, text

from server.risk.model import PaymentYear
from server.risk.schema import APART, STORED, MemberTables, risk_model_label
from server.risk.scores import EDIT_APPLIES


@dataclass(frozen=True)
class Evidence:
    resource_type: str
    resource_id: str
    icd: str
    code: str | None
    date_lo: int
    source_kind: str
    prior: bool
    pending: bool  # a claim not yet adjudicated

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"


@dataclass
class Category:
    version: str
    cc: str
    label: str | None
    cc_type: str
    evidence_status: str
    superseded: bool
    coefficient: float | None
    evidence: list[Evidence] = field(default_factory=list)


@dataclass(frozen=True)
class Scores:
    raw: dict[str, float]  # version → raw model score
    demographic: dict[str, float]
    payment: float  # blended, normalised, coding-intensity adjusted


@dataclass
class MemberRisk:
    patient_id: str
    payment_year: PaymentYear
    age: int
    sex: str
    dual_code: str | None
    segment: str
    new_enrollee: bool
    disabled: bool
    orec: str
    orig_disabled: bool
    institutional: bool
    scores: dict[str, Scores]  # basis (claims | all) → scores
    categories: list[Category]

    @property
    def uplift(self) -> float:
        """What complete coding of the clinical evidence adds to the payment score."""
        return self.scores["all"].payment - self.scores["claims"].payment


def payment_score(py: PaymentYear, raw: dict[str, float]) -> float:
    """Σ weight × raw / normalisation over the year's models, × (1 − coding intensity)."""
    blended = sum(m.weight * raw.get(m.version, 0.0) / m.normalization for m in py.models)
    return blended * (1 - py.coding_intensity)


# Each risk-relevant diagnosis with the CC it maps to per version, after the edits: a member's evidence
# (below) and the population's pending gaps (population.py) read the same mapping.
def evidence_cc_sql(tables: MemberTables) -> str:
    return (
        "SELECT d.patient_id, x.version, CASE WHEN e.action = 'override' THEN e.cc_override ELSE x.cc END AS cc, "
        "d.resource_type, d.resource_id, d.icd, d.code, d.date_lo, d.source_kind, d.prior, d.pending "
        f"FROM {tables.dx.name} d JOIN {tables.member.name} m ON m.patient_id = d.patient_id "
        "AND m.payment_year = d.payment_year "
        "JOIN risk_model_dx x ON x.payment_year = :year AND x.icd = d.icd "
        "LEFT JOIN risk_model_edit e ON e.payment_year = :year AND e.version = x.version AND e.icd = d.icd "
        f"AND ({EDIT_APPLIES}) "
        "WHERE d.payment_year = :year AND (e.action IS NULL OR e.action <> 'invalid')"
    )


EVIDENCE_CC_SQL = evidence_cc_sql(STORED)
_EVIDENCE_SQL = {tables: text(evidence_cc_sql(tables) + " AND d.patient_id = :pid "
                              "ORDER BY d.date_lo, d.resource_type, d.resource_id") for tables in (STORED, APART)}


def read_member_risk(conn: Connection, py: PaymentYear, patient_id: str,
                     tables: MemberTables = STORED) -> MemberRisk | None:
    """The member's evaluated risk for a payment year, from the stored tables or a connection's `APART`
    copies; None when the member was not scored (not a Medicare member, or no birth date or sex)."""
    year = py.year
    m = conn.execute(select(tables.member).where(tables.member.c.patient_id == patient_id,
                                                 tables.member.c.payment_year == year)).first()
    if m is None:
        return None
    s = tables.score.c
    rows = conn.execute(select(s.version, s.basis, s.score, s.demographic)
                        .where(s.patient_id == patient_id, s.payment_year == year)).all()
    scores = {}
    for basis in ("claims", "all"):
        raw = {r.version: r.score for r in rows if r.basis == basis}
        demographic = {r.version: r.demographic for r in rows if r.basis == basis}
        scores[basis] = Scores(raw, demographic, payment_score(py, raw))
    c = tables.cc.c
    ccs = conn.execute(select(c.version, c.basis, c.cc, c.superseded)
                       .where(c.patient_id == patient_id, c.payment_year == year)).all()
    labels = dict(((r.version, r.cc), r.label) for r in conn.execute(
        select(risk_model_label.c.version, risk_model_label.c.cc, risk_model_label.c.label)
        .where(risk_model_label.c.payment_year == year, risk_model_label.c.cc.in_({f"HCC{r.cc}" for r in ccs}))))
    coefficients = _coefficients(conn, year, m.segment, {(r.version, r.cc) for r in ccs})
    evidence: dict[tuple[str, str], list[Evidence]] = {}
    for r in conn.execute(_EVIDENCE_SQL[tables], {"pid": patient_id, "year": year}):
        evidence.setdefault((r.version, r.cc), []).append(
            Evidence(r.resource_type, r.resource_id, r.icd, r.code, r.date_lo, r.source_kind, bool(r.prior),
                     bool(r.pending)))
    categories = [_category(version, cc, by_basis, labels.get((version, f"HCC{cc}")),
                            coefficients.get((version, cc)), evidence.get((version, cc), []))
                  for (version, cc), by_basis in _by_cc(ccs).items()]
    categories.sort(key=lambda k: (k.version, int(k.cc) if k.cc.isdigit() else 0, k.cc))
    return MemberRisk(patient_id, py, m.age, m.sex, m.dual_code, m.segment, bool(m.new_enrollee),
                      bool(m.disabled), m.orec, bool(m.orig_disabled), bool(m.institutional), scores, categories)


def _by_cc(rows: list[Any]) -> dict[tuple[str, str], dict[str, bool]]:
    """(version, cc) → basis → superseded."""
    out: dict[tuple[str, str], dict[str, bool]] = {}
    for r in rows:
        out.setdefault((r.version, r.cc), {})[r.basis] = bool(r.superseded)
    return out


def _coefficients(conn: Connection, year: int, segment: str, ccs: set[tuple[str, str]]) -> dict[tuple[str, str], float]:
    if not ccs:
        return {}
    rows = conn.execute(text(
        "SELECT version, name, value FROM risk_model_coefficient WHERE payment_year = :year AND name IN "
        "(" + ", ".join(f":n{i}" for i in range(len(ccs))) + ")"),
        {"year": year, **{f"n{i}": f"{segment}hcc{cc}" for i, (_, cc) in enumerate(sorted(ccs))}})
    by_name = {(r.version, r.name): r.value for r in rows}
    return {(v, cc): by_name[(v, f"{segment}hcc{cc}")] for v, cc in ccs if (v, f"{segment}hcc{cc}") in by_name}


def _category(version: str, cc: str, by_basis: dict[str, bool], label: str | None, coefficient: float | None,
              evidence: list[Evidence]) -> Category:
    current = [e for e in evidence if not e.prior]
    if "prior" in by_basis:
        cc_type = "historic"
    elif any(e.source_kind == "clinical" for e in current):
        cc_type = "suspected"
    else:
        cc_type = "net-new"
    if "claims" in by_basis:
        status = "closed-gap"
    elif any(e.pending for e in current):
        status = "pending"
    else:
        status = "open-gap"
    superseded = by_basis.get("all", by_basis.get("prior", False))
    return Category(version, cc, label, cc_type, status, superseded, coefficient, evidence)
