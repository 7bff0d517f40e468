"""Memory bounded by design: the fetcher's budget across bodies, and its input cap.

One large body was capped (``max_response_bytes``); eight smaller ones together were
not, nor what parsing made of them. The fetcher now weighs every body as it arrives
and every job's inputs before parsing, against one budget shared by its concurrent
fetches (``max_bytes_in_flight``), which never deadlocks: the oldest job, the one the
run waits for, never waits. A job with more inputs than ``max_inputs_per_job`` is not
fetched or parsed. ``bench/hostile_memory.py`` measures the peak with hostile bodies.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import modzy_retrain._stages.fetch as fetch_module
from modzy_retrain import (
    AsyncModzyClient,
    ConfigurationError,
    Job,
    ModzyClient,
    ResponseTooLargeError,
    ResultFetcher,
    RetryPolicy,
)
from modzy_retrain._client.decoding import weigh
from modzy_retrain._core.budget import (
    AsyncByteBudget,
    BudgetClosed,
    ByteBudget,
    OverBudget,
    _Ledger,
)
from modzy_retrain._core.concurrency import aiter_sync
from modzy_retrain._stages.report import RESULTS_UNAVAILABLE
from modzy_retrain.sandbox import Sandbox

from ._scripted import Reply, Scripted

MIB = 1024 * 1024


# -- The budget itself ------------------------------------------------------------------


def test_the_oldest_lease_never_waits_and_the_others_wait_their_turn() -> None:
    budget = ByteBudget(100)
    oldest, young = budget.lease(), budget.lease()
    assert young.take(60, timeout=0)
    # The oldest takes past what is left (the run waits for it), up to the limit alone.
    assert oldest.take(90, timeout=0)
    assert budget.total == 150
    assert not young.take(1, timeout=0.01)  # spent: a younger one waits
    with pytest.raises(OverBudget):
        oldest.take(11)  # 101 alone could never be served
    oldest.release()
    assert budget.total == 60
    assert young.take(40, timeout=0)
    young.give_back(25)
    assert (young.held, budget.total) == (75, 75)


def test_a_waiting_take_is_woken_by_a_release_or_the_close() -> None:
    budget = ByteBudget(10)
    oldest, young, third = budget.lease(), budget.lease(), budget.lease()
    oldest.take(10)
    outcome: list[object] = []
    waiter = threading.Thread(target=lambda: outcome.append(young.take(5)))
    waiter.start()
    waiter.join(0.05)
    assert waiter.is_alive()  # waiting for the oldest
    oldest.release()
    waiter.join(5)
    assert outcome == [True]

    third_outcome: list[object] = []

    def take_third() -> None:
        try:
            third.take(9)
        except BudgetClosed as exc:
            third_outcome.append(exc)

    young.take(5)  # young is the oldest now: third must wait
    closer = threading.Thread(target=take_third)
    closer.start()
    closer.join(0.05)
    assert closer.is_alive()
    budget.close()  # the run was abandoned: nothing waits for ever
    closer.join(5)
    assert isinstance(third_outcome[0], BudgetClosed)


def test_the_async_budget_waits_on_the_loop_the_same_way() -> None:
    async def scenario() -> None:
        budget = AsyncByteBudget(10)
        oldest, young = budget.lease(), budget.lease()
        await oldest.take(10)
        waiting = asyncio.ensure_future(young.take(5))
        await asyncio.sleep(0)
        assert not waiting.done()
        oldest.release()
        await asyncio.wait_for(waiting, 5)
        assert budget.total == 5
        with pytest.raises(OverBudget):
            await young.take(6)

    asyncio.run(scenario())


@pytest.mark.parametrize("seed", range(40))
def test_any_schedule_holds_at_most_twice_the_limit_and_always_moves(seed: int) -> None:
    # A simulated fetcher: jobs admitted in order, each taking random chunks, consumed
    # (released) in order. Whatever the interleaving, the oldest can always go on, and
    # the total never passes twice the limit.
    rng = random.Random(seed)
    ledger = _Ledger(100)
    wants = {ledger.open(): rng.randint(0, 100) for _ in range(30)}
    taken = dict.fromkeys(wants, 0)
    open_tickets = list(wants)
    peak = 0
    while open_tickets:
        progressed = False
        for ticket in rng.sample(open_tickets, len(open_tickets)):
            chunk = min(rng.randint(1, 30), wants[ticket] - taken[ticket])
            if chunk and ledger.may_take(ticket, chunk):
                ledger.take(ticket, chunk)
                taken[ticket] += chunk
                progressed = True
            peak = max(peak, ledger.total)
        oldest = open_tickets[0]
        if taken[oldest] == wants[oldest]:
            ledger.close_lease(oldest)
            open_tickets.pop(0)
            progressed = True
        assert progressed, "deadlock"
    assert peak <= 200
    assert ledger.total == 0


# -- The fetcher's budget ---------------------------------------------------------------


def body_of(job: str, floats: int) -> bytes:
    """A valid results body whose one input carries ``floats`` numbers of explanation."""
    output = {
        "data": {
            "result": {"classPredictions": [{"class": "a", "score": 0.9}]},
            "explanation": [0.123456789] * floats,
        }
    }
    result = {"status": "SUCCESSFUL", "results.json": output, "voting": {"up": 1, "down": 0}}
    return json.dumps(
        {"jobIdentifier": job, "finished": True, "results": {"in-0": result}}
    ).encode()


class Recording:
    """The fetcher's budgets, with the most each ever held (patched in)."""

    peaks: list[int]

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.peaks = []
        recording = self

        class Sync(ByteBudget):
            def lease(self) -> Any:
                lease = super().lease()
                take = lease.take

                def counted(size: int, timeout: float | None = None) -> bool:
                    ok = take(size, timeout)
                    recording.peaks.append(self.total)
                    return ok

                lease.take = counted  # type: ignore[method-assign]
                return lease

        class Async(AsyncByteBudget):
            def lease(self) -> Any:
                lease = super().lease()
                take = lease.take

                async def counted(size: int) -> None:
                    await take(size)
                    recording.peaks.append(self.total)

                lease.take = counted  # type: ignore[method-assign]
                return lease

        monkeypatch.setattr(fetch_module, "ByteBudget", Sync)
        monkeypatch.setattr(fetch_module, "AsyncByteBudget", Async)


@pytest.fixture(scope="module")
def world() -> Sandbox:
    return Sandbox(seed=9, jobs=30, inputs_per_job=2)


def finished_jobs(world: Sandbox) -> list[Job]:
    with ModzyClient(
        api_key=world.api_key, base_url=world.base_url, transport=world.transport()
    ) as client:
        return [j for j in client.jobs.history() if j.is_finished]


def large_bodies(world: Sandbox, jobs: list[Job], floats: int) -> Scripted:
    heavy = {j.job_id for j in jobs[2:10]}

    def override(request: httpx.Request) -> Reply | None:
        job = request.url.path.rsplit("/", 1)[-1]
        return Reply(200, body_of(job, floats)) if job in heavy else None

    return Scripted(world, override)


def run(
    scripted: Scripted, jobs: list[Job], is_async: bool, url: str | None = None, **options: Any
) -> tuple[Any, Any]:
    """The fetcher over ``jobs``, in process, or over HTTP at ``url``."""
    retry = RetryPolicy.disabled()
    base_url = url or scripted.sandbox.base_url
    if not is_async:
        with ModzyClient(
            api_key=scripted.sandbox.api_key,
            base_url=base_url,
            transport=None if url else scripted.transport(),
            retry=retry,
        ) as client:
            it = ResultFetcher(client, concurrency=8, **options)(jobs)
            return list(it), it.report

    async def main() -> tuple[Any, Any]:
        async with AsyncModzyClient(
            api_key=scripted.sandbox.api_key,
            base_url=base_url,
            transport=None if url else scripted.async_transport(),
            retry=retry,
        ) as client:
            it = ResultFetcher(client, concurrency=8, **options).astream(aiter_sync(jobs))
            return [r async for r in it], it.report

    return asyncio.run(main())


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_eight_large_bodies_are_held_within_twice_the_budget(
    world: Sandbox, monkeypatch: pytest.MonkeyPatch, is_async: bool
) -> None:
    jobs = finished_jobs(world)
    scripted = large_bodies(world, jobs, floats=40_000)  # about 0.5 MB, weighed ~3.5 MB
    unbounded, _ = run(scripted, jobs, is_async)
    recording = Recording(monkeypatch)
    limit = 5 * MIB
    with scripted.serve() as url:  # real sockets: the bodies do arrive together
        records, report = run(scripted, jobs, is_async, url, max_bytes_in_flight=limit)
    # Everything still comes out (no deadlock, nothing refused): the budget only paced it.
    assert [r.key for r in records] == [r.key for r in unbounded]
    assert not report.unavailable_jobs
    assert recording.peaks
    assert max(recording.peaks) <= 2 * limit
    # And it did bind: with eight bodies of ~3.5 MB weighed at once, it would not hold.
    assert max(recording.peaks) > limit


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_job_heavier_than_the_whole_budget_is_refused_and_the_rest_goes_on(
    world: Sandbox, is_async: bool
) -> None:
    jobs = finished_jobs(world)
    heavy = {j.job_id for j in jobs[2:10]}
    scripted = large_bodies(world, jobs, floats=40_000)
    everything, _ = run(scripted, jobs, is_async)
    records, report = run(scripted, jobs, is_async, max_bytes_in_flight=2 * MIB)
    refused = [d for d in report.drops if d.reason == RESULTS_UNAVAILABLE]
    assert {d.job_id for d in refused} == heavy
    assert all("max_bytes_in_flight" in d.detail for d in refused)
    assert set(report.unavailable_jobs) == heavy  # they hold the checkpoint back
    assert [r.key for r in records] == [r.key for r in everything if r.job_id not in heavy]
    assert report.reconciled


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_job_with_too_many_inputs_is_neither_fetched_nor_parsed(
    world: Sandbox, is_async: bool
) -> None:
    jobs = finished_jobs(world)
    wide = jobs[3].job_id  # its results list 50 inputs; its history entry two
    listed = jobs[5]  # its history entry counts 30 inputs
    jobs[5] = listed.model_copy(update={"total": 30})

    def override(request: httpx.Request) -> Reply | None:
        if request.url.path.endswith(f"/results/{wide}"):
            results = {f"in-{i}": {"status": "SUCCESSFUL"} for i in range(50)}
            return Reply(200, json.dumps({"results": results}).encode())
        return None

    scripted = Scripted(world, override)
    everything, _ = run(Scripted(world, lambda r: None), jobs, is_async)
    records, report = run(scripted, jobs, is_async, max_inputs_per_job=20)
    unavailable = {d.job_id: d.detail for d in report.drops if d.reason == RESULTS_UNAVAILABLE}
    assert set(unavailable) == {wide, listed.job_id}
    assert "its results lists 50 inputs" in unavailable[wide]
    assert "its history entry lists 30 inputs" in unavailable[listed.job_id]
    assert all("max_inputs_per_job (20)" in d for d in unavailable.values())
    assert scripted.count(f"/results/{listed.job_id}") == 0  # never requested
    assert [r.key for r in records] == [r.key for r in everything if r.job_id not in unavailable]


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_closing_the_fetcher_early_leaves_nothing_waiting(world: Sandbox, is_async: bool) -> None:
    # Fetches wait for a tiny budget; the consumer stops after one record. The pool
    # (or the tasks) must end, not wait for a budget nobody will release.
    jobs = finished_jobs(world)
    scripted = large_bodies(world, jobs, floats=40_000)
    options = {"max_bytes_in_flight": 4 * MIB}
    if not is_async:
        with ModzyClient(
            api_key=world.api_key, base_url=world.base_url, transport=scripted.transport()
        ) as client:
            it: Iterator[Any] = iter(ResultFetcher(client, concurrency=8, **options)(jobs))
            next(it)
            it.close()  # type: ignore[attr-defined]
        return

    async def main() -> None:
        async with AsyncModzyClient(
            api_key=world.api_key,
            base_url=world.base_url,
            transport=scripted.async_transport(),
        ) as client:
            ait = ResultFetcher(client, concurrency=8, **options).astream(aiter_sync(jobs))
            await ait.__anext__()
            await ait.aclose()

    asyncio.run(asyncio.wait_for(main(), 30))


def test_a_failed_attempt_gives_its_bytes_back() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:  # half a body, then the connection drops
            return httpx.Response(200, stream=_Broken(b'{"results": {"a": ' + b"1" * 5000))
        return httpx.Response(200, content=b'{"results": {}}')

    budget = ByteBudget(1 * MIB)
    lease = budget.lease()
    with ModzyClient(
        api_key="a.b",
        base_url="https://modzy.invalid",
        transport=httpx.MockTransport(handler),
        sleep=lambda s: None,
    ) as client:
        from modzy_retrain._client.calls import job_results_body

        assert client.call(job_results_body("j"), lease=lease) == {"results": {}}
    assert calls == 2
    # What the second body weighs, and nothing of the first.
    assert lease.held == weigh(b'{"results": {}}')


class _Broken(httpx.SyncByteStream):
    def __init__(self, first: bytes) -> None:
        self.first = first

    def __iter__(self) -> Iterator[bytes]:
        yield self.first
        raise httpx.RemoteProtocolError("peer closed connection")


def test_the_limits_have_defaults_and_are_checked() -> None:
    client = ModzyClient(api_key="a.b", base_url="https://modzy.invalid")
    assert client.max_response_bytes == 16 * MIB
    fetcher = ResultFetcher(client)
    assert (fetcher.max_bytes_in_flight, fetcher.max_inputs_per_job) == (128 * MIB, 10_000)
    assert fetcher.describe()["max_bytes_in_flight"] == 128 * MIB
    for option in ("max_bytes_in_flight", "max_inputs_per_job"):
        for bad in (0, -1, 1.5, True, "9"):
            with pytest.raises(ConfigurationError, match=option):
                ResultFetcher(client, **{option: bad})


# -- The build's settings ---------------------------------------------------------------


def test_the_build_settings_carry_the_limits(world: Sandbox, tmp_path: Any) -> None:
    from modzy_retrain._cli.build import EXIT_INCOMPLETE, BuildSettings, build
    from modzy_retrain._cli.settings import load_settings

    def settings(**limits: int) -> BuildSettings:
        return BuildSettings(
            base_url="http://sandbox.invalid",
            out=str(tmp_path / "ds"),
            input_templates=world.input_templates,
            **limits,
        )

    environ = {"MODZY_API_KEY": world.api_key}
    for limits, needle in (
        ({"max_inputs_per_job": 1}, "max_inputs_per_job (1)"),
        ({"max_bytes_in_flight": 1000}, "max_bytes_in_flight (1,000)"),
    ):
        result = build(
            settings(**limits), environ=environ, dry_run=True, transport=world.transport()
        )
        assert result.exit_code == EXIT_INCOMPLETE, limits
        details = [d.detail for d in result.report.drops if d.reason == RESULTS_UNAVAILABLE]
        assert details
        assert all(needle in d for d in details), (limits, details[0])
    # The client the build makes takes max_response_bytes (here even a history page is over).
    with pytest.raises(ResponseTooLargeError) as info:
        build(
            settings(max_response_bytes=200),
            environ=environ,
            dry_run=True,
            transport=world.transport(),
        )
    assert info.value.limit == 200
    for key in ("max_response_bytes", "max_bytes_in_flight", "max_inputs_per_job"):
        with pytest.raises(ConfigurationError, match=key):
            load_settings(None, {"out": "/tmp/x", key: 0})
    with pytest.raises(ConfigurationError, match="max_history_pages"):
        load_settings(None, {"out": "/tmp/x", "max_history_pages": 0})
