// Care management: a roster's intervention priority list for a week (List/$intervention-priority, made
// once per week and read back after) and the signed-in care manager's open Tasks ("my Tasks": owner = the
// user's fhirUser), whose status can be updated here (PUT Task). The roster and week live in the address
// (#interventions?roster=…&week=…), so a list can be bookmarked.

import {h, metric, table} from "./dom.js";
import {fhirGet, fhirPost, fhirPut} from "./smart.js";

const OPEN = ["requested", "received", "accepted", "ready", "in-progress", "on-hold"];
const NEXT = [...OPEN, "completed", "cancelled", "failed"];
const ENTRY_EXT = "https://planfit.dev/fhir/StructureDefinition/intervention-priority";
const valueOf = part => Object.entries(part).find(([k]) => k.startsWith("value"))[1];

function entryValues(entry) {
  const ext = (entry.extension || []).find(e => e.url === ENTRY_EXT);
  const values = Object.fromEntries((ext ? ext.extension : []).map(e => [e.url, valueOf(e)]));
  return {patient: entry.item.reference.split("/")[1], tier: entry.flag.coding[0].code, ...values};
}

async function priorityPanel(session, roster, week) {
  const params = [{name: "roster", valueReference: {reference: `Group/${roster}`}}];
  if (week) params.push({name: "week", valueDate: week});
  const list = await fhirPost(session, "List/$intervention-priority", {resourceType: "Parameters", parameter: params});
  const entries = (list.entry || []).map(entryValues);
  const high = entries.filter(e => e.tier === "high").length;
  return h("section", {class: "panel wide", "data-panel": "priority", "data-list": list.id},
    h("h2", {}, list.title),
    h("p", {class: "muted"}, `${entries.length} active participants, `, metric("priority/high", high, String(high)),
      " high risk. Inputs refreshed: ",
      (list.extension || []).filter(e => e.url.endsWith("intervention-input"))
        .map(e => `${valueOf(e.extension[0])} ${valueOf(e.extension[1]).slice(0, 10)}`).join(", ")),
    table([["#", "num"], ["Member"], ["Tier"], ["ED visits", "num"], ["Admissions", "num"], ["Care-plan variance", "num"],
           ["Risk score", "num"], ["Task due"]], entries.map(e =>
      h("tr", {"data-entry": e.patient, "data-tier": e.tier},
        h("td", {class: "num"}, String(e.rank)), h("td", {}, h("a", {href: `#member/${e.patient}`}, `Patient/${e.patient}`)),
        h("td", {}, e.tier), h("td", {class: "num"}, String(e.edVisits)), h("td", {class: "num"}, String(e.inpatientAdmissions)),
        h("td", {class: "num"}, String(e.carePlanVariance)), h("td", {class: "num"}, e.riskScore === undefined ? "–" : e.riskScore.toFixed(3)),
        h("td", {}, e.dueDate)))));
}

async function myTasks(session, refresh) {
  const owner = session.fhirUser ? session.fhirUser.split("/").slice(-2).join("/") : null;
  const section = h("section", {class: "panel wide", "data-panel": "my-tasks"}, h("h2", {}, "My Tasks"));
  if (!owner) {
    section.append(h("p", {class: "muted"}, "Sign in as a care manager to see your Tasks."));
    return section;
  }
  const bundle = await fhirGet(session, `Task?owner=${encodeURIComponent(owner)}&status=${OPEN.join(",")}&_count=200`);
  const tasks = (bundle.entry || []).map(e => e.resource)
    .sort((a, b) => (a.restriction?.period?.end || "").localeCompare(b.restriction?.period?.end || ""));
  const update = task => async event => {
    event.preventDefault();
    const status = event.target.elements.status.value;
    try {
      await fhirPut(session, `Task/${task.id}`, {...task, status, lastModified: new Date().toISOString()});
      await refresh();
    } catch (error) {
      event.target.replaceChildren(h("span", {class: "error"}, error.message));
    }
  };
  section.append(h("p", {class: "muted"}, metric("tasks/open", tasks.length, String(tasks.length)), ` open Tasks for ${owner}.`),
    table([["Due"], ["For"], ["Intervention"], ["Status"], ["Barrier"], [""]], tasks.map(t =>
      h("tr", {"data-task": t.id, "data-status": t.status},
        h("td", {}, t.restriction?.period?.end || ""), h("td", {}, t.for?.reference || ""),
        h("td", {}, t.code?.coding?.[0]?.display || t.code?.coding?.[0]?.code || ""), h("td", {}, t.status),
        h("td", {}, t.statusReason?.coding?.[0]?.code || ""),
        h("td", {}, h("form", {class: "task-status", onsubmit: update(t)},
          h("select", {name: "status"}, NEXT.map(s => h("option", {value: s, selected: s === t.status}, s))),
          h("button", {type: "submit"}, "Update")))))));
  return section;
}

export async function interventionsView(session, main, query) {
  const roster = query.get("roster") || "";
  const week = query.get("week") || "";
  const form = h("form", {id: "priority-form", class: "no-print actions", onsubmit: event => {
    event.preventDefault();
    const next = new URLSearchParams({roster: event.target.elements.roster.value.trim()});
    if (event.target.elements.week.value) next.set("week", event.target.elements.week.value);
    location.hash = `#interventions?${next}`;
  }}, h("label", {}, "Roster (Group id) ", h("input", {name: "roster", value: roster, required: true})),
     h("label", {}, "Week of ", h("input", {name: "week", type: "date", value: week})), h("button", {type: "submit"}, "Show"));
  const tasksSlot = h("div", {id: "my-tasks"});
  const refresh = async () => tasksSlot.replaceChildren(await myTasks(session, refresh));
  let priority = h("p", {class: "muted"}, "Name a roster to see its priority list for a week (this week by default).");
  if (roster) {
    try {
      priority = await priorityPanel(session, roster, week);
    } catch (error) {
      priority = h("section", {class: "panel wide", "data-panel": "priority", "data-state": "error"},
        h("h2", {}, "Priority list"), h("p", {class: "error", id: "priority-refused"}, error.message));
    }
  }
  await refresh();
  main.replaceChildren(h("h1", {}, "Care management"), form, tasksSlot, priority);
}
