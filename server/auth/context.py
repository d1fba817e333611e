"""The SMART request in progress, for code that runs below the REST layer.

The resource store's write guards and after-commit listeners are registered once per service and
receive no request. They learn which token is writing, and which audit record to complete, from
this context variable, which the auth middleware sets for each FHIR request (worker threads started
with `run_in_threadpool` run in a copy of the request's context, so they see it too).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from server.auth.access import SmartAccess
from server.auth.audit import AuditRecord


@dataclass(frozen=True)
class RequestScope:
    access: SmartAccess | None  # None when authorization is off
    audit: AuditRecord


CURRENT: ContextVar[RequestScope | None] = ContextVar("planfit_smart_request", default=None)
