"""The audit pages (issue 22): the worklist's filtered, sorted page at the population's size.

Each filter set is read as a user pages it: the first page, then `DEEP` pages further by the next
cursors; the figure is the median of `REPEATS` timed reads of the first and of the deep page (after one
untimed read that warms the connection and the plan cache). SPEC §8: interactive pages ≤ 500 ms.
"""

from __future__ import annotations

import statistics
import time

import httpx

from benchmarks.servers import Server, expect

FILTER_SETS: tuple[dict[str, str], ...] = (
    {},  # misaligned or review, the default
    {"status": "misaligned", "recommended": "ny-harp"},
    {"kind": "enrolled-not-eligible"},
    {"status": "misaligned,review,aligned", "lob": "medicare"},
    {"plan": "HARP"},
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
