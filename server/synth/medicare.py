"""Scenarios of Medicare members (MA, Original Medicare, C-SNP) and dual members (D-SNP, Medicare with
Medicaid); each plans one member and returns the finding it expects."""

from __future__ import annotations

from datetime import timedelta

from server.synth.catalogue import (
    CSNP_BODY_POOLS,
    CSNP_NO_PLAN_POOLS,
    CSNP_PLAN_POOLS,
    CSNP_PLANS,
    DUAL_ELIGIBLE,
    FULL_CODES,
    MEDICARE_ELIGIBLE,
    NYC_LUNG_ZIPS,
    PARTIAL_CODES,
    PLACES,
)
from server.synth.members import Expect, Member, by_priority


def ma_aligned(m: Member) -> Expect:
    m.medicare_age()
    m.cover("ma")
    m.noise(bh=True)
    return Expect("aligned", "ma", "ma", by_priority(*MEDICARE_ELIGIBLE))


def ffs_aligned(m: Member) -> Expect:
    m.medicare_age()
    m.cover("medicare-ffs")
    m.noise(bh=True)
    return Expect("aligned", "medicare-ffs", "medicare-ffs", by_priority(*MEDICARE_ELIGIBLE))


def _csnp_conditions(m: Member, *, claims: bool | None = None, pools: tuple[str, ...] = CSNP_BODY_POOLS,
                     n: int | None = None) -> tuple[str, ...]:
    cats: set[str] = set()
    pools = list(pools)
    m.rng.shuffle(pools)
    for pool in pools[: n or m.rng.randint(1, 2)]:
        dx = m.pick(pool)
        cats |= dx.cats
        use_claims = claims if claims is not None else m.rng.random() < 0.5
        if use_claims and dx.icd is not None:
            m.claims_any(dx)
            if m.rng.random() < 0.4:
                m.clinical(dx)
        else:
            m.clinical(dx)
    return tuple(sorted(cats))


def _csnp_plan(m: Member, cats: tuple[str, ...]) -> tuple[str, tuple[str, ...]] | None:
    """The first shipped C-SNP plan whose grouping and area take the member (products.json), with the
    member's categories of that grouping; None when no plan does."""
    for plan, grouping, zips in CSNP_PLANS:
        met = tuple(c for c in cats if c in grouping)
        if met and (zips is None or (m.place is not None and m.place[1] in zips)):
            return plan, met
    return None


def _in_new_york(m: Member, zips: tuple[str, ...] | None = None) -> None:
    """Place the member in New York: in one of `zips` when given, else anywhere but those of the lung plan."""
    places = [p for p in PLACES if (p[1] in zips if zips else p[1] not in NYC_LUNG_ZIPS)]
    m.place = m.rng.choice(places)


def _csnp_member(m: Member, *, claims: bool | None = None) -> tuple[str, tuple[str, ...]]:
    """C-SNP conditions of pools with a plan, the member placed where a plan takes them: (plan, categories)."""
    cats = _csnp_conditions(m, claims=claims, pools=CSNP_PLAN_POOLS)
    _in_new_york(m, NYC_LUNG_ZIPS if m.rng.random() < 0.4 else None)
    taken = _csnp_plan(m, cats)
    if taken is None:  # lung conditions only, placed outside the lung plan's ZIPs: move into them
        _in_new_york(m, NYC_LUNG_ZIPS)
        taken = _csnp_plan(m, cats)
    assert taken is not None
    return taken


def csnp_candidate(m: Member) -> Expect:
    m.medicare_age()
    enrolled = "ma" if m.rng.random() < 0.7 else "medicare-ffs"
    m.cover(enrolled)
    plan, cats = _csnp_member(m)
    m.noise(bh=True)
    return Expect("misaligned", enrolled, "csnp", by_priority("csnp", *MEDICARE_ELIGIBLE), plan=plan,
                  csnp_categories=cats)


def csnp_no_plan_for_member(m: Member) -> Expect:
    """C-SNP conditions, but no plan takes the member: conditions no shipped plan is approved for, or
    chronic lung disease outside the lung plan's ZIPs (SPEC §4.3)."""
    m.medicare_age()
    enrolled = "ma" if m.rng.random() < 0.7 else "medicare-ffs"
    m.cover(enrolled)
    _csnp_conditions(m, pools=CSNP_NO_PLAN_POOLS if m.rng.random() < 0.5 else ("csnp-lung",), n=1)
    _in_new_york(m)
    m.noise(bh=True)
    return Expect("aligned", enrolled, enrolled, by_priority(*MEDICARE_ELIGIBLE))


def csnp_out_of_area(m: Member) -> Expect:
    m.medicare_age()
    m.out_of_state = True
    enrolled = "ma" if m.rng.random() < 0.7 else "medicare-ffs"
    m.cover(enrolled)
    _csnp_conditions(m)
    m.noise(bh=True)
    return Expect("aligned", enrolled, enrolled, by_priority(*MEDICARE_ELIGIBLE))


def csnp_aligned(m: Member) -> Expect:
    """A C-SNP member a plan takes. The Coverage names the product (the enrolled plan is then unknown: every
    NY place has several C-SNP plans) or, for two in five, that plan itself (any case)."""
    m.medicare_age()
    coverage = m.cover("csnp")
    plan, cats = _csnp_member(m, claims=True)
    named = m.rng.random() < 0.4
    if named:
        coverage.plan = plan.upper() if m.rng.random() < 0.5 else plan
    m.noise()
    return Expect("aligned", "csnp", "csnp", by_priority("csnp", *MEDICARE_ELIGIBLE), plan=plan,
                  enrolled_plan=plan if named else None, csnp_categories=cats)


def csnp_no_qualifying_dx(m: Member) -> Expect:
    m.medicare_age()
    m.cover("csnp")
    m.ignored(CSNP_BODY_POOLS, n=m.rng.randint(1, 3))
    m.noise(bh=True)
    return Expect("misaligned", "csnp", "ma", by_priority(*MEDICARE_ELIGIBLE))


def medicare_clinical_smi(m: Member) -> Expect:
    m.medicare_age()
    m.cover("ma")
    m.clinical(m.pick("smi-mh"))
    m.noise()
    return Expect("misaligned", "ma", "csnp", by_priority("csnp", *MEDICARE_ELIGIBLE), non_claims=("smi",),
                  plan="csnp-behavioral-health", csnp_categories=("csnp-mental-health",))


def medicare_psychosis_nos(m: Member) -> Expect:
    m.medicare_age()
    m.cover("ma")
    m.clinical(m.pick("smi-only"))
    m.noise()
    return Expect("aligned", "ma", "ma", by_priority(*MEDICARE_ELIGIBLE), non_claims=("smi",))


def dsnp_full_aligned(m: Member) -> Expect:
    m.set_age(30, 90)
    m.cover("dsnp", dual_code=m.rng.choice(FULL_CODES))
    m.noise(bh=True)
    return Expect("aligned", "dsnp", "dsnp", by_priority(*DUAL_ELIGIBLE), dual_level="full")


def dsnp_partial_aligned(m: Member) -> Expect:
    m.set_age(30, 90)
    m.cover("dsnp", dual_code=m.rng.choice(PARTIAL_CODES))
    m.noise(bh=True)
    return Expect("aligned", "dsnp", "dsnp", by_priority(*DUAL_ELIGIBLE), dual_level="partial")


def _dual_two_coverages(m: Member, medicare_product: str, code: str | None) -> None:
    on_medicaid = m.rng.random() < 0.5
    m.cover(medicare_product, dual_code=None if on_medicaid else code)
    m.cover_medicaid_ffs(dual_code=code if on_medicaid else None)


def dual_full_in_ma(m: Member) -> Expect:
    m.set_age(30, 90)
    _dual_two_coverages(m, "ma", m.rng.choice(FULL_CODES))
    m.noise(bh=True)
    return Expect("misaligned", "ma", "dsnp", by_priority(*DUAL_ELIGIBLE), dual_level="full")


def dual_partial_in_ffs(m: Member) -> Expect:
    m.set_age(30, 90)
    _dual_two_coverages(m, "medicare-ffs", m.rng.choice(PARTIAL_CODES))
    m.noise(bh=True)
    return Expect("misaligned", "medicare-ffs", "dsnp", by_priority(*DUAL_ELIGIBLE), dual_level="partial")


def dual_level_unknown(m: Member) -> Expect:
    m.set_age(30, 90)
    enrolled = m.rng.choice(("ma", "medicare-ffs", "dsnp"))
    _dual_two_coverages(m, enrolled, None)
    m.noise(bh=True)
    return Expect("review", enrolled, "dsnp", by_priority(*DUAL_ELIGIBLE), dual_level="unknown",
                  reasons=("dual-level-unknown",))


def dsnp_medicaid_not_evidenced(m: Member) -> Expect:
    """A D-SNP member with no Medicaid coverage and no dual code, none ever or lost inside the deeming
    period (1-5 months ago): a compliance finding held in review (SPEC §4.3)."""
    m.set_age(30, 90)
    m.cover("dsnp")
    if m.rng.random() < 0.5:
        lost = m.cover_medicaid_ffs(dual_code=m.rng.choice((None, *FULL_CODES)))
        lost.end = m.as_of - timedelta(days=m.rng.randint(30, 150))
    m.noise(bh=True)
    return Expect("review", "dsnp", "dsnp", by_priority(*DUAL_ELIGIBLE), dual_level="unknown",
                  reasons=("medicaid-not-evidenced",))


def dsnp_medicaid_lapsed(m: Member) -> Expect:
    """A D-SNP member whose Medicaid ended 7-11 months ago, past the deeming period: misaligned."""
    m.set_age(30, 90)
    m.cover("dsnp")
    lost = m.cover_medicaid_ffs()
    lost.end = m.as_of - timedelta(days=m.rng.randint(215, 330))
    m.noise(bh=True)
    return Expect("misaligned", "dsnp", "ma", by_priority(*MEDICARE_ELIGIBLE),
                  reasons=("medicaid-not-evidenced", "deeming-period-ended"))


def dual_code_without_medicaid(m: Member) -> Expect:
    """An MA or Original Medicare member whose Medicare coverage carries the dual status code (the plan
    learns it from CMS) and no Medicaid coverage was sent: a D-SNP opportunity (SPEC §4.3)."""
    m.set_age(30, 90)
    enrolled = m.rng.choice(("ma", "medicare-ffs"))
    level = m.rng.choice(("full", "partial"))
    m.cover(enrolled, dual_code=m.rng.choice(FULL_CODES if level == "full" else PARTIAL_CODES))
    m.noise(bh=True)
    return Expect("misaligned", enrolled, "dsnp", by_priority(*DUAL_ELIGIBLE), dual_level=level)


def dual_month_by_month(m: Member) -> Expect:
    """An MA member with an older coded coverage and this month's record with another level: the latest
    month wins (SPEC §4.3)."""
    m.set_age(30, 90)
    older, latest = m.rng.choice(((FULL_CODES, PARTIAL_CODES), (PARTIAL_CODES, FULL_CODES)))
    m.cover("ma", dual_code=m.rng.choice(older))
    record = m.cover_medicaid_ffs(dual_code=m.rng.choice(latest))
    record.start = m.as_of - timedelta(days=m.rng.randint(0, 25))
    m.noise(bh=True)
    level = "full" if latest is FULL_CODES else "partial"
    return Expect("misaligned", "ma", "dsnp", by_priority(*DUAL_ELIGIBLE), dual_level=level)


def harp_gained_medicare(m: Member) -> Expect:
    m.set_age(21, 64)
    code = m.rng.choice(FULL_CODES)
    on_harp = m.rng.random() < 0.5
    m.cover("ny-harp", dual_code=code if on_harp else None)
    m.cover("medicare-ffs", dual_code=None if on_harp else code,
            start=m.as_of - timedelta(days=m.rng.randint(30, 300)))
    cat = m.rng.choice(("smi", "sud"))
    dx = m.pick("smi-mh") if cat == "smi" else m.pick("sud")
    while dx.icd is None:
        dx = m.pick("smi-mh") if cat == "smi" else m.pick("sud")
    m.claims_any(dx)
    m.noise()
    csnp_cat = "csnp-mental-health" if cat == "smi" else "csnp-substance-dependence"
    return Expect("misaligned", "ny-harp", "dsnp", by_priority("dsnp", "csnp", *MEDICARE_ELIGIBLE),
                  csnp_categories=(csnp_cat,), dual_level="full")
