"""A small journal of fetched results, so a rerun after a crash does not fetch again.

Kept beside the dataset under ``_staging/after-<version>/`` (the version the run
started from), as part files of a few jobs each, each written in one atomic step:
object stores cannot append. A rerun from the same checkpoint loads the parts and
reuses every job's results body they hold; the writer deletes ``_staging/`` once a
version is published (or the run found nothing new), under the dataset's lock.

Only finished jobs are journaled. Their results no longer change, except for votes:
a rerun sees the votes the killed run saw, which is what that run would have written.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from ._fs import atomic_write, join, url_to_fs

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
        self.bodies: dict[str, Any] = {}
        self.reused = 0

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
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                    self.bodies[str(entry["job_id"])] = entry["body"]
                except (ValueError, KeyError, TypeError):
                    continue  # a torn line of a part that never completed
        return len(self.bodies)

    def get(self, job_id: str) -> Any | None:
        body = self.bodies.get(job_id)
        if body is not None:
            with self._lock:
                self.reused += 1
        return body

    def add(self, job_id: str, body: Any) -> None:
        with self._lock:
            self._buffer.append(json.dumps({"job_id": job_id, "body": body}))
            if len(self._buffer) >= self.part_size:
                self._flush_locked()

    def flush(self) -> None:
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
        """Drop all staging (after a publication, under the dataset's lock)."""
        with self._lock:
            self._buffer = []
        try:
            if self.fs.exists(self.staging_root):
                self.fs.rm(self.staging_root, recursive=True)
        except FileNotFoundError:
            pass
