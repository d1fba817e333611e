// Encounter data completeness (Measure/encounter-completeness/$completeness): per source organization and
// month, the clinical Conditions and Encounters seen, the share a claim or encounter record matched within
// the window, and the lag (days to the claim) p50/p90; a bar chart of the share per source and month, the
// table, and the CSV of the same rows.

import {download, h, metric, table} from "./dom.js";
import {barChart, formatCount} from "./charts.js";
import {fhirGet, fhirText} from "./smart.js";

const OPERATION = "Measure/encounter-completeness/$completeness";
const DATE = /^\d{4}-\d{2}-\d{2}$/;

const detailOf = element => Object.fromEntries(
  (element.extension || []).find(e => e.url.endsWith("/completeness-detail")).extension
    .map(e => [e.url, e.valueInteger ?? e.valueQuantity?.value]));
const countOf = (element, code) => element.population.find(p => p.code.coding[0].code === code).count;
const percent = value => `${(value * 100).toFixed(1)}%`;

export async function completenessView(session, main, query) {
  const params = new URLSearchParams();
  for (const name of ["periodStart", "periodEnd"]) if (DATE.test(query.get(name) || "")) params.set(name, query.get(name));
  if (/^\d{1,3}$/.test(query.get("window") || "")) params.set("window", query.get("window"));
  const report = await fhirGet(session, `${OPERATION}?${params}`);
  const window = report.extension.find(e => e.url.endsWith("/completeness-window")).valueQuantity.value;
  const group = report.group[0];
  const rows = (group.stratifier?.[0].stratum || []).map(s => {
    const [source, month] = s.component.map(c => c.value.text);
    return {source, month, records: countOf(s, "initial-population"), matched: countOf(s, "numerator"),
            share: s.measureScore?.value ?? 0, ...detailOf(s)};
  });
  const form = h("form", {class: "filters no-print", id: "completeness-filters", onsubmit: event => {
    event.preventDefault();
    const next = new URLSearchParams();
    for (const name of ["periodStart", "periodEnd", "window"]) {
      const value = event.target.elements[name].value;
      if (value) next.set(name, value);
    }
    location.hash = `#completeness?${next}`;
  }},
    h("label", {}, "From", h("input", {type: "date", name: "periodStart", value: report.period.start})),
    h("label", {}, "To", h("input", {type: "date", name: "periodEnd", value: report.period.end})),
    h("label", {}, "Window (days)", h("input", {type: "number", name: "window", min: 0, max: 730, value: window})),
    h("button", {type: "submit"}, "Show"),
    h("button", {type: "button", class: "secondary", id: "completeness-csv", onclick: async () => download(
      "completeness.csv", await fhirText(session, `${OPERATION}?${params}&_format=csv`, "text/csv"), "text/csv")}, "CSV"));
  const total = {records: countOf(group, "initial-population"), matched: countOf(group, "numerator")};
  const kpi = (key, label, value, text) =>
    h("div", {class: "kpi"}, h("div", {class: "label"}, label), h("div", {class: "value"}, metric(key, value, text)));
  const key = r => `completeness/${r.source}/${r.month}`;
  main.replaceChildren(
    h("h1", {}, "Encounter data completeness"),
    h("p", {class: "muted"}, `Clinical Conditions and Encounters dated ${report.period.start} to ${report.period.end}, ` +
      `matched when a claim or encounter record of the member for that day was created within ${window} days.`),
    form,
    h("div", {class: "kpis"},
      kpi("completeness/records", "Clinical records", total.records, formatCount(total.records)),
      kpi("completeness/matched", "Matched by a claim", total.matched, formatCount(total.matched)),
      kpi("completeness/share", "Share matched", group.measureScore?.value ?? 0, percent(group.measureScore?.value ?? 0))),
    h("section", {class: "panel", "data-panel": "completeness-chart"}, h("h2", {}, "Share matched, by source and month"),
      rows.length ? barChart(rows.map(r => ({key: key(r), label: `${r.source.split("/").pop().slice(0, 14)} ${r.month}`,
                                              value: r.share * 100, tone: r.share < 0.8 ? "bad" : "good"})),
                             {label: "Share of clinical records matched by a claim", format: v => `${v.toFixed(1)}%`})
        : h("p", {class: "muted", id: "completeness-empty"}, "No clinical records in this period.")),
    h("section", {class: "panel", "data-panel": "completeness-table"}, h("h2", {}, "By source and month"),
      table([["Source"], ["Month"], ["Conditions", "num"], ["Matched", "num"], ["Encounters", "num"], ["Matched", "num"],
             ["Share", "num"], ["Lag p50 (d)", "num"], ["Lag p90 (d)", "num"]],
        rows.map(r => h("tr", {"data-source": r.source, "data-month": r.month},
          h("td", {}, r.source), h("td", {}, r.month),
          h("td", {class: "num"}, formatCount(r.conditions)), h("td", {class: "num"}, formatCount(r.conditionsMatched)),
          h("td", {class: "num"}, formatCount(r.encounters)), h("td", {class: "num"}, formatCount(r.encountersMatched)),
          h("td", {class: "num"}, metric(`${key(r)}/records`, r.records, ""), metric(`${key(r)}/matched`, r.matched, ""),
            percent(r.share)),
          h("td", {class: "num"}, r.lagP50 === undefined ? "–" : metric(`${key(r)}/p50`, r.lagP50, String(r.lagP50))),
          h("td", {class: "num"}, r.lagP90 === undefined ? "–" : metric(`${key(r)}/p90`, r.lagP90, String(r.lagP90))))))));
}
