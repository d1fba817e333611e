"""The authorization server's own signing keys, and which JWKs may verify which algorithm.

Algorithms (SMART App Launch 2.x / Backend Services):

* id_token: **RS256** — SMART requires servers offering ``sso-openid-connect`` to support
  RS256-signed ID tokens, and every OIDC relying party can verify it.
* access token: **ES384** — short tokens (96-byte signature vs 384 for RSA-3072), fast signing,
  a P-384 key matches the 192-bit hash strength, and ES384 is one of the two algorithms SMART
  itself mandates for Backend Services, so any SMART-capable library can verify it. Access tokens
  carry a separate key from id_tokens, so an id_token can never be replayed as an access token
  (different ``typ``, ``alg`` and ``kid``).
* client assertions (``private_key_jwt``): **RS384 and ES384 only**, as SMART Backend Services
  requires clients to support both and servers at least one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from joserfc.jwk import ECKey, Key, RSAKey, import_key

ID_TOKEN_ALG = "RS256"
ACCESS_TOKEN_ALG = "ES384"
CLIENT_ASSERTION_ALGS: tuple[str, ...] = ("RS384", "ES384")

_SERVER_ALGS = (ID_TOKEN_ALG, ACCESS_TOKEN_ALG)
_ALG_KTY = {"RS256": "RSA", "RS384": "RSA", "ES384": "EC"}
_ALG_CRV = {"ES384": "P-384"}
_RSA_BITS = 2048  # id_token key; 2048 is the interoperable floor and what OIDC RPs expect


def key_fits_alg(jwk: Mapping[str, Any], alg: str) -> bool:
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
            if not key_fits_alg(key.as_dict(private=False), alg):  # type: ignore[arg-type]
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
