"""The intervention part of `planfit synth`: for the members of the risk population (`<out>/risk`, whose
ground truth carries their CMS-HCC scores), ED visits, inpatient stays and care plans, written under
`<out>/interventions/` as transaction bundles with `ground_truth.json` (per member: whether the roster
holds them as active, the payment score and tier, ED visits, admissions and care-plan variance, as the
priority list of the week of `as_of` must show them). Post the risk bundles first: the Patient entries
here are conditional (`ifNoneExist` on the member identifier) and resolve to the risk population's.

Each count is planted, not computed by the rules under test: an ED visit is an EMER Encounter, a claim with
place of service 23, an institutional claim with revenue code 045x, or an Encounter and a claim on the same
day (one visit); an admission an IMP Encounter or a place-of-service 21 claim. Decoys that must not count:
visits before the window, a cancelled ED Encounter, an ambulatory Encounter, an office claim (place of
service 11), completed and future activities, and a revoked CarePlan's overdue activity."""

from __future__ import annotations

import argparse
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import orjson

from server.interventions.config import PriorityConfig, load_priority_config
from server.interventions.priority import Week
from server.risk.model import load_risk_model
from server.synth.risk import MEMBER_SYSTEM, write_bundles
from server.synth.parts import add_part

ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
POS = "https://www.cms.gov/Medicare/Coding/place-of-service-codes/Place_of_Service_Code_Set"
REVENUE = "https://www.nubc.org/CodeSystem/RevenueCodes"
CPT = "http://www.ama-assn.org/go/cpt"
ACTIVE_SHARE = 0.85


class _Member:
    def __init__(self, member_id: str):
        self.id = member_id
        self.url = f"urn:uuid:{member_id}-interventions-patient"
        self.entries: list[dict[str, Any]] = [{
            "fullUrl": self.url,
            "resource": {"resourceType": "Patient", "identifier": [{"system": MEMBER_SYSTEM, "value": member_id}]},
            "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={MEMBER_SYSTEM}|{member_id}"}}]

    def add(self, resource: dict[str, Any]) -> None:
        self.entries.append({"fullUrl": f"urn:uuid:{self.id}-interventions-{len(self.entries)}", "resource": resource,
                             "request": {"method": "POST", "url": resource["resourceType"]}})

    def encounter(self, day: date, klass: str, status: str = "finished") -> None:
        self.add({"resourceType": "Encounter", "status": status, "class": {"system": ACT, "code": klass},
                  "subject": {"reference": self.url}, "period": {"start": day.isoformat(), "end": day.isoformat()}})

    def claim(self, day: date, *, pos: str | None = None, revenue: str | None = None) -> None:
        item: dict[str, Any] = {"sequence": 1, "productOrService": {"coding": [{"system": CPT, "code": "99284"}]},
                                "servicedDate": day.isoformat()}
        if pos:
            item["locationCodeableConcept"] = {"coding": [{"system": POS, "code": pos}]}
        if revenue:
            item["revenue"] = {"coding": [{"system": REVENUE, "code": revenue}]}
        kind = "institutional" if revenue else "professional"
        self.add({"resourceType": "Claim", "status": "active", "use": "claim",
                  "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type", "code": kind}]},
                  "patient": {"reference": self.url}, "created": day.isoformat(),
                  "billablePeriod": {"start": day.isoformat(), "end": day.isoformat()},
                  "provider": {"display": "Synthetic hospital"},
                  "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority",
                                           "code": "normal"}]},
                  "insurance": [{"sequence": 1, "focal": True, "coverage": {"display": "Synthetic Medicare plan"}}],
                  "item": [item]})

    def care_plan(self, status: str, activities: list[tuple[str, date, date]]) -> None:
        self.add({"resourceType": "CarePlan", "status": status, "intent": "plan", "subject": {"reference": self.url},
                  "activity": [{"detail": {"status": s, "scheduledPeriod": {"start": a.isoformat(), "end": b.isoformat()}}}
                               for s, a, b in activities]})


def _days(rng: random.Random, first: date, last: date, count: int) -> list[date]:
    span = (last - first).days + 1
    return [first + timedelta(days=d) for d in sorted(rng.sample(range(span), min(count, span)))]


def _plant(rng: random.Random, m: _Member, config: PriorityConfig, week: Week, as_of: date) -> dict[str, int]:
    ed_first = week.start + timedelta(days=7 - config.windows.ed_days)
    ip_first = week.start + timedelta(days=7 - config.windows.inpatient_days)
    ed_days = _days(rng, ed_first, as_of, rng.choice((0, 0, 1, 1, 2, 3)))
    for day in ed_days:
        form = rng.randrange(4)
        if form in (0, 3):
            m.encounter(day, "EMER")
        if form in (1, 3):
            m.claim(day, pos="23")
        if form == 2:
            m.claim(day, revenue=f"045{rng.randrange(10)}")
    ip_days = _days(rng, ip_first, as_of, rng.choice((0, 0, 0, 1, 2)))
    for day in ip_days:
        m.encounter(day, "IMP") if rng.random() < 0.5 else m.claim(day, pos="21")
    if rng.random() < 0.5:  # decoys
        m.encounter(ed_first - timedelta(days=rng.randint(1, 60)), "EMER")
        m.claim(ip_first - timedelta(days=rng.randint(1, 60)), pos="21")
        m.encounter(as_of - timedelta(days=rng.randint(0, 20)), "EMER", status="cancelled")
        m.encounter(as_of - timedelta(days=rng.randint(0, 20)), "AMB")
        m.claim(as_of - timedelta(days=rng.randint(0, 20)), pos="11")
    past_due, unstarted = rng.choice((0, 0, 1, 2)), rng.choice((0, 0, 1))
    activities = [(rng.choice(("in-progress", "scheduled", "not-started")), as_of - timedelta(days=60 + i),
                   as_of - timedelta(days=1 + i)) for i in range(past_due)]
    activities += [("not-started", as_of - timedelta(days=3 + i), week.end + timedelta(days=10 + i))
                   for i in range(unstarted)]
    activities += [("completed", as_of - timedelta(days=40), as_of - timedelta(days=30)),
                   ("not-started", week.end + timedelta(days=3), week.end + timedelta(days=30)),
                   ("scheduled", as_of - timedelta(days=5), week.end + timedelta(days=20))]
    m.care_plan("active", activities)
    if rng.random() < 0.3:
        m.care_plan("revoked", [("in-progress", as_of - timedelta(days=50), as_of - timedelta(days=20))])
    return {"ed": len(ed_days), "inpatient": len(ip_days), "variance": past_due + unstarted}


def generate(risk_truth: dict[str, Any], seed: int, out: Path, as_of: date) -> dict[str, Any]:
    """Write the bundles and `ground_truth.json` under `out`; returns the ground truth."""
    out = Path(out)
    config = load_priority_config()
    week = Week.of(as_of)
    year = risk_truth["payment_year"]
    py = load_risk_model().years[year]
    if py.versions != ["28"]:
        raise ValueError(f"payment year {year} blends models {py.versions}; the risk ground truth scores V28 only")
    factor = py.models[0].weight / py.models[0].normalization * (1 - py.coding_intensity)
    rng = random.Random(f"planfit-interventions-synth:{seed}")
    truth: dict[str, Any] = {"week": week.start.isoformat(), "paymentYear": year, "members": {}}
    per_member: list[list[dict[str, Any]]] = []
    for member_id in sorted(risk_truth["members"]):
        m = _Member(member_id)
        planted = _plant(rng, m, config, week, as_of)
        score = risk_truth["members"][member_id]["scores"]["28"]["all"] * factor
        tier = next(t for t in config.tiers if score >= t.min_score)
        truth["members"][member_id] = {"active": rng.random() < ACTIVE_SHARE, "score": round(score, 6),
                                       "tier": tier.code, **planted}
        per_member.append(m.entries)
    write_bundles(out, per_member)
    (out / "ground_truth.json").write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2))
    return truth


def extend(subparsers: argparse._SubParsersAction) -> None:
    """Add the intervention inputs to `planfit synth`, for the risk population it has just written."""

    def write(args: argparse.Namespace) -> None:
        risk_truth = orjson.loads((Path(args.out) / "risk" / "ground_truth.json").read_bytes())
        truth = generate(risk_truth, args.seed, Path(args.out) / "interventions", args.as_of)
        print(f"{len(truth['members'])} intervention members (week of {truth['week']}) -> "
              f"{Path(args.out) / 'interventions'}", flush=True)

    add_part(subparsers, write)
