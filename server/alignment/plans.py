"""The plan catalogue as FHIR `InsurancePlan` resources (SPEC §4.3, issue 17): seeded, admin-writable, used.

Each product of `mappings/products.json` is published as `InsurancePlan/<product code>`, or, for a product
with `plans` (the C-SNPs, each approved for one condition grouping), each plan as `InsurancePlan/<plan id>`
whose identifier and type name the product; its coverage area
as `InsurancePlan.coverageArea` → `Location/area-<state>[-<zip>]` (R4: coverageArea is Reference(Location);
Da Vinci PDex Plan-Net profiles InsurancePlan the same way), and the rule parts a plan may set as
profiled extensions (profiles/StructureDefinition-plan-*.json):

* `plan-condition-category` (valueCanonical → a value set of `mappings/valuesets/`): the C-SNP condition
  grouping the plan is approved for (or any rule's qualifying categories); replaces `requires_any_valueset`;
* `plan-dual-level` (valueCode full | partial | unknown): the dual levels the plan accepts; replaces
  `dual_levels` (a FIDE D-SNP takes full-benefit duals only);
* `dsnp-integration-level` (valueCode fide | hide | coordination-only): published, not a rule by itself.

At start the resources missing from the store are created (never overwritten: an administrator's edits
survive restarts), and the catalogue the engine uses is the file's overlaid with the stored resources.
A client allowed to write InsurancePlan (e.g. `system/InsurancePlan.u`) may then PUT a plan: a change
that alters the rules (area, grouping, dual levels, or a Location of an area) re-evaluates every member
before the response (a plan's area can add members as well as remove them, so every member is
"affected"). A catalogue plan cannot be deleted, and a plan that is not a product of the catalogue cannot
be created (products need rates and benefit rows: add them to `mappings/`). An extension left out of a
PUT falls back to the file's rule; a coverage area left out means the plan is offered everywhere.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import orjson
from sqlalchemy import Connection, select

from server.alignment.areas import AreaPart
from server.alignment.engine import AlignmentEngine
from server.alignment.mappings import INTEGRATION_LEVELS, BenefitPlan, Mappings, RuleUnit
from server.fhir.context import RequestContext
from server.fhir.errors import FhirError
from server.fhir.service import FhirService
from server.fhir.types import Written
from server.store.schema import resources

log = logging.getLogger("planfit.alignment")
SD = "https://planfit.dev/fhir/StructureDefinition/"
CONDITION_EXT = SD + "plan-condition-category"
DUAL_LEVEL_EXT = SD + "plan-dual-level"
INTEGRATION_EXT = SD + "dsnp-integration-level"
PRODUCT_SYSTEM = "https://planfit.dev/fhir/CodeSystem/product"
PLAN_SYSTEM = "https://planfit.dev/fhir/CodeSystem/plan"
DUAL_LEVELS = ("full", "partial", "unknown")
CATALOGUE_TYPES = ("InsurancePlan", "Location")
SOURCE = "urn:planfit:plan-catalogue"
NOWHERE = AreaPart("")  # an area part whose Location is missing: matches no member (fails closed)


def plan_reference(plan_id: str) -> str:
    """The InsurancePlan a finding names (SPEC §4.3: recommendations name the plan): a product's own, or the
    plan of a product with several that the member's criteria name."""
    return f"InsurancePlan/{plan_id}"


def plan_resource(mappings: Mappings, unit: RuleUnit) -> dict[str, Any]:
    """The InsurancePlan publishing one catalogue product, or one plan of a product with several (its
    identifier and type name the product, so `identifier=<product system>|csnp` finds every C-SNP plan)."""
    product, rule = unit.product, unit.eligibility
    extensions = [{"url": CONDITION_EXT, "valueCanonical": mappings.value_sets[vs].url}
                  for vs in rule.requires_any_valueset]
    extensions += [{"url": DUAL_LEVEL_EXT, "valueCode": level} for level in DUAL_LEVELS
                   if rule.dual_levels is not None and level in rule.dual_levels]
    if product.integration_level:
        extensions.append({"url": INTEGRATION_EXT, "valueCode": product.integration_level})
    plan: dict[str, Any] = {
        "resourceType": "InsurancePlan",
        "id": unit.code,
        "status": "active",
        "identifier": [{"system": PRODUCT_SYSTEM, "value": product.code}],
        "type": [{"coding": [{"system": PRODUCT_SYSTEM, "code": product.code, "display": product.display}]}],
        "name": unit.display,
    }
    if unit.plan:
        plan["identifier"].append({"system": PLAN_SYSTEM, "value": unit.code})
    elif product.plan_aliases:
        plan["alias"] = list(product.plan_aliases)
    if extensions:
        plan["extension"] = extensions
    if unit.coverage_area:
        plan["coverageArea"] = [{"reference": f"Location/{part.location}"} for part in unit.coverage_area]
    return plan


def location_resource(part: AreaPart) -> dict[str, Any]:
    address: dict[str, Any] = {"state": part.state, "country": "US"}
    if part.postal_code:
        address["postalCode"] = part.postal_code
    name = f"ZIP {part.postal_code}, {part.state}" if part.postal_code else f"State of {part.state}"
    return {"resourceType": "Location", "id": part.location, "status": "active", "name": name,
            "mode": "kind", "address": address}


def catalogue_resources(mappings: Mappings) -> list[dict[str, Any]]:
    """Locations first (the plans refer to them), then one InsurancePlan per product or plan."""
    parts = {part.location: part for u in mappings.units for part in u.coverage_area}
    return [*(location_resource(part) for part in parts.values()), *(plan_resource(mappings, u) for u in mappings.units)]


def seed_catalogue(service: FhirService, mappings: Mappings) -> int:
    """Create the catalogue resources the store does not hold (nor ever held): returns how many."""
    ctx = RequestContext.server(SOURCE)
    created = 0
    for resource in catalogue_resources(mappings):
        if service.store.read(resource["resourceType"], resource["id"]) is None:
            service.update(resource["resourceType"], resource["id"], resource, ctx, "", None, "return=minimal")
            created += 1
    return created


def stored_catalogue(conn: Connection) -> tuple[dict[str, dict], dict[str, dict]]:
    """(InsurancePlans, Locations) by id, as stored now (deleted ones left out)."""
    rows = conn.execute(select(resources.c.rtype, resources.c.rid, resources.c.content)
                        .where(resources.c.rtype.in_(CATALOGUE_TYPES), resources.c.deleted.is_(False))).all()
    found: dict[str, dict[str, dict]] = {rtype: {} for rtype in CATALOGUE_TYPES}
    for rtype, rid, content in rows:
        found[rtype][rid] = orjson.loads(content)
    return found["InsurancePlan"], found["Location"]


def apply_catalogue(mappings: Mappings, plans: dict[str, dict], locations: dict[str, dict]) -> Mappings:
    """The file's catalogue with each product's (or plan's) rule parts replaced by those of its stored
    InsurancePlan."""
    by_url = {vs.url: vs.id for vs in mappings.value_sets.values()}
    products = []
    for product in mappings.products:
        if product.plans:
            products.append(product.model_copy(update={"plans": tuple(
                _stored_plan(p, plans.get(p.id), by_url, locations) for p in product.plans)}))
            continue
        plan = plans.get(product.code)
        if plan is None:
            products.append(product)
            continue
        rule = product.eligibility
        levels = frozenset(_values(plan, DUAL_LEVEL_EXT, "valueCode"))
        integration = _values(plan, INTEGRATION_EXT, "valueCode")
        rule = rule.model_copy(update={"requires_any_valueset": _categories(plan, by_url) or rule.requires_any_valueset,
                                       "dual_levels": levels or rule.dual_levels})
        products.append(product.model_copy(update={"eligibility": rule, "coverage_area": _area(plan, locations),
                                                   "integration_level": integration[0] if integration else None}))
    return dataclasses.replace(mappings, products=tuple(products))


def _stored_plan(plan: BenefitPlan, stored: dict | None, by_url: dict[str, str],
                 locations: dict[str, dict]) -> BenefitPlan:
    if stored is None:
        return plan
    return plan.model_copy(update={"condition_grouping": _categories(stored, by_url) or plan.condition_grouping,
                                   "coverage_area": _area(stored, locations)})


def _categories(plan: dict, by_url: dict[str, str]) -> tuple[str, ...]:
    return tuple(by_url[url] for url in _values(plan, CONDITION_EXT, "valueCanonical") if url in by_url)


def _area(plan: dict, locations: dict[str, dict]) -> tuple[AreaPart, ...]:
    return tuple(_area_part(ref.get("reference", ""), locations) for ref in plan.get("coverageArea", []))


def _values(plan: dict, url: str, key: str) -> list[str]:
    return [e[key] for e in plan.get("extension", []) if e.get("url") == url and isinstance(e.get(key), str)]


def _area_part(reference: str, locations: dict[str, dict]) -> AreaPart:
    rtype, _, rid = reference.partition("/")
    address = locations.get(rid, {}).get("address", {}) if rtype == "Location" else {}
    state = str(address.get("state", "")).strip().upper()
    if not state:
        return NOWHERE
    postal = str(address.get("postalCode", "")).strip()[:5] or None
    return AreaPart(state, postal, rid)


def catalogue_guard(mappings: Mappings):
    """A PRE_WRITE hook: catalogue plans cannot be deleted, other plans not created, and
    a plan's rule parts must be ones the engine can apply (422 naming the element)."""
    units = {u.code: u for u in mappings.units}
    urls = {vs.url for vs in mappings.value_sets.values()}

    def guard(rtype: str, rid: str, method: str, resource: dict | None) -> None:
        if rtype != "InsurancePlan":
            return
        unit = units.get(rid)
        if unit is None:
            raise FhirError.of(422, "business-rule", f"InsurancePlan/{rid} is not a plan of the catalogue "
                                                     f"({', '.join(units)}): add plans in mappings/products.json")
        if resource is None:
            raise FhirError.of(405, "not-supported", f"InsurancePlan/{rid} is in the plan catalogue: it cannot be "
                                                     "deleted")
        _check_plan(unit, resource, urls)

    return guard


def _check_plan(product: RuleUnit, plan: dict, urls: set[str]) -> None:
    rule = product.eligibility
    for i, ext in enumerate(plan.get("extension", [])):
        url, where = ext.get("url"), f"InsurancePlan.extension[{i}]"
        if url == CONDITION_EXT:
            if not rule.requires_any_valueset:
                _refuse(where, f"{product.code} has no diagnosis criterion to set categories for")
            if ext.get("valueCanonical") not in urls:
                _refuse(where, f"valueCanonical must be the url of a PlanFit value set, got {ext.get('valueCanonical')!r}")
        elif url == DUAL_LEVEL_EXT:
            if rule.dual_levels is None:
                _refuse(where, f"{product.code} is not a dual plan: it takes no dual levels")
            if ext.get("valueCode") not in DUAL_LEVELS:
                _refuse(where, f"valueCode must be one of {', '.join(DUAL_LEVELS)}")
        elif url == INTEGRATION_EXT:
            if product.line_of_business != "dual" or product.plan:
                _refuse(where, f"{product.code} is not a D-SNP: it has no integration level")
            if ext.get("valueCode") not in INTEGRATION_LEVELS:
                _refuse(where, f"valueCode must be one of {', '.join(INTEGRATION_LEVELS)}")
    for i, area in enumerate(plan.get("coverageArea", [])):
        if not str(area.get("reference", "")).startswith("Location/"):
            _refuse(f"InsurancePlan.coverageArea[{i}]", "must reference a Location (Location/<id>)")


def _refuse(where: str, message: str) -> None:
    raise FhirError.of(422, "business-rule", message, where)


class PlanCatalogue:
    """The stored catalogue in use: seeded and taken into use at start-up (before the engine's `prepare`),
    guarded (a PRE_WRITE hook), and re-applied after each committed change to it (a POST_COMMIT hook),
    which re-evaluates every member."""

    def __init__(self, service: FhirService, engine: AlignmentEngine):
        self.service, self.engine, self.base = service, engine, engine.mappings
        self.guard = catalogue_guard(self.base)

    def start(self) -> None:
        created = seed_catalogue(self.service, self.base)
        if created:
            log.info("plan catalogue seeded: %d resources", created)
        self.engine.use_mappings(self._current())

    def on_commit(self, written: list[Written], _ctx: Any) -> None:
        if any(w.rtype in CATALOGUE_TYPES for w in written) and self.engine.use_mappings(self._current()):
            log.info("plan catalogue changed: re-evaluating every member")
            self.engine.evaluate_all()
            self.engine.record_rules_version()

    def _current(self) -> Mappings:
        with self.engine.db.connect() as conn:
            return apply_catalogue(self.base, *stored_catalogue(conn))
