"""The plan catalogue as FHIR InsurancePlan resources (SPEC §4.3, issue 17), over HTTP on both databases:
seeded from mappings/ at start and never overwritten, admin-writable (a write changes what the engine
uses and re-evaluates the members), coverage areas as Location resources, and findings that name the plan.

The server is this module's own: the tests change the catalogue, which is server-wide state.
"""

from __future__ import annotations

from typing import Any, Iterator

import httpx
import pytest

from server.alignment.mappings import load_mappings
from tests.support.alignment import ICD, born, condition, coverage, fhir_client, finding, own_server, patient
from tests.support.measures import evaluate

SD = "https://planfit.dev/fhir/StructureDefinition/"
VS = "https://planfit.dev/fhir/ValueSet/"
ADMIN_SCOPE = "system/*.cruds"
CLINICAL_SCOPE = "system/*.rs system/Patient.cruds system/Condition.cruds system/Coverage.cruds"


class Servers:
    def __init__(self, url: str, keys: Any) -> None:
        self.url, self.keys = url, keys
        self.admin = fhir_client(url, keys[0], ADMIN_SCOPE)
        self.claims = fhir_client(url, keys[1])
        self.clinical = fhir_client(url, keys[0], CLINICAL_SCOPE)

    def close(self) -> None:
        for c in (self.admin, self.claims, self.clinical):
            c.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def servers(request, tmp_path_factory: pytest.TempPathFactory, backend_client_keys: Any) -> Iterator[Servers]:
    work = tmp_path_factory.mktemp(f"catalogue-{request.param}")
    with own_server(request.param, work, backend_client_keys) as (url, _):
        s = Servers(url, backend_client_keys)
        try:
            yield s
        finally:
            s.close()


def _extensions(resource: dict[str, Any], name: str) -> list[Any]:
    return [next(v for k, v in e.items() if k.startswith("value")) for e in resource.get("extension", [])
            if e["url"] == SD + name]


def _read(c: httpx.Client, ref: str) -> dict[str, Any]:
    r = c.get(ref)
    assert r.status_code == 200, r.text
    return r.json()


def _put(c: httpx.Client, resource: dict[str, Any], expect: int = 200) -> httpx.Response:
    resource = {k: v for k, v in resource.items() if k != "meta"}
    r = c.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code == expect, r.text
    return r


CSNP_PLANS = ("csnp-cardiometabolic", "csnp-esrd", "csnp-behavioral-health", "csnp-lung")


def test_the_catalogue_is_published_as_insurance_plans_with_their_areas(servers: Servers) -> None:
    bundle = servers.admin.get("/InsurancePlan", params={"_count": 50}).json()
    plans = {e["resource"]["id"]: e["resource"] for e in bundle["entry"]}
    assert set(plans) == {"dsnp", *CSNP_PLANS, "ny-harp", "ma", "medicare-ffs", "ny-mmc", "commercial"}
    csnp, dsnp = plans["csnp-cardiometabolic"], plans["dsnp"]
    assert _extensions(csnp, "plan-condition-category") == [VS + "csnp-diabetes", VS + "csnp-chf",
                                                            VS + "csnp-cardiovascular"]
    assert _extensions(plans["csnp-lung"], "plan-condition-category") == [VS + "csnp-lung"]
    assert _extensions(dsnp, "plan-dual-level") == ["full", "partial", "unknown"]
    assert _extensions(dsnp, "dsnp-integration-level") == ["coordination-only"]
    assert csnp["coverageArea"] == [{"reference": "Location/area-ny"}] and "coverageArea" not in plans["ma"]
    assert plans["csnp-lung"]["coverageArea"] == [{"reference": f"Location/area-ny-{z}"} for z in ("10451", "11201", "11432")]
    assert _read(servers.admin, "/Location/area-ny")["address"]["state"] == "NY"
    assert _read(servers.admin, "/Location/area-ny-10451")["address"]["postalCode"] == "10451"
    # Searchable like any InsurancePlan: the product's identifier finds every plan of the product.
    found = servers.admin.get("/InsurancePlan", params={"identifier": "https://planfit.dev/fhir/CodeSystem/product|csnp"})
    assert sorted(e["resource"]["id"] for e in found.json()["entry"]) == sorted(CSNP_PLANS)
    found = servers.admin.get("/InsurancePlan", params={"identifier": "https://planfit.dev/fhir/CodeSystem/plan|csnp-lung"})
    assert [e["resource"]["id"] for e in found.json()["entry"]] == ["csnp-lung"]


def test_the_recommendation_names_the_plan(servers: Servers) -> None:
    pid = patient(servers.clinical, born(72), state="NY", postal_code="12207")
    coverage(servers.claims, pid, plan="MA")
    condition(servers.clinical, pid, [(ICD, "E11.9")])
    f = finding(servers.clinical, pid)
    assert (f.status, f.kind, f.recommended) == ("misaligned", "opportunity", "csnp")
    assert (f.recommended_plan, f.enrolled_plan) == ("InsurancePlan/csnp-cardiometabolic", "InsurancePlan/ma")
    assert {("coverage_area", "inside"), ("plan", "csnp-cardiometabolic")} <= f.criteria("csnp")
    eligible = [p for p in f.raw["parameter"] if p["name"] == "eligibleProduct"]
    assert {part["valueReference"]["reference"] for p in eligible for part in p["part"] if part["name"] == "plan"} \
        == {"InsurancePlan/csnp-cardiometabolic", "InsurancePlan/ma", "InsurancePlan/medicare-ffs"}
    report = evaluate(servers.clinical, "product-alignment", subject=f"Patient/{pid}")
    evaluated = {r["reference"] for r in report["evaluatedResource"]}
    assert {"InsurancePlan/csnp-cardiometabolic", "InsurancePlan/ma"} <= evaluated


def _medicare_member(servers: Servers, postal_code: str, codes: list[str], plan: str = "MA") -> str:
    pid = patient(servers.clinical, born(72), state="NY", postal_code=postal_code)
    coverage(servers.claims, pid, plan=plan)
    condition(servers.clinical, pid, [(ICD, code) for code in codes])
    return pid


def test_a_csnp_plan_takes_only_members_of_its_condition_grouping_in_its_area(servers: Servers) -> None:
    """SPEC §4.3: a C-SNP approved for diabetes + CHF + cardiovascular does not take a member whose only
    condition is COPD; the chronic lung C-SNP does, where it is offered (three NYC ZIPs)."""
    f = finding(servers.clinical, _medicare_member(servers, "10451", ["J44.9"]))  # Bronx: the lung plan's area
    assert (f.status, f.kind, f.recommended, f.recommended_plan) == ("misaligned", "opportunity", "csnp",
                                                                     "InsurancePlan/csnp-lung")
    assert {("valueset", "csnp-lung"), ("plan", "csnp-lung")} <= f.criteria("csnp")

    f = finding(servers.clinical, _medicare_member(servers, "12207", ["J44.9"]))  # Albany: no lung plan there
    assert (f.status, f.kind, f.recommended, f.recommended_plan) == ("aligned", None, "ma", "InsurancePlan/ma")
    assert "csnp" not in f.eligible and "csnp-lung" in f.categories

    # Diabetes and COPD in the Bronx: both plans would take the member; the first listed names it.
    f = finding(servers.clinical, _medicare_member(servers, "10451", ["J44.9", "E11.9"]))
    assert (f.recommended, f.recommended_plan) == ("csnp", "InsurancePlan/csnp-cardiometabolic")
    assert ("valueset", "csnp-lung") not in f.criteria("csnp") and ("valueset", "csnp-diabetes") in f.criteria("csnp")

    f = finding(servers.clinical, _medicare_member(servers, "12207", ["N18.6"]))
    assert (f.recommended, f.recommended_plan) == ("csnp", "InsurancePlan/csnp-esrd")

    # A cancer-only member: C-SNP categories, but no plan of the catalogue is approved for them.
    f = finding(servers.clinical, _medicare_member(servers, "10451", ["C61"]))
    assert (f.status, f.recommended) == ("aligned", "ma") and "csnp" not in f.eligible

    # Enrolled in a C-SNP (the Coverage names the product, not the plan) with COPD outside the lung plan's
    # area: no plan of the product takes the member, so none is named as the enrolled one.
    f = finding(servers.clinical, _medicare_member(servers, "12207", ["J44.9"], plan="C-SNP"))
    assert (f.status, f.kind, f.enrolled, f.recommended) == ("misaligned", "compliance", "csnp", "ma")
    assert f.enrolled_plan is None and "enrolled-not-eligible" in f.reasons

    # A Coverage may name the plan itself: it is read as its product.
    f = finding(servers.clinical, _medicare_member(servers, "11201", ["J45.909"], plan="csnp-lung"))
    assert (f.status, f.enrolled, f.enrolled_plan) == ("aligned", "csnp", "InsurancePlan/csnp-lung")


def test_the_enrolled_plan_when_the_coverage_names_only_the_product(servers: Servers) -> None:
    """A Coverage naming the C-SNP product, not its plan: the enrolled plan is the one plan of the product
    offered where the member lives (42 CFR 422.50(a)(3)(i): an MA enrollee resides in the plan's service
    area), else unknown (reason `enrolled-plan-unknown`, no enrolledPlan) while the recommendation still
    names its plan. A Coverage naming the plan names it, and the member stays in it when it takes them."""
    admin, clinical = servers.admin, servers.clinical
    albany = _medicare_member(servers, "12207", ["E11.9"], plan="C-SNP")  # three statewide plans there
    f = finding(clinical, albany)
    assert (f.status, f.enrolled, f.recommended) == ("aligned", "csnp", "csnp")
    assert f.enrolled_plan is None and "enrolled-plan-unknown" in f.reasons
    assert f.recommended_plan == "InsurancePlan/csnp-cardiometabolic"
    for postal_code, state in (("07030", "NJ"), (None, None)):  # no plan offered there; no address at all
        pid = patient(clinical, born(72), state=state, postal_code=postal_code)
        coverage(servers.claims, pid, plan="CSNP")
        g = finding(clinical, pid)
        assert (g.enrolled, g.enrolled_plan) == ("csnp", None) and "enrolled-plan-unknown" in g.reasons

    # Named by the Coverage: diabetes and COPD in the Bronx, both plans take the member, who stays in theirs.
    named = _medicare_member(servers, "10451", ["J44.9", "E11.9"], plan=" CSNP-Lung ")
    f = finding(clinical, named)
    assert (f.status, f.enrolled_plan, f.recommended_plan) == ("aligned", "InsurancePlan/csnp-lung",
                                                                "InsurancePlan/csnp-lung")
    assert "enrolled-plan-unknown" not in f.reasons
    # The enrolled plan's own rate cell prices the enrolled side (the ESRD C-SNP's cell).
    esrd = _medicare_member(servers, "12207", ["N18.6"], plan="csnp-esrd")
    f = finding(clinical, esrd)
    assert f.enrolled_plan == "InsurancePlan/csnp-esrd" and _rate_cells(f)["enrolled"]["product"] == "csnp-esrd"

    # Only the cardiometabolic plan offered in Albany: the Albany member's plan is resolved by the area.
    refs = ("/InsurancePlan/csnp-esrd", "/InsurancePlan/csnp-behavioral-health")
    original = {ref: _read(admin, ref) for ref in refs}
    try:
        for ref in refs:
            _put(admin, {**original[ref], "coverageArea": [{"reference": "Location/area-ny-10451"}]})
        f = finding(clinical, albany)
        assert (f.status, f.enrolled_plan, f.recommended_plan) == ("aligned", "InsurancePlan/csnp-cardiometabolic",
                                                                    "InsurancePlan/csnp-cardiometabolic")
        assert "enrolled-plan-unknown" not in f.reasons
        report = evaluate(clinical, "product-alignment", subject=f"Patient/{albany}")
        assert "InsurancePlan/csnp-cardiometabolic" in {r["reference"] for r in report["evaluatedResource"]}
    finally:
        for resource in original.values():
            _put(admin, resource)
    assert finding(clinical, albany).enrolled_plan is None


def test_a_member_outside_the_plans_area_is_not_recommended_it(servers: Servers) -> None:
    moved = patient(servers.clinical, born(72), state="NJ", postal_code="07030")
    coverage(servers.claims, moved, plan="MA")
    condition(servers.clinical, moved, [(ICD, "E11.9")])
    f = finding(servers.clinical, moved)
    assert (f.status, f.kind, f.recommended) == ("aligned", None, "ma")
    assert "csnp" not in f.eligible and "csnp-diabetes" in f.categories

    unknown = patient(servers.clinical, born(72))  # no address: the plan checks residence at enrolment
    coverage(servers.claims, unknown, plan="MA")
    condition(servers.clinical, unknown, [(ICD, "E11.9")])
    f = finding(servers.clinical, unknown)
    assert f.recommended == "csnp" and ("coverage_area", "address-unknown") in f.criteria("csnp")
    assert f.recommended_plan == "InsurancePlan/csnp-cardiometabolic"

    # A NY Medicaid managed care member living in New Jersey: the enrolled plan's rule fails.
    out_of_state = patient(servers.clinical, born(40), state="NJ")
    coverage(servers.claims, out_of_state, plan="NY-MMC")
    f = finding(servers.clinical, out_of_state)
    assert (f.status, f.kind, f.enrolled) == ("review", "compliance", "ny-mmc")
    assert "enrolled-not-eligible" in f.reasons

    # Moving back re-evaluates: a Patient write touches the member.
    r = servers.clinical.get(f"/Patient/{out_of_state}").json()
    r["address"] = [{"use": "home", "state": "NY", "postalCode": "10001"}]
    _put(servers.clinical, r)
    assert finding(servers.clinical, out_of_state).status == "aligned"


def test_only_an_admin_writes_plans_and_only_what_the_engine_can_apply(servers: Servers) -> None:
    csnp = _read(servers.admin, "/InsurancePlan/csnp-lung")
    r = servers.clinical.put("/InsurancePlan/csnp-lung", json=csnp)
    assert r.status_code == 403, r.text
    assert servers.admin.delete("/InsurancePlan/csnp-lung").status_code == 405
    new = {"resourceType": "InsurancePlan", "status": "active", "name": "Not in the catalogue"}
    assert servers.admin.post("/InsurancePlan", json=new).status_code == 422
    bad = {**csnp, "extension": [{"url": SD + "plan-dual-level", "valueCode": "full"}]}
    r = servers.admin.put("/InsurancePlan/csnp-lung", json=bad)
    assert r.status_code == 422 and "not a dual plan" in r.text
    bad = {**csnp, "extension": [{"url": SD + "plan-condition-category", "valueCanonical": VS + "nope"}]}
    assert servers.admin.put("/InsurancePlan/csnp-lung", json=bad).status_code == 422
    # The product has plans: it is not itself a plan of the catalogue.
    assert servers.admin.put("/InsurancePlan/csnp", json={**csnp, "id": "csnp"}).status_code == 422
    dsnp = _read(servers.admin, "/InsurancePlan/dsnp")
    bad = {**dsnp, "extension": [{"url": SD + "plan-dual-level", "valueCode": "some"}]}
    assert servers.admin.put("/InsurancePlan/dsnp", json=bad).status_code == 422
    assert _read(servers.admin, "/InsurancePlan/csnp-lung")["meta"]["versionId"] == csnp["meta"]["versionId"]


def test_an_admin_write_changes_what_the_engine_uses_and_re_evaluates(servers: Servers) -> None:
    admin, clinical, claims = servers.admin, servers.clinical, servers.claims
    manhattan = patient(clinical, born(72), state="NY", postal_code="10001")
    albany = patient(clinical, born(72), state="NY", postal_code="12207")
    copd = patient(clinical, born(72), state="NY", postal_code="10451")
    partial = patient(clinical, born(72), state="NY", postal_code="10001")
    for pid, code in ((manhattan, "E11.9"), (albany, "E11.9"), (copd, "J44.9")):
        coverage(claims, pid, plan="MA")
        condition(clinical, pid, [(ICD, code)])
    coverage(claims, partial, plan="MA", dual="03")
    assert {finding(clinical, p).recommended for p in (manhattan, albany, copd)} == {"csnp"}
    assert finding(clinical, partial).recommended == "dsnp"

    plans = ("/InsurancePlan/csnp-cardiometabolic", "/InsurancePlan/csnp-lung", "/InsurancePlan/dsnp")
    original = {ref: _read(admin, ref) for ref in plans}
    try:
        # One ZIP of Manhattan for the cardiometabolic plan; the lung plan approved for diabetes instead.
        _put(admin, {"resourceType": "Location", "id": "zip-10001", "status": "active", "mode": "kind",
                     "address": {"state": "NY", "postalCode": "10001"}}, expect=201)
        _put(admin, {**original["/InsurancePlan/csnp-cardiometabolic"],
                     "coverageArea": [{"reference": "Location/zip-10001"}]})
        _put(admin, {**original["/InsurancePlan/csnp-lung"],
                     "extension": [{"url": SD + "plan-condition-category", "valueCanonical": VS + "csnp-diabetes"}]})
        fide = {**original["/InsurancePlan/dsnp"],
                "extension": [{"url": SD + "plan-dual-level", "valueCode": "full"},
                              {"url": SD + "dsnp-integration-level", "valueCode": "fide"}]}
        _put(admin, fide)
        assert finding(clinical, manhattan).recommended == "csnp"
        assert finding(clinical, albany).recommended == "ma"  # outside the plan's new area
        f = finding(clinical, copd)
        assert f.recommended == "ma" and "csnp-lung" in f.categories  # outside the plan's grouping
        assert "dsnp" not in finding(clinical, partial).eligible  # a FIDE D-SNP takes full duals only

        # The area's Location is the area: widening it to the whole state brings Albany back.
        _put(admin, {"resourceType": "Location", "id": "zip-10001", "status": "active", "mode": "kind",
                     "address": {"state": "NY"}})
        assert finding(clinical, albany).recommended == "csnp"
    finally:
        for resource in original.values():
            _put(admin, resource)
    assert finding(clinical, copd).recommended == "csnp"
    assert finding(clinical, partial).recommended == "dsnp"


def _rate_cells(f: Any) -> dict[str, dict[str, Any]]:
    """`rateCell` parts by role: {name: value}."""
    out = {}
    for p in f.raw["parameter"]:
        if p["name"] == "rateCell":
            parts = {x["name"]: next(v for k, v in x.items() if k.startswith("value")) for x in p["part"]}
            out[parts.pop("role")] = parts
    return out


def test_impact_uses_the_members_rate_cell(servers: Servers) -> None:
    """SPEC §4.3: impact from rate cells (product or plan x region x dual segment), shipped rates.json: D-SNP
    full 2300 / partial 1500, MA in New York City 1400, the ESRD C-SNP plan 2900, else the product's PMPM."""
    rates = load_mappings().rates
    pmpm = {k: float(v) for k, v in rates.pmpm.items()}
    full, partial = (patient(servers.clinical, born(72), state="NY", postal_code="12207") for _ in range(2))
    coverage(servers.claims, full, plan="MA", dual="02")
    coverage(servers.claims, partial, plan="MA", dual="03")
    f, g = finding(servers.clinical, full), finding(servers.clinical, partial)
    assert (f.recommended, f.dual_level, g.recommended, g.dual_level) == ("dsnp", "full", "dsnp", "partial")
    assert f.impact == (2300.0 - pmpm["ma"]) * 12 and g.impact == (1500.0 - pmpm["ma"]) * 12
    assert _rate_cells(f)["recommended"] == {"product": "dsnp", "segment": "full",
                                             "pmpm": {"value": 2300.0, "currency": "USD"}}
    assert _rate_cells(f)["enrolled"] == {"product": "ma", "pmpm": {"value": pmpm["ma"], "currency": "USD"}}

    # The same opportunity in the Bronx: MA is priced at New York City's cell.
    bronx = _medicare_member(servers, "10451", ["E11.9"])
    albany = _medicare_member(servers, "12207", ["E11.9"])
    f, g = finding(servers.clinical, bronx), finding(servers.clinical, albany)
    assert f.impact == (pmpm["csnp"] - 1400.0) * 12 and g.impact == (pmpm["csnp"] - pmpm["ma"]) * 12
    assert _rate_cells(f)["enrolled"] == {"product": "ma", "region": "nyc", "pmpm": {"value": 1400.0, "currency": "USD"}}
    assert _rate_cells(f)["recommended"]["product"] == "csnp"  # no cell of the plan: the product's PMPM

    # A plan's own cell: the ESRD C-SNP.
    f = finding(servers.clinical, _medicare_member(servers, "12207", ["N18.6"]))
    assert f.recommended_plan == "InsurancePlan/csnp-esrd" and f.impact == (2900.0 - pmpm["ma"]) * 12
    assert _rate_cells(f)["recommended"]["product"] == "csnp-esrd"

    # A compliance finding's overpayment exposure uses the cells too: a HARP member without a qualifying
    # diagnosis in New York City, recommended mainstream MMC at the NYC cell.
    nyc = patient(servers.clinical, born(40), state="NY", postal_code="11201")
    coverage(servers.claims, nyc, plan="NY-HARP")
    f = finding(servers.clinical, nyc)
    assert (f.kind, f.recommended) == ("compliance", "ny-mmc")
    assert f.impact == (625.0 - pmpm["ny-harp"]) * 12
    exposure = next(p["valueMoney"]["value"] for p in f.raw["parameter"] if p["name"] == "overpaymentExposure")
    months = next(p["valueInteger"] for p in f.raw["parameter"] if p["name"] == "exposureMonths")
    assert exposure == round((pmpm["ny-harp"] - 625.0) * months, 2)


def _mmc_member_with_schizophrenia(servers: Servers, postal_code: str, aid_category: str | None) -> str:
    pid = patient(servers.clinical, born(40), state="NY", postal_code=postal_code)
    coverage(servers.claims, pid, plan="NY-MMC", aid_category=aid_category)
    condition(servers.clinical, pid, [(ICD, "F20.9")])
    return pid


def test_impact_uses_the_members_aid_category_cell(servers: Servers) -> None:
    """SPEC §4.3 rate cells by Medicaid aid category (NY MMC is rated by TANF, Safety Net and SSI cells,
    domain.md §6), shipped rates.json: mainstream members with schizophrenia are HARP opportunities, and the
    enrolled MMC is priced at each one's aid-category cell (the Coverage's class of type `class`, any case)
    for their age band (40: TANF 21+, SSI 21-64);
    a member without an aid category falls back to the product's PMPM; in New York City the region's SSI cell
    wins. Checked after the incremental evaluation, after a Coverage update, and after a full run."""
    rates = load_mappings().rates
    harp, mmc = float(rates.pmpm["ny-harp"]), float(rates.pmpm["ny-mmc"])

    def cell(key: str) -> float:
        value = rates.pmpm_of(key)
        assert value is not None, key
        return float(value)

    tanf, ssi, unknown, nyc = (_mmc_member_with_schizophrenia(servers, zip_code, aid) for zip_code, aid in (
        ("12207", "TANF"), ("12207", " ssi "), ("12207", None), ("11201", "SSI")))
    expected = {tanf: ("ny-mmc/*/tanf/21-plus", {"product": "ny-mmc", "aidCategory": "tanf", "ageBand": "21-plus"}),
                ssi: ("ny-mmc/*/ssi/21-64", {"product": "ny-mmc", "aidCategory": "ssi", "ageBand": "21-64"}),
                unknown: ("ny-mmc", {"product": "ny-mmc"}),
                nyc: ("ny-mmc/nyc/ssi", {"product": "ny-mmc", "region": "nyc", "aidCategory": "ssi"})}
    assert len({cell(key) for key, _ in expected.values()}) == 4 and cell("ny-mmc") == mmc

    def check() -> None:
        for pid, (key, parts) in expected.items():
            f = finding(servers.clinical, pid)
            assert (f.status, f.kind, f.enrolled, f.recommended) == ("misaligned", "opportunity", "ny-mmc", "ny-harp")
            assert f.impact == (harp - cell(key)) * 12, (pid, key, f.impact)
            assert _rate_cells(f)["enrolled"] == {**parts, "pmpm": {"value": cell(key), "currency": "USD"}}
            assert _rate_cells(f)["recommended"] == {"product": "ny-harp", "pmpm": {"value": harp, "currency": "USD"}}

    check()
    aid = [[x["valueCode"] for x in p["part"] if x["name"] == "aidCategory"]
           for p in finding(servers.clinical, ssi).raw["parameter"] if p["name"] == "coverage"]
    assert aid == [["ssi"]]

    # The State re-determines the TANF member as SSI: the Coverage write re-evaluates them.
    bundle = servers.claims.get("/Coverage", params={"beneficiary": f"Patient/{tanf}"}).json()
    resource = bundle["entry"][0]["resource"]
    next(c for c in resource["class"] if c["type"]["coding"][0]["code"] == "class")["value"] = "SSI"
    _put(servers.claims, resource)
    expected[tanf] = expected[ssi]
    check()

    r = servers.admin.post("/$evaluate-alignment", timeout=600)  # the full run picks the same cells
    assert r.status_code == 200, r.text
    check()


def test_impact_uses_the_members_age_band_cell(servers: Servers) -> None:
    """NY MMC premium groups are aid category x age band (2006 NY MMC contract exhibit: TANF 21+, SN 21-29 /
    30+, SSI 6mo-20 / 21-64 / 65+), shipped rates.json: the member's age on the evaluation date picks the band
    (a 21st birthday tomorrow is still under 21), and `rateCell` names it."""
    rates = load_mappings().rates
    members = {  # (aid category, age, days until the next birthday) → expected cell
        ("TANF", 20, 1): "ny-mmc/*/tanf/under-21",
        ("TANF", 21, 0): "ny-mmc/*/tanf/21-plus",
        ("Safety-Net", 29, 0): "ny-mmc/*/safety-net/21-29",
        ("Safety-Net", 30, 0): "ny-mmc/*/safety-net/30-plus",
        ("SSI", 12, 0): "ny-mmc/*/ssi/under-21",
        ("SSI", 64, 0): "ny-mmc/*/ssi/21-64",
        ("SSI", 70, 0): "ny-mmc/*/ssi/65-plus",
    }
    assert len({rates.pmpm_of(key) for key in members.values()}) == len(members)
    for (aid, age, days), key in members.items():
        pid = patient(servers.clinical, born(age + (days > 0), days_later=days), state="NY", postal_code="12207")
        coverage(servers.claims, pid, plan="NY-MMC", aid_category=aid)
        f = finding(servers.clinical, pid)
        assert (f.status, f.enrolled, f.age) == ("aligned", "ny-mmc", age), (aid, age, days)
        product, _, segment, band = key.split("/")
        assert _rate_cells(f)["enrolled"] == {"product": product, "aidCategory": segment, "ageBand": band,
                                              "pmpm": {"value": float(rates.pmpm_of(key)), "currency": "USD"}}
