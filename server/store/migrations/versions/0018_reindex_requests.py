"""Reindex requests: the table where migrations that add search parameters ask the server to index
them for the resources already stored (`server/store/migrations/reindex.py`), so no migration runs
live extraction code. 0003 and 0017 create it when they run on an older database; this revision
creates it on databases that passed them before it existed.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 14:30:00
"""

from __future__ import annotations

from alembic import op

from server.store.migrations.reindex import reindex_request

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    reindex_request.create(op.get_bind(), checkfirst=True)


def downgrade() -> None:
    reindex_request.drop(op.get_bind(), checkfirst=True)
