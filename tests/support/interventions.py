"""Helpers of the intervention tests: the synthetic risk population with its ED visits, admissions and
care plans loaded over HTTP, scored, and made the active participants of a roster."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import httpx

from server.synth import interventions as intervention_synth
from server.synth import risk as risk_synth
from tests.support.alignment import member_ids, post_bundles
from tests.support.servers import RunningServer, unique
from tests.support.rosters import Population, draft_group, make_population, parameters

AS_OF = date(2026, 6, 17)  # a Wednesday of a past week; its payment year (2027) is configured
PERIOD = ("valuePeriod", {"start": "2026-01-01"})


@dataclass
class Loaded:
    truth: dict[str, Any]
    ids: dict[str, str]  # member id → Patient id
    roster: str  # Group id
    population: Population  # the roster's organization and attributed practitioner

    def value(self, member: str, key: str) -> Any:
        return self.truth["members"][member][key]


def load(server: RunningServer, client: httpx.Client, out: Path, members: int, seed: int) -> Loaded:
    risk_truth = risk_synth.generate(members, seed, out / "risk", AS_OF, prefix=unique("iv"))
    truth = intervention_synth.generate(risk_truth, seed, out / "interventions", AS_OF)
    with server.http(server.auth, timeout=600) as c, \
            server.http(server.claims_auth, timeout=600) as claims:
        post_bundles(c, out / "risk" / "clinical")
        post_bundles(claims, out / "risk" / "claims")
        post_bundles(c, out / "interventions")
    known = member_ids(client, risk_synth.MEMBER_SYSTEM)
    ids = {m: known[m] for m in truth["members"]}
    r = client.post("/$risk-evaluate", params={"paymentYear": str(truth["paymentYear"])})
    assert r.status_code == 200, r.text[:2000]
    population = make_population(client, 0)
    created = client.post("/Group", json=draft_group(population))
    assert created.status_code == 201, created.text
    gid = created.json()["id"]
    for member, pid in ids.items():
        patient = ("valueReference", {"reference": f"Patient/{pid}"})
        r = client.post(f"/Group/{gid}/$member-add", json=parameters(
            patientReference=patient, providerReference=("valueReference", {"reference": f"Practitioner/{population.practitioner}"}),
            attributionPeriod=PERIOD))
        assert r.status_code == 200, r.text
        if truth["members"][member]["active"]:  # the others stay undecided: not active participants
            r = client.post(f"/Group/{gid}/$member-decision", json=parameters(patientReference=patient,
                                                                             decision=("valueCode", "active")))
            assert r.status_code == 200, r.text
    return Loaded(truth, ids, gid, population)


def priority(client: httpx.Client, loaded: Loaded, week: str | None = None) -> httpx.Response:
    return client.post("/List/$intervention-priority", json=parameters(
        roster=("valueReference", {"reference": f"Group/{loaded.roster}"}),
        week=("valueDate", week or loaded.truth["week"]),
        paymentYear=("valueInteger", loaded.truth["paymentYear"])))


def entry_values(entry: dict) -> dict[str, Any]:
    """An entry's patient id, tier and inputs, from its flag and `intervention-priority` extension."""
    (ext,) = entry["extension"]
    values = {e["url"]: next(v for k, v in e.items() if k.startswith("value")) for e in ext["extension"]}
    return {"patient": entry["item"]["reference"].split("/")[1], "tier": entry["flag"]["coding"][0]["code"], **values}
