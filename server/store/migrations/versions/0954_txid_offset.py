"""The amount PostgreSQL adds to a write's transaction id to number its versions (issue 19): zero until a
database is restored into a cluster whose transaction ids are behind the stored txids, when the start-up
raises it (`server.store.db.migrate`) so new versions still number after every stored one.

Revision ID: 0954
Revises: 0944
Create Date: 2026-12-04 18:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0954"
down_revision = "0944"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "txid_offset",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(sa.table("txid_offset", sa.column("id", sa.Integer), sa.column("value", sa.BigInteger)),
                   [{"id": 1, "value": 0}])


def downgrade() -> None:
    op.drop_table("txid_offset")
