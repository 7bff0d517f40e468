"""ResultFetcher: one record per input, every other input accounted for, bounded."""

from __future__ import annotations

import threading
from contextlib import AsyncExitStack

import httpx
import pytest

from modzy_retrain import (
    AsyncModzyClient,
    Job,
    JobHistoryQuery,
    JobResults,
    ModzyClient,
    PredictionRecord,
    ResultFetcher,
    RetryPolicy,
)
from modzy_retrain.sandbox import Sandbox


class Gate(httpx.BaseTransport):
    """Wraps the sandbox transport: fails chosen jobs, and measures concurrency."""

    def __init__(self, inner: httpx.BaseTransport, failing: set[str]) -> None:
        self.inner = inner
        self.failing = failing
        self.lock = threading.Lock()
        self.active = 0
        self.peak = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            if any(request.url.path.endswith(f"/results/{j}") for j in self.failing):
                return httpx.Response(503, json={"message": "down for this job"})
            return self.inner.handle_request(request)
        finally:
            with self.lock:
                self.active -= 1


@pytest.fixture(scope="module")
def sandbox() -> Sandbox:
    return Sandbox(seed=21, jobs=40, inputs_per_job=3)


def client_for(sandbox: Sandbox, transport: httpx.BaseTransport) -> ModzyClient:
    return ModzyClient(
        api_key=sandbox.api_key,
        base_url=sandbox.base_url,
        transport=transport,
        retry=RetryPolicy(max_attempts=2, jitter=0),
        sleep=lambda s: None,
    )


def test_every_input_is_a_record_or_a_drop(sandbox: Sandbox) -> None:
    broken = next(j.id for j in sandbox.jobs if j.status == "COMPLETED")
    gate = Gate(sandbox.transport(), {broken})
    with client_for(sandbox, gate) as client:
        it = (JobHistoryQuery(client) | ResultFetcher(client, concurrency=4)).stream()
        records = list(it)
    report = it.report.finish()
    assert gate.peak <= 4
    assert report.reconciled
    assert report.inputs_seen == sum(j.total for j in sandbox.jobs)
    keys = {r.key for r in records}
    expected = {
        (j.id, i.name)
        for j in sandbox.jobs
        if j.status in ("COMPLETED", "CANCELED", "TIMEDOUT") and j.id != broken
        for i in j.inputs
        if i.status == "SUCCESSFUL"
    }
    assert keys == expected
    by_reason: dict[str, set[tuple[str, str | None]]] = {}
    for d in report.drops:
        by_reason.setdefault(d.reason, set()).add((d.job_id, d.input_name))
    assert {j for j, _ in by_reason["results_unavailable"]} == {broken}
    finished = ("COMPLETED", "CANCELED", "TIMEDOUT")
    failed = {
        (j.id, i.name)
        for j in sandbox.jobs
        if j.status in finished and j.id != broken
        for i in j.inputs
        if i.status == "FAILED"
    }
    assert failed
    assert by_reason["input_failed"] == failed
    unfinished = {j.id for j in sandbox.jobs if j.status not in finished}
    assert {j for j, _ in by_reason["job_not_finished"]} == unfinished


def test_records_carry_the_prediction_votes_and_job_metadata(sandbox: Sandbox) -> None:
    with client_for(sandbox, sandbox.transport()) as client:
        records = list(JobHistoryQuery(client) | ResultFetcher(client))
    record = records[0]
    world_job = sandbox.job(record.job_id)
    world_input = world_job.input(record.input_name)
    assert world_input is not None
    assert record.model_id == world_job.model.id
    assert record.model_version == world_job.version
    assert record.model_name == world_job.model.name
    assert record.submitted_at == world_job.submitted_at
    assert record.predicted_label == world_input.predicted
    assert (record.voting.up, record.voting.down) == sandbox.votes(record.job_id, record.input_name)
    assert record.job["submitted_by"] == world_job.user.key_prefix
    assert record.outputs["results.json"]["data"]["result"]["classPredictions"]


def test_unfinished_jobs_can_be_included(sandbox: Sandbox) -> None:
    running = [j for j in sandbox.jobs if j.status == "IN_PROGRESS"]
    assert running, "the sandbox world should have a job in progress"
    with client_for(sandbox, sandbox.transport()) as client:
        jobs = [client.jobs.retrieve(running[0].id)]
        strict = ResultFetcher(client)(jobs)
        assert list(strict) == []
        assert strict.report.drops[0].reason == "job_not_finished"
        loose = list(ResultFetcher(client, include_unfinished=True)(jobs))
    assert {r.input_name for r in loose} == {
        i.name for i in running[0].inputs if i.status == "SUCCESSFUL"
    }


def test_subclass_hook_to_records(sandbox: Sandbox) -> None:
    class FirstInputOnly(ResultFetcher):
        def to_records(self, job: Job, results: JobResults) -> list[PredictionRecord]:
            return list(super().to_records(job, results))[:1]

    with client_for(sandbox, sandbox.transport()) as client:
        it = (JobHistoryQuery(client) | FirstInputOnly(client)).stream()
        records = list(it)
    report = it.report.finish()
    assert len({r.job_id for r in records}) == len(records)
    assert report.reconciled
    assert report.drop_counts[("fetch", "no_result")] > 0


@pytest.mark.anyio
async def test_async_fetcher_matches_sync(sandbox: Sandbox) -> None:
    with client_for(sandbox, sandbox.transport()) as client:
        expected = [r.model_dump() for r in JobHistoryQuery(client) | ResultFetcher(client)]
    async with AsyncExitStack() as stack:
        aclient = await stack.enter_async_context(
            AsyncModzyClient(
                api_key=sandbox.api_key,
                base_url=sandbox.base_url,
                transport=sandbox.async_transport(),
            )
        )
        it = (JobHistoryQuery(aclient) | ResultFetcher(aclient, concurrency=5)).astream()
        got = [r.model_dump() async for r in it]
    assert got == expected
    assert it.report.finish().reconciled


def test_wrong_client_kind_is_a_clear_error(sandbox: Sandbox) -> None:
    aclient = AsyncModzyClient(api_key=sandbox.api_key, base_url=sandbox.base_url)
    with pytest.raises(TypeError, match="ModzyClient"):
        iter(JobHistoryQuery(aclient))
    with pytest.raises(TypeError, match="ModzyClient"):
        list(ResultFetcher(aclient)([]))
