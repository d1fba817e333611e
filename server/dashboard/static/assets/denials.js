// Denial root cause: the last run's summary MeasureReport (ExplanationOfBenefit/$denial-root-cause):
// denied lines and amounts by classification, the amount at stake from product mismatch, the cohort of
// members affected, and the CSV of lines, members and billing providers.

import {download, h, metric, table} from "./dom.js";
import {barChart, formatCount, formatMoney} from "./charts.js";
import {fhirGet, fhirText} from "./smart.js";

const OPERATION = "ExplanationOfBenefit/$denial-root-cause";
const TONES = {"product-mismatch": "bad", coding: "warn", authorization: "primary", other: "grey"};

const moneyOf = element => (element.extension || []).find(e => e.valueMoney)?.valueMoney;

export async function denialsView(session, main) {
  let report;
  try {
    report = await fhirGet(session, OPERATION);
  } catch (error) {
    if (error.status !== 404) throw error;
    main.replaceChildren(h("h1", {}, "Denial root cause"),
      h("p", {class: "muted", id: "denials-not-run"}, `No run yet: an operator runs POST /fhir/${OPERATION}.`));
    return;
  }
  const group = report.group[0];
  const total = moneyOf(report);
  const atStake = (report.extension || []).find(e => e.url.endsWith("/amount-at-stake")).valueMoney;
  const strata = group.stratifier[0].stratum.map(s => ({key: s.value.coding[0].code, lines: s.population[0].count,
                                                         amount: moneyOf(s)}));
  const csv = part => async () => download(`denials-${part}.csv`,
    await fhirText(session, `${OPERATION}?_format=csv&part=${part}`, "text/csv"), "text/csv");
  const kpi = (key, label, value, text, tone = "") =>
    h("div", {class: `kpi ${tone}`}, h("div", {class: "label"}, label), h("div", {class: "value"}, metric(key, value, text)));
  const denied = group.population[0].count;
  main.replaceChildren(
    h("h1", {}, "Denial root cause"),
    h("p", {class: "muted"}, `Denied claim lines with dates of service ${report.period.start} to ${report.period.end}, ` +
      `classified ${report.date.slice(0, 10)}. A line is a product mismatch when the member's finding on its date of ` +
      "service recommends a product whose benefits cover the service and the enrolled product's do not."),
    h("div", {class: "kpis"},
      kpi("denials/lines", "Denied lines", denied, formatCount(denied)),
      kpi("denials/amount", "Denied amount (submitted)", total.value, formatMoney(total.value, total.currency)),
      kpi("denials/at-stake", "At stake from product mismatch", atStake.value, formatMoney(atStake.value, atStake.currency), "bad")),
    h("div", {class: "no-print actions"},
      h("button", {id: "denials-csv-lines", onclick: csv("lines")}, "Lines CSV"),
      h("button", {class: "secondary", id: "denials-csv-members", onclick: csv("members")}, "Members CSV"),
      h("button", {class: "secondary", id: "denials-csv-providers", onclick: csv("providers")}, "Billing providers CSV")),
    h("div", {class: "grid"},
      h("section", {class: "panel", "data-panel": "denials-classification"}, h("h2", {}, "Denied amount by root cause"),
        barChart(strata.map(s => ({key: s.key, label: s.key, value: s.amount.value, tone: TONES[s.key]})),
                 {label: "Denied amount by classification", format: v => formatMoney(v, total.currency)}),
        table([["Root cause"], ["Lines", "num"], ["Amount", "num"]], strata.map(s => h("tr", {"data-classification": s.key},
          h("td", {}, s.key), h("td", {class: "num"}, metric(`denials/lines/${s.key}`, s.lines, formatCount(s.lines))),
          h("td", {class: "num"}, metric(`denials/amount/${s.key}`, s.amount.value, formatMoney(s.amount.value, s.amount.currency))))))),
      h("section", {class: "panel", "data-panel": "denials-cohort"}, h("h2", {}, "Members affected"),
        h("p", {}, "The cohort Group ", h("code", {}, "denials-product-mismatch"),
          " lists the members with a denial traced to product mismatch; the worklist shows what they should be enrolled in."),
        h("p", {}, h("a", {href: "#worklist?status=misaligned"}, "Open the worklist of misaligned members")))));
}
