"""Payer files get an integer id (issue 21, SPEC §8: a 100,000-row import under 2 s). Each row of a file in
`roster_file_rows` was keyed by its list's id, the file's 64-character SHA-256 and its row number, in the
primary key and again in the patient index: inserting 100,000 such rows took 0.52 s on PostgreSQL, keyed
by (import id, row number) 0.34 s. A file stays unique per list by (group_id, sha256).

The roster members' (group_id, member_value) index goes: no statement looks a member up by its member id
(an operation naming a member id resolves its patient first), and each of the 100,000 members an import
adds paid for an entry in it.

Revision ID: 0938
Revises: 0121
Create Date: 2026-12-04 12:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0938"
down_revision = "0121"
branch_labels = None
depends_on = None

_IMPORT_COLUMNS = "group_id, sha256, filename, file_format, row_count, approved_by, imported_by, imported_us"
_ROW_COLUMNS = ("row_no, participant_id, patient_id, attribution_date, category, \"authorization\", exclusion, "
                "h_patient, h_coverage, provider_ref, provider_npi")


def _imports_table(name: str, keyed_by_id: bool) -> None:
    key = ([sa.Column("id", sa.Integer(), autoincrement=True, nullable=False)] if keyed_by_id else [])
    constraints = ([sa.PrimaryKeyConstraint("id"), sa.UniqueConstraint("group_id", "sha256", name="uq_roster_imports_file")]
                   if keyed_by_id else [sa.PrimaryKeyConstraint("group_id", "sha256")])
    op.create_table(
        name,
        *key,
        sa.Column("group_id", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("filename", sa.Text(), nullable=True),
        sa.Column("file_format", sa.String(length=64), nullable=False),
        sa.Column("row_count", sa.Integer(), nullable=False),
        sa.Column("approved_by", sa.String(length=200), nullable=True),
        sa.Column("imported_by", sa.Text(), nullable=True),
        sa.Column("imported_us", sa.BigInteger(), nullable=False),
        *constraints,
    )


def _rows_table(name: str, keyed_by_id: bool) -> None:
    key = ([sa.Column("import_id", sa.Integer(), autoincrement=False, nullable=False)] if keyed_by_id else
           [sa.Column("group_id", sa.String(length=64), nullable=False),
            sa.Column("sha256", sa.String(length=64), nullable=False)])
    op.create_table(
        name,
        *key,
        sa.Column("row_no", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("participant_id", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("attribution_date", sa.String(length=10), nullable=True),
        sa.Column("category", sa.String(length=64), nullable=True),
        sa.Column("authorization", sa.String(length=64), nullable=True),
        sa.Column("exclusion", sa.String(length=64), nullable=True),
        sa.Column("h_patient", sa.BigInteger(), nullable=True),
        sa.Column("h_coverage", sa.BigInteger(), nullable=True),
        sa.Column("provider_ref", sa.String(length=200), nullable=True),
        sa.Column("provider_npi", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint(*(["import_id"] if keyed_by_id else ["group_id", "sha256"]), "row_no"),
    )


def _replace(keyed_by_id: bool) -> None:
    """Both tables rebuilt under interim names with their rows, then renamed over the old ones (PostgreSQL:
    their primary-key index and id sequence too)."""
    suffix = "next" if keyed_by_id else "prev"
    _imports_table(f"roster_imports_{suffix}", keyed_by_id)
    op.execute(f"INSERT INTO roster_imports_{suffix} ({_IMPORT_COLUMNS}) SELECT {_IMPORT_COLUMNS} FROM roster_imports "
               "ORDER BY imported_us")
    _rows_table(f"roster_file_rows_{suffix}", keyed_by_id)
    rows = ", ".join(f"f.{c.strip()}" for c in _ROW_COLUMNS.split(","))
    if keyed_by_id:
        op.execute(f"INSERT INTO roster_file_rows_{suffix} (import_id, {_ROW_COLUMNS}) SELECT i.id, {rows} "
                   f"FROM roster_file_rows f JOIN roster_imports_{suffix} i ON i.group_id = f.group_id AND i.sha256 = f.sha256")
    else:
        op.execute(f"INSERT INTO roster_file_rows_{suffix} (group_id, sha256, {_ROW_COLUMNS}) SELECT i.group_id, i.sha256, "
                   f"{rows} FROM roster_file_rows f JOIN roster_imports i ON i.id = f.import_id")
    op.drop_index("ix_roster_file_rows_patient", table_name="roster_file_rows")
    op.drop_table("roster_file_rows")
    op.drop_table("roster_imports")
    for table in ("roster_imports", "roster_file_rows"):
        op.rename_table(f"{table}_{suffix}", table)
        if op.get_bind().dialect.name == "postgresql":  # the names a table created as `table` has
            op.execute(f"ALTER INDEX {table}_{suffix}_pkey RENAME TO {table}_pkey")
    if keyed_by_id and op.get_bind().dialect.name == "postgresql":
        op.execute(f"ALTER SEQUENCE roster_imports_{suffix}_id_seq RENAME TO roster_imports_id_seq")
    op.create_index("ix_roster_file_rows_patient", "roster_file_rows",
                    ["import_id", "patient_id"] if keyed_by_id else ["group_id", "sha256", "patient_id"])


def upgrade() -> None:
    _replace(keyed_by_id=True)
    op.drop_index("ix_roster_members_member", table_name="roster_members")


def downgrade() -> None:
    op.create_index("ix_roster_members_member", "roster_members", ["group_id", "member_value"])
    _replace(keyed_by_id=False)
