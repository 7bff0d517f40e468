"""One writer at a time per dataset: a short lease, renewed while its holder lives.

The lock is ``_lock.json`` at the dataset root, created with an exclusive create
(``_core.fs.create_exclusive``: a hard link locally, ``If-None-Match: *`` on S3,
``ifGenerationMatch=0`` on GCS). A second writer fails at once with
:class:`DatasetLockedError` naming the holder. The lease is short (two minutes) and a
heartbeat thread renews it while the holder runs, so a long build keeps it and a
crashed one blocks the others for one lease at most. A lock whose holder is gone (same
host, process gone) or whose lease expired is reclaimed: deleted, then created again
exclusively.

The lock saves work; it is not what keeps the history whole. Two runs can, in rare
interleavings (a holder paused past its lease while another reclaims, two reclaimers
racing, a release racing a reclaim), both believe they hold it. They cannot both
publish: a version is published by creating its manifest only if absent (see
``publish.py``), so the second finds the version taken and publishes nothing
(:class:`VersionConflictError`). docs/reliability.md has the protocol and its
failure cases.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from datetime import datetime, timedelta, timezone
from typing import Any

from modzy_retrain._core.exceptions import DatasetError
from modzy_retrain._core.fs import atomic_write, create_exclusive, join

LOCK_NAME = "_lock.json"
DEFAULT_LEASE = timedelta(minutes=2)
# Renewed this many times a lease: a holder stalled for a whole lease loses it.
BEATS_PER_LEASE = 4


class DatasetLockedError(DatasetError):
    """Another writer (a build, a label pull or push) holds the dataset's lock."""


class VersionConflictError(DatasetLockedError):
    """Another writer published the version this run was writing: this run published
    nothing (its result journal is kept, so running it again is cheap)."""


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_holder(fs: Any, path: str) -> dict[str, Any] | None:
    """The lock's content (``{}`` if unreadable), or ``None`` when there is no lock."""
    try:
        raw = fs.cat_file(path)
    except FileNotFoundError:
        return None
    try:
        holder = json.loads(raw)
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def expired(holder: dict[str, Any], now: datetime | None = None) -> bool:
    """Whether a holder's lease ran out (an unreadable lock counts as expired)."""
    try:
        expires = datetime.fromisoformat(str(holder["expires_at"]))
    except (KeyError, ValueError):
        return True
    if expires.tzinfo is None:
        expires = expires.replace(tzinfo=timezone.utc)  # written by hand, without a zone
    return expires < (now or datetime.now(timezone.utc))


def gone(holder: dict[str, Any]) -> bool:
    """Whether the holder's process is known to be gone (same host, no such pid)."""
    same_host = holder.get("host") == socket.gethostname()
    pid = holder.get("pid")
    return same_host and isinstance(pid, int) and pid != os.getpid() and not process_alive(pid)


class DatasetLock:
    """The lock of one dataset for one run. Strictly private.

    Args:
        lease: How long the lock holds without a heartbeat.
        purpose: What holds it (``build``, ``label pull``...), shown to whoever finds
            it held.
        heartbeat: Renew the lease from a thread while held (tests turn it off to
            play a stalled holder).
    """

    def __init__(
        self,
        fs: Any,
        root: str,
        run_id: str,
        lease: timedelta = DEFAULT_LEASE,
        *,
        purpose: str = "build",
        heartbeat: bool = True,
    ) -> None:
        self.fs = fs
        self.path = join(root, LOCK_NAME)
        self.run_id = run_id
        self.lease = lease
        self.purpose = purpose
        self.held = False
        # Taken again by the run that already holds it (a build around its writer):
        # the outer holder releases it, not this one.
        self.reentrant = False
        # Set when a renewal found another run's lock in place: this run's lease ran
        # out while it was stalled. It may still publish (the commit decides), but
        # must not release the other run's lock.
        self.lost = False
        self._heartbeat = heartbeat
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

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

    def acquire(self) -> None:
        for _ in range(2):
            try:
                create_exclusive(self.fs, self.path, self._body())
                self.held = True
                self._start_heartbeat()
                return
            except FileExistsError:
                pass
            holder = read_holder(self.fs, self.path)
            if holder is None:
                continue  # released meanwhile: try again
            if holder.get("run_id") == self.run_id:
                self.held = self.reentrant = True
                return
            if not (expired(holder) or gone(holder)):
                raise DatasetLockedError(
                    f"another {holder.get('purpose') or 'build'} holds this dataset "
                    f"(run {holder.get('run_id')} on {holder.get('host')}, pid "
                    f"{holder.get('pid')}, lease until {holder.get('expires_at')}); try "
                    "again when it is done, or see `modzy-retrain unlock`"
                )
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.path)
        raise DatasetLockedError(
            f"could not take the dataset's lock for a {self.purpose}: another run races for it"
        )

    # -- the heartbeat ------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        if not self._heartbeat:
            return
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._beat_until_stopped, name="modzy-retrain-lock", daemon=True
        )
        self._thread.start()

    def _beat_until_stopped(self) -> None:
        interval = self.lease.total_seconds() / BEATS_PER_LEASE
        while not self._stop.wait(interval):
            if not self.renew():
                return

    def renew(self) -> bool:
        """Extend the lease if the lock is still this run's; ``False`` (and ``lost``)
        when another run's lock is in its place, or none is."""
        holder = read_holder(self.fs, self.path)
        if holder is None or holder.get("run_id") != self.run_id:
            self.lost = True
            return False
        try:
            atomic_write(self.fs, self.path, self._body())
        except OSError:
            # A store that failed once: the next beat tries again, well within the lease.
            return True
        return True

    def _stop_heartbeat(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        self._thread = None

    def release(self) -> None:
        self._stop_heartbeat()
        if not self.held or self.reentrant:
            self.held = False
            return
        self.held = False
        holder = read_holder(self.fs, self.path)
        if holder is not None and holder.get("run_id") == self.run_id:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(self.path)

    def __enter__(self) -> DatasetLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
