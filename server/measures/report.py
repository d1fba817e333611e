"""MeasureReport JSON: individual reports from one member's finding, summary and subject-list reports
from a population `Summary`.

Every report names its profile in `meta.profile` (`profiles/StructureDefinition-alignment-measurereport-*`).
Individual reports carry the member's finding as PlanFit extensions; `nonclaims-bh-dx` individual reports
add one group per non-claims category in the shape of the Da Vinci Risk Adjustment coding-gap report
(`ra-ccType` suspected, `ra-evidenceStatus` open-gap, `ra-evidenceStatusDate`, `ra-dxCode`), whose clinical
Conditions are `evaluatedResource` entries carrying `ra-groupReference`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterable

from server.alignment.findings import Evidence, Finding
from server.alignment.plans import plan_reference
from server.measures.definitions import CS_BASE, MEASURE_BASE, SD_BASE
from server.measures.populations import Stratum, Summary

POPULATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/measure-population"
ABSENT_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
RA = "http://hl7.org/fhir/us/davinci-ra/"
PROFILES = {kind: f"{SD_BASE}alignment-measurereport-{kind}" for kind in ("individual", "summary", "subject-list")}
_TYPES = {"subject": "individual", "population": "summary", "subject-list": "subject-list"}
INITIAL, DENOMINATOR, NUMERATOR = "initial-population", "denominator", "numerator"
STRATUM_SYSTEMS = {"enrolled-product": "product", "recommended-product": "product", "category": "diagnosis-category",
                   "status": "alignment-status", "kind": "alignment-reason"}
COMPONENTS = {"enrolled-recommended": ("enrolled-product", "recommended-product")}


@dataclass(frozen=True)
class ReportContext:
    """What every report of one request shares."""

    measure: str
    report_type: str  # subject | subject-list | population
    period_start: str
    period_end: str
    subject: str | None
    date: str  # instant the report was made
    displays: dict[str, dict[str, str]]  # code system id → code → display


def head(ctx: ReportContext, extensions: list[dict[str, Any]]) -> dict[str, Any]:
    kind = _TYPES[ctx.report_type]
    report: dict[str, Any] = {"resourceType": "MeasureReport", "meta": {"profile": [PROFILES[kind]]}}
    if extensions:
        report["extension"] = extensions
    report.update({"status": "complete", "type": kind, "measure": MEASURE_BASE + ctx.measure})
    if ctx.subject:
        report["subject"] = {"reference": ctx.subject}
    report.update({"date": ctx.date, "period": {"start": ctx.period_start, "end": ctx.period_end}})
    return report


def coding(ctx: ReportContext, system_id: str, code: str) -> dict[str, str]:
    out = {"system": CS_BASE + system_id, "code": code}
    display = ctx.displays.get(system_id, {}).get(code)
    if display:
        out["display"] = display
    return out


def _population(code: str, count: int, subject_results: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"code": {"coding": [{"system": POPULATION_SYSTEM, "code": code}]}, "count": count}
    if subject_results:
        out["subjectResults"] = {"reference": subject_results}
    return out


def populations(initial: int, numerator: int, lists: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Initial population, denominator (= initial population) and numerator; `lists` names the List of
    each population's subjects (subject-list reports)."""
    lists = lists or {}
    return [_population(INITIAL, initial, lists.get(INITIAL)), _population(DENOMINATOR, initial, lists.get(DENOMINATOR)),
            _population(NUMERATOR, numerator, lists.get(NUMERATOR))]


def _score(numerator: int, denominator: int) -> dict[str, Any]:
    return {"measureScore": {"value": round(numerator / denominator, 6)}} if denominator else {}


def money(cents: int | Decimal, currency: str) -> dict[str, Any]:
    return {"url": SD_BASE + "estimated-annual-impact",
            "valueMoney": {"value": float(Decimal(cents) / 100), "currency": currency}}


def _stratum_value(ctx: ReportContext, stratifier: str, code: str | None) -> dict[str, Any]:
    if code is None:
        return {"coding": [{"system": ABSENT_SYSTEM, "code": "unknown", "display": "Unknown"}]}
    if stratifier not in STRATUM_SYSTEMS:  # values without a code system: lines of business, plan names
        return {"text": code}
    return {"coding": [coding(ctx, STRATUM_SYSTEMS[stratifier], code)]}


def _stratum(ctx: ReportContext, stratifier: str, s: Stratum) -> dict[str, Any]:
    if isinstance(s.value, tuple):
        where = {"component": [{"code": {"text": name}, "value": _stratum_value(ctx, name, code)}
                               for name, code in zip(COMPONENTS[stratifier], s.value)]}
    else:
        where = {"value": _stratum_value(ctx, stratifier, s.value)}
    return {**where, "population": populations(s.initial, s.numerator), **_score(s.numerator, s.initial)}


def _stratifier(ctx: ReportContext, sid: str, strata: list[Stratum]) -> dict[str, Any]:
    out: dict[str, Any] = {"code": [{"text": sid}]}
    if strata:  # FHIR has no empty arrays
        out["stratum"] = [_stratum(ctx, sid, s) for s in strata]
    return out


def population_report(ctx: ReportContext, summary: Summary, currency: str,
                      lists: dict[str, str] | None = None) -> dict[str, Any]:
    """A summary report, or the counts of a subject-list report (`lists`: population → List reference)."""
    extensions = [] if summary.impact_cents is None else [money(summary.impact_cents, currency)]
    report = head(ctx, extensions)
    report["group"] = [{
        "id": ctx.measure,
        "population": populations(summary.initial, summary.numerator, lists),
        **_score(summary.numerator, summary.initial),
        "stratifier": [_stratifier(ctx, sid, strata) for sid, strata in summary.stratifiers.items()],
    }]
    return report


# -- individual ------------------------------------------------------------------------------------------

def _finding_extensions(ctx: ReportContext, finding: Finding) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"url": SD_BASE + "alignment-status", "valueCode": finding.status}]
    if finding.kind:
        out.append({"url": SD_BASE + "alignment-kind", "valueCode": finding.kind})
    if finding.enrolled_product:
        out.append({"url": SD_BASE + "enrolled-product", "valueCoding": coding(ctx, "product", finding.enrolled_product)})
    if finding.recommended_product:
        out.append({"url": SD_BASE + "recommended-product",
                    "valueCoding": coding(ctx, "product", finding.recommended_product)})
    if finding.annual_impact is not None:
        out.append(money(finding.annual_impact * 100, finding.currency))
    out += [{"url": SD_BASE + "alignment-reason", "valueCoding": coding(ctx, "alignment-reason", code)}
            for code in finding.reasons]
    return out


def _references(refs: Iterable[str], groups: dict[str, list[str]] | None = None) -> list[dict[str, Any]]:
    out = []
    for ref in dict.fromkeys(refs):
        entry: dict[str, Any] = {"reference": ref}
        supported = (groups or {}).get(ref)
        if supported:
            entry["extension"] = [{"url": RA + "StructureDefinition/ra-groupReference", "valueString": g}
                                  for g in supported]
        out.append(entry)
    return out


def alignment_individual(ctx: ReportContext, finding: Finding) -> dict[str, Any]:
    """`product-alignment` for one member: the populations, then one group per qualifying diagnosis
    category met (SPEC §4.3), whose evidence is the `evaluatedResource` entries naming it in
    `ra-groupReference`; evidence = qualifying diagnoses and the coverages read."""
    report = head(ctx, _finding_extensions(ctx, finding))
    covered = int(finding.status != "not-evaluable")
    report["group"] = [{"id": ctx.measure,
                        "population": populations(covered, int(finding.status == "misaligned"))}]
    qualifying = [e for e in finding.evidence if e.qualifying]
    groups: dict[str, list[str]] = {}
    for category in finding.categories:
        report["group"].append({"id": category.category,
                                "code": {"coding": [coding(ctx, "diagnosis-category", category.category)]}})
        for e in qualifying:
            if e.category == category.category:
                groups.setdefault(e.reference, []).append(category.category)
    refs = [e.reference for e in qualifying] + [c.reference for c in finding.coverages]
    refs += [plan_reference(p) for p in (finding.recommended_plan, finding.enrolled_plan) if p]
    evaluated = _references(refs, groups)
    if evaluated:
        report["evaluatedResource"] = evaluated
    return report


def _gap_group(ctx: ReportContext, category: str, evidence: list[Evidence], as_of: str) -> dict[str, Any]:
    codes = dict.fromkeys((e.system, e.code) for e in evidence if e.code)
    extensions = [
        {"url": RA + "StructureDefinition/ra-ccType",
         "valueCodeableConcept": {"coding": [{"system": RA + "CodeSystem/cc-type", "code": "suspected"}]}},
        {"url": RA + "StructureDefinition/ra-evidenceStatus",
         "valueCodeableConcept": {"coding": [{"system": RA + "CodeSystem/evidence-status", "code": "open-gap"}]}},
        {"url": RA + "StructureDefinition/ra-evidenceStatusDate", "valueDate": as_of},
        *({"url": RA + "StructureDefinition/ra-dxCode",
           "valueCodeableConcept": {"coding": [{**({"system": s} if s else {}), "code": c}]}} for s, c in codes),
    ]
    return {"id": category, "extension": extensions,
            "code": {"coding": [coding(ctx, "diagnosis-category", category)]}}


def nonclaims_individual(ctx: ReportContext, finding: Finding, categories: tuple[str, ...]) -> dict[str, Any]:
    """`nonclaims-bh-dx` for one member: the populations, then one open coding gap per non-claims
    category with its clinical evidence."""
    report = head(ctx, _finding_extensions(ctx, finding))
    evidence = [e for e in finding.evidence if e.category in categories]
    has = any(c.category in categories for c in finding.categories)
    gaps = [c for c in finding.non_claims_categories if c in categories]
    report["group"] = [{"id": ctx.measure, "population": populations(int(has), int(bool(gaps)))}]
    groups: dict[str, list[str]] = {}
    for category in gaps:
        clinical = [e for e in evidence if e.category == category and e.source_kind == "clinical" and e.qualifying]
        report["group"].append(_gap_group(ctx, category, clinical, finding.as_of.isoformat()))
        for e in clinical:
            groups.setdefault(e.reference, []).append(category)
    evaluated = _references((e.reference for e in evidence), groups)
    if evaluated:
        report["evaluatedResource"] = evaluated
    return report
