"""A call's total deadline: when it must be over, every attempt and wait included.

httpx's timeouts are per operation: a read that gets one byte before the read timeout
starts the next read with a fresh one, so a server sending a byte every half second
keeps a request alive for ever. The deadline bounds the call as a whole.

- The async client runs the whole call inside ``asyncio.timeout`` (``wait_for`` on
  Python 3.10): whatever the call is doing when the deadline passes (connecting,
  waiting for the head, reading the body, waiting to retry) is cancelled.
- The sync client cannot interrupt a blocking read from outside (httpx has no means to),
  so it bounds what it can with httpx's own: each attempt's connect, read, write and
  pool timeouts are capped at the time left when the attempt starts, and the deadline
  is checked between body chunks (``iter_bytes``). What it cannot bound: a server that
  trickles the status line and headers (each read of the head may wait up to the capped
  read timeout), and name resolution (``getaddrinfo`` has no timeout).

Pure but for the clock, which tests may replace.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

from modzy_retrain._core.exceptions import APITimeoutError

T = TypeVar("T")


@dataclass(frozen=True)
class Deadline:
    """When one call must be over. Strictly private.

    Attributes:
        seconds: The call's whole budget.
        started: When the call started, on ``clock``.
    """

    seconds: float
    started: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def start(cls, seconds: float | None) -> Deadline | None:
        return None if seconds is None else cls(seconds, time.monotonic())

    def elapsed(self) -> float:
        return self.clock() - self.started

    def remaining(self) -> float:
        return max(0.0, self.seconds - self.elapsed())

    def passed(self) -> bool:
        return self.elapsed() >= self.seconds

    def cap(self, timeout: httpx.Timeout) -> httpx.Timeout:
        """``timeout`` with each phase at most the time left (``None`` phases too)."""
        left = self.remaining()

        def capped(value: float | None) -> float:
            return left if value is None else min(value, left)

        return httpx.Timeout(
            connect=capped(timeout.connect),
            read=capped(timeout.read),
            write=capped(timeout.write),
            pool=capped(timeout.pool),
        )

    def error(self, method: str, path: str) -> APITimeoutError:
        return APITimeoutError(
            f"{method} {path} did not complete within its {self.seconds:g} s deadline",
            method=method,
            path=path,
        )


async def within(deadline: Deadline | None, work: Awaitable[T], method: str, path: str) -> T:
    """Await ``work``, cancelled when ``deadline`` passes (then its ``APITimeoutError``)."""
    if deadline is None:
        return await work
    if sys.version_info >= (3, 11):
        scope = asyncio.timeout(deadline.remaining())
        try:
            async with scope:
                return await work
        except TimeoutError:
            # Only our own scope's expiry is the deadline; a TimeoutError from below
            # (an HTTP stack's own) is left to the caller's error mapping.
            if scope.expired():
                raise deadline.error(method, path) from None
            raise
    try:  # pragma: no cover - Python 3.10
        return await asyncio.wait_for(work, deadline.remaining())
    except asyncio.TimeoutError:  # pragma: no cover - Python 3.10
        raise deadline.error(method, path) from None
