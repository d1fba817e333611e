"""Denial root cause (SPEC §12, issue 22 item 3): each denied ExplanationOfBenefit line classified as a
product mismatch, coding, authorization or other.

A line is denied when its `item.adjudication` (or, for items without one, the header `adjudication`) has
category `denialreason` (CARIN BB C4BBAdjudicationDiscriminator) with a CARC `reason`; its amount at stake
is the `submitted` adjudication amount (else `net`). Its service category comes from the benefit matrix by
procedure code (HCPCS/CPT) or revenue code (`benefits.py`).

`product-mismatch`: the member's finding *on the date of service* recommends a product whose benefits
cover the category while the enrolled product's do not. That finding is computed, not looked up: the
engine evaluates every (member, date of service) pair of such lines as of its date, from the evidence dated
on or before it, in one pass of its set-based statements whose bounds are the pair's own (a `RowWindow`),
in a transaction that is rolled back (`AlignmentEngine.evaluate_on_days`). A stored history of findings would say what the server
knew on that day, not what the evidence dated up to that day says: claims and charts arrive late, so a
history kept as the data arrives misses diagnoses made before the date of service and filed after it.
Otherwise the CARC's class in the matrix decides: `coding`, `authorization`, else `other`.

The lines are read from an EOB's JSON once, in the transaction that writes it (the `IN_TRANSACTION` hook
`maintain_lines`), into `audit_denied_lines`; a reindex request for ExplanationOfBenefit rebuilds them
for every EOB (the backfill). A run reads those rows, not the EOBs, and classifies them in SQL.

A run replaces the results (`audit_denials`), the cohort Group `denials-product-mismatch` and the summary
`MeasureReport/denial-root-cause` in one write transaction; the Group and the report get a new version.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, fields
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from sqlalchemy import (
    Column,
    Connection,
    Date,
    MetaData,
    String,
    Table,
    and_,
    case,
    delete,
    false,
    func,
    insert,
    literal,
    null,
    or_,
    select,
)

from server.alignment.engine import AlignmentEngine
from server.audit.benefits import BenefitMatrix
from server.fhir import searchparams
from server.fhir.dates import instant_text
from server.fhir.errors import FhirError
from server.measures.definitions import MEASURE_BASE, SD_BASE
from server.measures.report import money, populations
from server.store.alignment_schema import CODE_LEN, findings
from server.store.audit_schema import (
    audit_denials,
    audit_denied_lines,
)
from server.store.db import begin_writing
from server.store.resources import (
    StagedWrite,
    Store,
    WriteTransaction,
    bulk_insert,
    chunks,
    current_contents,
)
from server.store.schema import ID_LEN, resources
from server.store.statistics import analyze_written

DISCRIMINATOR = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudicationDiscriminator"
CARC_SYSTEM = "https://x12.org/codes/claim-adjustment-reason-codes"
RARC_SYSTEM = "https://x12.org/codes/remittance-advice-remark-codes"
REVENUE_SYSTEM = "https://www.nubc.org/CodeSystem/RevenueCodes"
CLASSIFICATIONS = ("product-mismatch", "coding", "authorization", "other")
GROUP_ID = "denials-product-mismatch"
REPORT_ID = "denial-root-cause"
COHORT_SYSTEM = "https://planfit.dev/fhir/cohort"
SOURCE = "https://planfit.dev/fhir/audit"
EOB = "ExplanationOfBenefit"
_FETCH = 2000


@dataclass(frozen=True)
class DeniedLine:
    eob_id: str
    sequence: int
    patient_id: str
    provider: str
    service_date: date
    procedure: str | None
    revenue: str | None
    place_of_service: str | None
    carc: str
    rarc: str | None
    submitted_cents: int
    currency: str


# -- reading the EOBs ---------------------------------------------------------------------------------

def _codes(concept: dict | None) -> list[tuple[str | None, str]]:
    return [(c.get("system"), str(c["code"])) for c in (concept or {}).get("coding", []) if c.get("code")]


def _denial(adjudications: list[dict]) -> tuple[str, str | None] | None:
    """(CARC, RARC) of a denialreason adjudication: `CO-204` and `204` both give 204."""
    for adjudication in adjudications:
        if (DISCRIMINATOR, "denialreason") in _codes(adjudication.get("category")):
            reasons = _codes(adjudication.get("reason"))
            carc = next((code for system, code in reasons if system == CARC_SYSTEM), None)
            if carc:
                rarc = next((code for system, code in reasons if system == RARC_SYSTEM), None)
                return carc.rsplit("-", 1)[-1].strip(), rarc
    return None


def _cents(adjudications: list[dict], item: dict) -> tuple[int, str]:
    amount = next((a.get("amount") for a in adjudications if any(code == "submitted" for _s, code in
                                                                  _codes(a.get("category")))), None)
    amount = amount or item.get("net") or {}
    try:
        return int(Decimal(str(amount.get("value", 0))) * 100), amount.get("currency", "USD")
    except InvalidOperation:
        return 0, amount.get("currency", "USD")


def _reference_id(reference: dict | None, rtype: str) -> str | None:
    ref = (reference or {}).get("reference") or ""
    return ref.split("/", 1)[1] if ref.startswith(rtype + "/") else None


def _provider(eob: dict) -> str:
    provider = eob.get("provider") or {}
    identifier = provider.get("identifier") or {}
    if provider.get("reference"):
        return provider["reference"]
    if identifier.get("value"):
        return f"{identifier.get('system', '')}|{identifier['value']}"
    return provider.get("display", "")


def _service_date(item: dict, eob: dict) -> date | None:
    text = item.get("servicedDate") or (item.get("servicedPeriod") or {}).get("start") \
        or (eob.get("billablePeriod") or {}).get("start")
    try:
        return date.fromisoformat(text[:10]) if text else None
    except ValueError:
        return None


def denied_lines(eob: dict) -> list[DeniedLine]:
    patient = _reference_id(eob.get("patient"), "Patient")
    if patient is None:
        return []
    header = _denial(eob.get("adjudication") or [])
    out = []
    for item in eob.get("item") or []:
        adjudications = item.get("adjudication") or []
        denial = _denial(adjudications) or header
        served = _service_date(item, eob)
        if denial is None or served is None:
            continue
        procedure = next((code for system, code in _codes(item.get("productOrService")) if system != REVENUE_SYSTEM), None)
        revenue = next((code for _system, code in _codes(item.get("revenue"))), None)
        place = next((code for _system, code in _codes(item.get("locationCodeableConcept"))), None)
        cents, currency = _cents(adjudications, item)
        out.append(DeniedLine(eob["id"], int(item.get("sequence", 0)), patient, _provider(eob), served, procedure,
                              revenue, place, denial[0], denial[1], cents, currency))
    return out


LINE_COLUMNS = tuple(f.name for f in fields(DeniedLine))


def _copy_row(line: DeniedLine) -> tuple:
    """A row for `bulk_insert` (COPY on PostgreSQL), the date as ISO text, which both databases read as a date."""
    return tuple(value.isoformat() if isinstance(value, date) else value
                 for value in (getattr(line, name) for name in LINE_COLUMNS))


def _insert_lines(conn: Connection, contents: Iterable[tuple[str, bytes | None]]) -> None:
    """The denied lines of these EOBs. An item's sequence should be unique in its EOB, but nothing enforces
    it: the first line of a sequence is kept, so a write never fails on this table's key."""
    rows = []
    for _rid, content in contents:
        first: dict[int, DeniedLine] = {}
        for line in denied_lines(orjson.loads(content or b"{}")):
            first.setdefault(line.sequence, line)
        rows.extend(_copy_row(line) for line in first.values())
    bulk_insert(conn, audit_denied_lines.name, LINE_COLUMNS, rows)


def maintain_lines(conn: Connection, changed: Mapping[str, Collection[str] | None]) -> None:
    """IN_TRANSACTION hook: the denied lines of the EOBs written (their ids) or of every EOB (None: a
    reindex request, the backfill), rebuilt in the write's transaction, so they commit or roll back with
    the EOB and a run has nothing to catch up on."""
    if EOB not in changed:
        return
    ids = changed[EOB]
    r, d = resources.c, audit_denied_lines.c
    if ids is None:
        conn.execute(delete(audit_denied_lines))
        after = ""
        while page := current_contents(conn, EOB, after, _FETCH):
            _insert_lines(conn, page)
            after = page[-1][0]
        return
    for chunk in chunks(sorted(set(ids))):
        conn.execute(delete(audit_denied_lines).where(d.eob_id.in_(chunk)))
        _insert_lines(conn, conn.execute(select(r.rid, r.content).where(r.rtype == EOB, r.rid.in_(chunk),
                                                                        r.deleted.is_(False))).all())


# -- classifying ----------------------------------------------------------------------------------------
# In SQL over `audit_denied_lines`, not line by line in Python (a DeniedLine, its classification and its
# COPY row per line were a third of a run's time). The benefit matrix is small: it becomes CASE and IN
# expressions over its codes.

def _grouped(index: dict[str, str]) -> list[tuple[str, list[str]]]:
    """code → name as (name, its codes), both sorted: the same SQL text for the same matrix."""
    grouped: dict[str, list[str]] = {}
    for code, name in sorted(index.items()):
        grouped.setdefault(name, []).append(code)
    return sorted(grouped.items())


def _category(matrix: BenefitMatrix, procedure: Any, revenue: Any) -> Any:
    """`BenefitMatrix.category` in SQL: the upper-cased procedure code's category, else the revenue code's
    (a code is in one category at most, so the order of the WHENs of a kind does not matter)."""
    whens = [(func.upper(procedure).in_(codes), name) for name, codes in _grouped(matrix.category_of_procedure)]
    whens += [(revenue.in_(codes), name) for name, codes in _grouped(matrix.category_of_revenue)]
    return case(*whens, else_=null()) if whens else null()


def _carc_class(matrix: BenefitMatrix, carc: Any) -> Any:
    classes = _grouped(matrix.carc_class)
    return case(*((carc.in_(codes), name) for name, codes in classes), else_="other") if classes else literal("other")


def _mismatchable(matrix: BenefitMatrix) -> dict[str, list[str]]:
    """Category → the products covering it, for the categories a line can have (`BenefitMatrix.category`)
    that some product lacks (`can_mismatch`): the lines a product change could explain."""
    named = set(matrix.category_of_procedure.values()) | set(matrix.category_of_revenue.values())
    return {category: sorted(p for p, covered in matrix.covers.items() if category in covered)
            for category in sorted(named) if matrix.can_mismatch(category)}


def _mismatch(matrix: BenefitMatrix, category: Any, enrolled: Any, recommended: Any) -> Any:
    """`product-mismatch` in SQL: the product recommended on the day covers the category, the enrolled one
    does not (so they differ; a null enrolled product covers nothing)."""
    return or_(false(), *(and_(category == name, recommended.in_(products),
                               or_(enrolled.is_(None), enrolled.not_in(products)))
                          for name, products in _mismatchable(matrix).items()))


def _categorised(matrix: BenefitMatrix) -> Any:
    d = audit_denied_lines.c
    return select(audit_denied_lines, _category(matrix, d.procedure, d.revenue).label("category")).subquery("lines")


def _member_days(conn: Connection, matrix: BenefitMatrix) -> list[tuple[str, date]]:
    """The (member, date of service) pairs of the lines a product change could explain."""
    categories = list(_mismatchable(matrix))
    if not categories:
        return []
    lines = _categorised(matrix)
    return [(pid, day) for pid, day in conn.execute(
        select(lines.c.patient_id, lines.c.service_date).where(lines.c.category.in_(categories)).distinct())]


_DAY_FINDINGS = Table("audit_day_findings", MetaData(), Column("patient_id", String(ID_LEN), nullable=False),
                      Column("service_date", Date, nullable=False), Column("status", String(CODE_LEN)),
                      Column("enrolled", String(CODE_LEN)), Column("recommended", String(CODE_LEN)),
                      prefixes=["TEMPORARY"])


def findings_on(engine: AlignmentEngine, matrix: BenefitMatrix) -> list[tuple[str, str, str | None, str | None, str | None]]:
    """(patient, ISO day, status, enrolled, recommended) of the finding each member had on the date of
    service of a line a product change could explain: every pair evaluated in one pass, in a transaction
    that is rolled back (`AlignmentEngine.evaluate_on_days`)."""
    f = findings.c
    with engine.db.connect() as conn:
        transaction = begin_writing(conn)
        try:
            member_days = _member_days(conn, matrix)
            if not member_days:
                return []  # no window to evaluate (the engine needs at least one day)
            pairs = engine.evaluate_on_days(conn, member_days)
            p = pairs.c
            rows = conn.execute(select(p.patient_id, p.as_of, f.status, f.enrolled_product, f.recommended_product)
                                .join_from(pairs, findings, f.patient_id == p.member_key)).all()
        finally:
            transaction.rollback()  # the findings tables go back to today's
    return [(pid, day.isoformat(), status, enrolled, recommended) for pid, day, status, enrolled, recommended in rows]


def _classify_into_results(conn: Connection, matrix: BenefitMatrix) -> None:
    """Replace `audit_denials` with every denied line and its classification: the finding on the line's
    day (`audit_day_findings`) for a categorised line, the CARC's class unless it is a product mismatch."""
    lines, day = _categorised(matrix), _DAY_FINDINGS.c
    finding = and_(day.patient_id == lines.c.patient_id, day.service_date == lines.c.service_date,
                   lines.c.category.is_not(None))
    classification = case((_mismatch(matrix, lines.c.category, day.enrolled, day.recommended), "product-mismatch"),
                          else_=_carc_class(matrix, lines.c.carc))
    query = (select(*(lines.c[name] for name in LINE_COLUMNS), lines.c.category, day.status, day.enrolled,
                      day.recommended, classification)
             .select_from(lines.outerjoin(_DAY_FINDINGS, finding)))
    conn.execute(delete(audit_denials))
    conn.execute(insert(audit_denials).from_select(list(RESULT_COLUMNS), query))


RESULT_COLUMNS = (*LINE_COLUMNS, "category", "finding_status", "enrolled_product", "recommended_product",
                  "classification")


def run(store: Store, engine: AlignmentEngine, matrix: BenefitMatrix) -> dict[str, Any]:
    """Classify every denied line, store the results, the cohort Group and the report; returns the report."""
    on_days = findings_on(engine, matrix)

    def work(tx: WriteTransaction) -> dict[str, Any]:
        assert tx.conn is not None
        _DAY_FINDINGS.drop(tx.conn, checkfirst=True)  # SQLite keeps one a failed run created on this connection
        _DAY_FINDINGS.create(tx.conn)
        bulk_insert(tx.conn, _DAY_FINDINGS.name, [c.name for c in _DAY_FINDINGS.c], on_days)
        analyze_written(tx.conn, _DAY_FINDINGS.name)
        _classify_into_results(tx.conn, matrix)
        _DAY_FINDINGS.drop(tx.conn)
        d = audit_denials.c
        mismatched = sorted(tx.conn.execute(select(d.patient_id).where(d.classification == "product-mismatch")
                                            .distinct()).scalars())
        now = instant_text(tx.now_us)
        report = summary_report(tx.conn, now)
        group = _group(mismatched)
        current = tx.current([("Group", GROUP_ID), ("MeasureReport", REPORT_ID)])
        for resource in (group, report):
            key = (resource["resourceType"], resource["id"])
            stored = current.get(key)
            version = 1 if stored is None else stored.version + 1
            resource["meta"] = {**resource.get("meta", {}), "versionId": str(version), "lastUpdated": now,
                                "source": SOURCE}
            tx.stage(StagedWrite(key[0], key[1], version, "PUT" if stored else "POST", orjson.dumps(resource),
                                 searchparams.index_rows(resource), existed=stored is not None and not stored.deleted))
        return report

    return store.write(work)


def _group(members: list[str]) -> dict[str, Any]:
    group: dict[str, Any] = {
        "resourceType": "Group", "id": GROUP_ID,
        "identifier": [{"system": COHORT_SYSTEM, "value": GROUP_ID}],
        "type": "person", "actual": True,
        "code": {"text": "Members with a denied service traced to product misalignment"},
        "name": "Denials from product mismatch", "quantity": len(members),
    }
    if members:
        group["member"] = [{"entity": {"reference": f"Patient/{pid}"}} for pid in members]
    return group


def _first_currency(conn: Connection) -> str:
    """The currency of the first line by (EOB id, sequence) in code point order, which SQL's ORDER BY
    follows only under some collations: read when the lines' currencies differ."""
    d = audit_denials.c
    return min(conn.execute(select(d.eob_id, d.sequence, d.currency)).all())[2]


def summary_report(conn: Connection, now: str) -> dict[str, Any]:
    """Denied lines (initial population = denominator) and product-mismatch lines (numerator), stratified by
    classification, each stratum with the submitted amount at stake (`estimated-annual-impact` is not it:
    the amount is an `denied-amount` extension). One scan of the results."""
    d = audit_denials.c
    rows = conn.execute(select(d.classification, func.count(), func.sum(d.submitted_cents), func.min(d.service_date),
                               func.max(d.service_date), func.min(d.currency), func.max(d.currency))
                        .group_by(d.classification)).all()
    counted = {row[0]: (row[1], int(row[2] or 0)) for row in rows}
    by_class = {name: counted.get(name, (0, 0)) for name in CLASSIFICATIONS}
    lines, cents = sum(n for n, _ in counted.values()), sum(c for _, c in counted.values())
    currencies = {row[5] for row in rows} | {row[6] for row in rows}
    currency = "USD" if not currencies else currencies.pop() if len(currencies) == 1 else _first_currency(conn)
    first = min((row[3] for row in rows), default=None)
    last = max((row[4] for row in rows), default=None)

    def amount(total_cents: int) -> dict[str, Any]:
        return {**money(total_cents, currency), "url": SD_BASE + "denied-amount"}

    strata = [{"value": {"coding": [{"system": SD_BASE.replace("StructureDefinition", "CodeSystem") + "denial-classification",
                                     "code": name}]},
               "extension": [amount(total)],
               "population": populations(n, n if name == "product-mismatch" else 0)}
              for name, (n, total) in by_class.items()]
    mismatch, mismatch_cents = by_class["product-mismatch"]
    return {
        "resourceType": "MeasureReport", "id": REPORT_ID,
        "extension": [amount(cents), {**amount(mismatch_cents), "url": SD_BASE + "amount-at-stake"}],
        "status": "complete", "type": "summary", "measure": MEASURE_BASE + REPORT_ID, "date": now,
        "period": _period(first, last, now),
        "group": [{"id": REPORT_ID, "population": populations(lines, mismatch),
                   "stratifier": [{"code": [{"text": "classification"}], "stratum": strata}]}],
    }


def _period(first: date | str | None, last: date | str | None, now: str) -> dict[str, str]:
    if first is None or last is None:
        return {"start": now[:10], "end": now[:10]}
    return {"start": str(first)[:10], "end": str(last)[:10]}


def refuse_client_writes(rtype: str, rid: str, _method: str, _resource: dict | None) -> None:
    if (rtype, rid) in (("Group", GROUP_ID), ("MeasureReport", REPORT_ID)):
        raise FhirError.of(405, "not-supported", f"{rtype}/{rid} is written by $denial-root-cause only")


def stored_rows(conn: Connection) -> list[Any]:
    d = audit_denials.c
    return conn.execute(select(audit_denials).order_by(d.eob_id, d.sequence)).all()


def rollup(conn: Connection, by: str) -> list[Any]:
    """Per member (`patient_id`) or billing provider (`provider`): denied lines and amount, and those traced
    to product mismatch."""
    d = audit_denials.c
    key = d[by]
    mismatch = d.classification == "product-mismatch"
    return conn.execute(select(key, func.count(), func.sum(d.submitted_cents),
                               func.sum(case((mismatch, 1), else_=0)), func.sum(case((mismatch, d.submitted_cents), else_=0)))
                        .group_by(key).order_by(key)).all()
