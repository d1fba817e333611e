"""Risk adjustment (issue 20): the CMS-HCC model tables and the per-member risk tables
(`server/risk/schema.py`).

Revision ID: 0020
Revises: 0016
Create Date: 2026-12-03 11:30:00
"""

from __future__ import annotations

from alembic import op

from server.risk.schema import MEMBER_TABLES, MODEL_TABLES, risk_model_state

revision = "0020"
down_revision = "0016"
branch_labels = None
depends_on = None

TABLES = (risk_model_state, *MODEL_TABLES, *MEMBER_TABLES)


def upgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(TABLES):
        table.drop(bind)
