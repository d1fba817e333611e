"""Finding plans (issue 22, the worklist's plan filter): the lower-cased plan codes of each member's coverages,
written by the evaluation that writes the finding. Existing findings get their rows from the re-evaluation of
every member at start-up that the rules version bump (`RULES` v2.2 in server/alignment/rules.py) asks for.

Revision ID: 0622
Revises: 0517 (it sits next to `findings`, whose latest change 0517 is)
Create Date: 2026-12-03 22:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0622"
down_revision = "0517"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "finding_plans",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("plan", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("patient_id", "plan"),
    )
    op.create_index("ix_finding_plans_plan", "finding_plans", ["plan", "patient_id"])


def downgrade() -> None:
    op.drop_index("ix_finding_plans_plan", table_name="finding_plans")
    op.drop_table("finding_plans")
