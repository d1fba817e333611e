"""A planned member as FHIR: the clinical (EHR) and claims transaction bundle entries."""

from __future__ import annotations

import random
from typing import Any

from server.synth.catalogue import (
    BH_PROVIDERS,
    CAT,
    CLIN,
    COV_CLASS,
    CPT,
    DUAL_EXT,
    FAMILY,
    FEMALE,
    GENERAL_PROVIDERS,
    HARP_EXT,
    ICD,
    ID_SYSTEM,
    MALE,
    MEMBER_SYSTEM,
    NPI,
    OPWDD_EXT,
    OUT_OF_STATE,
    PAYERS,
    PLACES,
    REL,
    SCT,
    SOPT,
    SOURCE_CLAIMS,
    SOURCE_CLINICAL,
    V2_0203,
    VER,
    Dx,
)
from server.synth.aid_categories import is_medicaid
from server.synth.harp_risk import service_claim
from server.synth.members import CoverageSpec, Evidence, Member


# Rendering to FHIR


def _uuid(rng: random.Random) -> str:
    b = rng.getrandbits(128)
    b = (b & ~(0xF << 76)) | (0x4 << 76)
    b = (b & ~(0x3 << 62)) | (0x2 << 62)
    h = f"{b:032x}"
    return f"urn:uuid:{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _entry(full_url: str, resource: dict[str, Any], system: str, ident: str) -> dict[str, Any]:
    return {
        "fullUrl": full_url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], "ifNoneExist": f"identifier={system}|{ident}"},
    }


def _coding_icd(dx: Dx, dotted: bool = True) -> dict[str, str]:
    assert dx.icd is not None
    return {"system": ICD, "code": dx.icd if dotted else dx.icd.replace(".", ""), "display": dx.display}


def _code(dx: Dx, coding: str) -> dict[str, Any]:
    codings = []
    if coding in ("icd", "both"):
        codings.append(_coding_icd(dx))
    if coding in ("sct", "both"):
        codings.append({"system": SCT, "code": dx.sct, "display": dx.sct_display})
    return {"coding": codings, "text": dx.sct_display if coding == "sct" else dx.display}


class Renderer:
    """Turns a Member plan into clinical and claims entries."""

    def __init__(self, m: Member) -> None:
        self.m = m
        self.rng = m.rng
        self.given = self.rng.choice(FEMALE if m.gender == "female" else MALE)
        self.family = self.rng.choice(FAMILY)
        self.place, self.state = (OUT_OF_STATE, "NJ") if m.out_of_state else (m.place or self.rng.choice(PLACES), "NY")
        if not m.out_of_state:
            m.place = self.place  # the ground truth's rate region

    def patient(self, source: str) -> dict[str, Any]:
        m = self.m
        extensions = ([{"url": HARP_EXT, "valueCode": m.harp_status}] if m.harp_status else []) + (
            [{"url": OPWDD_EXT, "valueBoolean": True}] if m.opwdd else [])
        return {
            "resourceType": "Patient",
            "meta": {"source": source},
            **({"extension": extensions} if extensions else {}),
            "identifier": [{"system": MEMBER_SYSTEM, "value": m.ident}],
            "active": True,
            "name": [{"use": "official", "family": self.family, "given": [self.given]}],
            "gender": m.gender,
            "birthDate": m.birth.isoformat(),
            "address": [{"city": self.place[0], "state": self.state, "postalCode": self.place[1], "country": "US"}],
        }

    def render(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        m, rng = self.m, self.rng
        ident = m.ident
        clinical: list[dict[str, Any]] = []
        claims: list[dict[str, Any]] = []

        # ---- clinical bundle: Patient, Encounters, Conditions
        p_url = _uuid(rng)
        clinical.append(_entry(p_url, self.patient(SOURCE_CLINICAL), MEMBER_SYSTEM, ident))
        n_enc = n_cond = 0
        for ev in (e for e in m.evidence if e.where == "clinical"):
            n_cond += 1
            enc_url = None
            if ev.category == "encounter-diagnosis":
                n_enc += 1
                enc_url = _uuid(rng)
                enc_id = f"{ident}-E{n_enc}"
                day = ev.when.isoformat()
                clinical.append(_entry(enc_url, {
                    "resourceType": "Encounter",
                    "meta": {"source": SOURCE_CLINICAL},
                    "identifier": [{"system": ID_SYSTEM + "encounter-id", "value": enc_id}],
                    "status": "finished",
                    "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB",
                              "display": "ambulatory"},
                    "subject": {"reference": p_url},
                    "period": {"start": day, "end": day},
                }, ID_SYSTEM + "encounter-id", enc_id))
            cond_id = f"{ident}-D{n_cond}"
            clinical.append(_entry(_uuid(rng), self.condition(ev, p_url, enc_url, cond_id, SOURCE_CLINICAL),
                                   ID_SYSTEM + "condition-id", cond_id))

        # ---- claims bundle: Patient, Coverages, Claims, claims Conditions
        if not m.coverages:
            return clinical, claims
        cp_url = _uuid(rng)
        claims.append(_entry(cp_url, self.patient(SOURCE_CLAIMS), MEMBER_SYSTEM, ident))
        cov_urls: dict[str, str] = {}
        for cov in m.coverages:
            url = _uuid(rng)
            cov_urls[cov.key] = url
            cov_id = f"{ident}-{cov.key}"
            claims.append(_entry(url, self.coverage(cov, cp_url, cov_id), ID_SYSTEM + "coverage-id", cov_id))
        # claims reference the first coverage (the Medicare one for duals: it is created first)
        focal = m.coverages[0]
        n_claim = n_ccond = 0
        for ev in (e for e in m.evidence if e.where != "clinical"):
            if ev.where in ("claim-ref", "claims-condition"):
                n_ccond += 1
                cc_id = f"{ident}-CD{n_ccond}"
                cc_url = _uuid(rng)
                claims.append(_entry(cc_url, self.condition(ev, cp_url, None, cc_id, SOURCE_CLAIMS),
                                     ID_SYSTEM + "condition-id", cc_id))
                if ev.where == "claims-condition":
                    continue
                diagnosis = {"sequence": 1, "diagnosisReference": {"reference": cc_url}}
            else:
                diagnosis = {"sequence": 1, "diagnosisCodeableConcept": {
                    "coding": [_coding_icd(ev.dx, dotted=rng.random() < 0.5)]}}
            n_claim += 1
            claim_id = f"{ident}-C{n_claim}"
            claims.append(_entry(_uuid(rng), self.claim(ev, diagnosis, cp_url, cov_urls[focal.key], claim_id),
                                 ID_SYSTEM + "claim-id", claim_id))
        for n, service in enumerate(m.services, 1):
            claim_id = f"{ident}-S{n}"
            claims.append(_entry(_uuid(rng), service_claim(service, cp_url, cov_urls[focal.key], claim_id),
                                 ID_SYSTEM + "claim-id", claim_id))
        return clinical, claims

    def condition(self, ev: Evidence, p_url: str, enc_url: str | None, cond_id: str, source: str) -> dict[str, Any]:
        res: dict[str, Any] = {
            "resourceType": "Condition",
            "meta": {"source": source},
            "identifier": [{"system": ID_SYSTEM + "condition-id", "value": cond_id}],
        }
        flavor = ev.flavor
        if flavor == "entered-in-error":
            res["verificationStatus"] = {"coding": [{"system": VER, "code": "entered-in-error"}]}
        elif flavor == "refuted":
            res["clinicalStatus"] = {"coding": [{"system": CLIN, "code": "inactive"}]}
            res["verificationStatus"] = {"coding": [{"system": VER, "code": "refuted"}]}
        elif flavor == "resolved":
            res["clinicalStatus"] = {"coding": [{"system": CLIN, "code": "resolved"}]}
            res["verificationStatus"] = {"coding": [{"system": VER, "code": "confirmed"}]}
        else:
            res["clinicalStatus"] = {"coding": [{"system": CLIN, "code": ev.clinical_status}]}
            res["verificationStatus"] = {"coding": [{"system": VER, "code": ev.verification}]}
        res["category"] = [{"coding": [{"system": CAT, "code": ev.category}]}]
        res["code"] = _code(ev.dx, ev.coding)
        res["subject"] = {"reference": p_url}
        if enc_url:
            res["encounter"] = {"reference": enc_url}
        day = ev.when.isoformat()
        res["onsetDateTime"] = (ev.onset or ev.when).isoformat()
        if ev.abated:
            res["abatementDateTime"] = ev.abated.isoformat()
        res["recordedDate"] = day
        return res

    def coverage(self, cov: CoverageSpec, p_url: str, cov_id: str) -> dict[str, Any]:
        res: dict[str, Any] = {"resourceType": "Coverage", "meta": {"source": SOURCE_CLAIMS}}
        extensions = ([{"url": DUAL_EXT, "valueCode": cov.dual_code}] if cov.dual_code else []) + (
            [{"url": HARP_EXT, "valueCode": cov.harp_status}] if cov.harp_status else [])
        if extensions:
            res["extension"] = extensions
        res["identifier"] = [
            {"system": ID_SYSTEM + "coverage-id", "value": cov_id},
            {"type": {"coding": [{"system": V2_0203, "code": "MB", "display": "Member Number"}]},
             "system": ID_SYSTEM + f"{cov.payer}-member-number", "value": f"{self.m.ident}-{cov.payer}"},
        ]
        res["status"] = cov.status
        if cov.sopt:
            res["type"] = {"coding": [{"system": SOPT, "code": cov.sopt}]}
        res["subscriberId"] = f"{self.m.ident}-{cov.payer}"
        res["beneficiary"] = {"reference": p_url}
        res["relationship"] = {"coding": [{"system": REL, "code": "self"}]}
        period = {"start": cov.start.isoformat()}
        if cov.end:
            period["end"] = cov.end.isoformat()
        res["period"] = period
        res["payor"] = [{"identifier": {"system": ID_SYSTEM + "payer-id", "value": cov.payer},
                         "display": PAYERS[cov.payer]}]
        classes = [("plan", cov.plan)] if cov.plan else []
        if self.m.aid_category_text and is_medicaid(cov):
            classes.append(("class", self.m.aid_category_text))  # the Medicaid aid category (rate cells)
        if classes:
            res["class"] = [{"type": {"coding": [{"system": COV_CLASS, "code": code}]}, "value": value}
                            for code, value in classes]
        return res

    def claim(self, ev: Evidence, diagnosis: dict[str, Any], p_url: str, cov_url: str, claim_id: str) -> dict[str, Any]:
        rng = self.rng
        bh = bool(ev.dx.cats & {"smi", "sud"})
        npi, prov = rng.choice(BH_PROVIDERS if bh else GENERAL_PROVIDERS)
        day = ev.when.isoformat()
        cpt = rng.choice(("90837", "90834", "99214")) if bh else rng.choice(("99213", "99214", "99203", "99396"))
        amount = float(rng.randint(80, 320))
        return {
            "resourceType": "Claim",
            "meta": {"source": SOURCE_CLAIMS},
            "identifier": [{"system": ID_SYSTEM + "claim-id", "value": claim_id}],
            "status": "active",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/claim-type",
                                 "code": "professional"}]},
            "use": "claim",
            "patient": {"reference": p_url},
            "billablePeriod": {"start": day, "end": day},
            "created": day,
            "provider": {"identifier": {"system": NPI, "value": npi}, "display": prov},
            "priority": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/processpriority",
                                     "code": "normal"}]},
            "diagnosis": [diagnosis],
            "insurance": [{"sequence": 1, "focal": True, "coverage": {"reference": cov_url}}],
            "item": [{
                "sequence": 1,
                "diagnosisSequence": [1],
                "productOrService": {"coding": [{"system": CPT, "code": cpt}]},
                "servicedDate": day,
                "net": {"value": amount, "currency": "USD"},
            }],
            "total": {"value": amount, "currency": "USD"},
        }
