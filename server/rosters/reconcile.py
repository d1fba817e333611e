"""Reconciliation of a roster with the payer file it came from and with the server's own data (SPEC §11).

Against the latest imported file, every mismatch is listed, never dropped:

* `unknown-participant`: a participant id of the file names no member known to the server;
* `not-in-payer-file`: a current roster member the file does not list;
* `authorization-missing` / `authorization-stale`: the file states `approved`, but no stored authorization
  (a `Claim` with `use=preauthorization`, or a `CoverageEligibilityResponse` with `outcome=complete`) exists
  for the member, or the latest one is older than the pilot's `authorization_valid_days` before the
  attribution date;
* `exclusion-reason-invalid`: the stated exclusion reason is not one the pilot's rule set accepts
  (`mappings/roster/pilot-rules.json`);
* `category-contradicted`: PlanFit's findings for the member show no evidence of the stated qualifying
  diagnosis category.

Stored authorizations and finding categories are read with one grouped query each over the file's members.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

from sqlalchemy import Connection, and_, func, select

from server.data_files import data_directory
from server.fhir.errors import FhirError
from server.fhir.searchparams import param_hash
from server.store.alignment_schema import finding_categories
from server.rosters.reports import csv_text, optional_parts
from server.store.roster_schema import roster_file_rows, roster_imports, roster_members
from server.store.schema import idx_date, idx_reference, idx_token, resources
from server.store.hashing import h64

KINDS = ("unknown-participant", "not-in-payer-file", "authorization-missing", "authorization-stale",
         "exclusion-reason-invalid", "category-contradicted")
RULES_FILE = data_directory("mappings") / "roster" / "pilot-rules.json"
# What counts as a stored authorization: (type, token parameter, value).
AUTHORIZATIONS = (("Claim", "use", "preauthorization"), ("CoverageEligibilityResponse", "outcome", "complete"))
_US_PER_DAY = 86_400_000_000
CSV_COLUMNS = ("kind", "participant_id", "patient_id", "row", "field", "stated", "found")


@dataclass(frozen=True)
class PilotRules:
    exclusion_reasons: frozenset[str]
    authorization_valid_days: int

    @classmethod
    def load(cls, path: Path = RULES_FILE) -> "PilotRules":
        data = json.loads(path.read_text())
        return cls(frozenset(data["exclusion_reasons"]), int(data["authorization_valid_days"]))


@dataclass(frozen=True)
class Mismatch:
    kind: str
    participant_id: str | None
    patient_id: str | None
    row: int | None
    field: str
    stated: str | None
    found: str | None


@dataclass(frozen=True)
class Report:
    group_id: str
    sha256: str
    participants: int
    mismatches: tuple[Mismatch, ...]


def reconcile(conn: Connection, group_id: str, rules: PilotRules) -> Report:
    sha = conn.execute(select(roster_imports.c.sha256).where(roster_imports.c.group_id == group_id)
                       .order_by(roster_imports.c.imported_us.desc()).limit(1)).scalar()
    if sha is None:
        raise FhirError.of(422, "not-found", f"Group/{group_id} has no imported payer file to reconcile with")
    f = roster_file_rows.c
    in_file = and_(f.group_id == group_id, f.sha256 == sha)
    rows = list(conn.execute(select(roster_file_rows).where(in_file).order_by(f.row_no)))
    file_patients = select(f.patient_id).where(in_file, f.patient_id.is_not(None))
    listed = {row.patient_id for row in rows if row.patient_id is not None}
    authorized = _latest_authorizations(conn, listed)
    categories = _categories(conn, file_patients)
    found: list[Mismatch] = []
    for row in rows:
        found.extend(_row_mismatches(row, rules, authorized, categories))
    # Current members the file does not list: one scan of the roster, compared here (a NOT IN planned on the
    # statistics of a file imported moments ago took seconds).
    mm = roster_members.c
    extra: dict[str, str | None] = {}
    for pid, member_id in conn.execute(select(mm.patient_id, mm.member_value)
                                       .where(mm.group_id == group_id, mm.inactive.is_(False))):
        if pid not in listed and (pid not in extra or (member_id or "") < (extra[pid] or "")):
            extra[pid] = member_id
    found.extend(Mismatch("not-in-payer-file", extra[pid], pid, None, "participant_id", None, f"Patient/{pid}")
                 for pid in sorted(extra))
    return Report(group_id, sha, len(rows), tuple(found))


def _row_mismatches(row, rules: PilotRules, authorized: dict[str, int], categories: dict[str, set[str]]):
    if row.patient_id is None:
        yield Mismatch("unknown-participant", row.participant_id, None, row.row_no, "participant_id",
                       row.participant_id, None)
        return
    pid = row.patient_id
    if row.authorization == "approved" and row.attribution_date is not None:
        latest = authorized.get(pid)
        if latest is None:
            yield Mismatch("authorization-missing", row.participant_id, pid, row.row_no, "authorization_status",
                           "approved", None)
        else:
            cutoff = date.fromisoformat(row.attribution_date) - timedelta(days=rules.authorization_valid_days)
            stored = date(1970, 1, 1) + timedelta(days=latest // _US_PER_DAY)
            if stored < cutoff:
                yield Mismatch("authorization-stale", row.participant_id, pid, row.row_no, "authorization_status",
                               "approved", f"latest authorization {stored.isoformat()}")
    if row.exclusion is not None and row.exclusion not in rules.exclusion_reasons:
        yield Mismatch("exclusion-reason-invalid", row.participant_id, pid, row.row_no, "exclusion_reason",
                       row.exclusion, None)
    if row.category is not None and row.category not in categories.get(pid, set()):
        shown = ", ".join(sorted(categories.get(pid, set()))) or None
        yield Mismatch("category-contradicted", row.participant_id, pid, row.row_no, "qualifying_category",
                       row.category, shown)


def _latest_authorizations(conn: Connection, patients: set[str]) -> dict[str, int]:
    """Patient id → the `created` date (epoch µs) of its latest stored authorization, for these patients.
    Grouped over every authorization of the type (few compared with members), then kept for `patients`."""
    r, x, d, t = resources.c, idx_reference.c, idx_date.c, idx_token.c
    latest: dict[str, int] = {}
    for rtype, code, value in AUTHORIZATIONS:
        stmt = (select(x.target_id, func.max(d.lo))
                .join(idx_date, and_(d.rtype == x.rtype, d.rid == x.rid, d.h_param == param_hash(rtype, "created")))
                .join(idx_token, and_(t.rtype == x.rtype, t.rid == x.rid, t.h_value == h64(rtype, code, value)))
                .join(resources, and_(r.rtype == x.rtype, r.rid == x.rid, r.deleted.is_(False)))
                .where(x.rtype == rtype, x.h_param == param_hash(rtype, "patient"), x.target_type == "Patient")
                .group_by(x.target_id))
        for pid, lo in conn.execute(stmt):
            if pid in patients:
                latest[pid] = max(lo, latest.get(pid, lo))
    return latest


def _categories(conn: Connection, patients) -> dict[str, set[str]]:
    c = finding_categories.c
    out: dict[str, set[str]] = {}
    for pid, category in conn.execute(select(c.patient_id, c.category).where(c.patient_id.in_(patients))):
        out.setdefault(pid, set()).add(category)
    return out


def report_parameters(report: Report) -> dict:
    counts = {kind: 0 for kind in KINDS}
    for item in report.mismatches:
        counts[item.kind] += 1
    params: list[dict] = [
        {"name": "group", "valueReference": {"reference": f"Group/{report.group_id}"}},
        {"name": "file", "valueString": report.sha256},
        {"name": "participants", "valueInteger": report.participants},
        {"name": "mismatches", "valueInteger": len(report.mismatches)},
    ]
    params += [{"name": "count", "part": [{"name": "kind", "valueCode": k}, {"name": "value", "valueInteger": n}]}
               for k, n in counts.items()]
    for item in report.mismatches:
        parts = [{"name": "kind", "valueCode": item.kind}, {"name": "field", "valueString": item.field}]
        if item.participant_id is not None:
            parts.append({"name": "participantId", "valueString": item.participant_id})
        if item.patient_id is not None:
            parts.append({"name": "patient", "valueReference": {"reference": f"Patient/{item.patient_id}"}})
        if item.row is not None:
            parts.append({"name": "row", "valueInteger": item.row})
        parts += optional_parts("String", stated=item.stated, found=item.found)
        params.append({"name": "mismatch", "part": parts})
    return {"resourceType": "Parameters", "parameter": params}


def report_csv(report: Report) -> str:
    return csv_text(CSV_COLUMNS, ((i.kind, i.participant_id, i.patient_id, i.row, i.field, i.stated, i.found)
                                  for i in report.mismatches))
