"""Attribution rosters (issue 21): the members of client-managed ATR Groups and the payer files imported.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "roster_members",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("member_system", sa.Text(), nullable=True),
        sa.Column("member_value", sa.Text(), nullable=True),
        sa.Column("provider_ref", sa.String(length=200), nullable=True),
        sa.Column("provider_npi", sa.String(length=64), nullable=True),
        sa.Column("coverage_id", sa.String(length=64), nullable=True),
        sa.Column("period_start", sa.String(length=10), nullable=True),
        sa.Column("period_end", sa.String(length=10), nullable=True),
        sa.Column("inactive", sa.Boolean(), nullable=False),
        sa.Column("change_type", sa.String(length=64), nullable=False),
        sa.Column("decision", sa.String(length=64), nullable=True),
        sa.Column("reason_system", sa.Text(), nullable=True),
        sa.Column("reason_code", sa.String(length=64), nullable=True),
        sa.Column("reviewer", sa.String(length=200), nullable=True),
        sa.Column("review_date", sa.String(length=10), nullable=True),
        sa.Column("owner", sa.String(length=200), nullable=True),
        sa.Column("deadline", sa.String(length=10), nullable=True),
        sa.Column("checkpoint", sa.String(length=10), nullable=True),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("decided_us", sa.BigInteger(), nullable=True),
        sa.Column("changed_by", sa.Text(), nullable=True),
        sa.Column("changed_us", sa.BigInteger(), nullable=True),
        sa.Column("stated_authorization", sa.String(length=64), nullable=True),
        sa.Column("stated_category", sa.String(length=64), nullable=True),
        sa.Column("stated_exclusion", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_roster_members_patient", "roster_members", ["group_id", "patient_id"])
    op.create_index("ix_roster_members_member", "roster_members", ["group_id", "member_value"])
    op.create_index("ix_roster_members_decision", "roster_members", ["group_id", "decision", "reason_code"])
    op.create_table(
        "roster_imports",
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.Text(), nullable=True),
        sa.Column("file_format", sa.String(length=64), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.Column("imported_by", sa.Text(), nullable=True),
        sa.Column("imported_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "sha256"),
    )
    op.create_table(
        "roster_file_rows",
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("row_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("participant_id", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("attribution_date", sa.String(length=10), nullable=True),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("authorization", sa.String(length=64), nullable=True),
        sa.Column("exclusion", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("group_id", "sha256", "row_no"),
    )


def downgrade() -> None:
    op.drop_table("roster_file_rows")
    op.drop_table("roster_imports")
    op.drop_index("ix_roster_members_decision", table_name="roster_members")
    op.drop_index("ix_roster_members_member", table_name="roster_members")
    op.drop_index("ix_roster_members_patient", table_name="roster_members")
    op.drop_table("roster_members")
