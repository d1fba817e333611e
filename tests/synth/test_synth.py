"""`planfit synth`: determinism, FHIR validity, bundle integrity, and agreement of data with ground truth.

Over 450 lines on purpose: more than half is a second, independent reading of the rules over the raw bundles
(`_read_population` … `_takes`), written apart from `server/alignment` so that the ground truth `planfit synth`
writes is checked against something other than the code that produced it.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any, Iterator

import pytest

from server.alignment.mappings import DEFAULT_DIRECTORY, Mappings, RuleUnit, load_mappings
from server.synth import COVERAGE_FORMS, DX, ROUTINE_CLAIM_DX, SCENARIOS, generate

AS_OF = date(2026, 1, 1)
MEMBER_SYSTEM = "https://planfit.dev/synth/member-id"
DUAL_EXT = "https://planfit.dev/fhir/StructureDefinition/dual-status-code"


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings(DEFAULT_DIRECTORY, rates_file=DEFAULT_DIRECTORY / "rates.json")


@pytest.fixture(scope="module")
def population(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "pop"
    summary = generate(200, seed=11, out=out, bundle_size=70)
    assert summary.members == 200
    return out


def _bundles(out: Path, kind: str) -> list[dict[str, Any]]:
    return [json.loads(p.read_bytes()) for p in sorted((out / kind).glob("bundle-*.json"))]


def _resources(out: Path, kind: str) -> Iterator[dict[str, Any]]:
    for bundle in _bundles(out, kind):
        for entry in bundle["entry"]:
            yield entry["resource"]


def _walk_references(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield value
            else:
                yield from _walk_references(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk_references(item)


# -- determinism -------------------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = _tree_after(tmp_path / "a", 90, 5)
    b = _tree_after(tmp_path / "b", 90, 5)
    assert a.keys() == b.keys() and len(a) >= 4
    for name in a:
        assert a[name] == b[name], name
    c = _tree_after(tmp_path / "c", 90, 6)
    assert c["ground_truth.json"] != a["ground_truth.json"]
    assert c["clinical/bundle-00001.json"] != a["clinical/bundle-00001.json"]


def _tree_after(out: Path, members: int, seed: int) -> dict[str, bytes]:
    generate(members, seed=seed, out=out, bundle_size=40)
    return _tree(out)


def test_regenerating_into_same_directory_replaces_bundles(tmp_path: Path) -> None:
    generate(120, seed=3, out=tmp_path, bundle_size=20)
    generate(30, seed=3, out=tmp_path, bundle_size=20)
    assert len(list((tmp_path / "clinical").glob("*.json"))) == 2
    assert json.loads((tmp_path / "ground_truth.json").read_bytes())["member_count"] == 30


# -- structure and validity ---------------------------------------------------------------------------


def test_all_resources_validate_as_fhir_r4(population: Path) -> None:
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.bundle import Bundle

    checked = 0
    for kind in ("clinical", "claims"):
        for bundle in _bundles(population, kind):
            assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
            Bundle.model_validate({"resourceType": "Bundle", "type": "transaction",
                                   "entry": [{k: v for k, v in e.items() if k != "resource"}
                                             for e in bundle["entry"]]})
            for entry in bundle["entry"]:
                resource = entry["resource"]
                get_fhir_model_class(resource["resourceType"]).model_validate(resource)
                checked += 1
    assert checked > 1000


def test_bundle_entries_are_conditional_creates(population: Path) -> None:
    for kind in ("clinical", "claims"):
        for bundle in _bundles(population, kind):
            for entry in bundle["entry"]:
                resource, request = entry["resource"], entry["request"]
                assert entry["fullUrl"].startswith("urn:uuid:")
                assert request["method"] == "POST" and request["url"] == resource["resourceType"]
                ident = next(i for i in resource["identifier"] if "type" not in i)
                assert request["ifNoneExist"] == f"identifier={ident['system']}|{ident['value']}"


def test_urn_uuid_references_resolve_within_their_bundle(population: Path) -> None:
    count = 0
    for kind in ("clinical", "claims"):
        for bundle in _bundles(population, kind):
            full_urls = [e["fullUrl"] for e in bundle["entry"]]
            assert len(full_urls) == len(set(full_urls))
            known = set(full_urls)
            for entry in bundle["entry"]:
                for ref in _walk_references(entry["resource"]):
                    assert ref.startswith("urn:uuid:"), ref
                    assert ref in known, (kind, ref)
                    count += 1
    assert count > 1000


def test_sources_are_split(population: Path) -> None:
    clinical = Counter(r["resourceType"] for r in _resources(population, "clinical"))
    claims = Counter(r["resourceType"] for r in _resources(population, "claims"))
    assert set(clinical) == {"Patient", "Encounter", "Condition"}
    assert set(claims) == {"Patient", "Coverage", "Claim", "Condition"}
    assert clinical["Patient"] == 200
    clinical_ids = {r["identifier"][0]["value"] for r in _resources(population, "clinical") if r["resourceType"] == "Patient"}
    claims_ids = {r["identifier"][0]["value"] for r in _resources(population, "claims") if r["resourceType"] == "Patient"}
    assert claims_ids < clinical_ids  # same identifiers, so conditional create dedupes


def test_data_variety(population: Path) -> None:
    conditions = [r for r in _resources(population, "clinical") if r["resourceType"] == "Condition"]
    systems = Counter(tuple(sorted(c["system"] for c in r["code"]["coding"])) for r in conditions)
    assert systems[("http://hl7.org/fhir/sid/icd-10-cm",)] and systems[("http://snomed.info/sct",)]
    assert systems[("http://hl7.org/fhir/sid/icd-10-cm", "http://snomed.info/sct")]
    ver = Counter(r["verificationStatus"]["coding"][0]["code"] for r in conditions)
    assert ver["refuted"] and ver["entered-in-error"] and ver["confirmed"]
    assert any(r.get("clinicalStatus", {}).get("coding", [{}])[0].get("code") == "resolved" for r in conditions)
    assert all("clinicalStatus" not in r for r in conditions
               if r["verificationStatus"]["coding"][0]["code"] == "entered-in-error")
    claims = [r for r in _resources(population, "claims") if r["resourceType"] == "Claim"]
    assert any("diagnosisReference" in d for c in claims for d in c["diagnosis"])
    coded = [d["diagnosisCodeableConcept"]["coding"][0]["code"] for c in claims for d in c.get("diagnosis", [])
             if "diagnosisCodeableConcept" in d]
    assert any("." in code for code in coded) and any("." not in code and len(code) > 3 for code in coded)
    coverages = [r for r in _resources(population, "claims") if r["resourceType"] == "Coverage"]
    assert any("extension" in c for c in coverages) and any("extension" not in c for c in coverages)
    assert any("class" not in c for c in coverages) and any("type" not in c for c in coverages)
    assert {c["status"] for c in coverages} == {"active", "cancelled"}


# -- ground truth -------------------------------------------------------------------------------------


def test_ground_truth_covers_every_scenario(population: Path) -> None:
    truth = json.loads((population / "ground_truth.json").read_bytes())
    members = truth["members"]
    assert len(members) == 200 and truth["member_count"] == 200
    assert {m["scenario"] for m in members.values()} == {s.name for s in SCENARIOS}
    assert {m["status"] for m in members.values()} == {"aligned", "misaligned", "review", "not-evaluable"}
    assert {m["dual_level"] for m in members.values()} == {None, "full", "partial", "unknown"}
    patients = {r["identifier"][0]["value"] for r in _resources(population, "clinical") if r["resourceType"] == "Patient"}
    assert set(members) == patients
    summary = json.loads((population / "summary.json").read_bytes())
    assert sum(summary["scenarios"].values()) == 200
    assert summary["scenarios"] == {k: v["count"] for k, v in truth["scenarios"].items()}
    counted = Counter(r["resourceType"] for k in ("clinical", "claims") for r in _resources(population, k))
    assert summary["totals"]["resources"] == sum(counted.values())


def test_age_boundaries(population: Path) -> None:
    members = json.loads((population / "ground_truth.json").read_bytes())["members"]
    births = {r["identifier"][0]["value"]: date.fromisoformat(r["birthDate"])
              for r in _resources(population, "clinical") if r["resourceType"] == "Patient"}
    for ident, m in members.items():
        if m["scenario"] == "harp-candidate-age21-today":
            assert births[ident] == date(2005, 1, 1) and m["age"] == 21
        if m["scenario"] in ("mmc-under21-bh", "harp-under21"):
            assert m["age"] < 21
    ages = [m["age"] for m in members.values()]
    assert min(ages) < 21 < max(ages) and any(a < 65 for a in ages) and any(a >= 65 for a in ages)


def test_catalogue_categories_match_the_mapping_files(mappings: Mappings) -> None:
    """The generator's hand-written code categories (its oracle) agree with mappings/ for every coding."""
    for pool, entries in DX.items():
        for dx in (*entries, ROUTINE_CLAIM_DX):
            if dx.icd:
                got = mappings.categories_for("http://hl7.org/fhir/sid/icd-10-cm", dx.icd)
                assert got == dx.cats, (pool, dx.icd, got)
            if dx.sct:
                got = mappings.categories_for("http://snomed.info/sct", dx.sct)
                assert got == dx.cats, (pool, dx.sct, got)


def test_coverage_forms_name_their_product(mappings: Mappings) -> None:
    for product, forms in COVERAGE_FORMS.items():
        for plan, sopt, _payer in forms:
            named = mappings.product_for_plan(plan) if plan else mappings.product_for_sopt(sopt)
            assert named is not None and named.code == product, (product, plan, sopt)


# -- an independent reading of the data, per the semantics in the synth docstring -----------------------

HARP_EXT = "https://planfit.dev/fhir/StructureDefinition/ny-harp-status"
OPWDD_EXT = "https://planfit.dev/fhir/StructureDefinition/opwdd-participation"


def _months_before(day: date, months: int) -> date:
    y, m = divmod(day.year * 12 + day.month - 1 - months, 12)
    return date(y, m + 1, min(day.day, 28))


def _window_start(as_of: date, months: int = 24) -> date:
    return _months_before(as_of, months)


def _in_window(day: str, start: date) -> bool:
    return start <= date.fromisoformat(day[:10]) <= AS_OF


def _code_of(element: dict[str, Any] | None) -> str | None:
    return (element or {}).get("coding", [{}])[0].get("code")


def _extension(resource: dict[str, Any], url: str) -> Any:
    return next((next(v for k, v in e.items() if k.startswith("value")) for e in resource.get("extension", [])
                 if e["url"] == url), None)


def _read_population(out: Path, mappings: Mappings) -> dict[str, dict[str, Any]]:
    start = _window_start(AS_OF)
    members: dict[str, dict[str, Any]] = {}

    def member(ident: str) -> dict[str, Any]:
        return members.setdefault(ident, {"birth": None, "coverages": [], "clinical": set(), "claims": set(),
                                          "harp": set(), "opwdd": False, "states": set(), "zips": set(), "services": []})

    def cats(codeable: dict[str, Any]) -> set[str]:
        out: set[str] = set()
        for coding in codeable.get("coding", []):
            out |= mappings.categories_for(coding.get("system"), coding.get("code"))
        return out

    def lifelong(codeable: dict[str, Any]) -> bool:
        codes = mappings.lifelong.icd_codes | mappings.lifelong.snomed_codes
        return any(c.get("code") in codes for c in codeable.get("coding", []))

    def condition_qualifies(c: dict[str, Any]) -> bool:
        """SPEC §4.3: not withdrawn or abated before the window; in the window, or a lifelong active
        confirmed problem-list entry from before it; not suspect (uncertain, or inactive and not lifelong)."""
        verification, clinical = _code_of(c.get("verificationStatus")), _code_of(c.get("clinicalStatus"))
        if verification in ("refuted", "entered-in-error"):
            return False
        inactive, life = clinical in ("inactive", "resolved", "remission"), lifelong(c["code"])
        if inactive and "abatementDateTime" in c and date.fromisoformat(c["abatementDateTime"][:10]) < start:
            return False
        recorded = c.get("recordedDate") or c["onsetDateTime"]
        persists = (life and not inactive and verification == "confirmed"
                    and _code_of(c["category"][0]) == "problem-list-item" and date.fromisoformat(recorded) < start)
        if not (_in_window(recorded, start) or persists):
            return False
        return verification in (None, "confirmed") and (life or not inactive)

    for kind in ("clinical", "claims"):
        for bundle in _bundles(out, kind):
            by_url = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
            who = {url: r["identifier"][0]["value"] for url, r in by_url.items() if r["resourceType"] == "Patient"}
            for r in by_url.values():
                rt = r["resourceType"]
                if rt == "Patient":
                    m = member(r["identifier"][0]["value"])
                    m["birth"] = date.fromisoformat(r["birthDate"])
                    m["harp"] |= {_extension(r, HARP_EXT)} - {None}
                    m["opwdd"] = m["opwdd"] or _extension(r, OPWDD_EXT) is True
                    m["states"] |= {a["state"] for a in r.get("address", []) if a.get("state")}
                    m["zips"] |= {a["postalCode"][:5] for a in r.get("address", []) if a.get("postalCode")}
                elif rt == "Coverage":
                    member(who[r["beneficiary"]["reference"]])["coverages"].append(r)
                elif rt == "Condition" and condition_qualifies(r):
                    member(who[r["subject"]["reference"]])[kind] |= cats(r["code"])
                elif rt == "Claim" and r["status"] == "active" and "item" in r:
                    member(who[r["patient"]["reference"]])["services"].append(_service(r))
                if rt == "Claim" and r["status"] == "active" and _in_window(r["billablePeriod"]["start"], start):
                    for d in r.get("diagnosis", []):
                        code = d.get("diagnosisCodeableConcept") or by_url[d["diagnosisReference"]["reference"]]["code"]
                        member(who[r["patient"]["reference"]])["claims"] |= cats(code)
    return members


RISK_FACTORS = json.loads((DEFAULT_DIRECTORY / "harp_risk_factors.json").read_bytes())


def _service(claim: dict[str, Any]) -> tuple[set[str], date, date]:
    """(line codes, first day, last day) of a claim's services."""
    codes = {c["code"] for item in claim["item"] for key in ("revenue", "productOrService")
             for c in item.get(key, {}).get("coding", [])}
    period = claim["billablePeriod"]
    return codes, date.fromisoformat(period["start"]), date.fromisoformat(period["end"])


def _risk_factors(m: dict[str, Any]) -> dict[str, int]:
    """mappings/harp_risk_factors.json read as its description says: inpatient days (discharge day not
    counted, at least 1 a stay), or distinct calendar months, of active claims first served in the years."""
    out = {}
    for f in RISK_FACTORS["factors"]:
        since = _months_before(AS_OF, 12 * f["years"])
        claims = [(first, last) for codes, first, last in m["services"]
                  if codes & set(f["codes"]) and since <= first <= AS_OF]
        if claims:
            out[f["code"]] = (sum(max(1, (last - first).days) for first, last in claims) if f["measure"] == "days"
                              else len({(first.year, first.month) for first, _ in claims}))
    return out


def _coverages(m: dict[str, Any], mappings: Mappings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(current, recently ended) coverages, each as product, line of business, dual level, start, end."""
    current, ended = [], []
    history = _months_before(AS_OF, mappings.dual_history_months)
    for c in m["coverages"]:
        period = c.get("period", {})
        begins = date.fromisoformat(period["start"])
        ends = date.fromisoformat(period["end"]) if "end" in period else None
        if c["status"] != "active" or begins > AS_OF or (ends is not None and ends < history):
            continue
        plan = next((k["value"] for k in c.get("class", []) if k["type"]["coding"][0]["code"] == "plan"), None)
        aid = next((k["value"] for k in c.get("class", []) if k["type"]["coding"][0]["code"] == "class"), None)
        sopt = c["type"]["coding"][0]["code"] if "type" in c else None
        product = mappings.product_for_plan(plan) or mappings.product_for_sopt(sopt)
        code = _extension(c, DUAL_EXT)
        row = {"product": product, "lob": product.line_of_business if product else mappings.lob_for_sopt(sopt),
               "coded": code is not None, "level": mappings.dual_level(code), "start": begins, "end": ends,
               "harp": _extension(c, HARP_EXT), "plan": plan, "aid": aid.strip().lower() if aid else None}
        (current if ends is None or ends >= AS_OF else ended).append(row)
    return current, ended


def _evaluate(m: dict[str, Any], mappings: Mappings) -> dict[str, Any]:
    birth = m["birth"]
    age = AS_OF.year - birth.year - ((AS_OF.month, AS_OF.day) < (birth.month, birth.day))
    current, ended = _coverages(m, mappings)
    products = [c["product"] for c in current if c["product"]]
    programs: set[str] = set()
    for c in current:
        programs |= mappings.programs_for_lob(c["lob"])
    coded = [c for c in current if c["coded"]]
    latest = max((c["start"] for c in coded), default=None)
    levels = {c["level"] for c in coded if c["start"] == latest and c["level"]}
    evidenced = any(c["lob"] == "medicaid" for c in current) or ("medicare" in programs and bool(levels))
    dual_lob = any(c["lob"] == "dual" for c in current)
    lost = max((c["end"] for c in ended if c["lob"] == "medicaid" or c["level"]), default=None)
    lapsed = not evidenced and lost is not None and lost < _months_before(AS_OF, mappings.deeming_months)
    programs.discard("medicaid")
    if evidenced or (dual_lob and not lapsed):
        programs.add("medicaid")
    dual = {"medicare", "medicaid"} <= programs
    level = (levels.pop() if len(levels) == 1 else "unknown") if dual else None
    harp = m["harp"] | {c["harp"] for c in current if c["harp"]}
    counted = m["clinical"] | m["claims"]
    eligible, csnp_cats, confirmed, plans = [], [], set(), {}
    for p in mappings.products:
        unit = next((u for u in p.units if _takes(u, m, counted)), None)
        if unit is None:
            continue
        rule = unit.eligibility
        if not programs or not rule.requires_lob <= programs or rule.excludes_lob & programs:
            continue
        if rule.min_age is not None and age < rule.min_age:
            continue
        if rule.dual_levels is not None and (not dual or level not in rule.dual_levels):
            continue
        if "opwdd" in rule.excludes_flags and m["opwdd"]:
            continue
        state = rule.state_determination
        if state and harp & state.excludes:
            continue
        if rule.requires_any_valueset:
            met = sorted(counted & set(rule.requires_any_valueset))
            if state and harp & state.confirms:
                confirmed.add(p.code)
            elif not met:
                continue
            if p.code == "csnp":
                csnp_cats = met
        plans[p.code] = unit.code
        eligible.append(p)
    enrolled = max(products, key=lambda p: p.priority) if products else None
    if enrolled in eligible:
        upgrades = [p for p in eligible if p.specialized and p.priority > enrolled.priority]
        recommended = upgrades[0] if upgrades else enrolled
    else:
        recommended = eligible[0] if eligible else None
    conflict = any(a.code != b.code and a.programs & b.programs for a in products for b in products)
    not_evidenced = dual_lob and not evidenced
    reasons = []
    if not programs:
        status = "not-evaluable"
        reasons.append("no-active-coverage")
    else:
        reasons += ["conflicting-coverage"] if conflict else []
        reasons += ["dual-level-unknown"] if level == "unknown" and evidenced else []
        reasons += ["medicaid-not-evidenced"] if not_evidenced else []
        reasons += ["deeming-period-ended"] if not_evidenced and lapsed else []
        if conflict or (level == "unknown" and evidenced) or (not_evidenced and not lapsed) or recommended is None:
            status = "review"
        else:
            status = "aligned" if recommended is not None and enrolled == recommended else "misaligned"
        reasons += ["state-identified"] if recommended and recommended != enrolled and recommended.code in confirmed else []
        reasons += ["state-excluded"] if harp & {"H7"} else []
        reasons += ["flag-excluded"] if m["opwdd"] else []
    factors = _risk_factors(m)
    if recommended and recommended.code == RISK_FACTORS["product"] != (enrolled and enrolled.code) \
            and recommended.code not in confirmed:
        reasons += [f"risk-factor-{f['code']}" for f in RISK_FACTORS["factors"] if factors.get(f["code"], 0) >= f["at_least"]]
    enrolled_plan = _enrolled_plan(enrolled, current, m) if programs and enrolled else None
    if recommended is not None and recommended == enrolled and enrolled_plan is not None and enrolled.plans \
            and _takes(next(u for u in enrolled.units if u.code == enrolled_plan), m, counted):
        plans[recommended.code] = enrolled_plan  # the member's own plan, when it takes them
    if not programs or enrolled is None:
        kind = None
    elif enrolled not in eligible or not_evidenced:
        kind = "compliance"
    else:
        kind = "opportunity" if recommended != enrolled else None
    return {
        "age": age,
        "enrolled_product": enrolled.code if programs and enrolled else None,
        "status": status,
        "recommended_product": recommended.code if programs and recommended else None,
        "recommended_plan": plans.get(recommended.code, recommended.code) if programs and recommended else None,
        "eligible_products": [p.code for p in eligible],
        "non_claims_categories": sorted(c for c in ("smi", "sud") if c in m["clinical"] and c not in m["claims"]),
        "csnp_categories": csnp_cats,
        "dual_level": level,
        "kind": kind,
        "reasons": reasons,
        "risk_factors": factors,
        "enrolled_plan": enrolled_plan,
        **({"enrolled_rate_cell": _rate_cell(mappings, enrolled.code, m, age, current, _segment(dual, level))}
           if enrolled is not None and enrolled.code == "ny-mmc" and status in ("aligned", "misaligned") else {}),
    }


def _enrolled_plan(product: Any, current: list[dict[str, Any]], m: dict[str, Any]) -> str | None:
    """The plan a current Coverage names, else the one plan offered where the member lives (an address
    needed), else unknown; a product without plans is its own."""
    if not product.plans:
        return product.code
    named = {c["plan"].strip().lower() for c in current if c["plan"] and c["product"] == product}
    unit = next((u for u in product.units if u.code in named), None)
    if unit is not None:
        return unit.code
    offered = [u for u in product.units if _in_area(u, m)]
    return offered[0].code if m["states"] and len(offered) == 1 else None


def _rate_cell(mappings: Mappings, product: str, m: dict[str, Any], age: int, current: list[dict[str, Any]],
               segment: str | None) -> str:
    """The key of the most specific rates.json cell of the product matching the member (region: the first
    holding an address; aid category: of the current Medicaid coverages, the greatest; age band), else the
    product code."""
    rates = mappings.rates
    region = next((r.code for r in rates.regions if any(
        (any(z[:3] in part.zip3 for z in m["zips"]) if part.zip3 else part.state in m["states"]) for part in r.parts)),
        None)
    aid = max((c["aid"] for c in current if c["aid"] and c["lob"] in ("medicaid", "dual")), default=None)

    def matches(cell: Any) -> bool:
        band = rates.age_band(cell.age_band) if cell.age_band else None
        return (cell.region in (None, region) and cell.segment in (None, segment)
                and cell.aid_category in (None, aid)
                and (band is None or (band.min_age <= age and (band.max_age is None or age <= band.max_age))))

    found = [c for c in rates.cells if c.product == product and matches(c)]
    return max(found, key=lambda c: c.specificity).key if found else product


def _segment(dual: bool, level: str | None) -> str | None:
    """The member's dual segment of rate cells: non-dual, full or partial; none when the level is unknown."""
    return level if dual and level in ("full", "partial") else None if dual else "non-dual"


def _in_area(unit: RuleUnit, m: dict[str, Any]) -> bool:
    return not unit.coverage_area or any(
        part.state in m["states"] and (part.postal_code is None or part.postal_code in m["zips"])
        for part in unit.coverage_area)


def _takes(unit: RuleUnit, m: dict[str, Any], counted: set[str]) -> bool:
    """The area and condition grouping of a product's plan (or the product itself) admit the member; the
    product's other criteria are the same for all its plans. A member with no address is not excluded."""
    grouping = unit.eligibility.requires_any_valueset
    if unit.plan and not counted & set(grouping):
        return False
    return not m["states"] or _in_area(unit, m)


def test_data_agrees_with_ground_truth(population: Path, mappings: Mappings) -> None:
    """Reading the FHIR data back with the mapping files gives exactly the scenario-built ground truth."""
    truth = json.loads((population / "ground_truth.json").read_bytes())["members"]
    read = _read_population(population, mappings)
    assert set(read) == set(truth)
    mismatches = []
    for ident, expected in truth.items():
        got = _evaluate(read[ident], mappings)
        want = {k: v for k, v in expected.items() if k != "scenario"}
        if got != want:
            mismatches.append((ident, expected["scenario"], {k: (want[k], got[k]) for k in want if want[k] != got[k]}))
    assert not mismatches, mismatches[:5]


def test_larger_population_agrees_with_ground_truth(tmp_path: Path, mappings: Mappings) -> None:
    generate(1500, seed=99, out=tmp_path, bundle_size=500)
    truth = json.loads((tmp_path / "ground_truth.json").read_bytes())["members"]
    read = _read_population(tmp_path, mappings)
    bad = [(i, t["scenario"]) for i, t in truth.items()
           if _evaluate(read[i], mappings) != {k: v for k, v in t.items() if k != "scenario"}]
    assert not bad, bad[:10]
