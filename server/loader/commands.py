"""`planfit load PATH…`: post transaction bundles, resource files and NDJSON to a FHIR server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx

from server.bulk.client import BulkClient, ExportFailed
from server.bulk.commands import server_root, token_source
from server.loader.inputs import units
from server.loader.post import Retry
from server.loader.run import Loader

STATE_FILE = ".planfit-load-state.ndjson"
REJECTS_FILE = "planfit-load-rejects.ndjson"


def register(subparsers: argparse._SubParsersAction) -> None:
    load = subparsers.add_parser(
        "load", help="post FHIR bundles/resources/NDJSON to a FHIR server (resumable: run it again to continue)"
    )
    load.add_argument("paths", nargs="+", type=Path, metavar="PATH",
                      help="transaction/batch bundle or resource JSON files, NDJSON files, or folders of them")
    load.add_argument("--url", help="FHIR base URL (default: the local PlanFit server's /fhir)")
    load.add_argument("--token", help="access token to send as Bearer")
    load.add_argument("--client-id", help="SMART Backend Services client id (with --key: fetch tokens as needed)")
    load.add_argument("--key", type=Path, help="private key (PEM) of --client-id")
    load.add_argument("--kid", help="key id in the registered JWKS (default: the key's RFC 7638 thumbprint)")
    load.add_argument("--scope", default="system/*.cruds", help="scopes to ask for with --client-id")
    load.add_argument("--concurrency", type=int, default=4, help="requests in flight (default 4)")
    load.add_argument("--batch", type=int, default=500, help="NDJSON resources per transaction (default 500)")
    load.add_argument("--retries", type=int, default=8, help="attempts per request for transient failures")
    load.add_argument("--state", type=Path, default=Path(STATE_FILE), help=f"finished inputs (default ./{STATE_FILE})")
    load.add_argument("--rejects", type=Path, default=Path(REJECTS_FILE),
                      help=f"rejected requests/entries with their OperationOutcome (default ./{REJECTS_FILE})")
    load.add_argument("--timeout", type=float, default=300, help="seconds to wait for one response")
    load.set_defaults(func=_load)


def fhir_base(url: str | None) -> str:
    return url.rstrip("/") if url else server_root(None) + "/fhir"


def _load(args: argparse.Namespace) -> int:
    if args.concurrency < 1 or args.batch < 1 or args.retries < 1:
        print("planfit load: --concurrency, --batch and --retries must be at least 1", file=sys.stderr)
        return 2
    base = fhir_base(args.url)
    todo, bad = units(args.paths, args.batch)
    try:
        with httpx.Client(timeout=args.timeout) as http:
            # Backend Services discovery is PlanFit's: <root>/fhir/.well-known/smart-configuration.
            client = BulkClient(http, token_source(args, http, base.removesuffix("/fhir")))
            loader = Loader(client, base, state=args.state, rejects=args.rejects, concurrency=args.concurrency,
                            retry=Retry(attempts=args.retries))
            report = loader.run(todo, bad)
    except (ExportFailed, httpx.HTTPError, OSError) as exc:
        print(f"planfit load: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"planfit load: interrupted; run the same command again to continue ({args.state})", file=sys.stderr)
        return 130
    print(report.text())
    if not report.ok:
        print(f"planfit load: rejections written to {args.rejects}", file=sys.stderr)
    return 0 if report.ok else 1
