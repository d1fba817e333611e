"""Tables of the alignment engine (SPEC §4.2): the persisted findings and the engine's lookup rows.

Every `finding_*` table is keyed by the member (`patient_id` = Patient resource id) first, so one
member's findings are replaced with a handful of index range deletes. The engine also uses them as
the stages of its set-based evaluation (coverage facts → diagnosis evidence → categories → finding),
so nothing is recomputed and nothing passes through Python.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Date, Index, Integer, String, Table, Text
from sqlmodel import Field, SQLModel

from server.store.schema import ID_LEN, TYPE_LEN, metadata

CODE_LEN = 64  # product codes, value-set ids, reason and status codes

# One row. Every evaluation starts by updating it: the row lock (PostgreSQL) or the write lock it
# takes (SQLite) serialises evaluations across all server processes, so an evaluation that starts
# after a write committed always sees that write, and the last one to finish is the newest.
alignment_lock = Table(
    "alignment_lock",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("evaluations", BigInteger, nullable=False),
)

# The value-set codes as the search index hashes them: h_code = idx_token.h_sys_value of
# (resource type, code parameter, system, code) for every spelling the engine accepts. Rows are keyed
# by a hash of their own content (`codes_key`), so servers never overwrite each other's rows.
alignment_codes = Table(
    "alignment_codes",
    metadata,
    Column("codes_key", BigInteger, nullable=False),
    Column("h_code", BigInteger, nullable=False),
    Column("valueset", String(CODE_LEN), nullable=False),
    Index("ix_alignment_codes_hash", "codes_key", "h_code"),
)

# The diagnosis facts of the current Conditions, Claims and ExplanationOfBenefits, kept by the alignment
# feature in the transaction that writes them (`server/alignment/diagnoses.py`), so an evaluation reads
# these rows instead of pivoting the search-index tables (issue 19). One row per diagnosis coding (a
# claim with several service dates: per coding and date); nothing here depends on the evaluation date.
alignment_diagnoses = Table(
    "alignment_diagnoses",
    metadata,
    Column("rtype", String(TYPE_LEN), nullable=False),  # Condition | Claim | ExplanationOfBenefit
    Column("rid", String(ID_LEN), nullable=False),
    Column("patient_id", String(ID_LEN), nullable=False),
    # the coding's idx_token.h_sys_value, matched against `alignment_codes.h_code`; a claim's diagnosis by
    # diagnosisReference carries the cited Condition's codings (and their Condition.code hashes)
    Column("h_code", BigInteger, nullable=False),
    Column("system", Text, nullable=True),
    Column("code", Text, nullable=True),
    Column("source_kind", String(CODE_LEN), nullable=False),  # clinical | claims | patient-reported
    # Conditions: the source-kind tag says patient-reported (suspect evidence, whatever `source_kind`)
    Column("reported", Boolean, nullable=True),
    Column("recorded_lo", BigInteger, nullable=True),  # Conditions, epoch microseconds
    Column("onset_lo", BigInteger, nullable=True),
    Column("abated_hi", BigInteger, nullable=True),
    # last affirmed: the latest of recorded, onset, assertedDate and the cited Encounter's date
    Column("affirmed_lo", BigInteger, nullable=True),
    Column("created_lo", BigInteger, nullable=True),  # claims
    Column("service_lo", BigInteger, nullable=True),  # claims: one service date (null: the claim has none)
    # Conditions: verification refuted / entered-in-error; provisional / differential / unconfirmed;
    # clinical status inactive / resolved / remission; a problem-list-item category
    Column("withdrawn", Boolean, nullable=True),
    Column("uncertain", Boolean, nullable=True),
    Column("inactive", Boolean, nullable=True),
    Column("problem_list", Boolean, nullable=True),
    Column("active", Boolean, nullable=True),  # claims: status active
    Index("ix_alignment_diagnoses_res", "rtype", "rid"),
    Index("ix_alignment_diagnoses_patient", "patient_id"),
)

# The coverage facts of the current active Coverages naming a Patient as beneficiary, kept by the alignment
# feature in each write transaction (`server/alignment/coverage_facts.py`) and read by the evaluation
# (`facts.coverage_select`) instead of the search-index tables (issue 19). Raw codes only: what they
# mean (products, lines of business, dual levels) comes from the mappings at evaluation time.
alignment_coverages = Table(
    "alignment_coverages",
    metadata,
    Column("rid", String(ID_LEN), nullable=False),
    Column("patient_id", String(ID_LEN), nullable=False),  # the beneficiary (FHIR: exactly one)
    Column("period_lo", BigInteger, nullable=True),  # epoch microseconds; both null: no period
    Column("period_hi", BigInteger, nullable=True),
    Column("dual_code", Text, nullable=True),  # of several codes, the greatest (as the index pivot took)
    Column("harp_status", Text, nullable=True),
    Column("aid_category", Text, nullable=True),  # trimmed, lower case, as rates.json spells it
    # Medicare entitlement, read by the risk engine: the original reason for entitlement (OREC) and the
    # long-term institutional flag ('true' / 'false'), as the Coverage extensions' index tokens hold them
    Column("orec", Text, nullable=True),
    Column("institutional", Text, nullable=True),
    Index("ix_alignment_coverages_rid", "rid"),
    Index("ix_alignment_coverages_patient", "patient_id"),
)

# The plan class values and type codings of the current Coverages (several per Coverage), which name
# the product: `param` is `plan` (Coverage.class of type plan) or `type` (Coverage.type, SOPT codes).
alignment_coverage_codes = Table(
    "alignment_coverage_codes",
    metadata,
    Column("rid", String(ID_LEN), nullable=False),
    Column("param", String(16), nullable=False),
    Column("system", Text, nullable=True),
    Column("code", Text, nullable=True),
    Index("ix_alignment_coverage_codes_rid", "rid"),
)

# One row per stored, non-deleted Patient, kept by the alignment feature in each write transaction
# (`server/alignment/patient_facts.py`): the evaluation's member list and the Patient's own facts, read
# instead of the `resources` table and the Patient's search-index rows (issue 19).
alignment_members = Table(
    "alignment_members",
    metadata,
    Column("patient_id", String(ID_LEN), primary_key=True),
    Column("birth_lo", BigInteger, nullable=True),  # Patient.birthDate as bounds, epoch microseconds
    Column("birth_hi", BigInteger, nullable=True),
    Column("opwdd", Boolean, nullable=False),  # the OPWDD flag extension says true
    Column("gender", String(16), nullable=True),  # Patient.gender (the risk engine's demographic cell)
)

# The line codes of the current active Claims and ExplanationOfBenefits that name a Patient and have a
# service date, kept by the alignment feature in each write transaction (`server/alignment/claim_facts.py`):
# one row per distinct code (productOrService, revenue) of a claim, with the claim's service-date bounds.
# The HARP risk factors (`risk_factors.py`) read them instead of the claims' search-index rows (issue 19);
# which codes make a factor is mapping data, read at evaluation time.
alignment_claim_lines = Table(
    "alignment_claim_lines",
    metadata,
    Column("rtype", String(TYPE_LEN), nullable=False),  # Claim | ExplanationOfBenefit
    Column("rid", String(ID_LEN), nullable=False),
    Column("patient_id", String(ID_LEN), nullable=False),
    Column("code", Text, nullable=False),
    Column("service_lo", BigInteger, nullable=False),  # the earliest and latest service dates, epoch microseconds
    Column("service_hi", BigInteger, nullable=False),
    Index("ix_alignment_claim_lines_res", "rtype", "rid"),
    Index("ix_alignment_claim_lines_patient", "patient_id"),
    Index("ix_alignment_claim_lines_code", "code"),
)

# The Patient's raw codes the rules read, several per Patient: `param` says which: the NY HARP
# status extension's codes, the addresses' states and ZIP codes (normalised as the string index keeps
# them); which area or rate region they lie in is mapping data, read at evaluation.
HARP_STATUS, ADDRESS_STATE, ADDRESS_POSTALCODE = "harp-status", "address-state", "address-postalcode"
alignment_member_codes = Table(
    "alignment_member_codes",
    metadata,
    Column("patient_id", String(ID_LEN), nullable=False),
    Column("param", String(32), nullable=False),
    Column("code", Text, nullable=False),
    Index("ix_alignment_member_codes_patient", "patient_id"),
)

# One row per member (existing Patient).
findings = Table(
    "findings",
    metadata,
    Column("patient_id", String(ID_LEN), primary_key=True),
    Column("status", String(CODE_LEN), nullable=False),  # aligned | misaligned | review | not-evaluable
    # compliance (the enrolled product's rule fails) | opportunity (a higher-acuity product of the same
    # program family); null when neither (SPEC §4.3)
    Column("kind", String(CODE_LEN), nullable=True),
    Column("enrolled_product", String(CODE_LEN), nullable=True),
    Column("recommended_product", String(CODE_LEN), nullable=True),
    Column("dual_level", String(CODE_LEN), nullable=True),  # full | partial | unknown; null when not dual
    Column("reasons", Text, nullable=False),  # reason codes separated by single spaces
    # (rate of recommended - rate of enrolled) x 12, in cents of `currency` (exact on both databases)
    Column("annual_impact_cents", BigInteger, nullable=True),
    Column("currency", String(3), nullable=False),
    Column("birth_lo", BigInteger, nullable=True),  # start of Patient.birthDate, epoch microseconds
    Column("as_of", Date, nullable=False),
    Column("lookback_start", Date, nullable=False),
    Column("evaluated_at", BigInteger, nullable=False),  # epoch microseconds
    # the rate cells the impact used (`rates.json`): `product/region/segment` (`*`: left out) or a product code
    Column("recommended_rate_cell", String(200), nullable=True),
    Column("enrolled_rate_cell", String(200), nullable=True),
    # the InsurancePlan ids named for the enrolled and the recommended product (`plan_choice.py`); the
    # enrolled one is null when a Coverage names a product with several plans and no one plan can be told
    Column("enrolled_plan", String(CODE_LEN), nullable=True),
    Column("recommended_plan", String(CODE_LEN), nullable=True),
    Index("ix_findings_status", "status"),
    Index("ix_findings_recommended", "recommended_product"),
)

# The products the member is eligible for, with the criteria each met (space-separated
# `name:value` tokens, e.g. `requires_lob:medicaid min_age:21 valueset:smi`).
finding_products = Table(
    "finding_products",
    metadata,
    Column("patient_id", String(ID_LEN), primary_key=True),
    Column("product", String(CODE_LEN), primary_key=True),
    Column("priority", Integer, nullable=False),
    Column("criteria", Text, nullable=False),
    Index("ix_finding_products_product", "product"),
)

# Per value set with counted evidence: which source kinds gave it, and whether it is a
# non-claims diagnosis (clinical evidence, no claims evidence, in a non-claims value set).
finding_categories = Table(
    "finding_categories",
    metadata,
    Column("patient_id", String(ID_LEN), primary_key=True),
    Column("category", String(CODE_LEN), primary_key=True),
    Column("clinical", Boolean, nullable=False),
    Column("claims", Boolean, nullable=False),
    Column("non_claims", Boolean, nullable=False),
    Index("ix_finding_categories_category", "category", "non_claims"),
)

# Each counted diagnosis: the resource, the coding that matched, its date and its source kind.
finding_evidence = Table(
    "finding_evidence",
    metadata,
    Column("patient_id", String(ID_LEN), nullable=False),
    Column("category", String(CODE_LEN), nullable=False),
    Column("resource_type", String(TYPE_LEN), nullable=False),
    Column("resource_id", String(ID_LEN), nullable=False),
    Column("system", Text, nullable=True),
    Column("code", Text, nullable=True),
    Column("date_lo", BigInteger, nullable=False),  # epoch microseconds
    Column("source_kind", String(CODE_LEN), nullable=False),  # clinical | claims | patient-reported
    # qualifying | suspect (shown, never qualifying: provisional/differential/unconfirmed, inactive or
    # resolved outside a lifelong code, patient-reported; SPEC §4.3)
    Column("grade", String(CODE_LEN), nullable=False),
    Column("lifelong", Boolean, nullable=False),  # coded with a lifelong diagnosis (mappings/lifelong.json)
    Column("affirmed_lo", BigInteger, nullable=False),  # last affirmed: latest recorded / onset date
    Index("ix_finding_evidence_patient", "patient_id", "category"),
)

# The member's active coverages (and recently ended ones) and what they mean.
finding_coverage = Table(
    "finding_coverage",
    metadata,
    Column("patient_id", String(ID_LEN), primary_key=True),
    Column("coverage_id", String(ID_LEN), primary_key=True),
    Column("product", String(CODE_LEN), nullable=True),
    Column("line_of_business", String(CODE_LEN), nullable=True),
    Column("dual_code", String(CODE_LEN), nullable=True),
    Column("dual_level", String(CODE_LEN), nullable=True),
    # in force on the evaluation date; the others are the recent records read for month-by-month dual
    # status and for the D-SNP deeming period (SPEC §4.3)
    Column("current", Boolean, nullable=False),
    Column("period_lo", BigInteger, nullable=True),
    Column("period_hi", BigInteger, nullable=True),
    Column("harp_status", String(CODE_LEN), nullable=True),  # NY HARP status code (H1-H9) on the Coverage
    Column("aid_category", String(CODE_LEN), nullable=True),  # Medicaid aid category (class of type class)
)

# The plan codes (`Coverage.class` of type plan, lower-cased) of the coverages in `finding_coverage`: the
# worklist's plan filter is an index lookup here instead of one search-index probe per finding (issue 22).
finding_plans = Table(
    "finding_plans",
    metadata,
    Column("patient_id", String(ID_LEN), primary_key=True),
    Column("plan", Text, primary_key=True),
    Index("ix_finding_plans_plan", "plan", "patient_id"),
)

# Which rules the findings were made by (one row): a server whose rules or mappings differ from the
# stored version re-evaluates every member at start-up, so an upgrade never leaves stale findings.
class AlignmentRules(SQLModel, table=True):
    __tablename__ = "alignment_rules"
    metadata = metadata

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    version: str = Field(sa_type=String(CODE_LEN))


alignment_rules: Table = AlignmentRules.__table__  # type: ignore[assignment]

FINDING_TABLES = (findings, finding_products, finding_categories, finding_evidence, finding_coverage, finding_plans)

# Which committed writes the findings reflect, so a write whose after-commit evaluation never ran (its
# process died between commit and evaluation) is found and evaluated later. `alignment_watermark` (one
# row): every write with txid <= `txid` is reflected. `alignment_evaluated`: writes above the watermark
# whose members were evaluated (recorded in the evaluation's own transaction); the watermark moves up
# past them once every write below them is evaluated too.
class AlignmentWatermark(SQLModel, table=True):
    __tablename__ = "alignment_watermark"
    metadata = metadata

    id: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    txid: int = Field(sa_type=BigInteger)


alignment_watermark: Table = AlignmentWatermark.__table__  # type: ignore[assignment]

alignment_evaluated = Table(
    "alignment_evaluated",
    metadata,
    Column("txid", BigInteger, primary_key=True, autoincrement=False),
)
