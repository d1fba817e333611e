"""An attribution list as FHIR: the stored header followed by its member rows, streamed.

The header is the stored Group version (everything but `member`); a full read appends one
`Group.member` per `roster_members` row as the database cursor yields them, so a 100,000-member list is
never held in memory whole. Searches, `_summary=true` and history show the header (ATR: "large groups
… should use `_summary=true`", the membership comes from the read or the export).
"""

from __future__ import annotations

from typing import Iterable, Iterator

import orjson
from sqlalchemy import Connection, select

from server.rosters.atr import ATTRIBUTED_PROVIDER, CHANGE_TYPE, COVERAGE_REFERENCE
from server.rosters.decisions import decision_extension
from server.store.roster_schema import roster_members

_FETCH = 5000  # member rows per round trip while streaming
m = roster_members.c
# The columns a `Group.member` shows (the payer file's statements and member ids stay out of the read).
_RENDERED = (m.patient_id, m.change_type, m.provider_ref, m.coverage_id, m.period_start, m.period_end, m.inactive,
             m.decision, m.reason_system, m.reason_code, m.reviewer, m.review_date, m.owner, m.deadline, m.checkpoint,
             m.decided_by)


def member_json(row) -> dict:
    """One `Group.member` of a row: ATR extensions, the decision, entity, period, inactive."""
    extensions = [{"url": CHANGE_TYPE, "valueCode": row.change_type}]
    if row.provider_ref is not None:
        extensions.append({"url": ATTRIBUTED_PROVIDER, "valueReference": {"reference": row.provider_ref}})
    if row.coverage_id is not None:
        extensions.append({"url": COVERAGE_REFERENCE, "valueReference": {"reference": f"Coverage/{row.coverage_id}"}})
    decision = decision_extension(row)
    if decision is not None:
        extensions.append(decision)
    member: dict = {"extension": extensions, "entity": {"reference": f"Patient/{row.patient_id}"}}
    period = {k: v for k, v in (("start", row.period_start), ("end", row.period_end)) if v is not None}
    if period:
        member["period"] = period
    if row.inactive:
        member["inactive"] = True
    return member


def full_group(conn: Connection, stored_header: bytes, group_id: str, patient_id: str | None = None) -> Iterator[bytes]:
    """The header, then `member` (all rows, or one patient's) as JSON chunks."""
    yield stored_header[:-1]
    stmt = select(*_RENDERED).where(m.group_id == group_id).order_by(m.id)
    if patient_id is not None:
        stmt = stmt.where(m.patient_id == patient_id)
    result = conn.execution_options(stream_results=True, yield_per=_FETCH).execute(stmt)
    opened = False
    for rows in result.partitions():
        yield (b',"member":[' if not opened else b",") + _members(rows)
        opened = True
    yield b"]}" if opened else b"}"


def _members(rows: Iterable) -> bytes:
    return b",".join(orjson.dumps(member_json(row)) for row in rows)
