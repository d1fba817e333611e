"""Limits (SPEC §9) on a server started with tight ones: body size, bundle entries and `_count` (413, 413,
reduced with a warning), the request timeout (503 with an OperationOutcome) and the per-client rate
limit (429 with Retry-After), each answer an OperationOutcome, and the server keeps serving."""

from __future__ import annotations

import math
from typing import Iterator

import httpx
import pytest

from tests.support.reliability import MARKER, Database, Process, Servers, evaluation_lock_held

RATE_LIMIT = 30  # requests per minute per client
TIMEOUT = 3  # seconds; tight, yet above what a normal request takes on a busy CI machine


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def limited(request, tmp_path_factory) -> Iterator[tuple[Servers, Process]]:
    database = Database.create(request.param, tmp_path_factory.mktemp(f"limits-{request.param}"))
    servers = Servers(database)
    process = servers.start(max_body_bytes="4096", max_bundle_entries="3", max_count="5",
                            request_timeout_seconds=str(TIMEOUT), rate_limit=str(RATE_LIMIT))
    yield servers, process
    servers.stop_all()
    database.drop()


@pytest.fixture(scope="module")
def client(limited) -> Iterator[httpx.Client]:
    """One client for the module: its token is fetched once, before any test blocks the database."""
    servers, process = limited
    with servers.client(process) as c:
        assert c.get("/metadata").status_code == 200
        yield c


def assert_outcome(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/fhir+json")
    assert r.json()["resourceType"] == "OperationOutcome" and r.json()["issue"][0]["code"] == code


def test_body_larger_than_the_limit_gets_413(client):
    big = {"resourceType": "Patient", "name": [{"family": "x" * 5000}]}
    assert_outcome(client.post("/Patient", json=big), 413, "too-costly")
    assert client.post("/Patient", json={"resourceType": "Patient"}).status_code == 201


def test_bundle_with_more_entries_than_the_limit_gets_413(client):
    entries = [{"resource": {"resourceType": "Basic", "code": {"text": "x"}}, "request": {"method": "POST", "url": "Basic"}}] * 4
    r = client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert_outcome(r, 413, "too-costly")


def test_count_above_the_maximum_is_reduced_with_a_warning(client):
    for _ in range(6):
        assert client.post("/Basic", json={"resourceType": "Basic", "code": {"text": "count"}}).status_code == 201
    r = client.get("/Basic", params={"_count": "1000"})
    assert r.status_code == 200
    bundle = r.json()
    matches = [e for e in bundle["entry"] if e["search"]["mode"] == "match"]
    assert len(matches) == 5
    assert any(link["relation"] == "next" for link in bundle["link"])
    warnings = [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome"]
    assert warnings and warnings[0]["issue"][0]["severity"] == "warning"


def test_request_without_an_answer_in_time_gets_503(limited, client):
    servers, _process = limited
    with evaluation_lock_held(servers.database):
        r = client.post("/$evaluate-alignment")
    assert_outcome(r, 503, "timeout")
    assert client.get("/Basic", params={"_count": "1"}).status_code == 200


def test_write_answered_503_is_still_committed(limited, client):
    """The timeout answers the client; it does not undo a write that committed before it (here the
    write commits, then its members' evaluation waits for the lock)."""
    servers, _process = limited
    if servers.database.kind == "sqlite":
        pytest.skip("SQLite's write lock blocks the write itself, not only its evaluation")
    patient = {"resourceType": "Patient", "identifier": [{"system": MARKER, "value": "limits-timeout"}]}
    with evaluation_lock_held(servers.database):
        assert_outcome(client.post("/Patient", json=patient), 503, "timeout")
    found = client.get("/Patient", params={"identifier": f"{MARKER}|limits-timeout"}).json()
    assert len([e for e in found["entry"] if e["search"]["mode"] == "match"]) == 1


def test_rate_limit_per_client_gives_429_with_retry_after(limited):
    servers, process = limited
    with servers.client(process, kind="claims") as hammering, servers.client(process) as other:
        other.get("/metadata")  # fetch its token before the hammering starts
        statuses = []
        for _ in range(RATE_LIMIT * 3):
            r = hammering.get("/Basic", params={"_count": "1"})
            statuses.append(r.status_code)
            if r.status_code == 429:
                break
        assert statuses[-1] == 429 and statuses.count(200) >= RATE_LIMIT - 1, statuses
        assert_outcome(r, 429, "throttled")
        assert 1 <= int(r.headers["Retry-After"]) <= math.ceil(60 / RATE_LIMIT)
        # Another client has its own bucket.
        assert other.get("/Basic", params={"_count": "1"}).status_code == 200


def test_anonymous_requests_are_limited_per_address(limited):
    _servers, process = limited
    statuses = []
    for _ in range(RATE_LIMIT * 3):
        r = httpx.get(process.fhir + "/metadata")
        statuses.append(r.status_code)
        if r.status_code == 429:
            break
    assert statuses[-1] == 429, statuses
    assert_outcome(r, 429, "throttled")
    assert r.headers["Retry-After"].isdigit()
