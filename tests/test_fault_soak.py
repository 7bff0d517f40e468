"""Fault soak: a flaky API gives the same dataset as a healthy one, or says what it lacks.

Every fault knob of the sandbox on together (5xx, 429 with Retry-After, dropped
connections, truncated bodies, answers slower than the client's timeout), against a
fault-free sandbox of the same seed: the published samples must be the same (job ids,
input names, labels, hashes). Where a job's results cannot be had within the retry
budget, the run names the job in its report and exit code, and the next run picks it
up. Retry waits go to a recorder: nothing here sleeps.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import httpx
import pytest

from modzy_retrain import (
    AsyncModzyClient,
    DatasetWriter,
    JobHistoryQuery,
    LineageResolver,
    ModzyClient,
    ResultFetcher,
    RetryPolicy,
    RunReport,
    VoteFilter,
    read_samples,
)
from modzy_retrain._cli.build import EXIT_INCOMPLETE, EXIT_PUBLISHED, BuildSettings, build
from modzy_retrain._stages.report import RESULTS_UNAVAILABLE
from modzy_retrain.sandbox import FaultConfig, Sandbox

SEED, JOBS = 21, 160
FAULTS = FaultConfig(
    error_rate=0.10,
    throttle_rate=0.05,
    drop_rate=0.02,
    truncate_rate=0.01,
    slow_rate=0.01,
    slow_ms=5_000,  # the client below gives up reading after 1 s
    retry_after=2,
    fault_seed=16,  # its first draws hold every kind of fault at least twice
)
TIMEOUT = httpx.Timeout(1.0)

Key = tuple[str, str, str | None, str | None]


def keys(url: str) -> set[Key]:
    return {(s.job_id, s.input_name, s.label, s.sha256) for s in read_samples(url)}


def settings(sandbox: Sandbox, out: Path, concurrency: int = 8) -> BuildSettings:
    return BuildSettings(
        base_url="http://sandbox.invalid",
        out=str(out),
        input_templates=sandbox.input_templates,
        concurrency=concurrency,
    )


def client(sandbox: Sandbox, waits: list[float], retry: RetryPolicy | None = None) -> ModzyClient:
    return ModzyClient(
        api_key=sandbox.api_key,
        base_url="http://sandbox.invalid",
        transport=sandbox.transport(),
        timeout=TIMEOUT,
        retry=retry or RetryPolicy(max_attempts=8),
        sleep=waits.append,
    )


async def run_async_chain(c: AsyncModzyClient, sandbox: Sandbox, out: Path) -> RunReport:
    """The whole chain on the async path, to a dataset at ``out``; its report."""
    chain = (
        JobHistoryQuery(c)
        | ResultFetcher(c, concurrency=8)
        | VoteFilter()
        | LineageResolver(templates=sandbox.input_templates)
        | DatasetWriter(str(out))
    )
    it = chain.astream()
    async for _ in it:
        pass
    return it.report


@pytest.fixture(scope="module")
def healthy(tmp_path_factory: pytest.TempPathFactory) -> set[Key]:
    sandbox = Sandbox(SEED, jobs=JOBS)
    out = tmp_path_factory.mktemp("healthy") / "ds"
    with client(sandbox, []) as c:
        result = build(settings(sandbox, out), environ={}, client=c)
    assert result.exit_code == EXIT_PUBLISHED
    found = keys(str(out))
    assert len(found) > 30
    return found


def test_a_flaky_api_gives_the_same_samples(healthy: set[Key], tmp_path: Path) -> None:
    sandbox = Sandbox(SEED, jobs=JOBS, faults=FAULTS)
    waits: list[float] = []
    with client(sandbox, waits) as c:
        result = build(settings(sandbox, tmp_path / "ds"), environ={}, client=c)
    assert result.exit_code == EXIT_PUBLISHED, result.report.unavailable_jobs
    assert keys(str(tmp_path / "ds")) == healthy
    # Every kind of fault was met and survived; the 429s' Retry-After was honoured.
    counts = sandbox.fault_counts
    assert {"error", "throttle", "drop", "truncate", "slow"} <= set(counts), counts
    assert waits.count(2.0) >= counts["throttle"] > 0
    assert result.report.reconciled


@pytest.mark.anyio
async def test_the_async_path_under_the_same_faults(healthy: set[Key], tmp_path: Path) -> None:
    sandbox = Sandbox(SEED, jobs=JOBS, faults=FAULTS)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async with AsyncModzyClient(
        api_key=sandbox.api_key,
        base_url="http://sandbox.invalid",
        transport=sandbox.async_transport(),
        timeout=TIMEOUT,
        retry=RetryPolicy(max_attempts=8),
        sleep=sleep,
    ) as c:
        report = await run_async_chain(c, sandbox, tmp_path / "ds")
    assert not report.unavailable_jobs
    assert keys(str(tmp_path / "ds")) == healthy
    assert sandbox.fault_counts["throttle"] > 0


def test_jobs_out_of_retries_are_named_and_the_next_run_gets_them(
    healthy: set[Key], tmp_path: Path
) -> None:
    sandbox = Sandbox(SEED, jobs=JOBS, faults=FAULTS)
    out = tmp_path / "ds"
    # Two attempts only, one request at a time: the same requests meet the same faults,
    # and some jobs fail both attempts.
    stingy = RetryPolicy(max_attempts=2)
    with client(sandbox, [], stingy) as c:
        first = build(settings(sandbox, out, concurrency=1), environ={}, client=c)
    assert first.exit_code == EXIT_INCOMPLETE
    missing = first.report.unavailable_jobs
    assert missing
    unavailable = [d for d in first.report.drops if d.reason == RESULTS_UNAVAILABLE]
    assert {d.job_id for d in unavailable} == set(missing)
    assert all(d.detail for d in unavailable)  # the last error, e.g. "InternalServerError: 503"
    published = keys(str(out))
    # Nothing wrong was published: a subset of the healthy set, short of those jobs only.
    assert published <= healthy
    assert {k[0] for k in healthy - published} <= set(missing)

    # A later run (the API recovered) picks the missing jobs up: they held the
    # checkpoint back. The end state is the healthy dataset, nothing lost or doubled.
    sandbox.faults = FaultConfig()
    with client(sandbox, []) as c:
        second = build(settings(sandbox, out), environ={}, client=c)
    assert second.exit_code == EXIT_PUBLISHED
    assert not second.report.unavailable_jobs
    assert keys(str(out)) == healthy
    rows = list(read_samples(str(out)))
    assert len(rows) == len({r.key for r in rows})


def test_over_real_http_with_faults(healthy: set[Key], tmp_path: Path) -> None:
    sandbox = Sandbox(SEED, jobs=JOBS, faults=dataclasses.replace(FAULTS, slow_ms=1500))
    waits: list[float] = []
    with (
        sandbox.serve() as server,
        ModzyClient(
            api_key=sandbox.api_key,
            base_url=server.base_url,
            timeout=httpx.Timeout(5.0, read=0.5),
            retry=RetryPolicy(max_attempts=8),
            sleep=waits.append,
        ) as c,
    ):
        result = build(settings(sandbox, tmp_path / "ds"), environ={}, client=c)
    assert result.exit_code == EXIT_PUBLISHED, result.report.unavailable_jobs
    assert keys(str(tmp_path / "ds")) == healthy
    assert {"error", "throttle", "drop", "truncate", "slow"} <= set(sandbox.fault_counts)


@pytest.mark.anyio
async def test_the_async_path_over_real_http_with_faults(healthy: set[Key], tmp_path: Path) -> None:
    # The async client's own HTTP/1.1 transport meets every fault on a real socket:
    # connections dropped before a byte, bodies cut short, answers slower than the read
    # timeout (the connection is closed and the request sent again on a new one).
    sandbox = Sandbox(SEED, jobs=JOBS, faults=dataclasses.replace(FAULTS, slow_ms=1500))
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    with sandbox.serve() as server:
        async with AsyncModzyClient(
            api_key=sandbox.api_key,
            base_url=server.base_url,
            timeout=httpx.Timeout(5.0, read=0.5),
            retry=RetryPolicy(max_attempts=8),
            sleep=sleep,
        ) as c:
            assert type(c._http) is httpx.AsyncClient  # stock httpx over real HTTP
            report = await run_async_chain(c, sandbox, tmp_path / "ds")
    assert not report.unavailable_jobs
    assert keys(str(tmp_path / "ds")) == healthy
    assert {"error", "throttle", "drop", "truncate", "slow"} <= set(sandbox.fault_counts)
