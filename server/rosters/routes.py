"""Attribution-list routes under /fhir/Group/{id}, and the one call that wires rosters into the app.

* `GET /Group/{id}`: an attribution list is read whole, its members streamed from `roster_members`
  after the stored header (a `READ_RENDER` hook of the generic read; `_summary=true`: the header only);
  other Groups are read as usual.
* `POST $member-add`, `$member-remove` (Da Vinci ATR 2.1, every parameter combination the
  OperationDefinitions require), `$confirm-attribution-list` (201, → `final`), `$member-decision`
  (PlanFit: one member's cohort decision), `GET|POST $attribution-status` (one member's attribution
  data as a Bundle), `GET|POST $davinci-data-export` (ATR's export, run by the Bulk Data machinery).
"""

from __future__ import annotations

from functools import partial

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Connection, exists, select

from server.alignment.mappings import Mappings
from server.audit.benefits import load_benefits
from server.bulk.api import kick_off_export
from server.bulk.members import GROUP_DOCUMENT, GROUP_MEMBERS
from server.fhir.context import context_of
from server.fhir.errors import FhirError
from server.fhir.features import PRE_WRITE, READ_RENDER, Feature, Operation
from server.fhir.http import FHIR_JSON, base_url, fhir_response
from server.fhir.routes import service_of
from server.fhir.service import FhirService
from server.fhir.types import Reply
from server.rosters.atr import ATR_EXPORT_TYPE, ATR_REQUIRED_TYPES, is_attribution_list
from server.rosters.drift import drift_csv, drift_json
from server.rosters.guard import AttributionListGuard
from server.rosters.members import Resolver
from server.rosters.params import OperationInput, request_input
from server.rosters.reconcile import Categories, report_csv, report_json
from server.rosters.render import full_group
from server.rosters.workflow import ADD_COMBINATIONS, DECISION_PARAMS, REMOVE_COMBINATIONS, Rosters
from server.store.roster_schema import roster_members

_PARAMETERS_BODY = {"requestBody": {"content": {"application/fhir+json": {"schema": {"type": "object"}}}}}
_ATR_DEFINITION = "http://hl7.org/fhir/us/davinci-atr/OperationDefinition/"
_PLANFIT_DEFINITION = "https://planfit.dev/fhir/OperationDefinition/"
_ADD_PARAMS = tuple(sorted(set().union(*ADD_COMBINATIONS)))
_REMOVE_PARAMS = tuple(sorted(set().union(*REMOVE_COMBINATIONS)))
_EXPORT_PARAMS = ("exportType", "_type", "resourceTypes", "patient", "_since", "_until", "_typeFilter", "_outputFormat")
m = roster_members.c


def rosters_feature(service: FhirService, mappings: Mappings) -> Feature:
    """Guard Group writes, read and export lists whole, and serve the operations. A payer file's
    qualifying category is a diagnosis category (a value set of `mappings`) or a service category of its
    benefit matrix (`benefits.json`)."""
    matrix = load_benefits(mappings)
    services: dict[str, set[str]] = {}
    for codes in (matrix.category_of_procedure, matrix.category_of_revenue):
        for code, category in codes.items():
            services.setdefault(category, set()).add(code)
    categories = Categories(frozenset(mappings.value_sets), {name: frozenset(codes) for name, codes in services.items()})
    atr = ("member-add", "member-remove", "confirm-attribution-list", "attribution-status", "davinci-data-export")
    planfit = ("member-decision", "roster-import", "roster-reconcile", "roster-drift", "roster-members")
    return Feature(
        name="rosters",
        routers=[_router()],
        operations=[*(Operation(n, _ATR_DEFINITION + n, "Group") for n in atr),
                    *(Operation(n, _PLANFIT_DEFINITION + f"Group-{n}", "Group") for n in planfit)],
        hooks=[(PRE_WRITE, AttributionListGuard(service.store)), (READ_RENDER, _render),
               (GROUP_MEMBERS, _list_members), (GROUP_DOCUMENT, _whole_list)],
        state={"rosters": Rosters(service, categories)},
    )


async def _render(request: Request, rtype: str, rid: str, vid: str | None, reply: Reply) -> Response | None:
    """An attribution list's current version is read whole: its members streamed from `roster_members`
    after the stored header."""
    if rtype != "Group" or vid is not None or not is_attribution_list(orjson.loads(reply.body or b"{}")):
        return None
    assert reply.body is not None
    return StreamingResponse(_stream(rosters_of(request), reply.body, rid), headers=reply.headers,
                             media_type=FHIR_JSON + "; charset=utf-8")


def _has_rows(conn: Connection, group_id: str) -> bool:
    return conn.execute(select(exists().where(m.group_id == group_id))).scalar_one()


def _list_members(conn: Connection, group_id: str):
    """Bulk export resolver: an attribution list's current (not inactive) members."""
    if not _has_rows(conn, group_id):
        return None
    return select(m.patient_id).where(m.group_id == group_id, m.inactive.is_(False)).distinct()


def _whole_list(conn: Connection, group_id: str, stored: bytes) -> bytes | None:
    if not is_attribution_list(orjson.loads(stored)):
        return None
    return b"".join(full_group(conn, stored, group_id))


def rosters_of(request: Request) -> Rosters:
    return request.app.state.rosters


async def _change(request: Request, group_id: str, allowed: tuple[str, ...], operation) -> Response:
    """A list-changing operation: its Parameters, then the change in a worker thread."""
    inp = await request_input(request, allowed)
    return fhir_response(await run_in_threadpool(operation, context_of(request), group_id, base_url(request), inp))


def _router() -> APIRouter:
    router = APIRouter(prefix="/fhir")

    @router.post("/Group/{group_id}/$member-add", summary="ATR: add a member to an attribution list",
                 openapi_extra=_PARAMETERS_BODY)
    async def member_add(group_id: str, request: Request) -> Response:
        return await _change(request, group_id, _ADD_PARAMS, rosters_of(request).member_add)

    @router.post("/Group/{group_id}/$member-remove", summary="ATR: remove a member from an attribution list",
                 openapi_extra=_PARAMETERS_BODY)
    async def member_remove(group_id: str, request: Request) -> Response:
        return await _change(request, group_id, _REMOVE_PARAMS, rosters_of(request).member_remove)

    @router.post("/Group/{group_id}/$confirm-attribution-list", summary="ATR: confirm (lock) an attribution list")
    async def confirm(group_id: str, request: Request) -> Response:
        return fhir_response(await run_in_threadpool(rosters_of(request).confirm, context_of(request), group_id,
                                                     base_url(request)))

    @router.post("/Group/{group_id}/$member-decision", summary="Record one member's cohort decision",
                 openapi_extra=_PARAMETERS_BODY)
    async def member_decision(group_id: str, request: Request) -> Response:
        return await _change(request, group_id, DECISION_PARAMS, rosters_of(request).decide)

    @router.post("/Group/{group_id}/$roster-import", summary="Import a payer attribution file into a roster",
                 openapi_extra=_PARAMETERS_BODY)
    async def roster_import(group_id: str, request: Request) -> Response:
        return await _change(request, group_id, ("file", "approvedBy", "memberIdSystem"), rosters_of(request).import_file)

    @router.get("/Group/{group_id}/$roster-reconcile", summary="Reconcile a roster with its payer file")
    async def roster_reconcile(group_id: str, request: Request) -> Response:
        """Parameters (or CSV with `_format=csv` / `Accept: text/csv`): every mismatch, with counts per kind."""
        reconcile = partial(rosters_of(request).reconcile, context_of(request), group_id, base_url(request))
        if _wants_csv(request):
            return Response(await run_in_threadpool(reconcile, report_csv), media_type="text/csv; charset=utf-8")
        return fhir_response(Reply(200, await run_in_threadpool(reconcile, report_json)))

    @router.get("/Group/{group_id}/$roster-members", summary="A page of a roster's members, filtered, with counts")
    async def roster_members_page(group_id: str, request: Request) -> Response:
        inp = await request_input(request, ("decision", "reason", "_count", "_offset"))
        count, offset = _bounded(inp.text("_count"), 50, 500), _bounded(inp.text("_offset"), 0, 10**9)
        page = await run_in_threadpool(rosters_of(request).page, context_of(request), group_id, base_url(request),
                                       inp.text("decision"), inp.text("reason"), count, offset)
        return fhir_response(Reply(200, orjson.dumps(page)))

    @router.get("/Group/{group_id}/$roster-drift", summary="A roster against the locked one, or two versions of "
                                                           "it (from, to): added, removed, changed decisions")
    async def roster_drift(group_id: str, request: Request) -> Response:
        inp = await request_input(request, ("baseline", "from", "to"))
        result = await run_in_threadpool(rosters_of(request).drift, context_of(request), group_id, base_url(request),
                                         inp.text("baseline"), _version(inp, "from"), _version(inp, "to"))
        if _wants_csv(request):
            return Response(drift_csv(result), media_type="text/csv; charset=utf-8")
        return fhir_response(Reply(200, drift_json(result)))

    @router.api_route("/Group/{group_id}/$attribution-status", methods=["GET", "POST"],
                      summary="ATR: one member's attribution data", openapi_extra=_PARAMETERS_BODY)
    async def attribution_status(group_id: str, request: Request) -> Response:
        inp = await request_input(request, ("memberId", "patientReference"))
        return fhir_response(await run_in_threadpool(_status_bundle, request, group_id, inp))

    @router.api_route("/Group/{group_id}/$davinci-data-export", methods=["GET", "POST"],
                      summary="ATR: export an attribution list's data (Bulk Data)", openapi_extra=_PARAMETERS_BODY)
    async def davinci_data_export(group_id: str, request: Request) -> Response:
        inp = await request_input(request, _EXPORT_PARAMS)
        ctx, base = context_of(request), base_url(request)
        await run_in_threadpool(rosters_of(request).require_list, ctx, group_id, base)
        params, until = _export_params(inp)
        return await kick_off_export(request, "group", group_id, params, until)

    return router


def _bounded(raw: str | None, default: int, most: int) -> int:
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or int(raw) > most:
        raise FhirError.of(400, "invalid", f"_count and _offset are whole numbers up to {most}")
    return int(raw)


def _version(inp: OperationInput, name: str) -> int | None:
    raw = inp.text(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and 0 < len(raw) < 10):
        raise FhirError.of(400, "invalid", f"{name} is a version number of the list (1, 2, …)", name)
    return int(raw)


def _wants_csv(request: Request) -> bool:
    return request.query_params.get("_format") in ("csv", "text/csv") or \
        request.headers.get("accept", "").startswith("text/csv")


def _stream(rosters: Rosters, header: bytes, group_id: str):
    with rosters.service.store.engine.connect() as conn:
        yield from full_group(conn, header, group_id)


def _export_params(inp: OperationInput) -> tuple[list[tuple[str, str]], str | None]:
    """$davinci-data-export → Group/$export parameters. ATR: exportType `hl7.fhir.us.davinci-atr` is the one
    a Producer SHALL support, and a `_type` that lacks Group, Patient or Coverage SHALL be rejected."""
    export_type = inp.text("exportType")
    if export_type not in (None, ATR_EXPORT_TYPE):
        raise FhirError.of(400, "not-supported", f"exportType {export_type} is not supported; use {ATR_EXPORT_TYPE}",
                           "exportType")
    if "_type" in inp.values and "resourceTypes" in inp.values:
        raise FhirError.of(400, "invalid", "Give _type or resourceTypes (its alias in ATR's examples), not both", "_type")
    raw = inp.values.get("_type") or inp.values.get("resourceTypes")
    types = [t.strip() for value in raw for t in str(value).split(",") if t.strip()] if raw else list(ATR_REQUIRED_TYPES)
    missing = [t for t in ATR_REQUIRED_TYPES if t not in types]
    if missing:
        raise FhirError.of(400, "invalid", f"An ATR export's _type must include Group, Patient and Coverage "
                                           f"(missing {', '.join(missing)})", "_type")
    params = [("_type", ",".join(types))]
    for name in ("patient", "_since", "_typeFilter", "_outputFormat"):
        for value in inp.values.get(name, []):
            ref = value.get("reference") if isinstance(value, dict) else value
            params.append((name, str(ref)))
    until = inp.text("_until")
    return params, until


def _status_bundle(request: Request, group_id: str, inp: OperationInput) -> Reply:
    """$attribution-status: the list header with this member's entries, the Patient, its Coverages and
    attributed providers, as a collection Bundle; each read under the caller's access (403/404)."""
    ctx, base = context_of(request), base_url(request)
    rosters, service = rosters_of(request), service_of(request)
    reply, _group = rosters.require_list(ctx, group_id, base)
    assert reply.body is not None
    if len(inp.given()) != 1:
        raise FhirError.of(400, "invalid", "$attribution-status takes memberId or patientReference")
    with service.store.engine.connect() as conn:
        resolve = Resolver(service, ctx, conn)
        member_id = inp.identifier("memberId")
        patient_id = resolve.patient_by_member_id(*member_id) if member_id else resolve.patient(
            inp.reference("patientReference") or "")
        rows = list(conn.execute(select(m.coverage_id, m.provider_ref).where(m.group_id == group_id,
                                                                             m.patient_id == patient_id)))
        if not rows:
            raise FhirError.of(404, "not-found", "That patient is not a member of this attribution list")
        group = orjson.loads(b"".join(full_group(conn, reply.body, group_id, patient_id)))
    related = [("Patient", patient_id)]
    related += [("Coverage", r.coverage_id) for r in rows if r.coverage_id]
    related += [tuple(r.provider_ref.split("/", 1)) for r in rows if r.provider_ref]
    entries = [{"fullUrl": f"{base}/Group/{group_id}", "resource": group}]
    for rtype, rid in dict.fromkeys(related):
        found = service.read(rtype, rid, base, ctx)
        assert found.body is not None
        entries.append({"fullUrl": f"{base}/{rtype}/{rid}", "resource": orjson.loads(found.body)})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    return Reply(200, orjson.dumps(bundle))
