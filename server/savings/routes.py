"""Savings routes under /fhir/MeasureReport, and the one call that wires the feature into the app.

* `POST $savings-load`: an ACO's contract terms (program, MSSP track and corridor, base rate, reference
  risk score, REACH capitation PMPM) with its beneficiaries and claims (`inputs.py`), replacing the
  previous ones;
* `GET|POST $savings?aco=`: the performance year settled: benchmark by alignment basis, MSSP shared
  savings or losses, REACH capitation margin (MeasureReport; `Accept: text/csv`: the figures as CSV);
* `GET|POST $payment-assurance?aco=&month=YYYY-MM&cohort=Group/id`: the monthly check against the
  locked roster (MeasureReport or CSV); savings are withheld, with the reason, when the counts differ.
  POST also stores it as `MeasureReport/payment-assurance-<month>-<aco>`, the month's report of record.
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
from server.rosters.params import request_input
from server.savings.report import (assurance_figures, assurance_issues, assurance_report, figures_csv, result_figures,
                                   settlement_report)
from server.savings.service import Savings

_BODY = {"requestBody": {"content": {"application/fhir+json": {"schema": {"type": "object"}}}}}
_DEFINITION = "https://planfit.dev/fhir/OperationDefinition/MeasureReport-"
OPERATIONS = ("savings-load", "savings", "payment-assurance")
LOAD_PARAMETERS = ("aco", "performanceYear", "program", "track", "corridor", "baseRate", "referenceRiskScore",
                   "capitationPmpm", "beneficiaries", "claims")


def savings_feature(service: FhirService) -> Feature:
    """Serve the savings operations; the terms file is validated here, when the app is assembled."""
    return Feature(
        name="savings",
        routers=[_router()],
        operations=[Operation(n, _DEFINITION + n, "MeasureReport") for n in OPERATIONS],
        state={"savings": Savings(service)},
    )


def _csv(text: str) -> Response:
    return Response(text, media_type="text/csv; charset=utf-8")


def _wants_csv(request: Request) -> bool:
    return "text/csv" in request.headers.get("accept", "")


def _router() -> APIRouter:
    router = APIRouter(prefix="/fhir")

    @router.post("/MeasureReport/$savings-load", summary="Load an ACO's savings terms, beneficiaries and claims",
                 openapi_extra=_BODY)
    async def load(request: Request) -> Response:
        inp = await request_input(request, LOAD_PARAMETERS)
        counts = await run_in_threadpool(request.app.state.savings.load, context_of(request), inp)
        body = {"resourceType": "Parameters", "parameter": [{"name": k, "valueInteger": v} for k, v in counts.items()]}
        return fhir_response(Reply(200, orjson.dumps(body), {}))

    @router.api_route("/MeasureReport/$savings", methods=["GET", "POST"],
                      summary="Settle a performance year: benchmark, MSSP sharing, REACH capitation margin")
    async def settle(request: Request) -> Response:
        inp = await request_input(request, ("aco",))
        result = await run_in_threadpool(request.app.state.savings.settle, context_of(request), inp)
        if _wants_csv(request):
            return _csv(figures_csv(result_figures(result)))
        return fhir_response(Reply(200, orjson.dumps(settlement_report(result)), {}))

    @router.api_route("/MeasureReport/$payment-assurance", methods=["GET", "POST"],
                      summary="Monthly payment assurance against the locked cohort")
    async def assurance(request: Request) -> Response:
        inp = await request_input(request, ("aco", "month", "cohort"))
        done = await run_in_threadpool(request.app.state.savings.assurance, context_of(request), inp,
                                       base_url(request))
        if _wants_csv(request):
            return _csv(figures_csv(assurance_figures(done), assurance_issues(done)))
        if request.method == "POST":  # the month's report of record
            return fhir_response(await run_in_threadpool(request.app.state.savings.keep, context_of(request),
                                                         assurance_report(done), done, base_url(request)))
        return fhir_response(Reply(200, orjson.dumps(assurance_report(done)), {}))

    return router
