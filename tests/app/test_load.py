"""`planfit load` as a real process: against the session servers (SQLite and PostgreSQL) for loading,
resuming and rejections, and against a small HTTP server of the test's own for what a FHIR server
under pressure does (429 with Retry-After, 503) and for a run killed half-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson
import pytest

from tests.support.servers import ROOT, unique

MRN = "urn:test:load"


def planfit_load(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "server.cli", "load", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})


def patient(tag: str, n: int, **extra) -> dict:
    return {"resourceType": "Patient", "identifier": [{"system": MRN, "value": f"{tag}-{n}"}], **extra}


def transaction(*resources: dict, kind: str = "transaction") -> dict:
    entries = [{"resource": r, "request": {"method": "POST", "url": r["resourceType"]}} for r in resources]
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def write(path: Path, data: dict | list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, list):
        path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in data))
    else:
        path.write_bytes(orjson.dumps(data))
    return path


@pytest.fixture
def auth_args(server, backend_client_keys, tmp_path) -> list[str]:
    """Backend Services as the clinical test client, the way an operator would: its PEM key and kid."""
    clinical = backend_client_keys[0]
    pem = tmp_path / "clinical.pem"
    pem.write_bytes(clinical.key.as_pem(private=True))
    return ["--url", server.fhir, "--client-id", clinical.client_id, "--key", str(pem), "--kid", clinical.kid]


def count(client, tag: str) -> int:
    found = client.get("/Patient", params={"identifier": f"{MRN}|", "_count": 1000}).json().get("entry", [])
    return sum(1 for e in found if e["resource"]["identifier"][0]["value"].startswith(tag + "-"))


def test_folder_and_ndjson_are_loaded_then_skipped_when_run_again(server, client, auth_args, tmp_path):
    tag = unique("load")
    folder = tmp_path / "bundles"
    write(folder / "a.json", transaction(patient(tag, 1), patient(tag, 2)))
    write(folder / "sub" / "b.json", transaction(patient(tag, 3)))
    write(folder / "single.json", patient(tag, 4))  # a lone resource: posted as a one-entry transaction
    ndjson = write(tmp_path / "patients.ndjson", [patient(tag, n, id=f"{tag}-{n}") for n in range(5, 12)])
    state, rejects = tmp_path / "state.ndjson", tmp_path / "rejects.ndjson"
    common = [*auth_args, "--state", state, "--rejects", rejects, "--batch", "3", "--concurrency", "2"]

    first = planfit_load(folder, ndjson, *common, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "loaded 11 resources in 6 requests" in first.stdout and "0 skipped" in first.stdout
    assert "resources/s" in first.stderr  # the progress bar
    assert count(client, tag) == 11
    assert client.get(f"/Patient/{tag}-7").status_code == 200  # NDJSON ids are kept (PUT)
    assert len(state.read_text().splitlines()) == 6 and not rejects.exists()

    # Everything is finished: nothing is posted again; a new file is the only thing loaded.
    write(folder / "c.json", transaction(patient(tag, 12)))
    again = planfit_load(folder, ndjson, *common, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "loaded 1 resources in 1 requests" in again.stdout and "6 skipped" in again.stdout
    assert count(client, tag) == 12


@pytest.mark.parametrize("server", ["sqlite"], indirect=True)  # the loader's behaviour, not the database's
def test_rejections_are_reported_with_their_operation_outcome(server, client, auth_args, tmp_path):
    tag = unique("rej")
    bad = write(tmp_path / "in" / "bad.json", transaction(patient(tag, 1), patient(tag, 2, gender="sometimes")))
    batch = write(tmp_path / "in" / "batch.json",
                  transaction(patient(tag, 3), patient(tag, 4, birthDate="yesterday"), kind="batch"))
    write(tmp_path / "in" / "notes.json", {"hello": "world"})
    state, rejects = tmp_path / "state.ndjson", tmp_path / "rejects.ndjson"
    result = planfit_load(tmp_path / "in", *auth_args, "--state", state, "--rejects", rejects, cwd=tmp_path)
    assert result.returncode == 1
    assert f"rejected (400): {bad}:" in result.stderr
    assert f"{batch} entry 1:" in result.stderr and "notes.json: not a FHIR resource" in result.stderr
    rows = [json.loads(line) for line in rejects.read_text().splitlines()]
    by_input = {(Path(r["input"]).name, r["entry"]): r for r in rows}
    assert set(by_input) == {("bad.json", None), ("batch.json", 1), ("notes.json", None)}
    whole = by_input[("bad.json", None)]
    assert whole["status"] == 400 and whole["outcome"]["resourceType"] == "OperationOutcome"
    assert whole["outcome"]["issue"][0]["severity"] == "error"
    entry = by_input[("batch.json", 1)]
    assert entry["status"] == 400 and entry["outcome"]["resourceType"] == "OperationOutcome"
    # The transaction wrote nothing; the batch wrote its good entry; only the batch counts as finished.
    assert count(client, tag) == 1
    assert [json.loads(line)["key"].split(":")[0] for line in state.read_text().splitlines()] == [str(batch.resolve())]


class FlakyFhir(BaseHTTPRequestHandler):
    """Answers POST /fhir by a script of statuses (then 200), recording each request's time and body."""

    script: list[tuple[int, dict[str, str]]] = []
    seen: list[tuple[float, bytes]] = []
    delay = 0.0

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((time.monotonic(), body))
        time.sleep(type(self).delay)
        status, headers = type(self).script.pop(0) if type(self).script else (200, {})
        payload = orjson.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": []}
                               if status == 200 else
                               {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "transient"}]})
        self.send_response(status)
        for name, value in {**headers, "Content-Type": "application/fhir+json",
                            "Content-Length": str(len(payload))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def flaky():
    class Handler(FlakyFhir):
        script, seen = [], []

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/fhir", Handler
    httpd.shutdown()
    httpd.server_close()


def test_429_and_503_are_retried_honouring_retry_after(flaky, tmp_path):
    url, handler = flaky
    handler.script = [(429, {"Retry-After": "1"}), (503, {})]
    data = write(tmp_path / "one.json", transaction(patient("retry", 1)))
    result = planfit_load(data, "--url", url, "--state", tmp_path / "s", "--rejects", tmp_path / "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "loaded 1 resources in 1 requests" in result.stdout and "2 retries" in result.stdout
    times = [t for t, _ in handler.seen]
    assert len(times) == 3 and times[1] - times[0] >= 0.9  # waited as Retry-After said
    assert all(body == handler.seen[0][1] for _, body in handler.seen)


def test_a_killed_run_resumes_where_it_stopped(flaky, tmp_path):
    url, handler = flaky
    handler.delay = 0.4
    files = [write(tmp_path / "in" / f"b{n:02d}.json", transaction(patient("kill", n))) for n in range(12)]
    state = tmp_path / "state.ndjson"
    args = [tmp_path / "in", "--url", url, "--state", state, "--rejects", tmp_path / "r", "--concurrency", "2"]
    process = subprocess.Popen([sys.executable, "-m", "server.cli", "load", *map(str, args)], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not state.exists() or len(state.read_text().splitlines()) < 3):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(state.read_text().splitlines())
    assert 3 <= finished < len(files)
    first_run = len(handler.seen)

    result = planfit_load(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"{finished} skipped" in result.stdout
    resent = {orjson.loads(body)["entry"][0]["resource"]["identifier"][0]["value"] for _, body in handler.seen[first_run:]}
    assert len(resent) == len(files) - finished  # only what the state file did not list
    everything = {orjson.loads(body)["entry"][0]["resource"]["identifier"][0]["value"] for _, body in handler.seen}
    assert everything == {f"kill-{n}" for n in range(12)}
