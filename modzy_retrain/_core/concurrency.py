"""Bounded, order-preserving concurrent map: threads for sync, tasks for async.

The input iterator is always consumed by the caller's thread (generators upstream are
not thread-safe), at most ``window`` items ahead of what has been yielded, so memory
stays flat however long the input. Results come out in input order, which keeps runs
reproducible.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Generator,
    Iterable,
    Iterator,
)
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar, cast

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], *, concurrency: int, window: int | None = None
) -> Generator[R, None, None]:
    """Apply ``fn`` to every item on up to ``concurrency`` threads; yield in input order."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    window = window or concurrency * 2
    if concurrency == 1:
        # No pool for the sequential case: simpler tracebacks, no thread hop.
        for item in items:
            yield fn(item)
        return
    pending: deque[Future[R]] = deque()
    pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="modzy-retrain")
    try:
        source = iter(items)
        exhausted = False
        while True:
            while not exhausted and len(pending) < window:
                try:
                    item = next(source)
                except StopIteration:
                    exhausted = True
                    break
                pending.append(pool.submit(fn, item))
            if not pending:
                return
            yield pending.popleft().result()
    finally:
        # Closing early (break, islice, an error downstream) must not leave work
        # running: cancel what has not started, wait for what has.
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True)


async def aordered_map(
    fn: Callable[[T], Awaitable[R]],
    items: AsyncIterable[T],
    *,
    concurrency: int,
    window: int | None = None,
) -> AsyncGenerator[R, None]:
    """The async twin of :func:`ordered_map`: up to ``concurrency`` tasks at once."""
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    window = window or concurrency * 2
    semaphore = asyncio.Semaphore(concurrency)

    async def guarded(item: T) -> R:
        async with semaphore:
            return await fn(item)

    pending: deque[asyncio.Task[R]] = deque()
    source = items.__aiter__()
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < window:
                try:
                    item = await source.__anext__()
                except StopAsyncIteration:
                    exhausted = True
                    break
                pending.append(asyncio.ensure_future(guarded(item)))
            if not pending:
                return
            yield await pending.popleft()
    finally:
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)


async def aiter_sync(items: Iterable[T]) -> AsyncIterator[T]:
    """Adapt a plain iterable to an async iterator (for async chains fed from a list)."""
    for item in items:
        yield item


_END = object()


def read_ahead(items: Iterator[T]) -> Iterator[T]:
    """Yield ``items``, computing the next one on a thread while the caller uses this one.

    For a source whose every item costs a round trip (history pages): the next request
    is in flight while the consumer works through the current page. One item ahead at
    most; on early close, the one in flight is waited for, not abandoned.
    """
    try:
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="modzy-retrain-ahead") as pool:
            pending = pool.submit(next, items, _END)
            while True:
                item = pending.result()
                if item is _END:
                    return
                pending = pool.submit(next, items, _END)
                yield cast(T, item)
    finally:
        # The pool has waited for the item in flight: the source can be closed now,
        # here, rather than whenever it is collected.
        close = getattr(items, "close", None)
        if close is not None:
            close()


async def aread_ahead(items: AsyncIterator[T]) -> AsyncIterator[T]:
    """The async twin of :func:`read_ahead`: the next item is awaited in a task."""

    async def following() -> object:
        try:
            return await items.__anext__()
        except StopAsyncIteration:
            return _END

    pending = asyncio.ensure_future(following())
    try:
        while True:
            item = await pending
            if item is _END:
                return
            pending = asyncio.ensure_future(following())
            yield cast(T, item)
    finally:
        if not pending.done():
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()
