"""The layer contract of `pyproject.toml` (store → fhir → auth → features → assembly) holds."""

import shutil
import subprocess

from tests.conftest import ROOT


def test_imports_only_point_down():
    checked = subprocess.run([shutil.which("lint-imports") or "lint-imports", "--no-cache"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Imports only point down KEPT" in checked.stdout
