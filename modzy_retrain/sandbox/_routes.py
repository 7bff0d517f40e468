"""The route table: each route of the fake Modzy API and the handler that answers it.

``ROUTES`` lists (method, path pattern, handler) entries; they are compiled once and
:func:`match_route` finds the first pattern a path fits. The handlers are methods of
:class:`Handlers`, which owns the state they share (votes and serialisation caches).
"""

from __future__ import annotations

import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

from ._catalogue import WorldModel
from ._messages import HttpError, Request, Response, dump_json, json_response, raw_json_response
from ._query import matches_any, name_test, page_url, paging, parse_history, select_jobs, values
from ._records import World, WorldInput, WorldJob
from ._views import (
    REQUIREMENTS,
    job_json,
    model_json,
    model_summary_json,
    model_version_json,
    output_json,
    results_json,
    single_result_json,
)

UTC = timezone.utc


@dataclass(frozen=True)
class Ctx:
    """Per-request context handed to every route handler."""

    request: Request
    query: Mapping[str, list[str]]
    caller: str  # the caller's key prefix


class Handlers:
    """The handlers of every route, over one world, its votes and its caches."""

    def __init__(self, world: World, clock: Callable[[], datetime]) -> None:
        self.world = world
        self._clock = clock
        self._prefix_jobs = Counter(job.user.key_prefix for job in world.jobs)
        self._lock = threading.Lock()
        # Votes: the world's initial aggregate counts, plus one vote per (input, key prefix).
        self._base_votes: dict[tuple[str, str], tuple[int, int]] = {}
        self._key_votes: dict[tuple[str, str], dict[str, str]] = {}
        self._results_cache: dict[str, bytes] = {}
        self._job_cache: dict[str, bytes] = {}
        self._history_cache: OrderedDict[tuple[Any, ...], list[WorldJob]] = OrderedDict()

    # -- models ----------------------------------------------------------------------

    def _model_or_404(self, model_id: str) -> WorldModel:
        model = self.world.model(model_id)
        if model is None:
            raise HttpError(404, f"Model {model_id} not found")
        return model

    def get_models(self, ctx: Ctx) -> Response:
        query = ctx.query
        models: Iterable[WorldModel] = self.world.models
        ids = values(query, "modelId")
        names = values(query, "name")
        if ids:
            models = [m for m in models if m.id in ids]
        if names:
            models = [m for m in models if matches_any(names, name_test(m.name))]
        page, per_page = paging(query, default_per_page=1000)
        chosen = list(models)[(page - 1) * per_page : page * per_page]
        return json_response(200, [model_summary_json(m) for m in chosen])

    def get_requirements(self, _ctx: Ctx) -> Response:
        return json_response(200, REQUIREMENTS)

    def get_model(self, _ctx: Ctx, model_id: str) -> Response:
        model = self._model_or_404(model_id)
        jobs = [job for job in self.world.jobs if job.model is model]
        last = jobs[-1].created_at if jobs else datetime(2020, 1, 1, tzinfo=UTC)
        return json_response(200, model_json(model, last))

    def get_versions(self, _ctx: Ctx, model_id: str) -> Response:
        model = self._model_or_404(model_id)
        return json_response(200, [{"version": v} for v in model.versions])

    def get_version(self, _ctx: Ctx, model_id: str, version: str) -> Response:
        model = self._model_or_404(model_id)
        if version not in model.versions:
            raise HttpError(404, f"Version {version} of model {model_id} not found")
        released = datetime(2024, 6, 1, tzinfo=UTC) + timedelta(
            days=60 * model.versions.index(version)
        )
        return json_response(200, model_version_json(model, version, released))

    # -- jobs ------------------------------------------------------------------------

    def get_features(self, _ctx: Ctx) -> Response:
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
            cached = dump_json(job_json(self.world, job))
            self._job_cache[job.id] = cached
        return cached

    def get_job(self, _ctx: Ctx, job_id: str) -> Response:
        return raw_json_response(200, self._job_bytes(self._job_or_404(job_id)))

    def get_history(self, ctx: Ctx) -> Response:
        page, per_page, search = parse_history(ctx.query, self._clock)
        cache_key = search.cache_key
        with self._lock:
            selected = self._history_cache.get(cache_key)
            if selected is not None:
                self._history_cache.move_to_end(cache_key)
        if selected is None:
            selected = select_jobs(self.world.jobs, search, self._prefix_jobs)
            with self._lock:
                self._history_cache[cache_key] = selected
                if len(self._history_cache) > 256:
                    self._history_cache.popitem(last=False)

        chunk = selected[(page - 1) * per_page : page * per_page]
        body = b"[" + b",".join(self._job_bytes(job) for job in chunk) + b"]"
        headers: tuple[tuple[str, str], ...] = ()
        if len(chunk) == per_page and page * per_page < len(selected):
            headers = (("Link", f'<{page_url(ctx.request, page + 1)}>; rel="next"'),)
        return raw_json_response(200, body, headers)

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

    def get_results(self, _ctx: Ctx, job_id: str) -> Response:
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
                cached = dump_json(results_json(self.world, job, votes))
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

    def get_input_result(self, _ctx: Ctx, job_id: str, name: str) -> Response:
        job, item = self._input_or_404(job_id, name)
        with self._lock:
            votes = self._votes_for(job, item)
        return json_response(200, single_result_json(self.world, job, item, votes))

    def get_output(self, _ctx: Ctx, job_id: str, name: str, output: str) -> Response:
        job, item = self._input_or_404(job_id, name)
        if item.status != "SUCCESSFUL":
            raise HttpError(404, f"Input '{name}' of job {job_id} failed: {item.error}")
        if output != "results.json":
            raise HttpError(404, f"Output '{output}' not found for input '{name}'")
        return json_response(200, output_json(job, item))

    # -- votes -----------------------------------------------------------------------

    def _votable(self, job_id: str, name: str) -> tuple[WorldJob, WorldInput]:
        job, item = self._input_or_404(job_id, name)
        if item.status != "SUCCESSFUL":
            raise HttpError(404, f"Input '{name}' of job {job_id} has no successful result")
        return job, item

    def _cast(self, ctx: Ctx, job_id: str, name: str, vote: str) -> Response:
        job, item = self._votable(job_id, name)
        with self._lock:
            # One vote per key per input: a second vote replaces the first.
            self._key_votes.setdefault((job.id, item.name), {})[ctx.caller] = vote
            self._results_cache.pop(job.id, None)
        return json_response(200, {})

    def post_upvote(self, ctx: Ctx, job_id: str, name: str) -> Response:
        return self._cast(ctx, job_id, name, "UP")

    def post_downvote(self, ctx: Ctx, job_id: str, name: str) -> Response:
        return self._cast(ctx, job_id, name, "DOWN")

    def get_vote(self, ctx: Ctx, job_id: str, name: str) -> Response:
        job, item = self._votable(job_id, name)
        with self._lock:
            vote = self._key_votes.get((job.id, item.name), {}).get(ctx.caller, "NO_VOTES")
        return json_response(200, {"vote": vote})

    def delete_vote(self, _ctx: Ctx, job_id: str, name: str) -> Response:
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


Handler = Callable[..., Response]  # (handlers, ctx, *path parameters) -> response

# Paths are relative to /api. A path answers to the first pattern it fits, in this order,
# whatever the method: a method its pattern does not list gets 405, never a later route.
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", "/models", Handlers.get_models),
    ("GET", "/models/requirements/account", Handlers.get_requirements),
    ("GET", "/models/{id}", Handlers.get_model),
    ("GET", "/models/{id}/versions", Handlers.get_versions),
    ("GET", "/models/{id}/versions/{v}", Handlers.get_version),
    ("GET", "/jobs/history", Handlers.get_history),
    ("GET", "/jobs/features", Handlers.get_features),
    ("GET", "/jobs/{jobId}", Handlers.get_job),
    ("GET", "/results/{jobId}", Handlers.get_results),
    ("GET", "/results/{jobId}/datasource/{inputName}", Handlers.get_input_result),
    ("POST", "/results/{jobId}/upvote/{inputName}", Handlers.post_upvote),
    ("POST", "/results/{jobId}/downvote/{inputName}", Handlers.post_downvote),
    ("GET", "/results/{jobId}/vote/{inputName}", Handlers.get_vote),
    ("DELETE", "/results/{jobId}/vote/{inputName}", Handlers.delete_vote),
    ("GET", "/results/{jobId}/datasource/{inputName}/output/{outputName}", Handlers.get_output),
    # The short form of the output route: it catches every other four-segment path.
    ("GET", "/results/{jobId}/{inputName}/{outputName}", Handlers.get_output),
]


@dataclass(frozen=True)
class Route:
    """One path pattern of the table and the handler of each method it allows."""

    pattern: str  # as in the table, e.g. "/results/{jobId}"
    segments: tuple[str | None, ...]  # a literal segment, or None for a parameter
    methods: Mapping[str, Handler]


def _compile(table: list[tuple[str, str, Handler]]) -> tuple[Route, ...]:
    patterns: dict[str, dict[str, Handler]] = {}
    for method, pattern, handler in table:
        patterns.setdefault(pattern, {})[method] = handler
    return tuple(
        Route(
            pattern,
            tuple(None if s.startswith("{") else s for s in pattern.split("/")[1:]),
            methods,
        )
        for pattern, methods in patterns.items()
    )


_COMPILED = _compile(ROUTES)


def path_segments(path: str) -> list[str] | None:
    """The decoded segments of an /api path (None for any other path).

    Raises UnicodeDecodeError when a segment is not percent-encoded UTF-8.
    """
    if path != "/api" and not path.startswith("/api/"):
        return None
    parts = path[len("/api") :].split("/")[1:]
    if parts and parts[-1] == "":
        parts.pop()  # tolerate one trailing slash
    # Input names are user-defined: decode each segment only after splitting, so an
    # encoded "/" (%2F) stays inside its segment.
    return [unquote(part, errors="strict") for part in parts]


def match_route(segments: list[str] | None) -> tuple[Route, tuple[str, ...]] | None:
    """The first route whose pattern fits, and the path's parameters, in order."""
    if segments is None:
        return None
    for route in _COMPILED:
        if len(route.segments) != len(segments):
            continue
        pairs = list(zip(route.segments, segments, strict=True))
        if all(want is None or want == got for want, got in pairs):
            return route, tuple(got for want, got in pairs if want is None)
    return None
