"""Read-your-writes over deferred alignment: `X-PlanFit-Consistency: aligned`.

In deferred mode (`PLANFIT_ALIGNMENT_MODE=deferred`) a write's response returns before its members'
findings are re-evaluated. A request carrying `X-PlanFit-Consistency: aligned` is answered only once
every write committed before it arrived has been evaluated: findings, cohort Groups and
MeasureReports then reflect the client's own writes. If evaluation has not caught up within
`PLANFIT_ALIGNMENT_WAIT_SECONDS`, the answer is 503 (issue code `timeout`). In sync mode the header
costs one query: evaluation is already done when a write's response returns.
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import Callable

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from server.fhir.asgi import respond_error
from server.fhir.errors import FhirError

HEADER = "X-PlanFit-Consistency"
ALIGNED = "aligned"
_HEADER_KEY = HEADER.lower().encode()
Progress = Callable[[], tuple[int, int]]  # (latest committed write, txid evaluated through)


class ConsistencyMiddleware:
    def __init__(self, app: ASGIApp, progress: Progress, wait_seconds: float, interval_seconds: float = 0.02):
        self.app = app
        self.progress = progress
        self.wait_seconds = wait_seconds
        self.interval_seconds = interval_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            wanted = dict(scope["headers"]).get(_HEADER_KEY)
            if wanted is not None:
                if wanted.decode("latin-1").strip().lower() != ALIGNED:
                    await respond_error(send, FhirError.of(400, "invalid", f"{HEADER} must be '{ALIGNED}'"), [])
                    return
                if not await self._caught_up():
                    message = f"Alignment has not caught up with earlier writes within {self.wait_seconds:g} s"
                    await respond_error(send, FhirError.of(503, "timeout", message), [(b"retry-after", b"1")])
                    return
        await self.app(scope, receive, send)

    async def _caught_up(self) -> bool:
        latest, through = await run_in_threadpool(self.progress)
        deadline = monotonic() + self.wait_seconds
        while through < latest:
            if monotonic() >= deadline:
                return False
            await asyncio.sleep(self.interval_seconds)
            _, through = await run_in_threadpool(self.progress)
        return True
