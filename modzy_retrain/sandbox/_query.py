"""Query parameters the routes accept: dates, filters, paging, and the job history's search."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from ._messages import HttpError, Request
from ._records import WorldJob

UTC = timezone.utc

Query = Mapping[str, list[str]]

MAX_PER_PAGE = 10_000
DEFAULT_PER_PAGE = 10

# Documented sort keys (reference 3.1) and what each sorts on.
_SORT_KEYS: dict[str, Callable[[WorldJob], Any]] = {
    "identifier": lambda job: job.id,
    "submittedBy": lambda job: job.user.key_prefix,
    "status": lambda job: job.status,
    "createdAt": lambda job: job.created_at,
    "updatedAt": lambda job: job.updated_at,
    "submittedAt": lambda job: job.submitted_at,
    "total": lambda job: job.total,
    "completed": lambda job: job.completed,
    "fail": lambda job: job.failed,
    "model": lambda job: (job.model.name, job.version),
}

_STATUS_GROUPS: dict[str, frozenset[str]] = {
    "ALL": frozenset(
        {"SUBMITTED", "IN_PROGRESS", "OPEN", "COMPLETED", "CANCELED", "TIMEDOUT", "ERROR"}
    ),
    "PENDING": frozenset({"SUBMITTED", "IN_PROGRESS", "OPEN"}),
    "TERMINATED": frozenset({"COMPLETED", "CANCELED", "TIMEDOUT", "ERROR"}),
    "TERMINATED_WITH_ERROR": frozenset({"ERROR", "TIMEDOUT"}),
}
for _status in ("SUBMITTED", "IN_PROGRESS", "OPEN", "COMPLETED", "CANCELED", "TIMEDOUT", "ERROR"):
    _STATUS_GROUPS[_status] = frozenset({_status})

# The history's filters on the job's model, user and key; each takes several values.
_FILTERS = ("model", "user", "accessKey", "modelIdentifier", "modelVersion")

_DATE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)


def parse_date(value: str, name: str) -> datetime:
    """Parse every date-time form the SDKs send (reference 3.1); naive means UTC."""
    text = value.strip()
    # An unencoded "+" in a query string arrives as a space: "...000 00:00" meant "+00:00".
    fixed = re.sub(r"(\d) (\d{2}:?\d{2})$", r"\1+\2", text)
    match = _DATE.match(fixed)
    if match is None:
        raise HttpError(400, f"Invalid {name} '{value}': expected an ISO-8601 date-time")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        tz = UTC
        if offset and offset not in ("Z", "z"):
            sign = -1 if offset[0] == "-" else 1
            digits = offset[1:].replace(":", "")
            minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) > 2 else 0)
            tz = timezone(sign * timedelta(minutes=minutes))
        parsed = datetime(
            int(year),
            int(month),
            int(day),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
            tzinfo=tz,
        )
    except ValueError as exc:
        raise HttpError(400, f"Invalid {name} '{value}': {exc}") from None
    return parsed.astimezone(UTC)


def values(query: Query, name: str) -> list[str] | None:
    """All values of a filter: repeated parameters and "a,b" both mean OR."""
    raw = query.get(name)
    if raw is None:
        return None
    out = [part.strip() for value in raw for part in value.split(",")]
    out = [part for part in out if part]
    return out or None


def matches_any(terms: Sequence[str], test: Callable[[str], bool]) -> bool:
    # "a;b" inside one term means AND (reference: "Filters").
    return any(all(test(part) for part in term.split(";") if part) for term in terms)


def name_test(name: str) -> Callable[[str], bool]:
    """Fuzzy name match: a case-insensitive substring."""
    lowered = name.lower()
    return lambda term: term.lower() in lowered


def _int_param(query: Query, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return int(raw[-1].strip())
    except ValueError:
        raise HttpError(400, f"Invalid {name} '{raw[-1]}': expected an integer") from None


def paging(query: Query, default_per_page: int = DEFAULT_PER_PAGE) -> tuple[int, int]:
    """The (page, per-page) asked for, pages numbered from 1."""
    page = _int_param(query, "page", 1)
    per_page = _int_param(query, "per-page", default_per_page)
    if page < 1:
        raise HttpError(400, f"Invalid page {page}: pages are numbered from 1")
    if per_page < 1:
        raise HttpError(400, f"Invalid per-page {per_page}: it must be at least 1")
    if per_page > MAX_PER_PAGE:
        raise HttpError(400, f"Invalid per-page {per_page}: at most {MAX_PER_PAGE} items per page")
    return page, per_page


def page_url(request: Request, page: int) -> str:
    """The request's own URL asking for another page (for the ``Link`` header)."""
    path, _, query_string = request.target.partition("?")
    params = [
        (name, value)
        for name, value in (
            pair.split("=", 1) if "=" in pair else (pair, "")
            for pair in query_string.split("&")
            if pair
        )
        if name != "page"
    ]
    params.append(("page", str(page)))
    host = request.headers.get("host", "sandbox.modzy.invalid")
    return f"http://{host}{path}?" + "&".join(f"{n}={v}" for n, v in params)


@dataclass(frozen=True)
class HistorySearch:
    """What a job-history request selects and in which order (its pages aside)."""

    sort_keys: tuple[str, ...]
    direction: str  # "ASC" or "DESC"
    start: datetime | None
    end: datetime | None
    statuses: frozenset[str] | None
    filters: tuple[tuple[str, ...], ...]  # the values of each of _FILTERS, in that order

    @property
    def cache_key(self) -> tuple[Any, ...]:
        return (self.sort_keys, self.direction, self.start, self.end, self.statuses, *self.filters)


def parse_history(query: Query, now: Callable[[], datetime]) -> tuple[int, int, HistorySearch]:
    """Page, per-page and search of a job-history request; 400 for any invalid parameter."""
    for wrong, right in (
        ("perPage", "per-page"),
        ("sortBy", "sort-by"),
        ("per_page", "per-page"),
        ("sort_by", "sort-by"),
    ):
        if wrong in query:
            raise HttpError(400, f"Unknown parameter '{wrong}': the API spells it '{right}'")
    page, per_page = paging(query)
    sort_raw = query.get("sort-by", ["createdAt"])[-1]
    sort_keys = tuple(k.strip() for k in sort_raw.split(",") if k.strip()) or ("createdAt",)
    for key in sort_keys:
        if key not in _SORT_KEYS and key != "submittedJobs":
            allowed = ", ".join([*_SORT_KEYS, "submittedJobs"])
            raise HttpError(400, f"Invalid sort-by '{key}': allowed keys are {allowed}")
    direction = query.get("direction", ["ASC"])[-1].strip().upper()
    if direction not in ("ASC", "DESC"):
        raise HttpError(400, f"Invalid direction '{direction}': use ASC or DESC")

    start_raw = query.get("startDate", [None])[-1]
    end_raw = query.get("endDate", [None])[-1]
    start = parse_date(start_raw, "startDate") if start_raw else None
    end = parse_date(end_raw, "endDate") if end_raw else None
    if end is not None and start is None:
        raise HttpError(400, "endDate requires startDate")
    if start is not None and start > now():
        raise HttpError(400, f"Invalid startDate '{start_raw}': it is in the future")

    statuses: frozenset[str] | None = None
    status_terms = values(query, "status")
    if status_terms:
        wanted: set[str] = set()
        for term in status_terms:
            group = _STATUS_GROUPS.get(term.upper())
            if group is None:
                allowed = ", ".join(_STATUS_GROUPS)
                raise HttpError(400, f"Invalid status '{term}': allowed values are {allowed}")
            wanted |= group
        statuses = frozenset(wanted)

    filters = tuple(tuple(values(query, name) or ()) for name in _FILTERS)
    return page, per_page, HistorySearch(sort_keys, direction, start, end, statuses, filters)


def select_jobs(
    jobs: Iterable[WorldJob], search: HistorySearch, jobs_per_prefix: Mapping[str, int]
) -> list[WorldJob]:
    """The jobs a history search selects, in its order (ties broken by job id)."""
    start, end, statuses = search.start, search.end, search.statuses
    models, users, prefixes, model_ids, versions = search.filters

    def keep(job: WorldJob) -> bool:
        if start is not None and job.created_at < start:
            return False
        if end is not None and job.created_at > end:
            return False
        if statuses is not None and job.status not in statuses:
            return False
        if models and not matches_any(
            models,
            lambda t: t.lower() in job.model.name.lower() or t == job.model.id,
        ):
            return False
        if users and not matches_any(
            users,
            lambda t: any(
                t.lower() in field.lower()
                for field in (job.user.first_name, job.user.last_name, job.user.email)
            ),
        ):
            return False
        if prefixes and not matches_any(prefixes, lambda t: t == job.user.key_prefix):
            return False
        if model_ids and not matches_any(model_ids, lambda t: t == job.model.id):
            return False
        return not versions or matches_any(versions, lambda t: t == job.version)

    def sort_key(job: WorldJob) -> tuple[Any, ...]:
        parts: list[Any] = []
        for key in search.sort_keys:
            if key == "submittedJobs":
                parts.append(jobs_per_prefix[job.user.key_prefix])
            else:
                parts.append(_SORT_KEYS[key](job))
        parts.append(job.id)  # ties broken by jobIdentifier: pages never overlap
        return tuple(parts)

    chosen = sorted((job for job in jobs if keep(job)), key=sort_key)
    if search.direction == "DESC":
        chosen.reverse()
    return chosen
