"""Fuzzing the served OpenAPI schema with schemathesis (SPEC §9), against the session's real servers (SQLite
and PostgreSQL) with the full-access test client's token: no request may get a 5xx, every response must
conform to what the schema documents, and every error under /fhir must be a FHIR OperationOutcome.

The budget is bounded (`MAX_EXAMPLES` per operation). The schema documents no FHIR bodies, so generated
bodies are arbitrary JSON and path segments arbitrary text: this probes the parsing and routing around
the validator, which the bad-input corpus (tests/badinput/) covers case by case.
"""

from __future__ import annotations

import orjson
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import response_headers_conformance, response_schema_conformance

from server.config import Settings
from tests.support.servers import RunningServer

MAX_EXAMPLES = 8
REQUEST_LIMIT_S = Settings.model_fields["request_timeout_seconds"].default  # the server's own limit
FHIR_JSON = "application/fhir+json"
# Path segments of these types get past routing into the interactions themselves.
TYPES = ("Patient", "Condition", "Coverage", "Claim", "ExplanationOfBenefit", "Group", "Basic", "Observation")


@pytest.fixture(scope="session")
def served_schema(server: RunningServer):
    return schemathesis.openapi.from_url(server.url + "/openapi.json")


schema = schemathesis.pytest.from_fixture("served_schema")


@schemathesis.hook
def flatmap_path_parameters(_ctx, path_parameters):
    """Mostly a real resource type for `{rtype}`, sometimes the generated text."""
    if not path_parameters or "rtype" not in path_parameters:
        return st.just(path_parameters)
    return st.sampled_from((path_parameters["rtype"], *TYPES)).map(lambda rtype: {**path_parameters, "rtype": rtype})


@schemathesis.check
def fhir_errors_are_operation_outcomes(ctx, response, case) -> None:
    """A 4xx under /fhir is an OperationOutcome with at least one issue (the SMART endpoints under
    /auth answer OAuth errors instead)."""
    if not (400 <= response.status_code < 500 and case.path.startswith("/fhir")):
        return None
    content_type = response.headers.get("content-type", [""])[0]
    assert content_type.startswith(FHIR_JSON), f"{response.status_code} with content type {content_type!r}"
    if case.method.upper() == "HEAD":
        return None
    body = orjson.loads(response.content)
    assert body.get("resourceType") == "OperationOutcome" and body.get("issue"), body
    return None


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_server_errors_and_conforming_responses(case, server: RunningServer):
    # Population-wide operations ($denial-root-cause, $risk-evaluate) cover every population the session's
    # server holds by then: wait as long as the server's own request limit, not the client's 10 s default.
    case.call_and_validate(
        base_url=server.url, timeout=REQUEST_LIMIT_S,
        headers={"Authorization": f"Bearer {server.auth.token()}"},
        checks=[schemathesis.checks.not_a_server_error, response_schema_conformance,
                response_headers_conformance, fhir_errors_are_operation_outcomes],
    )


# What fuzzing found (500s before the fix), pinned: NUL in text PostgreSQL cannot hold, digits that
# str.isdigit() accepts and int() refuses, integers beyond SQLite's 64 bits.
FOUND = [
    ("GET", "/Patient", {"name": "a\x00b"}, {}),
    ("GET", "/Patient", {"general-practitioner": "Practitioner/\x00"}, {}),
    ("GET", "/Patient/a%00b", {}, {}),
    ("GET", "/Patient/x/_history/\u00b2", {}, {}),
    ("GET", "/Group/nonclaims-smi/_history/\u00b2", {}, {}),
    ("GET", "/Patient/_history", {"_count": "\u00b9"}, {}),
    ("PUT", "/Basic/fuzz", {}, {"If-Match": 'W/"\u00b2"'.encode()}),
    ("GET", "/Patient/x/_history/" + "9" * 30, {}, {}),
    ("GET", "/_history", {"_page": "9" * 30}, {}),
    # history cursors: [2**63, ["Patient", "x"]] (beyond 64 bits), [1, ["Patient", "a\u0000b"]] (NUL in an id)
    ("GET", "/_history", {"_page": "WzkyMjMzNzIwMzY4NTQ3NzU4MDgsWyJQYXRpZW50IiwieCJdXQ"}, {}),
    ("GET", "/_history", {"_page": "WzEsWyJQYXRpZW50IiwiYVx1MDAwMGIiXV0"}, {}),
]


@pytest.mark.parametrize("method,path,params,headers", FOUND, ids=[f"{m} {p} {q}" for m, p, q, _ in FOUND])
def test_what_fuzzing_found_is_a_4xx(client, method, path, params, headers):
    body = {"resourceType": "Basic", "id": "fuzz", "code": {"text": "fuzz"}} if method == "PUT" else None
    r = client.request(method, path, params=params, headers=headers, json=body)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.json()["resourceType"] == "OperationOutcome"
    assert client.get("/metadata").status_code == 200
