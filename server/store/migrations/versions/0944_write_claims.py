"""Writes that run side by side (issue 19): the claims table that replaces the global writer lock for
conditional creates and read-modify-write of one resource on PostgreSQL.

A write transaction inserts a row per key it claims (a resource it reads before writing, a conditional
query) and deletes it again before it commits: a second transaction claiming the same key waits on the
unique index until the first ends, then sees what it wrote. UNLOGGED: rows live only inside a
transaction, so nothing is lost when a crash empties the table. SQLite keeps its single writer (the
`write_counter` row and BEGIN IMMEDIATE) and never claims; the table is created there only so both
databases have one schema.

From this revision a PostgreSQL write's txid is its transaction id (xid8) plus an offset: it must exceed
every txid written before, which the offset of 0954, raised at start-up when needed, keeps so (a database
with counter-numbered txids, or restored into a younger cluster, may be ahead of the transaction ids).

Revision ID: 0944
Revises: 0018
Create Date: 2026-12-04 15:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0944"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    op.create_table(
        "write_claims",
        sa.Column("claim", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("claim"),
        prefixes=["UNLOGGED"] if bind.dialect.name == "postgresql" else [],
    )


def downgrade() -> None:
    op.drop_table("write_claims")
