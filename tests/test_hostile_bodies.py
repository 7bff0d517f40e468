"""Bodies that cannot be decoded become typed errors, through every client and stack.

Nested a thousand levels deep (2 KB), an integer of more than 4,300 digits, bytes that
are not UTF-8, text that is not JSON: each escaped, or could escape, as a bare
``RecursionError`` or ``ValueError``. Each is retried (a proxy's glitch can send one),
then becomes ``ResultParseError`` naming the job for a job's results, and
``ResponseValidationError`` for the history, a job and the models. Every scenario runs
the five ways of the shared client scenarios (sync and async, in process and over
loopback HTTP, and the aiohttp stack).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from modzy_retrain import (
    AsyncModzyClient,
    DatasetError,
    InternalServerError,
    JobResults,
    ModzyClient,
    ResponseTooLargeError,
    ResponseValidationError,
    ResultFetcher,
    ResultParseError,
    RetryPolicy,
    read_samples,
)
from modzy_retrain._cli.build import EXIT_NOTHING_NEW, EXIT_PUBLISHED, BuildSettings, build
from modzy_retrain._core.concurrency import aiter_sync
from modzy_retrain._stages.report import RESULT_UNPARSEABLE
from modzy_retrain.sandbox import Sandbox

from ._scripted import Reply, Scripted, scripted_mode
from .conftest import MODES, Api

pytestmark = pytest.mark.anyio

HOSTILE: dict[str, bytes] = {
    # A list nested a thousand levels deep: 2 KB, and json's C decoder recurses.
    "deep": b"[" * 1000 + b"]" * 1000,
    # Deep enough to refuse, shallow enough that json itself would take it.
    "deep-objects": b'{"results": ' + b'{"a": ' * 200 + b"1" + b"}" * 200 + b"}",
    # Python refuses to turn more than 4,300 digits into an int (ValueError).
    "huge-int": b'{"results": {}, "total": ' + b"9" * 5000 + b"}",
    "not-utf8": b'{"results": {"a": "\xff\xfe"}}',
    "not-json": b"<html>502 Bad Gateway</html>",
    "truncated": b'{"results": {"a": {"status": "SUCC',
}
ATTEMPTS = 3


@pytest.fixture(scope="module")
def world() -> Sandbox:
    return Sandbox(seed=3, jobs=8, inputs_per_job=2)


def finished(world: Sandbox) -> str:
    return next(j.id for j in world.jobs if j.status == "COMPLETED")


async def retrieve(api: Api, job: str, *, strict: bool) -> JobResults:
    if isinstance(api.client, AsyncModzyClient):
        return await api.client.results.retrieve(job, strict=strict)
    return api.client.results.retrieve(job, strict=strict)


def replacing(suffix: str, body: bytes, status: int = 200) -> Any:
    def override(request: httpx.Request) -> Reply | None:
        if request.url.path.endswith(suffix):
            return Reply(status, body, {"Content-Type": "application/json"})
        return None

    return override


@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("mode", MODES)
async def test_a_results_body_that_cannot_be_decoded_is_a_result_parse_error(
    world: Sandbox, mode: str, kind: str
) -> None:
    job = finished(world)
    scripted = Scripted(world, replacing(f"/results/{job}", HOSTILE[kind]))
    retry = RetryPolicy(max_attempts=ATTEMPTS, jitter=0)
    async with scripted_mode(scripted, mode, retry=retry) as api:
        for strict in (True, False):
            with pytest.raises(ResultParseError) as info:
                await retrieve(api, job, strict=strict)
            err = info.value
            assert err.job_id == job
            assert err.input_name is None
            assert err.errors
            assert (err.method, err.path) == ("GET", f"/results/{job}")
            assert repr(job) in str(err)
    # Retried like a dropped connection before it is believed: twice per strictness.
    assert scripted.count(f"/results/{job}") == 2 * ATTEMPTS


@pytest.mark.parametrize("kind", sorted(HOSTILE))
@pytest.mark.parametrize("mode", MODES)
async def test_a_history_page_that_cannot_be_decoded_is_a_validation_error(
    world: Sandbox, mode: str, kind: str
) -> None:
    scripted = Scripted(world, replacing("/jobs/history", HOSTILE[kind]))
    retry = RetryPolicy(max_attempts=ATTEMPTS, jitter=0)
    async with scripted_mode(scripted, mode, retry=retry) as api:
        with pytest.raises(ResponseValidationError) as info:
            await api.history()
        assert not isinstance(info.value, (ResultParseError, ResponseTooLargeError))
        assert (info.value.method, info.value.path) == ("GET", "/jobs/history")
        assert scripted.count("/jobs/history") == ATTEMPTS
    assert len(api.sleeps) == ATTEMPTS - 1


@pytest.mark.parametrize("mode", MODES)
async def test_jobs_and_models_that_cannot_be_decoded(world: Sandbox, mode: str) -> None:
    job = finished(world)

    def override(request: httpx.Request) -> Reply | None:
        if request.url.path.endswith((f"/jobs/{job}", "/models")):
            return Reply(200, HOSTILE["deep"])
        return None

    scripted = Scripted(world, override)
    async with scripted_mode(scripted, mode, retry=RetryPolicy.disabled()) as api:
        for call in (lambda: api.job(job), api.models):
            with pytest.raises(ResponseValidationError) as info:
                await call()
            assert not isinstance(info.value, ResultParseError)


@pytest.mark.parametrize("kind", ["deep", "huge-int"])
@pytest.mark.parametrize("mode", MODES)
async def test_an_error_body_that_cannot_be_decoded_keeps_its_status(
    world: Sandbox, mode: str, kind: str
) -> None:
    job = finished(world)
    scripted = Scripted(world, replacing(f"/results/{job}", HOSTILE[kind], status=500))
    async with scripted_mode(scripted, mode, retry=RetryPolicy.disabled()) as api:
        with pytest.raises(InternalServerError) as info:
            await api.results(job)
    assert info.value.status_code == 500
    assert isinstance(info.value.body, str)  # kept as (cut) text


# -- In a run: one hostile job is quarantined, a hostile history page stops the run ------


def fetch_modes() -> list[str]:
    return ["sync-inprocess", "async-inprocess", "sync-http", "async-aiohttp-http"]


@pytest.mark.parametrize("kind", ["deep", "huge-int"])
@pytest.mark.parametrize("mode", fetch_modes())
async def test_the_fetcher_quarantines_a_job_whose_body_cannot_be_decoded(
    world: Sandbox, mode: str, kind: str
) -> None:
    jobs = [j for j in world.jobs if j.status == "COMPLETED"][:4]
    bad = jobs[1].id
    scripted = Scripted(world, replacing(f"/results/{bad}", HOSTILE[kind]))
    async with scripted_mode(scripted, mode, retry=RetryPolicy(max_attempts=2)) as api:
        history = [j for j in await api.history() if j.job_id in {x.id for x in jobs}]
        fetcher = ResultFetcher(api.client, concurrency=2)
        if api.is_async:
            ait = fetcher.astream(aiter_sync(history))
            records = [r async for r in ait]
            report = ait.report
        else:
            it = fetcher(history)
            records = list(it)
            report = it.report
    assert {r.job_id for r in records} == {j.id for j in jobs} - {bad}
    drops = [d for d in report.drops if d.job_id == bad]
    assert drops
    assert {d.reason for d in drops} == {RESULT_UNPARSEABLE}
    assert all("could not parse" in d.detail for d in drops)
    assert not report.unavailable_jobs  # done for good: the cursor may pass it
    assert report.reconciled


def test_a_build_publishes_the_rest_and_the_next_build_moves_on(
    world: Sandbox, tmp_path: Path
) -> None:
    bad = finished(world)
    scripted = Scripted(world, replacing(f"/results/{bad}", HOSTILE["deep"]))
    out = tmp_path / "ds"
    settings = BuildSettings(
        base_url="http://sandbox.invalid", out=str(out), input_templates=world.input_templates
    )
    for run in range(2):
        with ModzyClient(
            api_key=world.api_key,
            base_url="http://sandbox.invalid",
            transport=scripted.transport(),
            retry=RetryPolicy(max_attempts=2, jitter=0),
            sleep=lambda s: None,
        ) as client:
            result = build(settings, environ={}, client=client)
        if run == 0:
            assert result.exit_code == EXIT_PUBLISHED
            reasons = {d.reason for d in result.report.drops if d.job_id == bad}
            assert reasons == {RESULT_UNPARSEABLE}
            assert list(read_samples(str(out)))
        else:
            # The quarantined job does not hold the checkpoint back.
            assert result.exit_code == EXIT_NOTHING_NEW
    assert scripted.count(f"/results/{bad}") == 2


@pytest.mark.parametrize("kind", ["deep", "not-json"])
def test_a_history_page_that_cannot_be_decoded_stops_the_build(tmp_path: Path, kind: str) -> None:
    # Past 100 jobs: the build reads two pages, and the second is the hostile one.
    world = Sandbox(seed=4, jobs=130, inputs_per_job=1)

    def override(request: httpx.Request) -> Reply | None:
        if request.url.path.endswith("/jobs/history") and request.url.params["page"] == "2":
            return Reply(200, HOSTILE[kind])
        return None

    scripted = Scripted(world, override)
    out = tmp_path / "ds"
    settings = BuildSettings(
        base_url="http://sandbox.invalid",
        out=str(out),
        input_templates=world.input_templates,
    )
    waits: list[float] = []
    with (
        ModzyClient(
            api_key=world.api_key,
            base_url="http://sandbox.invalid",
            transport=scripted.transport(),
            retry=RetryPolicy(max_attempts=3, jitter=0),
            sleep=waits.append,
        ) as client,
        pytest.raises(ResponseValidationError) as info,
    ):
        build(settings, environ={}, client=client)
    assert info.value.path == "/jobs/history"
    # Retried, then the run stopped: nothing published, no checkpoint moved.
    assert len(waits) == 2
    assert not (out / "_latest.json").exists()
    with pytest.raises(DatasetError):
        list(read_samples(str(out)))
