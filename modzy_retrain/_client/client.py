"""``ModzyClient`` and ``AsyncModzyClient``: the same parameters, the same calls.

Everything but the send loop lives in ``_base_client`` (configuration, headers, error
mapping), ``_calls`` (what each call sends and how its body is parsed) and ``_retry``
(retry decisions). The two classes below differ only in ``await``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from functools import cached_property
from types import TracebackType
from typing import Any, TypeVar

import httpx

from modzy_retrain._core.budget import AsyncLease, Lease, OverBudget
from modzy_retrain._core.constants import DEFAULT_DEADLINE, DEFAULT_MAX_RESPONSE_BYTES
from modzy_retrain._core.exceptions import ConfigurationError

from . import calls
from .base import (
    DEFAULT_MAX_CONNECTIONS,
    NOT_GIVEN,
    BaseClient,
    NotGiven,
    TimeoutTypes,
    over_budget,
    resolve_timeout,
)
from .calls import Call
from .deadline import Deadline, within
from .decoding import weigh
from .resources import AsyncJobs, AsyncModels, AsyncResults, Jobs, Models, Results
from .retry import RetryHook, RetryPolicy, async_retrying, sync_retrying

logger = logging.getLogger("modzy_retrain")

T = TypeVar("T")


def check_client(client: object, owner: str) -> None:
    """Refuse, when a stage is built, anything that is not one of the two clients."""
    if not isinstance(client, (ModzyClient, AsyncModzyClient)):
        raise ConfigurationError(
            f"{owner} takes a ModzyClient or an AsyncModzyClient, not {type(client).__name__}"
        )


class ModzyClient(BaseClient):
    """A synchronous client for the Modzy API.

    Args:
        api_key: The API key (``<prefix>.<secret>``). Defaults to ``$MODZY_API_KEY``.
        base_url: The host (``https://app.modzy.com``) or the API root
            (``https://app.modzy.com/api``). Defaults to ``$MODZY_BASE_URL``.
        timeout: Seconds, or an ``httpx.Timeout`` (``None``: none). On by default (60 s,
            10 s to connect); with ``http_client`` and no ``timeout``, that client's own
            unless it is httpx's 5 s default.
        retry: The :class:`RetryPolicy`; bounded retries with backoff by default.
        max_connections: Connections in the library's own HTTP client's pool (all kept
            alive). Ignored with ``http_client``: its limits apply.
        max_response_bytes: A response body over this many bytes (16 MiB by default) is
            refused with :class:`ResponseTooLargeError` instead of read into memory.
        deadline: Seconds one call may take in all, every attempt and retry wait
            included (300 by default; ``None``: none). Past it the call raises
            :class:`APITimeoutError` and is not retried. The timeouts bound each read;
            this bounds a server that keeps a call alive by trickling bytes. The sync
            client checks it between body chunks and caps each attempt's timeouts to
            the time left; it cannot cut short a head that trickles in (docs/client.md).
        headers: Extra headers sent with every request.
        transport: An httpx transport for the library's own client, e.g. the sandbox's
            in-process transport.
        verify: TLS verification of the library's own client (on by default), as httpx
            takes it.
        http_client: Your own ``httpx.Client``: its transport, mounts, proxies,
            certificates, HTTP/2 and event hooks apply. The library never closes it,
            never follows a redirect and sends the key only to ``base_url``.
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
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        retry: RetryPolicy | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        deadline: float | None = DEFAULT_DEADLINE,
        headers: dict[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: bool | str = True,
        http_client: httpx.Client | None = None,
        on_retry: RetryHook | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            timeout=resolve_timeout(timeout, http_client),
            retry=retry,
            max_connections=max_connections,
            max_response_bytes=max_response_bytes,
            deadline=deadline,
            headers=headers,
            on_retry=on_retry,
        )
        self._sleep = sleep or time.sleep
        self._http = self._http_client(http_client, httpx.Client, transport, verify)

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

    def call(self, call: Call[T], *, lease: Lease | None = None) -> T:
        """Send one described call with retries and parse its body. Strictly private.

        ``lease``: the body's bytes are taken from it as they arrive (the fetcher's
        budget across its concurrent calls); what a failed attempt took is given back.
        """
        # Parsed outside the retries: a body that decodes says the same on every try.
        return call.parse(self._receive(call, Deadline.start(self.deadline), lease))

    def _receive(self, call: Call[Any], deadline: Deadline | None, lease: Lease | None) -> Any:
        for attempt in sync_retrying(
            self.retry,
            method=call.method,
            path=call.path,
            sleep=self._sleep,
            hook=self._on_retry,
            rng=self._rng,
            deadline=deadline,
        ):
            with attempt:
                return self._send_once(call, deadline, lease)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    def _send_once(self, call: Call[Any], deadline: Deadline | None, lease: Lease | None) -> Any:
        request = self._build_request(self._http, call, deadline)
        started = time.perf_counter()
        try:
            response = self._http.send(request, stream=True, follow_redirects=False)
            try:
                content = self._read(call, response, deadline, lease)
            finally:
                response.close()
        except httpx.TransportError as exc:
            logger.debug("%s %s failed: %s", call.method, call.path, type(exc).__name__)
            raise self._connection_error(exc, call.method, call.path) from exc
        except OverBudget as exc:
            raise over_budget(call, exc) from None
        logger.debug(
            "%s %s -> %d (%.1f ms)",
            call.method,
            call.path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        if response.status_code >= 300:
            raise self._status_error(call.method, call.path, response, content)
        return self._decode(call, response.status_code, content)

    def _read(
        self,
        call: Call[Any],
        response: httpx.Response,
        deadline: Deadline | None,
        lease: Lease | None,
    ) -> bytearray:
        body = self._body(call, response, deadline)
        taken = 0
        try:
            for chunk in response.iter_bytes():
                body.add(chunk)
                if lease is not None:
                    weight = weigh(chunk)
                    left = None if deadline is None else deadline.remaining()
                    if not lease.take(weight, timeout=left):
                        raise body.out_of_time()
                    taken += weight
        except BaseException:
            if lease is not None:
                lease.give_back(taken)
            raise
        return body.content()

    def close(self) -> None:
        """Close the library's own HTTP client; an ``http_client`` you passed stays open."""
        self._closed = True
        if self._owns_http:
            self._http.close()

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

    ``sleep`` is an async callable (``asyncio.sleep`` by default), ``transport`` an
    ``httpx.AsyncBaseTransport`` and ``http_client`` an ``httpx.AsyncClient`` (for example
    ``httpx_aiohttp.HttpxAiohttpClient``, from the ``aiohttp`` extra). Install the
    ``async`` extra (``sniffio``) for it on stock httpx: without it httpcore's repeated
    failed imports cost milliseconds of CPU per request (docs/client.md). Use it with
    ``async with``, or ``await client.aclose()``.
    """

    _client_name = "AsyncModzyClient"

    def __init__(
        self,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        timeout: TimeoutTypes | NotGiven = NOT_GIVEN,
        retry: RetryPolicy | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        deadline: float | None = DEFAULT_DEADLINE,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: bool | str = True,
        http_client: httpx.AsyncClient | None = None,
        on_retry: RetryHook | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
    ) -> None:
        super().__init__(
            api_key=api_key,
            base_url=base_url,
            timeout=resolve_timeout(timeout, http_client),
            retry=retry,
            max_connections=max_connections,
            max_response_bytes=max_response_bytes,
            deadline=deadline,
            headers=headers,
            on_retry=on_retry,
        )
        self._sleep = sleep or asyncio.sleep
        self._http = self._http_client(http_client, httpx.AsyncClient, transport, verify)

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

    async def call(self, call: Call[T], *, lease: AsyncLease | None = None) -> T:
        """Send one described call with retries and parse its body. Strictly private.

        ``lease``: as for :meth:`ModzyClient.call`; waiting for it counts in the deadline.
        """
        deadline = Deadline.start(self.deadline)
        # The whole call, waits included, is cancelled when the deadline passes.
        receiving = self._receive(call, deadline, lease)
        data = await within(deadline, receiving, call.method, call.path)
        # Parsed outside the retries: a body that decodes says the same on every try.
        return call.parse(data)

    async def _receive(
        self, call: Call[Any], deadline: Deadline | None, lease: AsyncLease | None
    ) -> Any:
        async for attempt in async_retrying(
            self.retry,
            method=call.method,
            path=call.path,
            sleep=self._sleep,
            hook=self._on_retry,
            rng=self._rng,
            deadline=deadline,
        ):
            with attempt:
                return await self._send_once(call, deadline, lease)
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover

    async def _send_once(
        self, call: Call[Any], deadline: Deadline | None, lease: AsyncLease | None
    ) -> Any:
        request = self._build_request(self._http, call, deadline)
        started = time.perf_counter()
        try:
            response = await self._http.send(request, stream=True, follow_redirects=False)
            try:
                content = await self._aread(call, response, deadline, lease)
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            logger.debug("%s %s failed: %s", call.method, call.path, type(exc).__name__)
            raise self._connection_error(exc, call.method, call.path) from exc
        except OverBudget as exc:
            raise over_budget(call, exc) from None
        logger.debug(
            "%s %s -> %d (%.1f ms)",
            call.method,
            call.path,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        if response.status_code >= 300:
            raise self._status_error(call.method, call.path, response, content)
        return self._decode(call, response.status_code, content)

    async def _aread(
        self,
        call: Call[Any],
        response: httpx.Response,
        deadline: Deadline | None,
        lease: AsyncLease | None,
    ) -> bytearray:
        body = self._body(call, response, deadline)
        taken = 0
        try:
            async for chunk in response.aiter_bytes():
                body.add(chunk)
                if lease is not None:
                    weight = weigh(chunk)
                    await lease.take(weight)  # the deadline around the call bounds the wait
                    taken += weight
        except BaseException:
            if lease is not None:
                lease.give_back(taken)
            raise
        return body.content()

    async def aclose(self) -> None:
        """Close the library's own HTTP client; an ``http_client`` you passed stays open."""
        self._closed = True
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> AsyncModzyClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
