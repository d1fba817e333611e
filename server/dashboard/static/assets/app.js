// The dashboard: SMART launch handling, routing between the population and member views, rendering.
// Every figure shown comes from the FHIR API (MeasureReports, cohort Group history, $alignment).

import {h, metric, table} from "./dom.js";
import {barChart, formatCount, formatMoney, stepChart} from "./charts.js";
import {flowChart, flowPairs} from "./flows.js";
import {alignmentFinding, codingGaps, cohortHistory, codeOf, findStratifier, learnProductNames,
        learnReportNames, patientName, productName, productShort, summaryReport} from "./model.js";
import {rosterListView, rosterView} from "./roster.js";
import {SCOPES, authorize, completeAuthorization, currentSession, fhirGet, hasScope, signOut} from "./smart.js";
import {auditView} from "./audit.js";
import {denialsView} from "./denials.js";
import {completenessView} from "./completeness.js";
import {projectionView} from "./projection.js";
import {savingsView} from "./savings.js";
import {worklistView} from "./worklist.js";
import {interventionsView} from "./interventions.js";
import {capitationView} from "./capitation.js";
import {hccPanel, leversPanel, readRisk} from "./risk.js";

const COHORTS = ["nonclaims-smi", "nonclaims-sud", "misaligned", "candidates-ny-harp", "candidates-dsnp",
                 "candidates-csnp"];
const CANDIDATES = [["candidates-ny-harp", "ny-harp"], ["candidates-dsnp", "dsnp"], ["candidates-csnp", "csnp"]];
const POPULATION_LABELS = {"initial-population": "With active coverage", denominator: "Denominator", numerator: "Misaligned"};
const STATUS_TONES = {aligned: "good", misaligned: "bad", review: "warn", "not-evaluable": "grey"};
const main = document.getElementById("main");

// ---- DOM helpers ---------------------------------------------------------------------------------

function panel(title, key, {wide = false} = {}) {
  const body = h("div", {class: "panel-body"}, h("p", {class: "muted"}, "Loading…"));
  const el = h("section", {class: `panel${wide ? " wide" : ""}`, "data-panel": key, "data-state": "loading"},
               h("h2", {}, title), body);
  return {el, fill(...children) { body.replaceChildren(...children); el.dataset.state = "ready"; },
          fail(error) {
            body.replaceChildren(h("p", {class: "error"}, `Not available: ${error.message}` +
                                                           (error.status ? ` (HTTP ${error.status})` : "")));
            el.dataset.state = "error";
          }};
}

// ---- launch and routing --------------------------------------------------------------------------

async function start() {
  const params = new URLSearchParams(location.search);
  if (params.has("error")) throw new Error(`authorization failed: ${params.get("error_description") || params.get("error")}`);
  if (params.has("code")) {
    const session = await completeAuthorization(params);
    const hash = session.view === "member" && session.patient ? `#member/${session.patient}`
      : session.view === "rosters" ? "#rosters" : session.view === "interventions" ? "#interventions" : "#population";
    history.replaceState(null, "", location.pathname + hash);  // the code must not stay in the address bar
  } else if (params.has("iss")) {
    const launch = params.get("launch");
    const view = launch ? "member" : params.get("view") === "member" ? "member" : "population";
    status("Connecting to the authorization server…");
    await authorize({iss: params.get("iss"), launch, view, scope: launch ? SCOPES.ehr : SCOPES[view]});
    return;
  }
  const session = currentSession();
  if (!session) {
    landing();
    return;
  }
  header(session);
  // Names are a nicety: without them (no read access to CodeSystem) the product codes are shown.
  await fhirGet(session, "CodeSystem/product").then(learnProductNames).catch(() => {});
  window.addEventListener("hashchange", () => route(session));
  await route(session);
}

function status(text) {
  main.replaceChildren(h("p", {class: "muted", id: "status"}, text));
}

function landing() {
  const go = (view) => () => authorize({view, scope: SCOPES[view]}).catch(showError);
  main.replaceChildren(h("section", {class: "landing"},
    h("h1", {}, "Product alignment dashboard"),
    h("p", {class: "muted"}, "Sign in with your PlanFit account. The population view needs access to all members " +
      "you may see; the member view opens one patient."),
    h("div", {class: "choices"},
      h("button", {id: "launch-population", onclick: go("population")}, "Population view"),
      h("button", {id: "launch-member", class: "secondary", onclick: go("member")}, "Member view"),
      h("button", {id: "launch-rosters", class: "secondary", onclick: go("rosters")}, "Attribution rosters"),
      h("button", {id: "launch-interventions", class: "secondary", onclick: go("interventions")}, "Care management"))));
}

function header(session) {
  const tabs = document.getElementById("tabs");
  const links = [];
  if (hasScope(session, "user/")) {
    links.push(h("a", {href: "#population", "data-tab": "population"}, "Population"),
               h("a", {href: "#worklist", "data-tab": "worklist"}, "Worklist"),
               h("a", {href: "#audit", "data-tab": "audit"}, "Quarterly audit"),
               h("a", {href: "#denials", "data-tab": "denials"}, "Denials"),
               h("a", {href: "#completeness", "data-tab": "completeness"}, "Completeness"),
               h("a", {href: "#projection", "data-tab": "projection"}, "Projection"),
               h("a", {href: "#savings", "data-tab": "savings"}, "Savings"),
               h("a", {href: "#capitation", "data-tab": "capitation"}, "Capitation"),
               h("a", {href: "#interventions", "data-tab": "interventions"}, "Care management"));
  }
  if (session.patient) links.push(h("a", {href: `#member/${session.patient}`, "data-tab": "member"}, "Member"));
  if (hasScope(session, "user/")) links.push(h("a", {href: "#rosters", "data-tab": "rosters"}, "Rosters"));
  tabs.replaceChildren(...links);
  tabs.hidden = !links.length;
  const who = session.fhirUser ? session.fhirUser.split("/").slice(-2).join("/") : "signed in";
  document.getElementById("who").replaceChildren(h("span", {id: "fhir-user"}, who),
    h("button", {id: "sign-out", onclick: () => { signOut(); location.replace(location.pathname); }}, "Sign out"));
}

async function route(session) {
  const member = location.hash.match(/^#member\/([A-Za-z0-9.-]{1,64})$/);
  const roster = location.hash.match(/^#roster\/([A-Za-z0-9.-]{1,64})(\?.*)?$/);
  const page = location.hash.match(/^#(worklist|audit|denials|completeness|projection|savings|capitation|interventions)(?:\?(.*))?$/);
  const population = hasScope(session, "user/");
  const view = member || !population ? "member" : roster ? "roster" : location.hash === "#rosters" ? "rosters"
    : page ? page[1] : "population";
  for (const a of document.querySelectorAll("#tabs a")) a.classList.toggle("active", a.dataset.tab === view.replace(/^roster$/, "rosters"));
  document.body.dataset.ready = "";
  const ui = {h, table, main};
  if (view === "member") await memberView(session, member ? member[1] : session.patient);
  else if (view === "rosters" || view === "roster") {
    try {
      await (view === "rosters" ? rosterListView(session, ui) : rosterView(session, roster[1], ui));
    } catch (error) {
      showError(error);
      return;
    }
  } else if (view === "worklist") await worklistView(session, main, new URLSearchParams(page[2] || "")).catch(showError);
  else if (view === "audit") await auditView(session, main, new URLSearchParams(page[2] || "")).catch(showError);
  else if (view === "denials") await denialsView(session, main).catch(showError);
  else if (view === "completeness") await completenessView(session, main, new URLSearchParams(page[2] || "")).catch(showError);
  else if (view === "projection") await projectionView(session, main, new URLSearchParams(page[2] || "")).catch(showError);
  else if (view === "savings") await savingsView(session, main, new URLSearchParams(page[2] || "")).catch(showError);
  else if (view === "capitation") capitationView(session, main);
  else if (view === "interventions") await interventionsView(session, main, new URLSearchParams(page[2] || "")).catch(showError);
  else await populationView(session);
  if (document.body.dataset.ready !== "error") document.body.dataset.ready = view;
}

function showError(error) {
  main.replaceChildren(h("section", {class: "panel", id: "error"}, h("h2", {}, "Something went wrong"),
    h("p", {class: "error"}, error.message), h("p", {}, h("a", {href: location.pathname}, "Start again"))));
  document.body.dataset.ready = "error";
}

// ---- population ----------------------------------------------------------------------------------

function measurementPeriod(today = new Date()) {
  const year = today.getUTCFullYear();
  return {start: `${year}-01-01`, end: `${year}-12-31`};
}

const evaluate = (session, measure, period, extra = "") =>
  fhirGet(session, `Measure/${measure}/$evaluate-measure?periodStart=${period.start}&periodEnd=${period.end}` + extra);

async function populationView(session) {
  const period = measurementPeriod();
  const panels = {
    status: panel("Members by alignment status", "status"),
    categories: panel("Non-claims SMI/SUD diagnoses by category", "categories"),
    flows: panel("Misalignment flows: enrolled → recommended product", "flows", {wide: true}),
    impact: panel("Estimated annual impact of misaligned candidates, by product (illustrative)", "impact", {wide: true}),
    cohorts: panel("Cohort sizes over versions", "cohorts", {wide: true}),
  };
  const kpis = h("div", {class: "kpis", "data-panel": "kpis"});
  const open = h("form", {class: "open", onsubmit: (event) => {
    event.preventDefault();
    location.hash = `#member/${event.target.elements.patient.value.trim()}`;
  }}, h("input", {name: "patient", placeholder: "Patient id", "aria-label": "Patient id", required: true,
                   pattern: "[A-Za-z0-9.\\-]{1,64}"}), h("button", {type: "submit"}, "Open member"));
  main.replaceChildren(h("h1", {}, "Population"),
    h("p", {class: "muted"}, `Measurement period ${period.start} to ${period.end}. Figures are the server's ` +
      "MeasureReports (product-alignment, nonclaims-bh-dx) and cohort Groups."), kpis,
    h("div", {class: "grid"}, Object.values(panels).map(p => p.el)),
    h("section", {class: "panel"}, h("h2", {}, "Open a member"), open,
      h("p", {}, h("a", {href: "#worklist", id: "open-worklist"}, "Or work through the worklist of members with findings"))));

  const population = "&reportType=population";
  const alignment = evaluate(session, "product-alignment", period, population).then(summaryReport);
  const patients = fhirGet(session, "Patient?_summary=count").then(bundle => bundle.total);
  const candidates = CANDIDATES.map(([cohort]) =>
    evaluate(session, "product-alignment", period, `${population}&subject=Group/${cohort}`).then(summaryReport));
  await Promise.allSettled([
    alignment.then(report => {
      drawKpis(report, kpis);
      drawFlows(report, panels.flows);
      return patients.then(total => drawStatus(report, total, panels.status));
    }).catch(e => {
      panels.status.fail(e);
      panels.flows.fail(e);
    }),
    Promise.all(candidates).then(reports => drawImpact(reports, panels.impact)).catch(e => panels.impact.fail(e)),
    evaluate(session, "nonclaims-bh-dx", period, population).then(summaryReport)
      .then(report => drawCategories(report, kpis, panels.categories)).catch(e => panels.categories.fail(e)),
    Promise.allSettled(COHORTS.map(id => fhirGet(session, `Group/${id}/_history?_count=100`)))
      .then(results => drawCohorts(results, panels.cohorts)),
  ]);
}

function kpi(key, label, value, text, tone = "") {
  return h("div", {class: `kpi ${tone}`}, h("div", {class: "label"}, label), h("div", {class: "value"}, metric(key, value, text)));
}

function drawKpis(report, kpis) {
  const {populations} = report.groups[0];
  kpis.prepend(
    kpi("product-alignment/initial-population", "Members with active coverage", populations["initial-population"],
        formatCount(populations["initial-population"])),
    kpi("product-alignment/numerator", "Misaligned", populations.numerator, formatCount(populations.numerator), "bad"),
    ...(report.impact ? [kpi("product-alignment/impact", "Estimated annual impact (illustrative)", report.impact.value,
                             formatMoney(report.impact.value, report.impact.currency), "money")] : []));
}

// By status: the report's status stratifier covers the members with active coverage; the Patients
// outside its initial population have none (not evaluable).
function drawStatus(report, patients, target) {
  const covered = report.groups[0].populations["initial-population"];
  const rows = (findStratifier(report, ["status"])?.strata || [])
    .map(s => ({key: s.key, label: s.label, value: firstCount(s.populations), tone: STATUS_TONES[s.key] || "primary"}));
  rows.push({key: "not-evaluable", label: "No active coverage", value: Math.max(0, patients - covered), tone: "grey"});
  target.fill(barChart(rows, {label: "Members by alignment status"}),
    table([["Status"], ["Members", "num"]], rows.map(r => h("tr", {}, h("td", {}, r.label),
      h("td", {class: "num"}, metric(`status/${r.key}`, r.value, formatCount(r.value)))))));
}

const firstCount = populations => populations["initial-population"] ?? Object.values(populations)[0] ?? 0;

function marginalTable(title, stratifier) {
  if (!stratifier) return h("p", {class: "muted small"}, `The report has no ${title} stratifier.`);
  return table([[title[0].toUpperCase() + title.slice(1)], ["Misaligned", "num"], ["Members", "num"]],
    stratifier.strata.map(s => h("tr", {}, h("td", {}, productName(s.key)),
      h("td", {class: "num"}, metric(`${title}/${s.key}`, s.populations.numerator ?? 0, formatCount(s.populations.numerator ?? 0))),
      h("td", {class: "num"}, formatCount(firstCount(s.populations))))));
}

// The enrolled × recommended stratifier gives each flow; its numerator counts the misaligned members.
function drawFlows(report, target) {
  const pairs = flowPairs(report);
  const chart = flowChart(pairs);
  const pairTable = table([["Enrolled"], ["Recommended"], ["Misaligned", "num"]], pairs.map(f =>
    h("tr", {}, h("td", {}, productName(f.from)), h("td", {}, productName(f.to)),
      h("td", {class: "num"}, metric(`flow/${f.from}>${f.to}`, f.count, formatCount(f.count))))));
  target.fill(chart, h("div", {class: "grid"}, pairTable,
    h("div", {}, marginalTable("enrolled product", findStratifier(report, ["enrolled"])),
      marginalTable("recommended product", findStratifier(report, ["recommended"])))));
}

// One product-alignment report per candidate cohort (subject=Group/candidates-…): its impact
// extension sums the estimated impact of that cohort's misaligned members. A member eligible for
// two products is a candidate for both, so the bars may overlap.
function drawImpact(reports, target) {
  const rows = reports.map((report, i) => {
    const [cohort, product] = CANDIDATES[i];
    return {key: cohort, label: productName(product), short: productShort(product), value: report.impact?.value ?? 0,
            currency: report.impact?.currency || "USD", members: report.groups[0]?.populations.numerator ?? 0};
  });
  const money = value => formatMoney(value, rows[0].currency);
  target.fill(barChart(rows.map(r => ({...r, label: r.short})),
                       {label: "Estimated annual impact by candidate product", format: money, tone: "good"}),
    table([["Candidates for"], ["Misaligned candidates", "num"], ["Impact per year", "num"]], rows.map(r =>
      h("tr", {}, h("td", {}, r.label),
        h("td", {class: "num"}, metric(`impact-members/${r.key}`, r.members, formatCount(r.members))),
        h("td", {class: "num"}, metric(`impact/${r.key}`, r.value, money(r.value)))))),
    h("p", {class: "muted small"}, "A member eligible for more than one product counts under each."));
}

function drawCategories(report, kpis, target) {
  const {populations} = report.groups[0];
  kpis.append(kpi("nonclaims-bh-dx/numerator", "With a non-claims SMI/SUD diagnosis", populations.numerator,
                  formatCount(populations.numerator), "bad"));
  const strata = findStratifier(report, ["categor"])?.strata || [];
  const rows = strata.map(s => ({key: s.key, label: s.key.toUpperCase(), value: s.populations.numerator ?? 0,
                                 all: s.populations["initial-population"] ?? 0, tone: "warn"}));
  target.fill(rows.length ? barChart(rows, {label: "Members with a non-claims diagnosis, by category"})
                          : h("p", {class: "muted"}, "No SMI/SUD diagnoses in the lookback window."),
    table([["Category"], ["Non-claims (no claim)", "num"], ["Diagnosed, any source", "num"]], rows.map(r =>
      h("tr", {}, h("td", {}, r.label),
        h("td", {class: "num"}, metric(`category/${r.key}`, r.value, formatCount(r.value))),
        h("td", {class: "num"}, metric(`category-all/${r.key}`, r.all, formatCount(r.all)))))),
    h("p", {class: "muted small"}, "Clinical evidence in the lookback window with no claims evidence of the same category: " +
      "diagnoses the plan has not been paid for."));
}

function drawCohorts(results, target) {
  const cards = results.map((result, i) => {
    const id = COHORTS[i];
    if (result.status === "rejected") {
      return h("div", {class: "cohort", "data-cohort": id, "data-state": "error"}, h("strong", {}, id),
               h("p", {class: "error small"}, `Not available: ${result.reason.message}`));
    }
    const points = cohortHistory(result.value);  // the latest 100 versions
    const latest = points.at(-1), versions = result.value.total ?? points.length;
    return h("div", {class: "cohort", "data-cohort": id, "data-state": "ready"},
      h("div", {}, h("strong", {}, latest?.name || id), h("span", {class: "muted small"}, ` · ${id}`)),
      h("div", {class: "size"}, metric(`cohort/${id}`, latest?.size ?? 0, formatCount(latest?.size ?? 0)),
        h("span", {class: "muted small"}, " members now")),
      h("div", {class: "muted small"}, metric(`cohort-versions/${id}`, versions, `${formatCount(versions)} version(s)`),
        latest ? `, last changed ${latest.when.slice(0, 19).replace("T", " ")}` : ""),
      points.length ? stepChart(points, {label: `Size of ${id} per version`}) : "");
  });
  target.fill(h("div", {class: "cohorts"}, cards));
}

// ---- member --------------------------------------------------------------------------------------

async function memberView(session, id) {
  if (!id) {
    showError(new Error("no patient selected"));
    return;
  }
  main.replaceChildren(h("p", {class: "muted"}, "Loading member…"));
  const period = measurementPeriod();
  const individual = `&reportType=subject&subject=Patient/${id}`;
  const [patient, finding, report, gaps, risk] = await Promise.allSettled([
    fhirGet(session, `Patient/${id}`),
    fhirGet(session, `Patient/${id}/$alignment`).then(alignmentFinding),
    evaluate(session, "product-alignment", period, individual).then(learnReportNames),
    evaluate(session, "nonclaims-bh-dx", period, individual).then(codingGaps),
    fhirGet(session, `Patient/${id}/$risk`).then(readRisk),
  ]);
  if (patient.status === "rejected") {
    showError(patient.reason);
    return;
  }
  const p = patient.value;
  const heading = h("div", {}, h("h1", {id: "patient-name"}, patientName(p)),
    h("p", {class: "muted"}, `Patient/${p.id}`, p.birthDate ? ` · born ${p.birthDate}` : "", p.gender ? ` · ${p.gender}` : ""));
  if (finding.status === "rejected") {
    main.replaceChildren(heading, h("p", {class: "error", "data-member": "error"}, finding.reason.message));
    return;
  }
  const f = finding.value;
  // Risk adjustment only for members the CMS-HCC model scores (Medicare): the levers and the HCC list.
  const riskPanels = risk.status === "fulfilled" ? [leversPanel(risk.value), hccPanel(risk.value)] : [];
  main.replaceChildren(heading, summary(f), ...riskPanels, h("div", {class: "grid"},
    nonClaimsPanel(f, gaps), eligiblePanel(f), riskFactorPanel(f), evidencePanel(f), coveragePanel(f),
    reportPanel(report)));
}

function productBox(label, code, key, plan, cell) {
  return h("div", {class: "product"}, h("small", {}, label), h("span", {"data-member": key, "data-value": code || ""},
                                                                 productName(code)),
    code ? h("div", {class: "muted small", "data-member": `${key}-plan`, "data-value": plan || ""},
             plan ? `plan ${plan.replace("InsurancePlan/", "")}` : "plan unknown") : "",
    cell ? h("div", {class: "muted small", "data-member": `${key}-rate-cell`,
                     "data-value": [cell.product, cell.region, cell.segment, cell.ageBand].filter(Boolean).join("/")},
             `rate cell ${[cell.product, cell.region, cell.segment, cell.ageBand].filter(Boolean).join(" · ")}`,
             cell.pmpm ? ` · ${formatMoney(cell.pmpm.value, cell.pmpm.currency)} PMPM` : "") : "");
}

function summary(f) {
  const impact = f.impact ? formatMoney(f.impact.value, f.impact.currency) : "–";
  return h("section", {class: "panel wide", "data-panel": "member-summary"},
    h("div", {}, h("span", {class: `badge ${f.status}`, "data-member": "status", "data-value": f.status}, f.status),
      f.kind ? h("span", {class: `tag ${f.kind}`, "data-member": "kind", "data-value": f.kind}, f.kind) : "",
      h("span", {class: "muted small"}, `  evaluated on ${f.evaluationDate}, diagnoses since ${f.lookbackStart}`,
        f.age !== null ? ` · age ${f.age}` : "", f.dualLevel ? ` · dual: ${f.dualLevel}` : "")),
    h("div", {class: "products"},
      productBox("Enrolled", f.enrolled, "enrolled", f.enrolledPlan, f.rateCells.find(c => c.role === "enrolled")),
      h("span", {class: "arrow"}, "→"),
      productBox("Recommended", f.recommended, "recommended", f.recommendedPlan,
                 f.rateCells.find(c => c.role === "recommended")),
      h("div", {class: "product"}, h("small", {}, "Estimated annual impact (illustrative)"),
        h("span", {"data-member": "impact", "data-value": f.impact ? f.impact.value : ""}, impact))),
    h("div", {}, h("span", {class: "muted small"}, "Reasons: "),
      f.reasons.map(r => h("span", {class: "tag", "data-reason": r}, r))));
}

// The open coding gaps of the nonclaims-bh-dx report; the finding's non-claims categories when
// that report cannot be had.
function nonClaimsPanel(f, gaps) {
  const section = h("section", {class: "panel", "data-panel": "member-nonclaims"}, h("h2", {}, "Non-claims diagnoses"));
  if (gaps.status === "fulfilled") {
    section.dataset.source = "measure-report";
    section.append(gaps.value.length ? table([["Category"], ["Gap"], ["Diagnosis codes"], ["Clinical evidence"]],
      gaps.value.map(g => h("tr", {"data-gap": g.category}, h("td", {}, h("span", {class: "tag gap"}, categoryName(g.category)),
        h("div", {class: "muted small"}, g.label)), h("td", {}, g.status, h("div", {class: "muted small"}, g.since)),
        h("td", {}, g.codes.join(", ")),
        h("td", {}, g.evidence.map(ref => h("div", {"data-gap-evidence": ref}, ref))))))
      : h("p", {class: "muted"}, "No open gap: every SMI/SUD diagnosis found also has claims evidence."));
  } else {
    section.dataset.source = "alignment";
    section.append(f.nonClaims.length ? h("div", {}, f.nonClaims.map(c => h("span", {class: "tag gap", "data-gap": c},
                                                                          categoryName(c))))
                                      : h("p", {class: "muted"}, "None."));
  }
  section.append(h("p", {class: "muted small"}, "Clinical evidence in the lookback window with no claims evidence of the " +
                                                "same category: a diagnosis the plan has not been paid for."));
  return section;
}

function eligiblePanel(f) {
  return h("section", {class: "panel", "data-panel": "member-eligible"}, h("h2", {}, "Eligible products and criteria met"),
    table([["Product"], ["Priority", "num"], ["Criteria met"]], f.eligible.map(e =>
      h("tr", {"data-eligible": e.product}, h("td", {}, productName(e.product)), h("td", {class: "num"}, e.priority ?? ""),
        h("td", {}, e.criteria.map(c => h("div", {"data-criterion": `${c.name}=${c.value}`}, `${c.name}: ${c.value}`,
          c.evidence.length ? h("span", {class: "muted small"}, ` (${c.evidence.join(", ")})`) : "")))))));
}

// HARP referral risk factors the member's claims show (listed for referral candidates: the State decides).
function riskFactorPanel(f) {
  return h("section", {class: "panel", "data-panel": "member-risk-factors"}, h("h2", {}, "HARP referral risk factors"),
    f.riskFactors.length ? table([["Risk factor"], ["Figure", "num"], ["Threshold", "num"], ["Met"], ["Claims"]],
      f.riskFactors.map(r => h("tr", {"data-risk-factor": r.code, "data-value": r.value ?? "", "data-met": String(r.met)},
        h("td", {}, r.display), h("td", {class: "num"}, `${r.value ?? ""} ${r.measure}`),
        h("td", {class: "num", "data-threshold": r.threshold}, `${r.threshold} ${r.measure}`),
        h("td", {}, r.met ? h("span", {class: "tag"}, "met") : "not met"),
        h("td", {}, r.evidence.map(ref => h("div", {"data-risk-evidence": ref}, ref))))))
      : h("p", {class: "muted"}, "None in claims (or not a HARP referral candidate)."));
}

const CODE_SYSTEMS = {"http://hl7.org/fhir/sid/icd-10-cm": "ICD-10-CM", "http://snomed.info/sct": "SNOMED CT"};
const categoryName = code => (["smi", "sud"].includes(code) ? code.toUpperCase() : code);

function evidencePanel(f) {
  const rows = f.categories.flatMap(c => c.evidence.map(e =>
    h("tr", {"data-evidence": e.resource, "data-category": c.code},
      h("td", {}, categoryName(c.code), c.nonClaims ? h("span", {class: "tag gap"}, "non-claims") : ""),
      h("td", {}, e.resource), h("td", {}, e.code ? `${CODE_SYSTEMS[e.system] || ""} ${e.code}` : ""),
      h("td", {"data-date": e.date}, e.date, e.lastAffirmed ? h("span", {class: "muted small"}, ` (last affirmed ${e.lastAffirmed})`) : ""),
      h("td", {}, h("span", {class: `tag ${e.sourceKind}`, "data-source-kind": e.sourceKind}, e.sourceKind)),
      h("td", {}, h("span", {class: `tag ${e.grade}`, "data-grade": e.grade}, e.grade)))));
  return h("section", {class: "panel wide", "data-panel": "member-evidence"}, h("h2", {}, "Diagnosis evidence"),
    rows.length ? table([["Category"], ["Resource"], ["Code"], ["Date"], ["Source"], ["Grade"]], rows)
                : h("p", {class: "muted"}, "No diagnosis evidence in the lookback window."));
}

function coveragePanel(f) {
  return h("section", {class: "panel", "data-panel": "member-coverage"}, h("h2", {}, "Active coverage"),
    f.coverages.length
      ? table([["Coverage"], ["Product"], ["Line of business"], ["Dual"]], f.coverages.map(c =>
          h("tr", {}, h("td", {}, c.resource), h("td", {}, productName(c.product)), h("td", {}, c.lineOfBusiness || ""),
            h("td", {}, c.dualLevel || ""))))
      : h("p", {class: "muted"}, "No active coverage."));
}

function reportPanel(result) {
  const section = h("section", {class: "panel", "data-panel": "member-report"}, h("h2", {}, "Product-alignment MeasureReport"));
  if (result.status === "rejected") {
    section.append(h("p", {class: "muted"}, `Individual report not available: ${result.reason.message}`));
    return section;
  }
  const report = result.value;
  const populations = (report.group || []).flatMap(g => g.population || []);
  section.append(table([["Population"], ["Count", "num"]], populations.map(p => h("tr", {},
      h("td", {}, POPULATION_LABELS[codeOf(p.code)] || codeOf(p.code)),
      h("td", {class: "num"}, metric(`report/${codeOf(p.code)}`, p.count ?? 0, p.count ?? 0))))),
    h("p", {class: "muted small"}, `${(report.evaluatedResource || []).length} evaluated resource(s) · ${report.date || ""}`));
  return section;
}

start().catch(showError);
