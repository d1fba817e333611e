"""A week's priority list as a FHIR `List` (snapshot, ordered by priority): one entry per participant
in rank order, its tier as `entry.flag`, its inputs as the `intervention-priority` extension; the week,
the payment year and each input's refresh date on the List. The id is derived from the roster and the
week, so a week has one list and asking for it again reads the stored one back unchanged."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta, timezone

from server.interventions.config import PriorityConfig
from server.interventions.priority import Ranked, Week

SD = "https://planfit.dev/fhir/StructureDefinition/"
WEEK_EXT = SD + "intervention-week"
YEAR_EXT = SD + "intervention-payment-year"
INPUT_EXT = SD + "intervention-input"
ENTRY_EXT = SD + "intervention-priority"
TIER_SYSTEM = "https://planfit.dev/fhir/CodeSystem/intervention-tier"
LIST_SYSTEM = "https://planfit.dev/fhir/CodeSystem/intervention-list"
IDENTIFIER_SYSTEM = "https://planfit.dev/fhir/intervention-priority-list"
ORDER_SYSTEM = "http://terminology.hl7.org/CodeSystem/list-order"


def list_id(group_id: str, week: Week) -> str:
    return "priority-" + hashlib.sha256(f"{group_id}|{week.start.isoformat()}".encode()).hexdigest()[:32]


def due_date(week: Week, due_days: int) -> date:
    """The tier's rule: a Task is due `dueDays` days after the Monday the list is for."""
    return week.start + timedelta(days=due_days)


def _instant(us: int) -> str:
    return datetime.fromtimestamp(us / 1e6, tz=timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _entry(rank: int, row: Ranked, week: Week) -> dict:
    parts = [{"url": "rank", "valuePositiveInt": rank}]
    if row.score is not None:
        parts.append({"url": "riskScore", "valueDecimal": round(row.score, 4)})
    parts += [{"url": "edVisits", "valueUnsignedInt": row.ed_visits},
              {"url": "inpatientAdmissions", "valueUnsignedInt": row.admissions},
              {"url": "carePlanVariance", "valueUnsignedInt": row.variance},
              {"url": "dueDate", "valueDate": due_date(week, row.tier.due_days).isoformat()}]
    return {"extension": [{"url": ENTRY_EXT, "extension": parts}],
            "flag": {"coding": [{"system": TIER_SYSTEM, "code": row.tier.code, "display": row.tier.display}]},
            "item": {"reference": f"Patient/{row.patient_id}"}}


def priority_list(config: PriorityConfig, group_id: str, week: Week, payment_year: int,
                  refreshed: dict[str, int | None], ranked: list[Ranked], now_us: int) -> dict:
    extensions = [{"url": WEEK_EXT, "valuePeriod": {"start": week.start.isoformat(), "end": week.end.isoformat()}},
                  {"url": YEAR_EXT, "valuePositiveInt": payment_year}]
    extensions += [{"url": INPUT_EXT, "extension": [{"url": "input", "valueCode": name},
                                                    {"url": "refreshed", "valueDateTime": _instant(at)}]}
                   for name, at in refreshed.items() if at is not None]
    return {
        "resourceType": "List",
        "extension": extensions,
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": f"{group_id}|{week.start.isoformat()}"}],
        "status": "current",
        "mode": "snapshot",
        "title": f"Intervention priority, week of {week.start.isoformat()}",
        "code": {"coding": [{"system": LIST_SYSTEM, "code": "intervention-priority",
                             "display": "Intervention priority list"}]},
        "subject": {"reference": f"Group/{group_id}"},
        "date": _instant(now_us),
        "orderedBy": {"coding": [{"system": ORDER_SYSTEM, "code": "priority", "display": "Sorted by Priority"}]},
        "entry": [_entry(i, row, week) for i, row in enumerate(ranked, start=1)],
        **({} if ranked else {"emptyReason": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason", "code": "nilknown"}]}}),
    }
