"""`planfit demo` as a real process: its printed figures equal the population's ground truth and what
the API says (read with the client and token command the demo prints), and Ctrl-C or SIGTERM stops it
cleanly: the `planfit serve` child stops and the temporary data (PHI-shaped) is deleted."""

from __future__ import annotations

import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import date
from decimal import Decimal
from pathlib import Path

import httpx
import orjson

from server.synth import generate
from tests.support.servers import ROOT, free_port

MEMBERS, SEED = 200, 5


def read_until_serving(process: subprocess.Popen, timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in process.stdout], daemon=True).start()
    out, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert process.poll() is None, "the demo exited:\n" + "".join(out)
            continue
        out.append(line)
        if line.startswith("Serving at "):
            return "".join(out)
    raise AssertionError("no summary in time:\n" + "".join(out))


def money(text: str) -> Decimal:
    return Decimal(text.replace(",", ""))


def ground_truth(tmp_path: Path) -> dict:
    generate(MEMBERS, SEED, tmp_path / "truth", bundle_size=50, as_of=date(2026, 1, 1))
    return orjson.loads((tmp_path / "truth" / "ground_truth.json").read_bytes())["members"]


def start_demo(tmp_path: Path, members: int) -> tuple[subprocess.Popen, str, int]:
    """A running demo, its output up to "Serving at", and its port."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "server.cli", "demo", "--members", str(members),
                                "--seed", str(SEED), "--port", str(port)], cwd=tmp_path, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        return process, read_until_serving(process, timeout=240), port
    except BaseException:
        process.kill()
        raise


def assert_stopped_cleanly(process: subprocess.Popen, text: str, port: int) -> None:
    assert process.wait(timeout=60) == 0
    work = Path(re.search(r"\(data in (\S+)\)", text).group(1))
    assert not work.exists()  # the temporary database, keys and population are gone
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0  # the server stopped too


def test_demo_prints_true_figures_and_stops_on_ctrl_c(tmp_path):
    process, text, port = start_demo(tmp_path, MEMBERS)
    try:
        check_figures(text, tmp_path, port)
    finally:
        process.send_signal(signal.SIGINT)
        assert_stopped_cleanly(process, text, port)


def test_demo_stops_its_server_and_deletes_its_data_on_sigterm(tmp_path):
    """As `timeout`, systemd or `docker stop` stop it."""
    process, text, port = start_demo(tmp_path, 10)
    process.send_signal(signal.SIGTERM)
    assert_stopped_cleanly(process, text, port)


def check_figures(text: str, tmp_path: Path, port: int) -> None:
    truth = ground_truth(tmp_path)
    statuses = dict((s, int(n)) for s, n in re.findall(r"([a-z-]+) (\d+)", re.search(r"Members by status: (.*)", text).group(1)))
    assert statuses == dict(Counter(t["status"] for t in truth.values()))
    flows = {(e, r): (int(n), money(m)) for e, r, n, m in
             re.findall(r"^ +(\S+) -> (\S+) +(\d+) +USD ([-\d,.]+)/yr$", text, re.M)}
    expected = Counter((t["enrolled_product"], t["recommended_product"]) for t in truth.values()
                       if t["status"] == "misaligned")
    assert {k: n for k, (n, _) in flows.items()} == dict(expected)
    assert int(re.search(r"^ +total +(\d+)$", text, re.M).group(1)) == sum(expected.values())
    kinds = {k: int(n) for k, n in re.findall(r"^ +(compliance|opportunity) +(\d+) +USD [-\d,.]+/yr$", text, re.M)}
    assert kinds == dict(Counter(t["kind"] for t in truth.values() if t["status"] == "misaligned"))
    plans = {p: int(n) for p, n in re.findall(r"^ +InsurancePlan/(\S+) +(\d+) +USD [-\d,.]+/yr$", text, re.M)}
    assert plans == dict(Counter(t["recommended_plan"] for t in truth.values() if t["status"] == "misaligned"))
    smi, sud = map(int, re.search(r"Members with non-claims diagnoses .*: SMI (\d+), SUD (\d+)", text).groups())
    assert smi == sum("smi" in t["non_claims_categories"] for t in truth.values())
    assert sud == sum("sud" in t["non_claims_categories"] for t in truth.values())
    total = money(re.search(r"Total estimated annual impact \(ILLUSTRATIVE.*\): USD ([-\d,.]+)", text).group(1))
    assert total == sum(m for _, m in flows.values())

    # The printed token command works as printed, and the API agrees with the figures.
    command = re.search(r"TOKEN=\$\(planfit (token .*)\)", text).group(1)
    token = subprocess.run([sys.executable, "-m", "server.cli", *shlex.split(command)], capture_output=True,
                           text=True, timeout=60, cwd=ROOT, check=True).stdout.strip()
    base = f"http://127.0.0.1:{port}/fhir"
    groups = {cohort: (url, int(n)) for url, cohort, n in
              re.findall(r"^ +(http\S+/Group/(\S+)) +\((\d+) members\)$", text, re.M)}
    assert set(groups) == {"nonclaims-smi", "nonclaims-sud", "misaligned", "candidates-ny-harp",
                           "candidates-dsnp", "candidates-csnp"}
    with httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=60) as api:
        for cohort, (url, size) in groups.items():
            assert url == f"{base}/Group/{cohort}"
            group = api.get(url).json()
            current = [m for m in group.get("member", []) if not m.get("inactive")]  # dropped ones stay listed
            assert group["quantity"] == len(current) == size, cohort
        assert groups["misaligned"][1] == sum(expected.values())
        assert (groups["nonclaims-smi"][1], groups["nonclaims-sud"][1]) == (smi, sud)
        impact = Decimal(0)
        for member in api.get(f"{base}/Group/misaligned").json()["member"]:
            if member.get("inactive"):
                continue
            finding = api.get(f"{base}/{member['entity']['reference']}/$alignment").json()["parameter"]
            impact += sum(Decimal(str(p["valueMoney"]["value"])) for p in finding if p["name"] == "estimatedAnnualImpact")
        assert impact == total

    # The dashboard user the demo printed can sign in (the SMART app's authorize → login → consent).
    username, password = re.search(r"sign in as (\S+) / (\S+)", text).groups()
    root = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=root, timeout=60) as browser:
        page = browser.get("/auth/authorize", params={
            "response_type": "code", "client_id": "planfit-dashboard", "redirect_uri": f"{root}/app/",
            "scope": "openid fhirUser user/*.rs", "state": "s", "aud": base, "code_challenge": "x" * 43,
            "code_challenge_method": "S256"})
        assert page.status_code == 200, page.text
        request = re.search(r'name="request" value="([^"]+)"', page.text).group(1)
        consent = browser.post("/auth/login", data={"request": request, "username": username, "password": password})
        assert consent.status_code == 200 and 'value="allow"' in consent.text
