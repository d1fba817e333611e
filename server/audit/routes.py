"""Audit routes under /fhir, and the one call that wires the audit feature into the app.

* `GET /fhir/Patient/$worklist`: the worklist (`worklist.py`), as Parameters or, with `_format=csv` (or
  `Accept: text/csv`), as CSV of the same page. It lists many members' findings, so it needs what a
  population report needs (`ALIGNMENT_READS.require_for_population`): unconfined search scopes on
  Patient and on every type a finding shows.

Included ahead of the generic REST routes, which would read `Patient/$worklist` as a Patient id.
"""

from __future__ import annotations

from typing import Callable

import orjson
from fastapi import APIRouter, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from server.alignment.engine import AlignmentEngine
from server.audit.output import WORKLIST_CSV_HEADER, csv_response, wants_csv, worklist_csv_rows, worklist_parameters
from server.audit.worklist import parse_query, read_page
from server.fhir.context import context_of
from server.fhir.http import fhir_response
from server.fhir.operations import ALIGNMENT_READS
from server.fhir.service import Reply

router = APIRouter(prefix="/fhir")
_DEFINITION = "https://planfit.dev/fhir/OperationDefinition/"
Extras = Callable[[str], dict]


def install_audit(app: FastAPI, engine: AlignmentEngine) -> None:
    """Serve the audit routes. Call after `install_alignment` and before the generic REST routes."""
    app.state.audit_engine = engine
    app.state.capability_extras = _with_operations(getattr(app.state, "capability_extras", None))
    app.include_router(router)


def _with_operations(previous: Extras | None) -> Extras:
    def extras(base: str) -> dict:
        parts = dict(previous(base)) if previous else {}
        by_type = dict(parts.get("resourceOperation", {}))
        by_type["Patient"] = [*by_type.get("Patient", []), {"name": "worklist", "definition": _DEFINITION + "Patient-worklist"}]
        parts["resourceOperation"] = by_type
        return parts

    return extras


@router.get("/Patient/$worklist", summary="Members with findings: filtered, by estimated impact, a page at a time")
async def worklist(request: Request) -> Response:
    ALIGNMENT_READS.require_for_population(context_of(request).access)
    engine: AlignmentEngine = request.app.state.audit_engine
    params = list(request.query_params.multi_items())
    query = parse_query(params, engine.mappings)

    def work():
        with engine.db.connect() as conn:
            return read_page(conn, query, engine.keys)

    page = await run_in_threadpool(work)
    if wants_csv(request.query_params.get("_format"), request.headers.get("accept")):
        return csv_response("worklist.csv", WORKLIST_CSV_HEADER, worklist_csv_rows(page))
    return fhir_response(Reply(200, orjson.dumps(worklist_parameters(page))))
