"""Transaction and batch bundles (`POST /fhir`).

A transaction is one database transaction: entries are processed in FHIR order (DELETE, POST,
PUT, GET), conditional creates and conditional references are resolved under claims on their queries,
every `urn:uuid` / fullUrl reference is rewritten to the id it received, and any failing entry
rolls the whole bundle back. A batch processes each entry in its own transaction.
Each bundle that writes also writes one Provenance targeting what it wrote.

The caller's `RequestContext` decides what each entry may do: its interaction is required before
any work, and the `Writer` checks every resource on its final content, after the rewriting.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable
from urllib.parse import urlsplit

import orjson

from server.fhir import searchparams
from server.fhir.bundle_output import status_text
from server.fhir.context import RequestContext
from server.fhir.dates import instant_text
from server.fhir.errors import FhirError, Issue
from server.fhir.references import CONDITIONAL_REFERENCE, iter_references
from server.fhir.service import FhirService
from server.fhir.versions import etag, new_id, parse_if_match, valid_id
from server.fhir.writer import Writer
from server.fhir.types import Reply, Written
from server.store.resources import WriteTransaction

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "GET": 3, "HEAD": 3}


@dataclass
class Entry:
    index: int
    method: str
    rtype: str | None
    rid: str | None
    query: str | None  # search / conditional part of the URL
    history_version: str | None
    full_url: str | None
    resource: dict | None
    if_none_exist: str | None
    if_match: int | None
    # Filled while processing:
    status: int = 0
    location: str | None = None
    version: int | None = None
    lu: int | None = None
    body: bytes | None = None
    outcome: dict | None = None
    skip_write: bool = False


@dataclass
class BundleRequest:
    kind: str  # transaction | batch
    entries: list[Entry] = field(default_factory=list)
    errors: dict[int, FhirError] = field(default_factory=dict)  # batch: per-entry parse errors


def _expr(i: int, tail: str = "") -> str:
    return f"Bundle.entry[{i}]" + (f".{tail}" if tail else "")


def _entry_error(i: int, err: FhirError) -> FhirError:
    issues = [
        Issue(x.severity, x.code, f"Entry {i}: {x.diagnostics}", x.expression or (_expr(i),)) for x in err.issues
    ]
    return FhirError(err.status, issues, err.headers)


def parse_url(url: str, base: str) -> tuple[str | None, str | None, str | None, str | None]:
    """(type, id, query, history version) of an entry's request.url."""
    if "://" in url:
        if base and url.startswith(base + "/"):
            url = url[len(base) + 1 :]
        else:
            url = urlsplit(url).path.split("/fhir/", 1)[-1] + (("?" + urlsplit(url).query) if urlsplit(url).query else "")
    path, _, query = url.lstrip("/").partition("?")
    parts = [p for p in path.split("/") if p]
    rtype = parts[0] if parts else None
    rid = parts[1] if len(parts) > 1 else None
    version = parts[3] if len(parts) == 4 and parts[2] == "_history" else None
    if len(parts) > 2 and version is None:
        raise FhirError.of(400, "not-supported", "Unsupported request.url")
    return rtype, rid, (query or None), version


def parse_bundle(service: FhirService, body: object, base: str) -> BundleRequest:
    if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        raise FhirError.of(400, "invalid", "POST to the base requires a Bundle", "resourceType")
    kind = body.get("type")
    if kind not in ("transaction", "batch"):
        raise FhirError.of(400, "invalid", "Bundle.type must be transaction or batch", "Bundle.type")
    raw_entries = body.get("entry") or []
    if not isinstance(raw_entries, list):
        raise FhirError.of(400, "structure", "Bundle.entry must be an array", "Bundle.entry")
    if len(raw_entries) > service.settings.max_bundle_entries:
        raise FhirError.of(
            413, "too-costly", f"Bundle has more than {service.settings.max_bundle_entries} entries", "Bundle.entry"
        )
    request = BundleRequest(kind)
    seen_full_urls: set[str] = set()
    for i, raw in enumerate(raw_entries):
        try:
            entry = _parse_entry(service, i, raw, base)
            if entry.full_url is not None:
                if entry.full_url in seen_full_urls and entry.method in ("POST", "PUT"):
                    raise FhirError.of(400, "invalid", "Duplicate fullUrl in bundle", _expr(i, "fullUrl"))
                seen_full_urls.add(entry.full_url)
            request.entries.append(entry)
        except FhirError as err:
            if kind == "transaction":
                raise _entry_error(i, err) from None
            request.errors[i] = err
            request.entries.append(Entry(i, "", None, None, None, None, None, None, None, None))
    return request


def _parse_entry(service: FhirService, i: int, raw: object, base: str) -> Entry:
    if not isinstance(raw, dict):
        raise FhirError.of(400, "structure", "Bundle entry must be an object", _expr(i))
    req = raw.get("request")
    if not isinstance(req, dict) or not isinstance(req.get("method"), str) or not isinstance(req.get("url"), str):
        raise FhirError.of(400, "required", "Entry needs request.method and request.url", _expr(i, "request"))
    method = req["method"]
    if method not in _ORDER:
        raise FhirError.of(400, "not-supported", f"Method {method} is not supported in bundles", _expr(i, "request.method"))
    rtype, rid, query, version = parse_url(req["url"], base)
    if rtype is None or rtype not in searchparams.resource_types():
        raise FhirError.of(400, "not-supported", "Unknown resource type in request.url", _expr(i, "request.url"))
    if rid is not None and not valid_id(rid):
        raise FhirError.of(400, "invalid", "Invalid id in request.url", _expr(i, "request.url"))
    full_url = raw.get("fullUrl")
    if full_url is not None and not isinstance(full_url, str):
        raise FhirError.of(400, "structure", "fullUrl must be a string", _expr(i, "fullUrl"))
    resource = None
    if method in ("POST", "PUT"):
        resource = service.validate(raw.get("resource"), rtype, _expr(i, "resource."))
        if method == "POST" and (rid or query):
            raise FhirError.of(400, "invalid", "POST url must be the resource type", _expr(i, "request.url"))
        if method == "PUT" and rid is None and query is None:
            raise FhirError.of(400, "invalid", "PUT url needs an id or search criteria", _expr(i, "request.url"))
        if method == "PUT" and rid is not None and resource.get("id") != rid:
            raise FhirError.of(400, "invalid", "Resource id must match the id in request.url", _expr(i, "resource.id"))
    if method == "DELETE" and rid is None and query is None:
        raise FhirError.of(400, "invalid", "DELETE url needs an id or search criteria", _expr(i, "request.url"))
    if_none_exist = req.get("ifNoneExist")
    return Entry(
        index=i,
        method=method,
        rtype=rtype,
        rid=rid,
        query=query,
        history_version=version,
        full_url=full_url,
        resource=resource,
        if_none_exist=if_none_exist if isinstance(if_none_exist, str) and if_none_exist else None,
        if_match=parse_if_match(req.get("ifMatch")) if isinstance(req.get("ifMatch"), str) else None,
    )


class BundleProcessor:
    def __init__(self, service: FhirService, ctx: RequestContext, base: str, prefer: str | None):
        self.service = service
        self.ctx = ctx
        self.base = base
        self.representation = "return=representation" in (prefer or "").replace(" ", "")
        self.rewritten: list[tuple[dict, str]] = []  # (reference, its value before) the current run rewrote

    def process(self, request: BundleRequest) -> Reply:
        return self.transaction(request) if request.kind == "transaction" else self.batch(request)

    def _require(self, entry: Entry) -> None:
        """The entry's interaction must be allowed at all (403), before anything is looked up for it."""
        access = self.ctx.access
        if entry.method == "POST":
            access.require(entry.rtype, "c")
        elif entry.method == "PUT":
            access.require(entry.rtype, "u")
        elif entry.method == "DELETE":
            access.require(entry.rtype, "d")
        else:
            access.require(entry.rtype, "r" if entry.rid else "s")

    # ---- transaction -----------------------------------------------------------------------

    def transaction(self, request: BundleRequest) -> Reply:
        for entry in request.entries:
            try:
                self._require(entry)
            except FhirError as err:
                raise _entry_error(entry.index, err) from None
        ordered = sorted(request.entries, key=lambda e: (_ORDER[e.method], e.index))

        def body(writer: Writer, tx: WriteTransaction) -> None:
            self._resolve_targets(writer, ordered)
            self._rewrite_references(writer, ordered)
            self._apply_writes(writer, tx, ordered)
            # Staged with the writes, so one flush (one COPY per table) writes the bundle and its Provenance.
            self._provenance(writer, writer.written)
            tx.flush()
            for entry in ordered:
                if entry.method in ("GET", "HEAD"):
                    self._get(entry, tx.conn)

        try:
            writer = self._write(ordered, body)
        except FhirError as err:
            index = getattr(err, "entry_index", None)
            raise _entry_error(index, err) if index is not None else err from None
        self.service.committed(writer.written, self.ctx)
        return self._response("transaction-response", request.entries)

    def _write(self, entries: list[Entry], body: Callable[[Writer, WriteTransaction], None]) -> Writer:
        """`body` in a write transaction (`Store.write`); a run again starts from the entries as they were
        before the first: their processing fields and the references the last run rewrote."""
        before = [replace(entry) for entry in entries]

        def work(tx: WriteTransaction) -> Writer:
            for ref, value in reversed(self.rewritten):
                ref["reference"] = value
            self.rewritten = []
            for entry, saved in zip(entries, before):
                entry.__dict__.update(saved.__dict__)
            writer = Writer(self.service, tx, self.ctx)
            body(writer, tx)
            return writer

        return self.service.store.write(work)

    def _fail(self, entry: Entry, err: FhirError) -> FhirError:
        err.entry_index = entry.index  # type: ignore[attr-defined]
        return err

    def _resolve_targets(self, writer: Writer, entries: list[Entry]) -> None:
        """Give every POST/PUT/DELETE its id, honouring conditional creates, updates and deletes."""
        mapping: dict[str, str] = {}
        conditional_results: dict[tuple[str, str], str | None] = {}
        prefetched = self._prefetch_if_none_exist(writer, entries)
        for entry in entries:
            try:
                if entry.method == "POST":
                    if entry.if_none_exist:
                        key = (entry.rtype, entry.if_none_exist)
                        if key in conditional_results:
                            found = conditional_results[key]
                            matches = [found] if found else []
                        elif key in prefetched:
                            matches = prefetched[key]
                        else:
                            matches = writer.find(entry.rtype, entry.if_none_exist, _expr(entry.index, "request.ifNoneExist"))
                        if len(matches) > 1:
                            raise FhirError.of(412, "duplicate", "ifNoneExist matched more than one resource")
                        if matches:
                            entry.rid, entry.skip_write, entry.status = matches[0], True, 200
                        conditional_results[key] = entry.rid or None
                    if entry.rid is None:
                        entry.rid = new_id()
                        if entry.if_none_exist:
                            conditional_results[(entry.rtype, entry.if_none_exist)] = entry.rid
                elif entry.method in ("PUT", "DELETE") and entry.rid is None:
                    matches = writer.find(entry.rtype, entry.query, _expr(entry.index, "request.url"))
                    if len(matches) > 1:
                        raise FhirError.of(412, "duplicate", "Conditional request matched more than one resource")
                    if matches:
                        entry.rid = matches[0]
                    elif entry.method == "PUT":
                        entry.rid = (entry.resource or {}).get("id") or new_id()
                    else:
                        entry.skip_write, entry.status = True, 204
            except FhirError as err:
                raise self._fail(entry, err) from None
            if entry.full_url and entry.rid and entry.method in ("POST", "PUT"):
                mapping[entry.full_url] = f"{entry.rtype}/{entry.rid}"
        self.mapping = mapping

    @staticmethod
    def _prefetch_if_none_exist(writer: Writer, entries: list[Entry]) -> dict[tuple[str, str], list[str]]:
        """The `ifNoneExist` matches of all POSTs, by batched lookups. Nothing is staged before the
        targets are resolved, so each lookup sees what its own `find` would have seen."""
        queries: dict[str, list[str]] = {}
        for entry in entries:
            if entry.method == "POST" and entry.if_none_exist:
                queries.setdefault(entry.rtype, []).append(entry.if_none_exist)
        return {(rtype, query): ids for rtype, qs in queries.items() for query, ids in writer.find_many(rtype, qs).items()}

    def _rewrite_references(self, writer: Writer, entries: list[Entry]) -> None:
        cache: dict[str, str] = {}
        for entry in entries:
            if entry.resource is None or entry.skip_write:
                continue
            for ref in iter_references(entry.resource):
                value = ref["reference"]
                if value in self.mapping:
                    self.rewritten.append((ref, value))
                    ref["reference"] = self.mapping[value]
                elif value.startswith("urn:uuid:") or value.startswith("urn:oid:"):
                    raise self._fail(
                        entry, FhirError.of(400, "not-found", "Reference to a fullUrl not in this bundle", _expr(entry.index, "resource"))
                    )
                elif CONDITIONAL_REFERENCE.match(value):
                    if value not in cache:
                        rtype, _, query = value.partition("?")
                        try:
                            matches = writer.find(rtype, query, _expr(entry.index, "resource"))
                        except FhirError as err:
                            raise self._fail(entry, err) from None
                        if len(matches) != 1:
                            raise self._fail(
                                entry,
                                FhirError.of(412, "not-found", f"Conditional reference matched {len(matches)} resources", _expr(entry.index, "resource")),
                            )
                        cache[value] = f"{rtype}/{matches[0]}"
                    self.rewritten.append((ref, value))
                    ref["reference"] = cache[value]

    def _apply_writes(self, writer: Writer, tx: WriteTransaction, entries: list[Entry]) -> None:
        keys = [(e.rtype, e.rid) for e in entries if e.method in ("PUT", "DELETE") and e.rid and not e.skip_write]
        current = tx.current(keys)
        touched: set[tuple[str, str]] = set()
        for entry in entries:
            if entry.method in ("GET", "HEAD") or entry.skip_write:
                continue
            key = (entry.rtype, entry.rid)
            if key in touched:
                raise self._fail(entry, FhirError.of(400, "invalid", "The bundle changes the same resource twice"))
            touched.add(key)
            staged_before = len(writer.written)
            try:
                if entry.method == "DELETE":
                    entry.version = writer.delete(entry.rtype, entry.rid, current.get(key))
                    entry.status = 204
                elif entry.method == "POST":
                    _rid, entry.version = writer.create(entry.rtype, entry.resource, entry.rid)
                    entry.status = 201
                else:
                    entry.version, created = writer.put(entry.rtype, entry.rid, entry.resource, entry.if_match, current.get(key))
                    entry.status = 201 if created else 200
            except FhirError as err:
                raise self._fail(entry, err) from None
            if len(writer.written) > staged_before:
                entry.lu = tx.now_us

    def _get(self, entry: Entry, conn=None) -> None:
        try:
            reply = self.service.get(entry.rtype, entry.rid, entry.history_version, entry.query, self.base, self.ctx, conn)
            entry.status, entry.body = reply.status, reply.body
        except FhirError as err:
            entry.status, entry.outcome = err.status, err.outcome()

    def _provenance(self, writer: Writer, written: list[Written]) -> None:
        if not written:
            return
        provenance = {
            "resourceType": "Provenance",
            "target": [{"reference": f"{w.rtype}/{w.rid}/_history/{w.version}"} for w in written],
            "recorded": instant_text(writer.tx.now_us),
            "activity": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE", "display": "revise"}
                ]
            },
            "agent": [
                {
                    "type": {
                        "coding": [
                            {"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}
                        ]
                    },
                    "who": {"display": self.ctx.client_id or "anonymous"},
                }
            ],
            "policy": [self.ctx.writer.source],
        }
        writer.record_provenance(provenance)

    # ---- batch -------------------------------------------------------------------------------

    def batch(self, request: BundleRequest) -> Reply:
        all_written: list[Written] = []
        for entry in request.entries:
            if entry.index in request.errors:
                err = request.errors[entry.index]
                entry.status, entry.outcome = err.status, err.outcome()
                continue
            try:
                self._require(entry)
                if entry.method in ("GET", "HEAD"):
                    self._get(entry)
                    continue

                def body(writer: Writer, tx: WriteTransaction, entry: Entry = entry) -> None:
                    self.mapping = {}
                    self._resolve_targets(writer, [entry])
                    self.mapping = {}
                    self._rewrite_references(writer, [entry])
                    self._apply_writes(writer, tx, [entry])

                self.rewritten = []
                all_written.extend(self._write([entry], body).written)
            except FhirError as err:
                entry.status, entry.outcome = err.status, err.outcome()
        if all_written:
            self.service.store.write(lambda tx: self._provenance(Writer(self.service, tx, self.ctx), all_written))
        self.service.committed(all_written, self.ctx)
        return self._response("batch-response", request.entries)

    # ---- response ----------------------------------------------------------------------------

    def _response(self, kind: str, entries: list[Entry]) -> Reply:
        out = []
        store = self.service.store
        # Versions and times of what this request wrote are known; only unchanged or returned ones are read back.
        wanted = [
            (e.rtype, e.rid)
            for e in entries
            if e.method in ("POST", "PUT") and e.status in (200, 201) and (self.representation or e.lu is None)
        ]
        stored = store.fetch(wanted) if wanted else {}
        for entry in entries:
            response: dict = {"status": status_text(entry.status)}
            item: dict = {}
            resource_bytes = None
            if entry.method in ("POST", "PUT") and entry.status in (200, 201):
                current = stored.get((entry.rtype, entry.rid))
                version = current.version if current else entry.version
                lu = current.lu if current else entry.lu
                if version is not None and lu is not None:
                    response["location"] = f"{entry.rtype}/{entry.rid}/_history/{version}"
                    response["etag"] = etag(version)
                    response["lastModified"] = instant_text(lu)
                if current is not None and self.representation:
                    resource_bytes = current.content
                if entry.full_url:
                    item["fullUrl"] = f"{self.base}/{entry.rtype}/{entry.rid}"
            elif entry.method == "DELETE" and entry.version:
                response["etag"] = etag(entry.version)
            elif entry.method in ("GET", "HEAD") and entry.body is not None and entry.method == "GET":
                resource_bytes = entry.body
            if entry.outcome is not None:
                response["outcome"] = entry.outcome
            item["response"] = response
            encoded = orjson.dumps(item)
            if resource_bytes is not None:
                encoded = b'{"resource":' + resource_bytes + b"," + encoded[1:]
            out.append(encoded)
        head = orjson.dumps({"resourceType": "Bundle", "id": new_id(), "type": kind})
        return Reply(200, head[:-1] + b',"entry":[' + b",".join(out) + b"]}")
