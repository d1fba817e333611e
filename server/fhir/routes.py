"""FastAPI routes for the FHIR REST API under /fhir.

Routes stay thin: parse HTTP, call `FhirService` in a worker thread with the request's context
(which does every access check), render.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response
from starlette.convertors import StringConvertor, register_url_convertor

from server.fhir.bundles import BundleProcessor, parse_bundle
from server.fhir.capability import capability_statement
from server.fhir.context import context_of
from server.fhir.errors import FhirError
from server.fhir.features import READ_RENDER
from server.fhir.http import base_url, fhir_response, json_body, prefer, strict_handling
from server.fhir.service import FhirService
from server.fhir.summary import summarise
from server.fhir.types import Reply


class _ResourceType(StringConvertor):
    """A resource type segment: starts with a capital letter, so never `$operation`, `_history`,
    `metadata` or `.well-known`."""

    regex = "[A-Z][^/]*"


class _ResourceId(StringConvertor):
    """An id segment: never `$operation` or `_history`, so a feature's operation routes and these
    routes cannot take each other's requests, whatever order they are included in."""

    regex = "[^/$_][^/]*"


register_url_convertor("fhirtype", _ResourceType())
register_url_convertor("fhirid", _ResourceId())

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
    return fhir_response(Reply(200, capability_statement(base_url(request), request.app.state.features)))


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


@router.get("/{rtype:fhirtype}", summary="Search")
async def search(rtype: str, request: Request) -> Response:
    return await _search(rtype, request, _strip_format(_query(request)))


@router.post("/{rtype:fhirtype}/_search", summary="Search by POST", openapi_extra={"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}})
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


@router.post("/{rtype:fhirtype}", summary="Create", openapi_extra={"requestBody": {"content": _JSON_CONTENT}})
async def create(rtype: str, request: Request) -> Response:
    service = service_of(request)
    service.check_type(rtype)
    body = await json_body(request)
    reply = await run_in_threadpool(
        service.create, rtype, body, context_of(request), base_url(request), request.headers.get("if-none-exist"),
        prefer(request),
    )
    return fhir_response(reply)


@router.put("/{rtype:fhirtype}", summary="Conditional update", openapi_extra={"requestBody": {"content": _JSON_CONTENT}})
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


@router.delete("/{rtype:fhirtype}", summary="Conditional delete")
async def conditional_delete(rtype: str, request: Request) -> Response:
    query = request.url.query
    if not query:
        raise FhirError.of(400, "invalid", "DELETE on a type needs search criteria")
    reply = await run_in_threadpool(service_of(request).delete, rtype, None, query, context_of(request))
    return fhir_response(reply)


@router.get("/{rtype:fhirtype}/_history", summary="Type history")
async def type_history(rtype: str, request: Request) -> Response:
    reply = await run_in_threadpool(service_of(request).history, rtype, None, _query(request), base_url(request),
                                    context_of(request))
    return fhir_response(reply)


@router.get("/{rtype:fhirtype}/{rid:fhirid}", summary="Read")
async def read(rtype: str, rid: str, request: Request) -> Response:
    reply = await run_in_threadpool(service_of(request).read, rtype, rid, base_url(request), context_of(request))
    return await _rendered(request, rtype, rid, None, reply)


@router.put("/{rtype:fhirtype}/{rid:fhirid}", summary="Update", openapi_extra={"requestBody": {"content": _JSON_CONTENT}})
async def update(rtype: str, rid: str, request: Request) -> Response:
    service = service_of(request)
    service.check_type(rtype)
    body = await json_body(request)
    reply = await run_in_threadpool(
        service.update, rtype, rid, body, context_of(request), base_url(request), request.headers.get("if-match"),
        prefer(request),
    )
    return fhir_response(reply)


@router.delete("/{rtype:fhirtype}/{rid:fhirid}", summary="Delete")
async def delete(rtype: str, rid: str, request: Request) -> Response:
    reply = await run_in_threadpool(service_of(request).delete, rtype, rid, None, context_of(request))
    return fhir_response(reply)


@router.get("/{rtype:fhirtype}/{rid:fhirid}/_history", summary="Instance history")
async def instance_history(rtype: str, rid: str, request: Request) -> Response:
    reply = await run_in_threadpool(service_of(request).history, rtype, rid, _query(request), base_url(request),
                                    context_of(request))
    return fhir_response(reply)


@router.get("/{rtype:fhirtype}/{rid:fhirid}/_history/{vid}", summary="Version read")
async def vread(rtype: str, rid: str, vid: str, request: Request) -> Response:
    reply = await run_in_threadpool(service_of(request).vread, rtype, rid, vid, base_url(request), context_of(request))
    return await _rendered(request, rtype, rid, vid, reply)


async def _rendered(request: Request, rtype: str, rid: str, vid: str | None, reply: Reply) -> Response:
    """A read's answer: with `_summary=true` the summary elements; else the first READ_RENDER hook that
    serves this resource in full (a Group with its members), or the stored resource."""
    summary = request.query_params.get("_summary")
    if summary == "true" and reply.body is not None:
        return fhir_response(Reply(reply.status, summarise(rtype, reply.body), reply.headers))
    if summary is None:
        for render in request.app.state.hooks.of(READ_RENDER):
            response = await render(request, rtype, rid, vid, reply)
            if response is not None:
                return response
    return fhir_response(reply)
