"""Drift of a roster against the locked (final) one (SPEC §11): who was added, who was removed and whose
decision changed, with who made the change and when. Members are matched by patient and attributed
provider; each kind is one outer-join query over the two lists' rows.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from sqlalchemy import Connection, and_, func, or_, select

from server.fhir.dates import instant_text
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


def _decision(decision: str | None, reason: str | None) -> str | None:
    return f"{decision} ({reason})" if decision and reason else decision


def drift(conn: Connection, group_id: str, baseline_id: str) -> Drift:
    now, base = roster_members.alias("now"), roster_members.alias("base")
    same = and_(now.c.patient_id == base.c.patient_id,
                func.coalesce(now.c.provider_ref, "") == func.coalesce(base.c.provider_ref, ""))
    current = and_(now.c.group_id == group_id, now.c.inactive.is_(False))
    locked = and_(base.c.group_id == baseline_id, base.c.inactive.is_(False))
    items: list[DriftItem] = []
    added = (select(now.c.patient_id, now.c.provider_ref, now.c.decision, now.c.reason_code, now.c.changed_by,
                    now.c.changed_us)
             .select_from(now.outerjoin(base, and_(same, locked)))
             .where(current, base.c.id.is_(None)).order_by(now.c.patient_id))
    items += [DriftItem("added", pid, prov, None, _decision(d, r), by, at) for pid, prov, d, r, by, at in conn.execute(added)]
    # A removed member: still listed in the roster as dropped (a draft keeps it, inactive) tells who and when.
    removed = (select(base.c.patient_id, base.c.provider_ref, base.c.decision, base.c.reason_code, now.c.changed_by,
                      now.c.changed_us)
               .select_from(base.outerjoin(now, and_(same, now.c.group_id == group_id)))
               .where(locked, or_(now.c.id.is_(None), now.c.inactive.is_(True))).order_by(base.c.patient_id))
    items += [DriftItem("removed", pid, prov, _decision(d, r), None, by, at) for pid, prov, d, r, by, at in conn.execute(removed)]
    changed = (select(now.c.patient_id, now.c.provider_ref, base.c.decision, base.c.reason_code, now.c.decision,
                      now.c.reason_code, now.c.decided_by, now.c.decided_us)
               .select_from(now.join(base, same))
               .where(current, locked, or_(func.coalesce(now.c.decision, "") != func.coalesce(base.c.decision, ""),
                                           func.coalesce(now.c.reason_code, "") != func.coalesce(base.c.reason_code, "")))
               .order_by(now.c.patient_id))
    items += [DriftItem("decision-changed", pid, prov, _decision(bd, br), _decision(nd, nr), by, at)
              for pid, prov, bd, br, nd, nr, by, at in conn.execute(changed)]
    return Drift(group_id, baseline_id, tuple(items))


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
        for name, value in (("before", item.before), ("after", item.after), ("by", item.by)):
            if value is not None:
                parts.append({"name": name, "valueString": value})
        if item.at_us is not None:
            parts.append({"name": "at", "valueInstant": instant_text(item.at_us)})
        params.append({"name": "change", "part": parts})
    return {"resourceType": "Parameters", "parameter": params}


def drift_csv(result: Drift) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for i in result.items:
        writer.writerow([i.kind, i.patient_id, i.provider or "", i.before or "", i.after or "", i.by or "",
                         instant_text(i.at_us) if i.at_us is not None else ""])
    return out.getvalue()
