"""How long to wait before another attempt: pure, shared by every retrying client.

The Modzy client (``_client/retry.py``) and the Label Studio client
(``_labels/retry.py``) decide *whether* to retry differently; *how long* to wait is the
same rule: what the server asks (``Retry-After``) up to a cap, else exponential backoff
with jitter.
"""

from __future__ import annotations

import email.utils
import random
from collections.abc import Mapping
from datetime import datetime, timezone


def parse_retry_after(headers: Mapping[str, str], *, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``Retry-After`` (seconds or HTTP date) or ``retry-after-ms``.

    Anything unparseable gives ``None``; a date in the past gives ``0``.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    millis = lowered.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    now = now or datetime.now(timezone.utc)
    return max(0.0, (when - now).total_seconds())


def wait_seconds(
    attempt: int,
    retry_after: float | None,
    *,
    initial_wait: float,
    max_wait: float,
    jitter: float,
    max_retry_after: float,
    rng: random.Random,
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based): the server's
    ``retry_after`` up to ``max_retry_after``, else doubling backoff plus jitter."""
    if retry_after is not None:
        return min(retry_after, max_retry_after)
    backoff = min(max_wait, initial_wait * (2.0 ** (attempt - 1)))
    return backoff + (rng.uniform(0, jitter) if jitter else 0.0)
