// FHIR resources → the plain objects the views draw. Pure functions, no DOM, no fetch.

const SD = "https://planfit.dev/fhir/StructureDefinition/";

// Display names of products as the server publishes them (CodeSystem/product, from its mappings):
// learnt from that CodeSystem when the token may read it, and from the product codings of reports.
const productNames = new Map();
export const productName = code => productNames.get(code) || code || "none";
// For charts: the acronym a display ends with ("… (D-SNP)"), else the display without its remark.
export function productShort(code) {
  const name = productName(code);
  return name.match(/\(([A-Z][A-Z-]+)\)$/)?.[1] || name.replace(/ \([^)]*\)$/, "");
}

export function learnProductNames(codeSystem) {
  for (const concept of codeSystem.concept || []) productNames.set(concept.code, concept.display || concept.code);
}

function learnCoding(coding) {
  if (coding?.display && coding.system?.endsWith("/CodeSystem/product")) productNames.set(coding.code, coding.display);
}

export const codeOf = concept => concept?.coding?.find(c => c.code)?.code || concept?.text || "";
const labelOf = concept => concept?.text || concept?.coding?.find(c => c.display)?.display || codeOf(concept);

// An individual report's enrolled/recommended product extensions carry the products' displays.
export function learnReportNames(report) {
  for (const e of report.extension || []) learnCoding(e.valueCoding);
  return report;
}

function extension(element, name) {
  return (element?.extension || []).find(e => e.url === SD + name || e.url?.endsWith("/" + name));
}

function impactOf(element) {
  const money = extension(element, "estimated-annual-impact")?.valueMoney;
  return money ? {value: Number(money.value), currency: money.currency || "USD"} : null;
}

const populationCounts = item => Object.fromEntries((item.population || []).map(p => [codeOf(p.code), p.count ?? 0]));

// A stratum's key: its value's code, or `a=x;b=y` of its components (component stratifiers).
function stratumOf(stratum) {
  const components = Object.fromEntries((stratum.component || []).map(c => [codeOf(c.code), codeOf(c.value)]));
  const key = stratum.value ? codeOf(stratum.value) : Object.entries(components).map(([k, v]) => `${k}=${v}`).join(";");
  return {key, label: stratum.value ? labelOf(stratum.value) : key, components,
          populations: populationCounts(stratum)};
}

export function summaryReport(report) {
  for (const stratum of (report.group || []).flatMap(g => g.stratifier || []).flatMap(s => s.stratum || [])) {
    for (const coding of stratum.value?.coding || []) learnCoding(coding);
  }
  return {
    impact: impactOf(report),
    groups: (report.group || []).map(group => ({
      populations: populationCounts(group),
      stratifiers: (group.stratifier || []).map(s => ({
        key: (s.code || []).map(codeOf).join(","), label: (s.code || []).map(labelOf).join(", "),
        strata: (s.stratum || []).map(stratumOf),
      })),
    })),
  };
}

// The first stratifier whose code or label contains every word (e.g. ["enrolled"]).
export function findStratifier(report, words, {components = false} = {}) {
  for (const group of report.groups) {
    for (const s of group.stratifiers) {
      const text = `${s.key} ${s.label}`.toLowerCase();
      const hasComponents = s.strata.some(st => Object.keys(st.components).length > 1);
      if (words.every(w => text.includes(w)) && hasComponents === components) return s;
    }
  }
  return null;
}

// Flows enrolled → recommended from a component stratifier (numerator = misaligned members).
export function flowsOf(stratifier) {
  if (!stratifier) return [];
  const pick = (components, word) => Object.entries(components).find(([k]) => k.includes(word))?.[1];
  return stratifier.strata
    .map(st => ({from: pick(st.components, "enrolled"), to: pick(st.components, "recommended"),
                 count: st.populations.numerator ?? 0}))
    .filter(f => f.from && f.to && f.count > 0)
    .sort((a, b) => b.count - a.count);
}

// Group/_history Bundle → one point per version, oldest first.
export function cohortHistory(bundle) {
  return (bundle.entry || [])
    .map(e => e.resource)
    .filter(r => r && r.resourceType === "Group")
    .map(r => ({version: Number(r.meta?.versionId), when: r.meta?.lastUpdated || "", size: r.quantity ?? 0,
                name: r.name || r.id}))
    .sort((a, b) => a.version - b.version);
}

// Patient/$alignment Parameters → a member's finding.
const value = p => p && Object.entries(p).find(([k]) => k.startsWith("value"))?.[1];
const parts = (p, name) => (p.part || []).filter(q => q.name === name);
const part = (p, name) => value(parts(p, name)[0]);

export function alignmentFinding(parameters) {
  const params = parameters.parameter || [];
  const one = name => value(params.find(p => p.name === name));
  const all = name => params.filter(p => p.name === name);
  return {
    status: one("status"), kind: one("kind") || null, enrolled: one("enrolledProduct") || null, recommended: one("recommendedProduct") || null,
    evaluationDate: one("evaluationDate"), lookbackStart: one("lookbackStart"), age: one("age") ?? null,
    dualLevel: one("dualLevel") || null, impact: one("estimatedAnnualImpact") || null,
    // The plans named (the enrolled one may be unknown: reason enrolled-plan-unknown) and the rate cells priced.
    enrolledPlan: one("enrolledPlan")?.reference || null, recommendedPlan: one("recommendedPlan")?.reference || null,
    rateCells: all("rateCell").map(p => ({
      role: part(p, "role"), product: part(p, "product"), region: part(p, "region") || null,
      segment: part(p, "segment") || part(p, "aidCategory") || null, ageBand: part(p, "ageBand") || null,
      pmpm: part(p, "pmpm") || null,
    })),
    reasons: all("reason").map(value),
    nonClaims: all("nonClaimsCategory").map(value),
    eligible: all("eligibleProduct").map(p => ({
      product: part(p, "product"), priority: part(p, "priority"),
      criteria: parts(p, "criterion").map(c => ({name: part(c, "name"), value: part(c, "value"),
                                                  evidence: parts(c, "evidence").map(e => value(e).reference)})),
    })),
    categories: all("category").map(p => ({
      code: part(p, "code"), clinical: part(p, "clinical"), claims: part(p, "claims"), nonClaims: part(p, "nonClaims"),
      evidence: parts(p, "evidence").map(e => ({resource: part(e, "resource").reference, system: part(e, "system"),
                                                code: part(e, "code"), date: part(e, "date"),
                                                sourceKind: part(e, "sourceKind"), grade: part(e, "grade"),
                                                lastAffirmed: part(e, "lastAffirmed") || null})),
    })),
    // HARP referral risk factors from claims (SPEC §4.3): figure (days or months), threshold, met, the claims.
    riskFactors: all("riskFactor").map(p => ({
      code: part(p, "code"), display: part(p, "display"), threshold: part(p, "threshold"), met: part(p, "met"),
      measure: ["days", "months"].find(m => parts(p, m).length) || "", value: part(p, "days") ?? part(p, "months"),
      evidence: parts(p, "evidence").map(e => value(e).reference),
    })),
    coverages: all("coverage").map(p => ({resource: part(p, "resource").reference, product: part(p, "product"),
                                          lineOfBusiness: part(p, "lineOfBusiness"), dualLevel: part(p, "dualLevel")})),
  };
}

export function patientName(patient) {
  const name = patient.name?.[0];
  if (!name) return `Patient/${patient.id}`;
  return name.text || [...(name.given || []), name.family].filter(Boolean).join(" ");
}

// An individual nonclaims-bh-dx MeasureReport → its open coding gaps (Da Vinci Risk Adjustment
// shape: one group per non-claims category after the populations group; the clinical Conditions
// supporting a gap are evaluatedResource entries whose ra-groupReference names that group).
export function codingGaps(report) {
  const supporting = group => (report.evaluatedResource || [])
    .filter(r => (r.extension || []).some(e => e.url.endsWith("/ra-groupReference") && e.valueString === group.id))
    .map(r => r.reference);
  return (report.group || []).filter(g => extension(g, "ra-evidenceStatus")).map(g => ({
    category: g.id, label: labelOf(g.code),
    status: codeOf(extension(g, "ra-evidenceStatus").valueCodeableConcept),
    since: extension(g, "ra-evidenceStatusDate")?.valueDate || "",
    codes: (g.extension || []).filter(e => e.url.endsWith("/ra-dxCode")).map(e => codeOf(e.valueCodeableConcept)),
    evidence: supporting(g),
  }));
}

// Patient/$worklist Parameters → {total, next, rows}.
export function worklistPage(parameters) {
  const params = parameters.parameter || [];
  const values = (p, name) => parts(p, name).map(value);
  return {
    total: value(params.find(p => p.name === "total")) ?? 0,
    next: value(params.find(p => p.name === "next")) || null,
    rows: params.filter(p => p.name === "member").map(p => ({
      id: part(p, "subject").reference.split("/")[1], name: part(p, "subject").display || "",
      status: part(p, "status"), enrolled: part(p, "enrolledProduct") || null,
      recommended: part(p, "recommendedProduct") || null, impact: part(p, "estimatedAnnualImpact") || null,
      reasons: values(p, "reason"), lobs: values(p, "lineOfBusiness"), plans: values(p, "plan"),
      categories: parts(p, "category").map(c => ({code: part(c, "code"), nonClaims: part(c, "nonClaims")})),
      sources: values(p, "source"),
    })),
  };
}

// A stored quarterly audit report → its quarter, previous report and reconciliation
// [{change, count, impact, members: [patient ids]}] (members from the contained Lists).
export function auditReconciliation(report) {
  const lists = Object.fromEntries((report.contained || []).filter(r => r.resourceType === "List")
    .map(l => [l.id, (l.entry || []).map(e => e.item.reference.split("/")[1])]));
  const sub = (e, url) => (e.extension || []).find(x => x.url === url);
  return {
    quarter: extension(report, "audit-quarter")?.valueString || "",
    previous: extension(report, "audit-previous-report")?.valueReference?.reference || null,
    changes: (report.extension || []).filter(e => e.url.endsWith("/audit-reconciliation")).map(e => ({
      change: sub(e, "change").valueCode, count: sub(e, "count").valueInteger,
      impact: sub(e, "impact")?.valueMoney || null,
      members: lists[sub(e, "members").valueReference.reference.slice(1)] || [],
    })),
  };
}
