"""Claims-based alignment projection (issue 23): the tables of `server/projection/schema.py`.

Revision ID: 0023
Revises: 0021 (the projection writes its Groups' members into `roster_members`)
Create Date: 2026-12-03 14:30:00
"""

from __future__ import annotations

from alembic import op

from server.projection.schema import TABLES

revision = "0023"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    for table in TABLES:
        table.create(bind)


def downgrade() -> None:
    bind = op.get_bind()
    for table in reversed(TABLES):
        table.drop(bind)
