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
  diagnosis category;
* `service-category-contradicted`: the stated qualifying category is a service category of the benefit
  matrix (`mappings/benefits.json`) and none of the member's claims bills a code of it.

Set-based: one statement per kind over the file's rows (joined with the roster, the index tables and the
findings), so only the mismatches come back to Python.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

from pydantic import Field
from sqlalchemy import BigInteger, Connection, Date, and_, cast, exists, func, or_, select, union_all

from server.data_files import MappingFile, data_directory, read_mapping
from server.fhir.errors import FhirError
from server.fhir.searchparams import param_hash
from server.store.alignment_schema import finding_categories
from server.rosters.reports import csv_text, parameters_json
from server.store.roster_schema import roster_file_rows, roster_imports, roster_members
from server.store.schema import idx_date, idx_reference, idx_token, resources
from server.store.hashing import h64

f, mm = roster_file_rows.c, roster_members.c

KINDS = ("unknown-participant", "not-in-payer-file", "authorization-missing", "authorization-stale",
         "exclusion-reason-invalid", "category-contradicted", "service-category-contradicted")
RULES_FILE = data_directory("mappings") / "roster" / "pilot-rules.json"
# What counts as a stored authorization: (type, token parameter, value).
AUTHORIZATIONS = (("Claim", "use", "preauthorization"), ("CoverageEligibilityResponse", "outcome", "complete"))
# Where a service category shows: the items' codes (PlanFit search parameter `service`) of these types.
SERVICE_EVIDENCE = ("Claim", "ExplanationOfBenefit")
_US_PER_DAY = 86_400_000_000
CSV_COLUMNS = ("kind", "participant_id", "patient_id", "row", "field", "stated", "found")


class PilotRules(MappingFile):
    """`mappings/roster/pilot-rules.json`: the pilot's own controls (SPEC §11)."""

    description: str = ""
    exclusion_reasons: frozenset[Annotated[str, Field(pattern=r"^[a-z0-9-]{1,64}$")]]
    authorization_valid_days: Annotated[int, Field(gt=0)]

    @classmethod
    def load(cls, path: Path = RULES_FILE) -> "PilotRules":
        return read_mapping(path, cls, "roster/pilot-rules.json")


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


@dataclass(frozen=True)
class Categories:
    """What a payer file's qualifying category may name: a diagnosis category (a value set of the loaded
    mappings, evidenced by the member's findings) or a service category of the benefit matrix
    (`mappings/benefits.json`, evidenced by a procedure or revenue code on the member's claims)."""

    diagnoses: frozenset[str]
    services: dict[str, frozenset[str]]  # service category → its procedure and revenue codes

    def __post_init__(self) -> None:
        both = self.diagnoses & set(self.services)
        if both:
            raise ValueError(f"categories named both as diagnosis and service categories: {', '.join(sorted(both))}")

    @property
    def names(self) -> frozenset[str]:
        return self.diagnoses | frozenset(self.services)


def reconcile(conn: Connection, group_id: str, rules: PilotRules, categories: Categories) -> Report:
    """One statement per kind of mismatch over the latest file's rows; only the mismatches come back."""
    sha = conn.execute(select(roster_imports.c.sha256).where(roster_imports.c.group_id == group_id)
                       .order_by(roster_imports.c.imported_us.desc()).limit(1)).scalar()
    if sha is None:
        raise FhirError.of(422, "not-found", f"Group/{group_id} has no imported payer file to reconcile with")
    in_file = and_(f.group_id == group_id, f.sha256 == sha)
    known = and_(in_file, f.patient_id.is_not(None))
    found = [Mismatch("unknown-participant", participant, None, row, "participant_id", participant, None)
             for row, participant in conn.execute(select(f.row_no, f.participant_id)
                                                  .where(in_file, f.patient_id.is_(None)))]
    found += _authorizations(conn, known, rules)
    found += [Mismatch("exclusion-reason-invalid", participant, pid, row, "exclusion_reason", exclusion, None)
              for row, participant, pid, exclusion in conn.execute(
                  select(f.row_no, f.participant_id, f.patient_id, f.exclusion)
                  .where(known, f.exclusion.is_not(None), f.exclusion.not_in(sorted(rules.exclusion_reasons))))]
    found += _diagnoses(conn, known, categories.diagnoses)
    found += _services(conn, known, categories.services)
    # Current members the file does not list (one anti-join), named by their member id where they have one.
    listed = exists().where(in_file, f.patient_id == mm.patient_id)
    found += [Mismatch("not-in-payer-file", member_id, pid, None, "participant_id", None, f"Patient/{pid}")
              for pid, member_id in conn.execute(
                  select(mm.patient_id, func.min(mm.member_value)).where(mm.group_id == group_id, mm.inactive.is_(False),
                                                                          ~listed).group_by(mm.patient_id))]
    order = {kind: n for n, kind in enumerate(KINDS)}
    found.sort(key=lambda i: (i.row is None, i.row or 0, order[i.kind], i.patient_id or ""))
    participants = conn.execute(select(func.count()).where(in_file)).scalar_one()
    return Report(group_id, sha, participants, tuple(found))


def _epoch_us(conn: Connection, day):
    """A YYYY-MM-DD column as microseconds since the epoch (midnight UTC), in the database's dialect."""
    if conn.dialect.name == "postgresql":
        return cast(func.extract("epoch", cast(day, Date)) * 1_000_000, BigInteger)
    return cast(func.strftime("%s", day), BigInteger) * 1_000_000


def _unindexed(column):
    """The column, kept from driving the plan: these joins go from the members' references to each resource's
    own index rows ((rtype, rid, h_param)), never from a value shared by thousands of resources (SQLite
    otherwise probes the value index per row)."""
    return column + 0


def _authorizations(conn: Connection, known, rules: PilotRules) -> list[Mismatch]:
    """Rows stating `approved` whose member has no stored authorization, or only one older than the pilot's
    validity before the attribution date. Authorizations are grouped by patient (every stored one: few
    beside the members), then joined to the file's rows."""
    r, x, d, t = resources.c, idx_reference.c, idx_date.c, idx_token.c
    stored = union_all(*(
        select(x.target_id.label("patient_id"), d.lo.label("lo"))
        .join(idx_date, and_(d.rtype == x.rtype, d.rid == x.rid, d.h_param == param_hash(rtype, "created")))
        .join(idx_token, and_(t.rtype == x.rtype, t.rid == x.rid, t.h_param == param_hash(rtype, code),
                              _unindexed(t.h_value) == h64(rtype, code, value)))
        .join(resources, and_(r.rtype == x.rtype, r.rid == x.rid, r.deleted.is_(False)))
        .where(x.rtype == rtype, x.h_param == param_hash(rtype, "patient"), x.target_type == "Patient")
        for rtype, code, value in AUTHORIZATIONS)).subquery()
    latest = select(stored.c.patient_id, func.max(stored.c.lo).label("lo")).group_by(stored.c.patient_id).subquery()
    valid_us = rules.authorization_valid_days * _US_PER_DAY
    rows = (select(f.row_no, f.participant_id, f.patient_id, latest.c.lo)
            .select_from(roster_file_rows.outerjoin(latest, latest.c.patient_id == f.patient_id))
            .where(known, f.authorization == "approved", f.attribution_date.is_not(None),
                   or_(latest.c.lo.is_(None), latest.c.lo < _epoch_us(conn, f.attribution_date) - valid_us)))
    out = []
    for row, participant, pid, lo in conn.execute(rows):
        if lo is None:
            out.append(Mismatch("authorization-missing", participant, pid, row, "authorization_status", "approved", None))
        else:
            stored_on = date(1970, 1, 1) + timedelta(days=lo // _US_PER_DAY)
            out.append(Mismatch("authorization-stale", participant, pid, row, "authorization_status", "approved",
                                f"latest authorization {stored_on.isoformat()}"))
    return out


def _diagnoses(conn: Connection, known, diagnoses: frozenset[str]) -> list[Mismatch]:
    """Rows stating a diagnosis category the member's findings do not show, with the categories they do
    show: one outer join, grouped here (one row per category held, in file order)."""
    c, shown_all = finding_categories.c, finding_categories.alias("shown_all")
    shown = exists().where(c.patient_id == f.patient_id, c.category == f.category)
    rows = conn.execute(select(f.row_no, f.participant_id, f.patient_id, f.category, shown_all.c.category)
                        .select_from(roster_file_rows.outerjoin(shown_all, shown_all.c.patient_id == f.patient_id))
                        .where(known, f.category.in_(sorted(diagnoses)), ~shown)
                        .order_by(f.row_no, shown_all.c.category))
    stated: dict[int, list] = {}  # row → [participant, patient, category, held categories…]
    for row, participant, pid, category, held in rows:
        entry = stated.setdefault(row, [participant, pid, category])
        if held is not None:
            entry.append(held)
    return [Mismatch("category-contradicted", participant, pid, row, "qualifying_category", category,
                     ", ".join(held) or None) for row, (participant, pid, category, *held) in stated.items()]


def _services(conn: Connection, known, services: dict[str, frozenset[str]]) -> list[Mismatch]:
    """Rows stating a service category no claim of the member shows: no Claim (other than a
    pre-authorization) or ExplanationOfBenefit of the patient with an item whose procedure or revenue
    code is in the category."""
    if not services:
        return []
    x, t = idx_reference.c, idx_token.c
    evidence = []
    for rtype in SERVICE_EVIDENCE:
        item = idx_token.alias("item")
        in_category = or_(*(and_(f.category == name, _unindexed(item.c.h_value).in_([h64(rtype, "service", code) for code in codes]))
                            for name, codes in sorted(services.items())))
        claim = exists().where(x.target_id == f.patient_id, x.target_type == "Patient",  # the hash names rtype
                               x.h_param == param_hash(rtype, "patient"), item.c.rtype == x.rtype, item.c.rid == x.rid,
                               item.c.h_param == param_hash(rtype, "service"), in_category)
        if rtype == "Claim":
            authorization = exists().where(t.rtype == x.rtype, t.rid == x.rid, t.h_param == param_hash("Claim", "use"),
                                           _unindexed(t.h_value) == h64("Claim", "use", "preauthorization"))
            claim = claim.where(~authorization)
        evidence.append(claim)
    rows = conn.execute(select(f.row_no, f.participant_id, f.patient_id, f.category)
                        .where(known, f.category.in_(sorted(services)), ~or_(*evidence)))
    return [Mismatch("service-category-contradicted", participant, pid, row, "qualifying_category", category, None)
            for row, participant, pid, category in rows]


def report_json(report: Report) -> bytes:
    """The report as a Parameters resource: counts per kind, then one `mismatch` per row."""
    counts = {kind: 0 for kind in KINDS}
    for item in report.mismatches:
        counts[item.kind] += 1
    head: list[dict] = [
        {"name": "group", "valueReference": {"reference": f"Group/{report.group_id}"}},
        {"name": "file", "valueString": report.sha256},
        {"name": "participants", "valueInteger": report.participants},
        {"name": "mismatches", "valueInteger": len(report.mismatches)},
    ]
    head += [{"name": "count", "part": [{"name": "kind", "valueCode": k}, {"name": "value", "valueInteger": n}]}
             for k, n in counts.items()]
    return parameters_json(head, (_mismatch_parameter(item) for item in report.mismatches))


def _mismatch_parameter(item: Mismatch) -> dict:
    """One `mismatch` parameter; spelled out part by part (built 200,000 times for a large file)."""
    parts = [{"name": "kind", "valueCode": item.kind}, {"name": "field", "valueString": item.field}]
    if item.participant_id is not None:
        parts.append({"name": "participantId", "valueString": item.participant_id})
    if item.patient_id is not None:
        parts.append({"name": "patient", "valueReference": {"reference": "Patient/" + item.patient_id}})
    if item.row is not None:
        parts.append({"name": "row", "valueInteger": item.row})
    if item.stated is not None:
        parts.append({"name": "stated", "valueString": item.stated})
    if item.found is not None:
        parts.append({"name": "found", "valueString": item.found})
    return {"name": "mismatch", "part": parts}


def report_csv(report: Report) -> str:
    return csv_text(CSV_COLUMNS, ((i.kind, i.participant_id, i.patient_id, i.row, i.field, i.stated, i.found)
                                  for i in report.mismatches))
