"""Rendering the audit answers: FHIR Parameters for the dashboard, CSV for a spreadsheet.

A CSV holds exactly what the matching JSON answer holds (same rows, same order), so what a user exports
is what they were shown.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Iterable, Sequence

from fastapi.responses import Response

from server.audit.worklist import WorklistPage, WorklistRow

CSV_MEDIA = "text/csv; charset=utf-8"


def wants_csv(format_param: str | None, accept: str | None) -> bool:
    """`_format=csv` (or text/csv), or an Accept header asking for text/csv."""
    if format_param is not None:
        return format_param in ("csv", "text/csv")
    return "text/csv" in (accept or "")


def csv_text(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def csv_response(filename: str, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Response:
    return Response(csv_text(header, rows), media_type=CSV_MEDIA,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"})


def param(name: str, **value: Any) -> dict[str, Any]:
    return {"name": name, **value}


def money(cents: int, currency: str) -> dict[str, Any]:
    return {"value": cents / 100, "currency": currency}


def worklist_parameters(page: WorklistPage) -> dict[str, Any]:
    out = [param("total", valueInteger=page.total)]
    if page.next_cursor:
        out.append(param("next", valueString=page.next_cursor))
    out += [param("member", part=_member_parts(row)) for row in page.rows]
    return {"resourceType": "Parameters", "parameter": out}


def _member_parts(row: WorklistRow) -> list[dict[str, Any]]:
    subject = {"reference": f"Patient/{row.patient_id}"}
    if row.name:
        subject["display"] = row.name
    parts = [param("subject", valueReference=subject), param("status", valueCode=row.status)]
    if row.enrolled:
        parts.append(param("enrolledProduct", valueCode=row.enrolled))
    if row.recommended:
        parts.append(param("recommendedProduct", valueCode=row.recommended))
    if row.impact_cents is not None:
        parts.append(param("estimatedAnnualImpact", valueMoney=money(row.impact_cents, row.currency)))
    parts += [param("reason", valueCode=r) for r in row.reasons]
    parts += [param("lineOfBusiness", valueCode=v) for v in row.lines_of_business]
    parts += [param("plan", valueString=v) for v in row.plans]
    parts += [param("category", part=[param("code", valueCode=c), param("nonClaims", valueBoolean=c in row.non_claims)])
              for c in row.categories]
    parts += [param("source", valueCode=v) for v in row.sources]
    return parts


WORKLIST_CSV_HEADER = ("patient", "name", "status", "enrolled_product", "recommended_product", "annual_impact",
                       "currency", "reasons", "lines_of_business", "plans", "categories", "non_claims_categories",
                       "sources")


def worklist_csv_rows(page: WorklistPage) -> list[list[Any]]:
    return [[f"Patient/{r.patient_id}", r.name, r.status, r.enrolled or "", r.recommended or "",
             "" if r.impact is None else f"{r.impact:.2f}", r.currency, " ".join(r.reasons),
             " ".join(r.lines_of_business), " ".join(r.plans), " ".join(r.categories), " ".join(r.non_claims),
             " ".join(r.sources)] for r in page.rows]
