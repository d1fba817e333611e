"""JOSE for the embedded authorization server: access tokens, id_tokens, client assertions, PKCE.

Signatures and claims go through ``joserfc`` (the JOSE half of authlib): ``jwt.decode`` with one
pinned algorithm and key, then a ``JWTClaimsRegistry`` for the RFC 7519 claim rules. Every verifier
pins the accepted algorithms *before* any key is looked at, so ``alg: none`` and the "HS256 signed
with the public key" confusion attack are refused on the header alone. Access tokens carry
``typ: at+jwt`` (RFC 9068); which algorithm signs what is explained in :mod:`server.auth.keys`.

Clock skew: :data:`CLOCK_SKEW_SECONDS` = 60 s, applied to client assertions (issued by other
machines) for ``exp``, ``iat`` and ``nbf``. Our own access tokens get *no* leeway on ``exp``
(SMART: after ``expires_in`` "the token SHALL NOT be accepted"); the skew is only used for
``iat``/``nbf`` so that several server instances with slightly different clocks still agree.

Nothing in this module logs a token or an assertion, and error reasons are fixed strings that
never echo attacker-supplied header or claim values.
"""

from __future__ import annotations

import base64
import hmac
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from authlib.oauth2.rfc7636 import create_s256_code_challenge
from joserfc import jws, jwt
from joserfc.errors import ClaimError, ExpiredTokenError, InvalidClaimError, JoseError
from joserfc.jwk import Key, import_key
from joserfc.jws import JWSRegistry
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry

from server.auth.keys import (
    ACCESS_TOKEN_ALG,
    CLIENT_ASSERTION_ALGS,
    ID_TOKEN_ALG,
    ServerKeys,
    key_fits_alg,
)

ACCESS_TOKEN_TYP = "at+jwt"
#: Tolerated clock difference with other machines, in seconds.
CLOCK_SKEW_SECONDS = 60
#: SMART Backend Services: an assertion's ``exp`` SHALL be no more than five minutes ahead.
MAX_ASSERTION_LIFETIME_SECONDS = 300

_MIN_RSA_BITS = 2048
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
        return jwt.decode(token, key, algorithms=[alg], registry=registry).claims
    except JoseError as exc:
        if exc.error == "bad_signature":
            raise error("signature verification failed") from None
        raise error(f"malformed {what}") from None
    except (ValueError, TypeError):
        raise error(f"malformed {what}") from None


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


def _public_only(key: Key) -> Key:
    """Re-import only the public half: a client JWKS that (wrongly) contains a private key must not
    leave private material in memory longer than needed, and verification needs none."""
    return import_key(key.as_dict(private=False))


class _ClaimRules(JWTClaimsRegistry):
    """joserfc's RFC 7519 claim rules with the two SMART needs: ``exp`` gets its own leeway (none for
    our access tokens, the clock skew for assertions from other machines), and some private claims
    must be strings. ``order`` is the order in which claims are checked, so the first failure, and
    with it the reason, does not depend on the order of the claims in the token."""

    def __init__(self, now: float, *, exp_leeway: int, order: Sequence[str], strings: Sequence[str] = (),
                 **options: ClaimsOption):
        super().__init__(now=now, leeway=CLOCK_SKEW_SECONDS, **options)  # type: ignore[arg-type]
        self.exp_leeway, self.order, self.strings = exp_leeway, order, strings

    def validate_exp(self, value: object) -> None:
        # bool is an int subclass ("exp": true must not pass as 1), and json.loads accepts NaN,
        # which compares False with everything and would never expire.
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise InvalidClaimError("exp")
        if value <= self.now - self.exp_leeway:
            raise ExpiredTokenError("exp")

    def checked(self, claims: dict[str, Any], error: type[AuthError], reasons: Mapping[str, str]) -> None:
        """Validate; a failure raises ``error`` with ``reasons[claim]`` (``expired`` for a past
        ``exp``; by default "missing <claim>"). An empty essential string counts as missing."""
        present = {k: claims[k] for k in self.order if k in claims and not (claims[k] == "" and k in self.essential_keys)}
        try:
            for name in self.strings:
                if name in present and not isinstance(present[name], str):
                    raise InvalidClaimError(name)
            self.validate({**present, **{k: v for k, v in claims.items() if k not in self.order}})
        except ExpiredTokenError:
            raise error(reasons["expired"]) from None
        except ClaimError as exc:
            names = exc.claim.split(",")
            claim = next(n for n in (*self.order, *names) if n in names)
            raise error(reasons.get(claim, f"missing {claim}")) from None


_ACCESS_TOKEN_REASONS = {"iss": "wrong issuer", "aud": "wrong audience", "expired": "token expired",
                         "iat": "iat in the future", "nbf": "nbf in the future"}
_ASSERTION_REASONS = {"sub": "iss and sub differ", "iss": "iss does not match client_id", "aud": "wrong audience",
                      "expired": "assertion expired", "iat": "iat in the future", "nbf": "nbf in the future"}
_MISSING_ISS = {**_ASSERTION_REASONS, "iss": "missing iss"}


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
    return jwt.encode(header, claims, key, algorithms=[ACCESS_TOKEN_ALG])


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
    ``kid`` must name one of our ES384 keys → signature → required claims present → ``iss`` →
    ``aud`` → ``exp`` (no leeway) → ``iat``/``nbf`` (not in the future beyond skew).
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
    essential: ClaimsOption = {"essential": True}
    rules = _ClaimRules(
        _now(now), exp_leeway=0, order=("iss", "aud", "exp", "iat", "nbf", "jti", "client_id", "scope", "sub"),
        strings=("client_id", "scope"), iss={"essential": True, "value": issuer},
        aud={"essential": True, "value": audience}, exp=essential, jti=essential, client_id=essential,
        scope=essential, sub=essential,
    )
    rules.checked(claims, InvalidToken, _ACCESS_TOKEN_REASONS)
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
    return jwt.encode(header, claims, key, algorithms=[ID_TOKEN_ALG])


# ------------------------------------------------------------------------------------------------
# SMART Backend Services client assertion (private_key_jwt)


def _select_client_key(jwks: object, kid: str, alg: str) -> Key:
    """SMART key resolution: exactly one JWK whose ``kid`` matches and whose type fits ``alg``."""
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise InvalidClient("client has no usable JWKS")
    candidates = [
        k for k in jwks["keys"] if isinstance(k, Mapping) and k.get("kid") == kid and key_fits_alg(k, alg)
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
       ``iss``, and ``jwks`` must be the JWKS registered for that ``iss``);
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

    t = _now(now)
    iss = claims.get("iss")
    rules = _ClaimRules(
        t, exp_leeway=CLOCK_SKEW_SECONDS, order=("iss", "sub", "aud", "exp", "iat", "nbf", "jti"),
        iss={"essential": True, "value": client_id} if client_id is not None else {"essential": True},
        sub={"essential": True, "value": iss}, aud={"essential": True, "value": token_url},
        exp={"essential": True}, jti={"essential": True},
    )
    rules.checked(claims, InvalidClient, _MISSING_ISS if not isinstance(iss, str) or not iss else _ASSERTION_REASONS)
    exp = claims["exp"]
    if exp > t + MAX_ASSERTION_LIFETIME_SECONDS + CLOCK_SKEW_SECONDS:
        raise InvalidClient("exp too far in the future")
    if seen_jti(claims["jti"], float(exp) + CLOCK_SKEW_SECONDS):
        raise InvalidClient("jti already used")
    return claims


# ------------------------------------------------------------------------------------------------
# PKCE (RFC 7636, S256 only as SMART requires)

_VERIFIER_RE = re.compile(r"[A-Za-z0-9\-._~]{43,128}")
_CHALLENGE_RE = re.compile(r"[A-Za-z0-9\-_]{43}")


def pkce_challenge(verifier: str) -> str:
    """``BASE64URL(SHA256(ASCII(verifier)))`` without padding (authlib's RFC 7636 S256 transform)."""
    return create_s256_code_challenge(verifier)


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
