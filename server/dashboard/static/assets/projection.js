// Claims-based alignment projection: for one ACO (#projection?aco=…), the churn of its latest projection
// against the previous one (Group/$alignment-churn): members in and out, where the leavers went, and the
// outside providers billing them (contracting candidates, also as CSV). The projected lists themselves
// are attribution lists: the Rosters page shows them with their changeType.

import {download, h, metric, table} from "./dom.js";
import {formatCount, formatMoney} from "./charts.js";
import {fhirGet, fhirText} from "./smart.js";

const OPERATION = "Group/$alignment-churn";
const valueOf = part => Object.entries(part).find(([k]) => k.startsWith("value"))[1];
const partsOf = p => Object.fromEntries(p.part.map(q => [q.name, valueOf(q)]));

export async function projectionView(session, main, params) {
  const aco = params.get("aco") || "";
  const form = h("form", {id: "projection-form", class: "no-print actions", onsubmit: event => {
    event.preventDefault();
    location.hash = `#projection?aco=${encodeURIComponent(event.target.elements.aco.value.trim())}`;
  }}, h("label", {}, "ACO ", h("input", {name: "aco", value: aco, required: true})), h("button", {type: "submit"}, "Show"));
  if (!aco) {
    main.replaceChildren(h("h1", {}, "Alignment projection"), form,
      h("p", {class: "muted"}, "Name the ACO whose projection to show (POST /fhir/Group/$alignment-projection runs one)."));
    return;
  }
  let answer;
  try {
    answer = await fhirGet(session, `${OPERATION}?aco=${encodeURIComponent(aco)}`);
  } catch (error) {
    if (error.status !== 404) throw error;
    main.replaceChildren(h("h1", {}, "Alignment projection"), form,
      h("p", {class: "muted", id: "projection-none"}, `No projection of ACO ${aco} yet.`));
    return;
  }
  const scalar = name => answer.parameter.find(p => p.name === name);
  const moves = answer.parameter.filter(p => p.name === "member").map(partsOf);
  const candidates = answer.parameter.filter(p => p.name === "candidate").map(partsOf);
  const kpi = (key, label, value) => h("div", {class: "kpi"}, h("div", {class: "label"}, label),
                                        h("div", {class: "value"}, metric(key, value, formatCount(value))));
  const csv = async () => download(`projection-${aco}-candidates.csv`,
    await fhirText(session, `${OPERATION}?aco=${encodeURIComponent(aco)}`, "text/csv"), "text/csv");
  const previous = scalar("previousRun");
  main.replaceChildren(
    h("h1", {}, `Alignment projection: ${aco}`), form,
    h("p", {class: "muted"}, `Projection run ${valueOf(scalar("run"))}` +
      (previous ? ` against run ${valueOf(previous)}.` : " (the first: every member is new).")),
    h("div", {class: "kpis"}, kpi("projection/in", "Joined", valueOf(scalar("in"))),
      kpi("projection/out", "Left", valueOf(scalar("out"))),
      kpi("projection/candidates", "Contracting candidates", candidates.length)),
    h("div", {class: "no-print actions"}, h("button", {id: "projection-csv", onclick: csv}, "Candidates CSV")),
    h("div", {class: "grid"},
      h("section", {class: "panel", "data-panel": "projection-candidates"},
        h("h2", {}, "Outside providers billing the members who left"),
        table([["TIN"], ["NPI"], ["Members", "num"], ["Weighted allowed", "num"]], candidates.map(c =>
          h("tr", {"data-candidate": `${c.tin}/${c.npi}`}, h("td", {}, c.tin), h("td", {}, c.npi),
            h("td", {class: "num"}, formatCount(c.churningMembers)),
            h("td", {class: "num"}, formatMoney(c.weightedAllowed.value, c.weightedAllowed.currency)))))),
      h("section", {class: "panel", "data-panel": "projection-moves"}, h("h2", {}, "Members in and out"),
        table([["Member"], ["Direction"], ["Status"], ["From TIN"], ["To TIN"]], moves.slice(0, 500).map(m =>
          h("tr", {"data-move": m.patient.reference.split("/")[1], "data-direction": m.direction},
            h("td", {}, h("a", {href: `#member/${m.patient.reference.split("/")[1]}`}, m.patient.reference)),
            h("td", {}, m.direction), h("td", {}, m.status), h("td", {}, m.fromTin || ""), h("td", {}, m.toTin || "")))))));
}
