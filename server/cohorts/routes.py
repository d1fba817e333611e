"""Cohort Groups over HTTP, and the one call that wires them into the app.

The full read and vread of the six cohort ids stream their members after the stored header (a
`READ_RENDER` hook of the generic read); everything else about these Groups is served from the stored
headers: search, `_history`, `_summary`. Writes to them, and client Groups claiming the cohort identifier system, are
refused by a `FhirService` write guard, which covers PUT, DELETE, conditional writes and
transaction/batch entries alike.

A token confined by a filter is shown the header only: the member list names patients it may not see.
A token confined to patients sees a Group only when every member is one of its patients, which no
cohort of several members is (`server.auth.access`).
"""

from __future__ import annotations

from typing import Iterator

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy import Connection, Engine, Select, select

from server.alignment.engine import AlignmentEngine
from server.alignment.hooks import POST_EVALUATION
from server.bulk.members import GROUP_MEMBERS
from server.cohorts.definitions import COHORT_IDS, COHORT_SYSTEM
from server.cohorts.groups import full_group
from server.cohorts.membership import CohortMaintainer
from server.fhir.context import context_of
from server.fhir.errors import FhirError
from server.fhir.features import PRE_WRITE, READ_RENDER, Feature
from server.fhir.http import FHIR_JSON, fhir_response
from server.fhir.routes import service_of
from server.fhir.service import FhirService
from server.fhir.types import Reply
from server.store.cohort_schema import cohort_members


def cohorts_feature(service: FhirService, engine: AlignmentEngine) -> Feature:
    """Keep the cohorts current with every alignment evaluation, refuse client writes to them, export
    their members, and serve them with their members."""
    maintainer = CohortMaintainer(service.store)
    maintainer.follow(engine)
    return Feature(
        name="cohorts",
        startup=[maintainer.ensure_headers, lambda: maintainer.synchronise(engine.db)],
        hooks=[(POST_EVALUATION, maintainer.refresh), (PRE_WRITE, _refuse_writes), (READ_RENDER, _render),
               (GROUP_MEMBERS, current_members)],
    )


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


async def _render(request: Request, rtype: str, rid: str, _vid: str | None, reply: Reply) -> Response | None:
    """A cohort's read or vread (scopes, 404/410 already applied), streamed with the members of that
    version after its stored header."""
    if rtype != "Group" or rid not in COHORT_IDS:
        return None
    if context_of(request).access.clauses("Group", "r") or request.query_params.get("_summary") == "true":
        return fhir_response(reply)  # the stored header: members omitted, tagged SUBSETTED
    assert reply.body is not None
    return StreamingResponse(_stream(service_of(request).store.engine, reply.body, rid),
                             headers=reply.headers, media_type=FHIR_JSON + "; charset=utf-8")


def _stream(db: Engine, stored_header: bytes, cohort_id: str) -> Iterator[bytes]:
    with db.connect() as conn:
        yield from full_group(conn, stored_header, cohort_id)
