"""Outermost ASGI middleware: request id, one log line and the HTTP metrics per request.

The route is the matched route's *template* (`/fhir/{rtype}/{rid}`), never the raw path, so neither
logs nor metric labels carry ids. Requests answered before routing (401 from the token check) are
matched against the app's routes here; a path no route knows is `unmatched`.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from time import perf_counter
from typing import Iterable

from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.ops.logging import REQUEST_ID
from server.ops.metrics import observe_request

log = logging.getLogger("planfit.request")
UNMATCHED = "unmatched"
_CLIENT_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class RequestIds:
    """New request ids, 32 hex digits: this process's random half, then a count. Not `uuid4()`: its
    `os.urandom` call releases the GIL on the event loop, which then waits for a worker thread to give it
    back (5 % of the loop's samples per `$evaluate-measure`, py-spy). An id needs no secrecy: a caller may
    send its own."""

    def __init__(self) -> None:
        self._process = os.urandom(8).hex()
        self._count = itertools.count()

    def new(self) -> str:
        return f"{self._process}{next(self._count):016x}"


def request_id(scope: Scope, ids: RequestIds) -> str:
    """The caller's X-Request-ID when it is a plain token (so it cannot inject log text), else a new one."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            given = value.decode("latin-1")
            if _CLIENT_REQUEST_ID.fullmatch(given):
                return given
    return ids.new()


def leaf_routes(routes: Iterable[BaseRoute]) -> list[BaseRoute]:
    """The app's routes in matching order, included routers flattened (they are included without a
    prefix here, so each leaf's own pattern is the full path)."""
    leaves: list[BaseRoute] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        leaves.extend(leaf_routes(inner.routes) if inner is not None else [route])
    return leaves


def route_template(scope: Scope, leaves: list[BaseRoute]) -> str:
    route = scope.get("route")
    if route is None:  # answered before routing (the token check): match it here
        route = next((r for r in leaves if r.matches(scope)[0] is Match.FULL), None)
    # `path_format` drops the convertors (`{rtype:fhirtype}` → `{rtype}`): the template as documented.
    return getattr(route, "path_format", None) or getattr(route, "path", None) or UNMATCHED


class OpsMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app
        self._leaves: list[BaseRoute] | None = None
        self._ids = RequestIds()

    def _route(self, scope: Scope) -> str:
        if self._leaves is None:
            self._leaves = leaf_routes(scope["app"].router.routes)
        return route_template(scope, self._leaves)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(scope, self._ids)
        token = REQUEST_ID.set(rid)
        started = perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        failed = True
        try:
            await self.app(scope, receive, sending)
            failed = False
        finally:
            seconds = perf_counter() - started
            method, route = scope["method"], self._route(scope)
            observe_request(method, route, status, seconds)
            log.info("%s %s %d %.1fms", method, route, status, seconds * 1000,
                     extra={"method": method, "route": route, "status": status,
                            "duration_ms": round(seconds * 1000, 2)})
            # After an exception the id stays set (this request's task ends with it): the 500 handler,
            # outside every middleware, logs the exception under it.
            if not failed:
                REQUEST_ID.reset(token)
