"""The mapping files (mappings/) and their loader: real files load, broken files fail naming file and field."""

from __future__ import annotations

import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import pytest

from server.alignment.mappings import (
    DEFAULT_DIRECTORY,
    ICD10CM_SYSTEM,
    SNOMED_SYSTEM,
    MappingError,
    Mappings,
    load_mappings,
)

CSNP = {
    "csnp-substance-dependence", "csnp-autoimmune", "csnp-cancer", "csnp-cardiovascular", "csnp-chf",
    "csnp-dementia", "csnp-diabetes", "csnp-liver", "csnp-esrd", "csnp-hematologic", "csnp-hiv-aids",
    "csnp-lung", "csnp-mental-health", "csnp-neurologic", "csnp-stroke",
}


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings(DEFAULT_DIRECTORY, rates_file=DEFAULT_DIRECTORY / "rates.json")


# -- the real files ---------------------------------------------------------------------------------


def test_real_files_load(mappings: Mappings) -> None:
    assert set(mappings.value_sets) == {"smi", "sud"} | CSNP
    assert [p.code for p in mappings.products] == [
        "dsnp", "csnp", "ny-harp", "ma", "medicare-ffs", "ny-mmc", "commercial"]
    priorities = [p.priority for p in mappings.products]
    assert priorities == sorted(priorities, reverse=True)
    assert {p.line_of_business for p in mappings.products} == {"medicaid", "medicare", "dual", "commercial"}
    harp = mappings.product("ny-harp").eligibility
    assert harp.min_age == 21 and harp.requires_lob == {"medicaid"} and harp.excludes_lob == {"medicare"}
    assert set(harp.requires_any_valueset) == {"smi", "sud"}
    assert set(mappings.product("csnp").eligibility.requires_any_valueset) == CSNP
    assert mappings.product("dsnp").eligibility.dual_levels == {"full", "partial", "unknown"}
    assert mappings.rates.illustrative is True and mappings.rates.currency == "USD"
    assert set(mappings.rates.pmpm) == {p.code for p in mappings.products}
    assert mappings.dual_status_url == "https://planfit.dev/fhir/StructureDefinition/dual-status-code"
    assert mappings.non_claims_valuesets == ("smi", "sud")


def test_icd_prefixes_expand_to_the_release(mappings: Mappings) -> None:
    """A prefix stands for itself and every item below it in the bundled ICD-10-CM release, no more."""
    smi = mappings.value_sets["smi"]
    assert {"F20", "F20.9", "F20.81", "F32.1", "F31.72"} <= smi.icd_codes
    assert not {"F32.0", "F32.9", "F32.A", "F34.1"} & smi.icd_codes
    assert all(code.startswith(tuple(smi.icd_prefixes)) for code in smi.icd_codes)
    assert mappings.categories_for(ICD10CM_SYSTEM, "F20.99") == frozenset()  # not an ICD-10-CM code


def test_value_set_files_are_fhir_valuesets() -> None:
    from fhir.resources.R4B.valueset import ValueSet

    for path in sorted((DEFAULT_DIRECTORY / "valuesets").glob("*.json")):
        doc = json.loads(path.read_text())
        ValueSet.model_validate(doc)
        assert doc["url"] == f"https://planfit.dev/fhir/ValueSet/{doc['id']}"
        assert doc["status"] == "active"
        systems = [inc["system"] for inc in doc["compose"]["include"]]
        assert ICD10CM_SYSTEM in systems
        assert "domain.md" in doc["description"]
        for inc in doc["compose"]["include"]:
            assert not ("concept" in inc and "filter" in inc)  # FHIR vsd-3
            for flt in inc.get("filter", []):
                assert flt["property"] == "concept" and flt["op"] == "is-a"
    for vs_id in ("smi", "sud"):
        assert "REMISSION" in json.loads((DEFAULT_DIRECTORY / "valuesets" / f"{vs_id}.json").read_text())["description"]


def test_every_icd_prefix_exists_in_simple_icd_10_cm(mappings: Mappings) -> None:
    import simple_icd_10_cm as icd

    count = 0
    for vs in mappings.value_sets.values():
        assert vs.icd_prefixes, vs.id
        for prefix in vs.icd_prefixes:
            count += 1
            assert icd.is_valid_item(prefix), (vs.id, prefix)
            assert icd.is_category(prefix) or icd.is_subcategory(prefix), (vs.id, prefix)
    assert count > 300


@pytest.mark.parametrize(
    ("system", "code", "expected"),
    [
        (ICD10CM_SYSTEM, "F20.9", {"smi", "csnp-mental-health"}),
        (ICD10CM_SYSTEM, "F209", {"smi", "csnp-mental-health"}),
        (ICD10CM_SYSTEM, " f20.9 ", {"smi", "csnp-mental-health"}),
        (ICD10CM_SYSTEM, "F10.20", {"sud", "csnp-substance-dependence"}),
        (ICD10CM_SYSTEM, "F1020", {"sud", "csnp-substance-dependence"}),
        (ICD10CM_SYSTEM, "F11.21", {"sud", "csnp-substance-dependence"}),  # in remission counts
        (ICD10CM_SYSTEM, "F10.11", {"sud", "csnp-substance-dependence"}),
        (ICD10CM_SYSTEM, "F10.90", set()),  # use, unspecified, uncomplicated
        (ICD10CM_SYSTEM, "F10.91", set()),
        (ICD10CM_SYSTEM, "F10.94", {"sud", "csnp-substance-dependence"}),
        (ICD10CM_SYSTEM, "F17.210", set()),  # nicotine
        (ICD10CM_SYSTEM, "F31.72", {"smi", "csnp-mental-health"}),  # bipolar in full remission counts
        (ICD10CM_SYSTEM, "F32.1", {"smi", "csnp-mental-health"}),
        (ICD10CM_SYSTEM, "F32.9", {"csnp-mental-health"}),
        (ICD10CM_SYSTEM, "F32.5", {"csnp-mental-health"}),  # MDD in remission: not SMI
        (ICD10CM_SYSTEM, "F33.41", {"csnp-mental-health"}),
        (ICD10CM_SYSTEM, "F32.A", set()),
        (ICD10CM_SYSTEM, "F21", {"smi"}),
        (ICD10CM_SYSTEM, "F29", {"smi"}),
        (ICD10CM_SYSTEM, "E11.9", {"csnp-diabetes"}),
        (ICD10CM_SYSTEM, "R73.03", set()),
        (ICD10CM_SYSTEM, "I69.351", {"csnp-neurologic", "csnp-stroke"}),
        (ICD10CM_SYSTEM, "C50.911", {"csnp-cancer"}),
        (ICD10CM_SYSTEM, "D05.10", set()),  # in situ
        (ICD10CM_SYSTEM, "D57.3", set()),  # sickle-cell trait
        (ICD10CM_SYSTEM, "N18.6", {"csnp-esrd"}),
        (ICD10CM_SYSTEM, "N18.3", set()),
        (ICD10CM_SYSTEM, "I27.20", {"csnp-lung"}),
        ("urn:oid:2.16.840.1.113883.6.90", "F20.9", {"smi", "csnp-mental-health"}),
        ("http://hl7.org/fhir/sid/icd-10", "F20.9", set()),  # WHO ICD-10 is not ICD-10-CM
        (SNOMED_SYSTEM, "58214004", {"smi", "csnp-mental-health"}),
        (SNOMED_SYSTEM, "13746004", {"smi", "csnp-mental-health"}),
        (SNOMED_SYSTEM, "69322001", {"smi"}),
        (SNOMED_SYSTEM, "370143000", {"csnp-mental-health"}),
        (SNOMED_SYSTEM, "35489007", set()),
        (SNOMED_SYSTEM, "7200002", {"sud", "csnp-substance-dependence"}),
        (SNOMED_SYSTEM, "5602001", {"sud", "csnp-substance-dependence"}),
        (SNOMED_SYSTEM, "66590003", {"sud", "csnp-substance-dependence"}),
        (SNOMED_SYSTEM, "55680006", set()),  # drug overdose is not a use disorder
        (SNOMED_SYSTEM, "44054006", {"csnp-diabetes"}),
        (SNOMED_SYSTEM, "15777000", set()),  # prediabetes
        (SNOMED_SYSTEM, "5820400", set()),  # no prefix matching for SNOMED
        ("urn:oid:2.16.840.1.113883.6.96", "88805009", {"csnp-chf"}),
        ("http://loinc.org", "F20.9", set()),
        (None, "F20.9", set()),
        (ICD10CM_SYSTEM, "", set()),
    ],
)
def test_categories_for(mappings: Mappings, system: str | None, code: str, expected: set[str]) -> None:
    assert mappings.categories_for(system, code) == frozenset(expected)


def test_coverage_tables(mappings: Mappings) -> None:
    assert mappings.product_for_plan(" harp ").code == "ny-harp"
    assert mappings.product_for_plan("ny-mmc").code == "ny-mmc"
    assert mappings.product_for_plan("Original-Medicare").code == "medicare-ffs"
    assert mappings.product_for_plan("unknown plan") is None
    assert mappings.product_for_sopt("121").code == "medicare-ffs"
    assert mappings.product_for_sopt("1111").code == "csnp"
    assert mappings.product_for_sopt("141").code == "dsnp"
    assert mappings.product_for_sopt("22") is None
    assert mappings.lob_for_sopt("22") == "medicaid"
    assert mappings.lob_for_sopt("14") == "dual"
    assert mappings.lob_for_sopt("623") == "medicare"
    assert mappings.lob_for_sopt("612") == "commercial"
    assert mappings.lob_for_sopt("3712") is None
    assert mappings.lob_for_sopt("122") is None  # Part D only
    for code in ("02", "04", "08"):
        assert mappings.dual_level(code) == "full"
    for code in ("01", "03", "05", "06"):
        assert mappings.dual_level(code) == "partial"
    for code in ("00", "09", "99", "NA", "07", None):
        assert mappings.dual_level(code) is None
    assert mappings.programs_for_lob("dual") == {"medicare", "medicaid"}
    assert mappings.rates.annual_difference("ny-harp", "ny-mmc") == (
        mappings.rates.pmpm["ny-harp"] - mappings.rates.pmpm["ny-mmc"]) * 12
    assert mappings.rates.annual_difference(None, "ny-mmc") is None
    assert isinstance(mappings.rates.pmpm["ma"], Decimal)
    rows = mappings.icd_code_rows()
    assert ("smi", "F32.1") in rows and ("sud", "F10.20") in rows and ("smi", "F32.10") not in rows
    assert ("smi", "58214004") in mappings.snomed_rows()


def test_mappings_are_immutable(mappings: Mappings) -> None:
    with pytest.raises(Exception):
        mappings.products = ()  # type: ignore[misc]
    with pytest.raises(TypeError):
        mappings.value_sets["x"] = mappings.value_sets["smi"]  # type: ignore[index]


# -- environment overrides ----------------------------------------------------------------------------


def test_env_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "custom"
    shutil.copytree(DEFAULT_DIRECTORY, copy)
    rates = json.loads((copy / "rates.json").read_text())
    rates["pmpm"]["ny-harp"] = 2000
    (copy / "rates.json").write_text(json.dumps(rates))
    monkeypatch.setenv("PLANFIT_MAPPINGS_DIR", str(copy))
    monkeypatch.delenv("PLANFIT_RATES_FILE", raising=False)
    assert load_mappings().rates.pmpm["ny-harp"] == 2000

    other = tmp_path / "other-rates.json"
    rates["pmpm"]["ny-harp"] = 3000
    rates["illustrative"] = False
    other.write_text(json.dumps(rates))
    monkeypatch.setenv("PLANFIT_RATES_FILE", str(other))
    loaded = load_mappings()
    assert loaded.rates.pmpm["ny-harp"] == 3000 and loaded.rates.illustrative is False
    assert loaded.directory == copy


# -- broken files ------------------------------------------------------------------------------------

Mutation = Callable[[Path], None]


def _edit(relative: str, change: Callable[[Any], object]) -> Mutation:
    def apply(root: Path) -> None:
        path = root / relative
        doc = json.loads(path.read_text())
        change(doc)  # mutates doc in place
        path.write_text(json.dumps(doc))
    return apply


def _product(doc: dict[str, Any], code: str) -> dict[str, Any]:
    return next(p for p in doc["products"] if p["code"] == code)


def _index(code: str) -> int:
    doc = json.loads((DEFAULT_DIRECTORY / "products.json").read_text())
    return next(i for i, p in enumerate(doc["products"]) if p["code"] == code)


def _set(obj: dict[str, Any], key: str, value: Any) -> None:
    obj[key] = value


_SHIPPED_RATES = json.loads((DEFAULT_DIRECTORY / "rates.json").read_text())
# the index an entry appended to the shipped lists gets
_CELLS, _AID_CATEGORIES = len(_SHIPPED_RATES["cells"]), len(_SHIPPED_RATES["aid_categories"])
HARP = _index("ny-harp")

CSNP_I = _index("csnp")
MA = _index("ma")
FFS = _index("medicare-ffs")

BROKEN: list[tuple[str, Mutation, str]] = [
    ("priority-not-integer",
     _edit("products.json", lambda d: _set(d["products"][2], "priority", "70")),
     "products.json: products[2].priority: Input should be a valid integer"),
    ("priority-boolean",
     _edit("products.json", lambda d: _set(d["products"][0], "priority", True)),
     "products.json: products[0].priority: Input should be a valid integer"),
    ("missing-display",
     _edit("products.json", lambda d: d["products"][0].pop("display")),
     "products.json: products[0].display: Field required"),
    ("unknown-product-field",
     _edit("products.json", lambda d: _set(d["products"][1], "eligibilty", {})),
     "products.json: products[1].eligibilty: Extra inputs are not permitted"),
    ("unknown-rule-key",
     _edit("products.json", lambda d: _set(_product(d, "ny-harp")["eligibility"], "min_agee", 21)),
     f"products.json: products[{HARP}].eligibility.min_agee: Extra inputs are not permitted"),
    ("unknown-valueset-in-rule",
     _edit("products.json", lambda d: _set(_product(d, "ny-harp")["eligibility"], "requires_any_valueset",
                                           ["smi", "psychosis"])),
     f"products.json: products[{HARP}].eligibility.requires_any_valueset[1]: unknown value set 'psychosis'"),
    ("bad-lob-in-rule",
     _edit("products.json", lambda d: _set(_product(d, "ma")["eligibility"], "requires_lob", ["medicare", "tricare"])),
     f"products.json: products[{MA}].eligibility.requires_lob[1]: Input should be 'medicaid', 'medicare' or 'commercial'"),
    ("dual-in-rule",
     _edit("products.json", lambda d: _set(_product(d, "ma")["eligibility"], "requires_lob", ["dual"])),
     f"products.json: products[{MA}].eligibility.requires_lob[0]: rules test programs"),
    ("required-and-excluded",
     _edit("products.json", lambda d: _set(_product(d, "ny-harp")["eligibility"], "excludes_lob", ["medicaid"])),
     f"products.json: products[{HARP}].eligibility.excludes_lob: medicaid is both required and excluded"),
    ("dual-levels-without-dual",
     _edit("products.json", lambda d: _set(_product(d, "ma")["eligibility"], "dual_levels", ["full"])),
     f"products.json: products[{MA}].eligibility.dual_levels: needs requires_lob"),
    ("duplicate-product-code",
     _edit("products.json", lambda d: _set(d["products"][6], "code", d["products"][0]["code"])),
     "products.json: products[6].code: duplicate product code"),
    ("duplicate-priority",
     _edit("products.json", lambda d: _set(d["products"][1], "priority", d["products"][0]["priority"])),
     "products.json: products[1].priority: duplicate priority"),
    ("duplicate-plan-alias",
     _edit("products.json", lambda d: _product(d, "ma")["aliases"]["plan"].append("harp")),
     f"products.json: products[{MA}].aliases.plan[6]: duplicate plan alias 'harp'"),
    ("plan-alias-equals-other-code",
     _edit("products.json", lambda d: _product(d, "csnp")["aliases"]["plan"].append("DSNP")),
     f"products.json: products[{CSNP_I}].aliases.plan[3]: duplicate plan alias 'DSNP'"),
    ("sopt-alias-not-in-table",
     _edit("products.json", lambda d: _set(_product(d, "ma")["aliases"], "sopt", ["1119"])),
     f"products.json: products[{MA}].aliases.sopt[0]: SOPT code '1119' is not in the sopt.codes table"),
    ("sopt-alias-wrong-lob",
     _edit("products.json", lambda d: _set(_product(d, "ma")["aliases"], "sopt", ["211"])),
     f"products.json: products[{MA}].aliases.sopt[0]: SOPT code 211 is medicaid"),
    ("duplicate-sopt-alias",
     _edit("products.json", lambda d: _set(_product(d, "medicare-ffs")["aliases"], "sopt", ["121", "111"])),
     f"products.json: products[{FFS}].aliases.sopt[1]: duplicate SOPT alias 111"),
    ("sopt-table-duplicate",
     _edit("products.json", lambda d: d["sopt"]["codes"].append({"code": "1", "display": "x",
                                                                  "line_of_business": "medicare"})),
     "products.json: sopt.codes["),
    ("sopt-table-bad-lob",
     _edit("products.json", lambda d: _set(d["sopt"]["codes"][0], "line_of_business", "tricare")),
     "products.json: sopt.codes[0].line_of_business: Input should be 'medicaid', 'medicare', 'dual' or 'commercial'"),
    ("dual-code-bad-level",
     _edit("products.json", lambda d: _set(d["dual_status"]["codes"][3], "level", "FULL")),
     "products.json: dual_status.codes[3].level: Input should be 'full', 'partial' or 'none'"),
    ("non-claims-unknown-valueset",
     _edit("products.json", lambda d: _set(d, "non_claims_valuesets", ["smi", "ptsd"])),
     "products.json: non_claims_valuesets[1]: unknown value set 'ptsd'"),
    ("non-claims-missing",
     _edit("products.json", lambda d: d.pop("non_claims_valuesets")),
     "products.json: non_claims_valuesets: Field required"),
    ("products-not-list",
     _edit("products.json", lambda d: _set(d, "products", {"code": "ma"})),
     "products.json: products: Input should be a valid array"),
    ("products-invalid-json",
     lambda root: (root / "products.json").write_text('{"products": [}'),
     "products.json: Invalid JSON: expected value at line 1"),
    ("products-missing",
     lambda root: (root / "products.json").unlink(),
     "products.json: file not found"),
    ("icd-prefix-does-not-exist",
     _edit("valuesets/sud.json", lambda d: _set(d["compose"]["include"][0]["filter"][0], "value", "F19.0")),
     "valuesets/sud.json: compose.include[0].filter[0].value: ICD-10-CM code 'F19.0' does not exist"),
    ("icd-block-not-prefix",
     _edit("valuesets/smi.json", lambda d: _set(d["compose"]["include"][0]["filter"][0], "value", "F20-F29")),
     "valuesets/smi.json: compose.include[0].filter[0].value: 'F20-F29' is not an ICD-10-CM code"),
    ("icd-duplicate-prefix",
     _edit("valuesets/smi.json", lambda d: d["compose"]["include"].append(d["compose"]["include"][0])),
     "valuesets/smi.json: compose.include[19].filter[0].value: duplicate code F20"),
    ("icd-concept-list",
     _edit("valuesets/smi.json", lambda d: _set(d["compose"]["include"][0], "concept", [{"code": "F20.9"}])),
     "valuesets/smi.json: compose.include[0]: an include cannot have both concept and filter"),
    ("icd-concept-only",
     _edit("valuesets/csnp-hiv-aids.json", lambda d: _set(d["compose"], "include", [
         {"system": ICD10CM_SYSTEM, "concept": [{"code": "B20"}]}])),
     "valuesets/csnp-hiv-aids.json: compose.include[0].concept: ICD-10-CM entries are prefixes"),
    ("two-filters-one-include",
     _edit("valuesets/csnp-hiv-aids.json", lambda d: d["compose"]["include"][0]["filter"].append(
         {"property": "concept", "op": "is-a", "value": "Z21"})),
     "valuesets/csnp-hiv-aids.json: compose.include[0].filter: give exactly one filter per include"),
    ("filter-op",
     _edit("valuesets/csnp-hiv-aids.json", lambda d: _set(d["compose"]["include"][0]["filter"][0], "op", "regex")),
     "valuesets/csnp-hiv-aids.json: compose.include[0].filter[0].op: Input should be 'is-a'"),
    ("icd-system-misspelt",
     _edit("valuesets/csnp-hiv-aids.json", lambda d: _set(d["compose"]["include"][0], "system",
                                                          "http://hl7.org/fhid/sid/icd-10-cm")),
     "valuesets/csnp-hiv-aids.json: compose.include[0].system: unsupported code system"),
    ("snomed-bad-code",
     _edit("valuesets/smi.json", lambda d: _set(d["compose"]["include"][16]["concept"][0], "code", "psychosis")),
     "valuesets/smi.json: compose.include[16].concept[0].code: 'psychosis' is not a SNOMED CT concept id"),
    ("compose-exclude",
     _edit("valuesets/smi.json", lambda d: _set(d["compose"], "exclude", [{"system": ICD10CM_SYSTEM}])),
     "valuesets/smi.json: compose.exclude: not supported"),
    ("valueset-wrong-resource-type",
     _edit("valuesets/smi.json", lambda d: _set(d, "resourceType", "CodeSystem")),
     "valuesets/smi.json: resourceType: Input should be 'ValueSet'"),
    ("valueset-id-not-file-name",
     _edit("valuesets/smi.json", lambda d: _set(d, "id", "serious-mental-illness")),
     "valuesets/smi.json: id: id 'serious-mental-illness' must match the file name"),
    ("valueset-missing-description",
     _edit("valuesets/sud.json", lambda d: d.pop("description")),
     "valuesets/sud.json: description: Field required"),
    ("valueset-invalid-json",
     lambda root: (root / "valuesets" / "smi.json").write_text("{"),
     "valuesets/smi.json: Invalid JSON"),
    ("valueset-referenced-but-removed",
     lambda root: (root / "valuesets" / "csnp-stroke.json").unlink(),
     f"products.json: products[{CSNP_I}].eligibility.requires_any_valueset[14]: unknown value set 'csnp-stroke'"),
    ("rates-missing-product",
     _edit("rates.json", lambda d: d["pmpm"].pop("ny-harp")),
     "rates.json: pmpm.ny-harp: missing rate for product"),
    ("rates-unknown-product",
     _edit("rates.json", lambda d: _set(d["pmpm"], "hmo", 100)),
     "rates.json: pmpm.hmo: unknown product 'hmo'"),
    ("rates-not-number",
     _edit("rates.json", lambda d: _set(d["pmpm"], "ma", "1250")),
     "rates.json: pmpm.ma: Input should be a valid number"),
    ("rates-negative",
     _edit("rates.json", lambda d: _set(d["pmpm"], "ma", -1)),
     "rates.json: pmpm.ma: Input should be greater than or equal to 0"),
    ("rates-illustrative-flag",
     _edit("rates.json", lambda d: _set(d, "illustrative", "yes")),
     "rates.json: illustrative: Input should be a valid boolean"),
    ("rates-missing-flag",
     _edit("rates.json", lambda d: d.pop("illustrative")),
     "rates.json: illustrative: Field required"),
    ("rates-unknown-aid-category",
     _edit("rates.json", lambda d: d["cells"].append({"product": "ny-mmc", "aid_category": "medically-needy",
                                                      "pmpm": 1})),
     f"rates.json: cells[{_CELLS}].aid_category: unknown aid category 'medically-needy' (not in aid_categories)"),
    ("rates-aid-category-and-segment",
     _edit("rates.json", lambda d: d["cells"].append({"product": "ny-mmc", "segment": "full", "aid_category": "ssi",
                                                      "pmpm": 1})),
     f"rates.json: cells[{_CELLS}]: a cell names a dual segment or an aid category, not both"),
    ("rates-aid-category-named-as-a-segment",
     _edit("rates.json", lambda d: d["aid_categories"].append({"code": "partial", "display": "Partial"})),
     f"rates.json: aid_categories[{_AID_CATEGORIES}].code: duplicate aid category 'partial'"),
    ("rates-cell-unknown-key",
     _edit("rates.json", lambda d: d["cells"].append({"product": "ny-mmc", "aid": "ssi", "pmpm": 1})),
     f"rates.json: cells[{_CELLS}].aid: Extra inputs are not permitted"),
]



@pytest.mark.parametrize(("mutate", "expected"), [(m, e) for _, m, e in BROKEN], ids=[n for n, _, _ in BROKEN])
def test_broken_file_names_file_and_field(tmp_path: Path, mutate: Mutation, expected: str) -> None:
    root = tmp_path / "mappings"
    shutil.copytree(DEFAULT_DIRECTORY, root)
    mutate(root)
    with pytest.raises(MappingError) as info:
        load_mappings(root, rates_file=root / "rates.json")
    assert str(info.value).startswith(expected), str(info.value)
    assert info.value.file == expected.split(":")[0]


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(MappingError, match="mappings directory not found"):
        load_mappings(tmp_path / "nope")
