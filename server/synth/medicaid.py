"""Scenarios of Medicaid-only members (mainstream managed care, HARP), commercial members and
coverage problems; each plans one member and returns the finding it expects."""

from __future__ import annotations

from datetime import timedelta

from server.synth.catalogue import MEDICARE_ELIGIBLE, Dx
from server.synth.members import Expect, Member, by_priority


def mmc_aligned(m: Member) -> Expect:
    m.set_age(0, 64)
    m.cover("ny-mmc")
    m.noise(bh=True, mdd=True)
    return Expect("aligned", "ny-mmc", "ny-mmc", ("ny-mmc",))


def mmc_under21_bh(m: Member) -> Expect:
    if m.rng.random() < 0.3:
        m.set_age_day_before(21)
    else:
        m.set_age(18, 20)
    m.cover("ny-mmc")
    cat = m.rng.choice(("smi", "sud"))
    clinical_only = m.rng.random() < 0.5
    if clinical_only:
        m.clinical(m.bh_dx(cat))
    else:
        m.claims_any(m.claim_dx(cat))
        if m.rng.random() < 0.5:
            m.clinical(m.bh_dx(cat))
    m.noise()
    return Expect("aligned", "ny-mmc", "ny-mmc", ("ny-mmc",), non_claims=(cat,) if clinical_only else ())


def harp_candidate_clinical(m: Member, cat: str) -> Expect:
    m.set_age(21, 64)
    m.cover("ny-mmc")
    for _ in range(m.rng.randint(1, 2)):
        m.clinical(m.bh_dx(cat))
    m.noise(bh=True)
    return Expect("misaligned", "ny-mmc", "ny-harp", by_priority("ny-harp", "ny-mmc"), non_claims=(cat,))


def harp_candidate_clinical_smi(m: Member) -> Expect:
    return harp_candidate_clinical(m, "smi")


def harp_candidate_clinical_sud(m: Member) -> Expect:
    return harp_candidate_clinical(m, "sud")


def harp_candidate_claims(m: Member) -> Expect:
    return _harp_candidate_by_claim(m, "claim-coded", clinical_share=0.6)


def harp_candidate_claim_reference(m: Member) -> Expect:
    return _harp_candidate_by_claim(m, "claim-ref", clinical_share=0.5)


def _harp_candidate_by_claim(m: Member, form: str, clinical_share: float) -> Expect:
    """An adult MMC member whose SMI or SUD diagnosis is on a claim (coded on it, or by reference); some also
    have it in the EMR."""
    m.set_age(21, 64)
    m.cover("ny-mmc")
    cat = m.rng.choice(("smi", "sud"))
    m.claims(m.claim_dx(cat), form)
    if m.rng.random() < clinical_share:
        m.clinical(m.bh_dx(cat))
    m.noise()
    return Expect("misaligned", "ny-mmc", "ny-harp", by_priority("ny-harp", "ny-mmc"))


def harp_candidate_age21_today(m: Member) -> Expect:
    m.set_exact_birthday(21)
    m.cover("ny-mmc")
    m.clinical(m.bh_dx("smi"))
    m.noise()
    return Expect("misaligned", "ny-mmc", "ny-harp", by_priority("ny-harp", "ny-mmc"), non_claims=("smi",))


def harp_aligned(m: Member) -> Expect:
    m.set_age(21, 64)
    m.cover("ny-harp")
    cats = m.rng.choice((("smi",), ("sud",), ("smi", "sud")))
    for cat in cats:
        m.claims_any(m.claim_dx(cat))
        if m.rng.random() < 0.5:
            m.clinical(m.bh_dx(cat))
    m.noise(bh=True)
    return Expect("aligned", "ny-harp", "ny-harp", by_priority("ny-harp", "ny-mmc"))


def harp_aligned_nonclaims(m: Member) -> Expect:
    m.set_age(21, 64)
    m.cover("ny-harp")
    claimed, clinical_only = m.rng.choice((("smi", "sud"), ("sud", "smi")))
    m.claims_any(m.claim_dx(claimed))
    m.clinical(m.bh_dx(clinical_only))
    m.noise()
    return Expect("aligned", "ny-harp", "ny-harp", by_priority("ny-harp", "ny-mmc"), non_claims=(clinical_only,))


def harp_no_qualifying_dx(m: Member) -> Expect:
    m.set_age(21, 64)
    m.cover("ny-harp")
    m.ignored(("smi-mh", "smi-only", "sud"), n=m.rng.randint(2, 4))
    m.noise(bh=True, mdd=True)
    return Expect("misaligned", "ny-harp", "ny-mmc", ("ny-mmc",))


def mmc_ignored_dx(m: Member) -> Expect:
    m.set_age(21, 64)
    m.cover("ny-mmc")
    m.ignored(("smi-mh", "smi-only", "sud"))
    m.noise(bh=True, mdd=True)
    return Expect("aligned", "ny-mmc", "ny-mmc", ("ny-mmc",))


def harp_under21(m: Member) -> Expect:
    if m.rng.random() < 0.4:
        m.set_age_day_before(21)
    else:
        m.set_age(18, 20)
    m.cover("ny-harp")
    m.claims_any(m.claim_dx(m.rng.choice(("smi", "sud"))))
    m.noise()
    return Expect("misaligned", "ny-harp", "ny-mmc", ("ny-mmc",))


def mmc_out_of_state(m: Member) -> Expect:
    m.set_age(21, 64)
    m.out_of_state = True
    m.cover("ny-mmc")
    m.noise(bh=True, mdd=True)
    return Expect("review", "ny-mmc", None, ())


def _non_lifelong_bh(m: Member, cat: str) -> Dx:
    while True:
        dx = m.bh_dx(cat)
        if not dx.lifelong:
            return dx


def mmc_suspect_dx(m: Member) -> Expect:
    """Mainstream adult whose SMI/SUD evidence is only suspect: provisional, differential or unconfirmed,
    or inactive/resolved/remission without an abatement date (SPEC §4.3): aligned, shown, not counted."""
    m.set_age(21, 64)
    m.cover("ny-mmc")
    for _ in range(m.rng.randint(1, 2)):
        m.suspect(_non_lifelong_bh(m, m.rng.choice(("smi", "sud"))) if m.rng.random() < 0.5
                  else m.bh_dx(m.rng.choice(("smi", "sud"))))
    m.noise(bh=True)
    return Expect("aligned", "ny-mmc", "ny-mmc", ("ny-mmc",))


def harp_candidate_lifelong_old(m: Member) -> Expect:
    """Schizophrenia or bipolar disorder on the problem list, recorded before the window, still active
    and confirmed: a lifelong diagnosis that counts (SPEC §4.3)."""
    m.set_age(21, 64)
    m.cover("ny-mmc")
    while True:
        dx = m.pick("smi-mh")
        if dx.lifelong:
            break
    m.persisting(dx)
    m.noise()
    return Expect("misaligned", "ny-mmc", "ny-harp", by_priority("ny-harp", "ny-mmc"), non_claims=("smi",))


def harp_state_identified(m: Member) -> Expect:
    """Mainstream adult the State identified for HARP (H9 eligible not enrolled, H8 for assessment), on
    the Coverage or the Patient, without a diagnosis PlanFit can see: a confirmed opportunity."""
    m.set_age(21, 64)
    coverage = m.cover("ny-mmc")
    code = m.rng.choice(("H8", "H9"))
    if m.rng.random() < 0.5:
        coverage.harp_status = code
    else:
        m.harp_status = code
    m.noise()
    return Expect("misaligned", "ny-mmc", "ny-harp", by_priority("ny-harp", "ny-mmc"), reasons=("state-identified",))


def harp_excluded(m: Member) -> Expect:
    """Mainstream adult with SMI/SUD who opted out of HARP (H7) or participates in an OPWDD program: never
    a HARP candidate (SPEC §4.3)."""
    m.set_age(21, 64)
    coverage = m.cover("ny-mmc")
    opted_out = m.rng.random() < 0.6
    if opted_out:
        coverage.harp_status = "H7"
    else:
        m.opwdd = True
    cat = m.rng.choice(("smi", "sud"))
    clinical_only = m.rng.random() < 0.5
    if clinical_only:
        m.clinical(m.bh_dx(cat))
    else:
        m.claims_any(m.claim_dx(cat))
    m.noise()
    return Expect("aligned", "ny-mmc", "ny-mmc", ("ny-mmc",), non_claims=(cat,) if clinical_only else (),
                  reasons=("state-excluded" if opted_out else "flag-excluded",))


def commercial_aligned(m: Member) -> Expect:
    m.set_age(0, 64)
    m.cover("commercial")
    m.noise(bh=True, mdd=True)
    return Expect("aligned", "commercial", "commercial", ("commercial",))


def commercial_nonclaims_bh(m: Member) -> Expect:
    m.set_age(18, 64)
    m.cover("commercial")
    cat = m.rng.choice(("smi", "sud"))
    m.clinical(m.bh_dx(cat))
    m.noise()
    return Expect("aligned", "commercial", "commercial", ("commercial",), non_claims=(cat,))


def no_coverage(m: Member) -> Expect:
    m.set_age(0, 90)
    non_claims: tuple[str, ...] = ()
    if m.rng.random() < 0.3:
        cat = m.rng.choice(("smi", "sud"))
        m.clinical(m.bh_dx(cat))
        non_claims = (cat,)
    m.noise(bh=True)
    return Expect("not-evaluable", None, None, (), non_claims=non_claims, reasons=("no-active-coverage",))


def coverage_ended(m: Member) -> Expect:
    product = m.rng.choice(("ny-mmc", "ma", "commercial"))
    if product == "ma":
        m.medicare_age()
    else:
        m.set_age(21, 64)
    if m.rng.random() < 0.7:
        end = m.as_of - timedelta(days=m.rng.randint(30, 400))
        m.cover(product, end=end)
    else:
        m.cover(product, status="cancelled")
    m.noise()
    return Expect("not-evaluable", None, None, (), reasons=("no-active-coverage",))


def conflicting_coverage(m: Member) -> Expect:
    if m.rng.random() < 0.5:
        m.set_age(21, 64)
        m.cover("ny-mmc")
        m.cover("ny-harp")
        m.noise()
        return Expect("review", "ny-harp", "ny-mmc", ("ny-mmc",), reasons=("conflicting-coverage",))
    m.medicare_age()
    m.cover("ma")
    m.cover("medicare-ffs")
    m.noise()
    return Expect("review", "ma", "ma", by_priority(*MEDICARE_ELIGIBLE), reasons=("conflicting-coverage",))
