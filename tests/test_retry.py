"""Retry decisions (pure) and the retry loop (scripted transports, recorded sleeps)."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timezone

import httpx
import pytest

from modzy_retrain import (
    APIConnectionError,
    APITimeoutError,
    AsyncModzyClient,
    BadRequestError,
    InternalServerError,
    ModzyClient,
    RateLimitError,
    ResponseTooLargeError,
    ResponseValidationError,
    ResultParseError,
    RetryEvent,
    RetryPolicy,
)
from modzy_retrain._client.retry import compute_wait, is_retryable
from modzy_retrain._core.backoff import parse_retry_after

KEY = "AbCdEfGhIj0123456789.ZyXwVuTsRq9876543210"
NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"Retry-After": "1.5"}, 1.5),
        ({"retry-after": " 0 "}, 0.0),
        ({"Retry-After": "-4"}, 0.0),
        ({"Retry-After": "Thu, 01 Jan 2026 12:00:30 GMT"}, 30.0),
        ({"Retry-After": "Thu, 01 Jan 2026 11:00:00 GMT"}, 0.0),
        ({"Retry-After": "soon"}, None),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "x", "Retry-After": "2"}, 2.0),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


def test_what_is_retryable() -> None:
    policy = RetryPolicy()
    assert is_retryable(APIConnectionError("x"), policy)
    assert is_retryable(APITimeoutError("x"), policy)
    for status in (429, 500, 502, 503, 504):
        err = (
            InternalServerError("x", status_code=status)
            if status != 429
            else RateLimitError("x", status_code=429)
        )
        assert is_retryable(err, policy), status
    assert not is_retryable(BadRequestError("x", status_code=400), policy)
    assert not is_retryable(ValueError("x"), policy)
    # Raised while receiving (the client parses outside its retries): a body that could
    # not be decoded is worth another attempt, one over the size limit is not.
    assert is_retryable(ResponseValidationError("not JSON"), policy)
    assert is_retryable(ResultParseError("not JSON", job_id="j"), policy)
    assert not is_retryable(ResponseTooLargeError("big", limit=1), policy)
    assert not is_retryable(
        RateLimitError("x", status_code=429), RetryPolicy(retry_statuses=frozenset({503}))
    )


def test_backoff_is_exponential_capped_and_jittered() -> None:
    policy = RetryPolicy(initial_wait=0.5, max_wait=4.0, jitter=0.0)
    rng = random.Random(0)
    assert [compute_wait(policy, n, None, rng) for n in range(1, 7)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        4.0,
        4.0,
    ]
    jittery = RetryPolicy(initial_wait=1.0, jitter=0.5)
    waits = [compute_wait(jittery, 1, None, rng) for _ in range(50)]
    assert all(1.0 <= w <= 1.5 for w in waits)
    assert len(set(waits)) > 1


def test_retry_after_is_honoured_up_to_the_cap() -> None:
    policy = RetryPolicy(max_retry_after=10.0)
    rng = random.Random(0)
    assert (
        compute_wait(policy, 1, RateLimitError("x", status_code=429, retry_after=3.0), rng) == 3.0
    )
    assert (
        compute_wait(policy, 1, RateLimitError("x", status_code=429, retry_after=999.0), rng)
        == 10.0
    )
    assert (
        compute_wait(policy, 1, InternalServerError("x", status_code=503, retry_after=2.0), rng)
        == 2.0
    )


# -- the loop, against scripted responses -------------------------------------------

Script = list[Callable[[httpx.Request], httpx.Response]]


def scripted(script: Script) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = script[min(len(seen), len(script)) - 1]
        return step(request)

    return httpx.MockTransport(handler), seen


def ok(_: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=[])


def throttled(_: httpx.Request) -> httpx.Response:
    return httpx.Response(
        429, headers={"Retry-After": "2"}, json={"statusCode": 429, "message": "slow down"}
    )


def unavailable(_: httpx.Request) -> httpx.Response:
    return httpx.Response(503, json={"statusCode": 503, "message": "busy"})


def dropped(request: httpx.Request) -> httpx.Response:
    raise httpx.RemoteProtocolError(
        "Server disconnected without sending a response.", request=request
    )


def timed_out(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def bad_request(_: httpx.Request) -> httpx.Response:
    return httpx.Response(400, json={"statusCode": 400, "message": "bad date"})


class Harness:
    """Runs the same scenario through the sync or the async client."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.sleeps: list[float] = []
        self.events: list[RetryEvent] = []

    async def history_page(
        self, script: Script, policy: RetryPolicy | None = None
    ) -> tuple[object, list[httpx.Request]]:
        transport, seen = scripted(script)
        kwargs = {
            "api_key": KEY,
            "base_url": "http://modzy.invalid",
            "retry": policy or RetryPolicy(jitter=0.0),
            "on_retry": self.events.append,
        }
        if self.mode == "sync":

            def sleep(s: float) -> None:
                self.sleeps.append(s)

            with ModzyClient(transport=transport, sleep=sleep, **kwargs) as client:  # type: ignore[arg-type]
                return client.jobs.history().page(1), seen

        class AsyncWrap(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                return transport.handle_request(request)

        async def asleep(s: float) -> None:
            self.sleeps.append(s)

        async with AsyncModzyClient(transport=AsyncWrap(), sleep=asleep, **kwargs) as aclient:  # type: ignore[arg-type]
            return await aclient.jobs.history().page(1), seen


@pytest.fixture(params=["sync", "async"])
def harness(request: pytest.FixtureRequest) -> Harness:
    return Harness(request.param)


@pytest.mark.anyio
async def test_retry_after_then_success(harness: Harness) -> None:
    _page, seen = await harness.history_page([throttled, ok])
    assert len(seen) == 2
    assert harness.sleeps == [2.0]
    assert [e.attempt for e in harness.events] == [1]
    assert isinstance(harness.events[0].error, RateLimitError)
    assert harness.events[0].path == "/jobs/history"


@pytest.mark.anyio
async def test_transient_failures_of_every_kind_are_retried(harness: Harness) -> None:
    _page, seen = await harness.history_page([dropped, timed_out, unavailable, ok])
    assert len(seen) == 4
    assert harness.sleeps == [0.5, 1.0, 2.0]


@pytest.mark.anyio
async def test_attempts_are_bounded_and_the_last_error_surfaces(harness: Harness) -> None:
    with pytest.raises(RateLimitError) as info:
        await harness.history_page([throttled], RetryPolicy(max_attempts=3, jitter=0))
    assert info.value.retry_after == 2.0
    assert info.value.api_message == "slow down"
    assert harness.sleeps == [2.0, 2.0]


@pytest.mark.anyio
async def test_total_time_is_bounded(harness: Harness) -> None:
    # 1 + 2 + 4 = 7 s of waits fit in 8 s; the next (8 s) would overrun the budget.
    policy = RetryPolicy(
        max_attempts=100, max_total_seconds=8.0, initial_wait=1.0, max_wait=100, jitter=0
    )
    with pytest.raises(InternalServerError):
        await harness.history_page([unavailable], policy)
    assert harness.sleeps == [1.0, 2.0, 4.0]


@pytest.mark.anyio
async def test_client_errors_are_not_retried(harness: Harness) -> None:
    with pytest.raises(BadRequestError) as info:
        await harness.history_page([bad_request, ok])
    assert harness.sleeps == []
    assert info.value.status_code == 400
    assert info.value.api_message == "bad date"
    assert info.value.method == "GET"
    assert info.value.path == "/jobs/history"


@pytest.mark.anyio
async def test_connection_errors_surface_as_library_errors(harness: Harness) -> None:
    with pytest.raises(APITimeoutError):
        await harness.history_page([timed_out], RetryPolicy.disabled())
    with pytest.raises(APIConnectionError) as info:
        await harness.history_page([dropped], RetryPolicy.disabled())
    assert not isinstance(info.value, APITimeoutError)
    assert harness.sleeps == []
