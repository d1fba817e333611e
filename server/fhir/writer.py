"""The write half of a FHIR interaction: stages creates, updates and deletes in one transaction under
FHIR's rules (conditional lookups, If-Match, no-op updates) and the caller's access."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable
from urllib.parse import parse_qsl, urlencode

import orjson

from server.fhir import searchparams
from server.fhir.context import RequestContext, forbidden
from server.fhir.errors import FhirError
from server.fhir.types import Written
from server.fhir.versions import RECORDED_BY_SERVER, new_id, stamp, stamp_meta, strip_stamps, version_rows
from server.store.resources import StagedWrite, StoredVersion, WriteTransaction, chunks
from server.store.schema import resources as resources_table
from server.store.search import TokenClause, page_statement, token_matches

if TYPE_CHECKING:
    from server.fhir.service import FhirService

_CONFINED_PUT = ("A compartment- or filter-confined token updates only resources it can read, and creates "
                 "resources with POST")
_CONFINED_CONDITIONAL = ("Conditional requests (If-None-Exist, conditional update or delete, conditional "
                         "references) are not available to a compartment- or filter-confined token: their "
                         "outcome would reveal whether data beyond its reach exists")


def claim_key(rtype: str, params: list[tuple[str, str]]) -> str:
    """What a transaction claims before it answers a conditional query: the type and the sorted parameters,
    so the same query spelled in another order takes turns with it (`WriteTransaction.claim`)."""
    return f"{rtype}?{urlencode(sorted(params))}"


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
        self.tx.claim([claim_key(rtype, params)])
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
        self.tx.claim(claim_key(rtype, parse_qsl(query, keep_blank_values=True))
                      for queries in by_column.values() for query in queries)
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
