"""`planfit evaluate`.

`evaluate` is the operator's full re-evaluation: the same engine and SQL as `POST
/fhir/$evaluate-alignment`, run against `PLANFIT_DATABASE_URL` directly (the schema is migrated first),
so it needs no running server and no token.
"""

from __future__ import annotations

import argparse
import sys

from server.alignment.engine import AlignmentEngine, EngineConfig
from server.alignment.mappings import MappingError, load_mappings
from server.cohorts.membership import CohortMaintainer
from server.config import Settings
from server.store.db import make_engine, migrate
from server.store.resources import Store


def register(subparsers: argparse._SubParsersAction) -> None:
    evaluate = subparsers.add_parser("evaluate", help="re-evaluate every member's product alignment")
    evaluate.set_defaults(func=_evaluate)


def _evaluate(_args: argparse.Namespace) -> int:
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
