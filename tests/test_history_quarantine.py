"""A history item that is not a job: the strict pager raises, the query stage sets it
aside with its reason, and the run goes on (sync and async alike)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from modzy_retrain import (
    AsyncModzyClient,
    JobHistoryQuery,
    ModzyClient,
    ResponseValidationError,
    ResultFetcher,
)
from modzy_retrain._stages.report import JOB_UNPARSEABLE
from modzy_retrain.sandbox import Sandbox

BAD_JOB = {"jobIdentifier": "bad-job-1", "status": 12, "createdAt": "yesterday", "total": 4}
NOT_AN_OBJECT = "surprise"


def spoil(response: httpx.Response, request: httpx.Request) -> httpx.Response:
    """Replace the 2nd and 5th items of history page 1 with things that are not jobs."""
    if not request.url.path.endswith("/jobs/history") or request.url.params["page"] != "1":
        return response
    items: list[Any] = json.loads(response.content)
    items[1] = BAD_JOB
    items[4] = NOT_AN_OBJECT
    return httpx.Response(200, json=items, request=request)


class Spoiling(httpx.BaseTransport, httpx.AsyncBaseTransport):
    def __init__(self, sandbox: Sandbox) -> None:
        self.sync = sandbox.transport()
        self.async_ = sandbox.async_transport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.sync.handle_request(request)
        response.read()
        return spoil(response, request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.async_.handle_async_request(request)
        await response.aread()
        return spoil(response, request)


@pytest.fixture
def sandbox() -> Sandbox:
    return Sandbox(seed=12, jobs=30)


def client(sandbox: Sandbox) -> ModzyClient:
    return ModzyClient(
        api_key=sandbox.api_key, base_url="http://sandbox.invalid", transport=Spoiling(sandbox)
    )


def test_the_strict_pager_raises_and_the_lenient_one_sets_aside(sandbox: Sandbox) -> None:
    with client(sandbox) as c:
        with pytest.raises(ResponseValidationError, match="bad-job-1"):
            list(c.jobs.history(page_size=10))
        pages = list(c.jobs.history(page_size=10, strict=False).pages())
    first = pages[0]
    assert [(b.index, b.job_id, b.inputs) for b in first.invalid] == [
        (1, "bad-job-1", 4),
        (4, None, 0),
    ]
    assert "status" in first.invalid[0].reason
    assert len(first.items) == 8
    # A page with set-aside items still counts as full: paging goes on.
    assert first.has_next
    assert sum(len(p.items) for p in pages) == 28


def test_the_query_reports_them_and_the_run_goes_on(sandbox: Sandbox) -> None:
    with client(sandbox) as c:
        it = (JobHistoryQuery(c, page_size=10) | ResultFetcher(c)).stream()
        records = list(it)
    drops = [d for d in it.report.drops if d.reason == JOB_UNPARSEABLE]
    assert [d.job_id for d in drops] == ["bad-job-1", "(item 4 of history page 1)"]
    assert [d.inputs for d in drops] == [4, 0]
    assert all(d.stage == "query" and d.detail for d in drops)
    assert records
    assert it.report.stages["query"].items_in == 30
    assert it.report.finish().reconciled


@pytest.mark.anyio
async def test_the_async_query_does_the_same(sandbox: Sandbox) -> None:
    async with AsyncModzyClient(
        api_key=sandbox.api_key, base_url="http://sandbox.invalid", transport=Spoiling(sandbox)
    ) as c:
        it = (JobHistoryQuery(c, page_size=10) | ResultFetcher(c)).astream()
        records = [r async for r in it]
    drops = [d for d in it.report.drops if d.reason == JOB_UNPARSEABLE]
    assert [d.job_id for d in drops] == ["bad-job-1", "(item 4 of history page 1)"]
    assert records
    assert it.report.finish().reconciled
