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

from typing import Callable, Iterable, TypeVar
from urllib.parse import parse_qsl, urlencode

import orjson

from server.config import Settings
from server.fhir import searchparams
from server.fhir.bundle_output import bundle_bytes, history_entry, search_entry
from server.fhir.context import RequestContext, forbidden
from server.fhir.dates import DateValueError, date_range
from server.fhir.errors import FhirError, Issue, operation_outcome
from server.fhir.features import WriteGuard
from server.fhir.search import ParsedSearch, ValueSetLookup, decode_cursor, encode_cursor, parse_search
from server.fhir.summary import summarise
from server.fhir.types import AfterCommit, Reply, Written
from server.fhir.validation import validate_resource
from server.fhir.versions import etag, new_id, parse_if_match, resource_headers, valid_id, version_rows
from server.fhir.writer import Writer
from server.store.resources import Store, StoredVersion, WriteTransaction
from server.store.txids import newest_txid
from server.store.schema import resources as resources_table
from server.store.search import IdClause, SearchSpec, count_statement, include_targets, keyset_values
from server.store.search import page_statement, revinclude_sources, sort_columns

T = TypeVar("T")
_INT64 = 2**63
_MAX_CURSOR_TEXT = 4096  # a sort value carried in a `_page` cursor (index strings are cut at 512)


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

    def write(self, ctx: RequestContext, work: Callable[[Writer], T]) -> T:
        """`work` with a `Writer` for `ctx` on a write transaction, run again from the start on a conflict
        (`Store.write`, a fresh Writer each time); once committed, the versions it wrote are announced."""
        def attempt(tx: WriteTransaction) -> tuple[Writer, T]:
            writer = Writer(self, tx, ctx)
            return writer, work(writer)

        writer, result = self.store.write(attempt)
        self.committed(writer.written, ctx)
        return result

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

        def work(writer: Writer) -> tuple[StoredVersion | None, str, int]:
            if if_none_exist:
                matches = writer.find(rtype, if_none_exist, "If-None-Exist")
                if len(matches) > 1:
                    raise FhirError.of(412, "duplicate", "If-None-Exist matched more than one resource")
                if matches:
                    return self.store.read(rtype, matches[0], writer.tx.conn), matches[0], 0
            return None, *writer.create(rtype, resource)

        existing, rid, version = self.write(ctx, work)
        if existing is not None:
            return self._resource_reply(200, existing, base, prefer)
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

        def work(writer: Writer) -> tuple[int, bool]:
            current = writer.tx.current([(rtype, rid)]).get((rtype, rid))
            return writer.put(rtype, rid, resource, expected, current)

        version, created = self.write(ctx, work)
        return self._written_reply(201 if created else 200, rtype, rid, version, base, prefer)

    def conditional_update(
        self, rtype: str, query: str, body: object, ctx: RequestContext, base: str, if_match: str | None,
        prefer: str | None
    ) -> Reply:
        self.check_type(rtype)
        ctx.access.require(rtype, "u")
        resource = self.validate(body, rtype)
        expected = parse_if_match(if_match)

        def work(writer: Writer) -> tuple[str, int, bool]:
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
            current = writer.tx.current([(rtype, rid)]).get((rtype, rid))
            return rid, *writer.put(rtype, rid, resource, expected, current)

        rid, version, created = self.write(ctx, work)
        return self._written_reply(201 if created else 200, rtype, rid, version, base, prefer)

    def delete(self, rtype: str, rid: str | None, query: str | None, ctx: RequestContext) -> Reply:
        self.check_type(rtype)
        ctx.access.require(rtype, "d")

        def work(writer: Writer) -> int | None:
            target = rid
            if query is not None:
                matches = writer.find(rtype, query, "url")
                if len(matches) > 1:
                    raise FhirError.of(412, "duplicate", "Conditional delete matched more than one resource")
                if not matches:
                    return None
                target = matches[0]
            assert target is not None
            current = writer.tx.current([(rtype, target)]).get((rtype, target))
            return writer.delete(rtype, target, current)

        version = self.write(ctx, work)
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
                spec.snapshot_txid = newest_txid(conn)
            total = conn.execute(count_statement(spec)).scalar_one() if (parsed.want_total or parsed.summary_count) else None
            rows = [] if parsed.summary_count or spec.count == 0 else conn.execute(page_statement(spec)).all()
            has_next = len(rows) > spec.count
            rows = rows[: spec.count]
            included = self._includes(conn, parsed, rows, ctx) if rows else []
        links = [("self", self._link(base, rtype, parsed, None))]
        if has_next:
            cursor = encode_cursor(spec.snapshot_txid, keyset_values(spec, rows[-1]))
            links.append(("next", self._link(base, rtype, parsed, cursor)))
        entries = [search_entry(base, rtype, row.rid, summarise(rtype, row.content) if parsed.summary else row.content,
                          b'"match"') for row in rows]
        entries += [search_entry(base, t, i, c, b'"include"') for t, i, c in included]
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
        count, since_us, after = self.settings.default_count, None, None
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
                after = _history_cursor(value)
        versions = self.store.history(rtype, rid, since_us, after, count + 1)
        total = None if confined else self.store.history_count(rtype, rid, since_us)
        path = "/".join(p for p in (rtype, rid) if p) + ("/_history" if (rtype or rid) else "_history")
        self_params = [(k, v) for k, v in params if k != "_page"]
        links = [("self", f"{base}/{path}" + (f"?{urlencode(self_params)}" if self_params else ""))]
        if len(versions) > count:
            versions = versions[:count]
            if versions:  # `_count=0` asks for the total only: no page, so no next link
                last = versions[-1]
                cursor = encode_cursor(last.txid, (last.rtype, last.rid))
                links.append(("next", f"{base}/{path}?{urlencode([*self_params, ('_page', cursor)])}"))
        if confined:
            versions = [v for v in versions if self._sees(ctx, v)]
        entries = [history_entry(base, v) for v in versions]
        return Reply(200, bundle_bytes("history", total, links, entries))


def _history_cursor(raw: str) -> tuple[int, str, str]:
    """A history `_page` cursor: the (txid, type, id) of the previous page's last version (400 unless it has
    their types and ranges)."""
    txid, after = decode_cursor(raw)
    if not (0 <= txid < _INT64 and len(after) == 2
            and all(isinstance(v, str) and 0 < len(v) <= 64 and "\x00" not in v for v in after)):
        raise FhirError.of(400, "invalid", "Invalid _page cursor", "_page")
    return txid, after[0], after[1]


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
        elif key.kind == "number":
            fits = isinstance(value, (int, float)) and not isinstance(value, bool)  # JSON has no infinities
        else:
            fits = isinstance(value, str) and len(value) <= (64 if key.kind == "id" else _MAX_CURSOR_TEXT) \
                and "\x00" not in value
        if not fits:
            raise FhirError.of(400, "invalid", "The _page cursor does not fit this search", "_page")
