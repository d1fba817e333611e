"""Server processes: several share one database (keys, clients, replay protection), and
PLANFIT_AUTH=off is the only way to switch authorization off — with a warning at every start."""

from __future__ import annotations

import httpx
import pytest

from tests.support.auth import register_backend
from tests.support.servers import start_server, stop_server
from tests.auth.test_auth_audit import events_of

PUBLIC = "https://planfit.example"


@pytest.fixture
def two_processes(server, tmp_path):
    """Two more processes on the session's database, behind one public URL (as behind a load balancer)."""
    env = {"PLANFIT_BASE_URL": PUBLIC}
    first = start_server(server.database_url, tmp_path / "a.log", env)
    second = start_server(server.database_url, tmp_path / "b.log", env)
    yield first[1], second[1]
    stop_server(first[0])
    stop_server(second[0])


def test_processes_share_keys_clients_and_jti(server, two_processes):
    a, b = two_processes
    key = register_backend(server, "system/Patient.rs")
    token_url = PUBLIC + "/auth/token"
    assert httpx.get(a + "/fhir/.well-known/smart-configuration").json()["token_endpoint"] == token_url
    form = key.token_form(token_url, "system/Patient.rs")
    r = httpx.post(a + "/auth/token", data=form)
    assert r.status_code == 200, r.text
    token = r.json()["access_token"]
    # B verifies A's token (one signing key in the database) …
    assert httpx.get(b + "/fhir/Patient", params={"_count": 1}, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    # … and refuses the assertion A already accepted (one jti store).
    replay = httpx.post(b + "/auth/token", data=form)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_client"
    assert httpx.get(a + "/auth/jwks").json() == httpx.get(b + "/auth/jwks").json() == httpx.get(server.url + "/auth/jwks").json()


def test_auth_off_opens_everything_and_warns(server, tmp_path):
    log = tmp_path / "off.log"
    process, url = start_server(server.database_url, log, {"PLANFIT_AUTH": "off"})
    try:
        r = httpx.post(url + "/fhir/Patient", json={"resourceType": "Patient"}, headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 201 and r.json()["meta"]["source"] == "urn:planfit:local"
        assert httpx.get(url + "/fhir/Patient", params={"_count": 1}).status_code == 200
        assert httpx.post(url + "/auth/token", data={"grant_type": "client_credentials"}).status_code == 404
        assert httpx.get(url + "/fhir/.well-known/smart-configuration").status_code == 404
        assert "security" not in httpx.get(url + "/fhir/metadata").json()["rest"][0]
        assert "PLANFIT_AUTH=off" in log.read_text() and "DISABLED" in log.read_text()
    finally:
        stop_server(process)
    anonymous = events_of(server, "2000-01-01", "anonymous", 1)
    assert any(e["subtype"][0]["code"] == "create" for e in anonymous)
    # the warning comes at every start, not only the first
    process, _url = start_server(server.database_url, log, {"PLANFIT_AUTH": "off"})
    stop_server(process)
    assert log.read_text().count("PLANFIT_AUTH=off") == 2


def test_any_other_auth_value_refuses_to_start(server, tmp_path):
    with pytest.raises(RuntimeError, match="PLANFIT_AUTH: Input should be 'on' or 'off', got 'false'"):
        start_server(server.database_url, tmp_path / "typo.log", {"PLANFIT_AUTH": "false"})
