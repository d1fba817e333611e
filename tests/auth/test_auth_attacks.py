"""The negative suite, continued: each attack of issue 16 (SPEC §6, §9) refused, over real HTTP with
real Backend Services and App Launch tokens, on SQLite and on PostgreSQL.

Each test first sets up what the attack needs with the full-access client, then attacks with the
token the attacker would hold, then checks with the full-access client that nothing changed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Iterator
from urllib.parse import urlencode

import httpx
import pytest

from server.auth.models import ALL_PATIENTS, User
from tests.support.alignment import ICD, born, condition_resource, coverage, days_ago, finding, patient
from tests.support.auth import (
    APP_SCOPE,
    PASSWORD,
    app_token,
    auth_store,
    backend_token,
    bearer,
    build_world,
    condition,
    create,
    ids,
    login_form,
    observation,
    register_app,
    register_backend,
    register_user,
    site_request,
)
from tests.support.bulk import export, kick_off, wait_for
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.servers import RunningServer, unique
from tests.support.reliability import Database, Process, Servers

SOURCE_KIND = "https://planfit.dev/fhir/CodeSystem/source-kind"
RECORDED_BY = "https://planfit.dev/fhir/CodeSystem/recorded-by"
COHORT_SYSTEM = "https://planfit.dev/fhir/cohort"
LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture(scope="module")
def world(server):
    return build_world(server)


def api(server: RunningServer, token: str) -> httpx.Client:
    return server.http(None, bearer(token))


@pytest.fixture(scope="module")
def patient_a(server, world) -> Iterator[httpx.Client]:
    """Patient A signed in to the app with `patient/*.cruds`."""
    with api(server, app_token(server, world.app, "launch/patient patient/*.cruds", world.patient_user)["access_token"]) as c:
        yield c


def outcome_code(r: httpx.Response) -> str:
    return r.json()["issue"][0]["code"]


def mainstream_adult(client: httpx.Client, claims_client: httpx.Client) -> str:
    """A Medicaid mainstream (NY-MMC) adult: a HARP candidate as soon as an SMI diagnosis counts."""
    pid = patient(client, born(34))
    coverage(claims_client, pid, plan="NY-MMC", sopt="211")
    return pid


def schizophrenia(pid: str, tag: str, **extra) -> dict:
    """An active, confirmed F20.9 recorded 30 days ago: SMI evidence, when it counts."""
    return {**condition_resource(pid, [(ICD, "F20.9")]), "identifier": [{"system": "urn:test:cond", "value": tag}],
            **extra}


# ---- high --------------------------------------------------------------------------------------------


def test_patient_token_cannot_write_a_diagnosis_about_another_patient(server, client, claims_client, world):
    """Condition{subject: C, asserter: A} lies in A's compartment (asserter), but is about C."""
    victim = mainstream_adult(client, claims_client)
    app = register_app(server, APP_SCOPE)
    user = register_user(server, f"Patient/{world.a}", [])
    tag = unique("dx")
    forged = schizophrenia(victim, tag, asserter={"reference": f"Patient/{world.a}"})
    with api(server, app_token(server, app, "launch/patient patient/*.cruds", user)["access_token"]) as a:
        r = a.post("/Condition", json=forged)
    assert r.status_code == 403 and outcome_code(r) == "forbidden"
    assert client.get("/Condition", params={"identifier": f"urn:test:cond|{tag}"}).json()["total"] == 0
    assert finding(client, victim).status == "aligned"


def test_patient_reported_diagnosis_never_qualifies_and_is_shown_as_such(server, client, claims_client):
    member = mainstream_adult(client, claims_client)
    app = register_app(server, APP_SCOPE)
    user = register_user(server, f"Patient/{member}", [])
    with api(server, app_token(server, app, "launch/patient patient/*.cruds", user)["access_token"]) as me:
        r = me.post("/Condition", json=schizophrenia(member, unique("dx")))
    assert r.status_code == 201, r.text
    assert [t["code"] for t in r.json()["meta"]["tag"] if t["system"] == SOURCE_KIND] == ["patient-reported"]
    f = finding(client, member)
    assert (f.status, f.recommended) == ("aligned", "ny-mmc")
    assert "ny-harp" not in f.eligible and f.non_claims == []
    assert f.categories["smi"] == {"clinical": False, "claims": False, "nonClaims": False, "evidence": [
        {"resource": f"Condition/{r.json()['id']}", "system": ICD, "code": "F20.9", "date": days_ago(30),
         "sourceKind": "patient-reported", "grade": "suspect", "lastAffirmed": days_ago(30)}]}


def test_export_jobs_belong_to_their_client_user_and_patient_context(server, client, world):
    first = app_token(server, world.app, "user/*.rs", world.doctor)["access_token"]
    colleague = register_user(server, "Practitioner/doc-2", [world.a, world.b])
    second = app_token(server, world.app, "user/*.rs", colleague)["access_token"]
    patient = app_token(server, world.app, "launch/patient patient/*.rs", world.patient_user)["access_token"]
    with api(server, first) as owner, api(server, second) as other, api(server, patient) as own_patient:
        started = kick_off(owner, "/Patient/$export", {"_type": "Patient,Observation"})
        assert started.status_code == 202, started.text
        status_url = started.headers["Content-Location"]
        manifest = wait_for(owner, status_url).json()
        file_url = manifest["output"][0]["url"]
        for stranger in (other, own_patient):  # the same app, another user or a patient context
            assert stranger.get(status_url).status_code == 404
            assert stranger.get(file_url).status_code == 404
            assert stranger.delete(status_url).status_code == 404
        assert owner.get(status_url).status_code == 200
        assert owner.get(file_url).status_code == 200


def test_export_file_download_rechecks_the_callers_compartment_and_filters(server, world):
    app = register_app(server, f"user/*.rs user/Observation.rs?category={LAB}")
    wide = app_token(server, app, "user/*.rs", world.doctor)["access_token"]
    narrow = app_token(server, app, f"user/Patient.rs user/Observation.rs?category={LAB}", world.doctor)["access_token"]
    with api(server, wide) as owner, api(server, narrow) as same_user_filtered:
        manifest = export(owner, "/Patient/$export", {"_type": "Observation"})
        (observations,) = [o["url"] for o in manifest["output"] if o["type"] == "Observation"]
        r = same_user_filtered.get(observations)
        assert r.status_code == 403 and outcome_code(r) == "forbidden"
        assert owner.get(observations).status_code == 200


def test_operations_showing_diagnoses_need_condition_access(server, client, claims_client, world):
    member = mainstream_adult(client, claims_client)
    scope = "system/Patient.rs system/MeasureReport.rs system/Coverage.rs system/Group.rs"
    no_conditions = backend_token(server, register_backend(server, scope), scope)
    app = register_app(server, f"launch/patient patient/*.rs patient/Condition.rs?category={LAB}")
    user = register_user(server, f"Patient/{member}", [])
    filtered = app_token(server, app, f"launch/patient patient/Patient.rs patient/Coverage.rs patient/Claim.rs "
                                      f"patient/ExplanationOfBenefit.rs patient/MeasureReport.rs "
                                      f"patient/Condition.rs?category={LAB}", user)["access_token"]
    group = create(client, {"resourceType": "Group", "type": "person", "actual": True,
                            "member": [{"entity": {"reference": f"Patient/{member}"}}]})
    assert client.get(f"/Patient/{member}/$alignment").status_code == 200
    for token in (no_conditions, filtered):
        with api(server, token) as c:
            for path, params in ((f"/Patient/{member}/$alignment", {}),
                                 ("/Measure/product-alignment/$evaluate-measure", {"subject": f"Patient/{member}"}),
                                 ("/Measure/nonclaims-bh-dx/$evaluate-measure", {"subject": f"Patient/{member}"})):
                r = c.get(path, params=params)
                assert r.status_code == 403 and outcome_code(r) == "forbidden", (path, r.text)
    with api(server, no_conditions) as c:
        for params in ({"reportType": "population"}, {"reportType": "subject-list"},
                       {"reportType": "population", "subject": f"Group/{group}"}):
            r = c.get("/Measure/product-alignment/$evaluate-measure", params=params)
            assert r.status_code == 403 and outcome_code(r) == "forbidden", params


# ---- medium ------------------------------------------------------------------------------------------


def test_provenance_never_reveals_another_patient(server, client, world, patient_a):
    """The server's Provenance of one transaction targets everything it wrote, here both patients."""
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {**client.get(f"/Patient/{pid}").json(), "active": True, "gender": "unknown"},
         "request": {"method": "PUT", "url": f"Patient/{pid}"}} for pid in (world.a, world.b)]}
    assert client.post("", json=bundle).status_code == 200
    both = create(client, {"resourceType": "Provenance", "recorded": "2026-01-01T00:00:00Z",
                           "target": [{"reference": f"Patient/{world.a}"}, {"reference": f"Patient/{world.b}"}],
                           "agent": [{"who": {"display": "an EHR"}}]})
    own = create(client, {"resourceType": "Provenance", "recorded": "2026-01-01T00:00:00Z",
                          "target": [{"reference": f"Patient/{world.a}"}], "agent": [{"who": {"display": "an EHR"}}]})
    full = client.get("/Provenance", params={"patient": f"Patient/{world.b}", "_count": 1000}).json()
    assert f"Provenance/{both}" in ids(full) and len(ids(full)) >= 2  # the server's and the client's
    seen = patient_a.get("/Provenance", params={"_count": 1000}).json()
    assert ids(seen) == {f"Provenance/{own}"}
    assert world.b not in json.dumps(seen)
    assert patient_a.get(f"/Provenance/{both}").status_code == 404


def test_group_member_search_is_no_membership_oracle(server, client, world, patient_a):
    create(client, {"resourceType": "Group", "type": "person", "actual": True,
                    "member": [{"entity": {"reference": f"Patient/{pid}"}} for pid in (world.a, world.c)]})
    assert client.get("/Group", params={"member": f"Patient/{world.c}", "_summary": "count"}).json()["total"] >= 1
    doctor = app_token(server, world.app, "user/*.rs", world.doctor)["access_token"]  # patients A and B
    with api(server, doctor) as doctor_app:
        for confined in (patient_a, doctor_app):
            for member in (world.c, "no-such-patient"):
                counted = confined.get("/Group", params={"member": f"Patient/{member}", "_summary": "count"})
                assert counted.status_code == 200 and counted.json()["total"] == 0


def test_old_versions_outside_the_compartment_read_as_not_found(server, client, world, patient_a):
    moved = create(client, observation(world.b, unique()))
    body = {**client.get(f"/Observation/{moved}").json(), "subject": {"reference": f"Patient/{world.a}"}}
    assert client.put(f"/Observation/{moved}", json=body).status_code == 200
    reused = unique("reused")  # B's, deleted, then created again under the same id about A
    assert client.put(f"/Observation/{reused}", json={**observation(world.b, unique()), "id": reused}).status_code == 201
    assert client.delete(f"/Observation/{reused}").status_code == 204
    assert client.put(f"/Observation/{reused}", json={**observation(world.a, unique()), "id": reused}).status_code == 201
    for rid, hidden, shown in ((moved, (1,), 2), (reused, (1, 2), 3)):
        for version in hidden:
            assert client.get(f"/Observation/{rid}/_history/{version}").status_code in (200, 410)
            r = patient_a.get(f"/Observation/{rid}/_history/{version}")
            assert r.status_code == 404 and outcome_code(r) == "not-found"
        assert patient_a.get(f"/Observation/{rid}/_history/{shown}").status_code == 200
        history = patient_a.get(f"/Observation/{rid}/_history").json()
        assert [e["response"]["etag"] for e in history["entry"]] == [f'W/"{shown}"'] and "total" not in history
        assert world.b not in json.dumps(history)


def test_write_check_sees_the_rewritten_references(server, client, world, patient_a):
    """The check runs on the final resource: a fullUrl can make `Patient/A` mean something else."""
    own = patient_a.post("/Observation", json=observation(world.a, unique())).json()
    tag = unique("rewritten")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"Patient/{world.a}", "resource": {**own, "status": "amended"},
         "request": {"method": "PUT", "url": f"Observation/{own['id']}"}},
        {"resource": condition(world.a, tag), "request": {"method": "POST", "url": "Condition"}},
    ]}
    r = patient_a.post("", json=bundle)
    assert r.status_code == 403 and r.json()["issue"][0]["expression"] == ["Bundle.entry[1]"]
    assert client.get("/Condition", params={"identifier": f"urn:test:cond|{tag}"}).json()["total"] == 0
    assert client.get(f"/Observation/{own['id']}").json()["status"] == "final"


def test_removed_or_re_added_user_loses_tokens_and_refresh_tokens(server, world):
    username = register_user(server, "Practitioner/doc-3", [world.a])
    tokens = app_token(server, world.app, "offline_access user/*.rs", username)
    with api(server, tokens["access_token"]) as before:
        assert before.get(f"/Patient/{world.a}").status_code == 200
        auth_store(server.database_url).remove_user(username)
        deadline = time.monotonic() + 10  # a process serves a registration from memory for 2 s
        while before.get(f"/Patient/{world.a}").status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.3)
        r = before.get(f"/Patient/{world.a}")
        assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]
        # The same username registered again, with wider access, revives nothing of the old one.
        register_user(server, "Practitioner/doc-3", [ALL_PATIENTS], username=username)
        assert before.get(f"/Patient/{world.c}").status_code == 401
    refreshed = site_request(server, "POST", "/auth/token", data={"grant_type": "refresh_token", "client_id": world.app,
                                                                  "refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"


def test_sign_ins_are_throttled_per_user(server, world):
    username = register_user(server, "Practitioner/doc-4", [world.a])
    with server.site() as browser:
        request_id = login_form(browser, server, world.app, "user/*.rs")

        def sign_in(password: str) -> httpx.Response:
            return browser.post("/auth/login", data={"request": request_id, "username": username, "password": password})

        for _ in range(5):  # PLANFIT_LOGIN_MAX_FAILURES
            assert sign_in("wrong horse battery").status_code == 401
        locked = sign_in(PASSWORD)
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 0
        assert "Too many failed sign-ins" in locked.text
    # Another user at the same address still signs in.
    assert app_token(server, world.app, "user/*.rs", world.doctor)["access_token"]


def test_includes_beyond_the_cap_are_refused(client, world):
    def search(revincludes: int) -> httpx.Response:
        params = [("_id", world.a)] + [("_revinclude", "Observation:subject")] * revincludes
        return client.post("/Patient/_search", content=urlencode(params), headers=FORM)

    assert search(10).status_code == 200
    refused = search(10_000)
    assert refused.status_code == 400 and outcome_code(refused) == "too-costly"


# ---- low ---------------------------------------------------------------------------------------------


def test_delete_of_another_patients_resource_answers_as_if_absent(client, world, patient_a):
    for path in (f"/Observation/{world.b_obs}", "/Observation/no-such-observation"):
        r = patient_a.delete(path)
        assert r.status_code == 204 and "etag" not in r.headers
    assert client.get(f"/Observation/{world.b_obs}").status_code == 200


def test_costly_or_crafted_searches_get_400_not_500(client):
    names = "&".join(f"name=x{i}" for i in range(5000))
    r = client.post("/Patient/_search", content=names, headers=FORM)
    assert r.status_code == 400 and outcome_code(r) == "too-costly"
    for cursor in ([1, [None]], [1, [{"a": 1}]], [1, [True]], [1, [[1]]], [2**63, ["a"]], [-1, []], [1, [1.5]]):
        raw = base64.urlsafe_b64encode(json.dumps(cursor).encode()).decode().rstrip("=")
        r = client.get("/Patient", params={"_page": raw})
        assert r.status_code == 400 and outcome_code(r) == "invalid", cursor


def test_clients_cannot_pose_as_the_server(client):
    """No client Group carries the cohorts' identifier system, and no client Provenance carries the tag
    of the Provenance the server records for each transaction."""
    cohort_like = {"resourceType": "Group", "type": "person", "actual": True,
                   "identifier": [{"system": COHORT_SYSTEM, "value": "candidates-ny-harp"}]}
    r = client.post("/Group", json=cohort_like)
    assert r.status_code == 422 and outcome_code(r) == "business-rule"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": unique("obs")}},
         "request": {"method": "POST", "url": "Observation"}}]}
    written = client.post("", json=bundle).json()["entry"][0]["response"]["location"].split("/_history")[0]
    forged = client.post("/Provenance", json={
        "resourceType": "Provenance", "recorded": "2026-01-01T00:00:00Z",
        "meta": {"tag": [{"system": RECORDED_BY, "code": "planfit"}]},
        "target": [{"reference": written}], "agent": [{"who": {"display": "pytest-clinical"}}]})
    assert forged.status_code == 201
    assert [t for t in forged.json()["meta"]["tag"] if t["system"] == RECORDED_BY] == []
    every = ids(client.get("/Provenance", params={"target": written}).json())
    recorded = ids(client.get("/Provenance", params={"target": written, "_tag": f"{RECORDED_BY}|planfit"}).json())
    assert len(every) == 2 and recorded == every - {f"Provenance/{forged.json()['id']}"} and len(recorded) == 1


def test_alignment_status_needs_a_system_scope(server, client, world, patient_a):
    assert client.get("/$alignment-status").status_code == 200
    doctor = app_token(server, world.app, "user/*.rs", world.doctor)["access_token"]
    with api(server, doctor) as doctor_app:
        for caller in (patient_a, doctor_app):
            r = caller.get("/$alignment-status")
            assert r.status_code == 403 and outcome_code(r) == "forbidden"


# ---- limits on a server of their own ----------------------------------------------------------------


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def limited(request, tmp_path_factory) -> Iterator[tuple[Servers, Process]]:
    """Exports never start (no worker) so they stay in flight; tight sign-in and export caps."""
    database = Database.create(request.param, tmp_path_factory.mktemp(f"attacks-{request.param}"))
    servers = Servers(database)
    process = servers.start(export_workers="0", export_max_jobs="2", login_max_failures_per_address="3")
    yield servers, process
    servers.stop_all()
    database.drop()


def test_export_kick_offs_beyond_the_cap_get_429(limited):
    servers, process = limited
    with servers.client(process) as clinical, servers.client(process, "claims") as claims:
        started = [kick_off(clinical, "/Patient/$export") for _ in range(2)]
        assert [r.status_code for r in started] == [202, 202]
        refused = kick_off(clinical, "/Patient/$export")
        assert refused.status_code == 429 and outcome_code(refused) == "throttled" and refused.headers["retry-after"]
        assert kick_off(claims, "/Patient/$export").status_code == 202  # the cap is per client
        assert clinical.delete(started[0].headers["Content-Location"]).status_code == 202
        assert kick_off(clinical, "/Patient/$export").status_code == 202


def test_sign_ins_are_throttled_per_address(limited):
    servers, process = limited
    running = RunningServer(servers.database.kind, process.url, servers.database.url, process.process, process.log)
    app = register_app(running, "user/*.rs")
    username = register_user(running, None, [ALL_PATIENTS])
    with httpx.Client(base_url=process.url, timeout=60) as browser:
        request_id = login_form(browser, running, app, "user/*.rs")
        for _ in range(3):  # three usernames, one failure each: only the address reaches its cap
            r = browser.post("/auth/login", data={"request": request_id, "username": unique("nobody"), "password": "x"})
            assert r.status_code == 401
        r = browser.post("/auth/login", data={"request": request_id, "username": username, "password": PASSWORD})
        assert r.status_code == 429


# ---- passwords ----------------------------------------------------------------------------------------


def test_old_password_hashes_still_verify_and_are_upgraded(server, world):
    """Hashes made before the parameters were raised to OWASP's (N=2^14) keep working."""
    salt = secrets.token_bytes(16)
    old = hashlib.scrypt(PASSWORD.encode(), salt=salt, n=2**14, r=8, p=1, dklen=32)
    legacy = f"scrypt$16384$8$1${base64.b64encode(salt).decode()}${base64.b64encode(old).decode()}"
    username = unique("legacy")
    store = auth_store(server.database_url)
    store.put_user(User(username, legacy, "Practitioner/doc-5", (world.a,)))
    assert app_token(server, world.app, "user/*.rs", username)["access_token"]
    assert store.get_user(username).password_hash.startswith("scrypt$131072$8$1$")
    assert app_token(server, world.app, "user/*.rs", username)["access_token"]
