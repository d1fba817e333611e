"""Writes that run side by side on PostgreSQL (issue 19): a write transaction that started first and
commits last is never skipped by a `_since` poller, type or system history, or a history page, and a
transaction never writes a version behind one a later-started transaction wrote (and the feature writers
that meet one run again). Deterministic: the slow
transaction is held open by the test, on its own connection, while requests go through the app.

SQLite has one writer at a time (a second writer waits for the first to commit), so no two write
transactions interleave there; its single-writer path runs in every other store test. A database restored
into a younger cluster keeps numbering new versions after its stored ones."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import httpx
import orjson
import pytest
from sqlalchemy import text

from server.fhir import searchparams
from server.fhir.versions import stamp
from server.store.db import migrate
from server.store.resources import StagedWrite, Store, WriteTransaction, append_versions
from server.store.txids import WriteConflict, begin_versions
from tests.support.inprocess import AppServer
from tests.support.reliability import pages
from tests.support.rosters import by_member_id, draft_group, make_population
from tests.support.servers import unique


@pytest.fixture(scope="module")
def app(postgres_app: AppServer) -> AppServer:
    return postgres_app


@pytest.fixture()
def client(app: AppServer) -> Iterator[httpx.Client]:
    with app.http(app.auth) as c:
        yield c


def _store(app: AppServer) -> Store:
    return app.app.state.store


def _stage_patient(tx: WriteTransaction, system: str, value: str) -> str:
    """Stage a new Patient in `tx` as a create would (stamped with the transaction's lastUpdated)."""
    rid = unique("slow")
    resource = {"resourceType": "Patient", "id": rid, "meta": {}, "identifier": [{"system": system, "value": value}]}
    tx.stage(StagedWrite("Patient", rid, 1, "POST", stamp(resource, rid, 1, tx.now_us),
                         searchparams.index_rows(resource), existed=False))
    tx.flush()  # its rows are in the database, uncommitted
    return rid


def _post_patient(client: httpx.Client, system: str, value: str) -> dict[str, Any]:
    r = client.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": system, "value": value}]})
    assert r.status_code == 201, r.text
    return r.json()


def _pages(client: httpx.Client, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
    """Every entry of a history, following the next links."""
    return list(pages(client, path, params, None))


def _mine(entries: list[dict[str, Any]], system: str) -> list[str]:
    return [e["id"] for e in entries if any(i.get("system") == system for i in e.get("identifier", []))]


@pytest.mark.parametrize("path", ["/Patient/_history", "/_history"])
def test_a_since_poller_never_skips_a_transaction_that_commits_after_a_later_one(app, client, path):
    """Poll, as a sync client does, with the newest lastUpdated seen as the next `_since`, while a write that
    started first (smaller txid, earlier lastUpdated) is still open and a later one has committed: the
    poll must not return the later one yet (its lastUpdated would carry the poller past the slow one), and
    the next poll, after the slow one commits, returns both."""
    system = f"urn:test:side-by-side:{unique('s')}"
    created = _post_patient(client, system, "before")
    first, since = created["id"], created["meta"]["lastUpdated"]
    slow = _store(app).begin_write().__enter__()
    try:
        slow_id = _stage_patient(slow, system, "slow")
        fast_id = _post_patient(client, system, "fast")["id"]
        assert _store(app).read("Patient", fast_id).txid > slow.txid  # the later-started one committed first
        # Search sees the committed write at once (it pages by the newest txid it sees, not the watermark).
        found = client.get("/Patient", params={"identifier": f"{system}|fast"}).json()
        assert [e["resource"]["id"] for e in found.get("entry", [])] == [fast_id]
        polled = _pages(client, path, {"_since": since, "_count": "1"})
        assert _mine(polled, system) == [first]  # neither the slow one (uncommitted) nor the later one
        since = max(e["meta"]["lastUpdated"] for e in polled)
    except BaseException:
        slow.__exit__(RuntimeError, None, None)
        raise
    slow.__exit__(None, None, None)
    polled = _pages(client, path, {"_since": since, "_count": "1"})
    assert set(_mine(polled, system)) >= {slow_id, fast_id}
    # Newest first, in txid order: the slow transaction's version comes after the later one's.
    assert [rid for rid in _mine(polled, system) if rid != first] == [fast_id, slow_id]


def test_a_transaction_never_writes_behind_a_later_started_one(app, client):
    """A transaction that reads a resource a later-started transaction has since updated fails with
    `WriteConflict` (and the service runs such a write again): every resource's versions keep txid order."""
    system = f"urn:test:side-by-side:{unique('c')}"
    rid = _post_patient(client, system, "v1")["id"]
    slow = _store(app).begin_write().__enter__()
    try:
        body = {"resourceType": "Patient", "id": rid, "identifier": [{"system": system, "value": "v2"}]}
        assert client.put(f"/Patient/{rid}", json=body).status_code == 200  # a later txid, committed
        with pytest.raises(WriteConflict):
            slow.current([("Patient", rid)])
    finally:
        slow.__exit__(RuntimeError, None, None)

    def third(tx: WriteTransaction) -> int:
        current = tx.current([("Patient", rid)])[("Patient", rid)]
        content = {**orjson.loads(current.content), "meta": {}}
        content["identifier"][0]["value"] = "v3"
        tx.stage(StagedWrite("Patient", rid, current.version + 1, "PUT", stamp(content, rid, current.version + 1, tx.now_us),
                             searchparams.index_rows(content), existed=True))
        return current.version + 1

    assert _store(app).write(third) == 3
    versions = _pages(client, f"/Patient/{rid}/_history", {})
    assert [v["meta"]["versionId"] for v in versions] == ["3", "2", "1"]
    in_type = [v["meta"]["versionId"] for v in _pages(client, "/Patient/_history", {"_count": "50"}) if v["id"] == rid]
    assert in_type == ["3", "2", "1"]



def test_a_database_restored_into_a_younger_cluster_numbers_new_versions_after_the_stored_ones(app, client):
    """After a restore into a cluster whose transaction ids are behind the stored txids (simulated by moving
    every stored txid ahead), a start-up's migration step raises the txid offset: a new write numbers after
    every stored version, is newest in history, and is not held back by the watermark. Running it again
    changes nothing."""
    system = f"urn:test:restore:{unique('r')}"
    before = _post_patient(client, system, "before")
    engine = _store(app).engine
    with engine.begin() as conn:
        columns = conn.execute(text("SELECT table_name, column_name FROM information_schema.columns"
                                    " WHERE table_schema = current_schema() AND column_name LIKE '%txid'")).all()
        assert {"resources", "resource_history", "alignment_watermark"} <= {table for table, _ in columns}
        for table, column in columns:  # names from the catalogue, not from input
            conn.execute(text(f'UPDATE "{table}" SET "{column}" = "{column}" + 1000000000000'))
        restored_newest = conn.execute(text("SELECT max(txid) FROM resource_history")).scalar_one()
    migrate(engine)  # what every start runs first
    after = _post_patient(client, system, "after")
    with engine.connect() as conn:
        written = conn.execute(text("SELECT txid FROM resources WHERE rtype = 'Patient' AND rid = :rid"),
                               {"rid": after["id"]}).scalar_one()
        offset = conn.execute(text("SELECT value FROM txid_offset")).scalar_one()
    assert written > restored_newest
    history = _pages(client, "/Patient/_history", {"_since": before["meta"]["lastUpdated"]})
    assert _mine(history, system) == [after["id"], before["id"]]  # newest first, neither held back
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM txid_offset")).scalar_one() == offset


def _waiting_on_a_claim(app: AppServer) -> bool:
    """A backend of the app's database waits to claim a key another transaction holds."""
    with _store(app).engine.connect() as conn:
        return bool(conn.execute(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'"
            " AND wait_event_type = 'Lock' AND starts_with(query, 'INSERT INTO write_claims')")).scalar())


def test_a_roster_change_that_meets_a_later_started_write_of_its_list_runs_again(app, client):
    """`$member-add` goes through `Store.write` as FHIR writes do: held on its claim of the Group while a
    later-started transaction writes a new version of that Group, it meets `WriteConflict`, runs again, and
    writes the version after it (not a 500, and no version behind a later one)."""
    population = make_population(client, 1)
    r = client.post("/Group", json=draft_group(population))
    assert r.status_code == 201, r.text
    gid = r.json()["id"]
    store = _store(app)
    holder = store.begin_write().__enter__()
    try:
        holder.claim([f"Group/{gid}"])
        with ThreadPoolExecutor(1) as pool, app.http(app.auth) as other:
            added = pool.submit(other.post, f"/Group/{gid}/$member-add", json=by_member_id(population, 0))
            deadline = time.monotonic() + 30
            while not _waiting_on_a_claim(app):
                assert not added.done(), added.result().text
                assert time.monotonic() < deadline, "the roster change never waited on the held claim"
                time.sleep(0.05)
            current = store.read("Group", gid)
            content = orjson.loads(current.content)
            content["meta"] = {k: v for k, v in content["meta"].items() if k not in ("versionId", "lastUpdated")}
            with store.engine.begin() as conn:  # a later-started write of the Group, committed while it waits
                append_versions(conn, "Group", [(gid, current.version + 1)],
                                lambda rid, version, lu: stamp(content, rid, version, lu), begin_versions(conn))
            holder.__exit__(RuntimeError, None, None)
            holder = None
            response = added.result(timeout=60)
    finally:
        if holder is not None:
            holder.__exit__(RuntimeError, None, None)
    assert response.status_code == 200, response.text
    versions = _pages(client, f"/Group/{gid}/_history", {})
    assert [v["meta"]["versionId"] for v in versions] == ["3", "2", "1"]
    assert versions[0]["quantity"] == 1
    members = client.get(f"/Group/{gid}").json().get("member", [])
    assert [m["entity"]["reference"] for m in members] == [f"Patient/{population.patients[0]}"]
