"""SMART App Launch through the real HTML forms: standalone and EHR launch, the patient picker,
id_token, refresh-token rotation and introspection."""

from __future__ import annotations

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.support.auth import (
    APP_SCOPE,
    PASSWORD,
    authorize,
    authorize_params,
    backend_token,
    bearer,
    build_world,
    exchange,
    hidden_request,
    pkce,
    register_backend,
    site_request,
)
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)


@pytest.fixture(scope="module")
def world(server):
    return build_world(server)


def test_standalone_launch_with_patient_picker(server, world):
    auth = authorize(server, world.app, "launch/patient openid fhirUser patient/*.rs", world.doctor, patient=world.b)
    r = exchange(server, auth)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store" and r.headers["pragma"] == "no-cache"
    token = r.json()
    assert token["token_type"] == "Bearer" and token["patient"] == world.b and token["need_patient_banner"] is True
    assert token["scope"] == "launch/patient fhirUser openid patient/*.rs"
    assert 0 < token["expires_in"] <= 3600 and "refresh_token" not in token
    with server.http(None, headers=bearer(token["access_token"])) as c:
        assert c.get(f"/Patient/{world.b}").status_code == 200
        assert c.get(f"/Patient/{world.a}").status_code == 404


def test_picker_refuses_a_patient_the_user_may_not_open(server, world):
    _verifier, challenge = pkce()
    with server.site() as browser:
        r = browser.get("/auth/authorize", params=authorize_params(server, world.app, "patient/*.rs", challenge, "s"))
        rid = hidden_request(r.text)
        r = browser.post("/auth/login", data={"request": rid, "username": world.doctor, "password": PASSWORD})
        assert f'value="{world.a}"' in r.text and f'value="{world.b}"' in r.text and f"Alpha-{world.tag}" in r.text
        r = browser.post("/auth/patient", data={"request": rid, "patient": world.c})
        assert r.status_code == 400 and "may not open" in r.text


def test_patient_user_gets_their_own_patient_without_a_picker(server, world):
    token = exchange(server, authorize(server, world.app, "launch/patient patient/*.rs", world.patient_user)).json()
    assert token["patient"] == world.a


def test_id_token_verifies_with_the_published_keys(server, world):
    token = exchange(server, authorize(server, world.app, "openid fhirUser user/*.rs", world.doctor)).json()
    config = site_request(server, "GET", "/auth/.well-known/openid-configuration").json()
    keys = KeySet.import_key_set(site_request(server, "GET", config["jwks_uri"]).json())
    id_token = jwt.decode(token["id_token"], keys, algorithms=["RS256"])
    claims = id_token.claims
    assert id_token.header["alg"] == "RS256"
    assert claims["iss"] == config["issuer"] == server.url + "/auth"
    assert claims["aud"] == world.app and claims["sub"] == world.doctor
    assert claims["fhirUser"] == f"{server.fhir}/Practitioner/doc-1"
    # the access token, too, verifies with the published keys
    access = jwt.decode(token["access_token"], keys, algorithms=["ES384"])
    assert access.claims["aud"] == server.fhir and access.claims["fhirUser"] == claims["fhirUser"]


def test_refresh_rotates_and_may_narrow(server, world):
    first = exchange(server, authorize(server, world.app, "offline_access launch/patient patient/*.rs",
                                       world.patient_user)).json()
    form = {"grant_type": "refresh_token", "client_id": world.app, "refresh_token": first["refresh_token"]}
    same = site_request(server, "POST", "/auth/token", data=form)
    assert same.status_code == 200 and same.headers["cache-control"] == "no-store"
    body = same.json()
    assert body["scope"] == first["scope"] and body["patient"] == world.a and body["expires_in"] > 0
    assert body["refresh_token"] != first["refresh_token"]
    narrower = site_request(server, "POST", "/auth/token", data={**form, "refresh_token": body["refresh_token"],
                                                  "scope": "offline_access patient/Observation.rs"})
    assert narrower.status_code == 200 and narrower.json()["scope"] == "offline_access patient/Observation.rs"
    with server.http(None, headers=bearer(narrower.json()["access_token"])) as c:
        assert c.get(f"/Observation/{world.a_obs}").status_code == 200
        assert c.get(f"/Condition/{world.a_problem}").status_code == 403


def test_introspection(server, world):
    token = exchange(server, authorize(server, world.app, "offline_access launch/patient fhirUser patient/*.rs",
                                       world.patient_user)).json()
    caller = {"Authorization": f"Bearer {token['access_token']}"}
    active = site_request(server, "POST", "/auth/introspect", data={"token": token["access_token"]}, headers=caller).json()
    assert active["active"] is True and active["client_id"] == world.app and active["patient"] == world.a
    assert active["scope"] == token["scope"] and active["exp"] > 0
    assert active["fhirUser"] == f"{server.fhir}/Patient/{world.a}"
    refresh = site_request(server, "POST", "/auth/introspect", data={"token": token["refresh_token"]}, headers=caller).json()
    assert refresh["active"] is True and refresh["token_type"] == "refresh_token"
    dead = site_request(server, "POST", "/auth/introspect", data={"token": "nonsense"}, headers=caller).json()
    assert dead == {"active": False}


def test_ehr_launch(server, world):
    ehr = register_backend(server, "system/Patient.rs launch")
    ehr_token = backend_token(server, ehr, "system/Patient.rs launch")
    r = site_request(server, "POST", "/auth/launch", json={"patient": world.b, "client_id": world.app},
                   headers={"Authorization": f"Bearer {ehr_token}"})
    assert r.status_code == 200, r.text
    launch = r.json()
    assert launch["iss"] == server.fhir and launch["expires_in"] > 0
    # The doctor may open patient B: no picker, the EHR chose the patient.
    token = exchange(server, authorize(server, world.app, "launch patient/*.rs", world.doctor, launch=launch["launch"])).json()
    assert token["patient"] == world.b
    # A launch is single use.
    _verifier, challenge = pkce()
    r = site_request(server, "GET", "/auth/authorize", params=authorize_params(
        server, world.app, "launch patient/*.rs", challenge, "s", launch=launch["launch"]))
    assert r.status_code == 303 and "error=invalid_request" in r.headers["location"]


def test_ehr_launch_for_a_patient_the_user_may_not_open_is_denied(server, world):
    ehr = register_backend(server, "system/Patient.rs launch")
    r = site_request(server, "POST", "/auth/launch", json={"patient": world.c},
                   headers={"Authorization": f"Bearer {backend_token(server, ehr, 'system/Patient.rs launch')}"})
    _verifier, challenge = pkce()
    with server.site() as browser:
        page = browser.get("/auth/authorize", params=authorize_params(
            server, world.app, "launch patient/*.rs", challenge, "s", launch=r.json()["launch"]))
        rid = hidden_request(page.text)
        r = browser.post("/auth/login", data={"request": rid, "username": world.doctor, "password": PASSWORD})
    assert r.status_code == 303 and "error=access_denied" in r.headers["location"]


def test_user_denies_consent(server, world):
    _verifier, challenge = pkce()
    with server.site() as browser:
        page = browser.get("/auth/authorize", params=authorize_params(server, world.app, "user/*.rs", challenge, "st"))
        rid = hidden_request(page.text)
        r = browser.post("/auth/login", data={"request": rid, "username": world.doctor, "password": PASSWORD})
        assert "Read, search all records you may see" in r.text
        r = browser.post("/auth/consent", data={"request": rid, "decision": "deny"})
    assert r.status_code == 303
    assert "error=access_denied" in r.headers["location"] and "state=st" in r.headers["location"]


def test_pages_are_not_frameable_or_cached(server, world):
    _verifier, challenge = pkce()
    r = site_request(server, "GET", "/auth/authorize", params=authorize_params(server, world.app, APP_SCOPE, challenge, "s"))
    assert r.status_code == 200
    assert r.headers["x-frame-options"] == "DENY" and r.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/auth" in cookie


def test_authorize_by_post(server, world):
    _verifier, challenge = pkce()
    r = site_request(server, "POST", "/auth/authorize", data=authorize_params(server, world.app, "user/*.rs", challenge, "s"))
    assert r.status_code == 200 and 'name="password"' in r.text
