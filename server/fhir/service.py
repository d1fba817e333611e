"""The FHIR interactions, independent of the web framework.

Routes (and bundle entries) call these with the request's `RequestContext`; each returns a `Reply`
(status, headers, JSON bytes). Every interaction asks the context's `Access` before it selects or
writes anything: `require` for the interaction, `clauses` in every query. Writes run inside one
`WriteTransaction`, through a `Writer` that checks each version it stages (the final resource, after
fullUrl and conditional-reference rewriting) and each stored version it replaces, on the
transaction's own connection. After the commit, `after_commit` listeners learn which resources
changed (the alignment engine re-evaluates the members they touch).
"""

from __future__ import annotations

import secrets
import time
import uuid
from typing import Iterable
from urllib.parse import parse_qsl, urlencode

import orjson

from server.config import Settings
from server.fhir import searchparams
from server.fhir.context import RequestContext, forbidden
from server.fhir.dates import DateValueError, date_range, http_date, instant_text
from server.fhir.errors import FhirError, Issue, operation_outcome
from server.fhir.search import ParsedSearch, ValueSetLookup, encode_cursor, parse_search
from server.fhir.searchparams import IndexRows
from server.fhir.summary import summarise
from server.fhir.features import WriteGuard
from server.fhir.types import AfterCommit, Reply, WriteContext, Written
from server.fhir.validation import validate_resource
from server.store.resources import StagedWrite, Store, StoredVersion, WriteTransaction, chunks
from server.store.schema import resources as resources_table
from server.store.search import IdClause, SearchSpec, TokenClause, count_statement, include_targets, keyset_values
from server.store.search import page_statement, revinclude_sources, sort_columns, token_matches

ID_PATTERN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-.")
_META_STAMPS = ("versionId", "lastUpdated", "source")
# meta.tag system the server stamps with the writer's evidence kind (clinical | claims |
# patient-reported); a client-supplied tag of this system is replaced, so no client can claim another kind.
SOURCE_KIND_SYSTEM = "https://planfit.dev/fhir/CodeSystem/source-kind"
# meta.tag of the Provenance the server records per transaction; clients cannot set it, so a
# Provenance a client posts is never taken for the server's.
RECORDED_BY_SERVER = ("https://planfit.dev/fhir/CodeSystem/recorded-by", "planfit")
_RESERVED_TAG_SYSTEMS = frozenset({SOURCE_KIND_SYSTEM, RECORDED_BY_SERVER[0]})
_INT64 = 2**63
_MAX_CURSOR_TEXT = 4096  # a sort value carried in a `_page` cursor (index strings are cut at 512)
_CONFINED_PUT = ("A compartment- or filter-confined token updates only resources it can read, and creates "
                 "resources with POST")
_CONFINED_CONDITIONAL = ("Conditional requests (If-None-Exist, conditional update or delete, conditional "
                         "references) are not available to a compartment- or filter-confined token: their "
                         "outcome would reveal whether data beyond its reach exists")


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


class Writer:
    """Stages creates, updates and deletes in one transaction, enforcing FHIR's rules and the caller's
    access: on each version it stages, and on each stored version it replaces (read through the
    transaction's connection)."""

    def __init__(self, service: "FhirService", tx: WriteTransaction, ctx: RequestContext):
        self.service = service
        self.tx = tx
        self.ctx = ctx
        self.written: list[Written] = []

    def _searches_unconfined(self, rtype: str) -> bool:
        """Conditional lookups search the type unscoped: only callers who may search all of it may ask."""
        try:
            self.ctx.access.require(rtype, "s")
        except FhirError:
            return False
        return not self.ctx.access.clauses(rtype, "s")

    def find(self, rtype: str, query: str, expression: str) -> list[str]:
        """Ids matching a conditional query (at most 2: enough to tell 0, 1 or many)."""
        if rtype not in searchparams.resource_types():
            raise FhirError.of(400, "not-supported", f"Unknown resource type '{rtype}'", expression)
        if not self._searches_unconfined(rtype):
            raise forbidden(_CONFINED_CONDITIONAL)
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
        if not self._searches_unconfined(rtype):
            return {}
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
        self._stage(rtype, rid, 1, "POST", resource, existed=False, interaction="c")
        return rid, 1

    def put(self, rtype: str, rid: str, resource: dict, if_match: int | None, current: StoredVersion | None) -> tuple[int, bool]:
        """Update (or create with a client id); returns (version, created). A no-op keeps the version.

        A confined token gets the same 403 whether the id is unknown or out of its reach (no
        existence oracle): it may update what it can read, and creates with POST."""
        exists = current is not None and not current.deleted
        if self.ctx.access.clauses(rtype, "u") and not (exists and self._may_change(rtype, current, "u")):
            raise forbidden(_CONFINED_PUT)
        if not exists:
            if if_match is not None:
                raise FhirError.of(412, "conflict", "If-Match given but the resource does not exist")
            self.ctx.access.require(rtype, "c")
            version = (current.version + 1) if current else 1
            self._stage(rtype, rid, version, "PUT", resource, existed=current is not None, interaction="c")
            return version, True
        assert current is not None
        if if_match is not None and if_match != current.version:
            raise FhirError.of(
                412, "conflict", f"Version conflict: If-Match {if_match}, current version {current.version}"
            )
        old = orjson.loads(current.content)
        if strip_stamps(old) == strip_stamps({**resource, "id": rid}) and old.get("meta", {}).get("source") == self.ctx.writer.source:
            return current.version, False
        self._stage(rtype, rid, current.version + 1, "PUT", resource, existed=True, interaction="u")
        return current.version + 1, False

    def delete(self, rtype: str, rid: str, current: StoredVersion | None) -> int | None:
        """Delete the current version; None when there was nothing to delete, which is also the answer
        when the caller may not delete it (as if absent: no existence oracle)."""
        if current is None or current.deleted or not self._may_change(rtype, current, "d"):
            return None
        self._guard(rtype, rid, "DELETE", None)
        version = current.version + 1
        self.tx.stage(StagedWrite(rtype, rid, version, "DELETE", None, None, existed=True))
        self.written.append(Written(rtype, rid, version, True, self.tx.txid))
        return version

    def record_provenance(self, provenance: dict) -> None:
        """Stage the server's own Provenance of this transaction, tagged as recorded by the server. It
        is not a write of the caller's (no access check, not in `written`)."""
        system, code = RECORDED_BY_SERVER
        self._store("Provenance", new_id(), 1, "POST", provenance, False, ({"system": system, "code": code},))

    def _guard(self, rtype: str, rid: str, method: str, resource: dict | None) -> None:
        """The write guards (PRE_WRITE hooks) refuse client writes to what features own; what the server
        publishes itself passes."""
        if not self.ctx.publishing:
            for guard in self.service.write_guards:
                guard(rtype, rid, method, resource)

    def _may_change(self, rtype: str, stored: StoredVersion, interaction: str) -> bool:
        if not self.ctx.access.clauses(rtype, interaction):
            return True  # unconfined: no need to index the stored version
        assert stored.content is not None
        return self.ctx.access.may_change(rtype, stored.rid, version_rows(stored.content), interaction)

    def _stage(self, rtype: str, rid: str, version: int, method: str, resource: dict, existed: bool,
               interaction: str) -> None:
        written = self._store(rtype, rid, version, method, resource, existed, (), interaction)
        self.written.append(written)

    def _store(self, rtype: str, rid: str, version: int, method: str, resource: dict, existed: bool,
               tags: tuple[dict, ...], interaction: str | None = None) -> Written:
        """Stamp, index and stage one version; with an `interaction`, first check it (guards, access)."""
        resource = {**resource, "id": rid}
        stamp_meta(resource, self.ctx.writer, tags)
        index = searchparams.index_rows(resource)
        if interaction is not None:
            self._guard(rtype, rid, method, resource)
            self.ctx.access.check_write(rtype, rid, index, interaction)
        content = stamp(resource, rid, version, self.tx.now_us)
        self.tx.stage(StagedWrite(rtype, rid, version, method, content, index, existed))
        return Written(rtype, rid, version, False, self.tx.txid)


def version_rows(content: bytes) -> IndexRows:
    """The index rows of a stored version (old versions have none in the index tables)."""
    return searchparams.index_rows(orjson.loads(content))


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
        # The POST_COMMIT and PRE_WRITE hooks (`server/fhir/features.py`), filled when the app is assembled.
        self.after_commit: list[AfterCommit] = []
        self.write_guards: list[WriteGuard] = []

    # ---- helpers -------------------------------------------------------------------------

    def parse(self, rtype: str, params: list[tuple[str, str]], strict: bool, base: str = "",
              ctx: RequestContext | None = None) -> ParsedSearch:
        """Search parameters → store clauses, refusing searches too costly to plan or run: thousands of
        AND-ed criteria take PostgreSQL minutes to plan, thousands of `_revinclude`s seconds to run.
        With the caller's context, chains and `_has` may reach other types, each through its access."""
        includes = sum(1 for name, _ in params if name.partition(":")[0] in ("_include", "_revinclude"))
        if includes > self.settings.max_includes:
            raise FhirError.of(400, "too-costly", f"At most {self.settings.max_includes} _include and _revinclude "
                                                  "parameters per search", "_include")
        if len(params) > self.settings.max_search_params:
            raise FhirError.of(400, "too-costly", f"At most {self.settings.max_search_params} parameters per search")
        return parse_search(
            rtype,
            params,
            strict=strict,
            default_count=self.settings.default_count,
            max_count=self.settings.max_count,
            base_url=base,
            valueset_lookup=self.valueset_lookup,
            **({"hop": lambda hop_type: _hop_clauses(ctx, hop_type)} if ctx is not None else {}),
        )

    def committed(self, written: list[Written], ctx: RequestContext) -> None:
        """After a commit: the versions written become entities of the request's audit record, and the
        listeners learn what changed."""
        if written:
            ctx.audit.entities.extend(f"{w.rtype}/{w.rid}/_history/{w.version}" for w in written)
            for listener in self.after_commit:
                listener(written, ctx.writer)

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

    def get(self, rtype: str, rid: str | None, version: str | None, query: str | None, base: str,
            ctx: RequestContext, conn=None) -> Reply:
        """read, vread or search; `conn` lets a transaction's GET entries see its own writes."""
        if rid is None:
            return self.search(rtype, parse_qsl(query or "", keep_blank_values=True), base, False, ctx, conn)
        if version is not None:
            return self.vread(rtype, rid, version, base, ctx, conn)
        return self.read(rtype, rid, base, ctx, conn)

    def read(self, rtype: str, rid: str, base: str, ctx: RequestContext, conn=None) -> Reply:
        self.check_type(rtype)
        ctx.access.require(rtype, "r")
        current = self.store.read(rtype, rid, conn)
        if current is None or not self.visible(rtype, rid, ctx.access.clauses(rtype, "r"), conn):
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

    def _sees(self, ctx: RequestContext, version: StoredVersion, conn=None) -> bool:
        """Whether the caller may see one stored version: its own content must lie within the caller's
        reach (a version from before the resource moved, or before it was deleted and re-created under
        the same id, may be another patient's). A deletion is seen when the version it deleted is."""
        if not ctx.access.clauses(version.rtype, "r"):
            return True
        if version.deleted:
            previous = self.store.vread(version.rtype, version.rid, version.version - 1, conn)
            return previous is not None and not previous.deleted and self._sees(ctx, previous, conn)
        assert version.content is not None
        return ctx.access.sees_version(version.rtype, version.rid, version_rows(version.content))

    def _require_instance(self, rtype: str, rid: str, ctx: RequestContext, conn=None) -> None:
        """404 unless the resource exists and its current version is within the caller's reach."""
        self.check_type(rtype)
        ctx.access.require(rtype, "r")
        if self.store.read(rtype, rid, conn) is None or not self.visible(rtype, rid, ctx.access.clauses(rtype, "r"), conn):
            raise FhirError.of(404, "not-found", f"{rtype}/{rid} is not known")

    def vread(self, rtype: str, rid: str, version: str, base: str, ctx: RequestContext, conn=None) -> Reply:
        self._require_instance(rtype, rid, ctx, conn)
        number = int(version) if version.isascii() and version.isdigit() and len(version) <= 9 else None
        found = self.store.vread(rtype, rid, number, conn) if number is not None else None
        if found is None or not self._sees(ctx, found, conn):
            raise FhirError.of(404, "not-found", f"{rtype}/{rid}/_history/{version} is not known")
        if found.deleted:
            raise FhirError.of(410, "deleted", f"{rtype}/{rid} version {version} is a deletion")
        return Reply(200, found.content, resource_headers(rtype, rid, found.version, found.lu, base))

    # ---- single-resource writes ------------------------------------------------------------

    def create(self, rtype: str, body: object, ctx: RequestContext, base: str, if_none_exist: str | None,
               prefer: str | None) -> Reply:
        self.check_type(rtype)
        ctx.access.require(rtype, "c")
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
        self, rtype: str, rid: str, body: object, ctx: RequestContext, base: str, if_match: str | None, prefer: str | None
    ) -> Reply:
        self.check_type(rtype)
        ctx.access.require(rtype, "u")
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
        self, rtype: str, query: str, body: object, ctx: RequestContext, base: str, if_match: str | None,
        prefer: str | None
    ) -> Reply:
        self.check_type(rtype)
        ctx.access.require(rtype, "u")
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

    def delete(self, rtype: str, rid: str | None, query: str | None, ctx: RequestContext) -> Reply:
        self.check_type(rtype)
        ctx.access.require(rtype, "d")
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
        ctx: RequestContext,
        conn=None,
    ) -> Reply:
        """Searchset bundle; the caller's clauses narrow every selected type (scopes, compartment)."""
        self.check_type(rtype)
        ctx.access.require(rtype, "s")
        parsed = self.parse(rtype, params, strict, base, ctx)
        spec = parsed.spec
        spec.clauses.extend(ctx.access.clauses(rtype, "s"))
        _check_cursor(spec)
        with self.store.connection(conn) as conn:
            if spec.snapshot_txid is None:
                spec.snapshot_txid = Store.current_txid(conn)
            total = conn.execute(count_statement(spec)).scalar_one() if (parsed.want_total or parsed.summary_count) else None
            rows = [] if parsed.summary_count or spec.count == 0 else conn.execute(page_statement(spec)).all()
            has_next = len(rows) > spec.count
            rows = rows[: spec.count]
            included = self._includes(conn, parsed, rows, ctx) if rows else []
        links = [("self", self._link(base, rtype, parsed, None))]
        if has_next:
            cursor = encode_cursor(spec.snapshot_txid, keyset_values(spec, rows[-1]))
            links.append(("next", self._link(base, rtype, parsed, cursor)))
        entries = [_entry(base, rtype, row.rid, summarise(rtype, row.content) if parsed.summary else row.content,
                          b'"match"') for row in rows]
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

    def _includes(self, conn, parsed: ParsedSearch, rows, ctx: RequestContext) -> list[tuple[str, str, bytes]]:
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
            spec = SearchSpec(rtype=ttype, clauses=[IdClause(tuple(ids)), *ctx.access.clauses(ttype, "s")], count=len(ids))
            for row in conn.execute(page_statement(spec)):
                out.append((ttype, row.rid, row.content))
        return out

    # ---- history -------------------------------------------------------------------------

    def history(
        self, rtype: str | None, rid: str | None, params: list[tuple[str, str]], base: str, ctx: RequestContext
    ) -> Reply:
        """System, type or instance history. System and type history are read from the version log,
        which no clause filters: they need an unconfined scope. Instance history shows a confined
        caller only the versions within its reach, without a total (that would count the others)."""
        confined = False
        if rtype is None:
            ctx.access.require("*", "s")
        elif rid is None:
            self.check_type(rtype)
            ctx.access.require(rtype, "s")
            if ctx.access.clauses(rtype, "s"):
                raise forbidden(f"Type history of {rtype} is not available to a compartment- or filter-confined token")
        else:
            self._require_instance(rtype, rid, ctx)
            confined = bool(ctx.access.clauses(rtype, "r"))
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
                if not (value.isascii() and value.isdigit()) or int(value) >= _INT64:
                    raise FhirError.of(400, "invalid", "Invalid _page cursor", "_page")
                before = int(value)
        versions = self.store.history(rtype, rid, since_us, before, count + 1)
        total = None if confined else self.store.history_count(rtype, rid, since_us)
        path = "/".join(p for p in (rtype, rid) if p) + ("/_history" if (rtype or rid) else "_history")
        self_params = [(k, v) for k, v in params if k != "_page"]
        links = [("self", f"{base}/{path}" + (f"?{urlencode(self_params)}" if self_params else ""))]
        if len(versions) > count:
            versions = versions[:count]
            if versions:  # `_count=0` asks for the total only: no page, so no next link
                links.append(("next", f"{base}/{path}?{urlencode([*self_params, ('_page', str(versions[-1].txid))])}"))
        if confined:
            versions = [v for v in versions if self._sees(ctx, v)]
        entries = [_history_entry(base, v) for v in versions]
        return Reply(200, bundle_bytes("history", total, links, entries))


def _hop_clauses(ctx: RequestContext, rtype: str) -> list:
    """A type a chain or `_has` reaches: 403 unless the caller may search it; its clauses confine the hop."""
    if rtype not in searchparams.resource_types():
        raise FhirError.of(400, "not-supported", f"Unknown resource type '{rtype}'")
    ctx.access.require(rtype, "s")
    return ctx.access.clauses(rtype, "s")


def _check_cursor(spec: SearchSpec) -> None:
    """A `_page` cursor is opaque to clients but comes back from them: its values must have the types
    and ranges of the sort keys before they reach SQL (400 otherwise, never a database error)."""
    if spec.snapshot_txid is not None and not 0 <= spec.snapshot_txid < _INT64:
        raise FhirError.of(400, "invalid", "Invalid _page cursor", "_page")
    if spec.after is None:
        return
    keys = sort_columns(spec)
    if len(spec.after) != len(keys):
        raise FhirError.of(400, "invalid", "The _page cursor does not fit this search", "_page")
    for key, value in zip(keys, spec.after):
        if value is None and key.nullable:
            continue
        if key.kind == "int":
            fits = isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64
        else:
            fits = isinstance(value, str) and len(value) <= (64 if key.kind == "id" else _MAX_CURSOR_TEXT) \
                and "\x00" not in value
        if not fits:
            raise FhirError.of(400, "invalid", "The _page cursor does not fit this search", "_page")


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
