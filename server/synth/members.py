"""A synthetic member as the generator plans it (coverages, evidence) and the finding it expects."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Sequence

from server.synth.catalogue import COVERAGE_FORMS, DX, MEDICAID_FFS_SOPT, PRIORITY, ROUTINE_CLAIM_DX, Dx


# --------------------------------------------------------------------------------------------------
# Member plan (what the generator decided) and its expectation


@dataclass
class CoverageSpec:
    key: str
    product: str | None  # the product this coverage is meant to name (None = Medicaid FFS etc.)
    plan: str | None
    sopt: str | None
    payer: str
    start: date
    end: date | None
    status: str = "active"
    dual_code: str | None = None
    harp_status: str | None = None  # NY HARP status code (H1-H9) on the coverage


@dataclass(frozen=True)
class Service:
    """A claim for a HARP risk-factor service: a psychiatric stay (revenue code) or ACT/TCM (HCPCS)."""

    code: str
    start: date
    end: date

    @property
    def revenue(self) -> bool:
        return self.code.isdigit()


@dataclass
class Evidence:
    dx: Dx
    where: str  # clinical | claim-coded | claim-ref | claims-condition
    flavor: str  # counts | refuted | entered-in-error | resolved | old | suspect | persists
    when: date
    coding: str = "icd"  # icd | sct | both
    category: str = "problem-list-item"
    abated: date | None = None
    onset: date | None = None
    verification: str = "confirmed"
    clinical_status: str = "active"


@dataclass
class Expect:
    status: str
    enrolled: str | None
    recommended: str | None
    eligible: tuple[str, ...]
    plan: str | None = None  # the plan of the recommended product, when the product has several
    enrolled_plan: str | None = None  # the plan a Coverage names, of an enrolled product with several plans
    non_claims: tuple[str, ...] = ()
    csnp_categories: tuple[str, ...] = ()
    dual_level: str | None = None
    reasons: tuple[str, ...] = ()
    risk_factors: dict[str, int] = field(default_factory=dict)  # HARP risk factor -> its measure


@dataclass
class Member:
    index: int
    ident: str
    rng: random.Random
    as_of: date
    gender: str = "female"
    birth: date = date(1970, 1, 1)
    coverages: list[CoverageSpec] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    expect: Expect | None = None
    harp_status: str | None = None  # NY HARP status code on the Patient
    opwdd: bool = False  # OPWDD participation documented on the Patient
    out_of_state: bool = False  # lives outside New York: outside every NY plan's coverage area
    place: tuple[str, str] | None = None  # (city, ZIP) in New York; None: any of PLACES
    services: list[Service] = field(default_factory=list)  # claims for HARP risk-factor services
    aid_category: str | None = None  # Medicaid aid category (rates.json code), on every Medicaid coverage
    aid_category_text: str | None = None  # ... as the feed spells it

    # -- demographics ------------------------------------------------------------------------------

    def age(self) -> int:
        a = self.as_of.year - self.birth.year
        if (self.as_of.month, self.as_of.day) < (self.birth.month, self.birth.day):
            a -= 1
        return a

    def set_age(self, lo: int, hi: int) -> None:
        self.birth = _birth_for_age(self.rng.randint(lo, hi), self.as_of, self.rng.randint(0, 360))

    def set_exact_birthday(self, age: int) -> None:
        """Birthday falls on as_of: age is exactly `age`."""
        self.birth = _birth_for_age(age, self.as_of, 0)

    def set_age_day_before(self, age: int) -> None:
        """Turns `age` within 1-300 days after as_of: age is age-1."""
        self.birth = _birth_for_age(age, self.as_of, 0) + timedelta(days=self.rng.randint(1, 300))

    def medicare_age(self) -> None:
        r = self.rng.random()
        if r < 0.08:
            self.set_exact_birthday(65)
        elif r < 0.14:
            self.set_age_day_before(65)  # 64
        elif r < 0.30:
            self.set_age(30, 64)  # Medicare through disability / ESRD
        else:
            self.set_age(65, 95)

    # -- coverage ----------------------------------------------------------------------------------

    def cover(self, product: str, *, dual_code: str | None = None, start: date | None = None,
              end: date | None = None, status: str = "active", form: int | None = None) -> CoverageSpec:
        forms = COVERAGE_FORMS[product]
        plan, sopt, payer = forms[form if form is not None else self.rng.randrange(len(forms))]
        spec = CoverageSpec(
            key=f"cov{len(self.coverages) + 1}", product=product, plan=plan, sopt=sopt, payer=payer,
            start=start or self.as_of - timedelta(days=self.rng.randint(1900, 3600)),
            end=end if end is not None else self._open_end(), status=status, dual_code=dual_code,
        )
        self.coverages.append(spec)
        return spec

    def cover_medicaid_ffs(self, *, dual_code: str | None = None) -> CoverageSpec:
        spec = CoverageSpec(
            key=f"cov{len(self.coverages) + 1}", product=None, plan=None,
            sopt=self.rng.choice(MEDICAID_FFS_SOPT), payer="ny-medicaid",
            start=self.as_of - timedelta(days=self.rng.randint(1900, 3600)), end=self._open_end(),
            dual_code=dual_code,
        )
        self.coverages.append(spec)
        return spec

    def _open_end(self) -> date | None:
        return None if self.rng.random() < 0.6 else self.as_of + timedelta(days=self.rng.randint(30, 700))

    # -- evidence ----------------------------------------------------------------------------------

    def pick(self, pool: str) -> Dx:
        choices = [d for d in DX[pool] if d.sex is None or d.sex == self.gender]
        return self.rng.choice(choices)

    def in_window(self) -> date:
        return self.as_of - timedelta(days=self.rng.randint(7, 660))

    def before_window(self) -> date:
        return self.as_of - timedelta(days=self.rng.randint(820, 1800))

    def coding_for(self, dx: Dx) -> str:
        if dx.icd is None:
            return "sct"
        if dx.sct is None:
            return "icd"
        return self.rng.choice(("icd", "sct", "both"))

    def clinical(self, dx: Dx, flavor: str = "counts") -> None:
        rng = self.rng
        category = rng.choice(("problem-list-item", "encounter-diagnosis"))
        ev = Evidence(dx=dx, where="clinical", flavor=flavor, when=self.in_window(), coding=self.coding_for(dx),
                      category=category)
        if flavor == "old":
            ev.when = self.before_window()
            ev.category = "encounter-diagnosis"
        elif flavor == "resolved":
            ev.category = "problem-list-item"
            ev.onset = self.as_of - timedelta(days=rng.randint(1900, 3000))
            ev.abated = self.as_of - timedelta(days=rng.randint(900, 1500))
        self.evidence.append(ev)

    def suspect(self, dx: Dx) -> None:
        """Clinical evidence in the window that is shown but never qualifies (SPEC §4.3): an uncertain
        verification, or (for a code that is not lifelong) an inactive status without an abatement date."""
        ev = Evidence(dx=dx, where="clinical", flavor="suspect", when=self.in_window(), coding=self.coding_for(dx))
        if dx.lifelong or self.rng.random() < 0.5:
            ev.verification = self.rng.choice(("provisional", "differential", "unconfirmed"))
        else:
            ev.clinical_status = self.rng.choice(("inactive", "resolved", "remission"))
        self.evidence.append(ev)

    def persisting(self, dx: Dx) -> None:
        """A lifelong diagnosis on the problem list, active and confirmed, recorded before the window."""
        self.evidence.append(Evidence(dx=dx, where="clinical", flavor="persists", when=self.before_window(),
                                      coding=self.coding_for(dx), category="problem-list-item"))

    def claims(self, dx: Dx, how: str = "claim-coded", flavor: str = "counts") -> None:
        if dx.icd is None:
            raise ValueError("claims carry ICD-10-CM codes")
        when = self.before_window() if flavor == "old" else self.in_window()
        self.evidence.append(Evidence(dx=dx, where=how, flavor=flavor, when=when, coding="icd",
                                      category="encounter-diagnosis"))

    def claims_any(self, dx: Dx) -> None:
        self.claims(dx, self.rng.choice(("claim-coded", "claim-coded", "claim-ref", "claims-condition")))

    def ignored(self, pools: Sequence[str], *, n: int | None = None) -> None:
        """Evidence that must not count: refuted, entered-in-error, resolved long ago, or too old."""
        flavors = ["refuted", "entered-in-error", "resolved", "old", "old-claim"]
        self.rng.shuffle(flavors)
        for flavor in flavors[: n or self.rng.randint(1, 3)]:
            dx = self.pick(self.rng.choice(pools))
            if flavor == "old-claim":
                if dx.icd is not None and self.coverages:
                    self.claims(dx, self.rng.choice(("claim-coded", "claim-ref")), flavor="old")
                else:
                    self.clinical(dx, "old")
            else:
                self.clinical(dx, flavor)

    def noise(self, *, bh: bool = False, mdd: bool = False) -> None:
        """Routine conditions and claims that are in no value set that matters for this member."""
        rng = self.rng
        for _ in range(rng.randint(0, 2)):
            self.clinical(self.pick("neutral"), rng.choice(("counts", "counts", "old", "resolved")))
        if bh and rng.random() < 0.25:
            self.clinical(self.pick("bh-neutral"))
        if mdd and rng.random() < 0.15:
            self.clinical(self.pick("mdd-not-smi"))
        if self.coverages and rng.random() < 0.7:
            self.claims(rng.choice((ROUTINE_CLAIM_DX, self.pick("neutral"))))
            end = self.coverages[0].end
            if end is not None and end < self.as_of:  # bill inside the coverage period
                self.evidence[-1].when = end - timedelta(days=rng.randint(1, 300))

    def bh_dx(self, cat: str) -> Dx:
        if cat == "smi":
            return self.pick("smi-mh" if self.rng.random() < 0.85 else "smi-only")
        return self.pick("sud")

    def claim_dx(self, cat: str) -> Dx:
        """An SMI/SUD diagnosis that has an ICD-10-CM code (claims need one)."""
        while True:
            dx = self.bh_dx(cat)
            if dx.icd is not None:
                return dx


def _birth_for_age(age: int, as_of: date, days_back: int) -> date:
    year = as_of.year - age
    try:
        anchor = as_of.replace(year=year)
    except ValueError:  # 29 February
        anchor = date(year, 2, 28)
    return anchor - timedelta(days=days_back)


def by_priority(*products: str) -> tuple[str, ...]:
    return tuple(sorted(products, key=lambda p: -PRIORITY[p]))
