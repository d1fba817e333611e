"""Tables of the claims-based alignment projection (SPEC §13), all keyed by the ACO (`aco`: the REACH
entity or MSSP ACO the inputs belong to) first, so one server keeps several ACOs' projections apart.

* `projection_claims`: qualifying-service candidates, one row per claim line as the CCLF-style file
  states it (the beneficiary as a Patient id, billing TIN, rendering NPI, HCPCS, date, allowed charge,
  whether the rendering clinician is a primary care specialist).
* `projection_beneficiaries`: each beneficiary's enrollment flags and voluntary designation.
* `projection_runs` / `projection_results`: each projection and every beneficiary it aligned (to a
  participant TIN or to an outside one), the row the next projection's changeType is computed against.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, String, Table, Text

from server.store.schema import ID_LEN, metadata

ACO_LEN = 64
TIN_LEN = 16
NPI_LEN = 16
CODE_LEN = 16
DATE_LEN = 10  # YYYY-MM-DD

projection_claims = Table(
    "projection_claims",
    metadata,
    Column("aco", String(ACO_LEN), nullable=False),
    Column("patient_id", String(ID_LEN), nullable=False),
    Column("tin", String(TIN_LEN), nullable=False),
    Column("npi", String(NPI_LEN), nullable=False),
    Column("hcpcs", String(CODE_LEN), nullable=False),
    Column("service_date", String(DATE_LEN), nullable=False),
    Column("allowed_cents", BigInteger, nullable=False),
    Column("specialist", Boolean, nullable=False),  # a primary care specialist furnished it
    Index("ix_projection_claims", "aco", "patient_id"),
)

projection_beneficiaries = Table(
    "projection_beneficiaries",
    metadata,
    Column("aco", String(ACO_LEN), primary_key=True),
    Column("patient_id", String(ID_LEN), primary_key=True),
    Column("part_a", Boolean, nullable=False),
    Column("part_b", Boolean, nullable=False),
    Column("medicare_advantage", Boolean, nullable=False),
    Column("medicare_secondary", Boolean, nullable=False),
    Column("us_resident", Boolean, nullable=False),
    Column("aligned_elsewhere", Boolean, nullable=False),
    Column("voluntary_tin", String(TIN_LEN), nullable=True),
    Column("voluntary_npi", String(NPI_LEN), nullable=True),
)

projection_runs = Table(
    "projection_runs",
    metadata,
    Column("run_id", Integer, primary_key=True, autoincrement=True),
    Column("aco", String(ACO_LEN), nullable=False),
    Column("performance_year", Integer, nullable=False),
    Column("participants", Text, nullable=False),  # participant TINs, comma-separated, sorted
    Column("period_start", String(DATE_LEN), nullable=False),
    Column("period_end", String(DATE_LEN), nullable=False),
    Column("created_us", BigInteger, nullable=False),
    Index("ix_projection_runs", "aco", "run_id"),
)

projection_results = Table(
    "projection_results",
    metadata,
    Column("run_id", Integer, nullable=False),
    Column("patient_id", String(ID_LEN), nullable=False),
    Column("tin", String(TIN_LEN), nullable=False),
    Column("npi", String(NPI_LEN), nullable=True),
    Column("basis", String(CODE_LEN), nullable=False),  # claims | voluntary
    Column("weighted_cents", BigInteger, nullable=False),
    Column("participant", Boolean, nullable=False),  # the TIN is on the run's participant list
    Index("ix_projection_results", "run_id", "patient_id"),
    Index("ix_projection_results_tin", "run_id", "tin", "patient_id"),  # a TIN's rows joined by patient (0953)
)

TABLES = (projection_claims, projection_beneficiaries, projection_runs, projection_results)
