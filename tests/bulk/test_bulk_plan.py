"""Export plans survive storage on the job row, and NDJSON files split where they should."""

from __future__ import annotations

import pytest

from server.bulk.ndjson import NdjsonFiles
from server.bulk.plan import ExportPlan, TypePlan, decode_clause, encode_clause
from server.store.search import (
    AllOfClause,
    AnyOfClause,
    CompartmentClause,
    DateClause,
    IdClause,
    NoneClause,
    ReferenceClause,
    StringClause,
    TokenClause,
    TokenSetClause,
)

CLAUSES = [
    IdClause(("a", "b")),
    TokenClause((("h_sys_value", -9_000_000_000_000_000_000), ("h_value", 42)), negate=True),
    TokenSetClause(7, exact=((None, "F20.9"), ("http://snomed.info/sct", "1")), prefixes=(("x", "F2"),)),
    StringClause(3, "exact", ("Zoë",)),
    DateClause(4, (("ge", 1, 2),)),
    ReferenceClause((5, 6), targets=(("Patient", "p1"), (None, "p2")), urls=("http://x/Patient/1",)),
    CompartmentClause(("p1",), (11, 12), True),
    AnyOfClause((AllOfClause((IdClause(("a",)), NoneClause())), CompartmentClause(("p2",), (), False))),
]


@pytest.mark.parametrize("clause", CLAUSES, ids=lambda c: type(c).__name__)
def test_clause_round_trip(clause):
    assert decode_clause(encode_clause(clause)) == clause


def test_plan_round_trip():
    plan = ExportPlan(
        level="group",
        group_id="g1",
        patient_ids=("p1", "p2"),
        since_us=1_700_000_000_000_000,
        warnings=({"severity": "warning", "code": "not-supported", "diagnostics": "x"},),
        types=(
            TypePlan("Patient", access=(CLAUSES[-1],)),
            TypePlan("Condition", access=(), filters=((CLAUSES[1], CLAUSES[2]), (CLAUSES[3],))),
        ),
    )
    assert ExportPlan.from_json(plan.to_json()) == plan


def test_only_server_clause_classes_are_decoded():
    with pytest.raises(ValueError):
        decode_clause({"$clause": "os:system", "command": "true"})
    with pytest.raises(TypeError):
        encode_clause(("not", "a", "clause"))


def test_ndjson_files_split_every_n_lines(tmp_path):
    (tmp_path / "job" / "1").mkdir(parents=True)
    files = NdjsonFiles(tmp_path, "job/1", "Condition", "output", max_lines=2)
    lines = [b'{"resourceType":"Condition","id":"%d"}' % i for i in range(5)]
    for line in lines:
        files.write(line)
    records = files.close()
    assert [(r.name, r.count) for r in records] == [("Condition-1.ndjson", 2), ("Condition-2.ndjson", 2), ("Condition-3.ndjson", 1)]
    written = b"".join((tmp_path / r.path).read_bytes() for r in records)
    assert written == b"".join(line + b"\n" for line in lines)
    assert all(r.size == (tmp_path / r.path).stat().st_size for r in records)


def test_no_lines_no_files(tmp_path):
    (tmp_path / "j").mkdir()
    assert NdjsonFiles(tmp_path, "j", "OperationOutcome", "error", 10).close() == []
