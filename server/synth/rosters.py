"""The roster part of `planfit synth`: a payer attribution file with planted mismatches, the population it names, and
the ground truth the reconciliation must find (SPEC §11, issue 21 item 6).

For `participants` members it writes, under `out`:

* `bundle-NNNNN.json`: transaction bundles of the participants the server knows (Patient, Coverage with the
  payer member id, a qualifying Condition, a pre-authorization Claim where the file says `approved`);
* `attribution.csv`: the payer file (`server/rosters/payer_file.py` columns);
* `roster_truth.json`: the planted mismatches, one per (kind, participant id, row, field), plus `extras`:
  known members the file leaves out, which the reconciliation reports as `not-in-payer-file` once they are
  added to the roster with `$member-add`.

Planted, each about 1% of the participants (at least one): participant ids that name nobody, `approved`
authorizations with no stored pre-authorization, `approved` authorizations whose pre-authorization is older
than the pilot's validity (stale), exclusion codes outside the pilot's rule set, a stated qualifying
category (smi) where the member's only diagnosis is of another one (sud), and a stated service category
(from the benefit matrix, `mappings/benefits.json`) where the member's only claim bills a service of another
category. About a fifth of the rows state a service category, each backed by a claim billing one of its
procedure codes. Everything else is consistent, so the reconciliation must find exactly the planted rows.
"""

from __future__ import annotations

import argparse
import csv
import random
import sys
import uuid
from datetime import date, timedelta
from pathlib import Path

import orjson

from server.data_files import data_directory
from server.rosters.payer_file import COLUMNS
from server.rosters.reconcile import PilotRules
from server.synth.parts import add_part, part_size

MEMBER_SYSTEM = "urn:planfit:synth:roster-member"
PAYER_ORG = "synth-roster-payer"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
# A qualifying diagnosis per category (mappings/valuesets: F20.9 schizophrenia is smi, F11.20 opioid
# dependence is sud).
DIAGNOSES = {"smi": "F20.9", "sud": "F11.20"}
PLANTED = ("unknown-participant", "authorization-missing", "authorization-stale", "exclusion-reason-invalid",
           "category-contradicted", "service-category-contradicted")
SERVICE_SHARE = 0.2  # rows stating a service category rather than a diagnosis category
CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
INVALID_EXCLUSIONS = ("moved", "no-show", "ineligible-x")
PER_BUNDLE = 200


def generate(participants: int, seed: int, out: Path, as_of: date) -> dict:
    """Write the bundles, attribution.csv and roster_truth.json; return the truth."""
    if participants < 20:
        raise ValueError("participants must be >= 20 (every planted kind needs room)")
    rules = PilotRules.load()
    rng = random.Random(f"planfit-roster:{seed}")
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("bundle-*.json"):
        old.unlink()
    planted_each = max(1, participants // 100)
    order = list(range(participants))
    rng.shuffle(order)
    kind_of = {index: PLANTED[n // planted_each] for n, index in enumerate(order[:planted_each * len(PLANTED)])}
    extras = order[planted_each * len(PLANTED):planted_each * (len(PLANTED) + 1)]
    rows, entries, expected = [], [], []
    valid_exclusions = sorted(rules.exclusion_reasons)
    services = _service_codes()
    for index in range(participants):
        participant = f"R{seed}-{index:06d}"
        kind = kind_of.get(index)
        attributed = as_of - timedelta(days=rng.randint(0, 90))
        category = rng.choice(sorted(DIAGNOSES))
        if rng.random() < SERVICE_SHARE or kind == "service-category-contradicted":
            category = rng.choice(sorted(services))
        authorization = "approved" if rng.random() < 0.8 or kind in ("authorization-missing", "authorization-stale") \
            else rng.choice(["pending", "not-required"])
        exclusion = rng.choice(valid_exclusions) if rng.random() < 0.1 else ""
        if kind == "exclusion-reason-invalid":
            exclusion = rng.choice(INVALID_EXCLUSIONS)
        if kind == "category-contradicted":
            category = "smi"
        if index not in extras:
            row_no = len(rows) + 1
            rows.append([participant, attributed.isoformat(), category, authorization, exclusion])
            if kind is not None:
                expected.append({"kind": kind, "participant_id": participant, "row": row_no, "field": _FIELDS[kind]})
        if kind == "unknown-participant":
            continue  # the server never hears of this participant
        diagnosis = "sud" if kind == "category-contradicted" else category if category in DIAGNOSES else \
            rng.choice(sorted(DIAGNOSES))
        billed = None
        if category in services:  # the service the member's claim bills: of another category when planted
            billed = services[category] if kind != "service-category-contradicted" else \
                services[rng.choice([c for c in sorted(services) if c != category])]
        authorized = None
        if authorization == "approved" and kind != "authorization-missing":
            age = rules.authorization_valid_days + rng.randint(30, 200) if kind == "authorization-stale" \
                else rng.randint(1, 60)
            authorized = attributed - timedelta(days=age)
        entries.extend(_member_entries(participant, diagnosis, as_of - timedelta(days=100), authorized, billed))
    for item in extras:
        expected.append({"kind": "not-in-payer-file", "participant_id": f"R{seed}-{item:06d}", "row": None,
                         "field": "participant_id"})
    _write_bundles(out, entries)
    with (out / "attribution.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    truth = {"generator": "planfit synth (server/synth/rosters.py)", "seed": seed, "as_of": as_of.isoformat(),
             "participants": participants, "file_rows": len(rows), "member_id_system": MEMBER_SYSTEM,
             "extras": [f"R{seed}-{i:06d}" for i in extras], "expected": expected}
    (out / "roster_truth.json").write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    return truth


_FIELDS = {"unknown-participant": "participant_id", "authorization-missing": "authorization_status",
           "authorization-stale": "authorization_status", "exclusion-reason-invalid": "exclusion_reason",
           "category-contradicted": "qualifying_category", "service-category-contradicted": "qualifying_category"}


def _service_codes() -> dict[str, str]:
    """Each service category of the benefit matrix that has procedure codes → its first procedure code."""
    matrix = orjson.loads((data_directory("mappings") / "benefits.json").read_bytes())
    return {c["code"]: c["procedure_codes"][0] for c in matrix["categories"] if c["procedure_codes"]}


def _member_entries(participant: str, category: str, diagnosed: date, authorized: date | None,
                    billed: str | None) -> list[dict]:
    patient = f"urn:uuid:{_uuid(participant, 'patient')}"
    coverage = f"urn:uuid:{_uuid(participant, 'coverage')}"
    identifier = [{"system": MEMBER_SYSTEM, "value": participant}]
    subject = {"reference": patient}
    resources = [
        (patient, {"resourceType": "Patient", "identifier": identifier, "gender": "unknown"}),
        (coverage, {"resourceType": "Coverage", "identifier": identifier, "status": "active", "beneficiary": subject,
                    "payor": [{"reference": f"Organization/{PAYER_ORG}"}]}),
        (f"urn:uuid:{_uuid(participant, 'condition')}", {
            "resourceType": "Condition", "subject": subject, "recordedDate": diagnosed.isoformat(),
            "code": {"coding": [{"system": ICD, "code": DIAGNOSES[category]}]}}),
    ]
    if authorized is not None:
        resources.append((f"urn:uuid:{_uuid(participant, 'preauth')}",
                          _claim(subject, coverage, authorized, "preauthorization")))
    if billed is not None:
        resources.append((f"urn:uuid:{_uuid(participant, 'claim')}", {
            **_claim(subject, coverage, diagnosed, "claim"),
            "item": [{"sequence": 1, "servicedDate": diagnosed.isoformat(),
                      "productOrService": {"coding": [{"system": HCPCS if billed[0].isalpha() else CPT, "code": billed}]}}]}))
    return [{"fullUrl": url, "resource": body, "request": {"method": "POST", "url": body["resourceType"]}}
            for url, body in resources]


def _claim(subject: dict, coverage: str, created: date, use: str) -> dict:
    return {"resourceType": "Claim", "status": "active", "use": use, "patient": subject, "created": created.isoformat(),
            "provider": {"reference": f"Organization/{PAYER_ORG}"},
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": "professional"}]},
            "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": coverage}}]}


def _uuid(participant: str, what: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{MEMBER_SYSTEM}/{participant}/{what}"))


def _write_bundles(out: Path, entries: list[dict]) -> None:
    """Transaction bundles of PER_BUNDLE whole participants (split at their Patient entries); the first
    also creates the payer Organization the Coverages and Claims name."""
    payer = {"resource": {"resourceType": "Organization", "id": PAYER_ORG, "name": "Synthetic payer"},
             "request": {"method": "PUT", "url": f"Organization/{PAYER_ORG}"}}
    bundles: list[list[dict]] = [[payer]]
    count = 0
    for entry in entries:
        if entry["resource"]["resourceType"] == "Patient":
            if count == PER_BUNDLE:
                bundles.append([])
                count = 0
            count += 1
        bundles[-1].append(entry)
    for number, items in enumerate(bundles, start=1):
        data = {"resourceType": "Bundle", "type": "transaction", "entry": items}
        (out / f"bundle-{number:05d}.json").write_bytes(orjson.dumps(data))


def extend(subparsers: argparse._SubParsersAction) -> None:
    """Add the payer attribution file to `planfit synth` (`--roster-participants`, default a tenth of
    `--members`, at least 20): written under `<out>/roster/`."""

    def write(args: argparse.Namespace) -> None:
        count = part_size(args, "roster-participants", max(20, args.members // 10))
        truth = generate(count, args.seed, Path(args.out) / "roster", args.as_of)
        print(f"{truth['participants']} roster participants -> {Path(args.out) / 'roster'}: {truth['file_rows']} "
              f"file rows, {len(truth['expected'])} planted mismatches", file=sys.stderr)

    add_part(subparsers, write, "roster-participants",
             "participants of the payer attribution file (default: members / 10, at least 20)")
