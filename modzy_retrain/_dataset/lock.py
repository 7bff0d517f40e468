"""One build at a time per dataset: a lock file created atomically, stale ones reclaimed.

The lock is ``_lock.json`` at the dataset root, created with an exclusive create: on a
local disk ``O_CREAT | O_EXCL``, on S3 a conditional PUT (``If-None-Match: *``), on GCS
``ifGenerationMatch=0``. A second build fails at once with :class:`DatasetLockedError`
naming the holder. A lock whose holder died (same host, process gone) or whose lease
expired is reclaimed: deleted, then created again exclusively, so of two runs racing to
reclaim it only one wins.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from datetime import datetime, timedelta, timezone
from typing import Any

from modzy_retrain._core.exceptions import DatasetError
from modzy_retrain._core.fs import ensure_parent, is_local, join

LOCK_NAME = "_lock.json"
DEFAULT_LEASE = timedelta(hours=6)


class DatasetLockedError(DatasetError):
    """Another build holds the dataset's lock."""


def _create_exclusive(fs: Any, path: str, data: bytes) -> None:
    if is_local(fs):
        ensure_parent(fs, path)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return
    fs.pipe_file(path, data, mode="create")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DatasetLock:
    """The lock of one dataset for one run. Strictly private."""

    def __init__(
        self,
        fs: Any,
        root: str,
        run_id: str,
        lease: timedelta = DEFAULT_LEASE,
        *,
        purpose: str = "build",
    ) -> None:
        self.fs = fs
        self.path = join(root, LOCK_NAME)
        self.run_id = run_id
        # What holds it (a build, a label pull, a label push), for whoever finds it held.
        self.purpose = purpose
        self.lease = lease
        self.held = False
        # Taken again by the run that already holds it (a build around its writer):
        # the outer holder releases it, not this one.
        self.reentrant = False

    def _body(self) -> bytes:
        now = datetime.now(timezone.utc)
        return json.dumps(
            {
                "run_id": self.run_id,
                "purpose": self.purpose,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "acquired_at": now.isoformat(),
                "expires_at": (now + self.lease).isoformat(),
            }
        ).encode()

    def _stale(self, holder: dict[str, Any]) -> bool:
        try:
            expires = datetime.fromisoformat(str(holder["expires_at"]))
        except (KeyError, ValueError):
            return True
        if expires < datetime.now(timezone.utc):
            return True
        same_host = holder.get("host") == socket.gethostname()
        return same_host and isinstance(holder.get("pid"), int) and not _alive(holder["pid"])

    def acquire(self) -> None:
        for _ in range(2):
            try:
                _create_exclusive(self.fs, self.path, self._body())
                self.held = True
                return
            except FileExistsError:
                pass
            try:
                holder = json.loads(self.fs.cat_file(self.path))
            except FileNotFoundError:
                continue  # released meanwhile: try again
            except ValueError:
                holder = {}
            if holder.get("run_id") == self.run_id:
                self.held = self.reentrant = True
                return
            if not self._stale(holder):
                raise DatasetLockedError(
                    f"another {holder.get('purpose') or 'build'} holds this dataset "
                    f"(run {holder.get('run_id')} on "
                    f"{holder.get('host')}, pid {holder.get('pid')}, until "
                    f"{holder.get('expires_at')}); try again when it is done"
                )
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.path)
        raise DatasetLockedError(
            f"could not take the dataset's lock for a {self.purpose}: another run races for it"
        )

    def release(self) -> None:
        if not self.held or self.reentrant:
            self.held = False
            return
        self.held = False
        try:
            holder = json.loads(self.fs.cat_file(self.path))
        except (FileNotFoundError, ValueError):
            return
        if holder.get("run_id") == self.run_id:
            self.fs.rm_file(self.path)
