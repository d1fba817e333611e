"""Claim-line facts and the Patient's gender kept at write time (issue 19): `alignment_claim_lines`, one row
per distinct line code of the current active, dated Claims and ExplanationOfBenefits naming a Patient (read
by the HARP risk factors), and `alignment_members.gender` (read by the risk engine's demographic cells),
maintained by the alignment feature in each write transaction (`server/alignment/claim_facts.py`,
`patient_facts.py`) instead of being read from the search-index tables at evaluation.

Like 0950, the backfill needs the live search-parameter hashes, which a migration does not import: it asks
for the claims' `service` and the Patient's `gender` parameters to be indexed anew (`reindex_request`), and
the next server start (or `planfit reindex`, or `planfit evaluate`) rebuilds them and then, set-based,
these rows for every claim and Patient.

Revision ID: 0951
Revises: 0950
Create Date: 2026-12-04 18:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.store.migrations.reindex import request_reindex

revision = "0951"
down_revision = "0950"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("alignment_members", sa.Column("gender", sa.String(length=16), nullable=True))
    op.create_table(
        "alignment_claim_lines",
        sa.Column("rtype", sa.String(length=64), nullable=False),
        sa.Column("rid", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("code", sa.Text(), nullable=False),
        sa.Column("service_lo", sa.BigInteger(), nullable=False),
        sa.Column("service_hi", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_alignment_claim_lines_res", "alignment_claim_lines", ["rtype", "rid"])
    op.create_index("ix_alignment_claim_lines_patient", "alignment_claim_lines", ["patient_id"])
    op.create_index("ix_alignment_claim_lines_code", "alignment_claim_lines", ["code"])
    request_reindex(op.get_bind(), {"Patient": ["gender"], "Claim": ["service"], "ExplanationOfBenefit": ["service"]})


def downgrade() -> None:
    op.drop_index("ix_alignment_claim_lines_code", table_name="alignment_claim_lines")
    op.drop_index("ix_alignment_claim_lines_patient", table_name="alignment_claim_lines")
    op.drop_index("ix_alignment_claim_lines_res", table_name="alignment_claim_lines")
    op.drop_table("alignment_claim_lines")
    op.drop_column("alignment_members", "gender")
