"""The app is assembled from feature declarations (server/fhir/features.py), checked in process with
Starlette's TestClient on a SQLite database: operation routes never collide with the generic REST
routes, the CapabilityStatement lists exactly what the features declare, and hooks reach the FHIR
service (a feature's write guard refuses a client write; its read renderer serves a Group whole)."""

from __future__ import annotations

import re
from typing import Iterator

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Match

from server.app import create_app
from server.config import Settings
from server.fhir.routes import router as fhir_router


@pytest.fixture(scope="module")
def app_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    db = tmp_path_factory.mktemp("features") / "planfit.db"
    app = create_app(Settings(database_url=f"sqlite:///{db}", auth="off"))
    with TestClient(app) as client:
        yield client


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", path)


def test_no_operation_path_is_taken_by_a_generic_rest_route(app_client: TestClient) -> None:
    generic = [r for r in fhir_router.routes if isinstance(r, APIRoute)]
    operations = [r for f in app_client.app.state.features for router in f.routers for r in router.routes
                  if isinstance(r, APIRoute) and "$" in r.path]
    assert len(operations) > 20  # every feature's operations are mounted
    for op in operations:
        for method in op.methods:
            scope = {"type": "http", "path": _concrete(op.path), "method": method, "root_path": ""}
            taken = [r.path for r in generic if r.matches(scope)[0] == Match.FULL]
            assert not taken, f"{method} {op.path} would be served by {taken}"


def test_capability_statement_lists_each_declared_operation_once(app_client: TestClient) -> None:
    rest = app_client.get("/fhir/metadata").json()["rest"][0]
    declared = {(op.resource_type, op.name, op.definition) for f in app_client.app.state.features for op in f.operations}
    listed = [(None, o["name"], o["definition"]) for o in rest.get("operation", [])]
    listed += [(e["type"], o["name"], o["definition"]) for e in rest["resource"] for o in e.get("operation", [])]
    assert len(listed) == len(set(listed))
    assert set(listed) == declared
    assert ("Patient", "worklist") in {(t, n) for t, n, _ in declared}


def test_hooks_reach_the_service(app_client: TestClient) -> None:
    guarded = app_client.put("/fhir/Measure/product-alignment", json={"resourceType": "Measure", "id": "product-alignment",
                                                                       "status": "draft"})
    assert guarded.status_code == 405, guarded.text  # measures' PRE_WRITE hook
    group = app_client.post("/fhir/Group", json={"resourceType": "Group", "type": "person", "actual": True,
                                                 "name": "not a roster"})
    assert group.status_code == 201, group.text
    plain = app_client.get(f"/fhir/Group/{group.json()['id']}")  # no READ_RENDER hook claims it
    assert plain.status_code == 200 and plain.json()["name"] == "not a roster"
    summary = app_client.get(f"/fhir/Group/{group.json()['id']}", params={"_summary": "true"}).json()
    assert any(t.get("code") == "SUBSETTED" for t in summary["meta"]["tag"])
    assert app_client.get("/fhir/Patient/$worklist").status_code == 200
    assert app_client.get("/fhir/.well-known/smart-configuration").status_code == 404  # SMART off: no discovery


def test_startup_ran_every_feature_and_left_no_reindex_requests(app_client: TestClient) -> None:
    cohort = app_client.get("/fhir/Group/candidates-csnp")  # cohorts' start-up wrote version 1
    assert cohort.status_code == 200
    assert app_client.get("/fhir/Measure/product-alignment").status_code == 200  # measures seeded
    engine = app_client.app.state.store.engine
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM reindex_request").scalar_one() == 0
