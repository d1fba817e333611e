"""Helpers of the roster tests: a small attributed population, consumer clients confined to their
organization's lists, and Parameters bodies for the ATR operations."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx

from tests.support.auth import backend_token, register_backend
from tests.support.servers import RunningServer

ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"
NPI = "http://hl7.org/fhir/sid/us-npi"
TIN = "urn:oid:2.16.840.1.113883.4.4"
MEMBER_SYSTEM = "urn:test:payer-member-id"
REASONS = "https://planfit.dev/fhir/CodeSystem/roster-decision-reason"
DECISION = "https://planfit.dev/fhir/StructureDefinition/roster-decision"
# What an ATR consumer needs: read the attributed data, manage its own organization's lists.
CONSUMER_READS = "system/Patient.rs system/Coverage.rs system/Practitioner.rs system/Organization.rs system/Condition.rs"


@dataclass
class Population:
    tag: str
    organization: str  # the provider organization (managingEntity of its lists)
    practitioner: str
    npi: str
    patients: list[str]  # Patient ids, in order
    member_ids: list[str]  # their payer member ids (on Coverage.identifier)


def make_population(client: httpx.Client, members: int) -> Population:
    """An Organization, a Practitioner with an NPI, and patients each with a Coverage carrying the payer
    member id (ATR: "Member Identifier in Coverage.identifier"), in one transaction with client ids."""
    tag = uuid.uuid4().hex[:10]
    org, prac, npi = f"org-{tag}", f"prac-{tag}", str(10**9 + int(tag[:6], 16) % 10**9)
    entries = [
        _put({"resourceType": "Organization", "id": org, "name": f"Clinic {tag}",
              "identifier": [{"system": TIN, "value": tag[:9]}]}),
        _put({"resourceType": "Practitioner", "id": prac, "identifier": [{"system": NPI, "value": npi}],
              "name": [{"family": f"Doc-{tag}"}]}),
    ]
    patients, member_ids = [], []
    for index in range(members):
        pid, mid = f"pat-{tag}-{index}", f"M{tag}{index:05d}"
        patients.append(pid)
        member_ids.append(mid)
        entries.append(_put({"resourceType": "Patient", "id": pid, "name": [{"family": f"Roster-{index}"}]}))
        entries.append(_put({"resourceType": "Coverage", "id": f"cov-{tag}-{index}", "status": "active",
                             "identifier": [{"system": MEMBER_SYSTEM, "value": mid}],
                             "beneficiary": {"reference": f"Patient/{pid}"},
                             "payor": [{"reference": f"Organization/{org}"}]}))
    r = client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200, r.text
    return Population(tag, org, prac, npi, patients, member_ids)


def _put(resource: dict) -> dict:
    return {"resource": resource, "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}}


def consumer_token(server: RunningServer, organization: str) -> str:
    """A Backend Services client entitled to the lists its organization manages, and no others."""
    scope = f"{CONSUMER_READS} system/Group.cruds?managing-entity=Organization/{organization}"
    key = register_backend(server, scope)
    return backend_token(server, key, scope)


def draft_group(population: Population, name: str | None = None) -> dict:
    return {
        "resourceType": "Group",
        "meta": {"profile": [ATR + "atr-group"]},
        "extension": [{"url": ATR + "ext-attributionListStatus", "valueCode": "draft"}],
        "identifier": [{"system": NPI, "value": population.npi},
                       {"system": "urn:test:contract", "value": f"contract-{population.tag}"}],
        "active": True, "type": "person", "actual": True,
        "name": name or f"Roster {population.tag}",
        "managingEntity": {"reference": f"Organization/{population.organization}"},
    }


def parameters(**values: object) -> dict:
    """A Parameters body; each keyword's value is a (value[x] key, value) pair."""
    return {"resourceType": "Parameters",
            "parameter": [{"name": name, kind: value} for name, (kind, value) in values.items()]}


def by_member_id(population: Population, index: int, **extra) -> dict:
    return parameters(memberId=("valueIdentifier", {"system": MEMBER_SYSTEM, "value": population.member_ids[index]}),
                      providerNpi=("valueIdentifier", {"system": NPI, "value": population.npi}), **extra)


def by_reference(population: Population, index: int, **extra) -> dict:
    return parameters(patientReference=("valueReference", {"reference": f"Patient/{population.patients[index]}"}),
                      providerReference=("valueReference", {"reference": f"Practitioner/{population.practitioner}"}),
                      **extra)


def members_of(group: dict) -> dict[str, dict]:
    """`Group.member` by patient id."""
    return {m["entity"]["reference"].split("/")[1]: m for m in group.get("member", [])}


def extension(element: dict, url: str) -> dict | None:
    return next((e for e in element.get("extension", []) if e["url"] == url), None)
