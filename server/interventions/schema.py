"""The entries of each stored priority List, one row per participant, so the Task checks are joins
(`checks.py`) instead of a walk over the List's JSON. The List resource stays the record: these rows are
written once, in the same transaction as the List, and never change (a week's list is immutable)."""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Integer, String, Table

from server.store.schema import ID_LEN, metadata

TIER_LEN = 32
DATE_LEN = 10  # YYYY-MM-DD

intervention_entries = Table(
    "intervention_entries",
    metadata,
    Column("list_id", String(ID_LEN), primary_key=True),
    Column("patient_id", String(ID_LEN), primary_key=True),
    Column("rank", Integer, nullable=False),
    Column("tier", String(TIER_LEN), nullable=False),
    Column("high_priority", Boolean, nullable=False),
    Column("due_day", Integer, nullable=False),  # the tier's due date, days since 1970-01-01
    Column("due_date", String(DATE_LEN), nullable=False),
)
