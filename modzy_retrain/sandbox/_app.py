"""Route logic: one synchronous ``handle(request) -> response`` shared by every transport."""

from __future__ import annotations

import json
import re
import threading
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from ._catalogue import WorldModel
from ._faults import Fault, FaultConfig, FaultInjector, FaultKind
from ._records import World, WorldInput, WorldJob
from ._views import (
    REQUIREMENTS,
    error_body,
    job_json,
    model_json,
    model_summary_json,
    model_version_json,
    output_json,
    results_json,
    single_result_json,
)

UTC = timezone.utc

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

_DATE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?"
    r"(Z|z|[+-]\d{2}(?::?\d{2})?)?$"
)


@dataclass(frozen=True)
class Request:
    """One HTTP request, as the transports hand it to :meth:`SandboxApp.handle`.

    ``target`` is the raw request-target (percent-encoded path plus optional query);
    ``headers`` has lower-case names.
    """

    method: str
    target: str
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def reason(self) -> str:
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Unknown"

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Dispatch:
    """What a transport must do for one request: a response, possibly spoiled by a fault."""

    response: Response
    fault: Fault | None
    delay_s: float  # latency (+ slow_ms for a SLOW fault) to wait before answering
    route: str


@dataclass(frozen=True)
class LogEntry:
    seq: int
    method: str
    route: str  # the route template, e.g. "GET /results/{jobId}"
    target: str
    status: int  # the status the handler produced (also for dropped/truncated answers)
    fault: str | None  # FaultKind value, if one was injected


@dataclass(frozen=True)
class _Ctx:
    """Per-request context handed to every route handler (handlers share no mutable state)."""

    request: Request
    query: dict[str, list[str]]
    caller: str  # the caller's key prefix


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: tuple[tuple[str, str], ...] = ()):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _dumps(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def json_response(status: int, value: Any, headers: tuple[tuple[str, str], ...] = ()) -> Response:
    return raw_json_response(status, _dumps(value), headers)


def raw_json_response(
    status: int, body: bytes, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    return Response(status, (("Content-Type", "application/json"), *headers), body)


def error_response(
    status: int, message: str, headers: tuple[tuple[str, str], ...] = ()
) -> Response:
    phrase = HTTPStatus(status).phrase
    return json_response(status, error_body(status, phrase, message), headers)


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


def _values(query: Mapping[str, list[str]], name: str) -> list[str] | None:
    """All values of a filter: repeated parameters and "a,b" both mean OR."""
    raw = query.get(name)
    if raw is None:
        return None
    out = [part.strip() for value in raw for part in value.split(",")]
    out = [part for part in out if part]
    return out or None


def _matches_any(terms: list[str], test: Callable[[str], bool]) -> bool:
    # "a;b" inside one term means AND (reference: "Filters").
    return any(all(test(part) for part in term.split(";") if part) for term in terms)


def _int_param(query: Mapping[str, list[str]], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        return int(raw[-1].strip())
    except ValueError:
        raise HttpError(400, f"Invalid {name} '{raw[-1]}': expected an integer") from None


class SandboxApp:
    """The fake Modzy API: the world plus mutable vote state, counters and fault knobs."""

    def __init__(
        self,
        world: World,
        *,
        faults: FaultConfig | None = None,
        latency_ms: float = 0.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.world = world
        self.latency_ms = latency_ms
        self._clock = clock or (lambda: datetime.now(UTC))
        self._keys = {user.access_key: user for user in world.users}
        self._prefix_jobs = Counter(job.user.key_prefix for job in world.jobs)
        self._lock = threading.Lock()
        # Votes: the world's initial aggregate counts, plus one vote per (input, key prefix).
        self._base_votes: dict[tuple[str, str], tuple[int, int]] = {}
        self._key_votes: dict[tuple[str, str], dict[str, str]] = {}
        self._results_cache: dict[str, bytes] = {}
        self._job_cache: dict[str, bytes] = {}
        self._history_cache: OrderedDict[tuple[Any, ...], list[WorldJob]] = OrderedDict()
        self._seq = 0
        self.request_counts: Counter[str] = Counter()
        self.fault_counts: Counter[str] = Counter()
        self.request_log: deque[LogEntry] = deque(maxlen=100_000)
        self.set_faults(faults or FaultConfig())

    # -- knobs -----------------------------------------------------------------------

    @property
    def faults(self) -> FaultConfig:
        return self._injector.config

    def set_faults(self, config: FaultConfig) -> None:
        """Replace the fault knobs; the fault sequence restarts from ``fault_seed``."""
        self._injector = FaultInjector(config)

    def reset_stats(self) -> None:
        with self._lock:
            self.request_counts.clear()
            self.fault_counts.clear()
            self.request_log.clear()

    # -- entry points ----------------------------------------------------------------

    def dispatch(self, request: Request) -> Dispatch:
        """Count the request, draw a fault, and produce the (possibly faulty) answer."""
        path, _, _ = request.target.partition("?")
        api = path == "/api" or path.startswith("/api/")
        fault = self._injector.draw() if api else None
        if fault is not None and fault.kind in (FaultKind.ERROR, FaultKind.THROTTLE):
            route = self.route_name(request)
            if fault.kind is FaultKind.THROTTLE:
                response = error_response(
                    429,
                    "Too many requests: slow down and retry later",
                    (("Retry-After", str(self.faults.retry_after)),),
                )
            else:
                response = error_response(
                    fault.status, "The service is temporarily unavailable; please retry"
                )
        else:
            route, response = self._route_and_handle(request)
        delay = self.latency_ms / 1000.0
        if fault is not None and fault.kind is FaultKind.SLOW:
            delay += self.faults.slow_ms / 1000.0
        with self._lock:
            self._seq += 1
            self.request_counts[route] += 1
            if fault is not None:
                self.fault_counts[fault.kind.value] += 1
            self.request_log.append(
                LogEntry(
                    seq=self._seq,
                    method=request.method,
                    route=route,
                    target=request.target,
                    status=response.status,
                    fault=fault.kind.value if fault else None,
                )
            )
        return Dispatch(response, fault, delay, route)

    def handle(self, request: Request) -> Response:
        """Answer one request (no faults, no counting): the pure route logic."""
        return self._route_and_handle(request)[1]

    def route_name(self, request: Request) -> str:
        path = request.target.partition("?")[0]
        try:
            match = self._match(self._segments(path))
        except UnicodeDecodeError:
            match = None
        return f"{request.method} {match[0] if match else '<unmatched>'}"

    # -- routing ---------------------------------------------------------------------

    @staticmethod
    def _segments(path: str) -> list[str] | None:
        if path != "/api" and not path.startswith("/api/"):
            return None
        parts = path[len("/api") :].split("/")[1:]
        if parts and parts[-1] == "":
            parts.pop()  # tolerate one trailing slash
        # Input names are user-defined: decode each segment only after splitting, so an
        # encoded "/" (%2F) stays inside its segment.
        return [unquote(part, errors="strict") for part in parts]

    def _match(
        self, segs: list[str] | None
    ) -> tuple[str, dict[str, Callable[..., Response]], tuple[str, ...]] | None:
        if segs is None:
            return None
        n = len(segs)
        head = segs[0] if segs else ""
        if head == "models":
            if n == 1:
                return "/models", {"GET": self._models}, ()
            if n == 3 and segs[1:] == ["requirements", "account"]:
                return "/models/requirements/account", {"GET": self._requirements}, ()
            if n == 2:
                return "/models/{id}", {"GET": self._model}, (segs[1],)
            if n == 3 and segs[2] == "versions":
                return "/models/{id}/versions", {"GET": self._versions}, (segs[1],)
            if n == 4 and segs[2] == "versions":
                return "/models/{id}/versions/{v}", {"GET": self._version}, (segs[1], segs[3])
        elif head == "jobs":
            if n == 2 and segs[1] == "history":
                return "/jobs/history", {"GET": self._history}, ()
            if n == 2 and segs[1] == "features":
                return "/jobs/features", {"GET": self._features}, ()
            if n == 2:
                return "/jobs/{jobId}", {"GET": self._job}, (segs[1],)
        elif head == "results":
            if n == 2:
                return "/results/{jobId}", {"GET": self._results}, (segs[1],)
            if n == 4 and segs[2] == "datasource":
                return (
                    "/results/{jobId}/datasource/{inputName}",
                    {"GET": self._single},
                    (segs[1], segs[3]),
                )
            if n == 4 and segs[2] in ("upvote", "downvote"):
                vote = "UP" if segs[2] == "upvote" else "DOWN"
                return (
                    f"/results/{{jobId}}/{segs[2]}/{{inputName}}",
                    {"POST": lambda ctx, job, name: self._cast(ctx, job, name, vote)},
                    (segs[1], segs[3]),
                )
            if n == 4 and segs[2] == "vote":
                return (
                    "/results/{jobId}/vote/{inputName}",
                    {"GET": self._get_vote, "DELETE": self._reset_votes},
                    (segs[1], segs[3]),
                )
            if n == 6 and segs[2] == "datasource" and segs[4] == "output":
                return (
                    "/results/{jobId}/datasource/{inputName}/output/{outputName}",
                    {"GET": self._output},
                    (segs[1], segs[3], segs[5]),
                )
            if n == 4:
                return (
                    "/results/{jobId}/{inputName}/{outputName}",
                    {"GET": self._output},
                    (segs[1], segs[2], segs[3]),
                )
        return None

    def _route_and_handle(self, request: Request) -> tuple[str, Response]:
        path, _, query_string = request.target.partition("?")
        try:
            segs = self._segments(path)
        except UnicodeDecodeError:
            return f"{request.method} <unmatched>", error_response(
                400, "The request path is not valid percent-encoded UTF-8"
            )
        match = self._match(segs)
        route = f"{request.method} {match[0] if match else '<unmatched>'}"
        try:
            if segs is None:
                raise HttpError(404, f"No such resource: {path}")
            caller = self._authenticate(request)
            if match is None:
                raise HttpError(404, f"No such resource: {path}")
            _, methods, args = match
            handler = methods.get(request.method)
            if handler is None:
                allowed = ", ".join(sorted(methods))
                raise HttpError(
                    405,
                    f"Method {request.method} is not allowed on {path}; allowed: {allowed}",
                    (("Allow", allowed),),
                )
            ctx = _Ctx(request, parse_qs(query_string, keep_blank_values=True), caller)
            return route, handler(ctx, *args)
        except HttpError as exc:
            return route, error_response(exc.status, exc.message, exc.headers)

    def _authenticate(self, request: Request) -> str:
        header = request.headers.get("authorization", "")
        scheme, _, key = header.strip().partition(" ")
        if not header:
            raise HttpError(401, "Missing Authorization header: send 'Authorization: ApiKey <key>'")
        if scheme.lower() != "apikey":
            raise HttpError(401, f"Unsupported authorization scheme '{scheme}': use ApiKey")
        user = self._keys.get(key.strip())
        if user is None:
            raise HttpError(401, "The API key is invalid, inactive or unknown")
        return user.key_prefix

    # -- models ----------------------------------------------------------------------

    def _model_or_404(self, model_id: str) -> WorldModel:
        model = self.world.model(model_id)
        if model is None:
            raise HttpError(404, f"Model {model_id} not found")
        return model

    def _models(self, ctx: _Ctx) -> Response:
        query = ctx.query
        models: Iterable[WorldModel] = self.world.models
        ids = _values(query, "modelId")
        names = _values(query, "name")
        if ids:
            models = [m for m in models if m.id in ids]
        if names:
            models = [m for m in models if _matches_any(names, _name_test(m.name))]
        page, per_page = self._paging(query, default_per_page=1000)
        chosen = list(models)[(page - 1) * per_page : page * per_page]
        return json_response(200, [model_summary_json(m) for m in chosen])

    def _requirements(self, _ctx: _Ctx) -> Response:
        return json_response(200, REQUIREMENTS)

    def _model(self, _ctx: _Ctx, model_id: str) -> Response:
        model = self._model_or_404(model_id)
        jobs = [job for job in self.world.jobs if job.model is model]
        last = jobs[-1].created_at if jobs else datetime(2020, 1, 1, tzinfo=UTC)
        return json_response(200, model_json(model, last))

    def _versions(self, _ctx: _Ctx, model_id: str) -> Response:
        model = self._model_or_404(model_id)
        return json_response(200, [{"version": v} for v in model.versions])

    def _version(self, _ctx: _Ctx, model_id: str, version: str) -> Response:
        model = self._model_or_404(model_id)
        if version not in model.versions:
            raise HttpError(404, f"Version {version} of model {model_id} not found")
        released = datetime(2024, 6, 1, tzinfo=UTC) + timedelta(
            days=60 * model.versions.index(version)
        )
        return json_response(200, model_version_json(model, version, released))

    # -- jobs ------------------------------------------------------------------------

    def _features(self, _ctx: _Ctx) -> Response:
        return json_response(
            200,
            {"inputChunkMaximumSize": "1M", "maximumInputChunks": 10, "maximumInputsPerJob": 25000},
        )

    def _job_or_404(self, job_id: str) -> WorldJob:
        job = self.world.jobs_by_id.get(job_id)
        if job is None:
            raise HttpError(404, f"Job {job_id} not found")
        return job

    def _job_bytes(self, job: WorldJob) -> bytes:
        cached = self._job_cache.get(job.id)
        if cached is None:
            # Jobs never change, so each is serialised once (history pages reuse it).
            cached = _dumps(job_json(self.world, job))
            self._job_cache[job.id] = cached
        return cached

    def _job(self, _ctx: _Ctx, job_id: str) -> Response:
        return raw_json_response(200, self._job_bytes(self._job_or_404(job_id)))

    def _paging(
        self, query: Mapping[str, list[str]], default_per_page: int = DEFAULT_PER_PAGE
    ) -> tuple[int, int]:
        page = _int_param(query, "page", 1)
        per_page = _int_param(query, "per-page", default_per_page)
        if page < 1:
            raise HttpError(400, f"Invalid page {page}: pages are numbered from 1")
        if per_page < 1:
            raise HttpError(400, f"Invalid per-page {per_page}: it must be at least 1")
        if per_page > MAX_PER_PAGE:
            raise HttpError(
                400, f"Invalid per-page {per_page}: at most {MAX_PER_PAGE} items per page"
            )
        return page, per_page

    def _history(self, ctx: _Ctx) -> Response:
        query = ctx.query
        for wrong, right in (
            ("perPage", "per-page"),
            ("sortBy", "sort-by"),
            ("per_page", "per-page"),
            ("sort_by", "sort-by"),
        ):
            if wrong in query:
                raise HttpError(400, f"Unknown parameter '{wrong}': the API spells it '{right}'")
        page, per_page = self._paging(query)
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
        if start is not None and start > self._clock():
            raise HttpError(400, f"Invalid startDate '{start_raw}': it is in the future")

        statuses: frozenset[str] | None = None
        status_terms = _values(query, "status")
        if status_terms:
            wanted: set[str] = set()
            for term in status_terms:
                group = _STATUS_GROUPS.get(term.upper())
                if group is None:
                    allowed = ", ".join(_STATUS_GROUPS)
                    raise HttpError(400, f"Invalid status '{term}': allowed values are {allowed}")
                wanted |= group
            statuses = frozenset(wanted)

        cache_key = (
            sort_keys,
            direction,
            start,
            end,
            statuses,
            *(tuple(_values(query, name) or ()) for name in _FILTERS),
        )
        with self._lock:
            selected = self._history_cache.get(cache_key)
            if selected is not None:
                self._history_cache.move_to_end(cache_key)
        if selected is None:
            selected = self._select(query, sort_keys, direction, start, end, statuses)
            with self._lock:
                self._history_cache[cache_key] = selected
                if len(self._history_cache) > 256:
                    self._history_cache.popitem(last=False)

        chunk = selected[(page - 1) * per_page : page * per_page]
        body = b"[" + b",".join(self._job_bytes(job) for job in chunk) + b"]"
        headers: tuple[tuple[str, str], ...] = ()
        if len(chunk) == per_page and page * per_page < len(selected):
            headers = (("Link", f'<{self._page_url(ctx.request, page + 1)}>; rel="next"'),)
        return raw_json_response(200, body, headers)

    @staticmethod
    def _page_url(request: Request, page: int) -> str:
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

    def _select(
        self,
        query: Mapping[str, list[str]],
        sort_keys: tuple[str, ...],
        direction: str,
        start: datetime | None,
        end: datetime | None,
        statuses: frozenset[str] | None,
    ) -> list[WorldJob]:
        models = _values(query, "model")
        users = _values(query, "user")
        prefixes = _values(query, "accessKey")
        model_ids = _values(query, "modelIdentifier")
        versions = _values(query, "modelVersion")

        def keep(job: WorldJob) -> bool:
            if start is not None and job.created_at < start:
                return False
            if end is not None and job.created_at > end:
                return False
            if statuses is not None and job.status not in statuses:
                return False
            if models and not _matches_any(
                models,
                lambda t: t.lower() in job.model.name.lower() or t == job.model.id,
            ):
                return False
            if users and not _matches_any(
                users,
                lambda t: any(
                    t.lower() in field.lower()
                    for field in (job.user.first_name, job.user.last_name, job.user.email)
                ),
            ):
                return False
            if prefixes and not _matches_any(prefixes, lambda t: t == job.user.key_prefix):
                return False
            if model_ids and not _matches_any(model_ids, lambda t: t == job.model.id):
                return False
            return not versions or _matches_any(versions, lambda t: t == job.version)

        def sort_key(job: WorldJob) -> tuple[Any, ...]:
            parts: list[Any] = []
            for key in sort_keys:
                if key == "submittedJobs":
                    parts.append(self._prefix_jobs[job.user.key_prefix])
                else:
                    parts.append(_SORT_KEYS[key](job))
            parts.append(job.id)  # ties broken by jobIdentifier: pages never overlap
            return tuple(parts)

        chosen = sorted((job for job in self.world.jobs if keep(job)), key=sort_key)
        if direction == "DESC":
            chosen.reverse()
        return chosen

    # -- results ---------------------------------------------------------------------

    def _votes_for(self, job: WorldJob, item: WorldInput) -> tuple[int, int]:
        ref = (job.id, item.name)
        up, down = self._base_votes.get(ref, (item.votes_up, item.votes_down))
        for vote in self._key_votes.get(ref, {}).values():
            if vote == "UP":
                up += 1
            else:
                down += 1
        return up, down

    def _results(self, _ctx: _Ctx, job_id: str) -> Response:
        job = self._job_or_404(job_id)
        if job.status == "SUBMITTED":
            # Reference 5.1: results 404 until the first input has been picked up.
            raise HttpError(404, f"Results for job {job_id} are not available yet")
        with self._lock:
            # Serialised under the lock so a concurrent vote can never leave stale bytes
            # in the cache; votes drop the job's entry.
            cached = self._results_cache.get(job.id)
            if cached is None:
                votes = {item.name: self._votes_for(job, item) for item in job.inputs}
                cached = _dumps(results_json(self.world, job, votes))
                self._results_cache[job.id] = cached
        return raw_json_response(200, cached)

    def _input_or_404(self, job_id: str, name: str) -> tuple[WorldJob, WorldInput]:
        job = self._job_or_404(job_id)
        item = job.input(name)
        if item is None:
            raise HttpError(404, f"Input '{name}' not found in job {job_id}")
        if item.status == "PENDING":
            raise HttpError(404, f"Input '{name}' of job {job_id} has no result yet")
        return job, item

    def _single(self, _ctx: _Ctx, job_id: str, name: str) -> Response:
        job, item = self._input_or_404(job_id, name)
        with self._lock:
            votes = self._votes_for(job, item)
        return json_response(200, single_result_json(self.world, job, item, votes))

    def _output(self, _ctx: _Ctx, job_id: str, name: str, output: str) -> Response:
        job, item = self._input_or_404(job_id, name)
        if item.status != "SUCCESSFUL":
            raise HttpError(404, f"Input '{name}' of job {job_id} failed: {item.error}")
        if output != "results.json":
            raise HttpError(404, f"Output '{output}' not found for input '{name}'")
        return json_response(200, output_json(job, item))

    def _votable(self, job_id: str, name: str) -> tuple[WorldJob, WorldInput]:
        job, item = self._input_or_404(job_id, name)
        if item.status != "SUCCESSFUL":
            raise HttpError(404, f"Input '{name}' of job {job_id} has no successful result")
        return job, item

    def _cast(self, ctx: _Ctx, job_id: str, name: str, vote: str) -> Response:
        job, item = self._votable(job_id, name)
        with self._lock:
            # One vote per key per input: a second vote replaces the first.
            self._key_votes.setdefault((job.id, item.name), {})[ctx.caller] = vote
            self._results_cache.pop(job.id, None)
        return json_response(200, {})

    def _get_vote(self, ctx: _Ctx, job_id: str, name: str) -> Response:
        job, item = self._votable(job_id, name)
        with self._lock:
            vote = self._key_votes.get((job.id, item.name), {}).get(ctx.caller, "NO_VOTES")
        return json_response(200, {"vote": vote})

    def _reset_votes(self, _ctx: _Ctx, job_id: str, name: str) -> Response:
        job, item = self._votable(job_id, name)
        with self._lock:
            # ResetVotesForResult: clears every vote on the input, everyone's.
            self._base_votes[(job.id, item.name)] = (0, 0)
            self._key_votes.pop((job.id, item.name), None)
            self._results_cache.pop(job.id, None)
        return json_response(200, {})

    def votes(self, job_id: str, name: str) -> tuple[int, int]:
        """Current (up, down) counts of one input (for tests and pipelines)."""
        job = self._job_or_404(job_id)
        item = job.input(name)
        if item is None:
            raise KeyError((job_id, name))
        with self._lock:
            return self._votes_for(job, item)


_FILTERS = ("model", "user", "accessKey", "modelIdentifier", "modelVersion")


def _name_test(name: str) -> Callable[[str], bool]:
    """Fuzzy name match: a case-insensitive substring."""
    lowered = name.lower()
    return lambda term: term.lower() in lowered


def encode_segment(value: str) -> str:
    """Percent-encode one path segment (every reserved character, "/" included)."""
    return quote(value, safe="")
