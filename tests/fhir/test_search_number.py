"""Number search parameters (FHIR R4 search.html, "number"; issue 19 item 5: `_sort` on every number
parameter): RiskAssessment `probability` with each prefix against the range the value's significant figures
imply, several values, `_sort` through fhirpy across pages, a granular scope that filters on a number, and
the CapabilityStatement listing the parameter as a number, and `planfit reindex` building the rows of
resources stored before them."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from urllib.parse import parse_qs, urlparse

import pytest
import sqlalchemy as sa
from fhirpy import SyncFHIRClient

from server.fhir.search import decode_cursor, encode_cursor
from server.store.db import make_engine
from tests.support.auth import backend_token, bearer, create, ids, register_backend
from tests.support.inprocess import server  # noqa: F401 (the in-process tier)
from tests.support.servers import ROOT, RunningServer, unique

TAG_SYSTEM = "urn:test:number-search"
# Each RiskAssessment's predicted probabilities, by name; `multi` has two, `none` none.
PROBABILITIES = {"a": [0.05], "b": [0.5], "c": [0.55], "d": [0.449], "e": [1], "multi": [0.2, 0.9], "none": []}


@dataclass
class Assessments:
    tag: str
    ids: dict[str, str]  # name → id

    def named(self, *names: str) -> set[str]:
        return {f"RiskAssessment/{self.ids[n]}" for n in names}


@pytest.fixture(scope="module")
def assessments(server: RunningServer) -> Assessments:
    tag = unique("num")
    made = {}
    with server.http(server.auth) as client:
        patient = create(client, {"resourceType": "Patient", "name": [{"family": f"Risk-{tag}"}]})
        for name, probabilities in PROBABILITIES.items():
            body = {"resourceType": "RiskAssessment", "status": "final",
                    "identifier": [{"system": TAG_SYSTEM, "value": tag}],
                    "subject": {"reference": f"Patient/{patient}"}}
            if probabilities:
                body["prediction"] = [{"probabilityDecimal": p} for p in probabilities]
            made[name] = create(client, body)
    return Assessments(tag, made)


def _found(server: RunningServer, assessments: Assessments, probability: str) -> set[str]:
    with server.http(server.auth) as client:
        r = client.get("/RiskAssessment", params={"identifier": f"{TAG_SYSTEM}|{assessments.tag}",
                                                  "probability": probability})
    assert r.status_code == 200, r.text
    return ids(r.json())


@pytest.mark.parametrize(("probability", "names"), [
    ("0.5", ("b",)),  # [0.45, 0.55): 0.449 below, 0.55 at the open end
    ("eq0.5", ("b",)),
    ("0.50", ("b",)),  # [0.495, 0.505)
    ("1", ("b", "c", "e", "multi")),  # [0.5, 1.5): one significant figure
    ("ne0.5", ("a", "c", "d", "e", "multi")),
    ("gt0.5", ("c", "e", "multi")),  # exactly 0.5 is not greater
    ("ge0.5", ("b", "c", "e", "multi")),
    ("lt0.5", ("a", "d", "multi")),
    ("le0.5", ("a", "b", "d", "multi")),
    ("sa0.5", ("c", "e", "multi")),  # from the range's end, 0.55
    ("eb0.5", ("a", "d", "multi")),  # below the range's start, 0.45
    ("ap0.5", ("b", "c")),  # [0.45, 0.55], 10 % of 0.5 either side
    ("0.05,1", ("a", "b", "c", "e", "multi")),  # alternatives
    ("gt1e2", ()),
])
def test_each_prefix_against_the_values_precision(server, assessments, probability, names):
    assert _found(server, assessments, probability) == assessments.named(*names)


@pytest.mark.parametrize("probability", ["abc", "gt", "0.5.5", "1e99999999999", "9" * 400])
def test_a_value_that_is_no_number_is_refused(client, probability):
    r = client.get("/RiskAssessment", params={"probability": probability})
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["expression"] == ["probability"]


def test_fhirpy_sorts_by_a_number_both_ways_across_pages(server, assessments):
    fhir = SyncFHIRClient(server.fhir, authorization=f"Bearer {server.auth.token()}")
    mine = fhir.resources("RiskAssessment").search(identifier=f"{TAG_SYSTEM}|{assessments.tag}")
    order = {rid: name for name, rid in assessments.ids.items()}
    # Pages of one: the keyset cursor carries the number. Ascending by each one's lowest value, descending by
    # its highest; the one without a prediction last either way.
    ascending = [order[r.id] for r in mine.sort("probability").limit(1).fetch_all()]
    assert ascending == ["a", "multi", "d", "b", "c", "e", "none"]
    descending = [order[r.id] for r in mine.sort("-probability").limit(2).fetch_all()]
    assert descending == ["e", "multi", "c", "b", "d", "a", "none"]


def test_a_scope_that_filters_on_a_number(server, assessments):
    """Searches are confined in SQL; a write is checked on the resource it would store (`auth/rows.py`)."""
    scope = "system/RiskAssessment.crs?probability=gt0.5"
    token = backend_token(server, register_backend(server, scope), scope)
    with server.http(None, headers=bearer(token)) as http:
        def write(probability: float) -> int:
            body = {"resourceType": "RiskAssessment", "status": "final",
                    "subject": {"reference": f"Patient/{unique('p')}"},
                    "prediction": [{"probabilityDecimal": probability}]}
            return http.post("/RiskAssessment", json=body).status_code
        assert write(0.9) == 201
        assert write(0.5) == 403  # not greater than 0.5: the token could not read it back
        listed = http.get("/RiskAssessment", params={"identifier": f"{TAG_SYSTEM}|{assessments.tag}"})
        assert listed.status_code == 200, listed.text
        assert ids(listed.json()) == assessments.named("c", "e", "multi")
        assert http.get(f"/RiskAssessment/{assessments.ids['multi']}").status_code == 200
        assert http.get(f"/RiskAssessment/{assessments.ids['b']}").status_code in (403, 404)


def test_capability_statement_lists_the_number_parameter(client):
    rest = client.get("/metadata").json()["rest"][0]
    risk = next(r for r in rest["resource"] if r["type"] == "RiskAssessment")
    probability = next(p for p in risk["searchParam"] if p["name"] == "probability")
    assert probability["type"] == "number"
    assert probability["definition"] == "http://hl7.org/fhir/SearchParameter/RiskAssessment-probability"


def test_reindex_builds_the_number_rows_of_resources_stored_before_them(server, client):
    """What migration 0960 asks for at the next start: number rows for RiskAssessments stored without any."""
    tag = unique("num-reindex")
    rid = create(client, {"resourceType": "RiskAssessment", "status": "final",
                          "identifier": [{"system": TAG_SYSTEM, "value": tag}],
                          "subject": {"reference": f"Patient/{unique('p')}"},
                          "prediction": [{"probabilityDecimal": 0.72}]})
    mine = {"identifier": f"{TAG_SYSTEM}|{tag}", "probability": "0.72"}
    assert ids(client.get("/RiskAssessment", params=mine).json()) == {f"RiskAssessment/{rid}"}
    engine = make_engine(server.database_url)
    try:
        with engine.begin() as conn:  # as a database that stored it before idx_number existed
            conn.execute(sa.text("DELETE FROM idx_number WHERE rtype = 'RiskAssessment' AND rid = :rid"), {"rid": rid})
        assert ids(client.get("/RiskAssessment", params=mine).json()) == set()
        args = [sys.executable, "-m", "server.cli", "reindex", "--param=RiskAssessment.probability"]
        done = subprocess.run(args, cwd=ROOT, env={**os.environ, "PLANFIT_DATABASE_URL": server.database_url},
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert ids(client.get("/RiskAssessment", params=mine).json()) == {f"RiskAssessment/{rid}"}
        with engine.connect() as conn:
            rows = sa.text("SELECT count(*) FROM idx_number WHERE rid = :rid")
            assert conn.execute(rows, {"rid": rid}).scalar_one() == 1
    finally:
        engine.dispose()


def test_a_number_cursor_that_does_not_fit_is_refused(client, assessments):
    """`_page` comes back from clients: a number key that holds text or a boolean is a 400."""
    mine = {"identifier": f"{TAG_SYSTEM}|{assessments.tag}", "_sort": "probability", "_count": "1"}
    first = client.get("/RiskAssessment", params=mine)
    assert first.status_code == 200, first.text
    snapshot, (value, rid) = decode_cursor(parse_qs(urlparse(_next(first.json())).query)["_page"][0])
    assert value == 0.05 and rid == assessments.ids["a"]
    again = client.get("/RiskAssessment", params={**mine, "_page": encode_cursor(snapshot, (value, rid))})
    assert again.status_code == 200
    for forged in ("0.05", True):
        page = client.get("/RiskAssessment", params={**mine, "_page": encode_cursor(snapshot, (forged, rid))})
        assert page.status_code == 400, (forged, page.text)


def test_a_range_past_the_largest_double_is_unbounded(server, assessments):
    assert _found(server, assessments, "ap1.7e308") == set()
    assert _found(server, assessments, "lt1.7e308") == assessments.named("a", "b", "c", "d", "e", "multi")


def _next(bundle: dict) -> str:
    return next(link["url"] for link in bundle["link"] if link["relation"] == "next")
