"""`planfit bench`: the SPEC §8 figures in one run, each next to its goal and the floor.

    planfit bench [--members 100000] [--database-url URL] [--json OUT]

Generates the synthetic population (`planfit synth`, bundles of ~500 entries), measures the floor
(orjson parse + COPY of the same resources into a bare PostgreSQL table), then starts real
`planfit serve` processes (PLANFIT_AUTH=off) on a fresh PostgreSQL schema and measures over HTTP:
ingest, full re-evaluation, the largest cohort Group read and its $export, roster operations on a list of every
member (`benchmarks/rosters.py`), capitation with member months derived from them (`benchmarks/risk.py`), and
`$evaluate-measure`
latency; finally the ingest of a share of the same bundles on SQLite. A stage whose endpoint fails is
reported with its HTTP status and makes the command exit non-zero; its figures are never made up.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import orjson

from benchmarks import audit, audit_truth, evaluate, export, ingest, measure, projection, risk, rosters
from server.synth import MEMBER_SYSTEM
from benchmarks.servers import StageFailed, analyze, postgres_schema, profiled, running, schema_of, schema_url



class Results:
    """The figures of each stage, or the reason it could not measure."""

    def __init__(self, skip: frozenset[str] = frozenset()) -> None:
        self.stages: dict[str, dict] = {}
        self.skip = skip

    def stage(self, name: str, measure: Callable[[], dict]) -> dict | None:
        if name in self.skip:
            return None
        print(f"[{time.strftime('%H:%M:%S')}] {name} …", file=sys.stderr, flush=True)
        try:
            self.stages[name] = measure()
        except StageFailed as exc:
            self.stages[name] = {"error": str(exc)}
            print(f"  FAILED: {exc}", file=sys.stderr, flush=True)
            return None
        return self.stages[name]

    @property
    def failed(self) -> bool:
        return any("error" in figures for figures in self.stages.values())


def run(args: argparse.Namespace) -> int:
    dsn = args.database_url.replace("postgresql+psycopg://", "postgresql://", 1)
    results = Results(frozenset(s.strip() for s in args.skip.split(",") if s.strip()) - {"ingest", "evaluate"})
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="planfit-bench-") as tmp:
        work = Path(tmp)
        print(f"generating {args.members} members …", file=sys.stderr, flush=True)
        population = ingest.synthesize(args.members, work / "population")
        results.stage("floor", lambda: ingest.floor_rate(dsn, population.bundles))
        with postgres_schema(dsn) as url, running(url, work / "exports", args.alignment_mode) as servers:
            _postgres_stages(args, results, population, servers, dsn, schema_of(url))
        # The audit population against its ground truth, at its own size on fresh databases.
        results.stage("audit_truth", lambda: audit_truth.check_both(
            dsn, work / "audit-truth", args.audit_truth_members or audit_truth.MEMBERS))
        with running(f"sqlite:///{work / 'bench.db'}", work / "exports-sqlite", args.alignment_mode) as servers:
            share = population.share(args.sqlite_share)
            results.stage("ingest_sqlite", lambda: ingest.ingest(servers, share, args.clients, "ingest SQLite"))
    report = _report(args, population, results, time.perf_counter() - started)
    print(table(report))
    if args.json:
        args.json.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return 1 if results.failed else 0


def _postgres_stages(args, results: Results, population: ingest.Population, servers, dsn: str, schema: str) -> None:
    with profiled(servers, args.profile, "ingest-postgresql"):
        results.stage("ingest", lambda: ingest.ingest(servers, population.bundles, args.clients, "ingest PostgreSQL"))
    analyze(dsn, schema)
    clinical = servers["clinical"]
    truth = population.summary.statuses
    results.stage("evaluate", lambda: evaluate.full_evaluation(clinical, population.summary.members, truth))
    # The population's diagnoses fall in the year before its evaluation date: that year's payment year.
    database_url = schema_url(dsn, schema)  # names the servers' backends, whose CPU the risk stages count
    results.stage("risk", lambda: risk.risk_evaluation(clinical, population.summary.members, int(ingest.AS_OF[:4]),
                                                       database_url))
    audit_members = args.audit_members if args.audit_members is not None else max(10, args.members // 10)
    bundles = audit.audit_bundles(audit_members, population.summary.out / "audit")
    results.stage("ingest_audit", lambda: ingest.ingest(servers, bundles, args.clients, "ingest audit population"))
    analyze(dsn, schema)
    everyone = population.summary.members + audit_members
    results.stage("audit_quarter", lambda: audit.audit_quarter(clinical, everyone))
    results.stage("completeness", lambda: audit.completeness(clinical, everyone))
    results.stage("denials", lambda: audit.denials(clinical, everyone))
    results.stage("worklist", lambda: audit.worklist(clinical))
    results.stage("projection", lambda: projection.projection_stage(clinical, args.members))
    read = results.stage("group_read", lambda: export.group_read(clinical))
    if read is not None:
        results.stage("group_export", lambda: export.group_export(clinical, read["group"]))
    elif "group_read" not in results.skip:
        results.stages["group_export"] = {"error": "no cohort Group to export (see group_read)"}
    members = sorted(orjson.loads((population.summary.out / "ground_truth.json").read_bytes())["members"])
    # With the schema's URL the roster figures count the database backends' CPU too, as standalone.
    results.stage("rosters", lambda: rosters.roster_operations(clinical, members, MEMBER_SYSTEM, database_url))
    # After the roster stage: its lists attribute every member, whose member months capitation derives.
    results.stage("capitation", lambda: risk.capitation(clinical, population.summary.members, database_url))
    patients = measure.patient_ids(dsn, schema, 2000)
    results.stage("evaluate_measure", lambda: measure.latency(list(servers.values()), patients,
                                                              args.measure_clients, 50, dsn, schema))


def _report(args, population: ingest.Population, results: Results, seconds: float) -> dict:
    stages = results.stages
    floor = stages.get("floor", {}).get("resources_per_s")
    for name in ("ingest", "ingest_sqlite"):
        rate = stages.get(name, {}).get("resources_per_s")
        if floor and rate:
            stages[name]["ratio_to_floor"] = round(rate / floor, 3)
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": len(os.sched_getaffinity(0)), "cpu": _cpu_model(), "python": platform.python_version(),
                    "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()]},
        "members": population.summary.members,
        "resources": population.resources,
        "bundles": len(population.bundles),
        "authorization": "off (PLANFIT_AUTH=off: the figures exclude token checks)",
        "servers": "two `planfit serve` processes on one database: the clinical feed's and the claims feed's",
        "sqlite_share": args.sqlite_share,
        "seconds": round(seconds),
        "stages": stages,
    }


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.machine()


def _rate(figures: dict, key: str = "resources_per_s") -> str:
    return f"{figures[key]:,} res/s"


_ROWS: tuple[tuple[str, str, Callable[[dict], str], str], ...] = (
    ("floor", "floor: orjson + COPY into a bare table", _rate, "~43,000 res/s (SPEC)"),
    ("ingest", "ingest over HTTP, PostgreSQL",
     lambda f: f"{_rate(f)}, {f.get('ratio_to_floor', 0):.2f} of floor; {f['mode']}, lag p50 {f['lag_p50_s']} s,"
               f" max {f['lag_max_s']} s",
     ">= 10,000 res/s; HAPI/Aidbox 2,200-2,700 on 8 vCPU, Blaze ~10,000 on 16 cores"),
    ("evaluate", "full re-evaluation",
     lambda f: f"{f['seconds']} s ({f['members_per_s']:,} members/s), peak RSS {f['peak_rss_mb']} MB"
               + ("" if f["matches_ground_truth"] else ", STATUSES DIFFER FROM GROUND TRUTH"),
     "1M members <= 60 s, <= 1 GB"),
    ("risk", "RAF scores and coding gaps ($risk-evaluate)",
     lambda f: f"{f['seconds']} s ({f['members_per_s']:,} members/s; {f['scored']:,} Medicare members scored, "
               f"{f['open_gaps']:,} open gaps), CPU {f['cpu_seconds']} s at load {f['load_1min']}, "
               f"peak RSS {f['peak_rss_mb']} MB",
     ">= 10,000 members/s, <= 1 GB"),
    ("capitation", "capitation, member months derived ($capitation-adjustment)",
     lambda f: f"{f['seconds']} s ({f['members_per_s']:,} members/s; {f['base_member_months']:,} base-year member "
               f"months), CPU {f['cpu_seconds']} s at load {f['load_1min']}, peak RSS {f['peak_rss_mb']} MB",
     ">= 10,000 members/s, <= 1 GB"),
    ("ingest_audit", "ingest of the audit population (claims, denials)",
     lambda f: f"{_rate(f)} ({f['resources']:,} resources)", "(setup of the audit stages)"),
    ("audit_quarter", "quarterly audit close ($audit-quarter)",
     lambda f: f"{f['seconds']} s ({f['members_per_s']:,} members/s; {f['misaligned']:,} misaligned), "
               f"peak RSS {f['peak_rss_mb']} MB", ">= 10,000 members/s, <= 1 GB"),
    ("completeness", "encounter completeness ($completeness)",
     lambda f: f"{f['seconds']} s ({f['members_per_s']:,} members/s; {f['records']:,} records, {f['strata']} strata), "
               f"peak RSS {f['peak_rss_mb']} MB", ">= 10,000 members/s, <= 1 GB"),
    ("denials", "denial classification ($denial-root-cause)",
     lambda f: f"{f['seconds']} s ({f['members_per_s']:,} members/s; {f['denied_lines']:,} denied lines), "
               f"peak RSS {f['peak_rss_mb']} MB", ">= 10,000 members/s, <= 1 GB"),
    ("projection", "alignment projection ($alignment-projection)",
     lambda f: f"{f['seconds']} s ({f['beneficiaries_per_s']:,} beneficiaries/s), load {f['load_seconds']} s"
               + ("" if f["matches_ground_truth"] else ", COUNTS DIFFER FROM GROUND TRUTH"),
     ">= 10,000 beneficiaries/s"),
    ("worklist", "worklist page (50 rows, 13 filter sets, page 1 and 21)",
     lambda f: f"slowest median {f['slowest_ms']} ms", "<= 500 ms at 100,000 members (SPEC §8)"),
    ("group_read", "largest cohort Group read",
     lambda f: f"{f['seconds']} s (Group/{f['group']}, {f['quantity']:,} members)", "100,000 members <= 2 s"),
    ("group_export", "Group/$export, kick-off to downloaded files",
     lambda f: f"{_rate(f)} ({f['resources']:,} resources; {_rate(f, 'resources_per_s_to_manifest')} to manifest)",
     ">= 50,000 res/s"),
    ("rosters", "roster operations on the imported list",
     lambda f: f"slowest {f['slowest_operation']} {f['slowest_seconds']} s; " + ", ".join(
         f"{k} {v} s" for k, v in f.items() if isinstance(v, float)) + f" ({f['members']:,} members)",
     "each <= 2 s, page <= 500 ms at 100,000"),
    ("evaluate_measure", "$evaluate-measure, one patient",
     lambda f: f"p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms, p99 {f['p99_ms']} ms ({f['clients']} clients, "
               f"{f['requests_per_s']} req/s)", "p99 <= 50 ms, 32 clients"),
    ("audit_truth", "audit population vs its ground truth",
     lambda f: "; ".join(f"{db} {r['members']:,} members set-up {r['setup_seconds']} s, "
                         + ("all match" if audit_truth.matched({db: r}) else "DIFFERS") for db, r in f.items()),
     "exact at 5,000 members (issue 22)"),
    ("ingest_sqlite", "ingest over HTTP, SQLite (share)",
     lambda f: f"{_rate(f)} ({f['resources']:,} resources; lag max {f['lag_max_s']} s)", "(comparison)"),
)


def table(report: dict) -> str:
    stages = report["stages"]
    lines = [
        f"planfit bench  {report['date']}  {report['members']:,} members, {report['resources']:,} resources "
        f"in {report['bundles']:,} bundles  ({report['seconds']} s)",
        f"authorization: {report['authorization']}; load average at the end {report['machine']['load_average_1_5_15']}",
        f"servers: {report['servers']}; SQLite gets {report['sqlite_share']:.0%} of the bundles",
        "",
        f"{'stage':<45} {'measured':<62} goal / anchors",
    ]
    for key, label, render, goal in _ROWS:
        figures = stages.get(key)
        if figures is None:
            text = "not run"
        elif "error" in figures:
            text = f"FAILED: {figures['error']}"
        else:
            text = render(figures)
        lines.append(f"{label:<45} {text:<62} {goal}")
    return "\n".join(lines)
