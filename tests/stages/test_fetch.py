"""ResultFetcher: one record per input, every other input accounted for, bounded."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

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
    RunReport,
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


# -- Malformed results: one bad job, one bad input, quarantined; the rest goes on -----

Rewrite = Callable[[Any], Any]


def _rewritten(
    request: httpx.Request, response: httpx.Response, rewrites: dict[str, Rewrite]
) -> httpx.Response:
    for job_id, rewrite in rewrites.items():
        if request.url.path.endswith(f"/results/{job_id}"):
            return httpx.Response(200, json=rewrite(json.loads(response.content)))
    return response


class Corrupt(httpx.BaseTransport):
    """Wraps the sandbox transport: serves chosen jobs' results bodies rewritten."""

    def __init__(self, inner: httpx.BaseTransport, rewrites: dict[str, Rewrite]) -> None:
        self.inner = inner
        self.rewrites = rewrites

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        response.read()
        return _rewritten(request, response, self.rewrites)


class AsyncCorrupt(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, rewrites: dict[str, Rewrite]) -> None:
        self.inner = inner
        self.rewrites = rewrites

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        await response.aread()
        return _rewritten(request, response, self.rewrites)


class Malformed:
    """One finished job whose results are garbage, and one input of another made bad."""

    def __init__(self, sandbox: Sandbox) -> None:
        done = [j for j in sandbox.jobs if j.status == "COMPLETED"]
        self.bad_job = done[0].id
        other = next(j for j in done[1:] if sum(i.status == "SUCCESSFUL" for i in j.inputs) >= 2)
        self.job_with_bad_input = other.id
        self.bad_input = next(i.name for i in other.inputs if i.status == "SUCCESSFUL")
        self.rewrites: dict[str, Rewrite] = {
            # An envelope no parser can read: results as a list.
            self.bad_job: lambda body: {**body, "results": ["not", "an", "object"]},
            self.job_with_bad_input: self._break_input,
        }
        finished = ("COMPLETED", "CANCELED", "TIMEDOUT")
        self.expected_records = {
            (j.id, i.name)
            for j in sandbox.jobs
            if j.status in finished and j.id != self.bad_job
            for i in j.inputs
            if i.status == "SUCCESSFUL"
        } - {(self.job_with_bad_input, self.bad_input)}
        self.quarantined = {(self.bad_job, i.name) for i in done[0].inputs} | {
            (self.job_with_bad_input, self.bad_input)
        }

    def _break_input(self, body: Any) -> Any:
        payload = dict(body["results"][self.bad_input])
        payload["voting"] = {"up": -1, "down": True}
        return {**body, "results": {**body["results"], self.bad_input: payload}}

    def check(self, records: list[PredictionRecord], report: RunReport) -> None:
        assert {r.key for r in records} == self.expected_records
        assert report.reconciled
        unparseable = [d for d in report.drops if d.reason == "result_unparseable"]
        assert {(d.job_id, d.input_name) for d in unparseable} == self.quarantined
        for drop in unparseable:
            if drop.job_id == self.bad_job:
                assert "results and failures must be objects" in drop.detail
            else:
                # The input's own reason, field by field.
                assert "voting.up" in drop.detail
                assert "voting.down" in drop.detail
        # The bad input's job still gave its other inputs.
        assert any(r.job_id == self.job_with_bad_input for r in records)


def test_malformed_results_are_quarantined_and_the_rest_goes_on(sandbox: Sandbox) -> None:
    malformed = Malformed(sandbox)
    with client_for(sandbox, Corrupt(sandbox.transport(), malformed.rewrites)) as client:
        it = (JobHistoryQuery(client) | ResultFetcher(client, concurrency=4)).stream()
        records = list(it)
    malformed.check(records, it.report.finish())


@pytest.mark.anyio
async def test_async_malformed_results_are_quarantined_and_the_rest_goes_on(
    sandbox: Sandbox,
) -> None:
    malformed = Malformed(sandbox)
    async with AsyncModzyClient(
        api_key=sandbox.api_key,
        base_url=sandbox.base_url,
        transport=AsyncCorrupt(sandbox.async_transport(), malformed.rewrites),
    ) as client:
        it = (JobHistoryQuery(client) | ResultFetcher(client, concurrency=4)).astream()
        records = [r async for r in it]
    malformed.check(records, it.report.finish())
