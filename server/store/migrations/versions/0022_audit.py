"""Audit (issue 22): the worklist's index over the findings, the quarterly enrollment audit's
snapshots and the denial root-cause results (server/store/audit_schema.py).

Revision ID: 0022
Revises: 0020, 0003 (it indexes `findings`, created by 0003 on another branch of the chain)
Create Date: 2026-12-03 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = ("0020", "0003")
branch_labels = None
depends_on = None

NO_IMPACT = -(2**62)  # server/store/audit_schema.py


def upgrade() -> None:
    op.create_index("ix_findings_worklist", "findings",
                    [sa.text(f"COALESCE(annual_impact_cents, {NO_IMPACT})"), "patient_id"])
    op.create_table(
        "audit_quarters",
        sa.Column("quarter", sa.String(length=6), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("taken_at", sa.BigInteger(), nullable=False),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("quarter"),
    )
    op.create_table(
        "audit_quarter_members",
        sa.Column("quarter", sa.String(length=6), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("enrolled_product", sa.String(length=64), nullable=True),
        sa.Column("recommended_product", sa.String(length=64), nullable=True),
        sa.Column("line_of_business", sa.String(length=64), nullable=True),
        sa.Column("annual_impact_cents", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("quarter", "patient_id"),
    )


    op.create_table(
        "audit_denials",
        sa.Column("eob_id", sa.String(length=64), nullable=False),
        sa.Column("sequence", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("service_date", sa.Date(), nullable=False),
        sa.Column("procedure", sa.String(length=64), nullable=True),
        sa.Column("revenue", sa.String(length=64), nullable=True),
        sa.Column("place_of_service", sa.String(length=64), nullable=True),
        sa.Column("carc", sa.String(length=64), nullable=False),
        sa.Column("rarc", sa.String(length=64), nullable=True),
        sa.Column("submitted_cents", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("finding_status", sa.String(length=64), nullable=True),
        sa.Column("enrolled_product", sa.String(length=64), nullable=True),
        sa.Column("recommended_product", sa.String(length=64), nullable=True),
        sa.Column("classification", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("eob_id", "sequence"),
    )
    op.create_index("ix_audit_denials_patient", "audit_denials", ["patient_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_denials_patient", table_name="audit_denials")
    op.drop_table("audit_denials")
    op.drop_table("audit_quarter_members")
    op.drop_table("audit_quarters")
    op.drop_index("ix_findings_worklist", table_name="findings")
