"""The member history of attribution lists: what each change did to the members, under the Group version
that change wrote, and a list's members as they stood at any version (`roster_member_versions`).

A change stamps the member rows it touches with its transaction time (`changed_us` / `decided_us`), so
one INSERT … SELECT copies exactly those rows; members removed from an `open` list leave a row with
`listed` false before their row is deleted. The state at version v takes, per (patient, provider), the
latest history row at or before v: the row no later row of its key supersedes, probed through the primary key.
One row per (patient_id, provider_key).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, Connection, Select, and_, exists, false, func, insert, literal, not_, or_, select, true

from server.store.roster_schema import roster_member_versions, roster_members

m, h = roster_members.c, roster_member_versions.c
_STATE = ("inactive", "decision", "reason_code", "decided_by", "decided_us", "changed_by", "changed_us")
_COLUMNS = ("group_id", "version", "patient_id", "provider_key", "listed", *_STATE)


@dataclass(frozen=True)
class ListVersion:
    """A list at a version; `version` None: as it stands now."""

    group_id: str
    version: int | None = None

    @property
    def reference(self) -> str:
        suffix = f"/_history/{self.version}" if self.version is not None else ""
        return f"Group/{self.group_id}{suffix}"


def _copy(conn: Connection, version: int, where: list, removed_by: dict | None = None) -> None:
    values = [getattr(m, c) for c in _STATE]
    if removed_by is not None:  # the removal is the row's last change
        values[-2:] = [literal(removed_by["changed_by"]), literal(removed_by["changed_us"], BigInteger)]
    rows = select(m.group_id, literal(version), m.patient_id, func.coalesce(m.provider_ref, ""),
                  false() if removed_by is not None else true(), *values).where(*where)
    conn.execute(insert(roster_member_versions).from_select(_COLUMNS, rows))


def record_changes(conn: Connection, group_id: str, version: int, now_us: int) -> None:
    """The members this transaction added, changed or decided, as they are now, under `version`."""
    _copy(conn, version, [m.group_id == group_id, or_(m.changed_us == now_us, m.decided_us == now_us)])


def record_removal(conn: Connection, version: int, where: list, stamp: dict) -> None:
    """Members about to be deleted from an `open` list: a last row, not listed, saying who removed them."""
    _copy(conn, version, where, stamp)


def state(at: ListVersion) -> Select:
    """Per (patient, provider) the list's latest history row at or before `at.version` (any, when None),
    with `present`: listed and not inactive. Latest: no later row of the key within the versions, one probe
    of the primary key per row (a window over the list's history sorted the rows: SQLite, 100,000 members,
    0.27 s of CPU per state against 0.12 s)."""
    later = roster_member_versions.alias("later")
    within = [h.group_id == at.group_id]
    newer = [later.c.group_id == h.group_id, later.c.patient_id == h.patient_id,
             later.c.provider_key == h.provider_key, later.c.version > h.version]
    if at.version is not None:
        within.append(h.version <= at.version)
        newer.append(later.c.version <= at.version)
    present = and_(h.listed, not_(h.inactive)).label("present")
    return select(h.patient_id, h.provider_key, present, *(getattr(h, c) for c in _STATE)) \
        .where(*within, ~exists().where(*newer))
