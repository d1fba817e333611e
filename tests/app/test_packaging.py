"""A wheel install works: the wheel carries `mappings/` and `profiles/`, and a server started from it
alone (not from this checkout) reads them and answers."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import httpx
import pytest

from tests.support.servers import ROOT, BackendToken, start_server, stop_server, write_clients_file


@pytest.fixture(scope="module")
def unpacked_wheel(tmp_path_factory) -> Path:
    """The wheel `pip wheel .` builds, unpacked as an installer would lay it out in site-packages."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(ROOT), "-w", str(out)],
                   check=True, capture_output=True)
    (wheel,) = out.glob("planfit-*.whl")
    site = out / "site"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    return site


def outside_checkout_env(site: Path) -> dict[str, str]:
    """The unpacked wheel first on the path, so `server` is imported from it and not from the checkout."""
    return {"PYTHONPATH": str(site)}


def test_the_wheel_ships_the_mappings_and_profiles(unpacked_wheel):
    for name in ("mappings", "profiles"):
        shipped = sorted(p.relative_to(unpacked_wheel / "server" / "_data" / name)
                         for p in (unpacked_wheel / "server" / "_data" / name).rglob("*.json"))
        source = sorted(p.relative_to(ROOT / name) for p in (ROOT / name).rglob("*.json"))
        assert shipped == source and source, name


def test_a_server_from_the_wheel_reads_its_own_data_files(unpacked_wheel, tmp_path, backend_client_keys):
    probe = ("from server.alignment.mappings import DEFAULT_DIRECTORY, load_mappings; "
             "from server.measures.definitions import PROFILES_DIR; import server; load_mappings(); "
             "print(server.__file__); print(DEFAULT_DIRECTORY); print(PROFILES_DIR)")
    printed = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True,
                             env={**os.environ, **outside_checkout_env(unpacked_wheel)}).stdout.split()
    package, mappings, profiles = map(Path, printed)
    assert package.is_relative_to(unpacked_wheel), package
    assert mappings == unpacked_wheel / "server" / "_data" / "mappings"
    assert profiles == unpacked_wheel / "server" / "_data" / "profiles"

    clinical, claims = backend_client_keys
    clients = write_clients_file(tmp_path / "clients.json", clinical, claims)
    env = {**outside_checkout_env(unpacked_wheel), "PLANFIT_CLIENTS_FILE": str(clients)}
    process, url = start_server(f"sqlite:///{tmp_path / 'planfit.db'}", tmp_path / "server.log", env, cwd=tmp_path)
    try:
        auth = BackendToken(url + "/auth/token", clinical, "system/*.rs")
        measure = httpx.get(url + "/fhir/Measure/product-alignment", auth=auth, timeout=30)
        assert measure.status_code == 200 and measure.json()["url"].endswith("/Measure/product-alignment")
        value_sets = httpx.get(url + "/fhir/ValueSet", params={"_summary": "count"}, auth=auth, timeout=30)
        assert value_sets.status_code == 200 and value_sets.json()["total"] > 0
    finally:
        stop_server(process)
