"""FastAPI routes for the FHIR REST API under /fhir.

Routes stay thin: parse HTTP, ask `Access`, call `FhirService` in a worker thread, render.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from server.fhir.access import Access, access_of
from server.fhir.bundles import BundleProcessor, Entry, parse_bundle
from server.fhir.capability import capability_statement
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
    access = access_of(request)
    base = base_url(request)

    def check_entry(entry: Entry) -> None:
        interaction = {"POST": "c", "PUT": "u", "DELETE": "d"}.get(entry.method)
        if interaction:
            access.require(entry.rtype, interaction)
            if entry.method == "PUT":
                access.require(entry.rtype, "c")
        else:
            access.require(entry.rtype, "r" if entry.rid else "s")

    def run_get(entry: Entry, conn) -> Reply:
        return _get(service, access, entry.rtype, entry.rid, entry.history_version, entry.query, base, conn)

    def work() -> Reply:
        parsed = parse_bundle(service, body, base)
        processor = BundleProcessor(service, access.write_context, base, prefer(request), check_entry, run_get)
        return processor.transaction(parsed) if parsed.kind == "transaction" else processor.batch(parsed)

    return fhir_response(await run_in_threadpool(work))


def _get(service: FhirService, access: Access, rtype, rid, version, query, base, conn=None) -> Reply:
    """read, vread or search; `conn` lets a transaction's GET entries see its own writes."""
    if rid is None:
        access.require(rtype, "s")
        params = parse_qsl(query or "", keep_blank_values=True)
        return service.search(rtype, params, base, False, lambda t: access.clauses(t, "s"), conn)
    access.require(rtype, "r")
    if version is not None:
        return service.vread(rtype, rid, version, base, access.clauses(rtype, "r"), conn)
    return service.read(rtype, rid, base, access.clauses(rtype, "r"), conn)


@router.get("/_history", summary="System history")
async def system_history(request: Request) -> Response:
    access = access_of(request)
    access.require("*", "s")
    service = service_of(request)
    reply = await run_in_threadpool(service.history, None, None, _query(request), base_url(request))
    return fhir_response(reply)


@router.get("/{rtype}", summary="Search")
async def search(rtype: str, request: Request) -> Response:
    return await _search(rtype, request, _strip_format(_query(request)))


@router.post("/{rtype}/_search", summary="Search by POST", openapi_extra={"requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}}}})
async def search_post(rtype: str, request: Request) -> Response:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise FhirError.of(415, "not-supported", "_search takes application/x-www-form-urlencoded")
    form = parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return await _search(rtype, request, _strip_format(_query(request) + form))


async def _search(rtype: str, request: Request, params: list[tuple[str, str]]) -> Response:
    service = service_of(request)
    service.check_type(rtype)
    access = access_of(request)
    access.require(rtype, "s")
    reply = await run_in_threadpool(
        service.search, rtype, params, base_url(request), strict_handling(request), lambda t: access.clauses(t, "s")
    )
    return fhir_response(reply)


@router.post("/{rtype}", summary="Create", openapi_extra={"requestBody": {"content": _JSON_CONTENT}})
async def create(rtype: str, request: Request) -> Response:
    service = service_of(request)
    service.check_type(rtype)
    access = access_of(request)
    access.require(rtype, "c")
    body = await json_body(request)
    reply = await run_in_threadpool(
        service.create, rtype, body, access.write_context, base_url(request),
        request.headers.get("if-none-exist"), prefer(request),
    )
    return fhir_response(reply)


@router.put("/{rtype}", summary="Conditional update", openapi_extra={"requestBody": {"content": _JSON_CONTENT}})
async def conditional_update(rtype: str, request: Request) -> Response:
    service = service_of(request)
    service.check_type(rtype)
    access = access_of(request)
    access.require(rtype, "u")
    access.require(rtype, "c")
    query = request.url.query
    if not query:
        raise FhirError.of(400, "invalid", "PUT to a type needs search criteria")
    body = await json_body(request)
    reply = await run_in_threadpool(
        service.conditional_update, rtype, query, body, access.write_context, base_url(request),
        request.headers.get("if-match"), prefer(request),
    )
    return fhir_response(reply)


@router.delete("/{rtype}", summary="Conditional delete")
async def conditional_delete(rtype: str, request: Request) -> Response:
    service = service_of(request)
    service.check_type(rtype)
    access = access_of(request)
    access.require(rtype, "d")
    query = request.url.query
    if not query:
        raise FhirError.of(400, "invalid", "DELETE on a type needs search criteria")
    reply = await run_in_threadpool(service.delete, rtype, None, query, access.write_context)
    return fhir_response(reply)


@router.get("/{rtype}/_history", summary="Type history")
async def type_history(rtype: str, request: Request) -> Response:
    service = service_of(request)
    service.check_type(rtype)
    access_of(request).require(rtype, "s")
    reply = await run_in_threadpool(service.history, rtype, None, _query(request), base_url(request))
    return fhir_response(reply)


@router.get("/{rtype}/{rid}", summary="Read")
async def read(rtype: str, rid: str, request: Request) -> Response:
    service = service_of(request)
    access = access_of(request)
    reply = await run_in_threadpool(_get, service, access, rtype, rid, None, None, base_url(request))
    return fhir_response(reply)


@router.put("/{rtype}/{rid}", summary="Update", openapi_extra={"requestBody": {"content": _JSON_CONTENT}})
async def update(rtype: str, rid: str, request: Request) -> Response:
    service = service_of(request)
    service.check_type(rtype)
    access = access_of(request)
    access.require(rtype, "u")
    access.require(rtype, "c")
    body = await json_body(request)
    reply = await run_in_threadpool(
        service.update, rtype, rid, body, access.write_context, base_url(request),
        request.headers.get("if-match"), prefer(request),
    )
    return fhir_response(reply)


@router.delete("/{rtype}/{rid}", summary="Delete")
async def delete(rtype: str, rid: str, request: Request) -> Response:
    service = service_of(request)
    service.check_type(rtype)
    access = access_of(request)
    access.require(rtype, "d")
    reply = await run_in_threadpool(service.delete, rtype, rid, None, access.write_context)
    return fhir_response(reply)


@router.get("/{rtype}/{rid}/_history", summary="Instance history")
async def instance_history(rtype: str, rid: str, request: Request) -> Response:
    service = service_of(request)
    service.check_type(rtype)
    access = access_of(request)
    access.require(rtype, "r")
    if not await run_in_threadpool(service.visible, rtype, rid, access.clauses(rtype, "r")):
        raise FhirError.of(404, "not-found", f"{rtype}/{rid} is not known")
    reply = await run_in_threadpool(service.history, rtype, rid, _query(request), base_url(request))
    return fhir_response(reply)


@router.get("/{rtype}/{rid}/_history/{vid}", summary="Version read")
async def vread(rtype: str, rid: str, vid: str, request: Request) -> Response:
    service = service_of(request)
    access = access_of(request)
    reply = await run_in_threadpool(_get, service, access, rtype, rid, vid, None, base_url(request))
    return fhir_response(reply)
