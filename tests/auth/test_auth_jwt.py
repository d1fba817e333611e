"""JOSE core of the auth server with real generated keys — no DB, no server.

Client assertions are built the way a Backend Services client would (joserfc, RS384 / ES384);
hostile tokens (alg none, HS256 keyed with the public key) are built by hand, because a JOSE
library rightly refuses to produce them.

Over 450 lines on purpose: one case per way a token can be wrong (59 short tests of `server/auth/jwt.py`),
in the order the verifier checks them; split, the list of what is refused would no longer be read in one place.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws
from joserfc.jwk import ECKey, RSAKey, import_key

from server.auth.jwt import (
    ACCESS_TOKEN_ALG,
    CLOCK_SKEW_SECONDS,
    ID_TOKEN_ALG,
    InvalidClient,
    InvalidToken,
    ServerKeys,
    mint_access_token,
    mint_id_token,
    pkce_challenge,
    verify_access_token,
    verify_client_assertion,
    verify_pkce,
)

TOKEN_URL = "https://planfit.example/auth/token"
JWKS_URL = "https://client.example/.well-known/jwks.json"
CLIENT = "bulk-client-1"
ISSUER = "https://planfit.example/auth"
FHIR = "https://planfit.example/fhir"
NOW = 1_800_000_000.0


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(obj) -> str:
    return b64(json.dumps(obj, separators=(",", ":")).encode())


# ---------------------------------------------------------------------------------------------
# keys (generated once per module: RSA generation is slow)

@pytest.fixture(scope="module")
def rsa_key():
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}, private=True)


@pytest.fixture(scope="module")
def ec_key():
    return ECKey.generate_key("P-384", parameters={"kid": "ec-1"}, private=True)


@pytest.fixture(scope="module")
def other_rsa_key():
    return RSAKey.generate_key(2048, parameters={"kid": "rsa-1"}, private=True)  # same kid, other key


@pytest.fixture(scope="module")
def client_jwks(rsa_key, ec_key):
    """What a client registers: bare public keys only."""
    return {"keys": [rsa_key.as_dict(private=False), ec_key.as_dict(private=False)]}


@pytest.fixture(scope="module")
def server_keys():
    return ServerKeys.generate()


class JtiStore:
    """The caller's replay store: remembers (jti, keep_until)."""

    def __init__(self):
        self.seen: dict[str, float] = {}
        self.calls = 0

    def __call__(self, jti: str, keep_until: float) -> bool:
        self.calls += 1
        if jti in self.seen:
            return True
        self.seen[jti] = keep_until
        return False


def claims(**overrides):
    base = {
        "iss": CLIENT,
        "sub": CLIENT,
        "aud": TOKEN_URL,
        "exp": int(NOW) + 240,
        "iat": int(NOW),
        "jti": str(uuid.uuid4()),
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not DROP}


DROP = object()


def sign(key, alg: str, payload: dict, **header_overrides) -> str:
    header = {"alg": alg, "kid": key.kid, "typ": "JWT", **header_overrides}
    header = {k: v for k, v in header.items() if v is not DROP}
    return jws.serialize_compact(header, json.dumps(payload).encode(), key, algorithms=[alg])


def verify(assertion, jwks, *, client_id=CLIENT, now=NOW, store=None, jwks_url=None):
    return verify_client_assertion(
        assertion,
        client_id=client_id,
        jwks=jwks,
        token_url=TOKEN_URL,
        now=now,
        seen_jti=store if store is not None else JtiStore(),
        jwks_url=jwks_url,
    )


def reason_of(exc_info) -> str:
    return exc_info.value.reason


# ---------------------------------------------------------------------------------------------
# client assertion: accepted

@pytest.mark.parametrize("which, alg", [("rsa", "RS384"), ("ec", "ES384")])
def test_valid_assertion_accepted(which, alg, rsa_key, ec_key, client_jwks):
    key = rsa_key if which == "rsa" else ec_key
    c = claims()
    store = JtiStore()
    out = verify(sign(key, alg, c), client_jwks, store=store)
    assert out["iss"] == CLIENT and out["jti"] == c["jti"]
    # the replay store is told to keep the jti until the last instant the assertion could pass
    assert store.seen == {c["jti"]: c["exp"] + CLOCK_SKEW_SECONDS}


def test_aud_as_list_and_client_id_from_iss(rsa_key, client_jwks):
    a = sign(rsa_key, "RS384", claims(aud=["https://other.example", TOKEN_URL]))
    assert verify(a, client_jwks, client_id=None)["sub"] == CLIENT


def test_exp_exactly_five_minutes_and_small_skew_accepted(ec_key, client_jwks):
    verify(sign(ec_key, "ES384", claims(exp=int(NOW) + 300)), client_jwks)
    verify(sign(ec_key, "ES384", claims(exp=int(NOW) + 300 + CLOCK_SKEW_SECONDS)), client_jwks)
    verify(sign(ec_key, "ES384", claims(exp=int(NOW) - CLOCK_SKEW_SECONDS + 1)), client_jwks)
    verify(sign(ec_key, "ES384", claims(iat=int(NOW) + CLOCK_SKEW_SECONDS)), client_jwks)
    verify(sign(ec_key, "ES384", claims(iat=DROP)), client_jwks)  # iat is optional


def test_typ_absent_accepted_and_jku_equal_to_registered_url_accepted(rsa_key, client_jwks):
    verify(sign(rsa_key, "RS384", claims(), typ=DROP), client_jwks)
    verify(sign(rsa_key, "RS384", claims(), jku=JWKS_URL), client_jwks, jwks_url=JWKS_URL)


def test_private_members_in_registered_jwks_are_not_needed(rsa_key):
    # a client that registered its private JWK by mistake still verifies (public half only)
    jwks = {"keys": [rsa_key.as_dict(private=True)]}
    verify(sign(rsa_key, "RS384", claims()), jwks)


# ---------------------------------------------------------------------------------------------
# client assertion: refused, each with its exact reason

def test_expired(rsa_key, client_jwks):
    with pytest.raises(InvalidClient) as e:
        verify(sign(rsa_key, "RS384", claims(exp=int(NOW) - CLOCK_SKEW_SECONDS)), client_jwks)
    assert reason_of(e) == "assertion expired"
    with pytest.raises(InvalidClient) as e:
        verify(sign(rsa_key, "RS384", claims(exp=int(NOW) - 3600, iat=int(NOW) - 3900)), client_jwks)
    assert reason_of(e) == "assertion expired"


def test_exp_too_far(ec_key, client_jwks):
    with pytest.raises(InvalidClient) as e:
        verify(sign(ec_key, "ES384", claims(exp=int(NOW) + 300 + CLOCK_SKEW_SECONDS + 1)), client_jwks)
    assert reason_of(e) == "exp too far in the future"
    with pytest.raises(InvalidClient) as e:
        verify(sign(ec_key, "ES384", claims(exp=int(NOW) + 3600)), client_jwks)
    assert reason_of(e) == "exp too far in the future"


@pytest.mark.parametrize("bad_exp", [DROP, "1800000100", True, None, float("nan")])
def test_missing_or_non_numeric_exp(ec_key, client_jwks, bad_exp):
    with pytest.raises(InvalidClient) as e:
        verify(sign(ec_key, "ES384", claims(exp=bad_exp)), client_jwks)
    assert reason_of(e) == "missing exp"


def test_future_iat(rsa_key, client_jwks):
    with pytest.raises(InvalidClient) as e:
        verify(sign(rsa_key, "RS384", claims(iat=int(NOW) + CLOCK_SKEW_SECONDS + 1)), client_jwks)
    assert reason_of(e) == "iat in the future"


def test_future_nbf(rsa_key, client_jwks):
    with pytest.raises(InvalidClient) as e:
        verify(sign(rsa_key, "RS384", claims(nbf=int(NOW) + 200)), client_jwks)
    assert reason_of(e) == "nbf in the future"


def test_replayed_jti(rsa_key, client_jwks):
    store = JtiStore()
    a = sign(rsa_key, "RS384", claims())
    verify(a, client_jwks, store=store)
    with pytest.raises(InvalidClient) as e:
        verify(a, client_jwks, store=store)
    assert reason_of(e) == "jti already used"
    # a new assertion with the same jti is a replay too
    with pytest.raises(InvalidClient) as e:
        verify(sign(rsa_key, "RS384", claims(jti=next(iter(store.seen)))), client_jwks, store=store)
    assert reason_of(e) == "jti already used"


@pytest.mark.parametrize("bad_jti", [DROP, "", 42])
def test_missing_jti(rsa_key, client_jwks, bad_jti):
    with pytest.raises(InvalidClient) as e:
        verify(sign(rsa_key, "RS384", claims(jti=bad_jti)), client_jwks)
    assert reason_of(e) == "missing jti"


def test_failed_assertion_does_not_burn_jti(rsa_key, client_jwks):
    store = JtiStore()
    with pytest.raises(InvalidClient):
        verify(sign(rsa_key, "RS384", claims(aud="https://evil.example/token")), client_jwks, store=store)
    assert store.calls == 0


@pytest.mark.parametrize("aud", ["https://planfit.example/auth/token/", "https://evil.example/token", ["x"], 7])
def test_wrong_aud(ec_key, client_jwks, aud):
    with pytest.raises(InvalidClient) as e:
        verify(sign(ec_key, "ES384", claims(aud=aud)), client_jwks)
    assert reason_of(e) == "wrong audience"


def test_iss_not_sub(rsa_key, client_jwks):
    with pytest.raises(InvalidClient) as e:
        verify(sign(rsa_key, "RS384", claims(sub="someone-else")), client_jwks)
    assert reason_of(e) == "iss and sub differ"


def test_missing_iss(rsa_key, client_jwks):
    with pytest.raises(InvalidClient) as e:
        verify(sign(rsa_key, "RS384", claims(iss=DROP)), client_jwks)
    assert reason_of(e) == "missing iss"


def test_empty_iss_counts_as_missing(rsa_key, client_jwks):
    with pytest.raises(InvalidClient) as e:
        verify(sign(rsa_key, "RS384", claims(iss="")), client_jwks, client_id=None)
    assert reason_of(e) == "missing iss"


def test_reason_does_not_depend_on_claim_order(rsa_key, client_jwks):
    # two defects: the claims registry checks in a fixed order, whatever order the token lists them in
    c = claims(sub="someone-else", aud="https://evil.example/token")
    for payload in (c, dict(reversed(list(c.items())))):
        with pytest.raises(InvalidClient) as e:
            verify(sign(rsa_key, "RS384", payload), client_jwks)
        assert reason_of(e) == "iss and sub differ"


def test_wrong_client(rsa_key, client_jwks):
    a = sign(rsa_key, "RS384", claims())
    with pytest.raises(InvalidClient) as e:
        verify(a, client_jwks, client_id="another-client")
    assert reason_of(e) == "iss does not match client_id"


def test_alg_none(client_jwks):
    for alg in ("none", "None", "NONE"):
        token = f"{b64json({'alg': alg, 'kid': 'rsa-1', 'typ': 'JWT'})}.{b64json(claims())}."
        with pytest.raises(InvalidClient) as e:
            verify(token, client_jwks)
        assert reason_of(e) == "alg none is not allowed"


def test_hs256_signed_with_public_key(rsa_key, client_jwks):
    """The classic key-confusion attack: HMAC keyed with the registered public key's text."""
    public_pem = rsa_key.as_pem(private=False)
    for secret in (public_pem, json.dumps(rsa_key.as_dict(private=False)).encode()):
        signing_input = f"{b64json({'alg': 'HS256', 'kid': 'rsa-1', 'typ': 'JWT'})}.{b64json(claims())}"
        sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        with pytest.raises(InvalidClient) as e:
            verify(f"{signing_input}.{b64(sig)}", client_jwks)
        assert reason_of(e) == "alg not allowed"


@pytest.mark.parametrize("alg", ["RS256", "RS512", "ES256", "PS384", "HS384", "EdDSA"])
def test_other_algs_refused(alg, client_jwks):
    token = f"{b64json({'alg': alg, 'kid': 'rsa-1'})}.{b64json(claims())}.{b64(b'x' * 64)}"
    with pytest.raises(InvalidClient) as e:
        verify(token, client_jwks)
    assert reason_of(e) == "alg not allowed"


def test_missing_alg(client_jwks):
    token = f"{b64json({'kid': 'rsa-1'})}.{b64json(claims())}.{b64(b'x' * 64)}"
    with pytest.raises(InvalidClient) as e:
        verify(token, client_jwks)
    assert reason_of(e) == "malformed assertion"  # joserfc refuses a header without alg outright


def test_unknown_kid(rsa_key, client_jwks):
    with pytest.raises(InvalidClient) as e:
        verify(sign(rsa_key, "RS384", claims(), kid="not-registered"), client_jwks)
    assert reason_of(e) == "unknown kid"


def test_kid_of_wrong_key_type_is_unknown(rsa_key, client_jwks):
    # header says ES384 but names the RSA key: no key of a fitting type has that kid
    payload = b64json(claims())
    token = f"{b64json({'alg': 'ES384', 'kid': 'rsa-1'})}.{payload}.{b64(b'x' * 96)}"
    with pytest.raises(InvalidClient) as e:
        verify(token, client_jwks)
    assert reason_of(e) == "unknown kid"


def test_missing_kid(rsa_key, client_jwks):
    with pytest.raises(InvalidClient) as e:
        verify(sign(rsa_key, "RS384", claims(), kid=DROP), client_jwks)
    assert reason_of(e) == "missing kid"


def test_two_keys_with_same_kid(rsa_key, other_rsa_key, ec_key):
    jwks = {"keys": [rsa_key.as_dict(private=False), other_rsa_key.as_dict(private=False)]}
    assert jwks["keys"][0]["kid"] == jwks["keys"][1]["kid"] == "rsa-1"
    with pytest.raises(InvalidClient) as e:
        verify(sign(rsa_key, "RS384", claims()), jwks)
    assert reason_of(e) == "ambiguous kid"


def test_wrong_key(other_rsa_key, client_jwks):
    # signed with a different private key that carries the registered kid
    with pytest.raises(InvalidClient) as e:
        verify(sign(other_rsa_key, "RS384", claims()), client_jwks)
    assert reason_of(e) == "signature verification failed"


def test_tampered_payload(ec_key, client_jwks):
    header, _, sig = sign(ec_key, "ES384", claims()).split(".")
    with pytest.raises(InvalidClient) as e:
        verify(f"{header}.{b64json(claims(iss='x', sub='x'))}.{sig}", client_jwks, client_id="x")
    assert reason_of(e) == "signature verification failed"


def test_jku_not_registered(rsa_key, client_jwks):
    a = sign(rsa_key, "RS384", claims(), jku="https://attacker.example/jwks.json")
    with pytest.raises(InvalidClient) as e:
        verify(a, client_jwks)
    assert reason_of(e) == "jku not registered for client"
    with pytest.raises(InvalidClient) as e:
        verify(a, client_jwks, jwks_url=JWKS_URL)
    assert reason_of(e) == "jku not registered for client"


def test_wrong_typ(rsa_key, client_jwks):
    with pytest.raises(InvalidClient) as e:
        verify(sign(rsa_key, "RS384", claims(), typ="at+jwt"), client_jwks)
    assert reason_of(e) == "wrong typ"


def test_weak_rsa_key_refused():
    raw = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    weak = RSAKey(raw, raw, {"kid": "weak"})
    jwks = {"keys": [weak.as_dict(private=False)]}
    signing_input = f"{b64json({'alg': 'RS384', 'kid': 'weak', 'typ': 'JWT'})}.{b64json(claims())}"
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    sig = raw.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA384())
    with pytest.raises(InvalidClient) as e:
        verify(f"{signing_input}.{b64(sig)}", jwks)
    assert reason_of(e) == "client key too weak"


def test_invalid_registered_key(ec_key):
    broken = dict(ec_key.as_dict(private=False))
    broken["x"] = broken["y"]  # not a point on P-384
    with pytest.raises(InvalidClient) as e:
        verify(sign(ec_key, "ES384", claims()), {"keys": [broken]})
    assert reason_of(e) == "invalid client key"


def test_ec_key_on_wrong_curve_is_not_selected(ec_key):
    p256 = ECKey.generate_key("P-256", parameters={"kid": "ec-1"}, private=True)
    with pytest.raises(InvalidClient) as e:
        verify(sign(ec_key, "ES384", claims()), {"keys": [p256.as_dict(private=False)]})
    assert reason_of(e) == "unknown kid"


@pytest.mark.parametrize("bad", ["", "abc", "a.b", "a.b.c.d", "!!.??.##", "é.é.é", "x" * 20_000, None, 5])
def test_malformed_assertion(bad, client_jwks):
    with pytest.raises(InvalidClient) as e:
        verify(bad, client_jwks)
    assert reason_of(e) == "malformed assertion"


@pytest.mark.parametrize("jwks", [{}, {"keys": "x"}, None, []])
def test_unusable_jwks(rsa_key, jwks):
    with pytest.raises(InvalidClient) as e:
        verify(sign(rsa_key, "RS384", claims()), jwks)
    assert reason_of(e) == "client has no usable JWKS"


def test_reason_never_echoes_the_assertion(rsa_key, client_jwks):
    a = sign(rsa_key, "RS384", claims(aud="https://evil.example"))
    with pytest.raises(InvalidClient) as e:
        verify(a, client_jwks)
    assert a not in str(e.value) and "evil" not in str(e.value)
    assert e.value.error == "invalid_client"


# ---------------------------------------------------------------------------------------------
# server keys and access tokens

def _mint(keys, **kw):
    args = dict(issuer=ISSUER, audience=FHIR, client_id=CLIENT, scope="system/*.rs", expires_in=300, now=NOW)
    args.update(kw)
    return mint_access_token(keys, **args)


def _verify(keys, token, **kw):
    args = dict(issuer=ISSUER, audience=FHIR, now=NOW + 10)
    args.update(kw)
    return verify_access_token(keys, token, **args)


def test_server_keys_algorithms_and_public_jwks(server_keys):
    jwks = server_keys.public_jwks()
    algs = sorted(k["alg"] for k in jwks["keys"])
    assert algs == sorted([ID_TOKEN_ALG, ACCESS_TOKEN_ALG]) == ["ES384", "RS256"]
    for k in jwks["keys"]:
        assert k["use"] == "sig" and k["kid"]
        assert not {"d", "p", "q", "dp", "dq", "qi"} & k.keys()  # bare public keys
        assert "x5c" not in k
    assert "ServerKeys(kids=" in repr(server_keys) and '"d"' not in repr(server_keys)


def test_server_keys_json_round_trip(server_keys):
    text = server_keys.to_json()
    again = ServerKeys.from_json(text)
    assert again.kids == server_keys.kids
    assert again.public_jwks() == server_keys.public_jwks()
    token = _mint(server_keys)
    assert _verify(again, token)["client_id"] == CLIENT


def test_server_keys_refuse_bad_material():
    with pytest.raises(ValueError):
        ServerKeys.from_json('{"keys": []}')
    with pytest.raises(ValueError):
        ServerKeys([ECKey.generate_key("P-384", parameters={"alg": "ES384"}, private=True)])  # no RS256
    with pytest.raises(ValueError):
        ServerKeys([RSAKey.generate_key(2048, parameters={"alg": "RS256"}, private=False),
                    ECKey.generate_key("P-384", parameters={"alg": "ES384"}, private=True)])


def test_access_token_round_trip(server_keys):
    token = _mint(server_keys, extra_claims={"patient": "Patient/123", "sub": "user-7"})
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "ES384", "typ": "at+jwt", "kid": server_keys.signing_key("ES384").kid}
    out = _verify(server_keys, token)
    assert out["iss"] == ISSUER and out["aud"] == FHIR and out["client_id"] == CLIENT
    assert out["scope"] == "system/*.rs" and out["patient"] == "Patient/123" and out["sub"] == "user-7"
    assert out["exp"] - out["iat"] == 300 and out["jti"]


def test_access_token_expired(server_keys):
    token = _mint(server_keys)
    with pytest.raises(InvalidToken) as e:
        _verify(server_keys, token, now=NOW + 300)  # no leeway on our own tokens
    assert reason_of(e) == "token expired"
    assert _verify(server_keys, token, now=NOW + 299)


def test_access_token_wrong_aud_and_iss(server_keys):
    token = _mint(server_keys)
    with pytest.raises(InvalidToken) as e:
        _verify(server_keys, token, audience="https://other.example/fhir")
    assert reason_of(e) == "wrong audience"
    with pytest.raises(InvalidToken) as e:
        _verify(server_keys, token, issuer="https://other.example/auth")
    assert reason_of(e) == "wrong issuer"


def test_access_token_future_iat(server_keys):
    token = _mint(server_keys, now=NOW + CLOCK_SKEW_SECONDS + 30)
    with pytest.raises(InvalidToken) as e:
        _verify(server_keys, token, now=NOW)
    assert reason_of(e) == "iat in the future"


def test_access_token_alg_none(server_keys):
    kid = server_keys.signing_key("ES384").kid
    for alg in ("none", "NoNe"):
        token = f"{b64json({'alg': alg, 'typ': 'at+jwt', 'kid': kid})}.{b64json({'iss': ISSUER})}."
        with pytest.raises(InvalidToken) as e:
            _verify(server_keys, token)
        assert reason_of(e) == "alg none is not allowed"


def test_access_token_hs256_with_public_key(server_keys):
    key = server_keys.signing_key("ES384")
    pub = import_key(key.as_dict(private=False))
    payload = json.loads(base64.urlsafe_b64decode(_mint(server_keys).split(".")[1] + "=="))
    signing_input = f"{b64json({'alg': 'HS256', 'typ': 'at+jwt', 'kid': key.kid})}.{b64json(payload)}"
    for secret in (pub.as_pem(private=False), json.dumps(pub.as_dict()).encode()):
        sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        with pytest.raises(InvalidToken) as e:
            _verify(server_keys, f"{signing_input}.{b64(sig)}")
        assert reason_of(e) == "alg not allowed"


def test_id_token_is_not_an_access_token(server_keys):
    id_token = mint_id_token(server_keys, issuer=ISSUER, client_id=CLIENT, subject="u1",
                             fhir_user="Practitioner/9", now=NOW)
    with pytest.raises(InvalidToken) as e:
        _verify(server_keys, id_token, audience=CLIENT)
    assert reason_of(e) == "alg not allowed"


def test_id_token_verifies_with_published_rs256_key(server_keys):
    id_token = mint_id_token(server_keys, issuer=ISSUER, client_id=CLIENT, subject="u1",
                             fhir_user="Practitioner/9", nonce="n-1", now=NOW)
    header = json.loads(base64.urlsafe_b64decode(id_token.split(".")[0] + "=="))
    assert header["alg"] == "RS256"
    jwk = next(k for k in server_keys.public_jwks()["keys"] if k["kid"] == header["kid"])
    obj = jws.deserialize_compact(id_token, import_key(jwk), algorithms=["RS256"])
    body = json.loads(obj.payload)
    assert body["fhirUser"] == "Practitioner/9" and body["aud"] == CLIENT and body["nonce"] == "n-1"


def test_access_token_wrong_typ(server_keys):
    key = server_keys.signing_key("ES384")
    payload = json.loads(base64.urlsafe_b64decode(_mint(server_keys).split(".")[1] + "=="))
    token = jws.serialize_compact({"alg": "ES384", "typ": "JWT", "kid": key.kid},
                                  json.dumps(payload).encode(), key, algorithms=["ES384"])
    with pytest.raises(InvalidToken) as e:
        _verify(server_keys, token)
    assert reason_of(e) == "wrong token type"


def test_access_token_unknown_kid(server_keys):
    other = ServerKeys.generate()
    with pytest.raises(InvalidToken) as e:
        _verify(server_keys, _mint(other))
    assert reason_of(e) == "unknown kid"


def test_access_token_bad_signature(server_keys):
    token = _mint(server_keys)
    header, payload, sig = token.split(".")
    body = json.loads(base64.urlsafe_b64decode(payload + "=="))
    body["scope"] = "system/*.cruds"
    with pytest.raises(InvalidToken) as e:
        _verify(server_keys, f"{header}.{b64json(body)}.{sig}")
    assert reason_of(e) == "signature verification failed"
    # a foreign key forced onto our kid
    foreign = ECKey.generate_key("P-384", parameters={"alg": "ES384"}, private=True)
    forged = jws.serialize_compact({"alg": "ES384", "typ": "at+jwt", "kid": server_keys.signing_key("ES384").kid},
                                   json.dumps(body).encode(), foreign, algorithms=["ES384"])
    with pytest.raises(InvalidToken) as e:
        _verify(server_keys, forged)
    assert reason_of(e) == "signature verification failed"


@pytest.mark.parametrize("bad", ["", "x", "a.b.c", None, "e30.e30.", "x" * 20_000])
def test_access_token_malformed(server_keys, bad):
    with pytest.raises(InvalidToken) as e:
        _verify(server_keys, bad)
    assert reason_of(e) == "malformed token"
    assert e.value.error == "invalid_token"


def test_access_token_reserved_claims_cannot_be_overridden(server_keys):
    for name in ("aud", "iss", "exp", "scope", "client_id", "jti"):
        with pytest.raises(ValueError):
            _mint(server_keys, extra_claims={name: "x"})
    with pytest.raises(ValueError):
        _mint(server_keys, expires_in=0)


def test_rotation_keeps_old_tokens_valid_until_key_removed(server_keys):
    old_token = _mint(server_keys)
    rotated = server_keys.rotated()
    new_token = _mint(rotated)
    assert _verify(rotated, old_token) and _verify(rotated, new_token)
    assert rotated.signing_key("ES384").kid != server_keys.signing_key("ES384").kid
    pruned = rotated.without(server_keys.signing_key("ES384").kid).without(server_keys.signing_key("RS256").kid)
    assert _verify(pruned, new_token)
    with pytest.raises(InvalidToken) as e:
        _verify(pruned, old_token)
    assert reason_of(e) == "unknown kid"


def test_verify_uses_wall_clock_by_default(server_keys):
    token = mint_access_token(server_keys, issuer=ISSUER, audience=FHIR, client_id=CLIENT,
                              scope="system/*.rs", expires_in=60, extra_claims=None)
    assert verify_access_token(server_keys, token, issuer=ISSUER, audience=FHIR)["exp"] <= time.time() + 61


# ---------------------------------------------------------------------------------------------
# PKCE

RFC7636_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
RFC7636_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_pkce_s256_good():
    assert pkce_challenge(RFC7636_VERIFIER) == RFC7636_CHALLENGE  # RFC 7636 appendix B
    assert verify_pkce(RFC7636_VERIFIER, RFC7636_CHALLENGE, "S256") is True
    long_verifier = "a-._~" * 25 + "xyz"  # 128 chars
    assert verify_pkce(long_verifier, pkce_challenge(long_verifier), "S256") is True


def test_pkce_s256_bad():
    assert verify_pkce(RFC7636_VERIFIER[:-1] + "l", RFC7636_CHALLENGE, "S256") is False
    assert verify_pkce(RFC7636_VERIFIER, RFC7636_CHALLENGE[:-1] + "N", "S256") is False
    assert verify_pkce(RFC7636_VERIFIER, "", "S256") is False
    assert verify_pkce(RFC7636_VERIFIER, RFC7636_CHALLENGE + "=", "S256") is False


def test_pkce_plain_refused():
    assert verify_pkce(RFC7636_VERIFIER, RFC7636_VERIFIER, "plain") is False
    assert verify_pkce(RFC7636_VERIFIER, RFC7636_CHALLENGE, "plain") is False
    assert verify_pkce(RFC7636_VERIFIER, RFC7636_CHALLENGE, "s256") is False
    assert verify_pkce(RFC7636_VERIFIER, RFC7636_CHALLENGE, "") is False


def test_pkce_verifier_length_and_charset():
    short = "a" * 42
    assert verify_pkce(short, pkce_challenge(short), "S256") is False
    too_long = "a" * 129
    assert verify_pkce(too_long, pkce_challenge(too_long), "S256") is False
    bad_chars = "a" * 42 + "+"
    assert verify_pkce(bad_chars, pkce_challenge(bad_chars), "S256") is False
    assert verify_pkce("a" * 42 + "\n", pkce_challenge("a" * 42 + "\n"), "S256") is False
    assert verify_pkce(None, RFC7636_CHALLENGE, "S256") is False  # type: ignore[arg-type]
