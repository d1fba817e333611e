"""Who is in a Group, as a SQL sub-select of Patient ids.

Membership is a query, never a Python list, so a 100,000-member Group is exported with a few
set-based statements. By default members are the `Group.member.entity` references to Patients,
read from the reference index. Groups whose membership lives elsewhere (server-maintained cohorts
with their own member table) implement the `GROUP_MEMBERS` hook point (and `GROUP_DOCUMENT` to be exported
whole).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlalchemy import Connection, Select, select

from server.fhir.features import HookPoint, Hooks
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


# (connection, group id, the stored Group version) → the Group as exported, or None to export it as stored.
# Groups whose members live in their own table (attribution lists) are exported whole: ATR consumers
# take the membership from the export's one Group line.
GroupDocument = Callable[[Connection, str, bytes], "bytes | None"]

GROUP_MEMBERS: HookPoint[GroupMembers] = HookPoint("group_members")
GROUP_DOCUMENT: HookPoint[GroupDocument] = HookPoint("group_document")


@dataclass(frozen=True)
class GroupMembership:
    """A Group's members and its exported document, asked of the features that implement the two hook
    points (the first answer wins); a Group none of them owns has its `member.entity` references."""

    hooks: Hooks

    def members(self, conn: Connection, group_id: str) -> Select:
        for resolver in self.hooks.of(GROUP_MEMBERS):
            members = resolver(conn, group_id)
            if members is not None:
                return members
        return referenced_members(conn, group_id)

    def document(self, conn: Connection, group_id: str, stored: bytes) -> bytes:
        for renderer in self.hooks.of(GROUP_DOCUMENT):
            document = renderer(conn, group_id, stored)
            if document is not None:
                return document
        return stored
