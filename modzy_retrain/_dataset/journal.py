"""A small journal of fetched results, so a rerun after a crash does not fetch again.

Kept beside the dataset under ``_staging/after-<version>/`` (the version the run
started from), as part files of a few jobs each, each written in one atomic step:
object stores cannot append. A rerun from the same checkpoint loads the parts and
reuses every job's results body they hold; the writer deletes ``_staging/`` once a
version is published (or the run found nothing new), under the dataset's lock.

Only finished jobs are journaled. Their results no longer change, except for votes:
a rerun sees the votes the killed run saw, which is what that run would have written.

A rerun does not hold what it loads in memory (a killed run over a long history
journals a results body per job): :meth:`ResultJournal.load` copies the entries to a
scratch database, and each is read back when the fetcher asks for its job.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from modzy_retrain._core.fs import atomic_write, join, url_to_fs

from .spill import SpillStore

STAGING_DIR = "_staging"
DEFAULT_PART_SIZE = 16


class ResultJournal:
    """Fetched results bodies for one build, reusable by a rerun.

    Args:
        url: The dataset URL (the journal lives beside it).
        after: The version the run starts from (``None`` for the first).
        part_size: Jobs per part file (a crash loses at most this many).
    """

    def __init__(
        self,
        url: str,
        *,
        after: str | None,
        storage_options: Mapping[str, Any] | None = None,
        part_size: int = DEFAULT_PART_SIZE,
    ) -> None:
        self.fs, root = url_to_fs(url, storage_options)
        self.staging_root = join(root, STAGING_DIR)
        self.dir = join(self.staging_root, f"after-{after or 'nothing'}")
        self.part_size = part_size
        self._run = uuid.uuid4().hex[:8]
        self._parts = 0
        self._buffer: list[str] = []
        self._lock = threading.Lock()
        # What load() found, on disk: job id -> the journaled line (body included).
        self._loaded: SpillStore | None = None
        self.reused = 0

    @property
    def bodies(self) -> Mapping[str, Any]:
        """The results bodies :meth:`load` found, by job id (read from disk on access)."""
        return _Bodies(self)

    def load(self) -> int:
        """Read what earlier, killed runs journaled; returns how many jobs."""
        try:
            parts = self.fs.find(self.dir)
        except FileNotFoundError:
            parts = []
        for part in sorted(parts):
            if not str(part).endswith(".jsonl"):
                continue
            try:
                text = bytes(self.fs.cat_file(part)).decode("utf-8")
            except FileNotFoundError:
                continue
            entries = []
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                    job_id = str(entry["job_id"])
                    entry["body"]  # a line without a body is torn too
                except (ValueError, KeyError, TypeError):
                    continue  # a torn line of a part that never completed
                entries.append((job_id, line))
            if entries:
                store = self._store()
                with store.lock:
                    # A later part wins, as a later run's fetch of the same job would.
                    store.db.executemany("INSERT OR REPLACE INTO bodies VALUES (?, ?)", entries)
        return len(self.bodies)

    def _store(self) -> SpillStore:
        if self._loaded is None:
            self._loaded = SpillStore(
                ["CREATE TABLE bodies (job_id TEXT PRIMARY KEY, line TEXT NOT NULL) WITHOUT ROWID"],
                prefix="modzy-retrain-journal-",
            )
        return self._loaded

    def _line(self, job_id: str) -> str | None:
        store = self._loaded
        if store is None or store.closed:
            return None
        row = store.one("SELECT line FROM bodies WHERE job_id = ?", (job_id,))
        return None if row is None else str(row[0])

    def get(self, job_id: str) -> Any | None:
        """The results body journaled for the job, or None."""
        line = self._line(job_id)
        if line is None:
            return None
        body = json.loads(line)["body"]
        if body is not None:
            with self._lock:
                self.reused += 1
        return body

    def add(self, job_id: str, body: Any) -> None:
        """Journal one job's results body (written out in parts, as they fill)."""
        with self._lock:
            self._buffer.append(json.dumps({"job_id": job_id, "body": body}))
            if len(self._buffer) >= self.part_size:
                self._flush_locked()

    def flush(self) -> None:
        """Write out the bodies not written yet."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if not self._buffer:
            return
        self._parts += 1
        path = join(self.dir, f"part-{self._run}-{self._parts:05d}.jsonl")
        atomic_write(self.fs, path, ("\n".join(self._buffer) + "\n").encode("utf-8"))
        self._buffer = []

    def clear(self) -> None:
        """Drop all staging (after a publication, under the dataset's lock).

        Best effort: the version is published already, and what is left is only a
        cache (a run whose lease overlapped this one's may be writing a part in it).
        """
        with self._lock:
            self._buffer = []
        self.close()
        try:
            if self.fs.exists(self.staging_root):
                self.fs.rm(self.staging_root, recursive=True)
        except OSError:
            pass

    def close(self) -> None:
        """Let go of what :meth:`load` copied to disk (the journal itself stays)."""
        if self._loaded is not None:
            self._loaded.close()


class _Bodies(Mapping[str, Any]):
    """A read-only view of a journal's loaded bodies, read from its scratch database."""

    def __init__(self, journal: ResultJournal) -> None:
        self._journal = journal

    def __getitem__(self, job_id: str) -> Any:
        line = self._journal._line(job_id)
        if line is None:
            raise KeyError(job_id)
        return json.loads(line)["body"]

    def _rows(self, sql: str) -> Iterator[Any]:
        store = self._journal._loaded
        if store is None or store.closed:
            return iter(())
        return store.rows(sql)

    def __iter__(self) -> Iterator[str]:
        return (str(row[0]) for row in self._rows("SELECT job_id FROM bodies"))

    def __len__(self) -> int:
        return sum(int(row[0]) for row in self._rows("SELECT COUNT(*) FROM bodies"))
