"""Shared fixtures for the sandbox's own tests.

Test modules cannot import this file (pytest runs with --import-mode=importlib), so the
helpers are handed out as factory fixtures.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from modzy_retrain.sandbox import Sandbox

MakeSandbox = Callable[..., Sandbox]
ClientOf = Callable[..., httpx.Client]


def _memory_url() -> str:
    # The memory filesystem is global to the process: every sandbox gets its own root.
    return f"memory://sandbox-tests/{uuid.uuid4().hex}"


def _make(**kwargs: Any) -> Sandbox:
    kwargs.setdefault("data_url", _memory_url())
    return Sandbox(**kwargs)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def make_sb() -> MakeSandbox:
    """Factory: ``make_sb(seed=..., jobs=...)`` with a private memory:// data_url."""
    return _make


@pytest.fixture(scope="session")
def memory_url() -> Callable[[], str]:
    return _memory_url


@pytest.fixture(scope="session")
def client_of() -> ClientOf:
    """Factory: an in-process ``httpx.Client`` for a sandbox, authenticated with ``key``."""

    def make(sb: Sandbox, key: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"ApiKey {key or sb.api_key}"}
        return httpx.Client(
            base_url=sb.base_url, transport=sb.transport(), headers=headers, **kwargs
        )

    return make


@pytest.fixture(scope="session")
def shared_sb() -> Sandbox:
    """A world shared by the tests that never vote, fault or change knobs."""
    return _make(seed=0, jobs=200)


@pytest.fixture
def http(shared_sb: Sandbox, client_of: ClientOf) -> Iterator[httpx.Client]:
    with client_of(shared_sb) as client:
        yield client


@pytest.fixture
def sb() -> Sandbox:
    """A fresh world for tests that change state (votes, knobs, counters)."""
    return _make(seed=1, jobs=60)
