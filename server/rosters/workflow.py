"""The roster operations, independent of the web framework.

Every change runs in one write transaction of the resource store: the entitlement check (the caller may
update this Group: `Group` scopes and, for a client confined to its organization's lists, the
`managing-entity` clause of its scope, checked in SQL), the list status, the member rows, and a new
version of the Group header (quantity, status), written through the store's `Writer` so the write guards
and access checks see its final content. The new version is what ATR asks for when membership changes.
Decisions also get a Provenance naming who decided, and land in the request's audit record.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Callable, TypeVar

import orjson
from sqlalchemy import Connection, insert, select, update

from server.fhir.context import Reads, RequestContext
from server.fhir.dates import instant_text
from server.fhir.errors import FhirError, Issue, operation_outcome
from server.fhir.service import FhirService
from server.fhir.versions import resource_headers
from server.fhir.writer import Writer
from server.fhir.types import Reply
from server.rosters.atr import MEMBERS_CHANGED, is_attribution_list, list_status, refuse_if_final, with_extension, with_status
from server.rosters.decisions import REASON_SYSTEM, Decision, check_decision, planfit_reasons
from server.rosters.members import MemberKey, Resolver, active_count, add_member, remove_members
from server.rosters.drift import Drift, drift
from server.rosters.versions import ListVersion, record_changes
from server.rosters.importing import import_rows
from server.rosters.listing import roster_page
from server.rosters.params import OperationInput
from server.rosters.reconcile import Categories, PilotRules, Reconciliation, reconcile
from server.rosters.payer_file import parse_payer_file
from server.store.resources import StoredVersion
from server.store.roster_schema import RosterImport, roster_imports, roster_members

m = roster_members.c
# ATR OperationDefinition member-add / member-remove: the parameter combinations a Producer SHALL support.
ADD_COMBINATIONS = (
    frozenset({"memberId", "providerNpi"}),
    frozenset({"memberId", "providerNpi", "attributionPeriod"}),
    frozenset({"patientReference", "providerReference"}),
    frozenset({"patientReference", "providerReference", "attributionPeriod"}),
)
REMOVE_COMBINATIONS = (
    frozenset({"memberId"}),
    frozenset({"memberId", "providerNpi"}),
    frozenset({"patientReference"}),
    frozenset({"patientReference", "providerReference"}),
    frozenset({"patientReference", "providerReference", "coverageReference"}),
)
DECISION_PARAMS = ("patientReference", "memberId", "providerReference", "decision", "reason", "reviewer",
                   "reviewDate", "owner", "clarificationDeadline", "nextCheckpoint")
# What a reconciliation report reveals about the members.
RECONCILE_READS = Reads(("Coverage", "Claim", "CoverageEligibilityResponse", "Condition"))
_PROVENANCE_AGENT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"


@dataclass(frozen=True)
class Note:
    """What the Provenance of a change says beyond its target: why, who authored it, what it used."""

    reason: dict
    author: str | None  # a reference: the reviewer, the approver of a file
    entity: dict  # Provenance.entity.what


@dataclass
class Change:
    """What one operation did, for its answer and the Group's new version."""

    message: str
    status: str | None = None  # a new attributionListStatus
    provenance: Note | None = None
    changed: bool = True  # False: nothing was written, the Group keeps its version
    members: bool = True  # the members changed (their new states go to the list's history)


@dataclass(frozen=True)
class Step:
    """Where an operation's action runs: the write transaction's connection, time and the list's status."""

    conn: Connection
    resolve: Resolver
    status: str
    now_us: int
    who: str  # the user or client making the change
    version: int  # the Group version this change writes

    @property
    def stamp(self) -> dict:
        """Who changed a member row, and when."""
        return {"changed_by": self.who, "changed_us": self.now_us}

    @property
    def today(self) -> str:
        return datetime.fromtimestamp(self.now_us / 1e6, timezone.utc).date().isoformat()


Action = Callable[[Step], Change]
Rendered = TypeVar("Rendered")


class Rosters:
    def __init__(self, service: FhirService, categories: Categories):
        self.service = service
        self.categories = categories  # the diagnosis and service categories a payer file may state
        self.rules = PilotRules.load()

    # ---- reads -------------------------------------------------------------------------------------

    def stored_list(self, ctx: RequestContext, group_id: str, base: str, conn=None) -> tuple[Reply, dict] | None:
        """The Group read as any read (scopes, entitlement: 404), and its content if it is an attribution
        list; None for other Groups."""
        reply = self.service.read("Group", group_id, base, ctx, conn)
        assert reply.body is not None
        group = orjson.loads(reply.body)
        return (reply, group) if is_attribution_list(group) else None

    def require_list(self, ctx: RequestContext, group_id: str, base: str) -> tuple[Reply, dict]:
        found = self.stored_list(ctx, group_id, base)
        if found is None:
            raise FhirError.of(422, "not-supported", f"Group/{group_id} is not an attribution list "
                                                     "(no attributionListStatus)")
        return found

    # ---- changes -----------------------------------------------------------------------------------

    def change(self, ctx: RequestContext, group_id: str, base: str, action: Action) -> Reply:
        service = self.service
        ctx.access.require("Group", "u")

        def work(writer: Writer) -> tuple[Change, int, int]:
            tx = writer.tx
            current = tx.current([("Group", group_id)]).get(("Group", group_id))
            group, status = self._changeable(ctx, group_id, current, tx.conn)
            step = Step(tx.conn, Resolver(service, ctx, tx.conn), status, tx.now_us, _who(ctx), current.version + 1)
            done = action(step)
            version = current.version
            if done.changed:
                header = with_status(group, done.status or status)
                header["quantity"] = active_count(tx.conn, group_id)
                if done.members:  # a new version even when the header's figures stay the same
                    header = with_extension(header, MEMBERS_CHANGED, {"valueInstant": instant_text(tx.now_us)})
                version, _created = writer.put("Group", group_id, header, None, current)
                assert version == step.version, "a roster change writes the next Group version"
                if done.members:
                    record_changes(tx.conn, group_id, version, tx.now_us)
            if done.provenance is not None:
                writer.record_provenance(_provenance(ctx, group_id, version, tx.now_us, done.provenance))
            return done, version, tx.now_us

        done, version, now_us = service.write(ctx, work)
        return _informational(done.message, resource_headers("Group", group_id, version, now_us, base))

    def _changeable(self, ctx: RequestContext, group_id: str, current: StoredVersion | None,
                    conn: Connection) -> tuple[dict, str]:
        """The stored list and its status, when the caller may change it: 404 unless entitled to update it,
        422 for a Group that is no attribution list, 409 once it is final."""
        if current is None or current.deleted or not self.service.visible(
                "Group", group_id, ctx.access.clauses("Group", "u"), conn):
            raise FhirError.of(404, "not-found", f"Group/{group_id} is not known")
        assert current.content is not None
        group = orjson.loads(current.content)
        if not is_attribution_list(group):
            raise FhirError.of(422, "not-supported", f"Group/{group_id} is not an attribution list")
        status = list_status(group) or "draft"
        refuse_if_final(status, group_id, "this operation")
        return group, status

    def member_add(self, ctx: RequestContext, group_id: str, base: str, inp: OperationInput) -> Reply:
        _require_combination(inp, ADD_COMBINATIONS, "$member-add")

        def act(step: Step) -> Change:
            values = _member_values(step.resolve, inp)
            values["period_start"], values["period_end"] = inp.period("attributionPeriod")
            values["coverage_id"] = step.resolve.coverages_of([values["patient_id"]]).get(values["patient_id"])
            kind = add_member(step.conn, group_id, {**values, **step.stamp})
            return Change(f"Member {'added' if kind == 'new' else 'attribution updated'} ({kind})")

        return self.change(ctx, group_id, base, act)

    def member_remove(self, ctx: RequestContext, group_id: str, base: str, inp: OperationInput) -> Reply:
        _require_combination(inp, REMOVE_COMBINATIONS, "$member-remove")

        def act(step: Step) -> Change:
            values = _member_values(step.resolve, inp)
            coverage = inp.reference("coverageReference")
            key = MemberKey(values["patient_id"], values.get("provider_ref"),
                            coverage.partition("/")[2] if coverage else None)
            if not remove_members(step.conn, group_id, key, step.status, step.today, step.stamp, step.version):
                raise FhirError.of(422, "not-found", "No current member of this list matches the parameters")
            kept = "kept as inactive (draft list)" if step.status == "draft" else "removed"
            return Change(f"Member {kept}")

        return self.change(ctx, group_id, base, act)

    def confirm(self, ctx: RequestContext, group_id: str, base: str) -> Reply:
        """$confirm-attribution-list: the list becomes `final` (locked). ATR: "SHALL return 201"."""
        reply = self.change(ctx, group_id, base,
                            lambda _step: Change("Attribution list confirmed: final", "final", members=False))
        reply.status = 201
        return reply

    def decide(self, ctx: RequestContext, group_id: str, base: str, inp: OperationInput) -> Reply:
        """$member-decision: record one member's cohort decision (SPEC §11 rules, 422 otherwise)."""
        decision = Decision(
            decision=inp.text("decision") or "",
            reason_system=(inp.coding("reason") or (None, None))[0],
            reason_code=(inp.coding("reason") or (None, None))[1],
            reviewer=inp.reference("reviewer"),
            review_date=inp.date("reviewDate"),
            owner=inp.reference("owner"),
            deadline=inp.date("clarificationDeadline"),
            checkpoint=inp.date("nextCheckpoint"),
        )

        def act(step: Step) -> Change:
            conn = step.conn
            values = _member_values(step.resolve, inp)
            key = MemberKey(values["patient_id"], values.get("provider_ref"))
            rows = list(conn.execute(select(m.id, m.period_start).where(*key.where(group_id), m.inactive.is_(False))))
            if not rows:
                raise FhirError.of(422, "not-found", "No current member of this list matches the parameters")
            check_decision(decision, has_basis=all(r.period_start is not None for r in rows))
            self._check_reason(conn, ctx, decision)
            conn.execute(update(roster_members).where(m.id.in_([r.id for r in rows]))
                         .values(**decision.columns(), decided_by=step.who, decided_us=step.now_us))
            reason = {"text": f"roster decision: {decision.decision}"}
            if decision.reason_code is not None:
                reason["coding"] = [{"system": decision.reason_system, "code": decision.reason_code}]
            note = Note(reason, decision.reviewer, {"reference": f"Patient/{values['patient_id']}"})
            return Change(f"Decision recorded: {decision.decision}", provenance=note)

        return self.change(ctx, group_id, base, act)

    def import_file(self, ctx: RequestContext, group_id: str, base: str, inp: OperationInput) -> Reply:
        """$roster-import: a payer attribution file into a draft/open roster, validated whole first (422 with
        the row and field); the file's identity (SHA-256) and approver are recorded, and the same file
        imported again changes nothing."""
        attachment = inp.one("file")
        if not isinstance(attachment, dict) or not isinstance(attachment.get("data"), str):
            raise FhirError.of(400, "invalid", "file is an Attachment with base64 data", "Parameters.parameter[file]")
        try:
            data = base64.b64decode(attachment["data"], validate=True)
        except (binascii.Error, ValueError):
            raise FhirError.of(400, "invalid", "file data is not base64", "Parameters.parameter[file]") from None
        sha = hashlib.sha256(data).hexdigest()
        i = roster_imports.c
        imported = select(i.sha256).where(i.group_id == group_id, i.sha256 == sha)
        unchanged = f"This file (SHA-256 {sha}) was already imported: nothing changed"
        with self.service.store.engine.connect() as conn:
            if conn.execute(imported).first() is not None:
                # Answered from a read, as the write transaction would answer it (same checks, nothing
                # written), without waiting for the writer lock: on SQLite another writer (the deferred
                # alignment evaluation of a large load) can hold it for seconds.
                ctx.access.require("Group", "u")
                current = self.service.store.read("Group", group_id, conn)
                self._changeable(ctx, group_id, current, conn)
                assert current is not None
                return _informational(unchanged, resource_headers("Group", group_id, current.version, current.lu, base))
        # The file is parsed (validated whole) only when it is new.
        payer = parse_payer_file(data, str(attachment.get("contentType") or ""), self.categories.names)
        approver = inp.reference("approvedBy")
        member_system = inp.text("memberIdSystem")

        def act(step: Step) -> Change:
            if step.conn.execute(imported).first():  # imported by a concurrent request meanwhile
                return Change(unchanged, changed=False)
            import_id = step.conn.execute(insert(roster_imports).values(RosterImport(
                group_id=group_id, sha256=payer.sha256, filename=attachment.get("title"), file_format=payer.file_format,
                row_count=payer.row_count, approved_by=approver, imported_by=step.who,
                imported_us=step.now_us).model_dump(exclude={"id"})).returning(roster_imports.c.id)).scalar_one()
            done = import_rows(step.conn, step.resolve, group_id, import_id, payer, member_system, step.stamp)
            note = Note({"text": f"payer attribution file imported ({payer.file_format})"}, approver,
                        {"display": f"{attachment.get('title') or 'attribution file'} (SHA-256 {payer.sha256})"})
            return Change(f"Imported {done.rows} rows: {done.added} members added, {done.updated} updated, "
                          f"{done.unknown} participant ids name no member", provenance=note)

        return self.change(ctx, group_id, base, act)

    def reconcile(self, ctx: RequestContext, group_id: str, base: str,
                  render: Callable[[Connection, Reconciliation], Rendered]) -> Rendered:
        """The report reads the list (404 unless entitled) and shows what the members' authorizations,
        diagnoses and coverage say, so it needs unconfined search access to those types too. `render`
        writes it (JSON, CSV) while its statement's connection is open."""
        self.require_list(ctx, group_id, base)
        RECONCILE_READS.require_for_population(ctx.access)
        with self.service.store.engine.connect() as conn:
            return render(conn, reconcile(conn, group_id, self.rules, self.categories))

    def page(self, ctx: RequestContext, group_id: str, base: str, decision: str | None, reason: str | None,
             count: int, offset: int) -> dict:
        self.require_list(ctx, group_id, base)
        with self.service.store.engine.connect() as conn:
            return roster_page(conn, group_id, decision, reason, count, offset)

    def drift(self, ctx: RequestContext, group_id: str, base: str, baseline: str | None,
              since: int | None = None, until: int | None = None) -> Drift:
        """This roster at version `until` (default: as it stands) against a baseline: version `since` of the
        same list, or a locked list, `baseline` (Group/id), by default the latest `final` list of the same
        managing entity. Every list is read under the caller's access (404 unless entitled)."""
        _reply, group = self.require_list(ctx, group_id, base)
        latest = int((group.get("meta") or {}).get("versionId") or 1)
        for name, version in (("from", since), ("to", until)):
            if version is not None and not 1 <= version <= latest:
                raise FhirError.of(422, "not-found", f"Group/{group_id} has versions 1 to {latest}; {name}={version} "
                                                     "is not one of them", name)
        current = ListVersion(group_id, until)
        if since is not None:
            if baseline is not None:
                raise FhirError.of(400, "invalid", "Compare with a version of this list (from) or with another list "
                                                   "(baseline), not both", "baseline")
            with self.service.store.engine.connect() as conn:
                return drift(conn, current, ListVersion(group_id, since))
        with self.service.store.engine.connect() as conn:
            if baseline is None:
                managed_by = (group.get("managingEntity") or {}).get("reference", "")
                finals = Resolver(self.service, ctx, conn).ids("Group", [
                    ("managing-entity", managed_by), ("attribution-list-status", "final"), ("_sort", "-_lastUpdated")],
                    limit=2)
                baseline = next((f"Group/{i}" for i in finals if i != group_id), None)
                if baseline is None:
                    raise FhirError.of(422, "not-found", "No final (locked) list of the same managing entity to compare "
                                                         "with; name one with baseline=Group/id, or a version of this "
                                                         "list with from", "baseline")
            rtype, _, baseline_id = baseline.partition("/")
            if rtype != "Group" or not baseline_id:
                raise FhirError.of(400, "invalid", "baseline is a reference Group/id", "baseline")
            found = self.stored_list(ctx, baseline_id, base, conn)
            if found is None or list_status(found[1]) != "final":
                raise FhirError.of(422, "business-rule", f"{baseline} is not a final (locked) attribution list",
                                   "baseline")
            return drift(conn, current, ListVersion(baseline_id))

    def _check_reason(self, conn: Connection, ctx: RequestContext, decision: Decision) -> None:
        """A reason is a code of PlanFit's CodeSystem or of a customer CodeSystem stored on the server."""
        if decision.reason_code is None:
            return
        if decision.reason_system == REASON_SYSTEM:
            known = decision.reason_code in planfit_reasons()
        else:
            known = decision.reason_code in self._customer_codes(conn, ctx, decision.reason_system)
        if not known:
            raise FhirError.of(422, "code-invalid", f"Reason {decision.reason_system}|{decision.reason_code} is not a "
                                                    "code of PlanFit's roster-decision-reason CodeSystem or of a "
                                                    "CodeSystem stored on this server", "Parameters.parameter[reason]")

    def _customer_codes(self, conn: Connection, ctx: RequestContext, system: str | None) -> set[str]:
        if not system:
            return set()
        found = Resolver(self.service, ctx, conn).ids("CodeSystem", [("url", system)], 1)
        if not found:
            return set()
        stored = self.service.store.read("CodeSystem", found[0], conn)
        assert stored is not None and stored.content is not None
        return set(_codes(orjson.loads(stored.content).get("concept") or []))


def _informational(message: str, headers: dict[str, str]) -> Reply:
    return Reply(200, orjson.dumps(operation_outcome([Issue("information", "informational", message)])), headers)


def _who(ctx: RequestContext) -> str:
    return ctx.username or ctx.client_id or "server"


def _codes(concepts: list) -> list[str]:
    out = []
    for concept in concepts:
        if isinstance(concept, dict) and isinstance(concept.get("code"), str):
            out.append(concept["code"])
            out.extend(_codes(concept.get("concept") or []))
    return out


def _require_combination(inp: OperationInput, allowed: tuple[frozenset[str], ...], operation: str) -> None:
    if inp.given() not in allowed:
        options = "; ".join(" + ".join(sorted(c)) for c in allowed)
        raise FhirError.of(400, "invalid", f"{operation} takes one of these parameter combinations: {options}")


def _member_values(resolve: Resolver, inp: OperationInput) -> dict:
    """patient_id, member identifier and provider from memberId/providerNpi or the references."""
    values: dict = {}
    member_id = inp.identifier("memberId")
    if member_id is not None:
        values["patient_id"] = resolve.patient_by_member_id(*member_id)
        values["member_system"], values["member_value"] = member_id
    else:
        reference = inp.reference("patientReference")
        if reference is None:
            raise FhirError.of(400, "invalid", "memberId or patientReference names the member")
        values["patient_id"] = resolve.patient(reference)
    npi = inp.identifier("providerNpi")
    if npi is not None:
        values["provider_ref"] = resolve.provider_by_npi(*npi)
        values["provider_npi"] = npi[1]
    elif (provider := inp.reference("providerReference")) is not None:
        values["provider_ref"] = resolve.provider(provider)
    return values


def _provenance(ctx: RequestContext, group_id: str, version: int, now_us: int, note: Note) -> dict:
    """Who changed the list: the author (reviewer, approver) and the client/user that entered it."""
    agents = []
    if note.author is not None:
        agents.append({"type": {"coding": [{"system": _PROVENANCE_AGENT, "code": "author"}]},
                       "who": {"reference": note.author}})
    enterer = {"display": _who(ctx)}
    agents.append({"type": {"coding": [{"system": _PROVENANCE_AGENT, "code": "enterer"}]}, "who": enterer})
    return {
        "resourceType": "Provenance",
        "target": [{"reference": f"Group/{group_id}/_history/{version}"}],
        "recorded": instant_text(now_us),
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "UPDATE"}]},
        "reason": [note.reason],
        "agent": agents,
        "entity": [{"role": "source", "what": note.entity}],
    }
