"""Alignment rules v2 (issue 17, SPEC §4.3): the finding's kind, graded evidence with lifelong codes and
last-affirmed dates, recent coverage records (month-by-month dual status, the D-SNP deeming period, NY
HARP status codes), the stored rules version; index rows of the new search parameters.

Revision ID: 0017
Revises: 0016, 0003
Create Date: 2026-12-03 11:00:00

The v1 findings are deleted here, not rewritten: `alignment_rules` starts empty, so the first server
to start on the upgraded database re-evaluates every member (`AlignmentEngine.prepare`). That full
run notifies the cohort Groups like any evaluation, so a Group whose membership changed gets a new
version and `_history` keeps the v1 version: the drift is visible, never a silent rewrite.

The new parameters (Coverage and Patient `ny-harp-status`, Patient `opwdd`, Condition `asserted-date`) are indexed for the
resources already stored at the server's next start (`server/fhir/reindex.py` replaces a parameter's rows, never
doubles them).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.store.migrations.reindex import request_reindex

revision = "0017"
down_revision = ("0016", "0003")
branch_labels = None
depends_on = None

NEW_PARAMETERS = {"Coverage": ["ny-harp-status"], "Patient": ["ny-harp-status", "opwdd"], "Condition": ["asserted-date"]}
_FINDING_TABLES = ("findings", "finding_products", "finding_categories", "finding_evidence", "finding_coverage")


def upgrade() -> None:
    for table in _FINDING_TABLES:
        op.execute(f"DELETE FROM {table}")
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=64), nullable=True))
    with op.batch_alter_table("finding_evidence") as batch:
        batch.add_column(sa.Column("grade", sa.String(length=64), nullable=False, server_default="qualifying"))
        batch.add_column(sa.Column("lifelong", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("affirmed_lo", sa.BigInteger(), nullable=False, server_default="0"))
    with op.batch_alter_table("finding_coverage") as batch:
        batch.add_column(sa.Column("current", sa.Boolean(), nullable=False, server_default=sa.true()))
        batch.add_column(sa.Column("period_lo", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("period_hi", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("harp_status", sa.String(length=64), nullable=True))
    op.create_table(
        "alignment_rules",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    request_reindex(op.get_bind(), NEW_PARAMETERS)


def downgrade() -> None:
    op.drop_table("alignment_rules")
    for table in _FINDING_TABLES:
        op.execute(f"DELETE FROM {table}")
    with op.batch_alter_table("finding_coverage") as batch:
        for column in ("harp_status", "period_hi", "period_lo", "current"):
            batch.drop_column(column)
    with op.batch_alter_table("finding_evidence") as batch:
        for column in ("affirmed_lo", "lifelong", "grade"):
            batch.drop_column(column)
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("kind")
