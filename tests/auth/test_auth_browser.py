"""SMART App Launch end to end in headless Chromium (Playwright driving /usr/bin/chromium).

A small SMART app — two static pages served from their own origin on 127.0.0.1 — does what real
browser apps do: discovery, PKCE with WebCrypto, redirect to /auth/authorize; the user signs in,
picks a patient and consents; back on the app, JavaScript exchanges the code at /auth/token and
reads the patient from the FHIR API with the access token (both cross-origin, so CORS is real too).
Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.support.auth import APP_SCOPE, CHROMIUM, CHROMIUM_ARGS, PASSWORD, build_world, register_app, require_browser
from tests.support.servers import ROOT

ARTIFACTS = ROOT / "test-artifacts"

LAUNCH_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Demo SMART app</title></head>
<body><h1>Demo SMART app</h1><p id="status">launching…</p>
<script>
const CLIENT_ID = "%(client_id)s", REDIRECT = "%(redirect)s", SCOPE = "%(scope)s";
const b64url = bytes => btoa(String.fromCharCode(...bytes)).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "");
(async () => {
  const iss = new URLSearchParams(location.search).get("iss");
  const config = await (await fetch(iss + "/.well-known/smart-configuration")).json();
  const verifier = b64url(crypto.getRandomValues(new Uint8Array(32)));
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  const state = b64url(crypto.getRandomValues(new Uint8Array(16)));
  sessionStorage.setItem("smart", JSON.stringify({iss, verifier, state, tokenUrl: config.token_endpoint}));
  const query = new URLSearchParams({response_type: "code", client_id: CLIENT_ID, redirect_uri: REDIRECT,
    scope: SCOPE, state, aud: iss, code_challenge: b64url(new Uint8Array(digest)), code_challenge_method: "S256"});
  location.assign(config.authorization_endpoint + "?" + query);
})().catch(e => document.getElementById("status").textContent = "error: " + e);
</script></body></html>
"""

CALLBACK_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>Demo SMART app</title></head>
<body><h1>Demo SMART app</h1>
<p>Status: <span id="status">exchanging code…</span></p>
<p>Patient: <strong id="patient"></strong> (<span id="patient-id"></span>)</p>
<p>Granted: <code id="scope"></code></p>
<script>
const CLIENT_ID = "%(client_id)s", REDIRECT = "%(redirect)s";
(async () => {
  const params = new URLSearchParams(location.search);
  const saved = JSON.parse(sessionStorage.getItem("smart"));
  if (params.get("state") !== saved.state) throw new Error("state mismatch");
  const response = await fetch(saved.tokenUrl, {method: "POST",
    headers: {"Content-Type": "application/x-www-form-urlencoded"},
    body: new URLSearchParams({grant_type: "authorization_code", code: params.get("code"), redirect_uri: REDIRECT,
                               code_verifier: saved.verifier, client_id: CLIENT_ID})});
  const token = await response.json();
  if (!response.ok) throw new Error(token.error);
  const patient = await (await fetch(saved.iss + "/Patient/" + token.patient,
    {headers: {Authorization: "Bearer " + token.access_token, Accept: "application/fhir+json"}})).json();
  document.getElementById("patient").textContent = patient.name[0].family;
  document.getElementById("patient-id").textContent = patient.id;
  document.getElementById("scope").textContent = token.scope;
  document.getElementById("status").textContent = "done";
})().catch(e => document.getElementById("status").textContent = "error: " + e);
</script></body></html>
"""


@pytest.fixture
def app_site(tmp_path):
    """Serve the app's files from tmp_path on their own origin."""
    handler = partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    handler.log_message = lambda *_a: None  # type: ignore[method-assign]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield tmp_path, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_app_launch_in_chromium(server, app_site):
    require_browser()
    from playwright.sync_api import sync_playwright

    root, origin = app_site
    world = build_world(server)
    redirect = f"{origin}/callback.html"
    client_id = register_app(server, APP_SCOPE, redirect_uri=redirect)
    scope = "launch/patient openid fhirUser patient/*.rs"
    (root / "launch.html").write_text(LAUNCH_HTML % {"client_id": client_id, "redirect": redirect, "scope": scope})
    (root / "callback.html").write_text(CALLBACK_HTML % {"client_id": client_id, "redirect": redirect})
    ARTIFACTS.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            page.goto(f"{origin}/launch.html?iss={server.fhir}")
            page.wait_for_selector("#username", timeout=30_000)
            assert page.url.startswith(server.url + "/auth/authorize")
            page.fill("#username", world.doctor)
            page.fill("#password", PASSWORD)
            page.click("#sign-in")
            page.wait_for_selector("input[name=patient]")
            page.check(f"input[value='{world.b}']")
            page.click("#choose")
            page.wait_for_selector("#allow")
            assert "Read, search all records of the selected patient" in page.content()
            page.screenshot(path=str(ARTIFACTS / f"app-launch-consent-{server.kind}.png"))
            page.click("#allow")
            page.wait_for_function("['done'].includes(document.getElementById('status').textContent) || "
                                   "document.getElementById('status').textContent.startsWith('error')", timeout=30_000)
            assert page.text_content("#status") == "done", page.text_content("#status")
            assert page.url.startswith(redirect + "?code=")
            assert page.text_content("#patient") == f"Bravo-{world.tag}"
            assert page.text_content("#patient-id") == world.b
            assert page.text_content("#scope") == "launch/patient fhirUser openid patient/*.rs"
            page.screenshot(path=str(ARTIFACTS / f"app-launch-{server.kind}.png"), full_page=True)
        finally:
            browser.close()
