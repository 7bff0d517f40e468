"""Bytes held at once by concurrent work: one shared budget that cannot deadlock.

The fetcher reads up to its concurrency of results bodies at once, and keeps what it
parsed until the consumer takes it, in job order. Without a bound across them, a few
large bodies arriving together (each under the per-body limit) take gigabytes. Each
job gets a lease, opened in the order the work is admitted, which is the order its
results will be consumed. A lease takes bytes as its body arrives (and again for what
parsing will make of it), and gives them all back when its results have been passed on.
A take waits while the budget is spent. Two rules keep that safe:

- the oldest open lease never waits: the consumer is waiting for that one, and nothing
  else is given back before it is consumed, so making it wait would deadlock (the work
  behind it started later, so it is running);
- a lease that would hold more than the whole budget on its own is refused
  (:class:`OverBudget`): it could never be served, and the oldest must stay bounded.

So at most twice the limit is ever held: the limit by the leases that waited their turn,
and at most the limit again by the oldest. The bookkeeping (:class:`_Ledger`) is pure;
:class:`ByteBudget` waits on a thread condition, :class:`AsyncByteBudget` on futures of
one event loop. Strictly private.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict


class OverBudget(Exception):
    """One lease alone would hold more than the budget's ``limit``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"more than the budget of {limit:,} bytes on its own")
        self.limit = limit


class BudgetClosed(Exception):
    """The budget was closed (the work was abandoned) while a take was waiting."""


class _Ledger:
    """Who holds what, and whether a take may happen now. Pure."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a budget needs a limit of at least 1 byte")
        self.limit = limit
        self.total = 0
        self.closed = False
        self._held: OrderedDict[int, int] = OrderedDict()  # open leases, oldest first
        self._next = 0

    def open(self) -> int:
        ticket = self._next
        self._next += 1
        self._held[ticket] = 0
        return ticket

    def may_take(self, ticket: int, size: int) -> bool:
        """Whether ``ticket`` may take ``size`` now; raises if it never could."""
        if self._held[ticket] + size > self.limit:
            raise OverBudget(self.limit)
        if self.closed:
            raise BudgetClosed
        return self.total + size <= self.limit or ticket == next(iter(self._held))

    def take(self, ticket: int, size: int) -> None:
        self._held[ticket] += size
        self.total += size

    def give_back(self, ticket: int, size: int) -> None:
        size = min(size, self._held.get(ticket, 0))
        if size:
            self._held[ticket] -= size
            self.total -= size

    def close_lease(self, ticket: int) -> None:
        self.total -= self._held.pop(ticket, 0)

    def held(self, ticket: int) -> int:
        return self._held.get(ticket, 0)


class ByteBudget:
    """The budget shared by threads (the sync fetcher's workers)."""

    def __init__(self, limit: int) -> None:
        self._ledger = _Ledger(limit)
        self._changed = threading.Condition()

    @property
    def limit(self) -> int:
        return self._ledger.limit

    @property
    def total(self) -> int:
        """Bytes held now, by every lease."""
        return self._ledger.total

    def lease(self) -> Lease:
        """A new lease, younger than every open one."""
        with self._changed:
            return Lease(self, self._ledger.open())

    def close(self) -> None:
        """Wake every waiting take with :class:`BudgetClosed` (the work is abandoned)."""
        with self._changed:
            self._ledger.closed = True
            self._changed.notify_all()


class Lease:
    """One job's share of a :class:`ByteBudget`."""

    def __init__(self, budget: ByteBudget, ticket: int) -> None:
        self._budget = budget
        self._ticket = ticket

    @property
    def held(self) -> int:
        return self._budget._ledger.held(self._ticket)

    def take(self, size: int, timeout: float | None = None) -> bool:
        """Take ``size`` bytes, waiting up to ``timeout`` seconds; ``False`` if it ran out.

        Raises:
            OverBudget: This lease would hold more than the whole budget.
            BudgetClosed: The budget was closed while waiting.
        """
        ledger, changed = self._budget._ledger, self._budget._changed
        until = None if timeout is None else time.monotonic() + timeout
        with changed:
            while not ledger.may_take(self._ticket, size):
                left = None if until is None else until - time.monotonic()
                if left is not None and left <= 0:
                    return False
                changed.wait(left)
            ledger.take(self._ticket, size)
        return True

    def give_back(self, size: int) -> None:
        """Return ``size`` bytes taken for what was discarded (a failed attempt's body)."""
        with self._budget._changed:
            self._budget._ledger.give_back(self._ticket, size)
            self._budget._changed.notify_all()

    def release(self) -> None:
        """Return everything and close the lease (its results were passed on)."""
        with self._budget._changed:
            self._budget._ledger.close_lease(self._ticket)
            self._budget._changed.notify_all()


class AsyncByteBudget:
    """The budget shared by the tasks of one event loop (the async fetcher's)."""

    def __init__(self, limit: int) -> None:
        self._ledger = _Ledger(limit)
        # One loop, no threads: a list of futures to wake is all the waiting needs.
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def limit(self) -> int:
        return self._ledger.limit

    @property
    def total(self) -> int:
        return self._ledger.total

    def lease(self) -> AsyncLease:
        return AsyncLease(self, self._ledger.open())

    def close(self) -> None:
        self._ledger.closed = True
        self._wake()

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


class AsyncLease:
    """One job's share of an :class:`AsyncByteBudget`; the twin of :class:`Lease`."""

    def __init__(self, budget: AsyncByteBudget, ticket: int) -> None:
        self._budget = budget
        self._ticket = ticket

    @property
    def held(self) -> int:
        return self._budget._ledger.held(self._ticket)

    async def take(self, size: int) -> None:
        """Take ``size`` bytes, waiting for them (a deadline around the caller cancels it).

        Raises:
            OverBudget: This lease would hold more than the whole budget.
            BudgetClosed: The budget was closed while waiting.
        """
        budget = self._budget
        while not budget._ledger.may_take(self._ticket, size):
            waiter = asyncio.get_running_loop().create_future()
            budget._waiters.append(waiter)
            await waiter
        budget._ledger.take(self._ticket, size)

    def give_back(self, size: int) -> None:
        self._budget._ledger.give_back(self._ticket, size)
        self._budget._wake()

    def release(self) -> None:
        self._budget._ledger.close_lease(self._ticket)
        self._budget._wake()
