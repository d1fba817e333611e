"""The projection operations, independent of the web framework: load an ACO's inputs, project, read
the churn. Each change runs in one write transaction of the resource store, so the Group headers (written
through the store's `Writer`: access checks and the attribution-list guard see them) and their member rows
commit together with the run."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

import orjson
from sqlalchemy import insert

from server.fhir.context import RequestContext
from server.fhir.errors import FhirError
from server.fhir.service import FhirService
from server.fhir.writer import Writer
from server.projection import engine
from server.projection.churn import Churn, churn
from server.projection.engine import Run, Summary
from server.projection.groups import change_counts, group_id, header, link_providers, write_members
from server.projection.inputs import InputError, parse_beneficiaries, parse_claims, replace_inputs
from server.projection.rules import AlignmentRules, load_rules
from server.projection.schema import projection_runs
from server.rosters.atr import TIN_SYSTEM
from server.rosters.members import Resolver
from server.rosters.params import OperationInput

_ACO = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@dataclass(frozen=True)
class Outcome:
    run: Run
    eligible: int
    by_basis: dict[str, int]  # aligned to participant TINs: claims | voluntary
    outside: int  # aligned to outside TINs
    lost_voluntary: int
    groups: list[tuple[str, str, dict[str, int]]]  # (TIN, Group id, changeType counts)


def aco_of(inp: OperationInput) -> str:
    aco = inp.text("aco")
    if aco is None or not _ACO.fullmatch(aco):
        raise FhirError.of(400, "required", "aco (the ACO's id: letters, digits, '-', '.') is required", "aco")
    return aco


def file_text(inp: OperationInput, name: str) -> str:
    value = inp.one(name)
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("data"), str):
        try:
            return base64.b64decode(value["data"], validate=True).decode("utf-8-sig")
        except (binascii.Error, UnicodeDecodeError):
            raise FhirError.of(400, "invalid", f"{name}: the attachment is not base64 of UTF-8 text", name) from None
    raise FhirError.of(400, "required", f"{name} is required: valueString (the CSV) or valueAttachment.data", name)


def parsed_files(inp: OperationInput, aco: str, parsers: dict) -> dict[str, list[dict]]:
    """Each named CSV of the input parsed by its parser: a bad value is a 400 naming file, row and column."""
    try:
        return {name: parse(file_text(inp, name), aco) for name, parse in parsers.items()}
    except InputError as exc:
        raise FhirError.of(400, "invalid", str(exc), exc.where) from None


class Projections:
    def __init__(self, service: FhirService, rules: AlignmentRules | None = None):
        self.service = service
        self.rules = rules or load_rules()

    def load(self, ctx: RequestContext, inp: OperationInput) -> dict[str, int]:
        ctx.access.require("Group", "c")
        aco = aco_of(inp)
        files = parsed_files(inp, aco, {"claims": parse_claims, "beneficiaries": parse_beneficiaries})
        with self.service.store.engine.begin() as conn:
            replace_inputs(conn, aco, files["claims"], files["beneficiaries"])
        return {name: len(rows) for name, rows in files.items()}

    def _participants(self, ctx: RequestContext, inp: OperationInput, base: str) -> dict[str, str]:
        """Participant TIN → its Organization id (read with the caller's access; its TIN identifier)."""
        found: dict[str, str] = {}
        for index, value in enumerate(inp.values.get("participant") or []):
            ref = value.get("reference") if isinstance(value, dict) else None
            rtype, _, rid = ref.partition("/") if isinstance(ref, str) else ("", "", "")
            if rtype != "Organization" or not rid:
                raise FhirError.of(400, "invalid", "participant is a reference Organization/id",
                                   f"Parameters.parameter[participant][{index}]")
            org = orjson.loads(self.service.read("Organization", rid, base, ctx).body or b"{}")
            tins = [i.get("value") for i in org.get("identifier") or [] if i.get("system") == TIN_SYSTEM]
            if len(tins) != 1 or not isinstance(tins[0], str) or not re.fullmatch(r"\d{9}", tins[0]):
                raise FhirError.of(422, "business-rule", f"{ref} needs exactly one TIN identifier ({TIN_SYSTEM}, "
                                                         "9 digits)", f"Parameters.parameter[participant][{index}]")
            found[tins[0]] = rid
        if not found:
            raise FhirError.of(400, "required", "Name the ACO's participants: participant=Organization/id "
                                                "(each with its TIN)", "participant")
        return found

    def project(self, ctx: RequestContext, inp: OperationInput, base: str) -> Outcome:
        ctx.access.require("Group", "c")
        aco = aco_of(inp)
        year = inp.text("performanceYear")
        if year is None or not (isinstance(year, (str, int)) and str(year).isdigit() and 2000 <= int(year) <= 2100):
            raise FhirError.of(400, "required", "performanceYear (e.g. 2026) is required", "performanceYear")
        participants = self._participants(ctx, inp, base)
        period = self.rules.period(int(year))
        service = self.service

        def work(writer: Writer) -> tuple[Run, Summary, list]:
            tx = writer.tx
            t = projection_runs.c
            run_id = tx.conn.execute(insert(projection_runs).values(
                aco=aco, performance_year=int(year), participants=",".join(sorted(participants)),
                period_start=period.start, period_end=period.end, created_us=tx.now_us).returning(t.run_id)).scalar_one()
            run = Run(run_id, engine.previous_run(tx.conn, aco, run_id), aco, int(year), period,
                      tuple(sorted(participants)))
            engine.project(tx.conn, self.rules, run)
            groups = []
            who = ctx.username or ctx.client_id or "server"
            for tin, organization in sorted(participants.items()):
                gid = group_id(aco, tin)
                active = write_members(tx.conn, run, tin, who, tx.now_us)
                link_providers(tx.conn, gid, Resolver(service, ctx, tx.conn).providers_by_npi)
                current = tx.current([("Group", gid)]).get(("Group", gid))
                writer.put("Group", gid, header(run, tin, organization, active), None, current)
                groups.append((tin, gid, change_counts(tx.conn, gid)))
            summary = engine.summary(tx.conn, self.rules, run)
            return run, summary, groups

        run, summary, groups = service.write(ctx, work)
        return Outcome(run, summary.eligible, summary.by_basis, summary.outside, summary.lost_voluntary, groups)

    def churn(self, ctx: RequestContext, inp: OperationInput) -> tuple[Run, Churn]:
        ctx.access.require("Group", "r")
        aco = aco_of(inp)
        with self.service.store.engine.connect() as conn:
            run = engine.load_run(conn, self.rules, aco, inp.text("run"))
            return run, churn(conn, self.rules, run)
