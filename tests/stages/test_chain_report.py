"""``chain.report``: the latest run's report, there after ``list(chain)`` without a rerun."""

from __future__ import annotations

from itertools import islice

import pytest

from modzy_retrain import (
    AnyVotes,
    AsyncModzyClient,
    Chain,
    JobHistoryQuery,
    LineageResolver,
    ModzyClient,
    ResultFetcher,
    RunReport,
    Sample,
    VoteFilter,
)
from modzy_retrain.sandbox import Sandbox


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    sb = Sandbox(seed=5, jobs=40, data_url=str(tmp_path_factory.mktemp("inputs")))
    sb.write_inputs()
    return sb


def chain(sandbox: Sandbox, c: ModzyClient | AsyncModzyClient) -> Chain[Sample]:
    return (
        JobHistoryQuery(c)
        | ResultFetcher(c)
        | VoteFilter(AnyVotes())
        | LineageResolver(templates=sandbox.input_templates)
    )


def counts(report: RunReport) -> tuple[object, ...]:
    stages = [(s.name, s.items_in, s.items_out, dict(s.dropped)) for s in report.stages.values()]
    return (report.inputs_seen, report.delivered, dict(report.drop_counts), stages)


def test_list_of_a_chain_leaves_its_finished_report(sandbox: Sandbox) -> None:
    with ModzyClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.transport()
    ) as c:
        expected = chain(sandbox, c).run()
        ch = chain(sandbox, c)
        assert ch.report is None
        samples = list(ch)
        first = ch.report
        assert first is not None
        assert first.finished_at is not None
        assert first.reconciled
        assert counts(first) == counts(expected)
        assert first.delivered == len(samples) > 0

        # A new run, a new report; the chain keeps the latest.
        ran = ch.run()
        assert ch.report is ran
        assert ran is not first
        assert ran.run_id != first.run_id
        assert counts(ran) == counts(expected)

        # A run stopped early: its report is the chain's, filled in so far, not finished.
        stopped = ch.stream()
        assert len(list(islice(stopped, 3))) == 3
        stopped.close()
        assert ch.report is stopped.report
        assert ch.report.finished_at is None

        # A report handed in is the one the chain keeps.
        mine = RunReport(run_id="mine")
        for _ in ch:
            break
        assert ch.run(mine) is mine
        assert ch.report is mine


@pytest.mark.anyio
async def test_async_iteration_leaves_the_same_report(sandbox: Sandbox) -> None:
    with ModzyClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.transport()
    ) as c:
        expected = chain(sandbox, c).run()
    async with AsyncModzyClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.async_transport()
    ) as ac:
        ch = chain(sandbox, ac)
        assert ch.report is None
        samples = [s async for s in ch]
        report = ch.report
        assert report is not None
        assert report.finished_at is not None
        assert report.delivered == len(samples)
        assert counts(report) == counts(expected)
        ran = await ch.arun()
        assert ch.report is ran
        assert ran is not report
        assert counts(ran) == counts(expected)


def test_a_stage_fed_a_chain_ends_the_run(sandbox: Sandbox) -> None:
    with ModzyClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.transport()
    ) as c:
        expected = chain(sandbox, c).run()
        records = JobHistoryQuery(c) | ResultFetcher(c)
        previous = records.run()  # a stage fed the chain records into its new run's report
        it = LineageResolver(templates=sandbox.input_templates)(VoteFilter(AnyVotes())(records))
        first = next(it)
        assert records.report is it.report
        assert it.report is not previous
        assert it.report.finished_at is None  # the chain ran out, not the run
        rest = list(it)
        assert it.report.finished_at is not None
        assert it.report.delivered == len(rest) + 1
        assert counts(it.report) == counts(expected)
        assert first not in rest
