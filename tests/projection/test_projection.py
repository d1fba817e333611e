"""Claims-based alignment projection (SPEC §13, issue 23 item 3) over HTTP, on SQLite and PostgreSQL.

20,000 beneficiaries from `server/synth/projection.py` (scenarios with the answer known by construction)
are loaded, projected for PY2026 and read back as ATR Groups: every participant TIN's list must hold exactly
the beneficiaries the ground truth aligns to it, each with its attributed NPI. A second projection after a
fifth of the scenarios are redrawn must mark every member new / nochange / changed / dropped as the two
ground truths say, and the churn must name exactly the members who left and joined.
"""

from __future__ import annotations

import base64

import httpx
import pytest

from server.synth import projection as synth
from tests.support.servers import RunningServer, unique
from tests.support.dashboard import ARTIFACTS, analyst_page, browser, wait_ready  # noqa: F401 (fixture)
from tests.support.inprocess import claims_server, server  # noqa: F401 (the in-process tier)
from tests.support.rosters import NPI, TIN

BENEFICIARIES = 20_000
pytestmark = pytest.mark.heavy  # tests/conftest.py schedules it first
SEED = 2323
YEAR = 2026
CHANGE_TYPE = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-changeType"
PROVIDER = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/ext-attributedProvider"


def _org(tin: str) -> str:
    return f"proj-org-{tin}"


@pytest.fixture(scope="module")
def http(server: RunningServer):
    """Participant and outside Organizations (with TINs) and their Practitioners (with NPIs)."""
    with server.http(server.auth, timeout=600) as client:
        entries = []
        for tin in (*synth.PARTICIPANT_TINS, *synth.OUTSIDE_TINS):
            entries.append({"resource": {"resourceType": "Organization", "id": _org(tin), "name": f"Practice {tin}",
                                         "identifier": [{"system": TIN, "value": tin}]},
                            "request": {"method": "PUT", "url": f"Organization/{_org(tin)}"}})
            for index in range(3):
                npi = synth.npi_of(tin, index)
                entries.append({"resource": {"resourceType": "Practitioner", "id": f"proj-npi-{npi}",
                                             "identifier": [{"system": NPI, "value": npi}]},
                                "request": {"method": "PUT", "url": f"Practitioner/proj-npi-{npi}"}})
        r = client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
        assert r.status_code == 200, r.text
        yield client


def _attachment(text: str) -> dict:
    return {"contentType": "text/csv", "data": base64.b64encode(text.encode()).decode()}


def load(http: httpx.Client, aco: str, files: dict) -> dict:
    r = http.post("Group/$alignment-projection-load", json={"resourceType": "Parameters", "parameter": [
        {"name": "aco", "valueString": aco},
        {"name": "claims", "valueAttachment": _attachment(files["claims"])},
        {"name": "beneficiaries", "valueAttachment": _attachment(files["beneficiaries"])}]})
    assert r.status_code == 200, r.text
    return {p["name"]: p["valueInteger"] for p in r.json()["parameter"]}


def project(http: httpx.Client, aco: str, tins=synth.PARTICIPANT_TINS) -> dict:
    r = http.post("Group/$alignment-projection", json={"resourceType": "Parameters", "parameter": [
        {"name": "aco", "valueString": aco}, {"name": "performanceYear", "valueString": str(YEAR)},
        *({"name": "participant", "valueReference": {"reference": f"Organization/{_org(t)}"}} for t in tins)]})
    assert r.status_code == 200, r.text
    return r.json()


def _value(part: dict):
    return next(v for k, v in part.items() if k.startswith("value"))


def scalars(params: dict) -> dict:
    return {p["name"]: _value(p) for p in params["parameter"] if "part" not in p}


def groups(params: dict) -> dict[str, str]:
    """TIN → Group id of a projection's answer."""
    out = {}
    for p in params["parameter"]:
        if p["name"] == "group":
            parts = {q["name"]: _value(q) for q in p["part"]}
            out[parts["tin"]] = parts["list"]["reference"].split("/")[1]
    return out


def members(http: httpx.Client, group_id: str) -> dict[str, tuple[str | None, str, bool]]:
    """patient → (attributed NPI, changeType, inactive) of a Group read whole."""
    r = http.get(f"Group/{group_id}")
    assert r.status_code == 200, r.text
    out = {}
    for member in r.json().get("member", []):
        ext = {e["url"]: e for e in member["extension"]}
        provider = ext.get(PROVIDER, {}).get("valueReference", {}).get("reference")
        npi = provider.removeprefix("Practitioner/proj-npi-") if provider else None
        out[member["entity"]["reference"].removeprefix("Patient/")] = (npi, ext[CHANGE_TYPE]["valueCode"],
                                                                        member.get("inactive", False))
    return out


def expected_lists(expected: dict) -> dict[str, dict[str, tuple[str, str]]]:
    """TIN → patient → (NPI, basis), participant TINs only."""
    out: dict[str, dict] = {tin: {} for tin in synth.PARTICIPANT_TINS}
    for patient, found in expected.items():
        if found is not None and found[0] in out:
            out[found[0]][patient] = (found[1], found[2])
    return out


@pytest.fixture(scope="module")
def first(http: httpx.Client):
    aco = unique("aco")
    files = synth.generate(BENEFICIARIES, SEED, YEAR)
    counts = load(http, aco, files)
    return aco, files, counts, project(http, aco)


def test_projection_matches_the_ground_truth_exactly(http: httpx.Client, first):
    aco, files, counts, answer = first
    assert counts["beneficiaries"] == BENEFICIARIES
    assert counts["claims"] == files["claims"].count("\n") - 1
    expected = files["expected"]
    lists = expected_lists(expected)
    summary = scalars(answer)
    assert summary["performanceYear"] == YEAR
    assert summary["alignmentPeriod"] == {"start": "2023-07-01", "end": "2025-06-30"}
    inside = [v for tin in lists.values() for v in tin.values()]
    assert summary["alignedVoluntarily"] == sum(1 for _npi, basis in inside if basis == "voluntary")
    assert summary["alignedByClaims"] == sum(1 for _npi, basis in inside if basis == "claims")
    assert summary["alignedOutside"] == sum(1 for v in expected.values() if v and v[0] in synth.OUTSIDE_TINS)
    ids = groups(answer)
    assert set(ids) == set(synth.PARTICIPANT_TINS)
    for tin, group_id in ids.items():
        got = members(http, group_id)
        assert {p: npi for p, (npi, _kind, _inactive) in got.items()} == {p: v[0] for p, v in lists[tin].items()}, tin
        assert {kind for _npi, kind, _inactive in got.values()} == {"new"}
    header = http.get(f"Group/{ids[synth.PARTICIPANT_TINS[0]]}", params={"_summary": "true"}).json()
    assert header["quantity"] == len(lists[synth.PARTICIPANT_TINS[0]])
    assert header["managingEntity"]["reference"] == f"Organization/{_org(synth.PARTICIPANT_TINS[0])}"


def test_reprojection_marks_change_types_and_churn(http: httpx.Client, first):
    aco, files, _counts, answer = first
    before = expected_lists(files["expected"])
    revised = synth.revise(BENEFICIARIES, SEED, YEAR, 0.2)
    load(http, aco, revised)
    second = project(http, aco)
    assert scalars(second)["previousRun"] == scalars(answer)["run"]
    after = expected_lists(revised["expected"])
    for tin, group_id in groups(second).items():
        want = {}
        for patient, (npi, basis) in after[tin].items():
            old = before[tin].get(patient)
            want[patient] = (npi, "new" if old is None else "nochange" if old == (npi, basis) else "changed", False)
        for patient, (npi, _basis) in before[tin].items():
            if patient not in after[tin]:
                want[patient] = (npi, "dropped", True)
        assert members(http, group_id) == want, tin

    inside_before = {p for tin in before.values() for p in tin}
    inside_after = {p for tin in after.values() for p in tin}
    r = http.get("Group/$alignment-churn", params={"aco": aco})
    assert r.status_code == 200, r.text
    moves = {}
    for p in r.json()["parameter"]:
        if p["name"] == "member":
            parts = {q["name"]: _value(q) for q in p["part"]}
            moves[parts["patient"]["reference"].removeprefix("Patient/")] = parts
    assert {p for p, m in moves.items() if m["direction"] == "out"} == inside_before - inside_after
    assert {p for p, m in moves.items() if m["direction"] == "in"} == inside_after - inside_before
    for patient in inside_before - inside_after:
        now = revised["expected"][patient]
        if now is not None:
            assert (moves[patient]["status"], moves[patient]["toTin"], moves[patient]["toNpi"]) == \
                ("aligned-outside", now[0], now[1])
        else:
            assert moves[patient]["status"] in ("ineligible", "not-aligned")
    # Contracting candidates: the outside providers that now hold churned members are among them.
    csv_text = http.get("Group/$alignment-churn", params={"aco": aco}, headers={"Accept": "text/csv"}).text
    rows = [line.split(",") for line in csv_text.strip().split("\n")]
    assert rows[0] == ["tin", "npi", "churning_members", "weighted_allowed_dollars"]
    candidates = {(t, n): int(k) for t, n, k, _w in rows[1:]}
    holders: dict[tuple[str, str], int] = {}
    for patient in inside_before - inside_after:
        now = revised["expected"][patient]
        if now is not None:
            holders[(now[0], now[1])] = holders.get((now[0], now[1]), 0) + 1
    assert holders and all(candidates.get(k, 0) >= n for k, n in holders.items())
    assert all(t in synth.OUTSIDE_TINS for t, _n in candidates)


def test_projection_page_in_chromium(server: RunningServer, http: httpx.Client, first, browser):  # noqa: F811
    """The dashboard's Projection page shows the latest churn of an ACO as the API answers it."""
    aco = first[0]
    answer = http.get("Group/$alignment-churn", params={"aco": aco}).json()
    page = analyst_page(server, browser, "Practitioner/projection-analyst")
    page.goto(server.url + f"/app/#projection?aco={aco}")
    wait_ready(page, "projection")
    shown = page.eval_on_selector_all("[data-metric]", "els => Object.fromEntries(els.map(e => [e.dataset.metric, "
                                                       "Number(e.dataset.value)]))")
    values = scalars(answer)
    candidates = [p for p in answer["parameter"] if p["name"] == "candidate"]
    assert (shown["projection/in"], shown["projection/out"], shown["projection/candidates"]) == \
        (values["in"], values["out"], len(candidates))
    rows = page.eval_on_selector_all("tr[data-candidate]", "rows => rows.map(r => r.dataset.candidate)")
    assert rows == [f"{_value(c['part'][0])}/{_value(c['part'][1])}" for c in candidates]
    page.screenshot(path=str(ARTIFACTS / f"projection-{server.kind}.png"), full_page=True)
    assert not page.errors, page.errors
    page.context.close()


def test_bad_inputs_are_refused_with_row_and_field(http: httpx.Client):
    aco = unique("aco")
    files = synth.generate(5, SEED, YEAR)
    bad = files["claims"].replace("99", "9X", 1).split("\n")
    bad[2] = bad[2].replace(",20", ",2O", 1)
    r = http.post("Group/$alignment-projection-load", json={"resourceType": "Parameters", "parameter": [
        {"name": "aco", "valueString": aco}, {"name": "claims", "valueString": "\n".join(bad)},
        {"name": "beneficiaries", "valueString": files["beneficiaries"]}]})
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["claims[2].service_date"]
    r = http.post("Group/$alignment-projection", json={"resourceType": "Parameters", "parameter": [
        {"name": "aco", "valueString": aco}, {"name": "performanceYear", "valueString": str(YEAR)}]})
    assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["participant"]
    no_tin = unique("org")
    assert http.put(f"Organization/{no_tin}", json={"resourceType": "Organization", "id": no_tin}).status_code == 201
    r = http.post("Group/$alignment-projection", json={"resourceType": "Parameters", "parameter": [
        {"name": "aco", "valueString": aco}, {"name": "performanceYear", "valueString": str(YEAR)},
        {"name": "participant", "valueReference": {"reference": f"Organization/{no_tin}"}}]})
    assert r.status_code == 422, r.text
    r = http.get("Group/$alignment-churn", params={"aco": unique("none")})
    assert r.status_code == 404
