"""The risk-adjustment part of `planfit synth`: Medicare members with HCC-bearing diagnoses, and their
ground truth (SPEC §10).

Written under `<out>/risk/`: `clinical/` and `claims/` transaction bundles (Patients with Medicare or
dual coverage and clinical Conditions in the clinical feed; Claims in the claims feed: the diagnosis
year's, and the year before's for historic gaps), `ground_truth.json` (per member: the raw CMS-HCC
scores from claims and from all sources as `hccinfhir` computes them, and every condition category's
expected gap type and status, and the member months of each provider organization × line of business),
and the capitation inputs `capitation_rates.csv` (member months given) / `capitation_rates_coverage.csv`
(member months left to derive from Coverage and attribution) / `risk_transfers.csv` for the synthetic
provider organizations. Each member names one of them as `generalPractitioner`; a quarter also had a
Medicaid coverage for part of the year before, starting and ending mid-month. About a third are also on a
Da Vinci ATR roster (`rosters.json`: per provider organization a draft ATR Group managed for it and the
`$member-add` Parameters of its members, named by member id and the organization's NPI, with an attribution
period starting mid-month in the year before and ending mid-month or open), often of another organization
than their `generalPractitioner`: for the months the roster period holds, the roster's organization gets
the member month (`member_months.py`). The diagnosis year is the year of `as_of`
(payment year + 1 must be configured), and every date lies on or before `as_of`.
"""

from __future__ import annotations

import argparse
import random
import zlib
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable

import orjson

from server.risk.model import MODEL_NAMES, load_risk_model
from server.synth.parts import add_part, part_size

MEMBER_SYSTEM = "https://planfit.dev/synth/risk-member-id"
FHIR_BASE = "https://planfit.dev/synth/fhir/"  # fullUrl base of the provider Organizations (client-assigned ids)
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SOPT = "https://nahdo.org/sopt"
DUAL_EXT = "https://planfit.dev/fhir/StructureDefinition/dual-status-code"
# ICD-10-CM codes with a V28 payment HCC (diabetes, heart failure, COPD, CKD, SMI, SUD, cancer, dementia,
# arrhythmia, rheumatoid arthritis, bipolar disorder, diabetes with CKD) and two without one.
CODES = ("E11.9", "E11.22", "I50.9", "J44.9", "N18.4", "F20.9", "F11.20", "C34.90", "G30.9", "I48.91", "M05.9",
         "F31.9", "F32.9", "I10")
DUALS = (None, None, None, "02", "03", "08")
PROVIDERS = ("north-ipa", "river-medical-group", "summit-aco")
LOBS = (("medicare", 1250), ("dual", 1900), ("medicaid", 575), ("commercial", 650))
MEDICAID_SOPT = "21"  # Medicaid HMO: the ny-mmc product, line of business medicaid
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/"


def _day(rng: random.Random, start: date, end: date) -> str:
    return (start + timedelta(days=rng.randrange((end - start).days + 1))).isoformat()


def _entry(resource: dict[str, Any], full_url: str, if_none_exist: str | None = None) -> dict[str, Any]:
    request = {"method": "POST", "url": resource["resourceType"]}
    if if_none_exist:  # the member's Patient is in both feeds: whichever is posted first creates it
        request["ifNoneExist"] = if_none_exist
    return {"fullUrl": full_url, "resource": resource, "request": request}


def _member(rng: random.Random, i: int, as_of: date, prefix: str) -> dict[str, Any]:
    year = as_of.year
    age = rng.choice((rng.randint(66, 92), rng.randint(66, 92), rng.randint(40, 63)))
    return {
        "id": f"{prefix}-{i:06d}",
        "gender": rng.choice(("male", "female")),
        "birth": date(year + 1 - age, rng.randint(3, 12), rng.randint(1, 28)),
        "dual": rng.choice(DUALS),
        "new_enrollee": rng.random() < 0.1,
        "claims": sorted(set(rng.sample(CODES, rng.randint(0, 3)))),
        "clinical": sorted(set(rng.sample(CODES, rng.randint(0, 3)))),
        "prior": sorted(set(rng.sample(CODES, rng.randint(0, 2)))),
        "provider": f"{prefix}-{rng.choice(PROVIDERS)}",
        "medicaid": (date(year - 1, rng.randint(1, 6), rng.randint(1, 28)), date(year - 1, rng.randint(7, 12), rng.randint(1, 28)))
        if rng.random() < 0.25 else None,
        "roster": _roster_membership(rng, year - 1, prefix) if rng.random() < 0.35 else None,
    }


def _roster_membership(rng: random.Random, year: int, prefix: str) -> tuple[str, date, date | None]:
    """(provider organization, attribution start, end or None): from a day of the first half of `year`."""
    start = date(year, rng.randint(1, 6), rng.randint(1, 28))
    end = rng.choice((None, date(year, rng.randint(7, 12), rng.randint(1, 28)), date(year + 1, rng.randint(1, 6), 15)))
    return f"{prefix}-{rng.choice(PROVIDERS)}", start, end


def _npi(provider: str) -> str:
    """A 10-digit NPI per organization id (each population's prefix gives its organizations their own)."""
    return f"{zlib.crc32(provider.encode()):010d}"


def _attributed_to(m: dict[str, Any], day: date) -> str:
    """The organization a month starting on `day` counts toward: the roster's while its period holds the
    day, else the `generalPractitioner` (member_months.py: the roster wins)."""
    if m["roster"]:
        provider, start, end = m["roster"]
        if start <= day and (end is None or day <= end):
            return provider
    return m["provider"]


def _coverage_start(m: dict[str, Any], as_of: date) -> date:
    return date(as_of.year, 3, 1) if m["new_enrollee"] else date(as_of.year - 4, 1, 1)


def _resources(m: dict[str, Any], rng: random.Random, as_of: date) -> tuple[list[dict], list[dict]]:
    year = as_of.year
    patient_url = f"urn:uuid:{m['id']}-patient"
    patient = {"resourceType": "Patient", "identifier": [{"system": MEMBER_SYSTEM, "value": m["id"]}],
               "gender": m["gender"], "birthDate": m["birth"].isoformat(),
               "generalPractitioner": [{"reference": f"Organization/{m['provider']}"}]}
    start = _coverage_start(m, as_of)
    coverage = {"resourceType": "Coverage", "status": "active", "beneficiary": {"reference": patient_url},
                "payor": [{"display": "Synthetic Medicare plan"}], "period": {"start": start.isoformat()},
                "type": {"coding": [{"system": SOPT, "code": "14" if m["dual"] else "11"}]}}
    if m["dual"]:
        coverage["extension"] = [{"url": DUAL_EXT, "valueCode": m["dual"]}]
    member = f"identifier={MEMBER_SYSTEM}|{m['id']}"
    clinical = [_entry(patient, patient_url, member), _entry(coverage, f"urn:uuid:{m['id']}-coverage")]
    if m["medicaid"]:
        first, last = m["medicaid"]
        clinical.append(_entry({
            "resourceType": "Coverage", "status": "active", "beneficiary": {"reference": patient_url},
            "payor": [{"display": "Synthetic Medicaid plan"}], "period": {"start": first.isoformat(), "end": last.isoformat()},
            "type": {"coding": [{"system": SOPT, "code": MEDICAID_SOPT}]}}, f"urn:uuid:{m['id']}-medicaid"))
    for n, code in enumerate(m["clinical"]):
        clinical.append(_entry({
            "resourceType": "Condition", "subject": {"reference": patient_url},
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                               "code": "confirmed"}]},
            "code": {"coding": [{"system": ICD, "code": code}]},
            "recordedDate": _day(rng, date(year, 1, 1), as_of)}, f"urn:uuid:{m['id']}-condition-{n}"))
    claims = [_entry(patient, patient_url, member)] if m["claims"] or m["prior"] else []
    for n, (codes, first, last) in enumerate(((m["claims"], date(year, 1, 1), as_of),
                                              (m["prior"], date(year - 1, 1, 1), date(year - 1, 12, 31)))):
        if not codes:
            continue
        day = _day(rng, first, last)
        claims.append(_entry({
            "resourceType": "Claim", "status": "active", "use": "claim",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
            "patient": {"reference": patient_url},
            "billablePeriod": {"start": day, "end": day}, "created": day, "provider": {"display": "Synthetic provider"},
            "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Synthetic Medicare plan"}}],
            "diagnosis": [{"sequence": k + 1, "diagnosisCodeableConcept": {"coding": [{"system": ICD, "code": c}]}}
                          for k, c in enumerate(codes)]}, f"urn:uuid:{m['id']}-claim-{n}"))
    return clinical, claims


def _truth(m: dict[str, Any], payment_year: int, scorer: Callable[..., Any]) -> dict[str, Any]:
    feb1 = date(payment_year, 2, 1)
    age = feb1.year - m["birth"].year - ((feb1.month, feb1.day) < (m["birth"].month, m["birth"].day))
    kwargs = {"age": age, "sex": "M" if m["gender"] == "male" else "F", "dual_elgbl_cd": m["dual"] or "NA",
              "orec": "1" if age < 65 else "0", "new_enrollee": m["new_enrollee"]}
    out: dict[str, Any] = {"age": age, "scores": {}, "gaps": {}, "rostered": m["roster"] is not None}
    for version in ("28",):
        claims = scorer(m["claims"], version, **kwargs)
        everything = scorer(m["claims"] + m["clinical"], version, **kwargs)
        prior = scorer(m["prior"], version, **kwargs)
        clinical = scorer(m["clinical"], version, **kwargs)
        out["scores"][version] = {"claims": round(claims.risk_score, 6), "all": round(everything.risk_score, 6)}
        ccs = set(everything.cc_to_dx) | set(prior.cc_to_dx)
        for cc in sorted(ccs, key=int):
            cc_type = ("historic" if cc in prior.cc_to_dx else "suspected" if cc in clinical.cc_to_dx else "net-new")
            out["gaps"][cc] = [cc_type, "closed-gap" if cc in claims.cc_to_dx else "open-gap"]
    return out


def _scorer(payment_year: int) -> Callable[..., Any]:
    # Imported here, as server/risk/model.py does: importing hccinfhir loads its default model files (0.15 s
    # CPU), which every `planfit` command and server process would otherwise pay for this module.
    from hccinfhir import utils as hcc_data
    from hccinfhir.model_calculate import calculate_raf

    files = load_risk_model().years[payment_year].files
    dx = hcc_data.load_dx_to_cc_mapping(files.dx_to_cc)
    hierarchies = hcc_data.load_hierarchies(files.hierarchies)
    coefficients = hcc_data.load_coefficients(files.coefficients)

    def score(codes: list[str], version: str, **kwargs: Any) -> Any:
        return calculate_raf(list(codes), MODEL_NAMES[version], dx_to_cc_mapping=dx, hierarchies_mapping=hierarchies,
                             coefficients_mapping=coefficients, **kwargs)

    return score


def member_months_truth(members: list[dict[str, Any]], as_of: date) -> dict[str, list[int]]:
    """"provider|lob" → [base-year, year-1] member months: the base year is the one before `as_of`'s. A
    month counts when the coverage holds its first day, up to `as_of` (member_months.py's rule)."""
    out: dict[str, list[int]] = {}
    for m in members:
        spans = [("dual" if m["dual"] else "medicare", _coverage_start(m, as_of), None)]
        if m["medicaid"]:
            spans.append(("medicaid", *m["medicaid"]))
        for lob, start, end in spans:
            for n, year in enumerate((as_of.year - 1, as_of.year)):
                for day in (date(year, month, 1) for month in range(1, 13)):
                    if start <= day <= min(end or as_of, as_of):
                        out.setdefault(f"{_attributed_to(m, day)}|{lob}", [0, 0])[n] += 1
    return out


def roster_requests(members: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Per provider organization: a draft ATR Group managed for it, and the `$member-add` Parameters of
    the members on its roster (by member id and the organization's NPI, with the attribution period)."""
    out = []
    for provider in (f"{prefix}-{p}" for p in PROVIDERS):
        adds = [{"resourceType": "Parameters", "parameter": [
            {"name": "memberId", "valueIdentifier": {"system": MEMBER_SYSTEM, "value": m["id"]}},
            {"name": "providerNpi", "valueIdentifier": {"system": NPI_SYSTEM, "value": _npi(provider)}},
            {"name": "attributionPeriod", "valuePeriod": {
                "start": start.isoformat(), **({"end": end.isoformat()} if end else {})}}]}
            for m in members if m["roster"] and m["roster"][0] == provider for _, start, end in [m["roster"]]]
        group = {"resourceType": "Group", "meta": {"profile": [ATR + "atr-group"]},
                 "extension": [{"url": ATR + "ext-attributionListStatus", "valueCode": "draft"}],
                 "identifier": [{"system": NPI_SYSTEM, "value": _npi(provider)}],
                 "type": "person", "actual": True, "name": f"Synthetic roster of {provider}",
                 "managingEntity": {"reference": f"Organization/{provider}"}}
        out.append({"group": group, "memberAdd": adds})
    return out


def _capitation_files(rng: random.Random, out: Path, prefix: str) -> None:
    header = "provider,lob,pmpm,base_member_months,base_risk,year1_member_months,year1_risk"
    given, derived = [header], ["provider,lob,pmpm,base_risk,year1_risk"]
    for provider in PROVIDERS:
        for lob, pmpm in LOBS:
            months = rng.randint(200, 5000) * 12
            risk = round(rng.uniform(0.6, 1.6), 3)
            year1_risk = round(risk * rng.uniform(0.95, 1.08), 3)
            given.append(f"{prefix}-{provider},{lob},{pmpm},{months},{risk},{months + rng.randint(-600, 600)},{year1_risk}")
            derived.append(f"{prefix}-{provider},{lob},{pmpm},{risk},{year1_risk}")
    (out / "capitation_rates.csv").write_text("\n".join(given) + "\n")
    (out / "capitation_rates_coverage.csv").write_text("\n".join(derived) + "\n")
    (out / "risk_transfers.csv").write_text("lob,transfers,total_cost_of_care,experience_rated\n"
                                            "medicare,1200000,8000000,false\ndual,300000,4000000,false\nmedicaid,-400000,5000000,false\n"
                                            "commercial,0,6000000,true\n")


def write_bundles(folder: Path, per_member: list[list[dict[str, Any]]], size: int = 500) -> None:
    """Transaction bundles `bundle-NNNNN.json` of about `size` entries, never splitting one member's
    entries (their references to the member's Patient resolve within a bundle)."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("bundle-*.json"):
        old.unlink()
    bundles: list[list[dict[str, Any]]] = [[]]
    for entries in per_member:
        if bundles[-1] and len(bundles[-1]) + len(entries) > size:
            bundles.append([])
        bundles[-1].extend(entries)
    for n, entries in enumerate(b for b in bundles if b):
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
        (folder / f"bundle-{n:05d}.json").write_bytes(orjson.dumps(bundle))


def generate(members: int, seed: int, out: Path, as_of: date, prefix: str = "risk") -> dict[str, Any]:
    """Write the risk population under `out` (its `risk` folder is created); returns the ground truth.
    Member ids are `{prefix}-NNNNNN` (tests sharing a server give each population its own prefix)."""
    out = Path(out)
    rng = random.Random(f"planfit-risk-synth:{seed}")
    payment_year = as_of.year + 1
    scorer = _scorer(payment_year)
    truth: dict[str, Any] = {"payment_year": payment_year, "diagnosis_year": as_of.year, "members": {}}
    organizations = [{"fullUrl": f"{FHIR_BASE}Organization/{prefix}-{p}",
                      "resource": {"resourceType": "Organization", "id": f"{prefix}-{p}", "active": True,
                                   "identifier": [{"system": NPI_SYSTEM, "value": _npi(f"{prefix}-{p}")}],
                                   "name": f"Synthetic provider organization {p}"},
                      "request": {"method": "PUT", "url": f"Organization/{prefix}-{p}"}} for p in PROVIDERS]
    feeds: dict[str, list[list[dict]]] = {"clinical": [organizations], "claims": []}
    generated = []
    for i in range(members):
        m = _member(rng, i, as_of, prefix)
        clinical, claims = _resources(m, rng, as_of)
        feeds["clinical"].append(clinical)
        feeds["claims"].append(claims)
        truth["members"][m["id"]] = _truth(m, payment_year, scorer)
        generated.append(m)
    truth["member_months"] = member_months_truth(generated, as_of)
    for kind, per_member in feeds.items():
        write_bundles(out / kind, per_member)
    _capitation_files(rng, out, prefix)
    (out / "rosters.json").write_bytes(orjson.dumps(roster_requests(generated, prefix), option=orjson.OPT_INDENT_2))
    (out / "ground_truth.json").write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    return truth


def extend(subparsers: argparse._SubParsersAction) -> None:
    """Add the risk population to `planfit synth` (`--risk-members`, default a tenth of `--members`)."""

    def write(args: argparse.Namespace) -> None:
        count = part_size(args, "risk-members", max(1, args.members // 10))
        generate(count, args.seed, Path(args.out) / "risk", args.as_of)

    add_part(subparsers, write, "risk-members",
             "Medicare members of the risk-adjustment population (default: members / 10)")
