"""Operations endpoints and logs, over HTTP against real server processes.

`/healthz`, `/readyz` and `/metrics` on the session servers (SQLite and PostgreSQL); JSON logs, the
metrics token, readiness failing when the schema is not at the expected migrations, and an unexpected
error logged with its stack but no data, on a server of this module's own (SQLite), whose database
the test can alter.
"""

from __future__ import annotations

import re
import sqlite3
import time
import uuid

import httpx
import orjson
import pytest

from tests.support.servers import BackendToken, start_server, stop_server, unique, write_clients_file
from tests.support.reliability import metric_sample

METRICS_TOKEN = "metrics-" + uuid.uuid4().hex


def test_health_probes_are_open(server):
    assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(server.url + "/readyz")
    assert ready.status_code == 200 and ready.json() == {"status": "ready"}
    # The FHIR API next to them still wants a token.
    assert httpx.get(server.fhir + "/Patient").status_code == 401


def test_metrics_count_requests_writes_evaluations_and_export_jobs(server, client):
    before = httpx.get(server.url + "/metrics").text
    pid = client.post("/Patient", json={"resourceType": "Patient", "birthDate": "1970-01-01"}).json()["id"]
    coverage = {"resourceType": "Coverage", "status": "active", "beneficiary": {"reference": f"Patient/{pid}"},
                "payor": [{"display": "Plan"}], "period": {"start": "2020-01-01"}}
    assert client.post("/Coverage", json=coverage).status_code == 201
    assert client.get(f"/Patient/{pid}").status_code == 200
    assert httpx.get(server.fhir + f"/Patient/{pid}").status_code == 401
    response = httpx.get(server.url + "/metrics")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    after = response.text

    def grew(name: str, **labels: str) -> float:
        return metric_sample(after, name, **labels) - metric_sample(before, name, **labels)

    # Route templates, never ids: the read and the unauthenticated read are both /fhir/{rtype}/{rid}.
    assert pid not in after
    assert grew("planfit_http_requests_total", method="POST", route="/fhir/{rtype}", status="201") == 2
    assert grew("planfit_http_requests_total", method="GET", route="/fhir/{rtype}/{rid}", status="200") == 1
    assert grew("planfit_http_requests_total", method="GET", route="/fhir/{rtype}/{rid}", status="401") == 1
    assert grew("planfit_http_request_duration_seconds_count", method="POST", route="/fhir/{rtype}", status="201") == 2
    assert grew("planfit_resources_written_total", type="Patient", operation="create") == 1
    assert grew("planfit_resources_written_total", type="Coverage", operation="create") == 1
    assert grew("planfit_alignment_evaluation_seconds_count", scope="incremental") >= 2
    for state in ("queued", "running", "completed", "failed", "cancelled"):
        assert re.search(rf'^planfit_export_jobs\{{state="{state}"\}} \d', after, re.M), state


@pytest.fixture(scope="module")
def json_server(tmp_path_factory, backend_client_keys):
    """A SQLite server with JSON logs and a metrics token."""
    workdir = tmp_path_factory.mktemp("ops-server")
    clinical, claims = backend_client_keys
    clients = write_clients_file(workdir / "clients.json", clinical, claims)
    database = workdir / "planfit.db"
    log_path = workdir / "server.log"
    process, url = start_server(f"sqlite:///{database}", log_path,
                                {"PLANFIT_CLIENTS_FILE": str(clients), "PLANFIT_LOG_FORMAT": "json",
                                 "PLANFIT_METRICS_TOKEN": METRICS_TOKEN})
    auth = BackendToken(url + "/auth/token", clinical, "system/*.cruds")
    yield url, database, log_path, auth
    stop_server(process)


def test_json_logs_parse_and_carry_no_phi(json_server):
    url, _database, log_path, auth = json_server
    family, mrn = unique("Zanzibarova"), unique("MRN")
    patient = {"resourceType": "Patient", "name": [{"family": family, "given": ["Wilhelmina"]}],
               "identifier": [{"system": "urn:test:mrn", "value": mrn}], "birthDate": "1961-07-14"}
    with httpx.Client(base_url=url + "/fhir", auth=auth, headers={"Content-Type": "application/fhir+json"}) as c:
        pid = c.post("/Patient", json=patient).json()["id"]
        search = c.get("/Patient", params={"identifier": f"urn:test:mrn|{mrn}", "family": family},
                       headers={"X-Request-ID": "trace-42"})
        assert search.status_code == 200 and search.headers["x-request-id"] == "trace-42"
        assert c.get(f"/Patient/{pid}").status_code == 200
        # A request id that could inject text into the log is replaced.
        odd = c.get(f"/Patient/{pid}", headers={"X-Request-ID": "a b\"c"}).headers["x-request-id"]
        assert re.fullmatch(r"[0-9a-f]{32}", odd)
        # Each request the server names gets its own id.
        assert c.get(f"/Patient/{pid}").headers["x-request-id"] not in (odd, "trace-42")
        assert c.post("/Patient", json={"resourceType": "Patient", "gender": family}).status_code == 400
    # A request's line is written just after its response: wait for the line of a last request.
    marker = httpx.get(url + "/healthz").headers["x-request-id"]
    deadline = time.monotonic() + 30
    while marker not in (text := log_path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker in text
    records = [orjson.loads(line) for line in text.splitlines() if not line.startswith("PlanFit FHIR R4 server:")]
    assert all({"time", "level", "logger", "message"} <= r.keys() for r in records)
    requests = [r for r in records if r["logger"] == "planfit.request"]
    traced = [r for r in requests if r.get("request_id") == "trace-42"]
    assert len(traced) == 1
    assert traced[0]["method"] == "GET" and traced[0]["route"] == "/fhir/{rtype}" and traced[0]["status"] == 200
    assert isinstance(traced[0]["duration_ms"], float)
    assert any(r["route"] == "/fhir/{rtype}/{rid}" and r["status"] == 200 for r in requests)
    assert any(r["route"] == "/fhir/{rtype}" and r["status"] == 400 for r in requests)
    for secret in (family, mrn, "Wilhelmina", "1961-07-14", pid):
        assert [line for line in text.splitlines() if secret in line] == [], secret


def test_unexpected_errors_are_logged_with_type_and_stack_but_no_data(json_server):
    """A fault of ours (here a table gone from under the server) answers 500 and logs the exception's
    type and stack frames; never its message, which can quote request data."""
    url, database, log_path, auth = json_server
    family = unique("Quillfeatherby")
    with sqlite3.connect(database) as db:
        db.execute("ALTER TABLE idx_string RENAME TO idx_string_away")
    try:
        with httpx.Client(base_url=url + "/fhir", auth=auth) as c:
            r = c.get("/Patient", params={"family": family}, headers={"X-Request-ID": "fault-7"})
    finally:
        with sqlite3.connect(database) as db:
            db.execute("ALTER TABLE idx_string_away RENAME TO idx_string")
    assert r.status_code == 500 and r.json()["issue"][0]["code"] == "exception"
    deadline = time.monotonic() + 30
    while "fault-7" not in (text := log_path.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    records = [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]
    (fault,) = [r for r in records if r["logger"] == "planfit" and r.get("request_id") == "fault-7"]
    assert fault["level"] == "error" and fault["exception"] == "OperationalError"
    assert 'server/fhir/service.py", line' in fault["stack"] and "in search" in fault["stack"]
    assert family not in text and "no such table" not in text


def test_metrics_token(json_server):
    url = json_server[0]
    assert httpx.get(url + "/metrics").status_code == 401
    assert httpx.get(url + "/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert ok.status_code == 200 and "planfit_http_requests_total" in ok.text


def test_readyz_fails_while_the_schema_is_not_at_the_expected_migrations(json_server):
    url, database = json_server[0], json_server[1]
    assert httpx.get(url + "/readyz").status_code == 200
    with sqlite3.connect(database) as db:
        db.execute("INSERT INTO alembic_version (version_num) VALUES ('ffffffffffff')")
    try:
        response = httpx.get(url + "/readyz")
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable", "reason": "database schema is not at the expected migrations"}
        assert httpx.get(url + "/healthz").status_code == 200  # alive, only not ready
    finally:
        with sqlite3.connect(database) as db:
            db.execute("DELETE FROM alembic_version WHERE version_num = 'ffffffffffff'")
    assert httpx.get(url + "/readyz").status_code == 200
