"""The layer contract of `pyproject.toml` (store → fhir → auth → features → assembly) holds."""

import shutil
import subprocess
import sys

from tests.support.servers import ROOT


def test_imports_only_point_down():
    checked = subprocess.run([shutil.which("lint-imports") or "lint-imports", "--no-cache"], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Imports only point down KEPT" in checked.stdout


def test_planfit_loads_the_benchmarks_only_for_bench():
    """`planfit` parses `bench`'s options without importing the benchmarks (servers, clients, populations)."""
    probe = ("import sys, server.cli; server.cli.build_parser().parse_args(['bench', '--members', '5']); "
             "print(sorted(m for m in sys.modules if m.startswith('benchmarks')))")
    checked = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "['benchmarks', 'benchmarks.command']"
