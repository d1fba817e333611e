"""Alignment engine: findings tables, value-set code rows, the evaluation lock; index backfill of the
PlanFit search parameters; the per-resource token and date indexes extended by the parameter.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-23 12:00:00

The PlanFit search parameters (`server/fhir/data/planfit_search_parameters.json`: Coverage period,
plan and dual status; Claim/ExplanationOfBenefit diagnoses and service dates) are indexed on every
write from now on; resources stored before this revision get their rows at the server's next start
(`server/fhir/reindex.py`): this revision only requests that, so it runs no live code.

`ix_token_res` and `ix_date_res` become (rtype, rid, h_param), the shape `ix_reference_res` already
has: looking up one parameter of one resource is then a full-key probe, which every planner prefers
even without statistics. With only (rtype, rid), SQLite without statistics picks (h_param, …)
instead and scans that parameter's rows for the whole database on every lookup. Deleting a
resource's rows by (rtype, rid) still uses the prefix.
"""

from __future__ import annotations

import orjson
import sqlalchemy as sa
from alembic import op

from server.store.migrations.reindex import request_reindex

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "alignment_lock",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("evaluations", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.bulk_insert(
        sa.table("alignment_lock", sa.column("id", sa.Integer), sa.column("evaluations", sa.BigInteger)),
        [{"id": 1, "evaluations": 0}],
    )
    op.create_table(
        "alignment_codes",
        sa.Column("codes_key", sa.BigInteger(), nullable=False),
        sa.Column("h_code", sa.BigInteger(), nullable=False),
        sa.Column("valueset", sa.String(length=64), nullable=False),
    )
    op.create_index("ix_alignment_codes_hash", "alignment_codes", ["codes_key", "h_code"])
    op.create_table(
        "findings",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=64), nullable=False),
        sa.Column("enrolled_product", sa.String(length=64), nullable=True),
        sa.Column("recommended_product", sa.String(length=64), nullable=True),
        sa.Column("dual_level", sa.String(length=64), nullable=True),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("annual_impact_cents", sa.BigInteger(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("birth_lo", sa.BigInteger(), nullable=True),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("lookback_start", sa.Date(), nullable=False),
        sa.Column("evaluated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("patient_id"),
    )
    op.create_index("ix_findings_status", "findings", ["status"])
    op.create_index("ix_findings_recommended", "findings", ["recommended_product"])
    op.create_table(
        "finding_products",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("criteria", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("patient_id", "product"),
    )
    op.create_index("ix_finding_products_product", "finding_products", ["product"])
    op.create_table(
        "finding_categories",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("clinical", sa.Boolean(), nullable=False),
        sa.Column("claims", sa.Boolean(), nullable=False),
        sa.Column("non_claims", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("patient_id", "category"),
    )
    op.create_index("ix_finding_categories_category", "finding_categories", ["category", "non_claims"])
    op.create_table(
        "finding_evidence",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=64), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("resource_id", sa.String(length=64), nullable=False),
        sa.Column("system", sa.Text(), nullable=True),
        sa.Column("code", sa.Text(), nullable=True),
        sa.Column("date_lo", sa.BigInteger(), nullable=False),
        sa.Column("source_kind", sa.String(length=64), nullable=False),
    )
    op.create_index("ix_finding_evidence_patient", "finding_evidence", ["patient_id", "category"])
    op.create_table(
        "finding_coverage",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("coverage_id", sa.String(length=64), nullable=False),
        sa.Column("product", sa.String(length=64), nullable=True),
        sa.Column("line_of_business", sa.String(length=64), nullable=True),
        sa.Column("dual_code", sa.String(length=64), nullable=True),
        sa.Column("dual_level", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("patient_id", "coverage_id"),
    )
    for table, index in (("idx_token", "ix_token_res"), ("idx_date", "ix_date_res")):
        op.drop_index(index, table_name=table)
        op.create_index(index, table, ["rtype", "rid", "h_param"])
    _request_planfit_parameters(op.get_bind())


def downgrade() -> None:
    for table, index in (("idx_token", "ix_token_res"), ("idx_date", "ix_date_res")):
        op.drop_index(index, table_name=table)
        op.create_index(index, table, ["rtype", "rid"])
    for table in ("finding_coverage", "finding_evidence", "finding_categories", "finding_products", "findings",
                  "alignment_codes", "alignment_lock"):
        op.drop_table(table)


def _planfit_parameters() -> dict[str, list[str]]:
    """Resource type → codes of the PlanFit parameters defined for it."""
    import importlib.resources

    raw = importlib.resources.files("server.fhir").joinpath("data/planfit_search_parameters.json").read_bytes()
    return {rtype: list(params) for rtype, params in orjson.loads(raw)["parameters"].items()}


def _request_planfit_parameters(conn: sa.Connection) -> None:
    request_reindex(conn, _planfit_parameters())
