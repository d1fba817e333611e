"""Projection routes under /fhir/Group, and the one call that wires the projection into the app.

* `POST $alignment-projection-load`: the ACO's claim lines and beneficiary file (`inputs.py`), replacing
  its previous ones;
* `POST $alignment-projection`: project a performance year for the named participants (Organizations with
  their TIN): one draft ATR Group per participant TIN (`groups.py`), answered with a Parameters summary;
* `GET|POST $alignment-churn`: churn against the previous projection and the contracting candidates
  (`Accept: text/csv`: the candidates as CSV).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from server.fhir.context import context_of
from server.fhir.features import Feature, Operation
from server.fhir.http import base_url, fhir_response
from server.fhir.service import FhirService
from server.fhir.types import Reply
from server.projection.churn import Churn, candidates_csv, dollars
from server.projection.engine import Run
from server.projection.service import Outcome, Projections
from server.rosters.params import request_input

_BODY = {"requestBody": {"content": {"application/fhir+json": {"schema": {"type": "object"}}}}}
_DEFINITION = "https://planfit.dev/fhir/OperationDefinition/Group-"
OPERATIONS = ("alignment-projection-load", "alignment-projection", "alignment-churn")


def projection_feature(service: FhirService) -> Feature:
    """Serve the projection operations."""
    return Feature(
        name="projection",
        routers=[_router()],
        operations=[Operation(n, _DEFINITION + n, "Group") for n in OPERATIONS],
        state={"projections": Projections(service)},
    )


def _part(name: str, **value) -> dict:
    return {"name": name, **value}


def outcome_parameters(done: Outcome) -> dict:
    run = done.run
    params = [
        _part("run", valuePositiveInt=run.run_id),
        _part("aco", valueString=run.aco),
        _part("performanceYear", valuePositiveInt=run.performance_year),
        _part("alignmentPeriod", valuePeriod={"start": run.period.start, "end": run.period.end}),
        _part("eligible", valueInteger=done.eligible),
        _part("alignedByClaims", valueInteger=done.by_basis.get("claims", 0)),
        _part("alignedVoluntarily", valueInteger=done.by_basis.get("voluntary", 0)),
        _part("alignedOutside", valueInteger=done.outside),
        _part("voluntaryLost", valueInteger=done.lost_voluntary),
    ]
    if run.previous_run is not None:
        params.insert(1, _part("previousRun", valuePositiveInt=run.previous_run))
    for tin, gid, counts in done.groups:
        params.append(_part("group", part=[
            _part("tin", valueString=tin), _part("list", valueReference={"reference": f"Group/{gid}"}),
            *(_part(kind, valueInteger=counts.get(kind, 0)) for kind in ("new", "nochange", "changed", "dropped"))]))
    return {"resourceType": "Parameters", "parameter": params}


def churn_parameters(projections: Projections, run: Run, found: Churn) -> dict:
    params = [_part("run", valuePositiveInt=run.run_id),
              _part("in", valueInteger=sum(1 for m in found.moves if m.direction == "in")),
              _part("out", valueInteger=sum(1 for m in found.moves if m.direction == "out"))]
    if run.previous_run is not None:
        params.insert(1, _part("previousRun", valuePositiveInt=run.previous_run))
    for move in found.moves:
        parts = [_part("patient", valueReference={"reference": f"Patient/{move.patient_id}"}),
                 _part("direction", valueCode=move.direction), _part("status", valueCode=move.status)]
        parts += [_part(k, valueString=v) for k, v in (("fromTin", move.from_tin), ("toTin", move.to_tin),
                                                       ("toNpi", move.to_npi)) if v is not None]
        params.append(_part("member", part=parts))
    for c in found.candidates:
        params.append(_part("candidate", part=[
            _part("tin", valueString=c.tin), _part("npi", valueString=c.npi),
            _part("churningMembers", valueInteger=c.members),
            _part("weightedAllowed", valueMoney={"value": dollars(projections.rules, c.weighted_cents),
                                                  "currency": "USD"})]))
    return {"resourceType": "Parameters", "parameter": params}


def _router() -> APIRouter:
    router = APIRouter(prefix="/fhir")

    @router.post("/Group/$alignment-projection-load", summary="Load an ACO's claim lines and beneficiary file",
                 openapi_extra=_BODY)
    async def load(request: Request) -> Response:
        inp = await request_input(request, ("aco", "claims", "beneficiaries"))
        counts = await run_in_threadpool(request.app.state.projections.load, context_of(request), inp)
        body = {"resourceType": "Parameters",
                "parameter": [_part(k, valueInteger=v) for k, v in counts.items()]}
        return fhir_response(Reply(200, orjson.dumps(body), {}))

    @router.post("/Group/$alignment-projection", summary="Project claims-based alignment (ATR Group per TIN)",
                 openapi_extra=_BODY)
    async def project(request: Request) -> Response:
        inp = await request_input(request, ("aco", "performanceYear", "participant"))
        done = await run_in_threadpool(request.app.state.projections.project, context_of(request), inp,
                                       base_url(request))
        return fhir_response(Reply(200, orjson.dumps(outcome_parameters(done)), {}))

    @router.api_route("/Group/$alignment-churn", methods=["GET", "POST"],
                      summary="Churn against the previous projection, with contracting candidates")
    async def churn(request: Request) -> Response:
        inp = await request_input(request, ("aco", "run"))
        projections = request.app.state.projections
        run, found = await run_in_threadpool(projections.churn, context_of(request), inp)
        if "text/csv" in request.headers.get("accept", ""):
            return Response(candidates_csv(projections.rules, found), media_type="text/csv; charset=utf-8")
        return fhir_response(Reply(200, orjson.dumps(churn_parameters(projections, run, found)), {}))

    return router
