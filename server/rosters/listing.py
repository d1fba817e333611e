"""One page of a roster for the dashboard's roster page: counts by decision and by reason over the whole
list, and the members matching the filters, a page at a time (SQL over the roster table's
(group, decision, reason) index), so the page answers quickly however long the list is."""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from server.rosters.render import member_json
from server.store.roster_schema import roster_members

m = roster_members.c
NONE = "none"  # the filter value and count key of members without a decision


def roster_page(conn: Connection, group_id: str, decision: str | None, reason: str | None, count: int,
                offset: int) -> dict:
    in_list = m.group_id == group_id
    by_decision = {decision or NONE: n for decision, n in
                   conn.execute(select(m.decision, func.count()).where(in_list).group_by(m.decision))}
    by_reason = dict(conn.execute(select(m.reason_code, func.count()).where(in_list, m.reason_code.is_not(None))
                                  .group_by(m.reason_code)).all())
    where = [in_list]
    if decision is not None:
        where.append(m.decision.is_(None) if decision == NONE else m.decision == decision)
    if reason is not None:
        where.append(m.reason_code == reason)
    total = conn.execute(select(func.count()).select_from(roster_members).where(*where)).scalar_one()
    rows = conn.execute(select(roster_members).where(*where).order_by(m.id).limit(count).offset(offset))
    params: list[dict] = [{"name": "total", "valueInteger": total}]
    params += [{"name": "decisionCount", "part": [{"name": "decision", "valueCode": k}, {"name": "count", "valueInteger": n}]}
               for k, n in sorted(by_decision.items())]
    params += [{"name": "reasonCount", "part": [{"name": "reason", "valueCode": k}, {"name": "count", "valueInteger": n}]}
               for k, n in sorted(by_reason.items())]
    params += [{"name": "member", "resource": {"resourceType": "Group", "type": "person", "actual": True,
                                               "member": [member_json(row)]}} for row in rows]
    return {"resourceType": "Parameters", "parameter": params}
