"""The quarterly audit as a stored MeasureReport, and its CSV.

Closing a quarter (`close_quarter`) takes the snapshot, builds the product-alignment summary report for
the quarter's period (the measure's own SQL and rendering, `server.measures`) with the audit's extra
strata (line of business, plan, kind), adds the reconciliation against the previous quarter and stores
it, all in one write transaction, as `MeasureReport/audit-product-alignment-<quarter>`: closing again
makes a new version, so `_history` keeps every closing. The reconciliation's member lists are contained
`List`s (`#new`, `#resolved`, `#persisting`), each named with its count by an `audit-reconciliation`
extension; `audit-previous-report` points at the previous quarter's report when there is one.

The report is the server's own: client writes to these ids are refused (`refuse_client_writes`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import orjson
from sqlalchemy import Connection, select

from server.alignment.engine import AlignmentEngine
from server.audit.quarter import CHANGES, Change, Quarter, extra_strata, reconciliation, snapshot_taken, take_snapshot
from server.fhir import searchparams
from server.fhir.dates import instant_text
from server.fhir.errors import FhirError
from server.measures.definitions import SD_BASE
from server.measures.populations import MEASURES
from server.measures.report import ReportContext, money, population_report
from server.store.resources import StagedWrite, Store, WriteTransaction
from server.store.schema import resources

REPORT_PREFIX = "audit-product-alignment-"
SOURCE = "https://planfit.dev/fhir/audit"
QUARTER_EXT = SD_BASE + "audit-quarter"
PREVIOUS_EXT = SD_BASE + "audit-previous-report"
RECONCILIATION_EXT = SD_BASE + "audit-reconciliation"


def report_id(quarter: Quarter) -> str:
    return REPORT_PREFIX + str(quarter)


@dataclass(frozen=True)
class ClosedQuarter:
    report: dict[str, Any]
    changes: list[Change]


def close_quarter(store: Store, engine: AlignmentEngine, quarter: Quarter, displays: dict[str, dict[str, str]]) -> ClosedQuarter:
    """Snapshot, reconcile and store the quarter's report in one write transaction (its claim on the
    report, taken first, keeps two closings of a quarter from interleaving)."""
    if quarter.start > engine.window().as_of:
        raise FhirError.of(400, "invalid", f"{quarter} has not started yet", "quarter")
    rid = report_id(quarter)

    def work(tx: WriteTransaction) -> ClosedQuarter:
        conn = tx.conn
        assert conn is not None
        current = tx.current([("MeasureReport", rid)]).get(("MeasureReport", rid))
        as_of = engine.window().as_of
        take_snapshot(conn, quarter, as_of, tx.now_us)
        changes = reconciliation(conn, quarter)
        report = _report(conn, engine, quarter, changes, displays, tx.now_us)
        version = 1 if current is None else current.version + 1
        report["id"] = rid
        report["meta"] = {**report["meta"], "versionId": str(version), "lastUpdated": instant_text(tx.now_us),
                          "source": SOURCE}
        tx.stage(StagedWrite("MeasureReport", rid, version, "PUT" if current else "POST", orjson.dumps(report),
                             searchparams.index_rows(report), existed=current is not None and not current.deleted))
        return ClosedQuarter(report, changes)

    return store.write(work)


def _report(conn: Connection, engine: AlignmentEngine, quarter: Quarter, changes: list[Change],
            displays: dict[str, dict[str, str]], now_us: int) -> dict[str, Any]:
    measure = MEASURES["product-alignment"]
    summary = measure.summary(conn, engine.mappings, None)
    summary = replace(summary, stratifiers={**summary.stratifiers, **extra_strata(conn, engine.keys)})
    ctx = ReportContext("product-alignment", "population", quarter.start.isoformat(), quarter.end.isoformat(), None,
                        instant_text(now_us), displays)
    report = population_report(ctx, summary, engine.mappings.rates.currency)
    extensions = [{"url": QUARTER_EXT, "valueString": str(quarter)}]
    if snapshot_taken(conn, quarter.previous):
        extensions.append({"url": PREVIOUS_EXT, "valueReference": {"reference": f"MeasureReport/{report_id(quarter.previous)}"}})
    contained = []
    currency = engine.mappings.rates.currency
    for change in CHANGES:
        members = [c for c in changes if c.change == change]
        parts = [{"url": "change", "valueCode": change}, {"url": "count", "valueInteger": len(members)}]
        impacts = [c.impact_cents for c in members if c.impact_cents is not None]
        if impacts:
            parts.append({**money(sum(impacts), currency), "url": "impact"})
        parts.append({"url": "members", "valueReference": {"reference": f"#{change}"}})
        extensions.append({"url": RECONCILIATION_EXT, "extension": parts})
        contained.append(_list(change, members))
    report["extension"] = [*report.get("extension", []), *extensions]
    report["contained"] = contained
    return report


def _list(change: str, members: list[Change]) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "List", "id": change, "status": "current", "mode": "snapshot",
                           "title": f"{change} misalignments"}
    if members:
        out["entry"] = [{"item": {"reference": f"Patient/{c.patient_id}"}} for c in members]
    return out


def refuse_client_writes(rtype: str, rid: str, _method: str, _resource: dict | None) -> None:
    """A `FhirService.write_guards` entry: the audit reports are written only by closing a quarter."""
    if rtype == "MeasureReport" and rid.startswith(REPORT_PREFIX):
        raise FhirError.of(405, "not-supported", f"MeasureReport/{rid} is the server's quarterly audit: "
                                                 "close the quarter again with $audit-quarter instead")


CHANGES_CSV_HEADER = ("quarter", "change", "patient", "enrolled_product", "recommended_product", "line_of_business",
                      "annual_impact")


def changes_csv_rows(quarter: Quarter, changes: list[Change]) -> list[list[Any]]:
    return [[str(quarter), c.change, f"Patient/{c.patient_id}", c.enrolled or "", c.recommended or "",
             c.line_of_business or "", "" if c.impact_cents is None else f"{c.impact_cents / 100:.2f}"]
            for c in changes]


STRATA_CSV_HEADER = ("quarter", "stratifier", "value", "members", "misaligned")


def strata_csv_rows(quarter: Quarter, report: dict[str, Any]) -> list[list[Any]]:
    """Every stratum of the stored report; the whole population first, as stratifier `all`."""
    group = report["group"][0]
    counts = {p["code"]["coding"][0]["code"]: p["count"] for p in group["population"]}
    rows: list[list[Any]] = [[str(quarter), "all", "", counts["initial-population"], counts["numerator"]]]
    for stratifier in group.get("stratifier", []):
        for stratum in stratifier.get("stratum", []):
            values = [stratum["value"]] if "value" in stratum else [c["value"] for c in stratum["component"]]
            text = " > ".join(v.get("text") or v["coding"][0]["code"] for v in values)
            n = {p["code"]["coding"][0]["code"]: p["count"] for p in stratum["population"]}
            rows.append([str(quarter), stratifier["code"][0]["text"], text, n["initial-population"], n["numerator"]])
    return rows


def stored_report(store: Store, quarter: Quarter) -> dict[str, Any]:
    """The quarter's stored report (404 when the quarter was never closed)."""
    with store.engine.connect() as conn:
        content = conn.execute(select(resources.c.content).where(
            resources.c.rtype == "MeasureReport", resources.c.rid == report_id(quarter),
            resources.c.deleted.is_(False))).scalar()
    if not content:
        raise FhirError.of(404, "not-found", f"The audit of {quarter} has not been closed: POST $audit-quarter")
    return orjson.loads(content)


def stored_changes(store: Store, quarter: Quarter) -> list[Change]:
    with store.engine.connect() as conn:
        return reconciliation(conn, quarter)
