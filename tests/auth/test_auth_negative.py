"""The negative suite: every attack or mistake gets its exact status and error, over real HTTP.

Token endpoint failures are RFC 6749 JSON errors (400); resource-server failures are 401 with a
`WWW-Authenticate: Bearer` challenge or 403/404 with an OperationOutcome.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import RSAKey

from server.auth.models import build_client
from tests.support.auth import (
    APP_SCOPE,
    PASSWORD,
    auth_store,
    authorize,
    authorize_params,
    b64,
    backend_token,
    bearer,
    build_world,
    exchange,
    hidden_request,
    observation,
    pkce,
    register_app,
    register_backend,
    server_signed,
    site_request,
    unsigned,
)
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.servers import ASSERTION_TYPE, ClientKey, unique

SCOPE = "system/Patient.rs system/Observation.rs"


@pytest.fixture(scope="module")
def world(server):
    return build_world(server)


@pytest.fixture(scope="module")
def backend(server) -> tuple[ClientKey, ClientKey]:
    """One client registered with an RSA and an EC key (so both algorithms are exercised)."""
    rsa = ClientKey.generate(unique("neg"), "RS384")
    ec = ClientKey(rsa.client_id, ClientKey.generate("x", "ES384").key, "ES384")
    jwks = {"keys": rsa.jwks()["keys"] + ec.jwks()["keys"]}
    auth_store(server.database_url).put_client(build_client(rsa.client_id, scope=SCOPE, jwks=jwks))
    return rsa, ec


def token_error(server, form: dict) -> tuple[int, str]:
    r = site_request(server, "POST", "/auth/token", data=form)
    assert r.headers["cache-control"] == "no-store"
    return r.status_code, r.json().get("error")


def assertion_form(key: ClientKey, assertion: str, scope: str = "system/Patient.rs") -> dict:
    return {"grant_type": "client_credentials", "scope": scope, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion}


# ---- Backend Services token endpoint ----------------------------------------------------------------

NOW = lambda: int(time.time())  # noqa: E731


@pytest.mark.parametrize("case, claims", [
    ("expired", lambda: {"exp": NOW() - 120, "iat": NOW() - 400}),
    ("future iat", lambda: {"iat": NOW() + 3600}),
    ("exp more than 5 minutes ahead", lambda: {"exp": NOW() + 3600}),
    ("wrong aud", lambda: {"aud": "https://evil.example/token"}),
    ("iss differs from sub", lambda: {"sub": "someone-else"}),
    ("missing jti", lambda: {"jti": None}),
])
def test_bad_assertion_claims_are_invalid_client(server, backend, case, claims):
    for key in backend:  # RS384 and ES384
        assert token_error(server, assertion_form(key, key.assertion(server.token_url, **claims()))) == (400, "invalid_client")


def test_replayed_jti_is_invalid_client(server, backend):
    rsa, _ = backend
    assertion = rsa.assertion(server.token_url)
    assert site_request(server, "POST", "/auth/token", data=assertion_form(rsa, assertion)).status_code == 200
    assert token_error(server, assertion_form(rsa, assertion)) == (400, "invalid_client")
    same_jti = rsa.assertion(server.token_url, jti=json.loads(base64.urlsafe_b64decode(assertion.split(".")[1] + "=="))["jti"])
    assert token_error(server, assertion_form(rsa, same_jti)) == (400, "invalid_client")


def test_alg_none_is_invalid_client(server, backend):
    rsa, _ = backend
    claims = {"iss": rsa.client_id, "sub": rsa.client_id, "aud": server.token_url, "exp": NOW() + 200, "jti": uuid.uuid4().hex}
    forged = unsigned({"alg": "none", "kid": rsa.kid, "typ": "JWT"}, claims)
    assert token_error(server, assertion_form(rsa, forged)) == (400, "invalid_client")


def test_hs256_signed_with_the_public_key_is_invalid_client(server, backend):
    rsa, _ = backend
    claims = {"iss": rsa.client_id, "sub": rsa.client_id, "aud": server.token_url, "exp": NOW() + 200, "jti": uuid.uuid4().hex}
    public_pem = rsa.key.as_pem(private=False)
    head = f"{b64(json.dumps({'alg': 'HS256', 'kid': rsa.kid, 'typ': 'JWT'}).encode())}.{b64(json.dumps(claims).encode())}"
    forged = head + "." + b64(hmac.new(public_pem, head.encode(), hashlib.sha256).digest())
    assert token_error(server, assertion_form(rsa, forged)) == (400, "invalid_client")


def test_unknown_kid_missing_kid_and_wrong_key_are_invalid_client(server, backend):
    rsa, _ = backend
    assert token_error(server, assertion_form(rsa, rsa.assertion(server.token_url, header={"kid": "nope"}))) == (400, "invalid_client")
    no_kid = jws.serialize_compact({"alg": "RS384", "typ": "JWT"}, json.dumps(
        {"iss": rsa.client_id, "sub": rsa.client_id, "aud": server.token_url, "exp": NOW() + 200, "jti": uuid.uuid4().hex}
    ).encode(), rsa.key, algorithms=["RS384"])
    assert token_error(server, assertion_form(rsa, no_kid)) == (400, "invalid_client")
    impostor = ClientKey(rsa.client_id, RSAKey.generate_key(2048, parameters={"kid": rsa.kid}, private=True), "RS384")
    assert token_error(server, assertion_form(impostor, impostor.assertion(server.token_url))) == (400, "invalid_client")


def test_disallowed_algorithm_and_unregistered_jku_are_invalid_client(server, backend):
    rsa, _ = backend
    rs256 = jws.serialize_compact({"alg": "RS256", "kid": rsa.kid, "typ": "JWT"}, json.dumps(
        {"iss": rsa.client_id, "sub": rsa.client_id, "aud": server.token_url, "exp": NOW() + 200, "jti": uuid.uuid4().hex}
    ).encode(), rsa.key, algorithms=["RS256"])
    assert token_error(server, assertion_form(rsa, rs256)) == (400, "invalid_client")
    jku = rsa.assertion(server.token_url, header={"jku": "https://evil.example/jwks.json"})
    assert token_error(server, assertion_form(rsa, jku)) == (400, "invalid_client")


def test_unknown_client_and_wrong_assertion_type_are_invalid_client(server, backend):
    stranger = ClientKey.generate(unique("stranger"))
    assert token_error(server, assertion_form(stranger, stranger.assertion(server.token_url))) == (400, "invalid_client")
    rsa, _ = backend
    form = {**assertion_form(rsa, rsa.assertion(server.token_url)), "client_assertion_type": "urn:x"}
    assert token_error(server, form) == (400, "invalid_client")


def test_form_client_id_naming_another_client_than_the_assertion_is_invalid_client(server, backend, world):
    rsa, _ = backend
    form = {**assertion_form(rsa, rsa.assertion(server.token_url)), "client_id": world.app}
    assert token_error(server, form) == (400, "invalid_client")


def test_public_client_cannot_use_client_credentials(server, world):
    form = {"grant_type": "client_credentials", "scope": "patient/*.rs", "client_id": world.app}
    assert token_error(server, form) == (400, "invalid_client")


def test_scope_escalation_at_token_time_is_invalid_scope(server, backend):
    rsa, _ = backend
    assert token_error(server, assertion_form(rsa, rsa.assertion(server.token_url), "system/Condition.rs")) == (400, "invalid_scope")
    assert token_error(server, assertion_form(rsa, rsa.assertion(server.token_url), "patient/*.rs")) == (400, "invalid_scope")
    # asking wider than registered is narrowed, never widened
    r = site_request(server, "POST", "/auth/token", data=assertion_form(rsa, rsa.assertion(server.token_url), "system/*.cruds"))
    assert r.status_code == 200 and r.json()["scope"] == "system/Observation.rs system/Patient.rs"


def test_unsupported_grant_type(server):
    assert token_error(server, {"grant_type": "password", "username": "u", "password": "p"}) == (400, "unsupported_grant_type")


# ---- resource server ---------------------------------------------------------------------------------


def fhir_get(server, token: str | None, path: str = "/Patient") -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return site_request(server, "GET", "/fhir" + path, headers=headers)


def test_missing_token_is_401_with_a_bearer_challenge(server):
    r = fhir_get(server, None)
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="planfit"'
    assert r.json()["issue"][0]["code"] == "login"
    assert site_request(server, "GET", "/fhir/Patient", headers={"Authorization": "Basic dTpw"}).status_code == 401


@pytest.mark.parametrize("case", ["garbage", "expired", "alg none", "forged signature", "other audience",
                                  "other issuer", "future iat", "id_token"])
def test_invalid_access_tokens_are_401_invalid_token(server, world, case):
    now = NOW()
    token = {
        "garbage": lambda: "not-a-jwt",
        "expired": lambda: server_signed(server, exp=now - 1, iat=now - 301),
        "alg none": lambda: unsigned({"alg": "none", "typ": "at+jwt"}, {"iss": server.url + "/auth", "aud": server.fhir,
                                                                        "exp": now + 300, "client_id": "pytest-clinical"}),
        "forged signature": lambda: _forged(server),
        "other audience": lambda: server_signed(server, aud="https://other.example/fhir"),
        "other issuer": lambda: server_signed(server, iss="https://other.example/auth"),
        "future iat": lambda: server_signed(server, iat=now + 3600, nbf=now + 3600),
        "id_token": lambda: _id_token(server, world),
    }[case]()
    r = fhir_get(server, token)
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith('Bearer realm="planfit", error="invalid_token"')


def _forged(server) -> str:
    """Right header (our kid), signed by some other P-384 key."""
    genuine = server_signed(server)
    other = ClientKey.generate("x", "ES384").key
    head, payload, _ = genuine.split(".")
    resigned = jws.serialize_compact(json.loads(base64.urlsafe_b64decode(head + "==")),
                                     base64.urlsafe_b64decode(payload + "=="), other, algorithms=["ES384"])
    return resigned


def _id_token(server, world) -> str:
    token = exchange(server, authorize(server, world.app, "openid fhirUser user/*.rs", world.doctor)).json()
    return token["id_token"]


def test_token_of_a_removed_client_stops_working(server):
    key = register_backend(server, "system/Patient.rs")
    token = backend_token(server, key, "system/Patient.rs")
    assert fhir_get(server, token).status_code == 200
    auth_store(server.database_url).remove_client(key.client_id)
    deadline = time.time() + 10
    while fhir_get(server, token).status_code == 200 and time.time() < deadline:
        time.sleep(0.3)
    r = fhir_get(server, token)
    assert r.status_code == 401 and 'error="invalid_token"' in r.headers["www-authenticate"]


def test_write_with_read_scope_is_403(server, backend):
    rsa, _ = backend
    r = site_request(server, "POST", "/fhir/Patient", json={"resourceType": "Patient"},
                   headers=bearer(backend_token(server, rsa, "system/Patient.rs")))
    assert r.status_code == 403 and r.json()["issue"][0]["code"] == "forbidden"


@pytest.fixture(scope="module")
def patient_a_token(server, world) -> str:
    return exchange(server, authorize(server, world.app, "launch/patient patient/*.cruds", world.patient_user)).json()["access_token"]


def test_cross_patient_read_is_404(server, world, patient_a_token):
    r = fhir_get(server, patient_a_token, f"/Observation/{world.b_obs}")
    assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-found"


def test_cross_patient_search_is_empty(server, world, patient_a_token):
    r = fhir_get(server, patient_a_token, f"/Observation?_id={world.b_obs},{world.c_obs}")
    assert r.status_code == 200 and r.json()["total"] == 0 and r.json()["entry"] == []


def test_cross_patient_include_is_dropped(server, world, patient_a_token):
    r = fhir_get(server, patient_a_token, f"/Condition?_id={world.a_asserted_by_b}&_include=Condition:asserter")
    assert r.status_code == 200
    assert [e["search"]["mode"] for e in r.json()["entry"]] == ["match"]


def test_cross_patient_revinclude_is_dropped(server, world, patient_a_token):
    r = fhir_get(server, patient_a_token, f"/Patient?_id={world.a}&_revinclude=Observation:focus")
    assert r.status_code == 200
    assert [e["search"]["mode"] for e in r.json()["entry"]] == ["match"]


def test_cross_patient_transaction_entry_is_403(server, world, patient_a_token):
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": observation(world.b, unique()), "request": {"method": "POST", "url": "Observation"}}]}
    r = site_request(server, "POST", "/fhir", json=bundle, headers=bearer(patient_a_token))
    assert r.status_code == 403 and r.json()["issue"][0]["code"] == "forbidden"


# ---- App Launch ----------------------------------------------------------------------------------------


def test_pkce_mismatch_is_invalid_grant(server, world):
    auth = authorize(server, world.app, "user/*.rs", world.doctor)
    r = exchange(server, auth, code_verifier=pkce()[0])
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    r = exchange(server, authorize(server, world.app, "user/*.rs", world.doctor), code_verifier=None)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_code_reuse_is_invalid_grant_and_revokes_its_refresh_token(server, world):
    auth = authorize(server, world.app, "offline_access user/*.rs", world.doctor)
    first = exchange(server, auth)
    assert first.status_code == 200
    again = exchange(server, auth)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    refresh = site_request(server, "POST", "/auth/token", data={"grant_type": "refresh_token", "client_id": world.app,
                                                 "refresh_token": first.json()["refresh_token"]})
    assert refresh.status_code == 400 and refresh.json()["error"] == "invalid_grant"


def test_redirect_uri_mismatch_at_token_is_invalid_grant(server, world):
    r = exchange(server, authorize(server, world.app, "user/*.rs", world.doctor), redirect_uri="http://127.0.0.1:9/other")
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_code_of_another_client_is_invalid_grant(server, world):
    other = register_app(server, APP_SCOPE)
    r = exchange(server, authorize(server, world.app, "user/*.rs", world.doctor), client_id=other)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_refresh_with_widened_scope_is_invalid_scope(server, world):
    token = exchange(server, authorize(server, world.app, "offline_access user/Observation.rs", world.doctor)).json()
    r = site_request(server, "POST", "/auth/token", data={"grant_type": "refresh_token", "client_id": world.app,
                                           "refresh_token": token["refresh_token"], "scope": "offline_access user/*.rs"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


def test_refresh_token_replay_revokes_the_family(server, world):
    token = exchange(server, authorize(server, world.app, "offline_access user/*.rs", world.doctor)).json()
    form = {"grant_type": "refresh_token", "client_id": world.app, "refresh_token": token["refresh_token"]}
    rotated = site_request(server, "POST", "/auth/token", data=form)
    assert rotated.status_code == 200
    replay = site_request(server, "POST", "/auth/token", data=form)
    assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
    successor = site_request(server, "POST", "/auth/token", data={**form, "refresh_token": rotated.json()["refresh_token"]})
    assert successor.status_code == 400 and successor.json()["error"] == "invalid_grant"


def _authorize_redirect(server, world, **params) -> dict[str, list[str]]:
    _verifier, challenge = pkce()
    query = {**authorize_params(server, world.app, "user/*.rs", challenge, "s1"), **params}
    query = {k: v for k, v in query.items() if v is not None}
    r = site_request(server, "GET", "/auth/authorize", params=query)
    assert r.status_code == 303, r.text
    assert r.headers["location"].startswith("http://127.0.0.1:9/callback?")
    return parse_qs(urlsplit(r.headers["location"]).query)


@pytest.mark.parametrize("case, params, error", [
    ("plain PKCE", {"code_challenge_method": "plain"}, "invalid_request"),
    ("no PKCE", {"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
    ("foreign aud", {"aud": "https://evil.example/fhir"}, "invalid_request"),
    ("token response type", {"response_type": "token"}, "unsupported_response_type"),
    ("no allowed scope", {"scope": "system/*.cruds"}, "invalid_scope"),
    ("unknown launch", {"launch": "made-up", "scope": "launch user/*.rs"}, "invalid_request"),
])
def test_bad_authorization_requests_redirect_an_error(server, world, case, params, error):
    query = _authorize_redirect(server, world, **params)
    assert query["error"] == [error] and query["state"] == ["s1"]


def test_unregistered_redirect_uri_is_an_error_page_not_a_redirect(server, world):
    _verifier, challenge = pkce()
    query = authorize_params(server, world.app, "user/*.rs", challenge, "s1", redirect_uri="https://evil.example/cb")
    r = site_request(server, "GET", "/auth/authorize", params=query)
    assert r.status_code == 400 and "location" not in r.headers
    assert "invalid_request" in r.text and "text/html" in r.headers["content-type"]


def test_wrong_password_is_401_and_issues_nothing(server, world):
    _verifier, challenge = pkce()
    with server.site() as browser:
        r = browser.get("/auth/authorize", params=authorize_params(server, world.app, "user/*.rs", challenge, "s"))
        rid = hidden_request(r.text)
        r = browser.post("/auth/login", data={"request": rid, "username": world.doctor, "password": PASSWORD + "x"})
        assert r.status_code == 401 and "wrong password" in r.text
        r = browser.post("/auth/consent", data={"request": rid, "decision": "allow"})
        assert r.status_code == 400  # not signed in: no code


def test_login_form_from_another_browser_is_refused(server, world):
    _verifier, challenge = pkce()
    r = site_request(server, "GET", "/auth/authorize", params=authorize_params(server, world.app, "user/*.rs", challenge, "s"))
    rid = hidden_request(r.text)  # a request id without this browser's cookie (login CSRF)
    r = site_request(server, "POST", "/auth/login", data={"request": rid, "username": world.doctor, "password": PASSWORD})
    assert r.status_code == 400 and "invalid_request" in r.text


def test_introspection_requires_a_token(server):
    r = site_request(server, "POST", "/auth/introspect", data={"token": "x"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_token"


def test_launch_needs_the_launch_scope(server, world):
    key = register_backend(server, "system/Patient.rs")
    r = site_request(server, "POST", "/auth/launch", json={"patient": world.a},
                   headers={"Authorization": f"Bearer {backend_token(server, key, 'system/Patient.rs')}"})
    assert r.status_code == 403 and r.json()["error"] == "insufficient_scope"
