"""JOSE for the embedded authorization server: server keys, access tokens, client assertions, PKCE.

All JOSE work goes through ``joserfc`` (the JOSE half of authlib). Every verifier here pins the
accepted algorithms *before* any key is looked at, so ``alg: none`` and the "HS256 signed with the
public key" confusion attack are refused on the header alone.

Algorithms (SMART App Launch 2.x / Backend Services):

* id_token: **RS256** — SMART requires servers offering ``sso-openid-connect`` to support
  RS256-signed ID tokens, and every OIDC relying party can verify it.
* access token: **ES384** — short tokens (96-byte signature vs 384 for RSA-3072), fast signing,
  a P-384 key matches the 192-bit hash strength, and ES384 is one of the two algorithms SMART
  itself mandates for Backend Services, so any SMART-capable library can verify it. Access tokens
  carry ``typ: at+jwt`` (RFC 9068) and a separate key from id_tokens, so an id_token can never be
  replayed as an access token (different ``typ``, ``alg`` and ``kid``).
* client assertions (``private_key_jwt``): **RS384 and ES384 only**, as SMART Backend Services
  requires clients to support both and servers at least one.

Clock skew: :data:`CLOCK_SKEW_SECONDS` = 60 s, applied to client assertions (issued by other
machines) for ``exp``, ``iat`` and ``nbf``. Our own access tokens get *no* leeway on ``exp``
(SMART: after ``expires_in`` "the token SHALL NOT be accepted"); the skew is only used for
``iat``/``nbf`` so that several server instances with slightly different clocks still agree.

Nothing in this module logs a token or an assertion, and error reasons are fixed strings that
never echo attacker-supplied header or claim values.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from joserfc import jws
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, RSAKey, import_key
from joserfc.jws import JWSRegistry

__all__ = [
    "ID_TOKEN_ALG",
    "ACCESS_TOKEN_ALG",
    "ACCESS_TOKEN_TYP",
    "CLIENT_ASSERTION_ALGS",
    "CLOCK_SKEW_SECONDS",
    "MAX_ASSERTION_LIFETIME_SECONDS",
    "AuthError",
    "InvalidToken",
    "InvalidClient",
    "ServerKeys",
    "mint_access_token",
    "verify_access_token",
    "mint_id_token",
    "peek_assertion_issuer",
    "verify_client_assertion",
    "verify_pkce",
    "pkce_challenge",
]

ID_TOKEN_ALG = "RS256"
ACCESS_TOKEN_ALG = "ES384"
ACCESS_TOKEN_TYP = "at+jwt"
CLIENT_ASSERTION_ALGS: tuple[str, ...] = ("RS384", "ES384")
#: Tolerated clock difference with other machines, in seconds.
CLOCK_SKEW_SECONDS = 60
#: SMART Backend Services: an assertion's ``exp`` SHALL be no more than five minutes ahead.
MAX_ASSERTION_LIFETIME_SECONDS = 300

_SERVER_ALGS = (ID_TOKEN_ALG, ACCESS_TOKEN_ALG)
_ALG_KTY = {"RS256": "RSA", "RS384": "RSA", "ES384": "EC"}
_ALG_CRV = {"ES384": "P-384"}
_MIN_RSA_BITS = 2048
_RSA_BITS = 2048  # id_token key; 2048 is the interoperable floor and what OIDC RPs expect
# Refuse oversized inputs before any parsing (cheap DoS guard; a real assertion is ~1 KB).
_MAX_JWT_LEN = 16_384
# Only a few claims are ours to set; callers must not be able to override them by accident.
_RESERVED_ACCESS_CLAIMS = frozenset({"iss", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope"})
_RESERVED_ID_CLAIMS = frozenset({"iss", "aud", "exp", "iat", "sub", "nonce", "fhirUser"})


class AuthError(Exception):
    """Base class: ``reason`` is a fixed, log-safe sentence suitable for ``error_description``."""

    #: OAuth / RFC 6750 error code the HTTP layer should use.
    error = "invalid_request"

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class InvalidToken(AuthError):
    """An access token failed verification (→ 401, ``WWW-Authenticate: Bearer error="invalid_token"``)."""

    error = "invalid_token"


class InvalidClient(AuthError):
    """A client assertion failed verification (→ 400/401 ``{"error": "invalid_client"}``)."""

    error = "invalid_client"


# ------------------------------------------------------------------------------------------------
# helpers


def _now(now: float | None) -> float:
    return time.time() if now is None else float(now)


def _is_number(value: object) -> bool:
    # bool is an int subclass ("exp": true must not pass as 1), and json.loads accepts NaN, which
    # compares False with everything and would slip through every time check.
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _split_header(token: object, error: type[AuthError], what: str) -> dict[str, Any]:
    """Decode the protected header without verifying anything, so the algorithm and key can be
    chosen from *our* rules before any cryptography runs."""
    if not isinstance(token, str) or not token or len(token) > _MAX_JWT_LEN:
        raise error(f"malformed {what}")
    try:
        obj = jws.extract_compact(token.encode("ascii"))
        header = obj.headers()
    except (JoseError, ValueError, TypeError, UnicodeError, AttributeError):
        raise error(f"malformed {what}") from None
    if not isinstance(header, dict):
        raise error(f"malformed {what}")
    return header


def _verify_signature(token: str, key: Key, alg: str, error: type[AuthError], what: str) -> dict[str, Any]:
    """Verify the compact JWS with exactly one key and one algorithm; return the claims."""
    # strict_check_header=False: clients may send extra header members (e.g. x5t); they are not
    # used. ``crit`` is still enforced by joserfc, and b64=false (RFC 7797) is refused earlier.
    registry = JWSRegistry(algorithms=[alg], strict_check_header=False)
    try:
        obj = jws.deserialize_compact(token, key, algorithms=[alg], registry=registry)
    except JoseError as exc:
        if exc.error == "bad_signature":
            raise error("signature verification failed") from None
        raise error(f"malformed {what}") from None
    except (ValueError, TypeError):
        raise error(f"malformed {what}") from None
    try:
        claims = json.loads(obj.payload)
    except (ValueError, TypeError):
        raise error(f"malformed {what}") from None
    if not isinstance(claims, dict):
        raise error(f"malformed {what}")
    return claims


def _check_alg(header: Mapping[str, Any], allowed: Sequence[str], error: type[AuthError]) -> str:
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise error("missing alg")
    if alg.lower() == "none":
        raise error("alg none is not allowed")
    if alg not in allowed:
        raise error("alg not allowed")
    if "b64" in header:  # RFC 7797 unencoded payloads: never legitimate here
        raise error("unsupported header b64")
    return alg


def _aud_contains(aud: object, expected: str) -> bool:
    if isinstance(aud, str):
        return aud == expected
    if isinstance(aud, list):
        return any(isinstance(a, str) and a == expected for a in aud)
    return False


def _key_fits_alg(jwk: Mapping[str, Any], alg: str) -> bool:
    """kty/crv/alg/use/key_ops of a JWK are compatible with verifying ``alg``."""
    if jwk.get("kty") != _ALG_KTY[alg]:
        return False
    if alg in _ALG_CRV and jwk.get("crv") != _ALG_CRV[alg]:
        return False
    if "alg" in jwk and jwk["alg"] != alg:
        return False
    if "use" in jwk and jwk["use"] != "sig":
        return False
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        return False
    return True


def _public_only(key: Key) -> Key:
    """Re-import only the public half: a client JWKS that (wrongly) contains a private key must not
    leave private material in memory longer than needed, and verification needs none."""
    return import_key(key.as_dict(private=False))


# ------------------------------------------------------------------------------------------------
# server keys


class ServerKeys:
    """The authorization server's own signing keys.

    Holds at least one RS256 key (id_tokens) and one ES384 key (access tokens). For each algorithm
    the *last* key signs; every key verifies — so rotation is ``keys.rotated()``, persist, and
    later ``keys.without(old_kid)`` once tokens signed with the old key have expired.

    ``to_json()`` returns the private JWKS (secret: store it like a password, e.g. encrypted in the
    database); ``public_jwks()`` is what ``/auth/jwks`` serves.
    """

    def __init__(self, keys: Sequence[Key]):
        checked: list[Key] = []
        for key in keys:
            alg = key.get("alg")
            if alg not in _SERVER_ALGS:
                raise ValueError("server key needs alg RS256 or ES384")
            if not key.is_private:
                raise ValueError("server key must be private")
            if not _key_fits_alg(key.as_dict(private=False), alg):  # type: ignore[arg-type]
                raise ValueError("server key type does not fit its alg")
            key.ensure_kid()
            checked.append(key)
        for alg in _SERVER_ALGS:
            if not any(k.get("alg") == alg for k in checked):
                raise ValueError(f"server keys need at least one {alg} key")
        kids = [k.kid for k in checked]
        if len(set(kids)) != len(kids):
            raise ValueError("server key ids must be unique")
        self._keys: tuple[Key, ...] = tuple(checked)

    def __repr__(self) -> str:  # never print key material
        return f"ServerKeys(kids={[k.kid for k in self._keys]!r})"

    @staticmethod
    def _new_key(alg: str) -> Key:
        params = {"alg": alg, "use": "sig"}
        if alg == ID_TOKEN_ALG:
            return RSAKey.generate_key(_RSA_BITS, parameters=params, private=True, auto_kid=True)  # type: ignore[arg-type]
        return ECKey.generate_key("P-384", parameters=params, private=True, auto_kid=True)  # type: ignore[arg-type]

    @classmethod
    def generate(cls) -> ServerKeys:
        """Fresh keys: one RS256 (RSA-2048) and one ES384 (P-384); kid = RFC 7638 thumbprint."""
        return cls([cls._new_key(alg) for alg in _SERVER_ALGS])

    def rotated(self) -> ServerKeys:
        """A copy with a new signing key per algorithm; the old keys stay for verification."""
        return ServerKeys([*self._keys, *(self._new_key(alg) for alg in _SERVER_ALGS)])

    def without(self, kid: str) -> ServerKeys:
        """A copy without key ``kid`` (raises ValueError if that would leave an alg keyless)."""
        return ServerKeys([k for k in self._keys if k.kid != kid])

    @classmethod
    def from_json(cls, text: str) -> ServerKeys:
        """Load the private JWKS produced by :meth:`to_json`."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            raise ValueError("not a JWKS")
        return cls([import_key(k) for k in data["keys"]])

    def to_json(self) -> str:
        """Private JWKS as JSON text (contains private keys!)."""
        return json.dumps({"keys": [k.as_dict(private=True) for k in self._keys]}, separators=(",", ":"))

    def public_jwks(self) -> dict[str, list[dict[str, Any]]]:
        """Bare public JWKs with ``kid``, ``alg``, ``use`` (SMART: "publish public keys as bare JWKs")."""
        out = []
        for key in self._keys:
            jwk = dict(key.as_dict(private=False))
            jwk["kid"], jwk["alg"], jwk["use"] = key.kid, key.get("alg"), "sig"
            out.append(jwk)
        return {"keys": out}

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(k.kid for k in self._keys)  # type: ignore[misc]

    def signing_key(self, alg: str) -> Key:
        """The current (last added) key for ``alg``."""
        for key in reversed(self._keys):
            if key.get("alg") == alg:
                return key
        raise KeyError(alg)

    def verification_key(self, kid: object, alg: str) -> Key | None:
        """The key with this ``kid`` *and* this ``alg``, or None."""
        for key in self._keys:
            if key.kid == kid and key.get("alg") == alg:
                return key
        return None


# ------------------------------------------------------------------------------------------------
# access tokens


def mint_access_token(
    keys: ServerKeys,
    *,
    issuer: str,
    audience: str,
    client_id: str,
    scope: str,
    expires_in: int,
    extra_claims: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """Sign an ES384 JWT access token (RFC 9068 shape, header ``typ: at+jwt``).

    Claims: ``iss``, ``aud`` (the FHIR base URL), ``sub`` (default ``client_id``; pass the user in
    ``extra_claims["sub"]`` for App Launch), ``client_id``, ``scope``, ``iat``, ``nbf``, ``exp``,
    ``jti``. ``extra_claims`` carries launch context (``patient``, ``encounter``, ``fhirUser``,
    ``source_kind`` ...) but may not override the reserved claims: a caller bug must not be able to
    mint a token for another audience or lifetime.
    """
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
        raise ValueError("expires_in must be a positive int")
    extra = dict(extra_claims or {})
    clash = _RESERVED_ACCESS_CLAIMS & extra.keys()
    if clash:
        raise ValueError(f"extra_claims may not set {sorted(clash)}")
    iat = int(_now(now))
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": client_id,
        **extra,
        "client_id": client_id,
        "scope": scope,
        "iat": iat,
        "nbf": iat,
        "exp": iat + expires_in,
        "jti": secrets.token_urlsafe(24),
    }
    key = keys.signing_key(ACCESS_TOKEN_ALG)
    header = {"alg": ACCESS_TOKEN_ALG, "typ": ACCESS_TOKEN_TYP, "kid": key.kid}
    return jws.serialize_compact(header, _claims_bytes(claims), key, algorithms=[ACCESS_TOKEN_ALG])


def _claims_bytes(claims: Mapping[str, Any]) -> bytes:
    return json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def verify_access_token(
    keys: ServerKeys,
    token: str,
    *,
    issuer: str,
    audience: str,
    now: float | None = None,
) -> dict[str, Any]:
    """Verify one of our access tokens and return its claims, or raise :class:`InvalidToken`.

    Order: shape → alg (only ES384; ``none`` and HS* refused before any key is used) → ``typ`` →
    ``kid`` must name one of our ES384 keys → signature → ``iss`` → ``aud`` → ``exp`` (no leeway)
    → ``iat``/``nbf`` (not in the future beyond skew) → required claims present.
    """
    header = _split_header(token, InvalidToken, "token")
    alg = _check_alg(header, (ACCESS_TOKEN_ALG,), InvalidToken)
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() not in (ACCESS_TOKEN_TYP, "application/at+jwt"):
        raise InvalidToken("wrong token type")
    key = keys.verification_key(header.get("kid"), alg)
    if key is None:
        raise InvalidToken("unknown kid")
    claims = _verify_signature(token, key, alg, InvalidToken, "token")
    t = _now(now)
    if claims.get("iss") != issuer:
        raise InvalidToken("wrong issuer")
    if not _aud_contains(claims.get("aud"), audience):
        raise InvalidToken("wrong audience")
    exp = claims.get("exp")
    if not _is_number(exp):
        raise InvalidToken("missing exp")
    if t >= exp:
        raise InvalidToken("token expired")
    for name in ("iat", "nbf"):
        value = claims.get(name)
        if value is not None and (not _is_number(value) or value > t + CLOCK_SKEW_SECONDS):
            raise InvalidToken(f"{name} in the future")
    for name in ("jti", "client_id", "scope", "sub"):
        if not isinstance(claims.get(name), str):
            raise InvalidToken(f"missing {name}")
    return claims


def mint_id_token(
    keys: ServerKeys,
    *,
    issuer: str,
    client_id: str,
    subject: str,
    fhir_user: str | None = None,
    nonce: str | None = None,
    expires_in: int = 300,
    extra_claims: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> str:
    """Sign an RS256 OIDC id_token (``aud`` = the client) with ``fhirUser`` when granted."""
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
        raise ValueError("expires_in must be a positive int")
    extra = dict(extra_claims or {})
    clash = _RESERVED_ID_CLAIMS & extra.keys()
    if clash:
        raise ValueError(f"extra_claims may not set {sorted(clash)}")
    iat = int(_now(now))
    claims: dict[str, Any] = {**extra, "iss": issuer, "sub": subject, "aud": client_id, "iat": iat, "exp": iat + expires_in}
    if fhir_user is not None:
        claims["fhirUser"] = fhir_user
    if nonce is not None:
        claims["nonce"] = nonce
    key = keys.signing_key(ID_TOKEN_ALG)
    header = {"alg": ID_TOKEN_ALG, "typ": "JWT", "kid": key.kid}
    return jws.serialize_compact(header, _claims_bytes(claims), key, algorithms=[ID_TOKEN_ALG])


# ------------------------------------------------------------------------------------------------
# SMART Backend Services client assertion (private_key_jwt)


def peek_assertion_issuer(assertion: str) -> str | None:
    """The *unverified* ``iss`` of an assertion, so the token endpoint can find the client (and its
    JWKS) when the form has no ``client_id``. Trust nothing else from it: pass the result as
    ``client_id`` to :func:`verify_client_assertion`, which checks everything."""
    if not isinstance(assertion, str) or len(assertion) > _MAX_JWT_LEN:
        return None
    parts = assertion.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, TypeError):
        return None
    iss = payload.get("iss") if isinstance(payload, dict) else None
    return iss if isinstance(iss, str) and iss else None


def _select_client_key(jwks: object, kid: str, alg: str) -> Key:
    """SMART key resolution: exactly one JWK whose ``kid`` matches and whose type fits ``alg``."""
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise InvalidClient("client has no usable JWKS")
    candidates = [
        k for k in jwks["keys"] if isinstance(k, Mapping) and k.get("kid") == kid and _key_fits_alg(k, alg)
    ]
    if not candidates:
        raise InvalidClient("unknown kid")
    if len(candidates) > 1:
        raise InvalidClient("ambiguous kid")
    jwk = dict(candidates[0])
    if jwk.get("kty") == "RSA" and _rsa_modulus_bits(jwk.get("n")) < _MIN_RSA_BITS:
        # checked before import so a weak key is refused without ever being loaded
        raise InvalidClient("client key too weak")
    try:
        return _public_only(import_key(jwk))
    except (JoseError, ValueError, TypeError, KeyError):
        raise InvalidClient("invalid client key") from None


def _rsa_modulus_bits(n: object) -> int:
    """Bit length of a JWK ``n`` (0 if it is not valid base64url)."""
    if not isinstance(n, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", n):
        return 0
    try:
        raw = base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))
    except ValueError:
        return 0
    return int.from_bytes(raw, "big").bit_length()


def verify_client_assertion(
    assertion: str,
    *,
    client_id: str | None,
    jwks: dict[str, Any],
    token_url: str,
    now: float | None = None,
    seen_jti: Callable[[str, float], bool],
    jwks_url: str | None = None,
) -> dict[str, Any]:
    """Verify a SMART Backend Services authentication JWT (RFC 7523 + SMART rules); return claims.

    Raises :class:`InvalidClient` with a fixed reason on the first failed check:

    1. shape; ``alg`` must be RS384 or ES384 (``none``, HS256-with-the-public-key and everything
       else are refused before any key is touched); ``typ``, if sent, must be ``JWT``;
    2. ``jku``: refused unless it equals the JWKS URL registered for this client (``jwks_url``).
       Keys are *never* fetched from ``jku``: the caller resolves ``jwks`` from the registration.
       Refusing a non-matching ``jku`` is what SMART prescribes ("if the jku header is not
       whitelisted, the signature verification fails") and stops key-injection via the header;
    3. ``kid`` required and must select exactly one key of the fitting type in ``jwks``;
    4. signature;
    5. ``iss`` == ``sub`` == ``client_id`` (if ``client_id`` is None the client is identified by
       ``iss``, and ``jwks`` must be the JWKS registered for that ``iss`` — see
       :func:`peek_assertion_issuer`);
    6. ``aud`` == ``token_url`` (string, or list containing it);
    7. ``exp`` required, not past (``exp + skew > now``), at most 5 min ahead (``exp ≤ now + 300 +
       skew``); ``iat``/``nbf`` if present not in the future beyond skew;
    8. ``jti`` required (non-empty string) and not seen before: ``seen_jti(jti, keep_until)`` must
       record the jti and return True if it was already recorded. It is called *last*, after every
       other check passed, so forged or expired assertions cannot burn real jtis. ``keep_until`` is
       ``exp + CLOCK_SKEW_SECONDS`` (the last instant this assertion could be accepted), the time
       the caller must remember the jti; the callback should be scoped per client (SMART: "for the
       given iss").

    The assertion itself is never logged or echoed in a reason.
    """
    header = _split_header(assertion, InvalidClient, "assertion")
    alg = _check_alg(header, CLIENT_ASSERTION_ALGS, InvalidClient)
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
        raise InvalidClient("wrong typ")
    if "jku" in header and (jwks_url is None or header["jku"] != jwks_url):
        raise InvalidClient("jku not registered for client")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidClient("missing kid")
    key = _select_client_key(jwks, kid, alg)
    claims = _verify_signature(assertion, key, alg, InvalidClient, "assertion")

    iss, sub = claims.get("iss"), claims.get("sub")
    if not isinstance(iss, str) or not iss:
        raise InvalidClient("missing iss")
    if sub != iss:
        raise InvalidClient("iss and sub differ")
    if client_id is not None and iss != client_id:
        raise InvalidClient("iss does not match client_id")
    if not _aud_contains(claims.get("aud"), token_url):
        raise InvalidClient("wrong audience")

    t = _now(now)
    exp = claims.get("exp")
    if not _is_number(exp):
        raise InvalidClient("missing exp")
    if exp + CLOCK_SKEW_SECONDS <= t:
        raise InvalidClient("assertion expired")
    if exp > t + MAX_ASSERTION_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS:
        raise InvalidClient("exp too far in the future")
    for name in ("iat", "nbf"):
        value = claims.get(name)
        if value is not None and (not _is_number(value) or value > t + CLOCK_SKEW_SECONDS):
            raise InvalidClient(f"{name} in the future")

    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise InvalidClient("missing jti")
    if seen_jti(jti, float(exp) + CLOCK_SKEW_SECONDS):
        raise InvalidClient("jti already used")
    return claims


# ------------------------------------------------------------------------------------------------
# PKCE (RFC 7636, S256 only as SMART requires)

_VERIFIER_RE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE_RE = re.compile(r"[A-Za-z0-9\-_]{43}")


def pkce_challenge(verifier: str) -> str:
    """``BASE64URL(SHA256(ASCII(verifier)))`` without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify_pkce(verifier: str, challenge: str, method: str) -> bool:
    """True only for method ``S256`` with a well-formed verifier whose hash equals ``challenge``.

    ``plain`` is refused (SMART: servers SHALL NOT support it — it offers no protection if the
    authorization request leaks). The verifier must be 43–128 characters of the RFC 7636 unreserved
    set, so a short guessable verifier is refused even if it matches. Constant-time comparison.
    """
    if method != "S256":
        return False
    if not isinstance(verifier, str) or not _VERIFIER_RE.fullmatch(verifier):
        return False
    if not isinstance(challenge, str) or not _CHALLENGE_RE.fullmatch(challenge):
        return False
    return hmac.compare_digest(pkce_challenge(verifier), challenge)
