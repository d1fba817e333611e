"""`planfit export`: pull a Group's Bulk Data export into a directory, as any client would."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import httpx
from joserfc.jwk import Key

from server.auth.commands import load_private_key, request_backend_token
from server.bulk.client import BulkClient, ExportFailed, ExportRequest, Token, run
from server.config import Settings


def register(subparsers: argparse._SubParsersAction) -> None:
    export = subparsers.add_parser(
        "export", help="download a Group's Bulk Data export (resumable: run it again to continue)"
    )
    export.add_argument("--group", required=True, help="id of the Group to export")
    export.add_argument("--out", required=True, type=Path, help="directory for the NDJSON files and manifest.json")
    export.add_argument("--url", help="server root URL (default: PLANFIT_BASE_URL or http://PLANFIT_HOST:PLANFIT_PORT)")
    export.add_argument("--token", help="access token to send as Bearer")
    export.add_argument("--client-id", help="SMART Backend Services client id (with --key: fetch tokens as needed)")
    export.add_argument("--key", type=Path, help="private key (PEM) of --client-id")
    export.add_argument("--kid", help="key id in the registered JWKS (default: the key's RFC 7638 thumbprint)")
    export.add_argument("--scope", default="system/*.rs", help="scopes to ask for with --client-id")
    export.add_argument("--type", action="append", default=[], help="_type (repeatable or comma-separated)")
    export.add_argument("--since", help="_since: only resources changed since this instant")
    export.add_argument("--type-filter", action="append", default=[], help="_typeFilter, e.g. 'Condition?code=F20.9'")
    export.set_defaults(func=_export)


def server_root(url: str | None) -> str:
    if url:
        return url.rstrip("/")
    settings = Settings.from_env()
    return settings.base_url.rstrip("/") or f"http://{settings.host}:{settings.port}"


def token_source(args: argparse.Namespace, http: httpx.Client, root: str) -> Token:
    """A function giving a current token: the one given, or a fresh Backend Services token."""
    if args.client_id or args.key:
        if not (args.client_id and args.key):
            raise ExportFailed("--client-id and --key go together")
        key = load_private_key(args.key.read_bytes())
        kid = args.kid or key.thumbprint()
        return lambda: backend_token(http, root, args.client_id, key, kid, args.scope)
    return lambda: args.token


def backend_token(http: httpx.Client, root: str, client_id: str, key: Key, kid: str, scope: str) -> str:
    """A fresh SMART Backend Services access token."""
    response = request_backend_token(http, root, client_id, key, kid, scope)
    if response.status_code != 200:
        raise ExportFailed(f"token request refused: {response.text}")
    return response.json()["access_token"]


def _params(args: argparse.Namespace) -> list[tuple[str, str]]:
    params = [("_type", t) for t in args.type]
    if args.since:
        params.append(("_since", args.since))
    params += [("_typeFilter", f) for f in args.type_filter]
    return params


def _export(args: argparse.Namespace) -> int:
    root = server_root(args.url)
    request = ExportRequest(args.group, _params(args))
    try:
        with httpx.Client(timeout=60) as http:
            client = BulkClient(http, token_source(args, http, root))
            manifest = run(client, root + "/fhir", request, args.out)
    except (ExportFailed, OSError, ValueError, httpx.HTTPError) as exc:
        print(f"planfit export: {exc}", file=sys.stderr)
        return 1
    resources = sum(item.get("count", 0) for item in manifest["output"])
    print(f"exported {resources} resources in {len(manifest['output'])} files to {args.out}")
    if manifest["error"]:
        print(f"the server reported problems: see the {len(manifest['error'])} error file(s)", file=sys.stderr)
    return 0
