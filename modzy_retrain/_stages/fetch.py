"""``ResultFetcher``: each job's results, fetched concurrently, one record per input.

Nothing is dropped silently. For each job the fetcher accounts for every input it
knows of (the job's input names, and whatever the results list): a successful input
becomes a :class:`PredictionRecord`; anything else is a drop with a reason:

- ``job_not_finished``: the job is still queued or running (a later run will get it);
- ``results_unavailable``: the results could not be had after the client's retries, or
  are over a limit (``max_response_bytes``, ``max_bytes_in_flight``,
  ``max_inputs_per_job``: raised, the next run fetches the job);
- ``result_unparseable``: the results, or one input's result, could not be parsed;
- ``input_failed``: the model failed on the input (the error is in the detail);
- ``no_result``: the job ended (canceled, timed out) before the input was processed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from modzy_retrain._client import calls
from modzy_retrain._client.client import AsyncModzyClient, ModzyClient, check_client
from modzy_retrain._client.models import Job, JobResults, JobStatus
from modzy_retrain._client.parsing import parse_job_results
from modzy_retrain._core.budget import AsyncByteBudget, AsyncLease, ByteBudget, Lease, OverBudget
from modzy_retrain._core.concurrency import aordered_map, ordered_map
from modzy_retrain._core.constants import DEFAULT_MAX_BYTES_IN_FLIGHT, DEFAULT_MAX_INPUTS_PER_JOB
from modzy_retrain._core.exceptions import APIError, ConfigurationError, ResultParseError
from modzy_retrain._dataset.journal import ResultJournal

from .base import Stage, run_report
from .query import job_input_count
from .records import PredictionRecord, job_tally, records_from_results
from .report import (
    INPUT_FAILED,
    JOB_NOT_FINISHED,
    NO_RESULT,
    RESULT_UNPARSEABLE,
    RESULTS_UNAVAILABLE,
    Drop,
    RunReport,
)

DEFAULT_CONCURRENCY = 32
# Jobs taken from upstream ahead of the one being yielded, per unit of concurrency.
# Upstream is usually the history pager, which blocks for a round trip on each new
# page: with only twice the concurrency queued, the workers ran dry during that wait
# (a fifth of the throughput at 32 in flight, bench/RESULTS.md). Four times covers two
# round trips; memory stays bounded by it.
_WINDOW_PER_WORKER = 4
_NOT_STARTED = frozenset({JobStatus.SUBMITTED, JobStatus.OPEN})


# What one input's parsed result and record may hold, on top of its body's weight (an
# InputResult measured at about 2.4 KB, its PredictionRecord and the job's metadata).
_INPUT_WEIGHT = 4 * 1024


@dataclass(frozen=True)
class _Fetched:
    job: Job
    results: JobResults | None
    error: str | None = None
    reason: str | None = None
    body: Any = None  # the raw body, when it was fetched now (to journal)


def _results_inputs(body: Any) -> int:
    """How many inputs a decoded results body lists (before any of them is parsed)."""
    if not isinstance(body, dict):
        return 0
    return sum(
        len(part) for key in ("results", "failures") if isinstance(part := body.get(key), dict)
    )


class ResultFetcher(Stage[Job, PredictionRecord]):
    """Fetch every job's results with bounded concurrency; yield one record per input.

    Args:
        client: A :class:`ModzyClient` for the sync path, an :class:`AsyncModzyClient`
            for the async one (retries and timeouts are the client's).
        concurrency: Jobs fetched at once (default 32). The client's pool should be at
            least this large (its default is 64).
        include_unfinished: Also fetch jobs still in progress and yield their finished
            inputs (default: report them as ``job_not_finished`` for a later run).
        journal: A :class:`ResultJournal`: results it holds are not fetched again,
            and finished jobs fetched now are added to it (see incremental builds).
        max_bytes_in_flight: Memory the fetcher may hold at once for results it is
            receiving or has not passed on yet (128 MiB by default). Each body is
            weighed as it arrives, at an estimate of what it becomes once decoded (its
            bytes twice, 64 bytes for each JSON value, 256 for each object), plus 4 KiB
            an input for its parsed result and record. A fetch waits while the budget
            is spent, except the oldest, which the run is waiting for; so at most twice
            this is held. A job that alone would weigh more is refused
            (``results_unavailable``).
        max_inputs_per_job: A job with more inputs than this (10,000 by default), by
            its history entry or by its results, is not fetched or parsed
            (``results_unavailable``, naming the setting).

    Records come out in job order, then in the order the API lists the inputs.

    Subclass hook: override :meth:`to_records` to turn a job's results into records
    differently (another output format, extra metadata).
    """

    name = "fetch"
    unit = "inputs"  # takes jobs, gives one record per input

    def __init__(
        self,
        client: ModzyClient | AsyncModzyClient,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        include_unfinished: bool = False,
        journal: ResultJournal | None = None,
        max_bytes_in_flight: int = DEFAULT_MAX_BYTES_IN_FLIGHT,
        max_inputs_per_job: int = DEFAULT_MAX_INPUTS_PER_JOB,
    ) -> None:
        check_client(client, "ResultFetcher")
        for name, value in (
            ("concurrency", concurrency),
            ("max_bytes_in_flight", max_bytes_in_flight),
            ("max_inputs_per_job", max_inputs_per_job),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(
                    f"ResultFetcher: {name} must be a whole number of at least 1, not {value!r}"
                )
        self.journal = journal
        self.client = client
        self.concurrency = concurrency
        self.include_unfinished = include_unfinished
        self.max_bytes_in_flight = max_bytes_in_flight
        self.max_inputs_per_job = max_inputs_per_job

    def to_records(self, job: Job, results: JobResults) -> Iterable[PredictionRecord]:
        """Turn one job's parsed results into prediction records (one per input)."""
        return records_from_results(job, results)

    def describe(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "concurrency": self.concurrency,
            "include_unfinished": self.include_unfinished,
            "max_bytes_in_flight": self.max_bytes_in_flight,
            "max_inputs_per_job": self.max_inputs_per_job,
        }

    # -- pure: what to fetch, and what a fetch means -------------------------------------

    def _skip_reason(self, job: Job) -> str | None:
        if job.status in _NOT_STARTED:
            return f"job is {job.status}: no results yet"
        if not job.is_finished and not self.include_unfinished:
            return f"job is {job.status}: results may still change"
        return None

    def _account(self, fetched: _Fetched, report: RunReport) -> list[PredictionRecord | Drop]:
        """One fetched job: its records and the drops for every input it does not give.

        Drops come first, so the report holds a job's drops by the time its first
        record is out.
        """
        job = fetched.job
        results = fetched.results
        # Done for good: results had for a finished job, or results that will never
        # parse (quarantined, not retried forever). Unfinished and unavailable jobs
        # hold the next run's cursor back so that run reads them again.
        complete = (results is not None and job.is_finished) or (
            results is None and fetched.reason == RESULT_UNPARSEABLE
        )
        report.progress.mark(job.job_id, job.created_at or job.submitted_at, complete)
        drops: list[PredictionRecord | Drop] = []
        if results is None:
            names = list(dict.fromkeys(job.input_names))
            count = job_input_count(job)
            reason = fetched.reason or RESULTS_UNAVAILABLE
            detail = fetched.error or ""
            report.saw_inputs(count)
            if names:
                for name in names:
                    drops.append(Drop(self.name, reason, job.job_id, name, detail))
                if count > len(names):
                    drops.append(
                        Drop(self.name, reason, job.job_id, None, detail, count - len(names))
                    )
            elif count:
                drops.append(Drop(self.name, reason, job.job_id, None, detail, count))
            return drops

        if self.journal is not None and fetched.body is not None and complete:
            self.journal.add(job.job_id, fetched.body)
        records = list(self.to_records(job, results))
        # Every job read is tallied, selected or not: what a rate of down-votes needs.
        report.progress.tally(job_tally(job, records))
        produced = {r.input_name for r in records}
        known = list(
            dict.fromkeys([*job.input_names, *results.results, *results.failures, *results.invalid])
        )
        report.saw_inputs(len(known))
        for name in known:
            if name in produced:
                continue
            if name in results.failures:
                error = results.failures[name].error or "failed"
                drops.append(Drop(self.name, INPUT_FAILED, job.job_id, name, error))
            elif name in results.invalid:
                drops.append(
                    Drop(self.name, RESULT_UNPARSEABLE, job.job_id, name, results.invalid[name])
                )
            elif name in results.results:
                # to_records() chose not to produce this input: still accounted for.
                drops.append(Drop(self.name, NO_RESULT, job.job_id, name, "no record produced"))
            else:
                detail = f"job ended {job.status} before this input was processed"
                if not results.finished:
                    detail = "not processed yet"
                drops.append(Drop(self.name, NO_RESULT, job.job_id, name, detail))
        # Inputs the job counts but never names (an old API generation): accounted too.
        if job.total > len(known):
            report.saw_inputs(job.total - len(known))
            drops.append(
                Drop(
                    self.name,
                    NO_RESULT,
                    job.job_id,
                    None,
                    "inputs counted by the job but absent from its results",
                    job.total - len(known),
                )
            )
        return [*drops, *records]

    def _before(self, job: Job) -> _Fetched | None:
        """What is known without a request: a job to skip, too large, or journaled."""
        skip = self._skip_reason(job)
        if skip is not None:
            return _Fetched(job, None, skip, JOB_NOT_FINISHED)
        too_many = self._too_many_inputs(job, job_input_count(job), "its history entry")
        if too_many is not None:
            return too_many
        cached = self.journal.get(job.job_id) if self.journal is not None else None
        if cached is not None:
            refused, _ = self._parse_weight(job, cached)
            return refused or self._parsed(job, cached, to_journal=False)
        return None

    def _too_many_inputs(self, job: Job, inputs: int, said_by: str) -> _Fetched | None:
        if inputs <= self.max_inputs_per_job:
            return None
        detail = (
            f"{said_by} lists {inputs:,} inputs, over the fetcher's max_inputs_per_job "
            f"({self.max_inputs_per_job:,}): not fetched; raise it to fetch this job"
        )
        return _Fetched(job, None, detail, RESULTS_UNAVAILABLE)

    def _parse_weight(self, job: Job, body: Any) -> tuple[_Fetched | None, int]:
        """Before parsing a body: refused for its input count, or what parsing will hold."""
        inputs = _results_inputs(body)
        return self._too_many_inputs(job, inputs, "its results"), inputs * _INPUT_WEIGHT

    def _over_budget(self, job: Job) -> _Fetched:
        detail = (
            f"its {job_input_count(job):,} inputs, once parsed, would weigh more than the "
            f"fetcher's max_bytes_in_flight ({self.max_bytes_in_flight:,}): not parsed"
        )
        return _Fetched(job, None, detail, RESULTS_UNAVAILABLE)

    def _parsed(self, job: Job, body: Any, *, to_journal: bool = True) -> _Fetched:
        try:
            results = parse_job_results(
                job.job_id, body, strict=False, method="GET", path=f"/results/{job.job_id}"
            )
        except ResultParseError as exc:
            return _Fetched(job, None, str(exc), RESULT_UNPARSEABLE)
        # The raw body rides along only to be journaled: without a journal, holding it
        # would keep every job in the window's results twice.
        keep = to_journal and self.journal is not None
        return _Fetched(job, results, body=body if keep else None)

    @staticmethod
    def _failed(job: Job, exc: APIError) -> _Fetched:
        if isinstance(exc, ResultParseError):
            # A body that never decoded, after the client's retries: quarantined like
            # one that decodes but will not parse, so it does not hold the cursor back.
            return _Fetched(job, None, str(exc), RESULT_UNPARSEABLE)
        return _Fetched(job, None, f"{type(exc).__name__}: {exc}", RESULTS_UNAVAILABLE)

    # -- sync -------------------------------------------------------------------------

    def _fetch(self, leased: tuple[Job, Lease]) -> tuple[_Fetched, Lease]:
        job, lease = leased
        return self._fetch_job(job, lease), lease

    def _fetch_job(self, job: Job, lease: Lease) -> _Fetched:
        known = self._before(job)
        if known is not None:
            return known
        client = self.client
        assert isinstance(client, ModzyClient)
        try:
            body = client.call(calls.job_results_body(job.job_id), lease=lease)
        except APIError as exc:
            return self._failed(job, exc)
        refused, weight = self._parse_weight(job, body)
        if refused is not None:
            return refused
        try:
            lease.take(weight)
        except OverBudget:
            return self._over_budget(job)
        return self._parsed(job, body)

    def process_stream(self, items: Iterator[Job]) -> Iterator[PredictionRecord | Drop]:
        if not isinstance(self.client, ModzyClient):
            raise TypeError(
                "the sync ResultFetcher needs a ModzyClient; use fetcher.astream() "
                "with an AsyncModzyClient"
            )
        report = run_report(items)
        window = self.concurrency * _WINDOW_PER_WORKER
        budget = ByteBudget(self.max_bytes_in_flight)
        # Leases are opened here, on the caller's thread, as jobs enter the window: in
        # job order, the order their results are consumed and their leases released.
        leased = ((job, budget.lease()) for job in items)
        fetched_jobs = ordered_map(self._fetch, leased, concurrency=self.concurrency, window=window)
        try:
            for fetched, lease in fetched_jobs:
                try:
                    yield from self._account(fetched, report)
                finally:
                    # Let go of this job before the next is fetched: the loop variable
                    # would keep its results alive while the next one is read.
                    del fetched
                    lease.release()
        finally:
            # Closed early: fetches waiting for the budget stop, then the pool is joined.
            budget.close()
            fetched_jobs.close()

    # -- async ------------------------------------------------------------------------

    async def _afetch(self, leased: tuple[Job, AsyncLease]) -> tuple[_Fetched, AsyncLease]:
        job, lease = leased
        return await self._afetch_job(job, lease), lease

    async def _afetch_job(self, job: Job, lease: AsyncLease) -> _Fetched:
        known = self._before(job)
        if known is not None:
            return known
        client = self.client
        assert isinstance(client, AsyncModzyClient)
        try:
            body = await client.call(calls.job_results_body(job.job_id), lease=lease)
        except APIError as exc:
            return self._failed(job, exc)
        refused, weight = self._parse_weight(job, body)
        if refused is not None:
            return refused
        try:
            await lease.take(weight)
        except OverBudget:
            return self._over_budget(job)
        return self._parsed(job, body)

    async def aprocess_stream(
        self, items: AsyncIterator[Job]
    ) -> AsyncIterator[PredictionRecord | Drop]:
        if not isinstance(self.client, AsyncModzyClient):
            raise TypeError(
                "ResultFetcher.astream() needs an AsyncModzyClient; with a ModzyClient "
                "call the fetcher directly"
            )
        report = run_report(items)
        window = self.concurrency * _WINDOW_PER_WORKER
        budget = AsyncByteBudget(self.max_bytes_in_flight)

        async def leased() -> AsyncIterator[tuple[Job, AsyncLease]]:
            # Opened as jobs enter the window: in job order, as in the sync path.
            async for job in items:
                yield job, budget.lease()

        fetched_jobs = aordered_map(
            self._afetch, leased(), concurrency=self.concurrency, window=window
        )
        try:
            async with aclosing(fetched_jobs):  # closed early: pending fetches are cancelled
                async for fetched, lease in fetched_jobs:
                    try:
                        for result in self._account(fetched, report):
                            yield result
                    finally:
                        del fetched  # as in the sync path
                        lease.release()
        finally:
            budget.close()
