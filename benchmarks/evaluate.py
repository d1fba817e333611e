"""Full re-evaluation (`POST /fhir/$evaluate-alignment`): wall time and the server's peak memory."""

from __future__ import annotations

import time

import httpx

from benchmarks.servers import Server, expect, peak_rss_mb, reset_peak


def statuses(parameters: dict) -> dict[str, int]:
    """Member count per status from the operation's Parameters."""
    out = {}
    for p in parameters["parameter"]:
        if p["name"] == "status":
            parts = {x["name"]: x for x in p["part"]}
            out[parts["code"]["valueCode"]] = parts["count"]["valueInteger"]
    return out


def full_evaluation(server: Server, members: int, truth: dict[str, int]) -> dict:
    """One timed run; the peak RSS (VmHWM) is reset just before it, so it is the run's own peak."""
    reset_peak(server.pid)
    baseline = peak_rss_mb(server.pid)
    start = time.perf_counter()
    reply = expect(httpx.post(server.url + "/$evaluate-alignment", timeout=3600), 200, "POST $evaluate-alignment")
    seconds = time.perf_counter() - start
    got = statuses(reply.json())
    return {
        "members": members,
        "seconds": round(seconds, 2),
        "members_per_s": round(members / seconds),
        "peak_rss_mb": round(peak_rss_mb(server.pid)),
        "rss_before_mb": round(baseline),
        "statuses": got,
        "matches_ground_truth": got == truth,
    }
