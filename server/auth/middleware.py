"""ASGI middleware in front of the whole app: SMART token check, confinement rules, CORS, audit.

Every request under /fhir except `metadata` and `.well-known/smart-configuration` must carry a valid
access token (401 otherwise). The middleware puts the request's `SmartAccess` on `request.state.access`
(where `server.fhir.access.access_of` finds it) and in `server.auth.context.CURRENT` (for the write
guard and the audit listener), applies the rules of `server.auth.policy`, and after the response
queues one audit record. It is plain ASGI rather than a Starlette `BaseHTTPMiddleware`, so a request
with a cached token costs a dictionary lookup, not an extra task and response copy.

With PLANFIT_AUTH=off it only audits (every caller is "anonymous").
"""

from __future__ import annotations

import time
from urllib.parse import unquote

import orjson
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.auth.access import SmartAccess
from server.auth.audit import AuditRecord, AuditTrail
from server.auth.context import CURRENT, RequestScope
from server.auth.jwt import InvalidToken
from server.auth.policy import Target, check_body, check_request, classify, needs_body
from server.auth.runtime import AuthRuntime
from server.auth.urls import Urls
from server.config import Settings
from server.fhir.errors import FhirError, Issue

OPEN_PATHS = frozenset({"/fhir/metadata", "/fhir/.well-known/smart-configuration"})
# Discovery documents any web page may read (SMART: "from any origin").
PUBLIC_CORS_PATHS = OPEN_PATHS | {"/auth/jwks", "/auth/.well-known/openid-configuration"}
# Endpoints a registered browser app calls from its own origin.
APP_CORS_PREFIXES = ("/fhir", "/auth/token", "/auth/introspect")
_CORS_ALLOW_HEADERS = b"Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Exist, If-None-Match"
_CORS_EXPOSE_HEADERS = b"Location, ETag, Last-Modified, Content-Location, WWW-Authenticate"
_CORS_METHODS = b"GET, POST, PUT, DELETE, OPTIONS"
_REALM = 'Bearer realm="planfit"'
_MAX_QUERY_AUDIT = 8192


def bearer_token(headers: Headers) -> str | None:
    """The token of `Authorization: Bearer <token>`; None if there is no Bearer credential."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], media: bytes) -> None:
    head = [(b"content-type", media), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def respond_error(send: Send, err: FhirError, extra: list[tuple[bytes, bytes]]) -> None:
    headers = [(k.lower().encode(), v.encode()) for k, v in err.headers.items()] + extra
    await respond(send, err.status, orjson.dumps(err.outcome()), headers, b"application/fhir+json; charset=utf-8")


def unauthorized(diagnostics: str, error: str | None) -> FhirError:
    """401 with the RFC 6750 challenge: no error code when no credential was sent at all."""
    challenge = _REALM if error is None else f'{_REALM}, error="{error}", error_description="{diagnostics}"'
    return FhirError(401, Issue("error", "login", diagnostics), {"WWW-Authenticate": challenge})


async def read_body(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """Read the request body up to `limit` bytes: (what was read, whether that is all of it)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b"".join(chunks), True
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True
        if size > limit:
            return b"".join(chunks), False


def replaying(prefix: bytes, complete: bool, receive: Receive) -> Receive:
    """A `receive` that first yields the already-read part of the body, then defers to the real one."""
    pending = [prefix]

    async def replay() -> Message:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": not complete}
        return await receive()

    return replay


class SmartMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings, audit: AuditTrail, runtime: AuthRuntime | None):
        self.app = app
        self.settings = settings
        self.audit = audit
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        headers = Headers(scope=scope)
        cors = await self._cors_headers(path, headers)
        if scope["method"] == "OPTIONS" and "access-control-request-method" in headers and cors:
            await respond(send, 204, b"", [*cors, (b"access-control-allow-methods", _CORS_METHODS),
                                           (b"access-control-allow-headers", _CORS_ALLOW_HEADERS),
                                           (b"access-control-max-age", b"600")], b"text/plain")
            return
        send = _with_headers(send, cors)
        if not (path == "/fhir" or path.startswith("/fhir/")) or path in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        await self._fhir(scope, receive, send, headers)

    async def _cors_headers(self, path: str, headers: Headers) -> list[tuple[bytes, bytes]]:
        origin = headers.get("origin")
        if origin is None or self.runtime is None:
            return []
        if path in PUBLIC_CORS_PATHS:
            return [(b"access-control-allow-origin", b"*")]
        if not path.startswith(APP_CORS_PREFIXES):
            return []
        registry = self.runtime.registry
        origins = registry.origins_cached()
        if origins is None:
            origins = await run_in_threadpool(registry.origins)
        if origin not in origins:
            return []
        return [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin"),
                (b"access-control-expose-headers", _CORS_EXPOSE_HEADERS)]

    async def _fhir(self, scope: Scope, receive: Receive, send: Send, headers: Headers) -> None:
        parts = [unquote(p) for p in scope["path"][len("/fhir"):].split("/") if p]
        target = classify(scope["method"], parts, bool(scope.get("query_string")))
        record = self._record(scope, target)
        access = None
        if self.runtime is not None:
            try:
                access = await self._authenticate(scope, headers)
            except FhirError as err:
                await respond_error(send, err, [])
                return
            record.client_id, record.username = access.grant.client_id, access.grant.username
            record.fhir_user, record.patient = access.grant.fhir_user, access.grant.patient
            try:
                receive = await self._enforce(scope, receive, headers, access, target)
            except FhirError as err:
                record.status = err.status
                await self._finish(record)
                await respond_error(send, err, [])
                return
            scope.setdefault("state", {})["access"] = access
        if scope["method"] == "POST" and target.interaction == "search-type":
            receive = await self._note_search_form(receive, record)
        token = CURRENT.set(RequestScope(access, record))
        try:
            await self.app(scope, receive, _recording(send, record))
        finally:
            CURRENT.reset(token)
            if record.status == 0:
                record.status = 500
            await self._finish(record)

    async def _authenticate(self, scope: Scope, headers: Headers) -> SmartAccess:
        runtime = self.runtime
        assert runtime is not None
        token = bearer_token(headers)
        if token is None:
            raise unauthorized("Authentication required: send a SMART access token (Authorization: Bearer)", None)
        urls = Urls.of(HTTPConnection(scope), self.settings)
        verified = runtime.authenticator.cached(token, urls)
        if verified is None:
            try:
                verified = await run_in_threadpool(runtime.authenticator.verify, token, urls)
            except InvalidToken as exc:
                raise unauthorized(f"Invalid access token: {exc.reason}", "invalid_token") from None
        hit, client = runtime.registry.cached(verified.grant.client_id)
        if not hit:
            client = await run_in_threadpool(runtime.registry.load, verified.grant.client_id)
        if client is None:
            raise unauthorized("Invalid access token: client no longer registered", "invalid_token")
        return runtime.access(verified, client)

    async def _enforce(self, scope: Scope, receive: Receive, headers: Headers, access: SmartAccess, target: Target) -> Receive:
        """Apply the confinement rules; returns the `receive` the app must use (body replayed)."""
        check_request(access, target, headers.get("if-none-exist"))
        if not needs_body(access, target):
            return receive
        limit = self.settings.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return receive  # the REST layer answers 413 without reading it
        body, complete = await read_body(receive, limit)
        if not complete or len(body) > limit:
            raise FhirError.of(413, "too-costly", f"Body larger than {limit} bytes")
        try:
            parsed = orjson.loads(body) if body.strip() else None
        except orjson.JSONDecodeError:
            parsed = None  # the REST layer answers 400
        base = Urls.of(HTTPConnection(scope), self.settings).fhir
        await run_in_threadpool(check_body, access, target, parsed, base)
        return replaying(body, True, receive)

    async def _note_search_form(self, receive: Receive, record: AuditRecord) -> Receive:
        """`POST …/_search` carries its parameters in the body: audit them like a query string."""
        body, complete = await read_body(receive, _MAX_QUERY_AUDIT)
        form = body[:_MAX_QUERY_AUDIT].decode("latin-1")
        record.query = "&".join(q for q in (record.query, form) if q) or None
        return replaying(body, complete, receive)

    def _record(self, scope: Scope, target: Target) -> AuditRecord:
        query = scope.get("query_string", b"").decode("latin-1") or None
        client = scope.get("client")
        return AuditRecord(
            recorded_us=time.time_ns() // 1000,
            interaction=target.interaction,
            rtype=target.rtype,
            rid=target.rid,
            query=query[:_MAX_QUERY_AUDIT] if query and target.interaction.startswith(("search", "operation")) else None,
            remote_addr=client[0] if client else None,
        )

    async def _finish(self, record: AuditRecord) -> None:
        if not self.audit.offer(record):
            await run_in_threadpool(self.audit.put, record)


def _with_headers(send: Send, extra: list[tuple[bytes, bytes]]) -> Send:
    if not extra:
        return send

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)

    return sending


def _recording(send: Send, record: AuditRecord) -> Send:
    """Note the response status (and whether a bundle was a batch) in the audit record."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            record.status = message["status"]
        elif record.interaction == "transaction" and b'"type":"batch-response"' in message.get("body", b"")[:160]:
            record.interaction = "batch"
        await send(message)

    return sending
