"""The bounded, ordered concurrent map under every I/O stage."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

from modzy_retrain import Job, ModzyClient, ResultFetcher
from modzy_retrain._core.concurrency import aordered_map, aread_ahead, ordered_map, read_ahead
from modzy_retrain.sandbox import Sandbox


def test_reaches_and_never_exceeds_the_bound_and_keeps_order() -> None:
    # A barrier of `concurrency` parties only opens if that many calls run at once.
    concurrency = 4
    barrier = threading.Barrier(concurrency, timeout=30)
    lock = threading.Lock()
    active = peak = 0

    def work(n: int) -> int:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        try:
            barrier.wait()
            return n * n
        finally:
            with lock:
                active -= 1

    out = list(ordered_map(work, range(40), concurrency=concurrency))
    assert out == [n * n for n in range(40)]
    assert peak == concurrency


def test_input_is_consumed_lazily_and_a_break_stops_the_work() -> None:
    pulled: list[int] = []

    def source() -> Iterator[int]:
        for n in range(10_000):
            pulled.append(n)
            yield n

    it = ordered_map(lambda n: n, source(), concurrency=4, window=8)
    assert [next(it) for _ in range(3)] == [0, 1, 2]
    it.close()
    assert len(pulled) <= 3 + 8


def test_errors_surface_in_order() -> None:
    def work(n: int) -> int:
        if n == 5:
            raise ValueError("five")
        return n

    it = ordered_map(work, range(10), concurrency=3)
    assert [next(it) for _ in range(5)] == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError, match="five"):
        next(it)


@pytest.mark.anyio
async def test_async_twin_bounds_and_orders() -> None:
    active = peak = 0
    release = asyncio.Event()

    async def work(n: int) -> int:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        if peak == 3:
            release.set()
        await release.wait()
        active -= 1
        return -n

    async def source() -> AsyncIterator[int]:
        for n in range(20):
            yield n

    out = [x async for x in aordered_map(work, source(), concurrency=3)]
    assert out == [-n for n in range(20)]
    assert peak == 3


def test_the_fetcher_reads_four_times_its_concurrency_ahead() -> None:
    # Enough queued work to cover the history pager's round trip on a new page, and
    # no more: memory stays bounded by it.
    sandbox = Sandbox(seed=6, jobs=40)
    with ModzyClient(
        api_key=sandbox.api_key, base_url="http://sandbox.invalid", transport=sandbox.transport()
    ) as client:
        jobs = [j for j in client.jobs.history() if j.is_finished]
        assert len(jobs) > 12
        pulled = 0

        def source() -> Iterator[Job]:
            nonlocal pulled
            for job in jobs:
                pulled += 1
                yield job

        it = ResultFetcher(client, concurrency=3)(source())
        next(it)
        assert pulled == 12
        it.close()


def test_read_ahead_fetches_the_next_item_while_the_caller_works() -> None:
    produced: list[int] = []
    second = threading.Event()

    def source() -> Iterator[int]:
        for i in range(5):
            produced.append(i)
            if i == 1:
                second.set()
            yield i

    it = read_ahead(source())
    assert next(it) == 0
    # The caller has item 0; item 1 is being made on the other thread meanwhile.
    assert second.wait(timeout=10)
    assert list(it) == [1, 2, 3, 4]
    assert produced == [0, 1, 2, 3, 4]

    early = read_ahead(source())
    next(early)
    early.close()  # waits for the one in flight, abandons nothing, reads no further
    assert len(produced) == 7


def test_read_ahead_passes_errors_on_in_order() -> None:
    def failing() -> Iterator[int]:
        yield 1
        raise RuntimeError("page 2 failed")

    it = read_ahead(failing())
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="page 2 failed"):
        next(it)


@pytest.mark.anyio
async def test_aread_ahead_awaits_the_next_item_in_a_task() -> None:
    second = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        for i in range(4):
            if i == 1:
                second.set()
            yield i

    it = aread_ahead(source())
    assert await it.__anext__() == 0
    await asyncio.wait_for(second.wait(), timeout=10)  # item 1 was started meanwhile
    assert [i async for i in it] == [1, 2, 3]

    async def failing() -> AsyncIterator[int]:
        yield 1
        raise RuntimeError("page 2 failed")

    bad = aread_ahead(failing())
    assert await bad.__anext__() == 1
    with pytest.raises(RuntimeError, match="page 2 failed"):
        await bad.__anext__()


def test_read_ahead_closes_its_source_when_closed_early() -> None:
    closed = threading.Event()

    def source() -> Iterator[int]:
        try:
            yield from range(10)
        finally:
            closed.set()

    src = source()  # held here, so only an explicit close can close it
    it = read_ahead(src)
    assert next(it) == 0
    it.close()
    assert closed.is_set()


@pytest.mark.anyio
async def test_aread_ahead_closes_its_source_when_closed_early() -> None:
    closed = asyncio.Event()

    async def source() -> AsyncIterator[int]:
        try:
            for i in range(10):
                yield i
        finally:
            closed.set()

    src = source()  # held here, so only an explicit aclose can close it
    it = aread_ahead(src)
    assert await it.__anext__() == 0
    await it.aclose()
    assert closed.is_set()
