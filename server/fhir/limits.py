"""Per-client rate limit and request timeout (SPEC §9), as one ASGI middleware.

It sits inside the SMART middleware, which has already put the request's `RequestContext` on
`scope["state"]["context"]`: requests are counted per token subject (the user of an App Launch token,
else the client), or per remote address when there is none (the /auth endpoints, discovery, or
PLANFIT_AUTH=off). The limit is a token bucket of `PLANFIT_RATE_LIMIT` requests per minute: a client may
burst that many, then gets one more every 60/N seconds; beyond it 429 with `Retry-After`. Buckets live
in each server process, so N processes behind a balancer allow up to N times the limit.

A request still without a response after `PLANFIT_REQUEST_TIMEOUT_SECONDS` gets 503 with an
OperationOutcome (issue code `timeout`). Only the start of the response is timed: a long download that
has begun streaming is not cut off. Work running in a worker thread cannot be stopped and may still
complete, so a client should retry writes conditionally (If-None-Exist, If-Match).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import OrderedDict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.config import Settings
from server.fhir.asgi import respond_error
from server.fhir.errors import FhirError

_MAX_BUCKETS = 100_000  # least recently seen keys beyond this are forgotten (a fresh, full bucket)


class TokenBuckets:
    """`per_minute` requests per key per minute, bursting up to `per_minute`."""

    def __init__(self, per_minute: int):
        self.capacity = float(per_minute)
        self.per_second = per_minute / 60.0
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key → (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str, now: float) -> float:
        """0 if a request may go now, else the seconds until it may."""
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - at) * self.per_second)
            wait = 0.0 if tokens >= 1 else (1 - tokens) / self.per_second
            self._buckets[key] = (tokens - 1 if wait == 0 else tokens, now)
            if len(self._buckets) > _MAX_BUCKETS:
                self._buckets.popitem(last=False)
            return wait


def client_key(scope: Scope) -> str:
    ctx = scope.get("state", {}).get("context")
    if ctx is not None and ctx.username is not None:
        return f"user:{ctx.username}"
    if ctx is not None and ctx.client_id is not None:
        return f"client:{ctx.client_id}"
    client = scope.get("client")
    return f"addr:{client[0] if client else '?'}"


class LimitsMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.buckets = TokenBuckets(settings.rate_limit) if settings.rate_limit > 0 else None
        self.timeout = settings.request_timeout_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.buckets is not None:
            wait = self.buckets.take(client_key(scope), time.monotonic())
            if wait:
                seconds = str(max(1, math.ceil(wait)))
                err = FhirError.of(429, "throttled", f"Rate limit exceeded: retry after {seconds} s")
                await respond_error(send, err, [(b"retry-after", seconds.encode())])
                return
        if self.timeout <= 0:
            await self.app(scope, receive, send)
            return
        await self._timed(scope, receive, send)

    async def _timed(self, scope: Scope, receive: Receive, send: Send) -> None:
        started, timed_out = asyncio.Event(), False

        async def sending(message: Message) -> None:
            if timed_out:
                return  # the client already has its 503
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, sending))
        waiter = asyncio.ensure_future(started.wait())
        await asyncio.wait({task, waiter}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if task.done() or started.is_set():
            await task
            return
        timed_out = True
        task.cancel()  # a worker thread it waits for runs on; nothing waits for the task any more
        task.add_done_callback(_ignore_outcome)
        err = FhirError.of(503, "timeout", f"No response within {self.timeout} s; the request may still complete")
        await respond_error(send, err, [])


def _ignore_outcome(task: asyncio.Future) -> None:
    if not task.cancelled():
        task.exception()
