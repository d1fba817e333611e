"""Building members over HTTP and reading their alignment findings back, for the alignment tests.

Test servers evaluate as of today (UTC), so every date here is relative to `TODAY`.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import httpx
import pytest

from server.synth import MEMBER_SYSTEM
from server.alignment.window import months_before, years_before
from tests.support.servers import (
    BackendToken,
    ClientKey,
    drop_schema,
    http_client,
    postgres_schema_url,
    start_server,
    stop_server,
    unique,
    write_clients_file,
)

TODAY = datetime.now(tz=timezone.utc).date()
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
ICD_OID = "urn:oid:2.16.840.1.113883.6.90"
SCT = "http://snomed.info/sct"
SOPT = "https://nahdo.org/sopt"
DUAL_EXT = "https://planfit.dev/fhir/StructureDefinition/dual-status-code"
HARP_EXT = "https://planfit.dev/fhir/StructureDefinition/ny-harp-status"
OPWDD_EXT = "https://planfit.dev/fhir/StructureDefinition/opwdd-participation"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"


def days_ago(days: int) -> str:
    return (TODAY - timedelta(days=days)).isoformat()


def months_ago(months: int) -> str:
    return months_before(TODAY, months).isoformat()


def born(years: int, days_later: int = 0) -> date:
    """Birth date of someone `years` old today, or turning `years` `days_later` days from now."""
    return years_before(TODAY, years) + timedelta(days=days_later)


def _created(c: httpx.Client, resource: dict[str, Any]) -> str:
    r = c.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def patient(c: httpx.Client, birth: date, *, harp: str | None = None, opwdd: bool = False,
            state: str | None = None, postal_code: str | None = None) -> str:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:alignment", "value": unique("member")}],
        "birthDate": birth.isoformat(),
    }
    if state or postal_code:
        resource["address"] = [{"use": "home", **({"state": state} if state else {}),
                                **({"postalCode": postal_code} if postal_code else {})}]
    extensions = ([{"url": HARP_EXT, "valueCode": harp}] if harp else []) + (
        [{"url": OPWDD_EXT, "valueBoolean": True}] if opwdd else [])
    if extensions:
        resource["extension"] = extensions
    return _created(c, resource)


def coverage(c: httpx.Client, pid: str, *, plan: str | None = None, sopt: str | None = None,
             dual: str | None = None, status: str = "active", start: str | None = None, end: str | None = None,
             harp: str | None = None, aid_category: str | None = None,
             extensions: list[dict[str, Any]] | None = None) -> str:
    resource: dict[str, Any] = {
        "resourceType": "Coverage",
        "status": status,
        "beneficiary": {"reference": f"Patient/{pid}"},
        "payor": [{"display": "Test plan"}],
        "period": {"start": start or months_ago(30)},
    }
    if end:
        resource["period"]["end"] = end
    classes = [(code, value) for code, value in (("plan", plan), ("class", aid_category)) if value]
    if classes:  # the Medicaid aid category is the `class` of type `class` (search parameter aid-category)
        resource["class"] = [{"type": {"coding": [{"system": COVERAGE_CLASS, "code": code}]}, "value": value}
                             for code, value in classes]

    if sopt:
        resource["type"] = {"coding": [{"system": SOPT, "code": sopt}]}
    extensions = ([{"url": DUAL_EXT, "valueCode": dual}] if dual else []) + (
        [{"url": HARP_EXT, "valueCode": harp}] if harp else []) + (extensions or [])
    if extensions:
        resource["extension"] = extensions
    return _created(c, resource)


def refused_then_committed(c: httpx.Client, entries: list[dict[str, Any]], pid: str,
                           rows: Callable[[], list]) -> tuple[list, list]:
    """Post `entries` as a transaction Bundle twice: first with an update of Patient `pid` whose version
    precondition fails (the whole transaction refused, 412), then alone (committed); `rows()` read after each."""
    failing = {"resource": {"resourceType": "Patient", "id": pid, "birthDate": "1980-01-01"},
               "request": {"method": "PUT", "url": f"Patient/{pid}", "ifMatch": 'W/"99"'}}
    read = []
    for bundle_entries, status in (([*entries, failing], 412), (entries, 200)):
        r = c.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": bundle_entries})
        assert r.status_code == status, r.text
        read.append(rows())
    return read[0], read[1]


def condition_resource(pid: str, codings: list[tuple[str, str]], *, recorded: str | None = None,
                       verification: str = "confirmed", clinical: str = "active",
                       abated: str | None = None, category: str | None = None) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": CLINICAL_STATUS, "code": clinical}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION, "code": verification}]},
        "code": {"coding": [{"system": s, "code": code} for s, code in codings]},
        "subject": {"reference": f"Patient/{pid}"},
        "recordedDate": recorded or days_ago(30),
    }
    if verification == "entered-in-error":
        del resource["clinicalStatus"]  # FHIR con-5: no clinical status on an entry made in error
    if abated:
        resource["abatementDateTime"] = abated
    if category:
        resource["category"] = [{"coding": [{"system": CONDITION_CATEGORY, "code": category}]}]
    return resource


def condition(c: httpx.Client, pid: str, codings: list[tuple[str, str]], **kwargs: Any) -> str:
    return _created(c, condition_resource(pid, codings, **kwargs))


def claim(c: httpx.Client, pid: str, *, codes: Sequence[tuple[str, str]] = (), references: Sequence[str] = (),
          day: str | None = None, status: str = "active", rtype: str = "Claim", end: str | None = None,
          items: Sequence[dict[str, Any]] = (), kind: str = "professional") -> str:
    """A claim dated `day` (through `end`), with diagnoses and, optionally, service lines `items`."""
    day = day or days_ago(20)
    diagnosis = [{"sequence": i + 1, "diagnosisCodeableConcept": {"coding": [{"system": s, "code": code}]}}
                 for i, (s, code) in enumerate(codes)]
    diagnosis += [{"sequence": len(diagnosis) + i + 1, "diagnosisReference": {"reference": f"Condition/{ref}"}}
                  for i, ref in enumerate(references)]
    resource: dict[str, Any] = {
        "resourceType": rtype,
        "status": status,
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": kind}]},
        "use": "claim",
        "patient": {"reference": f"Patient/{pid}"},
        "billablePeriod": {"start": day, "end": end or day},
        "created": day,
        "provider": {"display": "Test provider"},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Test coverage"}}],
    }
    if diagnosis:
        resource["diagnosis"] = diagnosis
    if items:
        resource["item"] = [{"sequence": i + 1, **item} for i, item in enumerate(items)]
    if rtype == "Claim":
        resource["priority"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority",
                                            "code": "normal"}]}
    else:
        resource.update({"outcome": "complete", "insurer": {"display": "Test plan"},
                         "insurance": [{"focal": True, "coverage": {"display": "Test coverage"}}]})
    return _created(c, resource)


@dataclass
class Finding:
    """A member's `$alignment` Parameters, read into plain values."""

    raw: dict[str, Any]
    status: str = ""
    kind: str | None = None
    evaluation_date: str = ""
    age: int | None = None
    enrolled: str | None = None
    recommended: str | None = None
    dual_level: str | None = None
    enrolled_plan: str | None = None  # the InsurancePlan reference naming the enrolled product
    recommended_plan: str | None = None
    impact: float | None = None
    reasons: list[str] = field(default_factory=list)
    eligible: dict[str, list[tuple[str, str, list[str]]]] = field(default_factory=dict)  # product → criteria
    non_claims: list[str] = field(default_factory=list)
    categories: dict[str, dict[str, Any]] = field(default_factory=dict)
    coverages: list[dict[str, Any]] = field(default_factory=list)

    def criteria(self, product: str) -> set[tuple[str, str]]:
        return {(name, value) for name, value, _ in self.eligible[product]}

    def evidence(self, category: str) -> list[dict[str, Any]]:
        return self.categories[category]["evidence"]


def _value(param: dict[str, Any]) -> Any:
    return next(v for k, v in param.items() if k.startswith("value"))


def _parts(param: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(p["name"], p) for p in param.get("part", [])]


def read_finding(body: dict[str, Any]) -> Finding:
    f = Finding(raw=body)
    for p in body["parameter"]:
        name = p["name"]
        if name in ("status", "kind", "age", "evaluationDate"):
            setattr(f, {"evaluationDate": "evaluation_date"}.get(name, name), _value(p))
        elif name in ("enrolledProduct", "recommendedProduct", "dualLevel"):
            setattr(f, {"enrolledProduct": "enrolled", "recommendedProduct": "recommended",
                        "dualLevel": "dual_level"}[name], _value(p))
        elif name in ("enrolledPlan", "recommendedPlan"):
            setattr(f, {"enrolledPlan": "enrolled_plan", "recommendedPlan": "recommended_plan"}[name],
                    _value(p)["reference"])
        elif name == "estimatedAnnualImpact":
            f.impact = p["valueMoney"]["value"]
        elif name == "reason":
            f.reasons.append(_value(p))
        elif name == "nonClaimsCategory":
            f.non_claims.append(_value(p))
        elif name == "eligibleProduct":
            parts = _parts(p)
            product = next(_value(x) for n, x in parts if n == "product")
            f.eligible[product] = [
                (_value(dict(_parts(x))["name"]), _value(dict(_parts(x))["value"]),
                 [_value(e)["reference"] for n, e in _parts(x) if n == "evidence"])
                for n, x in parts if n == "criterion"
            ]
        elif name == "category":
            parts = _parts(p)
            code = next(_value(x) for n, x in parts if n == "code")
            f.categories[code] = {n: _value(x) for n, x in parts if n in ("clinical", "claims", "nonClaims")}
            f.categories[code]["evidence"] = [
                {n: (_value(v)["reference"] if n == "resource" else _value(v)) for n, v in _parts(x)}
                for n, x in parts if n == "evidence"
            ]
        elif name == "coverage":
            f.coverages.append({n: (_value(v)["reference"] if n == "resource" else _value(v)) for n, v in _parts(p)})
    return f


def finding(c: httpx.Client, pid: str) -> Finding:
    r = c.get(f"/Patient/{pid}/$alignment")
    assert r.status_code == 200, r.text
    found = read_finding(r.json())
    if found.evaluation_date != TODAY.isoformat():
        pytest.skip("the UTC date changed while the test ran; its dates are relative to the old one")
    return found


# ---- synthetic populations ------------------------------------------------------------------------


def post_bundles(c: httpx.Client, directory: Path) -> None:
    """Post every bundle of a synthetic population's feed folder, in order; each must succeed."""
    for path in sorted(directory.glob("bundle-*.json")):
        r = c.post("", content=path.read_bytes(), timeout=600)
        assert r.status_code == 200, r.text[:2000]


def member_ids(c: httpx.Client, system: str = MEMBER_SYSTEM, rtype: str = "Patient") -> dict[str, str]:
    """Member (or other resource) identifier → resource id, paging through the search."""
    ids: dict[str, str] = {}
    url = f"/{rtype}?identifier={system}|&_count=1000"
    while url:
        bundle = c.get(url).json()
        for entry in bundle.get("entry", []):
            resource = entry["resource"]
            if resource["resourceType"] == rtype:
                ids[resource["identifier"][0]["value"]] = resource["id"]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    return ids


@contextmanager
def own_server(kind: str, work: Path, keys: tuple[ClientKey, ClientKey],
               env: dict[str, str] | None = None) -> Iterator[tuple[str, str]]:
    """A server of its own on `kind` ("sqlite" or "postgres"), for tests that change server-wide state
    (the mappings, the plan catalogue): yields (url, database url)."""
    schema = None
    if kind == "sqlite":
        database = f"sqlite:///{work / 'planfit.db'}"
    else:
        schema, database = postgres_schema_url()
    env = {"PLANFIT_CLIENTS_FILE": str(write_clients_file(work / "clients.json", *keys)), **(env or {})}
    process, url = start_server(database, work / "server.log", env)
    try:
        yield url, database
    finally:
        stop_server(process)
        if schema:
            drop_schema(schema)


def fhir_client(url: str, key: ClientKey, scope: str = "system/*.cruds") -> httpx.Client:
    return http_client(base_url=url + "/fhir", timeout=60, headers={"Content-Type": "application/fhir+json"},
                       auth=BackendToken(url + "/auth/token", key, scope))
