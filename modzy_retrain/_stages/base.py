"""Stages as plain typed iterator transformers, and the one way to chain them.

A stage takes an iterable and returns an iterator, so any point of a chain can be
``list()``-ed or ``islice()``-d in a notebook. The iterators a stage returns also carry
the :class:`RunReport` they record into, so a stage used alone still reports its drops.

A stage implements one public method: :meth:`Stage.process` for one item at a time
(it returns an output, ``Many(...)`` outputs, or a :class:`Drop`), or
:meth:`Stage.process_stream` for the whole stream (it yields outputs and drops). The
base class counts items in and out, times the stage, and records every drop in the
report under the stage's name.

``query | fetch | select | resolve | write`` builds a :class:`Chain`; iterating it runs
every stage lazily against one shared report (``chain.report``, the latest run's), and
:meth:`Chain.run` drains it and returns the report. Types stay precise:
``Chain[Sample]`` after a ``VoteFilter``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import AsyncGeneratorType, CoroutineType, GeneratorType
from typing import Any, Generic, TypeVar, cast, overload

from modzy_retrain._core.concurrency import aiter_sync
from modzy_retrain._core.secrets import scrub_urls_obj

from .report import Drop, RunReport, StageStats

In = TypeVar("In")
Out = TypeVar("Out")
T = TypeVar("T")
U = TypeVar("U")
V = TypeVar("V")
W = TypeVar("W")
X = TypeVar("X")


class StageIterator(Iterator[Out]):
    """An iterator over a stage's output that times it, counts what it yields, and
    records in the report the drops the stage passes it.

    Attributes:
        report: The run report the stage records into.
        stats: This stage's statistics in that report.
    """

    def __init__(self, inner: Iterator[Out | Drop], report: RunReport, stats: StageStats) -> None:
        self._inner = inner
        self.report = report
        self.stats = stats

    def __iter__(self) -> StageIterator[Out]:
        return self

    def __next__(self) -> Out:
        started = time.perf_counter()
        try:
            while True:
                item = next(self._inner)
                if isinstance(item, Drop):
                    self.report.drop(self.stats, item)
                    continue
                self.stats.items_out += 1
                return item
        except StopIteration:
            self.report.stage_ended(self.stats)
            raise
        finally:
            self.stats.inclusive_seconds += time.perf_counter() - started

    def close(self) -> None:
        """Stop early; I/O stages cancel their pending work and publish nothing."""
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class AsyncStageIterator(AsyncIterator[Out]):
    """The async twin of :class:`StageIterator`."""

    def __init__(
        self, inner: AsyncIterator[Out | Drop], report: RunReport, stats: StageStats
    ) -> None:
        self._inner = inner
        self.report = report
        self.stats = stats

    def __aiter__(self) -> AsyncStageIterator[Out]:
        return self

    async def __anext__(self) -> Out:
        started = time.perf_counter()
        try:
            while True:
                item = await self._inner.__anext__()
                if isinstance(item, Drop):
                    self.report.drop(self.stats, item)
                    continue
                self.stats.items_out += 1
                return item
        except StopAsyncIteration:
            self.report.stage_ended(self.stats)
            raise
        finally:
            self.stats.inclusive_seconds += time.perf_counter() - started

    async def aclose(self) -> None:
        aclose = getattr(self._inner, "aclose", None)
        if aclose is not None:
            await aclose()


class CountedInput(Iterator[T]):
    """A stage's input: counts every item taken from upstream, and carries the report."""

    def __init__(self, inner: Iterator[T], report: RunReport, stats: StageStats | None) -> None:
        self._inner = inner
        self.report = report
        self._stats = stats

    def __iter__(self) -> CountedInput[T]:
        return self

    def __next__(self) -> T:
        item = next(self._inner)
        if self._stats is not None:
            self._stats.items_in += 1
        return item

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class AsyncCountedInput(AsyncIterator[T]):
    """The async twin of :class:`CountedInput`."""

    def __init__(self, inner: AsyncIterator[T], report: RunReport, stats: StageStats) -> None:
        self._inner = inner
        self.report = report
        self._stats = stats

    def __aiter__(self) -> AsyncCountedInput[T]:
        return self

    async def __anext__(self) -> T:
        item = await self._inner.__anext__()
        self._stats.items_in += 1
        return item

    async def aclose(self) -> None:
        aclose = getattr(self._inner, "aclose", None)
        if aclose is not None:
            await aclose()


def run_report(items: Iterator[Any] | AsyncIterator[Any]) -> RunReport:
    """The report of the run that ``items`` (what ``process_stream`` was handed) feeds.

    For the built-in stream stages that record more than drops: inputs seen, job
    progress, the dataset published. Outside a run (``process_stream`` called
    directly), a report of its own that nobody reads.
    """
    if isinstance(items, (CountedInput, AsyncCountedInput)):
        return items.report
    return RunReport()


def _report_of(items: object) -> RunReport | None:
    report = getattr(items, "report", None)
    return report if isinstance(report, RunReport) else None


class Many(Generic[Out]):
    """Several results of one item, for :meth:`Stage.process` to return.

    ``Many(a, b)`` passes two outputs on; ``Many(*records, Drop(...))`` outputs and a
    drop, in that order; ``Many()`` nothing. A wrapper rather than a bare list, so an
    output that is itself a list or a tuple stays one output.
    """

    __slots__ = ("results",)

    def __init__(self, *results: Out | Drop) -> None:
        self.results: tuple[Out | Drop, ...] = results

    def __iter__(self) -> Iterator[Out | Drop]:
        return iter(self.results)

    def __len__(self) -> int:
        return len(self.results)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Many) and self.results == other.results

    def __repr__(self) -> str:
        return f"Many({', '.join(repr(r) for r in self.results)})"


# What a per-item method may not return: the sign of a method written as a generator
# (several outputs are Many(...)) or as a coroutine (the async method is aprocess).
_NOT_A_RESULT = (GeneratorType, AsyncGeneratorType, CoroutineType)
_CONTRACT = ("process", "process_stream", "aprocess", "aprocess_stream")
_END = object()


def _overrides(stage: Stage[Any, Any], method: str) -> bool:
    return getattr(type(stage), method) is not getattr(Stage, method)


async def _anext_or_end(items: AsyncIterator[T]) -> T | object:
    try:
        return await items.__anext__()
    except StopAsyncIteration:
        return _END


def _close(items: object) -> None:
    close = getattr(items, "close", None)
    if close is not None:
        close()


class Stage(Generic[In, Out]):
    """Base of the stages that transform items: ``stage(items) -> iterator``.

    A stage implements one method:

    - :meth:`process`: one item in; return its output, ``Many(...)`` outputs, or a
      :class:`Drop` saying why it goes no further;
    - or :meth:`process_stream`: the whole stream in, for a stage that needs it
      (bounded concurrency, batches, a commit at the end); yield outputs and drops.

    and its async twin (:meth:`aprocess`, :meth:`aprocess_stream`) only if it does I/O:
    by default the async path runs the sync method, so a pure stage written once
    works in async chains too. The base counts items in and out, times the stage,
    and records every drop in the run report under the stage's name.

    Users extend a built-in stage by overriding its one documented hook instead
    (``ResultFetcher.to_records``, ``VoteFilter.select``, ``LineageResolver.locate``,
    ``DatasetWriter.serialize``).
    """

    name = "stage"
    #: What one output counts (``"inputs"``), when it is not what came in.
    unit: str | None = None

    # -- the contract: implement process or process_stream -------------------------------

    def process(self, item: In) -> Out | Many[Out] | Drop:
        """One item: its output, ``Many(...)`` outputs, or a :class:`Drop`."""
        raise NotImplementedError(f"{type(self).__name__} does not implement process(item)")

    async def aprocess(self, item: In) -> Out | Many[Out] | Drop:
        """The async twin of :meth:`process`, for I/O. Default: ``process(item)``, on
        the event loop (so it must not block)."""
        return self.process(item)

    def process_stream(self, items: Iterator[In]) -> Iterator[Out | Drop]:
        """The whole stream: yield outputs and drops. Default: :meth:`process` per item."""
        return self._per_item(items)

    def aprocess_stream(self, items: AsyncIterator[In]) -> AsyncIterator[Out | Drop]:
        """The async twin of :meth:`process_stream`, for I/O.

        Default: a stage that implements ``process_stream`` without this twin runs it on
        a thread of its own, so it may block; otherwise :meth:`aprocess` per item.
        """
        if _overrides(self, "process_stream") and not _overrides(self, "aprocess"):
            return self._in_thread(items)
        return self._aper_item(items)

    # -- running ---------------------------------------------------------------------

    def __call__(
        self, items: Iterable[In], *, report: RunReport | None = None
    ) -> StageIterator[Out]:
        """Run the stage over ``items``; records into ``report`` (or the upstream's)."""
        if not (_overrides(self, "process") or _overrides(self, "process_stream")):
            raise self._not_implemented(sync=True)
        # The upstream's report is its iterator's: a chain starts a new run (and report)
        # each time it is iterated, and its ``report`` is still the previous run's.
        upstream = iter(items)
        report = report or _report_of(upstream) or _report_of(items) or RunReport()
        stats = report.stage(self.name, self.unit)
        results = self.process_stream(CountedInput(upstream, report, stats))
        return StageIterator(results, report, stats)

    def astream(
        self, items: AsyncIterable[In] | Iterable[In], *, report: RunReport | None = None
    ) -> AsyncStageIterator[Out]:
        """The async twin of calling the stage: takes and returns async iterators."""
        if not any(_overrides(self, method) for method in _CONTRACT):
            raise self._not_implemented(sync=False)
        source: AsyncIterable[In] = items if isinstance(items, AsyncIterable) else aiter_sync(items)
        upstream = source.__aiter__()
        report = report or _report_of(upstream) or _report_of(items) or RunReport()
        stats = report.stage(self.name, self.unit)
        results = self.aprocess_stream(AsyncCountedInput(upstream, report, stats))
        return AsyncStageIterator(results, report, stats)

    def _not_implemented(self, *, sync: bool) -> TypeError:
        cls = type(self).__name__
        if sync and (_overrides(self, "aprocess") or _overrides(self, "aprocess_stream")):
            return TypeError(
                f"{cls} has only an async path: use {cls}.astream() (or chain.arun()), "
                "or implement process(item) or process_stream(items)"
            )
        return TypeError(
            f"{cls} must implement process(item) (one item at a time) or "
            "process_stream(items) (the whole stream)"
        )

    def _results(self, result: Out | Many[Out] | Drop, method: str) -> Iterable[Out | Drop]:
        if isinstance(result, Many):
            return result.results
        if isinstance(result, _NOT_A_RESULT):
            _close(result)  # never run: no "never awaited" warning on top of the error
            raise TypeError(
                f"{type(self).__name__}.{method} returned a {type(result).__name__}: return "
                "Many(...) for several outputs, and name the async method aprocess"
            )
        return (result,)

    def _per_item(self, items: Iterator[In]) -> Iterator[Out | Drop]:
        for item in items:
            yield from self._results(self.process(item), "process")

    async def _aper_item(self, items: AsyncIterator[In]) -> AsyncIterator[Out | Drop]:
        method = "aprocess" if _overrides(self, "aprocess") else "process"
        async for item in items:
            for result in self._results(await self.aprocess(item), method):
                yield result

    async def _in_thread(self, items: AsyncIterator[In]) -> AsyncIterator[Out | Drop]:
        """Run the sync ``process_stream`` in an async chain, on a thread of its own that
        takes the items from the event loop one at a time."""
        loop = asyncio.get_running_loop()

        def pull() -> Iterator[In]:
            while True:
                item = asyncio.run_coroutine_threadsafe(_anext_or_end(items), loop).result()
                if item is _END:
                    return
                yield cast(In, item)

        # One thread for the whole run: the stream resumes on the thread it started on,
        # so whatever it holds that is bound to a thread (a sqlite connection) stays valid.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modzy-retrain-stage")
        try:
            inputs = CountedInput(pull(), run_report(items), None)  # counted on the loop side
            stream = await asyncio.wrap_future(pool.submit(self.process_stream, inputs))
            try:
                while True:
                    result = await asyncio.wrap_future(pool.submit(next, stream, _END))
                    if result is _END:
                        return
                    yield cast("Out | Drop", result)
            finally:
                # On its thread, after any step still running there: the stream's own
                # cleanup runs (pending work cancelled, nothing published).
                await asyncio.wrap_future(pool.submit(_close, stream))
        finally:
            pool.shutdown(wait=False)

    # -- describing ------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """The stage's settings, as written to the manifest (never secrets)."""
        return {"stage": self.name}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "stage")
        return f"{type(self).__name__}({settings})"


class Source(Generic[Out]):
    """Base of a chain's first stage (the history query): iterable on its own."""

    name = "source"
    unit = "items"  # what one output counts (the history query's are "jobs")

    def stream(self, report: RunReport | None = None) -> StageIterator[Out]:
        """The items, as an iterator whose ``report`` fills in as you consume it."""
        raise NotImplementedError

    def astream(self, report: RunReport | None = None) -> AsyncStageIterator[Out]:
        """The async twin of `stream`, for ``async for``."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The source's settings, as written to the manifest (never secrets)."""
        return {"stage": self.name}

    def __iter__(self) -> StageIterator[Out]:
        return self.stream()

    def __aiter__(self) -> AsyncStageIterator[Out]:
        return self.astream()

    def __or__(self, stage: Stage[Out, U]) -> Chain[U]:
        return Chain(self, (stage,))

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "stage")
        return f"{type(self).__name__}({settings})"


class Chain(Generic[Out]):
    """A source and the stages after it. Iterate it, or :meth:`run` it to the end.

    Each iteration (or run) is a new run with a new :class:`RunReport`; the chain keeps
    only the latest run's, as ``report`` (``None`` before any run), so ``list(chain)``
    in a notebook leaves it there: filled in as the run goes, finished when it ends.
    """

    def __init__(self, source: Source[Any], stages: tuple[Stage[Any, Any], ...]) -> None:
        self.source = source
        self.stages = stages
        self.report: RunReport | None = None

    def __or__(self, stage: Stage[Out, U]) -> Chain[U]:
        return Chain(self.source, (*self.stages, stage))

    def _new_report(self, report: RunReport | None) -> RunReport:
        report = report or RunReport()
        # What the report and the manifest record: any stage's URLs without credentials.
        described = [self.source.describe(), *(stage.describe() for stage in self.stages)]
        report.query = cast("dict[str, Any]", scrub_urls_obj(described[0]))
        report.pipeline = [cast("dict[str, Any]", scrub_urls_obj(d)) for d in described]
        self.report = report
        return report

    def stream(self, report: RunReport | None = None) -> StageIterator[Out]:
        """Start a run; the returned iterator's ``report`` fills in as you consume it."""
        report = self._new_report(report)
        it: StageIterator[Any] = self.source.stream(report)
        for stage in self.stages:
            it = stage(it, report=report)
        return it

    def astream(self, report: RunReport | None = None) -> AsyncStageIterator[Out]:
        report = self._new_report(report)
        it: AsyncStageIterator[Any] = self.source.astream(report)
        for stage in self.stages:
            it = stage.astream(it, report=report)
        return it

    def __iter__(self) -> StageIterator[Out]:
        return self.stream()

    def __aiter__(self) -> AsyncStageIterator[Out]:
        return self.astream()

    def run(self, report: RunReport | None = None) -> RunReport:
        """Run the chain to the end (the writer publishes) and return the report."""
        it = self.stream(report)
        for _ in it:
            pass
        return it.report  # finished as its last stage ran out

    async def arun(self, report: RunReport | None = None) -> RunReport:
        """The async twin of :meth:`run`."""
        it = self.astream(report)
        async for _ in it:
            pass
        return it.report

    def __repr__(self) -> str:
        parts = [repr(self.source), *(repr(s) for s in self.stages)]
        return " | ".join(parts)


@overload
def pipeline(source: Source[T], /) -> Chain[T]: ...
@overload
def pipeline(source: Source[T], s1: Stage[T, U], /) -> Chain[U]: ...
@overload
def pipeline(source: Source[T], s1: Stage[T, U], s2: Stage[U, V], /) -> Chain[V]: ...
@overload
def pipeline(
    source: Source[T], s1: Stage[T, U], s2: Stage[U, V], s3: Stage[V, W], /
) -> Chain[W]: ...
@overload
def pipeline(
    source: Source[T], s1: Stage[T, U], s2: Stage[U, V], s3: Stage[V, W], s4: Stage[W, X], /
) -> Chain[X]: ...
def pipeline(source: Source[Any], /, *stages: Stage[Any, Any]) -> Chain[Any]:
    """Chain a source and stages: ``pipeline(query, fetch, select, resolve, write)``.

    The same as ``query | fetch | select | resolve | write``.
    """
    return Chain(source, tuple(stages))
