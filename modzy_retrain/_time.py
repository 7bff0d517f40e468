"""Timestamps as Modzy writes them, and as we send them.

The API mixes ``2021-07-20T01:40:11.187+0000``, ``...+00:00`` and ``...Z``; the Edge
shapes use epoch numbers. ``datetime.fromisoformat`` on Python 3.10 takes none of the
first three reliably, so we normalise the text first.
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timezone

_ISO = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})[T ](?P<time>\d{2}:\d{2}(?::\d{2})?)"
    r"(?:[.,](?P<frac>\d{1,9}))?"
    r"(?P<tz>Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)
# From 3.11 ``fromisoformat`` reads every form the pattern admits but the lowercase
# ``z``: the fast path for the dozen timestamps in each job's results.
_FROMISOFORMAT_READS_ALL = sys.version_info >= (3, 11)


def parse_timestamp(value: object) -> datetime | None:
    """Parse any timestamp form the API uses into an aware UTC-based datetime.

    Naive values are taken as UTC (the Java SDK sends them without an offset). Epoch
    numbers above 1e11 are taken as milliseconds. ``None``, ``""`` and ``0`` give ``None``.

    Raises:
        ValueError: The value is not a timestamp in any form the API uses.
    """
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if isinstance(value, bool):
        raise ValueError(f"not a timestamp: {value!r}")
    if isinstance(value, (int, float)):
        if value == 0:
            # The Edge shapes use 0 for "not set".
            return None
        seconds = value / 1000 if value > 1e11 else value
        return datetime.fromtimestamp(seconds, tz=timezone.utc)
    if not isinstance(value, str):
        raise ValueError(f"not a timestamp: {value!r}")
    value = value.strip()
    match = _ISO.match(value)
    if match is None:
        raise ValueError(f"not an ISO-8601 timestamp: {value!r}")
    if _FROMISOFORMAT_READS_ALL and not value.endswith("z"):
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
    time = match["time"] if match["time"].count(":") == 2 else match["time"] + ":00"
    frac = (match["frac"] or "0")[:6].ljust(6, "0")
    tz = match["tz"] or "+00:00"
    if tz in ("Z", "z"):
        tz = "+00:00"
    elif len(tz) == 3:
        tz += ":00"
    elif ":" not in tz:
        tz = f"{tz[:3]}:{tz[3:]}"
    return datetime.fromisoformat(f"{match['date']}T{time}.{frac}{tz}")


def format_query_timestamp(value: datetime) -> str:
    """Format an aware datetime for the history query: UTC, milliseconds, ``Z``.

    ``Z`` rather than ``+00:00`` because a ``+`` in a query string is read as a space
    by some servers when a client forgets to escape it.
    """
    utc = value.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"
