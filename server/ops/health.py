"""Liveness and readiness probes, open without a token (they reveal nothing but up/down).

`GET /healthz` answers 200 while the process serves HTTP. `GET /readyz` answers 200 only when the
database answers and its schema is at the migrations this code expects, else 503: a load balancer
then routes around a process whose database is down or not yet migrated.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from server.store.db import schema_is_current

log = logging.getLogger("planfit.ops")
router = APIRouter()


@router.get("/healthz", include_in_schema=False)
async def healthz() -> JSONResponse:
    return JSONResponse({"status": "ok"})


def readiness(db: Engine) -> str | None:
    """None when ready, else the reason (without the driver's message, which may name hosts and users)."""
    try:
        current = schema_is_current(db)
    except SQLAlchemyError as exc:
        log.warning("readiness: database unreachable (%s)", type(exc).__name__)
        return "database unreachable"
    return None if current else "database schema is not at the expected migrations"


@router.get("/readyz", include_in_schema=False)
async def readyz(request: Request) -> JSONResponse:
    reason = await run_in_threadpool(readiness, request.app.state.store.engine)
    if reason is None:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
