"""HTTP plumbing shared by the FHIR routes: body reading with limits, media types, replies."""

from __future__ import annotations

import orjson
from fastapi import Request
from fastapi.responses import Response

from server.fhir.errors import FhirError
from server.fhir.types import Reply

FHIR_JSON = "application/fhir+json"
_ACCEPTED_BODY_TYPES = ("application/fhir+json", "application/json", "application/json+fhir")


def fhir_response(reply: Reply) -> Response:
    media = FHIR_JSON + "; charset=utf-8" if reply.body is not None else None
    return Response(content=reply.body or b"", status_code=reply.status, headers=reply.headers, media_type=media)


def error_response(err: FhirError) -> Response:
    return Response(
        content=orjson.dumps(err.outcome()),
        status_code=err.status,
        headers=err.headers,
        media_type=FHIR_JSON + "; charset=utf-8",
    )


def base_url(request: Request) -> str:
    """The FHIR base (…/fhir) as clients reach it."""
    configured = request.app.state.settings.base_url
    root = configured.rstrip("/") if configured else str(request.base_url).rstrip("/")
    return root + "/fhir"


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refusing oversized ones (413) before reading them whole."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not (declared.isascii() and declared.isdigit()):  # str.isdigit() also takes '²', int() does not
            raise FhirError.of(400, "invalid", "Invalid Content-Length")
        if int(declared) > limit:
            raise FhirError.of(413, "too-costly", f"Body larger than {limit} bytes")
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise FhirError.of(413, "too-costly", f"Body larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def check_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in _ACCEPTED_BODY_TYPES:
        raise FhirError.of(415, "not-supported", "Send application/fhir+json (or application/json)")


async def json_body(request: Request) -> object:
    check_content_type(request)
    raw = await read_body(request, request.app.state.settings.max_body_bytes)
    if not raw.strip():
        raise FhirError.of(400, "structure", "Empty body")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise FhirError.of(400, "structure", "Body is not valid JSON") from None


def prefer(request: Request) -> str | None:
    return request.headers.get("prefer")


def strict_handling(request: Request) -> bool:
    return "handling=strict" in (request.headers.get("prefer") or "").replace(" ", "")
