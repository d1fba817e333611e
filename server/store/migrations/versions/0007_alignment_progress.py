"""Alignment progress: the write-counter watermark the findings reflect, and the writes above it that
were evaluated (see `server/store/alignment_schema.py`).

Revision ID: 0007
Revises: 0001
Create Date: 2026-12-01 22:00:00

An existing database starts with the watermark at its current write counter: its findings were kept
by the after-commit evaluations so far, and nothing older is evaluated again at the next start.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alignment_watermark",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.execute("INSERT INTO alignment_watermark (id, txid) SELECT 1, value FROM write_counter WHERE id = 1")
    op.create_table(
        "alignment_evaluated",
        sa.Column("txid", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.PrimaryKeyConstraint("txid"),
    )


def downgrade() -> None:
    op.drop_table("alignment_evaluated")
    op.drop_table("alignment_watermark")
