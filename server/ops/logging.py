"""Log format of `planfit serve`: one JSON object per line (PLANFIT_LOG_FORMAT=json) or plain text.

Every record carries the id of the request it was logged in (a context variable set by the request
middleware, which the thread pool inherits). Request lines carry method, route *template*, status and
duration, never the raw path, query string or body: those can hold identifiers and names (PHI).
Exceptions are logged as their type and stack frames only, because exception messages can quote data.
"""

from __future__ import annotations

import logging
import traceback
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any

import orjson

REQUEST_ID: ContextVar[str | None] = ContextVar("planfit_request_id", default=None)
# Fields a request line adds to its record (`extra=`), in output order.
REQUEST_FIELDS = ("method", "route", "status", "duration_ms")


class RequestIdFilter(logging.Filter):
    """Stamp every record with the current request id (None outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        for name in REQUEST_FIELDS:
            if hasattr(record, name):
                entry[name] = getattr(record, name)
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
            entry["stack"] = "".join(traceback.format_tb(record.exc_info[2]))
        return orjson.dumps(entry).decode()


class TextFormatter(logging.Formatter):
    """`time level logger message [request id]`; exceptions as type and frames, like the JSON form."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        saved = record.exc_info, record.exc_text
        record.exc_info, record.exc_text = None, None
        try:
            line = super().format(record)
        finally:
            record.exc_info, record.exc_text = saved
        request_id = getattr(record, "request_id", None)
        if request_id:
            line += f" [{request_id}]"
        if record.exc_info and record.exc_info[0] is not None:
            line += f"\n{record.exc_info[0].__name__}\n" + "".join(traceback.format_tb(record.exc_info[2]))
        return line


def logging_config(log_format: str, level: str) -> dict[str, Any]:
    """A `logging.config.dictConfig` for uvicorn's `log_config`: uvicorn's and PlanFit's loggers (and
    the root logger, for libraries) write to stderr in the chosen format."""
    # By name: the config is pickled to each worker process, and resolved there.
    formatter = f"{__name__}.{'JsonFormatter' if log_format == 'json' else 'TextFormatter'}"
    handler = {"class": "logging.StreamHandler", "formatter": "planfit", "filters": ["request_id"],
               "stream": "ext://sys.stderr"}
    level = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"planfit": {"()": formatter}},
        "handlers": {"default": handler},
        "root": {"handlers": ["default"], "level": "WARNING"},
        "loggers": {
            name: {"handlers": ["default"], "level": level, "propagate": False}
            for name in ("planfit", "uvicorn", "uvicorn.error", "uvicorn.access")
        },
    }
