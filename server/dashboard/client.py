"""The dashboard's registration as a public SMART App Launch client (PKCE, no secret).

The dashboard is registered at start-up under `DASHBOARD_CLIENT_ID` with read-only scopes and the
exact redirect URI `<root>/app/` for every root the server is known by: PLANFIT_BASE_URL when set,
and the loopback addresses on PLANFIT_PORT (local use, `planfit demo`). Redirect URIs already
registered under that id are kept, so several processes sharing one database (on other ports) do
not undo each other. An operator who registered the id themselves (`planfit clients add --id
planfit-dashboard --public ...`) keeps their registration untouched.
"""

from __future__ import annotations

from server.auth.models import Client, build_client
from server.auth.store import AuthStore
from server.config import Settings

DASHBOARD_CLIENT_ID = "planfit-dashboard"
# Population figures need `user/` scopes, a member view `patient/` scopes; the writes are `user/Group.u`:
# roster decisions and locking (`$member-decision`, `$confirm-attribution-list`), for users who may, and
# `user/MeasureReport.c`: the capitation page's `$capitation-adjustment` (it stores its report); `user/List.c`
# and `user/Task.u`: care management makes a week's priority List and updates the status of the user's Tasks.
DASHBOARD_SCOPE = ("launch launch/patient openid fhirUser user/*.rs patient/*.rs user/Group.u user/MeasureReport.c "
                   "user/List.c user/Task.u")
ORIGIN = "builtin"


def redirect_uris(settings: Settings) -> list[str]:
    """The dashboard page URLs this server answers on; each is the app's redirect URI."""
    roots = [settings.base_url.rstrip("/")] if settings.base_url else []
    roots += [f"http://127.0.0.1:{settings.port}", f"http://localhost:{settings.port}"]
    return [f"{root}/app/" for root in dict.fromkeys(roots)]


def dashboard_client(settings: Settings, existing: Client | None) -> Client | None:
    """The registration to store, or None when an operator's own registration must be kept."""
    if existing is not None and existing.origin != ORIGIN:
        return None
    kept = list(existing.redirect_uris) if existing is not None else []
    uris = list(dict.fromkeys([*redirect_uris(settings), *kept]))
    return build_client(DASHBOARD_CLIENT_ID, scope=DASHBOARD_SCOPE, public=True, redirect_uris=uris, origin=ORIGIN)


def register_dashboard(store: AuthStore, settings: Settings) -> None:
    client = dashboard_client(settings, store.get_client(DASHBOARD_CLIENT_ID))
    if client is not None:
        store.put_client(client, replace=True)
