// The member page's risk adjustment panels, from Patient/$risk: the two levers side by side (the product
// change first, then the RAF uplift valued at the rate cell), and the CMS-HCC condition categories with
// their gap status and evidence.

import {h, metric, table} from "./dom.js";
import {formatMoney} from "./charts.js";

const valueOf = p => p[Object.keys(p).find(k => k.startsWith("value"))];
const partsOf = p => Object.fromEntries((p.part || []).filter(x => !x.part).map(x => [x.name, valueOf(x)]));

export function readRisk(parameters) {
  const top = Object.fromEntries(parameters.parameter.filter(p => !p.part).map(p => [p.name, valueOf(p)]));
  const scores = Object.fromEntries(parameters.parameter.filter(p => p.name === "score")
    .map(p => [partsOf(p).basis, partsOf(p).paymentScore]));
  const levers = partsOf(parameters.parameter.find(p => p.name === "levers") || {});
  const categories = parameters.parameter.filter(p => p.name === "category").map(p => ({
    ...partsOf(p), evidence: p.part.filter(x => x.name === "evidence").map(partsOf)}));
  return {top, scores, levers, categories};
}

function lever(order, key, label, money, note) {
  const value = money ? money.value : "";
  return h("div", {class: "product", "data-lever": key, "data-order": order},
    h("small", {}, `${order}. ${label}`),
    h("span", {}, metric(`lever/${key}`, value, money ? formatMoney(money.value, money.currency) : "–")),
    h("div", {class: "muted small"}, note));
}

export function leversPanel(risk) {
  const {top, scores, levers} = risk;
  const change = lever(levers.first === "product-change" ? 1 : 2, "product-change", "Product change, per year",
                       levers.productChangeAnnual, "Recommended product's rate − enrolled product's, × 12");
  const uplift = lever(levers.first === "product-change" ? 2 : 1, "raf-uplift", "RAF uplift, per year",
                       levers.rafUpliftAnnual, `Uplift ${levers.upliftScore} × ${levers.rateCell || "no"} rate cell × 12`);
  const ordered = levers.first === "product-change" ? [change, uplift] : [uplift, change];
  return h("section", {class: "panel wide", "data-panel": "member-levers", "data-first": levers.first},
    h("h2", {}, `Two levers, payment year ${top.paymentYear}`),
    h("div", {class: "products"}, ...ordered),
    h("p", {class: "muted small"}, "Payment score from claims ",
      metric("risk/claims", scores.claims, String(scores.claims)), " · from all sources ",
      metric("risk/all", scores.all, String(scores.all)), ` · segment ${top.segment}`,
      top.institutional ? " · long-term institutional" : "", top.originallyDisabled ? " · originally disabled" : ""));
}

export function hccPanel(risk) {
  const rows = risk.categories.map(c => h("tr", {"data-hcc": c.code.code, "data-status": c.evidenceStatus},
    h("td", {}, `HCC ${c.code.code}`, h("div", {class: "muted small"}, c.code.display || "")),
    h("td", {}, h("span", {class: `tag ${c.evidenceStatus}`}, c.evidenceStatus), " ", c.ccType,
      c.superseded ? h("div", {class: "muted small"}, "superseded") : ""),
    h("td", {class: "num"}, c.coefficient ?? ""),
    h("td", {}, c.evidence.map(e => h("div", {"data-hcc-evidence": e.resource.reference},
      `${e.resource.reference} · ${e.code} · ${e.sourceKind}`, e.pending ? " (pending)" : "", e.priorYear ? " (prior year)" : "")))));
  return h("section", {class: "panel wide", "data-panel": "member-hccs"}, h("h2", {}, "CMS-HCC condition categories"),
    rows.length ? table([["Category"], ["Gap"], ["Coefficient", "num"], ["Evidence"]], rows)
                : h("p", {class: "muted"}, "No condition category from the diagnosis year's evidence."));
}
