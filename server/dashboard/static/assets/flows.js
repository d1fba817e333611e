// The enrolled → recommended product flows of a product-alignment summary report, as a Sankey chart
// (population view and the quarterly audit).

import {h} from "./dom.js";
import {sankey} from "./charts.js";
import {findStratifier, flowsOf, productShort} from "./model.js";

export const flowPairs = report => flowsOf(findStratifier(report, ["enrolled"], {components: true}));

export function flowChart(pairs) {
  const side = key => [...new Set(pairs.map(f => f[key]))].map(k => ({key: k, label: productShort(k),
    count: pairs.filter(f => f[key] === k).reduce((sum, f) => sum + f.count, 0)})).sort((a, b) => b.count - a.count);
  return pairs.length
    ? sankey([side("from"), side("to")], pairs.map(f => ({from: [0, f.from], to: [1, f.to], count: f.count})),
             {label: "Misaligned members by enrolled and recommended product",
              titles: ["Enrolled product", "Recommended product"]})
    : h("p", {class: "muted"}, "No misaligned members.");
}
