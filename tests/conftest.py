"""Shared fixtures: sandboxes, and one client adapter that runs a scenario through the
sync or the async client, in process or over real HTTP on loopback."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest

from modzy_retrain import (
    AsyncModzyClient,
    InputResult,
    Job,
    JobHistoryPage,
    JobResults,
    ModelSummary,
    ModelVersion,
    ModzyClient,
    RetryPolicy,
    VoteValue,
)
from modzy_retrain.sandbox import (
    PostgresServer,
    PostgresUnavailable,
    Sandbox,
    SandboxServer,
    postgres_server,
)

# "async-aiohttp-http": the async client on the opt-in aiohttp stack (httpx-aiohttp's
# client passed as http_client), over real HTTP, through every shared scenario.
MODES = ["sync-inprocess", "async-inprocess", "sync-http", "async-http", "async-aiohttp-http"]


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where scratch databases go (tempfile's folder, made private to the test)."""
    folder = tmp_path / "scratch"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture(autouse=True)
def _clean_modzy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never pick up a developer's real key or URL.
    monkeypatch.delenv("MODZY_API_KEY", raising=False)
    monkeypatch.delenv("MODZY_BASE_URL", raising=False)


class Api:
    """The client calls a scenario needs, awaitable whatever the client is."""

    def __init__(self, client: ModzyClient | AsyncModzyClient, mode: str) -> None:
        self.client = client
        self.mode = mode
        self.sleeps: list[float] = []

    @property
    def is_async(self) -> bool:
        return isinstance(self.client, AsyncModzyClient)

    async def history(self, **kw: Any) -> list[Job]:
        if isinstance(self.client, AsyncModzyClient):
            return [job async for job in self.client.jobs.history(**kw)]
        return list(self.client.jobs.history(**kw))

    async def pages(self, **kw: Any) -> list[JobHistoryPage]:
        if isinstance(self.client, AsyncModzyClient):
            return [page async for page in self.client.jobs.history(**kw).pages()]
        return list(self.client.jobs.history(**kw).pages())

    async def page(self, number: int, **kw: Any) -> JobHistoryPage:
        if isinstance(self.client, AsyncModzyClient):
            return await self.client.jobs.history(**kw).page(number)
        return self.client.jobs.history(**kw).page(number)

    async def _do(self, group: str, method: str, *args: Any) -> Any:
        fn = getattr(getattr(self.client, group), method)
        result = fn(*args)
        if self.is_async:
            result = await result
        return result

    async def job(self, job_id: str) -> Job:
        return await self._do("jobs", "retrieve", job_id)  # type: ignore[no-any-return]

    async def results(self, job_id: str) -> JobResults:
        return await self._do("results", "retrieve", job_id)  # type: ignore[no-any-return]

    async def input(self, job_id: str, name: str) -> InputResult:
        return await self._do("results", "retrieve_input", job_id, name)  # type: ignore[no-any-return]

    async def output(self, job_id: str, name: str, file: str) -> bytes:
        return await self._do("results", "output", job_id, name, file)  # type: ignore[no-any-return]

    async def upvote(self, job_id: str, name: str) -> None:
        await self._do("results", "upvote", job_id, name)

    async def downvote(self, job_id: str, name: str) -> None:
        await self._do("results", "downvote", job_id, name)

    async def vote(self, job_id: str, name: str) -> VoteValue:
        return await self._do("results", "vote", job_id, name)  # type: ignore[no-any-return]

    async def reset_vote(self, job_id: str, name: str) -> None:
        await self._do("results", "reset_vote", job_id, name)

    async def models(self) -> list[ModelSummary]:
        return await self._do("models", "list")  # type: ignore[no-any-return]

    async def model(self, model_id: str) -> ModelSummary:
        return await self._do("models", "retrieve", model_id)  # type: ignore[no-any-return]

    async def versions(self, model_id: str) -> list[ModelVersion]:
        return await self._do("models", "versions", model_id)  # type: ignore[no-any-return]

    async def check(self) -> None:
        if isinstance(self.client, AsyncModzyClient):
            await self.client.check()
        else:
            self.client.check()


@pytest.fixture(scope="session")
def world() -> Sandbox:
    """A read-only sandbox shared by the tests that do not vote."""
    return Sandbox(seed=11, jobs=45, inputs_per_job=3)


@pytest.fixture(scope="session")
def world_server(world: Sandbox) -> Iterator[SandboxServer]:
    with world.serve() as server:
        yield server


def make_api(
    sandbox: Sandbox,
    mode: str,
    stack: AsyncExitStack,
    server: SandboxServer | None,
    **options: Any,
) -> Api:
    sleeps: list[float] = []
    options.setdefault("retry", RetryPolicy(jitter=0.0))
    base_url = server.base_url if server is not None else sandbox.base_url
    if mode.startswith("sync"):
        sync_client = ModzyClient(
            api_key=options.pop("api_key", sandbox.api_key),
            base_url=base_url,
            transport=None if server else sandbox.transport(),
            sleep=sleeps.append,
            **options,
        )
        stack.callback(sync_client.close)
        api = Api(sync_client, mode)
    else:

        async def asleep(seconds: float) -> None:
            sleeps.append(seconds)

        if "aiohttp" in mode:
            from httpx_aiohttp import HttpxAiohttpClient

            given = HttpxAiohttpClient()
            stack.push_async_callback(given.aclose)  # the library never closes it
            options["http_client"] = given
        else:
            options["transport"] = None if server else sandbox.async_transport()
        async_client = AsyncModzyClient(
            api_key=options.pop("api_key", sandbox.api_key),
            base_url=base_url,
            sleep=asleep,
            **options,
        )
        stack.push_async_callback(async_client.aclose)
        api = Api(async_client, mode)
    api.sleeps = sleeps
    return api


@pytest.fixture(params=MODES)
async def api(
    request: pytest.FixtureRequest, world: Sandbox, world_server: SandboxServer
) -> AsyncIterator[Api]:
    mode: str = request.param
    async with AsyncExitStack() as stack:
        yield make_api(world, mode, stack, world_server if mode.endswith("http") else None)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real, throwaway PostgreSQL cluster (``modzy_retrain.sandbox.postgres_server``):
    made once per session when a test first asks for it, on loopback, with its own
    socket folder and port, stopped and removed at the end.

    A machine without PostgreSQL's server binaries fails the tests that need it, with
    what to install: never a skip (CI has them, and a skip would pass unseen).
    """
    cluster = postgres_server()
    try:
        server = cluster.__enter__()
    except PostgresUnavailable as exc:
        pytest.fail(f"these tests need a PostgreSQL server: {exc}", pytrace=False)
    try:
        yield server
    finally:
        cluster.__exit__(None, None, None)
