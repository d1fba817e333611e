"""Who is in a Group, as a SQL sub-select of Patient ids.

Membership is a query, never a Python list, so a 100,000-member Group is exported with a few
set-based statements. By default members are the `Group.member.entity` references to Patients,
read from the reference index. Groups whose membership lives elsewhere (server-maintained cohorts
with their own member table) plug in with `register_group_members`.
"""

from __future__ import annotations

from typing import Callable

from sqlalchemy import Connection, Select, select

from server.fhir.searchparams import param_hash
from server.store.schema import idx_reference

# (connection, group id) → a SELECT of one column of Patient ids, or None if the group is not
# one this resolver owns.
GroupMembers = Callable[[Connection, str], "Select | None"]


def referenced_members(_conn: Connection, group_id: str) -> Select:
    """Patients named in `Group.member.entity` (other member types are not patients: skipped)."""
    x = idx_reference.c
    return select(x.target_id).where(
        x.rtype == "Group",
        x.rid == group_id,
        x.h_param == param_hash("Group", "member"),
        x.target_type == "Patient",
    )


_resolvers: list[GroupMembers] = []


def register_group_members(resolver: GroupMembers) -> None:
    """Consult `resolver` before the ones registered earlier and before the reference index."""
    _resolvers.insert(0, resolver)


# (connection, group id, the stored Group version) → the Group as exported, or None to export it as stored.
# Groups whose members live in their own table (attribution lists) are exported whole: ATR consumers
# take the membership from the export's one Group line.
GroupDocument = Callable[[Connection, str, bytes], "bytes | None"]
_documents: list[GroupDocument] = []


def register_group_document(renderer: GroupDocument) -> None:
    _documents.append(renderer)


def group_document(conn: Connection, group_id: str, stored: bytes) -> bytes:
    for renderer in _documents:
        document = renderer(conn, group_id, stored)
        if document is not None:
            return document
    return stored


def group_members(conn: Connection, group_id: str) -> Select:
    for resolver in _resolvers:
        members = resolver(conn, group_id)
        if members is not None:
            return members
    return referenced_members(conn, group_id)
