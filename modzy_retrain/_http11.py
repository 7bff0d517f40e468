"""The async client's HTTP/1.1 transport: a connection pool on asyncio's own protocols.

Why not ``httpx.AsyncHTTPTransport``: httpcore's async path goes through anyio, whose
locks yield to the event loop on every acquisition, and httpcore takes three of them
per request, plus one more yield per socket write. With 32 requests in flight each
forced yield waits behind every other task's work (response parsing included), which
kept the async fetcher at 78 to 84% of the concurrency bound where this transport
reaches 87 to 91% and spends a quarter less CPU per request (``bench/RESULTS.md``).
Here a request yields only when it must wait: for a connection, for the socket to
drain, or for bytes that have not arrived.

What it does, and nothing more: HTTP/1.1 over TCP or TLS (one ``ssl.SSLContext`` for
every connection), keep-alive with an idle expiry, a bound on connections with a pool
wait, connect/read/write/pool timeouts, and response framing by ``Content-Length``,
``chunked`` or connection close. It speaks the ``httpx`` transport API, so the client,
``httpx.Response`` (content decoding included) and the error mapping are the same as
with any httpx transport. Proxies are not its business: with a proxy in the
environment the client uses ``httpx.AsyncHTTPTransport`` instead.

Responses are parsed strictly: anything malformed (a bad status line, folded or
invalid headers, conflicting lengths, a bad chunk) is an ``httpx.RemoteProtocolError``
and the connection is closed, never reused. Strictly private.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

# Limits on what a server may send outside the body (a head, a chunk-size line,
# trailers): far above anything legitimate, small enough that a broken or hostile
# server cannot make the client buffer without bound.
MAX_HEAD_BYTES = 64 * 1024
MAX_LINE_BYTES = 4 * 1024
# Reading from the socket pauses while this much is buffered and unread (a large body
# read slower than it arrives), and resumes below a quarter of it.
READ_HIGH_WATER = 1024 * 1024
# httpx's own default: a connection idle longer than this is not reused (servers and
# load balancers drop idle connections, and a request sent on one that just closed fails).
KEEPALIVE_EXPIRY = 5.0
# 1xx answers (e.g. 103 Early Hints) skipped before the final response, at most.
MAX_INTERIM_RESPONSES = 16

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: ([^\r\n]*))?")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(rb"[0-9]{1,19}")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")

Origin = tuple[str, str, int]  # scheme, host, port


class _Protocol(asyncio.Protocol):
    """Bytes received, kept until read; wakes the one reader waiting, if any."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None
        self.transport: asyncio.Transport | None = None
        self._reader: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False

    # -- asyncio callbacks -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if len(self.buffer) > READ_HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self._read_paused = True
        self._wake_reader()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # close our side too: HTTP/1.1 has no use for a half-open socket

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake_reader()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _wake_reader(self) -> None:
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    # -- used by the connection ------------------------------------------------------

    def consume(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        if self._read_paused and len(self.buffer) < READ_HIGH_WATER // 4:
            self._read_paused = False
            if self.transport is not None:
                self.transport.resume_reading()
        return data

    async def wait_for_data(self, timeout: float | None) -> None:
        """Wait until more bytes, the end of the stream or an error arrive."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._reader = waiter
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        except TimeoutError:
            raise httpx.ReadTimeout(f"no data from the server within {timeout:g} s") from None
        finally:
            self._reader = None
            if timer is not None:
                timer.cancel()

    async def drain(self, timeout: float | None) -> None:
        if not self._write_paused:
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._drained = waiter
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            await waiter
        except TimeoutError:
            raise httpx.WriteTimeout(f"could not send within {timeout:g} s") from None
        finally:
            self._drained = None
            if timer is not None:
                timer.cancel()


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Framing:
    """How a response's body ends."""

    __slots__ = ("chunked", "length")

    def __init__(self, *, length: int | None, chunked: bool) -> None:
        self.length = length  # None and not chunked: the body ends when the connection does
        self.chunked = chunked


class _Connection:
    """One HTTP/1.1 connection: requests in turn, never two at once."""

    def __init__(self, origin: Origin, protocol: _Protocol) -> None:
        self.origin = origin
        self.protocol = protocol
        self.idle_since = 0.0
        self.keep_alive = False

    # -- state -------------------------------------------------------------------------

    def reusable(self, now: float, expiry: float) -> bool:
        """Idle and still good: nothing unread, not closed by the server, not expired."""
        p = self.protocol
        transport = p.transport
        return (
            not p.buffer
            and not p.eof
            and transport is not None
            and not transport.is_closing()
            and now - self.idle_since <= expiry
        )

    def close(self) -> None:
        transport = self.protocol.transport
        if transport is not None:
            transport.close()

    # -- sending -----------------------------------------------------------------------

    async def send(self, request: httpx.Request, body: bytes, timeout: float | None) -> None:
        transport = self.protocol.transport
        if transport is None or transport.is_closing():
            raise httpx.WriteError("the connection was closed before the request was sent")
        transport.write(_serialize_request(request, body))
        await self.protocol.drain(timeout)
        if self.protocol.error is not None:
            raise httpx.WriteError(f"the connection failed: {self.protocol.error}")

    # -- receiving ---------------------------------------------------------------------

    async def _fill(self, timeout: float | None, what: str) -> None:
        """Wait for more bytes; end of stream here means the message is incomplete."""
        p = self.protocol
        if p.eof:
            if p.error is not None:
                raise httpx.ReadError(f"the connection failed {what}: {p.error}")
            raise httpx.RemoteProtocolError(f"the server closed the connection {what}")
        await p.wait_for_data(timeout)

    async def _read_until(self, mark: bytes, limit: int, timeout: float | None, what: str) -> bytes:
        """Bytes up to ``mark`` (consumed, not returned), at most ``limit`` of them."""
        p = self.protocol
        start = 0
        while True:
            index = p.buffer.find(mark, start)
            if index >= 0:
                if index > limit:
                    break
                line = p.consume(index + len(mark))
                return line[:index]
            if len(p.buffer) > limit:
                break
            start = max(0, len(p.buffer) - len(mark) + 1)
            await self._fill(timeout, what)
        raise httpx.RemoteProtocolError(f"the server sent more than {limit:,} bytes {what}")

    async def read_head(
        self, method: str, timeout: float | None
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]], _Framing]:
        for _ in range(MAX_INTERIM_RESPONSES + 1):
            if not self.protocol.buffer and self.protocol.eof and self.protocol.error is None:
                raise httpx.RemoteProtocolError(
                    "the server closed the connection without a response"
                )
            head = await self._read_until(
                b"\r\n\r\n", MAX_HEAD_BYTES, timeout, "before the response head ended"
            )
            version, status, reason, headers = parse_head(head)
            if 100 <= status < 200:
                if status == 101:
                    raise httpx.RemoteProtocolError("the server switched protocols unasked (101)")
                continue  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            framing, keep_alive = response_framing(method, version, status, headers)
            self.keep_alive = keep_alive
            return status, reason, headers, framing
        raise httpx.RemoteProtocolError(
            f"the server sent more than {MAX_INTERIM_RESPONSES} interim (1xx) responses"
        )

    async def read_body(self, framing: _Framing, timeout: float | None) -> AsyncIterator[bytes]:
        if framing.chunked:
            async for piece in self._read_chunked(timeout):
                yield piece
        elif framing.length is not None:
            async for piece in self._read_exactly(framing.length, timeout):
                yield piece
        else:
            p = self.protocol
            while True:
                if p.buffer:
                    yield p.consume(len(p.buffer))
                elif p.eof:
                    if p.error is not None:
                        raise httpx.ReadError(f"the connection failed mid-body: {p.error}")
                    return
                else:
                    await p.wait_for_data(timeout)

    async def _read_exactly(self, size: int, timeout: float | None) -> AsyncIterator[bytes]:
        p = self.protocol
        remaining = size
        while remaining:
            if p.buffer:
                piece = p.consume(min(remaining, len(p.buffer)))
                remaining -= len(piece)
                yield piece
            else:
                await self._fill(timeout, f"with {remaining:,} body bytes still to come")

    async def _read_chunked(self, timeout: float | None) -> AsyncIterator[bytes]:
        while True:
            line = await self._read_until(b"\r\n", MAX_LINE_BYTES, timeout, "in a chunk-size line")
            size_text = line.split(b";", 1)[0].strip(b" \t")
            if not _CHUNK_SIZE.fullmatch(size_text):
                raise httpx.RemoteProtocolError("the server sent a malformed chunk size")
            size = int(size_text, 16)
            if size == 0:
                break
            async for piece in self._read_exactly(size, timeout):
                yield piece
            while len(self.protocol.buffer) < 2:
                await self._fill(timeout, "after a chunk")
            if self.protocol.consume(2) != b"\r\n":
                raise httpx.RemoteProtocolError("a chunk did not end where its size said")
        # Trailers: read and dropped (nothing here uses them), bounded like a head.
        total = 0
        while True:
            trailer = await self._read_until(b"\r\n", MAX_LINE_BYTES, timeout, "in the trailers")
            if not trailer:
                return
            total += len(trailer)
            if total > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError("the server sent too many trailer bytes")


def _serialize_request(request: httpx.Request, body: bytes) -> bytes:
    method = request.method.encode("ascii")
    if not _TOKEN.fullmatch(method):
        raise httpx.LocalProtocolError("the request method is not a valid token")
    target = request.url.raw_path
    if _BAD_VALUE.search(target) or b" " in target:
        raise httpx.LocalProtocolError("the request target holds a space, CR, LF or NUL")
    lines = [method + b" " + target + b" HTTP/1.1"]
    has_length = has_encoding = False
    for name, value in request.headers.raw:
        # Header values reach the wire as they are: a CR or LF would start a header (or a
        # request) of its own. The value itself is never quoted: it may be a secret.
        if not _TOKEN.fullmatch(name):
            raise httpx.LocalProtocolError("a request header name is not a valid token")
        if _BAD_VALUE.search(value):
            raise httpx.LocalProtocolError(
                f"request header {name.decode('ascii')!r} holds a CR, LF or NUL"
            )
        lower = name.lower()
        if lower == b"content-length":
            has_length = True
        elif lower == b"transfer-encoding":
            has_encoding = True
        lines.append(name + b": " + value)
    if has_encoding:
        # The whole body is at hand: one chunk, then the last.
        payload = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
    else:
        if body and not has_length:
            lines.append(b"Content-Length: %d" % len(body))
        payload = body
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def parse_head(head: bytes) -> tuple[int, int, bytes, list[tuple[bytes, bytes]]]:
    """``(minor version, status, reason, headers)`` from a response head (no final CRLFs).

    Raises:
        httpx.RemoteProtocolError: Anything but a well-formed HTTP/1.0 or 1.1 head.
    """
    lines = head.split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise httpx.RemoteProtocolError("the server sent a malformed status line")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        if line[:1] in (b" ", b"\t"):
            raise httpx.RemoteProtocolError("the server sent a folded header line")
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.fullmatch(name):
            raise httpx.RemoteProtocolError("the server sent a malformed header line")
        value = value.strip(b" \t")
        if _BAD_VALUE.search(value):
            raise httpx.RemoteProtocolError("the server sent a header value with CR, LF or NUL")
        headers.append((name, value))
    return int(match[1]), int(match[2]), match[3] or b"", headers


def _tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [
        token.strip(b" \t").lower()
        for key, value in headers
        if key.lower() == name
        for token in value.split(b",")
        if token.strip(b" \t")
    ]


def response_framing(
    method: str, minor_version: int, status: int, headers: list[tuple[bytes, bytes]]
) -> tuple[_Framing, bool]:
    """How the body ends (RFC 9112, section 6.3) and whether the connection may be reused.

    Raises:
        httpx.RemoteProtocolError: Framing that cannot be trusted (an unknown transfer
            coding, a ``Content-Length`` that is not one number).
    """
    connection = _tokens(headers, b"connection")
    keep_alive = b"close" not in connection if minor_version == 1 else b"keep-alive" in connection
    if method == "HEAD" or status in (204, 304):
        return _Framing(length=0, chunked=False), keep_alive
    codings = _tokens(headers, b"transfer-encoding")
    if codings:
        if codings != [b"chunked"]:
            raise httpx.RemoteProtocolError("the server used a transfer coding other than chunked")
        # A Content-Length beside it is ignored, and the connection not trusted again.
        has_length = any(key.lower() == b"content-length" for key, _ in headers)
        return _Framing(length=None, chunked=True), keep_alive and not has_length
    lengths = {
        token.strip(b" \t")
        for key, value in headers
        if key.lower() == b"content-length"
        for token in value.split(b",")
    }
    if lengths:
        if len(lengths) != 1:
            raise httpx.RemoteProtocolError("the server sent conflicting Content-Length values")
        (length,) = lengths
        if not _DIGITS.fullmatch(length):
            raise httpx.RemoteProtocolError("the server sent an invalid Content-Length")
        return _Framing(length=int(length), chunked=False), keep_alive
    return _Framing(length=None, chunked=False), False  # the body ends with the connection


class _ResponseStream(httpx.AsyncByteStream):
    """A response body; its connection goes back to the pool once it is read to the end."""

    def __init__(
        self,
        pool: AsyncHTTP11Transport,
        connection: _Connection,
        framing: _Framing,
        timeout: float | None,
    ) -> None:
        self._pool = pool
        self._connection = connection
        self._framing = framing
        self._timeout = timeout
        self._complete = False
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._released:
            raise httpx.StreamClosed()
        async for piece in self._connection.read_body(self._framing, self._timeout):
            yield piece
        self._complete = True

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            reuse = self._complete and self._connection.keep_alive
            self._pool._release(self._connection, reuse=reuse)


class AsyncHTTP11Transport(httpx.AsyncBaseTransport):
    """HTTP/1.1 connections to any origin, at most ``max_connections`` open at once.

    Args:
        ssl_context: Used for every ``https`` connection (verification, CA bundle).
        max_connections: Open connections in all, idle ones included. A request that
            finds none free waits (the ``pool`` timeout) for one to be released.
        keepalive_expiry: Seconds an idle connection stays reusable.
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        max_connections: int,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._ssl_context = ssl_context
        self._max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._idle: dict[Origin, list[_Connection]] = {}
        self._open = 0  # idle and busy
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def open_connections(self) -> int:
        return self._open

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("this transport is closed")
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"the URL scheme {scheme!r} is not supported")
        origin: Origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        body = await request.aread()
        connection = await self._acquire(origin, timeouts.get("pool"), timeouts.get("connect"))
        try:
            await connection.send(request, body, timeouts.get("write"))
            read_timeout = timeouts.get("read")
            status, reason, headers, framing = await connection.read_head(
                request.method, read_timeout
            )
        except BaseException:
            # Failed, timed out or cancelled mid-exchange: the connection's state is
            # unknown, so it is closed, never handed to the next request.
            self._release(connection, reuse=False)
            raise
        return httpx.Response(
            status,
            headers=headers,
            stream=_ResponseStream(self, connection, framing, read_timeout),
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
            request=request,
        )

    # -- the pool ----------------------------------------------------------------------

    async def _acquire(
        self, origin: Origin, pool_timeout: float | None, connect_timeout: float | None
    ) -> _Connection:
        loop = asyncio.get_running_loop()
        deadline = None if pool_timeout is None else loop.time() + pool_timeout
        while True:
            idle = self._idle.get(origin)
            now = time.monotonic()
            while idle:
                connection = idle.pop()  # the most recently used: the least likely to be stale
                if connection.reusable(now, self._keepalive_expiry):
                    return connection
                self._forget(connection)
            if self._open >= self._max_connections:
                self._close_one_idle()  # an idle connection to another origin makes room
            if self._open < self._max_connections:
                self._open += 1
                try:
                    return await self._connect(origin, connect_timeout)
                except BaseException:
                    self._open -= 1
                    self._wake_one()
                    raise
            await self._wait_for_release(loop, deadline)

    async def _wait_for_release(
        self, loop: asyncio.AbstractEventLoop, deadline: float | None
    ) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.append(waiter)
        timer = None if deadline is None else loop.call_at(deadline, _expire, waiter)
        try:
            await waiter
        except TimeoutError:
            raise httpx.PoolTimeout("no connection became free in time") from None
        except BaseException:
            # Cancelled after being woken: pass the turn on rather than lose it.
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._wake_one()
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _forget(self, connection: _Connection) -> None:
        connection.close()
        self._open -= 1

    def _close_one_idle(self) -> None:
        for idle in self._idle.values():
            if idle:
                self._forget(idle.pop(0))  # the oldest
                return

    def _release(self, connection: _Connection, *, reuse: bool) -> None:
        now = time.monotonic()
        connection.idle_since = now
        if reuse and not self._closed and connection.reusable(now, self._keepalive_expiry):
            self._idle.setdefault(connection.origin, []).append(connection)
        else:
            self._forget(connection)
        self._wake_one()

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = self._ssl_context if scheme == "https" else None
        factory: Callable[[], _Protocol] = _Protocol
        extra: dict[str, Any] = {}
        if tls is not None:
            extra = {"ssl": tls, "server_hostname": host}
            if timeout is not None:
                extra["ssl_handshake_timeout"] = timeout
        try:
            _, protocol = await asyncio.wait_for(
                loop.create_connection(factory, host, port, **extra), timeout
            )
        except (asyncio.TimeoutError, TimeoutError):
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:  # refused, unreachable, DNS, and TLS failures (ssl.SSLError)
            raise httpx.ConnectError(f"connecting to {host}:{port} failed: {exc}") from None
        return _Connection(origin, protocol)

    async def aclose(self) -> None:
        """Close every idle connection now, and each busy one when its response is done."""
        self._closed = True
        for idle in self._idle.values():
            while idle:
                self._forget(idle.pop())
        self._idle.clear()
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(httpx.PoolTimeout("the transport was closed"))
        self._waiters.clear()
