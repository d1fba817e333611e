"""Risk adjustment and capitation (SPEC §8, §10), set-based over every member; wall time, members per second
over the whole population, CPU seconds (the server process and its PostgreSQL backends), peak memory:

* `risk_evaluation`: `POST /fhir/$risk-evaluate`, RAF scores and the coding-gap totals of every member;
* `capitation`: `POST /fhir/$capitation-adjustment` with every row's member months derived from Coverage and
  attribution (`deriveMemberMonths`), which counts the member months of every member. In `planfit bench` it
  runs after the roster stage, whose lists attribute every member to `Organization/bench-clinic`.

Standalone, on a schema kept by `benchmarks.evaluate_scale --keep` (or a copy of its database):

    python -m benchmarks.risk --database-url postgresql://postgres@127.0.0.1:5432/DB --schema bench_1234abcd [--attribute]

starts the bench servers on it (the code of this checkout) and runs both; `--attribute` first imports a roster
list naming every member (as the roster stage does), so that capitation has member months to count.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson
import psycopg

from benchmarks import rosters
from benchmarks.servers import AS_OF, Server, expect, peak_rss_mb, reset_peak, running, schema_url

# The lines of business of mappings/products.json, at the synthetic risk population's PMPM rates.
_LOB_RATES = (("medicare", 1250), ("dual", 1900), ("medicaid", 575), ("commercial", 650))
BENCH_PROVIDER = "bench-clinic"  # the managing entity of the roster stage's lists (benchmarks/rosters.py)


def _timed(server: Server, database_url: str | None, call) -> tuple[httpx.Response, dict]:
    cpu = rosters._Cpu(server, database_url)  # the roster benchmark's CPU reader, shared
    reset_peak(server.pid)
    before, start = cpu.seconds(), time.perf_counter()
    reply = call()
    seconds = time.perf_counter() - start
    return reply, {"seconds": round(seconds, 2), "cpu_seconds": round(cpu.seconds() - before, 2),
                   "load_1min": round(os.getloadavg()[0], 1), "peak_rss_mb": round(peak_rss_mb(server.pid))}


def risk_evaluation(server: Server, members: int, payment_year: int, database_url: str | None = None) -> dict:
    reply, figures = _timed(server, database_url, lambda: expect(httpx.post(
        server.url + "/$risk-evaluate", params={"paymentYear": str(payment_year)}, timeout=3600), 200, "POST $risk-evaluate"))
    values = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in reply.json()["parameter"]}
    return {
        "members": members,
        "payment_year": payment_year,
        "scored": values["members"],
        "members_per_s": round(members / figures["seconds"]),
        "open_gaps": values["openHistoricGaps"] + values["openSuspectedGaps"],
        "closed_gaps": values["closedGaps"],
        "pending_gaps": values["pendingGaps"],
        **figures,
    }


def capitation(server: Server, members: int, database_url: str | None = None) -> dict:
    """One rates row per line of business for the bench provider, every row's member months derived; the base
    year is the evaluation date's (the roster stage's lists attribute from its 1 January)."""
    rates = "provider,lob,pmpm,base_risk,year1_risk\n" + "".join(
        f"{BENCH_PROVIDER},{lob},{pmpm},1.0,1.05\n" for lob, pmpm in _LOB_RATES)
    reply, figures = _timed(server, database_url, lambda: expect(httpx.post(
        server.url + "/$capitation-adjustment", content=rates.encode(), timeout=3600,
        params={"deriveMemberMonths": "true", "baseYear": AS_OF[:4]}, headers={"Content-Type": "text/csv", "Accept": "text/csv"}),
        200, "POST $capitation-adjustment"))
    lines = reply.text.splitlines()
    header = lines[0].split(",")
    month_column, approach_column = header.index("member_months"), header.index("approach")
    months = sum(float(line.split(",")[month_column]) for line in lines[1:]
                 if line.split(",")[approach_column] == "non-revenue-neutral")
    return {"members": members, "base_member_months": round(months), "members_per_s": round(members / figures["seconds"]),
            **figures}


def attribute_everyone(server: Server, member_ids: list[str], member_system: str) -> None:
    """A roster list managed by the bench provider naming every member, as the roster stage imports."""
    with httpx.Client(timeout=600, headers={"Content-Type": "application/fhir+json"}) as http:
        gid = rosters._new_list(http, server.url, "bench attribution")
        body = rosters._parameters(file=("valueAttachment", rosters._payer_file(member_ids)),
                                   memberIdSystem=("valueUri", member_system))
        expect(http.post(f"{server.url}/Group/{gid}/$roster-import", json=body), 200, "roster import")


def _member_ids(dsn: str, schema: str, system: str) -> list[str]:
    with psycopg.connect(dsn, options=f"-csearch_path={schema}") as conn:
        return [v for (v,) in conn.execute("SELECT DISTINCT code FROM idx_token WHERE rtype = 'Patient' AND system = %s",
                                           (system,))]


def main(argv: list[str] | None = None) -> int:
    from server.synth import MEMBER_SYSTEM

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--schema", required=True)
    parser.add_argument("--attribute", action="store_true", help="first import a roster list naming every member")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    url = schema_url(args.database_url, args.schema)
    ids = _member_ids(args.database_url, args.schema, MEMBER_SYSTEM)
    with tempfile.TemporaryDirectory(prefix="planfit-risk-") as tmp, \
            running(url, Path(tmp) / "exports", "deferred") as servers:
        clinical = servers["clinical"]
        if args.attribute:
            attribute_everyone(clinical, ids, MEMBER_SYSTEM)
        for _ in range(args.repeat):
            for name, figures in (("risk", risk_evaluation(clinical, len(ids), int(AS_OF[:4]), url)),
                                  ("capitation", capitation(clinical, len(ids), url))):
                print(name, orjson.dumps(figures).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
