"""Local S3 and GCS servers for tests: moto's S3 server and gcp-storage-emulator.

They are not dependencies of the library: install them yourself (``pip install
'moto[server]' gcp-storage-emulator``) or use this project's ``dev`` extra. Each server
runs as a subprocess on a free loopback port and is stopped when its context ends,
also on errors. Clients reach it through ``storage_options``, nothing global.

gcsfs pitfall: recent gcsfs versions first probe the bucket layout over gRPC, which
hangs for about a minute against the emulator. Set ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=
false`` in the environment **before gcsfs is imported**; :func:`gcs_server` sets it in
its own process and in the emulator's, but only you can set it before your first
import of gcsfs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

GCSFS_PROBE_ENV = "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"


@dataclass(frozen=True)
class ObjectStoreServer:
    """A running local object-store server.

    Attributes:
        protocol: ``s3`` or ``gs``.
        endpoint: Its base URL on loopback.
        storage_options: What s3fs / gcsfs need to reach it (pass to the stages).
    """

    protocol: str
    endpoint: str
    storage_options: dict[str, Any] = field(repr=False)
    pid: int = 0

    def url(self, bucket: str, *parts: str) -> str:
        """An fsspec URL on this server, e.g. ``s3://bucket/a/b``."""
        return "/".join([f"{self.protocol}://{bucket}", *parts])

    def filesystem(self) -> Any:
        """An fsspec filesystem for this server (a fresh instance)."""
        import fsspec

        return fsspec.filesystem(self.protocol, **self.storage_options)

    def make_bucket(self, bucket: str) -> str:
        """Create a bucket (if needed) and return its URL."""
        fs = self.filesystem()
        if not fs.exists(bucket):
            fs.mkdir(bucket)
        return self.url(bucket)


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], what: str, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before it was ready")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not answer within {deadline_s:.0f} s")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@contextmanager
def _server(
    what: str, argv: list[str], host: str, port: int, env: dict[str, str] | None, log: Path | None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    log_path = log or Path(tempfile.mkstemp(prefix=f"{what}-", suffix=".log")[1])
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        endpoint = f"http://{host}:{port}"
        _wait_until_up(endpoint, proc, what, deadline_s=60)
        yield endpoint, proc
    finally:
        _stop(proc)
        if log is None:
            log_path.unlink(missing_ok=True)


@contextmanager
def s3_server(
    *, host: str = "127.0.0.1", port: int = 0, log: Path | None = None
) -> Iterator[ObjectStoreServer]:
    """Run moto's S3 server on loopback for the duration of the ``with`` block.

    Any access key pair is accepted; the ones in ``storage_options`` are placeholders.
    """
    try:
        import moto.server  # noqa: F401
    except ImportError as exc:
        from modzy_retrain._core.exceptions import MissingDependencyError

        raise MissingDependencyError("s3_server() needs moto: pip install 'moto[server]'") from exc
    port = port or _free_port(host)
    argv = [sys.executable, "-m", "moto.server", "-H", host, "-p", str(port)]
    with _server("moto_server", argv, host, port, None, log) as (endpoint, proc):
        yield ObjectStoreServer(
            "s3",
            endpoint,
            {
                "endpoint_url": endpoint,
                "key": "local-test-key",
                "secret": "local-test-secret",
                "skip_instance_cache": True,
            },
            proc.pid,
        )


@contextmanager
def gcs_server(
    *, host: str = "127.0.0.1", port: int = 0, log: Path | None = None
) -> Iterator[ObjectStoreServer]:
    """Run gcp-storage-emulator (in memory) on loopback for the ``with`` block."""
    exe = shutil.which("gcp-storage-emulator", path=str(Path(sys.executable).parent))
    exe = exe or shutil.which("gcp-storage-emulator")
    if exe is None:
        from modzy_retrain._core.exceptions import MissingDependencyError

        raise MissingDependencyError(
            "gcs_server() needs gcp-storage-emulator: pip install gcp-storage-emulator"
        )
    os.environ.setdefault(GCSFS_PROBE_ENV, "false")
    port = port or _free_port(host)
    argv = [exe, "start", "--host", host, "--port", str(port), "--in-memory"]
    env = {**os.environ, GCSFS_PROBE_ENV: "false"}
    with _server("gcp-storage-emulator", argv, host, port, env, log) as (endpoint, proc):
        yield ObjectStoreServer(
            "gs",
            endpoint,
            {
                "endpoint_url": endpoint,
                "token": "anon",
                "project": "local",
                "skip_instance_cache": True,
            },
            proc.pid,
        )
