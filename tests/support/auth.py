"""Helpers of the SMART tests: registrations, App Launch driven through the real HTML forms, PKCE,
and tokens signed with the server's own key (read from its database) for expiry/audience cases.

Registrations are written with `AuthStore`, exactly what `planfit clients add` / `users add` do
(the CLI itself is exercised in test_auth_backend.py); a running server picks them up at once.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.util
import json
import os
import re
import secrets
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jws

from server.auth.models import User, build_client
from server.auth.passwords import hash_password
from server.auth.store import AuthStore
from server.store.db import make_engine
from tests.support.servers import ClientKey, RunningServer, unique

PASSWORD = "correct horse battery"
CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
PROBLEM = f"{CATEGORY}|problem-list-item"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@lru_cache(maxsize=None)
def auth_store(database_url: str) -> AuthStore:
    return AuthStore(make_engine(database_url))


def register_backend(server: RunningServer, scope: str, alg: str = "ES384", **kw) -> ClientKey:
    key = ClientKey.generate(unique("backend"), alg)
    auth_store(server.database_url).put_client(build_client(key.client_id, scope=scope, jwks=key.jwks(), **kw))
    return key


def register_app(server: RunningServer, scope: str, redirect_uri: str = "http://127.0.0.1:9/callback") -> str:
    client_id = unique("app")
    auth_store(server.database_url).put_client(
        build_client(client_id, scope=scope, public=True, redirect_uris=[redirect_uri])
    )
    return client_id


@lru_cache(maxsize=1)
def password_hash() -> str:
    """One hash of PASSWORD for every test user: scrypt at OWASP's cost takes most of a second."""
    return hash_password(PASSWORD)


def register_user(server: RunningServer, fhir_user: str | None, patients: list[str], username: str | None = None) -> str:
    username = username or unique("user")
    auth_store(server.database_url).put_user(User(username, password_hash(), fhir_user, tuple(patients)), replace=True)
    return username


def backend_token(server: RunningServer, key: ClientKey, scope: str) -> str:
    with server.site() as site:
        r = site.post("/auth/token", data=key.token_form(server.token_url, scope))
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def site_request(server: RunningServer, method: str, path: str, **options) -> httpx.Response:
    """One request to the server's root (`/auth/...`, `/fhir/...`) from a fresh client: no cookies carried over,
    on either tier."""
    with server.site() as site:
        return site.request(method, path, **options)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **FHIR_JSON}


# ---- PKCE and App Launch through the forms ------------------------------------------------------


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def hidden_request(html: str) -> str:
    match = re.search(r'name="request" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


@dataclass
class Authorized:
    code: str
    state: str
    verifier: str
    redirect_uri: str
    client_id: str


def authorize_params(server: RunningServer, client_id: str, scope: str, challenge: str, state: str,
                     redirect_uri: str = "http://127.0.0.1:9/callback", **extra) -> dict[str, str]:
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
              "state": state, "aud": server.fhir, "code_challenge": challenge, "code_challenge_method": "S256"}
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def login_form(browser: httpx.Client, server: RunningServer, client_id: str, scope: str) -> str:
    """Open an authorization request in `browser` (which keeps its cookie); the login form's request id."""
    _verifier, challenge = pkce()
    r = browser.get("/auth/authorize", params=authorize_params(server, client_id, scope, challenge, secrets.token_urlsafe(8)))
    assert r.status_code == 200, r.text
    return hidden_request(r.text)


def authorize(server: RunningServer, client_id: str, scope: str, username: str, *, patient: str | None = None,
              launch: str | None = None, redirect_uri: str = "http://127.0.0.1:9/callback") -> Authorized:
    """Walk authorize → login → (patient picker) → consent like a browser; return the code."""
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(16)
    with server.site(follow_redirects=False, timeout=30) as browser:
        r = browser.get("/auth/authorize", params=authorize_params(server, client_id, scope, challenge, state,
                                                                    redirect_uri, launch=launch))
        assert r.status_code == 200, r.text
        request_id = hidden_request(r.text)
        r = browser.post("/auth/login", data={"request": request_id, "username": username, "password": PASSWORD})
        assert r.status_code == 200, r.text
        if 'name="patient"' in r.text or 'name="patient_id"' in r.text:
            assert patient is not None, "the patient picker was shown"
            r = browser.post("/auth/patient", data={"request": request_id, "patient": patient})
            assert r.status_code == 200, r.text
        assert 'value="allow"' in r.text, r.text
        r = browser.post("/auth/consent", data={"request": request_id, "decision": "allow"})
        assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith(redirect_uri + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state]
    return Authorized(query["code"][0], state, verifier, redirect_uri, client_id)


def exchange(server: RunningServer, auth: Authorized, **overrides) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": auth.code, "redirect_uri": auth.redirect_uri,
            "code_verifier": auth.verifier, "client_id": auth.client_id}
    form.update(overrides)
    with server.site() as site:
        return site.post("/auth/token", data={k: v for k, v in form.items() if v is not None})


def app_token(server: RunningServer, client_id: str, scope: str, username: str, patient: str | None = None) -> dict:
    r = exchange(server, authorize(server, client_id, scope, username, patient=patient))
    assert r.status_code == 200, r.text
    return r.json()


# ---- tokens signed with the server's key --------------------------------------------------------


def server_signed(server: RunningServer, header: dict | None = None, **claims) -> str:
    """An access token signed with the server's real ES384 key, with chosen claims."""
    keys = auth_store(server.database_url).server_keys()
    key = keys.signing_key("ES384")
    now = int(time.time())
    body = {"iss": server.url + "/auth", "aud": server.fhir, "sub": "x", "client_id": "pytest-clinical",
            "scope": "system/*.cruds", "iat": now, "nbf": now, "exp": now + 300, "jti": uuid.uuid4().hex}
    body.update(claims)
    head = {"alg": "ES384", "typ": "at+jwt", "kid": key.kid, **(header or {})}
    return jws.serialize_compact(head, json.dumps(body).encode(), key, algorithms=["ES384"])


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict, claims: dict) -> str:
    """A token with `alg: none` (which no JOSE library will produce)."""
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}."


# ---- data -----------------------------------------------------------------------------------------


def create(client: httpx.Client, resource: dict) -> str:
    r = client.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def ids(bundle: dict, mode: str = "match") -> set[str]:
    return {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in bundle.get("entry", [])
            if e.get("search", {}).get("mode") == mode}


def condition(pid: str, tag: str, category: str = "problem-list-item", **extra) -> dict:
    return {
        "resourceType": "Condition",
        "identifier": [{"system": "urn:test:cond", "value": tag}],
        "category": [{"coding": [{"system": CATEGORY, "code": category}]}],
        "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F20.9"}]},
        "subject": {"reference": f"Patient/{pid}"},
        **extra,
    }


def observation(pid: str, tag: str, **extra) -> dict:
    return {
        "resourceType": "Observation",
        "identifier": [{"system": "urn:test:obs", "value": tag}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": f"Patient/{pid}"},
        **extra,
    }


APP_SCOPE = "launch launch/patient openid fhirUser offline_access patient/*.cruds user/*.cruds"


@dataclass
class World:
    """Three patients with data, an App Launch client, a doctor (patients A and B) and patient A as a user."""

    tag: str
    a: str
    b: str
    c: str
    a_problem: str  # Condition of A, problem-list-item
    a_encounter_dx: str  # Condition of A, encounter-diagnosis
    a_asserted_by_b: str  # Condition of A whose asserter is Patient B
    a_obs: str
    b_cond: str
    b_obs: str
    b_obs_about_a: str  # Observation of B whose focus is Patient A (not in A's compartment)
    c_obs: str
    app: str
    doctor: str
    patient_user: str


def build_world(server: RunningServer) -> World:
    tag = unique("w")
    with server.http(server.auth) as client:
        def patient(family: str) -> str:
            return create(client, {"resourceType": "Patient", "identifier": [{"system": "urn:test:mrn", "value": tag}],
                                   "name": [{"family": f"{family}-{tag}", "given": ["Test"]}]})

        a, b, c = patient("Alpha"), patient("Bravo"), patient("Charlie")
        world = World(
            tag=tag, a=a, b=b, c=c,
            a_problem=create(client, condition(a, tag)),
            a_encounter_dx=create(client, condition(a, tag, "encounter-diagnosis")),
            a_asserted_by_b=create(client, condition(a, tag, asserter={"reference": f"Patient/{b}"})),
            a_obs=create(client, observation(a, tag)),
            b_cond=create(client, condition(b, tag)),
            b_obs=create(client, observation(b, tag)),
            b_obs_about_a=create(client, observation(b, tag, focus=[{"reference": f"Patient/{a}"}])),
            c_obs=create(client, observation(c, tag)),
            app=register_app(server, APP_SCOPE),
            doctor="",
            patient_user="",
        )
    world.doctor = register_user(server, "Practitioner/doc-1", [a, b])
    world.patient_user = register_user(server, f"Patient/{a}", [])
    return world


# ---- browser --------------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def require_browser() -> None:
    """Skip locally without Chromium/Playwright; in CI (PLANFIT_TEST_POSTGRES=1) their absence fails."""
    missing = None
    if not Path(CHROMIUM).exists():
        missing = f"{CHROMIUM} is not installed (apt-get install chromium)"
    elif importlib.util.find_spec("playwright") is None:
        missing = "playwright is not installed (pip install -e '.[test]')"
    if missing and os.environ.get("PLANFIT_TEST_POSTGRES") == "1":
        pytest.fail(missing)
    if missing:
        pytest.skip(missing)
