"""Which members a committed write touched, found through the Patient-compartment reference index.

A created or updated resource names its members in its current index rows; an updated or deleted one
also in its previous version (a Condition moved from one patient to another changes both), read from
history and indexed again in memory. A Condition can also be evidence for the patient of a Claim or
ExplanationOfBenefit that cites it by `diagnosisReference`. Writes of types the engine does not read
touch nobody.

Progress: every evaluation of a write's members records the write's txid in its own transaction, so the
writes still awaiting evaluation are exactly the history rows (of the types the engine reads) above the
watermark whose txid is not recorded: a process that died between a commit and its evaluation leaves
them behind, and `pending_writes` finds them again.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import orjson
from sqlalchemy import Connection, Select, and_, case, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from server.alignment.index_keys import READ_TYPES, IndexKeys, compartment_hashes
from server.fhir import searchparams
from server.fhir.types import Written
from server.store.resources import chunks
from server.store.txids import latest_txid, newest_txid
from server.store.alignment_schema import alignment_evaluated, alignment_watermark
from server.store.schema import idx_reference, resource_history


def touched_members(conn: Connection, keys: IndexKeys, written: Sequence[Written]) -> set[str]:
    relevant = [w for w in written if w.rtype in READ_TYPES]
    members = {w.rid for w in relevant if w.rtype == "Patient"}
    others = [w for w in relevant if w.rtype != "Patient"]
    members |= _referenced_now(conn, [(w.rtype, w.rid) for w in others if not w.deleted])
    members |= _referenced_before(conn, [(w.rtype, w.rid, w.version - 1) for w in others if w.version > 1])
    members |= _claims_citing(conn, keys, [w.rid for w in others if w.rtype == "Condition"])
    return members


def _by_type(keys: Iterable[tuple]) -> dict[str, list[tuple]]:
    """Group (type, id, …) keys by type: `rtype = … AND rid IN (…)` uses the (rtype, rid) indexes, where a
    row-value IN over (rtype, rid) pairs makes PostgreSQL scan whole index tables."""
    grouped: dict[str, list[tuple]] = {}
    for rtype, *rest in keys:
        grouped.setdefault(rtype, []).append(tuple(rest))
    return grouped


def _referenced_now(conn: Connection, resources: list[tuple[str, str]]) -> set[str]:
    x = idx_reference.c
    found: set[str] = set()
    for rtype, keys in _by_type(resources).items():
        hashes = sorted(compartment_hashes(rtype))
        for chunk in chunks(sorted({rid for rid, in keys})):
            stmt = select(x.target_id).where(
                x.rtype == rtype, x.rid.in_(chunk), x.h_param.in_(hashes), x.target_type == "Patient"
            ).distinct()
            found.update(conn.execute(stmt).scalars())
    return found


def _referenced_before(conn: Connection, versions: list[tuple[str, str, int]]) -> set[str]:
    h = resource_history.c
    found: set[str] = set()
    for rtype, keys in _by_type(versions).items():
        for chunk in chunks(sorted(set(keys))):
            wanted = set(chunk)
            stmt = select(h.rid, h.version, h.content).where(
                h.rtype == rtype, h.rid.in_({rid for rid, _ in chunk}), h.version.in_({v for _, v in chunk}),
                h.deleted.is_(False),
            )
            for rid, version, content in conn.execute(stmt):
                if (rid, version) in wanted:
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


# -- progress ------------------------------------------------------------------------------------------


def record_evaluated(conn: Connection, written: Sequence[Written]) -> None:
    """Record the transactions of these versions as evaluated: call after their members' evaluation
    committed, or inside it (recording twice is harmless)."""
    record_txids(conn, sorted({w.txid for w in written if w.rtype in READ_TYPES}))


def record_txids(conn: Connection, txids: Sequence[int]) -> None:
    """Record these write transactions as evaluated, in the evaluation's own transaction."""
    insert = _insert_ignoring(conn)
    for chunk in chunks(list(txids)):
        conn.execute(insert(alignment_evaluated).values([{"txid": t} for t in chunk]).on_conflict_do_nothing())


def _insert_ignoring(conn: Connection):
    return postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert


def _awaiting(*criteria) -> Select:
    """History rows the engine reads, above the watermark, whose evaluation is not recorded."""
    h = resource_history.c
    watermark = select(alignment_watermark.c.txid).where(alignment_watermark.c.id == 1).scalar_subquery()
    return select(h.rtype, h.rid, h.version, h.deleted, h.txid).where(
        h.rtype.in_(sorted(READ_TYPES)), h.txid > watermark,
        ~exists().where(alignment_evaluated.c.txid == h.txid), *criteria,
    )


def _below_oldest_awaiting():
    """Just below the oldest transaction awaiting evaluation (NULL when none awaits). `ORDER BY txid LIMIT 1`
    rather than `min()`: PostgreSQL then walks the txid index and stops at the first awaiting row, where
    `min()` over the anti-join read every row above the watermark (15–41 ms per status read under ingest)."""
    txid = resource_history.c.txid
    return _awaiting().with_only_columns(txid - 1).order_by(txid).limit(1).scalar_subquery()


def _written(rows) -> list[Written]:
    return [Written(r.rtype, r.rid, r.version, r.deleted, r.txid) for r in rows]


def awaiting_batch(conn: Connection, transactions: int) -> tuple[list[Written], list[int]]:
    """The versions of the oldest `transactions` write transactions awaiting evaluation, and their txids:
    whole transactions, so recording a txid never marks a version of it that was left out."""
    awaiting = _awaiting().subquery()
    txids = list(conn.execute(
        select(awaiting.c.txid).distinct().order_by(awaiting.c.txid).limit(transactions)).scalars())
    if not txids:
        return [], []
    return _written(conn.execute(_awaiting(resource_history.c.txid <= txids[-1]))), txids


def evaluated_through(conn: Connection) -> tuple[int, int]:
    """(latest committed write, the txid through which every write is evaluated): the first equals the
    second once findings reflect every committed write (none awaits)."""
    latest = newest_txid(conn)
    return latest, conn.execute(select(func.coalesce(_below_oldest_awaiting(), latest))).scalar_one()


def pending_writes(conn: Connection, written_before_us: int, limit: int) -> list[Written]:
    """Versions written before the given time whose evaluation is not recorded (at most `limit` + 1)."""
    return _written(conn.execute(_awaiting(resource_history.c.lu < written_before_us).limit(limit + 1)))


def advance_watermark(conn: Connection) -> None:
    """Move the watermark to just below the oldest write awaiting evaluation (or, when none awaits, to the
    newest recorded one) and forget the records below it. One statement, so one snapshot: a write below a
    recorded one committed before that record, so it is seen, recorded or awaiting. Never above the store's
    watermark (read first, in a statement of its own): a write still in flight, with a smaller txid than one
    recorded, must stay above it."""
    latest = latest_txid(conn)
    newest = select(func.max(alignment_evaluated.c.txid)).scalar_subquery()
    _set_watermark(conn, _at_most(func.coalesce(_below_oldest_awaiting(), newest), latest))


def watermark_to_counter(conn: Connection) -> None:
    """Before a full evaluation's statements: every write committed through the store's watermark is about
    to be reflected."""
    _set_watermark(conn, latest_txid(conn))


def _at_most(txid, cap: int):
    """`txid`, or `cap` where it is larger (NULL stays NULL)."""
    return case((txid > cap, cap), else_=txid)


def _set_watermark(conn: Connection, txid) -> None:
    w = alignment_watermark.c
    conn.execute(update(alignment_watermark).where(w.id == 1, w.txid < txid).values(txid=txid))
    current = select(w.txid).where(w.id == 1).scalar_subquery()
    conn.execute(alignment_evaluated.delete().where(alignment_evaluated.c.txid <= current))
