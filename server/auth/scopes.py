"""SMART on FHIR scopes (App Launch 2.x, with the v1 syntax still accepted).

Everything here is a pure function of its inputs: no database, no request, no clock. The token
endpoint uses :meth:`ScopeSet.granted_subset` to decide what a client may get, and the REST layer
uses :meth:`ScopeSet.allows` plus :meth:`ScopeSet.filters_for` to enforce a token's scopes *in the
SQL query* (never by filtering results afterwards).

Grammar (SMART App Launch 2.2, scopes-and-launch-context)::

    resource scope := ("patient" | "user" | "system") "/" (ResourceType | "*") "." perms ["?" params]
    perms (v2)     := a non-empty, in-order subset of "cruds"      e.g. rs, cud, cruds, s
    perms (v1)     := "read" | "write" | "*"                        (mapped to rs, cud, cruds)
    params         := name "=" value ("&" name "=" value)*          (v2 only; AND of search params)

plus the launch-context scopes ``launch``, ``launch/patient``, ``launch/encounter`` and the
identity / refresh scopes ``openid``, ``fhirUser``, ``profile``, ``offline_access``,
``online_access``.

Anything else parses to ``None``. The spec lets a server ignore, replace or reject undefined
suffixes such as ``.dus``; we *ignore* them (drop them), which can never grant more than asked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

__all__ = [
    "CONTEXTS",
    "PERMISSION_ORDER",
    "Context",
    "Interaction",
    "Scope",
    "LaunchScope",
    "IdentityScope",
    "AnyScope",
    "Filter",
    "parse_scope",
    "ScopeSet",
]

Context: TypeAlias = Literal["patient", "user", "system"]
Interaction: TypeAlias = Literal["c", "r", "u", "d", "s"]
#: One granular restriction set: search params that must ALL hold (AND).
Filter: TypeAlias = list[tuple[str, str]]

CONTEXTS: tuple[Context, ...] = ("patient", "user", "system")
#: v2 permissions are letters of this string, in this order, each at most once.
PERMISSION_ORDER = "cruds"

#: v1 suffix -> v2 permissions (SMART 2.x "Scope Equivalence" table).
_V1_TO_V2: dict[str, str] = {"read": "rs", "write": "cud", "*": "cruds"}
_V2_TO_V1: dict[str, str] = {v: k for k, v in _V1_TO_V2.items()}

_LAUNCH_NAMES = frozenset({"launch", "launch/patient", "launch/encounter"})
_IDENTITY_NAMES = frozenset({"openid", "fhirUser", "profile", "offline_access", "online_access"})

# Hard upper bound on one scope token: a scope is a short identifier, and refusing absurd input
# early keeps the parser linear and log lines bounded.
_MAX_SCOPE_LEN = 2048

_RESOURCE_RE = re.compile(
    r"(?P<ctx>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]{0,63})\.(?P<perm>[^?]+)(?:\?(?P<query>.*))?",
    re.DOTALL,
)
_V2_PERM_RE = re.compile(r"c?r?u?d?s?")
# Search parameter name with an optional modifier (``code``, ``_tag``, ``code:below``). Chaining
# ('.') and ``_filter`` expressions are experimental in SMART and deliberately not accepted: a
# REST layer could not turn them into a safe WHERE clause.
_PARAM_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,63}(?::[A-Za-z][A-Za-z0-9_-]{0,31})?")
# Values are taken literally (no percent-decoding) so the scope text the client sees is exactly the
# restriction enforced. ``system|code`` tokens and canonical URLs fit in this set.
_PARAM_VALUE_RE = re.compile(r"[^\s&=?#%]{1,1024}")


@dataclass(frozen=True, order=True)
class Scope:
    """A resource scope such as ``patient/Condition.rs?category=...``.

    ``permissions`` is always the v2 letter string in canonical ``cruds`` order. ``params`` is
    sorted and de-duplicated because granular parameters are ANDed: their order carries no meaning,
    and a canonical order makes equal restrictions compare equal.

    ``v1`` remembers the v1 suffix the scope was written with (``read``/``write``/``*``) so that a
    v1 request can be answered in v1 syntax (SMART: servers SHOULD return v1 scopes when v1 scopes
    were requested). It does not take part in equality: ``.read`` and ``.rs`` mean the same thing.
    """

    context: Context
    resource_type: str
    permissions: str
    params: tuple[tuple[str, str], ...] = ()
    v1: str | None = field(default=None, compare=False)

    def permits(self, interaction: str) -> bool:
        """True if this scope's permission letters include ``interaction``."""
        return len(interaction) == 1 and interaction in self.permissions

    def matches_type(self, resource_type: str) -> bool:
        """True if the scope applies to ``resource_type`` (``*`` in the scope covers every type;
        a ``*`` *query* is only covered by a ``*`` scope)."""
        return self.resource_type == "*" or self.resource_type == resource_type

    def covers(self, other: Scope) -> bool:
        """True if every access ``other`` grants is also granted by ``self``.

        Same context; our type is ``*`` or equal; their letters ⊆ ours; and each of our granular
        restrictions also restricts them (their params ⊇ ours) — a restriction can only narrow.
        """
        return (
            self.context == other.context
            and self.matches_type(other.resource_type)
            and set(other.permissions) <= set(self.permissions)
            and set(self.params) <= set(other.params)
        )

    def intersect(self, other: Scope) -> Scope | None:
        """The largest scope covered by both ``self`` and ``other`` (None if they share nothing).

        Used to mediate a request down to what a client is registered for: asking for
        ``system/*.read`` while registered for ``system/Patient.rs`` yields ``system/Patient.rs``.
        """
        if self.context != other.context:
            return None
        if self.resource_type == "*":
            rtype = other.resource_type
        elif other.resource_type in ("*", self.resource_type):
            rtype = self.resource_type
        else:
            return None
        perms = "".join(ch for ch in PERMISSION_ORDER if ch in self.permissions and ch in other.permissions)
        if not perms:
            return None
        params = tuple(sorted(set(self.params) | set(other.params)))
        # Keep the v1 spelling only if the result still means exactly the v1 suffix asked for and
        # gained no granular restriction (v1 syntax has none).
        v1 = self.v1 if self.v1 is not None and _V1_TO_V2[self.v1] == perms and not params else None
        return Scope(self.context, rtype, perms, params, v1)

    def to_string(self) -> str:
        """Canonical text: v1 spelling if the scope was written in v1 (and is unrestricted), else
        v2 letters; params sorted and joined with ``&``."""
        suffix = self.v1 if self.v1 is not None and not self.params else self.permissions
        text = f"{self.context}/{self.resource_type}.{suffix}"
        if self.params:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.params)
        return text

    def __str__(self) -> str:
        return self.to_string()


@dataclass(frozen=True, order=True)
class LaunchScope:
    """``launch`` (EHR launch) or ``launch/patient`` / ``launch/encounter`` (standalone context)."""

    name: str

    def to_string(self) -> str:
        return self.name

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, order=True)
class IdentityScope:
    """A non-resource, non-launch scope: identity (``openid``, ``fhirUser``, ``profile``) or
    refresh-token permission (``offline_access``, ``online_access``). None of them grants access
    to FHIR data by itself."""

    name: str

    @property
    def is_refresh(self) -> bool:
        """True for the scopes that ask for a refresh token."""
        return self.name in ("offline_access", "online_access")

    def to_string(self) -> str:
        return self.name

    def __str__(self) -> str:
        return self.name


AnyScope: TypeAlias = Scope | LaunchScope | IdentityScope


def _parse_params(query: str) -> tuple[tuple[str, str], ...] | None:
    """Parse ``a=b&c=d`` strictly; any malformed part invalidates the whole scope (fail closed:
    a half-understood restriction must not turn into *no* restriction)."""
    if not query:
        return None
    pairs: set[tuple[str, str]] = set()
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        if not sep or not _PARAM_NAME_RE.fullmatch(name) or not _PARAM_VALUE_RE.fullmatch(value):
            return None
        pairs.add((name, value))
    return tuple(sorted(pairs))


def parse_scope(s: str) -> Scope | LaunchScope | IdentityScope | None:
    """Parse one scope token; ``None`` for anything not understood.

    Never raises on any ``str`` input: scope strings come straight from untrusted clients, and an
    unknown scope must simply grant nothing. Parsing is case-sensitive (``Patient/…``,
    ``patient/condition.read`` and ``.RS`` are all invalid) as in the SMART grammar.
    """
    if not isinstance(s, str) or not s or len(s) > _MAX_SCOPE_LEN:
        return None
    if s in _LAUNCH_NAMES:
        return LaunchScope(s)
    if s in _IDENTITY_NAMES:
        return IdentityScope(s)
    m = _RESOURCE_RE.fullmatch(s)
    if m is None:
        return None
    perm, query = m.group("perm"), m.group("query")
    if perm in _V1_TO_V2:
        if query is not None:  # granular restrictions exist only in the v2 syntax
            return None
        return Scope(m.group("ctx"), m.group("type"), _V1_TO_V2[perm], (), perm)  # type: ignore[arg-type]
    if not perm or not _V2_PERM_RE.fullmatch(perm):  # e.g. ".dus", ".sr", ".rr", ".x"
        return None
    params: tuple[tuple[str, str], ...] = ()
    if query is not None:
        parsed = _parse_params(query)
        if parsed is None:
            return None
        params = parsed
    return Scope(m.group("ctx"), m.group("type"), perm, params)  # type: ignore[arg-type]


def _sort_key(scope: AnyScope) -> tuple[int, str]:
    rank = 0 if isinstance(scope, LaunchScope) else 1 if isinstance(scope, IdentityScope) else 2
    return (rank, scope.to_string())


def _contexts(context_kinds: str | Iterable[str] | None) -> frozenset[str]:
    """Accept ``"patient"`` as well as ``["patient", "user"]`` (a bare string must not be iterated
    letter by letter); ``None`` means every context."""
    if context_kinds is None:
        return frozenset(CONTEXTS)
    if isinstance(context_kinds, str):
        return frozenset({context_kinds})
    return frozenset(context_kinds)


def _check_interaction(interaction: str) -> None:
    if not isinstance(interaction, str) or len(interaction) != 1 or interaction not in PERMISSION_ORDER:
        raise ValueError(f"interaction must be one of c, r, u, d, s; got {interaction!r}")


@dataclass(frozen=True)
class ScopeSet:
    """An immutable set of parsed scopes, e.g. the scopes of one access token.

    ``unrecognized`` keeps the tokens that did not parse, so the token endpoint can choose to
    answer ``invalid_scope`` instead of silently dropping them; they never grant anything.
    """

    scopes: frozenset[AnyScope] = frozenset()
    unrecognized: tuple[str, ...] = ()

    # ---- construction / rendering -----------------------------------------------------------

    @classmethod
    def from_string(cls, s: str | None) -> ScopeSet:
        """Parse a space-delimited scope string (OAuth ``scope`` syntax). Never raises."""
        if not isinstance(s, str):
            return cls()
        parsed: set[AnyScope] = set()
        bad: list[str] = []
        for token in s.split():
            scope = parse_scope(token)
            if scope is None:
                bad.append(token)
            else:
                parsed.add(scope)
        return cls(frozenset(parsed), tuple(bad))

    def to_string(self) -> str:
        """Canonical form: duplicates removed; launch scopes, then identity scopes, then resource
        scopes, each group sorted by text. Deterministic, so equal sets print equal strings."""
        return " ".join(scope.to_string() for scope in sorted(self.scopes, key=_sort_key))

    def __str__(self) -> str:
        return self.to_string()

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self.scopes, key=_sort_key))

    def __len__(self) -> int:
        return len(self.scopes)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            item = parse_scope(item)
        return item in self.scopes

    # ---- views ------------------------------------------------------------------------------

    @property
    def resource_scopes(self) -> tuple[Scope, ...]:
        return tuple(sorted(s for s in self.scopes if isinstance(s, Scope)))

    @property
    def launch_scopes(self) -> frozenset[str]:
        return frozenset(s.name for s in self.scopes if isinstance(s, LaunchScope))

    @property
    def identity_scopes(self) -> frozenset[str]:
        return frozenset(s.name for s in self.scopes if isinstance(s, IdentityScope))

    @property
    def contexts(self) -> frozenset[str]:
        """The contexts (patient/user/system) that appear in resource scopes."""
        return frozenset(s.context for s in self.scopes if isinstance(s, Scope))

    def has(self, name: str) -> bool:
        """True for a launch or identity scope by name, e.g. ``has("offline_access")``."""
        return name in self.launch_scopes or name in self.identity_scopes

    # ---- enforcement ------------------------------------------------------------------------

    def _matching(self, contexts: frozenset[str], resource_type: str, interaction: str) -> list[Scope]:
        return [
            s
            for s in self.scopes
            if isinstance(s, Scope)
            and s.context in contexts
            and s.matches_type(resource_type)
            and s.permits(interaction)
        ]

    def allows(
        self,
        context_kinds: str | Iterable[str],
        resource_type: str,
        interaction: Interaction,
    ) -> bool:
        """Could *some* scope in one of ``context_kinds`` permit ``interaction`` on
        ``resource_type``?

        This is the coarse gate (403 when False). When it is True the caller must still apply
        :meth:`filters_for`, because the permitting scope may be granular; and a ``patient/``
        scope still confines access to the patient's compartment — that is the REST layer's job.
        ``resource_type="*"`` (a search across all types) is only allowed by a ``*`` scope.
        """
        _check_interaction(interaction)
        return bool(self._matching(_contexts(context_kinds), resource_type, interaction))

    def filters_for(
        self,
        resource_type: str,
        interaction: Interaction,
        *,
        context_kinds: str | Iterable[str] | None = None,
    ) -> list[list[tuple[str, str]]]:
        """Granular restrictions as a disjunction of conjunctions: ``[[(p, v), ...], ...]``.

        * ``[]``  — no scope permits this: the WHERE clause is ``FALSE``.
        * ``[[]]`` — at least one permitting scope is unrestricted: no filter at all (``TRUE``).
        * otherwise — ``OR`` over the inner lists, each an ``AND`` of ``param = value`` search
          conditions (e.g. ``category = system|code``), which the REST layer must translate into
          SQL with the normal search-parameter machinery. A parameter it cannot translate must be
          treated as ``FALSE`` (fail closed), never skipped.

        Redundant alternatives are dropped: if one alternative's conditions are a subset of
        another's, the stricter one adds nothing to the OR. ``context_kinds`` (default: all)
        lets the caller compute filters per context, e.g. patient scopes separately because they
        also get the compartment restriction.
        """
        _check_interaction(interaction)
        matching = self._matching(_contexts(context_kinds), resource_type, interaction)
        alternatives = {frozenset(s.params) for s in matching}
        if not alternatives:
            return []
        if frozenset() in alternatives:
            return [[]]
        minimal = [a for a in alternatives if not any(b < a for b in alternatives)]
        return sorted(sorted(a) for a in minimal)

    def covers(self, scope: AnyScope) -> bool:
        """True if this set already grants everything ``scope`` grants."""
        if isinstance(scope, Scope):
            return any(isinstance(a, Scope) and a.covers(scope) for a in self.scopes)
        return scope in self.scopes

    @staticmethod
    def granted_subset(requested: str, allowed: str) -> str:
        """What a client asking for ``requested`` may get, given its registered ``allowed`` scopes.

        Never widens: every scope returned is covered by ``allowed`` *and* by ``requested``.

        * A requested resource scope that an allowed scope covers comes back unchanged
          (``patient/Condition.rs`` under ``patient/*.cruds``; a v1 ``.read`` stays ``.read``).
        * Otherwise it is narrowed to its intersections with the allowed scopes (``system/*.read``
          under ``system/Patient.rs system/Coverage.cruds`` gives ``system/Coverage.read
          system/Patient.read``), because SMART lets the server grant less than asked and a
          narrower grant is more useful to a backend client than a refusal.
        * Launch and identity scopes are granted only if listed verbatim in ``allowed``.
        * Unknown scopes are dropped.

        Returns the canonical string (see :meth:`to_string`); an empty string means nothing was
        granted (the token endpoint should then answer ``invalid_scope``).
        """
        req = ScopeSet.from_string(requested)
        allow = ScopeSet.from_string(allowed)
        allowed_resource = allow.resource_scopes
        granted: set[AnyScope] = set()
        for scope in req.scopes:
            if not isinstance(scope, Scope):
                if scope in allow.scopes:
                    granted.add(scope)
                continue
            if any(a.covers(scope) for a in allowed_resource):
                granted.add(scope)
                continue
            for a in allowed_resource:
                piece = scope.intersect(a)
                if piece is not None:
                    granted.add(piece)
        # Drop pieces subsumed by another granted scope so the answer stays short.
        resource = [g for g in granted if isinstance(g, Scope)]
        for g in resource:
            if any(o is not g and o != g and o.covers(g) for o in resource):
                granted.discard(g)
        return ScopeSet(frozenset(granted)).to_string()
