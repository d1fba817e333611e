"""The Task checks of a stored priority List (SPEC §13), each one statement over the List's entries and
the Task search index:

* `uncovered`: a high-priority participant with no live Task for the list (focus = the List, for = the
  participant) and no escalation (businessStatus `escalated` with a coded barrier in statusReason);
* `barrier`: an escalation without a coded barrier;
* `due-date`: a live Task whose due date (restriction.period.end) is not the tier's (the entry's);
* `owner`: a live Task without an owner, or owned by something other than a Practitioner or PractitionerRole;
* `capacity`: an owner of the list's Tasks with more open Tasks (on any list) than the configured capacity.

A Task is live unless cancelled, rejected, failed or entered-in-error; open while not completed either."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, text

from server.fhir.searchparams import param_hash, token_hashes

BUSINESS_SYSTEM = "https://planfit.dev/fhir/CodeSystem/intervention-business-status"
BARRIER_SYSTEM = "https://planfit.dev/fhir/CodeSystem/intervention-barrier"
TYPE_SYSTEM = "https://planfit.dev/fhir/CodeSystem/intervention-type"
_DEAD = ("cancelled", "rejected", "failed", "entered-in-error")
OWNER_TYPES = ("Practitioner", "PractitionerRole")


@dataclass(frozen=True)
class Violation:
    check: str
    detail: str
    patient: str | None = None
    task: str | None = None
    owner: str | None = None


@dataclass(frozen=True)
class CheckResult:
    high_priority: int
    covered: int
    violations: list[Violation]


def _params(list_id: str, capacity: int) -> dict[str, object]:
    status = [token_hashes("Task", "status", None, s)[0] for s in _DEAD]
    params: dict[str, object] = {
        "lid": list_id, "cap": capacity, "day": 86_400_000_000,
        "focus": param_hash("Task", "focus"), "patient": param_hash("Task", "patient"),
        "owner": param_hash("Task", "owner"), "due": param_hash("Task", "due-date"),
        "barrier": param_hash("Task", "barrier"),
        "escalated": token_hashes("Task", "business-status", BUSINESS_SYSTEM, "escalated")[1],
        "completed": token_hashes("Task", "status", None, "completed")[0],
    }
    params.update({f"dead_{i}": h for i, h in enumerate(status)})
    return params


_DEAD_IN = ", ".join(f":dead_{i}" for i in range(len(_DEAD)))
# The list's Tasks: focus = List/:lid, with the participant they are for.
_TASKS = ("SELECT f.rid, p.target_id AS patient_id FROM idx_reference f "
          "JOIN idx_reference p ON p.rtype = 'Task' AND p.rid = f.rid AND p.h_param = :patient AND p.target_type = 'Patient' "
          "WHERE f.target_id = :lid AND f.target_type = 'List' AND f.h_param = :focus AND f.rtype = 'Task'")
_LIVE = f"NOT EXISTS (SELECT 1 FROM idx_token s WHERE s.rtype = 'Task' AND s.rid = t.rid AND s.h_value IN ({_DEAD_IN}))"
_ESCALATED = "EXISTS (SELECT 1 FROM idx_token b WHERE b.rtype = 'Task' AND b.rid = t.rid AND b.h_sys_value = :escalated)"
_HAS_BARRIER = "EXISTS (SELECT 1 FROM idx_token b WHERE b.rtype = 'Task' AND b.rid = t.rid AND b.h_param = :barrier)"

_UNCOVERED = (f"SELECT e.patient_id FROM intervention_entries e WHERE e.list_id = :lid AND e.high_priority AND NOT EXISTS "
              f"(SELECT 1 FROM ({_TASKS}) t WHERE t.patient_id = e.patient_id AND ({_LIVE} OR ({_ESCALATED} AND {_HAS_BARRIER}))) "
              "ORDER BY e.rank")
_NO_BARRIER = f"SELECT t.rid, t.patient_id FROM ({_TASKS}) t WHERE {_ESCALATED} AND NOT {_HAS_BARRIER} ORDER BY t.rid"
_DUE = (f"SELECT t.rid, t.patient_id, e.due_date, e.due_day, "
        f"(SELECT MAX(d.hi) FROM idx_date d WHERE d.rtype = 'Task' AND d.rid = t.rid AND d.h_param = :due) AS due_hi "
        f"FROM ({_TASKS}) t JOIN intervention_entries e ON e.list_id = :lid AND e.patient_id = t.patient_id "
        f"WHERE {_LIVE} ORDER BY e.rank, t.rid")
_OWNERS = (f"SELECT t.rid, t.patient_id, o.target_type FROM ({_TASKS}) t LEFT JOIN idx_reference o "
           f"ON o.rtype = 'Task' AND o.rid = t.rid AND o.h_param = :owner WHERE {_LIVE} ORDER BY t.rid")
_CAPACITY = (f"SELECT o.target_type, o.target_id, COUNT(DISTINCT o.rid) AS n FROM idx_reference o "
             f"WHERE o.rtype = 'Task' AND o.h_param = :owner AND EXISTS (SELECT 1 FROM ({_TASKS}) t "
             f"JOIN idx_reference lo ON lo.rtype = 'Task' AND lo.rid = t.rid AND lo.h_param = :owner "
             f"WHERE lo.target_type = o.target_type AND lo.target_id = o.target_id) "
             f"AND NOT EXISTS (SELECT 1 FROM idx_token s WHERE s.rtype = 'Task' AND s.rid = o.rid "
             f"AND s.h_value IN ({_DEAD_IN}, :completed)) "
             "GROUP BY o.target_type, o.target_id HAVING COUNT(DISTINCT o.rid) > :cap ORDER BY o.target_type, o.target_id")


def check_list(conn: Connection, list_id: str, capacity: int) -> CheckResult:
    params = _params(list_id, capacity)
    run = lambda sql: conn.execute(text(sql), params).all()  # noqa: E731
    high = conn.execute(text("SELECT COUNT(*) FROM intervention_entries WHERE list_id = :lid AND high_priority"),
                        params).scalar_one()
    violations = [Violation("uncovered", "High-priority participant without a Task or an escalation", patient=r[0])
                  for r in run(_UNCOVERED)]
    covered = high - len(violations)
    violations += [Violation("barrier", "Escalated without a coded barrier (statusReason)", r.patient_id, r.rid)
                   for r in run(_NO_BARRIER)]
    for r in run(_DUE):
        if r.due_hi is None or int(r.due_hi) // params["day"] != r.due_day:  # type: ignore[operator]
            violations.append(Violation("due-date", f"Due date must be {r.due_date} (the tier's rule)",
                                        r.patient_id, r.rid))
    violations += [Violation("owner", "Owner must be a Practitioner or PractitionerRole", r.patient_id, r.rid)
                   for r in run(_OWNERS) if r.target_type not in OWNER_TYPES]
    violations += [Violation("capacity", f"{r.n} open Tasks, more than the capacity of {capacity}",
                             owner=f"{r.target_type}/{r.target_id}") for r in run(_CAPACITY)]
    return CheckResult(high, covered, violations)
