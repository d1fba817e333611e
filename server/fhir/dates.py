"""FHIR date, dateTime and instant values as closed microsecond ranges.

A FHIR date has a precision: `2020` means the whole year. Search compares ranges, so every value
becomes [lo, hi] in microseconds since the epoch (UTC; values without a zone are read as UTC).
"""

from __future__ import annotations

import calendar
import re
from datetime import datetime, timezone

_US = 1_000_000
_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?"
    r"(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


class DateValueError(ValueError):
    """The text is not a FHIR date, dateTime or instant."""


def date_range(text: str) -> tuple[int, int]:
    """[lo, hi] in epoch microseconds covering the value at its stated precision."""
    m = _DATE_RE.match(text)
    if not m:
        raise DateValueError("not a FHIR date/dateTime")
    y = int(m["y"])
    mo = int(m["m"]) if m["m"] else None
    d = int(m["d"]) if m["d"] else None
    try:
        if mo is None:
            lo = _epoch_us(y, 1, 1)
            return lo, _epoch_us(y + 1, 1, 1) - 1
        if not 1 <= mo <= 12:
            raise DateValueError("month out of range")
        if d is None:
            days = calendar.monthrange(y, mo)[1]
            lo = _epoch_us(y, mo, 1)
            return lo, lo + days * 86_400 * _US - 1
        if m["H"] is None:
            lo = _epoch_us(y, mo, d)
            return lo, lo + 86_400 * _US - 1
        hour, minute = int(m["H"]), int(m["M"])
        second = int(m["S"]) if m["S"] else None
        frac = m["f"]
        micro = int((frac + "000000")[:6]) if frac else 0
        stamp = datetime(y, mo, d, hour, minute, second or 0, micro, tzinfo=timezone.utc)
    except ValueError as exc:
        raise DateValueError(str(exc)) from None
    offset = _offset_seconds(m["tz"])
    lo = int(stamp.timestamp()) * _US + micro - offset * _US
    if second is None:
        return lo, lo + 60 * _US - 1
    if frac:
        step = 10 ** max(0, 6 - len(frac))
        return lo, lo + step - 1
    return lo, lo + _US - 1


def _epoch_us(y: int, mo: int, d: int) -> int:
    return int(datetime(y, mo, d, tzinfo=timezone.utc).timestamp()) * _US


def _offset_seconds(tz: str | None) -> int:
    if not tz or tz == "Z":
        return 0
    sign = -1 if tz[0] == "-" else 1
    return sign * (int(tz[1:3]) * 3600 + int(tz[4:6]) * 60)


def instant_text(epoch_us: int) -> str:
    """FHIR instant with millisecond precision, e.g. 2026-11-23T09:00:00.123Z."""
    stamp = datetime.fromtimestamp(epoch_us / _US, tz=timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{stamp.microsecond // 1000:03d}Z"


def http_date(epoch_us: int) -> str:
    stamp = datetime.fromtimestamp(epoch_us / _US, tz=timezone.utc)
    return stamp.strftime("%a, %d %b %Y %H:%M:%S GMT")
