"""Retrying Label Studio requests: bounded, with backoff, and never twice a creation.

Reads (``GET``) and the token refresh are retried on connection errors, timeouts, 429
and 5xx. Creations (a project, an import, an annotation) are not idempotent and the
server does not deduplicate (re-imported tasks are duplicated), so they are retried
only when the server cannot have acted: the connection was never made, or it answered
429. A 5xx or a dropped connection after a creation was sent raises at once.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

import httpx
import tenacity
from pydantic import Field

from modzy_retrain._core.backoff import wait_seconds
from modzy_retrain._core.exceptions import (
    LabelStudioConnectionError,
    LabelStudioStatusError,
)
from modzy_retrain._core.options import FrozenOptions

logger = logging.getLogger("modzy_retrain")


class LabelStudioRetry(FrozenOptions):
    """How the Label Studio client retries. Every limit is bounded by default.

    Attributes:
        max_attempts: Attempts in all, the first included (1 disables retrying).
        max_total_seconds: Budget of the waits for one call; a wait that would overrun
            it is not started and the last error is raised.
        initial_wait: First backoff wait in seconds; it doubles on each retry.
        max_wait: Ceiling of one backoff wait.
        jitter: Up to this many seconds, at random, added to a backoff wait.
        max_retry_after: Ceiling on a server-requested ``Retry-After``.
        retry_statuses: Statuses worth another attempt (for creations, only 429).
    """

    max_attempts: int = Field(default=5, ge=1)
    max_total_seconds: float = Field(default=120.0, gt=0)
    initial_wait: float = Field(default=0.5, ge=0)
    max_wait: float = Field(default=10.0, ge=0)
    jitter: float = Field(default=0.25, ge=0)
    max_retry_after: float = Field(default=60.0, ge=0)
    retry_statuses: frozenset[int] = frozenset({429, 500, 502, 503, 504})


def never_reached_the_server(exc: BaseException) -> bool:
    """Whether a connection error happened before any byte of the request was sent."""
    return isinstance(exc.__cause__, (httpx.ConnectError, httpx.ConnectTimeout))


def is_retryable(exc: BaseException, policy: LabelStudioRetry, *, idempotent: bool) -> bool:
    """Whether another attempt could succeed and cannot duplicate anything."""
    if isinstance(exc, LabelStudioConnectionError):
        return idempotent or never_reached_the_server(exc)
    if isinstance(exc, LabelStudioStatusError) and exc.status_code in policy.retry_statuses:
        return idempotent or exc.status_code == 429
    return False


def _wait(
    policy: LabelStudioRetry, rng: random.Random
) -> Callable[[tenacity.RetryCallState], float]:
    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        retry_after = exc.retry_after if isinstance(exc, LabelStudioStatusError) else None
        return wait_seconds(
            state.attempt_number,
            retry_after,
            initial_wait=policy.initial_wait,
            max_wait=policy.max_wait,
            jitter=policy.jitter,
            max_retry_after=policy.max_retry_after,
            rng=rng,
        )

    return wait


def _stop(policy: LabelStudioRetry) -> Callable[[tenacity.RetryCallState], bool]:
    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= policy.max_attempts:
            return True
        # idle_for counts the waits done: with an injected sleep no real time passes.
        return state.idle_for + (state.upcoming_sleep or 0.0) > policy.max_total_seconds

    return stop


def retrying(
    policy: LabelStudioRetry,
    *,
    idempotent: bool,
    what: str,
    sleep: Callable[[float], None],
    rng: random.Random,
) -> tenacity.Retrying:
    """A tenacity loop for one call; the last attempt's own error reaches the caller."""

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        logger.info(
            "retrying %s in %.2f s after attempt %d failed: %s",
            what,
            state.upcoming_sleep or 0.0,
            state.attempt_number,
            type(exc).__name__,
        )

    return tenacity.Retrying(
        stop=_stop(policy),
        wait=_wait(policy, rng),
        retry=tenacity.retry_if_exception(lambda e: is_retryable(e, policy, idempotent=idempotent)),
        before_sleep=before_sleep,
        sleep=sleep,
        reraise=True,
    )
