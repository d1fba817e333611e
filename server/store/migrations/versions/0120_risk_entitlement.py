"""Risk adjustment (issue 20): each scored member's OREC, originally-disabled and long-term institutional
flags (risk_member), and whether a diagnosis's claim is still pending adjudication (risk_dx);
`server/risk/schema.py`.

Revision ID: 0120
Revises: 0020
Create Date: 2026-12-03 14:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.store.migrations.reindex import request_reindex

revision = "0120"
down_revision = "0020"
branch_labels = None
depends_on = None


ADDED = {
    "risk_member": (sa.Column("orec", sa.String(1), nullable=False, server_default="0"),
                    sa.Column("orig_disabled", sa.Boolean, nullable=False, server_default=sa.false()),
                    sa.Column("institutional", sa.Boolean, nullable=False, server_default=sa.false())),
    "risk_dx": (sa.Column("pending", sa.Boolean, nullable=False, server_default=sa.false()),),
}
NEW_PARAMETERS = {"Coverage": ["medicare-entitlement-reason", "long-term-institutional"],
                  "ExplanationOfBenefit": ["outcome"]}


def upgrade() -> None:
    # 0020 creates the tables from the live schema, which already has these columns: add what is missing.
    inspector = sa.inspect(op.get_bind())
    for table, columns in ADDED.items():
        present = {c["name"] for c in inspector.get_columns(table)}
        missing = [c for c in columns if c.name not in present]
        if missing:
            with op.batch_alter_table(table) as batch:
                for column in missing:
                    batch.add_column(column)
    # The search parameters the scores read, for resources stored before them (built at the next start).
    request_reindex(op.get_bind(), NEW_PARAMETERS)


def downgrade() -> None:
    for table, columns in ADDED.items():
        with op.batch_alter_table(table) as batch:
            for column in columns:
                batch.drop_column(column.name)
