"""`ix_projection_results_tin` gains `patient_id`: a re-projection's list of a TIN joins the previous run's
rows of that TIN by patient, and with only (run_id, tin) in the index each probe scanned the whole TIN's
list (SQLite's plan: a nested loop of ~2,900 × ~2,900 rows per TIN, 8 of the 9 CPU seconds of a
re-projection of 20,000 beneficiaries). The wider index still serves every (run_id, tin) lookup.

Revision ID: 0953
Revises: 0950 (and depends on 0023, which made the index)
Create Date: 2026-12-04 18:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0953"
down_revision = "0950"
branch_labels = None
depends_on = "0023"  # the index it widens


def upgrade() -> None:
    op.drop_index("ix_projection_results_tin", table_name="projection_results")
    op.create_index("ix_projection_results_tin", "projection_results", ["run_id", "tin", "patient_id"])


def downgrade() -> None:
    op.drop_index("ix_projection_results_tin", table_name="projection_results")
    op.create_index("ix_projection_results_tin", "projection_results", ["run_id", "tin"])
