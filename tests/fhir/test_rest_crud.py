"""Read, vread, create, update, delete, conditional interactions and history over real HTTP."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from server.fhir.validation import validate_resource
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.reliability import pages
from tests.support.servers import unique


def patient(identifier: str, family: str = "Testperson", **extra) -> dict:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:test:mrn", "value": identifier}],
        "name": [{"family": family, "given": ["Ada"]}],
        "gender": "female",
        "birthDate": "1980-04-02",
        **extra,
    }


def test_metadata_lists_what_is_implemented(client):
    r = client.get("/metadata")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("application/fhir+json")
    cs = r.json()
    assert cs["resourceType"] == "CapabilityStatement" and cs["fhirVersion"] == "4.0.1"
    rest = cs["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "history-system"}
    by_type = {r["type"]: r for r in rest["resource"]}
    condition = by_type["Condition"]
    names = {p["name"] for p in condition["searchParam"]}
    assert {"patient", "subject", "code", "category", "clinical-status", "onset-date", "recorded-date", "_id", "_lastUpdated"} <= names
    assert {i["code"] for i in condition["interaction"]} >= {"read", "vread", "create", "update", "delete", "search-type"}
    assert "Condition:patient" in condition["searchInclude"]
    assert "Group" in by_type and "MeasureReport" in by_type
    # the statement is valid R4 itself: no empty arrays (Binary has no reference parameters to include)
    assert "searchInclude" not in by_type["Binary"]
    assert validate_resource(cs) == []


def test_create_read_vread_update_delete(client):
    ident = unique()
    r = client.post("/Patient", json=patient(ident))
    assert r.status_code == 201, r.text
    created = r.json()
    pid = created["id"]
    assert created["meta"]["versionId"] == "1"
    assert created["meta"]["source"]
    assert created["meta"]["lastUpdated"].endswith("Z")
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"].endswith(f"/Patient/{pid}/_history/1")

    r = client.get(f"/Patient/{pid}")
    assert r.status_code == 200 and r.json()["name"][0]["family"] == "Testperson"
    assert r.headers["etag"] == 'W/"1"'

    body = {**r.json(), "gender": "male"}
    r = client.put(f"/Patient/{pid}", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["meta"]["versionId"] == "2" and r.headers["etag"] == 'W/"2"'

    assert client.get(f"/Patient/{pid}/_history/1").json()["gender"] == "female"
    assert client.get(f"/Patient/{pid}/_history/2").json()["gender"] == "male"
    assert client.get(f"/Patient/{pid}/_history/9").status_code == 404

    r = client.delete(f"/Patient/{pid}")
    assert r.status_code in (200, 204)
    r = client.get(f"/Patient/{pid}")
    assert r.status_code == 410
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get(f"/Patient/{pid}/_history/2").status_code == 200
    assert client.get(f"/Patient/{pid}/_history/3").status_code == 410

    hist = client.get(f"/Patient/{pid}/_history").json()
    assert hist["type"] == "history" and hist["total"] == 3
    assert [e["request"]["method"] for e in hist["entry"]] == ["DELETE", "PUT", "POST"]
    assert "resource" not in hist["entry"][0]


def test_server_assigned_ids_are_time_ordered_uuids(client):
    """Ids the server assigns are UUIDv7: version 7, and a later create sorts after an earlier one (the
    timestamp leads), for creates and for the entries of a transaction alike."""
    first = client.post("/Patient", json=patient(unique())).json()["id"]
    time.sleep(0.002)  # ids made within one millisecond are ordered by random bits only
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": patient(unique()),
         "request": {"method": "POST", "url": "Patient"}}]}
    reply = client.post("", json=bundle)
    assert reply.status_code == 200, reply.text
    second = reply.json()["entry"][0]["response"]["location"].split("/")[1]
    assert [uuid.UUID(i).version for i in (first, second)] == [7, 7]
    assert first < second


def test_update_with_client_id_creates_then_updates(client):
    rid = unique("pat")
    r = client.put(f"/Patient/{rid}", json={**patient(rid), "id": rid})
    assert r.status_code == 201 and r.json()["id"] == rid
    r = client.put(f"/Patient/{rid}", json={**patient(rid), "id": rid, "gender": "other"})
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "2"


def test_noop_update_keeps_version(client):
    rid = unique("pat")
    body = {**patient(rid), "id": rid}
    assert client.put(f"/Patient/{rid}", json=body).status_code == 201
    r = client.put(f"/Patient/{rid}", json=body)
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "1"


def test_read_unknown_and_errors(client):
    assert client.get(f"/Patient/{unique()}").status_code == 404
    r = client.get("/NotAType/1")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


def test_put_id_mismatch_and_wrong_type(client):
    r = client.put("/Patient/abc", json={**patient("x"), "id": "other"})
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["id"]
    r = client.post("/Patient", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}})
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"


def test_malformed_and_invalid_bodies_are_4xx(client):
    r = client.post("/Patient", content=b'{"resourceType": "Patient", ')
    assert r.status_code == 400 and r.json()["issue"][0]["code"] == "structure"
    r = client.post("/Patient", content=b"[1,2]")
    assert r.status_code == 400
    r = client.post("/Patient", json={"resourceType": "Patient", "gender": "x"})
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["Patient.gender"]
    r = client.post("/Patient", json={"resourceType": "Patient", "birthDate": "2020-02-30"})
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["Patient.birthDate"]
    r = client.post("/Patient", content=b'{"resourceType":"Patient"}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415


def test_oversized_body_is_413(server):
    big = b'{"resourceType":"Patient","text":{"status":"generated","div":"' + b"x" * (65 * 1024 * 1024) + b'"}}'
    with server.http(server.auth) as c:
        r = c.post("/Patient", content=big)
    assert r.status_code == 413 and r.json()["resourceType"] == "OperationOutcome"


def test_conditional_create(client):
    ident = unique()
    headers = {"If-None-Exist": f"identifier=urn:test:mrn|{ident}"}
    first = client.post("/Patient", json=patient(ident), headers=headers)
    assert first.status_code == 201
    again = client.post("/Patient", json=patient(ident), headers=headers)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    # A second resource with the same identifier makes the condition ambiguous.
    assert client.post("/Patient", json=patient(ident)).status_code == 201
    assert client.post("/Patient", json=patient(ident), headers=headers).status_code == 412


def test_conditional_update(client):
    ident = unique()
    url = f"/Patient?identifier=urn:test:mrn|{ident}"
    r = client.put(url, json=patient(ident))
    assert r.status_code == 201
    pid = r.json()["id"]
    r = client.put(url, json=patient(ident, family="Changed"))
    assert r.status_code == 200 and r.json()["id"] == pid and r.json()["meta"]["versionId"] == "2"


def test_conditional_delete(client):
    ident = unique()
    pid = client.post("/Patient", json=patient(ident)).json()["id"]
    assert client.delete(f"/Patient?identifier=urn:test:mrn|{ident}").status_code in (200, 204)
    assert client.get(f"/Patient/{pid}").status_code == 410


def test_if_match(client):
    pid = client.post("/Patient", json=patient(unique())).json()["id"]
    body = client.get(f"/Patient/{pid}").json()
    assert client.put(f"/Patient/{pid}", json={**body, "gender": "male"}, headers={"If-Match": 'W/"1"'}).status_code == 200
    r = client.put(f"/Patient/{pid}", json={**body, "gender": "other"}, headers={"If-Match": 'W/"1"'})
    assert r.status_code == 412 and r.json()["resourceType"] == "OperationOutcome"


def test_concurrent_if_match_one_wins(server):
    with server.http(server.auth) as c:
        pid = c.post("/Patient", json=patient(unique())).json()["id"]
        body = c.get(f"/Patient/{pid}").json()
    results: list[int] = []
    barrier = threading.Barrier(6)

    def attempt(n: int) -> None:
        with server.http(server.auth) as c:
            barrier.wait()
            r = c.put(f"/Patient/{pid}", json={**body, "name": [{"family": f"Writer{n}"}]}, headers={"If-Match": 'W/"1"'})
            results.append(r.status_code)

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [412] * 5
    with server.http(server.auth) as c:
        assert c.get(f"/Patient/{pid}").json()["meta"]["versionId"] == "2"


def test_concurrent_updates_without_if_match_lose_nothing(server):
    with server.http(server.auth) as c:
        pid = c.post("/Patient", json=patient(unique())).json()["id"]
        body = c.get(f"/Patient/{pid}").json()

    def attempt(n: int) -> None:
        with server.http(server.auth) as c:
            for k in range(5):
                assert c.put(f"/Patient/{pid}", json={**body, "name": [{"family": f"W{n}-{k}"}]}).status_code == 200

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with server.http(server.auth) as c:
        hist = c.get(f"/Patient/{pid}/_history", params={"_count": 100}).json()
        versions = [int(e["response"]["etag"][3:-1]) for e in hist["entry"]]
        assert versions == list(range(21, 0, -1))


def test_type_and_system_history(client):
    rid = unique("hist")
    client.put(f"/Patient/{rid}", json={**patient(rid), "id": rid})
    hist = client.get("/Patient/_history", params={"_count": 5}).json()
    assert hist["type"] == "history" and len(hist["entry"]) <= 5
    assert all(e["fullUrl"].split("/fhir/")[1].startswith("Patient/") for e in hist["entry"])
    system = client.get("/_history", params={"_count": 3}).json()
    assert len(system["entry"]) == 3
    assert any(link["relation"] == "next" for link in system["link"])
    nxt = [link["url"] for link in system["link"] if link["relation"] == "next"][0]
    page2 = client.get(nxt).json()
    first_urls = {e["fullUrl"] + e["response"]["etag"] for e in system["entry"]}
    assert not first_urls & {e["fullUrl"] + e["response"]["etag"] for e in page2["entry"]}


@pytest.mark.parametrize("path", ["/Patient/_history", "/_history"])
def test_history_pages_cut_between_the_versions_of_one_transaction(client, path):
    """A transaction bundle writes its versions under one txid: pages of a `_count` below the bundle's size
    cut between them, and each version comes exactly once, in the order of the first page's query."""
    system = f"urn:test:history-pages:{unique('h')}"
    entries = [{"resource": {"resourceType": "Patient", "identifier": [{"system": system, "value": str(i)}]},
                "request": {"method": "POST", "url": "Patient"}} for i in range(8)]
    r = client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert r.status_code == 200, r.text
    created = {e["response"]["location"].split("/")[1] for e in r.json()["entry"]}
    since = client.get(f"/Patient/{min(created)}").json()["meta"]["lastUpdated"]
    mine = [v["id"] for v in pages(client, path, {"_since": since, "_count": "3"}, None)
            if v["resourceType"] == "Patient" and v["id"] in created]
    assert sorted(mine) == sorted(created)


def test_history_since(client):
    rid = unique("since")
    r = client.put(f"/Patient/{rid}", json={**patient(rid), "id": rid})
    stamp = r.json()["meta"]["lastUpdated"]
    client.put(f"/Patient/{rid}", json={**patient(rid), "id": rid, "gender": "male"})
    hist = client.get(f"/Patient/{rid}/_history", params={"_since": stamp}).json()
    assert hist["total"] == 2
    later = client.get(f"/Patient/{rid}/_history", params={"_since": "2999-01-01T00:00:00Z"}).json()
    assert later["total"] == 0


def test_prefer_return_minimal(client):
    r = client.post("/Patient", json=patient(unique()), headers={"Prefer": "return=minimal"})
    assert r.status_code == 201 and r.content == b"" and "location" in r.headers


def test_source_kind_is_stamped_by_the_server(client, claims_client):
    kind_system = "https://planfit.dev/fhir/CodeSystem/source-kind"
    claimed = {**patient(unique()), "meta": {"tag": [{"system": kind_system, "code": "claims"}, {"system": "urn:x", "code": "keep"}]}}
    stored = client.post("/Patient", json=claimed).json()
    kinds = [t["code"] for t in stored["meta"]["tag"] if t["system"] == kind_system]
    assert kinds == ["clinical"]
    assert {"system": "urn:x", "code": "keep"} in stored["meta"]["tag"]
    from_claims = claims_client.post("/Patient", json=patient(unique())).json()
    assert [t["code"] for t in from_claims["meta"]["tag"] if t["system"] == kind_system] == ["claims"]
    assert from_claims["meta"]["source"] == "urn:planfit:test-claims-feed"
    found = client.get("/Patient", params={"_tag": f"{kind_system}|claims", "_id": from_claims["id"]}).json()
    assert found["total"] == 1
