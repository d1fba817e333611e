"""The intervention operations, independent of the web framework: make (or read back) a week's priority
List for a roster, and check the Tasks assigned from it."""

from __future__ import annotations

import dataclasses
from datetime import date

from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from server.alignment.window import today_utc
from server.fhir.context import Reads, RequestContext
from server.fhir.errors import FhirError, Issue
from server.fhir.service import FhirService
from server.fhir.writer import Writer
from server.fhir.types import Reply, Written
from server.interventions.checks import CheckResult, check_list
from server.interventions.config import PriorityConfig
from server.interventions.lists import due_date, list_id, priority_list
from server.interventions.priority import Week, rank, refreshed, stale_inputs
from server.interventions.schema import intervention_entries
from server.risk.model import RiskModel
from server.rosters.params import OperationInput
from server.store.resources import WriteTransaction

# What a list reveals about every participant: their visits, claims and care plans.
PRIORITY_READS = Reads(("Encounter", "Claim", "ExplanationOfBenefit", "CarePlan"))
LIST_PREFIX = "priority-"


def _roster(inp: OperationInput) -> str:
    value = inp.one("roster")
    ref = value.get("reference") if isinstance(value, dict) else value
    if not isinstance(ref, str) or not ref.startswith("Group/") or len(ref) < 7:
        raise FhirError.of(400, "required", "roster (a reference Group/id to an attribution list) is required", "roster")
    return ref[len("Group/"):]


def _week(inp: OperationInput) -> Week:
    text = inp.text("week")
    if text is None:
        return Week.of(today_utc())
    try:
        return Week.of(date.fromisoformat(text))
    except ValueError:
        raise FhirError.of(400, "invalid", "week is a date (YYYY-MM-DD) in the week wanted", "week") from None


class Interventions:
    def __init__(self, service: FhirService, config: PriorityConfig, risk_model: RiskModel):
        self.service = service
        self.config = config
        self.risk_model = risk_model

    def _payment_year(self, inp: OperationInput, week: Week) -> int:
        given = inp.one("paymentYear")  # valueInteger in a body, text in a query
        # As $risk-evaluate: by default the payment year after the one the week falls in.
        year = week.end.year + 1 if given is None else int(given) if str(given).isdigit() else -1
        if year not in self.risk_model.years:
            raise FhirError.of(400, "not-supported", f"paymentYear {given or year} is not configured (configured: "
                                                     f"{', '.join(map(str, sorted(self.risk_model.years)))})", "paymentYear")
        return year

    def priority(self, ctx: RequestContext, inp: OperationInput, base: str) -> Reply:
        """The week's List: read back when stored (200), else ranked, stored and answered (201); refused
        (422, one issue per input) when an input is missing or stale."""
        ctx.access.require("List", "r")
        group_id, week = _roster(inp), _week(inp)
        year = self._payment_year(inp, week)
        self.service.read("Group", group_id, base, ctx)  # 404 unless the caller may see the roster
        PRIORITY_READS.require_for_population(ctx.access)
        lid = list_id(group_id, week)
        service = self.service
        if self._stored(lid):
            return service.read("List", lid, base, ctx)
        ctx.access.require("List", "c")
        try:
            written = self._make(ctx, group_id, week, year, lid)
        except IntegrityError:
            if not self._stored(lid):
                raise
            return service.read("List", lid, base, ctx)  # a concurrent request made it first
        service.committed(written, ctx)
        reply = service.read("List", lid, base, ctx)
        return Reply(201, reply.body, reply.headers)

    def _stored(self, lid: str) -> bool:
        with self.service.store.engine.connect() as conn:
            stored = self.service.store.read("List", lid, conn)
        return stored is not None and not stored.deleted

    def _make(self, ctx: RequestContext, group_id: str, week: Week, year: int, lid: str) -> list[Written]:
        """Rank, and store the List with its entry rows in one transaction; the versions written."""
        service, py = self.service, self.risk_model.years[year]

        def work(tx: WriteTransaction) -> list[Written]:
            found = refreshed(tx.conn, py, group_id)
            reasons = stale_inputs(self.config, found, week)
            if reasons:
                raise FhirError(422, [Issue("error", "business-rule", f"Inputs are stale, no list is made: {r}",
                                            ("week",)) for r in reasons])
            ranked = rank(tx.conn, self.config, py, group_id, week)
            resource = priority_list(self.config, group_id, week, year, found, ranked, tx.now_us)
            # The server publishes the list: the write guard that keeps clients from changing it lets this through.
            writer = Writer(service, tx, dataclasses.replace(ctx, publishing=True))
            writer.create("List", resource, lid)
            if ranked:
                tx.conn.execute(insert(intervention_entries), [
                    {"list_id": lid, "patient_id": r.patient_id, "rank": i, "tier": r.tier.code,
                     "high_priority": r.tier.high_priority, "due_date": (due := due_date(week, r.tier.due_days)).isoformat(),
                     "due_day": due.toordinal() - date(1970, 1, 1).toordinal()} for i, r in enumerate(ranked, start=1)])
            return writer.written

        return service.store.write(work)

    def checks(self, ctx: RequestContext, lid: str, base: str) -> CheckResult:
        """The Task checks of a stored priority List (404 unless the caller may read it)."""
        self.service.read("List", lid, base, ctx)
        if not lid.startswith(LIST_PREFIX):
            raise FhirError.of(422, "business-rule", f"List/{lid} is not an intervention priority list")
        Reads(("Task",)).require_for_population(ctx.access)
        with self.service.store.engine.connect() as conn:
            return check_list(conn, lid, self.config.owner_capacity)


def refuse_client_writes(rtype: str, rid: str, method: str, _resource: dict | None) -> None:
    """A week's list is the server's record: clients cannot change or delete it (PRE_WRITE)."""
    if rtype == "List" and rid.startswith(LIST_PREFIX):
        raise FhirError.of(405, "not-supported", f"List/{rid} is an intervention priority list the server keeps "
                                                 f"unchanged: it cannot be written ({method})")
