"""Risk adjustment (`POST /fhir/$risk-evaluate`): CMS-HCC scores and coding gaps of every member,
set-based (SPEC §8, §10); wall time, members per second over the whole population, peak memory."""

from __future__ import annotations

import time

import httpx

from benchmarks.servers import Server, expect, peak_rss_mb, reset_peak


def risk_evaluation(server: Server, members: int, payment_year: int) -> dict:
    reset_peak(server.pid)
    start = time.perf_counter()
    reply = expect(httpx.post(server.url + "/$risk-evaluate", params={"paymentYear": str(payment_year)}, timeout=3600),
                   200, "POST $risk-evaluate")
    seconds = time.perf_counter() - start
    values = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in reply.json()["parameter"]}
    return {
        "members": members,
        "payment_year": payment_year,
        "scored": values["members"],
        "seconds": round(seconds, 2),
        "members_per_s": round(members / seconds),
        "open_gaps": values["openHistoricGaps"] + values["openSuspectedGaps"],
        "closed_gaps": values["closedGaps"],
        "pending_gaps": values["pendingGaps"],
        "peak_rss_mb": round(peak_rss_mb(server.pid)),
    }
