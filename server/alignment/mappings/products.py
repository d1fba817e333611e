"""`products.json` as pydantic models: the product catalogue with its eligibility rules, the SOPT table and
the CMS dual status codes (vocabulary: mappings/README.md). The models check each field; `ProductsFile`
checks what spans fields (duplicates, references to value sets and to the SOPT table) and names the path."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, Any, Literal, Mapping, get_args

from pydantic import BeforeValidator, Field, ValidationInfo, model_validator

from server.alignment.areas import AreaPart
from server.data_files import FieldProblem, MappingFile, MappingModel, NonEmptyStr, matching, problem

# A product's line of business. `dual` means Medicare and Medicaid together.
LineOfBusiness = Literal["medicaid", "medicare", "dual", "commercial"]
LINES_OF_BUSINESS: tuple[str, ...] = get_args(LineOfBusiness)
# What eligibility rules test: the programs a member has active coverage in. A `dual` coverage counts
# as both `medicare` and `medicaid`.
Program = Literal["medicaid", "medicare", "commercial"]
PROGRAMS: tuple[str, ...] = get_args(Program)
LOB_PROGRAMS: Mapping[str, frozenset[str]] = MappingProxyType({
    "medicaid": frozenset({"medicaid"}),
    "medicare": frozenset({"medicare"}),
    "dual": frozenset({"medicare", "medicaid"}),
    "commercial": frozenset({"commercial"}),
})
DualLevel = Literal["full", "partial", "unknown"]
DUAL_LEVELS: tuple[str, ...] = get_args(DualLevel)
DUAL_CODE_LEVELS = ("full", "partial", "none")
# D-SNP integration levels (42 CFR 422.2 definitions of FIDE SNP and HIDE SNP; a D-SNP that is neither is
# coordination-only; rules-v2-leads.md, read 2026-12-03).
IntegrationLevel = Literal["fide", "hide", "coordination-only"]
INTEGRATION_LEVELS: tuple[str, ...] = get_args(IntegrationLevel)
SoptSystem = Literal["https://nahdo.org/sopt"]
SOPT_SYSTEM: str = get_args(SoptSystem)[0]
# Member flags a rule can exclude on (SPEC §4.3): `opwdd` = OPWDD participation documented on the member.
MemberFlag = Literal["opwdd"]
MEMBER_FLAGS: tuple[str, ...] = get_args(MemberFlag)


def _not_dual(value: Any) -> Any:
    if value == "dual":
        raise problem('rules test programs; write dual as ["medicare", "medicaid"]')
    return value


RuleProgram = Annotated[Program, BeforeValidator(_not_dual)]
StateCode = Annotated[str, matching(r"^[A-Z0-9]{1,8}$", "a status code (upper-case letters and digits)")]
SoptCodeValue = Annotated[str, matching(r"^[0-9]{1,6}$", "a SOPT code (digits only)")]


class StateDetermination(MappingModel):
    """The State's own eligibility determination (NY HARP status codes, SPEC §4.3): a `confirms` code
    meets the diagnosis criterion in its place, an `excludes` code makes the rule fail."""

    confirms: frozenset[StateCode]
    excludes: frozenset[StateCode]


class Eligibility(MappingModel):
    """A product's eligibility rule (vocabulary: mappings/README.md). Every stated condition must hold."""

    min_age: Annotated[int, Field(ge=0)] | None = None
    max_age: Annotated[int, Field(ge=0)] | None = None
    requires_lob: frozenset[RuleProgram] = Field(min_length=1)
    excludes_lob: frozenset[RuleProgram] = frozenset()
    dual_levels: Annotated[frozenset[DualLevel], Field(min_length=1)] | None = None
    requires_any_valueset: Annotated[tuple[NonEmptyStr, ...], Field(min_length=1)] = ()
    excludes_flags: Annotated[frozenset[MemberFlag], Field(min_length=1)] = frozenset()
    state_determination: StateDetermination | None = None


class Aliases(MappingModel):
    plan: tuple[NonEmptyStr, ...]  # Coverage.class (plan) values naming the product, besides its code
    sopt: tuple[SoptCodeValue, ...]  # SOPT codes naming the product


ProductCode = Annotated[str, matching(r"^[a-z0-9][a-z0-9\-]{0,63}$", "a code (lower-case letters, digits, '-')")]


class BenefitPlan(MappingModel):
    """One plan benefit package of a product (SPEC §4.3 "plans, not generic products"): a C-SNP approved for
    one condition grouping, offered in its own area. Its rule is the product's with the grouping in place of
    the product's categories; it is published as `InsurancePlan/<id>`."""

    id: ProductCode
    display: NonEmptyStr
    description: str = ""
    condition_grouping: tuple[NonEmptyStr, ...] = Field(min_length=1)  # value sets the plan is approved for
    coverage_area: tuple[AreaPart, ...] = ()  # empty: everywhere


@dataclass(frozen=True)
class RuleUnit:
    """What the engine decides eligibility for: a product without plans, or one plan of a product. `code` is
    the InsurancePlan id; `plan` is true for a plan of a product that has several."""

    code: str
    display: str
    product: "Product"
    eligibility: Eligibility
    coverage_area: tuple[AreaPart, ...]
    plan: bool

    @property
    def line_of_business(self) -> str:
        return self.product.line_of_business

    @property
    def integration_level(self) -> str | None:
        return self.product.integration_level


class Product(MappingModel):
    code: ProductCode
    display: NonEmptyStr
    description: str = ""
    line_of_business: LineOfBusiness
    eligibility: Eligibility
    aliases: Aliases
    priority: int
    specialized: bool = False  # a higher-acuity product of its program family (SPEC §4.3 `opportunity`)
    coverage_area: tuple[AreaPart, ...] = ()  # where the plan is offered; empty: everywhere (areas.py)
    integration_level: IntegrationLevel | None = None  # D-SNP integration level, as published
    # Plan benefit packages, in order of preference when a member fits several; none: the product is its plan.
    plans: tuple[BenefitPlan, ...] = ()

    @property
    def units(self) -> tuple[RuleUnit, ...]:
        """The product's plans as rule units (a product without plans: itself)."""
        if not self.plans:
            return (RuleUnit(self.code, self.display, self, self.eligibility, self.coverage_area, False),)
        return tuple(RuleUnit(p.id, p.display, self,
                              self.eligibility.model_copy(update={"requires_any_valueset": p.condition_grouping}),
                              p.coverage_area, True) for p in self.plans)

    @property
    def programs(self) -> frozenset[str]:
        return LOB_PROGRAMS[self.line_of_business]

    @property
    def plan_aliases(self) -> tuple[str, ...]:
        """Coverage.class (plan) values naming the product: its aliases and its plans' ids."""
        return (*self.aliases.plan, *(p.id for p in self.plans))

    @property
    def sopt_aliases(self) -> tuple[str, ...]:
        return self.aliases.sopt


class SoptCode(MappingModel):
    code: SoptCodeValue
    display: NonEmptyStr
    line_of_business: LineOfBusiness


class SoptTable(MappingModel):
    system: SoptSystem
    codes: tuple[SoptCode, ...] = Field(min_length=1)
    note: str = ""
    source: str = ""


class DualStatusCode(MappingModel):
    code: NonEmptyStr
    display: NonEmptyStr
    level: Literal["full", "partial", "none"]


class DualStatusTable(MappingModel):
    extension_url: NonEmptyStr
    codes: tuple[DualStatusCode, ...] = Field(min_length=1)
    history_months: Annotated[int, Field(ge=1)]  # how far back month-by-month dual codes are read
    deeming_months: Annotated[int, Field(ge=0)]  # D-SNP deeming period after Medicaid evidence ends
    value_type: Literal["valueCode"] = "valueCode"
    note: str = ""
    source: str = ""


class ProductsFile(MappingFile):
    """`products.json`. Validate with context `{"value_sets": <ids>}`: rules may only name those."""

    description: str = ""
    note: str = ""
    non_claims_valuesets: tuple[NonEmptyStr, ...]
    products: tuple[Product, ...] = Field(min_length=1)
    sopt: SoptTable
    dual_status: DualStatusTable

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> "ProductsFile":
        value_sets = info.context["value_sets"]
        for j, v in enumerate(self.non_claims_valuesets):
            _known_value_set(value_sets, v, f"non_claims_valuesets[{j}]")
        sopt = _by_code(self.sopt.codes, "sopt.codes")
        _by_code(self.dual_status.codes, "dual_status.codes")
        codes: dict[str, str] = {}
        priorities: dict[int, str] = {}
        plans: dict[str, str] = {}
        sopt_owner: dict[str, str] = {}
        for i, p in enumerate(self.products):
            where = f"products[{i}]"
            if p.code in codes:
                raise FieldProblem(f"{where}.code", f"duplicate product code {p.code!r} (also {codes[p.code]})")
            codes[p.code] = where
            if p.priority in priorities:
                raise FieldProblem(f"{where}.priority", f"duplicate priority {p.priority} (also "
                                   f"{priorities[p.priority]}); the recommended product must be unambiguous")
            priorities[p.priority] = where
            _check_rule(p.eligibility, f"{where}.eligibility", value_sets)
            _check_plans(p, where, codes)
            for j, alias in enumerate((p.code, *p.aliases.plan)):
                key = alias.strip().casefold()
                if plans.get(key, where) != where:
                    raise FieldProblem(f"{where}.code" if j == 0 else f"{where}.aliases.plan[{j - 1}]",
                                       f"duplicate plan alias {alias!r} (also used by {plans[key]})")
                plans[key] = where
            for j, s in enumerate(p.aliases.sopt):
                path = f"{where}.aliases.sopt[{j}]"
                if s not in sopt:
                    raise FieldProblem(path, f"SOPT code {s!r} is not in the sopt.codes table")
                if sopt[s].line_of_business != p.line_of_business:
                    raise FieldProblem(path, f"SOPT code {s} is {sopt[s].line_of_business}, "
                                       f"but the product's line_of_business is {p.line_of_business}")
                if s in sopt_owner:
                    raise FieldProblem(path, f"duplicate SOPT alias {s} (also used by {sopt_owner[s]})")
                sopt_owner[s] = where
        return self


def _check_plans(product: Product, where: str, codes: dict[str, str]) -> None:
    """A plan's grouping is drawn from its product's categories; plan ids are unique among codes and plans."""
    if product.plans and not product.eligibility.requires_any_valueset:
        raise FieldProblem(f"{where}.plans", "plans need a product rule with requires_any_valueset to group")
    allowed = set(product.eligibility.requires_any_valueset)
    for k, plan in enumerate(product.plans):
        path = f"{where}.plans[{k}]"
        if plan.id in codes:
            raise FieldProblem(f"{path}.id", f"duplicate plan id {plan.id!r} (also {codes[plan.id]})")
        codes[plan.id] = path
        for j, vs in enumerate(plan.condition_grouping):
            if vs not in allowed:
                raise FieldProblem(f"{path}.condition_grouping[{j}]",
                                   f"{vs!r} is not one of the product's requires_any_valueset categories")


def _by_code(rows: tuple[Any, ...], path: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, row in enumerate(rows):
        if row.code in out:
            raise FieldProblem(f"{path}[{i}].code", f"duplicate code {row.code}")
        out[row.code] = row
    return out


def _known_value_set(value_sets: frozenset[str], value: str, path: str) -> None:
    if value not in value_sets:
        raise FieldProblem(path, f"unknown value set {value!r} (no valuesets/{value}.json)")


def _check_rule(rule: Eligibility, path: str, value_sets: frozenset[str]) -> None:
    if rule.min_age is not None and rule.max_age is not None and rule.max_age < rule.min_age:
        raise FieldProblem(f"{path}.max_age", "must be >= min_age")
    both = rule.requires_lob & rule.excludes_lob
    if both:
        raise FieldProblem(f"{path}.excludes_lob", f"{', '.join(sorted(both))} is both required and excluded")
    if rule.dual_levels is not None and not {"medicare", "medicaid"} <= rule.requires_lob:
        raise FieldProblem(f"{path}.dual_levels", "needs requires_lob to contain both medicare and medicaid")
    for j, v in enumerate(rule.requires_any_valueset):
        _known_value_set(value_sets, v, f"{path}.requires_any_valueset[{j}]")
    state = rule.state_determination
    if state is not None:
        if state.confirms & state.excludes:
            raise FieldProblem(f"{path}.state_determination.excludes",
                               f"{', '.join(sorted(state.confirms & state.excludes))} both confirms and excludes")
        if not rule.requires_any_valueset:
            raise FieldProblem(f"{path}.state_determination",
                               "needs requires_any_valueset: a confirming code stands in for the diagnosis")
