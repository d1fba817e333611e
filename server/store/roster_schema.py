"""Attribution rosters (SPEC §11): the members of client-managed Da Vinci ATR Groups, and the payer files
imported into them.

The Group itself is an ordinary stored resource without `member` (its header: identifiers, managing
entity, list status, quantity); its members live here, one row per (patient, attributed provider)
attribution, so `$member-add` on a 100,000-member list is one row and one header version, never a rewrite
of the member array. A full read renders the rows after the header (`server/rosters/render.py`).

A row carries what the ATR IG puts on `Group.member` (period, inactive, changeType, attributedProvider,
coverageReference), the member's cohort decision (PlanFit's `roster-decision` extension) and what the
payer file stated about the member (authorization status, qualifying category, exclusion reason), which
the reconciliation compares with the server's own data.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from server.store.schema import ID_LEN, metadata

REF_LEN = 200  # "Type/id" references
CODE_LEN = 64
DATE_LEN = 10  # YYYY-MM-DD

roster_members = Table(
    "roster_members",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("group_id", String(ID_LEN), nullable=False),
    Column("patient_id", String(ID_LEN), nullable=False),
    # The member identifier (Coverage.identifier / payer participant id) the member was named by.
    Column("member_system", Text, nullable=True),
    Column("member_value", Text, nullable=True),
    Column("provider_ref", String(REF_LEN), nullable=True),  # attributedProvider
    Column("provider_npi", String(CODE_LEN), nullable=True),
    Column("coverage_id", String(ID_LEN), nullable=True),  # coverageReference
    Column("period_start", String(DATE_LEN), nullable=True),  # member.period = the attribution period
    Column("period_end", String(DATE_LEN), nullable=True),
    Column("inactive", Boolean, nullable=False),
    Column("change_type", String(CODE_LEN), nullable=False),  # new | dropped | changed | nochange
    # The cohort decision and its review.
    Column("decision", String(CODE_LEN), nullable=True),  # active | pending | excluded
    Column("reason_system", Text, nullable=True),
    Column("reason_code", String(CODE_LEN), nullable=True),
    Column("reviewer", String(REF_LEN), nullable=True),
    Column("review_date", String(DATE_LEN), nullable=True),
    Column("owner", String(REF_LEN), nullable=True),
    Column("deadline", String(DATE_LEN), nullable=True),
    Column("checkpoint", String(DATE_LEN), nullable=True),
    Column("decided_by", Text, nullable=True),  # the client (and user) that recorded the decision
    Column("decided_us", BigInteger, nullable=True),
    Column("changed_by", Text, nullable=True),  # who last added, re-attributed or dropped the member
    Column("changed_us", BigInteger, nullable=True),
    # What the payer file stated about the member.
    Column("stated_authorization", String(CODE_LEN), nullable=True),
    Column("stated_category", String(CODE_LEN), nullable=True),
    Column("stated_exclusion", String(CODE_LEN), nullable=True),
    Index("ix_roster_members_patient", "group_id", "patient_id"),
    Index("ix_roster_members_decision", "group_id", "decision", "reason_code"),
)

class RosterImport(SQLModel, table=True):
    """One payer file imported into a roster (the model builds the row; queries use `roster_imports`)."""

    __tablename__ = "roster_imports"
    __table_args__ = (UniqueConstraint("group_id", "sha256", name="uq_roster_imports_file"),)
    metadata = metadata

    # The file's rows are keyed by this id, not by (group, SHA-256): narrow keys for 100,000-row files.
    id: int | None = Field(default=None, primary_key=True)
    group_id: str = Field(sa_type=String(ID_LEN))
    sha256: str = Field(sa_type=String(64))  # the file's identity: re-importing it changes nothing
    filename: str | None = Field(default=None, sa_type=Text)
    file_format: str = Field(sa_type=String(CODE_LEN))  # csv | atr-group
    row_count: int = Field(sa_type=Integer)
    approved_by: str | None = Field(default=None, sa_type=String(REF_LEN))
    imported_by: str | None = Field(default=None, sa_type=Text)
    imported_us: int = Field(sa_type=BigInteger)


roster_imports: Table = RosterImport.__table__  # type: ignore[assignment]

# Every row of every imported payer file, as stated (participant ids that name no member included, with
# `patient_id` NULL): the reconciliation compares the latest file with the roster and the stored data.
roster_file_rows = Table(
    "roster_file_rows",
    metadata,
    Column("import_id", Integer, primary_key=True, autoincrement=False),  # roster_imports.id: the file
    Column("row_no", Integer, primary_key=True, autoincrement=False),  # 1-based data row (CSV: after the header)
    Column("participant_id", Text, nullable=False),
    Column("patient_id", String(ID_LEN), nullable=True),
    Column("attribution_date", String(DATE_LEN), nullable=True),
    Column("category", String(CODE_LEN), nullable=True),
    Column("authorization", String(CODE_LEN), nullable=True),
    Column("exclusion", String(CODE_LEN), nullable=True),
    # How the import resolved the row: the member-id hashes looked up in the token index (Patient and
    # Coverage identifiers; NULL for a row naming its patient by reference) and the attributed provider.
    Column("h_patient", BigInteger, nullable=True),
    Column("h_coverage", BigInteger, nullable=True),
    Column("provider_ref", String(REF_LEN), nullable=True),
    Column("provider_npi", String(CODE_LEN), nullable=True),
    Index("ix_roster_file_rows_patient", "import_id", "patient_id"),
)

# Every state a member row took, under the Group version whose change wrote it (an import, $member-add,
# $member-remove, $member-decision): the list at version v is, per (patient, provider), the latest state
# at or before v, so drift compares any two versions of one list. `provider_key` is the attributed provider
# reference, '' when none (a key column compares without NULL rules); `listed` false marks a member
# removed from an `open` list (the row itself is deleted there).
roster_member_versions = Table(
    "roster_member_versions",
    metadata,
    Column("group_id", String(ID_LEN), primary_key=True),
    Column("patient_id", String(ID_LEN), primary_key=True),
    Column("provider_key", String(REF_LEN), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("listed", Boolean, nullable=False),
    Column("inactive", Boolean, nullable=False),
    Column("decision", String(CODE_LEN), nullable=True),
    Column("reason_code", String(CODE_LEN), nullable=True),
    Column("decided_by", Text, nullable=True),
    Column("decided_us", BigInteger, nullable=True),
    Column("changed_by", Text, nullable=True),
    Column("changed_us", BigInteger, nullable=True),
)
