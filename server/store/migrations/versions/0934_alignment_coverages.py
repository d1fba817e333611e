"""Coverage facts kept at write time (issue 19): `alignment_coverages`, one row per current active Coverage
naming a Patient as beneficiary (period, dual status, NY HARP status, aid category), and
`alignment_coverage_codes`, its plan class values and type codings, maintained by the alignment feature
in each write transaction (`server/alignment/coverage_facts.py`) and read by the evaluation instead of
the index tables.

Like 0811, the backfill needs the live search-parameter hashes, which a migration does not import: it asks
for the Coverage beneficiary parameter to be indexed anew (`reindex_request`), and the next server start
(or `planfit reindex`) rebuilds it and then, set-based from the index tables, these tables' rows.

Revision ID: 0934
Revises: 0811
Create Date: 2026-12-04 12:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.store.migrations.reindex import request_reindex

revision = "0934"
down_revision = "0811"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alignment_coverages",
        sa.Column("rid", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("period_lo", sa.BigInteger(), nullable=True),
        sa.Column("period_hi", sa.BigInteger(), nullable=True),
        sa.Column("dual_code", sa.Text(), nullable=True),
        sa.Column("harp_status", sa.Text(), nullable=True),
        sa.Column("aid_category", sa.Text(), nullable=True),
    )
    op.create_index("ix_alignment_coverages_rid", "alignment_coverages", ["rid"])
    op.create_index("ix_alignment_coverages_patient", "alignment_coverages", ["patient_id"])
    op.create_table(
        "alignment_coverage_codes",
        sa.Column("rid", sa.String(length=64), nullable=False),
        sa.Column("param", sa.String(length=16), nullable=False),
        sa.Column("system", sa.Text(), nullable=True),
        sa.Column("code", sa.Text(), nullable=True),
    )
    op.create_index("ix_alignment_coverage_codes_rid", "alignment_coverage_codes", ["rid"])
    request_reindex(op.get_bind(), {"Coverage": ["beneficiary"]})


def downgrade() -> None:
    op.drop_index("ix_alignment_coverage_codes_rid", table_name="alignment_coverage_codes")
    op.drop_table("alignment_coverage_codes")
    op.drop_index("ix_alignment_coverages_patient", table_name="alignment_coverages")
    op.drop_index("ix_alignment_coverages_rid", table_name="alignment_coverages")
    op.drop_table("alignment_coverages")
