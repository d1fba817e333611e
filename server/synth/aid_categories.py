"""Medicaid aid categories of the synthetic members and the NY MMC rate cell each one's finding names (SPEC
§4.3 rate cells, issue 17): the ground truth for rate cells by aid category x age band x region.

A member with Medicaid coverage gets an aid category (TANF, Safety Net, SSI; a fifth get none) on every
Medicaid coverage, as `Coverage.class` of type `class`, in the spellings feeds send. It is drawn from the
member's own generator seeded by the identifier, so the other draws of a member (and every other field of
the ground truth) stay as they were. The expected cell is written out by hand from the shipped
`mappings/rates.json` (NY MMC cells; the most specific cell wins, then the one naming a region), not
computed by the engine's selection."""

from __future__ import annotations

import random

from server.synth.members import CoverageSpec, Member

MEDICAID_PRODUCTS = ("ny-mmc", "ny-harp")
MEDICAID_PAYER = "ny-medicaid"  # the payer of Medicaid fee-for-service coverages (`Member.cover_medicaid_ffs`)
SPELLINGS = {"tanf": ("TANF", "tanf", " Tanf "), "safety-net": ("Safety-Net", "SAFETY-NET"), "ssi": ("SSI", "ssi")}
NYC_ZIP3 = ("100", "101", "102", "103", "104", "111", "112", "113", "114", "116")  # rates.json region nyc


def is_medicaid(cov: CoverageSpec) -> bool:
    return cov.product in MEDICAID_PRODUCTS or cov.payer == MEDICAID_PAYER


def assign(m: Member) -> None:
    """Give a member with Medicaid coverage an aid category (or none) and its spelling on the coverages."""
    if not any(is_medicaid(c) for c in m.coverages):
        return
    rng = random.Random(f"planfit-synth-aid:{m.ident}")
    r = rng.random()
    code = "tanf" if r < 0.4 else "safety-net" if r < 0.6 else "ssi" if r < 0.8 else None
    if code is not None:
        m.aid_category, m.aid_category_text = code, rng.choice(SPELLINGS[code])


def expected_mmc_cell(m: Member) -> str:
    """The rate cell pricing ny-mmc for the member (rates.json): in New York City the region's TANF and SSI
    cells, else the aid category's cell for the member's age band (Safety Net has no band under 21), else the
    aid category's own cell; without an aid category the region's cell or the product's PMPM."""
    nyc = not m.out_of_state and m.place is not None and m.place[1][:3] in NYC_ZIP3
    aid, age = m.aid_category, m.age()
    if nyc and aid in ("tanf", "ssi"):
        return f"ny-mmc/nyc/{aid}"
    bands = {"tanf": ((0, 20, "under-21"), (21, 200, "21-plus")),
             "safety-net": ((21, 29, "21-29"), (30, 200, "30-plus")),
             "ssi": ((0, 20, "under-21"), (21, 64, "21-64"), (65, 200, "65-plus"))}.get(aid or "", ())
    band = next((code for lo, hi, code in bands if lo <= age <= hi), None)
    if band is not None:
        return f"ny-mmc/*/{aid}/{band}"
    if nyc:
        return "ny-mmc/nyc/*"
    return f"ny-mmc/*/{aid}" if aid else "ny-mmc"
