"""Rules for confined tokens that the REST layer's `require`/`clauses` cannot express by themselves.

A token is *confined* for an interaction when its clauses for it are not empty (patient compartment,
restricted user, granular scope). For such tokens:

* type history (`GET /fhir/T/_history`) is refused: history is read from the version log, which the
  clauses do not filter;
* conditional create/update/delete, `ifNoneExist` and conditional references are refused: they are
  resolved by searches that ignore the token's clauses, so their outcome (200 vs 201, 412, 204)
  would reveal whether *another* patient's resource matches;
* every resource a create or update would store must be readable back under the token's clauses
  (`server.auth.writes.admits` over the resource's index rows): a patient app can only write into
  its own patient's compartment.

Updates and deletes of *existing* resources are checked against the stored version inside the write
transaction (`AuthRuntime.guard_write`). In a transaction or batch one offending entry refuses the
whole bundle with 403, naming the entry.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.auth.access import SmartAccess, forbidden
from server.auth.writes import admits
from server.fhir import searchparams
from server.fhir.bundles import parse_url
from server.fhir.errors import FhirError
from server.fhir.references import CONDITIONAL_REFERENCE, iter_references


@dataclass(frozen=True)
class Target:
    """A FHIR request, classified: restful-interaction code, type, id and version from the path."""

    interaction: str
    rtype: str | None = None
    rid: str | None = None
    version: str | None = None
    conditional: bool = False

    @property
    def writes(self) -> bool:
        return self.interaction in ("create", "update", "delete", "transaction")


def classify(method: str, parts: list[str], has_query: bool) -> Target:
    """Classify a request under /fhir by method and path segments (after /fhir)."""
    if not parts:
        return Target("transaction" if method == "POST" else "operation")
    if any(p.startswith("$") for p in parts):
        rtype = parts[0] if parts[0][:1].isupper() else None
        rid = parts[1] if rtype and len(parts) > 2 else None
        return Target("operation", rtype, rid)
    if parts[0] == "_history":
        return Target("history-system")
    rtype = parts[0]
    if len(parts) == 1:
        by_method = {"GET": "search-type", "POST": "create", "PUT": "update", "DELETE": "delete"}
        interaction = by_method.get(method, "operation")
        return Target(interaction, rtype, conditional=interaction in ("update", "delete") and has_query)
    if len(parts) == 2 and parts[1] == "_search":
        return Target("search-type", rtype)
    if len(parts) == 2 and parts[1] == "_history":
        return Target("history-type", rtype)
    if len(parts) == 2:
        return Target({"GET": "read", "PUT": "update", "DELETE": "delete"}.get(method, "operation"), rtype, parts[1])
    if len(parts) == 3 and parts[2] == "_history":
        return Target("history-instance", rtype, parts[1])
    if len(parts) == 4 and parts[2] == "_history":
        return Target("vread", rtype, parts[1], parts[3])
    return Target("operation", rtype)


def needs_body(access: SmartAccess, target: Target) -> bool:
    """Whether the request body must be inspected before the request may proceed."""
    return access.grant.restricted and target.interaction in ("create", "update", "transaction") and not target.conditional


def check_request(access: SmartAccess, target: Target, if_none_exist: str | None) -> None:
    """The rules that need no body (raise 403)."""
    if not access.grant.restricted or target.rtype is None:
        return
    if target.interaction == "history-type" and access.confined(target.rtype, "s"):
        raise forbidden(f"Type history of {target.rtype} is not available to a compartment- or filter-confined token")
    if target.conditional and access.confined(target.rtype, "u" if target.interaction == "update" else "d"):
        raise forbidden("Conditional updates and deletes are not available to a confined token")
    if target.interaction == "create" and if_none_exist and access.confined(target.rtype, "c"):
        raise forbidden("Conditional create (If-None-Exist) is not available to a confined token")


def check_body(access: SmartAccess, target: Target, body: object, base: str) -> None:
    """The rules on the resources a create, update or bundle would store (raise 403)."""
    if not isinstance(body, dict):
        return  # not a resource: the REST layer answers 400
    if target.interaction == "transaction":
        _check_bundle(access, body, base)
    elif target.interaction == "create":
        _check_resource(access, target.rtype, None, body, ("c",), "")
    elif target.interaction == "update":
        _check_resource(access, target.rtype, target.rid, body, ("u", "c"), "")


def _check_bundle(access: SmartAccess, bundle: dict, base: str) -> None:
    entries = bundle.get("entry")
    if bundle.get("resourceType") != "Bundle" or not isinstance(entries, list):
        return
    for i, entry in enumerate(entries):
        request = entry.get("request") if isinstance(entry, dict) else None
        if not isinstance(request, dict) or not isinstance(request.get("url"), str):
            continue
        try:
            rtype, rid, query, _version = parse_url(request["url"], base)
        except FhirError:
            continue
        if rtype not in searchparams.resource_types():
            continue
        where = f"Bundle.entry[{i}]"
        method = request.get("method")
        if method == "POST":
            if request.get("ifNoneExist") and access.confined(rtype, "c"):
                raise forbidden(f"Entry {i}: conditional create is not available to a confined token")
            _check_resource(access, rtype, None, entry.get("resource"), ("c",), where)
        elif method == "PUT":
            if query is not None and access.confined(rtype, "u"):
                raise forbidden(f"Entry {i}: conditional update is not available to a confined token")
            _check_resource(access, rtype, rid, entry.get("resource"), ("u", "c"), where)
        elif method == "DELETE" and query is not None and access.confined(rtype, "d"):
            raise forbidden(f"Entry {i}: conditional delete is not available to a confined token")


def _check_resource(access: SmartAccess, rtype: str | None, rid: str | None, resource: object,
                    interactions: tuple[str, ...], where: str) -> None:
    if rtype is None or not isinstance(resource, dict) or resource.get("resourceType") != rtype:
        return  # malformed: the REST layer answers 400
    clauses = [c for i in interactions for c in access.clauses(rtype, i)]
    if not clauses:
        return
    prefix = f"{where}: " if where else ""
    if any(CONDITIONAL_REFERENCE.match(ref.get("reference", "")) for ref in iter_references(resource)):
        raise forbidden(f"{prefix}conditional references are not available to a confined token")
    if not admits(clauses, rtype, rid, searchparams.index_rows(resource)):
        raise forbidden(f"{prefix}{rtype} would lie outside what the access token may access")
