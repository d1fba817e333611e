"""Patient facts kept at write time (issue 19): `alignment_members`, one row per stored, non-deleted
Patient with its birth-date bounds, OPWDD flag and gender, and `alignment_member_codes`, its NY HARP status
codes and address states and ZIP codes. The evaluation reads these narrow rows for its member list and the
Patient's own facts (the risk engine its birth date and gender), instead of the `resources` table and the
Patient's search-index rows.

`maintain` is the feature's IN_TRANSACTION hook, as `coverage_facts.maintain` is: in the transaction that
writes Patients, after their index rows, it rebuilds their rows, set-based, so they commit or roll back
with the resource (a deleted Patient keeps none); without an id list (a reindexing of a Patient
parameter, and the migration that created the tables, through a reindex request) for every Patient.

Only raw values are kept: which coverage area or rate region an address lies in, and what a State code
means, is mapping data, read at evaluation time. Nothing here depends on the evaluation date.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Collection, Mapping

from sqlalchemy import Connection, case, delete, exists, func, insert, literal, select, union

from server.alignment.diagnoses import Restrict, restricted, rebuild
from server.alignment.facts import flag
from server.alignment.index_keys import IndexKeys
from server.store.alignment_schema import (
    ADDRESS_POSTALCODE,
    ADDRESS_STATE,
    HARP_STATUS,
    alignment_member_codes,
    alignment_members,
)
from server.store.schema import idx_date, idx_string, idx_token, resources

def _member_rows(k: IndexKeys, own: Restrict) -> Any:
    """The rows of the stored, non-deleted Patients rebuilt: id, birth-date bounds, OPWDD flag, gender."""
    r, d, t = resources.c, idx_date.c, idx_token.c
    birth = (select(d.rid, func.min(d.lo).label("lo"), func.max(d.hi).label("hi"))
             .where(d.rtype == "Patient", *own(d.rid), d.h_param == k.patient_birthdate)
             .group_by(d.rid)
             .subquery("birth"))
    gender = (select(t.rid, func.max(t.code).label("gender"))
              .where(t.rtype == "Patient", *own(t.rid), t.h_param == k.patient_gender)
              .group_by(t.rid)
              .subquery("gender"))
    opwdd = exists().where(t.rtype == "Patient", t.rid == r.rid, t.h_param == k.patient_opwdd, t.code == "true")
    return (
        select(r.rid, birth.c.lo, birth.c.hi, flag(opwdd), gender.c.gender)
        .select_from(resources.outerjoin(birth, birth.c.rid == r.rid).outerjoin(gender, gender.c.rid == r.rid))
        .where(r.rtype == "Patient", *own(r.rid), r.deleted.is_(False))
    )


def _code_rows(k: IndexKeys, own: Restrict) -> Any:
    """The HARP status codes and address values of the Patients rebuilt that have a row (read after it),
    each once."""
    t, s, m = idx_token.c, idx_string.c, alignment_members.c
    harp = (select(t.rid, literal(HARP_STATUS), t.code)
            .where(t.rtype == "Patient", *own(t.rid), t.h_param == k.patient_harp_status, t.code.is_not(None),
                   exists().where(m.patient_id == t.rid)))
    param = case((s.h_param == k.patient_address_state, literal(ADDRESS_STATE)), else_=literal(ADDRESS_POSTALCODE))
    address = (select(s.rid, param, s.value_norm)
               .where(s.rtype == "Patient", *own(s.rid),
                      s.h_param.in_([k.patient_address_state, k.patient_address_postalcode]),
                      exists().where(m.patient_id == s.rid)))
    return union(harp, address)


@lru_cache(maxsize=None)
def _statements(every: bool) -> tuple[Any, ...]:
    """(delete, insert) of both tables for the Patients bound as `IDS`, or for all of them."""
    k, own = IndexKeys.resolve(), restricted(every)
    members, codes = alignment_members, alignment_member_codes
    return (
        delete(members).where(*own(members.c.patient_id)),
        delete(codes).where(*own(codes.c.patient_id)),
        insert(members).from_select([c.name for c in members.c], _member_rows(k, own)),
        insert(codes).from_select([c.name for c in codes.c], _code_rows(k, own)),
    )


def maintain(conn: Connection, changed: Mapping[str, Collection[str] | None]) -> None:
    """The IN_TRANSACTION hook: rebuild the rows of the Patients a write (or a reindexing) changed."""
    if "Patient" in changed:
        rebuild(conn, changed["Patient"], _statements)
