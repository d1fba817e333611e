"""Which members a committed write touched, found through the Patient-compartment reference index.

A created or updated resource names its members in its current index rows; an updated or deleted one
also in its previous version (a Condition moved from one patient to another changes both), read from
history and indexed again in memory. A Condition can also be evidence for the patient of a Claim or
ExplanationOfBenefit that cites it by `diagnosisReference`. Writes of types the engine does not read
touch nobody.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import orjson
from sqlalchemy import Connection, and_, select, tuple_

from server.alignment.index_keys import READ_TYPES, IndexKeys, compartment_hashes
from server.fhir import searchparams
from server.fhir.service import Written
from server.store.resources import chunks
from server.store.schema import idx_reference, resource_history


def touched_members(conn: Connection, keys: IndexKeys, written: Sequence[Written]) -> set[str]:
    relevant = [w for w in written if w.rtype in READ_TYPES]
    members = {w.rid for w in relevant if w.rtype == "Patient"}
    others = [w for w in relevant if w.rtype != "Patient"]
    members |= _referenced_now(conn, [(w.rtype, w.rid) for w in others if not w.deleted])
    members |= _referenced_before(conn, [(w.rtype, w.rid, w.version - 1) for w in others if w.version > 1])
    members |= _claims_citing(conn, keys, [w.rid for w in others if w.rtype == "Condition"])
    return members


def _referenced_now(conn: Connection, resources: list[tuple[str, str]]) -> set[str]:
    x = idx_reference.c
    hashes = sorted({h for rtype, _ in resources for h in compartment_hashes(rtype)})
    found: set[str] = set()
    for chunk in chunks(resources):
        stmt = select(x.target_id).where(
            tuple_(x.rtype, x.rid).in_(chunk), x.h_param.in_(hashes), x.target_type == "Patient"
        ).distinct()
        found.update(conn.execute(stmt).scalars())
    return found


def _referenced_before(conn: Connection, versions: list[tuple[str, str, int]]) -> set[str]:
    h = resource_history.c
    found: set[str] = set()
    for chunk in chunks(versions):
        stmt = select(h.content).where(tuple_(h.rtype, h.rid, h.version).in_(chunk), h.deleted.is_(False))
        for content in conn.execute(stmt).scalars():
            found.update(_patients_in(orjson.loads(content)))
    return found


def _patients_in(resource: dict) -> Iterable[str]:
    codes = searchparams.patient_compartment().get(resource["resourceType"], ())
    for _h, ttype, tid, _url in searchparams.index_rows(resource, codes).references:
        if ttype == "Patient" and tid:
            yield tid


def _claims_citing(conn: Connection, keys: IndexKeys, condition_ids: list[str]) -> set[str]:
    cites, patient = idx_reference.alias("cites"), idx_reference.alias("claim_patient")
    found: set[str] = set()
    for chunk in chunks(condition_ids):
        stmt = (
            select(patient.c.target_id)
            .select_from(cites.join(patient, and_(
                patient.c.rtype == cites.c.rtype,
                patient.c.rid == cites.c.rid,
                patient.c.h_param.in_([c.patient for c in keys.claims]),
                patient.c.target_type == "Patient",
            )))
            .where(
                cites.c.target_id.in_(chunk),
                cites.c.target_type == "Condition",
                cites.c.h_param.in_([c.diagnosis_reference for c in keys.claims]),
            )
            .distinct()
        )
        found.update(conn.execute(stmt).scalars())
    return found
