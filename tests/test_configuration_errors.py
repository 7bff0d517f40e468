"""One error family for bad arguments: every invalid argument of every stage and client
raises ConfigurationError (also a ValueError), when the object is built, naming the
argument and never echoing a secret."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta

import httpx
import pytest

import modzy_retrain as mr
from modzy_retrain.sandbox import Sandbox

SECRET = "Secret0123456789abcdef"
KEY = f"Prefix0123.{SECRET}"


@pytest.fixture(scope="module")
def client() -> mr.ModzyClient:
    sandbox = Sandbox(seed=0, jobs=3)
    return mr.ModzyClient(
        api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.transport()
    )


def _client(**kw: object) -> Callable[[mr.ModzyClient], object]:
    return lambda c: mr.ModzyClient(api_key=KEY, base_url="https://modzy.invalid", **kw)  # type: ignore[arg-type]


CASES: dict[str, tuple[Callable[[mr.ModzyClient], object], str]] = {
    # clients
    "blank key": (lambda c: mr.ModzyClient(api_key=" ", base_url="https://h"), "no API key"),
    "base URL scheme": (lambda c: mr.ModzyClient(api_key=KEY, base_url="ftp://h"), "base URL"),
    "max_connections": (_client(max_connections=0), "max_connections"),
    "max_response_bytes": (_client(max_response_bytes=0), "max_response_bytes"),
    "timeout text": (_client(timeout="soon"), "timeout"),
    "timeout negative": (_client(timeout=-1), "timeout"),
    "retry not a policy": (_client(retry=3), "RetryPolicy"),
    "http_client kind": (_client(http_client=httpx.AsyncClient()), "http_client"),
    "async http_client kind": (
        lambda c: mr.AsyncModzyClient(
            api_key=KEY,
            base_url="https://h",
            http_client=httpx.Client(),  # type: ignore[arg-type]
        ),
        "http_client",
    ),
    "retry attempts": (lambda c: mr.RetryPolicy(max_attempts=0), "max_attempts"),
    "retry wait": (lambda c: mr.RetryPolicy(initial_wait=-1), "initial_wait"),
    "retry unknown field": (lambda c: mr.RetryPolicy(attempts=3), "attempts"),  # type: ignore[call-arg]
    # the history, through the client and the query
    "history filter typo": (lambda c: c.jobs.history(modle_id="x"), "did you mean 'model_id'"),  # type: ignore[call-arg]
    "history page number": (lambda c: c.jobs.history().page(0), "numbered from 1"),
    "naive start": (lambda c: mr.JobHistoryQuery(c, start=datetime(2024, 1, 1)), "start"),
    "negative lag": (lambda c: mr.JobHistoryQuery(c, lag=timedelta(days=-1)), "lag"),
    "lag not a timedelta": (lambda c: mr.JobHistoryQuery(c, lag=3), "lag"),  # type: ignore[arg-type]
    "unknown status": (lambda c: mr.JobHistoryQuery(c, status="nope"), "status"),
    "page size": (lambda c: mr.JobHistoryQuery(c, page_size=0), "page_size"),
    "query filter typo": (lambda c: mr.JobHistoryQuery(c, users="x"), "did you mean 'user'"),  # type: ignore[call-arg]
    "query client": (lambda c: mr.JobHistoryQuery("nope"), "ModzyClient"),  # type: ignore[arg-type]
    # fetcher
    "fetch concurrency": (lambda c: mr.ResultFetcher(c, concurrency=0), "concurrency"),
    "fetch client": (lambda c: mr.ResultFetcher(None), "ModzyClient"),  # type: ignore[arg-type]
    # selectors and the vote filter
    "selector class": (lambda c: mr.VoteFilter(mr.DownVoted), "DownVoted()"),  # type: ignore[arg-type]
    "selector text": (lambda c: mr.VoteFilter("down-voted"), "Selector"),  # type: ignore[arg-type]
    "combined class": (lambda c: mr.AnyOf(mr.UpVoted(), mr.DownVoted), "DownVoted()"),  # type: ignore[arg-type]
    "policy class": (lambda c: mr.VoteFilter(policy=mr.LabelPolicy), "LabelPolicy"),  # type: ignore[arg-type]
    "top score above 1": (lambda c: mr.TopScoreBelow(1.5), "between 0 and 1"),
    "top score not a number": (lambda c: mr.TopScoreBelow("0.5"), "number"),  # type: ignore[arg-type]
    "min votes negative": (lambda c: mr.MinVotes(-1), "MinVotes"),
    "net score bounds": (lambda c: mr.NetScore(at_least=3, at_most=1), "above at_most"),
    "down share": (lambda c: mr.DownShare(2), "between 0 and 1"),
    "predicted in text": (lambda c: mr.PredictedIn("cat"), "list of labels"),
    "predicted in empty": (lambda c: mr.PredictedIn([]), "one or more"),
    "agreement": (lambda c: mr.LabelPolicy(min_agreement=0.2), "min_agreement"),
    "selector name": (lambda c: mr.selector_by_name("nope"), "unknown selector"),
    # lineage
    "lineage nothing": (lambda c: mr.LineageResolver(), "needs a template"),
    "lineage field": (lambda c: mr.LineageResolver("/data/{nope}"), "unknown field"),
    "lineage concurrency": (
        lambda c: mr.LineageResolver("/d/{input_name}", concurrency=0),
        "concurrency",
    ),
    "lineage max_bytes": (
        lambda c: mr.LineageResolver("/d/{input_name}", max_bytes=0),
        "max_bytes",
    ),
    # lineage through a database
    "sql query field": (
        lambda c: mr.SqlLineageResolver("sqlite:////tmp/x.db", "SELECT url FROM t WHERE a = :b"),
        ":b",
    ),
    "sql password in url": (
        lambda c: mr.SqlLineageResolver(
            f"postgresql://u:{SECRET}@db/prod", "SELECT url FROM t WHERE a = :job_id"
        ),
        "holds a password",
    ),
    "sql password env": (
        lambda c: mr.SqlLineageResolver(
            "postgresql://u@db/prod",
            "SELECT url FROM t WHERE a = :job_id",
            password_env="MODZY_RETRAIN_UNSET_PASSWORD_VARIABLE",
        ),
        "is not set",
    ),
    "sql retry": (lambda c: mr.DatabaseRetry(max_attempts=0), "max_attempts"),
    # writer
    "writer format": (lambda c: mr.DatasetWriter("/tmp/x", format="nope"), "format"),  # type: ignore[arg-type]
    "writer splits": (lambda c: mr.DatasetWriter("/tmp/x", splits={"train": 2.0}), "split"),
    "writer mode": (lambda c: mr.DatasetWriter("/tmp/x", mode="nope"), "mode"),  # type: ignore[arg-type]
    "writer concurrency": (lambda c: mr.DatasetWriter("/tmp/x", concurrency=0), "concurrency"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_every_invalid_argument_is_a_configuration_error(case: str, client: mr.ModzyClient) -> None:
    build, words = CASES[case]
    with pytest.raises(mr.ConfigurationError, match=re.escape(words)) as info:
        build(client)
    assert isinstance(info.value, ValueError)  # existing `except ValueError` code still works
    assert isinstance(info.value, mr.ModzyRetrainError)
    assert SECRET not in str(info.value)


def test_the_family_tree() -> None:
    assert issubclass(mr.InvalidQueryError, mr.ConfigurationError)
    assert issubclass(mr.LineageError, mr.ConfigurationError)
    assert issubclass(mr.DatabaseError, mr.ModzyRetrainError)
    assert not issubclass(mr.DatabaseError, mr.ConfigurationError)  # exit 1, not 2
    assert issubclass(mr.UnsafeNameError, mr.ModzyRetrainError)
    assert issubclass(mr.UnsafeNameError, ValueError)


def test_a_storage_option_value_is_never_echoed_by_an_options_error() -> None:
    class Options(mr.RetryPolicy):
        pass

    with pytest.raises(mr.ConfigurationError) as info:
        Options(max_attempts=SECRET)  # type: ignore[arg-type]
    assert SECRET not in str(info.value)
    assert "max_attempts" in str(info.value)
