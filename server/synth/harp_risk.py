"""HARP referral candidates whose claims show the risk factors of `mappings/harp_risk_factors.json` (issue 17):
psychiatric stays and ACT / targeted case management, with their ground truth."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from server.synth.catalogue import ID_SYSTEM, SOURCE_CLAIMS
from server.synth.medicaid import harp_candidate_clinical
from server.synth.members import Expect, Member, Service

HCPCS = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
REVENUE = "https://www.nubc.org/CodeSystem/RevenueCodes"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
INPATIENT_PSYCH = ("0114", "0124", "0134", "0144", "0154", "0204")  # NUBC psychiatric room and board, ICU
ACT_TCM = ("H0040", "T1017")  # HCPCS: assertive community treatment, targeted case management
THRESHOLDS = {"psychiatric-inpatient-days": 31, "act-tcm-months": 3}


def harp_candidate_risk_factors(m: Member) -> Expect:
    """A referral candidate with psychiatric stays (20-45 days in all, inside 3 years; a stay before them is
    not counted) and/or ACT/TCM claims in 1-5 distinct calendar months (some months twice)."""
    expect = harp_candidate_clinical(m, "smi")
    rng, factors = m.rng, {}
    if rng.random() < 0.7:
        total = rng.randint(20, 45)
        first = rng.randint(1, total - 1) if rng.random() < 0.5 else total
        for days in (first, total - first):
            if days:
                start = m.as_of - timedelta(days=rng.randint(days + 1, 1000))
                m.services.append(Service(rng.choice(INPATIENT_PSYCH), start, start + timedelta(days=days)))
        old = m.as_of - timedelta(days=rng.randint(1130, 1500))
        m.services.append(Service(INPATIENT_PSYCH[0], old, old + timedelta(days=40)))
        factors["psychiatric-inpatient-days"] = total
    if not factors or rng.random() < 0.5:
        months = rng.sample(range(1, 31), rng.randint(1, 5))
        for back in months:
            year, month0 = divmod(m.as_of.year * 12 + m.as_of.month - 1 - back, 12)
            served = date(year, month0 + 1, rng.randint(1, 28))
            m.services += [Service(rng.choice(ACT_TCM), served, served)] * rng.choice((1, 1, 2))
        factors["act-tcm-months"] = len(months)
    expect.risk_factors = factors
    expect.reasons = tuple(f"risk-factor-{code}" for code, value in factors.items() if value >= THRESHOLDS[code])
    return expect


def service_claim(service: Service, p_url: str, cov_url: str, claim_id: str) -> dict[str, Any]:
    """An institutional claim with a psychiatric room-and-board line, or a professional ACT/TCM claim."""
    if service.revenue:
        line = {"revenue": {"coding": [{"system": REVENUE, "code": service.code}]},
                "productOrService": {"coding": [{"system": DATA_ABSENT, "code": "not-applicable"}]}}
    else:
        line = {"productOrService": {"coding": [{"system": HCPCS, "code": service.code}]},
                "servicedDate": service.start.isoformat()}
    return {
        "resourceType": "Claim",
        "meta": {"source": SOURCE_CLAIMS},
        "identifier": [{"system": ID_SYSTEM + "claim-id", "value": claim_id}],
        "status": "active",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                             "code": "institutional" if service.revenue else "professional"}]},
        "use": "claim",
        "patient": {"reference": p_url},
        "billablePeriod": {"start": service.start.isoformat(), "end": service.end.isoformat()},
        "created": service.end.isoformat(),
        "provider": {"display": "Synthetic behavioral health provider"},
        "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority", "code": "normal"}]},
        "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": cov_url}}],
        "item": [{"sequence": 1, **line}],
    }
