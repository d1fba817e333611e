"""One SELECT per exported type, set-based over the whole cohort.

Group and Patient exports reach resources through the Patient compartment: a resource belongs to
a patient when one of its compartment reference parameters points at that patient. That is one
semi-join of the reference index against the member sub-select per type, so the cost grows with
the rows exported, not with round trips per member.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Connection, Select, and_, or_, select, true

from server.bulk.members import GroupMembership
from server.bulk.plan import ExportPlan, TypePlan
from server.fhir import searchparams
from server.store.schema import idx_reference, resources
from server.store.search import clause_sql
from server.store.temporary import fill, temporary_table

r = resources.c


def compartment_param_hashes(rtype: str) -> tuple[int, ...]:
    """Hashes of the reference parameters that put a resource of this type in a Patient's compartment."""
    return tuple(searchparams.param_hash(rtype, code) for code in searchparams.patient_compartment().get(rtype, ()))


_PATIENTS = "export_patients"


def materialize_patients(conn: Connection, plan: ExportPlan, groups: GroupMembership) -> Select | None:
    """The plan's patients as a sub-select of a temporary table (see `store.temporary`); None means every
    patient. The table lives in the export's snapshot transaction, which drops it on rollback."""
    patients = patients_of(conn, plan, groups)
    if patients is None:
        return None
    table = temporary_table(_PATIENTS, patients)
    fill(conn, table, patients)
    return select(table.c[0])


def export_statement(plan: ExportPlan, type_plan: TypePlan, snapshot_txid: int, patients: Select | None) -> Select:
    """SELECT content of every resource of the type that the plan exports, as of the snapshot.

    `patients` is what `materialize_patients` gave for the plan.
    """
    rtype = type_plan.rtype
    where: list[ColumnElement] = [r.rtype == rtype, r.deleted.is_(False), r.txid <= snapshot_txid]
    anchor = _anchor(plan, rtype, patients)
    if anchor is not None:
        where.append(anchor)
    if plan.since_us is not None:
        where.append(r.lu >= plan.since_us)
    if plan.until_us is not None:
        where.append(r.lu <= plan.until_us)
    where.extend(clause_sql(c, rtype) for c in type_plan.access)
    if type_plan.filters:
        where.append(or_(*(and_(true(), *(clause_sql(c, rtype) for c in f)) for f in type_plan.filters)))
    return select(r.content).where(*where)


def patients_of(conn: Connection, plan: ExportPlan, groups: GroupMembership) -> Select | None:
    """The exported patients as a sub-select; None means every patient (Patient/$export)."""
    if plan.level == "group":
        members = groups.members(conn, plan.group_id or "")
        column = members.selected_columns[0]
        return members.where(column.in_(plan.patient_ids)) if plan.patient_ids else members
    if plan.patient_ids:
        return select(r.rid).where(r.rtype == "Patient", r.deleted.is_(False), r.rid.in_(plan.patient_ids))
    return None


def _anchor(plan: ExportPlan, rtype: str, patients: Select | None) -> ColumnElement | None:
    """What ties a resource to the export: the Group itself, the patients, or their compartments."""
    if plan.level == "system":
        return None
    if plan.level == "group" and rtype == "Group":
        return r.rid == plan.group_id
    if rtype == "Patient":
        return r.rid.in_(patients) if patients is not None else None
    x = idx_reference.c
    condition = [x.rtype == rtype, x.h_param.in_(compartment_param_hashes(rtype)), x.target_type == "Patient"]
    if patients is not None:
        condition.append(x.target_id.in_(patients))
    return r.rid.in_(select(x.rid).where(*condition))
