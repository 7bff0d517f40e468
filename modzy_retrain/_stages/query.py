"""``JobHistoryQuery``: the chain's source, every job of a time window, lazily."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from modzy_retrain._client.client import AsyncModzyClient, ModzyClient, check_client
from modzy_retrain._client.history import HistoryFilters, build_history_params, check_filter_names
from modzy_retrain._client.models import Job
from modzy_retrain._client.pagination import JobHistoryPage, check_max_pages
from modzy_retrain._core.concurrency import aread_ahead, read_ahead
from modzy_retrain._core.constants import DEFAULT_MAX_HISTORY_PAGES, DEFAULT_PAGE_SIZE
from modzy_retrain._core.exceptions import InvalidQueryError
from modzy_retrain._dataset.manifest import Checkpoint

from .base import AsyncCountedInput, AsyncStageIterator, CountedInput, Source, StageIterator
from .report import (
    ALREADY_PUBLISHED,
    JOB_FILTERED,
    JOB_UNPARSEABLE,
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
        max_pages: int | None = DEFAULT_MAX_HISTORY_PAGES,
        **filters: Unpack[HistoryFilters],
    ) -> None:
        check_client(client, "JobHistoryQuery")
        check_filter_names(filters)
        self.max_pages = check_max_pages(max_pages)
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
        return out

    # Each history item, a job or an item that is not one, is one item in; the ones not
    # passed on become drops, which the stage iterator records like any stage's.

    def _judge(self, job: Job, report: RunReport) -> Job | Drop:
        created = job.created_at or job.submitted_at
        if (
            self.since is not None
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
        report.progress.mark(job.job_id, created, True, read=False)
        return Drop(self.name, reason, job.job_id, None, detail, n)

    def _outcomes(self, page: JobHistoryPage, report: RunReport) -> Iterator[Job | Drop]:
        # A history item that is not a job: reported with its reason, and the run goes
        # on. It is not retried (the API would send the same), nor can it hold the
        # checkpoint back (it has no readable time).
        for bad in page.invalid:
            report.saw_inputs(bad.inputs)
            job_id = bad.job_id or f"(item {bad.index} of history page {page.page})"
            yield Drop(self.name, JOB_UNPARSEABLE, job_id, None, bad.reason, bad.inputs)
        for job in page.items:
            yield self._judge(job, report)

    def stream(self, report: RunReport | None = None) -> StageIterator[Job]:
        if not isinstance(self.client, ModzyClient):
            raise TypeError(
                "iterating a JobHistoryQuery needs a ModzyClient; with an AsyncModzyClient "
                "use `async for job in query`"
            )
        report = report or RunReport()
        if report.query is None:
            report.query = self.describe()
        stats = report.stage(self.name, self.unit, unit_in=self.unit)
        items = CountedInput(self._history(self.client, report), report, stats)
        return StageIterator(items, report, stats)

    def _history(self, client: ModzyClient, report: RunReport) -> Iterator[Job | Drop]:
        # The next page is requested while this one's jobs flow downstream: without it
        # the fetcher's workers ran dry at each page boundary (bench/RESULTS.md).
        pager = client.jobs.history(**self.filters, strict=False, max_pages=self.max_pages)
        for page in read_ahead(pager.pages()):
            yield from self._outcomes(page, report)

    def astream(self, report: RunReport | None = None) -> AsyncStageIterator[Job]:
        if not isinstance(self.client, AsyncModzyClient):
            raise TypeError(
                "`async for` over a JobHistoryQuery needs an AsyncModzyClient; with a "
                "ModzyClient iterate it with a plain `for`"
            )
        report = report or RunReport()
        if report.query is None:
            report.query = self.describe()
        stats = report.stage(self.name, self.unit, unit_in=self.unit)
        items = AsyncCountedInput(self._ahistory(self.client, report), report, stats)
        return AsyncStageIterator(items, report, stats)

    async def _ahistory(
        self, client: AsyncModzyClient, report: RunReport
    ) -> AsyncIterator[Job | Drop]:
        pager = client.jobs.history(**self.filters, strict=False, max_pages=self.max_pages)
        pages = pager.pages()
        async for page in aread_ahead(pages):
            for outcome in self._outcomes(page, report):
                yield outcome
