"""Medicaid aid category (SPEC §4.3 rate cells, issue 17): `finding_coverage` records the aid category of each
coverage (its `class` of type `class`, trimmed, lower case), which selects the member's aid-category rate
cell. Coverages stored before are indexed for the new `aid-category` search parameter at the next start; the
rules version changes with rates.json, so every member is re-evaluated then and the column filled.

Revision ID: 0571
Revises: 0517
Create Date: 2026-12-03 21:55:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.store.migrations.reindex import request_reindex

revision = "0571"
down_revision = "0517"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("finding_coverage") as batch:
        batch.add_column(sa.Column("aid_category", sa.String(length=64), nullable=True))
    request_reindex(op.get_bind(), {"Coverage": ["aid-category"]})


def downgrade() -> None:
    with op.batch_alter_table("finding_coverage") as batch:
        batch.drop_column("aid_category")
