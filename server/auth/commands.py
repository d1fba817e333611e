"""`planfit clients|users|token|keygen|audit`: registration and operator tools.

Registrations go straight into the database named by PLANFIT_DATABASE_URL (migrated first, so a
fresh database works), which is why they take effect in every running server without a restart.
`planfit token` is a real Backend Services client: it reads the server's SMART configuration,
signs an assertion with the given private key and prints the access token.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import time
import uuid
from pathlib import Path

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, Key, RSAKey

from server.auth.audit import export
from server.auth.models import (
    ALL_PATIENTS,
    RegistrationError,
    User,
    build_client,
    check_fhir_user,
    check_patients,
    check_username,
)
from server.auth.oauth import ASSERTION_TYPE
from server.auth.passwords import hash_password
from server.auth.store import AlreadyRegistered, AuthStore
from server.config import Settings
from server.fhir.dates import DateValueError, date_range
from server.store.db import make_engine, migrate

MIN_PASSWORD_LENGTH = 8


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the auth commands to the `planfit` parser."""
    _clients(subparsers.add_parser("clients", help="register SMART clients"))
    _users(subparsers.add_parser("users", help="register App Launch users"))
    token = subparsers.add_parser("token", help="get an access token by SMART Backend Services and print it")
    token.add_argument("--client-id", required=True)
    token.add_argument("--key", required=True, type=Path, help="private key (PEM) of the client, RSA or EC P-384")
    token.add_argument("--kid", help="key id in the registered JWKS (default: the key's RFC 7638 thumbprint)")
    token.add_argument("--scope", default="system/*.rs")
    token.add_argument("--url", help="the FHIR base (the SMART issuer, …/fhir) or the server root "
                       "(default: PLANFIT_BASE_URL or http://PLANFIT_HOST:PLANFIT_PORT)")
    token.set_defaults(func=_token)
    keygen = subparsers.add_parser("keygen", help="create a client key pair: NAME.pem and NAME.jwks.json")
    keygen.add_argument("--out", required=True, type=Path, help="path prefix of the two files")
    keygen.add_argument("--alg", choices=("ES384", "RS384"), default="ES384")
    keygen.set_defaults(func=_keygen)
    audit = subparsers.add_parser("audit", help="the audit trail")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    exporter = audit_sub.add_parser("export", help="write the audit trail as AuditEvent NDJSON")
    exporter.add_argument("--since", help="only records at or after this FHIR instant/date")
    exporter.add_argument("--out", type=Path, help="file to write (default: stdout)")
    exporter.set_defaults(func=_audit_export)


def _store() -> AuthStore:
    engine = make_engine(Settings.from_env().database_url)
    migrate(engine)
    return AuthStore(engine)


def _fail(message: str) -> int:
    print(f"planfit: {message}", file=sys.stderr)
    return 1


# ---- clients ---------------------------------------------------------------------------------------


def _clients(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="clients_command", required=True)
    add = sub.add_parser("add", help="register (or with --replace, re-register) a client")
    add.add_argument("--id", required=True)
    keys = add.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks-file", type=Path, help="JWKS with the client's public keys (Backend Services)")
    keys.add_argument("--jwks-url", help="URL of the client's JWKS (fetched as its Cache-Control allows)")
    keys.add_argument("--public", action="store_true", help="public App Launch client (PKCE, no keys)")
    add.add_argument("--redirect-uri", action="append", default=[], help="App Launch redirect URI (repeatable)")
    add.add_argument("--scope", required=True, help="scopes the client may be granted, space separated")
    add.add_argument("--source-kind", choices=("clinical", "claims"), default="clinical")
    add.add_argument("--source-uri", help="meta.source of what the client writes (default urn:planfit:client:ID)")
    add.add_argument("--replace", action="store_true", help="overwrite an existing registration")
    add.set_defaults(func=_clients_add)
    listing = sub.add_parser("list", help="list registered clients")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=_clients_list)
    remove = sub.add_parser("remove", help="remove a client (its tokens stop working within seconds)")
    remove.add_argument("--id", required=True)
    remove.set_defaults(func=_clients_remove)


def _clients_add(args: argparse.Namespace) -> int:
    try:
        jwks = json.loads(args.jwks_file.read_text(encoding="utf-8")) if args.jwks_file else None
        client = build_client(args.id, scope=args.scope, jwks=jwks, jwks_url=args.jwks_url,
                              redirect_uris=args.redirect_uri, public=args.public, source_kind=args.source_kind,
                              source_uri=args.source_uri)
    except (OSError, ValueError) as exc:
        return _fail(str(exc))
    try:
        _store().put_client(client, replace=args.replace)
    except AlreadyRegistered:
        return _fail(f"client {args.id} is already registered (use --replace)")
    print(f"registered client {client.client_id} (scope: {client.scope}; source: {client.source_uri}, {client.source_kind})")
    return 0


def _clients_list(args: argparse.Namespace) -> int:
    clients = _store().list_clients()
    if args.json:
        rows = [{"id": c.client_id, "public": c.public, "jwks_url": c.jwks_url, "has_jwks": c.jwks is not None,
                 "redirect_uris": list(c.redirect_uris), "scope": c.scope, "source_kind": c.source_kind,
                 "source_uri": c.source_uri, "registered_by": c.origin} for c in clients]
        print(json.dumps(rows, indent=2))
        return 0
    for c in clients:
        kind = "public" if c.public else "jwks-url" if c.jwks_url else "jwks"
        print(f"{c.client_id}\t{kind}\t{c.source_kind}\t{c.source_uri}\t{c.scope}")
    return 0


def _clients_remove(args: argparse.Namespace) -> int:
    if not _store().remove_client(args.id):
        return _fail(f"no client {args.id}")
    print(f"removed client {args.id}")
    return 0


# ---- users -----------------------------------------------------------------------------------------


def _users(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="users_command", required=True)
    add = sub.add_parser("add", help="register (or with --replace, re-register) a user")
    add.add_argument("--username", required=True)
    secret = add.add_mutually_exclusive_group()
    secret.add_argument("--password", help="the password (visible to other local users in `ps`; see --password-stdin)")
    secret.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    add.add_argument("--fhir-user", help="the user's FHIR resource, e.g. Practitioner/123 or Patient/abc")
    add.add_argument("--patient", action="append", default=[], help="a Patient id the user may open (repeatable)")
    add.add_argument("--all-patients", action="store_true", help="the user may open any patient")
    add.add_argument("--replace", action="store_true")
    add.set_defaults(func=_users_add)
    listing = sub.add_parser("list", help="list users")
    listing.set_defaults(func=_users_list)
    remove = sub.add_parser("remove", help="remove a user")
    remove.add_argument("--username", required=True)
    remove.set_defaults(func=_users_remove)


def _read_password(args: argparse.Namespace) -> str:
    if args.password is not None:
        return args.password
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    return getpass.getpass("password: ")


def _users_add(args: argparse.Namespace) -> int:
    try:
        username = check_username(args.username)
        fhir_user = check_fhir_user(args.fhir_user)
        patients = check_patients([*args.patient, *([ALL_PATIENTS] if args.all_patients else [])])
    except RegistrationError as exc:
        return _fail(str(exc))
    password = _read_password(args)
    if len(password) < MIN_PASSWORD_LENGTH:
        return _fail(f"password must have at least {MIN_PASSWORD_LENGTH} characters")
    try:
        _store().put_user(User(username, hash_password(password), fhir_user, patients), replace=args.replace)
    except AlreadyRegistered:
        return _fail(f"user {username} is already registered (use --replace)")
    print(f"registered user {username}")
    return 0


def _users_list(_args: argparse.Namespace) -> int:
    for user in _store().list_users():
        print(f"{user.username}\t{user.fhir_user or '-'}\t{','.join(user.patients) or '-'}")
    return 0


def _users_remove(args: argparse.Namespace) -> int:
    if not _store().remove_user(args.username):
        return _fail(f"no user {args.username}")
    print(f"removed user {args.username}")
    return 0


# ---- keys and tokens ---------------------------------------------------------------------------------


def load_private_key(pem: bytes) -> Key:
    """An RSA or EC private key from PEM."""
    for kind in (RSAKey, ECKey):
        try:
            return kind.import_key(pem)
        except (JoseError, ValueError, TypeError):
            continue
    raise ValueError("the key file must hold an RSA or EC private key in PEM")


def _alg_of(key: Key) -> str:
    if isinstance(key, RSAKey):
        return "RS384"
    if isinstance(key, ECKey) and key.curve_name == "P-384":
        return "ES384"
    raise ValueError("the key must be RSA (RS384) or EC P-384 (ES384)")


def _keygen(args: argparse.Namespace) -> int:
    pem_path, jwks_path, kid = write_key_pair(args.out, args.alg)
    print(f"wrote {pem_path} (private: keep it secret) and {jwks_path} (register it); kid {kid}")
    return 0


def write_key_pair(out: Path, alg: str) -> tuple[Path, Path, str]:
    """A new client key pair as `OUT.pem` (private, mode 0600) and `OUT.jwks.json` (to register); the kid
    is the key's RFC 7638 thumbprint."""
    if alg == "RS384":
        key: Key = RSAKey.generate_key(3072, private=True)
    else:
        key = ECKey.generate_key("P-384", private=True)
    kid = key.thumbprint()
    public = {**key.as_dict(private=False), "kid": kid, "alg": alg, "use": "sig"}
    pem_path, jwks_path = Path(f"{out}.pem"), Path(f"{out}.jwks.json")
    pem_path.touch(mode=0o600, exist_ok=False)
    pem_path.write_bytes(key.as_pem(private=True))
    jwks_path.write_text(json.dumps({"keys": [public]}, indent=2) + "\n", encoding="utf-8")
    return pem_path, jwks_path, kid


def client_assertion(key: Key, kid: str, client_id: str, token_url: str) -> str:
    """A SMART Backend Services authentication JWT, valid for five minutes."""
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": token_url, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
    alg = _alg_of(key)
    return jwt.encode({"alg": alg, "kid": kid, "typ": "JWT"}, claims, key, algorithms=[alg])


def _server_root(url: str | None) -> str:
    if url:
        return url.rstrip("/")
    settings = Settings.from_env()
    return settings.base_url.rstrip("/") or f"http://{settings.host}:{settings.port}"


def smart_configuration(http: httpx.Client, url: str) -> dict:
    """The SMART configuration of the server at `url`: the FHIR base (what SMART clients are given, the
    token's audience) or the server root. SMART App Launch 2.x §Discovery puts it at
    `{fhir base}/.well-known/smart-configuration` (read 2026-12-03); the root's FHIR base is `{root}/fhir`."""
    for candidate in (url, f"{url}/fhir"):
        response = http.get(f"{candidate}/.well-known/smart-configuration")
        if response.status_code == 200 and "json" in response.headers.get("content-type", ""):
            return response.json()
    response.raise_for_status()
    raise ValueError(f"no SMART configuration at {url}/.well-known/smart-configuration or {url}/fhir/…")


def request_backend_token(http: httpx.Client, url: str, client_id: str, key: Key, kid: str,
                          scope: str) -> httpx.Response:
    """SMART Backend Services: a signed assertion posted to the token endpoint the server's SMART
    configuration names. The token endpoint's answer, for the caller to judge (`planfit token`, `export`,
    `load`, `demo`)."""
    token_url = smart_configuration(http, url)["token_endpoint"]
    form = {"grant_type": "client_credentials", "scope": scope, "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": client_assertion(key, kid, client_id, token_url)}
    return http.post(token_url, data=form)


def _token(args: argparse.Namespace) -> int:
    try:
        key = load_private_key(args.key.read_bytes())
        kid = args.kid or key.thumbprint()
        root = _server_root(args.url)
        with httpx.Client(timeout=30) as http:
            response = request_backend_token(http, root, args.client_id, key, kid, args.scope)
    except (OSError, ValueError, KeyError, httpx.HTTPError) as exc:
        return _fail(f"token request failed: {exc}")
    if response.status_code != 200:
        return _fail(f"token request refused: {response.text}")
    print(response.json()["access_token"])
    return 0


# ---- audit -------------------------------------------------------------------------------------------


def _audit_export(args: argparse.Namespace) -> int:
    since = None
    if args.since:
        try:
            since = date_range(args.since)[0]
        except DateValueError:
            return _fail("--since must be a FHIR date or instant, e.g. 2026-01-31 or 2026-01-31T12:00:00Z")
    engine = make_engine(Settings.from_env().database_url)
    migrate(engine)
    out = args.out.open("w", encoding="utf-8") if args.out else sys.stdout
    try:
        count = 0
        for event in export(engine, since):
            out.write(json.dumps(event, separators=(",", ":")) + "\n")
            count += 1
    finally:
        if args.out:
            out.close()
    print(f"exported {count} audit events", file=sys.stderr)
    return 0
