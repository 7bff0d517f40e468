"""Deadlines: no server keeps a call, or a history walk, going for ever.

A server that sends one byte just before each read timeout would keep a request alive
without end (the timeout is per read); one that always answers a full history page
would be walked without end. Each call has a total deadline (``deadline=``), and the
history walk stops at a page seen before, or past ``max_pages``, with a typed error.

The deadlines here are fractions of a second, and the drips a twentieth: the tests take
what the deadlines take, no more, and sleep nowhere else (retry waits are recorded).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from modzy_retrain import (
    APITimeoutError,
    AsyncModzyClient,
    ConfigurationError,
    JobHistoryQuery,
    ModzyClient,
    PaginationError,
    RetryPolicy,
)
from modzy_retrain._cli.build import BuildSettings, build
from modzy_retrain.sandbox import Sandbox

from ._scripted import Reply, Scripted, scripted_mode
from .conftest import MODES, Api

pytestmark = pytest.mark.anyio

DEADLINE = 0.3
# Room for a loaded machine, and still far short of the read timeout: a call that ends
# within it was cut by the deadline, not by a timeout (nor would a drip ever time out).
SLACK = 1.5
TIMEOUT = httpx.Timeout(10.0, read=5.0)


@pytest.fixture(scope="module")
def world() -> Sandbox:
    return Sandbox(seed=5, jobs=12, inputs_per_job=2)


def finished(world: Sandbox) -> str:
    return next(j.id for j in world.jobs if j.status == "COMPLETED")


def scripted(world: Sandbox, suffix: str, reply: Reply) -> Scripted:
    return Scripted(world, lambda r: reply if r.url.path.endswith(suffix) else None)


async def timed(api: Api, job: str) -> tuple[float, APITimeoutError]:
    started = time.monotonic()
    with pytest.raises(APITimeoutError) as info:
        await api.results(job)
    return time.monotonic() - started, info.value


@pytest.mark.parametrize("mode", MODES)
async def test_a_dripping_body_is_cut_at_the_deadline(world: Sandbox, mode: str) -> None:
    # One byte every 50 ms, for ever: no read ever times out.
    job = finished(world)
    drip = scripted(world, f"/results/{job}", Reply(200, b'{"results": {', drip=0.05, endless=True))
    async with scripted_mode(drip, mode, timeout=TIMEOUT, deadline=DEADLINE) as api:
        elapsed, err = await timed(api, job)
    assert DEADLINE <= elapsed < DEADLINE + SLACK, elapsed
    assert "deadline" in str(err)
    assert (err.method, err.path) == ("GET", f"/results/{job}")
    # The deadline covers the retries too: none is started once it has passed.
    assert drip.count(f"/results/{job}") == 1


# Not the sync client in process: there is no socket whose read could time out (httpx's
# MockTransport ignores timeouts), and nothing interrupts a stream that sleeps.
@pytest.mark.parametrize("mode", [m for m in MODES if m != "sync-inprocess"])
async def test_a_body_that_stalls_is_cut_at_the_deadline(world: Sandbox, mode: str) -> None:
    # The head, then nothing: the read timeout (5 s) is longer than the deadline. The
    # sync client caps each attempt's read timeout to the time left.
    job = finished(world)
    stall = scripted(world, f"/results/{job}", Reply(200, b"{}", drip=30.0))
    async with scripted_mode(stall, mode, timeout=TIMEOUT, deadline=DEADLINE) as api:
        elapsed, _ = await timed(api, job)
    assert DEADLINE <= elapsed < DEADLINE + SLACK, elapsed
    assert stall.count(f"/results/{job}") == 1


@pytest.mark.parametrize("mode", [m for m in MODES if m.startswith("async") and "http" in m])
async def test_the_async_client_bounds_a_dripping_head_too(world: Sandbox, mode: str) -> None:
    # What the sync client cannot bound (docs/client.md): a status line and headers
    # sent a byte at a time. The async client's deadline is around the whole call.
    job = finished(world)
    drip = scripted(world, f"/results/{job}", Reply(200, b"{}", drip=0.05, drip_head=True))
    async with scripted_mode(drip, mode, timeout=TIMEOUT, deadline=DEADLINE) as api:
        elapsed, _ = await timed(api, job)
    assert DEADLINE <= elapsed < DEADLINE + SLACK, elapsed


@pytest.mark.parametrize("mode", ["sync-inprocess", "async-inprocess"])
async def test_no_retry_wait_is_started_past_the_deadline(world: Sandbox, mode: str) -> None:
    # 503 every time; waits of 1, 2, 4 s are recorded, not slept: with a 2.5 s deadline
    # the second wait (1 + 2 s) would pass it, so the call stops after two attempts.
    job = finished(world)
    down = scripted(world, f"/results/{job}", Reply(503, b'{"message": "down"}'))
    retry = RetryPolicy(max_attempts=6, initial_wait=1.0, jitter=0)
    async with scripted_mode(down, mode, retry=retry, deadline=2.5) as api:
        with pytest.raises(Exception, match="503"):
            await api.results(job)
        assert api.sleeps == [1.0]
    assert down.count(f"/results/{job}") == 2


def test_each_sync_attempt_waits_at_most_the_time_left() -> None:
    # What the sync client can do with httpx's own means: every phase's timeout of an
    # attempt capped to the deadline's remainder, "no timeout" included.
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    for timeout in (httpx.Timeout(60.0, connect=10.0), None):
        with ModzyClient(
            api_key="a.b",
            base_url="https://modzy.invalid",
            transport=httpx.MockTransport(handler),
            timeout=timeout,
            deadline=7.0,
        ) as client:
            client.models.list()
        phases = seen[-1].extensions["timeout"]
        assert set(phases) == {"connect", "read", "write", "pool"}
        assert all(6.0 < phases[p] <= 7.0 for p in ("read", "write", "pool")), phases
        assert phases["connect"] <= 7.0


def test_the_deadline_is_checked_when_the_client_is_made() -> None:
    for bad in (0, -1.0, "5", True):
        with pytest.raises(ConfigurationError, match="deadline"):
            ModzyClient(api_key="a.b", base_url="https://h", deadline=bad)  # type: ignore[arg-type]
    assert ModzyClient(api_key="a.b", base_url="https://h").deadline == 300.0
    assert ModzyClient(api_key="a.b", base_url="https://h", deadline=None).deadline is None
    assert AsyncModzyClient(api_key="a.b", base_url="https://h", deadline=2).deadline == 2


# -- The history walk -------------------------------------------------------------------


def full_page(page: int, size: int, *, fresh: bool) -> bytes:
    """A full page of minimal jobs; ``fresh``: new ids on every page, else the same."""
    tag = page if fresh else 0
    return json.dumps(
        [
            {"jobIdentifier": f"job-{tag}-{i}", "model": {"identifier": "m"}, "status": "PENDING"}
            for i in range(size)
        ]
    ).encode()


def endless_history(world: Sandbox, *, fresh: bool) -> Scripted:
    def override(request: httpx.Request) -> Reply | None:
        if not request.url.path.endswith("/jobs/history"):
            return None
        params = request.url.params
        return Reply(200, full_page(int(params["page"]), int(params["per-page"]), fresh=fresh))

    return Scripted(world, override)


@pytest.mark.parametrize("mode", MODES)
async def test_a_history_that_repeats_its_page_is_stopped(world: Sandbox, mode: str) -> None:
    # A server that ignores ``page`` answers the same full page for ever.
    same = endless_history(world, fresh=False)
    async with scripted_mode(same, mode) as api:
        with pytest.raises(PaginationError) as info:
            await api.history(page_size=5)
    assert same.count("/jobs/history") == 2
    assert info.value.page == 2
    assert info.value.repeats == 1
    assert "repeats page 1" in str(info.value)


@pytest.mark.parametrize("mode", MODES)
async def test_a_history_without_end_stops_at_max_pages(world: Sandbox, mode: str) -> None:
    fresh = endless_history(world, fresh=True)
    async with scripted_mode(fresh, mode) as api:
        with pytest.raises(PaginationError) as info:
            await api.history(page_size=5, max_pages=7)
    assert fresh.count("/jobs/history") == 7
    assert info.value.max_pages == 7
    assert "max_pages" in str(info.value)


def test_max_pages_is_checked_before_any_request(world: Sandbox) -> None:
    with ModzyClient(
        api_key=world.api_key, base_url=world.base_url, transport=world.transport()
    ) as client:
        for bad in (0, -3, 1.5, True):
            with pytest.raises(ConfigurationError, match="max_pages"):
                client.jobs.history(max_pages=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="max_pages"):
            JobHistoryQuery(client, max_pages=0)
        # The cap fits the history exactly: page 3 is short, so the walk ends there.
        assert len(list(client.jobs.history(page_size=5, max_pages=3))) == len(world.jobs)


def test_a_build_against_an_endless_history_publishes_nothing(
    world: Sandbox, tmp_path: Path
) -> None:
    same = endless_history(world, fresh=False)
    out = tmp_path / "ds"
    settings = BuildSettings(
        base_url="http://sandbox.invalid", out=str(out), input_templates=world.input_templates
    )
    with (
        ModzyClient(
            api_key=world.api_key, base_url="http://sandbox.invalid", transport=same.transport()
        ) as client,
        pytest.raises(PaginationError),
    ):
        build(settings, environ={}, client=client)
    assert same.count("/jobs/history") == 2
    assert not (out / "_latest.json").exists()
