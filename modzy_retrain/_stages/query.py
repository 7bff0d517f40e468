"""``JobHistoryQuery``: the chain's source, every job of a time window, lazily."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from modzy_retrain._client.client import AsyncModzyClient, ModzyClient, check_client
from modzy_retrain._client.history import HistoryFilters, build_history_params, check_filter_names
from modzy_retrain._client.models import Job
from modzy_retrain._client.pagination import JobHistoryPage, check_max_pages
from modzy_retrain._core.concurrency import aread_ahead, read_ahead
from modzy_retrain._core.constants import DEFAULT_MAX_HISTORY_PAGES, DEFAULT_PAGE_SIZE
from modzy_retrain._core.exceptions import APIError, InvalidQueryError
from modzy_retrain._dataset.manifest import Checkpoint
from modzy_retrain._dataset.quarantine import Quarantine, QuarantinedJob

from .base import AsyncCountedInput, AsyncStageIterator, CountedInput, Source, StageIterator
from .report import (
    ALREADY_PUBLISHED,
    JOB_FILTERED,
    JOB_QUARANTINED,
    JOB_UNPARSEABLE,
    RESULTS_UNAVAILABLE,
    Drop,
    RunReport,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack


def job_input_count(job: Job) -> int:
    """How many inputs a job has, as far as its history entry tells."""
    return max(job.total, len(job.input_names))


class JobHistoryQuery(Source[Job]):
    """Every job of the history that matches a time window and filters.

    Takes every filter of :meth:`ModzyClient.jobs.history`, validated now (a bad
    query fails here, before any request). Iterate it with a :class:`ModzyClient`,
    or ``async for`` it with an :class:`AsyncModzyClient`; pages are fetched only as
    jobs are consumed. Jobs come sorted by creation time, oldest first, unless
    ``sort_by``/``direction`` say otherwise.

    Incremental runs: pass ``since=load_checkpoint(url)`` (the checkpoint a versioned
    :class:`DatasetWriter` publishes with each version) to read only the jobs created at
    or after its cursor, and ``lag`` to read a window before it again, because votes
    arrive days after the inference. With no lag, the jobs created exactly at the cursor
    that the previous version already holds are skipped (``already_published``).

    Poison jobs: pass ``quarantine=load_quarantine(url)`` (the jobs a build
    quarantined because their results stayed unavailable run after run) to skip them,
    reported as ``job_quarantined``; they never hold the cursor back. With
    ``quarantine.retrying()`` they are fetched again by id (``GET /jobs/{id}``), in
    creation order with the window's jobs, whatever the window.

    ``max_pages`` caps the pages one run reads (10,000 by default; ``None``: no cap): a
    history still full at that page, or one that repeats a full page (a server that
    ignores paging), stops the run with :class:`PaginationError`. It is never skipped:
    the checkpoint would move past jobs nobody read.

    Subclass hook: override :meth:`keep` to filter jobs on anything the API cannot
    (job metadata, explain flag...). Jobs it rejects are reported as ``job_filtered``.
    """

    name = "query"
    unit = "jobs"

    def __init__(
        self,
        client: ModzyClient | AsyncModzyClient,
        *,
        since: Checkpoint | None = None,
        lag: timedelta = timedelta(0),
        quarantine: Quarantine | None = None,
        max_pages: int | None = DEFAULT_MAX_HISTORY_PAGES,
        **filters: Unpack[HistoryFilters],
    ) -> None:
        check_client(client, "JobHistoryQuery")
        check_filter_names(filters)
        self.max_pages = check_max_pages(max_pages)
        given: object = quarantine  # typed callers cannot get this wrong; notebooks can
        if given is not None and not isinstance(given, Quarantine):
            raise InvalidQueryError(
                "JobHistoryQuery(quarantine=...) takes a Quarantine (load_quarantine(url)), "
                f"not {type(given).__name__}"
            )
        self.quarantine = quarantine or Quarantine()
        self._held = {job.job_id: job for job in self.quarantine.jobs}
        if not isinstance(lag, timedelta):
            raise InvalidQueryError(f"lag must be a timedelta, not {type(lag).__name__}")
        if lag < timedelta(0):
            raise InvalidQueryError("lag must not be negative")
        # Oldest first unless said otherwise: a checkpoint's cursor moves forward.
        self.filters: dict[str, Any] = {
            "start": None,
            "end": None,
            "sort_by": "createdAt",
            "direction": "ASC",
            "page_size": DEFAULT_PAGE_SIZE,
            **filters,
        }
        if since is not None and since.cursor is not None:
            # Resume: a closed lower bound at the cursor, moved back by the lag window
            # so that recent jobs (whose votes may still change) are read again.
            resume_at = since.cursor - lag
            start = self.filters["start"]
            self.filters["start"] = resume_at if start is None else max(start, resume_at)
        self.since = since
        self.lag = lag
        self._boundary = frozenset(since.boundary_ids) if since is not None else frozenset()
        self.client = client
        # Validate now; the params are rebuilt per run so "start in the future" is
        # judged against the clock of the run.
        build_history_params(**self.filters)

    def keep(self, job: Job) -> bool:
        """Whether to pass this job on. Override to filter client-side; default: all."""
        return True

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"stage": self.name}
        for key, value in self.filters.items():
            if value is None:
                continue
            if isinstance(value, datetime):
                value = value.isoformat()
            elif key == "access_key":
                # A prefix is public, but never echo anything that looks like a full key.
                value = [v.split(".", 1)[0] for v in ([value] if isinstance(value, str) else value)]
            elif not isinstance(value, (str, int)):
                value = list(value)
            out[key] = value
        out["base_url"] = self.client.base_url
        if self.since is not None:
            out["since"] = {"version": self.since.version, "cursor": self.since.cursor_text}
            out["lag_seconds"] = self.lag.total_seconds()
        if self.quarantine.jobs:
            out["quarantine"] = self.quarantine.model_dump(mode="json")
        return out

    # Each history item, a job or an item that is not one, is one item in; the ones not
    # passed on become drops, which the stage iterator records like any stage's.

    def _judge(self, job: Job, report: RunReport) -> Job | Drop:
        created = job.created_at or job.submitted_at
        held = self._held.get(job.job_id)
        if held is not None and not self.quarantine.retry:
            reason, detail = JOB_QUARANTINED, _quarantined(held)
        elif (
            held is None
            and self.since is not None
            and not self.lag
            and created == self.since.cursor
            and job.job_id in self._boundary
        ):
            reason, detail = ALREADY_PUBLISHED, f"published in {self.since.version}"
        elif self.keep(job):
            return job
        else:
            reason, detail = JOB_FILTERED, "rejected by keep()"
        n = job_input_count(job)
        report.saw_inputs(n)
        if reason != JOB_QUARANTINED:
            report.progress.mark(job.job_id, created, True, read=False)
        # A quarantined job is not marked at all: the fetcher marks the jobs before it
        # later than this (it works a window behind), and the cursor needs its marks in
        # creation order. Unmarked, it cannot hold the cursor back.
        return Drop(self.name, reason, job.job_id, None, detail, n)

    def _outcomes(
        self, page: JobHistoryPage, report: RunReport, retried: _Retried
    ) -> Iterator[Job | Drop]:
        # A history item that is not a job: reported with its reason, and the run goes
        # on. It is not retried (the API would send the same), nor can it hold the
        # checkpoint back (it has no readable time).
        for bad in page.invalid:
            report.saw_inputs(bad.inputs)
            job_id = bad.job_id or f"(item {bad.index} of history page {page.page})"
            yield Drop(self.name, JOB_UNPARSEABLE, job_id, None, bad.reason, bad.inputs)
        for job in page.items:
            yield from self._judged(retried.before(job), report)
            if job.job_id not in retried.ids:  # fetched by id already
                yield self._judge(job, report)

    def _judged(self, items: list[Job | Drop], report: RunReport) -> Iterator[Job | Drop]:
        for item in items:
            yield item if isinstance(item, Drop) else self._judge(item, report)

    def _start(self, report: RunReport) -> None:
        """What the run's report learns before the first job: the quarantine."""
        if report.query is None:
            report.query = self.describe()
        held = self.quarantine.jobs
        if held:
            report.progress.watch(self._held, exempt=True)
            if not report.quarantined:
                report.quarantined = list(held)

    def _retrieved(self, job_id: str, found: Job | APIError) -> Job | Drop:
        if isinstance(found, Job):
            return found
        detail = f"retrying a quarantined job: {type(found).__name__}: {found}"
        return Drop(self.name, RESULTS_UNAVAILABLE, job_id, None, detail, 0)

    def stream(self, report: RunReport | None = None) -> StageIterator[Job]:
        if not isinstance(self.client, ModzyClient):
            raise TypeError(
                "iterating a JobHistoryQuery needs a ModzyClient; with an AsyncModzyClient "
                "use `async for job in query`"
            )
        report = report or RunReport()
        self._start(report)
        stats = report.stage(self.name, self.unit, unit_in=self.unit)
        items = CountedInput(self._history(self.client, report), report, stats)
        return StageIterator(items, report, stats)

    def _history(self, client: ModzyClient, report: RunReport) -> Iterator[Job | Drop]:
        retried = _Retried()
        if self.quarantine.retry:
            for job_id in sorted(self._held):
                try:
                    found: Job | APIError = client.jobs.retrieve(job_id)
                except APIError as exc:
                    found = exc
                retried.add(self._retrieved(job_id, found))
        # The next page is requested while this one's jobs flow downstream: without it
        # the fetcher's workers ran dry at each page boundary (bench/RESULTS.md).
        pager = client.jobs.history(**self.filters, strict=False, max_pages=self.max_pages)
        for page in read_ahead(pager.pages()):
            yield from self._outcomes(page, report, retried)
        yield from self._judged(retried.before(None), report)

    def astream(self, report: RunReport | None = None) -> AsyncStageIterator[Job]:
        if not isinstance(self.client, AsyncModzyClient):
            raise TypeError(
                "`async for` over a JobHistoryQuery needs an AsyncModzyClient; with a "
                "ModzyClient iterate it with a plain `for`"
            )
        report = report or RunReport()
        self._start(report)
        stats = report.stage(self.name, self.unit, unit_in=self.unit)
        items = AsyncCountedInput(self._ahistory(self.client, report), report, stats)
        return AsyncStageIterator(items, report, stats)

    async def _ahistory(
        self, client: AsyncModzyClient, report: RunReport
    ) -> AsyncIterator[Job | Drop]:
        retried = _Retried()
        if self.quarantine.retry:
            for job_id in sorted(self._held):
                try:
                    found: Job | APIError = await client.jobs.retrieve(job_id)
                except APIError as exc:
                    found = exc
                retried.add(self._retrieved(job_id, found))
        pager = client.jobs.history(**self.filters, strict=False, max_pages=self.max_pages)
        pages = pager.pages()
        async for page in aread_ahead(pages):
            for outcome in self._outcomes(page, report, retried):
                yield outcome
        for outcome in self._judged(retried.before(None), report):
            yield outcome


_EPOCH = datetime.min.replace(tzinfo=timezone.utc)


def _created(job: Job) -> datetime:
    return job.created_at or job.submitted_at or _EPOCH


class _Retried:
    """Quarantined jobs fetched by id, merged into the history by creation time (the
    history's default order), so that the cursor sees them in order."""

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self._pending: list[Job | Drop] = []

    def add(self, item: Job | Drop) -> None:
        if isinstance(item, Job):
            self.ids.add(item.job_id)
        self._pending.append(item)
        # Drops (not found) first: they have no time.
        self._pending.sort(key=lambda i: _EPOCH if isinstance(i, Drop) else _created(i))

    def before(self, job: Job | None) -> list[Job | Drop]:
        """The retried jobs due before ``job`` (``None``: all that are left)."""
        if job is None:
            due, self._pending = self._pending, []
            return due
        at = _created(job)
        n = 0
        while n < len(self._pending):
            item = self._pending[n]
            if not isinstance(item, Drop) and _created(item) > at:
                break
            n += 1
        due, self._pending = self._pending[:n], self._pending[n:]
        return due


def _quarantined(job: QuarantinedJob) -> str:
    """A skipped job's drop detail: why, since when, and how to try it again."""
    return (
        f"quarantined: {job.reason} in {job.attempts} runs in a row "
        f"({job.first_attempt.isoformat()} to {job.last_attempt.isoformat()}): {job.detail}; "
        "`modzy-retrain build --retry-quarantined` (Quarantine(retry=True)) tries it again"
    )


def recorded_query(report: RunReport) -> dict[str, Any] | None:
    """The query as a version's manifest records it: its quarantine without the jobs
    this run retried and read (they left it, and their samples are in the version)."""
    query = report.query
    held = (query or {}).get("quarantine")
    if query is None or not held or not report.progress.had:
        return query
    jobs = [job for job in held["jobs"] if job["job_id"] not in report.progress.had]
    return {**query, "quarantine": {**held, "jobs": jobs}}
