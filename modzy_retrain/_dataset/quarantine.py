"""Poison jobs: results unavailable run after run, counted, then quarantined.

A job whose results cannot be had holds the incremental cursor back, so the next run
reads it again. One whose results never come back would hold it forever, and every
run would exit "incomplete". So each run that tries such a job counts the attempt,
and a job unavailable in ``quarantine_after`` runs in a row (3 by default) is
quarantined: the history query skips it (``job_quarantined``), the cursor moves past
it, and it stays listed, with its reason and its first and last attempts, until a run
retries it (``Quarantine(retry=True)``, ``modzy-retrain build --retry-quarantined``)
and its results are had. A job whose results are had before the threshold starts
from zero again.

The count lives in ``_state/unavailable.json`` at the dataset's root, beside the
versions and not in a manifest: a manifest is written only with a version, and most
runs that meet a poison job publish nothing. The file is rewritten whole, atomically,
by the run that tried the jobs, under the dataset's lock.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from pydantic import Field, ValidationError, field_validator

from modzy_retrain._core.exceptions import ConfigurationError, DatasetError
from modzy_retrain._core.fs import atomic_write, join, url_to_fs
from modzy_retrain._core.options import FrozenOptions

STATE_NAME = "_state/unavailable.json"
STATE_FORMAT = 1
DEFAULT_QUARANTINE_AFTER = 3


class QuarantinedJob(FrozenOptions):
    """A job whose results could not be had, run after run.

    Attributes:
        job_id: The job.
        reason: Why its results were missing (``results_unavailable``).
        detail: The last error, e.g. ``InternalServerError: 503 ...``.
        attempts: Runs in a row that tried it and failed.
        first_attempt: When the first of those runs started (UTC).
        last_attempt: When the latest of them started (UTC).
        quarantined_at: When it was quarantined (the run that reached the threshold);
            ``None`` while it is only counted (in the state file, never in a
            :class:`Quarantine`).
    """

    job_id: str = Field(min_length=1)
    reason: str
    detail: str = ""
    attempts: int = Field(ge=1)
    first_attempt: datetime
    last_attempt: datetime
    quarantined_at: datetime | None = None


class Quarantine(FrozenOptions):
    """The jobs a history query skips, or, with ``retry``, fetches again by id.

    ``load_quarantine(url)`` reads a dataset's; pass it to
    ``JobHistoryQuery(quarantine=...)``. A quarantined job never holds the cursor back,
    whether it is skipped or retried and fails again.

    Attributes:
        jobs: The quarantined jobs.
        retry: Fetch each of them by id, in addition to the history's window, instead
            of skipping them.
    """

    jobs: tuple[QuarantinedJob, ...] = ()
    retry: bool = False

    @field_validator("jobs")
    @classmethod
    def _unique(cls, jobs: tuple[QuarantinedJob, ...]) -> tuple[QuarantinedJob, ...]:
        ids = [job.job_id for job in jobs]
        if len(ids) != len(set(ids)):
            raise ValueError("a job is listed twice")
        return jobs

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(job.job_id for job in self.jobs)

    def get(self, job_id: str) -> QuarantinedJob | None:
        """The quarantined job of this id, or ``None``."""
        return next((job for job in self.jobs if job.job_id == job_id), None)

    def retrying(self) -> Quarantine:
        """The same jobs, to be fetched again by id (``retry=True``)."""
        return Quarantine(jobs=self.jobs, retry=True)


class UnavailableJobs:
    """The state file: every job counted or quarantined, by id. Strictly private.

    Read with :meth:`load`, changed by :meth:`record` once per run, written by
    :meth:`save` (under the dataset's lock).
    """

    def __init__(self, jobs: Iterable[QuarantinedJob] = ()) -> None:
        self.jobs: dict[str, QuarantinedJob] = {job.job_id: job for job in jobs}

    @classmethod
    def load(cls, fs: Any, root: str) -> UnavailableJobs:
        path = join(root, STATE_NAME)
        try:
            raw = fs.cat_file(path)
        except FileNotFoundError:
            return cls()
        try:
            body = json.loads(raw)
            return cls(QuarantinedJob(**entry) for entry in body["jobs"])
        except (ValueError, KeyError, TypeError, ValidationError, ConfigurationError):
            raise DatasetError(
                f"unreadable {STATE_NAME}: fix or delete it (deleting it forgets the "
                "count of unavailable attempts, and releases every quarantined job)"
            ) from None

    def save(self, fs: Any, root: str) -> None:
        jobs = [job.model_dump(mode="json") for job in self.jobs.values()]
        body = {"format": STATE_FORMAT, "jobs": jobs}
        atomic_write(fs, join(root, STATE_NAME), json.dumps(body, indent=2).encode())

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self.jobs)

    def quarantine(self, *, retry: bool = False) -> Quarantine:
        """The quarantined jobs, in the order they were quarantined."""
        held = [job for job in self.jobs.values() if job.quarantined_at is not None]
        held.sort(key=lambda job: (job.quarantined_at, job.job_id))
        return Quarantine(jobs=tuple(held), retry=retry)

    def record(
        self,
        *,
        failed: Mapping[str, str],
        reason: str,
        had: Iterable[str],
        at: datetime,
        after: int,
    ) -> list[QuarantinedJob]:
        """One run's outcome; the jobs it quarantined.

        Args:
            failed: The jobs whose results this run could not have, with the last error.
            reason: Why (the drop reason, ``results_unavailable``).
            had: Jobs whose results this run read: they leave the count, and the
                quarantine.
            at: When the run started: its attempt's time.
            after: Attempts in a row that quarantine a job (0: never).
        """
        for job_id in had:
            self.jobs.pop(job_id, None)
        quarantined = []
        for job_id, detail in failed.items():
            before = self.jobs.get(job_id)
            if before is None:
                job = QuarantinedJob(
                    job_id=job_id,
                    reason=reason,
                    detail=detail,
                    attempts=1,
                    first_attempt=at,
                    last_attempt=at,
                )
            else:
                update = {
                    "attempts": before.attempts + 1,
                    "last_attempt": at,
                    "reason": reason,
                    "detail": detail,
                }
                job = before.model_copy(update=update)
            if job.quarantined_at is None and after and job.attempts >= after:
                job = job.model_copy(update={"quarantined_at": at})
                quarantined.append(job)
            self.jobs[job_id] = job
        return quarantined


def load_quarantine(url: str, *, storage_options: Mapping[str, Any] | None = None) -> Quarantine:
    """The jobs a dataset's builds quarantined (none for a dataset without any).

    Pass it to ``JobHistoryQuery(quarantine=...)`` to skip them, or
    ``load_quarantine(url).retrying()`` to fetch them again by id.

    Raises:
        DatasetError: The state file is unreadable.
    """
    fs, root = url_to_fs(url, storage_options)
    return UnavailableJobs.load(fs, root).quarantine()
