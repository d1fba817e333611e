"""The `planfit` command."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile

from benchmarks import command as bench_command
from server.alignment import commands as alignment_commands
from server.alignment.claim_facts import maintain as maintain_claim_lines
from server.alignment.coverage_facts import maintain as maintain_coverages
from server.alignment.diagnoses import maintain as maintain_diagnoses
from server.alignment.patient_facts import maintain as maintain_patients
from server.audit.denials import maintain_lines as maintain_denied_lines
from server.audit import commands as audit_commands
from server.synth import audit as audit_synth
from server.auth import commands as auth_commands
from server.bulk import commands as bulk_commands
from server import demo, synth
from server.config import Settings, SettingsError
from server.fhir import commands as fhir_commands
from server.loader import commands as loader_commands
from server.synth import risk as risk_synth
from server.ops.logging import logging_config
from server.ops.metrics import MULTIPROC_ENV
from server.synth import rosters as roster_synth
from server.synth import projection as projection_synth
from server.synth import savings as savings_synth
from server.synth import interventions as intervention_synth


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = Settings.from_env()
    host = args.host or settings.host
    port = args.port or settings.port
    log_config = logging_config(settings.log_format, settings.log_level)
    # The app reads its settings again in each worker: let them see the address actually served.
    os.environ["PLANFIT_HOST"], os.environ["PLANFIT_PORT"] = host, str(port)
    metrics_dir = None
    if args.workers > 1 and not os.environ.get(MULTIPROC_ENV):
        # Workers are separate processes: their metrics meet in files here, merged at each scrape.
        metrics_dir = os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="planfit-metrics-")
    print(f"PlanFit FHIR R4 server: http://{host}:{port}/fhir  (database: {_safe_url(settings.database_url)})", flush=True)
    try:
        uvicorn.run(
            "server.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=args.workers,
            log_level=settings.log_level,
            log_config=log_config,
            access_log=False,  # the request middleware logs each request (route template, no raw path)
            # A spawned worker imports this module before it answers the supervisor's health check: on a
            # busy host that takes longer than uvicorn's 5 s, and the worker would be killed and respawned.
            timeout_worker_healthcheck=60,
            # Longer than clients' and load balancers' idle timeouts, so the server is never the side that
            # closes an idle keep-alive connection just as a client reuses it ("Server disconnected").
            timeout_keep_alive=75,
        )
    finally:
        if metrics_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _safe_url(url: str) -> str:
    """The database URL without its password."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        return f"{scheme}://{creds.split(':', 1)[0]}@{host}"
    return url


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="planfit", description="PlanFit FHIR R4 server")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the server (PLANFIT_* variables configure it)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(func=_serve)
    synth.register(sub)
    # The features' IN_TRANSACTION hooks: alignment's diagnosis, coverage, Patient and claim-line facts, the audit's
    # denied lines.
    derivations = [maintain_diagnoses, maintain_coverages, maintain_patients, maintain_claim_lines,
                   maintain_denied_lines]
    alignment_commands.register(sub, derivations)
    risk_synth.extend(sub)  # `planfit synth` also writes the risk-adjustment population
    roster_synth.extend(sub)  # … and a payer attribution file with planted mismatches
    audit_synth.extend(sub)  # … and the audit population: claims with lags, denials, next quarter's changes
    projection_synth.extend(sub)  # … and claims-based alignment projection inputs
    savings_synth.extend(sub)  # … and savings inputs (benchmark, claims with lags) with ground truth
    intervention_synth.extend(sub)  # … and ED visits, admissions and care plans of the risk population
    audit_commands.register(sub)
    auth_commands.register(sub)
    bulk_commands.register(sub)
    fhir_commands.register(sub, derivations=derivations)
    loader_commands.register(sub)
    demo.register(sub)
    bench_command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except SettingsError as exc:
        print(f"planfit: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
