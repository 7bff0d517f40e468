"""A run's job progress: which jobs are done for good (where the next run's cursor
goes), which were read in full, and each read job's vote tally for the writer."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, MutableSet
from datetime import datetime
from typing import Any

from modzy_retrain._dataset.tallies import TallySink


class JobProgress:
    """Which jobs of a run are done for good, to place the next run's cursor.

    A job is *complete* when its results were had (or it was deliberately skipped);
    it is *incomplete* when it had not finished or its results could not be fetched,
    and a later run must read it again. Jobs arrive in history order (creation time,
    oldest first), so the cursor is the creation time of the first incomplete job, or
    of the last job when all are complete, plus the ids of the complete jobs created
    at exactly that time (the next run's closed lower bound skips those).

    A quarantined job (:meth:`watch` with ``exempt``) never holds the cursor back, even
    when it is retried and its results are still missing.

    Each job whose results were read is also tallied (:meth:`tally`): the tallies go to
    the sink a writer hands in (:meth:`tally_into`), kept on disk; without a writer
    they go nowhere, and memory stays flat.
    """

    def __init__(self) -> None:
        self.ordered = True
        # Jobs whose outcome the run's owner wants (a build: the ones it counts as
        # unavailable, and the quarantined): ``had`` gets those read in full.
        self.watched: set[str] = set()
        self.exempt: set[str] = set()
        self.had: set[str] = set()
        # Jobs whose results this run read in full: their samples are authoritative.
        # Kept only when a versioned writer asks (it merges by them, and hands in a
        # set spilled to disk); a plain run keeps no per-job state, so its memory
        # stays flat. Only ties at the cursor are kept below, never every job.
        self.track_ids = False
        self.complete_ids: MutableSet[str] = set()
        self._last: datetime | None = None
        self._max: datetime | None = None
        self._ids_at_max: set[str] = set()
        self._first_incomplete: datetime | None = None
        self._ids_at_first_incomplete: set[str] = set()
        self._tallies: TallySink | None = None
        # Jobs tallied in this run (whether or not a sink took them).
        self.tallied = 0

    def tally_into(self, sink: TallySink | None) -> None:
        """Send each job's tally to ``sink`` from now on (``None``: to nowhere)."""
        self._tallies = sink

    def tally(self, tally: Mapping[str, Any]) -> None:
        """Record the vote tally of one job whose results this run read (a
        ``JobTally`` in its JSON form)."""
        self.tallied += 1
        if self._tallies is not None:
            self._tallies.add(tally)

    def track(self, ids: MutableSet[str] | None = None) -> None:
        """Record the ids of the jobs read in full from now on, into ``ids``."""
        self.track_ids = True
        self.complete_ids = ids if ids is not None else set()

    def untrack(self) -> None:
        """Stop recording job ids, and let go of the ones recorded."""
        self.track_ids = False
        self.complete_ids = set()

    def watch(self, ids: Iterable[str], *, exempt: bool = False) -> None:
        """Note which of these jobs this run reads in full (in :attr:`had`); ``exempt``:
        they are quarantined, and never hold the cursor back."""
        given = set(ids)
        self.watched |= given
        if exempt:
            self.exempt |= given

    def mark(
        self, job_id: str, created_at: datetime | None, complete: bool, *, read: bool = True
    ) -> None:
        """Record one job. ``read``: its results were read in this run, so this run
        has the final word on its samples (a skipped or filtered job is complete but
        was not read, and its earlier samples stand)."""
        if complete and read:
            if self.track_ids:
                self.complete_ids.add(job_id)
            if job_id in self.watched:
                self.had.add(job_id)
        # Quarantined: done for the cursor, whatever came of it (its samples, if any
        # from before, stand unless it was read).
        complete = complete or job_id in self.exempt
        if created_at is None:
            if not complete:
                self.ordered = False  # nothing safe to advance past
            return
        if self._last is not None and created_at < self._last:
            self.ordered = False
        self._last = created_at
        if self._first_incomplete is None:
            if complete:
                if self._max is None or created_at > self._max:
                    self._max, self._ids_at_max = created_at, {job_id}
                elif created_at == self._max:
                    self._ids_at_max.add(job_id)
            else:
                self._first_incomplete = created_at
                same = self._max == created_at
                self._ids_at_first_incomplete = set(self._ids_at_max) if same else set()
        elif complete and created_at == self._first_incomplete:
            self._ids_at_first_incomplete.add(job_id)

    @property
    def last_created(self) -> datetime | None:
        """Creation time of the latest job seen (how far through the window a run is)."""
        return self._last

    def cursor(self) -> tuple[datetime, list[str]] | None:
        """``(cursor, boundary ids)`` for the next run, or ``None`` if nothing moved."""
        if not self.ordered:
            return None
        if self._first_incomplete is not None:
            return self._first_incomplete, sorted(self._ids_at_first_incomplete)
        if self._max is not None:
            return self._max, sorted(self._ids_at_max)
        return None
