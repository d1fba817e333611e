"""Value-set codes as search-index hashes, so matching a diagnosis is one equality join.

The token index stores each coding's `h_sys_value = h64(type, parameter, system, code)`. For every
code of every value set (ICD-10-CM codes already expanded from their prefixes by the loader) this
module computes that hash for each spelling the engine accepts: both system URIs (URL and OID), and
for ICD-10-CM the code with and without the dot, upper or lower case. Joining `idx_token` on it finds
exactly the matching codings through the existing `h_sys_value` index, in both directions: from a
member's few codings to the table, or from the table's codes into millions of index rows.

The rows are stored under `codes_key`, a hash of their content: servers sharing a database with
different mapping files each read their own rows, and unchanged mappings are installed only once.
"""

from __future__ import annotations

from sqlalchemy import Connection, exists, select

from server.alignment.derived_cache import cached
from server.alignment.index_keys import CODE_PARAMETERS
from server.alignment.mappings import ICD10CM_SYSTEMS, SNOMED_SYSTEMS, Mappings, normalize_icd
from server.fhir.search import ValueSetLookup
from server.fhir.searchparams import token_hashes
from server.store.alignment_schema import alignment_codes
from server.store.resources import bulk_insert
from server.store.hashing import h64

CodeRow = tuple[int, str]  # (h_code, value set id)
# The value-set id under which the lifelong codes (`mappings/lifelong.json`) are stored: not a category,
# a property of a coding (SPEC §4.3); '~' cannot start a value-set id, so it never clashes with one.
LIFELONG = "~lifelong"


def icd_spellings(dotted: str) -> frozenset[str]:
    """The spellings of one ICD-10-CM code that feeds send: with or without the dot, upper or lower case."""
    plain = normalize_icd(dotted)
    return frozenset({dotted, plain, dotted.lower(), plain.lower()})


def code_rows(mappings: Mappings) -> list[CodeRow]:
    """Every (hash, value set) the engine matches, sorted (so `codes_key` is stable). The hash folds in the
    resource type and parameter, so one table serves Conditions, Claims and ExplanationOfBenefits."""
    codings: set[tuple[str, str, str]] = set()  # (system, code, value set)
    icd = [*mappings.icd_code_rows(), *((LIFELONG, c) for c in sorted(mappings.lifelong.icd_codes))]
    snomed = [*mappings.snomed_rows(), *((LIFELONG, c) for c in sorted(mappings.lifelong.snomed_codes))]
    for valueset, dotted in icd:
        for system in ICD10CM_SYSTEMS:
            codings.update((system, spelling, valueset) for spelling in icd_spellings(dotted))
    for valueset, code in snomed:
        codings.update((system, code, valueset) for system in SNOMED_SYSTEMS)
    inputs = sorted(codings)

    def compute() -> list[CodeRow]:
        return sorted({(token_hashes(rtype, param, system, code)[1], valueset)
                       for rtype, param in CODE_PARAMETERS for system, code, valueset in inputs})

    # The canary hash keys the cache to the hashing code itself, as the inputs key it to the mappings.
    canary = token_hashes("Condition", "code", "urn:planfit:canary", "x")
    return [tuple(row) for row in cached("code-rows", [canary, CODE_PARAMETERS, inputs], compute)]


def codes_key(rows: list[CodeRow]) -> int:
    return h64(*(f"{h}:{valueset}" for h, valueset in rows))


def install_codes(conn: Connection, key: int, rows: list[CodeRow]) -> None:
    """Store the rows under `key` unless a server already did (callers hold the evaluation lock), and
    refresh the table's planner statistics: without them both databases misjudge the join."""
    present = conn.execute(select(exists().where(alignment_codes.c.codes_key == key))).scalar()
    if present:
        return
    bulk_insert(conn, alignment_codes.name, ("codes_key", "h_code", "valueset"), ((key, h, vs) for h, vs in rows))
    conn.exec_driver_sql(f"ANALYZE {alignment_codes.name}")


def search_lookup(mappings: Mappings) -> ValueSetLookup:
    """The value sets for the token `:in` search modifier, by canonical URL: SNOMED CT codes exactly,
    ICD-10-CM codes by prefix (the spellings above), for both system URIs. A prefix scan of the
    `(h_param, code)` index is what a search can use; unlike the engine it also matches strings that
    are not ICD-10-CM codes but start like one."""
    by_url = {vs.url: vs for vs in mappings.value_sets.values()}

    def lookup(url: str) -> tuple[tuple[tuple[str | None, str], ...], tuple[tuple[str | None, str], ...]] | None:
        vs = by_url.get(url)
        if vs is None:
            return None
        exact = tuple((system, code) for system in sorted(SNOMED_SYSTEMS) for code in sorted(vs.snomed_codes))
        prefixes = tuple(
            (system, spelling)
            for system in sorted(ICD10CM_SYSTEMS)
            for prefix in vs.icd_prefixes
            for spelling in sorted(icd_spellings(prefix))
        )
        return exact, prefixes

    return lookup
