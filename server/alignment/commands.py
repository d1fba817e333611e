"""`planfit evaluate`.

`evaluate` is the operator's full re-evaluation: the same engine and SQL as `POST
/fhir/$evaluate-alignment`, run against `PLANFIT_DATABASE_URL` directly, so it needs no running server and
no token. The schema is migrated first and the reindex requests of the migrations are carried out, as a
server does at start: the facts an evaluation reads (`alignment_coverages`, `alignment_diagnoses`) are
filled that way after an upgrade, and an evaluation before it would find every member without coverage.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from server.alignment.engine import AlignmentEngine, EngineConfig
from server.alignment.mappings import MappingError, load_mappings
from server.cohorts.membership import CohortMaintainer
from server.config import Settings
from server.fhir.reindex import run_requested
from server.store.db import make_engine, migrate
from server.store.resources import Derivation, Store


def register(subparsers: argparse._SubParsersAction, derivations: Sequence[Derivation] = ()) -> None:
    """`derivations`: every feature's IN_TRANSACTION hooks, rebuilt with the pending reindex requests."""
    evaluate = subparsers.add_parser("evaluate", help="re-evaluate every member's product alignment")
    evaluate.set_defaults(func=lambda args: _evaluate(args, derivations))


def _evaluate(_args: argparse.Namespace, derivations: Sequence[Derivation]) -> int:
    settings = Settings.from_env()
    try:
        mappings = load_mappings(settings.mappings_dir or None, rates_file=settings.rates_file or None)
        config = EngineConfig.parse(settings.lookback_months, settings.evaluation_date)
    except (MappingError, ValueError) as exc:
        print(f"planfit: {exc}", file=sys.stderr)
        return 2
    db = make_engine(settings.database_url)
    try:
        migrate(db)
        run_requested(db, derivations)
        engine = AlignmentEngine(db, mappings, config)
        cohorts = CohortMaintainer(Store(db))
        cohorts.ensure_headers()
        cohorts.follow(engine)  # the cohort Groups follow, as they do in a server
        summary = engine.evaluate_all()
    finally:
        db.dispose()
    statuses = ", ".join(f"{status} {count}" for status, count in summary.statuses.items())
    print(f"{summary.members} members evaluated as of {summary.as_of} (lookback from {summary.lookback_start}) "
          f"in {summary.seconds:.1f}s: {statuses or 'none'}")
    return 0
