"""Scopes enforced in SQL on every interaction, over real HTTP with real App Launch tokens.

Each leak test first shows, with the full-access client, that the resource *would* be returned,
then that the confined token does not see it.
"""

from __future__ import annotations

import json

import httpx
import pytest

from tests.support.auth import (
    PROBLEM,
    app_token,
    backend_token,
    bearer,
    build_world,
    condition,
    create,
    ids,
    observation,
    register_app,
    register_backend,
)
from tests.support.bulk import download, export
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.servers import unique

SOURCE_KIND = "https://planfit.dev/fhir/CodeSystem/source-kind"


@pytest.fixture(scope="module")
def world(server):
    return build_world(server)


@pytest.fixture(scope="module")
def patient_a(server, world) -> httpx.Client:
    """Patient A signed in to the app with `patient/*.cruds`."""
    token = app_token(server, world.app, "launch/patient patient/*.cruds", world.patient_user)
    assert token["patient"] == world.a
    with server.http(None, bearer(token["access_token"])) as c:
        yield c


def outcome_code(r: httpx.Response) -> str:
    return r.json()["issue"][0]["code"]


# ---- reads ------------------------------------------------------------------------------------------


def test_patient_token_reads_its_own_compartment(patient_a, world):
    assert patient_a.get(f"/Patient/{world.a}").status_code == 200
    assert patient_a.get(f"/Condition/{world.a_problem}").status_code == 200
    assert patient_a.get(f"/Observation/{world.a_obs}").status_code == 200
    assert patient_a.get(f"/Observation/{world.a_obs}/_history/1").status_code == 200
    assert patient_a.get(f"/Observation/{world.a_obs}/_history").status_code == 200


@pytest.mark.parametrize("path", ["Patient/{b}", "Condition/{b_cond}", "Observation/{b_obs}", "Observation/{c_obs}",
                                  "Observation/{b_obs}/_history/1", "Observation/{b_obs}/_history"])
def test_other_patients_resources_read_as_not_found(patient_a, client, world, path):
    url = "/" + path.format(**world.__dict__)
    assert client.get(url).status_code == 200
    r = patient_a.get(url)
    assert r.status_code == 404 and outcome_code(r) == "not-found"


def test_search_returns_only_the_compartment(patient_a, client, world):
    params = {"identifier": f"urn:test:obs|{world.tag}"}
    assert ids(client.get("/Observation", params=params).json()) == {
        f"Observation/{i}" for i in (world.a_obs, world.b_obs, world.b_obs_about_a, world.c_obs)}
    bundle = patient_a.get("/Observation", params=params).json()
    assert ids(bundle) == {f"Observation/{world.a_obs}"} and bundle["total"] == 1
    assert patient_a.get("/Patient", params={"identifier": f"urn:test:mrn|{world.tag}"}).json()["total"] == 1
    counted = patient_a.get("/Condition", params={"identifier": f"urn:test:cond|{world.tag}", "_summary": "count"})
    assert counted.json()["total"] == 3  # A's three conditions, not B's
    posted = patient_a.post("/Observation/_search", data=params, headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert ids(posted.json()) == {f"Observation/{world.a_obs}"}


def test_include_targets_are_confined(patient_a, client, world):
    params = {"_id": world.a_asserted_by_b, "_include": ["Condition:asserter", "Condition:patient"]}
    assert ids(client.get("/Condition", params=params).json(), "include") == {f"Patient/{world.a}", f"Patient/{world.b}"}
    bundle = patient_a.get("/Condition", params=params).json()
    assert ids(bundle) == {f"Condition/{world.a_asserted_by_b}"}
    assert ids(bundle, "include") == {f"Patient/{world.a}"}


def test_revinclude_sources_are_confined(patient_a, client, world):
    params = {"_id": world.a, "_revinclude": ["Observation:focus", "Observation:subject"]}
    full = ids(client.get("/Patient", params=params).json(), "include")
    assert full == {f"Observation/{world.a_obs}", f"Observation/{world.b_obs_about_a}"}
    assert ids(patient_a.get("/Patient", params=params).json(), "include") == {f"Observation/{world.a_obs}"}


def test_has_and_chained_parameters_cannot_widen(patient_a, world):
    r = patient_a.get("/Patient", params={"_has:Observation:subject:code": "8867-4", "identifier": f"urn:test:mrn|{world.tag}"})
    assert r.status_code == 200 and ids(r.json()) == {f"Patient/{world.a}"}
    # B's observation has B's name at the end of the chain, but B lies beyond patient A's reach at that hop.
    r = patient_a.get("/Observation", params={"subject.name": f"Bravo-{world.tag}", "identifier": f"urn:test:obs|{world.tag}"})
    assert r.status_code == 200 and ids(r.json()) == set()
    r = patient_a.get("/Observation", params={"subject.name": f"Alpha-{world.tag}", "identifier": f"urn:test:obs|{world.tag}"})
    assert ids(r.json()) == {f"Observation/{world.a_obs}"}
    # Reverse: B's Observation about A (focus) does not make A match through B's compartment.
    r = patient_a.get("/Patient", params={"_has:Observation:focus:identifier": f"urn:test:obs|{world.tag}"})
    assert r.status_code == 200 and ids(r.json()) == set()


def test_types_outside_the_compartment_are_invisible_to_patient_tokens(patient_a, client):
    org = create(client, {"resourceType": "Organization", "name": unique("org")})
    assert client.get(f"/Organization/{org}").status_code == 200
    assert patient_a.get(f"/Organization/{org}").status_code == 404
    assert patient_a.get("/Organization", params={"_id": org}).json()["total"] == 0


def test_batch_get_entries_are_confined(patient_a, world):
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Observation/{world.b_obs}"}},
        {"request": {"method": "GET", "url": f"Observation?identifier=urn:test:obs|{world.tag}"}},
    ]}
    entries = patient_a.post("", json=bundle).json()["entry"]
    assert entries[0]["response"]["status"] == "404 Not Found"
    assert {e["resource"]["id"] for e in entries[1]["resource"]["entry"]} == {world.a_obs}


# ---- history ------------------------------------------------------------------------------------------


def test_history_beyond_an_instance_is_refused_to_patient_tokens(patient_a):
    for url in ("/Observation/_history", "/_history"):
        r = patient_a.get(url)
        assert r.status_code == 403 and outcome_code(r) == "forbidden"


# ---- writes -------------------------------------------------------------------------------------------


def test_patient_token_writes_inside_its_compartment_only(patient_a, client, world, server):
    r = patient_a.post("/Observation", json=observation(world.a, unique()))
    assert r.status_code == 201, r.text
    own = r.json()
    assert own["meta"]["source"] == f"urn:planfit:client:{world.app}"
    assert [t["code"] for t in own["meta"]["tag"] if t["system"] == SOURCE_KIND] == ["patient-reported"]
    # another patient's data: not creatable, not updatable, not deletable (answered as if absent), not
    # movable into reach
    assert patient_a.post("/Observation", json=observation(world.b, unique())).status_code == 403
    moved = {**client.get(f"/Observation/{world.b_obs}").json(), "subject": {"reference": f"Patient/{world.a}"}}
    assert patient_a.put(f"/Observation/{world.b_obs}", json=moved).status_code == 403
    assert patient_a.delete(f"/Observation/{world.b_obs}").status_code == 204
    assert client.get(f"/Observation/{world.b_obs}").status_code == 200
    away = {**own, "subject": {"reference": f"Patient/{world.b}"}}
    assert patient_a.put(f"/Observation/{own['id']}", json=away).status_code == 403
    assert patient_a.post("/Patient", json={"resourceType": "Patient"}).status_code == 403
    assert client.get(f"/Observation/{world.b_obs}").json()["subject"]["reference"] == f"Patient/{world.b}"
    assert client.get(f"/Observation/{own['id']}").json()["subject"]["reference"] == f"Patient/{world.a}"
    # its own resource it may update and delete
    changed = {**own, "status": "amended"}
    assert patient_a.put(f"/Observation/{own['id']}", json=changed).status_code == 200
    assert patient_a.delete(f"/Observation/{own['id']}").status_code == 204


def test_conditional_writes_are_refused_to_patient_tokens(patient_a, world):
    body = observation(world.a, unique())
    r = patient_a.post("/Observation", json=body, headers={"If-None-Exist": f"identifier=urn:test:obs|{world.tag}"})
    assert r.status_code == 403
    assert patient_a.put(f"/Observation?identifier=urn:test:obs|{world.tag}", json=body).status_code == 403
    assert patient_a.delete(f"/Observation?identifier=urn:test:obs|{world.tag}").status_code == 403


def test_transaction_with_one_entry_outside_the_compartment_is_refused_whole(patient_a, client, world):
    tag = unique("tx")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation(world.a, tag), "request": {"method": "POST", "url": "Observation"}},
        {"resource": observation(world.b, tag), "request": {"method": "POST", "url": "Observation"}},
    ]}
    r = patient_a.post("", json=bundle)
    assert r.status_code == 403 and outcome_code(r) == "forbidden"
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1]"]
    assert client.get("/Observation", params={"identifier": f"urn:test:obs|{tag}"}).json()["total"] == 0
    bundle["entry"].pop()
    assert patient_a.post("", json=bundle).status_code == 200
    assert client.get("/Observation", params={"identifier": f"urn:test:obs|{tag}"}).json()["total"] == 1


def test_transaction_delete_of_another_patients_resource_deletes_nothing(patient_a, client, world):
    victim = create(client, observation(world.b, unique()))
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"request": {"method": "DELETE", "url": f"Observation/{victim}"}}]}
    r = patient_a.post("", json=bundle)
    assert r.status_code == 200 and r.json()["entry"][0]["response"]["status"] == "204 No Content"
    assert client.get(f"/Observation/{victim}").status_code == 200


# ---- scope shapes -------------------------------------------------------------------------------------


def test_write_with_read_scope_is_forbidden(server, world):
    token = app_token(server, world.app, "launch/patient patient/*.rs", world.patient_user)["access_token"]
    with server.http(None, bearer(token)) as c:
        r = c.post("/Observation", json=observation(world.a, unique()))
    assert r.status_code == 403 and outcome_code(r) == "forbidden"
    assert r.headers["www-authenticate"] == 'Bearer error="insufficient_scope"'


def test_granular_scope_filters_by_category(server, world):
    app = register_app(server, f"launch/patient patient/Condition.rs?category={PROBLEM}")
    token = app_token(server, app, f"launch/patient patient/Condition.rs?category={PROBLEM}", world.patient_user)
    assert token["scope"] == f"launch/patient patient/Condition.rs?category={PROBLEM}"
    with server.http(None, bearer(token["access_token"])) as c:
        found = ids(c.get("/Condition", params={"identifier": f"urn:test:cond|{world.tag}"}).json())
        assert found == {f"Condition/{world.a_problem}", f"Condition/{world.a_asserted_by_b}"}
        assert c.get(f"/Condition/{world.a_encounter_dx}").status_code == 404
        assert c.get(f"/Condition/{world.a_problem}").status_code == 200
        assert c.get(f"/Observation/{world.a_obs}").status_code == 403


def test_user_scopes_reach_the_users_patients(server, world):
    token = app_token(server, world.app, "user/*.rs", world.doctor)
    assert "patient" not in token
    with server.http(None, bearer(token["access_token"])) as c:
        found = ids(c.get("/Observation", params={"identifier": f"urn:test:obs|{world.tag}"}).json())
        assert found == {f"Observation/{i}" for i in (world.a_obs, world.b_obs, world.b_obs_about_a)}
        assert c.get(f"/Observation/{world.c_obs}").status_code == 404


def test_backend_type_scopes(server, world, client):
    key = register_backend(server, "system/Patient.rs")
    token = backend_token(server, key, "system/Patient.rs")
    with server.http(None, bearer(token)) as c:
        assert c.get(f"/Patient/{world.b}").status_code == 200
        r = c.get("/Condition", params={"_id": world.b_cond})
        assert r.status_code == 403 and outcome_code(r) == "forbidden"
        assert c.post("/Patient", json={"resourceType": "Patient"}).status_code == 403
        included = c.get("/Patient", params={"_id": world.b, "_revinclude": "Condition:patient"}).json()
        assert ids(included, "include") == set()  # Condition is not in its scopes: not included either
    assert ids(client.get("/Patient", params={"_id": world.b, "_revinclude": "Condition:patient"}).json(), "include")


def test_transaction_entry_outside_backend_scopes_refuses_the_bundle(server, client):
    key = register_backend(server, "system/Patient.cruds")
    tag = unique("bt")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5c0f6f9e-6a0e-4c1e-9b8e-000000000001",
         "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:test:mrn", "value": tag}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": condition("5c0f6f9e", tag), "request": {"method": "POST", "url": "Condition"}},
    ]}
    with server.http(None, bearer(backend_token(server, key, "system/Patient.cruds"))) as c:
        r = c.post("", json=bundle)
    assert r.status_code == 403
    assert client.get("/Patient", params={"identifier": f"urn:test:mrn|{tag}"}).json()["total"] == 0


def test_a_client_cannot_claim_another_source(claims_client, client):
    claimed = {"resourceType": "Patient", "meta": {"source": "urn:evil:feed",
                                                   "tag": [{"system": SOURCE_KIND, "code": "clinical"}]}}
    stored = claims_client.post("/Patient", json=claimed).json()
    assert stored["meta"]["source"] == "urn:planfit:test-claims-feed"
    assert [t["code"] for t in stored["meta"]["tag"] if t["system"] == SOURCE_KIND] == ["claims"]
    assert client.get(f"/Patient/{stored['id']}").json()["meta"]["source"] == "urn:planfit:test-claims-feed"



def test_bulk_export_is_confined_to_the_compartment(patient_a, client, world):
    params = {"_type": "Observation,Patient"}
    full = {json.loads(line)["id"] for lines in download(client, export(client, "/Patient/$export", params)).values()
            for line in lines}
    assert {world.b, world.b_obs, world.c_obs} <= full
    own = client.get("/Observation", params={"subject": f"Patient/{world.a}", "_count": 1000}).json()
    own_obs = {e["resource"]["id"] for e in own["entry"]}
    assert world.a_obs in own_obs
    mine = download(patient_a, export(patient_a, "/Patient/$export", params))
    assert {json.loads(line)["id"] for line in mine["Observation"]} == own_obs
    assert {json.loads(line)["id"] for line in mine["Patient"]} == {world.a}
    system = download(patient_a, export(patient_a, "/$export", {"_type": "Observation"}))
    assert {json.loads(line)["id"] for line in system["Observation"]} == own_obs
