"""A sandbox with some answers replaced: hostile bodies, slow drips, endless histories.

``Scripted`` wraps a :class:`Sandbox`: a request that ``override`` answers gets that
:class:`Reply`, every other one the sandbox's own answer. It serves in process (an
httpx transport for either client) and over real HTTP on loopback (a tiny asyncio
server in a thread, so a drip is real bytes on a real socket), so the same scenario runs
the five ways the shared client scenarios do (conftest's ``MODES``).

A drip sends the body one byte every ``drip`` seconds; ``endless`` keeps sending after
the body (the declared length is then a lie that no client reaches). Nothing here
sleeps but the drip itself, and only while a client is still reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

import httpx

from modzy_retrain import AsyncModzyClient, ModzyClient, RetryPolicy
from modzy_retrain.sandbox import Sandbox

from .conftest import Api


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drip: float | None = None  # seconds between bytes
    endless: bool = False  # keep dripping past the body
    drip_head: bool = False  # drip the status line and headers too (over HTTP only)


Override = Callable[[httpx.Request], "Reply | None"]


class _Drip(httpx.SyncByteStream, httpx.AsyncByteStream):
    def __init__(self, reply: Reply) -> None:
        self.reply = reply

    def _bytes(self) -> Iterator[bytes]:
        index = 0
        while self.reply.endless or index < len(self.reply.body):
            yield self.reply.body[index : index + 1] or b" "
            index += 1

    def __iter__(self) -> Iterator[bytes]:
        for byte in self._bytes():
            time.sleep(self.reply.drip or 0)
            yield byte

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for byte in self._bytes():
            await asyncio.sleep(self.reply.drip or 0)
            yield byte


class Scripted:
    """A sandbox whose answers ``override`` may replace; it records every request path."""

    def __init__(self, sandbox: Sandbox, override: Override) -> None:
        self.sandbox = sandbox
        self.override = override
        self.paths: list[str] = []
        self._inner = sandbox.transport()
        self._lock = threading.Lock()
        self._writers: set[asyncio.StreamWriter] = set()

    def count(self, suffix: str) -> int:
        return sum(1 for p in self.paths if p.endswith(suffix))

    def answer(self, request: httpx.Request) -> Reply:
        with self._lock:
            self.paths.append(request.url.path)
        reply = self.override(request)
        if reply is not None:
            return reply
        response = self._inner.handle_request(request)
        response.read()
        headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
        return Reply(response.status_code, response.content, headers)

    # -- in process ---------------------------------------------------------------------

    def response(self, request: httpx.Request) -> httpx.Response:
        reply = self.answer(request)
        if reply.drip is None:
            return httpx.Response(reply.status, headers=reply.headers, content=reply.body)
        headers = {**reply.headers, "Content-Length": str(len(reply.body))}
        return httpx.Response(reply.status, headers=headers, stream=_Drip(reply))

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.response)

    def async_transport(self) -> httpx.MockTransport:
        async def handler(request: httpx.Request) -> httpx.Response:
            return self.response(request)

        return httpx.MockTransport(handler)

    # -- over loopback HTTP -------------------------------------------------------------

    @contextlib.contextmanager
    def serve(self) -> Iterator[str]:
        """Serve on 127.0.0.1 from a thread; yields the base URL."""
        loop = asyncio.new_event_loop()
        started = threading.Event()
        port: list[int] = []
        stop: list[asyncio.Event] = []

        async def main() -> None:
            stop.append(asyncio.Event())
            server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
            port.append(server.sockets[0].getsockname()[1])
            started.set()
            await stop[0].wait()
            server.close()
            # Every connection closed and its task finished here, on this loop: a
            # transport left to the garbage collector warns (an error under pytest).
            for writer in list(self._writers):
                writer.transport.abort()
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()

        thread = threading.Thread(target=loop.run_until_complete, args=(main(),), daemon=True)
        thread.start()
        started.wait(10)
        try:
            yield f"http://127.0.0.1:{port[0]}/api"
        finally:
            loop.call_soon_threadsafe(stop[0].set)
            thread.join(10)
            loop.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line = head.split(b"\r\n", 1)[0].decode("latin-1")
                method, target, _ = line.split(" ", 2)
                request = httpx.Request(method, "http://127.0.0.1" + target)
                # The sandbox checks the key; the test clients send the sandbox's.
                for raw in head.split(b"\r\n")[1:]:
                    name, _, value = raw.decode("latin-1").partition(":")
                    if name:
                        request.headers[name.strip()] = value.strip()
                reply = await asyncio.to_thread(self.answer, request)
                await self._write(writer, reply)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    @staticmethod
    async def _write(writer: asyncio.StreamWriter, reply: Reply) -> None:
        # An endless body is chunked: no length to promise, each byte a chunk.
        framing = (
            "Transfer-Encoding: chunked" if reply.endless else f"Content-Length: {len(reply.body)}"
        )
        head = [f"HTTP/1.1 {reply.status} X", framing]
        head += [f"{k}: {v}" for k, v in reply.headers.items()]
        if reply.drip_head:
            # A header that never ends: every byte comes before the read timeout.
            head_bytes = ("\r\n".join(head) + "\r\nX-Pad: ").encode("latin-1")
            for index in range(1 << 20):
                writer.write(head_bytes[index : index + 1] or b"a")
                await writer.drain()
                await asyncio.sleep(reply.drip or 0)
                if writer.transport.is_closing():
                    return
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        if reply.drip is None:
            writer.write(reply.body)
            await writer.drain()
            return
        for byte in _Drip(reply)._bytes():
            writer.write(b"1\r\n" + byte + b"\r\n" if reply.endless else byte)
            await writer.drain()
            await asyncio.sleep(reply.drip)
            if writer.transport.is_closing():
                return


def scripted_api(
    scripted: Scripted,
    mode: str,
    stack: AsyncExitStack,
    base_url: str | None,
    **options: Any,
) -> Api:
    """A client in ``mode`` (conftest's MODES) on ``scripted``; retry waits recorded."""
    sleeps: list[float] = []
    options.setdefault("retry", RetryPolicy(jitter=0.0))
    key = scripted.sandbox.api_key
    url = base_url or scripted.sandbox.base_url
    api: Api
    if mode.startswith("sync"):
        client = ModzyClient(
            api_key=key,
            base_url=url,
            transport=None if base_url else scripted.transport(),
            sleep=sleeps.append,
            **options,
        )
        stack.callback(client.close)
        api = Api(client, mode)
    else:

        async def asleep(seconds: float) -> None:
            sleeps.append(seconds)

        if "aiohttp" in mode:
            from httpx_aiohttp import HttpxAiohttpClient

            given = HttpxAiohttpClient()
            stack.push_async_callback(given.aclose)
            options["http_client"] = given
        else:
            options["transport"] = None if base_url else scripted.async_transport()
        aclient = AsyncModzyClient(api_key=key, base_url=url, sleep=asleep, **options)
        stack.push_async_callback(aclient.aclose)
        api = Api(aclient, mode)
    api.sleeps = sleeps
    return api


@contextlib.asynccontextmanager
async def scripted_mode(scripted: Scripted, mode: str, **options: Any) -> AsyncIterator[Api]:
    """The client for ``mode``, over HTTP when the mode says so."""
    async with AsyncExitStack() as stack:
        base_url = stack.enter_context(scripted.serve()) if mode.endswith("http") else None
        yield scripted_api(scripted, mode, stack, base_url, **options)
