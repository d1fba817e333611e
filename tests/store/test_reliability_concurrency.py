"""Two server processes on one PostgreSQL schema (SPEC §9): concurrent conditional creates make exactly
one resource, concurrent updates lose nothing and number versions strictly in order, and concurrent
ingest touching one member from both processes leaves findings equal to a full re-evaluation."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator

import httpx
import pytest

from tests.support.alignment import ICD, condition_resource
from tests.support.servers import unique
from tests.support.reliability import Database, Servers, assert_findings_match_full_evaluation, member_bundle, pages

WRITERS = 6  # client threads, half on each process
APPENDS = 4  # read-modify-write appends per writer
CODES = "urn:planfit:test:appended"


@pytest.fixture(scope="module")
def database(tmp_path_factory) -> Iterator[Database]:
    db = Database.create("postgres", tmp_path_factory.mktemp("concurrency"))
    yield db
    db.drop()


@pytest.fixture(scope="module")
def clients(database) -> Iterator[list[httpx.Client]]:
    """One clinical client per process, then one claims client per process."""
    servers = Servers(database)
    with ThreadPoolExecutor(2) as pool:  # both start at once: start-up dominates this module's time
        processes = list(pool.map(lambda _: servers.start(), range(2)))
    made = [servers.client(p, kind) for kind in ("clinical", "claims") for p in processes]
    yield made
    for c in made:
        c.close()
    servers.stop_all()


def run_all(jobs: list[Callable[[], Any]]) -> list[Any]:
    """Start every job at once (a barrier), wait for all, re-raise the first failure."""
    barrier = threading.Barrier(len(jobs))

    def run(job: Callable[[], Any]) -> Any:
        barrier.wait()
        return job()

    with ThreadPoolExecutor(len(jobs)) as pool:
        return [f.result() for f in [pool.submit(run, job) for job in jobs]]


def on_process(clients: list[httpx.Client], i: int) -> httpx.Client:
    return clients[i % 2]


def test_concurrent_conditional_creates_make_one_resource(clients):
    value = unique("member")
    body = {"resourceType": "Patient", "identifier": [{"system": "urn:test:concurrency", "value": value}]}
    condition = f"identifier=urn:test:concurrency|{value}"
    responses = run_all([
        (lambda c=on_process(clients, i): c.post("/Patient", json=body, headers={"If-None-Exist": condition}))
        for i in range(WRITERS)
    ])
    assert sorted(r.status_code for r in responses) == [200] * (WRITERS - 1) + [201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    found = clients[0].get("/Patient", params={"identifier": f"urn:test:concurrency|{value}"}).json()
    assert len([e for e in found["entry"] if e["search"]["mode"] == "match"]) == 1


def _append_with_if_match(client: httpx.Client, rid: str, code: str) -> tuple[int, list[int]]:
    """Read, append a coding, PUT with If-Match; on 412/409 read again. (version written, conflicts)."""
    conflicts = []
    while True:
        current = client.get(f"/Basic/{rid}")
        assert current.status_code == 200, current.text
        resource = current.json()
        resource["code"]["coding"].append({"system": CODES, "code": code})
        r = client.put(f"/Basic/{rid}", json=resource, headers={"If-Match": current.headers["ETag"]})
        if r.status_code in (409, 412):
            conflicts.append(r.status_code)
            continue
        assert r.status_code == 200, r.text
        written = int(r.headers["ETag"].removeprefix('W/"').rstrip('"'))
        assert r.json()["meta"]["versionId"] == str(written)  # the body is the version this update wrote
        return written, conflicts


def test_concurrent_updates_with_if_match_lose_nothing(clients):
    created = clients[0].post("/Basic", json={"resourceType": "Basic", "code": {"coding": [{"system": CODES, "code": "start"}]}})
    assert created.status_code == 201, created.text
    rid = created.json()["id"]

    def writer(i: int) -> list[tuple[int, list[int]]]:
        return [_append_with_if_match(on_process(clients, i), rid, f"w{i}-{k}") for k in range(APPENDS)]

    results = [result for per_writer in run_all([lambda i=i: writer(i) for i in range(WRITERS)]) for result in per_writer]
    versions = sorted(v for v, _ in results)
    assert versions == list(range(2, WRITERS * APPENDS + 2))  # each update got its own next version
    final = clients[1].get(f"/Basic/{rid}").json()
    codes = [c["code"] for c in final["code"]["coding"]]
    assert sorted(codes) == sorted(["start", *(f"w{i}-{k}" for i in range(WRITERS) for k in range(APPENDS))])
    assert final["meta"]["versionId"] == str(WRITERS * APPENDS + 1)
    # The losers of each race were refused, not merged: 412 (or 409), then they retried.
    conflicts = [status for _, statuses in results for status in statuses]
    assert conflicts and set(conflicts) <= {409, 412}  # six writers released at once: some must lose
    history = clients[0].get(f"/Basic/{rid}/_history", params={"_count": "100"}).json()
    assert sorted(int(e["resource"]["meta"]["versionId"]) for e in history["entry"]) == list(range(1, WRITERS * APPENDS + 2))


def test_concurrent_updates_without_if_match_number_every_version(clients):
    rid = unique("basic")
    responses = run_all([lambda i=i: on_process(clients, i).put(
        f"/Basic/{rid}", json={"resourceType": "Basic", "id": rid, "code": {"text": f"writer {i}"}})
        for i in range(WRITERS)])
    assert sorted(r.status_code for r in responses) == [200] * (WRITERS - 1) + [201]
    assert sorted(r.headers["ETag"] for r in responses) == sorted(f'W/"{v}"' for v in range(1, WRITERS + 1))
    assert all(r.headers["ETag"] == f'W/"{r.json()["meta"]["versionId"]}"' for r in responses)
    history = clients[1].get(f"/Basic/{rid}/_history", params={"_count": "100"}).json()
    versions = [int(e["resource"]["meta"]["versionId"]) for e in history["entry"]]
    assert sorted(versions) == list(range(1, WRITERS + 1))  # every write kept as its own version
    texts = {e["resource"]["code"]["text"] for e in history["entry"]}
    assert texts == {f"writer {i}" for i in range(WRITERS)}
    final = clients[0].get(f"/Basic/{rid}").json()
    assert final["meta"]["versionId"] == str(WRITERS)


def test_concurrent_ingest_on_one_member_from_both_processes(clients, database):
    """Clinical and claims writers on both processes change one member at once; every member's
    findings then equal a full re-evaluation."""
    bundle = member_bundle(unique("shared"), 1)
    r = clients[0].post("", json=bundle)
    assert r.status_code == 200, r.text
    pid = next(e["response"]["location"].split("/")[1] for e in r.json()["entry"]
               if e["response"]["location"].startswith("Patient/"))

    def clinical(i: int) -> int:
        codes = [(ICD, "F31.9"), (ICD, "F11.20"), (ICD, "E11.9")][i % 3]
        return on_process(clients, i).post("/Condition", json=condition_resource(pid, [codes])).status_code

    def claims(i: int) -> int:
        coverage = {"resourceType": "Coverage", "status": "active", "beneficiary": {"reference": f"Patient/{pid}"},
                    "payor": [{"display": "Test plan"}], "period": {"start": "2020-01-01"},
                    "class": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/coverage-class",
                                                    "code": "plan"}]}, "value": ["ny-harp", "ny-mmc"][i % 2]}]}
        return clients[2 + i % 2].post("/Coverage", json=coverage).status_code

    statuses = run_all([lambda i=i: clinical(i) for i in range(WRITERS)] + [lambda i=i: claims(i) for i in range(WRITERS)])
    assert statuses == [201] * (2 * WRITERS)
    assert assert_findings_match_full_evaluation(clients[0], database.engine) > 0


OVERLAPPING = 40  # identifier values both processes create, in opposite orders


def _history_since(client: httpx.Client, since: str | None) -> list[dict[str, Any]]:
    """Every entry of Patient/_history from `since` on (inclusive), following the next links."""
    return list(pages(client, "/Patient/_history", {"_count": "200", **({"_since": since} if since else {})}, None))


def test_overlapping_conditional_creates_from_two_processes_make_no_duplicates_and_lose_no_since_entry(clients):
    """Two processes post conditional creates of the same identifiers as fast as they answer (one in
    ascending, one in descending order) while a third client polls `_history?_since=` with the newest
    lastUpdated it has seen, as a sync client does: each identifier ends with exactly one Patient, and
    the poller saw every one of them."""
    system = f"urn:test:overlap:{unique('o')}"
    values = [f"v{i:03d}" for i in range(OVERLAPPING)]
    done = threading.Event()
    seen: dict[str, str] = {}  # Patient id → identifier value, as the poller saw it

    def create_all(client: httpx.Client, order: list[str]) -> list[int]:
        statuses = []
        for value in order:
            body = {"resourceType": "Patient", "identifier": [{"system": system, "value": value}]}
            r = client.post("/Patient", json=body, headers={"If-None-Exist": f"identifier={system}|{value}"})
            statuses.append(r.status_code)
        return statuses

    def poll() -> None:
        since = None
        while True:
            finished = done.is_set()  # read before polling: the last poll starts after every write
            for resource in _history_since(clients[0], since):
                mine = [i["value"] for i in resource.get("identifier", []) if i.get("system") == system]
                if mine:
                    seen[resource["id"]] = mine[0]
                stamp = resource["meta"]["lastUpdated"]
                since = stamp if since is None or stamp > since else since
            if finished:
                return

    with ThreadPoolExecutor(1) as poller:
        polling = poller.submit(poll)
        try:
            statuses = run_all([lambda: create_all(clients[0], values), lambda: create_all(clients[1], values[::-1])])
        finally:
            done.set()
        polling.result()
    assert sorted(s for run in statuses for s in run) == [200] * OVERLAPPING + [201] * OVERLAPPING
    stored: dict[str, list[str]] = {}
    for resource in _history_since(clients[0], None):
        for identifier in resource.get("identifier", []):
            if identifier.get("system") == system:
                stored.setdefault(identifier["value"], []).append(resource["id"])
    assert {v: len(set(ids)) for v, ids in stored.items()} == {v: 1 for v in values}  # no duplicates
    assert seen == {ids[0]: v for v, ids in stored.items()}  # no `_since` entry lost
