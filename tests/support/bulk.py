"""Helpers shared by the Bulk Data export tests: a small cohort, kick-off, polling, download."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import httpx

ICD = "http://hl7.org/fhir/sid/icd-10-cm"
COHORT_TYPES = ("Patient", "Coverage", "Condition", "Claim", "ExplanationOfBenefit")


@dataclass
class Cohort:
    tag: str
    group_id: str
    members: list[str]
    outsider: str
    # (type, id) of every resource created, per patient id.
    resources: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def member_entries(tag: str, index: int, conditions: int = 2) -> list[dict]:
    """Transaction entries for one patient: Patient, Coverage, Conditions, Claim, EOB, Encounter."""
    patient = _urn()
    coverage = _urn()
    identifier = [{"system": "urn:test:bulk", "value": f"{tag}-{index}"}]
    subject = {"reference": patient}
    resources = [
        (patient, {"resourceType": "Patient", "identifier": identifier, "name": [{"family": f"Bulk-{tag}-{index}"}]}),
        (coverage, {
            "resourceType": "Coverage", "identifier": identifier, "status": "active", "beneficiary": subject,
            "payor": [{"reference": "Organization/plan-1"}],
        }),
        (_urn(), {
            "resourceType": "Claim", "identifier": identifier, "status": "active",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
            "use": "claim", "patient": subject, "created": "2025-03-01", "provider": {"reference": "Organization/prov-1"},
            "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": coverage}}],
        }),
        (_urn(), {
            "resourceType": "ExplanationOfBenefit", "identifier": identifier, "status": "active",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
            "use": "claim", "patient": subject, "created": "2025-03-02", "insurer": {"reference": "Organization/plan-1"},
            "provider": {"reference": "Organization/prov-1"}, "outcome": "complete",
            "insurance": [{"focal": True, "coverage": {"reference": coverage}}],
        }),
        (_urn(), {"resourceType": "Encounter", "identifier": identifier, "status": "finished",
                  "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}, "subject": subject}),
    ]
    codes = ("F20.9", "E11.9", "F31.9", "I10")
    for number in range(conditions):
        resources.append((_urn(), {
            "resourceType": "Condition", "identifier": identifier, "subject": subject,
            "code": {"coding": [{"system": ICD, "code": codes[number % len(codes)]}]},
            "recordedDate": "2025-02-01",
        }))
    return [
        {"fullUrl": url, "resource": body, "request": {"method": "POST", "url": body["resourceType"]}}
        for url, body in resources
    ]


def post_transaction(client: httpx.Client, entries: list[dict]) -> list[tuple[str, str]]:
    r = client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200, r.text
    out = []
    for item in r.json()["entry"]:
        rtype, rid = item["response"]["location"].split("/_history/")[0].split("/")[-2:]
        out.append((rtype, rid))
    return [x for x in out if x[0] != "Provenance"]


def make_cohort(client: httpx.Client, members: int = 3, conditions: int = 2) -> Cohort:
    """`members` patients in a Group (plus a Practitioner member), and one patient outside it."""
    tag = uuid.uuid4().hex[:10]
    by_patient: dict[str, list[tuple[str, str]]] = {}
    for index in range(members + 1):
        created = post_transaction(client, member_entries(tag, index, conditions))
        by_patient[created[0][1]] = created
    patients = list(by_patient)
    group = client.post("/Group", json={
        "resourceType": "Group", "type": "person", "actual": True,
        "identifier": [{"system": "urn:test:bulk-group", "value": tag}],
        "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid in patients[:members]]
        + [{"entity": {"reference": "Practitioner/not-a-patient"}}],
    })
    assert group.status_code == 201, group.text
    return Cohort(tag, group.json()["id"], patients[:members], patients[members], by_patient)


def stored(client: httpx.Client, keys) -> dict[str, set[bytes]]:
    """The current stored bytes of each resource, per type (what a read returns)."""
    out: dict[str, set[bytes]] = {}
    for rtype, rid in keys:
        r = client.get(f"/{rtype}/{rid}")
        assert r.status_code == 200, r.text
        out.setdefault(rtype, set()).add(r.content)
    return out


def expected_lines(client: httpx.Client, cohort: Cohort, types=COHORT_TYPES, patients=None) -> dict[str, set[bytes]]:
    """What an export of these members (default: the cohort's) holds of these types: their stored bytes."""
    return stored(client, [k for p in (patients or cohort.members) for k in cohort.resources[p] if k[0] in types])


def kick_off(client: httpx.Client, path: str, params=None, prefer: str = "respond-async") -> httpx.Response:
    return client.get(path, params=params, headers={"Prefer": prefer, "Accept": "application/fhir+json"})


def wait_for(client: httpx.Client, status_url: str, timeout: float = 60) -> httpx.Response:
    """Poll as told (Retry-After) until the job is no longer in progress."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = client.get(status_url, headers={"Accept": "application/json"})
        if r.status_code != 202:
            return r
        assert r.headers["X-Progress"]
        time.sleep(float(r.headers["Retry-After"]))
    raise AssertionError("export did not finish in time")


def export(client: httpx.Client, path: str, params=None) -> dict:
    r = kick_off(client, path, params)
    assert r.status_code == 202, r.text
    done = wait_for(client, r.headers["Content-Location"])
    assert done.status_code == 200, done.text
    return done.json()


def download(client: httpx.Client, manifest: dict) -> dict[str, list[bytes]]:
    """Lines of every output file, per type; checks the counts the manifest states."""
    lines: dict[str, list[bytes]] = {}
    for item in manifest["output"]:
        r = client.get(item["url"], headers={"Accept": "application/fhir+ndjson"})
        assert r.status_code == 200, r.text
        assert r.headers["content-type"].startswith("application/fhir+ndjson")
        got = r.content.splitlines()
        assert len(got) == item["count"]
        lines.setdefault(item["type"], []).extend(got)
    return lines
