"""The bad-input corpus (tests/badinput/): every case gets a 4xx with an OperationOutcome,
nothing is stored, and the server keeps serving."""

from __future__ import annotations

import pytest

from tests.badinput.cases import all_cases
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)

CASES = all_cases()


def history_total(client) -> int:
    r = client.get("/_history", params={"_count": "0"})
    assert r.status_code == 200
    return r.json()["total"]


def test_corpus_is_large_enough():
    assert len(CASES) >= 200


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_is_refused_and_stores_nothing(client, case):
    before = history_total(client)
    request = client.build_request(case.method, case.path, content=case.body, headers=case.headers, params=list(case.params))
    if "Content-Type" not in case.headers:
        request.headers.pop("Content-Type", None)
    r = client.send(request)
    assert 400 <= r.status_code < 500, (r.status_code, r.text[:500])
    assert r.headers["content-type"].startswith("application/fhir+json")
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"]
    assert history_total(client) == before
    assert client.get("/metadata").status_code == 200
