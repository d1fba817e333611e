// Savings and payment assurance for one ACO (#savings?aco=…&month=YYYY-MM&cohort=Group/…): the performance
// year settled (MeasureReport/$savings: benchmark by alignment basis, MSSP sharing or REACH capitation
// margin) and, with a month and a locked roster, the payment-assurance check (MeasureReport/$payment-assurance).
// When the attributed count does not match the locked cohort the server withholds every savings figure and
// says why; the page shows that reason in place of the figures. Both reports download as CSV.

import {download, h, metric, table} from "./dom.js";
import {formatCount, formatMoney} from "./charts.js";
import {fhirGet, fhirText} from "./smart.js";

const TRIGGER = "https://planfit.dev/fhir/StructureDefinition/trigger-status";
const codeOf = group => group.code.coding[0].code;
const LABELS = {
  benchmark: "Benchmark", spend: "Spend", savings: "Savings", "shared-savings": "Shared savings",
  "shared-losses": "Shared losses", "capitation-margin": "Capitation margin", attributed: "Attributed",
  "locked-cohort": "Locked cohort", "claims-not-received": "Claims not yet received",
};

function score(group) {
  const q = group.measureScore;
  if (!q) return "";
  if (q.unit === "USD") return formatMoney(q.value, "USD");
  if (q.unit === "%") return `${q.value}%`;
  return q.unit === "count" ? formatCount(q.value) : String(q.value);
}

function figuresTable(report, prefix) {
  return table([["Figure"], ["Value", "num"], ["Note"]], report.group.map(g => {
    const status = (g.extension || []).find(e => e.url === TRIGGER);
    return h("tr", {"data-figure": `${prefix}/${codeOf(g)}`},
      h("td", {}, LABELS[codeOf(g)] || codeOf(g)),
      h("td", {class: "num"}, status ? h("span", {class: `badge ${status.valueCode}`}, status.valueCode) : score(g)),
      h("td", {}, g.code.text || ""));
  }));
}

function kpis(report, prefix, codes) {
  const byCode = Object.fromEntries(report.group.map(g => [codeOf(g), g]));
  return h("div", {class: "kpis"}, codes.filter(c => byCode[c]).map(c => h("div", {class: "kpi"},
    h("div", {class: "label"}, LABELS[c] || c),
    h("div", {class: "value"}, metric(`${prefix}/${c}`, byCode[c].measureScore?.value ?? "", score(byCode[c]))))));
}

export async function savingsView(session, main, params) {
  const aco = params.get("aco") || "", month = params.get("month") || "", cohort = params.get("cohort") || "";
  const form = h("form", {id: "savings-form", class: "no-print actions", onsubmit: event => {
    event.preventDefault();
    const e = event.target.elements;
    const query = new URLSearchParams({aco: e.aco.value.trim(), month: e.month.value.trim(), cohort: e.cohort.value.trim()});
    location.hash = `#savings?${query}`;
  }}, h("label", {}, "ACO ", h("input", {name: "aco", value: aco, required: true})),
      h("label", {}, "Month ", h("input", {name: "month", value: month, placeholder: "YYYY-MM"})),
      h("label", {}, "Locked roster ", h("input", {name: "cohort", value: cohort, placeholder: "Group/…"})),
      h("button", {type: "submit"}, "Show"));
  if (!aco) {
    main.replaceChildren(h("h1", {}, "Savings and payment assurance"), form,
      h("p", {class: "muted"}, "Name the ACO (POST /fhir/MeasureReport/$savings-load loads its terms, beneficiaries and claims)."));
    return;
  }
  const query = new URLSearchParams({aco});
  const settlement = await fhirGet(session, `MeasureReport/$savings?${query}`);
  const csv = (path, name) => async () => download(name, await fhirText(session, path, "text/csv"), "text/csv");
  const parts = [h("h1", {}, `Savings: ${aco}`), form,
    h("p", {class: "muted"}, `Performance year ${settlement.period.start.slice(0, 4)}, settled on the claims loaded so far.`),
    kpis(settlement, "settlement", ["benchmark", "spend", "savings", "shared-savings", "shared-losses", "capitation-margin"]),
    h("div", {class: "no-print actions"}, h("button", {id: "savings-csv", onclick: csv(`MeasureReport/$savings?${query}`,
                                                                                       `savings-${aco}.csv`)}, "Settlement CSV")),
    h("section", {class: "panel wide", "data-panel": "savings-settlement"}, h("h2", {}, "Settlement"),
      figuresTable(settlement, "settlement"))];
  if (month && cohort) {
    const path = `MeasureReport/$payment-assurance?${new URLSearchParams({aco, month, cohort})}`;
    const report = await fhirGet(session, path);
    const issues = (report.contained || []).flatMap(r => r.issue || []);
    const refusals = issues.filter(i => i.severity === "error");
    parts.push(h("h2", {}, `Payment assurance ${month} against ${cohort}`),
      refusals.length ? h("section", {class: "panel wide", id: "assurance-refused", "data-panel": "assurance-refused"},
        h("h2", {}, "No savings figure: the report refuses it"), h("ul", {}, refusals.map(i => h("li", {}, i.diagnostics))))
        : kpis(report, "assurance", ["attributed", "locked-cohort", "claims-not-received"]),
      h("div", {class: "no-print actions"}, h("button", {id: "assurance-csv", onclick: csv(path, `payment-assurance-${aco}-${month}.csv`)},
                                              "Payment assurance CSV")),
      h("section", {class: "panel wide", "data-panel": "assurance"}, h("h2", {}, "Figures and outcome triggers"),
        figuresTable(report, "assurance")),
      h("section", {class: "panel wide", "data-panel": "assurance-questions"}, h("h2", {}, "Open methodology questions"),
        h("ul", {}, issues.filter(i => i.severity !== "error").map(i => h("li", {"data-question": ""}, i.diagnostics)))));
  }
  main.replaceChildren(...parts);
}
