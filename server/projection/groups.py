"""A projection as Da Vinci ATR Groups: one draft attribution list per participant TIN, its header a
stored Group version and its members rows of `roster_members` (the rosters feature streams them on
read and export), each with the ATR `changeType` against the ACO's previous projection:

* `new`: aligned to this TIN now, not in the previous projection's list of it;
* `nochange`: aligned to it in both, to the same NPI on the same basis (claims or voluntary);
* `changed`: aligned to it in both, to another NPI or on another basis;
* `dropped` (and `inactive`): in the previous list, not aligned to this TIN now.
"""

from __future__ import annotations

import hashlib
from typing import Callable

from sqlalchemy import Connection, and_, bindparam, case, delete, exists, false, func, insert, literal, select, true, update

from server.projection.engine import Run
from server.projection.schema import projection_results
from server.rosters.atr import ATR_GROUP_PROFILE, LIST_STATUS, TIN_SYSTEM
from server.store.roster_schema import roster_members

PROJECTION_EXTENSION = "https://planfit.dev/fhir/StructureDefinition/alignment-projection"
PROJECTION_SYSTEM = "https://planfit.dev/fhir/sid/alignment-projection"
m = roster_members.c


def group_id(aco: str, tin: str) -> str:
    return "alignproj-" + hashlib.sha256(f"{aco}|{tin}".encode()).hexdigest()[:24]


def header(run: Run, tin: str, organization: str, quantity: int) -> dict:
    return {
        "resourceType": "Group", "id": group_id(run.aco, tin),
        "meta": {"profile": [ATR_GROUP_PROFILE]},
        "extension": [
            {"url": LIST_STATUS, "valueCode": "draft"},
            {"url": PROJECTION_EXTENSION, "extension": [
                {"url": "aco", "valueString": run.aco},
                {"url": "performanceYear", "valuePositiveInt": run.performance_year},
                {"url": "run", "valuePositiveInt": run.run_id},
                {"url": "alignmentPeriod", "valuePeriod": {"start": run.period.start, "end": run.period.end}},
            ]},
        ],
        "identifier": [{"system": PROJECTION_SYSTEM, "value": f"{run.aco}|{tin}"}, {"system": TIN_SYSTEM, "value": tin}],
        "active": True, "type": "person", "actual": True,
        "name": f"Projected alignment of {run.aco}, PY{run.performance_year}, TIN {tin}",
        "managingEntity": {"reference": f"Organization/{organization}"},
        "quantity": quantity,
    }


def write_members(conn: Connection, run: Run, tin: str, who: str, now_us: int) -> int:
    """Replace the TIN's list members with this run's, changeType against the previous run; returns the
    number of active members."""
    gid = group_id(run.aco, tin)
    cur, prev = projection_results.alias("cur"), projection_results.alias("prev")
    period = (literal(f"{run.performance_year}-01-01"), literal(f"{run.performance_year}-12-31"))
    stamp = (literal(who), literal(now_us))
    columns = ["group_id", "patient_id", "provider_npi", "period_start", "period_end", "inactive", "change_type",
               "changed_by", "changed_us"]
    same = and_(prev.c.npi.is_not_distinct_from(cur.c.npi), prev.c.basis == cur.c.basis)
    kind = case((prev.c.patient_id.is_(None), "new"), (same, "nochange"), else_="changed")
    aligned = (select(literal(gid), cur.c.patient_id, cur.c.npi, *period, false(), kind, *stamp)
               .select_from(cur.outerjoin(prev, and_(prev.c.run_id == (run.previous_run or -1), prev.c.tin == tin,
                                                     prev.c.patient_id == cur.c.patient_id)))
               .where(cur.c.run_id == run.run_id, cur.c.tin == tin))
    still = exists().where(cur.c.run_id == run.run_id, cur.c.tin == tin, cur.c.patient_id == prev.c.patient_id)
    dropped = (select(literal(gid), prev.c.patient_id, prev.c.npi, *period, true(), literal("dropped"), *stamp)
               .where(prev.c.run_id == (run.previous_run or -1), prev.c.tin == tin, ~still))
    conn.execute(delete(roster_members).where(m.group_id == gid))
    conn.execute(insert(roster_members).from_select(columns, aligned.union_all(dropped)))
    return conn.execute(select(func.count()).where(m.group_id == gid, m.inactive == false())).scalar_one()


def link_providers(conn: Connection, gid: str, by_npi: Callable[[list[str]], dict[str, str]]) -> None:
    """ATR attributedProvider: each member's NPI as the Practitioner (or PractitionerRole, Organization) the
    server knows under it; an NPI it does not know leaves the member without one."""
    npis = [n for (n,) in conn.execute(select(m.provider_npi).where(m.group_id == gid, m.provider_npi.is_not(None))
                                       .distinct())]
    known = by_npi(sorted(npis))
    if known:
        conn.execute(update(roster_members).where(m.group_id == gid, m.provider_npi == bindparam("npi"))
                     .values(provider_ref=bindparam("ref")), [{"npi": n, "ref": ref} for n, ref in known.items()])


def change_counts(conn: Connection, gid: str) -> dict[str, int]:
    rows = conn.execute(select(m.change_type, func.count()).where(m.group_id == gid).group_by(m.change_type))
    return {kind: count for kind, count in rows}
