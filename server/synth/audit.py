"""The audit part of `planfit synth` (issue 22 item 5): NY Medicaid members seen by provider organizations,
their claims with realistic lags, adjudicated EOBs with denials, and the next quarter's changes, with the
ground truth of the quarterly reconciliation, encounter completeness and denial classification.

Written under `<out>/audit/`: `clinical/` bundles (Organizations, PractitionerRoles, Patients, Coverages,
Encounters with a `serviceProvider`, Conditions asserted by an organization's PractitionerRole or recorded
in an Encounter), `claims/` bundles (Claims billing encounters `created` some days after the visit, and
ExplanationOfBenefits with denied lines), `changes/` bundles (what happens between the two quarters:
members moved to HARP, members newly diagnosed) and `ground_truth.json`.

Scenarios (fixed shares, order shuffled by the seed): `persisting` (mainstream MMC adult with a clinical
SMI diagnosis: a HARP candidate in both quarters), `resolved` (the same, moved to HARP by the changes),
`new` (mainstream, diagnosed with SMI by the changes), `harp` (in HARP with SMI: aligned) and `mainstream`
(mainstream, hypertension only: aligned). The rules assumed are the alignment engine's (SPEC §4.2: HARP
needs Medicaid, age >= 21 and an SMI/SUD diagnosis in the 24-month lookback).

Ground truth is computed from what was generated, not by the server's code:
* reconciliation: `new`, `resolved`, `persisting` member identifiers between the quarter of `as_of` and
  the one before;
* completeness: per organization (identifier value) and month, the Conditions and Encounters and how many
  an active Claim/EOB of the member for that day matched, created 0 to `window` days later, with the
  nearest-rank lag p50/p90 (the rule of `server/audit/completeness.py`);
* denials: each denied line's classification. A CPST line (H0036, CARC 204) of a HARP candidate on or
  after the SMI diagnosis is `product-mismatch`; the same line before the diagnosis, or for a member
  enrolled where it is covered or not a candidate, falls to its CARC class (204: `other`; 197:
  `authorization`); an office visit (99213) denied with CARC 16 is `coding` (no benefit category).
"""

from __future__ import annotations

import argparse
import random
from collections import defaultdict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

from server.audit.completeness import DEFAULT_WINDOW_DAYS, PERCENTILES
from server.audit.quarter import Quarter
from server.synth.parts import add_part, part_size

MEMBER_SYSTEM = "https://planfit.dev/synth/audit-member-id"
RESOURCE_SYSTEM = "https://planfit.dev/synth/audit-resource-id"
ORG_SYSTEM = "https://planfit.dev/synth/audit-organization"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
CPT = "http://www.ama-assn.org/go/cpt"
DISCRIMINATOR = "http://hl7.org/fhir/us/carin-bb/CodeSystem/C4BBAdjudicationDiscriminator"
CARC = "https://x12.org/codes/claim-adjustment-reason-codes"
ADJUDICATION = "http://terminology.hl7.org/CodeSystem/adjudication"
COVERAGE_CLASS = "http://terminology.hl7.org/CodeSystem/coverage-class"
CLAIM_TYPE = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]}
ORGANIZATIONS = ("north-clinic", "river-health", "summit-bh")
SCENARIOS = (("persisting", 20), ("resolved", 10), ("new", 10), ("harp", 15), ("mainstream", 45))
BUNDLE = 500


def _scenarios(members: int, rng: random.Random) -> list[str]:
    out = [name for name, share in SCENARIOS for _ in range(members * share // 100)]
    out += ["mainstream"] * (members - len(out))
    rng.shuffle(out)
    return out


class _Feeds:
    """Bundle entries per feed; each entry a POST (or a conditional PUT) with its identifier."""

    def __init__(self) -> None:
        self.entries: dict[str, list[list[dict]]] = defaultdict(list)

    def member(self, feed: str, entries: list[dict]) -> None:
        """One member's entries, kept in one bundle (their urn:uuid references stay inside it)."""
        bundles = self.entries[feed]
        if not bundles or len(bundles[-1]) + len(entries) > BUNDLE:
            bundles.append(_shared_entries() if feed != "claims" else [])
        bundles[-1].extend(entries)

    def write(self, out: Path) -> None:
        for feed, bundles in self.entries.items():
            (out / feed).mkdir(parents=True, exist_ok=True)
            for old in (out / feed).glob("bundle-*.json"):
                old.unlink()
            for n, entries in enumerate(bundles):
                (out / feed / f"bundle-{n:05d}.json").write_bytes(
                    orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}))


def _post(resource: dict, key: str, system: str = RESOURCE_SYSTEM) -> dict:
    resource["identifier"] = [{"system": system, "value": key}]
    return {"fullUrl": f"urn:uuid:{key}", "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"], "ifNoneExist": f"identifier={system}|{key}"}}


def _shared_entries() -> list[dict]:
    """Each organization and its PractitionerRole, created by the first bundle that names them."""
    out = []
    for org in ORGANIZATIONS:
        out.append(_post({"resourceType": "Organization", "active": True, "name": org}, org, ORG_SYSTEM))
        out.append(_post({"resourceType": "PractitionerRole", "active": True,
                          "organization": {"reference": f"urn:uuid:{org}"}}, f"{org}-role"))
    return out


def _ref(key: str) -> dict:
    return {"reference": f"urn:uuid:{key}"}


def _patient(ident: str, birth: date) -> dict:
    return _post({"resourceType": "Patient", "birthDate": birth.isoformat()}, ident, MEMBER_SYSTEM)


def _coverage(ident: str, plan: str, method: str = "POST") -> dict:
    entry = _post({"resourceType": "Coverage", "status": "active", "beneficiary": _ref(ident),
                   "payor": [{"display": "Synthetic NY Medicaid plan"}], "period": {"start": "2020-01-01"},
                   "class": [{"type": {"coding": [{"system": COVERAGE_CLASS, "code": "plan"}]}, "value": plan}]},
                  f"{ident}-coverage")
    if method == "PUT":  # a conditional update of the member's coverage
        entry["request"] = {"method": "PUT", "url": f"Coverage?identifier={RESOURCE_SYSTEM}|{ident}-coverage"}
    return entry


def _condition(ident: str, key: str, code: str, day: date, org: str, encounter: str | None) -> dict:
    resource = {"resourceType": "Condition", "subject": _ref(ident), "recordedDate": day.isoformat(),
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                               "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                                                   "code": "confirmed"}]},
                "code": {"coding": [{"system": ICD, "code": code}]}}
    if encounter:
        resource["encounter"] = _ref(encounter)
    else:
        resource["asserter"] = _ref(f"{org}-role")
    return _post(resource, key)


def _encounter(ident: str, key: str, day: date, org: str) -> dict:
    return _post({"resourceType": "Encounter", "status": "finished", "subject": _ref(ident),
                  "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                  "period": {"start": day.isoformat(), "end": day.isoformat()}, "serviceProvider": _ref(org)}, key)


def _claim(ident: str, key: str, served: date, created: date) -> dict:
    return _post({"resourceType": "Claim", "status": "active", "use": "claim", "type": CLAIM_TYPE,
                  "patient": _ref(ident), "billablePeriod": {"start": served.isoformat(), "end": served.isoformat()},
                  "created": created.isoformat(), "provider": {"display": "Synthetic provider"},
                  "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
                  "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Synthetic NY Medicaid plan"}}]}, key)


def _eob(ident: str, key: str, lines: list[tuple[str, str, date, float, str]], created: date) -> dict:
    items = [{"sequence": n, "productOrService": {"coding": [{"system": system, "code": code}]},
              "servicedDate": served.isoformat(),
              "adjudication": [{"category": {"coding": [{"system": ADJUDICATION, "code": "submitted"}]},
                                "amount": {"value": amount, "currency": "USD"}},
                               {"category": {"coding": [{"system": DISCRIMINATOR, "code": "denialreason"}]},
                                "reason": {"coding": [{"system": CARC, "code": carc}]}}]}
             for n, (system, code, served, amount, carc) in enumerate(lines, 1)]
    return _post({"resourceType": "ExplanationOfBenefit", "status": "active", "use": "claim", "type": CLAIM_TYPE,
                  "patient": _ref(ident), "created": created.isoformat(), "insurer": {"display": "Synthetic plan"},
                  "provider": {"identifier": {"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}},
                  "outcome": "complete", "insurance": [{"focal": True, "coverage": {"display": "Synthetic plan"}}],
                  "item": items}, key)


class _Truth:
    """Clinical records and claim days as generated, for the completeness ground truth."""

    def __init__(self) -> None:
        self.records: list[tuple[str, str, date, str]] = []  # (member, type, day, organization)
        self.billed: dict[tuple[str, date], list[date]] = defaultdict(list)  # (member, service day) → created

    def completeness(self, start: date, end: date, window: int) -> list[dict[str, Any]]:
        cells: dict[tuple[str, str], dict[str, Any]] = {}
        for member, rtype, day, org in self.records:
            if not start <= day <= end:
                continue
            cell = cells.setdefault((org, day.strftime("%Y-%m")), {"Condition": [0, 0], "Encounter": [0, 0], "lags": []})
            lags = [(created - day).days for created in self.billed.get((member, day), []) if 0 <= (created - day).days <= window]
            cell[rtype][0] += 1
            if lags:
                cell[rtype][1] += 1
                cell["lags"].append(min(lags))
        out = []
        for (org, month), cell in sorted(cells.items()):
            lags = sorted(cell["lags"])
            rank = {p: lags[-(-p * len(lags) // 100) - 1] if lags else None for p in PERCENTILES}
            out.append({"organization": org, "month": month, "conditions": cell["Condition"][0],
                        "conditions_matched": cell["Condition"][1], "encounters": cell["Encounter"][0],
                        "encounters_matched": cell["Encounter"][1], "lag_p50": rank[50], "lag_p90": rank[90]})
        return out


def _member(i: int, scenario: str, seed: int, as_of: date, feeds: _Feeds, truth: _Truth,
            denials: dict[str, str]) -> None:
    rng = random.Random(f"planfit-audit-synth:{seed}:{i}")
    ident = f"audit-{i:06d}"
    birth = date(as_of.year - rng.randint(25, 60), rng.randint(1, 12), rng.randint(1, 28))
    visits = sorted({as_of - timedelta(days=rng.randint(1, 330)) for _ in range(rng.randint(1, 3))})
    clinical = [_patient(ident, birth), _coverage(ident, "HARP" if scenario == "harp" else "MMC")]
    claims = [_patient(ident, birth)]
    for n, day in enumerate(visits):
        org = rng.choice(ORGANIZATIONS)
        clinical.append(_encounter(ident, f"{ident}-encounter-{n}", day, org))
        truth.records.append((ident, "Encounter", day, org))
        lag = min(int(rng.expovariate(1 / 25)), 240)
        if rng.random() < 0.8 and day + timedelta(days=lag) <= as_of:  # billed, and the claim has arrived
            claims.append(_claim(ident, f"{ident}-claim-{n}", day, day + timedelta(days=lag)))
            truth.billed[(ident, day)].append(day + timedelta(days=lag))
    diagnosed, org = visits[0], truth.records[-len(visits)][3]
    code = "I10" if scenario in ("mainstream", "new") else "F20.9"
    in_encounter = f"{ident}-encounter-0" if rng.random() < 0.5 else None
    clinical.append(_condition(ident, f"{ident}-condition", code, diagnosed, org, in_encounter))
    truth.records.append((ident, "Condition", diagnosed, org))
    lines: list[tuple[str, str, date, float, str, str]] = []
    if scenario == "persisting":
        served = min(diagnosed + timedelta(days=rng.randint(0, 20)), as_of)
        lines += [(HCPCS, "H0036", served, 120.0, "204", "product-mismatch"),
                  (CPT, "90837", served, 150.0, "197", "authorization"), (CPT, "99213", served, 90.0, "16", "coding")]
        if rng.random() < 0.5:
            lines.append((HCPCS, "H0036", diagnosed - timedelta(days=60), 80.0, "204", "other"))
    elif scenario == "harp" and rng.random() < 0.5:
        lines.append((HCPCS, "H0036", diagnosed, 120.0, "197", "authorization"))
    elif scenario == "mainstream" and rng.random() < 0.2:
        lines.append((HCPCS, "H0036", diagnosed, 120.0, "204", "other"))
    if lines:
        created = min(max(line[2] for line in lines) + timedelta(days=10), as_of)
        claims.append(_eob(ident, f"{ident}-eob", [line[:5] for line in lines], created))
        for n, line in enumerate(lines, 1):
            denials[f"{ident}#{n}"] = line[5]
            truth.billed[(ident, line[2])].append(created)
    feeds.member("clinical", clinical)
    feeds.member("claims", claims)
    if scenario == "resolved":
        feeds.member("changes", [_patient(ident, birth), _coverage(ident, "HARP", "PUT")])
    elif scenario == "new":
        day = as_of - timedelta(days=rng.randint(1, 20))
        feeds.member("changes", [_patient(ident, birth), _condition(ident, f"{ident}-condition-smi", "F20.9", day, org, None)])
        truth.records.append((ident, "Condition", day, org))


def generate(members: int, seed: int, out: Path, as_of: date) -> dict[str, Any]:
    """Write the audit population under `out`; returns (and writes) the ground truth."""
    out = Path(out)
    scenarios = _scenarios(members, random.Random(f"planfit-audit-synth:{seed}"))
    feeds, truth, denials = _Feeds(), _Truth(), {}
    for i, scenario in enumerate(scenarios):
        _member(i, scenario, seed, as_of, feeds, truth, denials)
    feeds.write(out)
    current = Quarter.of(as_of)
    start = as_of - timedelta(days=365)  # every clinical record falls in the year up to as_of
    by_scenario: dict[str, list[str]] = defaultdict(list)
    for i, scenario in enumerate(scenarios):
        by_scenario[scenario].append(f"audit-{i:06d}")
    result = {
        "as_of": as_of.isoformat(), "members": members,
        "quarters": {"previous": str(current.previous), "current": str(current)},
        "reconciliation": {change: by_scenario[change] for change in ("new", "resolved", "persisting")},
        "completeness": {"window": DEFAULT_WINDOW_DAYS, "period": {"start": start.isoformat(), "end": as_of.isoformat()},
                         "rows": truth.completeness(start, as_of, DEFAULT_WINDOW_DAYS)},
        "denials": denials,
    }
    (out / "ground_truth.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    return result


def extend(subparsers: argparse._SubParsersAction) -> None:
    """Add the audit population to `planfit synth` (`--audit-members`, default a tenth of `--members`)."""

    def write(args: argparse.Namespace) -> None:
        count = part_size(args, "audit-members", max(10, args.members // 10))
        generate(count, args.seed, Path(args.out) / "audit", args.as_of)

    add_part(subparsers, write, "audit-members", "members of the enrollment-audit population (default: members / 10)")
