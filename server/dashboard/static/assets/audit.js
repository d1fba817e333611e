// The quarterly enrollment audit: a closed quarter's stored MeasureReport (Measure/product-alignment/
// $audit-quarter) drawn as a printable report: figures, the reconciliation with the previous quarter,
// the enrolled → recommended flows, the strata, and the member lists. "Print" is the browser's print
// (save as PDF); the print stylesheet drops the navigation and the buttons.

import {download, h, metric, table} from "./dom.js";
import {barChart, formatCount, formatMoney} from "./charts.js";
import {flowChart, flowPairs} from "./flows.js";
import {auditReconciliation, productName, productShort, summaryReport} from "./model.js";
import {fhirGet, fhirText} from "./smart.js";

const CHANGE_TONES = {new: "bad", resolved: "good", persisting: "warn"};
const STRATA = [["line-of-business", "Line of business"], ["plan", "Plan"], ["kind", "Kind (reason)"],
                ["enrolled-product", "Enrolled product"], ["recommended-product", "Recommended product"]];
const LISTED = 500;  // members listed per change on the page; the CSV has them all

function quarterOf(day) {
  return `${day.getUTCFullYear()}Q${Math.floor(day.getUTCMonth() / 3) + 1}`;
}

function recentQuarters(count = 8) {
  const day = new Date();
  const out = [];
  for (let i = 0; i < count; i++) {
    out.push(quarterOf(day));
    day.setUTCMonth(day.getUTCMonth() - 3, 1);
  }
  return out;
}

const operation = quarter => `Measure/product-alignment/$audit-quarter?quarter=${quarter}`;

export async function auditView(session, main, query) {
  const quarter = /^\d{4}Q[1-4]$/.test(query.get("quarter") || "") ? query.get("quarter") : recentQuarters()[1];
  const picker = h("form", {class: "filters no-print", id: "audit-quarter", onsubmit: event => {
    event.preventDefault();
    location.hash = `#audit?quarter=${event.target.elements.quarter.value}`;
  }}, h("label", {}, "Quarter", h("select", {name: "quarter"},
        recentQuarters().map(q => h("option", {value: q, selected: q === quarter}, q)))),
      h("button", {type: "submit"}, "Show"));
  let stored;
  try {
    stored = await fhirGet(session, operation(quarter));
  } catch (error) {
    if (error.status !== 404) throw error;
    main.replaceChildren(h("h1", {}, `Enrollment audit ${quarter}`), picker,
      h("p", {class: "muted", id: "audit-not-closed"}, `${quarter} has not been closed. An operator closes it with ` +
        `\`planfit audit-report --quarter ${quarter} --close\` or POST ${operation(quarter)}.`));
    return;
  }
  const report = summaryReport(stored);
  const audit = auditReconciliation(stored);
  const {populations} = report.groups[0];
  const csv = part => async () => download(`audit-${quarter}-${part}.csv`,
    await fhirText(session, `${operation(quarter)}&_format=csv&part=${part}`, "text/csv"), "text/csv");
  const kpi = (key, label, value, text, tone = "") =>
    h("div", {class: `kpi ${tone}`}, h("div", {class: "label"}, label), h("div", {class: "value"}, metric(key, value, text)));
  const changes = audit.changes;
  main.replaceChildren(
    h("h1", {}, `Enrollment audit ${quarter}`),
    h("p", {class: "muted"}, `Product alignment for ${stored.period.start} to ${stored.period.end}, closed ${stored.date.slice(0, 10)}. `,
      audit.previous ? `Compared with ${audit.previous.split("/")[1].replace("audit-product-alignment-", "")}.`
                     : "No earlier quarter was closed: every misalignment is new."),
    picker,
    h("div", {class: "no-print actions"},
      h("button", {id: "audit-print", onclick: () => window.print()}, "Print / save as PDF"),
      h("button", {id: "audit-csv-changes", class: "secondary", onclick: csv("changes")}, "Members CSV"),
      h("button", {id: "audit-csv-strata", class: "secondary", onclick: csv("strata")}, "Strata CSV")),
    h("div", {class: "kpis"},
      kpi("audit/members", "Members with active coverage", populations["initial-population"], formatCount(populations["initial-population"])),
      kpi("audit/misaligned", "Misaligned", populations.numerator, formatCount(populations.numerator), "bad"),
      ...(report.impact ? [kpi("audit/impact", "Estimated annual impact (illustrative)", report.impact.value,
                               formatMoney(report.impact.value, report.impact.currency), "money")] : []),
      ...changes.map(c => kpi(`audit/${c.change}`, `${c.change[0].toUpperCase()}${c.change.slice(1)} misalignments`,
                              c.count, formatCount(c.count), CHANGE_TONES[c.change]))),
    h("div", {class: "grid"},
      h("section", {class: "panel", "data-panel": "audit-reconciliation"}, h("h2", {}, "Reconciliation with the previous quarter"),
        barChart(changes.map(c => ({key: c.change, label: c.change, value: c.count, tone: CHANGE_TONES[c.change]})),
                 {label: "Misalignments by change"}),
        table([["Change"], ["Members", "num"], ["Impact / year", "num"]], changes.map(c => h("tr", {},
          h("td", {}, c.change), h("td", {class: "num"}, formatCount(c.count)),
          h("td", {class: "num"}, c.impact ? formatMoney(c.impact.value, c.impact.currency) : "–"))))),
      h("section", {class: "panel", "data-panel": "audit-flows"}, h("h2", {}, "Enrolled → recommended product"),
        flowChart(flowPairs(report))),
      ...STRATA.map(([key, title]) => strataPanel(report, key, title)),
      ...changes.map(c => h("section", {class: "panel wide", "data-panel": `audit-list-${c.change}`},
        h("h2", {}, `${c.change} misalignments (${formatCount(c.count)})`),
        c.members.length
          ? h("ol", {class: "members"}, c.members.slice(0, LISTED).map(id =>
              h("li", {"data-member-change": c.change}, h("a", {href: `#member/${id}`}, `Patient/${id}`))))
          : h("p", {class: "muted"}, "None."),
        c.members.length > LISTED ? h("p", {class: "muted small"}, `First ${LISTED} shown; the members CSV lists all.`) : ""))));
}

function strataPanel(report, key, title) {
  const stratifier = report.groups[0].stratifiers.find(s => s.key === key);
  const strata = stratifier?.strata || [];
  const label = s => key.endsWith("product") ? productName(s.key) : s.label;
  const short = s => key.endsWith("product") ? productShort(s.key) : s.label;
  return h("section", {class: "panel", "data-panel": `audit-strata-${key}`}, h("h2", {}, `Misaligned by ${title.toLowerCase()}`),
    strata.length ? barChart(strata.map(s => ({key: s.key, label: short(s), value: s.populations.numerator ?? 0, tone: "bad"})),
                             {label: `Misaligned members by ${title.toLowerCase()}`})
                  : h("p", {class: "muted"}, "No stratum."),
    table([[title], ["Members", "num"], ["Misaligned", "num"]], strata.map(s => h("tr", {"data-stratum": `${key}/${s.key}`},
      h("td", {}, label(s)), h("td", {class: "num"}, formatCount(s.populations["initial-population"] ?? 0)),
      h("td", {class: "num"}, metric(`${key}/${s.key}`, s.populations.numerator ?? 0, formatCount(s.populations.numerator ?? 0)))))));
}
