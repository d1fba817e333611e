"""Risk adjustment segments (issue 20): each scored member's OREC, originally-disabled and long-term
institutional flags (`server/risk/schema.py`, risk_member).

Revision ID: 0120
Revises: 0020
Create Date: 2026-12-03 14:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0120"
down_revision = "0020"
branch_labels = None
depends_on = None

COLUMNS = ("orec", "orig_disabled", "institutional")


def upgrade() -> None:
    # 0020 creates risk_member from the live schema, which already has these columns: add what is missing.
    present = {c["name"] for c in sa.inspect(op.get_bind()).get_columns("risk_member")}
    columns = [sa.Column("orec", sa.String(1), nullable=False, server_default="0"),
               sa.Column("orig_disabled", sa.Boolean, nullable=False, server_default=sa.false()),
               sa.Column("institutional", sa.Boolean, nullable=False, server_default=sa.false())]
    missing = [c for c in columns if c.name not in present]
    if missing:
        with op.batch_alter_table("risk_member") as batch:
            for column in missing:
                batch.add_column(column)


def downgrade() -> None:
    with op.batch_alter_table("risk_member") as batch:
        for name in COLUMNS:
            batch.drop_column(name)
