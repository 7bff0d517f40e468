"""``ModzyClient`` and ``AsyncModzyClient``: the same parameters, the same calls.

Everything but the send loop lives in ``_base_client`` (configuration, headers, error
mapping), ``_calls`` (what each call sends and how its body is parsed) and ``_retry``
(retry decisions). The two classes below differ only in ``await``.
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from functools import cached_property
from types import TracebackType
from typing import Any, TypeVar

import httpx

from modzy_retrain._core.constants import DEFAULT_MAX_RESPONSE_BYTES

from . import calls
from .base import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_TIMEOUT,
    BaseClient,
    TimeoutTypes,
)
from .calls import Call
from .http11 import AsyncHTTP11Transport, HTTP11Transport
from .resources import AsyncJobs, AsyncModels, AsyncResults, Jobs, Models, Results
from .retry import RetryHook, RetryPolicy, async_retrying, sync_retrying

logger = logging.getLogger("modzy_retrain")

T = TypeVar("T")


def _fail_fast_without_sniffio() -> None:
    """Make httpcore's per-request ``import sniffio`` fail at once when it is absent.

    httpcore imports sniffio inside ``current_async_library()``, which runs several
    times per async request, and Python does not cache a failed import: without sniffio
    (anyio >= 4.11 no longer installs it) every call searches ``sys.path`` again. That
    was 0.4 to 0.7 ms of CPU per request here, a third of the async client's
    (bench/RESULTS.md; upstream: encode/httpcore#1103). ``None`` in ``sys.modules`` is
    Python's own marker for "not importable": the import fails immediately and httpcore
    falls back to asyncio exactly as it did. Only when sniffio is not installed.
    """
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]


class ModzyClient(BaseClient):
    """A synchronous client for the Modzy API.

    Args:
        api_key: The API key (``<prefix>.<secret>``). Defaults to ``$MODZY_API_KEY``.
        base_url: The host (``https://app.modzy.com``) or the API root
            (``https://app.modzy.com/api``). Defaults to ``$MODZY_BASE_URL``.
        timeout: Seconds, or an ``httpx.Timeout``. On by default (60 s, 10 s to connect).
        retry: The :class:`RetryPolicy`; bounded retries with backoff by default.
        max_connections: Connections in all (kept alive too), spread over independent
            pools of 8, which keeps per-request pool overhead flat as it grows.
        max_response_bytes: A response body over this many bytes (64 MiB by default) is
            refused with :class:`ResponseTooLargeError` instead of read into memory.
        headers: Extra headers sent with every request.
        transport: An httpx transport, e.g. the sandbox's in-process transport.
        verify: TLS verification (on by default), as httpx takes it.
        on_retry: Called with a :class:`RetryEvent` before each retry wait.
        sleep: What waits between retries (``time.sleep``); tests inject a recorder.

    The key is never shown: ``repr(client)`` keeps only its public prefix, and error
    messages and logs never contain it. Use the client as a context manager, or call
    :meth:`close`.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
        on_retry: RetryHook | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            retry=retry,
            max_connections=max_connections,
            max_response_bytes=max_response_bytes,
            headers=headers,
            on_retry=on_retry,
        )
        self._sleep = sleep or time.sleep
        self._pools: list[httpx.BaseTransport] = self._make_pools(
            transport, verify, HTTP11Transport, httpx.HTTPTransport
        )
        self._next_pool = itertools.count()

    @cached_property
    def jobs(self) -> Jobs:
        """Job history and job details."""
        return Jobs(self)

    @cached_property
    def results(self) -> Results:
        """Job results, single-input results, output files and votes."""
        return Results(self)

    @cached_property
    def models(self) -> Models:
        """The models list and model details (also a cheap connectivity/key check)."""
        return Models(self)

    def check(self) -> None:
        """Check the connection and the key with one ``GET /models``; raise if either fails."""
        self.call(calls.models_list())

    def call(self, call: Call[T]) -> T:
        """Send one described call with retries and parse its body. Strictly private."""
        for attempt in sync_retrying(
            self.retry,
            method=call.method,
            path=call.path,
            sleep=self._sleep,
            hook=self._on_retry,
            rng=self._rng,
        ):
            with attempt:
                return call.parse(self._send_once(call))
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _send_once(self, call: Call[Any]) -> Any:
        request = self._build_request(call.method, call.path, call.params)
        # Round robin over the pools (next() on a count is atomic under the GIL).
        pool = self._pools[next(self._next_pool) % len(self._pools)]
        started = time.perf_counter()
        try:
            response = pool.handle_request(request)
            try:
                content = self._read(call, response)
            finally:
                response.close()
        except httpx.TransportError as exc:
            logger.debug("%s %s failed: %s", call.method, call.path, type(exc).__name__)
            raise self._connection_error(exc, call.method, call.path) from exc
        logger.debug(
            "%s %s -> %d (%.1f ms)",
            call.method,
            call.path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        if response.status_code >= 300:
            raise self._status_error(call.method, call.path, response, content)
        return self._decode(call.method, call.path, response.status_code, content, call.raw)

    def _read(self, call: Call[Any], response: httpx.Response) -> bytes:
        body = self._body(call.method, call.path, response)
        for chunk in response.iter_bytes():
            body.add(chunk)
        return body.content()

    def close(self) -> None:
        """Close the connection pools (the transport given, if any, too)."""
        self._closed = True
        for pool in self._pools:
            pool.close()

    def __enter__(self) -> ModzyClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncModzyClient(BaseClient):
    """The asynchronous twin of :class:`ModzyClient`, with identical parameters.

    ``sleep`` is an async callable (``asyncio.sleep`` by default) and ``transport`` an
    ``httpx.AsyncBaseTransport``. Use it with ``async with``, or ``await client.aclose()``.
    """

    _client_name = "AsyncModzyClient"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: TimeoutTypes = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: bool | str = True,
        on_retry: RetryHook | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            retry=retry,
            max_connections=max_connections,
            max_response_bytes=max_response_bytes,
            headers=headers,
            on_retry=on_retry,
        )
        self._sleep = sleep or asyncio.sleep
        self._pools: list[httpx.AsyncBaseTransport] = self._make_pools(
            transport, verify, AsyncHTTP11Transport, httpx.AsyncHTTPTransport
        )
        if any(isinstance(pool, httpx.AsyncHTTPTransport) for pool in self._pools):
            _fail_fast_without_sniffio()  # httpcore underneath (a proxy, or given)
        self._next_pool = itertools.count()

    @cached_property
    def jobs(self) -> AsyncJobs:
        """Job history and job details."""
        return AsyncJobs(self)

    @cached_property
    def results(self) -> AsyncResults:
        """Job results, single-input results, output files and votes."""
        return AsyncResults(self)

    @cached_property
    def models(self) -> AsyncModels:
        """The models list and model details (also a cheap connectivity/key check)."""
        return AsyncModels(self)

    async def check(self) -> None:
        """Check the connection and the key with one ``GET /models``; raise if either fails."""
        await self.call(calls.models_list())

    async def call(self, call: Call[T]) -> T:
        """Send one described call with retries and parse its body. Strictly private."""
        async for attempt in async_retrying(
            self.retry,
            method=call.method,
            path=call.path,
            sleep=self._sleep,
            hook=self._on_retry,
            rng=self._rng,
        ):
            with attempt:
                return call.parse(await self._send_once(call))
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _send_once(self, call: Call[Any]) -> Any:
        request = self._build_request(call.method, call.path, call.params)
        pool = self._pools[next(self._next_pool) % len(self._pools)]
        started = time.perf_counter()
        try:
            response = await pool.handle_async_request(request)
            try:
                content = await self._aread(call, response)
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            logger.debug("%s %s failed: %s", call.method, call.path, type(exc).__name__)
            raise self._connection_error(exc, call.method, call.path) from exc
        logger.debug(
            "%s %s -> %d (%.1f ms)",
            call.method,
            call.path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        if response.status_code >= 300:
            raise self._status_error(call.method, call.path, response, content)
        return self._decode(call.method, call.path, response.status_code, content, call.raw)

    async def _aread(self, call: Call[Any], response: httpx.Response) -> bytes:
        body = self._body(call.method, call.path, response)
        async for chunk in response.aiter_bytes():
            body.add(chunk)
        return body.content()

    async def aclose(self) -> None:
        """Close the connection pools (the transport given, if any, too)."""
        self._closed = True
        for pool in self._pools:
            await pool.aclose()

    async def __aenter__(self) -> AsyncModzyClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
