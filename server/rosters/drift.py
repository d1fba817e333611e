"""Drift between two states of attribution lists (SPEC §11): who was added, who was removed and whose
decision changed, with who made the change and when. A state is a list at a version of its history
(`versions.py`): this roster against the locked one, or two versions of one list. Members are matched by
patient and attributed provider.

Each state is materialised once into a keyed temporary table (`store.temporary`: joined as windowed
sub-selects, PostgreSQL guessed a few hundred rows each and nested-looped 100,000 × 100,000); then three
set-based statements (added, removed, decision changed), each a join on the (patient, provider) key; only
the differences come back to Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Table, and_, not_, null, or_, select

from server.fhir.dates import instant_text
from server.rosters.reports import csv_text, optional_parts, parameters_json
from server.rosters.versions import ListVersion, state
from server.store.temporary import materialized

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
    current: ListVersion
    baseline: ListVersion
    items: tuple[DriftItem, ...]


def _decision(decision: str | None, reason: str | None) -> str | None:
    return f"{decision} ({reason})" if decision and reason else decision


_KEY = ("patient_id", "provider_key")


def drift(conn: Connection, current: ListVersion, baseline: ListVersion) -> Drift:
    with materialized(conn, "roster_drift_current", state(current, conn.dialect.name), _KEY) as now, \
            materialized(conn, "roster_drift_baseline", state(baseline, conn.dialect.name), _KEY) as before:
        return Drift(current, baseline, _differences(conn, now, before))


def _differences(conn: Connection, now: Table, before: Table) -> tuple[DriftItem, ...]:
    n, b = now.c, before.c
    same = and_(n.patient_id == b.patient_id, n.provider_key == b.provider_key)
    statements = {
        # In `current` and not (or no longer) in the baseline: who added it.
        "added": select(n.patient_id, n.provider_key, b.decision, b.reason_code, n.decision, n.reason_code,
                        n.changed_by, n.changed_us)
        .select_from(now.outerjoin(before, same)).where(n.present, or_(b.patient_id.is_(None), not_(b.present))),
        # In the baseline and not in `current`: when `current` still has the row (dropped, inactive, or
        # removed from an open list), that row tells who and when.
        "removed": select(b.patient_id, b.provider_key, b.decision, b.reason_code, null(), null(), n.changed_by,
                          n.changed_us)
        .select_from(before.outerjoin(now, same)).where(b.present, or_(n.patient_id.is_(None), not_(n.present))),
        "decision-changed": select(n.patient_id, n.provider_key, b.decision, b.reason_code, n.decision,
                                   n.reason_code, n.decided_by, n.decided_us)
        .select_from(now.join(before, same))
        .where(n.present, b.present, or_(n.decision.is_distinct_from(b.decision),
                                         n.reason_code.is_distinct_from(b.reason_code))),
    }
    items = []
    for kind in KINDS:
        stmt = statements[kind]
        for pid, provider, was, was_reason, becomes, becomes_reason, by, at in conn.execute(
                stmt.order_by(*stmt.selected_columns[:2])):
            items.append(DriftItem(kind, pid, provider or None, _decision(was, was_reason),
                                   _decision(becomes, becomes_reason), by, at))
    return tuple(items)


def drift_json(result: Drift) -> bytes:
    """The drift as a Parameters resource: both states, counts per kind, then one `change` per item."""
    head: list[dict] = [
        {"name": "group", "valueReference": {"reference": result.current.reference}},
        {"name": "baseline", "valueReference": {"reference": result.baseline.reference}},
    ]
    head += [{"name": "count", "part": [{"name": "kind", "valueCode": k},
                                        {"name": "value", "valueInteger": sum(i.kind == k for i in result.items)}]}
             for k in KINDS]
    return parameters_json(head, (_change_parameter(item) for item in result.items))


def _change_parameter(item: DriftItem) -> dict:
    parts = [{"name": "kind", "valueCode": item.kind},
             {"name": "patient", "valueReference": {"reference": f"Patient/{item.patient_id}"}}]
    if item.provider:
        parts.append({"name": "provider", "valueReference": {"reference": item.provider}})
    parts += optional_parts("String", before=item.before, after=item.after, by=item.by)
    if item.at_us is not None:
        parts.append({"name": "at", "valueInstant": instant_text(item.at_us)})
    return {"name": "change", "part": parts}


def drift_csv(result: Drift) -> str:
    return csv_text(CSV_COLUMNS, ((i.kind, i.patient_id, i.provider, i.before, i.after, i.by,
                                   instant_text(i.at_us) if i.at_us is not None else None) for i in result.items))
