"""Seeded fault injection shared by the in-process transports and the socket server."""

from __future__ import annotations

import enum
import random
import threading
from dataclasses import dataclass


class FaultKind(enum.Enum):
    """What goes wrong with one request."""

    ERROR = "error"  # a 5xx response with Modzy's error body
    THROTTLE = "throttle"  # 429 with Retry-After
    DROP = "drop"  # the connection closes before any response byte
    TRUNCATE = "truncate"  # the body is cut short of its Content-Length
    SLOW = "slow"  # the response is delayed by FaultConfig.slow_ms


# Gateways in front of Modzy answer with any of these; clients must treat them alike.
ERROR_STATUSES: tuple[int, ...] = (500, 502, 503, 504)


@dataclass(frozen=True)
class FaultConfig:
    """Probabilities of each fault, drawn once per API request.

    The draws come from one ``random.Random(fault_seed)`` consumed in request order, so a
    run that sends the same requests in the same order sees the same faults.
    """

    error_rate: float = 0.0
    throttle_rate: float = 0.0
    drop_rate: float = 0.0
    truncate_rate: float = 0.0
    slow_rate: float = 0.0
    slow_ms: float = 2000.0
    retry_after: int = 1
    fault_seed: int = 0

    def __post_init__(self) -> None:
        rates = self.rates()
        for name, rate in rates:
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate}")
        if sum(rate for _, rate in rates) > 1.0 + 1e-9:
            raise ValueError("the fault rates must add up to at most 1")
        if self.slow_ms < 0:
            raise ValueError("slow_ms must be >= 0")
        if self.retry_after < 0:
            raise ValueError("retry_after must be >= 0")

    def rates(self) -> tuple[tuple[str, float], ...]:
        """Each fault rate by its name."""
        return (
            ("error_rate", self.error_rate),
            ("throttle_rate", self.throttle_rate),
            ("drop_rate", self.drop_rate),
            ("truncate_rate", self.truncate_rate),
            ("slow_rate", self.slow_rate),
        )

    @property
    def enabled(self) -> bool:
        """Whether any fault rate is above zero."""
        return any(rate > 0 for _, rate in self.rates())


@dataclass(frozen=True)
class Fault:
    kind: FaultKind
    status: int = 0  # the 5xx code for ERROR, 429 for THROTTLE, 0 otherwise


_KIND_ORDER = (
    FaultKind.ERROR,
    FaultKind.THROTTLE,
    FaultKind.DROP,
    FaultKind.TRUNCATE,
    FaultKind.SLOW,
)


class FaultInjector:
    """Decides, request by request, which fault (if any) to inject."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self._rng = random.Random(config.fault_seed)
        self._lock = threading.Lock()

    def draw(self) -> Fault | None:
        if not self.config.enabled:
            return None
        with self._lock:
            # Always two draws per request, so the n-th request's fault depends only on
            # (fault_seed, n) and not on what earlier requests turned out to be.
            u = self._rng.random()
            v = self._rng.random()
        edge = 0.0
        for kind, (_, rate) in zip(_KIND_ORDER, self.config.rates(), strict=True):
            edge += rate
            if u < edge:
                if kind is FaultKind.ERROR:
                    return Fault(kind, ERROR_STATUSES[int(v * len(ERROR_STATUSES))])
                if kind is FaultKind.THROTTLE:
                    return Fault(kind, 429)
                return Fault(kind)
        return None
