"""Discovery, the open/closed surface, CapabilityStatement security and CORS."""

from __future__ import annotations

import time

import pytest

from tests.support.auth import register_app, site_request
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)

REQUIRED = ("issuer", "jwks_uri", "authorization_endpoint", "token_endpoint", "introspection_endpoint",
            "grant_types_supported", "token_endpoint_auth_methods_supported",
            "token_endpoint_auth_signing_alg_values_supported", "scopes_supported", "capabilities",
            "code_challenge_methods_supported")


@pytest.mark.parametrize("accept", [None, "application/fhir+json", "text/html"])
def test_smart_configuration_is_json_whatever_the_accept_header(server, accept):
    headers = {"Accept": accept} if accept else {}
    r = site_request(server, "GET", "/fhir" + "/.well-known/smart-configuration", headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    config = r.json()
    assert all(field in config for field in REQUIRED)
    assert config["token_endpoint"] == server.url + "/auth/token"
    assert config["authorization_endpoint"] == server.url + "/auth/authorize"
    assert config["jwks_uri"] == server.url + "/auth/jwks"
    assert all(config[f].startswith("http://127.0.0.1:") for f in REQUIRED if f.endswith(("endpoint", "uri", "issuer")))
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert "private_key_jwt" in config["token_endpoint_auth_methods_supported"]
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    assert {"authorization_code", "client_credentials"} <= set(config["grant_types_supported"])
    assert {"launch-ehr", "launch-standalone", "client-confidential-asymmetric", "sso-openid-connect",
            "permission-v2", "context-standalone-patient"} <= set(config["capabilities"])


def test_capability_statement_declares_smart_security(server):
    security = site_request(server, "GET", "/fhir" + "/metadata").json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert security["extension"][0]["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    assert uris == {"token": server.url + "/auth/token", "authorize": server.url + "/auth/authorize",
                    "introspect": server.url + "/auth/introspect"}


@pytest.mark.parametrize("method, path", [
    ("GET", "/fhir/Patient"), ("GET", "/fhir/Patient/x"), ("POST", "/fhir"), ("GET", "/fhir/_history"),
    ("GET", "/fhir/$export"), ("GET", "/fhir/Group/g/$export"), ("GET", "/fhir/Measure/m/$evaluate-measure"),
    ("DELETE", "/fhir/Patient/x"), ("GET", "/fhir/.well-known/other"), ("GET", "/fhir"),
])
def test_everything_but_metadata_and_discovery_needs_a_token(server, method, path):
    r = site_request(server, method, path)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")


def test_jwks_is_public_and_bare(server):
    keys = site_request(server, "GET", "/auth/jwks").json()["keys"]
    assert {k["alg"] for k in keys} == {"RS256", "ES384"}
    assert all("d" not in k and k["kid"] and k["use"] == "sig" for k in keys)


def test_cors(server):
    origin = "http://127.0.0.1:9"
    register_app(server, "patient/*.rs", redirect_uri=f"{origin}/callback")
    r = site_request(server, "GET", "/fhir" + "/.well-known/smart-configuration", headers={"Origin": "https://anyone.example"})
    assert r.headers["access-control-allow-origin"] == "*"
    deadline = time.time() + 10  # registrations reach a process's origin cache within seconds
    while True:
        preflight = site_request(server, "OPTIONS", "/auth/token", headers={
            "Origin": origin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"})
        if preflight.status_code == 204 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert preflight.status_code == 204 and preflight.headers["access-control-allow-origin"] == origin
    preflight = site_request(server, "OPTIONS", "/fhir" + "/Patient/x", headers={
        "Origin": origin, "Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 204 and "Authorization" in preflight.headers["access-control-allow-headers"]
    denied = site_request(server, "GET", "/fhir" + "/Patient", headers={"Origin": origin})
    assert denied.status_code == 401 and denied.headers["access-control-allow-origin"] == origin
    stranger = site_request(server, "GET", "/fhir" + "/Patient", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in stranger.headers
