"""The async client's own HTTP/1.1 transport (``_http11``), against real loopback servers
that answer with scripted bytes: framing, keep-alive, the pool, timeouts, cancellation,
TLS, and strict refusal of malformed responses."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import trustme

from modzy_retrain import APIConnectionError, AsyncModzyClient, ModzyClient, RetryPolicy
from modzy_retrain._client.http11 import (
    MAX_HEAD_BYTES,
    READ_HIGH_WATER,
    RECV_BYTES,
    AsyncHTTP11Transport,
    HTTP11Transport,
    ResponseReader,
    _Connection,
    _Protocol,
    parse_head,
    response_framing,
)

pytestmark = pytest.mark.anyio

# The sync transport blocks: its requests run on these threads while the scripted
# servers answer on the test's event loop.
THREADS = ThreadPoolExecutor(max_workers=16, thread_name_prefix="sync-client")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, "Server"], Awaitable[None]]


@dataclass
class Server:
    url: str
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    open_now: int = 0
    most_open: int = 0
    closed_by_client: int = 0


async def read_request(reader: asyncio.StreamReader, server: Server) -> bytes | None:
    """One request head (and its Content-Length body), or None at the end of the stream."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if b"\r\ntransfer-encoding: chunked" in head.lower():
        body = await reader.readuntil(b"0\r\n\r\n")
    else:
        body = await reader.readexactly(length) if length else b""
    server.requests.append(head + body)
    return head + body


@asynccontextmanager
async def serve(handler: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[Server]:
    server = Server(url="")
    handlers: list[tuple[asyncio.Task[None], asyncio.StreamWriter]] = []

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.append((task, writer))
        server.connections += 1
        server.open_now += 1
        server.most_open = max(server.most_open, server.open_now)
        try:
            await handler(reader, writer, server)
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            if reader.at_eof():
                server.closed_by_client += 1
            server.open_now -= 1
            writer.close()

    listener = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield server
    finally:
        listener.close()
        for task, writer in handlers:
            writer.transport.abort()
            task.cancel()
        await asyncio.gather(*(task for task, _ in handlers), return_exceptions=True)
        await listener.wait_closed()


def answering(*responses: bytes, then_close: bool = False) -> Handler:
    """A handler that answers each request on a connection with the next response."""

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, server: Server
    ) -> None:
        for response in responses:
            if await read_request(reader, server) is None:
                return
            writer.write(response)
            await writer.drain()
        if then_close:
            return
        while await read_request(reader, server) is not None:
            writer.write(responses[-1])
            await writer.drain()

    return handler


async def settle(condition: Callable[[], bool]) -> None:
    """Let the loop run until ``condition`` holds; fail if it never does (within 10 s).

    It polls a condition rather than waiting a set time: loop turns alone first, then,
    for what the client threads do, millisecond naps between checks.
    """
    for turn in range(11_000):
        if condition():
            return
        await asyncio.sleep(0 if turn < 1000 else 0.001)
    raise AssertionError("the condition never held")


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
TIMEOUT = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}


class Pool:
    """The sync or the async transport behind one awaitable interface, so that every
    scenario runs against both (the sync one on a thread)."""

    def __init__(self, kind: str, max_connections: int = 8, **kwargs: Any) -> None:
        self.kind = kind
        kwargs.setdefault("ssl_context", ssl.create_default_context())
        cls = AsyncHTTP11Transport if kind == "async" else HTTP11Transport
        self.transport: Any = cls(max_connections=max_connections, **kwargs)

    @property
    def open_connections(self) -> int:
        return int(self.transport.open_connections)

    def idle(self) -> list[Any]:
        return [c for idle in self.transport._state.idle.values() for c in idle]

    async def _thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(THREADS, fn, *args)

    async def send(self, request: httpx.Request) -> httpx.Response:
        if self.kind == "async":
            response: httpx.Response = await self.transport.handle_async_request(request)
            return response
        return await self._thread(self.transport.handle_request, request)  # type: ignore[no-any-return]

    async def read(self, response: httpx.Response) -> bytes:
        if self.kind == "async":
            try:
                return b"".join([chunk async for chunk in response.aiter_bytes()])
            finally:
                await response.aclose()

        def read() -> bytes:
            try:
                return b"".join(response.iter_bytes())
            finally:
                response.close()

        return await self._thread(read)  # type: ignore[no-any-return]

    async def close_unread(self, response: httpx.Response) -> None:
        if self.kind == "async":
            await response.aclose()
        else:
            response.close()

    async def aclose(self) -> None:
        if self.kind == "async":
            await self.transport.aclose()
        else:
            self.transport.close()


@pytest.fixture(params=["sync", "async"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_request(
    url: str, method: str = "GET", timeout: dict[str, float] | None = None, **kwargs: Any
) -> httpx.Request:
    return httpx.Request(method, url, extensions={"timeout": timeout or TIMEOUT}, **kwargs)


async def get(
    pool: Pool,
    url: str,
    *,
    method: str = "GET",
    timeout: dict[str, float] | None = None,
    **kwargs: Any,
) -> tuple[httpx.Response, bytes]:
    response = await pool.send(make_request(url, method, timeout, **kwargs))
    return response, await pool.read(response)


# -- framing and keep-alive ---------------------------------------------------------------


async def test_keep_alive_reuses_one_connection_and_sends_the_request_as_given(kind: str) -> None:
    async with serve(answering(OK)) as server:
        pool = Pool(kind)
        for _ in range(3):
            response, body = await get(pool, server.url + "/api/x?a=1", headers={"X-Y": "z"})
            assert (response.status_code, response.reason_phrase, body) == (200, "OK", b"hello")
            assert response.http_version == "HTTP/1.1"
        await pool.aclose()
    assert server.connections == 1
    first = server.requests[0]
    assert first.startswith(b"GET /api/x?a=1 HTTP/1.1\r\n")
    assert b"\r\nHost: 127.0.0.1:" in first
    assert b"\r\nX-Y: z\r\n" in first


async def test_a_chunked_body_arriving_byte_by_byte_is_put_together(kind: str) -> None:
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n0\r\nX-Trailer: t\r\n\r\n"
    )

    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        while await read_request(reader, s) is not None:
            for i in range(len(raw)):
                writer.write(raw[i : i + 1])
                await writer.drain()

    async with serve(handler) as server:
        pool = Pool(kind)
        for _ in range(2):
            _, body = await get(pool, server.url)
            assert body == b"hello world!"
        await pool.aclose()
    assert server.connections == 1  # chunked framing keeps the connection


async def test_a_body_without_length_ends_with_the_connection_which_is_not_reused(
    kind: str,
) -> None:
    async with serve(answering(b"HTTP/1.1 200 OK\r\n\r\nall of it", then_close=True)) as server:
        pool = Pool(kind)
        for _ in range(2):
            _, body = await get(pool, server.url)
            assert body == b"all of it"
        await pool.aclose()
    assert server.connections == 2


@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello",
        # Both framings at once: the chunked one is read, the connection never trusted again.
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"
        b"5\r\nhello\r\n0\r\n\r\n",
    ],
)
async def test_connections_the_server_does_not_keep_are_not_reused(
    kind: str, response: bytes
) -> None:
    async with serve(answering(response)) as server:
        pool = Pool(kind)
        for _ in range(2):
            _, body = await get(pool, server.url)
            assert body == b"hello"
        await pool.aclose()
    assert server.connections == 2


async def test_http_1_0_keep_alive_is_honoured(kind: str) -> None:
    response = b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 5\r\n\r\nhello"
    async with serve(answering(response)) as server:
        pool = Pool(kind)
        for _ in range(2):
            await get(pool, server.url)
        await pool.aclose()
    assert server.connections == 1


async def test_interim_responses_are_skipped_and_bodiless_answers_read_nothing(
    kind: str,
) -> None:
    early = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    no_content = b"HTTP/1.1 204 No Content\r\nContent-Length: 99\r\n\r\n"
    async with serve(answering(early + OK, no_content, OK)) as server:
        pool = Pool(kind)
        assert (await get(pool, server.url))[1] == b"hello"
        response, body = await get(pool, server.url)
        assert (response.status_code, body) == (204, b"")
        response, body = await get(pool, server.url, method="HEAD")
        assert (response.status_code, body) == (200, b"")
        await pool.aclose()
    assert server.connections == 1


async def test_request_bodies_are_sent_with_their_length_or_chunked(kind: str) -> None:
    async def astream() -> AsyncIterator[bytes]:
        yield b"part one, "
        yield b"part two"

    def stream() -> Iterator[bytes]:
        yield b"part one, "
        yield b"part two"

    async with serve(answering(OK)) as server:
        pool = Pool(kind)
        await get(pool, server.url, method="POST", content=b"payload")
        await get(
            pool, server.url, method="POST", content=astream() if kind == "async" else stream()
        )
        await pool.aclose()
    assert server.requests[0].endswith(b"Content-Length: 7\r\n\r\npayload")
    assert server.requests[1].endswith(
        b"Transfer-Encoding: chunked\r\n\r\n12\r\npart one, part two\r\n0\r\n\r\n"
    )


async def test_a_large_body_flows_through_with_bounded_buffering(kind: str) -> None:
    blob = bytes(range(256)) * (5 * 4096)  # 5 MiB, five times the read high-water mark
    response = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(blob) + blob
    async with serve(answering(response)) as server:
        pool = Pool(kind)
        answer = await pool.send(make_request(server.url))
        reader: ResponseReader = answer.stream._connection.reader  # type: ignore[attr-defined]
        buffered = []
        digest = hashlib.sha256()
        if kind == "async":
            async for chunk in answer.aiter_raw():
                digest.update(chunk)
                for _ in range(50):  # a slow reader: the socket has time to fill the buffer
                    await asyncio.sleep(0)
                buffered.append(len(reader.buffer))
            bound = READ_HIGH_WATER + 512 * 1024  # reading paused near the mark
        else:

            def read() -> None:
                for chunk in answer.iter_raw():
                    digest.update(chunk)
                    buffered.append(len(reader.buffer))

            await pool._thread(read)
            bound = RECV_BYTES  # read only when asked, one recv at a time
        await pool.close_unread(answer)
        await pool.aclose()
    assert digest.digest() == hashlib.sha256(blob).digest()
    assert max(buffered) <= bound


async def test_gzip_bodies_are_decoded_by_httpx(kind: str) -> None:
    import gzip

    packed = gzip.compress(b"hello" * 1000)
    response = (
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(packed)
    ) + packed
    async with serve(answering(response)) as server:
        pool = Pool(kind)
        assert (await get(pool, server.url))[1] == b"hello" * 1000
        await pool.aclose()


# -- malformed and truncated responses --------------------------------------------------------

MALFORMED = {
    "status line": b"HTTP/1.1 OK\r\n\r\n",
    "version": b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    "folded header": b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    "no colon": b"HTTP/1.1 200 OK\r\nnonsense\r\nContent-Length: 0\r\n\r\n",
    "space before colon": b"HTTP/1.1 200 OK\r\nContent-Length : 0\r\n\r\n",
    "NUL in value": b"HTTP/1.1 200 OK\r\nX: a\x00b\r\nContent-Length: 0\r\n\r\n",
    "conflicting lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "length list": b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\nab",
    "negative length": b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    "other coding": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    "bad chunk size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "chunk overrun": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n",
    "unasked switch": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
    "head too large": b"HTTP/1.1 200 OK\r\nX: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n",
    "truncated body": b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
    "truncated head": b"HTTP/1.1 200 OK\r\nContent-Le",
    "status below 100": b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
    "control in reason": b"HTTP/1.1 200 O\x01K\r\nContent-Length: 0\r\n\r\n",
    "no response": b"",
}


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
async def test_malformed_responses_are_protocol_errors_and_the_connection_is_dropped(
    kind: str, raw: bytes
) -> None:
    async with serve(answering(raw, then_close=True)) as server:
        pool = Pool(kind)
        with pytest.raises(httpx.RemoteProtocolError):
            await get(pool, server.url)
        assert pool.open_connections == 0
        await pool.aclose()


@pytest.mark.parametrize("raw", MALFORMED.values(), ids=MALFORMED.keys())
async def test_the_client_retries_a_malformed_answer_and_names_it(kind: str, raw: bytes) -> None:
    retry = RetryPolicy(max_attempts=2, initial_wait=0, max_wait=0)
    async with serve(answering(raw, then_close=True)) as server:
        if kind == "async":

            async def sleep(seconds: float) -> None:
                pass

            async with AsyncModzyClient(
                api_key="abc.SECRETPART", base_url=server.url, retry=retry, sleep=sleep
            ) as client:
                with pytest.raises(APIConnectionError, match="RemoteProtocolError") as info:
                    await client.models.list()
        else:

            def call() -> None:
                with ModzyClient(
                    api_key="abc.SECRETPART", base_url=server.url, retry=retry, sleep=lambda s: None
                ) as client:
                    client.models.list()

            with pytest.raises(APIConnectionError, match="RemoteProtocolError") as info:
                await asyncio.get_running_loop().run_in_executor(THREADS, call)
    assert "SECRETPART" not in str(info.value)
    assert server.connections == 2  # retried, on a fresh connection


async def test_a_connection_the_server_closed_while_idle_is_not_reused(kind: str) -> None:
    async with serve(answering(OK, then_close=True)) as server:
        pool = Pool(kind)
        await get(pool, server.url)
        await settle(lambda: server.open_now == 0)  # the server has closed its side
        if kind == "async":  # and the loop has seen the FIN
            await settle(lambda: all(c.reader.eof for c in pool.idle()))
        assert (await get(pool, server.url))[1] == b"hello"
        await pool.aclose()
    assert server.connections == 2


async def test_an_idle_connection_past_its_expiry_is_not_reused(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modzy_retrain import _http11

    now = [1000.0]
    monkeypatch.setattr(_http11.time, "monotonic", lambda: now[0])
    async with serve(answering(OK)) as server:
        pool = Pool(kind, keepalive_expiry=5.0)
        await get(pool, server.url)
        now[0] += 4.0
        await get(pool, server.url)
        assert server.connections == 1
        now[0] += 5.5
        await get(pool, server.url)
        assert server.connections == 2
        await pool.aclose()


async def test_a_body_left_unread_closes_its_connection(kind: str) -> None:
    async with serve(answering(OK)) as server:
        pool = Pool(kind)
        response = await pool.send(make_request(server.url))
        await pool.close_unread(response)
        assert pool.open_connections == 0
        await get(pool, server.url)
        await pool.aclose()
    assert server.connections == 2


# -- the pool, timeouts, cancellation ------------------------------------------------------------


def held(release: asyncio.Event) -> Handler:
    async def handler(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, s: Server
    ) -> None:
        while await read_request(reader, s) is not None:
            await release.wait()
            writer.write(OK)
            await writer.drain()

    return handler


async def test_no_more_connections_than_the_bound_and_every_request_is_served(
    kind: str,
) -> None:
    release = asyncio.Event()
    async with serve(held(release)) as server:
        pool = Pool(kind, max_connections=2)
        tasks = [asyncio.ensure_future(get(pool, server.url)) for _ in range(7)]
        await settle(lambda: len(server.requests) == 2)
        for _ in range(50):
            await asyncio.sleep(0)
        assert server.open_now == 2
        assert len(server.requests) == 2  # five wait for the pool
        release.set()
        bodies = [body for _, body in await asyncio.gather(*tasks)]
        await pool.aclose()
    assert bodies == [b"hello"] * 7
    assert server.most_open == 2


async def test_requests_waiting_for_the_pool_are_served_first_come_first_served(
    kind: str,
) -> None:
    # One connection; a worker that asks again the moment it releases it (the fetcher's
    # threads and tasks do); a request that arrived meanwhile goes next, not last.
    release = asyncio.Event()
    async with serve(held(release)) as server:
        pool = Pool(kind, max_connections=1)
        if kind == "async":

            async def worker() -> None:
                for i in range(4):
                    await get(pool, f"{server.url}/w{i}")

            working = asyncio.ensure_future(worker())
        else:

            def work() -> None:
                for i in range(4):
                    response = pool.transport.handle_request(make_request(f"{server.url}/w{i}"))
                    response.read()
                    response.close()

            working = asyncio.ensure_future(pool._thread(work))
        await settle(lambda: len(server.requests) == 1)
        late = asyncio.ensure_future(get(pool, server.url + "/late"))
        await settle(lambda: len(pool.transport._queue) == 1)
        release.set()
        await asyncio.gather(working, late)
        await pool.aclose()
    paths = [r.split(b" ")[1] for r in server.requests]
    assert paths == [b"/w0", b"/late", b"/w1", b"/w2", b"/w3"]


async def test_a_request_waiting_for_the_pool_times_out_as_a_pool_timeout(kind: str) -> None:
    release = asyncio.Event()
    async with serve(held(release)) as server:
        pool = Pool(kind, max_connections=1)
        first = asyncio.ensure_future(get(pool, server.url))
        await settle(lambda: bool(server.requests))
        with pytest.raises(httpx.PoolTimeout):
            await get(pool, server.url, timeout={**TIMEOUT, "pool": 0.0})
        release.set()
        assert (await first)[1] == b"hello"
        await pool.aclose()


async def test_a_server_that_never_answers_is_a_read_timeout(kind: str) -> None:
    release = asyncio.Event()
    async with serve(held(release)) as server:
        pool = Pool(kind)
        with pytest.raises(httpx.ReadTimeout):
            await get(pool, server.url, timeout={**TIMEOUT, "read": 0.0})
        assert pool.open_connections == 0
        release.set()
        await pool.aclose()


async def test_a_cancelled_request_closes_its_connection_and_frees_its_place() -> None:
    release = asyncio.Event()
    async with serve(held(release)) as server:
        pool = Pool("async", max_connections=1)
        task = asyncio.ensure_future(get(pool, server.url))
        waiting = asyncio.ensure_future(get(pool, server.url))  # queued behind it
        await settle(lambda: bool(server.requests))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        assert (await waiting)[1] == b"hello"
        await pool.aclose()
    assert server.connections == 2  # the cancelled one was closed, not reused


async def test_a_refused_connection_is_a_connect_error(kind: str) -> None:
    async with serve(answering(OK)) as server:
        url = server.url
    pool = Pool(kind)
    with pytest.raises(httpx.ConnectError, match=r"127\.0\.0\.1"):
        await get(pool, url)
    assert pool.open_connections == 0
    await pool.aclose()


async def test_closing_the_transport_closes_idle_connections_and_refuses_more(kind: str) -> None:
    async with serve(answering(OK)) as server:
        pool = Pool(kind)
        await get(pool, server.url)
        await pool.aclose()
        await settle(lambda: server.closed_by_client == 1)
        with pytest.raises(RuntimeError, match="closed"):
            await get(pool, server.url)


@pytest.mark.parametrize("value", ["a\r\nX-Injected: 1", "a\nb", "a\x00b"])
async def test_header_values_that_would_split_the_request_are_refused_unsent(
    kind: str, value: str
) -> None:
    async with serve(answering(OK)) as server:
        pool = Pool(kind)
        with pytest.raises(httpx.LocalProtocolError) as info:
            await get(pool, server.url, headers={"Authorization": value})
        await pool.aclose()
    assert value not in str(info.value)  # the value may be a secret
    assert server.requests == []


# -- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate_authority() -> trustme.CA:
    return trustme.CA()


def tls_server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    return context


async def test_tls_is_verified_against_the_context_and_connections_are_kept(
    kind: str, certificate_authority: trustme.CA
) -> None:
    async with serve(answering(OK), tls=tls_server_context(certificate_authority)) as server:
        trusted = ssl.create_default_context()
        certificate_authority.configure_trust(trusted)
        pool = Pool(kind, max_connections=4, ssl_context=trusted)
        for _ in range(2):
            response, body = await get(pool, server.url)
            assert (response.status_code, body) == (200, b"hello")
        await pool.aclose()
        assert server.connections == 1

        untrusted = Pool(kind)  # the system's CAs, which do not know this one
        with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
            await get(untrusted, server.url)
        assert untrusted.open_connections == 0
        await untrusted.aclose()


# -- the parser on its own ---------------------------------------------------------------------


def test_parse_head_keeps_names_and_values_as_sent() -> None:
    version, status, reason, headers = parse_head(
        b"HTTP/1.1 404 Not Found\r\nContent-Type:  application/json \r\nX-Empty:"
    )
    assert (version, status, reason) == (1, 404, b"Not Found")
    assert headers == [(b"Content-Type", b"application/json"), (b"X-Empty", b"")]
    assert parse_head(b"HTTP/1.1 200")[2] == b""  # a reason phrase is optional


def test_framing_follows_rfc_9112() -> None:
    def framing(method: str, version: int, status: int, *headers: tuple[bytes, bytes]) -> object:
        f, keep = response_framing(method, version, status, list(headers))
        return f.length, f.chunked, keep

    assert framing("GET", 1, 200, (b"Content-Length", b"7")) == (7, False, True)
    assert framing("GET", 1, 200, (b"content-length", b"7, 7")) == (7, False, True)
    assert framing("GET", 1, 200, (b"Transfer-Encoding", b"Chunked")) == (None, True, True)
    assert framing("GET", 1, 200) == (None, False, False)
    assert framing("HEAD", 1, 200, (b"Content-Length", b"7")) == (0, False, True)
    assert framing("GET", 1, 304, (b"Content-Length", b"7")) == (0, False, True)
    closing = framing(
        "GET", 1, 200, (b"Connection", b"Keep-Alive, Close"), (b"Content-Length", b"0")
    )
    assert closing == (0, False, False)


def test_a_head_trickling_in_is_not_scanned_again_and_again() -> None:
    reader = ResponseReader()
    head = b"HTTP/1.1 200 OK\r\nX: " + b"a" * 30_000 + b"\r\nContent-Length: 0\r\n\r\n"
    for i in range(len(head) - 1):
        reader.feed(head[i : i + 1])
        assert reader.head("GET") is None
        assert reader._scanned == i + 1
    reader.feed(head[-1:])
    assert reader.head("GET") is not None
    assert reader.body() == b""


async def test_a_read_wait_ends_when_the_peer_goes_away() -> None:
    reader = ResponseReader()
    connection = _Connection(("http", "h", 80), _Protocol(reader))
    waiting = asyncio.ensure_future(connection.read_head("GET", None))
    await asyncio.sleep(0)
    connection.protocol.connection_lost(ConnectionResetError("reset by peer"))
    with pytest.raises(httpx.ReadError, match="reset by peer"):
        await waiting


# The finished loop's connection is shut down at once but its descriptor is closed by
# the garbage collector, with asyncio's ResourceWarning (docs/client.md).
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_an_async_client_kept_across_event_loops_works_in_each() -> None:
    # A notebook or script calling asyncio.run() more than once with one client: the
    # idle connection of the first loop must not serve a request on the second (its
    # callbacks would never run there).
    from modzy_retrain.sandbox import Sandbox

    sandbox = Sandbox(seed=3, jobs=4)
    with sandbox.serve() as server:
        client = AsyncModzyClient(
            api_key=sandbox.api_key,
            base_url=server.base_url,
            timeout=httpx.Timeout(5.0),
            retry=RetryPolicy.disabled(),
        )

        async def names() -> list[str]:
            return [m.name for m in await client.models.list()]

        first = asyncio.run(names())
        [stale] = client._pools[0]._state.idle[next(iter(client._pools[0]._state.idle))]
        second = asyncio.run(names())
        asyncio.run(client.aclose())
    assert first == second
    assert first
    assert stale.protocol.transport is None  # dropped, shut down
    gc.collect()  # its descriptor is closed here, inside this test's warning filters


def test_interim_answers_are_bounded_per_response_however_they_arrive() -> None:
    from modzy_retrain._client.http11 import MAX_INTERIM_RESPONSES

    reader = ResponseReader()
    for _ in range(MAX_INTERIM_RESPONSES):
        reader.feed(b"HTTP/1.1 103 Early Hints\r\n\r\n")
        assert reader.head("GET") is None
    reader.feed(b"HTTP/1.1 103 Early Hints\r\n\r\n")
    with pytest.raises(httpx.RemoteProtocolError, match="interim"):
        reader.head("GET")


def test_international_hosts_connect_to_the_name_httpx_sends() -> None:
    from modzy_retrain._client.http11 import _origin

    # IDNA 2008, as in the Host header; Python's own codec would say "fass.de".
    assert _origin(httpx.Request("GET", "https://faß.de/api"))[1] == "xn--fa-hia.de"
    assert _origin(httpx.Request("GET", "http://[::1]:8080/api")) == ("http", "::1", 8080)


async def test_reading_paused_by_a_large_body_resumes_once_it_is_read() -> None:
    class Transport:
        paused = False

        def pause_reading(self) -> None:
            self.paused = True

        def resume_reading(self) -> None:
            self.paused = False

        def is_closing(self) -> bool:
            return False

    reader = ResponseReader()
    protocol = _Protocol(reader)
    transport = Transport()
    protocol.transport = transport  # type: ignore[assignment]
    connection = _Connection(("http", "h", 80), protocol)
    body = b"x" * (READ_HIGH_WATER + 10)
    protocol.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    assert transport.paused  # all of it arrived at once
    await connection.read_head("GET", None)
    assert b"".join([piece async for piece in connection.read_body(None)]) == body
    assert not transport.paused  # idle, it must still hear the server close it
