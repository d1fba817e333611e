"""A server whose rules differ from those the stored findings were made by (an upgrade from v1, or new
mapping files) re-evaluates every member at start-up, and the cohort Groups show the drift as new
versions: `_history` keeps the version the old rules made (SPEC §4.3, issue 17 item 5).

The "old rules" here are the v1 HARP rule: a copy of `mappings/` whose `ny-harp` ignores the State's
status codes, so a mainstream member the State identified (H9) without a visible diagnosis is aligned.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from server.alignment.mappings import DEFAULT_DIRECTORY
from tests.support.alignment import born, coverage, finding, patient
from tests.support.cohorts import current_members, read_group, version_of
from tests.support.servers import (
    BackendToken,
    drop_schema,
    postgres_schema_url,
    start_server,
    stop_server,
    write_clients_file,
)


def _v1_harp_mappings(directory: Path) -> Path:
    shutil.copytree(DEFAULT_DIRECTORY, directory)
    products = json.loads((directory / "products.json").read_text())
    harp = next(p for p in products["products"] if p["code"] == "ny-harp")
    for key in ("state_determination", "excludes_flags"):
        del harp["eligibility"][key]
    (directory / "products.json").write_text(json.dumps(products))
    return directory


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'planfit.db'}"
        return
    schema, url = postgres_schema_url()  # skips, or fails with PLANFIT_TEST_POSTGRES=1, when unreachable
    yield url
    drop_schema(schema)


def _clients(url: str, keys: Any) -> tuple[httpx.Client, httpx.Client]:
    clinical, claims = keys
    token_url = url + "/auth/token"
    make = lambda key: httpx.Client(base_url=url + "/fhir", timeout=60,  # noqa: E731
                                    headers={"Content-Type": "application/fhir+json"},
                                    auth=BackendToken(token_url, key, "system/*.cruds"))
    return make(clinical), make(claims)


def test_changed_rules_re_evaluate_every_member_and_groups_show_the_drift(
        database: str, tmp_path: Path, backend_client_keys: Any) -> None:
    clients_file = write_clients_file(tmp_path / "clients.json", *backend_client_keys)
    env = {"PLANFIT_CLIENTS_FILE": str(clients_file)}
    old = {**env, "PLANFIT_MAPPINGS_DIR": str(_v1_harp_mappings(tmp_path / "v1-mappings"))}

    process, url = start_server(database, tmp_path / "old.log", old)
    try:
        client, claims_client = _clients(url, backend_client_keys)
        with client, claims_client:
            pid = patient(client, born(34))
            coverage(claims_client, pid, plan="NY-MMC", harp="H9")
            assert (finding(client, pid).status, finding(client, pid).recommended) == ("aligned", "ny-mmc")
            before = version_of(client, "candidates-ny-harp")
            assert pid not in current_members(read_group(client, "candidates-ny-harp"))
    finally:
        stop_server(process)

    process, url = start_server(database, tmp_path / "new.log", env)  # the v2 rules
    try:
        client, claims_client = _clients(url, backend_client_keys)
        with client, claims_client:
            f = finding(client, pid)
            assert (f.status, f.kind, f.recommended) == ("misaligned", "opportunity", "ny-harp")
            assert "state-identified" in f.reasons
            after = version_of(client, "candidates-ny-harp")
            assert after > before
            assert pid in current_members(read_group(client, "candidates-ny-harp"))
            assert pid not in current_members(read_group(client, "candidates-ny-harp", before))
        assert "re-evaluating every member" in (tmp_path / "new.log").read_text()
    finally:
        stop_server(process)

    process, url = start_server(database, tmp_path / "again.log", env)  # same rules: nothing re-evaluated
    try:
        client, _claims = _clients(url, backend_client_keys)
        with client, _claims:
            assert version_of(client, "candidates-ny-harp") == after
        assert "re-evaluating every member" not in (tmp_path / "again.log").read_text()
    finally:
        stop_server(process)
