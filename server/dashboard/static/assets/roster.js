// Attribution rosters (SPEC §11): the list of Da Vinci ATR lists, and one roster with its members filtered by
// decision and reason, decision editing and locking for users with Group write scope, and the drift against
// the locked list or between two versions of this list (from / to in the page's address). Members come a page at a time from Group/{id}/$roster-members, so the page stays quick at
// 100,000 members. Every write goes through the FHIR operations, whose rules answer 422 / 409.

import {formatCount} from "./charts.js";
import {fhirGet, fhirPost} from "./smart.js";

const ATR = "http://hl7.org/fhir/us/davinci-atr/StructureDefinition/";
const DECISION = "https://planfit.dev/fhir/StructureDefinition/roster-decision";
const REASONS = "https://planfit.dev/fhir/CodeSystem/roster-decision-reason";
const DECISIONS = ["active", "pending", "excluded", "none"];
const PAGE = 50;

const extensionOf = (element, url) => (element.extension || []).find(e => e.url === url);
const listStatus = group => extensionOf(group, ATR + "ext-attributionListStatus")?.valueCode || "";
const partsOf = p => Object.fromEntries((p.part || []).map(x => [x.name, Object.entries(x).find(([k]) => k.startsWith("value"))?.[1]]));

// Users whose token may update Groups edit decisions and lock lists (user/Group.u, or a wider write scope).
export const canWrite = session => session.scope.split(" ").some(s => /^user\/(Group|\*)\.c?r?u/.test(s));

export async function rosterListView(session, ui) {
  const {h, table, main} = ui;
  main.replaceChildren(h("p", {class: "muted"}, "Loading attribution lists…"));
  const bundle = await fhirGet(session, "Group?attribution-list-status=draft,open,final&_count=200&_sort=-_lastUpdated");
  const lists = (bundle.entry || []).map(e => e.resource).filter(r => r.resourceType === "Group");
  main.replaceChildren(h("h1", {}, "Attribution rosters"),
    h("p", {class: "muted"}, "Da Vinci ATR lists you may see, newest first."),
    h("section", {class: "panel", "data-panel": "rosters"}, lists.length
      ? table([["Roster"], ["Status"], ["Members", "num"], ["Last changed"]], lists.map(g => h("tr", {"data-roster": g.id},
          h("td", {}, h("a", {href: `#roster/${g.id}`}, g.name || g.id)),
          h("td", {}, h("span", {class: `badge ${listStatus(g)}`}, listStatus(g))),
          h("td", {class: "num"}, formatCount(g.quantity ?? 0)),
          h("td", {}, (g.meta?.lastUpdated || "").slice(0, 19).replace("T", " ")))))
      : h("p", {class: "muted"}, "No attribution lists.")));
}

export async function rosterView(session, id, ui) {
  const {h, main} = ui;
  const filters = Object.fromEntries(new URLSearchParams(location.hash.split("?")[1] || ""));
  main.replaceChildren(h("p", {class: "muted"}, "Loading roster…"));
  const headerBundle = await fhirGet(session, `Group?_id=${id}`);
  const group = (headerBundle.entry || []).map(e => e.resource).find(r => r.resourceType === "Group");
  if (!group) throw new Error(`Group/${id} is not known`);
  const status = listStatus(group);
  const editable = canWrite(session) && status !== "final";
  const reasons = await fhirGet(session, "CodeSystem/roster-decision-reason").then(cs => cs.concept || []).catch(() => []);
  const query = new URLSearchParams({_count: PAGE, _offset: filters.offset || 0});
  if (filters.decision) query.set("decision", filters.decision);
  if (filters.reason) query.set("reason", filters.reason);
  const versions = new URLSearchParams(Object.entries(filters).filter(([k, v]) => (k === "from" || k === "to") && v));
  const [page, drift] = await Promise.allSettled([
    fhirGet(session, `Group/${id}/$roster-members?${query}`), fhirGet(session, `Group/${id}/$roster-drift?${versions}`)]);
  if (page.status === "rejected") throw page.reason;
  const params = page.value.parameter || [];
  const total = params.find(p => p.name === "total")?.valueInteger ?? 0;
  const decisionCounts = Object.fromEntries(params.filter(p => p.name === "decisionCount").map(p => [partsOf(p).decision, partsOf(p).count]));
  const reasonCounts = Object.fromEntries(params.filter(p => p.name === "reasonCount").map(p => [partsOf(p).reason, partsOf(p).count]));
  const members = params.filter(p => p.name === "member").map(p => p.resource.member[0]);

  const lock = editable ? h("button", {id: "lock-roster", onclick: () => confirmList(session, id, ui)}, "Lock (confirm) this list") : "";
  main.replaceChildren(
    h("h1", {id: "roster-name"}, group.name || `Group/${id}`),
    h("p", {class: "muted"}, `Group/${id} · `, h("span", {class: `badge ${status}`, id: "roster-status", "data-value": status}, status),
      ` · ${formatCount(group.quantity ?? 0)} current members`),
    h("div", {class: "kpis"}, DECISIONS.map(d => h("div", {class: "kpi"}, h("div", {class: "label"}, d),
      h("div", {class: "value"}, h("span", {"data-metric": `decision/${d}`, "data-value": decisionCounts[d] || 0},
                                     formatCount(decisionCounts[d] || 0)))))),
    h("section", {class: "panel"}, h("h2", {}, "Members"), filterForm(h, filters, reasonCounts),
      h("p", {class: "muted small", id: "member-total", "data-value": total}, `${formatCount(total)} matching`),
      memberTable(session, id, members, reasons, editable, ui), pager(h, filters, total), lock,
      h("p", {class: "error", id: "roster-error", role: "alert"})),
    driftPanel(h, ui.table, drift, filters, Number(group.meta?.versionId || 1)));
}

function filterForm(h, filters, reasonCounts) {
  const select = (name, options) => h("select", {name, "aria-label": name},
    h("option", {value: ""}, `all ${name}s`),
    options.map(([value, label]) => h("option", {value, selected: filters[name] === value}, label)));
  return h("form", {class: "open", id: "roster-filters", onsubmit: event => {
    event.preventDefault();
    const form = new FormData(event.target);
    const q = new URLSearchParams([...form].filter(([, v]) => v));
    location.hash = location.hash.split("?")[0] + (q.toString() ? `?${q}` : "");
  }}, select("decision", DECISIONS.map(d => [d, d])),
      select("reason", Object.entries(reasonCounts).map(([code, n]) => [code, `${code} (${n})`])),
      h("button", {type: "submit"}, "Filter"));
}

function pager(h, filters, total) {
  const offset = Number(filters.offset || 0);
  const go = next => () => {
    const q = new URLSearchParams({...filters, offset: next});
    location.hash = location.hash.split("?")[0] + `?${q}`;
  };
  return h("div", {class: "small"}, offset > 0 ? h("button", {onclick: go(Math.max(0, offset - PAGE))}, "Previous") : "",
    offset + PAGE < total ? h("button", {id: "next-page", onclick: go(offset + PAGE)}, "Next") : "");
}

function memberTable(session, id, members, reasons, editable, ui) {
  const {h, table} = ui;
  const head = [["Patient"], ["Provider"], ["Attribution period"], ["Change"], ["Decision"], ["Reason"], ["Deadline"]];
  if (editable) head.push(["Edit"]);
  return table(head, members.map(m => {
    const patient = m.entity.reference.split("/")[1];
    const decision = Object.fromEntries((extensionOf(m, DECISION)?.extension || [])
      .map(e => [e.url, Object.entries(e).find(([k]) => k.startsWith("value"))[1]]));
    const row = h("tr", {"data-member": patient, "data-decision": decision.decision || "none", "data-inactive": m.inactive ? "true" : "false"},
      h("td", {}, m.entity.reference, m.inactive ? h("span", {class: "tag"}, "inactive") : ""),
      h("td", {}, extensionOf(m, ATR + "ext-attributedProvider")?.valueReference.reference || ""),
      h("td", {}, [m.period?.start, m.period?.end].filter(Boolean).join(" – ")),
      h("td", {}, extensionOf(m, ATR + "ext-changeType")?.valueCode || ""),
      h("td", {}, decision.decision || ""), h("td", {}, decision.reason?.code || ""),
      h("td", {}, decision.clarificationDeadline || ""));
    if (editable) row.append(h("td", {}, editForm(session, id, patient, reasons, ui)));
    return row;
  }));
}

function editForm(session, id, patient, reasons, ui) {
  const {h} = ui;
  const fields = h("span", {},
    h("select", {name: "decision", "aria-label": "decision"}, ["active", "pending", "excluded"].map(d => h("option", {value: d}, d))),
    h("select", {name: "reason", "aria-label": "reason"}, h("option", {value: ""}, "no reason"),
      reasons.map(c => h("option", {value: c.code}, c.display || c.code))),
    h("input", {name: "deadline", type: "date", "aria-label": "clarification deadline"}));
  return h("form", {class: "decide", "data-decide": patient, onsubmit: async event => {
    event.preventDefault();
    const form = new FormData(event.target);
    const parameter = [{name: "patientReference", valueReference: {reference: `Patient/${patient}`}},
                       {name: "decision", valueCode: form.get("decision")},
                       {name: "reviewDate", valueDate: new Date().toISOString().slice(0, 10)}];
    if (form.get("reason")) parameter.push({name: "reason", valueCoding: {system: REASONS, code: form.get("reason")}});
    if (session.fhirUser?.includes("Practitioner/")) {
      const me = {reference: session.fhirUser.slice(session.fhirUser.indexOf("Practitioner/"))};
      parameter.push({name: "reviewer", valueReference: me});
      if (form.get("decision") === "pending") parameter.push({name: "owner", valueReference: me});
    }
    if (form.get("deadline")) parameter.push({name: "clarificationDeadline", valueDate: form.get("deadline")});
    await submit(session, id, ui, `Group/${id}/$member-decision`, {resourceType: "Parameters", parameter});
  }}, fields, h("button", {type: "submit"}, "Save"));
}

const confirmList = (session, id, ui) =>
  submit(session, id, ui, `Group/${id}/$confirm-attribution-list`, {resourceType: "Parameters"});

// Run one write, then redraw the roster; a refusal (422, 409, 403) is shown with the server's reason.
async function submit(session, id, ui, path, body) {
  document.body.dataset.ready = "";
  try {
    await fhirPost(session, path, body);
    await rosterView(session, id, ui);
  } catch (error) {
    document.getElementById("roster-error").textContent = `Refused: ${error.message} (HTTP ${error.status})`;
  }
  document.body.dataset.ready = "roster";
}

// Compare two versions of this list: sets from / to in the address (empty from: against the locked list).
function versionForm(h, filters, latest) {
  const field = (name, label) => h("label", {}, `${label} `, h("input", {type: "number", name, min: 1, max: latest,
    value: filters[name] || "", placeholder: name === "to" ? String(latest) : "", "aria-label": `${label}`}));
  return h("form", {class: "open", id: "drift-versions", onsubmit: event => {
    event.preventDefault();
    const q = new URLSearchParams(Object.entries(filters).filter(([k]) => k !== "from" && k !== "to"));
    for (const [k, v] of new FormData(event.target)) if (v) q.set(k, v);
    location.hash = location.hash.split("?")[0] + (q.toString() ? `?${q}` : "");
  }}, field("from", "From version"), field("to", "to version"), h("button", {type: "submit"}, "Compare versions"),
    h("span", {class: "muted small"}, ` (latest: ${latest})`));
}

function driftPanel(h, table, drift, filters, latest) {
  const title = filters.from ? `Drift from version ${filters.from} to ${filters.to || latest}` : "Drift against the locked list";
  const panel = h("section", {class: "panel", "data-panel": "drift"}, h("h2", {}, title), versionForm(h, filters, latest));
  if (drift.status === "rejected") {
    panel.append(h("p", {class: "muted", "data-drift": "none"}, drift.reason.message));
    return panel;
  }
  const params = drift.value.parameter || [];
  const baseline = params.find(p => p.name === "baseline")?.valueReference.reference;
  const counts = params.filter(p => p.name === "count").map(partsOf);
  const changes = params.filter(p => p.name === "change").map(partsOf);
  panel.append(h("p", {class: "muted"}, `Compared with ${baseline}: `,
      counts.map(c => h("span", {class: "tag", "data-metric": `drift/${c.kind}`, "data-value": c.value}, `${c.kind} ${c.value}`))),
    table([["Change"], ["Patient"], ["Before"], ["After"], ["By"], ["When"]], changes.map(c =>
      h("tr", {"data-drift": c.kind}, h("td", {}, c.kind), h("td", {}, c.patient.reference), h("td", {}, c.before || ""),
        h("td", {}, c.after || ""), h("td", {}, c.by || ""), h("td", {}, (c.at || "").slice(0, 19).replace("T", " "))))));
  return panel;
}
