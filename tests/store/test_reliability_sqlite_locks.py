"""SQLite's single write lock shared by server processes on one file (SPEC §8, §9): a valid write is never
answered 500 because another writer holds the lock.

A write waits `PLANFIT_SQLITE_LOCK_WAIT_SECONDS` for the lock; past that the answer is 503 `lock-error` with
`Retry-After` (transient: the same request succeeds once the lock is free). Transactions that read before
they write begin with BEGIN IMMEDIATE: with a deferred BEGIN, once the other process committed, SQLite refused
the stale read snapshot the write lock at once ("database is locked", no waiting). That failed a second process
starting on a fresh file (its requested-reindex step after the first one's migration), and a bundle whose
post-commit statistics refresh (a read, then ANALYZE) met the other process's commit got 500 although it was
stored, so a client retrying it stored it twice.
"""

from __future__ import annotations

import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

import httpx
import pytest

from tests.support.reliability import Database, fresh_database, member_bundle, servers_on
from tests.support.servers import unique

BUNDLES = 6  # per process
MEMBERS = 60  # per bundle: ~1,500 index rows, past the statistics refresh's floor of 1,000 new rows


@pytest.fixture
def database(tmp_path) -> Iterator[Database]:
    with fresh_database("sqlite", tmp_path) as db:
        yield db


def test_write_waiting_past_the_lock_wait_gets_503_then_succeeds(database):
    with servers_on(database) as servers:
        process = servers.start(sqlite_lock_wait_seconds="1")
        with servers.client(process) as client:
            assert client.get("/Patient", params={"_count": "1"}).status_code == 200  # the token, before the lock
            holder = sqlite3.connect(database.url.removeprefix("sqlite:///"), isolation_level=None)
            try:
                holder.execute("BEGIN IMMEDIATE")  # another writer on the file, holding the lock throughout
                refused = client.post("/Patient", json={"resourceType": "Patient", "birthDate": "1970-01-01"})
            finally:
                holder.execute("ROLLBACK")
                holder.close()
            assert refused.status_code == 503, refused.text
            assert refused.headers["Retry-After"] == "1"
            outcome = refused.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert outcome["issue"][0]["code"] == "lock-error"
            retried = client.post("/Patient", json={"resourceType": "Patient", "birthDate": "1970-01-01"})
            assert retried.status_code == 201, retried.text


def test_two_processes_starting_at_once_on_a_fresh_file_both_serve(database):
    with servers_on(database) as servers:
        with ThreadPoolExecutor(2) as pool:  # both migrate, seed and reindex the same new file at once
            processes = list(pool.map(lambda _: servers.start(), range(2)))
        for process in processes:
            with servers.client(process) as client:
                created = client.post("/Patient", json={"resourceType": "Patient", "birthDate": "1970-01-01"})
                assert created.status_code == 201, created.text


def test_concurrent_bundles_through_two_processes_all_commit(database):
    with servers_on(database) as servers:
        processes = [servers.start(alignment_mode="sync") for _ in range(2)]  # one after the other
        clients = [servers.client(p) for p in processes]
        try:
            def post_bundles(client: httpx.Client) -> list[int]:
                return [client.post("", json=member_bundle(unique("bundle"), MEMBERS)).status_code
                        for _ in range(BUNDLES)]

            with ThreadPoolExecutor(2) as pool:
                statuses = [s for result in pool.map(post_bundles, clients) for s in result]
        finally:
            for c in clients:
                c.close()
        assert statuses == [200] * (2 * BUNDLES)
        for p in processes:
            assert "unhandled" not in p.log.read_text(errors="replace")
