"""Transaction and batch bundles over real HTTP, and the shared real-world test data."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path

import pytest

from server.fhir.versions import SOURCE_KIND_SYSTEM
from tests.support.servers import SHARED, unique
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)

SYNTHEA = sorted((SHARED / "testdata" / "synthea-r4").glob("*.json"))
HL7_EXAMPLES = sorted((SHARED / "testdata" / "hl7-examples").glob("*/*.json"))


def member_bundle(tag: str) -> dict:
    """Patient + Coverage + Condition + Claim, linked only by urn:uuid (nested references too)."""
    p, cov, cond, claim = (f"urn:uuid:{uuid.uuid4()}" for _ in range(4))
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": claim,
                "resource": {
                    "resourceType": "Claim",
                    "identifier": [{"system": "urn:test:claim", "value": tag}],
                    "status": "active",
                    "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
                    "use": "claim",
                    "patient": {"reference": p},
                    "created": "2025-05-01",
                    "provider": {"display": "Clinic"},
                    "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
                    "diagnosis": [{"sequence": 1, "diagnosisReference": {"reference": cond}}],
                    "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": cov}}],
                },
                "request": {"method": "POST", "url": "Claim"},
            },
            {
                "fullUrl": cond,
                "resource": {
                    "resourceType": "Condition",
                    "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F20.9"}]},
                    "subject": {"reference": p},
                },
                "request": {"method": "POST", "url": "Condition"},
            },
            {
                "fullUrl": cov,
                "resource": {
                    "resourceType": "Coverage",
                    "status": "active",
                    "beneficiary": {"reference": p},
                    "payor": [{"display": "NY Medicaid"}],
                },
                "request": {"method": "POST", "url": "Coverage"},
            },
            {
                "fullUrl": p,
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [{"system": "urn:test:mrn", "value": tag}],
                    "name": [{"family": "Linked"}],
                },
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier=urn:test:mrn|{tag}"},
            },
        ],
    }


def post_bundle(client, bundle: dict):
    return client.post("", json=bundle)


def written(entry: dict) -> str:
    """`Type/id` of what a response entry wrote: its Location without the `_history` part."""
    return entry["response"]["location"].split("/_history")[0]


def test_transaction_links_everything(client):
    tag = unique()
    r = post_bundle(client, member_bundle(tag))
    assert r.status_code == 200, r.text
    resp = r.json()
    assert resp["type"] == "transaction-response"
    entries = resp["entry"]
    assert len(entries) == 4
    for e in entries:
        assert e["response"]["status"] == "201 Created"
        assert e["response"]["etag"] == 'W/"1"'
        assert "/_history/1" in e["response"]["location"]
    claim_loc, cond_loc, cov_loc, pat_loc = (written(e) for e in entries)
    claim = client.get(f"/{claim_loc}").json()
    assert claim["patient"]["reference"] == pat_loc
    assert claim["diagnosis"][0]["diagnosisReference"]["reference"] == cond_loc
    assert claim["insurance"][0]["coverage"]["reference"] == cov_loc
    assert client.get(f"/{cov_loc}").json()["beneficiary"]["reference"] == pat_loc
    assert client.get(f"/{cond_loc}").json()["subject"]["reference"] == pat_loc
    # One Provenance targets everything the transaction wrote.
    prov = client.get("/Provenance", params={"target": claim_loc}).json()
    assert prov["total"] == 1
    targets = {t["reference"].split("/_history")[0] for t in prov["entry"][0]["resource"]["target"]}
    assert targets == {claim_loc, cond_loc, cov_loc, pat_loc}
    # meta.source is stamped on every write.
    assert client.get(f"/{claim_loc}").json()["meta"]["source"]


def test_conditional_create_in_bundle_is_idempotent(client):
    tag = unique()
    first = post_bundle(client, member_bundle(tag)).json()
    second = post_bundle(client, member_bundle(tag)).json()
    assert first["entry"][3]["response"]["location"] == second["entry"][3]["response"]["location"]
    assert second["entry"][3]["response"]["status"] == "200 OK"
    patients = client.get("/Patient", params={"identifier": f"urn:test:mrn|{tag}"}).json()
    assert patients["total"] == 1
    # The second bundle's claim points at the existing patient.
    claim_loc = written(second["entry"][0])
    assert client.get(f"/{claim_loc}").json()["patient"]["reference"] == written(first["entry"][3])


def test_conditional_create_in_bundle_ignores_deleted_and_updated_away_matches(client):
    """The batched `ifNoneExist` lookup matches only current versions: not a deleted resource, and not one
    whose identifier an update changed."""
    deleted_tag, moved_tag = unique(), unique()
    gone = written(post_bundle(client, member_bundle(deleted_tag)).json()["entry"][3])
    assert client.delete(f"/{gone}").status_code in (200, 204)
    moved = written(post_bundle(client, member_bundle(moved_tag)).json()["entry"][3])
    patient = client.get(f"/{moved}").json()
    patient["identifier"][0]["value"] = unique()
    assert client.put(f"/{moved}", json=patient).status_code == 200
    for tag, old in ((deleted_tag, gone), (moved_tag, moved)):
        again = post_bundle(client, member_bundle(tag))
        assert again.status_code == 200, again.text
        entry = again.json()["entry"][3]
        assert entry["response"]["status"] == "201 Created"
        assert written(entry) != old


def test_failing_entry_rolls_back_everything(client):
    tag = unique()
    bundle = member_bundle(tag)
    bundle["entry"].append(
        {"request": {"method": "PUT", "url": "Patient/nonexistent-xyz"}, "resource": {"resourceType": "Patient", "id": "nonexistent-xyz"}}
    )
    bundle["entry"][-1]["request"]["ifMatch"] = 'W/"4"'
    r = post_bundle(client, bundle)
    assert r.status_code == 412
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "Entry 4" in outcome["issue"][0]["diagnostics"]
    assert outcome["issue"][0]["expression"] == ["Bundle.entry[4]"]
    assert client.get("/Patient", params={"identifier": f"urn:test:mrn|{tag}"}).json()["total"] == 0
    assert client.get("/Claim", params={"identifier": f"urn:test:claim|{tag}"}).json()["total"] == 0


def test_invalid_resource_in_transaction_names_entry(client):
    bundle = member_bundle(unique())
    bundle["entry"][1]["resource"]["onsetDateTime"] = "2020-13-01"
    r = post_bundle(client, bundle)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.Condition.onsetDateTime"]


def test_unresolvable_urn_and_duplicate_fullurl(client):
    bundle = member_bundle(unique())
    bundle["entry"][1]["resource"]["subject"]["reference"] = "urn:uuid:2b4e5e0e-0000-4000-8000-000000000000"
    assert post_bundle(client, bundle).status_code == 400
    bundle = member_bundle(unique())
    bundle["entry"][2]["fullUrl"] = bundle["entry"][1]["fullUrl"]
    r = post_bundle(client, bundle)
    assert r.status_code == 400 and "Duplicate fullUrl" in r.json()["issue"][0]["diagnostics"]


def test_processing_order_delete_post_put_get(client):
    tag = unique()
    old = client.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": "urn:test:mrn", "value": tag}]}).json()["id"]
    put_id = unique("put")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "GET", "url": f"Patient?identifier=urn:test:mrn|{tag}"}},
            {"resource": {"resourceType": "Patient", "id": put_id, "identifier": [{"system": "urn:test:mrn", "value": tag}]},
             "request": {"method": "PUT", "url": f"Patient/{put_id}"}},
            {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:test:mrn", "value": tag}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "DELETE", "url": f"Patient/{old}"}},
        ],
    }
    r = post_bundle(client, bundle)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["200 OK", "201 Created", "201 Created", "204 No Content"]
    # GET ran last: it sees the PUT and POST and not the deleted one.
    found = {e["resource"]["id"] for e in entries[0]["resource"]["entry"]}
    assert put_id in found and old not in found and len(found) == 2


def test_batch_reports_each_entry(client):
    tag = unique()
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": {"resourceType": "Patient", "identifier": [{"system": "urn:test:mrn", "value": tag}]},
             "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "gender": "bogus"}, "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": f"Patient/{unique('missing')}"}},
            {"request": {"method": "GET", "url": f"Patient?identifier=urn:test:mrn|{tag}"}},
        ],
    }
    r = post_bundle(client, bundle)
    assert r.status_code == 200
    entries = r.json()["entry"]
    assert r.json()["type"] == "batch-response"
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"] == "400 Bad Request"
    assert entries[1]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert entries[2]["response"]["status"] == "404 Not Found"
    assert entries[3]["resource"]["total"] == 1


def test_bundle_errors(client):
    assert client.post("", json={"resourceType": "Patient"}).status_code == 400
    assert client.post("", json={"resourceType": "Bundle", "type": "collection"}).status_code == 400
    r = client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "PATCH", "url": "Patient/1"}}]})
    assert r.status_code == 400


def _expected_after_rewrite(resource: dict, mapping: dict[str, str]) -> dict:
    expected = copy.deepcopy(resource)

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("reference"), str) and node["reference"] in mapping:
                node["reference"] = mapping[node["reference"]]
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(expected)
    return expected


def _without_server_fields(resource: dict) -> dict:
    out = {k: v for k, v in resource.items() if k not in ("id", "meta")}
    meta = {k: v for k, v in (resource.get("meta") or {}).items() if k not in ("versionId", "lastUpdated", "source")}
    tags = [t for t in meta.get("tag", []) if t.get("system") != SOURCE_KIND_SYSTEM]
    meta.pop("tag", None)
    if tags:
        meta["tag"] = tags
    if meta:
        out["meta"] = meta
    return out


@pytest.mark.parametrize("path", SYNTHEA, ids=lambda p: p.name[:20])
def test_synthea_bundles_load_and_read_back_unchanged(client, path: Path):
    bundle = json.loads(path.read_text())
    r = post_bundle(client, bundle)
    assert r.status_code == 200, r.text[:2000]
    responses = r.json()["entry"]
    assert len(responses) == len(bundle["entry"])
    mapping = {
        e["fullUrl"]: written(resp) for e, resp in zip(bundle["entry"], responses)
    }
    for entry, resp in list(zip(bundle["entry"], responses))[:: max(1, len(responses) // 40)]:
        location = written(resp)
        stored = client.get(f"/{location}").json()
        assert _without_server_fields(stored) == _without_server_fields(_expected_after_rewrite(entry["resource"], mapping))


# IG examples that are not valid R4 (they follow later FHIR versions); each must be refused, naming the element.
INVALID_R4_EXAMPLES = {
    "MeasureReport-indv-measurereport01.json": "MeasureReport.group[0].measureScore",  # a number, not a Quantity
    "MeasureReport-summ-measurereport01.json": "MeasureReport.group[0].stratifier[0].code",  # an object, not an array
}


@pytest.mark.parametrize("path", HL7_EXAMPLES, ids=lambda p: f"{p.parent.name}/{p.name}"[:60])
def test_hl7_examples_store_and_read_back(client, path: Path):
    resource = json.loads(path.read_text())
    if path.name in INVALID_R4_EXAMPLES:
        r = client.post(f"/{resource['resourceType']}", json=resource)
        assert r.status_code == 400
        assert [INVALID_R4_EXAMPLES[path.name]] in [i.get("expression") for i in r.json()["issue"]]
        return
    if resource["resourceType"] == "Bundle" and resource.get("type") in ("transaction", "batch"):
        r = post_bundle(client, resource)
        assert r.status_code == 200, r.text[:2000]
        assert all(e["response"]["status"][:1] == "2" for e in r.json()["entry"])
        return
    rid = resource.get("id") or unique("ex")
    r = client.put(f"/{resource['resourceType']}/{rid}", json={**resource, "id": rid})
    assert r.status_code in (200, 201), r.text[:2000]
    stored = client.get(f"/{resource['resourceType']}/{rid}").json()
    assert _without_server_fields(stored) == _without_server_fields(resource)
