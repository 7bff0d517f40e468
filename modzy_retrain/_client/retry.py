"""Retry decisions (pure) and their tenacity drivers (one config, two loops).

Only the API's read routes and its idempotent vote routes are ever called, so every
request may be retried. What is retried: connection errors, timeouts, a 2xx body that
cannot be decoded, and the statuses in :attr:`RetryPolicy.retry_statuses` (429, 500,
502, 503, 504 by default). Waits are
exponential with jitter, except when the server says how long to wait
(``Retry-After``), which is honoured up to :attr:`RetryPolicy.max_retry_after`; a longer
ask is clamped to that cap rather than obeyed or ignored. Attempts and total time are
both bounded, and the run stops early rather than start a wait that would overrun the
total budget. Users always see this library's exception from the last attempt, never
``tenacity.RetryError``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import tenacity
from pydantic import Field

from modzy_retrain._core.backoff import wait_seconds
from modzy_retrain._core.exceptions import (
    APIConnectionError,
    APIStatusError,
    InternalServerError,
    RateLimitError,
    ResponseTooLargeError,
    ResponseValidationError,
)
from modzy_retrain._core.options import FrozenOptions

from .deadline import Deadline

logger = logging.getLogger("modzy_retrain")


class RetryPolicy(FrozenOptions):
    """How the client retries failed requests. All limits are bounded by default.

    Attributes:
        max_attempts: Attempts in all, the first one included (1 disables retrying).
        max_total_seconds: Time budget for one call, waits included. A wait that would
            overrun it is not started; the last error is raised instead.
        initial_wait: First backoff wait, in seconds; it doubles on each retry.
        max_wait: Ceiling of one backoff wait, in seconds.
        jitter: Up to this many seconds, drawn at random, are added to a backoff wait
            so that many clients do not retry in lockstep.
        max_retry_after: Ceiling on a server-requested ``Retry-After`` wait.
        retry_statuses: HTTP statuses worth another attempt.
    """

    max_attempts: int = Field(default=5, ge=1)
    max_total_seconds: float = Field(default=120.0, gt=0)
    initial_wait: float = Field(default=0.5, ge=0)
    max_wait: float = Field(default=10.0, ge=0)
    jitter: float = Field(default=0.5, ge=0)
    max_retry_after: float = Field(default=60.0, ge=0)
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})

    @classmethod
    def disabled(cls) -> RetryPolicy:
        """A policy that makes exactly one attempt."""
        return cls(max_attempts=1)


@dataclass(frozen=True)
class RetryEvent:
    """What an ``on_retry`` hook is told before the client waits and tries again.

    Attributes:
        method: HTTP method of the request being retried.
        path: Its path relative to the API root.
        attempt: The number of the attempt that just failed (1 for the first).
        wait: Seconds the client will wait before the next attempt.
        error: The error that attempt raised (a modzy_retrain exception).
    """

    method: str
    path: str
    attempt: int
    wait: float
    error: BaseException


RetryHook = Callable[[RetryEvent], None]


def is_retryable(exc: BaseException, policy: RetryPolicy) -> bool:
    """Whether another attempt could succeed where this one failed.

    A ``ResponseValidationError`` reaches here only from receiving a body (the client
    parses outside its retries): one that cannot be decoded may be a proxy's glitch,
    like a dropped connection; one over the size limit would be the same again.
    """
    if isinstance(exc, APIConnectionError):
        return True
    if isinstance(exc, ResponseValidationError):
        return not isinstance(exc, ResponseTooLargeError)
    if isinstance(exc, APIStatusError):
        return exc.status_code in policy.retry_statuses
    return False


def compute_wait(
    policy: RetryPolicy, attempt: int, exc: BaseException | None, rng: random.Random
) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
    retry_after: float | None = None
    if isinstance(exc, (RateLimitError, InternalServerError)):
        retry_after = exc.retry_after
    return wait_seconds(
        attempt,
        retry_after,
        initial_wait=policy.initial_wait,
        max_wait=policy.max_wait,
        jitter=policy.jitter,
        max_retry_after=policy.max_retry_after,
        rng=rng,
    )


class _Stop(tenacity.stop.stop_base):
    def __init__(self, policy: RetryPolicy, deadline: Deadline | None) -> None:
        self._policy = policy
        self._deadline = deadline

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        if retry_state.attempt_number >= self._policy.max_attempts:
            return True
        # idle_for counts the waits already done: with an injected sleep (tests) no
        # real time passes, yet the budget must still bound the run.
        spent = max(retry_state.seconds_since_start or 0.0, retry_state.idle_for)
        upcoming = retry_state.upcoming_sleep or 0.0
        if spent + upcoming > self._policy.max_total_seconds:
            return True
        # The call's deadline: no attempt is started, nor a wait, that it would cut.
        deadline = self._deadline
        return deadline is not None and (
            max(deadline.elapsed(), retry_state.idle_for) + upcoming >= deadline.seconds
        )


class _Wait(tenacity.wait.wait_base):
    def __init__(self, policy: RetryPolicy, rng: random.Random) -> None:
        self._policy = policy
        self._rng = rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        return compute_wait(self._policy, retry_state.attempt_number, exc, self._rng)


def _before_sleep(method: str, path: str, hook: RetryHook | None) -> Callable[..., None]:
    def before_sleep(retry_state: tenacity.RetryCallState) -> None:
        outcome = retry_state.outcome
        exc = outcome.exception() if outcome is not None else None
        if exc is None:  # pragma: no cover - we only retry on exceptions
            return
        wait = retry_state.upcoming_sleep or 0.0
        logger.info(
            "retrying %s %s in %.2f s after attempt %d failed: %s",
            method,
            path,
            wait,
            retry_state.attempt_number,
            type(exc).__name__,
        )
        if hook is not None:
            hook(RetryEvent(method, path, retry_state.attempt_number, wait, exc))

    return before_sleep


def _common_kwargs(
    policy: RetryPolicy,
    method: str,
    path: str,
    hook: RetryHook | None,
    rng: random.Random,
    deadline: Deadline | None,
) -> dict[str, Any]:
    return {
        "stop": _Stop(policy, deadline),
        "wait": _Wait(policy, rng),
        "retry": tenacity.retry_if_exception(lambda e: is_retryable(e, policy)),
        "before_sleep": _before_sleep(method, path, hook),
        # The last attempt's own exception reaches the caller, not tenacity.RetryError.
        "reraise": True,
    }


def sync_retrying(
    policy: RetryPolicy,
    *,
    method: str,
    path: str,
    sleep: Callable[[float], None],
    hook: RetryHook | None,
    rng: random.Random,
    deadline: Deadline | None = None,
) -> tenacity.Retrying:
    kwargs = _common_kwargs(policy, method, path, hook, rng, deadline)
    return tenacity.Retrying(sleep=sleep, **kwargs)


def async_retrying(
    policy: RetryPolicy,
    *,
    method: str,
    path: str,
    sleep: Callable[[float], Awaitable[None]],
    hook: RetryHook | None,
    rng: random.Random,
    deadline: Deadline | None = None,
) -> tenacity.AsyncRetrying:
    kwargs = _common_kwargs(policy, method, path, hook, rng, deadline)
    return tenacity.AsyncRetrying(sleep=sleep, **kwargs)
