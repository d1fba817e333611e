"""The audit figures (issue 22): the worklist's filtered, sorted page at the population's size, and the
population computations (quarter close, encounter completeness, denial classification) in members/s.

Each worklist filter set is read as a user pages it: the first page, then `DEEP` pages further by the next
cursors; the figure is the median of `REPEATS` timed reads of the first and of the deep page (after one
untimed read that warms the connection and the plan cache). SPEC §8: interactive pages ≤ 500 ms; every
population computation ≥ 10,000 members/s. The computations run over the whole database: the alignment
population plus the audit population (`planfit synth`'s `audit/` part, with its claims and denied EOBs),
which `audit_bundles` writes and the bench ingests first.
"""

from __future__ import annotations

import statistics
import time
from datetime import date
from pathlib import Path

import httpx
import orjson

from benchmarks.ingest import Bundle
from benchmarks.servers import AS_OF, KINDS, Server, expect, peak_rss_mb, reset_peak
from server.synth import audit as audit_synth
from server.audit.quarter import Quarter

# One set per filter alone (each over the default statuses but `status`), then combinations.
FILTER_SETS: tuple[dict[str, str], ...] = (
    {},  # misaligned or review, the default
    {"status": "review"},
    {"kind": "enrolled-not-eligible"},
    {"enrolled": "ny-mmc"},
    {"recommended": "ny-harp"},
    {"lob": "medicare"},
    {"plan": "HARP"},
    {"category": "smi"},
    {"source": "claims"},
    {"status": "misaligned", "recommended": "ny-harp", "plan": "MMC"},
    {"status": "misaligned,review,aligned", "lob": "medicare"},
    {"category": "smi", "source": "clinical"},
    {"status": "aligned,misaligned,review,not-evaluable", "category": "csnp-diabetes"},
)
PAGE = "50"
DEEP = 20
REPEATS = 5


def _page(http: httpx.Client, url: str, params: dict[str, str]) -> tuple[float, dict]:
    start = time.perf_counter()
    reply = expect(http.get(url, params=params), 200, "GET Patient/$worklist")
    return time.perf_counter() - start, reply.json()


def _next(body: dict) -> str | None:
    return next((p["valueString"] for p in body["parameter"] if p["name"] == "next"), None)


def _median_ms(http: httpx.Client, url: str, params: dict[str, str]) -> float:
    _page(http, url, params)
    return round(statistics.median(_page(http, url, params)[0] for _ in range(REPEATS)) * 1000, 1)


def worklist(server: Server) -> dict:
    url = server.url + "/Patient/$worklist"
    rows = []
    with httpx.Client(timeout=60) as http:
        for filters in FILTER_SETS:
            params = {**filters, "_count": PAGE}
            _seconds, body = _page(http, url, params)
            total = body["parameter"][0]["valueInteger"]
            first_ms = _median_ms(http, url, params)
            deep = None
            cursor, depth = _next(body), 1
            while cursor and depth <= DEEP:
                _seconds, body = _page(http, url, {**params, "_cursor": cursor})
                cursor, depth = _next(body), depth + 1
            if depth > DEEP and cursor:
                deep = _median_ms(http, url, {**params, "_cursor": cursor})
            rows.append({"filters": filters or {"status": "misaligned,review"}, "total": total,
                         "first_page_ms": first_ms, f"page_{DEEP + 1}_ms": deep})
    slowest = max(max(r["first_page_ms"], r[f"page_{DEEP + 1}_ms"] or 0) for r in rows)
    return {"page_size": int(PAGE), "slowest_ms": slowest, "filter_sets": rows}


# -- population computations -----------------------------------------------------------------------------

def audit_bundles(members: int, out: Path) -> list[Bundle]:
    """The audit population's clinical and claims bundles (the changes are not posted: one quarter)."""
    audit_synth.generate(members, 1, out, date.fromisoformat(AS_OF))
    return [Bundle(kind, path, len(orjson.loads(path.read_bytes())["entry"]))
            for kind in KINDS for path in sorted((out / kind).glob("bundle-*.json"))]


def _count(element: dict, code: str) -> int:
    return next(p["count"] for p in element["population"] if p["code"]["coding"][0]["code"] == code)


def _timed(server: Server, members: int, method: str, path: str, params: dict[str, str], what: str) -> tuple[dict, dict]:
    reset_peak(server.pid)
    start = time.perf_counter()
    reply = expect(httpx.request(method, server.url + path, params=params, timeout=3600), 200, what)
    seconds = time.perf_counter() - start
    return reply.json(), {"members": members, "seconds": round(seconds, 2), "members_per_s": round(members / seconds),
                          "peak_rss_mb": round(peak_rss_mb(server.pid))}


def audit_quarter(server: Server, members: int) -> dict:
    """Close the quarter of the evaluation date: snapshot, strata, reconciliation, stored report."""
    quarter = str(Quarter.of(date.fromisoformat(AS_OF)))
    report, figures = _timed(server, members, "POST", "/Measure/product-alignment/$audit-quarter", {"quarter": quarter},
                             "POST $audit-quarter")
    return {**figures, "quarter": quarter, "misaligned": _count(report["group"][0], "numerator")}


def completeness(server: Server, members: int) -> dict:
    """Encounter completeness over the twelve months up to the evaluation date."""
    report, figures = _timed(server, members, "GET", "/Measure/encounter-completeness/$completeness", {},
                             "GET $completeness")
    group = report["group"][0]
    return {**figures, "records": _count(group, "initial-population"), "matched": _count(group, "numerator"),
            "strata": len(group.get("stratifier", [{}])[0].get("stratum", []))}


def denials(server: Server, members: int) -> dict:
    """Classify every denied EOB line (findings as of each date of service)."""
    report, figures = _timed(server, members, "POST", "/ExplanationOfBenefit/$denial-root-cause", {},
                             "POST $denial-root-cause")
    group = report["group"][0]
    return {**figures, "denied_lines": _count(group, "initial-population"),
            "product_mismatch_lines": _count(group, "numerator")}
