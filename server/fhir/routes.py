"""FastAPI routes for the FHIR REST API under /fhir.

Routes stay thin: parse HTTP, call `FhirService` in a worker thread with the request's context
(which does every access check), render.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from server.fhir.bundles import BundleProcessor, parse_bundle
from server.fhir.capability import capability_statement
from server.fhir.context import context_of
from server.fhir.errors import FhirError
from server.fhir.http import base_url, fhir_response, json_body, prefer, strict_handling
from server.fhir.service import FhirService, Reply

router = APIRouter(prefix="/fhir")

_JSON_CONTENT = {"application/fhir+json": {"schema": {"type": "object"}}}


def service_of(request: Request) -> FhirService:
    return request.app.state.fhir


def _query(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def _strip_format(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in params if k not in ("_format", "_pretty")]


@router.get("/metadata", summary="CapabilityStatement")
async def metadata(request: Request) -> Response:
    return fhir_response(Reply(200, capability_statement(base_url(request), request.app.state)))


@router.post("", summary="Transaction or batch", openapi_extra={"requestBody": {"content": _JSON_CONTENT}})
@router.post("/", include_in_schema=False)
async def transaction(request: Request) -> Response:
    body = await json_body(request)
    service = service_of(request)
    processor = BundleProcessor(service, context_of(request), base_url(request), prefer(request))
    return fhir_response(await run_in_threadpool(lambda: processor.process(parse_bundle(service, body, processor.base))))


@router.get("/_history", summary="System history")
async def system_history(request: Request) -> Response:
    reply = await run_in_threadpool(service_of(request).history, None, None, _query(request), base_url(request),
                                    context_of(request))
    return fhir_response(reply)


@router.get("/{rtype}", summary="Search")
async def search(rtype: str, request: Request) -> Response:
    return await _search(rtype, request, _strip_format(_query(request)))


@router.post("/{rtype}/_search", summary="Search by POST", openapi_extra={"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}})
async def search_post(rtype: str, request: Request) -> Response:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FhirError.of(415, "not-supported", "_search takes application/x-www-form-urlencoded")
    text = (await request.body()).decode("utf-8", "replace")
    audit = context_of(request).audit
    audit.query = "&".join(q for q in (audit.query, text) if q) or None  # the parameters are in the body
    return await _search(rtype, request, _strip_format(_query(request) + parse_qsl(text, keep_blank_values=True)))


async def _search(rtype: str, request: Request, params: list[tuple[str, str]]) -> Response:
    service = service_of(request)
    reply = await run_in_threadpool(
        service.search, rtype, params, base_url(request), strict_handling(request), context_of(request)
    )
    return fhir_response(reply)


@router.post("/{rtype}", summary="Create", openapi_extra={"requestBody": {"content": _JSON_CONTENT}})
async def create(rtype: str, request: Request) -> Response:
    service = service_of(request)
    service.check_type(rtype)
    body = await json_body(request)
    reply = await run_in_threadpool(
        service.create, rtype, body, context_of(request), base_url(request), request.headers.get("if-none-exist"),
        prefer(request),
    )
    return fhir_response(reply)


@router.put("/{rtype}", summary="Conditional update", openapi_extra={"requestBody": {"content": _JSON_CONTENT}})
async def conditional_update(rtype: str, request: Request) -> Response:
    service = service_of(request)
    service.check_type(rtype)
    query = request.url.query
    if not query:
        raise FhirError.of(400, "invalid", "PUT to a type needs search criteria")
    body = await json_body(request)
    reply = await run_in_threadpool(
        service.conditional_update, rtype, query, body, context_of(request), base_url(request),
        request.headers.get("if-match"), prefer(request),
    )
    return fhir_response(reply)


@router.delete("/{rtype}", summary="Conditional delete")
async def conditional_delete(rtype: str, request: Request) -> Response:
    query = request.url.query
    if not query:
        raise FhirError.of(400, "invalid", "DELETE on a type needs search criteria")
    reply = await run_in_threadpool(service_of(request).delete, rtype, None, query, context_of(request))
    return fhir_response(reply)


@router.get("/{rtype}/_history", summary="Type history")
async def type_history(rtype: str, request: Request) -> Response:
    reply = await run_in_threadpool(service_of(request).history, rtype, None, _query(request), base_url(request),
                                    context_of(request))
    return fhir_response(reply)


@router.get("/{rtype}/{rid}", summary="Read")
async def read(rtype: str, rid: str, request: Request) -> Response:
    reply = await run_in_threadpool(service_of(request).read, rtype, rid, base_url(request), context_of(request))
    return fhir_response(reply)


@router.put("/{rtype}/{rid}", summary="Update", openapi_extra={"requestBody": {"content": _JSON_CONTENT}})
async def update(rtype: str, rid: str, request: Request) -> Response:
    service = service_of(request)
    service.check_type(rtype)
    body = await json_body(request)
    reply = await run_in_threadpool(
        service.update, rtype, rid, body, context_of(request), base_url(request), request.headers.get("if-match"),
        prefer(request),
    )
    return fhir_response(reply)


@router.delete("/{rtype}/{rid}", summary="Delete")
async def delete(rtype: str, rid: str, request: Request) -> Response:
    reply = await run_in_threadpool(service_of(request).delete, rtype, rid, None, context_of(request))
    return fhir_response(reply)


@router.get("/{rtype}/{rid}/_history", summary="Instance history")
async def instance_history(rtype: str, rid: str, request: Request) -> Response:
    reply = await run_in_threadpool(service_of(request).history, rtype, rid, _query(request), base_url(request),
                                    context_of(request))
    return fhir_response(reply)


@router.get("/{rtype}/{rid}/_history/{vid}", summary="Version read")
async def vread(rtype: str, rid: str, vid: str, request: Request) -> Response:
    reply = await run_in_threadpool(service_of(request).vread, rtype, rid, vid, base_url(request), context_of(request))
    return fhir_response(reply)
