// SMART App Launch for a public client: discovery, authorization code + PKCE S256, token exchange.
// The app talks only to the server that serves it (the CSP allows no other origin), so an `iss`
// naming another server is refused before anything is sent there.

const CLIENT_ID = "planfit-dashboard";
export const SCOPES = {
  // The capitation page computes (and stores) a capitation MeasureReport: create on MeasureReport.
  population: "openid fhirUser user/*.rs user/MeasureReport.c",
  member: "openid fhirUser launch/patient patient/*.rs",
  ehr: "launch openid fhirUser patient/*.rs user/*.rs",
  // Attribution rosters: read everything the user may see, update Groups (decisions, locking).
  rosters: "openid fhirUser user/*.rs user/Group.u",
  // Care management: make a week's priority List, update the status of the user's Tasks.
  interventions: "openid fhirUser user/*.rs user/List.c user/Task.u",
};
const PENDING = "planfit-dashboard:pending";
const SESSION = "planfit-dashboard:session";

const redirectUri = () => location.origin + location.pathname;
const ownFhirBase = () => new URL("../fhir", redirectUri()).href;

class FhirError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

const b64url = bytes => btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const random = size => b64url(crypto.getRandomValues(new Uint8Array(size)));

async function json(response) {
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const text = body.error_description || body.error || body.issue?.[0]?.diagnostics || response.statusText;
    throw new FhirError(response.status, text);
  }
  return body;
}

function checkIss(iss) {
  const wanted = ownFhirBase().replace(/\/$/, "");
  if (iss.replace(/\/$/, "") !== wanted) throw new Error(`this dashboard only works with ${wanted}, not ${iss}`);
  return wanted;
}

// Start the authorization: remember PKCE verifier and state, then leave for /auth/authorize.
export async function authorize({iss = ownFhirBase(), launch = null, scope, view}) {
  const fhirBase = checkIss(iss);
  const config = await json(await fetch(fhirBase + "/.well-known/smart-configuration"));
  const verifier = random(32);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  const state = random(16);
  sessionStorage.setItem(PENDING, JSON.stringify({fhirBase, verifier, state, view, tokenUrl: config.token_endpoint}));
  const query = new URLSearchParams({response_type: "code", client_id: CLIENT_ID, redirect_uri: redirectUri(),
    scope, state, aud: fhirBase, code_challenge: b64url(new Uint8Array(digest)), code_challenge_method: "S256"});
  if (launch) query.set("launch", launch);
  location.assign(config.authorization_endpoint + "?" + query);
}

// Back from the authorization server with `code` and `state`: exchange the code for a token.
export async function completeAuthorization(params) {
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  if (!pending || params.get("state") !== pending.state) throw new Error("unexpected authorization response (state mismatch)");
  const token = await json(await fetch(pending.tokenUrl, {method: "POST",
    headers: {"Content-Type": "application/x-www-form-urlencoded"},
    body: new URLSearchParams({grant_type: "authorization_code", code: params.get("code"),
                               redirect_uri: redirectUri(), code_verifier: pending.verifier, client_id: CLIENT_ID})}));
  const session = {fhirBase: pending.fhirBase, accessToken: token.access_token, scope: token.scope,
                   patient: token.patient || null, fhirUser: idTokenClaim(token.id_token, "fhirUser"),
                   view: token.patient ? "member" : pending.view, expiresAt: Date.now() + token.expires_in * 1000};
  sessionStorage.setItem(SESSION, JSON.stringify(session));
  return session;
}

// The id_token's claims are only displayed (who is signed in), so reading them unverified is fine.
function idTokenClaim(idToken, claim) {
  if (!idToken) return null;
  try {
    return JSON.parse(atob(idToken.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")))[claim] || null;
  } catch {
    return null;
  }
}

export function currentSession() {
  const session = JSON.parse(sessionStorage.getItem(SESSION) || "null");
  return session && session.expiresAt > Date.now() + 5000 ? session : null;
}

export function signOut() {
  sessionStorage.removeItem(SESSION);
}

export const hasScope = (session, prefix) => session.scope.split(" ").some(s => s.startsWith(prefix));

// GET a FHIR path (relative to the base) with the access token; FhirError on any non-2xx answer.
export async function fhirGet(session, path) {
  const response = await fetch(`${session.fhirBase}/${path}`, {
    headers: {Authorization: `Bearer ${session.accessToken}`, Accept: "application/fhir+json"}});
  return json(response);
}

// POST a FHIR operation (relative to the base) with a JSON body; FhirError on any non-2xx answer.
export async function fhirPost(session, path, body) {
  const response = await fetch(`${session.fhirBase}/${path}`, {method: "POST", body: JSON.stringify(body),
    headers: {Authorization: `Bearer ${session.accessToken}`, Accept: "application/fhir+json",
              "Content-Type": "application/fhir+json"}});
  return json(response);
}

// PUT a resource (relative to the base, "Type/id"); FhirError on any non-2xx answer.
export async function fhirPut(session, path, resource) {
  const response = await fetch(`${session.fhirBase}/${path}`, {method: "PUT", body: JSON.stringify(resource),
    headers: {Authorization: `Bearer ${session.accessToken}`, Accept: "application/fhir+json",
              "Content-Type": "application/fhir+json"}});
  return json(response);
}

// GET a FHIR path as text in another format (CSV exports); FhirError on any non-2xx answer.
export async function fhirText(session, path, accept) {
  const response = await fetch(`${session.fhirBase}/${path}`, {
    headers: {Authorization: `Bearer ${session.accessToken}`, Accept: accept}});
  if (!response.ok) await json(response);
  return response.text();
}
