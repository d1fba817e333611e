"""HTTP endpoints of the embedded authorization server (`/auth/*`) and SMART discovery.

Handlers parse HTTP and render; the decisions live in `oauth.SmartAuthorizationServer` (authlib) and
`authorize.Authorization`, which run in worker threads (they do database work and cryptography).
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path

import orjson
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from server.auth.authorize import COOKIE, Authorization, AuthorizeError, Pending
from server.auth.discovery import openid_configuration, smart_configuration
from server.auth.jwt import InvalidToken
from server.auth.middleware import bearer_token
from server.auth.oauth import NO_STORE, OAuthError, SmartAuthorizationServer, parse_form
from server.auth.passwords import hash_password, needs_rehash, verify_password
from server.auth.runtime import AuthRuntime
from server.auth.scopes import IdentityScope, LaunchScope, Scope, ScopeSet
from server.auth.store import digest
from server.auth.urls import Urls

log = logging.getLogger("planfit.auth")
router = APIRouter(prefix="/auth", tags=["SMART authorization"])
discovery_router = APIRouter(prefix="/fhir", tags=["SMART authorization"])
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

_PAGE_HEADERS = {
    **NO_STORE,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
}
_VERBS = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
_SPECIAL_SCOPES = {
    "openid": "Confirm who you are to the application",
    "fhirUser": "Tell the application which FHIR user record is yours",
    "launch": "Receive the context of the launching EHR",
    "launch/patient": "Know which patient is selected",
    "offline_access": "Keep access while you are not using the application",
}
_WHOSE = {"patient": "of the selected patient", "user": "you may see", "system": "on this server"}


def runtime_of(request: Request) -> AuthRuntime:
    return request.app.state.auth


def urls_of(request: Request) -> Urls:
    return Urls.of(request, request.app.state.settings)


def describe(scope: Scope | LaunchScope | IdentityScope) -> str:
    """One consent-page line per scope, in words."""
    if not isinstance(scope, Scope):
        return _SPECIAL_SCOPES.get(scope.to_string(), scope.to_string())
    verbs = ", ".join(_VERBS[p] for p in scope.permissions)
    what = "all records" if scope.resource_type == "*" else f"{scope.resource_type} records"
    line = f"{verbs[:1].upper()}{verbs[1:]} {what} {_WHOSE[scope.context]}"
    if scope.params:
        line += " where " + " and ".join(f"{k} = {v}" for k, v in scope.params)
    return line


def page(request: Request, template: str, title: str, status: int = 200, **context) -> Response:
    response = templates.TemplateResponse(request, template, {"title": title, **context}, status_code=status)
    response.headers.update(_PAGE_HEADERS)
    return response


def error_page(request: Request, error: str, description: str, status: int = 400) -> Response:
    return page(request, "error.html", "Authorization failed", status, error=error, description=description)


def authorize_failure(request: Request, err: AuthorizeError) -> Response:
    if err.redirect_uri is None:
        return error_page(request, err.error, err.description)
    return RedirectResponse(err.location(), status_code=303, headers=NO_STORE)


# ---- discovery ------------------------------------------------------------------------------------


@discovery_router.get("/.well-known/smart-configuration", summary="SMART configuration")
async def smart_config(request: Request) -> Response:
    # Always JSON, whatever the Accept header says (SMART App Launch: discovery).
    return JSONResponse(smart_configuration(urls_of(request)))


@router.get("/.well-known/openid-configuration", summary="OpenID Connect discovery")
async def openid_config(request: Request) -> Response:
    return JSONResponse(openid_configuration(urls_of(request)))


@router.get("/jwks", summary="The server's public signing keys")
async def jwks(request: Request) -> Response:
    return JSONResponse(runtime_of(request).keys().public_jwks(), headers={"Cache-Control": "public, max-age=300"})


# ---- token endpoint ---------------------------------------------------------------------------------


async def _form(request: Request) -> dict[str, str]:
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send application/x-www-form-urlencoded")
    return parse_form(await request.body())


@router.post("/token", summary="OAuth 2.0 token endpoint")
async def token(request: Request) -> Response:
    try:
        form = await _form(request)
    except OAuthError as err:
        log.info("token request refused: %s (%s)", err.error, err.description)
        return JSONResponse(err.body(), status_code=err.status, headers=NO_STORE)
    return await run_in_threadpool(SmartAuthorizationServer(runtime_of(request), urls_of(request)).respond, form)


def _bearer_refusal(description: str, status: int = 401, error: str = "invalid_token") -> Response:
    challenge = f'Bearer realm="planfit", error="{error}", error_description="{description}"'
    return JSONResponse({"error": error, "error_description": description}, status_code=status,
                        headers={**NO_STORE, "WWW-Authenticate": challenge})


async def _caller(request: Request):
    """The verified access token of an /auth endpoint that requires one (None if absent/invalid)."""
    token = bearer_token(request.headers)
    if not token:
        return None
    try:
        return await run_in_threadpool(runtime_of(request).authenticator.verify, token, urls_of(request))
    except InvalidToken:
        return None


@router.post("/introspect", summary="Token introspection (RFC 7662)")
async def introspect(request: Request) -> Response:
    if await _caller(request) is None:
        return _bearer_refusal("a valid access token is required to introspect")
    try:
        form = await _form(request)
    except OAuthError as err:
        return JSONResponse(err.body(), status_code=err.status, headers=NO_STORE)
    body = await run_in_threadpool(_introspection, runtime_of(request), form.get("token", ""), urls_of(request))
    return JSONResponse(body, headers=NO_STORE)


def _introspection(runtime: AuthRuntime, token: str, urls: Urls) -> dict:
    try:
        claims = runtime.authenticator.verify(token, urls).claims
    except InvalidToken:
        refresh = runtime.store.peek_refresh(token) if token else None
        if refresh is None or not refresh.usable:
            return {"active": False}
        return {"active": True, "token_type": "refresh_token", "client_id": refresh.client_id, "scope": refresh.scope,
                "exp": refresh.expires_us // 1_000_000, **_context_claims(refresh.context, urls)}
    out = {"active": True, "token_type": "Bearer"}
    for name in ("scope", "client_id", "exp", "iat", "sub", "iss", "aud", "patient", "fhirUser"):
        if name in claims:
            out[name] = claims[name]
    return out


def _context_claims(context: dict, urls: Urls) -> dict:
    out = {"sub": context["username"]}
    if context.get("patient"):
        out["patient"] = context["patient"]
    if context.get("fhir_user"):
        out["fhirUser"] = f"{urls.fhir}/{context['fhir_user']}"
    return out


# ---- EHR launch ---------------------------------------------------------------------------------------


@router.post("/launch", summary="Mint an EHR launch context (needs a token with the launch scope)")
async def launch(request: Request) -> Response:
    caller = await _caller(request)
    if caller is None:
        return _bearer_refusal("a valid access token is required")
    if not caller.grant.scopes.has("launch"):
        return _bearer_refusal("the access token lacks the launch scope", 403, "insufficient_scope")
    try:
        body = orjson.loads(await request.body() or b"{}")
    except orjson.JSONDecodeError:
        body = None
    patient = body.get("patient") if isinstance(body, dict) else None
    app_client = body.get("client_id") if isinstance(body, dict) else None
    if not isinstance(patient, str) or (app_client is not None and not isinstance(app_client, str)):
        return JSONResponse({"error": "invalid_request", "error_description": "send JSON {\"patient\": id, \"client_id\"?: app}"},
                            status_code=400, headers=NO_STORE)
    runtime = runtime_of(request)
    if await run_in_threadpool(runtime.fhir.store.read, "Patient", patient) is None:
        return JSONResponse({"error": "invalid_request", "error_description": "no such Patient"}, status_code=400,
                            headers=NO_STORE)
    launch_id = secrets.token_urlsafe(24)
    ttl = runtime.settings.launch_seconds
    await run_in_threadpool(runtime.store.save_launch, launch_id, caller.grant.client_id, app_client, patient, ttl)
    return JSONResponse({"launch": launch_id, "expires_in": ttl, "iss": urls_of(request).fhir}, headers=NO_STORE)


# ---- App Launch pages -----------------------------------------------------------------------------------


@router.api_route("/authorize", methods=["GET", "POST"], summary="Authorization endpoint (App Launch)")
async def authorize(request: Request) -> Response:
    try:
        if request.method == "POST":
            params = await _form(request)
        else:
            params = parse_form(request.url.query.encode())
    except OAuthError as err:
        return error_page(request, err.error, err.description)
    authz = Authorization(runtime_of(request))
    try:
        secret = await run_in_threadpool(authz.begin, params, urls_of(request))
    except AuthorizeError as err:
        return authorize_failure(request, err)
    response = page(request, "login.html", "Sign in", client_id=params["client_id"], request_id=secret,
                    action=request.url_for("login").path, error=None)
    response.set_cookie(COOKIE, secret, max_age=runtime_of(request).settings.login_seconds, path="/auth",
                        httponly=True, samesite="lax", secure=request.url.scheme == "https")
    return response


async def _pending(request: Request) -> tuple[dict[str, str], str, Pending] | Response:
    """The posted form and the pending request it names, if this browser started it; else an error page."""
    try:
        form = await _form(request)
    except OAuthError as err:
        return error_page(request, err.error, err.description)
    secret = form.get("request", "")
    if not secret or request.cookies.get(COOKIE) != secret:
        return error_page(request, "invalid_request", "This sign-in page has expired or was opened in another browser.")
    pending = await run_in_threadpool(Authorization(runtime_of(request)).load, secret)
    if pending is None:
        return error_page(request, "invalid_request", "This sign-in page has expired. Start again from the application.")
    return form, secret, pending


def _next_page(request: Request, secret: str, pending: Pending, error: str | None = None) -> Response:
    """After login (or a patient choice): the patient picker if a patient is still needed, else consent."""
    if pending.need_patient and pending.patient is None:
        runtime = runtime_of(request)
        user = runtime.store.get_user(pending.username) if pending.username else None
        found = runtime.fhir.store.fetch([("Patient", pid) for pid in pending.choices])
        patients = [{"id": pid, "name": _display_name(found.get(("Patient", pid)))} for pid in pending.choices]
        return page(request, "patient.html", "Choose a patient", 200 if error is None else 400,
                    client_id=pending.client_id, request_id=secret, patients=patients,
                    any_patient=bool(user and user.all_patients), action=request.url_for("choose_patient").path,
                    error=error)
    scopes = [describe(s) for s in ScopeSet.from_string(pending.scope)]
    return page(request, "consent.html", "Allow access?", client_id=pending.client_id, request_id=secret,
                scopes=scopes, patient=pending.patient, action=request.url_for("consent").path)


def _display_name(stored) -> str:
    if stored is None or stored.content is None:
        return "(unknown patient)"
    names = orjson.loads(stored.content).get("name") or [{}]
    name = names[0] if isinstance(names[0], dict) else {}
    return name.get("text") or " ".join([*name.get("given", []), name.get("family", "")]).strip() or "(no name)"


@router.post("/login", summary="App Launch: sign in", include_in_schema=False)
async def login(request: Request) -> Response:
    found = await _pending(request)
    if isinstance(found, Response):
        return found
    form, secret, pending = found
    runtime = runtime_of(request)
    settings = runtime.settings
    username = form.get("username", "")
    address = request.client.host if request.client else "?"
    # Failed sign-ins are counted per username (hashed: any length, nothing of it stored) and per address.
    limits = {f"user:{digest(username)}": settings.login_max_failures,
              f"addr:{address}": settings.login_max_failures_per_address}
    wait = await run_in_threadpool(runtime.store.login_locked, list(limits))
    if wait:
        response = page(request, "login.html", "Sign in", 429, client_id=pending.client_id, request_id=secret,
                        action=request.url_for("login").path,
                        error=f"Too many failed sign-ins. Try again in {-(-wait // 60)} minute(s).")
        response.headers["Retry-After"] = str(wait)
        return response
    user = await run_in_threadpool(runtime.store.get_user, username)
    if not await run_in_threadpool(verify_password, form.get("password", ""), user.password_hash if user else None):
        await run_in_threadpool(runtime.store.login_failed, limits, settings.login_lock_seconds)
        return page(request, "login.html", "Sign in", 401, client_id=pending.client_id, request_id=secret,
                    action=request.url_for("login").path, error="Unknown username or wrong password.")
    assert user is not None
    await run_in_threadpool(runtime.store.login_succeeded, next(iter(limits)))
    if needs_rehash(user.password_hash):
        new_hash = await run_in_threadpool(hash_password, form.get("password", ""))
        await run_in_threadpool(runtime.store.set_password_hash, user.username, new_hash)
    try:
        pending = await run_in_threadpool(Authorization(runtime).login, secret, pending, user)
    except AuthorizeError as err:
        await run_in_threadpool(runtime.store.finish_request, secret)
        return authorize_failure(request, err)
    return await run_in_threadpool(_next_page, request, secret, pending)


@router.post("/patient", summary="App Launch: choose the patient", include_in_schema=False)
async def choose_patient(request: Request) -> Response:
    found = await _pending(request)
    if isinstance(found, Response):
        return found
    form, secret, pending = found
    runtime = runtime_of(request)
    user = await run_in_threadpool(runtime.store.get_user, pending.username or "")
    if user is None or not pending.need_patient:
        return error_page(request, "invalid_request", "Sign in first.")
    patient = form.get("patient_id", "").strip() or form.get("patient", "")
    if not await run_in_threadpool(Authorization(runtime).choose_patient, secret, pending, user, patient):
        return await run_in_threadpool(_next_page, request, secret, pending, "You may not open that patient.")
    return await run_in_threadpool(_next_page, request, secret, pending)


@router.post("/consent", summary="App Launch: allow or deny", include_in_schema=False)
async def consent(request: Request) -> Response:
    found = await _pending(request)
    if isinstance(found, Response):
        return found
    form, secret, pending = found
    if pending.username is None or (pending.need_patient and pending.patient is None):
        return error_page(request, "invalid_request", "Sign in first.")
    try:
        location = await run_in_threadpool(
            Authorization(runtime_of(request)).consent, secret, pending, form.get("decision") == "allow"
        )
    except AuthorizeError as err:
        return authorize_failure(request, err)
    response = RedirectResponse(location, status_code=303, headers=NO_STORE)
    response.delete_cookie(COOKIE, path="/auth")
    return response
