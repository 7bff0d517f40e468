"""The client against the sandbox: sync and async, in process and over real HTTP.

Every scenario runs four times (see the ``api`` fixture in conftest.py).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from datetime import datetime, timedelta, timezone

import pytest

from modzy_retrain import (
    AuthenticationError,
    InternalServerError,
    Job,
    NotFoundError,
    RateLimitError,
    RetryPolicy,
)
from modzy_retrain.sandbox import FaultConfig, Sandbox

from .conftest import Api, make_api

pytestmark = pytest.mark.anyio
UTC = timezone.utc


def ids(jobs: list[Job]) -> list[str]:
    return [job.job_id for job in jobs]


async def test_history_walks_every_job_in_created_order(api: Api, world: Sandbox) -> None:
    jobs = await api.history(page_size=7)
    assert len(jobs) == len(world.jobs)
    assert set(ids(jobs)) == {job.id for job in world.jobs}
    created = [job.created_at for job in jobs]
    assert all(c is not None for c in created)
    assert created == sorted(created)  # type: ignore[type-var]


@pytest.mark.parametrize("page_size", [1, 5, 9, 15, 45, 1000])
async def test_pagination_edges(api: Api, world: Sandbox, page_size: int) -> None:
    # 45 jobs: 9, 15 and 45 divide it exactly, so the last page is empty.
    pages = await api.pages(page_size=page_size)
    total = len(world.jobs)
    full, rest = divmod(total, page_size)
    assert len(pages) == full + 1
    assert [p.page for p in pages] == list(range(1, full + 2))
    assert all(len(p) == page_size for p in pages[:-1])
    assert len(pages[-1]) == rest
    assert not pages[-1].has_next
    assert sum(len(p) for p in pages) == total


async def test_page_by_page_access(api: Api) -> None:
    everything = await api.history(page_size=10)
    second = await api.page(2, page_size=10)
    assert ids(second.items) == ids(everything[10:20])
    assert second.next_page == 3
    beyond = await api.page(50, page_size=10)
    assert beyond.items == []
    assert beyond.next_page is None


async def test_empty_history(api: Api, world: Sandbox) -> None:
    before = min(job.created_at for job in world.jobs) - timedelta(days=30)
    pages = await api.pages(start=before, end=before + timedelta(days=1))
    assert len(pages) == 1
    assert pages[0].items == []


async def test_time_window_filter(api: Api, world: Sandbox) -> None:
    ordered = sorted(world.jobs, key=lambda j: j.created_at)
    start, end = ordered[10].created_at, ordered[20].created_at
    jobs = await api.history(start=start, end=end)
    expected = {j.id for j in world.jobs if start <= j.created_at <= end}
    assert set(ids(jobs)) == expected
    assert len(expected) >= 11


async def test_model_status_user_and_key_filters(api: Api, world: Sandbox) -> None:
    model = world.models[1]
    by_model = await api.history(model_id=model.id)
    assert by_model
    assert {j.model.identifier for j in by_model} == {model.id}
    assert len(by_model) == sum(1 for j in world.jobs if j.model.id == model.id)

    image = world.models[0]
    old = await api.history(model_id=image.id, model_version=image.versions[0])
    assert {(j.model.identifier, j.model.version) for j in old} <= {(image.id, image.versions[0])}

    fuzzy = await api.history(model=model.name.split()[0].lower())
    assert set(ids(by_model)) <= set(ids(fuzzy))

    terminated = await api.history(status="terminated")
    assert terminated
    assert all(j.is_finished for j in terminated)
    pending = await api.history(status=["SUBMITTED", "IN_PROGRESS"])
    assert len(terminated) + len(pending) == len(world.jobs)

    someone = world.jobs[0].user
    mine = await api.history(user=someone.email.upper())
    assert mine
    assert all(j.user is not None and j.user.email == someone.email for j in mine)
    by_key = await api.history(access_key=someone.key_prefix)
    assert set(ids(by_key)) == set(ids(mine))
    assert all(j.submitted_by == someone.key_prefix for j in by_key)


async def test_sorting(api: Api) -> None:
    desc = await api.history(sort_by="createdAt", direction="DESC")
    asc = await api.history(sort_by="createdAt", direction="asc")
    assert ids(desc) == list(reversed(ids(asc)))


async def test_job_details_and_results(api: Api, world: Sandbox) -> None:
    done = next(j for j in world.jobs if j.status == "COMPLETED" and j.failed == 0)
    job = await api.job(done.id)
    assert job.job_id == done.id
    assert job.model.identifier == done.model.id
    assert job.input_names == [i.name for i in done.inputs]
    results = await api.results(done.id)
    assert results.finished
    assert set(results.results) == {i.name for i in done.inputs}
    for item in done.inputs:
        parsed = results.results[item.name]
        assert parsed.top is not None
        assert parsed.top.label == item.predicted
        assert (parsed.voting.up, parsed.voting.down) == world.votes(done.id, item.name)
        single = await api.input(done.id, item.name)
        assert single.voting == parsed.voting
        assert single.top == parsed.top
        raw = await api.output(done.id, item.name, "results.json")
        assert b"classPredictions" in raw


async def test_failed_inputs_and_unfinished_jobs(api: Api, world: Sandbox) -> None:
    with_failures = next(j for j in world.jobs if j.failed > 0)
    results = await api.results(with_failures.id)
    failed = {i.name for i in with_failures.inputs if i.status == "FAILED"}
    assert set(results.failures) == failed
    assert all(f.error for f in results.failures.values())
    submitted = [j for j in world.jobs if j.status == "SUBMITTED"]
    for job in submitted:
        with pytest.raises(NotFoundError):
            await api.results(job.id)


async def test_not_found(api: Api) -> None:
    with pytest.raises(NotFoundError) as info:
        await api.job("no-such-job")
    assert info.value.status_code == 404
    assert info.value.api_message
    with pytest.raises(NotFoundError):
        await api.results("no-such-job")


async def test_models(api: Api, world: Sandbox) -> None:
    await api.check()
    listed = await api.models()
    assert {m.model_id for m in listed} == {m.id for m in world.models}
    image = world.models[0]
    detail = await api.model(image.id)
    assert detail.model_id == image.id
    versions = await api.versions(image.id)
    assert {v.version for v in versions} == set(image.versions)


async def test_wrong_key_is_an_authentication_error(
    mode: str, world: Sandbox, world_server: object
) -> None:
    async with AsyncExitStack() as stack:
        api = make_api(
            world,
            mode,
            stack,
            world_server if mode.endswith("http") else None,  # type: ignore[arg-type]
            api_key="AAAAAAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBB",
        )
        with pytest.raises(AuthenticationError) as info:
            await api.history()
        assert "BBBBBBBBBBBBBBBBBBBB" not in str(info.value)
        assert api.sleeps == []  # a 401 is not retried


async def test_votes_round_trip(mode: str) -> None:
    sandbox = Sandbox(seed=5, jobs=6)
    async with AsyncExitStack() as stack:
        server = stack.enter_context(sandbox.serve()) if mode.endswith("http") else None
        api = make_api(sandbox, mode, stack, server)
        job = next(j for j in sandbox.jobs if j.completed)
        name = next(i.name for i in job.inputs if i.status == "SUCCESSFUL")
        up0, down0 = sandbox.votes(job.id, name)
        assert await api.vote(job.id, name) == "NO_VOTES"
        await api.upvote(job.id, name)
        assert await api.vote(job.id, name) == "UP"
        voting = (await api.results(job.id)).results[name].voting
        assert (voting.up, voting.down) == (up0 + 1, down0)
        await api.downvote(job.id, name)  # replaces this key's up-vote
        assert await api.vote(job.id, name) == "DOWN"
        voting = (await api.input(job.id, name)).voting
        assert (voting.up, voting.down) == (up0, down0 + 1)
        await api.reset_vote(job.id, name)
        assert await api.vote(job.id, name) == "NO_VOTES"
        voting = (await api.results(job.id)).results[name].voting
        assert (voting.up, voting.down) == (0, 0)


async def test_harvest_under_faults_matches_the_fault_free_harvest(mode: str) -> None:
    clean = Sandbox(seed=3, jobs=25)
    faults = FaultConfig(
        error_rate=0.15, throttle_rate=0.1, drop_rate=0.05, truncate_rate=0.05, fault_seed=9
    )
    flaky = Sandbox(seed=3, jobs=25, faults=faults)

    async def harvest(sandbox: Sandbox) -> tuple[dict[str, object], list[float]]:
        async with AsyncExitStack() as stack:
            server = stack.enter_context(sandbox.serve()) if mode.endswith("http") else None
            api = make_api(
                sandbox, mode, stack, server, retry=RetryPolicy(max_attempts=10, jitter=0)
            )
            out: dict[str, object] = {}
            for job in await api.history(page_size=4):
                if job.status == "SUBMITTED":
                    continue
                results = await api.results(job.job_id)
                out[job.job_id] = results.to_dict()
            return out, api.sleeps

    expected, no_sleeps = await harvest(clean)
    got, sleeps = await harvest(flaky)
    assert got == expected
    assert no_sleeps == []
    assert sleeps  # the faults did happen, and were retried without real sleeping
    counts = flaky.fault_counts
    if "aiohttp" in mode:
        # aiohttp itself resends a request once when a kept-alive connection turns out
        # closed (a dropped connection), before the library's retry ever sees it.
        assert sum(counts.values()) - counts["drop"] <= len(sleeps) <= sum(counts.values())
    else:
        assert sum(counts.values()) == len(sleeps)


async def test_retries_give_up_with_the_last_error(mode: str) -> None:
    sandbox = Sandbox(seed=3, jobs=5, faults=FaultConfig(throttle_rate=1.0, retry_after=3))
    async with AsyncExitStack() as stack:
        server = stack.enter_context(sandbox.serve()) if mode.endswith("http") else None
        api = make_api(sandbox, mode, stack, server, retry=RetryPolicy(max_attempts=4, jitter=0))
        with pytest.raises(RateLimitError) as info:
            await api.history()
        assert info.value.retry_after == 3
        assert api.sleeps == [3, 3, 3]
    sandbox = Sandbox(seed=3, jobs=5, faults=FaultConfig(error_rate=1.0))
    async with AsyncExitStack() as stack:
        server = stack.enter_context(sandbox.serve()) if mode.endswith("http") else None
        api = make_api(sandbox, mode, stack, server, retry=RetryPolicy(max_attempts=2, jitter=0))
        with pytest.raises(InternalServerError):
            await api.history()
        assert len(api.sleeps) == 1


async def test_sync_and_async_see_the_same_data(world: Sandbox) -> None:
    async with AsyncExitStack() as stack:
        sync_api = make_api(world, "sync-inprocess", stack, None)
        async_api = make_api(world, "async-inprocess", stack, None)
        a = await sync_api.history(page_size=8)
        b = await async_api.history(page_size=8)
        assert [j.to_dict() for j in a] == [j.to_dict() for j in b]
        job_id = a[3].job_id
        assert (await sync_api.results(job_id)).to_dict() == (
            await async_api.results(job_id)
        ).to_dict()


def test_the_window_can_end_now() -> None:
    # An aware "now" as the end of the window is valid and reaches the sandbox.
    sandbox = Sandbox(seed=1, jobs=3)
    from modzy_retrain import ModzyClient

    with ModzyClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.transport()
    ) as client:
        jobs = list(
            client.jobs.history(start=datetime(2000, 1, 1, tzinfo=UTC), end=datetime.now(UTC))
        )
    assert len(jobs) == 3


def test_an_invalid_query_sends_no_request() -> None:
    from modzy_retrain import InvalidQueryError, ModzyClient

    sandbox = Sandbox(seed=1, jobs=3)
    with ModzyClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.transport()
    ) as client:
        with pytest.raises(InvalidQueryError, match="without start"):
            client.jobs.history(end=datetime(2025, 1, 1, tzinfo=UTC))
        with pytest.raises(InvalidQueryError, match="future"):
            client.jobs.history(start=datetime.now(UTC) + timedelta(days=1))
    assert sandbox.request_total == 0
