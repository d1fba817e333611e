"""Atomicity under kill -9 (SPEC §9): several clients post transaction bundles to a real server process
on PostgreSQL, the process is killed mid-stream, restarted, and every bundle is then either fully
present or fully absent, and the findings equal a full re-evaluation.

Every other cycle the test holds the evaluation lock row while writes commit, so at the kill some
bundles are certainly committed with their evaluation not run: the restart has to find and evaluate
them (without that, their members' findings would be missing). The other cycles kill at an arbitrary
moment of the stream.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from typing import Iterator

import httpx
import pytest
from sqlalchemy import distinct, func, select

from server.store.schema import resource_history
from tests.support.reliability import (
    evaluation_lock_held,
    RESOURCES_PER_MEMBER,
    Database,
    Process,
    Servers,
    assert_findings_match_full_evaluation,
    awaiting_evaluation,
    fresh_database,
    member_bundle,
    servers_on,
    stored_per_marker,
)

CLIENTS = 4
MEMBERS_PER_BUNDLE = 4
CYCLES = 3


@pytest.fixture
def database(tmp_path) -> Iterator[Database]:
    with fresh_database("postgres", tmp_path) as db:
        yield db


@pytest.fixture
def servers(database) -> Iterator[Servers]:
    with servers_on(database) as running:
        yield running


class Stream:
    """Client threads posting bundles until the server goes away; what each bundle's answer was."""

    def __init__(self, servers: Servers, process: Process):
        self.servers, self.process = servers, process
        self.answers: dict[str, int | None] = {}  # marker → status, None when no answer came
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._post, daemon=True) for _ in range(CLIENTS)]

    def __enter__(self) -> "Stream":
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_exc) -> None:
        for t in self._threads:
            t.join(timeout=60)

    def answered(self) -> int:
        with self._lock:
            return sum(status is not None for status in self.answers.values())

    def wait_for_answers(self, count: int) -> None:
        deadline = time.time() + 60
        while self.answered() < count:
            assert time.time() < deadline, "the server stopped answering"
            time.sleep(0.05)

    def _post(self) -> None:
        with self.servers.client(self.process) as client:
            while True:
                marker = uuid.uuid4().hex
                with self._lock:
                    self.answers[marker] = None
                try:
                    r = client.post("", json=member_bundle(marker, MEMBERS_PER_BUNDLE))
                except httpx.TransportError:
                    return
                with self._lock:
                    self.answers[marker] = r.status_code


def write_count(database: Database) -> int:
    """Write transactions committed so far (each wrote its versions with one txid)."""
    with database.engine.connect() as conn:
        return conn.execute(select(func.count(distinct(resource_history.c.txid)))).scalar_one()


def wait_for_commits(database: Database, after: int, count: int) -> None:
    deadline = time.time() + 60
    while write_count(database) < after + count:
        assert time.time() < deadline, "no write committed while the evaluation lock was held"
        time.sleep(0.05)


def check_after_restart(servers: Servers, process: Process, answers: dict[str, int | None]) -> None:
    """Nothing awaits evaluation, findings equal a full re-evaluation, every bundle is all or nothing."""
    assert awaiting_evaluation(servers.database.engine) == 0
    with servers.client(process) as client:
        assert_findings_match_full_evaluation(client, servers.database.engine) > 0
        stored = stored_per_marker(client)
    whole = MEMBERS_PER_BUNDLE * RESOURCES_PER_MEMBER
    assert set(stored) <= set(answers)
    for marker, status in answers.items():
        assert status in (None, 200), (marker, status)
        expected = {whole} if status == 200 else {0, whole}
        assert stored.get(marker, 0) in expected, (marker, status, stored.get(marker, 0))


def test_kill_9_mid_stream_loses_nothing_and_leaves_no_stale_findings(servers, database):
    rng = random.Random(8)
    answers: dict[str, int | None] = {}
    for cycle in range(CYCLES):
        process = servers.start()
        if cycle:
            check_after_restart(servers, process, answers)
        with Stream(servers, process) as stream:
            stream.wait_for_answers(CLIENTS)
            if cycle % 2 == 0:
                before = write_count(database)
                with evaluation_lock_held(database):
                    wait_for_commits(database, before, 2)
                    servers.kill(process)
                assert awaiting_evaluation(database.engine) > 0
            else:
                stream.wait_for_answers(CLIENTS + rng.randrange(CLIENTS))
                servers.kill(process)
        answers.update(stream.answers)
    check_after_restart(servers, servers.start(), answers)
    assert sum(status == 200 for status in answers.values()) >= CYCLES * CLIENTS
