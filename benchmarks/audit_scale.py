"""The audit figures at a population's size without `planfit bench`'s full ingest (issue 22, SPEC §8):
`python -m benchmarks.audit_scale --members 100000`.

`planfit bench --members 100000` ingests the 100,000-member alignment population over HTTP first (over an
hour here) and only then a tenth as many audit members. This loads the audit population alone (every member
with encounters, claims and, for a share, denied EOB lines; `server/synth/audit.py`) over HTTP at its full
size, then runs the same audit stages as the bench (`benchmarks/audit.py`): quarter close, encounter
completeness, denial classification (members/s over every member loaded) and the worklist filters. It is a
heavier denial load than the bench's: every member here is an audit member.

With `--keep` the PostgreSQL schema stays (its name is printed) and `--schema NAME` runs the stages again
on it without loading: a change can be measured against the same data. `--stages worklist` runs only the
stages named (the worklist alone takes seconds; the denials take minutes at 20,000 members).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import uuid
from pathlib import Path

import orjson
import psycopg

from benchmarks import audit, ingest
from benchmarks.command import DEFAULT_DSN
from benchmarks.servers import analyze, running, schema_url

STAGES = ("audit_quarter", "completeness", "denials")


def measure(url: str, work: Path, members: int, load: bool, dsn: str, schema: str | None, clients: int,
            stages: tuple[str, ...] = (*STAGES, "worklist")) -> dict:
    """Load (when asked) and run the audit stages on two fresh server processes over `url`."""
    figures: dict = {}
    with running(url, work / "exports", "sync") as servers:
        if load:
            figures["ingest_audit"] = ingest.ingest(servers, audit.audit_bundles(members, work / "audit"), clients,
                                                    "ingest audit population")
        if schema is not None:
            analyze(dsn, schema)
        clinical = servers["clinical"]
        for stage in (s for s in STAGES if s in stages):
            figures[stage] = getattr(audit, stage)(clinical, members)
            print(stage, orjson.dumps(figures[stage]).decode(), file=sys.stderr, flush=True)
        if "worklist" in stages:
            figures["worklist"] = audit.worklist(clinical)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000, help="audit members (default 100,000)")
    parser.add_argument("--database-url", default=DEFAULT_DSN,
                        help=f"PostgreSQL DSN (default {DEFAULT_DSN}) or sqlite:///file (kept when it exists)")
    parser.add_argument("--schema", help="an existing schema kept by --keep: run the stages on it, no load")
    parser.add_argument("--clients", type=int, default=2, help="concurrent ingest clients (default 2)")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL schema (its name is printed)")
    parser.add_argument("--stages", nargs="+", choices=(*STAGES, "worklist"), default=(*STAGES, "worklist"),
                        help="the stages to run (default: all)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="planfit-audit-scale-") as tmp:
        if args.database_url.startswith("sqlite"):
            load = not Path(args.database_url.split("///", 1)[1]).exists()
            figures = measure(args.database_url, Path(tmp), args.members, load, args.database_url, None, args.clients,
                              tuple(args.stages))
        else:
            schema = args.schema or "audit_" + uuid.uuid4().hex[:8]
            if args.schema is None:
                with psycopg.connect(args.database_url, autocommit=True) as conn:
                    conn.execute(f'CREATE SCHEMA "{schema}"')
            try:
                figures = measure(schema_url(args.database_url, schema), Path(tmp), args.members,
                                  args.schema is None, args.database_url, schema, args.clients, tuple(args.stages))
            finally:
                if not (args.keep or args.schema):
                    with psycopg.connect(args.database_url, autocommit=True) as conn:
                        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            print(f"schema {schema}" + (" kept" if args.keep or args.schema else " dropped"), file=sys.stderr)
    print(orjson.dumps(figures, option=orjson.OPT_INDENT_2).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
