"""Synthetic projection inputs with exact ground truth (`planfit synth` writes them under `<out>/projection/`).

Two alignment years of primary care claim lines across participant and outside TINs (three NPIs each),
with voluntary designations, for `beneficiaries` beneficiaries. Each beneficiary is built from one
scenario whose answer is known by construction, not computed by the rules under test:

* `plurality`: one TIN furnishes clearly more; `weighting`: the winner has fewer raw dollars but more once
  the later year counts double; `recent-tie`: equal weighted charges, the most recent service wins;
* `specialist-pool`: primary care specialists furnish ≥ 10 % of the weighted charges, so only theirs count
  (and the TIN with the most overall loses); `non-specialist-pool`: they furnish < 10 %, so only the others'
  count;
* `noise`: large charges outside the period or for non-qualifying codes do not count;
* `npi`: two NPIs of the winning TIN, the larger one is the attributed provider;
* `voluntary-kept`, `voluntary-no-services`, `voluntary-lost` (only outside services: aligned by claims);
* `ineligible` (one enrollment flag fails), `no-services`.

`generate` returns the CSV texts and `expected`: patient → (tin, npi, basis) or None. `revise` re-draws the
scenarios of a share of the beneficiaries (same ids) for a second projection with its own ground truth.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from server.projection.inputs import BENEFICIARY_COLUMNS, CLAIM_COLUMNS
from server.projection.rules import ELIGIBILITY_FLAGS, load_rules
from server.synth.parts import add_part, part_size

PARTICIPANT_TINS = ("100000001", "100000002", "100000003")
OUTSIDE_TINS = ("900000001", "900000002", "900000003")
SCENARIOS = ("plurality", "weighting", "recent-tie", "specialist-pool", "non-specialist-pool", "noise", "npi",
             "voluntary-kept", "voluntary-no-services", "voluntary-lost", "ineligible", "no-services")
WEIGHTS = (30, 8, 6, 6, 6, 6, 8, 6, 3, 4, 10, 7)
NOT_QUALIFYING = ("99281", "36415", "93000")  # ED visit, venipuncture, ECG: not primary care services


def npi_of(tin: str, index: int) -> str:
    return f"{tin[0]}{tin[-3:]}{index:06d}"


@dataclass
class Beneficiary:
    patient: str
    flags: dict[str, bool]
    voluntary: tuple[str, str] | None = None
    lines: list[tuple] = field(default_factory=list)  # (tin, npi, hcpcs, date, cents, specialist)
    expected: tuple[str, str, str] | None = None


class _Dates:
    def __init__(self, performance_year: int):
        period = load_rules().period(performance_year)
        self.start, self.later, self.end = period.start, period.later_start, period.end
        y1 = int(self.start[:4])
        self.earlier_days = [f"{y1}-{m:02d}-{d:02d}" for m in (8, 9, 10, 11, 12) for d in (3, 14, 25)]
        self.later_days = [f"{y1 + 1}-{m:02d}-{d:02d}" for m in (8, 9, 10, 11, 12) for d in (3, 14, 25)]
        self.before = f"{y1}-05-15"  # before the period
        self.after = f"{y1 + 2}-08-15"  # after it


def _eligible_flags() -> dict[str, bool]:
    return {"part_a": True, "part_b": True, "medicare_advantage": False, "medicare_secondary": False,
            "us_resident": True, "aligned_elsewhere": False}


def _build(rng: random.Random, patient: str, scenario: str, d: _Dates) -> Beneficiary:
    ben = Beneficiary(patient, _eligible_flags())
    tins = [*PARTICIPANT_TINS, *OUTSIDE_TINS]
    win, lose = rng.sample(tins, 2)
    npi_w, npi_l = npi_of(win, rng.randrange(3)), npi_of(lose, rng.randrange(3))
    code = rng.choice(("99213", "99214", "99203", "99308", "99334", "99347"))
    late, early = sorted(rng.sample(d.later_days, 2)), sorted(rng.sample(d.earlier_days, 2))

    def line(tin, npi, cents, day, specialist=True, hcpcs=code):
        ben.lines.append((tin, npi, hcpcs, day, cents, specialist))

    if scenario == "plurality":
        line(win, npi_w, 15000, late[0]); line(win, npi_w, 12000, early[0]); line(lose, npi_l, 9000, late[1])
    elif scenario == "weighting":  # win: 150 × 2 = 300 > lose: 250 × 1
        line(win, npi_w, 15000, late[0]); line(lose, npi_l, 25000, early[1])
    elif scenario == "recent-tie":  # equal weighted charges; win furnished the later service
        line(lose, npi_l, 11000, late[0]); line(win, npi_w, 11000, late[1])
    elif scenario == "specialist-pool":  # specialists 20 % at win; lose has more overall (non-specialist)
        line(win, npi_w, 10000, late[0], True); line(lose, npi_l, 40000, late[1], False)
    elif scenario == "non-specialist-pool":  # specialists 8 % at lose: lose 320 overall, win 300 among the others
        line(lose, npi_l, 5000, late[0], True); line(lose, npi_l, 27000, late[0], False)
        line(win, npi_w, 30000, late[1], False)
    elif scenario == "noise":  # lose's large charges are outside the period or not primary care services
        line(win, npi_w, 8000, late[0]); line(lose, npi_l, 90000, d.before); line(lose, npi_l, 90000, d.after)
        line(lose, npi_l, 90000, late[1], hcpcs=rng.choice(NOT_QUALIFYING))
    elif scenario == "npi":
        other = npi_of(win, (int(npi_w[-1]) + 1) % 3)
        line(win, npi_w, 14000, late[0]); line(win, other, 9000, late[1]); line(lose, npi_l, 20000, early[0])
    elif scenario.startswith("voluntary"):
        designated = rng.choice(PARTICIPANT_TINS)
        outside = rng.choice(OUTSIDE_TINS)
        npi_d, npi_o = npi_of(designated, rng.randrange(3)), npi_of(outside, rng.randrange(3))
        ben.voluntary = (designated, npi_d)
        if scenario == "voluntary-kept":  # claims would align outside; the designation wins
            line(designated, npi_d, 5000, early[0]); line(outside, npi_o, 30000, late[0])
            ben.expected = (designated, npi_d, "voluntary")
        elif scenario == "voluntary-no-services":
            ben.expected = (designated, npi_d, "voluntary")
        else:  # only outside services: the designation is lost, claims align outside
            line(outside, npi_o, 12000, late[0]); line(outside, npi_o, 7000, early[0])
            ben.expected = (outside, npi_o, "claims")
        return ben
    elif scenario == "ineligible":
        ben.flags[rng.choice(ELIGIBILITY_FLAGS)] ^= True
        line(win, npi_w, 15000, late[0])
        if rng.random() < 0.3:
            ben.voluntary = (PARTICIPANT_TINS[0], npi_of(PARTICIPANT_TINS[0], 0))
        return ben
    elif scenario == "no-services":
        line(win, npi_w, 15000, d.before, hcpcs="99213")
        return ben
    ben.expected = (win, npi_w, "claims")
    return ben


def generate(beneficiaries: int, seed: int, performance_year: int, prefix: str = "pb") -> dict:
    rng = random.Random(seed)
    d = _Dates(performance_year)
    built = [_build(rng, f"{prefix}-{i:07d}", rng.choices(SCENARIOS, WEIGHTS)[0], d) for i in range(beneficiaries)]
    return _files(built)


def revise(beneficiaries: int, seed: int, performance_year: int, share: float, prefix: str = "pb") -> dict:
    """The same population with a `share` of its beneficiaries' scenarios drawn again."""
    first = random.Random(seed)
    again = random.Random(seed + 1)
    d = _Dates(performance_year)
    built = []
    for i in range(beneficiaries):
        scenario = first.choices(SCENARIOS, WEIGHTS)[0]
        ben = _build(first, f"{prefix}-{i:07d}", scenario, d)
        if again.random() < share:
            ben = _build(again, ben.patient, again.choices(SCENARIOS, WEIGHTS)[0], d)
        built.append(ben)
    return _files(built)


def _files(built: list[Beneficiary]) -> dict:
    claims, people = io.StringIO(), io.StringIO()
    cw, pw = csv.writer(claims, lineterminator="\n"), csv.writer(people, lineterminator="\n")
    cw.writerow(CLAIM_COLUMNS)
    pw.writerow(BENEFICIARY_COLUMNS)
    for ben in built:
        for tin, npi, hcpcs, day, cents, specialist in ben.lines:
            cw.writerow([ben.patient, tin, npi, hcpcs, day, f"{cents // 100}.{cents % 100:02d}", "Y" if specialist else "N"])
        tin, npi = ben.voluntary or ("", "")
        pw.writerow([ben.patient, *("Y" if ben.flags[f] else "N" for f in ELIGIBILITY_FLAGS), tin, npi])
    return {"claims": claims.getvalue(), "beneficiaries": people.getvalue(),
            "expected": {ben.patient: ben.expected for ben in built}}


def extend(subparsers: argparse._SubParsersAction) -> None:
    """Add the projection inputs to `planfit synth` (`--projection-beneficiaries`, default `--members`):
    written under `<out>/projection/` with `ground_truth.json`."""

    def write(args: argparse.Namespace) -> None:
        count = part_size(args, "projection-beneficiaries", args.members)
        year = args.as_of.year  # its alignment period ends 6 months before that year starts: no date after as_of
        out = Path(args.out) / "projection"
        out.mkdir(parents=True, exist_ok=True)
        files = generate(count, args.seed, year)
        (out / "claims.csv").write_text(files["claims"])
        (out / "beneficiaries.csv").write_text(files["beneficiaries"])
        (out / "ground_truth.json").write_text(json.dumps({"performanceYear": year, "participants": PARTICIPANT_TINS,
                                                           "expected": files["expected"]}, indent=0))
        print(f"{count} projection beneficiaries (PY{year}) -> {out}", flush=True)

    add_part(subparsers, write, "projection-beneficiaries",
             "beneficiaries of the alignment projection inputs (default: --members)")
