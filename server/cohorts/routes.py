"""Cohort Groups over HTTP, and the one call that wires them into the app.

Only the full read and vread of the six cohort ids have routes here (included ahead of the generic
REST routes, which serve everything else about these Groups from their stored headers: search,
`_history`, `_summary`). Writes to them, and client Groups claiming the cohort identifier system, are
refused by a `FhirService` write guard, which covers PUT, DELETE, conditional writes and
transaction/batch entries alike.

A token confined by a filter is shown the header only: the member list names patients it may not see.
A token confined to patients sees a Group only when every member is one of its patients, which no
cohort of several members is (`server.auth.access`).
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Awaitable, Callable, Iterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Connection, Engine, Select, select

from server.alignment.engine import AlignmentEngine
from server.bulk.members import register_group_members
from server.cohorts.definitions import COHORT_IDS, COHORT_SYSTEM
from server.cohorts.groups import full_group
from server.cohorts.membership import CohortMaintainer
from server.fhir.context import context_of
from server.fhir.errors import FhirError
from server.fhir.http import FHIR_JSON, base_url, fhir_response
from server.fhir.routes import service_of
from server.fhir.service import FhirService
from server.store.cohort_schema import cohort_members


def install_cohorts(app: FastAPI, service: FhirService, engine: AlignmentEngine) -> CohortMaintainer:
    """Keep the cohorts current with every alignment evaluation, refuse client writes to them, export
    their members, and serve them. Call after `install_alignment` and before the generic routes."""
    maintainer = CohortMaintainer(service.store)
    maintainer.follow(engine)
    service.write_guards.append(_refuse_writes)
    register_group_members(current_members)
    app.include_router(_router())
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI):
        async with inner(application) as state:  # the schema is migrated by then
            await run_in_threadpool(maintainer.ensure_headers)
            await run_in_threadpool(maintainer.synchronise, engine.db)
            yield state

    app.router.lifespan_context = lifespan
    return maintainer


def _refuse_writes(rtype: str, rid: str, method: str, resource: dict | None) -> None:
    if rtype != "Group":
        return
    if rid in COHORT_IDS:
        raise FhirError.of(405, "not-supported", f"Group/{rid} is a cohort maintained by the server: it cannot be "
                                                 f"written ({method}); create a Group of your own instead")
    identifiers = (resource or {}).get("identifier") or []
    if any(isinstance(i, dict) and i.get("system") == COHORT_SYSTEM for i in identifiers):
        raise FhirError.of(422, "business-rule", f"The identifier system {COHORT_SYSTEM} names the server's cohorts: "
                                                 "a client Group cannot use it", "Group.identifier")


def current_members(_conn: Connection, group_id: str) -> Select | None:
    """Bulk export resolver: a cohort's current members."""
    if group_id not in COHORT_IDS:
        return None
    m = cohort_members.c
    return select(m.patient_id).where(m.cohort_id == group_id, m.removed_version.is_(None))


def _router() -> APIRouter:
    router = APIRouter(prefix="/fhir")
    for cohort_id in COHORT_IDS:
        read, vread = _readers(cohort_id)
        router.add_api_route(f"/Group/{cohort_id}", read, methods=["GET"], summary=f"Read the cohort Group {cohort_id}")
        router.add_api_route(f"/Group/{cohort_id}/_history/{{vid}}", vread, methods=["GET"],
                             summary=f"Read a version of the cohort Group {cohort_id}")
    return router


Endpoint = Callable[..., Awaitable[Response]]


def _readers(cohort_id: str) -> tuple[Endpoint, Endpoint]:
    async def read(request: Request) -> Response:
        return await _serve(request, cohort_id, None)

    async def vread(request: Request, vid: str) -> Response:
        return await _serve(request, cohort_id, vid)

    return read, vread


async def _serve(request: Request, cohort_id: str, vid: str | None) -> Response:
    """Read or vread the header as any Group (scopes, 404/410), then stream the members after it."""
    ctx = context_of(request)
    service = service_of(request)
    base = base_url(request)
    if vid is None:
        reply = await run_in_threadpool(service.read, "Group", cohort_id, base, ctx)
    else:
        reply = await run_in_threadpool(service.vread, "Group", cohort_id, vid, base, ctx)
    if ctx.access.clauses("Group", "r") or request.query_params.get("_summary") == "true":
        return fhir_response(reply)  # the stored header: members omitted, tagged SUBSETTED
    assert reply.body is not None
    return StreamingResponse(_stream(service.store.engine, reply.body, cohort_id),
                             headers=reply.headers, media_type=FHIR_JSON + "; charset=utf-8")


def _stream(db: Engine, stored_header: bytes, cohort_id: str) -> Iterator[bytes]:
    with db.connect() as conn:
        yield from full_group(conn, stored_header, cohort_id)
