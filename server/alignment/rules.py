"""The eligibility rules of SPEC §4.2 and §4.3, as SQL generated from `mappings/products.json`.

One implementation for every product: each rule of the vocabulary (mappings/README.md) becomes a
criterion (`criteria.py`) over a member-facts row (`member_facts.py`: programs, age bounds, dual level,
member flags, State status codes, value sets, areas, rate regions), which aggregates the stages `facts.py`
wrote (`finding_coverage`, `finding_categories`) plus the birth date and the Patient's own flags. From it
the findings row is derived:

* eligible = every criterion of the product met (for a product with plans, of one of its plans: the first
  that takes the member is named); the enrolled product is the highest-priority product
  named by a current coverage; the recommended product is, when the enrolled product's rule holds, the
  highest-priority *specialized* eligible product above it (else the enrolled one), otherwise the
  highest-priority eligible product — so Original Medicare is never steered to plain MA;
* status: `not-evaluable` without a current coverage that gives a line of business; `review` when the
  data conflicts or is unknown (conflicting coverages, dual level unknown or contradictory, a dual
  status code on a member who is not dual, eligibility hanging on an unknown birth date, no eligible
  product, a dual product's Medicaid not evidenced inside the deeming period); else `aligned` when
  enrolled = recommended, else `misaligned`;
* kind: `compliance` (the enrolled product's rule fails) or `opportunity` (a specialized product is
  recommended over an eligible enrolled one);
* reason codes saying why (REASONS), and the annual impact from the member's rate cells (`rate_cells.py`).

Ages are compared as birth-date bounds (`EvaluationWindow.born_by_us`), three-valued: a criterion is
met when the whole birth-date range satisfies it, unknown when the range (a year-only birthDate, or
none) straddles the threshold.
"""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    ColumnElement,
    Date,
    MetaData,
    Select,
    Subquery,
    Table,
    and_,
    bindparam,
    case,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
    union_all,
)

from server.alignment.criteria import (
    blocked_by_age,
    criteria,
    criteria_text,
    eligible,
    is_dual,
    member_dual_level,
    state_confirmed,
)
from server.alignment.facts import Members, product_for_priority
from server.alignment.index_keys import IndexKeys
from server.alignment.mappings import PROGRAMS, Mappings, Product
from server.alignment.member_facts import as_int, flag_column, member_facts, valueset_columns
from server.alignment.plan_choice import enrolled_plan, enrolled_plan_unknown, recommended_plan
from server.alignment.rate_cells import member_rate_columns, rate_cell
from server.alignment.risk_factors import load_risk_factors, met
from server.alignment.window import EvaluationWindow
from server.store.hashing import h64

# Reason codes, in the order they are listed on a finding.
REASONS = (
    "no-active-coverage",  # no active Coverage at all
    "coverage-not-recognized",  # active coverage, but none names a product or a line of business
    "conflicting-coverage",  # two active coverages name different products of one program
    "dual-level-unknown",  # Medicare + Medicaid coverage without a dual status code that has a level
    "medicaid-not-evidenced",  # enrolled in a dual product, no Medicaid coverage or dual status code
    "deeming-period-ended",  # ... and the latest Medicaid evidence ended before the deeming period
    "dual-level-conflict",  # full and partial dual status codes at once
    "dual-code-not-dual",  # a dual status code with a level, but not both Medicare and Medicaid
    "age-unknown",  # a product's eligibility depends on a birth date that is missing or imprecise
    "no-eligible-product",  # covered, but no product's rule holds
    "no-enrolled-product",  # covered (e.g. Medicaid fee-for-service) without a named product
    "enrolled-not-eligible",  # the enrolled product's rule does not hold
    "higher-priority-eligible",  # the enrolled product's rule holds, a higher-priority product's too
    "enrolled-plan-unknown",  # the Coverage names a product with several plans, and no one plan (`plan_choice.py`)
    "state-identified",  # recommended a product the State's own status code confirms (NY HARP H8/H9)
    "state-determination-pending",  # recommended on the diagnosis alone: a referral candidate
    "state-excluded",  # a State code excludes the member from a product (NY HARP H7 opted out)
    "flag-excluded",  # a documented member flag excludes the member from a product (OPWDD)
    # A referral candidate's claims show a HARP risk factor (`harp_risk_factors.json`: RiskFactor.reason).
    "risk-factor-psychiatric-inpatient-days",
    "risk-factor-act-tcm-months",
)


# SPEC §4.3; bump when a change to the rules below changes findings, or when a new finding table must be filled
# for every member (v2.2: `finding_plans`, migration 0622;
# v2.3: the enrolled and recommended plans, migration 0717)
RULES = "v2.3"


def rules_version(mappings: Mappings, codes_key: int) -> str:
    """What the stored findings depend on: these rules, the value-set codes and the catalogue, the
    rates and the dual-status settings; a server whose version differs re-evaluates every member. Sets are
    written sorted, so every process computes the same text."""
    catalogue = json.dumps([[p.model_dump() for p in mappings.products], sorted(mappings.rates.pmpm.items()),
                            [r.model_dump() for r in mappings.rates.regions], [c.model_dump() for c in mappings.rates.cells],
                            [b.model_dump() for b in mappings.rates.age_bands],
                            mappings.dual_history_months, mappings.deeming_months,
                            sorted((c.code, c.level) for c in mappings.dual_status_codes.values()),
                            mappings.non_claims_valuesets, load_risk_factors(mappings.directory).model_dump()],
                           sort_keys=True, default=_canonical)
    return f"{RULES}:{h64(str(codes_key), catalogue) & 0xFFFFFFFFFFFF:x}"


def _canonical(value: Any) -> Any:
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    return str(value)  # Decimal rates


# -- the derived layers -----------------------------------------------------------------------------


def decisions(mappings: Mappings, keys: IndexKeys, window: EvaluationWindow, members: Members) -> Subquery:
    """The facts row plus, per product i (priority order), `eligible_i` (any of its plans), `age_blocked_i`
    and `confirmed_i` (0/1), per plan j of a product with plans `eligible_i_j`, the member's dual flag,
    dual level and conflict flag, and the enrolled plan (`plan_choice.py`)."""
    f = member_facts(mappings, keys, window, members)
    columns = valueset_columns(mappings)
    per_product = []
    for i, product in enumerate(mappings.products):
        units = [criteria(unit, f, window, columns) for unit in product.units]
        if product.plans:
            per_product += [as_int(eligible(items)).label(f"eligible_{i}_{j}") for j, items in enumerate(units)]
        per_product.append(as_int(or_(*(eligible(items) for items in units))).label(f"eligible_{i}"))
        per_product.append(as_int(or_(*(blocked_by_age(items) for items in units))).label(f"age_blocked_{i}"))
        per_product.append(as_int(state_confirmed(product, f)).label(f"confirmed_{i}"))
    conflict = or_(*(f.c[f"products_{p}"] > 1 for p in PROGRAMS))
    return select(
        f,
        *per_product,
        as_int(is_dual(f)).label("dual"),
        member_dual_level(f).label("dual_level"),
        as_int(conflict).label("conflict"),
        enrolled_plan(mappings, f).label("enrolled_plan"),
    ).subquery("decisions")


def _best_eligible(mappings: Mappings, d: Any) -> ColumnElement[Any]:
    return case(*((d.c[f"eligible_{i}"] == 1, p.priority) for i, p in enumerate(mappings.products)), else_=None)


def _recommended_priority(mappings: Mappings, d: Any) -> ColumnElement[Any]:
    """A member whose enrolled product's rule holds is recommended a *specialized* product of higher
    priority (an opportunity), else stays; any other member the highest-priority eligible product. So
    Original Medicare is never steered to plain Medicare Advantage (SPEC §4.3: the member's choice)."""
    upgrade = case(*((and_(d.c[f"eligible_{i}"] == 1, literal(p.priority) > d.c.enrolled_priority), p.priority)
                     for i, p in enumerate(mappings.products) if p.specialized), else_=d.c.enrolled_priority)
    return case((_enrolled_eligible(mappings, d), upgrade), else_=_best_eligible(mappings, d))


def _enrolled_eligible(mappings: Mappings, d: Any) -> ColumnElement[bool]:
    return or_(*(and_(d.c.enrolled_priority == p.priority, d.c[f"eligible_{i}"] == 1)
                 for i, p in enumerate(mappings.products)))


def _reason_conditions(mappings: Mappings, d: Any) -> dict[str, ColumnElement[bool]]:
    """Each reason's condition over a decisions row that carries its `RECOMMENDED` priority."""
    recommended = d.c[RECOMMENDED]
    covered, recognized = d.c.coverages > 0, d.c.recognized > 0
    dual = d.c.dual == 1
    full, partial = d.c.full_codes > 0, d.c.partial_codes > 0
    enrolled_eligible = _enrolled_eligible(mappings, d)
    age_blocked = or_(*(d.c[f"age_blocked_{i}"] == 1 for i in range(len(mappings.products))))
    not_evidenced = and_(d.c.dual_lob == 1, d.c.medicaid_evidenced == 0)
    opportunity = and_(enrolled_eligible, recommended > d.c.enrolled_priority)
    moved = and_(recommended.is_not(None), or_(d.c.enrolled_priority.is_(None), recommended != d.c.enrolled_priority))
    confirmed = or_(false(), *(and_(recommended == p.priority, d.c[f"confirmed_{i}"] == 1)
                      for i, p in enumerate(mappings.products) if p.eligibility.state_determination))
    by_state = or_(false(), *(recommended == p.priority for p in mappings.products if p.eligibility.state_determination))
    state_excluded = or_(false(), *(d.c[flag_column(code)] == 1 for p in mappings.products
                                    if p.eligibility.state_determination for code in p.eligibility.state_determination.excludes))
    flagged = or_(false(), *(d.c[f"flag_{flag}"] == 1 for p in mappings.products for flag in p.eligibility.excludes_flags))
    conditions = {
        "no-active-coverage": not_(covered),
        "coverage-not-recognized": and_(covered, not_(recognized)),
        "conflicting-coverage": and_(recognized, d.c.conflict == 1),
        "dual-level-unknown": and_(dual, not_(full), not_(partial), d.c.medicaid_evidenced == 1),
        "medicaid-not-evidenced": not_evidenced,
        "deeming-period-ended": and_(not_evidenced, d.c.medicaid_lapsed == 1),
        "dual-level-conflict": and_(dual, full, partial),
        "dual-code-not-dual": and_(recognized, not_(dual), or_(full, partial)),
        "age-unknown": and_(recognized, age_blocked),
        "no-eligible-product": and_(recognized, recommended.is_(None)),
        "no-enrolled-product": and_(recognized, d.c.enrolled_priority.is_(None)),
        "enrolled-not-eligible": and_(d.c.enrolled_priority.is_not(None), not_(enrolled_eligible)),
        "higher-priority-eligible": opportunity,
        "enrolled-plan-unknown": enrolled_plan_unknown(mappings, d),
        "state-identified": and_(moved, confirmed),
        "state-determination-pending": and_(moved, by_state, not_(confirmed)),
        "state-excluded": state_excluded,
        "flag-excluded": flagged,
    }
    pending = and_(conditions["state-determination-pending"], recommended.is_not(None))
    conditions.update(_risk_factor_conditions(mappings, d, pending))
    assert tuple(conditions) == REASONS
    return conditions


def _risk_factor_conditions(mappings: Mappings, d: Any, pending: ColumnElement[bool]) -> dict[str, ColumnElement[bool]]:
    """A referral candidate (recommended the factors' product, the State's determination pending) whose
    claims reach a risk factor's threshold. Never a criterion: the State decides (SPEC §4.3)."""
    rf = load_risk_factors(mappings.directory)
    product = {p.code: p for p in mappings.products}.get(rf.product)
    by_reason = {f.reason: f for f in rf.factors}
    out = {}
    for code in REASONS[REASONS.index("flag-excluded") + 1:]:
        factor = by_reason.get(code)
        out[code] = (and_(pending, d.c[RECOMMENDED] == product.priority, met(rf, factor, d))
                     if factor is not None and product is not None else false())
    return out


_REVIEW_REASONS = ("conflicting-coverage", "dual-level-unknown", "dual-level-conflict", "dual-code-not-dual",
                   "age-unknown", "no-eligible-product")
KINDS = ("compliance", "opportunity")

FINDING_COLUMNS = ("patient_id", "status", "kind", "enrolled_product", "recommended_product", "dual_level", "reasons",
                   "annual_impact_cents", "currency", "birth_lo", "as_of", "lookback_start", "evaluated_at",
                   "recommended_rate_cell", "enrolled_rate_cell", "enrolled_plan", "recommended_plan")


EVALUATED_AT = "evaluated_at"


DECISIONS = "alignment_decisions"  # a temporary table, private to the evaluation's connection


def decisions_table(mappings: Mappings, keys: IndexKeys, window: EvaluationWindow, members: Members) -> tuple[Table, Select]:
    """A temporary table for the decisions rows and the SELECT that fills it: the findings and the eligible
    products are both derived from it, so the member facts are aggregated once per evaluation."""
    d = decisions(mappings, keys, window, members)
    table = Table(DECISIONS, MetaData(), *(Column(c.name, c.type) for c in d.c), prefixes=["TEMPORARY"])
    return table, select(d)


RECOMMENDED, RECOMMENDED_PLAN = "recommended_priority", "recommended_plan_code"  # computed once per row


def _reason_column(code: str) -> str:
    return "reason_" + code.replace("-", "_")


def findings_select(mappings: Mappings, window: EvaluationWindow, d: Table) -> Select:
    """Rows of `findings` (FINDING_COLUMNS) from the decisions table; the time is bound at execution as
    `EVALUATED_AT`.

    In three layers, each computing its values once per row: the recommended product (and the member's
    rate region and segment), then the reasons and the recommended plan, which read it, then the findings
    row. Inlined, every reason, the status, the kind and each rate cell would evaluate the recommendation
    again (a 226 kB statement of 332 CASE expressions per row). `OFFSET 0` keeps each layer a subquery of
    its own: PostgreSQL and SQLite pull a plain one up into the outer query, expressions and all."""
    recommendation = (select(d, _recommended_priority(mappings, d).label(RECOMMENDED), *member_rate_columns(mappings, d))
                      .offset(0).subquery("recommendation"))
    conditions = _reason_conditions(mappings, recommendation)
    reasoned = (select(recommendation,
                       recommended_plan(mappings, recommendation, recommendation.c[RECOMMENDED]).label(RECOMMENDED_PLAN),
                       *(as_int(condition).label(_reason_column(code)) for code, condition in conditions.items()))
                .offset(0).subquery("reasoned"))
    r = reasoned
    recommended = r.c[RECOMMENDED]
    reasons = {code: r.c[_reason_column(code)] == 1 for code in REASONS}
    # A dual-product member without Medicaid evidence is held in review during the deeming period.
    deeming = and_(reasons["medicaid-not-evidenced"], not_(reasons["deeming-period-ended"]))
    status = case(
        (r.c.recognized == 0, "not-evaluable"),
        (or_(deeming, *(reasons[code] for code in _REVIEW_REASONS)), "review"),
        (r.c.enrolled_priority == recommended, "aligned"),
        else_="misaligned",
    )
    kind = case(
        (r.c.recognized == 0, None),
        (or_(reasons["enrolled-not-eligible"], reasons["medicaid-not-evidenced"]), "compliance"),
        (reasons["higher-priority-eligible"], "opportunity"),
        else_=None,
    )
    text = literal("")
    for code, condition in reasons.items():
        text = text + case((condition, f" {code}"), else_="")
    plan = r.c[RECOMMENDED_PLAN]
    recommended_cents, recommended_cell = rate_cell(mappings, r, window.on(r), recommended, plan)
    enrolled_cents, enrolled_cell = rate_cell(mappings, r, window.on(r), r.c.enrolled_priority, r.c.enrolled_plan)
    impact = (recommended_cents - enrolled_cents) * 12
    return select(
        r.c.patient_id,
        status,
        kind,
        product_for_priority(mappings, r.c.enrolled_priority),
        product_for_priority(mappings, recommended),
        r.c.dual_level,
        func.trim(text),
        impact,
        literal(mappings.rates.currency),
        r.c.birth_lo,
        _date(window.on(r).as_of),
        _date(window.on(r).lookback_start),
        bindparam(EVALUATED_AT, type_=BigInteger),
        recommended_cell,
        enrolled_cell,
        r.c.enrolled_plan,
        plan,
    )


def _date(value: Any) -> ColumnElement:
    """A window's date as SQL: a literal, or already SQL (a bind parameter or a `RowWindow` column)."""
    return literal(value, Date) if isinstance(value, date) else value


def products_select(mappings: Mappings, window: EvaluationWindow, d: Table) -> Select:
    """Rows of `finding_products`: (patient_id, product, priority, criteria) per eligible product, from the
    decisions table joined with the catalogue (one row per product) rather than unioned per product."""
    catalogue = union_all(*(
        select(literal(p.code).label("product"), literal(p.priority).label("priority"))
        for p in mappings.products
    )).subquery("catalogue")
    columns = valueset_columns(mappings)
    texts = [_product_text(i, p, d, window, columns) for i, p in enumerate(mappings.products)]
    is_eligible = case(*((catalogue.c.product == p.code, d.c[f"eligible_{i}"])
                         for i, p in enumerate(mappings.products)), else_=0)
    text = case(*((catalogue.c.product == p.code, texts[i]) for i, p in enumerate(mappings.products)), else_="")
    return (
        select(d.c.patient_id, catalogue.c.product, catalogue.c.priority, text)
        .select_from(d.join(catalogue, true()))
        .where(is_eligible == 1)
    )


def _product_text(i: int, product: Product, d: Any, window: EvaluationWindow,
                  columns: dict[str, str]) -> ColumnElement[str]:
    """The criteria an eligible product met: those of its first plan (in catalogue order) that takes the
    member, which the text names."""
    texts = [criteria_text(criteria(unit, d, window, columns)) for unit in product.units]
    if not product.plans:
        return texts[0]
    return case(*((d.c[f"eligible_{i}_{j}"] == 1, text) for j, text in enumerate(texts)), else_="")


PRODUCT_COLUMNS = ("patient_id", "product", "priority", "criteria")
