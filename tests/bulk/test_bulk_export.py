"""Bulk Data export over real HTTP, on SQLite and PostgreSQL: kick-off, polling, manifest, files."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import secrets
import subprocess
import sys
import time
import uuid
from urllib.parse import parse_qs, urlparse

import httpx
import orjson
import pytest

from tests.support.bulk import (
    ICD,
    download,
    expected_lines,
    export,
    kick_off,
    make_cohort,
    stored,
    wait_for,
)
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.servers import ROOT, BackendToken


@pytest.fixture
def cohort(client):
    return make_cohort(client)


def _as_sets(lines: dict[str, list[bytes]]) -> dict[str, set[bytes]]:
    for rtype, got in lines.items():
        assert len(got) == len(set(got)), f"duplicate lines in {rtype}"
    return {rtype: set(got) for rtype, got in lines.items()}


def test_group_export_full_cycle(client, server, cohort):
    r = kick_off(client, f"/Group/{cohort.group_id}/$export")
    assert r.status_code == 202, r.text
    status_url = r.headers["Content-Location"]
    assert status_url.startswith(server.fhir + "/")

    done = wait_for(client, status_url)
    assert done.status_code == 200, done.text
    assert done.headers["content-type"].startswith("application/json")
    assert "Expires" in done.headers
    manifest = done.json()
    assert manifest["requiresAccessToken"] is True
    assert manifest["request"] == f"{server.fhir}/Group/{cohort.group_id}/$export"
    assert manifest["error"] == []
    assert manifest["transactionTime"].endswith("Z")

    expected = expected_lines(client, cohort)
    expected["Group"] = stored(client, [("Group", cohort.group_id)])["Group"]
    assert _as_sets(download(client, manifest)) == expected
    for item in manifest["output"]:
        assert set(item) == {"type", "url", "count"}
        assert item["url"].startswith(server.fhir + "/")

    # Polling a finished job again gives the same manifest (no rate limit once complete).
    again = client.get(status_url)
    assert again.status_code == 200 and again.json() == manifest


def test_type_parameter(client, cohort):
    manifest = export(client, f"/Group/{cohort.group_id}/$export", {"_type": "Condition,Patient"})
    assert _as_sets(download(client, manifest)) == expected_lines(client, cohort, ("Condition", "Patient"))

    # A repeated _type is one comma-joined list; non-default compartment types can be asked for.
    manifest = export(client, f"/Group/{cohort.group_id}/$export", [("_type", "Encounter"), ("_type", "Group")])
    lines = _as_sets(download(client, manifest))
    assert set(lines) == {"Encounter", "Group"}
    assert lines["Encounter"] == expected_lines(client, cohort, ("Encounter",))["Encounter"]


def test_since_returns_only_changes_after_the_previous_transaction_time(client, cohort):
    first = export(client, f"/Group/{cohort.group_id}/$export")
    member = cohort.members[0]
    condition_id = next(rid for rtype, rid in cohort.resources[member] if rtype == "Condition")
    condition = client.get(f"/Condition/{condition_id}").json()
    condition["note"] = [{"text": "updated after the first export"}]
    assert client.put(f"/Condition/{condition_id}", json=condition).status_code == 200
    outsider_condition = next(rid for rtype, rid in cohort.resources[cohort.outsider] if rtype == "Condition")
    outsider = client.get(f"/Condition/{outsider_condition}").json()
    outsider["note"] = [{"text": "not a member"}]
    assert client.put(f"/Condition/{outsider_condition}", json=outsider).status_code == 200

    second = export(client, f"/Group/{cohort.group_id}/$export", {"_since": first["transactionTime"]})
    assert _as_sets(download(client, second)) == stored(client, [("Condition", condition_id)])
    assert second["request"].endswith("_since=" + first["transactionTime"].replace(":", "%3A"))


def test_type_filter_applies(client, cohort):
    params = {"_type": "Condition,Patient", "_typeFilter": f"Condition?code={ICD}|F20.9"}
    lines = _as_sets(download(client, export(client, f"/Group/{cohort.group_id}/$export", params)))
    expected = expected_lines(client, cohort, ("Condition", "Patient"))
    f20 = {line for line in expected["Condition"] if b'"F20.9"' in line}
    assert len(f20) == len(cohort.members)
    assert lines == {"Condition": f20, "Patient": expected["Patient"]}

    # Two filters on one type are alternatives.
    params = [("_type", "Condition"), ("_typeFilter", "Condition?code=F20.9,Condition?code=E11.9")]
    lines = _as_sets(download(client, export(client, f"/Group/{cohort.group_id}/$export", params)))
    assert lines == {"Condition": expected["Condition"]}


@pytest.mark.parametrize(
    "type_filter",
    [
        "Condition?unknown-param=1",  # the search parser is strict here: a filter is never dropped
        "Condition?code=F20.9&_sort=_id",
        "Condition?_include=Condition:patient",
        "Observation?code=1",  # not an exported type
        "code=F20.9",
    ],
)
def test_bad_type_filter_is_refused(client, cohort, type_filter):
    r = kick_off(client, f"/Group/{cohort.group_id}/$export", {"_type": "Condition", "_typeFilter": type_filter})
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


def test_missing_prefer_is_400(client, cohort):
    for path in (f"/Group/{cohort.group_id}/$export", "/Patient/$export", "/$export"):
        r = client.get(path)
        assert r.status_code == 400, r.text
        outcome = r.json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert "respond-async" in outcome["issue"][0]["diagnostics"]


@pytest.mark.parametrize("output_format", ["application/fhir+ndjson", "application/ndjson", "ndjson"])
def test_output_formats_accepted(client, cohort, output_format):
    params = {"_outputFormat": output_format, "_type": "Patient"}
    manifest = export(client, f"/Group/{cohort.group_id}/$export", params)
    assert _as_sets(download(client, manifest)) == expected_lines(client, cohort, ("Patient",))


@pytest.mark.parametrize(
    "params",
    [
        {"_outputFormat": "text/csv"},
        {"_since": "yesterday"},
        {"_type": "Organization"},  # not in the Patient compartment
        {"_type": "NoSuchType"},
        {"_elements": "id"},
        {"_since": "2020-01-01T00:00:00Z", "unknown": "1"},
    ],
)
def test_bad_kick_off_parameters(client, cohort, params):
    r = kick_off(client, f"/Group/{cohort.group_id}/$export", params)
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


def test_lenient_handling_reports_ignored_parameters_in_error_file(client, cohort):
    r = kick_off(
        client, f"/Group/{cohort.group_id}/$export", {"_type": "Patient,Organization", "_elements": "id"},
        prefer="respond-async, handling=lenient",
    )
    assert r.status_code == 202, r.text
    manifest = wait_for(client, r.headers["Content-Location"]).json()
    assert _as_sets(download(client, manifest)) == expected_lines(client, cohort, ("Patient",))
    assert [e["type"] for e in manifest["error"]] == ["OperationOutcome"]
    text = client.get(manifest["error"][0]["url"]).content
    outcomes = [orjson.loads(line) for line in text.splitlines()]
    assert len(outcomes) == 2 and all(o["resourceType"] == "OperationOutcome" for o in outcomes)


def test_unknown_group_is_404(client):
    r = kick_off(client, "/Group/no-such-group/$export")
    assert r.status_code == 404, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


def test_post_kick_off_with_parameters(client, server, cohort):
    chosen = cohort.members[:2]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
            {"name": "_type", "valueString": "Patient,Condition"},
            *({"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}} for pid in chosen),
        ],
    }
    r = client.post(f"/Group/{cohort.group_id}/$export", json=body, headers={"Prefer": "respond-async"})
    assert r.status_code == 202, r.text
    manifest = wait_for(client, r.headers["Content-Location"]).json()
    assert manifest["request"] == f"{server.fhir}/Group/{cohort.group_id}/$export"
    assert _as_sets(download(client, manifest)) == expected_lines(client, cohort, ("Patient", "Condition"), chosen)

    # A patient outside the Group is refused, not silently widened or dropped.
    body["parameter"].append({"name": "patient", "valueReference": {"reference": f"Patient/{cohort.outsider}"}})
    r = client.post(f"/Group/{cohort.group_id}/$export", json=body, headers={"Prefer": "respond-async"})
    assert r.status_code == 400, r.text


def test_patient_level_export(client, cohort):
    chosen = [cohort.members[0], cohort.outsider]
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Patient,Coverage,Encounter"},
            *({"name": "patient", "valueReference": {"reference": f"Patient/{pid}"}} for pid in chosen),
        ],
    }
    r = client.post("/Patient/$export", json=body, headers={"Prefer": "respond-async"})
    assert r.status_code == 202, r.text
    manifest = wait_for(client, r.headers["Content-Location"]).json()
    assert _as_sets(download(client, manifest)) == expected_lines(client, cohort, ("Patient", "Coverage", "Encounter"), chosen)

    # GET Patient/$export covers every patient: ours are among them.
    lines = _as_sets(download(client, export(client, "/Patient/$export", {"_type": "Patient"})))
    assert expected_lines(client, cohort, ("Patient",), [*cohort.members, cohort.outsider])["Patient"] <= lines["Patient"]


def test_system_level_export_with_type_filter(client, cohort):
    params = {"_type": "Coverage", "_typeFilter": f"Coverage?identifier=urn:test:bulk|{cohort.tag}-0"}
    lines = _as_sets(download(client, export(client, "/$export", params)))
    first = cohort.members[0]
    assert lines == expected_lines(client, cohort, ("Coverage",), [first])


def test_cancel(client, cohort):
    r = kick_off(client, f"/Group/{cohort.group_id}/$export")
    status_url = r.headers["Content-Location"]
    cancelled = client.delete(status_url)
    assert cancelled.status_code == 202, cancelled.text
    gone = client.get(status_url)
    assert gone.status_code == 404
    assert gone.json()["resourceType"] == "OperationOutcome"
    assert client.delete(status_url).status_code == 404


def test_cancel_completed_job_removes_its_files(client, cohort):
    r = kick_off(client, f"/Group/{cohort.group_id}/$export", {"_type": "Patient"})
    status_url = r.headers["Content-Location"]
    manifest = wait_for(client, status_url).json()
    url = manifest["output"][0]["url"]
    assert client.get(url).status_code == 200
    assert client.delete(status_url).status_code == 202
    assert client.get(status_url).status_code == 404
    assert client.get(url).status_code == 404


def test_unknown_job_and_file(client, cohort):
    assert client.get("/$export-status/no-such-job").status_code == 404
    assert client.delete("/$export-status/no-such-job").status_code == 404
    manifest = export(client, f"/Group/{cohort.group_id}/$export", {"_type": "Patient"})
    job_url = manifest["output"][0]["url"].rsplit("/", 1)[0]
    r = client.get(job_url + "/Condition-1.ndjson")
    assert r.status_code == 404 and r.json()["resourceType"] == "OperationOutcome"


def test_snapshot_excludes_writes_after_transaction_time(client, cohort):
    """A resource created after an export's transactionTime is in the next `_since` export only."""
    first = export(client, f"/Group/{cohort.group_id}/$export", {"_type": "Coverage"})
    time.sleep(0.01)
    member = cohort.members[1]
    r = client.post("/Coverage", json={
        "resourceType": "Coverage", "status": "active", "beneficiary": {"reference": f"Patient/{member}"},
        "payor": [{"reference": "Organization/plan-2"}],
    })
    assert r.status_code == 201
    new_coverage = r.content
    assert new_coverage not in _as_sets(download(client, first)).get("Coverage", set())
    later = export(client, f"/Group/{cohort.group_id}/$export", {"_type": "Coverage", "_since": first["transactionTime"]})
    assert _as_sets(download(client, later)) == {"Coverage": {new_coverage}}


def test_capability_statement_lists_export(client):
    rest = client.get("/metadata").json()["rest"][0]
    assert {"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"} in rest["operation"]
    by_type = {r["type"]: r for r in rest["resource"]}
    assert by_type["Group"]["operation"][0]["definition"].endswith("/group-export")
    assert by_type["Patient"]["operation"][0]["definition"].endswith("/patient-export")


# ---- authorization: the job is the kick-off client's; scopes apply to the export and the files ----


def _scoped_client(server, backend_client_keys, scope: str) -> httpx.Client:
    """The clinical test client (same client id as `client`) with a token of narrower scopes."""
    auth = BackendToken(server.token_url, backend_client_keys[0], scope)
    return server.http(auth)


def test_job_is_invisible_to_other_clients(client, claims_client, server, cohort):
    status_url = kick_off(client, f"/Group/{cohort.group_id}/$export").headers["Content-Location"]
    manifest = wait_for(client, status_url).json()
    file_url = manifest["output"][0]["url"]

    assert claims_client.get(status_url).status_code == 404
    assert claims_client.get(file_url).status_code == 404
    assert claims_client.delete(status_url).status_code == 404
    with server.site() as anonymous:
        assert anonymous.get(status_url).status_code == 401
        assert anonymous.get(file_url).status_code == 401
    assert client.get(file_url).status_code == 200


def test_scopes_limit_the_exported_types(server, backend_client_keys, cohort):
    with _scoped_client(server, backend_client_keys, "system/Patient.rs system/Group.rs") as narrow:
        lines = _as_sets(download(narrow, export(narrow, f"/Group/{cohort.group_id}/$export")))
        assert set(lines) == {"Patient", "Group"}
        r = kick_off(narrow, f"/Group/{cohort.group_id}/$export", {"_type": "Condition"})
        assert r.status_code == 403, r.text


def test_granular_scope_filters_exported_resources(client, server, backend_client_keys, cohort):
    scope = f"system/Group.rs system/Condition.rs?code={ICD}|F20.9"
    with _scoped_client(server, backend_client_keys, scope) as narrow:
        lines = _as_sets(download(narrow, export(narrow, f"/Group/{cohort.group_id}/$export", {"_type": "Condition"})))
    f20 = {line for line in expected_lines(client, cohort, ("Condition",))["Condition"] if b'"F20.9"' in line}
    assert lines == {"Condition": f20}


def test_scopes_apply_to_file_downloads(client, server, backend_client_keys, cohort):
    manifest = export(client, f"/Group/{cohort.group_id}/$export", {"_type": "Patient,Condition"})
    urls = {item["type"]: item["url"] for item in manifest["output"]}
    with _scoped_client(server, backend_client_keys, "system/Patient.rs") as narrow:
        assert narrow.get(urls["Patient"]).status_code == 200
        assert narrow.get(urls["Condition"]).status_code == 403


# ---- a patient-scoped App Launch token ----


def _planfit(server, *args: str) -> None:
    env = {**os.environ, "PLANFIT_DATABASE_URL": server.database_url}
    done = subprocess.run([sys.executable, "-m", "server.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def patient_token(server, patient_id: str) -> str:
    """A `patient/*.rs` token for one patient, through the real standalone App Launch flow."""
    tag = uuid.uuid4().hex[:8]
    app, user, password, redirect = f"bulk-app-{tag}", f"bulk-user-{tag}", "correct horse battery", "https://app.test/cb"
    _planfit(server, "clients", "add", "--id", app, "--public", "--redirect-uri", redirect,
             "--scope", "launch/patient patient/*.rs")
    _planfit(server, "users", "add", "--username", user, "--password", password, "--patient", patient_id)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    with server.site() as browser:
        page = browser.get("/auth/authorize", params={
            "response_type": "code", "client_id": app, "redirect_uri": redirect, "scope": "launch/patient patient/*.rs",
            "state": tag, "aud": server.fhir, "code_challenge": challenge, "code_challenge_method": "S256",
        })
        assert page.status_code == 200, page.text
        request_id = re.search(r'name="request" value="([^"]+)"', page.text).group(1)
        consent = browser.post("/auth/login", data={"request": request_id, "username": user, "password": password})
        assert consent.status_code == 200, consent.text
        back = browser.post("/auth/consent", data={"request": request_id, "decision": "allow"})
        assert back.status_code == 303, back.text
        code = parse_qs(urlparse(back.headers["location"]).query)["code"][0]
        token = browser.post("/auth/token", data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": redirect, "code_verifier": verifier,
            "client_id": app,
        })
        assert token.status_code == 200, token.text
        assert token.json()["patient"] == patient_id
        return token.json()["access_token"]


def test_patient_token_cannot_export_another_patient(client, server, cohort):
    me, other = cohort.members[0], cohort.members[1]
    token = patient_token(server, me)
    with server.http(None, headers={"Authorization": f"Bearer {token}"}) as mine:
        # Patient/$export: only the patient's own compartment, whatever else is stored.
        lines = _as_sets(download(mine, export(mine, "/Patient/$export", {"_type": "Patient,Condition,Coverage"})))
        assert lines == expected_lines(client, cohort, ("Patient", "Condition", "Coverage"), [me])

        # Asking for another patient by POST finds nobody: no sign of whether that patient exists.
        body = {"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": f"Patient/{other}"}}]}
        r = mine.post("/Patient/$export", json=body, headers={"Prefer": "respond-async"})
        unknown = {"resourceType": "Parameters", "parameter": [{"name": "patient", "valueReference": {"reference": "Patient/nobody"}}]}
        r_unknown = mine.post("/Patient/$export", json=unknown, headers={"Prefer": "respond-async"})
        assert r.status_code == r_unknown.status_code == 400
        assert r.text.replace(other, "nobody") == r_unknown.text

        # A Group is within a patient token's reach only when its every member is that patient (SPEC §6:
        # membership never reveals another patient): the cohort, and a Group without the patient, do not
        # exist for this token; a Group of the patient alone exports the patient's own data.
        def group(*members: str) -> str:
            return client.post("/Group", json={"resourceType": "Group", "type": "person", "actual": True, "member": [
                {"entity": {"reference": f"Patient/{m}"}} for m in members]}).json()["id"]

        for hidden in (cohort.group_id, group(other)):
            assert kick_off(mine, f"/Group/{hidden}/$export").status_code == 404
        own = group(me)
        lines = _as_sets(download(mine, export(mine, f"/Group/{own}/$export")))
        expected = expected_lines(client, cohort, patients=[me])
        expected["Group"] = stored(client, [("Group", own)])["Group"]
        assert lines == expected


def test_planfit_export_with_backend_services_key(client, server, backend_client_keys, cohort, tmp_path):
    clinical = backend_client_keys[0]
    pem = tmp_path / "client.pem"
    pem.write_bytes(clinical.key.as_pem(private=True))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "export", "--url", server.url, "--group", cohort.group_id, "--out", str(out),
         "--client-id", clinical.client_id, "--key", str(pem), "--kid", clinical.kid, "--type", "Patient,Condition"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    lines: dict[str, set[bytes]] = {}
    for path in out.glob("*.ndjson"):
        lines.setdefault(path.name.split("-")[0], set()).update(path.read_bytes().splitlines())
    assert lines == expected_lines(client, cohort, ("Patient", "Condition"))
    assert "exported" in done.stdout
