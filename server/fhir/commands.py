"""`planfit reindex`: rebuild the index rows of search parameters from the stored resources.

    planfit reindex --param Coverage.plan --param Patient.opwdd

Needed after a parameter's definition changed; parameters added by a migration are indexed by the
next server start without asking. A running server sees the new rows as soon as the command commits.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from server.config import Settings
from server.fhir import reindex
from server.store.db import make_engine, migrate
from server.store.resources import Derivation


def register(subparsers: argparse._SubParsersAction, derivations: Sequence[Derivation] = ()) -> None:
    """`derivations`: the features' IN_TRANSACTION hooks, rebuilt for the types reindexed, as the server does."""
    parser = subparsers.add_parser("reindex", help="rebuild search-parameter index rows (PLANFIT_DATABASE_URL)")
    parser.add_argument("--param", action="append", required=True, metavar="TYPE.CODE",
                        help="a search parameter, e.g. Coverage.plan (repeat for more)")
    parser.set_defaults(func=lambda args: run(args, derivations))


def run(args: argparse.Namespace, derivations: Sequence[Derivation] = ()) -> int:
    wanted: dict[str, list[str]] = {}
    for spec in args.param:
        rtype, _, code = spec.partition(".")
        if not rtype or not code:
            print(f"planfit: --param takes TYPE.CODE, got {spec!r}", file=sys.stderr)
            return 2
        wanted.setdefault(rtype, []).append(code)
    engine = make_engine(Settings.from_env().database_url)
    try:
        migrate(engine)
        reindex.request(engine, wanted)
        count = reindex.run_requested(engine, derivations)
    except ValueError as exc:
        print(f"planfit: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(f"reindexed {count} resources")
    return 0
