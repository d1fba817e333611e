"""The plans a finding names (SPEC §4.3, issue 17): `findings.enrolled_plan` and `findings.recommended_plan`,
the InsurancePlan ids chosen in SQL (`server/alignment/plan_choice.py`): the enrolled plan from the Coverage
or, when it names only the product, from the member's service area, else null (reason
`enrolled-plan-unknown`). The rules version changes with it (v2.3), so every member is re-evaluated at start.

Revision ID: 0717
Revises: 0622
Create Date: 2026-12-04 02:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0717"
down_revision = "0622"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("enrolled_plan", sa.String(length=64), nullable=True))
        batch.add_column(sa.Column("recommended_plan", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("recommended_plan")
        batch.drop_column("enrolled_plan")
