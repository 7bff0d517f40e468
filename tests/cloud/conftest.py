"""Real object-store servers on loopback for the cloud suite.

moto's S3 server and gcp-storage-emulator run as subprocesses on free loopback ports,
started once per test session when a test first needs them and always stopped at the
end, also when tests fail. The clients are the real s3fs and gcsfs; every endpoint and
credential reaches them through ``storage_options``, never through globals.
"""

from __future__ import annotations

import os

# gcsfs reads this once, at import: recent versions otherwise probe the bucket layout
# over gRPC first, which hangs for about a minute against the emulator.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec
import httpx
import pytest

# Canary credentials: moto accepts any key pair, and tests assert these strings never
# show up in reports, manifests, logs or exception texts.
S3_KEY_ID = "AKIACANARYKEYID00042"
S3_SECRET = "canary-s3-secret-7f3a9c1e5b"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(
    url: str, proc: subprocess.Popen[bytes], what: str, deadline_s: float = 60
) -> None:
    # Waiting for a subprocess to listen is setup, not a test: poll until it answers.
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not start within {deadline_s} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@dataclass(frozen=True)
class Store:
    """One object store: its protocol, a bucket, and the fsspec options to reach it."""

    protocol: str
    bucket: str
    options: dict[str, Any]

    def url(self, *parts: str) -> str:
        return "/".join([f"{self.protocol}://{self.bucket}", *parts])

    def fs(self) -> Any:
        return fsspec.filesystem(self.protocol, **self.options)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_until_up(endpoint, proc, "moto_server")
        yield endpoint
    finally:
        stop(proc)


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("gcs") / "gcs.log"
    exe = Path(sys.executable).parent / "gcp-storage-emulator"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [str(exe), "start", "--host", "127.0.0.1", "--port", str(port), "--in-memory"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        wait_until_up(endpoint, proc, "gcp-storage-emulator")
        yield endpoint
    finally:
        stop(proc)


def s3_options(endpoint: str) -> dict[str, Any]:
    return {
        "endpoint_url": endpoint,
        "key": S3_KEY_ID,
        "secret": S3_SECRET,
        # Each test gets its own client: no cached instance leaks options between tests.
        "skip_instance_cache": True,
    }


def gcs_options(endpoint: str) -> dict[str, Any]:
    return {
        "endpoint_url": endpoint,
        "token": "anon",
        "project": "test",
        "skip_instance_cache": True,
    }


@pytest.fixture
def s3(s3_endpoint: str) -> Store:
    store = Store("s3", f"b-{uuid.uuid4().hex[:12]}", s3_options(s3_endpoint))
    store.fs().mkdir(store.bucket)
    return store


@pytest.fixture
def gcs(gcs_endpoint: str) -> Store:
    store = Store("gs", f"b-{uuid.uuid4().hex[:12]}", gcs_options(gcs_endpoint))
    store.fs().mkdir(store.bucket)
    return store
