"""Diagnosis facts kept at write time (issue 19): `alignment_diagnoses`, one row per diagnosis coding of the
current Conditions, Claims and ExplanationOfBenefits, maintained by the alignment feature in each write
transaction (`server/alignment/diagnoses.py`) and read by the evaluation instead of the index tables.

The backfill needs the live search-parameter hashes, which a migration does not import: it asks for the
diagnosis code parameters to be indexed anew (`reindex_request`), and the next server start (or
`planfit reindex`) rebuilds them and then, set-based from the index tables, this table's rows.

Revision ID: 0811
Revises: 0717
Create Date: 2026-12-04 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.store.migrations.reindex import request_reindex

revision = "0811"
down_revision = "0717"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alignment_diagnoses",
        sa.Column("rtype", sa.String(length=64), nullable=False),
        sa.Column("rid", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("h_code", sa.BigInteger(), nullable=False),
        sa.Column("system", sa.Text(), nullable=True),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("source_kind", sa.String(length=64), nullable=False),
        sa.Column("reported", sa.Boolean(), nullable=True),
        sa.Column("recorded_lo", sa.BigInteger(), nullable=True),
        sa.Column("onset_lo", sa.BigInteger(), nullable=True),
        sa.Column("abated_hi", sa.BigInteger(), nullable=True),
        sa.Column("affirmed_lo", sa.BigInteger(), nullable=True),
        sa.Column("created_lo", sa.BigInteger(), nullable=True),
        sa.Column("service_lo", sa.BigInteger(), nullable=True),
        sa.Column("withdrawn", sa.Boolean(), nullable=True),
        sa.Column("uncertain", sa.Boolean(), nullable=True),
        sa.Column("inactive", sa.Boolean(), nullable=True),
        sa.Column("problem_list", sa.Boolean(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=True),
    )
    op.create_index("ix_alignment_diagnoses_res", "alignment_diagnoses", ["rtype", "rid"])
    op.create_index("ix_alignment_diagnoses_patient", "alignment_diagnoses", ["patient_id"])
    request_reindex(op.get_bind(), {"Condition": ["code"], "Claim": ["diagnosis"], "ExplanationOfBenefit": ["diagnosis"]})


def downgrade() -> None:
    op.drop_index("ix_alignment_diagnoses_patient", table_name="alignment_diagnoses")
    op.drop_index("ix_alignment_diagnoses_res", table_name="alignment_diagnoses")
    op.drop_table("alignment_diagnoses")
