"""Timestamps as Modzy writes them, and as we send them.

The API mixes ``2021-07-20T01:40:11.187+0000``, ``...+00:00`` and ``...Z``; the Edge
shapes use epoch numbers. ``datetime.fromisoformat`` on Python 3.10 takes none of the
first three reliably, so we normalise the text first.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta, timezone

# ASCII digits only (``\d`` would admit any script's digits), and a fraction only after
# the seconds: ``01:40.5`` is half a minute in ISO 8601, which ``fromisoformat`` would
# read as half a second.
_ISO = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<hm>\d{2}:\d{2})"
    r"(?::(?P<sec>\d{2})(?:[.,](?P<frac>\d{1,9}))?)?"
    r"(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?",
    re.ASCII,
)
# From 3.11 ``fromisoformat`` reads every form the pattern admits but the lowercase
# ``z``: the fast path for the dozen timestamps in each job's results.
_FROMISOFORMAT_READS_ALL = sys.version_info >= (3, 11)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def parse_timestamp(value: object) -> datetime | None:
    """Parse any timestamp form the API uses into an aware UTC-based datetime.

    Naive values are taken as UTC (the Java SDK sends them without an offset). Epoch
    numbers above 1e11 are taken as milliseconds. ``None``, ``""`` and ``0`` give ``None``.
    The result can always be converted to UTC (``astimezone``) without overflowing.

    Raises:
        ValueError: The value is not a timestamp in any form the API uses, or it is out
            of the range of ``datetime``. Never another exception, whatever the value.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return _in_range(value if value.tzinfo else value.replace(tzinfo=timezone.utc))
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)):
        if value == 0:
            # The Edge shapes use 0 for "not set".
            return None
        return _from_epoch(value)
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: a {type(value).__name__}")
    value = value.strip()
    match = _ISO.fullmatch(value)
    if match is None:
        raise ValueError(f"not an ISO-8601 timestamp: {value[:64]!r}")
    if _FROMISOFORMAT_READS_ALL and not value.endswith("z"):
        parsed = datetime.fromisoformat(value)
        return _in_range(parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc))
    time = f"{match['hm']}:{match['sec'] or '00'}"
    frac = (match["frac"] or "0")[:6].ljust(6, "0")
    tz = match["tz"] or "+00:00"
    if tz in ("Z", "z"):
        tz = "+00:00"
    elif len(tz) == 3:
        tz += ":00"
    elif ":" not in tz:
        tz = f"{tz[:3]}:{tz[3:]}"
    return _in_range(datetime.fromisoformat(f"{match['date']}T{time}.{frac}{tz}"))


def _from_epoch(value: float) -> datetime:
    # Exact arithmetic from the epoch rather than ``datetime.fromtimestamp``: that one
    # divides milliseconds in floating point (a microsecond off for some values), is
    # bounded by the platform's time_t, and raises OverflowError or OSError beyond it.
    try:
        if value > 1e11:
            return _EPOCH + timedelta(milliseconds=value)
        return _EPOCH + timedelta(seconds=value)
    except (OverflowError, ValueError):  # out of range, infinite or NaN
        raise ValueError("epoch timestamp out of range, or not a number") from None


def _in_range(parsed: datetime) -> datetime:
    # 0001-01-01T00:00+05:00 is a valid datetime whose UTC instant is not: comparing or
    # converting it later would raise OverflowError far from here. Only the first and
    # last years can be affected, so the common case costs one comparison.
    if parsed.year in (1, 9999):
        try:
            parsed.astimezone(timezone.utc)
        except OverflowError:
            raise ValueError("timestamp out of range in UTC") from None
    return parsed


def format_query_timestamp(value: datetime) -> str:
    """Format an aware datetime for the history query: UTC, milliseconds, ``Z``.

    ``Z`` rather than ``+00:00`` because a ``+`` in a query string is read as a space
    by some servers when a client forgets to escape it.
    """
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
