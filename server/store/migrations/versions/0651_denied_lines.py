"""Denied lines read at write time (issue 22, the denial root cause's speed): each current
ExplanationOfBenefit's denied lines (`audit_denied_lines`) and the EOB version they were read from
(`audit_denial_sources`), server/store/audit_schema.py. Empty here: the next `$denial-root-cause` reads the
EOBs the tables do not yet hold (every EOB, once), later writes keep them current.

Revision ID: 0651
Revises: 0022 (the audit tables)
Create Date: 2026-12-04 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0651"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_denied_lines",
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
        sa.PrimaryKeyConstraint("eob_id", "sequence"),
    )
    op.create_table(
        "audit_denial_sources",
        sa.Column("eob_id", sa.String(length=64), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("eob_id"),
    )


def downgrade() -> None:
    op.drop_table("audit_denial_sources")
    op.drop_table("audit_denied_lines")
