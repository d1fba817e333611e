"""Tables of the audit feature (SPEC §12), and the index its worklist reads the findings through.

* `ix_findings_worklist`: the findings in worklist order (estimated annual impact, highest first, then
  patient id), so a filtered page is an index range read from the cursor onwards, at any depth.
* `audit_quarters` / `audit_quarter_members`: each quarter's enrollment audit as it was closed: when it
  was taken, and the misaligned members then with what made them so. The next quarter's reconciliation
  (new, resolved, persisting) compares two of these snapshots; re-running a quarter replaces its own.
* `audit_denied_lines`: the denied lines of each current ExplanationOfBenefit, read from its JSON once, in
  the transaction that writes it, so a denial run reads rows instead of parsing every EOB.
* `audit_denials`: the last denial run's lines with their classification.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Date, Index, Integer, String, Table, Text, func, literal_column

from server.store.alignment_schema import CODE_LEN, findings
from server.store.schema import ID_LEN, metadata

# Members without an estimated impact sort after every member with one (impacts can be negative).
NO_IMPACT = -(2**62)
# A literal, never a bound parameter: the planner matches a query's expression to the index's by text.
worklist_impact = func.coalesce(findings.c.annual_impact_cents, literal_column(str(NO_IMPACT)))
WORKLIST_INDEX = Index("ix_findings_worklist", worklist_impact, findings.c.patient_id)

QUARTER_LEN = 6  # 2026Q3

audit_quarters = Table(
    "audit_quarters",
    metadata,
    Column("quarter", String(QUARTER_LEN), primary_key=True),
    Column("as_of", Date, nullable=False),  # the findings' evaluation date when the quarter was closed
    Column("taken_at", BigInteger, nullable=False),  # epoch microseconds
    Column("members", Integer, nullable=False),  # members with a finding other than not-evaluable
)

audit_quarter_members = Table(
    "audit_quarter_members",
    metadata,
    Column("quarter", String(QUARTER_LEN), primary_key=True),
    Column("patient_id", String(ID_LEN), primary_key=True),
    Column("enrolled_product", String(CODE_LEN), nullable=True),
    Column("recommended_product", String(CODE_LEN), nullable=True),
    Column("line_of_business", String(CODE_LEN), nullable=True),
    Column("annual_impact_cents", BigInteger, nullable=True),
)

def _denied_line_columns() -> list[Column]:
    """A denied line as the EOB says it (`server/audit/denials.py` DeniedLine), keyed by EOB and item."""
    return [
        Column("eob_id", String(ID_LEN), primary_key=True),
        Column("sequence", Integer, primary_key=True, autoincrement=False),
        Column("patient_id", String(ID_LEN), nullable=False),
        Column("provider", Text, nullable=False),
        Column("service_date", Date, nullable=False),
        Column("procedure", String(CODE_LEN), nullable=True),
        Column("revenue", String(CODE_LEN), nullable=True),
        Column("place_of_service", String(CODE_LEN), nullable=True),
        Column("carc", String(CODE_LEN), nullable=False),
        Column("rarc", String(CODE_LEN), nullable=True),
        Column("submitted_cents", BigInteger, nullable=False),
        Column("currency", String(3), nullable=False),
    ]


audit_denied_lines = Table("audit_denied_lines", metadata, *_denied_line_columns())

audit_denials = Table(
    "audit_denials",
    metadata,
    *_denied_line_columns(),
    Column("category", String(CODE_LEN), nullable=True),
    Column("finding_status", String(CODE_LEN), nullable=True),
    Column("enrolled_product", String(CODE_LEN), nullable=True),
    Column("recommended_product", String(CODE_LEN), nullable=True),
    Column("classification", String(CODE_LEN), nullable=False),
    Index("ix_audit_denials_patient", "patient_id"),
)
