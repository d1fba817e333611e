"""The largest cohort Group: its read time, and Group/$export throughput (kick-off to downloaded files)."""

from __future__ import annotations

import time

import httpx

from benchmarks.servers import Server, StageFailed, expect
from server.bulk.client import BulkClient, ExportFailed, ExportRequest, kick_off

# The server-maintained cohort Groups (SPEC §5).
COHORT_IDS = ("nonclaims-smi", "nonclaims-sud", "misaligned", "candidates-ny-harp", "candidates-dsnp",
              "candidates-csnp")
_READS = 3


def largest_cohort(server: Server) -> tuple[str, int]:
    """(id, quantity) of the cohort Group with the most members."""
    sizes = {}
    with httpx.Client(timeout=600) as http:
        for cohort in COHORT_IDS:
            group = expect(http.get(f"{server.url}/Group/{cohort}"), 200, f"GET Group/{cohort}").json()
            if not isinstance(group.get("quantity"), int):
                raise StageFailed(f"Group/{cohort} has no quantity")
            sizes[cohort] = group["quantity"]
    cohort = max(sizes, key=sizes.__getitem__)
    return cohort, sizes[cohort]


def group_read(server: Server) -> dict:
    cohort, quantity = largest_cohort(server)
    times = []
    with httpx.Client(timeout=600) as http:
        for _ in range(_READS):
            start = time.perf_counter()
            reply = expect(http.get(f"{server.url}/Group/{cohort}"), 200, f"GET Group/{cohort}")
            times.append(time.perf_counter() - start)
    members = len(reply.json().get("member", []))
    return {"group": cohort, "quantity": quantity, "members_listed": members, "bytes": len(reply.content),
            "seconds": round(min(times), 3), "seconds_each": [round(t, 3) for t in times]}


def _manifest(http: httpx.Client, status_url: str) -> dict:
    """Polls every 50 ms so the end is seen at once (the 429s this earns do not slow the job)."""
    while True:
        reply = http.get(status_url, headers={"Accept": "application/json"})
        if reply.status_code == 200:
            return reply.json()
        if reply.status_code not in (202, 429):
            raise StageFailed(f"export status: HTTP {reply.status_code} {reply.text[:200]}")
        time.sleep(0.05)


def group_export(server: Server, cohort: str) -> dict:
    """Kick-off → manifest → every file downloaded; the rate counts the resources the manifest lists."""
    with httpx.Client(timeout=600) as http:
        start = time.perf_counter()
        try:
            status_url = kick_off(BulkClient(http, lambda: None), server.url, ExportRequest(cohort, []))
        except ExportFailed as exc:
            raise StageFailed(str(exc)) from None
        manifest = _manifest(http, status_url)
        ready = time.perf_counter() - start
        size = 0
        for item in manifest["output"]:
            with http.stream("GET", item["url"], headers={"Accept": "application/fhir+ndjson"}) as reply:
                expect(reply, 200, f"GET {item['url']}")
                for chunk in reply.iter_bytes(1 << 20):
                    size += len(chunk)
        seconds = time.perf_counter() - start
    count = sum(item.get("count", 0) for item in manifest["output"])
    return {"group": cohort, "resources": count, "files": len(manifest["output"]), "bytes": size,
            "seconds_to_manifest": round(ready, 2), "seconds": round(seconds, 2),
            "resources_per_s": round(count / seconds), "resources_per_s_to_manifest": round(count / ready)}
