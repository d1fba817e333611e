"""The savings inputs of an ACO, as CSV (each a Parameters valueString or valueAttachment), checked row by
row with the projection's parsers (a bad value is refused with its file, row and column):

* `beneficiaries`: `patient,basis,months,risk_score`: the aligned beneficiaries of the performance year,
  `basis` claims | voluntary, `months` aligned months (1–12), `risk_score` the normalized score;
* `claims`: `patient,service_date,received_date,paid`: Parts A and B claim lines with the date the claim
  was received (its lag) and the amount paid in dollars.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

from sqlalchemy import Connection, delete, insert

from server.projection.inputs import InputError, PATIENT_ID, amount_cents, checked, csv_rows, iso_date, new_patient
from server.savings.schema import RISK_SCALE, savings_beneficiaries, savings_claims, savings_contracts

BENEFICIARY_COLUMNS = ("patient", "basis", "months", "risk_score")
CLAIM_COLUMNS = ("patient", "service_date", "received_date", "paid")
BASES = ("claims", "voluntary")
_MONTHS = re.compile(r"[1-9]|1[0-2]")
_BATCH = 5000


def month_index(day) -> int:
    return day.year * 12 + day.month - 1


def parse_beneficiaries(text: str, aco: str) -> list[dict]:
    out, seen = [], set()
    for n, row in csv_rows(text, "beneficiaries", BENEFICIARY_COLUMNS):
        patient = new_patient(row, seen, n)
        if row["basis"] not in BASES:
            raise InputError(f"beneficiaries row {n}: basis must be claims or voluntary", f"beneficiaries[{n}].basis")
        months = int(checked(row["months"], _MONTHS, "beneficiaries", n, "months", "a month count 1-12"))
        try:
            scaled = Decimal(row["risk_score"]) * RISK_SCALE
        except InvalidOperation:
            scaled = Decimal("NaN")
        if not scaled.is_finite() or scaled != scaled.to_integral_value() or not 0 < scaled < 100 * RISK_SCALE:
            raise InputError(f"beneficiaries row {n}: risk_score is not a score above 0 with at most 4 decimals",
                             f"beneficiaries[{n}].risk_score")
        out.append({"aco": aco, "patient_id": patient, "basis": row["basis"], "months": months, "risk": int(scaled)})
    return out


def parse_claims(text: str, aco: str) -> list[dict]:
    out = []
    for n, row in csv_rows(text, "claims", CLAIM_COLUMNS):
        served = iso_date(row["service_date"], "claims", n, "service_date")
        received = iso_date(row["received_date"], "claims", n, "received_date")
        if received < served:
            raise InputError(f"claims row {n}: received_date is before service_date", f"claims[{n}].received_date")
        out.append({"aco": aco, "patient_id": checked(row["patient"], PATIENT_ID, "claims", n, "patient", "a Patient id"),
                    "service_date": row["service_date"], "received_date": row["received_date"],
                    "service_month": month_index(served), "received_month": month_index(received),
                    "paid_cents": amount_cents(row["paid"], "claims", n, "paid")})
    return out


def replace_inputs(conn: Connection, aco: str, contract: dict, beneficiaries: list[dict], claims: list[dict]) -> None:
    """The ACO's savings inputs become exactly these."""
    conn.execute(delete(savings_contracts).where(savings_contracts.c.aco == aco))
    conn.execute(insert(savings_contracts), [contract])
    for table, rows in ((savings_beneficiaries, beneficiaries), (savings_claims, claims)):
        conn.execute(delete(table).where(table.c.aco == aco))
        for start in range(0, len(rows), _BATCH):
            conn.execute(insert(table), rows[start:start + _BATCH])
