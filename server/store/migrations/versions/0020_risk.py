"""Risk adjustment (issue 20): the CMS-HCC model tables and the per-member risk tables, as
`server/risk/schema.py` defined them at this revision (written out here, not imported: a migration
keeps the tables of its time).

Revision ID: 0020
Revises: 0016
Create Date: 2026-12-03 11:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0016"
branch_labels = None
depends_on = None

TABLES = ("risk_model_state", "risk_model_dx", "risk_model_hierarchy", "risk_model_coefficient", "risk_model_edit", "risk_model_label", "risk_model_group", "risk_model_interaction", "risk_model_requires", "risk_dx", "risk_member", "risk_cc", "risk_score")


def upgrade() -> None:
    op.create_table(
        "risk_model_state",
        sa.Column("id", sa.Integer(), nullable=False, primary_key=True, autoincrement=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
    )
    op.create_table(
        "risk_model_dx",
        sa.Column("payment_year", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=4), nullable=False),
        sa.Column("icd", sa.String(length=16), nullable=False),
        sa.Column("cc", sa.String(length=8), nullable=False),
    )
    op.create_index("ix_risk_model_dx", "risk_model_dx", ["payment_year", "version", "icd"])
    op.create_table(
        "risk_model_hierarchy",
        sa.Column("payment_year", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=4), nullable=False),
        sa.Column("parent", sa.String(length=8), nullable=False),
        sa.Column("child", sa.String(length=8), nullable=False),
    )
    op.create_index("ix_risk_model_hierarchy", "risk_model_hierarchy", ["payment_year", "version", "child"])
    op.create_table(
        "risk_model_coefficient",
        sa.Column("payment_year", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=4), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
    )
    op.create_index("ix_risk_model_coefficient", "risk_model_coefficient", ["payment_year", "version", "name"], unique=True)
    op.create_table(
        "risk_model_edit",
        sa.Column("payment_year", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=4), nullable=False),
        sa.Column("icd", sa.String(length=16), nullable=False),
        sa.Column("edit_type", sa.String(length=16), nullable=False),
        sa.Column("sex", sa.String(length=1), nullable=True),
        sa.Column("age_min", sa.Integer(), nullable=True),
        sa.Column("age_max", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("cc_override", sa.String(length=8), nullable=True),
    )
    op.create_index("ix_risk_model_edit", "risk_model_edit", ["payment_year", "version", "icd"])
    op.create_table(
        "risk_model_label",
        sa.Column("payment_year", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=4), nullable=False),
        sa.Column("cc", sa.String(length=8), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
    )
    op.create_index("ix_risk_model_label", "risk_model_label", ["payment_year", "version", "cc"], unique=True)
    op.create_table(
        "risk_model_group",
        sa.Column("payment_year", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=4), nullable=False),
        sa.Column("grp", sa.String(length=96), nullable=False),
        sa.Column("cc", sa.String(length=8), nullable=False),
    )
    op.create_index("ix_risk_model_group", "risk_model_group", ["payment_year", "version", "cc"])
    op.create_table(
        "risk_model_interaction",
        sa.Column("payment_year", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=4), nullable=False),
        sa.Column("name", sa.String(length=96), nullable=False),
        sa.Column("group_a", sa.String(length=96), nullable=False),
        sa.Column("group_b", sa.String(length=96), nullable=True),
        sa.Column("disabled", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "risk_model_requires",
        sa.Column("payment_year", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=4), nullable=False),
        sa.Column("cc", sa.String(length=8), nullable=False),
        sa.Column("requires", sa.String(length=8), nullable=False),
    )
    op.create_table(
        "risk_dx",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("payment_year", sa.Integer(), nullable=False),
        sa.Column("icd", sa.String(length=16), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("date_lo", sa.BigInteger(), nullable=False),
        sa.Column("source_kind", sa.String(length=64), nullable=False),
        sa.Column("prior", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_risk_dx_patient", "risk_dx", ["patient_id", "payment_year"])
    op.create_table(
        "risk_member",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("payment_year", sa.Integer(), nullable=False),
        sa.Column("age", sa.Integer(), nullable=False),
        sa.Column("sex", sa.String(length=1), nullable=False),
        sa.Column("dual_code", sa.String(length=64), nullable=True),
        sa.Column("run", sa.BigInteger(), nullable=False),
        sa.Column("segment", sa.String(length=8), nullable=False),
        sa.Column("cell", sa.String(length=96), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("new_enrollee", sa.Boolean(), nullable=False),
        sa.Column("medicaid", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_risk_member", "risk_member", ["patient_id", "payment_year"], unique=True)
    op.create_table(
        "risk_cc",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("payment_year", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=4), nullable=False),
        sa.Column("basis", sa.String(length=8), nullable=False),
        sa.Column("cc", sa.String(length=8), nullable=False),
        sa.Column("superseded", sa.Boolean(), nullable=False),
    )
    op.create_index("ix_risk_cc", "risk_cc", ["patient_id", "payment_year", "version", "basis"])
    op.create_table(
        "risk_score",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("payment_year", sa.Integer(), nullable=False),
        sa.Column("version", sa.String(length=4), nullable=False),
        sa.Column("basis", sa.String(length=8), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("demographic", sa.Float(), nullable=False),
    )
    op.create_index("ix_risk_score", "risk_score", ["patient_id", "payment_year", "version", "basis"], unique=True)
    op.create_index("ix_risk_score_year", "risk_score", ["payment_year", "version", "basis"])


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_table(table)
