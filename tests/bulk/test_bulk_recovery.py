"""Export jobs survive their server process: kill -9 mid-export, restart, and the job completes or
fails visibly. Also what needs a server of its own: the poll rate limit and file expiry (a slow or
short-lived job), and the `planfit export` command.

Each test runs its own server processes on its own database (SQLite file or PostgreSQL schema),
with a throttled export rate so the job is reliably still running when the process is killed.
Authorization is switched off on these servers: what is tested here is the job machinery.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from server.bulk.client import STATE_FILE
from tests.support.bulk import download, expected_lines, kick_off, make_cohort, stored, wait_for
from tests.support.reliability import Database, Process, Servers, fresh_database, servers_on
from tests.support.servers import DATABASES, FHIR_JSON, ROOT


@pytest.fixture(params=DATABASES)
def database(request, tmp_path) -> Database:
    with fresh_database(request.param, tmp_path) as fresh:
        yield fresh


@pytest.fixture
def servers(database) -> Servers:
    with servers_on(database) as running:
        yield running


def _exports(database: Database) -> Path:
    return database.workdir / "exports"


def _start(servers: Servers, **settings: str) -> tuple[Process, httpx.Client]:
    """A server process with authorization off (the job machinery is under test) and short leases; a
    client of it."""
    process = servers.start(auth="off", export_dir=str(_exports(servers.database)), export_lease_seconds="2",
                            **settings)
    return process, httpx.Client(base_url=process.fhir, timeout=60, headers=FHIR_JSON)


def _wait_until_exporting(client: httpx.Client, status_url: str) -> None:
    """Poll (as told) until the worker reports it is writing resources."""
    deadline = time.time() + 60
    while time.time() < deadline:
        r = client.get(status_url)
        assert r.status_code == 202, r.text
        if r.headers["X-Progress"].startswith("exporting"):
            return
        time.sleep(float(r.headers["Retry-After"]))
    raise AssertionError("the export never started")


def _path(url: str) -> str:
    """The URL relative to the FHIR base, to ask another server process on the same database."""
    return "/" + url.split("/fhir/", 1)[1]


def _expected(client, cohort) -> dict[str, set[bytes]]:
    """What a Group export of the cohort holds: its members' resources and the Group itself."""
    return {**expected_lines(client, cohort), **stored(client, [("Group", cohort.group_id)])}


def test_killed_export_is_resumed_by_another_process(servers, database):
    killed, first = _start(servers, export_max_rate="10")
    cohort = make_cohort(first, members=6, conditions=4)
    status_url = kick_off(first, f"/Group/{cohort.group_id}/$export").headers["Content-Location"]
    _wait_until_exporting(first, status_url)
    servers.kill(killed)
    first.close()

    _, second = _start(servers)
    done = wait_for(second, _path(status_url))
    assert done.status_code == 200, done.text
    lines = download(second, done.json())
    assert {t: set(v) for t, v in lines.items()} == _expected(second, cohort)
    assert all(len(v) == len(set(v)) for v in lines.values())
    # Only the attempt that completed left files behind.
    job_id = status_url.rsplit("/", 1)[1]
    assert [p.name for p in (_exports(database) / job_id).iterdir()] == ["2"]


def test_killed_export_fails_visibly_when_out_of_attempts(servers):
    killed, first = _start(servers, export_max_rate="10", export_max_attempts="1")
    cohort = make_cohort(first, members=6, conditions=4)
    status_url = kick_off(first, f"/Group/{cohort.group_id}/$export").headers["Content-Location"]
    _wait_until_exporting(first, status_url)
    servers.kill(killed)
    first.close()

    _, second = _start(servers, export_max_attempts="1")
    done = wait_for(second, _path(status_url))
    assert done.status_code == 500, done.text
    outcome = done.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "interrupted" in outcome["issue"][0]["diagnostics"]


def test_polling_faster_than_retry_after_gets_429(servers):
    _, client = _start(servers, export_max_rate="5", export_retry_after_seconds="2")
    cohort = make_cohort(client, members=2)
    status_url = kick_off(client, f"/Group/{cohort.group_id}/$export").headers["Content-Location"]
    first = client.get(status_url)
    assert first.status_code == 202 and first.headers["Retry-After"] == "2"
    assert first.headers["X-Progress"]
    too_soon = client.get(status_url)
    assert too_soon.status_code == 429, too_soon.text
    assert too_soon.headers["Retry-After"] == "2"
    assert too_soon.json()["resourceType"] == "OperationOutcome"
    time.sleep(2)
    assert client.get(status_url).status_code == 202
    assert client.delete(status_url).status_code == 202


def test_files_expire(servers, database):
    _, client = _start(servers, export_ttl_seconds="2")
    cohort = make_cohort(client, members=1)
    status_url = kick_off(client, f"/Group/{cohort.group_id}/$export").headers["Content-Location"]
    manifest = wait_for(client, status_url).json()
    url = manifest["output"][0]["url"]
    assert client.get(url).status_code == 200
    time.sleep(2.5)
    assert client.get(status_url).status_code == 404
    assert client.get(url).status_code == 404
    job_dir = _exports(database) / status_url.rsplit("/", 1)[1]
    deadline = time.time() + 10
    while job_dir.exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not job_dir.exists()


def _planfit_export(root: str, group_id: str, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", "export", "--url", root, "--group", group_id, "--out", str(out), *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )


def test_planfit_export_command_is_resumable(servers, database):
    _, client = _start(servers, export_file_lines="2")
    cohort = make_cohort(client, members=2, conditions=3)
    root = str(client.base_url).rstrip("/").removesuffix("/fhir")
    out = database.workdir / "pulled"

    done = _planfit_export(root, cohort.group_id, out)
    assert done.returncode == 0, done.stderr
    manifest = orjson.loads((out / "manifest.json").read_bytes())
    lines: dict[str, set[bytes]] = {}
    for item in manifest["output"]:
        lines.setdefault(item["type"], set()).update((out / item["url"].rsplit("/", 1)[1]).read_bytes().splitlines())
    assert lines == _expected(client, cohort)
    assert len(list(out.glob("Condition-*.ndjson"))) == 3  # 6 conditions, 2 lines per file

    # Lose one file, leave another half-downloaded: a second run fetches just those, the same job.
    names = sorted(p.name for p in out.glob("*.ndjson"))
    untouched = {name: (out / name).stat().st_mtime_ns for name in names[2:]}
    (out / names[0]).unlink()
    whole = (out / names[1]).read_bytes()
    (out / names[1]).unlink()
    (out / (names[1] + ".part")).write_bytes(whole[: len(whole) // 2])
    (out / STATE_FILE).write_bytes(
        orjson.dumps({**orjson.loads((out / STATE_FILE).read_bytes()), "done": {n: len((out / n).read_bytes()) for n in untouched}})
    )
    again = _planfit_export(root, cohort.group_id, out)
    assert again.returncode == 0, again.stderr
    assert (out / names[0]).is_file() and (out / names[1]).read_bytes() == whole
    assert {name: (out / name).stat().st_mtime_ns for name in names[2:]} == untouched
    assert orjson.loads((out / "manifest.json").read_bytes()) == manifest


def test_planfit_export_command_reports_refusal(servers, database):
    _, client = _start(servers)
    root = str(client.base_url).rstrip("/").removesuffix("/fhir")
    done = _planfit_export(root, "no-such-group", database.workdir / "x")
    assert done.returncode == 1
    assert "404" in done.stderr
