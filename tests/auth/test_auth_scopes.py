"""SMART scope parsing, mediation (granted_subset) and enforcement helpers — no DB, no server."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.auth.scopes import (
    IdentityScope,
    LaunchScope,
    Scope,
    ScopeSet,
    parse_scope,
)

LAB = "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"
PROBLEM = "http://terminology.hl7.org/CodeSystem/condition-category|problem-list-item"


# ---------------------------------------------------------------------------------------------
# parsing table

@pytest.mark.parametrize(
    "text, context, rtype, perms, params, v1",
    [
        # v1
        ("patient/Condition.read", "patient", "Condition", "rs", (), "read"),
        ("patient/Condition.write", "patient", "Condition", "cud", (), "write"),
        ("patient/Condition.*", "patient", "Condition", "cruds", (), "*"),
        ("user/*.read", "user", "*", "rs", (), "read"),
        ("system/*.*", "system", "*", "cruds", (), "*"),
        # v2
        ("patient/Condition.rs", "patient", "Condition", "rs", (), None),
        ("system/*.cruds", "system", "*", "cruds", (), None),
        ("user/Observation.c", "user", "Observation", "c", (), None),
        ("user/Observation.s", "user", "Observation", "s", (), None),
        ("patient/Patient.r", "patient", "Patient", "r", (), None),
        ("system/Group.cud", "system", "Group", "cud", (), None),
        ("patient/Encounter.cd", "patient", "Encounter", "cd", (), None),
        ("patient/Observation.rs?category=" + LAB, "patient", "Observation", "rs", (("category", LAB),), None),
        (
            "patient/Condition.rs?code=http://snomed.info/sct|44054006&category=" + PROBLEM,
            "patient",
            "Condition",
            "rs",
            (("category", PROBLEM), ("code", "http://snomed.info/sct|44054006")),
            None,
        ),
        ("user/Observation.rs?_tag=abc", "user", "Observation", "rs", (("_tag", "abc"),), None),
        ("user/Observation.rs?code:below=http://loinc.org|LP1", "user", "Observation", "rs",
         (("code:below", "http://loinc.org|LP1"),), None),
    ],
)
def test_parse_resource_scopes(text, context, rtype, perms, params, v1):
    scope = parse_scope(text)
    assert isinstance(scope, Scope)
    assert (scope.context, scope.resource_type, scope.permissions, scope.params, scope.v1) == (
        context, rtype, perms, params, v1,
    )


@pytest.mark.parametrize("text", ["launch", "launch/patient", "launch/encounter"])
def test_parse_launch_scopes(text):
    assert parse_scope(text) == LaunchScope(text)


@pytest.mark.parametrize("text", ["openid", "fhirUser", "profile", "offline_access", "online_access"])
def test_parse_identity_scopes(text):
    assert parse_scope(text) == IdentityScope(text)


def test_refresh_flags():
    assert IdentityScope("offline_access").is_refresh and IdentityScope("online_access").is_refresh
    assert not IdentityScope("openid").is_refresh


def test_v1_and_v2_are_equal_scopes():
    assert parse_scope("patient/Condition.read") == parse_scope("patient/Condition.rs")
    assert parse_scope("patient/Condition.write") == parse_scope("patient/Condition.cud")
    assert parse_scope("patient/Condition.*") == parse_scope("patient/Condition.cruds")


@pytest.mark.parametrize(
    "text",
    [
        "", " ", "patient/Condition.dus", "patient/Condition.sr", "patient/Condition.rr",
        "patient/Condition.rsc", "patient/Condition.x", "patient/Condition.", "patient/Condition",
        "patient/.rs", "patient/*", "Patient/Condition.rs", "patients/Condition.rs", "group/*.rs",
        "patient/condition.rs", "patient/Condition.RS", "patient/Condition.Read", "patient/Condition.READ",
        "patient/Condition.rs?", "patient/Condition.rs?category", "patient/Condition.rs?category=",
        "patient/Condition.rs?=x", "patient/Condition.rs?a=b&", "patient/Condition.rs?a=b&&c=d",
        "patient/Condition.rs?a=b?c=d", "patient/Condition.rs?a=b=c", "patient/Condition.rs?a=%20",
        "patient/Condition.rs?subject.name=x", "patient/Condition.read?category=x",
        "patient/Condition.rs ", " patient/Condition.rs", "patient/Condition.rs\n",
        "patient/Condition.r s", "patient/Con-dition.rs", "patient/Condition.r.s",
        "launch/other", "launch/Patient", "Launch", "openID", "fhiruser", "offline-access",
        "http://smarthealthit.org/fhir/scopes/patient/Condition.read", "patient/*.rs" + "x" * 3000,
        "patient/Ｃondition.rs", "patient/Condition.ｒs", "system/*.cruds\x00",
    ],
)
def test_invalid_forms_parse_to_none(text):
    assert parse_scope(text) is None


def test_parse_rejects_non_strings():
    assert parse_scope(None) is None  # type: ignore[arg-type]
    assert parse_scope(b"patient/Condition.rs") is None  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# ScopeSet basics

def test_from_string_keeps_unrecognized_apart_and_to_string_is_canonical():
    s = ScopeSet.from_string(
        "  user/Observation.rs?code=b&category=a  openid patient/Condition.dus launch  "
        "patient/Condition.read fhirUser patient/Condition.read  launch/patient"
    )
    assert s.unrecognized == ("patient/Condition.dus",)
    assert s.to_string() == (
        "launch launch/patient fhirUser openid patient/Condition.read user/Observation.rs?category=a&code=b"
    )
    # canonical: independent of order and duplicates, stable under re-parsing
    again = ScopeSet.from_string(s.to_string())
    assert again.to_string() == s.to_string()
    assert again.scopes == s.scopes


def test_views_and_membership():
    s = ScopeSet.from_string("launch/patient openid offline_access patient/*.rs system/Group.r")
    assert s.launch_scopes == {"launch/patient"}
    assert s.identity_scopes == {"openid", "offline_access"}
    assert s.contexts == {"patient", "system"}
    assert s.has("offline_access") and not s.has("fhirUser")
    assert "patient/*.read" in s  # v1 spelling of the same scope
    assert "patient/*.r" not in s
    assert len(s) == 5


def test_from_string_of_none_or_empty():
    assert ScopeSet.from_string(None).to_string() == ""  # type: ignore[arg-type]
    assert ScopeSet.from_string("").to_string() == ""


# ---------------------------------------------------------------------------------------------
# allows

@pytest.mark.parametrize(
    "scopes, contexts, rtype, interaction, expected",
    [
        ("patient/Condition.read", ["patient"], "Condition", "r", True),
        ("patient/Condition.read", ["patient"], "Condition", "s", True),
        ("patient/Condition.read", ["patient"], "Condition", "c", False),
        ("patient/Condition.read", ["patient"], "Condition", "u", False),
        ("patient/Condition.read", ["patient"], "Observation", "r", False),
        ("patient/Condition.read", ["user", "system"], "Condition", "r", False),
        ("patient/Condition.read", "patient", "Condition", "r", True),  # bare string context
        ("patient/Condition.write", ["patient"], "Condition", "c", True),
        ("patient/Condition.write", ["patient"], "Condition", "u", True),
        ("patient/Condition.write", ["patient"], "Condition", "d", True),
        ("patient/Condition.write", ["patient"], "Condition", "r", False),
        ("system/*.rs", ["system"], "Coverage", "s", True),
        ("system/*.rs", ["system"], "*", "s", True),
        ("system/Coverage.rs", ["system"], "*", "s", False),  # all-type search needs a * scope
        ("system/*.rs", ["system"], "Coverage", "d", False),
        ("user/Observation.rs?category=" + LAB, ["user"], "Observation", "r", True),
        ("user/Observation.s user/Observation.r", ["user"], "Observation", "s", True),
        ("", ["patient", "user", "system"], "Patient", "r", False),
        ("openid fhirUser launch", ["patient", "user", "system"], "Patient", "r", False),
    ],
)
def test_allows(scopes, contexts, rtype, interaction, expected):
    assert ScopeSet.from_string(scopes).allows(contexts, rtype, interaction) is expected


@pytest.mark.parametrize("bad", ["x", "", "rs", "R", None])
def test_allows_rejects_unknown_interaction(bad):
    with pytest.raises(ValueError):
        ScopeSet.from_string("system/*.cruds").allows(["system"], "Patient", bad)


# ---------------------------------------------------------------------------------------------
# filters_for

def test_filters_for_none_allowed_is_empty_disjunction():
    assert ScopeSet.from_string("patient/Condition.rs").filters_for("Observation", "r") == []
    assert ScopeSet.from_string("patient/Observation.r").filters_for("Observation", "s") == []


def test_filters_for_unrestricted_wins():
    s = ScopeSet.from_string(f"patient/Observation.rs?category={LAB} patient/Observation.rs")
    assert s.filters_for("Observation", "s") == [[]]
    # an unrestricted wildcard also wins
    s = ScopeSet.from_string(f"patient/Observation.rs?category={LAB} patient/*.read")
    assert s.filters_for("Observation", "r") == [[]]


def test_filters_for_or_across_scopes_and_within_scope():
    s = ScopeSet.from_string(
        f"patient/Condition.rs?category={PROBLEM} "
        "patient/Condition.rs?category=enc&code=http://snomed.info/sct|1 "
        "patient/Condition.r?code=only-read"
    )
    assert s.filters_for("Condition", "s") == [
        [("category", "enc"), ("code", "http://snomed.info/sct|1")],
        [("category", PROBLEM)],
    ]
    assert s.filters_for("Condition", "r") == [
        [("category", "enc"), ("code", "http://snomed.info/sct|1")],
        [("category", PROBLEM)],
        [("code", "only-read")],
    ]
    assert s.filters_for("Condition", "c") == []


def test_filters_for_drops_redundant_stricter_alternative():
    s = ScopeSet.from_string("user/Observation.rs?category=a user/Observation.rs?category=a&code=b")
    assert s.filters_for("Observation", "r") == [[("category", "a")]]


def test_filters_for_by_context():
    s = ScopeSet.from_string("patient/Observation.rs?category=a user/Observation.rs")
    assert s.filters_for("Observation", "r") == [[]]
    assert s.filters_for("Observation", "r", context_kinds="patient") == [[("category", "a")]]
    assert s.filters_for("Observation", "r", context_kinds=["user"]) == [[]]
    assert s.filters_for("Observation", "r", context_kinds=["system"]) == []


# ---------------------------------------------------------------------------------------------
# granted_subset

@pytest.mark.parametrize(
    "requested, allowed, granted",
    [
        # covered → unchanged (including its spelling)
        ("patient/Condition.rs", "patient/*.cruds", "patient/Condition.rs"),
        ("patient/Condition.rs", "patient/Condition.read", "patient/Condition.rs"),
        ("patient/Condition.read", "patient/*.rs", "patient/Condition.read"),
        ("system/*.rs", "system/*.*", "system/*.rs"),
        # narrowed, never widened
        ("patient/Condition.cruds", "patient/*.read", "patient/Condition.rs"),
        ("patient/Condition.*", "patient/Condition.rs", "patient/Condition.rs"),
        ("system/*.read", "system/Patient.rs system/Coverage.cruds", "system/Coverage.read system/Patient.read"),
        ("patient/*.rs", "patient/Observation.rs?category=" + LAB, "patient/Observation.rs?category=" + LAB),
        ("patient/Observation.rs?code=x", "patient/Observation.r?category=y",
         "patient/Observation.r?category=y&code=x"),
        # nothing in common
        ("patient/Condition.c", "patient/Condition.rs", ""),
        ("user/Condition.rs", "patient/Condition.rs", ""),
        ("system/*.rs", "patient/*.cruds user/*.cruds", ""),
        ("patient/Observation.rs", "patient/Condition.cruds", ""),
        # launch / identity only verbatim
        ("launch/patient openid fhirUser offline_access", "launch/patient openid", "launch/patient openid"),
        ("launch", "launch/patient", ""),
        # junk dropped, duplicates merged
        ("patient/Condition.dus nonsense patient/Condition.rs patient/Condition.rs", "patient/*.cruds",
         "patient/Condition.rs"),
        ("", "patient/*.cruds", ""),
        ("patient/*.rs", "", ""),
        # a covered piece absorbs narrower pieces of the same request
        ("system/Patient.rs system/Patient.r", "system/*.rs", "system/Patient.rs"),
    ],
)
def test_granted_subset(requested, allowed, granted):
    assert ScopeSet.granted_subset(requested, allowed) == granted


def test_granted_subset_keeps_v1_only_when_meaning_is_intact():
    # a restriction added by the allowed scope forces v2 syntax (v1 has no granular form)
    assert ScopeSet.granted_subset("patient/*.read", "patient/*.cruds?category=a") == "patient/*.rs?category=a"
    # .write asked, only create allowed → c (not "write")
    assert ScopeSet.granted_subset("patient/Condition.write", "patient/Condition.c") == "patient/Condition.c"
    assert ScopeSet.granted_subset("patient/Condition.write", "patient/*.cud") == "patient/Condition.write"


# ---------------------------------------------------------------------------------------------
# property tests

CONTEXT_S = st.sampled_from(["patient", "user", "system"])
TYPE_S = st.sampled_from(["*", "Condition", "Observation", "Patient"])
PARAM_S = st.sampled_from([("category", "a"), ("category", "b"), ("code", "x|1")])


@st.composite
def resource_scope_text(draw):
    ctx, rtype = draw(CONTEXT_S), draw(TYPE_S)
    if draw(st.booleans()):
        return f"{ctx}/{rtype}.{draw(st.sampled_from(['read', 'write', '*']))}"
    letters = draw(st.lists(st.sampled_from("cruds"), min_size=1, max_size=5, unique=True))
    perms = "".join(ch for ch in "cruds" if ch in letters)
    params = draw(st.lists(PARAM_S, max_size=2, unique=True))
    query = ("?" + "&".join(f"{k}={v}" for k, v in params)) if params else ""
    return f"{ctx}/{rtype}.{perms}{query}"


SCOPE_TEXT = st.one_of(
    resource_scope_text(),
    st.sampled_from(["launch", "launch/patient", "openid", "fhirUser", "offline_access", "bogus", "patient/X.dus"]),
)
SCOPE_STRING = st.lists(SCOPE_TEXT, max_size=6).map(" ".join)


def _oracle_permits(scopes: str, ctx: str, rtype: str, letter: str, attrs: frozenset) -> bool:
    """Independent model of SMART semantics: some scope of this context/type has the letter and
    all its granular params hold on the concrete resource ``attrs``."""
    for token in scopes.split():
        s = parse_scope(token)
        if isinstance(s, Scope) and s.context == ctx and s.resource_type in ("*", rtype) \
                and letter in s.permissions and set(s.params) <= attrs:
            return True
    return False


@settings(max_examples=400, deadline=None, database=None)
@given(st.text(max_size=200))
def test_parse_never_raises(text):
    result = parse_scope(text)
    assert result is None or isinstance(result, (Scope, LaunchScope, IdentityScope))
    ScopeSet.from_string(text)  # must not raise either


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet="patienusrym/*.cruds?=&|CondObv_: ", max_size=60))
def test_parse_never_raises_on_near_miss_text(text):
    for token in text.split():
        parse_scope(token)
    ScopeSet.granted_subset(text, text)


@settings(max_examples=500, deadline=None, database=None)
@given(requested=SCOPE_STRING, allowed=SCOPE_STRING)
def test_granted_subset_never_widens(requested, allowed):
    granted = ScopeSet.granted_subset(requested, allowed)
    g = ScopeSet.from_string(granted)
    assert g.unrecognized == ()
    # launch / identity scopes: only ones both asked for and allowed
    asked, permitted = ScopeSet.from_string(requested), ScopeSet.from_string(allowed)
    assert g.launch_scopes <= asked.launch_scopes & permitted.launch_scopes
    assert g.identity_scopes <= asked.identity_scopes & permitted.identity_scopes
    # resource access, extensionally: on every concrete resource, granted ⇒ allowed and requested
    attr_sets = [frozenset(), frozenset({("category", "a")}), frozenset({("category", "b"), ("code", "x|1")}),
                 frozenset({("category", "a"), ("category", "b"), ("code", "x|1")})]
    for ctx in ("patient", "user", "system"):
        for rtype in ("Condition", "Observation", "Patient", "Coverage"):
            for letter in "cruds":
                for attrs in attr_sets:
                    if _oracle_permits(granted, ctx, rtype, letter, attrs):
                        assert _oracle_permits(allowed, ctx, rtype, letter, attrs), (granted, allowed)
                        assert _oracle_permits(requested, ctx, rtype, letter, attrs), (granted, requested)
    # idempotent: mediating the grant again changes nothing
    assert ScopeSet.granted_subset(granted, allowed) == granted


@settings(max_examples=300, deadline=None, database=None)
@given(scopes=SCOPE_STRING)
def test_granted_subset_of_self_loses_nothing(scopes):
    """Asking for exactly what is allowed gives all of it (semantically)."""
    granted = ScopeSet.granted_subset(scopes, scopes)
    for token in scopes.split():
        s = parse_scope(token)
        if s is not None:
            assert ScopeSet.from_string(granted).covers(s), (token, granted)


@settings(max_examples=300, deadline=None, database=None)
@given(scopes=SCOPE_STRING)
def test_to_string_round_trips(scopes):
    s = ScopeSet.from_string(scopes)
    assert ScopeSet.from_string(s.to_string()).scopes == s.scopes
    assert ScopeSet.from_string(s.to_string()).to_string() == s.to_string()


@settings(max_examples=300, deadline=None, database=None)
@given(scopes=SCOPE_STRING, ctx=CONTEXT_S, rtype=st.sampled_from(["Condition", "Observation", "Patient"]),
       letter=st.sampled_from("cruds"))
def test_filters_for_agrees_with_oracle(scopes, ctx, rtype, letter):
    s = ScopeSet.from_string(scopes)
    alternatives = s.filters_for(rtype, letter, context_kinds=[ctx])
    assert (alternatives != []) == s.allows([ctx], rtype, letter)
    for attrs in [frozenset(), frozenset({("category", "a")}), frozenset({("category", "b"), ("code", "x|1")})]:
        via_filters = any(set(alt) <= attrs for alt in alternatives)
        assert via_filters == _oracle_permits(scopes, ctx, rtype, letter, attrs)
