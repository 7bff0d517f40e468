"""The public ``Sandbox`` object: a seeded world served in process or over loopback HTTP."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import uuid
import weakref
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import fsspec
import httpx
from fsspec.implementations.local import LocalFileSystem

from ._app import LogEntry, SandboxApp
from ._catalogue import WorldModel
from ._content import render_input
from ._faults import FaultConfig
from ._messages import Request, Response
from ._records import InputRef, World, WorldJob, WorldUser
from ._server import SandboxServer
from ._transport import AsyncSandboxTransport, SandboxTransport
from ._world import build_world

UTC = timezone.utc

IN_PROCESS_BASE_URL = "http://sandbox.modzy.invalid/api"
"""The base URL of the in-process transports (`Sandbox.base_url`): the `.invalid` domain
never resolves, so a request that misses the transport fails instead of leaving."""

_WRITE_BATCH = 512


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _check_key(key: str) -> None:
    prefix, dot, body = key.partition(".")
    if not dot or not prefix or not body or any(ch.isspace() for ch in key):
        raise ValueError("api_key must look like '<prefix>.<body>' (Modzy's key format)")


class Sandbox:
    """An offline, deterministic fake of the Modzy API and of the storage behind it.

    Everything (models, users, jobs, results, votes, ground truth and raw input files)
    is derived from ``seed``. Serve it in process with :meth:`transport` /
    :meth:`async_transport`, or over loopback HTTP with :meth:`serve`.
    """

    def __init__(
        self,
        seed: int = 0,
        *,
        jobs: int = 200,
        inputs_per_job: int = 4,
        data_url: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        api_key: str | None = None,
        latency_ms: float = 0.0,
        faults: FaultConfig | None = None,
        start: datetime = datetime(2025, 1, 1, tzinfo=UTC),
        end: datetime = datetime(2025, 3, 1, tzinfo=UTC),
    ) -> None:
        if jobs < 0:
            raise ValueError("jobs must be >= 0")
        if inputs_per_job < 1:
            raise ValueError("inputs_per_job must be >= 1")
        if latency_ms < 0:
            raise ValueError("latency_ms must be >= 0")
        start, end = _aware(start), _aware(end)
        if end <= start:
            raise ValueError("end must be after start")
        if api_key is not None:
            _check_key(api_key)
        self.seed = seed
        self._world: World = build_world(seed, jobs, inputs_per_job, start, end, api_key)
        self._app = SandboxApp(self._world, faults=faults, latency_ms=latency_ms)
        self._data_url = data_url.rstrip("/") if data_url else None
        # May hold credentials: kept private, never shown in a repr or printed.
        self._storage_options: dict[str, Any] = dict(storage_options or {})
        self._written = False
        self._write_lock = threading.Lock()

    # -- identity --------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        """The full key (``<prefix>.<body>``) of the sandbox's first user."""
        return self._world.users[0].access_key

    @property
    def base_url(self) -> str:
        """Base URL for the in-process transports (any host works; this one never resolves)."""
        return IN_PROCESS_BASE_URL

    @property
    def models(self) -> tuple[WorldModel, ...]:
        return self._world.models

    @property
    def users(self) -> tuple[WorldUser, ...]:
        """Every user; each ``access_key`` authenticates. ``users[0]`` owns :attr:`api_key`."""
        return self._world.users

    @property
    def jobs(self) -> tuple[WorldJob, ...]:
        """The world's jobs, oldest first (frozen dataclasses)."""
        return self._world.jobs

    def job(self, job_id: str) -> WorldJob:
        """One job of the world, with its inputs and their hidden truth (`KeyError` if none)."""
        return self._world.jobs_by_id[job_id]

    def ground_truth(self, job_id: str, input_name: str) -> str:
        """The hidden true label of one input (never exposed over HTTP)."""
        item = self._world.jobs_by_id[job_id].input(input_name)
        if item is None:
            raise KeyError((job_id, input_name))
        return item.truth

    # -- storage ---------------------------------------------------------------------

    @property
    def data_url(self) -> str:
        """Where raw inputs are written (any fsspec URL). Defaults to a fresh temp folder,
        removed again when this object is garbage-collected."""
        if self._data_url is None:
            folder = tempfile.mkdtemp(prefix="modzy-sandbox-")
            weakref.finalize(self, shutil.rmtree, folder, True)
            self._data_url = folder
        return self._data_url

    @property
    def input_templates(self) -> dict[str, str]:
        """Per model id, a ``str.format`` template giving an input's raw file location.

        Fields: ``job_id``, ``input_name``, ``model_id``, ``model_version``,
        ``submitted_at`` (the job's submittedAt, an aware UTC datetime).
        """
        # Braces in the URL itself must survive str.format.
        root = self.data_url.replace("{", "{{").replace("}", "}}")
        return {model.id: f"{root}/{model.path_template}" for model in self._world.models}

    def input_url(self, job_id: str, input_name: str) -> str:
        """Where the raw file of one input is (or would be, for a missing one)."""
        job = self._world.jobs_by_id[job_id]
        return self.input_templates[job.model.id].format(
            job_id=job.id,
            input_name=input_name,
            model_id=job.model.id,
            model_version=job.version,
            submitted_at=job.submitted_at,
        )

    def input_bytes(self, job_id: str, input_name: str) -> bytes:
        """The raw content of one input (also for the deliberately missing ones)."""
        job = self._world.jobs_by_id[job_id]
        item = job.input(input_name)
        if item is None:
            raise KeyError((job_id, input_name))
        return render_input(job.model.kind, item.truth, item.content_seed)

    @property
    def missing_inputs(self) -> tuple[InputRef, ...]:
        """Inputs whose raw file is deliberately absent from ``data_url``."""
        return self._world.missing_inputs

    @property
    def duplicate_inputs(self) -> tuple[tuple[InputRef, InputRef], ...]:
        """Pairs (earlier, later) of inputs in different jobs with byte-identical files."""
        return self._world.duplicate_inputs

    def write_inputs(self) -> None:
        """Write every raw input file (except :attr:`missing_inputs`) to ``data_url``.

        Idempotent: the second call does nothing. Another sandbox (another process)
        writing the same local folder replaces each file whole, so readers meanwhile
        never see a truncated one.
        """
        with self._write_lock:
            if self._written:
                return
            fs, root = fsspec.core.url_to_fs(self.data_url, **self._storage_options)
            root = root.rstrip("/")
            local = isinstance(fs, LocalFileSystem)
            missing = set(self._world.missing_inputs)
            made: set[str] = set()
            batch: dict[str, bytes] = {}
            for job in self._world.jobs:
                for item in job.inputs:
                    if InputRef(job.id, item.name) in missing:
                        continue
                    relative = job.model.path_template.format(
                        job_id=job.id,
                        input_name=item.name,
                        model_id=job.model.id,
                        model_version=job.version,
                        submitted_at=job.submitted_at,
                    )
                    path = f"{root}/{relative}"
                    if local:
                        # Only local folders need parents; object stores have no directories,
                        # and creating them there would cost a request each.
                        parent = path.rsplit("/", 1)[0]
                        if parent not in made:
                            fs.makedirs(parent, exist_ok=True)
                            made.add(parent)
                    batch[path] = render_input(job.model.kind, item.truth, item.content_seed)
                    if len(batch) >= _WRITE_BATCH:
                        self._flush(fs, batch, local)
                        batch = {}
            if batch:
                self._flush(fs, batch, local)
            self._written = True

    @staticmethod
    def _flush(fs: Any, batch: dict[str, bytes], local: bool) -> None:
        if local:
            # Each file is written beside its place, then renamed over it: another
            # process's sandbox reading (hashing) the same inputs meanwhile reads the
            # old file or the new one, both whole, never a truncated one.
            for path, data in batch.items():
                tmp = f"{path}.{uuid.uuid4().hex}.tmp"
                with open(tmp, "wb") as handle:
                    handle.write(data)
                os.replace(tmp, path)
            return
        # Object stores: a few threads of single PUTs. fsspec's bulk pipe() opens every
        # upload at once, which gcp-storage-emulator serves pathologically slowly.
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in pool.map(lambda kv: fs.pipe_file(kv[0], kv[1]), batch.items()):
                pass

    # -- serving ---------------------------------------------------------------------

    def transport(self) -> httpx.BaseTransport:
        """An httpx transport serving the API in process (no sockets, no real sleeping)."""
        self.write_inputs()
        return SandboxTransport(self._app)

    def async_transport(self) -> httpx.AsyncBaseTransport:
        """The async twin of `transport()`, for an `httpx.AsyncClient`."""
        self.write_inputs()
        return AsyncSandboxTransport(self._app)

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> SandboxServer:
        """Serve the API over real HTTP from a background thread until ``stop()``."""
        self.write_inputs()
        return SandboxServer(self._app, host, port)

    def handle(self, request: Request) -> Response:
        """The pure route logic (no faults, no latency, not counted)."""
        return self._app.handle(request)

    # -- knobs and observation -------------------------------------------------------

    @property
    def latency_ms(self) -> float:
        return self._app.latency_ms

    @latency_ms.setter
    def latency_ms(self, value: float) -> None:
        if value < 0:
            raise ValueError("latency_ms must be >= 0")
        self._app.latency_ms = value

    @property
    def faults(self) -> FaultConfig:
        return self._app.faults

    @faults.setter
    def faults(self, config: FaultConfig) -> None:
        """Replace the fault knobs; the fault sequence restarts from ``config.fault_seed``."""
        self._app.set_faults(config)

    @property
    def unavailable_results(self) -> frozenset[str]:
        """Jobs whose results answer 503 to every request (every ``/results/{jobId}``
        route), retries included, until the set changes: a poison job. Settable at any
        time; empty by default. The fault sequence is unchanged by it."""
        return self._app.unavailable_results

    @unavailable_results.setter
    def unavailable_results(self, job_ids: Iterable[str]) -> None:
        ids = frozenset(job_ids)
        if not all(isinstance(job_id, str) for job_id in ids):
            raise ValueError("unavailable_results takes job ids (strings)")
        self._app.unavailable_results = ids

    @property
    def request_counts(self) -> Counter[str]:
        """Requests received per route, e.g. ``sb.request_counts["GET /jobs/history"]``."""
        return self._app.request_counts

    @property
    def fault_counts(self) -> Counter[str]:
        """Faults injected per kind ("error", "throttle", "drop", "truncate", "slow")."""
        return self._app.fault_counts

    @property
    def request_log(self) -> Sequence[LogEntry]:
        """The most recent 100 000 requests, oldest first."""
        return self._app.request_log

    @property
    def request_total(self) -> int:
        return sum(self._app.request_counts.values())

    def reset_stats(self) -> None:
        """Clear the request counts, the fault counts and the request log."""
        self._app.reset_stats()

    def votes(self, job_id: str, input_name: str) -> tuple[int, int]:
        """Current (up, down) vote counts of one input, as ``voting`` reports them."""
        return self._app.votes(job_id, input_name)

    def __repr__(self) -> str:
        return (
            f"Sandbox(seed={self.seed}, jobs={len(self._world.jobs)}, data_url={self._data_url!r})"
        )
