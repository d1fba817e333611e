"""Rate cells (SPEC §4.3, issue 17): each finding names the rate cell its impact used for the recommended and
the enrolled product (`product/region/segment`, `*` for a part the cell leaves out, or a product code for the
product's own PMPM). The rules version changes with it, so every member is re-evaluated at start.

Revision ID: 0517
Revises: 0017
Create Date: 2026-12-03 21:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0517"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("recommended_rate_cell", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("enrolled_rate_cell", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("enrolled_rate_cell")
        batch.drop_column("recommended_rate_cell")
