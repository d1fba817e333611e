"""FHIR search syntax → store clauses (`server.store.search`).

Handles the parameter types token, string, date, number, reference and uri with their prefixes and
modifiers, chained parameters (`subject:Patient.name=…`) and `_has` (reverse chains), plus the result
parameters `_count`, `_sort`, `_summary`, `_total`, `_include`, `_revinclude` and the opaque paging
cursor `_page`. A parameter that cannot be applied is refused under `Prefer: handling=strict` and
otherwise reported as a warning (the searchset's OperationOutcome entry), never silently dropped.

Every type a chain or `_has` reaches goes through the caller's `hop` (the request's one access check):
it refuses a type the caller may not search and returns the clauses that confine the hop's resources.
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable

import orjson

from server.fhir import searchparams
from server.fhir.dates import DateValueError, date_range
from server.fhir.errors import FhirError, Issue
from server.fhir.searchparams import SearchParam, normalise_string, split_reference
from server.store.hashing import h64
from server.store.search import (
    AnyOfClause,
    ChainClause,
    DateClause,
    HasClause,
    IdClause,
    LastUpdatedClause,
    NumberClause,
    NumberRange,
    ReferenceClause,
    SearchSpec,
    SortParam,
    StringClause,
    TokenClause,
    TokenSetClause,
)

# Resource type reached by a chain or `_has` → the access clauses on it (raises 403 if not searchable).
HopAccess = Callable[[str], list]
# url → ((system, code) exact pairs, (system, prefix) pairs), or None when unknown.
ValueSetLookup = Callable[[str], "tuple[tuple[tuple[str | None, str], ...], tuple[tuple[str | None, str], ...]] | None"]

DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
_RESULT_PARAMS = {"_count", "_sort", "_summary", "_total", "_include", "_revinclude", "_page", "_format", "_pretty"}
_SORTABLE_TYPES = {"date": "date", "number": "number", "string": "string", "token": "token", "uri": "token"}
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
_SPLIT_COMMA = re.compile(r"(?<!\\),")


@dataclass(frozen=True)
class Include:
    source_type: str
    params: tuple[SearchParam, ...]
    target_type: str | None


@dataclass
class ParsedSearch:
    spec: SearchSpec
    includes: list[Include] = field(default_factory=list)
    revincludes: list[Include] = field(default_factory=list)
    summary_count: bool = False
    summary: bool = False  # _summary=true: summary elements only
    want_total: bool = True
    warnings: list[Issue] = field(default_factory=list)
    # Parameters that define the result set, echoed in paging links.
    link_params: list[tuple[str, str]] = field(default_factory=list)


def _bad(diagnostics: str, expression: str | None = None) -> FhirError:
    return FhirError.of(400, "invalid", diagnostics, expression)


class _Unknown(Exception):
    """A parameter (or a link of its chain) this server cannot apply: refused or warned by the caller."""


def _no_hops(rtype: str) -> list:
    """Where no caller's access is at hand (scope filters, conditional requests, `_typeFilter`)."""
    raise _Unknown("Chained parameters and _has are supported in searches only")


def split_values(raw: str) -> list[str]:
    return [v.replace("\\,", ",") for v in _SPLIT_COMMA.split(raw)]


def _split_token(value: str) -> tuple[str | None, str | None, bool]:
    """(system, code, has_bar); `\\|` escapes a literal bar."""
    parts = re.split(r"(?<!\\)\|", value, maxsplit=1)
    if len(parts) == 1:
        return None, parts[0].replace("\\|", "|"), False
    return parts[0].replace("\\|", "|"), parts[1].replace("\\|", "|"), True


def token_clause(rtype: str, code: str, values: list[str], negate: bool) -> TokenClause:
    alternatives = []
    for value in values:
        system, tok, has_bar = _split_token(value)
        if not has_bar:
            alternatives.append(("h_value", h64(rtype, code, tok)))
        elif tok == "":
            alternatives.append(("h_sys", h64(rtype, code, system)))
        else:
            alternatives.append(("h_sys_value", h64(rtype, code, system or None, tok)))
    return TokenClause(tuple(alternatives), negate)


def parse_date_value(value: str, name: str) -> tuple[str, int, int]:
    prefix = "eq"
    if len(value) > 2 and value[:2] in DATE_PREFIXES:
        prefix, value = value[:2], value[2:]
    try:
        lo, hi = date_range(value)
    except DateValueError:
        raise _bad(f"Invalid date in search parameter '{name}'", name) from None
    if prefix == "ap":
        now = int(datetime.now(tz=timezone.utc).timestamp() * 1_000_000)
        slack = abs(now - lo) // 10
        lo, hi = lo - slack, hi + slack
    return prefix, lo, hi


def number_range(value: str, name: str) -> NumberRange:
    """A number criterion (`[prefix]value`) as the stored values it admits, per FHIR R4 search.html, "number":
    the value's significant figures make its range (`100` is [99.5, 100.5), `100.00` is [99.995, 100.005)),
    which `eq`, `ne` and `ap` (widened to 10 % of the value) compare with; `lt`, `le`, `gt` and `ge` compare
    with the value exactly; `sa` and `eb` with the range's ends. The same rule makes `1e2` one significant
    figure, [50, 150): the R4 table's [95, 105) for it follows no rule the page states."""
    prefix = "eq"
    if value[:2] in DATE_PREFIXES:
        prefix, value = value[:2], value[2:]
    if not _NUMBER.fullmatch(value):
        raise _bad(f"Invalid number in search parameter '{name}'", name)
    try:
        exact = Decimal(value)
        half = Decimal(5).scaleb(exact.as_tuple().exponent - 1)  # half a unit of the last significant digit
        low, high, number = float(exact - half), float(exact + half), float(exact)
    except ArithmeticError:  # an exponent beyond what decimal arithmetic holds
        low = high = number = math.inf
    if not all(map(math.isfinite, (low, high, number))):  # past a double's range, as Decimal's beyond its own
        raise _bad(f"Number out of range in search parameter '{name}'", name)
    if prefix == "ap":
        slack = abs(number) / 10
        return NumberRange(min(low, number - slack), True, max(high, number + slack), True)
    return {
        "eq": NumberRange(low, True, high, False),
        "ne": NumberRange(low, True, high, False, outside=True),
        "gt": NumberRange(number, False, None, False),
        "ge": NumberRange(number, True, None, False),
        "lt": NumberRange(None, False, number, False),
        "le": NumberRange(None, False, number, True),
        "sa": NumberRange(high, True, None, False),
        "eb": NumberRange(None, False, low, False),
    }[prefix]


def _reference_clause(param: SearchParam, values: list[str], type_modifier: str | None, base_url: str) -> ReferenceClause:
    targets: list[tuple[str | None, str]] = []
    urls: list[str] = []
    for value in values:
        if base_url and value.startswith(base_url + "/"):
            value = value[len(base_url) + 1 :]
        if "://" in value or value.startswith("urn:"):
            urls.append(value)
            ttype, tid, _url = split_reference(value)
            if tid is not None:
                targets.append((ttype, tid))
            continue
        if "/" in value:
            ttype, tid, _url = split_reference(value)
            if tid is None:
                raise _bad(f"Invalid reference in search parameter '{param.code}'", param.code)
            targets.append((ttype, tid))
        else:
            only = type_modifier or (param.targets[0] if len(param.targets) == 1 else None)
            targets.append((only, value))
    return ReferenceClause((param.h_param,), tuple(targets), tuple(urls))


def _parse_include(rtype: str, raw: str, reverse: bool) -> Include:
    parts = raw.split(":")
    if len(parts) not in (2, 3):
        raise _bad(f"Invalid {'_revinclude' if reverse else '_include'} value", "_revinclude" if reverse else "_include")
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if not reverse and source != rtype:
        raise _bad(f"_include source type must be {rtype}", "_include")
    defs = searchparams.registry().get(source)
    if defs is None:
        raise _bad(f"Unknown resource type '{source}' in include", "_include")
    if code == "*":
        params = tuple(p for p in defs.values() if p.type == "reference")
    else:
        param = defs.get(code)
        if param is None or param.type != "reference":
            raise _bad(f"Unknown reference parameter '{source}:{code}'", "_include")
        params = (param,)
    return Include(source, params, target)


def encode_cursor(snapshot: int, after: tuple) -> str:
    return base64.urlsafe_b64encode(orjson.dumps([snapshot, list(after)])).decode().rstrip("=")


def decode_cursor(raw: str) -> tuple[int, tuple]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        snapshot, after = data
        if not isinstance(snapshot, int) or not isinstance(after, list):
            raise ValueError
        return snapshot, tuple(after)
    except Exception:
        raise _bad("Invalid _page cursor", "_page") from None


def parse_search(
    rtype: str,
    params: list[tuple[str, str]],
    *,
    strict: bool,
    default_count: int,
    max_count: int,
    base_url: str = "",
    valueset_lookup: ValueSetLookup | None = None,
    hop: HopAccess = _no_hops,
) -> ParsedSearch:
    spec = SearchSpec(rtype=rtype, count=default_count)
    parsed = ParsedSearch(spec=spec)
    criteria = _Criteria(base_url, valueset_lookup, hop)

    def unknown(message: str, expression: str) -> None:
        if strict:
            raise _bad(message, expression)
        parsed.warnings.append(Issue("warning", "not-supported", message + " (ignored)", (expression,)))

    for name, raw in params:
        if "\x00" in name or "\x00" in raw:  # no text column can hold it (PostgreSQL refuses it)
            raise _bad("Search parameters must not contain NUL characters", name)
        base, _, modifier = name.partition(":")
        if base in _RESULT_PARAMS:
            _result_param(parsed, rtype, base, modifier, raw, max_count, unknown)
            continue
        values = split_values(raw)
        if any(v == "" for v in values):
            raise _bad(f"Empty value for search parameter '{name}'", name)
        try:
            spec.clauses.append(criteria.clause(rtype, name, values))
        except _Unknown as exc:
            unknown(str(exc), name)
            continue
        parsed.link_params.append((name, raw))
    return parsed


@dataclass(frozen=True)
class _Criteria:
    """Parses one criterion (`name=values`) on a type, following chains and `_has` through `hop`."""

    base_url: str
    valueset_lookup: ValueSetLookup | None
    hop: HopAccess

    def clause(self, rtype: str, name: str, values: list[str]):
        if name.startswith("_has:"):
            return self._has(rtype, name, values)
        head, dot, rest = name.partition(".")
        if dot:
            return self._chain(rtype, head, rest, values, name)
        base, _, modifier = name.partition(":")
        if base == "_id":
            return IdClause(tuple(values))
        if base == "_lastUpdated":
            return LastUpdatedClause(tuple(parse_date_value(v, name) for v in values))
        param = searchparams.lookup(rtype, base)
        if param is None:
            raise _Unknown(f"Unknown search parameter '{name}' for {rtype}")
        return _param_clause(param, modifier, values, name, self.base_url, self.valueset_lookup)

    def _chain(self, rtype: str, head: str, rest: str, values: list[str], name: str):
        """`ref[:Type].rest`: resources whose `ref` points at a resource of Type matching `rest`. Without a
        type, every target type that defines the next parameter is searched (OR)."""
        code, _, type_modifier = head.partition(":")
        param = searchparams.lookup(rtype, code)
        if param is None or param.type != "reference":
            raise _Unknown(f"'{code}' in '{name}' is not a reference parameter of {rtype}")
        next_code = rest.partition(":")[0].partition(".")[0]
        if type_modifier:
            types = [type_modifier] if type_modifier in (param.targets or searchparams.resource_types()) else []
        else:
            types = [t for t in param.targets if next_code in ("_id", "_lastUpdated", "_has")
                     or searchparams.lookup(t, next_code) is not None]
        if not types:
            raise _Unknown(f"No target type of '{code}' supports the chained parameter '{rest}'")
        chains = tuple(
            ChainClause(param.h_param, target, (self.clause(target, rest, values), *self.hop(target)))
            for target in types
        )
        return chains[0] if len(chains) == 1 else AnyOfClause(chains)

    def _has(self, rtype: str, name: str, values: list[str]) -> HasClause:
        """`_has:Source:ref:rest`: resources that some Source matching `rest` refers to through `ref`."""
        parts = name.split(":", 3)
        if len(parts) != 4 or not all(parts[1:]):
            raise _bad(f"'{name}' must have the form _has:Type:reference-parameter:parameter", name)
        _, source, code, rest = parts
        param = searchparams.lookup(source, code)
        if param is None or param.type != "reference":
            raise _Unknown(f"'{code}' in '{name}' is not a reference parameter of {source}")
        if param.targets and rtype not in param.targets:
            raise _Unknown(f"{source}.{code} does not refer to {rtype}")
        return HasClause(source, param.h_param, (self.clause(source, rest, values), *self.hop(source)))


def _param_clause(param, modifier, values, name, base_url, valueset_lookup):
    rtype, code = param.resource_type, param.code
    if param.type in ("token", "uri"):
        if modifier == "in" or modifier == "not-in":
            return _valueset_clause(param, values, modifier == "not-in", valueset_lookup, name)
        if modifier not in ("", "not"):
            raise _bad(f"Unsupported modifier ':{modifier}' on token parameter '{code}'", name)
        if param.type == "uri":
            return TokenClause(tuple(("h_value", h64(rtype, code, v)) for v in values), modifier == "not")
        return token_clause(rtype, code, values, modifier == "not")
    if param.type == "string":
        if modifier not in ("", "exact", "contains"):
            raise _bad(f"Unsupported modifier ':{modifier}' on string parameter '{code}'", name)
        mode = modifier or "prefix"
        vals = tuple(values) if mode == "exact" else tuple(normalise_string(v) for v in values)
        return StringClause(param.h_param, mode, vals)
    if param.type == "date":
        if modifier:
            raise _bad(f"Unsupported modifier ':{modifier}' on date parameter '{code}'", name)
        return DateClause(param.h_param, tuple(parse_date_value(v, name) for v in values))
    if param.type == "number":
        if modifier:
            raise _bad(f"Unsupported modifier ':{modifier}' on number parameter '{code}'", name)
        return NumberClause(param.h_param, tuple(number_range(v, name) for v in values))
    if param.type == "reference":
        if modifier and modifier not in param.targets and modifier not in searchparams.resource_types():
            raise _bad(f"Unsupported modifier ':{modifier}' on reference parameter '{code}'", name)
        return _reference_clause(param, values, modifier or None, base_url)
    raise _bad(f"Unsupported parameter type for '{code}'", name)


def _valueset_clause(param, values, negate, valueset_lookup, name) -> TokenSetClause:
    exact: list = []
    prefixes: list = []
    for url in values:
        found = valueset_lookup(url) if valueset_lookup else None
        if found is None:
            raise _bad(f"Unknown value set '{url}'", name)
        exact.extend(found[0])
        prefixes.extend(found[1])
    return TokenSetClause(param.h_param, tuple(exact), tuple(prefixes), negate)


def _result_param(parsed: ParsedSearch, rtype, base, modifier, raw, max_count, unknown) -> None:
    spec = parsed.spec
    if base == "_count":
        try:
            count = int(raw)
        except ValueError:
            raise _bad("_count must be a non-negative integer", "_count") from None
        if count < 0:
            raise _bad("_count must be a non-negative integer", "_count")
        if count > max_count:
            parsed.warnings.append(
                Issue("warning", "too-costly", f"_count reduced to the maximum of {max_count}", ("_count",))
            )
            count = max_count
        spec.count = count
    elif base == "_sort":
        for item in split_values(raw):
            desc = item.startswith("-")
            key = item[1:] if desc else item
            if key in ("_id", "_lastUpdated"):
                spec.sort.append((key, desc))
                continue
            param = searchparams.lookup(rtype, key)
            if param is None or param.type not in _SORTABLE_TYPES:
                unknown(f"Sorting {rtype} by '{key}' is not supported", "_sort")
                continue
            spec.sort.append((SortParam(key, _SORTABLE_TYPES[param.type], param.h_param), desc))
        parsed.link_params.append(("_sort", raw))
    elif base == "_summary":
        if raw == "count":
            parsed.summary_count = True
        elif raw == "true":
            parsed.summary = True
            parsed.link_params.append(("_summary", raw))
        elif raw != "false":
            unknown(f"_summary={raw} is not supported", "_summary")
    elif base == "_total":
        if raw not in ("none", "estimate", "accurate"):
            raise _bad("_total must be none, estimate or accurate", "_total")
        parsed.want_total = raw != "none"
    elif base == "_include":
        if modifier and modifier != "iterate":
            raise _bad(f"Unsupported modifier ':{modifier}' on _include", "_include")
        parsed.includes.append(_parse_include(rtype, raw, reverse=False))
        parsed.link_params.append(("_include", raw))
    elif base == "_revinclude":
        if modifier and modifier != "iterate":
            raise _bad(f"Unsupported modifier ':{modifier}' on _revinclude", "_revinclude")
        parsed.revincludes.append(_parse_include(rtype, raw, reverse=True))
        parsed.link_params.append(("_revinclude", raw))
    elif base == "_page":
        spec.snapshot_txid, spec.after = decode_cursor(raw)
