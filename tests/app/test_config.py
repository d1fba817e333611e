"""Settings: the README's table is the one `server/config.py` generates, and a value that does not fit
stops the server with a message naming its variable."""

from __future__ import annotations

import os
import subprocess
import sys

from server.config import markdown_table
from tests.support.servers import ROOT


def test_the_readme_configuration_table_is_generated_from_the_settings():
    assert markdown_table() in (ROOT / "README.md").read_text()


def test_values_that_do_not_fit_stop_the_server_naming_each_variable(tmp_path):
    env = {**os.environ, "PLANFIT_DATABASE_URL": f"sqlite:///{tmp_path / 'planfit.db'}",
           "PLANFIT_EXPORT_WORKERS": "many", "PLANFIT_BACKEND_TOKEN_SECONDS": "3600", "PLANFIT_LOG_FORMAT": "xml"}
    served = subprocess.run([sys.executable, "-m", "server.cli", "serve", "--port", "0"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=120)
    assert served.returncode == 2
    message = served.stderr.strip()
    assert message.startswith("planfit: ") and "Traceback" not in served.stderr
    assert "PLANFIT_EXPORT_WORKERS: Input should be a valid integer" in message and "got 'many'" in message
    assert "PLANFIT_BACKEND_TOKEN_SECONDS: Input should be less than or equal to 300, got '3600'" in message
    assert "PLANFIT_LOG_FORMAT: Input should be 'text' or 'json', got 'xml'" in message
    assert not (tmp_path / "planfit.db").exists()
