"""The audit population against its ground truth (issue 22's "done when": at 5,000 members), on both
databases: `planfit bench`'s `audit_truth` stage, or alone with `python -m benchmarks.audit_truth`.

The population (`server/synth/audit.py`) is loaded over HTTP as the feeds would send it (clinical bundles
to the clinical feed's server, claims to the claims feed's), the previous quarter closed, the next
quarter's changes posted, the current quarter closed and the denials classified; then the quarter-over-
quarter reconciliation, the encounter completeness and the denial classification are read back as CSV
and compared with the ground truth. tests/audit/test_audit_synth.py runs the same steps at 1,000 members (CI
time); this checks the full size and prints how long the set-up took per database.

The server may hold other members (the tests' server does): each comparison is over this population's
members, EOBs and organizations.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import tempfile
import time
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from benchmarks.command import DEFAULT_DSN
from benchmarks.servers import AS_OF, expect, postgres_schema, running
from server.synth.audit import MEMBER_SYSTEM, ORG_SYSTEM, generate

MEMBERS = 5000
SEED = 2222
AUDIT = "/Measure/product-alignment/$audit-quarter"
DENIALS = "/ExplanationOfBenefit/$denial-root-cause"
COMPLETENESS = "/Measure/encounter-completeness/$completeness"


def post_feed(c: httpx.Client, directory: Path) -> None:
    """Post every bundle of one feed folder, in order, as transactions; each must succeed."""
    for path in sorted(directory.glob("bundle-*.json")):
        expect(c.post("", content=path.read_bytes(), timeout=600), 200, f"POST {directory.name}/{path.name}")


def identifiers(c: httpx.Client, system: str, rtype: str) -> dict[str, str]:
    """Resource id → identifier value of the resources with an identifier of `system`."""
    out: dict[str, str] = {}
    url: str | None = f"/{rtype}?identifier={system}|&_count=1000"
    while url:
        bundle = expect(c.get(url), 200, f"GET {rtype} by identifier").json()
        for entry in bundle.get("entry", []):
            resource = entry["resource"]
            if resource["resourceType"] == rtype:
                out[resource["id"]] = resource["identifier"][0]["value"]
        url = next((link["url"] for link in bundle["link"] if link["relation"] == "next"), None)
    return out


def csv_rows(c: httpx.Client, url: str, **params: str) -> list[dict[str, str]]:
    reply = expect(c.get(url, params={**params, "_format": "csv"}, timeout=600), 200, f"GET {url} as CSV")
    return list(csv.DictReader(io.StringIO(reply.text)))


def classify_denials(c: httpx.Client) -> None:
    """POST $denial-root-cause. On a busy machine the run can outlast the server's request timeout (503
    `timeout`; the run goes on): then wait for the report it stores, dated after the POST."""
    before = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"  # as MeasureReport.date
    run = c.post(DENIALS, timeout=600)
    if run.status_code == 503 and run.json()["issue"][0]["code"] == "timeout":
        for _ in range(720):
            report = c.get(DENIALS)
            if report.status_code == 200 and report.json()["date"] >= before:
                return
            time.sleep(5)
    expect(run, 200, "POST $denial-root-cause")


def load(clinical: httpx.Client, claims: httpx.Client, out: Path, truth: dict[str, Any]) -> dict[str, dict[str, str]]:
    """Load the population written under `out` and run the audit steps; returns the resource ids of its
    members (`members`) and organizations (`organizations`, as `Organization/<id>`) → identifier."""
    post_feed(clinical, out / "clinical")
    post_feed(claims, out / "claims")
    expect(clinical.post(AUDIT, params={"quarter": truth["quarters"]["previous"]}, timeout=600), 200, "close previous")
    post_feed(clinical, out / "changes")
    expect(clinical.post(AUDIT, params={"quarter": truth["quarters"]["current"]}, timeout=600), 200, "close current")
    classify_denials(clinical)
    organizations = identifiers(clinical, ORG_SYSTEM, "Organization")
    return {"members": identifiers(clinical, MEMBER_SYSTEM, "Patient"),
            "organizations": {f"Organization/{oid}": ident for oid, ident in organizations.items()}}


def reconciliation(c: httpx.Client, truth: dict[str, Any], members: dict[str, str]) -> dict[str, list[str]]:
    """The current quarter's new, resolved and persisting members, as the ground truth lists them."""
    shown: dict[str, set[str]] = {change: set() for change in truth["reconciliation"]}
    for row in csv_rows(c, AUDIT, quarter=truth["quarters"]["current"], part="changes"):
        ident = members.get(row["patient"].split("/", 1)[1])
        if ident:
            shown[row["change"]].add(ident)
    return {change: sorted(found) for change, found in shown.items()}


def completeness(c: httpx.Client, truth: dict[str, Any], organizations: dict[str, str]) -> list[dict[str, Any]]:
    """The completeness rows of the population's organizations, in the ground truth's terms and order."""
    period = truth["completeness"]
    shown = []
    for row in csv_rows(c, COMPLETENESS, periodStart=period["period"]["start"], periodEnd=period["period"]["end"],
                        window=str(period["window"])):
        organization = organizations.get(row["source"])
        if organization:
            shown.append({"organization": organization, "month": row["month"],
                          **{k: int(row[k]) for k in ("conditions", "conditions_matched", "encounters", "encounters_matched")},
                          "lag_p50": int(row["lag_p50_days"]) if row["lag_p50_days"] else None,
                          "lag_p90": int(row["lag_p90_days"]) if row["lag_p90_days"] else None})
    return sorted(shown, key=lambda r: (r["organization"], r["month"]))


def denials(c: httpx.Client, members: dict[str, str]) -> dict[str, str]:
    """`<member>#<line sequence>` → classification of the population's denied lines."""
    shown = {}
    for row in csv_rows(c, DENIALS, part="lines"):
        ident = members.get(row["patient"].split("/", 1)[1])
        if ident:
            shown[f"{ident}#{row['sequence']}"] = row["classification"]
    return shown


def check(database_url: str, work: Path, members: int) -> dict[str, Any]:
    """Generate, load and compare on fresh servers over `database_url`: set-up seconds and each match."""
    truth = generate(members, seed=SEED, out=work / "population", as_of=date.fromisoformat(AS_OF))
    headers = {"Content-Type": "application/fhir+json"}
    with running(database_url, work / "exports", "sync") as servers, \
            httpx.Client(base_url=servers["clinical"].url, headers=headers, timeout=600) as clinical, \
            httpx.Client(base_url=servers["claims"].url, headers=headers, timeout=600) as claims:
        start = time.perf_counter()
        ids = load(clinical, claims, work / "population", truth)
        setup = time.perf_counter() - start
        return {"members": members, "members_found": len(ids["members"]), "setup_seconds": round(setup, 1),
                "reconciliation": reconciliation(clinical, truth, ids["members"]) == truth["reconciliation"],
                "completeness": completeness(clinical, truth, ids["organizations"]) == truth["completeness"]["rows"],
                "denials": denials(clinical, ids["members"]) == truth["denials"]}


def check_both(dsn: str, work: Path, members: int = MEMBERS) -> dict[str, Any]:
    """`check` on a fresh PostgreSQL schema and on a fresh SQLite file."""
    with postgres_schema(dsn) as url:
        postgresql = check(url, work / "postgresql", members)
    return {"postgresql": postgresql, "sqlite": check(f"sqlite:///{work / 'audit-truth.db'}", work / "sqlite", members)}


def matched(figures: dict[str, Any]) -> bool:
    return all(db["members_found"] == db["members"] and db["reconciliation"] and db["completeness"] and db["denials"]
               for db in figures.values() if isinstance(db, dict))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=MEMBERS)
    parser.add_argument("--database-url", default=DEFAULT_DSN, help=f"PostgreSQL (default {DEFAULT_DSN})")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="planfit-audit-truth-") as tmp:
        figures = check_both(args.database_url, Path(tmp), args.members)
    for database, db in figures.items():
        print(f"{database}: {db['members']:,} members, set-up {db['setup_seconds']} s; reconciliation "
              f"{'matches' if db['reconciliation'] else 'DIFFERS'}, completeness "
              f"{'matches' if db['completeness'] else 'DIFFERS'}, denials {'match' if db['denials'] else 'DIFFER'}")
    return 0 if matched(figures) else 1


if __name__ == "__main__":
    sys.exit(main())
