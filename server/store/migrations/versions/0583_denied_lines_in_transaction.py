"""Denied lines kept in the write's transaction (issue 22): `audit_denied_lines` is now rebuilt by the audit
feature's IN_TRANSACTION hook (`server/audit/denials.py` `maintain_lines`), so it commits or rolls back with
the ExplanationOfBenefit and needs no record of the EOB version it was read from: `audit_denial_sources`
goes. The backfill (and the lines of any EOB whose after-commit read never ran) needs the live code, which a
migration does not import: it asks for an ExplanationOfBenefit parameter to be indexed anew
(`reindex_request`), and the next server start (or `planfit reindex`) then rebuilds every EOB's lines.

Revision ID: 0583
Revises: 0651
Create Date: 2026-12-04 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.store.migrations.reindex import request_reindex

revision = "0583"
down_revision = "0651"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_table("audit_denial_sources")
    request_reindex(op.get_bind(), {"ExplanationOfBenefit": ["status"]})


def downgrade() -> None:
    op.create_table(
        "audit_denial_sources",
        sa.Column("eob_id", sa.String(length=64), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("eob_id"),
    )
