"""Patient facts kept at write time (issue 19): `alignment_members`, one row per stored, non-deleted
Patient (birth-date bounds, OPWDD flag), and `alignment_member_codes`, its NY HARP status codes and
address states and ZIP codes, maintained by the alignment feature in each write transaction
(`server/alignment/patient_facts.py`) and read by the evaluation instead of `resources` and the Patient's
search-index rows.

Like 0934, the backfill needs the live search-parameter hashes, which a migration does not import: it asks
for the Patient birthdate parameter to be indexed anew (`reindex_request`), and the next server start
(or `planfit reindex`, or `planfit evaluate`) rebuilds it and then, set-based, these tables' rows.

Revision ID: 0950
Revises: 0934
Create Date: 2026-12-04 15:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.store.migrations.reindex import request_reindex

revision = "0950"
down_revision = "0934"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alignment_members",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("birth_lo", sa.BigInteger(), nullable=True),
        sa.Column("birth_hi", sa.BigInteger(), nullable=True),
        sa.Column("opwdd", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("patient_id"),
    )
    op.create_table(
        "alignment_member_codes",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=32), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
    )
    op.create_index("ix_alignment_member_codes_patient", "alignment_member_codes", ["patient_id"])
    request_reindex(op.get_bind(), {"Patient": ["birthdate"]})


def downgrade() -> None:
    op.drop_index("ix_alignment_member_codes_patient", table_name="alignment_member_codes")
    op.drop_table("alignment_member_codes")
    op.drop_table("alignment_members")
