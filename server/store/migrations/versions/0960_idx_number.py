"""Number search parameters (issue 19 item 5: `_sort` on every number parameter): the `idx_number` index
table, one row per value of an R4 number parameter (ChargeItem `factor-override`, the four MolecularSequence
positions, RiskAssessment `probability`), and a reindex request for those parameters, so resources stored
before this migration are found and sorted by them after the next start (or `planfit reindex`).

Revision ID: 0960
Revises: 0957
Create Date: 2026-12-05 03:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.store.migrations.reindex import request_reindex

revision = "0960"
down_revision = "0957"
branch_labels = None
depends_on = None

NUMBER_PARAMETERS = {
    "ChargeItem": ["factor-override"],
    "MolecularSequence": ["variant-end", "variant-start", "window-end", "window-start"],
    "RiskAssessment": ["probability"],
}


def upgrade() -> None:
    op.create_table(
        "idx_number",
        sa.Column("rtype", sa.String(length=64), nullable=False),
        sa.Column("rid", sa.String(length=64), nullable=False),
        sa.Column("h_param", sa.BigInteger(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
    )
    op.create_index("ix_number_value", "idx_number", ["h_param", "value"])
    op.create_index("ix_number_res", "idx_number", ["rtype", "rid", "h_param"])
    request_reindex(op.get_bind(), NUMBER_PARAMETERS)


def downgrade() -> None:
    op.drop_index("ix_number_res", table_name="idx_number")
    op.drop_index("ix_number_value", table_name="idx_number")
    op.drop_table("idx_number")
