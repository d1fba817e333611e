"""`planfit demo`: a server with a synthetic population, loaded through the API, and what it found.

Everything lives in a temporary directory that is deleted at Ctrl-C or SIGTERM (as `timeout`, systemd
and `docker stop` send), after the `planfit serve` child is stopped: a SQLite database, two Backend
Services clients (an EMR-like `clinical` one and a plan's `claims` feed, keys generated here and
registered through PLANFIT_CLIENTS_FILE), the synthetic population (`server/synth/`) and the
server log. The population is posted with `planfit load`'s loader, clinical bundles by the clinical
client and claims bundles by the claims client (the writer decides the evidence kind, SPEC §4.2). The
figures are read back through the FHIR API only, as any client would (`read_figures`).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx

from server import synth
from server.auth.commands import load_private_key, write_key_pair
from server.auth.models import ALL_PATIENTS, User
from server.auth.passwords import hash_password
from server.auth.store import AuthStore
from server.bulk.client import BulkClient
from server.bulk.commands import backend_token
from server.loader.inputs import units
from server.loader.run import Loader
from server.ops import process as serve_process
from server.store.db import make_engine

CLIENTS = {  # client id → (evidence kind, meta.source, population folder)
    "demo-clinical": ("clinical", synth.SOURCE_CLINICAL, "clinical"),
    "demo-claims": ("claims", synth.SOURCE_CLAIMS, "claims"),
}
COHORTS = ("nonclaims-smi", "nonclaims-sud", "misaligned", "candidates-ny-harp", "candidates-dsnp", "candidates-csnp")
SCOPE = "system/*.cruds"
ANALYST = "analyst"  # a dashboard user who may open every member
AS_OF = date(2026, 1, 1)  # evaluation date of the population's ground truth, and of the server
MEMBERS_PER_BUNDLE = 50  # small transactions: a smooth progress bar and short write locks


def register(subparsers: argparse._SubParsersAction) -> None:
    demo = subparsers.add_parser("demo", help="serve a synthetic population and print what PlanFit finds in it")
    demo.add_argument("--members", type=int, default=5000, help="synthetic members (default 5000)")
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--concurrency", type=int, default=4, help="requests in flight while loading")
    demo.set_defaults(func=_demo)


@dataclass
class Figures:
    statuses: dict[str, int]  # `$evaluate-alignment`
    misaligned: int  # the product-alignment MeasureReport's numerator …
    impact: Decimal  # … and its estimated annual impact
    currency: str
    non_claims: dict[str, int]  # numerators of the nonclaims-bh-dx MeasureReport by category
    groups: dict[str, int]  # cohort Group quantities
    flows: Counter = field(default_factory=Counter)  # (enrolled, recommended) of the misaligned members
    flow_impact: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    kinds: Counter = field(default_factory=Counter)  # kind (compliance | opportunity) of the misaligned members
    kind_impact: dict[str, Decimal] = field(default_factory=dict)
    plans: Counter = field(default_factory=Counter)  # the InsurancePlan recommended to the misaligned members
    plan_impact: dict[str, Decimal] = field(default_factory=dict)


def _keys_and_clients(work: Path) -> Path:
    """Key pairs (`planfit keygen`) and the clients file registering them."""
    entries = []
    for client_id, (kind, source, _folder) in CLIENTS.items():
        write_key_pair(work / client_id, "ES384")  # as `planfit keygen` writes them
        entries.append({"id": client_id, "jwks_file": f"{client_id}.jwks.json", "scope": SCOPE,
                        "source_kind": kind, "source_uri": source})
    path = work / "clients.json"
    path.write_text(json.dumps({"clients": entries}, indent=2))
    return path


def _start_server(work: Path, args: argparse.Namespace, clients_file: Path) -> subprocess.Popen:
    env = {**os.environ,
           "PLANFIT_DATABASE_URL": f"sqlite:///{work / 'demo.db'}",
           "PLANFIT_CLIENTS_FILE": str(clients_file),
           "PLANFIT_EVALUATION_DATE": AS_OF.isoformat(),  # the date the population's truth assumes
           "PLANFIT_EXPORT_DIR": str(work / "exports"),
           "PLANFIT_AUTH": "on"}
    # Its own session: Ctrl-C reaches the demo only, which then stops the server in order.
    return serve_process.start(env, work / "server.log", "--host", args.host, "--port", str(args.port),
                               own_session=True)


def _register_analyst(work: Path) -> str:
    """The dashboard's demo user (as `planfit users add --all-patients` registers one); its password."""
    password = secrets.token_urlsafe(9)
    db = make_engine(f"sqlite:///{work / 'demo.db'}")
    try:
        AuthStore(db).put_user(User(ANALYST, hash_password(password), "Practitioner/demo-analyst", (ALL_PATIENTS,)))
    finally:
        db.dispose()
    return password


def _client(http: httpx.Client, root: str, work: Path, client_id: str) -> BulkClient:
    key = load_private_key((work / f"{client_id}.pem").read_bytes())
    return BulkClient(http, lambda: backend_token(http, root, client_id, key, key.thumbprint(), SCOPE))


def _load(http: httpx.Client, root: str, work: Path, population: Path, concurrency: int) -> None:
    for client_id, (_kind, _source, folder) in CLIENTS.items():
        todo, bad = units([population / folder], 500)
        loader = Loader(_client(http, root, work, client_id), root + "/fhir", state=work / "load-state.ndjson",
                        rejects=work / "rejects.ndjson", concurrency=concurrency, desc=f"load {folder}")
        report = loader.run(todo, bad)
        print(f"  {folder}: {report.text()}", flush=True)
        if not report.ok:
            raise RuntimeError(f"the server rejected part of the population: see {work / 'rejects.ndjson'}")


def _json(client: BulkClient, method: str, url: str) -> dict:
    response = client.request(method, url)
    response.raise_for_status()
    return response.json()


def _finding(client: BulkClient, base: str, patient: str) -> dict[str, list]:
    """A member's `$alignment` Parameters as name → values (value[x] or parts)."""
    out: dict[str, list] = {}
    for p in _json(client, "GET", f"{base}/{patient}/$alignment")["parameter"]:
        value = next((v for k, v in p.items() if k.startswith("value")), p.get("part"))
        out.setdefault(p["name"], []).append(value)
    return out


def _numerator(populations: list[dict]) -> int:
    return next(p["count"] for p in populations if p["code"]["coding"][0]["code"] == "numerator")


def _measure(client: BulkClient, base: str, measure: str) -> dict:
    return _json(client, "GET", f"{base}/Measure/{measure}/$evaluate-measure?reportType=population")


def read_figures(client: BulkClient, base: str, concurrency: int) -> Figures:
    """Statuses from a full evaluation, totals from the MeasureReports, cohort sizes from the Groups, and
    the enrolled → recommended flows from the findings of the `misaligned` Group's members."""
    summary = _json(client, "POST", f"{base}/$evaluate-alignment")["parameter"]
    statuses = {p["part"][0]["valueCode"]: p["part"][1]["valueInteger"] for p in summary if p["name"] == "status"}
    alignment = _measure(client, base, "product-alignment")
    money = next(e["valueMoney"] for e in alignment.get("extension", []) if e["url"].endswith("/estimated-annual-impact"))
    nonclaims = _measure(client, base, "nonclaims-bh-dx")["group"][0]["stratifier"][0]["stratum"]
    groups = {cohort: _json(client, "GET", f"{base}/Group/{cohort}") for cohort in COHORTS}
    figures = Figures(statuses, _numerator(alignment["group"][0]["population"]), Decimal(str(money["value"])),
                      money["currency"], {s["value"]["coding"][0]["code"]: _numerator(s["population"]) for s in nonclaims},
                      {cohort: group["quantity"] for cohort, group in groups.items()})
    # Members dropped from a cohort stay listed, inactive, with the period they were in it.
    misaligned = [m["entity"]["reference"] for m in groups["misaligned"].get("member", []) if not m.get("inactive")]
    with ThreadPoolExecutor(concurrency) as pool:
        for finding in pool.map(lambda patient: _finding(client, base, patient), misaligned):
            flow = (finding["enrolledProduct"][0], finding["recommendedProduct"][0])
            figures.flows[flow] += 1
            impact = sum((Decimal(str(m["value"])) for m in finding.get("estimatedAnnualImpact", [])), Decimal(0))
            figures.flow_impact[flow] = figures.flow_impact.get(flow, Decimal(0)) + impact
            kind = finding.get("kind", ["none"])[0]
            figures.kinds[kind] += 1
            figures.kind_impact[kind] = figures.kind_impact.get(kind, Decimal(0)) + impact
            plan = finding["recommendedPlan"][0]["reference"]
            figures.plans[plan] += 1
            figures.plan_impact[plan] = figures.plan_impact.get(plan, Decimal(0)) + impact
    return figures


def render(figures: Figures, root: str, members: int, work: Path, password: str) -> str:
    base = root + "/fhir"
    lines = [
        "",
        f"PlanFit demo: {members} synthetic members at {base} (evaluation date {AS_OF.isoformat()})",
        "",
        "Members by status: " + ", ".join(f"{s} {n}" for s, n in sorted(figures.statuses.items())),
        "",
        "Misaligned members, enrolled -> recommended product:",
        *(f"  {e:>13} -> {r:<13} {n:>6}   {_money(figures.flow_impact.get((e, r), Decimal(0)), figures.currency)}/yr"
          for (e, r), n in figures.flows.most_common()),
        f"  {'total':>13}    {'':<13} {figures.misaligned:>6}",
        "",
        "Misaligned members by kind (SPEC §4.3: compliance = the enrolled product's rule fails, a negative",
        "impact is overpayment exposure; opportunity = a higher-acuity product of the same program):",
        *(f"  {k:>13}    {n:>6}   {_money(figures.kind_impact.get(k, Decimal(0)), figures.currency)}/yr"
          for k, n in figures.kinds.most_common()),
        "",
        "Misaligned members by the plan recommended to them (InsurancePlan resources, admin-writable):",
        *(f"  {p:<27} {n:>6}   {_money(figures.plan_impact.get(p, Decimal(0)), figures.currency)}/yr"
          for p, n in figures.plans.most_common()),
        "",
        "Members with non-claims diagnoses (clinical evidence, no claim): "
        + ", ".join(f"{c.upper()} {figures.non_claims.get(c, 0)}" for c in ("smi", "sud")),
        f"Total estimated annual impact (ILLUSTRATIVE rates, mappings/rates.json): "
        f"{_money(figures.impact, figures.currency)}",
        "",
        "Cohort Groups:",
        *(f"  {base}/Group/{cohort}  ({size} members)" for cohort, size in figures.groups.items()),
        "",
        "A ready Backend Services client (system/*.cruds, clinical source):",
        f"  client id: demo-clinical   key: {work / 'demo-clinical.pem'}",
        f"  TOKEN=$(planfit token --url {root} --client-id demo-clinical --key {work / 'demo-clinical.pem'} "
        f"--scope 'system/*.rs')",
        f"  curl -H \"Authorization: Bearer $TOKEN\" {base}/Group/misaligned",
        "",
        f"Dashboard (a SMART app): {root}/app/  - sign in as {ANALYST} / {password}",
        f"  worklist of members with findings: {root}/app/#worklist  (API: {base}/Patient/$worklist)",
        f"  quarterly enrollment audit: POST {base}/Measure/product-alignment/$audit-quarter?quarter=YYYYQn, "
        f"then {root}/app/#audit",
        f"  claims-based alignment projection: POST {base}/Group/$alignment-projection-load (claim lines, "
        f"beneficiaries), then POST {base}/Group/$alignment-projection; {root}/app/#projection",
        f"  savings and payment assurance: POST {base}/MeasureReport/$savings-load (terms, beneficiaries, claims), "
        f"then {root}/app/#savings?aco=...&month=YYYY-MM&cohort=Group/...",
        f"  care management (a roster's weekly priority list, my Tasks): {root}/app/#interventions  "
        f"(API: POST {base}/List/$intervention-priority with roster=Group/<attribution list>)",
        "",
        f"Serving at {base} until Ctrl-C (server log: {work / 'server.log'}; all data is deleted at exit).",
    ]
    return "\n".join(lines)


def _money(amount: Decimal, currency: str) -> str:
    return f"{currency} {amount:,.2f}"


def _port_taken(host: str, port: int) -> bool:
    """Something already answers there: its /readyz would pass for the demo server's."""
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


class Terminated(BaseException):
    """SIGTERM arrived: stop as on Ctrl-C (a BaseException, like KeyboardInterrupt, so no `except
    Exception` on the way swallows it)."""


def _terminate(_signum: int, _frame: object) -> None:
    raise Terminated()


def _stop(server: subprocess.Popen) -> None:
    # A second Ctrl-C or SIGTERM must not cut the clean-up short: the child and the PHI-shaped data.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    serve_process.stop(server, timeout=20, signum=signal.SIGINT)


def _demo(args: argparse.Namespace) -> int:
    # Ctrl-C stops the demo even when it was started with SIGINT ignored (as by nohup or a test runner's
    # worker): an ignored disposition is inherited, and Python would never raise KeyboardInterrupt.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate)
    if args.members < 1:
        print("planfit demo: --members must be at least 1", file=sys.stderr)
        return 2
    root = f"http://{args.host}:{args.port}"
    if _port_taken(args.host, args.port):
        print(f"planfit demo: {args.host}:{args.port} is in use: choose another --port", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="planfit-demo-") as tmp:
        work = Path(tmp)
        server = _start_server(work, args, _keys_and_clients(work))
        try:
            print(f"starting PlanFit at {root} (data in {work}) ...", flush=True)
            serve_process.wait_ready(server, root, work / "server.log", timeout=120)
            password = _register_analyst(work)
            population = work / "population"
            print(f"generating {args.members} synthetic members ...", flush=True)
            synth.generate(args.members, args.seed, population, bundle_size=MEMBERS_PER_BUNDLE, as_of=AS_OF)
            with httpx.Client(timeout=300) as http:
                print("loading them through the FHIR API ...", flush=True)
                _load(http, root, work, population, args.concurrency)
                print("reading the findings back through the API ...", flush=True)
                client = _client(http, root, work, "demo-clinical")
                figures = read_figures(client, root + "/fhir", args.concurrency)
            print(render(figures, root, args.members, work, password), flush=True)
            server.wait()
            print("planfit demo: the server stopped", file=sys.stderr)
            return 1
        except (KeyboardInterrupt, Terminated):
            print("\nstopping ...", flush=True)
            return 0
        except (RuntimeError, httpx.HTTPError, OSError) as exc:
            print(f"planfit demo: {exc}", file=sys.stderr)
            return 1
        finally:
            _stop(server)
