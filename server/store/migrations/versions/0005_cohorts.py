"""Membership of the cohort Groups, with the Group version each member joined and left at.

Revision ID: 0005
Revises: 0001
Create Date: 2026-12-01 22:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "cohort_members",
        sa.Column("cohort_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("added_version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("removed_version", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("cohort_id", "patient_id", "added_version", postgresql_include=["removed_version"]),
    )
    op.create_index("ix_cohort_members_added", "cohort_members", ["cohort_id", "added_version"], unique=False)
    op.create_index("ix_cohort_members_removed", "cohort_members", ["cohort_id", "removed_version"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_cohort_members_removed", table_name="cohort_members")
    op.drop_index("ix_cohort_members_added", table_name="cohort_members")
    op.drop_table("cohort_members")
