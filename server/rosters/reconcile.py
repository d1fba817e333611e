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

Set-based: one pass over the file's rows finds every kind they show (joined with the index tables and the
findings), one anti-join the members the file does not list; united and ordered in the database as narrow rows; the database then writes each mismatch's
JSON from them, so only the report's text comes back to Python.
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Annotated

import orjson
from pydantic import Field
from sqlalchemy import (BigInteger, Connection, Date, Integer, Select, Subquery, Text, and_, case, cast, collate, exists,
                        false, func, literal, null, or_, select, true, union_all)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.selectable import Join

from server.data_files import MappingFile, data_directory, read_mapping
from server.fhir.errors import FhirError
from server.fhir.searchparams import param_hash
from server.store.alignment_schema import finding_categories
from server.rosters.reports import csv_text, parameters_text
from server.store.roster_schema import roster_file_rows, roster_imports, roster_members
from server.store.schema import idx_date, idx_reference, idx_token, resources
from server.store.statistics import plan_locally
from server.store.hashing import h64

f, mm = roster_file_rows.c, roster_members.c

KINDS = ("unknown-participant", "not-in-payer-file", "authorization-missing", "authorization-stale",
         "exclusion-reason-invalid", "category-contradicted", "service-category-contradicted")
# The kinds a file's row shows (authorization-missing stands for -stale too); the other is about members.
_FILE_KINDS = ("unknown-participant", "authorization-missing", "exclusion-reason-invalid", "category-contradicted",
               "service-category-contradicted")
RULES_FILE = data_directory("mappings") / "roster" / "pilot-rules.json"
# What counts as a stored authorization: (type, token parameter, value).
AUTHORIZATIONS = (("Claim", "use", "preauthorization"), ("CoverageEligibilityResponse", "outcome", "complete"))
# Where a service category shows: the items' codes (PlanFit search parameter `service`) of these types.
SERVICE_EVIDENCE = ("Claim", "ExplanationOfBenefit")
_US_PER_DAY = 86_400_000_000
CSV_COLUMNS = ("kind", "participant_id", "patient_id", "row", "field", "stated", "found")
MISMATCH_COLUMNS = ("kind", "participant_id", "patient_id", "row_no", "field", "stated", "found")
# The file's field each kind of mismatch is about.
FIELDS = {"unknown-participant": "participant_id", "not-in-payer-file": "participant_id",
          "authorization-missing": "authorization_status", "authorization-stale": "authorization_status",
          "exclusion-reason-invalid": "exclusion_reason", "category-contradicted": "qualifying_category",
          "service-category-contradicted": "qualifying_category"}


class PilotRules(MappingFile):
    """`mappings/roster/pilot-rules.json`: the pilot's own controls (SPEC §11)."""

    description: str = ""
    exclusion_reasons: frozenset[Annotated[str, Field(pattern=r"^[a-z0-9-]{1,64}$")]]
    authorization_valid_days: Annotated[int, Field(gt=0)]

    @classmethod
    def load(cls, path: Path = RULES_FILE) -> "PilotRules":
        return read_mapping(path, cls, "roster/pilot-rules.json")


@dataclass(frozen=True)
class Reconciliation:
    """The latest file of a list and its mismatches: one row each in `mismatches` (`kind_order`, the position
    in KINDS that names the kind and its field, then the other MISMATCH_COLUMNS), reported in `order` (file
    row, kind, patient; members the file does not list last)."""

    group_id: str
    sha256: str
    participants: int
    mismatches: Subquery
    order: tuple

    def select(self, *columns) -> Select:
        return select(*columns).order_by(*self.order)


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


def reconcile(conn: Connection, group_id: str, rules: PilotRules, categories: Categories) -> Reconciliation:
    """The file's rows in one pass for every kind they can show, and one anti-join for the members the file
    does not list, united and ordered in the database: only the mismatches come back, already in report order."""
    latest_file = conn.execute(select(roster_imports.c.id, roster_imports.c.sha256)
                               .where(roster_imports.c.group_id == group_id)
                               .order_by(roster_imports.c.imported_us.desc(), roster_imports.c.id.desc()).limit(1)).first()
    if latest_file is None:
        raise FhirError.of(422, "not-found", f"Group/{group_id} has no imported payer file to reconcile with")
    _plan_settings(conn)
    import_id, sha = latest_file
    in_file = f.import_id == import_id
    # Current members the file does not list (one anti-join), named by their member id where they have one.
    listed = exists().where(in_file, f.patient_id == mm.patient_id)
    unlisted = (_mismatch("not-in-payer-file", None, func.min(mm.member_value), mm.patient_id, None,
                          _text("Patient/") + mm.patient_id)
                .where(mm.group_id == group_id, mm.inactive.is_(False), ~listed).group_by(mm.patient_id))
    every = union_all(_file_row_mismatches(conn, in_file, rules, categories), unlisted).subquery("mismatch")
    patient = func.coalesce(every.c.patient_id, "")
    if conn.dialect.name == "postgresql":  # the report orders ids by code point, whatever the database's locale
        patient = collate(patient, "C")
    # Sorted as narrow rows, in a sub-select whose order the outer select keeps: the report's text is written
    # after the sort (sorting the 200,000 written mismatches spilled 87 MB to disk).
    last, key = every.c.row_no.is_(None).label("listed_last"), patient.label("patient_key")
    ordered = select(every, last, key).order_by(last, every.c.row_no, every.c.kind_order, key).subquery("ordered")
    participants = conn.execute(select(func.count()).where(in_file)).scalar_one()
    order = (ordered.c.listed_last, ordered.c.row_no, ordered.c.kind_order, ordered.c.patient_key)
    return Reconciliation(group_id, sha, participants, ordered, order)


def _file_row_mismatches(conn: Connection, in_file, rules: PilotRules, categories: Categories) -> Select:
    """Every mismatch the file's rows show, in one pass over them: each row meets the kinds (a constant
    table of their positions in KINDS, the inner side of a CROSS JOIN, so the rows stay the outer loop) and
    keeps the kinds whose condition it meets. A statement per kind read the 100,000 rows of a file once per
    kind (SQLite, 2026-12-04: 0.61 s of CPU for the kinds, 0.31 s in one pass)."""
    slot = union_all(*(select(literal(KINDS.index(k), Integer).label("slot")) for k in _FILE_KINDS)).subquery("kind")
    latest = _latest_authorizations(conn)
    known = f.patient_id.is_not(None)
    missing = latest.c.lo.is_(None)
    held = _categories_held(conn)
    conditions = {
        "unknown-participant": f.patient_id.is_(None),
        "authorization-missing": and_(known, f.authorization == "approved", f.attribution_date.is_not(None),
                                      or_(missing, latest.c.lo < _epoch_us(conn, f.attribution_date)
                                          - rules.authorization_valid_days * _US_PER_DAY)),
        "exclusion-reason-invalid": and_(known, f.exclusion.is_not(None),
                                         f.exclusion.not_in(sorted(rules.exclusion_reasons))),
        "category-contradicted": and_(known, f.category.in_(sorted(categories.diagnoses)), ~_category_shown()),
        "service-category-contradicted": _service_contradicted(known, categories.services),
    }
    authorization = KINDS.index("authorization-missing")  # or -stale: the slot finds both
    order = case((slot.c.slot == authorization,
                  case((missing, authorization), else_=KINDS.index("authorization-stale"))), else_=slot.c.slot)
    stated = case({KINDS.index("unknown-participant"): f.participant_id, authorization: _text("approved"),
                   KINDS.index("exclusion-reason-invalid"): f.exclusion,
                   KINDS.index("category-contradicted"): f.category,
                   KINDS.index("service-category-contradicted"): f.category}, value=slot.c.slot)
    found = case((and_(slot.c.slot == authorization, ~missing), _text("latest authorization ") + _day_text(conn, latest.c.lo)),
                 (slot.c.slot == KINDS.index("category-contradicted"), held))
    rows = _CrossJoin(roster_file_rows.outerjoin(latest, latest.c.patient_id == f.patient_id), slot)
    return (_mismatch(order, f.row_no, f.participant_id, f.patient_id, stated, found).select_from(rows)
            .where(in_file, or_(*(and_(slot.c.slot == KINDS.index(kind), condition)
                                  for kind, condition in conditions.items()))))


class _CrossJoin(Join):
    """`left CROSS JOIN right`: SQLite keeps the left side the outer loop of a CROSS JOIN (with an inner
    join on a constant condition it put the five-row kind table outside and read the file once per kind)."""

    inherit_cache = True

    def __init__(self, left, right):
        super().__init__(left, right, true())


@compiles(_CrossJoin)
def _compile_cross_join(join: _CrossJoin, compiler, **kw) -> str:
    kw["asfrom"] = True
    linter = kw.get("from_linter")
    if linter is not None:  # the pairs are joined on purpose: no cartesian-product warning
        linter.edges.update(itertools.product(join.left._from_objects, join.right._from_objects))
    return f"{join.left._compiler_dispatch(compiler, **kw)} CROSS JOIN {join.right._compiler_dispatch(compiler, **kw)}"


def _text(value: str):
    return literal(value, Text)


def _mismatch(kind, row_no, participant, patient, stated, found) -> Select:
    """One kind's statement, its columns in the shape every kind shares (None: a NULL column). `kind` is a
    KINDS name, or an expression giving a position in KINDS for a statement finding two kinds."""
    order = literal(KINDS.index(kind), Integer) if isinstance(kind, str) else kind

    def column(value, type_):
        return cast(null(), type_) if value is None else value

    return select(order.label("kind_order"), column(participant, Text).label("participant_id"),
                  column(patient, Text).label("patient_id"), column(row_no, Integer).label("row_no"),
                  column(stated, Text).label("stated"), column(found, Text).label("found"))


def _per_kind(kind_order, texts: dict[str, str]):
    """The text `texts` gives the kind at `kind_order`."""
    return case(*((kind_order == n, _text(texts[kind])) for n, kind in enumerate(KINDS)))


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


def _latest_authorizations(conn: Connection) -> Subquery:
    """Per patient, the date of the latest stored authorization (every stored one: few beside the members)."""
    r, x, d, t = resources.c, idx_reference.c, idx_date.c, idx_token.c
    stored = union_all(*(
        select(x.target_id.label("patient_id"), d.lo.label("lo"))
        .join(idx_date, and_(d.rtype == x.rtype, d.rid == x.rid, d.h_param == param_hash(rtype, "created")))
        .join(idx_token, and_(t.rtype == x.rtype, t.rid == x.rid, t.h_param == param_hash(rtype, code),
                              _unindexed(t.h_value) == h64(rtype, code, value)))
        .join(resources, and_(r.rtype == x.rtype, r.rid == x.rid, r.deleted.is_(False)))
        .where(x.rtype == rtype, x.h_param == param_hash(rtype, "patient"), x.target_type == "Patient")
        for rtype, code, value in AUTHORIZATIONS)).subquery()
    return select(stored.c.patient_id, func.max(stored.c.lo).label("lo")).group_by(stored.c.patient_id).subquery()


def _day_text(conn: Connection, us):
    """YYYY-MM-DD (UTC) of microseconds since the epoch, in the database's dialect."""
    seconds = func.floor(us / 1_000_000.0)
    if conn.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", func.to_timestamp(seconds)), "YYYY-MM-DD")
    return func.date(seconds, "unixepoch")


def _category_shown():
    """The member's findings show the row's stated diagnosis category: a probe of the (patient, category) key."""
    c = finding_categories.c
    return exists().where(c.patient_id == f.patient_id, c.category == f.category)


def _categories_held(conn: Connection):
    """The diagnosis categories the member's findings do show, in order, comma-separated (the aggregate over
    an ordered window, which both databases keep in order), NULL when none: the window runs only for a
    member with findings (for one without, it cost SQLite 1.3 µs a row to find nothing)."""
    c = finding_categories.c
    join = func.string_agg if conn.dialect.name == "postgresql" else func.group_concat
    held = (select(join(c.category, ", ").over(order_by=c.category, rows=(None, None)))
            .where(c.patient_id == f.patient_id).limit(1).scalar_subquery())
    return case((exists().where(c.patient_id == f.patient_id), held))


def _service_contradicted(known, services: dict[str, frozenset[str]]):
    """The row states a service category no claim of the member shows: no Claim (other than a
    pre-authorization) or ExplanationOfBenefit of the patient with an item whose procedure or revenue
    code is in the category."""
    if not services:
        return false()
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
    return and_(known, f.category.in_(sorted(services)), ~or_(*evidence))


def report_json(conn: Connection, report: Reconciliation) -> bytes:
    """The report as a Parameters resource: counts per kind, then one `mismatch` per row. Each mismatch
    parameter is written as JSON text by the database (200,000 of them took Python 2 s to build and
    serialise); Python counts the kinds and joins the text."""
    item = report.mismatches.c
    # The driver's own rows: SQLAlchemy's row objects doubled Python's time for 200,000 mismatches.
    with conn.execute(report.select(item.kind_order, _mismatch_parameter(conn, item))) as result:
        rows = result.cursor.fetchall()
    counts = Counter(map(itemgetter(0), rows))
    head: list[dict] = [
        {"name": "group", "valueReference": {"reference": f"Group/{report.group_id}"}},
        {"name": "file", "valueString": report.sha256},
        {"name": "participants", "valueInteger": report.participants},
        {"name": "mismatches", "valueInteger": len(rows)},
    ]
    head += [{"name": "count", "part": [{"name": "kind", "valueCode": k}, {"name": "value", "valueInteger": counts[n]}]}
             for n, k in enumerate(KINDS)]
    return parameters_text(head, ",".join(map(itemgetter(1), rows)))


def _plan_settings(conn: Connection) -> None:
    """For this transaction on PostgreSQL: no JIT compilation (with current statistics the service categories'
    sub-plans cost the statement past every JIT threshold, and compiling it took 10 s of a 17 s run at
    100,000 rows, EXPLAIN ANALYZE 2026-12-04 on a loaded machine), and room to sort the mismatches in memory (200,000 rows
    spilled 22 MB to disk at the default 4 MB)."""
    plan_locally(conn, jit="off", work_mem="128MB")


def _mismatch_parameter(conn: Connection, item):
    """One `mismatch` parameter as JSON text, byte for byte what orjson writes for it: its parts in order,
    an absent value leaving its part out. The kind and field parts are constants of the kind."""
    quoted = func.to_json if conn.dialect.name == "postgresql" else func.json_quote

    def string(value):
        return cast(quoted(cast(value, Text)), Text)

    def part(name: str, key: str, value, text=None):
        written = _text(f',{{"name":"{name}","{key}":') + (string(value) if text is None else text) + _text("}")
        return case((value.is_(None), _text("")), else_=written)

    heads = {kind: orjson.dumps({"name": "mismatch", "part": [{"name": "kind", "valueCode": kind},
                                                              {"name": "field", "valueString": FIELDS[kind]}]})
             .decode()[:-2] for kind in KINDS}
    return (_per_kind(item.kind_order, heads)
            + part("participantId", "valueString", item.participant_id)
            + part("patient", "valueReference", item.patient_id,
                   _text('{"reference":') + string(_text("Patient/") + item.patient_id) + _text("}"))
            + part("row", "valueInteger", item.row_no, cast(item.row_no, Text))
            + part("stated", "valueString", item.stated)
            + part("found", "valueString", item.found)
            + _text("]}"))


def report_csv(conn: Connection, report: Reconciliation) -> str:
    item = report.mismatches.c
    columns = {"kind": _per_kind(item.kind_order, {k: k for k in KINDS}), "field": _per_kind(item.kind_order, FIELDS)}
    return csv_text(CSV_COLUMNS, conn.execute(report.select(*(columns.get(n, item.get(n)) for n in MISMATCH_COLUMNS))))
