"""The job-history query: validation and query-string building (pure, shared).

Everything here runs before a request is sent, so a bad query costs no round trip and
fails with :class:`~modzy_retrain.InvalidQueryError` naming the problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from modzy_retrain._core.constants import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from modzy_retrain._core.exceptions import InvalidQueryError
from modzy_retrain._core.timestamps import format_query_timestamp

from .models import JobStatus

SORT_KEYS: frozenset[str] = frozenset(
    {
        "identifier",
        "submittedBy",
        "submittedJobs",
        "status",
        "createdAt",
        "updatedAt",
        "submittedAt",
        "total",
        "completed",
        "fail",
        "model",
    }
)

StrOrSeq = str | Sequence[str]


def _join(name: str, value: StrOrSeq | None) -> str | None:
    # The API reads "a,b" as "a OR b" on every filter.
    if value is None:
        return None
    values = [value] if isinstance(value, str) else list(value)
    for v in values:
        if not isinstance(v, str) or not v.strip():
            raise InvalidQueryError(f"{name} must be a non-empty string or a list of them")
        if "," in v:
            raise InvalidQueryError(f"{name} value {v!r} contains ',', which the API reads as OR")
    return ",".join(v.strip() for v in values) if values else None


def _aware(name: str, value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidQueryError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidQueryError(
            f"{name} must be timezone-aware (e.g. datetime(..., tzinfo=timezone.utc)); "
            "a naive datetime is ambiguous"
        )
    return value


def build_history_params(
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    model: StrOrSeq | None = None,
    model_id: StrOrSeq | None = None,
    model_version: StrOrSeq | None = None,
    user: StrOrSeq | None = None,
    access_key: StrOrSeq | None = None,
    status: StrOrSeq | None = None,
    sort_by: StrOrSeq | None = None,
    direction: str | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
    now: datetime | None = None,
) -> dict[str, str]:
    """Validate a history query and return its query parameters (without ``page``).

    Raises:
        InvalidQueryError: end without start, start in the future, end before start,
            naive datetimes, unknown status, sort key or direction, bad page size.
    """
    start = _aware("start", start)
    end = _aware("end", end)
    if end is not None and start is None:
        raise InvalidQueryError("end was given without start; the API requires a start")
    now = now or datetime.now(timezone.utc)
    if start is not None and start > now:
        raise InvalidQueryError(f"start {start.isoformat()} is in the future")
    if start is not None and end is not None and end < start:
        raise InvalidQueryError(f"end {end.isoformat()} is before start {start.isoformat()}")
    if isinstance(page_size, bool) or not isinstance(page_size, int):
        raise InvalidQueryError("page_size must be an int")
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidQueryError(f"page_size must be between 1 and {MAX_PAGE_SIZE}")

    params: dict[str, str] = {}
    if start is not None:
        params["startDate"] = format_query_timestamp(start)
    if end is not None:
        params["endDate"] = format_query_timestamp(end)

    status_s = _join("status", status)
    if status_s is not None:
        upper = status_s.upper()
        valid = JobStatus.EXACT | JobStatus.CATEGORIES
        bad = [s for s in upper.split(",") if s not in valid]
        if bad:
            raise InvalidQueryError(
                f"unknown status {bad[0]!r}; use one of {', '.join(sorted(valid))}"
            )
        params["status"] = upper
    else:
        params["status"] = JobStatus.ALL

    if access_key is not None:
        # The filter takes the public key prefix. Passing the whole key by mistake
        # would put the secret in a URL (and in server logs), so keep only the prefix.
        keys = [access_key] if isinstance(access_key, str) else list(access_key)
        access_key = [k.split(".", 1)[0] if isinstance(k, str) else k for k in keys]

    for name, key, value in (
        ("model", "model", model),
        ("model_id", "modelIdentifier", model_id),
        ("model_version", "modelVersion", model_version),
        ("user", "user", user),
        ("access_key", "accessKey", access_key),
    ):
        joined = _join(name, value)
        if joined is not None:
            params[key] = joined

    sort_s = _join("sort_by", sort_by)
    if sort_s is not None:
        bad = [k for k in sort_s.split(",") if k not in SORT_KEYS]
        if bad:
            raise InvalidQueryError(
                f"unknown sort key {bad[0]!r}; use one of {', '.join(sorted(SORT_KEYS))}"
            )
        params["sort-by"] = sort_s
    if direction is not None:
        d = direction.upper() if isinstance(direction, str) else direction
        if d not in ("ASC", "DESC"):
            raise InvalidQueryError("direction must be 'ASC' or 'DESC'")
        params["direction"] = d
    params["per-page"] = str(page_size)
    return params
