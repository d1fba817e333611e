// The worklist: members with findings, filtered, by estimated impact, a page at a time (Patient/$worklist).
// Filters and the page cursor live in the address (#worklist?…), so a view can be bookmarked and the
// browser's back button returns to the previous page. The CSV export asks the server for the same page.

import {download, h, table} from "./dom.js";
import {formatCount, formatMoney} from "./charts.js";
import {productName, worklistPage} from "./model.js";
import {fhirGet, fhirText} from "./smart.js";

const STATUSES = [["misaligned,review", "Misaligned or review"], ["misaligned", "Misaligned"], ["review", "Review"],
                  ["aligned", "Aligned"], ["not-evaluable", "Not evaluable"]];
const LINES = ["medicaid", "medicare", "dual", "commercial"];
const SOURCES = ["clinical", "claims", "patient-reported"];
const FILTERS = ["status", "kind", "enrolled", "recommended", "lob", "plan", "category", "source"];
const PAGE_SIZE = 50;

const concepts = codeSystem => (codeSystem.concept || []).map(c => [c.code, c.display || c.code]);
const options = (pairs, any) => [["", any], ...pairs];

export async function worklistView(session, main, query) {
  const [products, reasons, categories] = await Promise.all(
    ["product", "alignment-reason", "diagnosis-category"].map(id => fhirGet(session, `CodeSystem/${id}`)
      .then(concepts).catch(() => [])));
  const shown = {status: query.get("status") || "misaligned,review"};
  for (const name of FILTERS.slice(1)) shown[name] = query.get(name) || "";
  const select = (name, label, pairs) => h("label", {}, label,
    h("select", {name}, pairs.map(([code, text]) => h("option", {value: code, selected: code === shown[name]}, text))));
  const form = h("form", {class: "filters", id: "worklist-filters", onsubmit: event => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const name of FILTERS) {
      const v = event.target.elements[name].value.trim();
      if (v) next.set(name, v);
    }
    location.hash = `#worklist?${next}`;
  }},
    select("status", "Status", STATUSES),
    select("kind", "Kind", options(reasons, "Any reason")),
    select("enrolled", "Enrolled", options(products, "Any product")),
    select("recommended", "Recommended", options(products, "Any product")),
    select("lob", "Line of business", options(LINES.map(l => [l, l]), "Any")),
    h("label", {}, "Plan", h("input", {name: "plan", value: shown.plan, placeholder: "plan name", maxlength: 64})),
    select("category", "Category", options(categories, "Any")),
    select("source", "Source", options(SOURCES.map(s => [s, s]), "Any")),
    h("button", {type: "submit", id: "apply-filters"}, "Apply"));

  const request = new URLSearchParams();
  for (const name of FILTERS) if (shown[name]) request.set(name, shown[name]);
  request.set("_count", query.get("_count") || PAGE_SIZE);
  if (query.get("_cursor")) request.set("_cursor", query.get("_cursor"));
  const path = `Patient/$worklist?${request}`;
  const page = worklistPage(await fhirGet(session, path));

  const rows = page.rows.map(r => h("tr", {"data-patient": r.id},
    h("td", {}, h("a", {href: `#member/${r.id}`, "data-open": r.id}, r.name || `Patient/${r.id}`),
      h("div", {class: "muted small"}, `Patient/${r.id}`)),
    h("td", {}, h("span", {class: `badge ${r.status}`}, r.status)),
    h("td", {}, productName(r.enrolled)), h("td", {}, productName(r.recommended)),
    h("td", {class: "num", "data-impact": r.impact ? r.impact.value : ""}, r.impact ? formatMoney(r.impact.value, r.impact.currency) : "–"),
    h("td", {}, r.reasons.map(code => h("span", {class: "tag"}, code))),
    h("td", {}, r.lobs.join(", ")), h("td", {}, r.plans.join(", ")),
    h("td", {}, r.categories.map(c => h("span", {class: `tag${c.nonClaims ? " gap" : ""}`}, c.code))),
    h("td", {}, r.sources.map(s => h("span", {class: `tag ${s}`}, s)))));
  const pager = h("div", {class: "pager"},
    h("button", {id: "worklist-first", class: "secondary", disabled: !query.get("_cursor"), onclick: () => {
      query.delete("_cursor");
      location.hash = `#worklist?${query}`;
    }}, "First page"),
    h("button", {id: "worklist-next", disabled: !page.next, onclick: () => {
      query.set("_cursor", page.next);
      location.hash = `#worklist?${query}`;
    }}, "Next page"),
    h("button", {id: "worklist-csv", class: "secondary", onclick: async () => {
      download("worklist.csv", await fhirText(session, `${path}&_format=csv`, "text/csv"), "text/csv");
    }}, "Download CSV of this page"));
  main.replaceChildren(h("h1", {}, "Worklist"),
    h("p", {class: "muted"}, "Members with findings, highest estimated annual impact first. Open a member for the evidence."),
    h("section", {class: "panel wide"}, form),
    h("section", {class: "panel wide", "data-panel": "worklist"},
      h("div", {}, h("strong", {id: "worklist-total", "data-value": page.total}, formatCount(page.total)),
        h("span", {class: "muted"}, " members match"), h("span", {class: "muted small"}, ` · ${page.rows.length} shown`)),
      rows.length ? table([["Member"], ["Status"], ["Enrolled"], ["Recommended"], ["Impact / year", "num"], ["Reasons"],
                           ["Line of business"], ["Plan"], ["Categories"], ["Sources"]], rows)
                  : h("p", {class: "muted"}, "No member matches these filters."),
      pager));
}
