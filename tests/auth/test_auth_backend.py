"""SMART Backend Services with real RS384 and ES384 keys; registration by CLI, clients file and JWKS
URL (served from a local HTTP server with real Cache-Control headers), all without a restart."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from server.auth.models import build_client
from tests.support.auth import auth_store, backend_token, bearer, register_backend
from tests.support.servers import ROOT, ClientKey, unique


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_client_credentials(server, alg):
    key = register_backend(server, "system/Patient.rs system/Observation.rs", alg)
    r = httpx.post(server.token_url, data=key.token_form(server.token_url, "system/Patient.read system/Observation.rs"))
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    body = r.json()
    assert body["token_type"] == "bearer" and 0 < body["expires_in"] <= 300
    assert body["scope"] == "system/Observation.rs system/Patient.read"  # v1 answered in v1
    assert "refresh_token" not in body
    keys = KeySet.import_key_set(httpx.get(server.url + "/auth/jwks").json())
    claims = jwt.decode(body["access_token"], keys, algorithms=["ES384"]).claims
    assert claims["aud"] == server.fhir and claims["client_id"] == key.client_id and claims["sub"] == key.client_id
    assert claims["exp"] - claims["iat"] == body["expires_in"]
    assert httpx.get(server.fhir + "/Patient", params={"_count": 1}, headers=bearer(body["access_token"])).status_code == 200


def run_cli(server, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PLANFIT_DATABASE_URL": server.database_url}
    return subprocess.run([sys.executable, "-m", "server.cli", *args], cwd=ROOT, env=env, input=stdin,
                          capture_output=True, text=True, timeout=120)


def test_cli_registration_and_token_work_without_restart(server, tmp_path):
    client_id = unique("cli")
    out = run_cli(server, "keygen", "--out", str(tmp_path / "k"), "--alg", "RS384")
    assert out.returncode == 0, out.stderr
    assert oct((tmp_path / "k.pem").stat().st_mode & 0o777) == "0o600"
    out = run_cli(server, "clients", "add", "--id", client_id, "--jwks-file", str(tmp_path / "k.jwks.json"),
                  "--scope", "system/Patient.rs", "--source-kind", "claims", "--source-uri", "urn:test:cli-feed")
    assert out.returncode == 0, out.stderr
    again = run_cli(server, "clients", "add", "--id", client_id, "--jwks-file", str(tmp_path / "k.jwks.json"),
                    "--scope", "system/Patient.rs")
    assert again.returncode == 1 and "already registered" in again.stderr
    listed = json.loads(run_cli(server, "clients", "list", "--json").stdout)
    mine = next(c for c in listed if c["id"] == client_id)
    assert mine["source_kind"] == "claims" and mine["source_uri"] == "urn:test:cli-feed" and mine["registered_by"] == "cli"
    out = run_cli(server, "token", "--client-id", client_id, "--key", str(tmp_path / "k.pem"), "--scope",
                  "system/Patient.rs", "--url", server.url)
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip()
    assert httpx.get(server.fhir + "/Patient", params={"_count": 1}, headers=bearer(token)).status_code == 200
    # The FHIR base (the SMART issuer, what SMART clients are given) works as well as the server root.
    out = run_cli(server, "token", "--client-id", client_id, "--key", str(tmp_path / "k.pem"), "--scope",
                  "system/Patient.rs", "--url", server.fhir + "/")
    assert out.returncode == 0, out.stderr
    assert httpx.get(server.fhir + "/Patient", params={"_count": 1}, headers=bearer(out.stdout.strip())).status_code == 200
    assert run_cli(server, "clients", "remove", "--id", client_id).returncode == 0
    refused = run_cli(server, "token", "--client-id", client_id, "--key", str(tmp_path / "k.pem"), "--url", server.url)
    assert refused.returncode == 1 and "invalid_client" in refused.stderr


def test_cli_refuses_unsafe_registrations(server, tmp_path):
    key = ClientKey.generate("x", "ES384")
    private = tmp_path / "private.json"
    private.write_text(json.dumps({"keys": [{**key.key.as_dict(private=True), "kid": "k"}]}))
    out = run_cli(server, "clients", "add", "--id", unique("bad"), "--jwks-file", str(private), "--scope", "system/*.rs")
    assert out.returncode == 1 and "private key material" in out.stderr
    out = run_cli(server, "clients", "add", "--id", unique("bad"), "--public", "--redirect-uri", "http://evil.example/cb",
                  "--scope", "patient/*.rs")
    assert out.returncode == 1 and "https" in out.stderr
    out = run_cli(server, "clients", "add", "--id", unique("bad"), "--public", "--redirect-uri", "https://app.example/cb",
                  "--scope", "system/*.rs")
    assert out.returncode == 1 and "system/" in out.stderr
    out = run_cli(server, "clients", "add", "--id", unique("bad"), "--jwks-url", "https://c.example/jwks", "--scope", "bogus")
    assert out.returncode == 1 and "unrecognised scope" in out.stderr


def test_cli_users(server):
    username = unique("cliuser")
    out = run_cli(server, "users", "add", "--username", username, "--password-stdin", "--fhir-user", "Practitioner/p1",
                  "--all-patients", stdin="s3cret-passw0rd\n")
    assert out.returncode == 0, out.stderr
    assert username in run_cli(server, "users", "list").stdout
    user = auth_store(server.database_url).get_user(username)
    assert user is not None and user.all_patients and user.password_hash.startswith("scrypt$")
    assert run_cli(server, "users", "remove", "--username", username).returncode == 0


def test_clients_file_is_reloaded_while_running(server):
    assert server.clients_file is not None
    original = server.clients_file.read_text()
    newcomer = ClientKey.generate(unique("file"), "ES384")
    data = json.loads(original)
    data["clients"].append({"id": newcomer.client_id, "jwks": newcomer.jwks(), "scope": "system/Patient.rs"})
    try:
        server.clients_file.write_text(json.dumps(data))
        assert _eventually_status(server, newcomer, 200)
        server.clients_file.write_text("{ broken")  # a bad edit keeps what was registered
        time.sleep(2.5)
        assert backend_token(server, newcomer, "system/Patient.rs")
        server.clients_file.write_text(original)
        assert _eventually_status(server, newcomer, 400)
    finally:
        server.clients_file.write_text(original)


def _eventually_status(server, key: ClientKey, status: int, within: float = 10) -> bool:
    deadline = time.time() + within
    while time.time() < deadline:
        if httpx.post(server.token_url, data=key.token_form(server.token_url, "system/Patient.rs")).status_code == status:
            return True
        time.sleep(0.5)
    return False


# ---- JWKS URL -----------------------------------------------------------------------------------------


class JwksHost:
    """A client's JWKS endpoint on 127.0.0.1: serves `jwks` with `cache_control`, counts fetches."""

    def __init__(self):
        self.jwks: dict = {"keys": []}
        self.cache_control: str | None = None
        self.hits = 0
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server API)
                host.hits += 1
                body = json.dumps(host.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                if host.cache_control is not None:
                    self.send_header("Cache-Control", host.cache_control)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def jwks_host():
    host = JwksHost()
    yield host
    host.close()


def _jwks_client(server, host: JwksHost, key: ClientKey) -> None:
    host.jwks = key.jwks()
    auth_store(server.database_url).put_client(build_client(key.client_id, scope="system/Patient.rs", jwks_url=host.url))


def test_jwks_url_is_cached_as_max_age_allows(server, jwks_host):
    key = ClientKey.generate(unique("jku"), "RS384")
    jwks_host.cache_control = "public, max-age=300"
    _jwks_client(server, jwks_host, key)
    for _ in range(3):
        backend_token(server, key, "system/Patient.rs")
    assert jwks_host.hits == 1


@pytest.mark.parametrize("cache_control", ["no-store", "no-cache", "max-age=0"])
def test_jwks_url_is_fetched_every_time_when_not_cacheable(server, jwks_host, cache_control):
    key = ClientKey.generate(unique("jku"), "ES384")
    jwks_host.cache_control = cache_control
    _jwks_client(server, jwks_host, key)
    for _ in range(3):
        backend_token(server, key, "system/Patient.rs")
    assert jwks_host.hits == 3


def test_rotated_client_key_is_found_by_refetching(server, jwks_host):
    old = ClientKey.generate(unique("rot"), "ES384")
    jwks_host.cache_control = "max-age=3600"
    _jwks_client(server, jwks_host, old)
    backend_token(server, old, "system/Patient.rs")
    new = ClientKey(old.client_id, ClientKey.generate("x", "ES384", kid="rotated").key, "ES384")
    jwks_host.jwks = new.jwks()
    time.sleep(5.2)  # the server re-fetches for an unknown kid at most every 5 s
    assert backend_token(server, new, "system/Patient.rs")
    assert jwks_host.hits == 2


def test_unreachable_jwks_url_is_invalid_client(server, jwks_host):
    key = ClientKey.generate(unique("gone"), "ES384")
    _jwks_client(server, jwks_host, key)
    jwks_host.close()
    r = httpx.post(server.token_url, data=key.token_form(server.token_url, "system/Patient.rs"))
    assert r.status_code == 400 and r.json()["error"] == "invalid_client"
