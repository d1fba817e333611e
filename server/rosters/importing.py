"""Applying a validated payer file to a draft roster, set-based.

Participants are resolved in bulk (member ids through the identifier index, NPIs likewise), every row
is kept in `roster_file_rows` as the payer stated it (unknown participant ids too: the reconciliation lists
them), and the members the file names are added to the roster or their attribution updated, with what the
file stated (attribution date as `member.period.start`, authorization, category, exclusion). Rows go in
with one executemany per kind, not one statement per member.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, insert, select, update

from server.fhir.errors import FhirError
from server.rosters.members import Resolver
from server.rosters.payer_file import PayerFile
from server.store.roster_schema import roster_file_rows, roster_members

m = roster_members.c


@dataclass(frozen=True)
class Imported:
    rows: int
    added: int
    updated: int
    unknown: int


def import_rows(conn: Connection, resolve: Resolver, group_id: str, payer: PayerFile,
                member_system: str | None, stamp: dict) -> Imported:
    """`stamp`: who imports the file and when (the rows' changed_by / changed_us)."""
    patients = _patients(resolve, payer, member_system)
    providers = _providers(resolve, payer)
    coverages = resolve.coverages_of(sorted(set(patients.values())))
    conn.execute(insert(roster_file_rows), [
        {"group_id": group_id, "sha256": payer.sha256, "row_no": row.row_no, "participant_id": row.participant_id,
         "patient_id": patients.get(row.row_no), "attribution_date": row.attribution_date, "category": row.category,
         "authorization": row.authorization, "exclusion": row.exclusion} for row in payer.rows])
    held = {(pid, provider): rid for rid, pid, provider in
            conn.execute(select(m.id, m.patient_id, m.provider_ref).where(m.group_id == group_id))}
    added, updated = [], []
    for row in payer.rows:
        pid = patients.get(row.row_no)
        if pid is None:
            continue
        provider = providers.get(row.row_no)
        values = {"patient_id": pid, "member_system": member_system if row.patient_ref is None else None,
                  "member_value": row.participant_id if row.patient_ref is None else None,
                  "provider_ref": provider, "provider_npi": row.provider_npi, "coverage_id": coverages.get(pid),
                  "period_start": row.attribution_date, "stated_authorization": row.authorization,
                  "stated_category": row.category, "stated_exclusion": row.exclusion, **stamp}
        existing = held.get((pid, provider))
        if existing is None:
            added.append({**values, "group_id": group_id, "inactive": False, "change_type": "new"})
            held[(pid, provider)] = -1  # a participant listed twice for one provider is added once
        elif existing > 0:
            updated.append({**values, "row_id": existing})
    if added:
        conn.execute(insert(roster_members), added)
    if updated:
        conn.execute(update(roster_members).where(m.id == bindparam("row_id"))
                     .values(inactive=False, change_type="changed", **{k: bindparam(k) for k in updated[0]
                                                                         if k != "row_id"}), updated)
    unknown = sum(1 for row in payer.rows if row.row_no not in patients)
    return Imported(len(payer.rows), len(added), len(updated), unknown)


def _patients(resolve: Resolver, payer: PayerFile, member_system: str | None) -> dict[int, str]:
    """row number → Patient id, for the rows whose participant names a member within the caller's reach."""
    by_member = resolve.patients_by_member_ids(member_system, [r.participant_id for r in payer.rows
                                                               if r.patient_ref is None])
    referenced = resolve.visible_patients([r.patient_ref.split("/", 1)[1] for r in payer.rows if r.patient_ref])
    out = {}
    for row in payer.rows:
        if row.patient_ref is not None:
            pid = row.patient_ref.split("/", 1)[1]
            if pid in referenced:
                out[row.row_no] = pid
        elif row.participant_id in by_member:
            out[row.row_no] = by_member[row.participant_id]
    return out


def _providers(resolve: Resolver, payer: PayerFile) -> dict[int, str]:
    """row number → attributed provider reference; an NPI or reference that names no provider refuses the file."""
    by_npi = resolve.providers_by_npi(sorted({r.provider_npi for r in payer.rows if r.provider_npi}))
    out = {}
    for row in payer.rows:
        if row.provider_npi is not None:
            if row.provider_npi not in by_npi:
                raise FhirError.of(422, "not-found", f"Attribution file refused, nothing imported: row {row.row_no}, "
                                                     "field provider_npi: the NPI names no provider known to the server",
                                   f"row[{row.row_no}].provider_npi")
            out[row.row_no] = by_npi[row.provider_npi]
        elif row.provider_ref is not None:
            out[row.row_no] = resolve.provider(row.provider_ref)
    return out
