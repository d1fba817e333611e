"""Access-token checking on every FHIR request, with verified tokens cached in memory.

Verifying an ES384 signature costs a few hundred microseconds and building the token's clauses a
search-parameter parse; a client sends the same token for minutes. So each verified token is kept,
with its `Grant` and memoised `ScopeClauses`, in a bounded LRU keyed by (FHIR base, token) until it
expires: a repeat request costs one dictionary lookup and an expiry comparison. The cache holds only
tokens that verified, so only tokens minted for registered clients can take a place in it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from server.auth.access import Grant, ParseSearch, ScopeClauses
from server.auth.jwt import InvalidToken, verify_access_token
from server.auth.keys import ServerKeys
from server.auth.models import User
from server.auth.scopes import ScopeSet
from server.auth.urls import Urls

# Private claims naming the signed-in App Launch user (absent in Backend Services tokens, whose
# `sub` is the client) and the version of the user's registration the token was issued for.
USER_CLAIM = "user"
USER_VERSION_CLAIM = "user_version"


@dataclass(frozen=True)
class Verified:
    grant: Grant
    clauses: ScopeClauses
    claims: dict


class TokenCache:
    """Bounded LRU of verified tokens; an entry is dropped when read after its expiry."""

    def __init__(self, maxsize: int):
        self.maxsize = maxsize
        self._items: OrderedDict[tuple[str, str], Verified] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> Verified | None:
        with self._lock:
            found = self._items.get(key)
            if found is None:
                return None
            if time.time() >= found.grant.expires_at:
                del self._items[key]
                return None
            self._items.move_to_end(key)
            return found

    def put(self, key: tuple[str, str], value: Verified) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)


class Authenticator:
    def __init__(self, keys: Callable[[], ServerKeys], user: Callable[[str], User | None], parse: ParseSearch,
                 cache_size: int):
        self._keys = keys
        self._user = user
        self._parse = parse
        self.cache = TokenCache(cache_size)

    def cached(self, token: str, urls: Urls) -> Verified | None:
        """A previously verified, unexpired token (no I/O, no cryptography)."""
        return self.cache.get((urls.fhir, token))

    def verify(self, token: str, urls: Urls) -> Verified:
        """Verify signature and claims, resolve the user's patients, cache; raises InvalidToken."""
        found = self.cached(token, urls)
        if found is not None:
            return found
        claims = verify_access_token(self._keys(), token, issuer=urls.issuer, audience=urls.fhir)
        grant = self._grant(claims, urls)
        verified = Verified(grant, ScopeClauses(grant, self._parse), claims)
        self.cache.put((urls.fhir, token), verified)
        return verified

    def _grant(self, claims: dict, urls: Urls) -> Grant:
        username = claims.get(USER_CLAIM)
        user_patients, fhir_user = None, claims.get("fhirUser")
        if username is not None:
            user = self._user(username) if isinstance(username, str) else None
            if user is None or claims.get(USER_VERSION_CLAIM) != user.version:
                raise InvalidToken("user removed or changed since it was issued")
            user_patients = None if user.all_patients else user.patient_ids()
            # The audit trail names the user's FHIR resource even when the app did not ask for it.
            fhir_user = fhir_user or (f"{urls.fhir}/{user.fhir_user}" if user.fhir_user else None)
        patient = claims.get("patient")
        return Grant(
            client_id=claims["client_id"],
            scopes=ScopeSet.from_string(claims["scope"]),
            expires_at=float(claims["exp"]),
            username=username,
            fhir_user=fhir_user if isinstance(fhir_user, str) else None,
            patient=patient if isinstance(patient, str) else None,
            user_patients=user_patients,
            user_version=claims.get(USER_VERSION_CLAIM) if username is not None else None,
        )
