"""Property tests (hypothesis) of the parsers that take request text: search parameters and SMART scopes.

* `parse_search` on arbitrary parameters either returns a search or raises FhirError (a 4xx), never
  anything else, and the search it returns compiles to SQL on both databases.
* A well-formed search survives the trip through its own paging link: the parameters echoed in the
  `self`/`next` links parse back to the same search.
* Scope parsing of generated well-formed SMART v2 scopes keeps every part, and no scope ever grants a
  letter its text does not spell (`tests/auth/test_auth_scopes.py` has the set-level properties).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from server.auth.scopes import Scope, parse_scope
from server.fhir import searchparams
from server.fhir.errors import FhirError
from server.fhir.search import DATE_PREFIXES, parse_search
from server.store.search import count_statement, page_statement

TYPES = ("Patient", "Condition", "Coverage", "Claim", "Observation", "Group")
MODIFIERS = ("", ":exact", ":contains", ":not", ":missing", ":in", ":Patient", ":below", ":text", ":x")
RESULT = ("_count", "_sort", "_summary", "_total", "_include", "_revinclude", "_page", "_id", "_lastUpdated")
SETTINGS = settings(max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _codes(rtype: str) -> list[str]:
    return sorted(searchparams.registry()[rtype])


@st.composite
def any_params(draw) -> tuple[str, list[tuple[str, str]]]:
    rtype = draw(st.sampled_from(TYPES))
    known = st.tuples(st.sampled_from(_codes(rtype) + list(RESULT)), st.sampled_from(MODIFIERS)).map("".join)
    name = st.one_of(known, st.text(max_size=20))
    value = st.one_of(
        st.text(max_size=40),
        st.from_regex(r"(eq|ne|gt|lt|ge|le|sa|eb|ap)?-?\d{1,5}(-\d{1,2}(-\d{1,2}(T\d\d:\d\d(:\d\d)?(Z|[+-]\d\d:\d\d)?)?)?)?", fullmatch=True),
        st.from_regex(r"[a-z:/.]{0,12}\|[A-Za-z0-9.]{0,8}(,[a-z]{0,3})?", fullmatch=True),
        st.from_regex(r"([A-Z][a-z]{1,10}/)?[A-Za-z0-9.-]{0,12}(/_history/\d{1,3})?", fullmatch=True),
        st.integers(min_value=-(10**25), max_value=10**25).map(str),
    )
    return rtype, draw(st.lists(st.tuples(name, value), max_size=6))


@SETTINGS
@given(search=any_params(), strict=st.booleans())
def test_parse_search_raises_only_fhir_errors_and_compiles(search, strict):
    rtype, params = search
    try:
        parsed = parse_search(rtype, params, strict=strict, default_count=50, max_count=1000)
    except FhirError as err:
        assert 400 <= err.status < 500 and err.issues
        return
    assert 0 <= parsed.spec.count <= 1000
    for dialect in (postgresql.dialect(), sqlite.dialect()):
        page_statement(parsed.spec).compile(dialect=dialect)
        count_statement(parsed.spec).compile(dialect=dialect)


_SIMPLE = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-", min_size=1, max_size=12)
_DATE = st.dates().map(lambda d: d.isoformat())
_CLOCK_FREE_PREFIXES = [p for p in DATE_PREFIXES if p != "ap"]  # `ap` widens by a share of the distance to now


@st.composite
def well_formed_params(draw) -> tuple[str, list[tuple[str, str]]]:
    """Known parameters of one type with values their type accepts."""
    rtype = draw(st.sampled_from(TYPES))
    defs = searchparams.registry()[rtype]
    out = []
    for code in draw(st.lists(st.sampled_from(_codes(rtype)), min_size=1, max_size=4)):
        kind = defs[code].type
        if kind == "token":
            value = draw(st.one_of(_SIMPLE, st.tuples(_SIMPLE, _SIMPLE).map(lambda p: f"urn:{p[0]}|{p[1]}")))
        elif kind == "date":
            value = draw(st.sampled_from(_CLOCK_FREE_PREFIXES)) + draw(_DATE)
        elif kind == "reference":
            value = draw(_SIMPLE)
        else:
            value = draw(_SIMPLE)
        out.append((code, value))
    out.append(("_sort", draw(st.sampled_from(["_id", "-_lastUpdated", "_lastUpdated,_id"]))))
    out.append(("_count", str(draw(st.integers(min_value=0, max_value=1000)))))
    return rtype, out


@SETTINGS
@given(search=well_formed_params())
def test_search_round_trips_through_its_paging_link(search):
    rtype, params = search
    first = parse_search(rtype, params, strict=True, default_count=50, max_count=1000)
    link = urlencode([*first.link_params, ("_count", str(first.spec.count))])
    again = parse_search(rtype, parse_qsl(link, keep_blank_values=True), strict=True, default_count=50, max_count=1000)
    assert again.spec.clauses == first.spec.clauses
    assert (again.spec.count, again.spec.sort) == (first.spec.count, first.spec.sort)
    assert again.link_params == first.link_params


_CONTEXT = st.sampled_from(["patient", "user", "system"])
_RTYPE = st.sampled_from(["*", "Patient", "Condition", "Observation", "Coverage"])
_PERMS = st.sets(st.sampled_from("cruds"), min_size=1).map(lambda s: "".join(c for c in "cruds" if c in s))
_PARAM = st.tuples(st.from_regex(r"[a-z_][a-z0-9_-]{0,10}(:[a-z]{1,6})?", fullmatch=True),
                   st.from_regex(r"[A-Za-z0-9.:/|_-]{1,20}", fullmatch=True))


@SETTINGS
@given(context=_CONTEXT, rtype=_RTYPE, perms=_PERMS, params=st.lists(_PARAM, max_size=3))
def test_well_formed_scope_keeps_every_part(context, rtype, perms, params):
    text = f"{context}/{rtype}.{perms}" + ("?" + "&".join(f"{k}={v}" for k, v in params) if params else "")
    scope = parse_scope(text)
    assert isinstance(scope, Scope), text
    assert (scope.context, scope.resource_type, scope.permissions) == (context, rtype, perms)
    assert scope.params == tuple(sorted(set(params)))
    assert parse_scope(scope.to_string()) == scope


@SETTINGS
@given(text=st.text(alphabet="patienusrym/*.cruds?=&|CondPa_ \x00\n", max_size=50), letter=st.sampled_from("cruds"))
def test_scope_grants_no_letter_it_does_not_spell(text, letter):
    scope = parse_scope(text)
    if isinstance(scope, Scope) and scope.permits(letter):
        suffix = text.split(".", 1)[1].split("?", 1)[0]
        assert letter in suffix or suffix in ("read", "write", "*")
