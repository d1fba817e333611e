"""Medicare entitlement kept with the coverage facts (issue 19): `alignment_coverages` gains the original
reason for entitlement (`orec`) and the long-term institutional flag (`institutional`), raw as the Coverage
extensions' index tokens hold them, maintained with the other coverage facts in each write transaction
(`server/alignment/coverage_facts.py`) and read by the risk engine instead of pivoting the index rows.

Like 0934, the backfill needs the live search-parameter hashes, which a migration does not import: it asks
for the Coverage beneficiary parameter to be indexed anew (`reindex_request`), and the next server start
(or `planfit reindex`) rebuilds every Coverage's row, these columns included.

Revision ID: 0957
Revises: 0951
Create Date: 2026-12-04 21:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.store.migrations.reindex import request_reindex

revision = "0957"
down_revision = "0951"
branch_labels = None
depends_on = None

COLUMNS = ("orec", "institutional")


def upgrade() -> None:
    for name in COLUMNS:
        op.add_column("alignment_coverages", sa.Column(name, sa.Text(), nullable=True))
    request_reindex(op.get_bind(), {"Coverage": ["beneficiary"]})


def downgrade() -> None:
    with op.batch_alter_table("alignment_coverages") as batch:  # SQLite drops a column by copying the table
        for name in COLUMNS:
            batch.drop_column(name)
