// Capitation by line of business: the rates file (and optionally the risk-transfer file) sent to
// POST $capitation-adjustment, and its MeasureReport shown as two tables per approach: the adjustment
// development (member months, average and relative risk, factor, adjusted PMPM) and the year-1 results,
// resettlement and year-2 factor. A refused file shows the server's message naming the row and field.

import {h, metric, table} from "./dom.js";
import {formatCount, formatMoney} from "./charts.js";
import {fhirPost} from "./smart.js";

const EXT = "https://planfit.dev/fhir/StructureDefinition/capitation-";
const extension = (stratum, name) => (stratum.extension || []).find(e => e.url === EXT + name);
const decimal = (stratum, name) => extension(stratum, name)?.valueDecimal ?? 0;
const money = (stratum, name) => extension(stratum, name)?.valueMoney?.value ?? 0;
const component = (stratum, name) => stratum.component.find(c => c.code.text === name).value.text;
const factor = value => value.toFixed(4);

function rowsOf(group) {
  return group.stratifier[0].stratum.map(s => ({
    provider: component(s, "provider"), lob: component(s, "lob"), memberMonths: s.population[0].count,
    averageRisk: decimal(s, "average-risk"), relativeRisk: decimal(s, "relative-risk"), pmpm: money(s, "current-pmpm"),
    factor: decimal(s, "factor"), adjusted: s.measureScore.value, year1Factor: decimal(s, "year1-factor"),
    resettlement: money(s, "resettlement")}));
}

function approachPanel(group) {
  const approach = group.code.coding[0].code;
  const rows = rowsOf(group);
  const key = r => `${approach}/${r.provider}/${r.lob}`;
  const development = table([["Provider"], ["LOB"], ["Member months", "num"], ["Average risk", "num"],
                             ["Relative risk", "num"], ["Current PMPM", "num"], ["Factor", "num"], ["Adjusted PMPM", "num"]],
    rows.map(r => h("tr", {"data-row": key(r)}, h("td", {}, r.provider), h("td", {}, r.lob),
      h("td", {class: "num"}, formatCount(r.memberMonths)), h("td", {class: "num"}, factor(r.averageRisk)),
      h("td", {class: "num"}, factor(r.relativeRisk)), h("td", {class: "num"}, formatMoney(r.pmpm)),
      h("td", {class: "num"}, metric(`factor/${key(r)}`, r.factor, factor(r.factor))),
      h("td", {class: "num"}, metric(`adjusted/${key(r)}`, r.adjusted, formatMoney(r.adjusted))))));
  const providers = [...new Set(rows.map(r => r.provider))];
  const settlement = table([["Provider"], ["LOB"], ["Year-1 factor", "num"], ["Resettlement", "num"],
                            ["Year-2 PMPM", "num"]],
    [...rows.map(r => h("tr", {}, h("td", {}, r.provider), h("td", {}, r.lob),
       h("td", {class: "num"}, metric(`year1-factor/${key(r)}`, r.year1Factor, factor(r.year1Factor))),
       h("td", {class: "num"}, metric(`resettlement/${key(r)}`, r.resettlement, formatMoney(r.resettlement))),
       h("td", {class: "num"}, formatMoney(r.pmpm * r.year1Factor)))),
     ...providers.map(p => {
       const total = rows.filter(r => r.provider === p).reduce((sum, r) => sum + r.resettlement, 0);
       return h("tr", {class: "total"}, h("td", {}, h("strong", {}, p)), h("td", {}, "all"), h("td", {}),
         h("td", {class: "num"}, metric(`resettlement/${approach}/${p}`, total.toFixed(2), formatMoney(total))), h("td", {}));
     })]);
  return h("section", {class: "panel wide", "data-panel": `capitation-${approach}`}, h("h2", {}, approach),
    h("h3", {}, "Adjustment development"), development,
    h("h3", {}, "Year-1 results, resettlement and year 2"), settlement);
}

export function capitationView(session, main) {
  const rates = h("textarea", {id: "capitation-rates", rows: 8, cols: 90, "aria-label": "Rates CSV",
    placeholder: "provider,lob,pmpm,base_member_months,base_risk,year1_member_months,year1_risk"});
  const transfers = h("textarea", {id: "capitation-transfers", rows: 5, cols: 90, "aria-label": "Risk transfers CSV (optional)",
    placeholder: "lob,transfers,total_cost_of_care,experience_rated"});
  const derive = h("input", {type: "checkbox", id: "capitation-derive"});
  const baseYear = h("input", {type: "number", id: "capitation-base-year", min: 1900, max: 9998, size: 6,
    "aria-label": "Base year", placeholder: "last year"});
  const results = h("div", {id: "capitation-results"});
  const run = async (event) => {
    event.preventDefault();
    results.replaceChildren(h("p", {class: "muted"}, "Computing…"));
    const parameter = [{name: "rates", valueString: rates.value}];
    if (transfers.value.trim()) parameter.push({name: "riskTransfers", valueString: transfers.value});
    if (derive.checked) parameter.push({name: "deriveMemberMonths", valueBoolean: true});
    if (baseYear.value) parameter.push({name: "baseYear", valueInteger: Number(baseYear.value)});
    try {
      const report = await fhirPost(session, "$capitation-adjustment", {resourceType: "Parameters", parameter});
      results.replaceChildren(h("p", {class: "muted", id: "capitation-report", "data-value": report.id},
        `MeasureReport/${report.id} · ${report.date}`), ...report.group.map(approachPanel));
      document.body.dataset.ready = "capitation-result";
    } catch (error) {
      results.replaceChildren(h("p", {class: "error", id: "capitation-error"}, error.message));
      document.body.dataset.ready = "capitation-error";
    }
  };
  main.replaceChildren(h("h1", {}, "Capitation by line of business"),
    h("p", {class: "muted"}, "Paste the rates file (one row per provider organization × line of business) and, " +
      "optionally, the risk-transfer file. The server validates both whole and answers with the adjustment under " +
      "each approach; see the README's worked example. Member months left empty (or, ticked below, every row's) " +
      "are counted from the stored Coverage periods: a month counts when coverage is in force on its first day, " +
      "toward the organization an ATR roster attributes the member to for that month (its member period), " +
      "else the one the member names as general practitioner."),
    h("form", {class: "capitation", onsubmit: run}, h("label", {}, "Rates CSV", rates),
      h("label", {}, "Risk transfers CSV (optional)", transfers),
      h("label", {}, derive, " Derive every row's member months from Coverage and attribution (ATR rosters, else general practitioner)"),
      h("label", {}, "Base year of derived member months (year 1 follows it)", baseYear),
      h("button", {type: "submit", id: "capitation-run"}, "Compute")),
    results);
}
