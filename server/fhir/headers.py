"""Security headers on every response, and the operator's CORS allow-list (SPEC §9).

Every response gets `X-Content-Type-Options: nosniff`, and unless the route set its own:
`X-Frame-Options: DENY`, `Referrer-Policy: no-referrer`, a Content-Security-Policy (HTML pages may load
nothing from elsewhere, run no script and be framed by nobody; other responses are no documents at all)
and `Cache-Control: no-store` (responses carry PHI or tokens; a route whose answer is public, such as the
JWKS, sets its own).

CORS is off by default: no `Access-Control-Allow-Origin` except what SMART itself requires (discovery
from any origin, a registered browser app from its own origin; `server/auth/middleware.py`).
`PLANFIT_CORS_ORIGINS` (comma-separated origins) lets further origins call the API with their own
tokens; this middleware answers their preflights.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.config import Settings

HTML_CSP = b"default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
API_CSP = b"default-src 'none'; frame-ancestors 'none'; sandbox"
_DEFAULTS = (
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
)
_CORS_METHODS = b"GET, POST, PUT, DELETE, OPTIONS"
_CORS_ALLOW_HEADERS = b"Authorization, Content-Type, Accept, Prefer, If-Match, If-None-Exist, If-None-Match"
_CORS_EXPOSE_HEADERS = b"Location, ETag, Last-Modified, Content-Location, WWW-Authenticate, Retry-After"


def allowed_origins(setting: str) -> frozenset[str]:
    return frozenset(o.strip().rstrip("/") for o in setting.split(",") if o.strip())


def security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The response's headers plus the defaults it does not set itself."""
    present = {name.lower() for name, _ in headers}
    content_type = next((v for n, v in headers if n.lower() == b"content-type"), b"")
    added = [(b"x-content-type-options", b"nosniff")] if b"x-content-type-options" not in present else []
    added += [(name, value) for name, value in _DEFAULTS if name not in present]
    if b"content-security-policy" not in present:
        added.append((b"content-security-policy", HTML_CSP if content_type.startswith(b"text/html") else API_CSP))
    return [*headers, *added]


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings):
        self.app = app
        self.origins = allowed_origins(settings.cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = Headers(scope=scope).get("origin")
        cors = origin is not None and origin in self.origins
        if cors and scope["method"] == "OPTIONS" and "access-control-request-method" in Headers(scope=scope):
            await _preflight(send, origin)
            return

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = security_headers(list(message.get("headers", [])))
                if cors and not any(n.lower() == b"access-control-allow-origin" for n, _ in headers):
                    headers += _cors(origin)
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, sending)


def _cors(origin: str) -> list[tuple[bytes, bytes]]:
    return [(b"access-control-allow-origin", origin.encode()), (b"vary", b"Origin"),
            (b"access-control-expose-headers", _CORS_EXPOSE_HEADERS)]


async def _preflight(send: Send, origin: str) -> None:
    headers = security_headers([*_cors(origin), (b"access-control-allow-methods", _CORS_METHODS),
                                (b"access-control-allow-headers", _CORS_ALLOW_HEADERS),
                                (b"access-control-max-age", b"600"), (b"content-length", b"0")])
    await send({"type": "http.response.start", "status": 204, "headers": headers})
    await send({"type": "http.response.body", "body": b""})
