"""A lineage database that is down or drops the connection: retried within the retry
budget (no real waits: the sleep is recorded), then a typed error, and nothing partial
published. The PostgreSQL cases go through a loopback TCP proxy that cuts connections."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from modzy_retrain import (
    DatabaseError,
    DatabaseRetry,
    DatasetWriter,
    Everything,
    JobHistoryQuery,
    ModzyClient,
    ResultFetcher,
    Sample,
    SqlLineageResolver,
    Stage,
    UpVoted,
    VoteFilter,
    latest_version,
    verify_dataset,
)
from modzy_retrain.sandbox import PostgresServer, Sandbox

from ._tcp_proxy import TcpProxy, tcp_proxy
from .conftest import Db, sample, sandbox_rows

BATCHED = "SELECT job_id, input_name, payload FROM {t} WHERE (job_id, input_name) IN :keys"
NO_JITTER = DatabaseRetry(max_attempts=4, jitter=0.0)


@pytest.fixture
def proxy(postgres: PostgresServer) -> Iterator[TcpProxy]:
    with tcp_proxy(postgres.host, postgres.port) as running:
        yield running


@pytest.fixture
def pg(postgres: PostgresServer) -> Iterator[Db]:
    found = Db("postgresql", postgres.url(), sa.create_engine(postgres.url()))
    yield found
    found.drop()


def through(proxy: TcpProxy) -> str:
    return f"postgresql://postgres@127.0.0.1:{proxy.port}/postgres"


def test_a_sqlite_file_that_cannot_be_opened_is_retried_then_a_typed_error(
    tmp_path: Path,
) -> None:
    sleeps: list[float] = []
    url = f"sqlite:///{tmp_path / 'no-such-folder' / 'x.db'}"
    stage = SqlLineageResolver(url, BATCHED.format(t="t"), retry=NO_JITTER, sleep=sleeps.append)
    with pytest.raises(DatabaseError, match="could not be read after 4 attempts") as caught:
        list(stage([sample("a")]))
    assert caught.value.retryable is True
    assert caught.value.attempts == 4
    assert sleeps == [0.5, 1.0, 2.0]  # doubling, within the budget


def test_a_database_that_is_down_stops_the_run_after_the_retry_budget(proxy: TcpProxy) -> None:
    proxy.refusing = True
    sleeps: list[float] = []
    retry = DatabaseRetry(max_attempts=10, max_total_seconds=5.0, jitter=0.0)
    query = BATCHED.format(t="t")
    stage = SqlLineageResolver(through(proxy), query, retry=retry, sleep=sleeps.append)
    with pytest.raises(DatabaseError) as caught:
        list(stage([sample(f"in-{i}") for i in range(10)]))
    # 0.5 + 1 + 2 = 3.5 s of waits; the next (4 s) would overrun the 5 s budget.
    assert sleeps == [0.5, 1.0, 2.0]
    assert caught.value.attempts == 4
    assert f"postgresql://127.0.0.1:{proxy.port}/postgres" in str(caught.value)
    with pytest.raises(DatabaseError, match="could not be read"):
        stage.check()  # what a build does before any request


class CutAfter(Stage[Sample, Sample]):
    """Passes samples on, and drops every database connection once ``n`` went by."""

    name = "cut"

    def __init__(self, proxy: TcpProxy, n: int, *, down: bool = False) -> None:
        self.proxy, self.n, self.down, self.seen = proxy, n, down, 0

    def process(self, item: Sample) -> Sample:
        self.seen += 1
        if self.seen == self.n:
            self.proxy.refusing = self.down
            self.proxy.cut()
        return item


@pytest.mark.parametrize("form", ["batched", "one-key"])
def test_dropped_connections_are_retried_and_the_run_completes(
    pg: Db, proxy: TcpProxy, form: str
) -> None:
    table = pg.table(
        [{"job_id": "j", "input_name": f"in-{i}", "payload": b"p%d" % i} for i in range(400)]
    )
    query = (
        BATCHED.format(t=table)
        if form == "batched"
        else f"SELECT payload FROM {table} WHERE job_id = :job_id AND input_name = :input_name"
    )
    sleeps: list[float] = []
    stage = SqlLineageResolver(
        through(proxy), query, batch_size=40, concurrency=2, retry=NO_JITTER, sleep=sleeps.append
    )
    samples = [sample(f"in-{i}", job="j") for i in range(400)]
    cuts = CutAfter(proxy, 150)
    it = stage(cuts(samples))
    out = list(it)
    assert [s.payload for s in out] == [b"p%d" % i for i in range(400)]
    assert it.report.drops == []
    assert sleeps, "a dropped connection was retried"
    assert proxy.accepted > 2  # new connections after the cut


def _sandbox_chain(
    sandbox: Sandbox, client: ModzyClient, resolver: Stage[Sample, Sample], *extra: Any
) -> Any:
    chain = JobHistoryQuery(client) | ResultFetcher(client) | VoteFilter(Everything())
    for stage in extra:
        chain = chain | stage
    return chain | resolver


def test_a_database_going_down_mid_build_publishes_nothing(
    pg: Db, proxy: TcpProxy, tmp_path: Path
) -> None:
    sandbox = Sandbox(seed=3, jobs=40)
    table = pg.table(sandbox_rows(sandbox))
    out = str(tmp_path / "dataset")
    sleeps: list[float] = []
    client = ModzyClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.transport()
    )
    with client:
        # A first version, from the up-voted inputs.
        first = SqlLineageResolver(through(proxy), BATCHED.format(t=table), batch_size=16)
        chain = (
            JobHistoryQuery(client)
            | ResultFetcher(client)
            | VoteFilter(UpVoted())
            | first
            | DatasetWriter(out, versioned=True)
        )
        report = chain.run()
        assert report.dataset is not None
        assert report.dataset["version"] == "v0001"
        # Then every input, with the database gone after 30 of them: a typed error.
        resolver = SqlLineageResolver(
            through(proxy),
            BATCHED.format(t=table),
            batch_size=16,
            retry=NO_JITTER,
            sleep=sleeps.append,
        )
        chain = _sandbox_chain(sandbox, client, resolver, CutAfter(proxy, 30, down=True))
        with pytest.raises(DatabaseError):
            (chain | DatasetWriter(out, versioned=True)).run()
    # Each lookup in flight (four at once) retried within its budget, then gave up.
    assert sorted(set(sleeps)) == [0.5, 1.0, 2.0]
    assert latest_version(out) == "v0001"  # nothing partial: the first version stands
    assert not (tmp_path / "dataset" / "v0002").exists()
    assert verify_dataset(out) == []


@pytest.mark.anyio
async def test_the_async_path_stops_with_the_same_typed_error(proxy: TcpProxy) -> None:
    proxy.refusing = True
    sleeps: list[float] = []
    stage = SqlLineageResolver(
        through(proxy), BATCHED.format(t="t"), retry=NO_JITTER, sleep=sleeps.append
    )
    with pytest.raises(DatabaseError):
        [s async for s in stage.astream([sample("a")])]
    assert sleeps == [0.5, 1.0, 2.0]


def test_a_refused_query_is_not_retried(pg: Db) -> None:
    sleeps: list[float] = []
    stage = SqlLineageResolver(
        pg.url, "SELECT payload FROM missing_table WHERE job_id = :job_id", sleep=sleeps.append
    )
    with pytest.raises(DatabaseError, match="refused the lineage query: UndefinedTable"):
        list(stage([sample("a")]))
    assert sleeps == []
