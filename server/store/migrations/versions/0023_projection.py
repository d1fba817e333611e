"""Claims-based alignment projection (issue 23): the tables of `server/projection/schema.py`,
as defined at this revision (written out here, not imported: a migration keeps the tables of its time).

Revision ID: 0023
Revises: 0021 (the projection writes its Groups' members into `roster_members`)
Create Date: 2026-12-03 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0021"
branch_labels = None
depends_on = None

TABLES = ("projection_claims", "projection_beneficiaries", "projection_runs", "projection_results")


def upgrade() -> None:
    op.create_table(
        "projection_claims",
        sa.Column("aco", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("tin", sa.String(length=16), nullable=False),
        sa.Column("npi", sa.String(length=16), nullable=False),
        sa.Column("hcpcs", sa.String(length=16), nullable=False),
        sa.Column("service_date", sa.String(length=10), nullable=False),
        sa.Column("allowed_cents", sa.BigInteger(), nullable=False),
        sa.Column("specialist", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_projection_claims", "projection_claims", ["aco", "patient_id"])
    op.create_table(
        "projection_beneficiaries",
        sa.Column("aco", sa.String(length=64), nullable=False, primary_key=True, autoincrement=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False, primary_key=True, autoincrement=False),
        sa.Column("part_a", sa.Boolean(), nullable=False),
        sa.Column("part_b", sa.Boolean(), nullable=False),
        sa.Column("medicare_advantage", sa.Boolean(), nullable=False),
        sa.Column("medicare_secondary", sa.Boolean(), nullable=False),
        sa.Column("us_resident", sa.Boolean(), nullable=False),
        sa.Column("aligned_elsewhere", sa.Boolean(), nullable=False),
        sa.Column("voluntary_tin", sa.String(length=16), nullable=True),
        sa.Column("voluntary_npi", sa.String(length=16), nullable=True),
    )
    op.create_table(
        "projection_runs",
        sa.Column("run_id", sa.Integer(), nullable=False, primary_key=True, autoincrement=True),
        sa.Column("aco", sa.String(length=64), nullable=False),
        sa.Column("performance_year", sa.Integer(), nullable=False),
        sa.Column("participants", sa.Text(), nullable=False),
        sa.Column("period_start", sa.String(length=10), nullable=False),
        sa.Column("period_end", sa.String(length=10), nullable=False),
        sa.Column("created_us", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_projection_runs", "projection_runs", ["aco", "run_id"])
    op.create_table(
        "projection_results",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("tin", sa.String(length=16), nullable=False),
        sa.Column("npi", sa.String(length=16), nullable=True),
        sa.Column("basis", sa.String(length=16), nullable=False),
        sa.Column("weighted_cents", sa.BigInteger(), nullable=False),
        sa.Column("participant", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_projection_results", "projection_results", ["run_id", "patient_id"])
    op.create_index("ix_projection_results_tin", "projection_results", ["run_id", "tin"])


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
