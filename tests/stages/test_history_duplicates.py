"""A job the history lists twice gives one sample per input, not two (issue 17, item 8).

Offset pagination repeats a job when the listing shifts between two page requests (a
job deleted or re-sorted meanwhile): the last job of page N comes again first on page
N+1. The query passes each job on once, and reports the repeat (``job_listed_twice``,
no inputs), so the run still reconciles.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest

from modzy_retrain import (
    AsyncModzyClient,
    BuildSettings,
    JobHistoryQuery,
    ModzyClient,
    build,
    read_samples,
)
from modzy_retrain._stages import query as query_module
from modzy_retrain._stages.report import JOB_LISTED_TWICE
from modzy_retrain.sandbox import Sandbox

PAGE = 7
START = datetime(2024, 1, 1, tzinfo=timezone.utc)


class Overlapping(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """The sandbox, whose history pages each start with the previous page's last job."""

    def __init__(self, sb: Sandbox) -> None:
        self.inner = sb.transport()
        self.last: dict[int, dict[str, object]] = {}
        self.repeated = 0

    def _rewrite(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        if not request.url.path.endswith("/jobs/history") or response.status_code != 200:
            return response
        items = json.loads(response.read())
        page = int(request.url.params.get("page", "1"))
        if items:
            self.last[page] = items[-1]
        if page > 1 and page - 1 in self.last:
            items = [self.last[page - 1], *items]
            self.repeated += 1
        return httpx.Response(200, json=items)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        return self._rewrite(request, self.inner.handle_request(request))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        return self.handle_request(request)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    sb = Sandbox(seed=6, jobs=40, data_url=str(tmp_path_factory.mktemp("inputs")))
    sb.write_inputs()
    return sb


def _settings(sb: Sandbox, out: Path, fmt: str) -> BuildSettings:
    return BuildSettings(
        base_url=sb.base_url,
        input_templates=sb.input_templates,
        out=str(out),
        select=["everything"],
        format=fmt,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_job_listed_twice_gives_one_sample(
    sandbox: Sandbox, tmp_path: Path, fmt: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(query_module, "DEFAULT_PAGE_SIZE", PAGE)  # pages of 7 jobs
    env = {"MODZY_API_KEY": sandbox.api_key}
    healthy = tmp_path / "healthy"
    first = build(_settings(sandbox, healthy, fmt), environ=env, transport=sandbox.transport())
    transport = Overlapping(sandbox)
    out = tmp_path / "ds"
    result = build(_settings(sandbox, out, fmt), environ=env, transport=transport)
    assert transport.repeated >= 3
    assert (first.exit_code, result.exit_code) == (0, 0)
    keys = [s.key for s in read_samples(str(out))]
    assert len(keys) == len(set(keys))
    assert set(keys) == {s.key for s in read_samples(str(healthy))}
    report = result.report
    assert report.reconciled
    repeats = [d for d in report.drops if d.reason == JOB_LISTED_TWICE]
    assert len(repeats) == transport.repeated
    assert all(d.inputs == 0 for d in repeats)  # their inputs were counted once
    assert report.drop_counts[("query", JOB_LISTED_TWICE)] == 0


def test_the_query_passes_each_job_once_sync_and_async(sandbox: Sandbox) -> None:
    ids = sorted(j.id for j in sandbox.jobs)
    transport = Overlapping(sandbox)
    with ModzyClient(api_key=sandbox.api_key, base_url=sandbox.base_url, transport=transport) as c:
        it = JobHistoryQuery(c, start=START, page_size=PAGE).stream()
        jobs = [job.job_id for job in it]
    assert sorted(jobs) == ids
    repeats = [d for d in it.report.drops if d.reason == JOB_LISTED_TWICE]
    assert len(repeats) == transport.repeated > 0
    assert it.report.stages["query"].items_in == len(ids) + transport.repeated

    async def listed() -> list[str]:
        async with AsyncModzyClient(
            api_key=sandbox.api_key,
            base_url=sandbox.base_url,
            transport=Overlapping(sandbox),
        ) as c:
            query = JobHistoryQuery(c, start=START, page_size=PAGE)
            return [job.job_id async for job in query.astream()]

    assert sorted(asyncio.run(listed())) == ids
