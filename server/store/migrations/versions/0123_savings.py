"""Benchmark, savings and payment assurance (issue 23 item 4): the tables of `server/savings/schema.py`,
as defined at this revision (written out here, not imported: a migration keeps the tables of its time).

Revision ID: 0123
Revises: 0023 (the savings inputs sit beside the projection's, keyed by the same ACO id)
Create Date: 2026-12-03 18:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0123"
down_revision = "0023"
branch_labels = None
depends_on = None

TABLES = ("savings_contracts", "savings_beneficiaries", "savings_claims")


def upgrade() -> None:
    op.create_table(
        "savings_contracts",
        sa.Column("aco", sa.String(length=64), nullable=False, primary_key=True, autoincrement=False),
        sa.Column("performance_year", sa.Integer(), nullable=False),
        sa.Column("program", sa.String(length=16), nullable=False),
        sa.Column("track", sa.String(length=16), nullable=True),
        sa.Column("corridor_bp", sa.Integer(), nullable=True),
        sa.Column("base_rate_cents", sa.BigInteger(), nullable=False),
        sa.Column("reference_risk", sa.Integer(), nullable=False),
        sa.Column("pmpm_cents", sa.BigInteger(), nullable=True),
        sa.Column("loaded_us", sa.BigInteger(), nullable=False),
    )
    op.create_table(
        "savings_beneficiaries",
        sa.Column("aco", sa.String(length=64), nullable=False, primary_key=True, autoincrement=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False, primary_key=True, autoincrement=False),
        sa.Column("basis", sa.String(length=16), nullable=False),
        sa.Column("months", sa.Integer(), nullable=False),
        sa.Column("risk", sa.Integer(), nullable=False),
    )
    op.create_table(
        "savings_claims",
        sa.Column("aco", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("service_date", sa.String(length=10), nullable=False),
        sa.Column("received_date", sa.String(length=10), nullable=False),
        sa.Column("service_month", sa.Integer(), nullable=False),
        sa.Column("received_month", sa.Integer(), nullable=False),
        sa.Column("paid_cents", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_savings_claims", "savings_claims", ["aco", "service_month"])


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
