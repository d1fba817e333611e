"""Bulk Data export routes (`$export`, status polling, file download) under /fhir.

The work is done by `server.bulk.service.BulkExports`.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, Response

from server.bulk.kickoff import KickOff
from server.bulk.members import GroupMembership
from server.bulk.service import BulkExports
from server.fhir.context import context_of
from server.config import Settings
from server.fhir.errors import FhirError
from server.fhir.features import Feature, Operation
from server.fhir.http import base_url, fhir_response, json_body
from server.fhir.service import FhirService

router = APIRouter(prefix="/fhir")

NDJSON = "application/fhir+ndjson"
_PARAMETERS_BODY = {"requestBody": {"content": {"application/fhir+json": {"schema": {"type": "object"}}}}}
# Parameters value[x] types an $export parameter may arrive as (all are strings in JSON).
_VALUE_KEYS = ("valueString", "valueCode", "valueInstant", "valueDateTime", "valueUri", "valueCanonical")


_BULK_DEFINITION = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"


def bulk_feature(service: FhirService, settings: Settings, groups: GroupMembership) -> Feature:
    """Bulk Data `$export` at system, Patient and Group level, run by this process's export workers."""
    bulk = BulkExports(service, settings, groups)
    return Feature(
        name="bulk",
        routers=[router],
        operations=[Operation("export", _BULK_DEFINITION + "export"),
                    Operation("export", _BULK_DEFINITION + "patient-export", "Patient"),
                    Operation("export", _BULK_DEFINITION + "group-export", "Group")],
        startup=[bulk.start],
        shutdown=[bulk.stop],
        state={"bulk": bulk},
    )


def bulk_of(request: Request) -> BulkExports:
    return request.app.state.bulk


@router.get("/$export", summary="System-level Bulk Data export")
async def export_system(request: Request) -> Response:
    return await kick_off_export(request, "system", None, _query(request))


@router.post("/$export", summary="System-level Bulk Data export (Parameters body)", openapi_extra=_PARAMETERS_BODY)
async def export_system_post(request: Request) -> Response:
    return await kick_off_export(request, "system", None, await _parameters(request))


@router.get("/Patient/$export", summary="Patient-level Bulk Data export")
async def export_patients(request: Request) -> Response:
    return await kick_off_export(request, "patient", None, _query(request))


@router.post("/Patient/$export", summary="Patient-level Bulk Data export (Parameters body)", openapi_extra=_PARAMETERS_BODY)
async def export_patients_post(request: Request) -> Response:
    return await kick_off_export(request, "patient", None, await _parameters(request))


@router.get("/Group/{group_id}/$export", summary="Group-level Bulk Data export")
async def export_group(group_id: str, request: Request) -> Response:
    return await kick_off_export(request, "group", group_id, _query(request))


@router.post("/Group/{group_id}/$export", summary="Group-level Bulk Data export (Parameters body)", openapi_extra=_PARAMETERS_BODY)
async def export_group_post(group_id: str, request: Request) -> Response:
    return await kick_off_export(request, "group", group_id, await _parameters(request))


@router.get("/$export-status/{job_id}", summary="Bulk Data export status")
async def export_status(job_id: str, request: Request) -> Response:
    reply = await run_in_threadpool(bulk_of(request).status, context_of(request), job_id, base_url(request))
    return fhir_response(reply)


@router.delete("/$export-status/{job_id}", summary="Cancel a Bulk Data export")
async def export_cancel(job_id: str, request: Request) -> Response:
    return fhir_response(await run_in_threadpool(bulk_of(request).cancel, context_of(request), job_id))


@router.api_route("/$export-file/{job_id}/{name}", methods=["GET", "HEAD"], summary="Bulk Data export file")
async def export_file(job_id: str, name: str, request: Request) -> Response:
    found = await run_in_threadpool(bulk_of(request).file, context_of(request), job_id, name)
    return FileResponse(found.path, media_type=NDJSON)


async def kick_off_export(request: Request, level: str, group_id: str | None, params: list[tuple[str, str]],
                          until: str | None = None) -> Response:
    """Start an export job (Bulk Data kick-off); `until` is Da Vinci ATR's `_until`."""
    prefer = ",".join(request.headers.getlist("prefer")).replace(" ", "")
    if "respond-async" not in prefer.split(","):
        raise FhirError.of(400, "invalid", "Bulk Data export needs the header 'Prefer: respond-async'")
    base = base_url(request)
    kick = KickOff(level, group_id, params, lenient="handling=lenient" in prefer, until=until)
    reply = await run_in_threadpool(bulk_of(request).kick_off, context_of(request), kick, _request_url(request, base), base)
    return fhir_response(reply)


def _query(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def _request_url(request: Request, base: str) -> str:
    """The kick-off URL for the manifest: with its query for GET, without parameters for POST."""
    path = request.url.path.split("/fhir", 1)[1]
    query = request.url.query if request.method == "GET" else ""
    return base + path + (f"?{query}" if query else "")


async def _parameters(request: Request) -> list[tuple[str, str]]:
    """A Parameters body as (name, value) pairs; `patient` arrives as valueReference."""
    body = await json_body(request)
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError.of(400, "invalid", "POST $export takes a Parameters resource")
    params = []
    for index, item in enumerate(body.get("parameter") or []):
        where = f"Parameters.parameter[{index}]"
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            raise FhirError.of(400, "invalid", "Parameter without a name", where)
        value = next((item[k] for k in _VALUE_KEYS if isinstance(item.get(k), str)), None)
        reference = item.get("valueReference")
        if value is None and isinstance(reference, dict) and isinstance(reference.get("reference"), str):
            value = reference["reference"]
        if value is None:
            raise FhirError.of(400, "invalid", f"Parameter '{name}' has no supported value", where)
        params.append((name, value))
    return params
