"""Da Vinci Risk Adjustment 2.1 resources: the RA Model Measures PlanFit publishes, and a member's
Coding Gap MeasureReport (`ra-measurereport`) and report Bundle (`ra-measurereport-bundle`).

Profiles and code systems: http://hl7.org/fhir/us/davinci-ra/ (STU 2.1; IG source github.com/HL7/davinci-ra,
input/resources/StructureDefinition-ra-measurereport.xml and input/fsh/CS-CodeSystems.fsh, read
2026-12-03; reference/standards.md §5.3). One report per member, payment year and model version; one
group per condition category (system http://terminology.hl7.org/CodeSystem/cmshcc, version = the
model version), no populations; the evidence as `evaluatedResource`, each tagged with the group it
supports (`ra-groupReference`).
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timezone
from typing import Any

from server.risk.model import MODEL_NAMES, PaymentYear
from server.risk.results import Category, MemberRisk
from server.risk.scores import diagnosis_year

RA = "http://hl7.org/fhir/us/davinci-ra"
SD = f"{RA}/StructureDefinition/"
CS = f"{RA}/CodeSystem/"
CMSHCC = "http://terminology.hl7.org/CodeSystem/cmshcc"
CATEGORY_EXT = "http://hl7.org/fhir/StructureDefinition/measurereport-category"
CATEGORY_SYSTEM = "http://hl7.org/fhir/CodeSystem/measurereport-category"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
MEASURE_BASE = "https://planfit.dev/fhir/Measure/"
REPORTER = {"resourceType": "Organization", "id": "planfit", "active": True, "name": "PlanFit",
            "meta": {"profile": ["http://hl7.org/fhir/us/core/StructureDefinition/us-core-organization"]}}


def measure_id(version: str, payment_year: int) -> str:
    return f"ra-cms-hcc-v{version}-py{payment_year}"


REPORT_PREFIX = "ra-v"


def report_id(patient_id: str, version: str, payment_year: int) -> str:
    """Deterministic (one stored report per member, model and payment year) and within FHIR's 64 characters."""
    digest = hashlib.sha256(patient_id.encode()).hexdigest()[:32]
    return f"{REPORT_PREFIX}{version}-{payment_year}-{digest}"


def model_measures(years: list[PaymentYear]) -> list[dict[str, Any]]:
    """One RA Model Measure (`ra-model-measure`) per model version and payment year configured."""
    out = []
    for py in years:
        for m in py.models:
            mid = measure_id(m.version, py.year)
            out.append({
                "resourceType": "Measure",
                "id": mid,
                "meta": {"profile": [f"{SD}ra-model-measure"]},
                "url": MEASURE_BASE + mid,
                "identifier": [{"system": "https://planfit.dev/fhir/risk-model", "value": f"CMS-HCC-V{m.version}-PY{py.year}"}],
                "version": m.version,
                "name": f"RACmsHccV{m.version}PY{py.year}",
                "title": f"{MODEL_NAMES[m.version]} for payment year {py.year}",
                "status": "active",
                "experimental": False,
                "publisher": "PlanFit",
                "description": (f"CMS-HCC version {m.version} risk adjustment model, payment year {py.year} "
                                f"(diagnoses of {diagnosis_year(py.year)}), weight {m.weight} in the year's blend, "
                                f"normalisation {m.normalization}, coding intensity {py.coding_intensity}. "
                                f"Source: {py.source}"),
                "effectivePeriod": {"start": f"{py.year}-01-01", "end": f"{py.year}-12-31"},
            })
    return out


def _coded(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _day(us: int) -> str:
    return datetime.fromtimestamp(us / 1_000_000, tz=timezone.utc).date().isoformat()


def _group(category: Category, today: date) -> dict[str, Any]:
    current = [e for e in category.evidence if not e.prior]
    claims = [e for e in current if e.source_kind == "claims" and not e.pending]
    status_date = (min(e.date_lo for e in claims) if category.evidence_status == "closed-gap" and claims
                   else max((e.date_lo for e in category.evidence), default=None))
    display = category.label or f"HCC {category.cc}"
    extensions = [
        {"url": f"{SD}ra-ccType", "valueCodeableConcept": _coded(f"{CS}cc-type", category.cc_type)},
        {"url": f"{SD}ra-evidenceStatus", "valueCodeableConcept": _coded(f"{CS}evidence-status", category.evidence_status)},
        {"url": f"{SD}ra-evidenceStatusDate", "valueDate": _day(status_date) if status_date else today.isoformat()},
        {"url": f"{SD}ra-hierarchicalStatus", "valueCodeableConcept": _coded(
            f"{CS}hierarchical-status", "applied-superseded" if category.superseded else "applied-not-superseded")},
    ]
    for icd in sorted({e.icd for e in category.evidence}):
        extensions.append({"url": f"{SD}ra-dxCode", "valueCodeableConcept": _coded(ICD10CM, _dotted(icd))})
    return {
        "id": group_id(category),
        "extension": extensions,
        "code": {"coding": [{"system": CMSHCC, "version": category.version, "code": category.cc, "display": display}],
                 "text": f"HCC {category.cc}: {display}"},
    }


def _dotted(icd: str) -> str:
    return icd if len(icd) <= 3 else f"{icd[:3]}.{icd[3:]}"


def group_id(category: Category) -> str:
    return f"hcc-{category.cc}"


def coding_gap_report(risk: MemberRisk, version: str, today: date) -> dict[str, Any]:
    """The member's `ra-measurereport` for one model version of the payment year."""
    py = risk.payment_year
    year = diagnosis_year(py.year)
    categories = [c for c in risk.categories if c.version == version]
    evaluated: dict[str, list[str]] = {}
    for category in categories:
        for e in category.evidence:
            groups = evaluated.setdefault(e.reference, [])
            if group_id(category) not in groups:
                groups.append(group_id(category))
    report: dict[str, Any] = {
        "resourceType": "MeasureReport",
        "id": report_id(risk.patient_id, version, py.year),
        "meta": {"profile": [f"{SD}ra-measurereport"]},
        "extension": [{"url": CATEGORY_EXT, "valueCodeableConcept": _coded(CATEGORY_SYSTEM, "ra")}],
        "status": "complete",
        "type": "individual",
        "measure": MEASURE_BASE + measure_id(version, py.year),
        "subject": {"reference": f"Patient/{risk.patient_id}"},
        "date": today.isoformat(),
        "reporter": {"reference": f"Organization/{REPORTER['id']}"},
        "period": {"start": f"{year}-01-01", "end": f"{year}-12-31"},
    }
    if categories:
        report["group"] = [_group(c, today) for c in categories]
    if evaluated:
        report["evaluatedResource"] = [
            {"extension": [{"url": f"{SD}ra-groupReference", "valueString": g} for g in groups], "reference": ref}
            for ref, groups in evaluated.items()]
    return report


def report_bundle(patient: dict[str, Any], reports: list[dict[str, Any]], base: str) -> dict[str, Any]:
    """`ra-measurereport-bundle`: the Patient, then the member's reports."""
    entries = [{"fullUrl": f"{base}/Patient/{patient['id']}", "resource": patient}]
    entries += [{"fullUrl": f"{base}/MeasureReport/{r['id']}", "resource": r} for r in reports]
    return {"resourceType": "Bundle", "meta": {"profile": [f"{SD}ra-measurereport-bundle"]}, "type": "collection",
            "entry": entries}
