"""The app: one synchronous ``dispatch(request)`` shared by every transport.

It counts and logs each request, injects faults, authenticates the caller and hands the
request to the route that matches (the table is in ``_routes``).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import parse_qs

from ._faults import Fault, FaultConfig, FaultInjector, FaultKind
from ._messages import HttpError, Request, Response, error_response
from ._records import World
from ._routes import Ctx, Handlers, match_route, path_segments

UTC = timezone.utc


@dataclass(frozen=True)
class Dispatch:
    """What a transport must do for one request: a response, possibly spoiled by a fault."""

    response: Response
    fault: Fault | None
    delay_s: float  # latency (+ slow_ms for a SLOW fault) to wait before answering
    route: str


@dataclass(frozen=True)
class LogEntry:
    """One request the sandbox answered, as `SandboxApp.request_log` keeps it.

    Attributes:
        seq: Its number, from 1, in the order the requests arrived.
        method: The HTTP method.
        route: The route template that matched, e.g. ``"GET /results/{jobId}"``
            (``"GET <unmatched>"`` for an unknown path).
        target: The raw request-target: the percent-encoded path and query.
        status: The status the handler produced (also for an answer a fault dropped
            or truncated).
        fault: The injected fault's kind (a `FaultKind` value), or None.
    """

    seq: int
    method: str
    route: str  # the route template, e.g. "GET /results/{jobId}"
    target: str
    status: int  # the status the handler produced (also for dropped/truncated answers)
    fault: str | None  # FaultKind value, if one was injected


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
        self._handlers = Handlers(world, clock or (lambda: datetime.now(UTC)))
        self._keys = {user.access_key: user for user in world.users}
        self._lock = threading.Lock()
        self._seq = 0
        self.request_counts: Counter[str] = Counter()
        self.fault_counts: Counter[str] = Counter()
        self.request_log: deque[LogEntry] = deque(maxlen=100_000)
        # Jobs whose results answer 503 to every request, until the set changes: a
        # result store that lost them (what a poison job looks like to a build).
        self.unavailable_results: frozenset[str] = frozenset()
        self.set_faults(faults or FaultConfig())

    # -- knobs -----------------------------------------------------------------------

    @property
    def faults(self) -> FaultConfig:
        return self._injector.config

    def set_faults(self, config: FaultConfig) -> None:
        """Replace the fault knobs; the fault sequence restarts from ``fault_seed``."""
        self._injector = FaultInjector(config)

    def reset_stats(self) -> None:
        """Clear the request counts, the fault counts and the request log."""
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
        """The route template the request matches, e.g. ``"GET /results/{jobId}"``."""
        path = request.target.partition("?")[0]
        try:
            found = match_route(path_segments(path))
        except UnicodeDecodeError:
            found = None
        return f"{request.method} {found[0].pattern if found else '<unmatched>'}"

    def votes(self, job_id: str, name: str) -> tuple[int, int]:
        """Current (up, down) counts of one input (for tests and pipelines)."""
        return self._handlers.votes(job_id, name)

    # -- routing ---------------------------------------------------------------------

    def _route_and_handle(self, request: Request) -> tuple[str, Response]:
        """The route's name and its answer: 404 off /api, then 401, 404, 405, or the route's."""
        path, _, query_string = request.target.partition("?")
        try:
            segments = path_segments(path)
        except UnicodeDecodeError:
            return f"{request.method} <unmatched>", error_response(
                400, "The request path is not valid percent-encoded UTF-8"
            )
        found = match_route(segments)
        route = f"{request.method} {found[0].pattern if found else '<unmatched>'}"
        try:
            if segments is None:
                raise HttpError(404, f"No such resource: {path}")
            caller = self._authenticate(request)
            if found is None:
                raise HttpError(404, f"No such resource: {path}")
            matched, args = found
            handler = matched.methods.get(request.method)
            if handler is None:
                allowed = ", ".join(sorted(matched.methods))
                raise HttpError(
                    405,
                    f"Method {request.method} is not allowed on {path}; allowed: {allowed}",
                    (("Allow", allowed),),
                )
            if matched.pattern.startswith("/results/") and args[0] in self.unavailable_results:
                raise HttpError(503, f"The results of job {args[0]} are unavailable; retry later")
            ctx = Ctx(request, parse_qs(query_string, keep_blank_values=True), caller)
            return route, handler(self._handlers, ctx, *args)
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
