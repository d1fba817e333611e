"""ASGI middleware in front of the whole app: authentication, CORS, audit.

Every request under /fhir except `metadata` and `.well-known/smart-configuration` must carry a valid
access token (401 otherwise). The middleware only authenticates: it verifies the token, checks that
its client and user are still registered as they were when it was issued, and puts the request's
`RequestContext` (identity, `SmartAccess`, audit record) on `request.state.context`, where routes
find it and hand it on explicitly. It decides nothing about what the request may do, and never reads
the body. After the response it queues the audit record. It is plain ASGI rather than a Starlette
`BaseHTTPMiddleware`, so a request with a cached token costs a dictionary lookup, not an extra task
and response copy.

With PLANFIT_AUTH=off the context has `FullAccess` and every caller is "anonymous"; it is audited too.
"""

from __future__ import annotations

import time
from urllib.parse import unquote

from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.auth.audit import AuditTrail, describe
from server.auth.jwt import InvalidToken
from server.auth.runtime import AuthRuntime
from server.auth.urls import Urls
from server.config import Settings
from server.fhir.asgi import respond, respond_error
from server.fhir.context import AuditRecord, FullAccess, RequestContext
from server.fhir.types import WriteContext
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


def unauthorized(diagnostics: str, error: str | None) -> FhirError:
    """401 with the RFC 6750 challenge: no error code when no credential was sent at all."""
    challenge = _REALM if error is None else f'{_REALM}, error="{error}", error_description="{diagnostics}"'
    return FhirError(401, Issue("error", "login", diagnostics), {"WWW-Authenticate": challenge})


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
        # Open paths need no token; without authorization every /fhir path gets its (full) context.
        if not (path == "/fhir" or path.startswith("/fhir/")) or (path in OPEN_PATHS and self.runtime is not None):
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
        record = self._record(scope)
        if self.runtime is None:
            ctx = RequestContext(FullAccess(), WriteContext(self.settings.default_source, self.settings.default_source_kind),
                                 record)
        else:
            try:
                ctx = await self._authenticate(scope, headers, record)
            except FhirError as err:
                await respond_error(send, err, [])
                return
        scope.setdefault("state", {})["context"] = ctx
        try:
            await self.app(scope, receive, _recording(send, record))
        finally:
            if record.status == 0:
                record.status = 500
            await self._finish(record)

    async def _authenticate(self, scope: Scope, headers: Headers, record: AuditRecord) -> RequestContext:
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
        username = verified.grant.username
        if username is not None:
            hit, user = runtime.users.cached(username)
            if not hit:
                user = await run_in_threadpool(runtime.users.load, username)
            if user is None or user.version != verified.grant.user_version:
                raise unauthorized("Invalid access token: user removed or changed since it was issued", "invalid_token")
        return runtime.context(verified, client, record)

    def _record(self, scope: Scope) -> AuditRecord:
        parts = [unquote(p) for p in scope["path"][len("/fhir"):].split("/") if p]
        interaction, rtype, rid = describe(scope["method"], parts)
        query = scope.get("query_string", b"").decode("latin-1") or None
        client = scope.get("client")
        return AuditRecord(
            recorded_us=time.time_ns() // 1000,
            interaction=interaction,
            rtype=rtype,
            rid=rid,
            query=query[:_MAX_QUERY_AUDIT] if query and interaction.startswith(("search", "operation")) else None,
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
