"""The cohort Group as FHIR: a small stored "header" plus the member array streamed from the table.

The header (everything but `member`) is an ordinary stored resource version, so read, vread,
history, search and export find it through the resource store. It is stored tagged SUBSETTED
(members omitted), which is what searches, `_history` bundles, `_summary=true` reads and exports
show. A full read or vread drops that tag and appends the members of that version, rendered row by
row from `cohort_members` as the database cursor yields them: a 100,000-member Group is never held
in memory whole.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import orjson
from sqlalchemy import Connection, Select, or_, select

from server.cohorts.definitions import COHORT_CODE_SYSTEM, COHORT_SYSTEM, Cohort
from server.fhir.dates import instant_text
from server.store.cohort_schema import cohort_members
from server.store.schema import resource_history

PROFILE = "https://planfit.dev/fhir/StructureDefinition/cohort-group"
CHANGE_TYPE = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-changeType"
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED",
             "display": "subsetted"}
SOURCE = "urn:planfit:cohorts"  # meta.source of the versions the server writes
_FETCH = 5000  # member rows per round trip while streaming


def header(cohort: Cohort, version: int, lu: int, quantity: int) -> dict:
    """The Group without `member`, as stored for one version."""
    return {
        "resourceType": "Group",
        "id": cohort.id,
        "meta": {"versionId": str(version), "lastUpdated": instant_text(lu), "source": SOURCE,
                 "profile": [PROFILE], "tag": [SUBSETTED]},
        "identifier": [{"system": COHORT_SYSTEM, "value": cohort.id}],
        "active": True,
        "type": "person",
        "actual": True,
        "code": {"coding": [{"system": COHORT_CODE_SYSTEM, "code": cohort.id, "display": cohort.name}],
                 "text": cohort.description},
        "name": cohort.name,
        "quantity": quantity,
        "characteristic": list(cohort.characteristic),
    }


def version_members(cohort_id: str, version: int) -> Select:
    """The member rows Group version `version` lists, in patient id order: current members and the
    members it dropped."""
    m = cohort_members.c
    return (
        select(m.patient_id, m.added_version, m.removed_version)
        .where(m.cohort_id == cohort_id, m.added_version <= version,
               or_(m.removed_version.is_(None), m.removed_version >= version))
        .order_by(m.patient_id, m.added_version)
    )


def full_group(conn: Connection, stored_header: bytes, cohort_id: str) -> Iterator[bytes]:
    """The whole Group of the header's version as JSON chunks: the header without its SUBSETTED tag,
    then the members as the cursor yields them."""
    group = orjson.loads(stored_header)
    version = int(group["meta"]["versionId"])
    tags = [t for t in group["meta"].get("tag", []) if t.get("code") != SUBSETTED["code"]]
    if tags:
        group["meta"]["tag"] = tags
    else:
        group["meta"].pop("tag", None)
    yield orjson.dumps(group)[:-1]
    times = _version_times(conn, cohort_id, version)
    result = conn.execution_options(stream_results=True, yield_per=_FETCH).execute(version_members(cohort_id, version))
    opened = False
    for rows in result.partitions():
        chunk = _members_json(rows, version, times)
        yield (b',"member":[' if not opened else b",") + chunk
        opened = True
    yield b"]}" if opened else b"}"


def _version_times(conn: Connection, cohort_id: str, version: int) -> dict[int, bytes]:
    """`lastUpdated` of each version up to `version`: when its joiners' and leavers' periods start and end."""
    h = resource_history.c
    rows = conn.execute(select(h.version, h.lu).where(h.rtype == "Group", h.rid == cohort_id, h.version <= version))
    return {v: instant_text(lu).encode() for v, lu in rows}


def _members_json(rows: Iterable, version: int, times: dict[int, bytes]) -> bytes:
    """One member element per row. Ids are FHIR ids ([A-Za-z0-9.-]), so they need no escaping."""
    out = []
    for pid, added_version, removed_version in rows:
        if removed_version == version:
            out.append(_DROPPED % (pid.encode(), times[added_version], times[removed_version]))
        else:
            out.append(_CURRENT % (b"new" if added_version == version else b"nochange", pid.encode(),
                                   times[added_version]))
    return b",".join(out)


_EXT = b'{"extension":[{"url":"' + CHANGE_TYPE.encode() + b'","valueCode":"%s"}],'
_CURRENT = _EXT + b'"entity":{"reference":"Patient/%s"},"period":{"start":"%s"}}'
_DROPPED = ((_EXT % b"dropped")
            + b'"entity":{"reference":"Patient/%s"},"period":{"start":"%s","end":"%s"},"inactive":true}')
