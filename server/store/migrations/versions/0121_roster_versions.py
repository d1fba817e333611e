"""Roster member history (issue 21): each member state under the Group version that wrote it, so drift
compares any two versions of one list. Lists that exist already get their current rows under their
current version. Payer-file rows keep how the set-based import resolves them (member-id hashes, provider).

Revision ID: 0121
Revises: 0021
Create Date: 2026-12-03 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.store.migrations.reindex import request_reindex

revision = "0121"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "roster_member_versions",
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("provider_key", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("listed", sa.Boolean(), nullable=False),
        sa.Column("inactive", sa.Boolean(), nullable=False),
        sa.Column("decision", sa.String(length=64), nullable=True),
        sa.Column("reason_code", sa.String(length=64), nullable=True),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("decided_us", sa.BigInteger(), nullable=True),
        sa.Column("changed_by", sa.Text(), nullable=True),
        sa.Column("changed_us", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("group_id", "patient_id", "provider_key", "version"),
    )
    op.execute(
        "INSERT INTO roster_member_versions (group_id, patient_id, provider_key, version, listed, inactive, decision, "
        "reason_code, decided_by, decided_us, changed_by, changed_us) "
        "SELECT m.group_id, m.patient_id, COALESCE(m.provider_ref, ''), MAX(r.version), TRUE, MIN(CASE WHEN m.inactive "
        "THEN 1 ELSE 0 END) = 1, MAX(m.decision), MAX(m.reason_code), MAX(m.decided_by), MAX(m.decided_us), "
        "MAX(m.changed_by), MAX(m.changed_us) FROM roster_members m "
        "JOIN resources r ON r.rtype = 'Group' AND r.rid = m.group_id "
        "GROUP BY m.group_id, m.patient_id, COALESCE(m.provider_ref, '')"
    )


    for name, kind in (("h_patient", sa.BigInteger()), ("h_coverage", sa.BigInteger()),
                       ("provider_ref", sa.String(length=200)), ("provider_npi", sa.String(length=64))):
        op.add_column("roster_file_rows", sa.Column(name, kind, nullable=True))
    op.create_index("ix_roster_file_rows_patient", "roster_file_rows", ["group_id", "sha256", "patient_id"])
    # The `service` parameter the payer-file reconciliation reads, for claims stored before it.
    request_reindex(op.get_bind(), {"Claim": ["service"], "ExplanationOfBenefit": ["service"]})


def downgrade() -> None:
    op.drop_index("ix_roster_file_rows_patient", table_name="roster_file_rows")
    with op.batch_alter_table("roster_file_rows") as batch:
        for name in ("provider_npi", "provider_ref", "h_coverage", "h_patient"):
            batch.drop_column(name)
    op.drop_table("roster_member_versions")
