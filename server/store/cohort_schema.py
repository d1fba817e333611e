"""Membership of the server-maintained cohort Groups (SPEC §5), one row per membership spell.

A row says: this patient joined the cohort at Group version `added_version` and left it at
`removed_version` (NULL while still a member). Group version v therefore lists the rows with
`added_version <= v` and `removed_version` NULL or `>= v` (those with `removed_version = v` are the
members dropped by v, shown once with `inactive=true`), so every version can be read back without a
copy of the member list per version. A patient who leaves and comes back gets a new row. The times
(`member.period`) are the `lastUpdated` of those Group versions, kept with the versions themselves.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, Integer, PrimaryKeyConstraint, String, Table

from server.store.alignment_schema import CODE_LEN
from server.store.schema import ID_LEN, metadata

cohort_members = Table(
    "cohort_members",
    metadata,
    Column("cohort_id", String(CODE_LEN), nullable=False),
    Column("patient_id", String(ID_LEN), nullable=False),
    Column("added_version", Integer, nullable=False, autoincrement=False),
    Column("removed_version", Integer, nullable=True),
    # A Group version is listed in key order. On PostgreSQL the key index carries every listed column,
    # so the listing is an index-only scan instead of one random heap page per member.
    PrimaryKeyConstraint("cohort_id", "patient_id", "added_version",
                         postgresql_include=["removed_version"]),
    # The members a version added, and those it dropped (to index and un-index them for `member`).
    Index("ix_cohort_members_added", "cohort_id", "added_version"),
    Index("ix_cohort_members_removed", "cohort_id", "removed_version"),
)
