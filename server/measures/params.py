"""The input parameters of `$evaluate-measure`, from a query string or a `Parameters` body.

Parameters (FHIR R4 `Measure-evaluate-measure`): `periodStart`, `periodEnd` (dates at any precision;
default: the findings' evaluation window, lookback start to evaluation date), `subject` (`Patient/x` or
`Group/x`, as Da Vinci RA requires: a bare id is refused) and `reportType`. When `reportType` is absent
a Patient subject gets `subject` (an individual report) and a Group or no subject `population`.
PlanFit reports its current findings, so a period that does not overlap the evaluation window
(lookback start .. evaluation date) is refused rather than answered with findings of another time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from server.alignment.window import EvaluationWindow
from server.fhir.dates import DateValueError, date_range
from server.fhir.errors import FhirError
from server.fhir.versions import valid_id

REPORT_TYPES = ("subject", "subject-list", "population")
_NAMES = ("periodStart", "periodEnd", "subject", "reportType")
_IGNORED = ("_format", "_pretty")


@dataclass(frozen=True)
class EvaluateRequest:
    period_start: str
    period_end: str
    subject_type: str | None  # Patient | Group
    subject_id: str | None
    report_type: str  # subject | subject-list | population

    @property
    def subject(self) -> str | None:
        return f"{self.subject_type}/{self.subject_id}" if self.subject_type else None


def _invalid(message: str, name: str) -> FhirError:
    return FhirError.of(400, "invalid", message, name)


def body_items(body: object) -> list[tuple[str, str]]:
    """(name, value) pairs of a `Parameters` body; values are the primitive or reference text."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise FhirError.of(400, "structure", "POST $evaluate-measure takes a Parameters resource")
    params = body.get("parameter", [])
    if not isinstance(params, list):
        raise _invalid("Parameters.parameter must be a list", "Parameters.parameter")
    items = []
    for i, param in enumerate(params):
        if not isinstance(param, dict) or not isinstance(param.get("name"), str):
            raise _invalid("Each parameter needs a name", f"Parameters.parameter[{i}]")
        values = [v for k, v in param.items() if k.startswith("value")]
        value: Any = values[0] if len(values) == 1 else None
        if isinstance(value, dict):
            value = value.get("reference")
        if not isinstance(value, str):
            raise _invalid(f"Parameter {param['name']} needs one primitive or reference value",
                           f"Parameters.parameter[{i}]")
        items.append((param["name"], value))
    return items


def parse_request(items: list[tuple[str, str]], window: EvaluationWindow) -> EvaluateRequest:
    given: dict[str, str] = {}
    for name, value in items:
        if name in _IGNORED:
            continue
        if name not in _NAMES:
            raise FhirError.of(400, "not-supported", f"Parameter {name} is not supported by $evaluate-measure", name)
        if name in given:
            raise _invalid(f"Parameter {name} is given more than once", name)
        given[name] = value
    start = given.get("periodStart", window.lookback_start.isoformat())
    end = given.get("periodEnd", window.as_of.isoformat())
    start_lo, end_hi = _bound(start, "periodStart")[0], _bound(end, "periodEnd")[1]
    if start_lo > end_hi:
        raise _invalid("periodStart is after periodEnd", "periodStart")
    if end_hi < window.start_us or start_lo > window.as_of_hi_us:
        raise _invalid(f"The findings are evaluated as of {window.as_of} over the lookback window from "
                       f"{window.lookback_start}: ask for a period that overlaps it", "periodStart")
    subject_type, subject_id = _subject(given.get("subject"))
    report_type = given.get("reportType") or ("subject" if subject_type == "Patient" else "population")
    if report_type not in REPORT_TYPES:
        raise _invalid("reportType must be subject, subject-list or population", "reportType")
    if (report_type == "subject") != (subject_type == "Patient"):
        raise _invalid("An individual report (reportType=subject) needs subject=Patient/<id>, and a Patient "
                       "subject only takes reportType=subject", "reportType")
    return EvaluateRequest(start, end, subject_type, subject_id, report_type)


def _bound(text: str, name: str) -> tuple[int, int]:
    try:
        return date_range(text)
    except DateValueError:
        raise _invalid(f"{name} must be a FHIR date", name) from None


def _subject(text: str | None) -> tuple[str | None, str | None]:
    if text is None:
        return None, None
    rtype, _, rid = text.partition("/")
    if rtype not in ("Patient", "Group") or not valid_id(rid):
        raise _invalid("subject must be Patient/<id> or Group/<id>", "subject")
    return rtype, rid
