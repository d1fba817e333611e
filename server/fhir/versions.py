"""What identifies a stored version and what the server stamps on it: ids, ETags, meta (versionId,
lastUpdated, source, the reserved tags) and the response headers of one version."""

from __future__ import annotations

import secrets
import time
import uuid

import orjson

from server.fhir import searchparams
from server.fhir.dates import http_date, instant_text
from server.fhir.errors import FhirError
from server.fhir.searchparams import IndexRows
from server.fhir.types import WriteContext

ID_PATTERN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")
_META_STAMPS = ("versionId", "lastUpdated", "source")
# meta.tag system the server stamps with the writer's evidence kind (clinical | claims |
# patient-reported); a client-supplied tag of this system is replaced, so no client can claim another kind.
SOURCE_KIND_SYSTEM = "https://planfit.dev/fhir/CodeSystem/source-kind"
# meta.tag of the Provenance the server records per transaction; clients cannot set it, so a
# Provenance a client posts is never taken for the server's.
RECORDED_BY_SERVER = ("https://planfit.dev/fhir/CodeSystem/recorded-by", "planfit")
_RESERVED_TAG_SYSTEMS = frozenset({SOURCE_KIND_SYSTEM, RECORDED_BY_SERVER[0]})
def valid_id(rid: str) -> bool:
    return 0 < len(rid) <= 64 and all(c in ID_PATTERN_CHARS for c in rid)


_MILLIS_MASK = (1 << 48) - 1


def new_id() -> str:
    """A UUIDv7 (RFC 9562 §5.7): a 48-bit Unix-millisecond timestamp, then random bits. Time-ordered ids put
    each insert into the (rtype, rid) B-trees (primary keys, the index tables' `*_res` indexes) on the
    right edge of its type's range instead of on a random leaf: with uuid4 ids those inserts made two
    thirds of PostgreSQL's full-page images, the bulk of the WAL written during ingest."""
    millis = time.time_ns() // 1_000_000
    rand_a, rand_b = secrets.randbits(12), secrets.randbits(62)
    return str(uuid.UUID(int=(millis & _MILLIS_MASK) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b))


def etag(version: int) -> str:
    return f'W/"{version}"'


def parse_if_match(value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not (text.isascii() and text.isdigit()):
        raise FhirError.of(400, "invalid", "If-Match must be an ETag like W/\"3\"")
    return int(text)


def _client_meta(meta: object) -> dict:
    """meta without what the server stamps (versionId, lastUpdated, source, reserved tags)."""
    if not isinstance(meta, dict):
        return {}
    out = {k: v for k, v in meta.items() if k not in _META_STAMPS}
    if isinstance(out.get("tag"), list):
        tags = [t for t in out["tag"] if not (isinstance(t, dict) and t.get("system") in _RESERVED_TAG_SYSTEMS)]
        if tags:
            out["tag"] = tags
        else:
            del out["tag"]
    return out


def strip_stamps(resource: dict) -> dict:
    """The resource without the fields the server stamps, for no-op update detection."""
    out = {k: v for k, v in resource.items() if k != "meta"}
    meta = _client_meta(resource.get("meta"))
    if meta:
        out["meta"] = meta
    return out


def stamp_meta(resource: dict, ctx: WriteContext, tags: tuple[dict, ...] = ()) -> None:
    """Set meta.source and the server's tags before indexing (so `_source`/`_tag` find them)."""
    meta = _client_meta(resource.get("meta"))
    meta["source"] = ctx.source
    meta["tag"] = [*meta.get("tag", []), {"system": SOURCE_KIND_SYSTEM, "code": ctx.source_kind}, *tags]
    resource["meta"] = meta


def stamp(resource: dict, rid: str, version: int, now_us: int) -> bytes:
    """Serialise with id, versionId and lastUpdated first (meta.source was set by stamp_meta)."""
    meta = {"versionId": str(version), "lastUpdated": instant_text(now_us), **resource["meta"]}
    out = {"resourceType": resource["resourceType"], "id": rid, "meta": meta}
    for key, value in resource.items():
        if key not in out:
            out[key] = value
    return orjson.dumps(out)


def resource_headers(rtype: str, rid: str, version: int, lu: int, base: str) -> dict[str, str]:
    return {
        "ETag": etag(version),
        "Last-Modified": http_date(lu),
        "Location": f"{base}/{rtype}/{rid}/_history/{version}",
    }


def version_rows(content: bytes) -> IndexRows:
    """The index rows of a stored version (old versions have none in the index tables)."""
    return searchparams.index_rows(orjson.loads(content))
