"""The job-history query: validation and query-string building (pure, shared).

Everything here runs before a request is sent, so a bad query costs no round trip and
fails with :class:`~modzy_retrain.InvalidQueryError` naming the problem.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypedDict

from modzy_retrain._core.constants import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from modzy_retrain._core.exceptions import InvalidQueryError
from modzy_retrain._core.timestamps import format_query_timestamp

from .models import JobStatus

if TYPE_CHECKING:
    from typing_extensions import Unpack

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


class HistoryFilters(TypedDict, total=False):
    """The job history's filters, declared once.

    ``client.jobs.history(**filters)``, its pager and :class:`JobHistoryQuery` all take
    these keywords (``Unpack[HistoryFilters]``), and :func:`build_history_params`
    validates them. A list of values means "any of them".

    Keys:
        start: Jobs created at or after this time (timezone-aware).
        end: Jobs created at or before this time (timezone-aware; needs ``start``).
        model: Model name, fuzzy (the API returns similar matches).
        model_id: Exact model identifier(s).
        model_version: Exact model version(s).
        user: Submitter's first name, last name or email, fuzzy.
        access_key: API key prefix(es); a whole key is cut to its prefix.
        status: ``ALL``, ``PENDING``, ``TERMINATED``, ``TERMINATED_WITH_ERROR`` or an
            exact job status, case-insensitive.
        sort_by: Sort key(s) such as ``createdAt``.
        direction: ``ASC`` or ``DESC``.
        page_size: Jobs per page (1 to 1000).
    """

    start: datetime | None
    end: datetime | None
    model: StrOrSeq | None
    model_id: StrOrSeq | None
    model_version: StrOrSeq | None
    user: StrOrSeq | None
    access_key: StrOrSeq | None
    status: StrOrSeq | None
    sort_by: StrOrSeq | None
    direction: str | None
    page_size: int


HISTORY_FILTERS: tuple[str, ...] = tuple(HistoryFilters.__annotations__)


def check_filter_names(names: Any) -> None:
    """Refuse a keyword that is not a history filter, suggesting the nearest one."""
    for name in names:
        if name not in HistoryFilters.__annotations__:
            near = difflib.get_close_matches(str(name), HISTORY_FILTERS, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise InvalidQueryError(
                f"unknown history filter {name!r}{hint} (filters: {', '.join(HISTORY_FILTERS)})"
            )


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
    *, now: datetime | None = None, **filters: Unpack[HistoryFilters]
) -> dict[str, str]:
    """Validate a history query and return its query parameters (without ``page``).

    Raises:
        InvalidQueryError: an unknown filter, end without start, start in the future,
            end before start, naive datetimes, unknown status, sort key or direction,
            bad page size.
    """
    check_filter_names(filters)
    start = filters.get("start")
    end = filters.get("end")
    model = filters.get("model")
    model_id = filters.get("model_id")
    model_version = filters.get("model_version")
    user = filters.get("user")
    access_key = filters.get("access_key")
    status = filters.get("status")
    sort_by = filters.get("sort_by")
    direction = filters.get("direction")
    page_size = filters.get("page_size", DEFAULT_PAGE_SIZE)
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
