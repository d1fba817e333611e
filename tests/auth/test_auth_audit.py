"""Audit trail: every PHI read and write is recorded (who, what, when, outcome), exported by
`planfit audit export` as valid AuditEvent NDJSON; the server log holds neither PHI nor tokens."""

from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timezone

import httpx
import pytest

from server.auth.audit import AuditTrail, export as export_records
from server.fhir.context import AuditRecord
from server.fhir.validation import validate_resource
from server.store.db import make_engine
from tests.support.auth import app_token, bearer, build_world, observation
from tests.support.servers import unique
from tests.auth.test_auth_backend import run_cli


@pytest.fixture(scope="module")
def world(server):
    return build_world(server)


def export(server, since: str) -> list[dict]:
    out = run_cli(server, "audit", "export", "--since", since)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def events_of(server, since: str, username: str, expected: int, within: float = 15) -> list[dict]:
    """The exported events of one user, once `expected` of them have been written (asynchronously)."""
    deadline = time.time() + within
    while True:
        mine = [e for e in export(server, since)
                if any(a["who"].get("identifier", {}).get("value") == username for a in e["agent"])]
        if len(mine) >= expected or time.time() > deadline:
            return mine
        time.sleep(0.3)


def test_reads_and_writes_are_audited_as_audit_events(server, world):
    since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    token = app_token(server, world.app, "launch/patient patient/*.cruds", world.patient_user)
    tag = unique("aud")
    with httpx.Client(base_url=server.fhir, headers=bearer(token["access_token"])) as c:
        assert c.get(f"/Condition/{world.a_problem}").status_code == 200
        assert c.get(f"/Observation/{world.b_obs}").status_code == 404
        assert c.get("/Observation", params={"identifier": f"urn:test:obs|{tag}"}).status_code == 200
        created = c.post("/Observation", json=observation(world.a, tag)).json()
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": observation(world.a, tag), "request": {"method": "POST", "url": "Observation"}}]}
        tx = c.post("", json=bundle).json()
        assert c.post("/Observation", json=observation(world.b, tag)).status_code == 403
    events = events_of(server, since, world.patient_user, 6)
    by_code = {}
    for event in events:
        by_code.setdefault(event["subtype"][0]["code"], []).append(event)
    assert sorted(by_code) == ["create", "read", "search-type", "transaction"]

    reads = sorted(by_code["read"], key=lambda e: e["outcome"])
    assert [(e["action"], e["outcome"]) for e in reads] == [("R", "0"), ("R", "4")]
    assert {"reference": f"Condition/{world.a_problem}"} in [x["what"] for x in reads[0]["entity"] if "what" in x]
    assert reads[1]["outcomeDesc"] == "HTTP 404"

    search = by_code["search-type"][0]
    query = next(x for x in search["entity"] if x["role"]["code"] == "24")
    assert base64.b64decode(query["query"]).decode() == f"identifier=urn%3Atest%3Aobs%7C{tag}"
    assert search["action"] == "E"

    creates = sorted(by_code["create"], key=lambda e: e["outcome"])
    assert creates[0]["action"] == "C" and creates[0]["outcome"] == "0"
    assert {"reference": f"Observation/{created['id']}/_history/1"} in [x.get("what") for x in creates[0]["entity"]]
    assert creates[1]["outcome"] == "4" and creates[1]["outcomeDesc"] == "HTTP 403"

    written = tx["entry"][0]["response"]["location"]
    assert {"reference": written} in [x.get("what") for x in by_code["transaction"][0]["entity"]]

    for event in events:
        app, user = event["agent"]
        assert app["who"]["identifier"]["value"] == world.app and app["network"]["address"] == "127.0.0.1"
        assert user["who"]["reference"] == f"{server.fhir}/Patient/{world.a}" and user["requestor"] is True
        assert {"reference": f"Patient/{world.a}"} in [x.get("what") for x in event["entity"]]
        assert event["recorded"] >= since
        assert validate_resource(event) == [], validate_resource(event)


def test_backend_clients_are_audited_too(server, client):
    since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert client.get("/Patient", params={"_count": 1}).status_code == 200
    events = [e for e in events_of(server, since, "pytest-clinical", 1)]
    assert events and events[0]["agent"][0]["requestor"] is True and len(events[0]["agent"]) == 1


def test_a_nul_in_the_request_path_is_audited_not_lost(server, client):
    """PostgreSQL text cannot hold NUL: the record keeps it escaped, and the batch it travels in is written."""
    since = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    assert client.get("/Patient/a%00b").status_code in (400, 404)
    assert client.get("/Patient", params={"_count": 1}).status_code == 200
    events = events_of(server, since, "pytest-clinical", 2)
    assert {"read", "search-type"} <= {e["subtype"][0]["code"] for e in events}
    named = [x["what"]["reference"] for e in events for x in e["entity"] if "what" in x]
    assert "Patient/a\\u0000b" in named, named


def test_a_record_the_database_refuses_costs_no_other_record(server):
    """A batch refused for its content is written record by record; the refused record is kept as the fact of
    the access (who, when, outcome) without the request text."""
    engine = make_engine(server.database_url)
    trail = AuditTrail(engine)
    start_us = time.time_ns() // 1000
    tag = unique("refused")
    good = [AuditRecord(recorded_us=start_us + i, interaction="search-type", client_id=tag, rtype="Patient",
                        query=f"family=n{i}", status=200) for i in range(3)]
    bad = AuditRecord(recorded_us=start_us + 9, interaction="search-type", client_id=tag, rtype="Patient",
                      query="family=\udc80", status=200)  # a lone surrogate: no database encoding can hold it
    trail.start()
    for record in (good[0], bad, good[1], good[2]):
        trail.put(record)
    trail.stop()
    mine = [e for e in export_records(engine, start_us) if e["agent"][0]["who"]["identifier"]["value"] == tag]
    engine.dispose()
    queries = sorted(base64.b64decode(x["query"]).decode() for e in mine for x in e["entity"] if "query" in x)
    assert queries == ["family=n0", "family=n1", "family=n2", "request text not recordable (UnicodeEncodeError)"]
    assert all(e["outcome"] == "0" for e in mine)


def test_log_holds_no_phi_and_no_tokens(server, world, client):
    family = unique("Secretname")
    pid = client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": family}]}).json()["id"]
    client.get("/Patient", params={"family": family})
    client.post("/Patient", json={"resourceType": "Patient", "gender": family})  # invalid: 400
    token = app_token(server, world.app, "user/*.cruds", world.doctor)["access_token"]
    with httpx.Client(base_url=server.fhir, headers=bearer(token)) as c:
        c.get(f"/Patient/{pid}")
        c.get("/Patient", params={"family": family})
        c.post("/Observation", json=observation(pid, family))  # outside the doctor's patients: 403
    httpx.get(server.fhir + "/Patient", headers={"Authorization": f"Bearer {token}x"})  # invalid token: 401
    httpx.post(server.token_url, data={"grant_type": "refresh_token", "refresh_token": family, "client_id": world.app})
    time.sleep(0.5)
    log = server.log_text()
    for secret in (family, pid, token, token[:40], "correct horse battery"):
        assert secret not in log
