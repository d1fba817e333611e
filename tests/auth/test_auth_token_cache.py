"""The per-request token check: a verified token is served from a bounded LRU until it expires, so a
repeat request costs microseconds instead of a signature verification."""

from __future__ import annotations

import time

import pytest

from server.auth.access import Grant, ScopeClauses
from server.auth.jwt import InvalidToken, ServerKeys, mint_access_token, verify_access_token
from server.auth.scopes import ScopeSet
from server.auth.tokens import Authenticator, TokenCache, Verified
from server.auth.urls import Urls
from server.fhir.search import parse_search

URLS = Urls("https://planfit.example")


def parse(rtype: str, params: list[tuple[str, str]]):
    return parse_search(rtype, params, strict=True, default_count=50, max_count=1000)


@pytest.fixture(scope="module")
def keys() -> ServerKeys:
    return ServerKeys.generate()


def mint(keys: ServerKeys, expires_in: int = 300, scope: str = "system/*.rs") -> str:
    return mint_access_token(keys, issuer=URLS.issuer, audience=URLS.fhir, client_id="c", scope=scope, expires_in=expires_in)


def test_cached_check_costs_microseconds(keys):
    auth = Authenticator(lambda: keys, lambda _u: None, parse, 100)
    token = mint(keys)
    first = auth.verify(token, URLS)
    rounds = 20_000
    start = time.perf_counter()
    for _ in range(rounds):
        assert auth.cached(token, URLS) is first
    cached_us = (time.perf_counter() - start) / rounds * 1e6
    start = time.perf_counter()
    for _ in range(200):
        verify_access_token(keys, token, issuer=URLS.issuer, audience=URLS.fhir)
    verify_us = (time.perf_counter() - start) / 200 * 1e6
    assert cached_us < 20, f"cached check {cached_us:.1f} µs"
    assert verify_us > 10 * cached_us, (verify_us, cached_us)


def test_clauses_are_built_once_per_token(keys):
    auth = Authenticator(lambda: keys, lambda _u: None, parse, 100)
    token = mint(keys, scope="system/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item")
    clauses = auth.verify(token, URLS).clauses
    assert clauses("Condition", "s") is auth.cached(token, URLS).clauses("Condition", "s")


def test_cache_is_bounded_lru(keys):
    cache = TokenCache(3)
    entries = {}
    for n in range(5):
        grant = Grant("c", ScopeSet(), time.time() + 60)
        entries[n] = Verified(grant, ScopeClauses(grant, parse), {})
        cache.put(("base", str(n)), entries[n])
        if n == 2:
            assert cache.get(("base", "0")) is entries[0]  # touch 0: 1 becomes the oldest
    assert len(cache) == 3
    assert cache.get(("base", "1")) is None and cache.get(("base", "2")) is None
    assert cache.get(("base", "0")) is entries[0] and cache.get(("base", "4")) is entries[4]


def test_expired_tokens_leave_the_cache(keys):
    cache = TokenCache(10)
    grant = Grant("c", ScopeSet(), time.time() - 1)
    cache.put(("base", "t"), Verified(grant, ScopeClauses(grant, parse), {}))
    assert cache.get(("base", "t")) is None and len(cache) == 0


def test_tokens_are_cached_per_audience(keys):
    auth = Authenticator(lambda: keys, lambda _u: None, parse, 100)
    token = mint(keys)
    auth.verify(token, URLS)
    with pytest.raises(InvalidToken):
        auth.verify(token, Urls("https://elsewhere.example"))
