"""Storing server-computed reports: written by the server (not the caller), in one write transaction
per 500, with PUT semantics on deterministic ids, so an unchanged report keeps its version."""

from __future__ import annotations

from typing import Any

from server.fhir.context import RequestContext
from server.fhir.service import FhirService
from server.fhir.writer import Writer
from server.store.resources import chunks

SOURCE = "urn:planfit:risk"


def store_reports(service: FhirService, reports: list[dict[str, Any]]) -> None:
    if not reports:
        return
    ctx = RequestContext.server(SOURCE)
    for batch in chunks(reports, 500):

        def work(writer: Writer, batch: list[dict[str, Any]] = batch) -> None:
            current = writer.tx.current([("MeasureReport", r["id"]) for r in batch])
            for r in batch:
                writer.put("MeasureReport", r["id"], r, None, current.get(("MeasureReport", r["id"])))

        service.write(ctx, work)
