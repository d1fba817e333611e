"""One request per unit, retried while the failure is transient.

Transient: no connection or no complete answer, 429 (waiting as long as `Retry-After` says), 500, 502,
503 (with `Retry-After` if given) and 504 - with exponential backoff and jitter otherwise. Any other 4xx
is a rejection, reported with the server's OperationOutcome; a batch whose entries failed one by one
reports each failed entry with its own outcome.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

import httpx

from server.bulk.client import BulkClient

TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class Retry:
    attempts: int = 8
    base_seconds: float = 0.5
    max_seconds: float = 30.0

    def backoff(self, attempt: int) -> float:
        return min(self.max_seconds, self.base_seconds * 2 ** attempt) * random.uniform(0.5, 1.0)


@dataclass
class Rejection:
    status: int
    outcome: dict
    entry: int | None = None  # index of the failed entry of a batch; None for the whole request


@dataclass
class Outcome:
    status: int  # the final HTTP status; 0 when no answer came
    rejections: list[Rejection] = field(default_factory=list)
    retries: int = 0

    @property
    def ok(self) -> bool:
        """Finished: the server took the request (entries of a batch may still have been rejected)."""
        return 200 <= self.status < 300


def retry_after(response: httpx.Response) -> float | None:
    """Seconds to wait from `Retry-After` (delta-seconds or an HTTP date), if present and sensible."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def outcome_of(response: httpx.Response) -> dict:
    """The response's OperationOutcome, or one made up from its text when the server sent none."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("resourceType") == "OperationOutcome":
        return data
    text = response.text[:2000] or response.reason_phrase
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "processing",
                                                           "diagnostics": text}]}


def local_outcome(message: str) -> dict:
    return {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception",
                                                           "diagnostics": message}]}


def diagnostics(outcome: dict) -> str:
    issues = outcome.get("issue") or []
    return "; ".join(str(i.get("diagnostics") or i.get("details", {}).get("text") or i.get("code", "")) for i in issues)


def batch_rejections(response: httpx.Response) -> list[Rejection]:
    """Failed entries of a batch-response (a transaction-response has none: it is all or nothing)."""
    try:
        bundle = response.json()
    except ValueError:
        return []
    if not isinstance(bundle, dict) or bundle.get("type") != "batch-response":
        return []
    failed = []
    for index, entry in enumerate(bundle.get("entry") or []):
        answer = entry.get("response") or {}
        status = int(str(answer.get("status", "0")).split(" ", 1)[0] or 0)
        if not 200 <= status < 300:
            failed.append(Rejection(status, answer.get("outcome") or local_outcome(str(answer.get("status"))), index))
    return failed


def post(client: BulkClient, fhir_base: str, body: bytes, retry: Retry) -> Outcome:
    """POST a bundle to the FHIR base, retrying transient failures; never raises for HTTP outcomes."""
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON, "Prefer": "return=minimal"}
    last = Outcome(0)
    for attempt in range(retry.attempts):
        wait = retry.backoff(attempt)
        try:
            response = client.request("POST", fhir_base, content=body, headers=headers)
        except httpx.TransportError as exc:
            last = Outcome(0, [Rejection(0, local_outcome(f"{type(exc).__name__}: {exc}"))], attempt)
        else:
            if response.status_code not in TRANSIENT_STATUS:
                rejections = batch_rejections(response) if response.is_success else [
                    Rejection(response.status_code, outcome_of(response))]
                return Outcome(response.status_code, rejections, attempt)
            last = Outcome(response.status_code, [Rejection(response.status_code, outcome_of(response))], attempt)
            wait = retry_after(response) or wait
        if attempt + 1 < retry.attempts:
            time.sleep(min(wait, retry.max_seconds * 2))
    return last
