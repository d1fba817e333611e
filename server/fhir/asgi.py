"""Answers written straight to ASGI, for the middleware that run before FastAPI routes a request
(authentication, rate limit and timeout, the consistency wait)."""

from __future__ import annotations

import orjson
from starlette.types import Send

from server.fhir.errors import FhirError


async def respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]], media: bytes) -> None:
    head = [(b"content-type", media), (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body})


async def respond_error(send: Send, err: FhirError, extra: list[tuple[bytes, bytes]]) -> None:
    """The error's OperationOutcome with its status and headers, plus `extra` headers."""
    headers = [(k.lower().encode(), v.encode()) for k, v in err.headers.items()] + extra
    await respond(send, err.status, orjson.dumps(err.outcome()), headers, b"application/fhir+json; charset=utf-8")
