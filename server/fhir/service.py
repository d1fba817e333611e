"""The FHIR interactions, independent of the web framework.

Routes (and bundle entries) call these; each returns a `Reply` (status, headers, JSON bytes).
Writes run inside one `WriteTransaction`; after it commits, `after_commit` listeners learn which
resources changed (the alignment engine re-evaluates the members they touch).
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable, Iterable
from urllib.parse import parse_qsl, urlencode

import orjson

from server.config import Settings
from server.fhir import searchparams
from server.fhir.dates import DateValueError, date_range, http_date, instant_text
from server.fhir.errors import FhirError, Issue, operation_outcome
from server.fhir.search import ParsedSearch, ValueSetLookup, encode_cursor, parse_search
from server.fhir.validation import validate_resource
from server.store.resources import StagedWrite, Store, StoredVersion, WriteTransaction, chunks
from server.store.schema import resources as resources_table
from server.store.search import IdClause, SearchSpec, TokenClause, count_statement, include_targets, keyset_values
from server.store.search import page_statement, revinclude_sources, sort_columns, token_matches

ID_PATTERN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")
_META_STAMPS = ("versionId", "lastUpdated", "source")
# meta.tag system the server stamps with the writer's evidence kind (clinical | claims); a
# client-supplied tag of this system is replaced, so no client can claim another kind.
SOURCE_KIND_SYSTEM = "https://planfit.dev/fhir/CodeSystem/source-kind"


@dataclass(frozen=True)
class WriteContext:
    """Who is writing: decides meta.source and the evidence kind of what is written."""

    source: str
    source_kind: str = "clinical"
    client_id: str | None = None


@dataclass
class Reply:
    status: int
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Written:
    rtype: str
    rid: str
    version: int
    deleted: bool
    txid: int  # the write transaction's number (`write_counter`)


AfterCommit = Callable[[list[Written], WriteContext], None]


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
    """meta without what the server stamps (versionId, lastUpdated, source, source-kind tag)."""
    if not isinstance(meta, dict):
        return {}
    out = {k: v for k, v in meta.items() if k not in _META_STAMPS}
    if isinstance(out.get("tag"), list):
        tags = [t for t in out["tag"] if not (isinstance(t, dict) and t.get("system") == SOURCE_KIND_SYSTEM)]
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


def stamp_meta(resource: dict, ctx: "WriteContext") -> None:
    """Set meta.source and the source-kind tag before indexing (so `_source`/`_tag` find them)."""
    meta = _client_meta(resource.get("meta"))
    meta["source"] = ctx.source
    meta["tag"] = [*meta.get("tag", []), {"system": SOURCE_KIND_SYSTEM, "code": ctx.source_kind}]
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


class Writer:
    """Stages creates, updates and deletes in one transaction, enforcing FHIR's rules."""

    def __init__(self, service: "FhirService", tx: WriteTransaction, ctx: WriteContext):
        self.service = service
        self.tx = tx
        self.ctx = ctx
        self.written: list[Written] = []

    def find(self, rtype: str, query: str, expression: str) -> list[str]:
        """Ids matching a conditional query (at most 2: enough to tell 0, 1 or many)."""
        if rtype not in searchparams.resource_types():
            raise FhirError.of(400, "not-supported", f"Unknown resource type '{rtype}'", expression)
        params = parse_qsl(query, keep_blank_values=True)
        if not params:
            raise FhirError.of(400, "invalid", "Conditional request without search criteria", expression)
        parsed = self.service.parse(rtype, params, strict=True)
        parsed.spec.count = 1
        self.tx.flush()
        rows = self.tx.conn.execute(page_statement(parsed.spec, columns=(resources_table.c.rid,)))
        return [row.rid for row in rows]

    def find_many(self, rtype: str, queries: Iterable[str]) -> dict[str, list[str]]:
        """`find` for many queries at once, for those that are one token value (`identifier=system|value`,
        the usual `ifNoneExist`): one statement per chunk instead of one per query, same ids (at most 2,
        in id order). Other queries, and those `find` would refuse, are left out for `find` to answer."""
        by_column: dict[tuple[str, int], list[str]] = {}
        for query in dict.fromkeys(queries):
            try:
                parsed = self.service.parse(rtype, parse_qsl(query, keep_blank_values=True), strict=True)
            except FhirError:
                continue
            clauses = parsed.spec.clauses
            if len(clauses) == 1 and isinstance(clauses[0], TokenClause) and not clauses[0].negate \
                    and len(clauses[0].alternatives) == 1:
                by_column.setdefault(clauses[0].alternatives[0], []).append(query)
        if not by_column:
            return {}
        self.tx.flush()
        found: dict[tuple[str, int], list[str]] = {key: [] for key in by_column}
        for column in {column for column, _ in by_column}:
            hashes = [h for c, h in by_column if c == column]
            for chunk in chunks(hashes):
                for row in self.tx.conn.execute(token_matches(column, chunk)):
                    found[(column, row.h)].append(row.rid)
        return {query: sorted(found[key])[:2] for key, queries in by_column.items() for query in queries}

    def create(self, rtype: str, resource: dict, rid: str | None = None) -> tuple[str, int]:
        rid = rid or new_id()
        self._stage(rtype, rid, 1, "POST", resource, existed=False)
        return rid, 1

    def put(self, rtype: str, rid: str, resource: dict, if_match: int | None, current: StoredVersion | None) -> tuple[int, bool]:
        """Update (or create with a client id); returns (version, created). A no-op keeps the version."""
        if current is None or current.deleted:
            if if_match is not None:
                raise FhirError.of(412, "conflict", "If-Match given but the resource does not exist")
            version = (current.version + 1) if current else 1
            self._stage(rtype, rid, version, "PUT", resource, existed=current is not None)
            return version, True
        if if_match is not None and if_match != current.version:
            raise FhirError.of(
                412, "conflict", f"Version conflict: If-Match {if_match}, current version {current.version}"
            )
        old = orjson.loads(current.content)
        if strip_stamps(old) == strip_stamps({**resource, "id": rid}) and old.get("meta", {}).get("source") == self.ctx.source:
            return current.version, False
        self._stage(rtype, rid, current.version + 1, "PUT", resource, existed=True)
        return current.version + 1, False

    def delete(self, rtype: str, rid: str, current: StoredVersion | None) -> int | None:
        """Delete the current version; None when there was nothing to delete."""
        if current is None or current.deleted:
            return None
        self.service.guard_write(rtype, rid, "DELETE")
        version = current.version + 1
        self.tx.stage(StagedWrite(rtype, rid, version, "DELETE", None, None, existed=True))
        self.written.append(Written(rtype, rid, version, True, self.tx.txid))
        return version

    def _stage(self, rtype: str, rid: str, version: int, method: str, resource: dict, existed: bool) -> None:
        self.service.guard_write(rtype, rid, method)
        resource = {**resource, "id": rid}
        stamp_meta(resource, self.ctx)
        content = stamp(resource, rid, version, self.tx.now_us)
        index = searchparams.index_rows(resource)
        self.tx.stage(StagedWrite(rtype, rid, version, method, content, index, existed))
        self.written.append(Written(rtype, rid, version, False, self.tx.txid))


class FhirService:
    def __init__(
        self,
        store: Store,
        settings: Settings,
        valueset_lookup: ValueSetLookup | None = None,
    ):
        self.store = store
        self.settings = settings
        self.valueset_lookup = valueset_lookup
        self.after_commit: list[AfterCommit] = []
        # Each guard may refuse a write (type, id, method) by raising FhirError, e.g. to server-owned resources.
        self.write_guards: list[Callable[[str, str, str], None]] = []

    # ---- helpers -------------------------------------------------------------------------

    def parse(self, rtype: str, params: list[tuple[str, str]], strict: bool, base: str = "") -> ParsedSearch:
        return parse_search(
            rtype,
            params,
            strict=strict,
            default_count=self.settings.default_count,
            max_count=self.settings.max_count,
            base_url=base,
            valueset_lookup=self.valueset_lookup,
        )

    def guard_write(self, rtype: str, rid: str, method: str) -> None:
        for guard in self.write_guards:
            guard(rtype, rid, method)

    def committed(self, written: list[Written], ctx: WriteContext) -> None:
        if written:
            for listener in self.after_commit:
                listener(written, ctx)

    @staticmethod
    def check_type(rtype: str) -> None:
        if rtype not in searchparams.resource_types():
            raise FhirError.of(404, "not-supported", f"Unknown resource type '{rtype}'")

    @staticmethod
    def check_id(rid: str) -> None:
        if not valid_id(rid):
            raise FhirError.of(400, "invalid", "Invalid resource id", "id")

    def validate(self, resource: object, rtype: str | None, prefix: str = "") -> dict:
        """Parsed JSON → a valid resource of the expected type, or a 400 naming each problem."""
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            raise FhirError.of(400, "structure", "Body is not a FHIR resource (no resourceType)", prefix or None)
        actual = resource["resourceType"]
        if actual not in searchparams.resource_types():
            raise FhirError.of(400, "not-supported", f"Unknown resource type '{actual}'", (prefix + "resourceType") if prefix else "resourceType")
        if rtype is not None and actual != rtype:
            raise FhirError.of(
                400, "invalid", f"resourceType '{actual}' does not match the URL type '{rtype}'", prefix + actual
            )
        problems = validate_resource(resource)
        if problems:
            raise FhirError(
                400,
                [Issue("error", p.code, p.diagnostics, (prefix + p.expression,)) for p in problems],
            )
        return resource

    # ---- reads ---------------------------------------------------------------------------

    def read(self, rtype: str, rid: str, base: str, extra_clauses: Iterable = (), conn=None) -> Reply:
        self.check_type(rtype)
        current = self.store.read(rtype, rid, conn)
        if current is None or not self.visible(rtype, rid, extra_clauses, conn):
            raise FhirError.of(404, "not-found", f"{rtype}/{rid} is not known")
        if current.deleted:
            raise FhirError.of(410, "deleted", f"{rtype}/{rid} has been deleted")
        return Reply(200, current.content, resource_headers(rtype, rid, current.version, current.lu, base))

    def visible(self, rtype: str, rid: str, clauses: Iterable, conn=None) -> bool:
        """Whether the resource satisfies access clauses (scopes, compartments), checked in SQL."""
        clauses = list(clauses)
        if not clauses:
            return True
        spec = SearchSpec(rtype=rtype, clauses=[IdClause((rid,)), *clauses], count=1)
        spec_stmt = page_statement(spec, columns=(resources_table.c.rid,))
        with self.store.connection(conn) as c:
            return c.execute(spec_stmt).first() is not None

    def vread(self, rtype: str, rid: str, version: str, base: str, extra_clauses: Iterable = (), conn=None) -> Reply:
        self.check_type(rtype)
        if not (version.isascii() and version.isdigit()):
            raise FhirError.of(404, "not-found", "Unknown version")
        found = self.store.vread(rtype, rid, int(version), conn)
        if found is None or not self.visible(rtype, rid, extra_clauses, conn):
            raise FhirError.of(404, "not-found", f"{rtype}/{rid}/_history/{version} is not known")
        if found.deleted:
            raise FhirError.of(410, "deleted", f"{rtype}/{rid} version {version} is a deletion")
        return Reply(200, found.content, resource_headers(rtype, rid, found.version, found.lu, base))

    # ---- single-resource writes ------------------------------------------------------------

    def create(self, rtype: str, body: object, ctx: WriteContext, base: str, if_none_exist: str | None, prefer: str | None) -> Reply:
        self.check_type(rtype)
        resource = self.validate(body, rtype)
        with self.store.begin_write() as tx:
            writer = Writer(self, tx, ctx)
            if if_none_exist:
                matches = writer.find(rtype, if_none_exist, "If-None-Exist")
                if len(matches) > 1:
                    raise FhirError.of(412, "duplicate", "If-None-Exist matched more than one resource")
                if matches:
                    existing = tx.current([(rtype, matches[0])])[(rtype, matches[0])]
                    return self._resource_reply(200, existing, base, prefer)
            rid, version = writer.create(rtype, resource)
        self.committed(writer.written, ctx)
        return self._written_reply(201, rtype, rid, version, base, prefer)

    def update(
        self, rtype: str, rid: str, body: object, ctx: WriteContext, base: str, if_match: str | None, prefer: str | None
    ) -> Reply:
        self.check_type(rtype)
        self.check_id(rid)
        resource = self.validate(body, rtype)
        if resource.get("id") != rid:
            raise FhirError.of(400, "invalid", "Resource id must match the id in the URL", "id")
        expected = parse_if_match(if_match)
        with self.store.begin_write() as tx:
            writer = Writer(self, tx, ctx)
            current = tx.current([(rtype, rid)]).get((rtype, rid))
            version, created = writer.put(rtype, rid, resource, expected, current)
        self.committed(writer.written, ctx)
        return self._written_reply(201 if created else 200, rtype, rid, version, base, prefer)

    def conditional_update(
        self, rtype: str, query: str, body: object, ctx: WriteContext, base: str, if_match: str | None, prefer: str | None
    ) -> Reply:
        self.check_type(rtype)
        resource = self.validate(body, rtype)
        expected = parse_if_match(if_match)
        with self.store.begin_write() as tx:
            writer = Writer(self, tx, ctx)
            matches = writer.find(rtype, query, "url")
            if len(matches) > 1:
                raise FhirError.of(412, "duplicate", "Conditional update matched more than one resource")
            body_id = resource.get("id")
            if matches:
                rid = matches[0]
                if body_id is not None and body_id != rid:
                    raise FhirError.of(400, "invalid", "Resource id does not match the resource found", "id")
            else:
                rid = body_id or new_id()
                self.check_id(rid)
            current = tx.current([(rtype, rid)]).get((rtype, rid))
            version, created = writer.put(rtype, rid, resource, expected, current)
        self.committed(writer.written, ctx)
        return self._written_reply(201 if created else 200, rtype, rid, version, base, prefer)

    def delete(self, rtype: str, rid: str | None, query: str | None, ctx: WriteContext) -> Reply:
        self.check_type(rtype)
        with self.store.begin_write() as tx:
            writer = Writer(self, tx, ctx)
            if query is not None:
                matches = writer.find(rtype, query, "url")
                if len(matches) > 1:
                    raise FhirError.of(412, "duplicate", "Conditional delete matched more than one resource")
                if not matches:
                    return Reply(204)
                rid = matches[0]
            assert rid is not None
            current = tx.current([(rtype, rid)]).get((rtype, rid))
            version = writer.delete(rtype, rid, current)
        self.committed(writer.written, ctx)
        headers = {"ETag": etag(version)} if version else {}
        return Reply(204, None, headers)

    def _written_reply(self, status: int, rtype: str, rid: str, version: int, base: str, prefer: str | None) -> Reply:
        # The version this write made, not the current one: a concurrent writer may have made a newer one.
        stored = self.store.vread(rtype, rid, version)
        assert stored is not None
        return self._resource_reply(status, stored, base, prefer, version)

    def _resource_reply(self, status: int, stored: StoredVersion, base: str, prefer: str | None, version: int | None = None) -> Reply:
        headers = resource_headers(stored.rtype, stored.rid, version or stored.version, stored.lu, base)
        mode = (prefer or "").replace(" ", "")
        if "return=minimal" in mode:
            return Reply(status, None, headers)
        if "return=OperationOutcome" in mode:
            body = orjson.dumps(operation_outcome([Issue("information", "informational", "Operation succeeded")]))
            return Reply(status, body, headers)
        return Reply(status, stored.content, headers)

    # ---- search --------------------------------------------------------------------------

    def search(
        self,
        rtype: str,
        params: list[tuple[str, str]],
        base: str,
        strict: bool,
        access_clauses: Callable[[str], list] = lambda _t: [],
        conn=None,
    ) -> Reply:
        """Searchset bundle; `access_clauses(type)` narrows every selected type (scopes, compartment)."""
        self.check_type(rtype)
        parsed = self.parse(rtype, params, strict, base)
        spec = parsed.spec
        spec.clauses.extend(access_clauses(rtype))
        if spec.after is not None and len(spec.after) != len(sort_columns(spec)):
            raise FhirError.of(400, "invalid", "The _page cursor does not fit this search", "_page")
        with self.store.connection(conn) as conn:
            if spec.snapshot_txid is None:
                spec.snapshot_txid = Store.current_txid(conn)
            total = conn.execute(count_statement(spec)).scalar_one() if (parsed.want_total or parsed.summary_count) else None
            rows = [] if parsed.summary_count or spec.count == 0 else conn.execute(page_statement(spec)).all()
            has_next = len(rows) > spec.count
            rows = rows[: spec.count]
            included = self._includes(conn, parsed, rows, access_clauses) if rows else []
        links = [("self", self._link(base, rtype, parsed, None))]
        if has_next:
            cursor = encode_cursor(spec.snapshot_txid, keyset_values(spec, rows[-1]))
            links.append(("next", self._link(base, rtype, parsed, cursor)))
        entries = [_entry(base, rtype, row.rid, row.content, b'"match"') for row in rows]
        entries += [_entry(base, t, i, c, b'"include"') for t, i, c in included]
        if parsed.warnings:
            outcome = orjson.dumps(operation_outcome(parsed.warnings))
            entries.append(b'{"resource":' + outcome + b',"search":{"mode":"outcome"}}')
        return Reply(200, bundle_bytes("searchset", total, links, entries))

    def _link(self, base: str, rtype: str, parsed: ParsedSearch, cursor: str | None) -> str:
        params = list(parsed.link_params)
        params.append(("_count", str(parsed.spec.count)))
        if parsed.summary_count:
            params.append(("_summary", "count"))
        if cursor:
            params.append(("_page", cursor))
        return f"{base}/{rtype}?{urlencode(params)}"

    def _includes(self, conn, parsed: ParsedSearch, rows, access_clauses) -> list[tuple[str, str, bytes]]:
        rtype = parsed.spec.rtype
        page_ids = [row.rid for row in rows]
        seen = {(rtype, rid) for rid in page_ids}
        wanted: dict[str, list[str]] = {}
        for inc in parsed.includes:
            stmt = include_targets(rtype, page_ids, [p.h_param for p in inc.params])
            for ttype, tid in conn.execute(stmt):
                if ttype and (inc.target_type is None or ttype == inc.target_type) and (ttype, tid) not in seen:
                    seen.add((ttype, tid))
                    wanted.setdefault(ttype, []).append(tid)
        for inc in parsed.revincludes:
            for param in inc.params:
                stmt = revinclude_sources(inc.source_type, param.h_param, rtype, page_ids)
                for (sid,) in conn.execute(stmt):
                    if (inc.source_type, sid) not in seen:
                        seen.add((inc.source_type, sid))
                        wanted.setdefault(inc.source_type, []).append(sid)
        out = []
        for ttype, ids in wanted.items():
            if ttype not in searchparams.resource_types():
                continue
            spec = SearchSpec(rtype=ttype, clauses=[IdClause(tuple(ids)), *access_clauses(ttype)], count=len(ids))
            for row in conn.execute(page_statement(spec)):
                out.append((ttype, row.rid, row.content))
        return out

    # ---- history -------------------------------------------------------------------------

    def history(
        self, rtype: str | None, rid: str | None, params: list[tuple[str, str]], base: str
    ) -> Reply:
        if rtype is not None:
            self.check_type(rtype)
        count, since_us, before = self.settings.default_count, None, None
        for name, value in params:
            if name == "_count":
                if not (value.isascii() and value.isdigit()):
                    raise FhirError.of(400, "invalid", "_count must be a non-negative integer", "_count")
                count = min(int(value), self.settings.max_count)
            elif name == "_since":
                try:
                    since_us = date_range(value)[0]
                except DateValueError:
                    raise FhirError.of(400, "invalid", "_since must be a FHIR instant", "_since") from None
            elif name == "_page":
                if not (value.isascii() and value.isdigit()):
                    raise FhirError.of(400, "invalid", "Invalid _page cursor", "_page")
                before = int(value)
        if rid is not None and self.store.read(rtype, rid) is None:
            raise FhirError.of(404, "not-found", f"{rtype}/{rid} is not known")
        versions = self.store.history(rtype, rid, since_us, before, count + 1)
        total = self.store.history_count(rtype, rid, since_us)
        path = "/".join(p for p in (rtype, rid) if p) + ("/_history" if (rtype or rid) else "_history")
        self_params = [(k, v) for k, v in params if k != "_page"]
        links = [("self", f"{base}/{path}" + (f"?{urlencode(self_params)}" if self_params else ""))]
        if len(versions) > count:
            versions = versions[:count]
            if versions:  # `_count=0` asks for the total only: no page, so no next link
                links.append(("next", f"{base}/{path}?{urlencode([*self_params, ('_page', str(versions[-1].txid))])}"))
        entries = [_history_entry(base, v) for v in versions]
        return Reply(200, bundle_bytes("history", total, links, entries))


_STATUS_TEXT = {
    200: "200 OK",
    201: "201 Created",
    204: "204 No Content",
    400: "400 Bad Request",
    403: "403 Forbidden",
    404: "404 Not Found",
    409: "409 Conflict",
    410: "410 Gone",
    412: "412 Precondition Failed",
    422: "422 Unprocessable Entity",
}


def status_text(status: int) -> str:
    return _STATUS_TEXT.get(status, str(status))


def _entry(base: str, rtype: str, rid: str, content: bytes, mode: bytes) -> bytes:
    return b'{"fullUrl":"%s/%s/%s","resource":%s,"search":{"mode":%s}}' % (
        base.encode(),
        rtype.encode(),
        rid.encode(),
        content,
        mode,
    )


def _history_entry(base: str, v: StoredVersion) -> bytes:
    method = v.method or "PUT"
    url = v.rtype if method == "POST" else f"{v.rtype}/{v.rid}"
    status = {"POST": "201 Created", "PUT": "200 OK", "DELETE": "204 No Content"}.get(method, "200 OK")
    if method == "PUT" and v.version == 1:
        status = "201 Created"
    response = orjson.dumps(
        {"status": status, "etag": etag(v.version), "lastModified": instant_text(v.lu)}
    )
    request = orjson.dumps({"method": method, "url": url})
    head = b'{"fullUrl":"%s/%s/%s",' % (base.encode(), v.rtype.encode(), v.rid.encode())
    body = b'"resource":%s,' % v.content if v.content is not None and not v.deleted else b""
    return head + body + b'"request":' + request + b',"response":' + response + b"}"


def bundle_bytes(kind: str, total: int | None, links: list[tuple[str, str]], entries: list[bytes]) -> bytes:
    head = {"resourceType": "Bundle", "id": new_id(), "type": kind}
    if total is not None:
        head["total"] = total
    head["link"] = [{"relation": rel, "url": url} for rel, url in links]
    return orjson.dumps(head)[:-1] + b',"entry":[' + b",".join(entries) + b"]}"
