"""The `planfit bench` command line: only its options, so that `planfit` loads the benchmarks (servers, HTTP
clients, the synthetic population) when `planfit bench` runs, never for another command."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/test"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="measure the SPEC §8 performance figures (needs PostgreSQL)")
    parser.add_argument("--members", type=int, default=100_000, help="synthetic members (default 100000)")
    parser.add_argument("--database-url", default=DEFAULT_DSN, help=f"PostgreSQL (default {DEFAULT_DSN})")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--audit-members", type=int, default=None,
                        help="members of the audit population with claims and denials (default: members / 10)")
    parser.add_argument("--audit-truth-members", type=int, default=None,
                        help="members of the audit population checked against its ground truth (default 5,000)")
    parser.add_argument("--clients", type=int, default=2, help="concurrent ingest clients (default 2)")
    parser.add_argument("--measure-clients", type=int, default=32, help="concurrent $evaluate-measure clients")
    parser.add_argument("--sqlite-share", type=float, default=0.1,
                        help="share of the bundles ingested on SQLite (default 0.1)")
    parser.add_argument("--alignment-mode", choices=("deferred", "sync"), default="deferred",
                        help="the servers' PLANFIT_ALIGNMENT_MODE (default deferred)")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record py-spy flame graphs of the servers during ingest into DIR")
    parser.add_argument("--skip", default="", metavar="STAGES",
                        help="comma-separated stages not to run (ingest and evaluate always run), e.g. "
                             "group_export,evaluate_measure,ingest_sqlite")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from benchmarks import bench  # here, not at the top: the reason this module exists

    return bench.run(args)
