"""Real object-store servers on loopback for the cloud suite.

moto's S3 server and gcp-storage-emulator run as subprocesses on free loopback ports
(``modzy_retrain.sandbox.s3_server`` / ``gcs_server``), started once per test session
when a test first needs them and always stopped at the end, also when tests fail. The
clients are the real s3fs and gcsfs; every endpoint and credential reaches them
through ``storage_options``, never through globals.
"""

from __future__ import annotations

import os

# gcsfs reads this once, at import: recent versions otherwise probe the bucket layout
# over gRPC first, which hangs for about a minute against the emulator.
os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] = "false"

import asyncio
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import fsspec
import pytest

from modzy_retrain.sandbox import ObjectStoreServer, gcs_server, s3_server

from ._store_proxy import StoreProxy, store_proxy

# Canary credentials: moto accepts any key pair, and tests assert these strings never
# show up in reports, manifests, logs or exception texts.
S3_KEY_ID = "AKIACANARYKEYID00042"
S3_SECRET = "canary-s3-secret-7f3a9c1e5b"


@dataclass(frozen=True)
class Store:
    """One bucket on one object store, and the fsspec options to reach it."""

    protocol: str
    bucket: str
    options: dict[str, Any]

    def url(self, *parts: str) -> str:
        return "/".join([f"{self.protocol}://{self.bucket}", *parts])

    def fs(self) -> Any:
        return fsspec.filesystem(self.protocol, **self.options)


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStoreServer]:
    with s3_server(log=tmp_path_factory.mktemp("moto") / "moto.log") as server:
        yield server


@pytest.fixture(scope="session")
def gcs_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStoreServer]:
    with gcs_server(log=tmp_path_factory.mktemp("gcs") / "gcs.log") as server:
        yield server


def s3_options(server: ObjectStoreServer) -> dict[str, Any]:
    return {**server.storage_options, "key": S3_KEY_ID, "secret": S3_SECRET}


def gcs_options(server: ObjectStoreServer) -> dict[str, Any]:
    return dict(server.storage_options)


def new_store(protocol: str, options: dict[str, Any], bucket: str | None = None) -> Store:
    store = Store(protocol, bucket or f"b-{uuid.uuid4().hex[:12]}", options)
    fs = store.fs()
    if not fs.exists(store.bucket):
        fs.mkdir(store.bucket)
    return store


@pytest.fixture
def s3(s3_endpoint: ObjectStoreServer) -> Store:
    return new_store("s3", s3_options(s3_endpoint))


@pytest.fixture
def gcs(gcs_endpoint: ObjectStoreServer) -> Store:
    return new_store("gs", gcs_options(gcs_endpoint))


# Proxies in front of the servers (``_store_proxy``): they record every request, inject
# the faults a test plans, and, in front of the GCS emulator, which ignores generation
# preconditions, enforce ``ifGenerationMatch=0`` as GCS does (412 when the object
# exists). Each test starts with a clean record and no fault.


@pytest.fixture(scope="session")
def _s3_proxy(s3_endpoint: ObjectStoreServer) -> Iterator[StoreProxy]:
    with store_proxy(s3_endpoint.endpoint) as proxy:
        yield proxy


@pytest.fixture(scope="session")
def _gcs_proxy(gcs_endpoint: ObjectStoreServer) -> Iterator[StoreProxy]:
    with store_proxy(gcs_endpoint.endpoint, gcs=True, enforce_generation_match=True) as proxy:
        yield proxy


@pytest.fixture
def s3_proxy(_s3_proxy: StoreProxy) -> Iterator[StoreProxy]:
    _s3_proxy.reset()
    yield _s3_proxy
    _s3_proxy.reset()


@pytest.fixture
def gcs_proxy(_gcs_proxy: StoreProxy) -> Iterator[StoreProxy]:
    _gcs_proxy.reset()
    yield _gcs_proxy
    _gcs_proxy.reset()


@pytest.fixture
def s3_via_proxy(s3_endpoint: ObjectStoreServer, s3_proxy: StoreProxy) -> Store:
    """A bucket on moto, reached through the proxy."""
    return new_store("s3", {**s3_options(s3_endpoint), "endpoint_url": s3_proxy.endpoint})


@pytest.fixture
def gcs_via_proxy(gcs_endpoint: ObjectStoreServer, gcs_proxy: StoreProxy) -> Store:
    """A bucket on the GCS emulator, reached through the proxy that enforces
    ``ifGenerationMatch=0``."""
    return new_store("gs", {**gcs_options(gcs_endpoint), "endpoint_url": gcs_proxy.endpoint})


class _AsyncioWithoutSleep:
    """``asyncio`` as a store client's module sees it, but whose ``sleep`` records."""

    def __init__(self, waits: list[float]) -> None:
        self._waits = waits

    async def sleep(self, seconds: float, result: Any = None) -> Any:
        self._waits.append(seconds)
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


@pytest.fixture
def store_waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The store clients' waits between retries, recorded instead of slept (botocore's,
    s3fs's and gcsfs's own backoff): a test meets faults without sleeping for them."""
    import aiobotocore.endpoint
    import gcsfs.retry
    import s3fs.core

    waits: list[float] = []

    async def sleep(self: Any, seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(aiobotocore.endpoint.AioEndpoint, "_sleep", sleep)
    monkeypatch.setattr(s3fs.core, "asyncio", _AsyncioWithoutSleep(waits))
    monkeypatch.setattr(gcsfs.retry, "asyncio", _AsyncioWithoutSleep(waits))
    return waits
