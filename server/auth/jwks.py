"""Client JWKS fetched from a registered JWKS URL, cached as the client's HTTP headers allow.

SMART Backend Services: the server "SHALL NOT cache a JWKS longer than the client's Cache-Control
header allows" and SHOULD cache within it. `no-store` / `no-cache` / `max-age=0` mean a fetch per
token request; `max-age=N` keeps the set for N seconds; without a Cache-Control header the set is
kept for `DEFAULT_TTL_S`. A key id that is not in a cached set triggers one early re-fetch (the
client may have rotated keys), at most every `MIN_REFETCH_S` so unknown kids cannot make us hammer
the client's server.
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass

import httpx

from server.auth.jwt import InvalidClient

DEFAULT_TTL_S = 60.0
MAX_TTL_S = 24 * 3600.0
MIN_REFETCH_S = 5.0
_TIMEOUT_S = 5.0
_MAX_BYTES = 256 * 1024
_MAX_AGE_RE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d+)\"?\s*(?:,|$)", re.IGNORECASE)


def cache_ttl(cache_control: str | None) -> float:
    """Seconds a response with this Cache-Control header may be reused."""
    if cache_control is None:
        return DEFAULT_TTL_S
    directives = {d.strip().split("=", 1)[0].lower() for d in cache_control.split(",")}
    if directives & {"no-store", "no-cache"}:
        return 0.0
    match = _MAX_AGE_RE.search(cache_control)
    return min(float(match.group(1)), MAX_TTL_S) if match else DEFAULT_TTL_S


@dataclass(frozen=True)
class _Cached:
    jwks: dict
    fetched_at: float
    expires_at: float


class JwksFetcher:
    def __init__(self, client: httpx.Client | None = None):
        self._http = client or httpx.Client(timeout=_TIMEOUT_S, follow_redirects=False)
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def get(self, url: str, *, stale_kid: bool = False) -> dict:
        """The client's JWKS; `stale_kid` asks for a re-fetch because a kid was not found."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(url)
        if cached is not None:
            if not stale_kid and now < cached.expires_at:
                return cached.jwks
            if stale_kid and now - cached.fetched_at < MIN_REFETCH_S and now < cached.expires_at:
                return cached.jwks
        jwks, ttl = self._fetch(url)
        with self._lock:
            self._cache[url] = _Cached(jwks, now, now + ttl)
        return jwks

    def _fetch(self, url: str) -> tuple[dict, float]:
        try:
            with self._http.stream("GET", url, headers={"Accept": "application/json"}) as response:
                if response.status_code != 200:
                    raise InvalidClient("client JWKS URL did not answer 200")
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > _MAX_BYTES:
                        raise InvalidClient("client JWKS too large")
                ttl = cache_ttl(response.headers.get("cache-control"))
        except httpx.HTTPError:
            raise InvalidClient("client JWKS URL unreachable") from None
        try:
            jwks = json.loads(body)
        except ValueError:
            raise InvalidClient("client JWKS is not JSON") from None
        if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
            raise InvalidClient("client JWKS has no keys")
        return jwks, ttl
