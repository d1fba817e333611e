"""Drift of a roster against the locked (final) one (SPEC §11): who was added, who was removed and whose
decision changed, with who made the change and when. Members are matched by patient and attributed
provider.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from server.fhir.dates import instant_text
from server.rosters.reports import csv_text, optional_parts
from server.store.roster_schema import roster_members

KINDS = ("added", "removed", "decision-changed")
CSV_COLUMNS = ("kind", "patient_id", "provider", "before", "after", "by", "at")


@dataclass(frozen=True)
class DriftItem:
    kind: str
    patient_id: str
    provider: str | None
    before: str | None
    after: str | None
    by: str | None
    at_us: int | None


@dataclass(frozen=True)
class Drift:
    group_id: str
    baseline_id: str
    items: tuple[DriftItem, ...]


def _decision(row) -> str | None:
    return f"{row.decision} ({row.reason_code})" if row.decision and row.reason_code else row.decision


def drift(conn: Connection, group_id: str, baseline_id: str) -> Drift:
    """Two index range scans (group_id leads the index), compared by (patient, provider) in one pass: the
    cost is linear in the two lists' sizes whatever the planner's statistics say (a join planned on
    stale statistics took seconds for a few thousand members)."""
    current, locked = _rows(conn, group_id), _rows(conn, baseline_id)
    items: list[DriftItem] = []
    for key, now in sorted(current.items()):
        if now.inactive:
            continue
        before = locked.get(key)
        if before is None or before.inactive:
            items.append(DriftItem("added", key[0], now.provider_ref, None, _decision(now), now.changed_by, now.changed_us))
        elif (now.decision, now.reason_code) != (before.decision, before.reason_code):
            items.append(DriftItem("decision-changed", key[0], now.provider_ref, _decision(before), _decision(now),
                                   now.decided_by, now.decided_us))
    for key, before in sorted(locked.items()):
        now = current.get(key)
        if not before.inactive and (now is None or now.inactive):
            # Still listed in the roster as dropped (a draft keeps it, inactive): that row tells who and when.
            by, at = (now.changed_by, now.changed_us) if now is not None else (None, None)
            items.append(DriftItem("removed", key[0], before.provider_ref, _decision(before), None, by, at))
    order = {kind: n for n, kind in enumerate(KINDS)}
    items.sort(key=lambda i: (order[i.kind], i.patient_id))
    return Drift(group_id, baseline_id, tuple(items))


def _rows(conn: Connection, group_id: str) -> dict[tuple[str, str], object]:
    m = roster_members.c
    stmt = select(m.patient_id, m.provider_ref, m.inactive, m.decision, m.reason_code, m.decided_by, m.decided_us,
                  m.changed_by, m.changed_us).where(m.group_id == group_id)
    return {(row.patient_id, row.provider_ref or ""): row for row in conn.execute(stmt)}


def drift_parameters(result: Drift) -> dict:
    params: list[dict] = [
        {"name": "group", "valueReference": {"reference": f"Group/{result.group_id}"}},
        {"name": "baseline", "valueReference": {"reference": f"Group/{result.baseline_id}"}},
    ]
    params += [{"name": "count", "part": [{"name": "kind", "valueCode": k},
                                          {"name": "value", "valueInteger": sum(i.kind == k for i in result.items)}]}
               for k in KINDS]
    for item in result.items:
        parts = [{"name": "kind", "valueCode": item.kind},
                 {"name": "patient", "valueReference": {"reference": f"Patient/{item.patient_id}"}}]
        if item.provider:
            parts.append({"name": "provider", "valueReference": {"reference": item.provider}})
        parts += optional_parts("String", before=item.before, after=item.after, by=item.by)
        if item.at_us is not None:
            parts.append({"name": "at", "valueInstant": instant_text(item.at_us)})
        params.append({"name": "change", "part": parts})
    return {"resourceType": "Parameters", "parameter": params}


def drift_csv(result: Drift) -> str:
    return csv_text(CSV_COLUMNS, ((i.kind, i.patient_id, i.provider, i.before, i.after, i.by,
                                   instant_text(i.at_us) if i.at_us is not None else None) for i in result.items))
