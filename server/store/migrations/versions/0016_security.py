"""Security (issue 16): export jobs owned by (client, user, patient context), a per-client index on
export jobs for the in-flight cap, and the failed sign-in counters of login throttling.

Revision ID: 0016
Revises: 0004
Create Date: 2026-12-03 09:00:00

Jobs started before the upgrade keep a NULL user and patient: only a token of their client without
a user or patient context (a Backend Services token) can reach them, which is who could start them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("bulk_jobs") as batch:
        batch.add_column(sa.Column("username", sa.Text(), nullable=True))
        batch.add_column(sa.Column("patient", sa.Text(), nullable=True))
    op.create_index("ix_bulk_jobs_client", "bulk_jobs", ["client_id", "status"])
    op.create_table(
        "auth_login_failures",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("window_start_us", sa.BigInteger(), nullable=False),
        sa.Column("locked_until_us", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )


def downgrade() -> None:
    op.drop_table("auth_login_failures")
    op.drop_index("ix_bulk_jobs_client", table_name="bulk_jobs")
    with op.batch_alter_table("bulk_jobs") as batch:
        batch.drop_column("patient")
        batch.drop_column("username")
