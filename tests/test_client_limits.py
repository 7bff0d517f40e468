"""Resource limits: a response body over ``max_response_bytes`` is refused, not read."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from modzy_retrain import (
    AsyncModzyClient,
    ConfigurationError,
    ModzyClient,
    ResponseTooLargeError,
    ResponseValidationError,
    ResultFetcher,
)
from modzy_retrain._client import calls as _calls
from modzy_retrain._stages.report import RESULTS_UNAVAILABLE
from modzy_retrain.sandbox import Sandbox

KEY = "AbCdEfGhIj0123456789.ZyXwVuTsRq9876543210"
LIMIT = 1000


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body served in chunks, counting how many the client pulled."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.pulled = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            self.pulled += 1
            yield chunk


def serve(stream: Chunks, headers: dict[str, str], seen: list[httpx.Request]) -> object:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, headers=headers, stream=stream)

    return handler


CASES = {
    # Declared too large: refused before a single chunk is read.
    "declared": (Chunks([b"x" * 600] * 4), {"Content-Length": "2400"}, 0),
    # Chunked, no length: refused on the chunk that passes the limit.
    "streamed": (Chunks([b"x" * 600] * 100), {}, 2),
    # A small gzip body that inflates past the limit: counted after decompression.
    "inflated": (
        Chunks([gzip.compress(b"[" + b"0," * 5000 + b"0]")]),
        {"Content-Encoding": "gzip"},
        1,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_sync_client_refuses_a_body_over_the_limit(case: str) -> None:
    stream, headers, pulled = CASES[case]
    stream.pulled = 0
    seen: list[httpx.Request] = []
    client = ModzyClient(
        api_key=KEY,
        base_url="https://modzy.invalid",
        transport=httpx.MockTransport(serve(stream, headers, seen)),  # type: ignore[arg-type]
        max_response_bytes=LIMIT,
    )
    with client, pytest.raises(ResponseTooLargeError) as info:
        client.models.list()
    assert info.value.limit == LIMIT
    assert info.value.size == (2400 if case == "declared" else None)
    assert "max_response_bytes" in str(info.value)
    assert stream.pulled == pulled
    assert len(seen) == 1  # not retried: the same request would get the same body


@pytest.mark.anyio
@pytest.mark.parametrize("case", sorted(CASES))
async def test_async_client_refuses_a_body_over_the_limit(case: str) -> None:
    stream, headers, pulled = CASES[case]
    stream.pulled = 0
    seen: list[httpx.Request] = []
    handler = serve(stream, headers, seen)

    async def ahandler(request: httpx.Request) -> httpx.Response:
        return handler(request)  # type: ignore[operator, no-any-return]

    async with AsyncModzyClient(
        api_key=KEY,
        base_url="https://modzy.invalid",
        transport=httpx.MockTransport(ahandler),
        max_response_bytes=LIMIT,
    ) as client:
        with pytest.raises(ResponseTooLargeError):
            await client.models.list()
    assert stream.pulled == pulled
    assert len(seen) == 1


def test_a_body_at_the_limit_is_accepted() -> None:
    body = json.dumps(["m" * (LIMIT - 4)]).encode()
    assert len(body) == LIMIT
    client = ModzyClient(
        api_key=KEY,
        base_url="https://modzy.invalid",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body)),
        max_response_bytes=LIMIT,
    )
    with client, pytest.raises(ResponseValidationError) as info:
        client.models.list()
    # It was read and parsed (a list of strings is not a list of models).
    assert not isinstance(info.value, ResponseTooLargeError)
    with pytest.raises(ConfigurationError):
        ModzyClient(api_key=KEY, base_url="https://h", max_response_bytes=0)


def test_a_job_with_too_large_results_is_reported_and_the_rest_goes_on() -> None:
    sandbox = Sandbox(seed=5, jobs=12)
    inner = sandbox.transport()
    with ModzyClient(
        api_key=sandbox.api_key, base_url="http://sandbox.invalid", transport=inner
    ) as probe:
        jobs = [j for j in probe.jobs.history() if j.is_finished]
    big = jobs[3].job_id

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith(f"/results/{big}"):
            return httpx.Response(200, content=b"[" + b"1," * 40_000 + b"1]")
        response = inner.handle_request(request)
        response.read()
        return httpx.Response(
            response.status_code, headers=response.headers, content=response.content
        )

    def run(limit: int) -> tuple[list[tuple[str, str]], list[str]]:
        with ModzyClient(
            api_key=sandbox.api_key,
            base_url="http://sandbox.invalid",
            transport=httpx.MockTransport(handler),
            max_response_bytes=limit,
        ) as client:
            it = ResultFetcher(client, concurrency=4)(jobs)
            keys = [r.key for r in it]
        unavailable = [d.detail for d in it.report.drops if d.reason == RESULTS_UNAVAILABLE]
        return keys, unavailable

    limited, unavailable = run(50_000)
    assert unavailable
    assert all(detail.startswith("ResponseTooLargeError: GET /results/") for detail in unavailable)
    assert all(big in detail for detail in unavailable)
    unlimited, _ = run(10_000_000)  # the big body then fails to parse instead
    assert limited == [key for key in unlimited if key[0] != big]
    assert limited


def test_lone_surrogates_are_replaced_at_decoding_and_pairs_kept() -> None:
    # JSON may escape half a UTF-16 pair; no encoder takes the decoded string, so it
    # could never be written to a dataset. A real pair (an emoji) is left alone.
    body = b'{"a\\ud800b": ["x\\uDC00", "\\ud83d\\ude00", "plain"], "n": 1}'
    client = ModzyClient(
        api_key=KEY,
        base_url="https://modzy.invalid",
        transport=httpx.MockTransport(lambda r: httpx.Response(200, content=body)),
    )
    with client:
        data = client.call(_calls.Call("GET", "/anything", lambda d: d))
    assert data == {"a\ufffdb": ["x\ufffd", "\U0001f600", "plain"], "n": 1}
    json.dumps(data, ensure_ascii=False).encode("utf-8")  # writable now
