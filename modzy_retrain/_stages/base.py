"""Stages as plain typed iterator transformers, and the one way to chain them.

A stage takes an iterable and returns an iterator, so any point of a chain can be
``list()``-ed or ``islice()``-d in a notebook. The iterators a stage returns also carry
the :class:`RunReport` they record into, so a stage used alone still reports its drops.

``query | fetch | select | resolve | write`` builds a :class:`Chain`; iterating it runs
every stage lazily against one shared report, and :meth:`Chain.run` drains it and
returns the report. Types stay precise: ``Chain[Sample]`` after a ``VoteFilter``.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any, Generic, TypeVar, overload

from modzy_retrain._core.concurrency import aiter_sync

from .report import RunReport, StageStats

In = TypeVar("In")
Out = TypeVar("Out")
T = TypeVar("T")
U = TypeVar("U")
V = TypeVar("V")
W = TypeVar("W")
X = TypeVar("X")


class StageIterator(Iterator[Out]):
    """An iterator over a stage's output that times it and counts what it yields.

    Attributes:
        report: The run report the stage records into.
        stats: This stage's statistics in that report.
    """

    def __init__(self, inner: Iterator[Out], report: RunReport, stats: StageStats) -> None:
        self._inner = inner
        self.report = report
        self.stats = stats

    def __iter__(self) -> StageIterator[Out]:
        return self

    def __next__(self) -> Out:
        started = time.perf_counter()
        try:
            item = next(self._inner)
        finally:
            self.stats.inclusive_seconds += time.perf_counter() - started
        self.stats.items_out += 1
        return item

    def close(self) -> None:
        """Stop early; I/O stages cancel their pending work and publish nothing."""
        close = getattr(self._inner, "close", None)
        if close is not None:
            close()


class AsyncStageIterator(AsyncIterator[Out]):
    """The async twin of :class:`StageIterator`."""

    def __init__(self, inner: AsyncIterator[Out], report: RunReport, stats: StageStats) -> None:
        self._inner = inner
        self.report = report
        self.stats = stats

    def __aiter__(self) -> AsyncStageIterator[Out]:
        return self

    async def __anext__(self) -> Out:
        started = time.perf_counter()
        try:
            item = await self._inner.__anext__()
        finally:
            self.stats.inclusive_seconds += time.perf_counter() - started
        self.stats.items_out += 1
        return item

    async def aclose(self) -> None:
        aclose = getattr(self._inner, "aclose", None)
        if aclose is not None:
            await aclose()


def _report_of(items: object) -> RunReport | None:
    report = getattr(items, "report", None)
    return report if isinstance(report, RunReport) else None


class Stage(Generic[In, Out]):
    """Base of the stages that transform items: ``stage(items) -> iterator``.

    Subclasses implement :meth:`_iterate` (and :meth:`_aiterate` for async). Users
    extend a stage by overriding its one documented hook instead (``ResultFetcher.
    to_records``, ``VoteFilter.select``, ``LineageResolver.locate``,
    ``DatasetWriter.serialize``).
    """

    name = "stage"

    def __call__(
        self, items: Iterable[In], *, report: RunReport | None = None
    ) -> StageIterator[Out]:
        """Run the stage over ``items``; records into ``report`` (or the upstream's)."""
        report = report or _report_of(items) or RunReport()
        stats = report.stage(self.name)
        return StageIterator(self._iterate(items, report, stats), report, stats)

    def astream(
        self, items: AsyncIterable[In] | Iterable[In], *, report: RunReport | None = None
    ) -> AsyncStageIterator[Out]:
        """The async twin of calling the stage: takes and returns async iterators."""
        report = report or _report_of(items) or RunReport()
        stats = report.stage(self.name)
        source: AsyncIterable[In] = items if isinstance(items, AsyncIterable) else aiter_sync(items)
        return AsyncStageIterator(self._aiterate(source, report, stats), report, stats)

    def _iterate(self, items: Iterable[In], report: RunReport, stats: StageStats) -> Iterator[Out]:
        raise NotImplementedError

    def _aiterate(
        self, items: AsyncIterable[In], report: RunReport, stats: StageStats
    ) -> AsyncIterator[Out]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """The stage's settings, as written to the manifest (never secrets)."""
        return {"stage": self.name}

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in self.describe().items() if k != "stage")
        return f"{type(self).__name__}({settings})"


class Source(Generic[Out]):
    """Base of a chain's first stage (the history query): iterable on its own."""

    name = "source"

    def stream(self, report: RunReport | None = None) -> StageIterator[Out]:
        raise NotImplementedError

    def astream(self, report: RunReport | None = None) -> AsyncStageIterator[Out]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
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

    Each iteration (or run) is a new run with a new :class:`RunReport`; a chain holds
    no state between runs.
    """

    def __init__(self, source: Source[Any], stages: tuple[Stage[Any, Any], ...]) -> None:
        self.source = source
        self.stages = stages

    def __or__(self, stage: Stage[Out, U]) -> Chain[U]:
        return Chain(self.source, (*self.stages, stage))

    def _new_report(self, report: RunReport | None) -> RunReport:
        report = report or RunReport()
        report.query = self.source.describe()
        report.pipeline = [self.source.describe(), *(stage.describe() for stage in self.stages)]
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
        return it.report.finish()

    async def arun(self, report: RunReport | None = None) -> RunReport:
        """The async twin of :meth:`run`."""
        it = self.astream(report)
        async for _ in it:
            pass
        return it.report.finish()

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
