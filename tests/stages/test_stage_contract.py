"""The public stage contract: ``process`` per item or ``process_stream`` over the stream,
async twins only for I/O; the base class counts, times and records the drops.

Every scenario runs on the sync path (``stage(items)``) and on the async one
(``stage.astream(items)``), which must agree.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

import pytest

from modzy_retrain import (
    AsyncStageIterator,
    Chain,
    Drop,
    Many,
    RunReport,
    Source,
    Stage,
    StageIterator,
)

MODES = ["sync", "async"]


def drain(
    stage: Stage[Any, Any], items: Iterable[Any], mode: str, report: RunReport | None = None
) -> tuple[list[Any], RunReport]:
    """Run ``stage`` over ``items`` to the end on the given path."""
    if mode == "sync":
        it = stage(items, report=report)
        return list(it), it.report

    async def run() -> tuple[list[Any], RunReport]:
        ait = stage.astream(items, report=report)
        return [x async for x in ait], ait.report

    return asyncio.run(run())


class Counted:
    """A source of ints that remembers how many were taken from it."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.pulled = 0

    def __iter__(self) -> Iterator[int]:
        for i in range(self.n):
            self.pulled += 1
            yield i


def dropped(stage: str, n: int, reason: str, inputs: int = 1) -> Drop:
    return Drop(stage, reason, f"job-{n}", f"input-{n}", f"{n} is {reason}", inputs)


# -- stages written the new way ----------------------------------------------------------


class Double(Stage[int, int]):
    name = "double"

    def process(self, item: int) -> int:
        return item * 2


class OddsOut(Stage[int, int]):
    """Drops the odd numbers; each drop stands for ``inputs`` inputs."""

    name = "odds"

    def __init__(self, inputs: int = 1) -> None:
        self.inputs = inputs

    def process(self, item: int) -> int | Drop:
        if item % 2:
            return dropped(self.name, item, "odd", self.inputs)
        return item


class Repeat(Stage[int, Any]):
    """``n`` copies of ``n`` (none for 0), a drop riding along for 3, a tuple for 4."""

    name = "repeat"

    def process(self, item: int) -> Any | Many[Any] | Drop:
        if item == 3:
            return Many(item, dropped(self.name, item, "three"), item)
        if item == 4:
            return (item, item)  # a tuple is one output: Many is how to say several
        return Many(*[item] * item)


class Batches(Stage[int, tuple[int, ...]]):
    """A stream stage: batches of ``size``, the short last one dropped, then a commit."""

    name = "batch"

    def __init__(self, size: int) -> None:
        self.size = size
        self.events: list[str] = []
        self.threads: set[str] = set()

    def process_stream(self, items: Iterator[int]) -> Iterator[tuple[int, ...] | Drop]:
        self.threads.add(threading.current_thread().name)
        batch: list[int] = []
        try:
            for item in items:
                batch.append(item)
                if len(batch) == self.size:
                    yield tuple(batch)
                    batch = []
            if batch:
                yield Drop(self.name, "short_batch", f"job-{batch[0]}", None, "", len(batch))
            self.events.append("committed")
        finally:
            self.events.append("closed")


class WithTwins(Stage[int, str]):
    """Sync and async paths that say which one ran (as an I/O stage's twins would)."""

    name = "twins"

    def process(self, item: int) -> str:
        return f"sync-{item}"

    async def aprocess(self, item: int) -> str:
        await asyncio.sleep(0)
        return f"async-{item}"


class StreamWithTwin(Stage[int, str]):
    name = "stream-twins"

    def process_stream(self, items: Iterator[int]) -> Iterator[str]:
        for item in items:
            yield f"sync-{item}"

    async def aprocess_stream(self, items: AsyncIterator[int]) -> AsyncIterator[str | Drop]:
        async for item in items:
            if item == 0:
                yield Drop(self.name, "zero", "job-0", None)
                continue
            yield f"async-{item}"


class ListSource(Source[int]):
    """A chain's source over a list; every item is one input seen."""

    name = "list"

    def __init__(self, items: list[int]) -> None:
        self.items = items

    def stream(self, report: RunReport | None = None) -> StageIterator[int]:
        report = report or RunReport()
        report.saw_inputs(len(self.items))
        return StageIterator(iter(self.items), report, report.stage(self.name))

    def astream(self, report: RunReport | None = None) -> AsyncStageIterator[int]:
        report = report or RunReport()
        report.saw_inputs(len(self.items))

        async def items() -> AsyncIterator[int]:
            for item in self.items:
                yield item

        return AsyncStageIterator(items(), report, report.stage(self.name))


# -- the scenarios --------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_one_output_per_item_and_the_counts(mode: str) -> None:
    out, report = drain(Double(), range(5), mode)
    assert out == [0, 2, 4, 6, 8]
    stats = report.stages["double"]
    assert (stats.items_in, stats.items_out, sum(stats.dropped.values())) == (5, 5, 0)
    assert stats.seconds >= 0.0


@pytest.mark.parametrize("mode", MODES)
def test_several_outputs_come_out_in_order_with_their_drops(mode: str) -> None:
    out, report = drain(Repeat(), range(5), mode)
    assert out == [1, 2, 2, 3, 3, (4, 4)]
    stats = report.stages["repeat"]
    assert (stats.items_in, stats.items_out) == (5, 6)
    assert report.drop_counts == {("repeat", "three"): 1}
    assert Many(1, 2) == Many(1, 2) != Many(2, 1)
    assert len(Many()) == 0
    assert repr(Many(1, "a")) == "Many(1, 'a')"


@pytest.mark.parametrize("mode", MODES)
def test_drops_are_recorded_under_the_stage_name_with_their_reasons(mode: str) -> None:
    # The same stage twice: the second one's drops go under its unique name.
    report = RunReport()
    first, _ = drain(OddsOut(inputs=2), range(7), mode, report)
    assert first == [0, 2, 4, 6]
    drain(OddsOut(), [1, 2, 3], mode, report)
    assert report.drop_counts == {("odds", "odd"): 6, ("odds-2", "odd"): 2}
    assert report.stages["odds"].dropped == {"odd": 6}
    assert (report.stages["odds"].items_in, report.stages["odds"].items_out) == (7, 4)
    assert (report.stages["odds-2"].items_in, report.stages["odds-2"].items_out) == (3, 1)
    assert [(d.job_id, d.input_name, d.detail) for d in report.drops[:3]] == [
        ("job-1", "input-1", "1 is odd"),
        ("job-3", "input-3", "3 is odd"),
        ("job-5", "input-5", "5 is odd"),
    ]
    assert report.dropped_inputs == 8


@pytest.mark.parametrize("mode", MODES)
def test_a_stream_stage_sees_the_whole_stream(mode: str) -> None:
    stage = Batches(3)
    out, report = drain(stage, range(8), mode)
    assert out == [(0, 1, 2), (3, 4, 5)]
    assert stage.events == ["committed", "closed"]
    stats = report.stages["batch"]
    assert (stats.items_in, stats.items_out) == (8, 2)
    assert report.drop_counts == {("batch", "short_batch"): 2}
    # With no async twin, the async path runs the sync stream on a thread of its own
    # (it may block); the sync path runs it where it is called.
    (thread,) = stage.threads
    assert thread.startswith("modzy-retrain-stage") == (mode == "async")


@pytest.mark.parametrize("mode", MODES)
def test_pure_stages_chain_and_reconcile(mode: str) -> None:
    chain: Chain[tuple[int, ...]] = ListSource(list(range(10))) | OddsOut() | Double() | Batches(1)
    report = chain.run() if mode == "sync" else asyncio.run(chain.arun())
    assert [(s.name, s.items_in, s.items_out) for s in report.stages.values()] == [
        ("list", 0, 10),
        ("odds", 10, 5),
        ("double", 5, 5),
        ("batch", 5, 5),
    ]
    assert (report.inputs_seen, report.delivered, report.dropped_inputs) == (10, 5, 5)
    assert report.reconciled
    assert "reconciled: 10 inputs = 5 delivered + 5 dropped (ok)" in str(report)


def test_an_async_twin_is_used_on_the_async_path_only() -> None:
    assert drain(WithTwins(), range(2), "sync")[0] == ["sync-0", "sync-1"]
    assert drain(WithTwins(), range(2), "async")[0] == ["async-0", "async-1"]
    assert drain(StreamWithTwin(), range(2), "sync")[0] == ["sync-0", "sync-1"]
    out, report = drain(StreamWithTwin(), range(2), "async")
    assert out == ["async-1"]
    assert report.drop_counts == {("stream-twins", "zero"): 1}


@pytest.mark.parametrize("mode", MODES)
def test_closing_early_stops_pulling_and_closes_the_stream(mode: str) -> None:
    per_item, stream = Counted(100), Counted(100)
    stage = Batches(3)
    if mode == "sync":
        doubled = Double()(per_item)
        assert next(doubled) == 0
        doubled.close()
        batches = stage(stream)
        assert next(batches) == (0, 1, 2)
        batches.close()
        reports = [doubled.report, batches.report]
    else:

        async def run() -> list[RunReport]:
            doubled = Double().astream(per_item)
            assert await doubled.__anext__() == 0
            await doubled.aclose()
            batches = stage.astream(stream)
            assert await batches.__anext__() == (0, 1, 2)
            await batches.aclose()
            return [doubled.report, batches.report]

        reports = asyncio.run(run())
    assert (per_item.pulled, stream.pulled) == (1, 3)
    assert stage.events == ["closed"]  # its cleanup ran; no commit
    assert (reports[0].stages["double"].items_in, reports[0].stages["double"].items_out) == (1, 1)
    assert (reports[1].stages["batch"].items_in, reports[1].stages["batch"].items_out) == (3, 1)


@pytest.mark.parametrize("mode", MODES)
def test_errors_in_a_stage_reach_the_consumer(mode: str) -> None:
    class Fails(Stage[int, int]):
        def process(self, item: int) -> int:
            if item == 2:
                raise ValueError("two")
            return item

    class FailsInStream(Stage[int, int]):
        def process_stream(self, items: Iterator[int]) -> Iterator[int]:
            for item in items:
                if item == 2:
                    raise ValueError("two")
                yield item

    for stage in (Fails(), FailsInStream()):
        with pytest.raises(ValueError, match="two"):
            drain(stage, range(5), mode)


@pytest.mark.parametrize("mode", MODES)
def test_a_stage_that_implements_nothing_says_what_to_implement(mode: str) -> None:
    class Nothing(Stage[int, int]):
        pass

    with pytest.raises(TypeError, match=r"Nothing must implement process\(item\).*process_stream"):
        drain(Nothing(), [1], mode)


def test_an_async_only_stage_points_to_the_async_path() -> None:
    class AsyncOnly(Stage[int, int]):
        async def aprocess(self, item: int) -> int:
            return item + 1

    with pytest.raises(TypeError, match=r"AsyncOnly has only an async path: use .*astream"):
        AsyncOnly()([1])
    assert drain(AsyncOnly(), [1, 2], "async")[0] == [2, 3]


@pytest.mark.parametrize("mode", MODES)
def test_a_per_item_method_written_as_a_generator_or_coroutine_is_refused(mode: str) -> None:
    class Yields(Stage[int, int]):
        def process(self, item: int) -> Any:
            yield item

    class Awaits(Stage[int, int]):
        async def process(self, item: int) -> int:  # type: ignore[override]
            return item

    with pytest.raises(TypeError, match=r"Yields\.process returned a generator: return Many"):
        drain(Yields(), [1], mode)
    with pytest.raises(TypeError, match=r"returned a coroutine: .*aprocess"):
        drain(Awaits(), [1], mode)
