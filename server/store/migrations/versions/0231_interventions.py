"""Intervention priority lists (issue 23 items 1-2): the entries table of `server/interventions/schema.py`
(written out here: a migration keeps the tables of its time), and index rows of the search parameters the
list and the Task checks read (place of service on claims, open care-plan activities, Task due date and
barrier) for resources stored before them.

Revision ID: 0231
Revises: 0121
Create Date: 2026-12-03 18:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.store.migrations.reindex import request_reindex

revision = "0231"
down_revision = "0121"
branch_labels = None
depends_on = None

NEW_PARAMETERS = {"Claim": ["place-of-service"], "ExplanationOfBenefit": ["place-of-service"],
                  "CarePlan": ["open-activity-date", "unstarted-activity-date"], "Task": ["due-date", "barrier"]}


def upgrade() -> None:
    op.create_table(
        "intervention_entries",
        sa.Column("list_id", sa.String(length=64), primary_key=True),
        sa.Column("patient_id", sa.String(length=64), primary_key=True),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("tier", sa.String(length=32), nullable=False),
        sa.Column("high_priority", sa.Boolean(), nullable=False),
        sa.Column("due_day", sa.Integer(), nullable=False),
        sa.Column("due_date", sa.String(length=10), nullable=False),
    )
    request_reindex(op.get_bind(), NEW_PARAMETERS)


def downgrade() -> None:
    op.drop_table("intervention_entries")
