"""The projection's input files, CCLF-style CSV, validated whole before anything is stored.

* claims: `patient,tin,npi,hcpcs,service_date,allowed,specialist` — one Part B claim line: the
  beneficiary's Patient id, billing TIN (9 digits), rendering NPI (10 digits), HCPCS, date of service
  (YYYY-MM-DD), allowed charge in dollars (2 decimals at most), `Y` when the rendering clinician is a
  primary care specialist;
* beneficiaries: `patient,part_a,part_b,medicare_advantage,medicare_secondary,us_resident,
  aligned_elsewhere,voluntary_tin,voluntary_npi` — enrollment flags (`Y`/`N`) and the voluntary
  designation (both empty when there is none).

A bad value is refused with its file, row (1-based, after the header) and column; loading replaces the
ACO's previous inputs in one transaction.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date
from decimal import Decimal, InvalidOperation

from sqlalchemy import Connection, delete, insert

from server.projection.rules import ELIGIBILITY_FLAGS
from server.projection.schema import projection_beneficiaries, projection_claims

CLAIM_COLUMNS = ("patient", "tin", "npi", "hcpcs", "service_date", "allowed", "specialist")
BENEFICIARY_COLUMNS = ("patient", *ELIGIBILITY_FLAGS, "voluntary_tin", "voluntary_npi")
PATIENT_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_TIN = re.compile(r"\d{9}")
_NPI = re.compile(r"\d{10}")
_HCPCS = re.compile(r"[A-Z0-9]{5}")
_FLAGS = {"Y": True, "N": False}
_BATCH = 5000


class InputError(ValueError):
    def __init__(self, message: str, where: str):
        super().__init__(message)
        self.where = where


def csv_rows(text: str, name: str, columns: tuple[str, ...]):
    reader = csv.reader(io.StringIO(text))
    header = next(reader, None)
    if header is None or tuple(h.strip() for h in header) != columns:
        raise InputError(f"{name}: the header must be {','.join(columns)}", f"{name}.header")
    for number, row in enumerate(reader, start=1):
        if not row:
            continue
        if len(row) != len(columns):
            raise InputError(f"{name} row {number}: {len(row)} fields, expected {len(columns)}", f"{name}[{number}]")
        yield number, dict(zip(columns, (v.strip() for v in row)))


def checked(value: str, pattern: re.Pattern, name: str, number: int, column: str, what: str) -> str:
    if not pattern.fullmatch(value):
        raise InputError(f"{name} row {number}: {column} is not {what}", f"{name}[{number}].{column}")
    return value


def new_patient(row: dict, seen: set[str], number: int) -> str:
    """The row's Patient id, once per beneficiaries file."""
    patient = checked(row["patient"], PATIENT_ID, "beneficiaries", number, "patient", "a Patient id")
    if patient in seen:
        raise InputError(f"beneficiaries row {number}: patient is listed twice", f"beneficiaries[{number}].patient")
    seen.add(patient)
    return patient


def iso_date(value: str, name: str, number: int, column: str) -> date:
    try:
        day = date.fromisoformat(value)
        if len(value) == 10:
            return day
    except ValueError:
        pass
    raise InputError(f"{name} row {number}: {column} is not YYYY-MM-DD", f"{name}[{number}].{column}")


def amount_cents(value: str, name: str, number: int, column: str) -> int:
    """A non-negative dollar amount with at most two decimals, in cents."""
    try:
        cents = Decimal(value) * 100
    except InvalidOperation:
        cents = Decimal("NaN")
    if not cents.is_finite() or cents != cents.to_integral_value() or cents < 0:
        raise InputError(f"{name} row {number}: {column} is not an amount in dollars", f"{name}[{number}].{column}")
    return int(cents)


def _flag(value: str, name: str, number: int, column: str) -> bool:
    if value not in _FLAGS:
        raise InputError(f"{name} row {number}: {column} must be Y or N", f"{name}[{number}].{column}")
    return _FLAGS[value]


def parse_claims(text: str, aco: str) -> list[dict]:
    out = []
    for n, row in csv_rows(text, "claims", CLAIM_COLUMNS):
        iso_date(row["service_date"], "claims", n, "service_date")
        cents = amount_cents(row["allowed"], "claims", n, "allowed")
        out.append({"aco": aco, "patient_id": checked(row["patient"], PATIENT_ID, "claims", n, "patient", "a Patient id"),
                    "tin": checked(row["tin"], _TIN, "claims", n, "tin", "9 digits"),
                    "npi": checked(row["npi"], _NPI, "claims", n, "npi", "10 digits"),
                    "hcpcs": checked(row["hcpcs"].upper(), _HCPCS, "claims", n, "hcpcs", "a HCPCS code"),
                    "service_date": row["service_date"], "allowed_cents": cents,
                    "specialist": _flag(row["specialist"], "claims", n, "specialist")})
    return out


def parse_beneficiaries(text: str, aco: str) -> list[dict]:
    out, seen = [], set()
    for n, row in csv_rows(text, "beneficiaries", BENEFICIARY_COLUMNS):
        patient = new_patient(row, seen, n)
        tin, npi = row["voluntary_tin"] or None, row["voluntary_npi"] or None
        if tin is not None:
            checked(tin, _TIN, "beneficiaries", n, "voluntary_tin", "9 digits")
        if npi is not None:
            checked(npi, _NPI, "beneficiaries", n, "voluntary_npi", "10 digits")
        if npi is not None and tin is None:
            raise InputError(f"beneficiaries row {n}: voluntary_npi without voluntary_tin",
                             f"beneficiaries[{n}].voluntary_tin")
        out.append({"aco": aco, "patient_id": patient, "voluntary_tin": tin, "voluntary_npi": npi,
                    **{f: _flag(row[f], "beneficiaries", n, f) for f in ELIGIBILITY_FLAGS}})
    return out


def replace_inputs(conn: Connection, aco: str, claims: list[dict], beneficiaries: list[dict]) -> None:
    """The ACO's inputs become exactly these rows."""
    for table, rows in ((projection_claims, claims), (projection_beneficiaries, beneficiaries)):
        conn.execute(delete(table).where(table.c.aco == aco))
        for start in range(0, len(rows), _BATCH):
            conn.execute(insert(table), rows[start:start + _BATCH])
