"""Tables of the savings feature (SPEC §13), keyed by the ACO first like the projection's.

* `savings_contracts`: the ACO's terms for a performance year: program (mssp | reach), MSSP track and
  chosen MSR/MLR corridor, the base rate, the reference-year risk score and the REACH capitation PMPM.
* `savings_beneficiaries`: the aligned beneficiaries, their basis, aligned months and normalized risk score
  (ten-thousandths, so sums stay exact integers).
* `savings_claims`: claim lines with service and received dates (and their month indexes, year × 12 +
  month − 1, for set-based lag arithmetic) and the paid amount.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, Integer, String, Table

from server.projection.schema import ACO_LEN, DATE_LEN
from server.store.schema import ID_LEN, metadata

CODE_LEN = 16
RISK_SCALE = 10_000  # risk scores stored as ten-thousandths

savings_contracts = Table(
    "savings_contracts",
    metadata,
    Column("aco", String(ACO_LEN), primary_key=True),
    Column("performance_year", Integer, nullable=False),
    Column("program", String(CODE_LEN), nullable=False),  # mssp | reach
    Column("track", String(CODE_LEN), nullable=True),  # MSSP: basic-a … enhanced
    Column("corridor_bp", Integer, nullable=True),  # chosen MSR/MLR in basis points; NULL: variable (the table)
    Column("base_rate_cents", BigInteger, nullable=False),  # per beneficiary-year
    Column("reference_risk", Integer, nullable=False),  # ten-thousandths
    Column("pmpm_cents", BigInteger, nullable=True),  # REACH capitation received per member month
    Column("loaded_us", BigInteger, nullable=False),
)

savings_beneficiaries = Table(
    "savings_beneficiaries",
    metadata,
    Column("aco", String(ACO_LEN), primary_key=True),
    Column("patient_id", String(ID_LEN), primary_key=True),
    Column("basis", String(CODE_LEN), nullable=False),  # claims | voluntary
    Column("months", Integer, nullable=False),  # aligned months of the performance year, 1–12
    Column("risk", Integer, nullable=False),  # ten-thousandths
)

savings_claims = Table(
    "savings_claims",
    metadata,
    Column("aco", String(ACO_LEN), nullable=False),
    Column("patient_id", String(ID_LEN), nullable=False),
    Column("service_date", String(DATE_LEN), nullable=False),
    Column("received_date", String(DATE_LEN), nullable=False),
    Column("service_month", Integer, nullable=False),
    Column("received_month", Integer, nullable=False),
    Column("paid_cents", BigInteger, nullable=False),
    Index("ix_savings_claims", "aco", "service_month"),
)
