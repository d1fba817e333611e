"""Intervention routes under /fhir/List, and the one call that wires the feature into the app.

* `POST /fhir/List/$intervention-priority` (`roster` = Group/id, `week` = a date in the week, default
  this week; `paymentYear`, default the year after the week's): the week's priority List of the roster's
  active participants; 201 when made now, 200 when read back, 422 with one issue per stale input.
* `GET|POST /fhir/List/{id}/$intervention-checks`: the Task checks of that list (`checks.py`) as
  Parameters: counts, `passed`, one `violation` per finding.

Assignments are ordinary `Task` resources written with the REST API (focus = the List, for = the
participant, owner, restriction.period.end = the due date, businessStatus/statusReason for escalations).
"""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from server.config import Settings
from server.fhir.context import context_of
from server.fhir.features import PRE_WRITE, Feature, Operation
from server.fhir.http import base_url, fhir_response
from server.fhir.service import FhirService
from server.fhir.types import Reply
from server.interventions.checks import CheckResult
from server.interventions.config import load_priority_config
from server.interventions.service import Interventions, refuse_client_writes
from server.risk.model import load_risk_model
from server.rosters.params import request_input

_DEFINITION = "https://planfit.dev/fhir/OperationDefinition/List-"
_BODY = {"requestBody": {"content": {"application/fhir+json": {"schema": {"type": "object"}}}}}


def interventions_feature(service: FhirService, settings: Settings) -> Feature:
    """Serve the priority list and its checks; the configuration is validated here, so a broken file
    stops the server at start with pydantic's message."""
    directory = settings.mappings_dir or None
    interventions = Interventions(service, load_priority_config(directory), load_risk_model(directory))
    return Feature(
        name="interventions",
        routers=[_router()],
        operations=[Operation(n, _DEFINITION + n, "List") for n in ("intervention-priority", "intervention-checks")],
        hooks=[(PRE_WRITE, refuse_client_writes)],
        state={"interventions": interventions},
    )


def _part(name: str, **value) -> dict:
    return {"name": name, **value}


def checks_parameters(lid: str, result: CheckResult) -> dict:
    params = [_part("list", valueReference={"reference": f"List/{lid}"}),
              _part("passed", valueBoolean=not result.violations),
              _part("highPriority", valueInteger=result.high_priority),
              _part("covered", valueInteger=result.covered)]
    for v in result.violations:
        parts = [_part("check", valueCode=v.check), _part("detail", valueString=v.detail)]
        parts += [_part(name, valueReference={"reference": ref}) for name, ref in
                  (("patient", v.patient and f"Patient/{v.patient}"), ("task", v.task and f"Task/{v.task}"),
                   ("owner", v.owner)) if ref]
        params.append(_part("violation", part=parts))
    return {"resourceType": "Parameters", "parameter": params}


def _router() -> APIRouter:
    router = APIRouter(prefix="/fhir")

    # POST only: the first request of a week makes and stores its List.
    @router.post("/List/$intervention-priority", openapi_extra=_BODY,
                 summary="A roster's intervention priority List for a week (made once, then read back)")
    async def priority(request: Request) -> Response:
        inp = await request_input(request, ("roster", "week", "paymentYear"))
        reply = await run_in_threadpool(request.app.state.interventions.priority, context_of(request), inp,
                                        base_url(request))
        return fhir_response(reply)

    @router.api_route("/List/{list_id}/$intervention-checks", methods=["GET", "POST"],
                      summary="Check the Tasks assigned from a priority List")
    async def checks(request: Request, list_id: str) -> Response:
        await request_input(request, ())  # takes no parameters
        result = await run_in_threadpool(request.app.state.interventions.checks, context_of(request), list_id,
                                         base_url(request))
        return fhir_response(Reply(200, orjson.dumps(checks_parameters(list_id, result)), {}))

    return router
