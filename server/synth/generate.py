"""`planfit synth`: write the population (bundles), its ground truth and a summary."""

from __future__ import annotations

import argparse
import gc
import random
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Sequence

import orjson

from server.synth import aid_categories
from server.synth.catalogue import MEMBER_SYSTEM, PRODUCTS_WITH_PLANS
from server.synth.members import Expect, Member
from server.synth.render import Renderer
from server.synth.scenarios import SCENARIOS, Scenario, allocate


# Generation


@dataclass
class SynthSummary:
    members: int
    seed: int
    as_of: date
    out: Path
    bundle_size: int
    scenarios: dict[str, int]
    statuses: dict[str, int]
    bundles: dict[str, int]
    entries: dict[str, int]
    resources: dict[str, dict[str, int]]
    bytes_written: int
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """Deterministic part (no timing): what summary.json holds."""
        return {
            "members": self.members,
            "seed": self.seed,
            "as_of": self.as_of.isoformat(),
            "bundle_size": self.bundle_size,
            "scenarios": self.scenarios,
            "statuses": self.statuses,
            "bundles": self.bundles,
            "entries": self.entries,
            "resources": self.resources,
            "totals": {
                "bundles": sum(self.bundles.values()),
                "entries": sum(self.entries.values()),
                "resources": sum(sum(v.values()) for v in self.resources.values()),
            },
        }


def build_member(index: int, seed: int, scenario: Scenario, as_of: date) -> Member:
    rng = random.Random(f"planfit-synth:{seed}:{index}")
    m = Member(index=index, ident=f"M{seed}-{index + 1:07d}", rng=rng, as_of=as_of)
    m.gender = "female" if rng.random() < 0.52 else "male"
    m.expect = scenario.build(m)
    aid_categories.assign(m)
    return m


def _truth(m: Member, scenario: Scenario) -> dict[str, Any]:
    e = m.expect
    assert e is not None
    return {
        "scenario": scenario.name,
        "age": m.age(),
        "enrolled_product": e.enrolled,
        "status": e.status,
        "recommended_product": e.recommended,
        "recommended_plan": e.plan or e.recommended,
        "enrolled_plan": e.enrolled_plan if e.enrolled in PRODUCTS_WITH_PLANS else e.enrolled,
        "eligible_products": list(e.eligible),
        "non_claims_categories": sorted(e.non_claims),
        "csnp_categories": list(e.csnp_categories),
        "dual_level": e.dual_level,
        "kind": _kind(e),
        "reasons": list(e.reasons),
        "risk_factors": dict(e.risk_factors),
        **({"enrolled_rate_cell": aid_categories.expected_mmc_cell(m)}
           if e.enrolled == "ny-mmc" and e.status in ("aligned", "misaligned") else {}),
    }


def _kind(e: Expect) -> str | None:
    """SPEC §4.3: `compliance` when the enrolled product's rule fails (or a dual product's Medicaid is not
    evidenced), `opportunity` when a higher-acuity product is recommended over one whose rule holds."""
    if e.enrolled is None:
        return None
    if e.enrolled not in e.eligible or "medicaid-not-evidenced" in e.reasons:
        return "compliance"
    return "opportunity" if e.recommended != e.enrolled else None


def generate(
    members: int, seed: int, out: Path, bundle_size: int = 500, as_of: date = date(2026, 1, 1)
) -> SynthSummary:
    """Write the bundles, ground_truth.json and summary.json under `out`; return the summary."""
    if members < 1:
        raise ValueError("members must be >= 1")
    if bundle_size < 1:
        raise ValueError("bundle_size must be >= 1")
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived dicts, none cyclic: the collector only costs time here
    try:
        return _generate(members, seed, Path(out), bundle_size, as_of)
    finally:
        if gc_was_enabled:
            gc.enable()


def _generate(members: int, seed: int, out: Path, bundle_size: int, as_of: date) -> SynthSummary:
    started = time.perf_counter()
    for sub in ("clinical", "claims"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        for old in (out / sub).glob("bundle-*.json"):
            old.unlink()

    counts = allocate(members)
    order = [i for i, c in enumerate(counts) for _ in range(c)]
    random.Random(f"planfit-synth:{seed}").shuffle(order)

    scen_count = {s.name: c for s, c in zip(SCENARIOS, counts)}
    status_count: dict[str, int] = {}
    resources: dict[str, dict[str, int]] = {"clinical": {}, "claims": {}}
    bundles = {"clinical": 0, "claims": 0}
    entries = {"clinical": 0, "claims": 0}
    written = 0
    truth: dict[str, Any] = {}

    def flush(kind: str, number: int, items: list[dict[str, Any]]) -> int:
        if not items:
            return 0
        data = orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": items})
        (out / kind / f"bundle-{number:05d}.json").write_bytes(data)
        bundles[kind] += 1
        entries[kind] += len(items)
        tally = resources[kind]
        for item in items:
            rt = item["resource"]["resourceType"]
            tally[rt] = tally.get(rt, 0) + 1
        return len(data)

    bundle_no = 0
    for start in range(0, members, bundle_size):
        bundle_no += 1
        clinical_items: list[dict[str, Any]] = []
        claims_items: list[dict[str, Any]] = []
        for index in range(start, min(start + bundle_size, members)):
            scenario = SCENARIOS[order[index]]
            m = build_member(index, seed, scenario, as_of)
            c_items, k_items = Renderer(m).render()
            clinical_items.extend(c_items)
            claims_items.extend(k_items)
            t = _truth(m, scenario)
            truth[m.ident] = t
            status_count[t["status"]] = status_count.get(t["status"], 0) + 1
        written += flush("clinical", bundle_no, clinical_items)
        written += flush("claims", bundle_no, claims_items)

    summary = SynthSummary(
        members=members, seed=seed, as_of=as_of, out=out, bundle_size=bundle_size, scenarios=scen_count,
        statuses=dict(sorted(status_count.items())), bundles=bundles, entries=entries,
        resources={k: dict(sorted(v.items())) for k, v in resources.items()}, bytes_written=0,
    )
    ground = {
        "generator": "planfit synth (server/synth/)",
        "seed": seed,
        "member_count": members,
        "as_of": as_of.isoformat(),
        "lookback_months": 24,
        "identifier_system": MEMBER_SYSTEM,
        "semantics": "Rule semantics and scenarios: docstring of server/synth/__init__.py",
        "scenarios": {s.name: {"share_percent": s.share, "count": scen_count[s.name], "description": s.description}
                      for s in SCENARIOS},
        "members": truth,
    }
    data = orjson.dumps(ground, option=orjson.OPT_INDENT_2)
    (out / "ground_truth.json").write_bytes(data)
    written += len(data)
    summary.bytes_written = written
    (out / "summary.json").write_bytes(orjson.dumps(summary.to_json(), option=orjson.OPT_INDENT_2))
    summary.seconds = time.perf_counter() - started
    return summary


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `planfit synth` (shared by the `planfit` command and `python -m`)."""
    parser.add_argument("--members", type=int, required=True)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--bundle-size", type=int, default=500, help="members per bundle (default 500)")
    parser.add_argument("--as-of", type=date.fromisoformat, default=date(2026, 1, 1),
                        help="evaluation date the ground truth assumes (default 2026-01-01)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """`planfit synth`; the features' own populations extend it (their `synth.extend`)."""
    parser = subparsers.add_parser("synth", help="write a synthetic member population and its ground truth")
    add_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    summary = generate(args.members, args.seed, args.out, bundle_size=args.bundle_size, as_of=args.as_of)
    totals = summary.to_json()["totals"]
    print(f"{summary.members} members -> {args.out} in {summary.seconds:.2f}s: {totals['bundles']} bundles, "
          f"{totals['entries']} entries, {summary.bytes_written / 1e6:.1f} MB", file=sys.stderr)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="planfit synth", description=__doc__)
    add_arguments(parser)
    return run(parser.parse_args(argv))
