"""Sending an action's request: pure retry decisions, tenacity as the driver.

A 5xx, a 429, GitHub's rate-limit 403 and a timeout or lost connection are retried,
a bounded number of times and within a time budget, waiting what the service asks
(``Retry-After``, capped) or a doubling backoff (``_core/backoff.py``, the rule both
API clients follow). Any other 4xx is a :class:`TriggerRefusedError` at once, with
what to fix. The sleep is injected: tests never wait. Every message is redacted of the
action's secrets before it is raised or logged.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx
import tenacity
from pydantic import Field

from modzy_retrain._core.backoff import parse_retry_after, wait_seconds
from modzy_retrain._core.exceptions import TriggerRefusedError, TriggerUnavailableError
from modzy_retrain._core.options import FrozenOptions

from .shapes import HttpCall, server_message

logger = logging.getLogger("modzy_retrain")
# Enough for a JSON error or a GraphQL answer; a trigger never needs more.
MAX_ANSWER_BYTES = 1024 * 1024


class TriggerRetry(FrozenOptions):
    """How an action retries (its ``max_attempts`` and ``timeout`` are its settings).

    Args:
        max_total_seconds: Budget for one action, waits included (the dataset stays
            locked while the trigger fires).
        initial_wait: First backoff wait; it doubles on each retry.
        max_wait: Ceiling of one backoff wait.
        jitter: Up to this many seconds added at random to a backoff wait.
        max_retry_after: Ceiling on a ``Retry-After`` the service asks for.
    """

    max_total_seconds: float = Field(default=300.0, gt=0)
    initial_wait: float = Field(default=1.0, ge=0)
    max_wait: float = Field(default=30.0, ge=0)
    jitter: float = Field(default=0.5, ge=0)
    max_retry_after: float = Field(default=60.0, ge=0)


@dataclass(frozen=True)
class Answer:
    """A 2xx answer (or a status ``done_before`` accepts): its status and decoded body."""

    status_code: int
    body: object
    done_before: bool = False


def retryable_status(status: int, headers: Mapping[str, str]) -> bool:
    """Whether another attempt could succeed after this status.

    GitHub answers an exhausted rate limit with 403 (or 429) and says so in
    ``x-ratelimit-remaining: 0`` or ``Retry-After``; any other 403 is a refusal.
    """
    if status == 429 or status >= 500:
        return True
    lowered = {k.lower(): v for k, v in headers.items()}
    return status == 403 and (
        lowered.get("x-ratelimit-remaining") == "0" or "retry-after" in lowered
    )


class _Again(TriggerUnavailableError):
    """An attempt worth repeating (internal; the last one reaches the caller)."""

    def __init__(self, message: str, *, action: str, status_code: int, retry_after: float | None):
        super().__init__(message, action=action, status_code=status_code)
        self.retry_after = retry_after


def _decode(response: httpx.Response) -> object:
    text = response.content[:MAX_ANSWER_BYTES].decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        return text


def attempt(
    call: HttpCall,
    client: httpx.Client,
    timeout: float,
    refused: Callable[[int, str], str],
) -> Answer:
    """One request, its answer sorted: success, retry (:class:`_Again`) or refusal."""
    try:
        response = client.request(
            call.method, call.url, headers=dict(call.headers), content=call.content, timeout=timeout
        )
    except httpx.TimeoutException:
        raise _Again(
            f"trigger {call.action}: no answer within {timeout:g} s",
            action=call.action,
            status_code=0,
            retry_after=None,
        ) from None
    except httpx.TransportError as exc:
        # The error's name only: its text may quote the URL, whose query may hold a token.
        raise _Again(
            f"trigger {call.action}: could not reach the service ({type(exc).__name__})",
            action=call.action,
            status_code=0,
            retry_after=None,
        ) from None
    status = response.status_code
    body = _decode(response)
    if 200 <= status < 300 or status in call.done_before:
        return Answer(status, body, done_before=status in call.done_before)
    message = server_message(body, call.secrets)
    if retryable_status(status, response.headers):
        said = f"{status}: {message}" if message else str(status)
        raise _Again(
            f"trigger {call.action}: the service failed ({said})",
            action=call.action,
            status_code=status,
            retry_after=parse_retry_after(response.headers),
        )
    raise TriggerRefusedError(refused(status, message), action=call.action, status_code=status)


def send(
    call: HttpCall,
    *,
    client: httpx.Client,
    timeout: float,
    max_attempts: int,
    refused: Callable[[int, str], str],
    retry: TriggerRetry | None = None,
    sleep: Callable[[float], None],
    rng: random.Random | None = None,
) -> Answer:
    """Send ``call`` until it succeeds, is refused, or the attempts or budget run out.

    Raises:
        TriggerRefusedError: A 4xx (not a rate limit): the message says what to fix.
        TriggerUnavailableError: Still failing (5xx, timeouts) after the last attempt.
    """
    policy = retry or TriggerRetry()
    chance = rng or random.Random()

    def wait(state: tenacity.RetryCallState) -> float:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        asked = exc.retry_after if isinstance(exc, _Again) else None
        return wait_seconds(
            state.attempt_number,
            asked,
            initial_wait=policy.initial_wait,
            max_wait=policy.max_wait,
            jitter=policy.jitter,
            max_retry_after=policy.max_retry_after,
            rng=chance,
        )

    def stop(state: tenacity.RetryCallState) -> bool:
        if state.attempt_number >= max_attempts:
            return True
        # idle_for counts the waits done: with an injected sleep no time passes.
        spent = max(state.seconds_since_start or 0.0, state.idle_for)
        return spent + (state.upcoming_sleep or 0.0) > policy.max_total_seconds

    def before_sleep(state: tenacity.RetryCallState) -> None:
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        logger.info(
            "retrying trigger %s in %.2f s after attempt %d: %s",
            call.action,
            state.upcoming_sleep or 0.0,
            state.attempt_number,
            exc,
        )

    attempts = 0

    def one() -> Answer:
        nonlocal attempts
        attempts += 1
        return attempt(call, client, timeout, refused)

    retrying = tenacity.Retrying(
        sleep=sleep,
        stop=stop,
        wait=wait,
        retry=tenacity.retry_if_exception_type(_Again),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(one)
    except _Again as exc:
        # The caller sees the public type, with how many attempts were made.
        raise TriggerUnavailableError(
            f"{exc.message} (after {attempts} attempt(s))",
            action=exc.action,
            status_code=exc.status_code,
        ) from None
