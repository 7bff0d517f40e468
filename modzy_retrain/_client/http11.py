"""The clients' own HTTP/1.1 transports: a lean connection pool, sync and async.

Why not httpx's transports (httpcore): httpcore's async path goes through anyio, whose
locks yield to the event loop on every acquisition, and httpcore takes three of them
per request, plus one more yield per socket write. With 32 requests in flight each
forced yield waits behind every other task's work (response parsing included), which
kept the async fetcher at 78 to 84% of the concurrency bound where this transport
reaches 87 to 91%, with a third less CPU per request (``bench/RESULTS.md``). The sync
path pays for httpcore's per-request work under the GIL, shared by 32 threads. Here a
request gives way only when it must wait: for a connection, for the socket to drain,
or for bytes that have not arrived.

What they do, and nothing more: HTTP/1.1 over TCP or TLS (one ``ssl.SSLContext`` for
every connection), keep-alive with an idle expiry, a bound on connections with a pool
wait, connect/read/write/pool timeouts, and response framing by ``Content-Length``,
``chunked`` or connection close. They speak the ``httpx`` transport API, so the
clients, ``httpx.Response`` (content decoding included) and the error mapping are the
same as with any httpx transport. Proxies are not their business: with a proxy in the
environment the clients use httpx's transports instead.

The protocol logic is written once, without I/O (:class:`ResponseReader`,
:class:`_PoolState`, :func:`serialize_request`); only the socket loops exist twice.
Responses are parsed strictly: anything malformed (a bad status line, folded or
invalid headers, conflicting lengths, a bad chunk) is an ``httpx.RemoteProtocolError``
and the connection is closed, never reused. Strictly private.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import select
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Generic, TypeVar

import httpx

# Limits on what a server may send outside the body (a head, a chunk-size line,
# trailers): far above anything legitimate, small enough that a broken or hostile
# server cannot make the client buffer without bound.
MAX_HEAD_BYTES = 64 * 1024
MAX_LINE_BYTES = 4 * 1024
# The async transport stops reading from the socket while this much is buffered and
# unread (a large body read slower than it arrives), and resumes below a quarter of it.
# The sync one reads only when asked, at most RECV_BYTES at a time.
READ_HIGH_WATER = 1024 * 1024
RECV_BYTES = 256 * 1024
# httpx's own default: a connection idle longer than this is not reused (servers and
# load balancers drop idle connections, and a request sent on one that just closed fails).
KEEPALIVE_EXPIRY = 5.0
# 1xx answers (e.g. 103 Early Hints) skipped before the final response, at most.
MAX_INTERIM_RESPONSES = 16

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9]{2})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")
_CHUNK_SIZE = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(rb"[0-9]{1,19}")
_BAD_VALUE = re.compile(rb"[\r\n\x00]")

Origin = tuple[str, str, int]  # scheme, host, port
Head = tuple[int, bytes, list[tuple[bytes, bytes]]]  # status, reason, headers


# -- pure: requests ----------------------------------------------------------------------


def serialize_request(request: httpx.Request, body: bytes) -> bytes:
    """The request's bytes on the wire.

    Raises:
        httpx.LocalProtocolError: A method, target or header that would not be one
            well-formed request (a CR or LF in a header value could start another).
    """
    method = request.method.encode("ascii")
    if not _TOKEN.fullmatch(method):
        raise httpx.LocalProtocolError("the request method is not a valid token")
    target = request.url.raw_path
    if _BAD_VALUE.search(target) or b" " in target:
        raise httpx.LocalProtocolError("the request target holds a space, CR, LF or NUL")
    lines = [method + b" " + target + b" HTTP/1.1"]
    has_length = has_encoding = False
    for name, value in request.headers.raw:
        if not _TOKEN.fullmatch(name):
            raise httpx.LocalProtocolError("a request header name is not a valid token")
        if _BAD_VALUE.search(value):
            # Named, never quoted: the value may be a secret.
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


# -- pure: responses ---------------------------------------------------------------------


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


class _Framing:
    """How a response's body ends."""

    __slots__ = ("chunked", "length")

    def __init__(self, *, length: int | None, chunked: bool) -> None:
        self.length = length  # None and not chunked: the body ends when the connection does
        self.chunked = chunked


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


# Where a ResponseReader is in the current response.
_HEAD, _LENGTH, _CLOSE, _SIZE, _CHUNK, _CHUNK_END, _TRAILERS, _DONE = range(8)


class ResponseReader:
    """Response bytes in, a head and body pieces out; no I/O (the socket loops feed it).

    :meth:`head` and :meth:`body` return ``None`` when they need more bytes than have
    been fed; the caller reads from its socket, calls :meth:`feed` (or :meth:`end` at
    the end of the stream) and asks again.
    """

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.eof = False
        self.error: BaseException | None = None  # why the stream ended, if it failed
        self.keep_alive = False
        self.complete = False  # the last response was read to its end
        self._state = _HEAD
        self._remaining = 0
        self._scanned = 0  # how far the buffer was searched for the end of a head
        self._trailer_bytes = 0
        self._interim = 0  # 1xx answers met before the current response

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def end(self, error: BaseException | None = None) -> None:
        if not self.eof:
            self.eof = True
            self.error = error

    def next_cycle(self) -> None:
        """Ready for the next response on the same connection."""
        self._state = _HEAD
        self._interim = 0
        self.complete = False
        self.keep_alive = False

    def _take(self, size: int) -> bytes:
        data = bytes(self.buffer[:size])
        del self.buffer[:size]
        return data

    def _ended_early(self, what: str) -> Exception:
        if self.error is not None:
            return httpx.ReadError(f"the connection failed {what}: {self.error}")
        return httpx.RemoteProtocolError(f"the server closed the connection {what}")

    def _line(self, limit: int, what: str) -> bytes | None:
        index = self.buffer.find(b"\r\n")
        if index >= 0:
            if index > limit:
                raise httpx.RemoteProtocolError(f"the server sent over {limit:,} bytes {what}")
            line = self._take(index + 2)
            return line[:-2]
        if len(self.buffer) > limit:
            raise httpx.RemoteProtocolError(f"the server sent over {limit:,} bytes {what}")
        if self.eof:
            raise self._ended_early(what)
        return None

    def head(self, method: str) -> Head | None:
        """The final response's head (interim 1xx answers skipped), or ``None``: feed more."""
        while self._interim <= MAX_INTERIM_RESPONSES:
            if not self.buffer and self.eof and self.error is None:
                raise httpx.RemoteProtocolError(
                    "the server closed the connection without a response"
                )
            # Search only what is new (a head trickling in is not scanned again and again).
            index = self.buffer.find(b"\r\n\r\n", max(0, self._scanned - 3))
            if index < 0:
                self._scanned = len(self.buffer)
                if len(self.buffer) > MAX_HEAD_BYTES:
                    raise httpx.RemoteProtocolError(
                        f"the server sent over {MAX_HEAD_BYTES:,} bytes of response head"
                    )
                if self.eof:
                    raise self._ended_early("before the response head ended")
                return None
            if index > MAX_HEAD_BYTES:
                raise httpx.RemoteProtocolError(
                    f"the server sent over {MAX_HEAD_BYTES:,} bytes of response head"
                )
            raw = self._take(index + 4)[:-4]
            self._scanned = 0
            version, status, reason, headers = parse_head(raw)
            if 100 <= status < 200:
                if status == 101:
                    raise httpx.RemoteProtocolError("the server switched protocols unasked (101)")
                self._interim += 1
                continue  # an interim answer (100 Continue, 103 Early Hints): the real one follows
            framing, self.keep_alive = response_framing(method, version, status, headers)
            if framing.chunked:
                self._state = _SIZE
                self._trailer_bytes = 0
            elif framing.length is not None:
                self._state = _LENGTH
                self._remaining = framing.length
            else:
                self._state = _CLOSE
            return status, reason, headers
        raise httpx.RemoteProtocolError(
            f"the server sent more than {MAX_INTERIM_RESPONSES} interim (1xx) responses"
        )

    def body(self) -> bytes | None:
        """The next piece of the body; ``b""`` once it is all read; ``None``: feed more."""
        while True:
            state = self._state
            if state in (_LENGTH, _CHUNK):
                if self._remaining == 0:
                    self._state = _DONE if state == _LENGTH else _CHUNK_END
                    continue
                if self.buffer:
                    piece = self._take(min(self._remaining, len(self.buffer)))
                    self._remaining -= len(piece)
                    return piece
                if self.eof:
                    raise self._ended_early(f"with {self._remaining:,} body bytes still to come")
                return None
            if state == _DONE:
                self.complete = True
                return b""
            if state == _CLOSE:
                if self.buffer:
                    return self._take(len(self.buffer))
                if not self.eof:
                    return None
                if self.error is not None:
                    raise httpx.ReadError(f"the connection failed mid-body: {self.error}")
                self._state = _DONE
            elif state == _SIZE:
                line = self._line(MAX_LINE_BYTES, "in a chunk-size line")
                if line is None:
                    return None
                size_text = line.split(b";", 1)[0].strip(b" \t")
                if not _CHUNK_SIZE.fullmatch(size_text):
                    raise httpx.RemoteProtocolError("the server sent a malformed chunk size")
                self._remaining = int(size_text, 16)
                self._state = _CHUNK if self._remaining else _TRAILERS
            elif state == _CHUNK_END:
                if len(self.buffer) < 2:
                    if self.eof:
                        raise self._ended_early("after a chunk")
                    return None
                if self._take(2) != b"\r\n":
                    raise httpx.RemoteProtocolError("a chunk did not end where its size said")
                self._state = _SIZE
            elif state == _TRAILERS:
                # Read and dropped (nothing here uses them), bounded like a head.
                line = self._line(MAX_LINE_BYTES, "in the trailers")
                if line is None:
                    return None
                if not line:
                    self._state = _DONE
                    continue
                self._trailer_bytes += len(line)
                if self._trailer_bytes > MAX_HEAD_BYTES:
                    raise httpx.RemoteProtocolError("the server sent too many trailer bytes")
            else:
                raise RuntimeError("body() called before head()")  # pragma: no cover


# -- pure: the pool's books --------------------------------------------------------------


class _ConnectionBase:
    def __init__(self, origin: Origin, reader: ResponseReader) -> None:
        self.origin = origin
        self.reader = reader
        self.idle_since = 0.0

    def _alive(self) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    def reusable(self, now: float, expiry: float) -> bool:
        """Idle and still good: nothing unread, not closed by the server, not expired."""
        reader = self.reader
        return (
            not reader.buffer
            and not reader.eof
            and now - self.idle_since <= expiry
            and self._alive()
        )


C = TypeVar("C", bound=_ConnectionBase)


class _PoolState(Generic[C]):
    """Which connections are open and idle; the waiting is the transports' business."""

    def __init__(self, max_connections: int, keepalive_expiry: float) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self.max_connections = max_connections
        self.keepalive_expiry = keepalive_expiry
        self.idle: dict[Origin, list[C]] = {}
        self.open = 0  # idle and busy
        self.closed = False

    def take_idle(self, origin: Origin) -> C | None:
        idle = self.idle.get(origin)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be stale
            if connection.reusable(now, self.keepalive_expiry):
                connection.reader.next_cycle()
                return connection
            self.forget(connection)
        return None

    def take(self, origin: Origin) -> C | bool | None:
        """An idle connection to ``origin``; else ``True`` if a place for a new one was
        reserved (the caller connects); else ``None``: the pool is full."""
        connection = self.take_idle(origin)
        if connection is not None:
            return connection
        return True if self.reserve() else None

    def reserve(self) -> bool:
        """Count a connection about to be opened, if the bound allows it."""
        if self.open >= self.max_connections:
            for idle in self.idle.values():  # an idle one to another origin makes room
                if idle:
                    self.forget(idle.pop(0))  # the oldest
                    break
        if self.open < self.max_connections:
            self.open += 1
            return True
        return False

    def forget(self, connection: C) -> None:
        connection.close()
        self.open -= 1

    def release(self, connection: C, *, reuse: bool) -> None:
        now = time.monotonic()
        connection.idle_since = now
        reuse = reuse and connection.reader.complete and connection.reader.keep_alive
        if reuse and not self.closed and connection.reusable(now, self.keepalive_expiry):
            self.idle.setdefault(connection.origin, []).append(connection)
        else:
            self.forget(connection)

    def close(self) -> None:
        self.closed = True
        for idle in self.idle.values():
            while idle:
                self.forget(idle.pop())
        self.idle.clear()


class _Body(Generic[C]):
    """A response body's bookkeeping: its connection goes back to the pool (or is
    closed, if the body was not read to its end) once, when the body is closed."""

    def __init__(self, release: Callable[[C], None], connection: C, timeout: float | None) -> None:
        self._release = release
        self._connection = connection
        self._timeout = timeout
        self._released = False

    def _check_open(self) -> None:
        if self._released:
            raise httpx.StreamClosed()

    def _done(self) -> None:
        if not self._released:
            self._released = True
            self._release(self._connection)


class _Turn:
    """A place in the queue for a connection: the async transport's waits on a future,
    the sync one's on a condition of its own (so that a release wakes the head of the
    queue alone, not every waiting thread)."""

    __slots__ = ("ready", "waiter")

    def __init__(self, lock: threading.Lock | None = None) -> None:
        self.waiter: asyncio.Future[None] | None = None
        self.ready = threading.Condition(lock) if lock is not None else None


def _origin(request: httpx.Request) -> Origin:
    url = request.url
    if url.scheme not in ("http", "https"):
        raise httpx.UnsupportedProtocol(f"the URL scheme {url.scheme!r} is not supported")
    # raw_host: the ASCII form httpx itself uses (IDNA 2008; "::1" without brackets).
    # url.host is Unicode, and Python's resolver would encode it with IDNA 2003, which
    # maps some names to another domain ("faß.de" to "fass.de").
    host = url.raw_host.decode("ascii")
    return (url.scheme, host, url.port or (443 if url.scheme == "https" else 80))


def _response(
    request: httpx.Request, head: Head, stream: httpx.SyncByteStream | httpx.AsyncByteStream
) -> httpx.Response:
    status, reason, headers = head
    return httpx.Response(
        status,
        headers=headers,
        stream=stream,
        extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        request=request,
    )


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


async def _wait(
    waiter: asyncio.Future[None],
    timeout: float | None,
    timed_out: type[httpx.TimeoutException],
    what: str,
) -> None:
    """Await ``waiter`` for at most ``timeout`` seconds, else raise ``timed_out``.

    A timer on the loop rather than ``asyncio.wait_for``, which would wrap the wait in
    a task of its own: this runs on every request's read.
    """
    timer = None
    if timeout is not None:
        timeout = max(timeout, 0.0)  # a deadline already past: time out at the next turn
        timer = asyncio.get_running_loop().call_later(timeout, _expire, waiter)
    try:
        await waiter
    except TimeoutError:
        raise timed_out(f"{what} within {timeout:g} s") from None
    finally:
        if timer is not None:
            timer.cancel()


# -- async I/O ---------------------------------------------------------------------------


class _Protocol(asyncio.Protocol):
    """Feeds what arrives to the connection's reader and wakes the one task waiting."""

    def __init__(self, reader: ResponseReader) -> None:
        self.reader = reader
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._drained: asyncio.Future[None] | None = None
        self._write_paused = False
        self._read_paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        if len(self.reader.buffer) > READ_HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()
            self._read_paused = True
        self._wake()

    def eof_received(self) -> bool:
        self.reader.end()
        self._wake()
        return False  # close our side too: HTTP/1.1 has no use for a half-open socket

    def connection_lost(self, exc: Exception | None) -> None:
        self.reader.end(exc)
        self._wake()
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def resume_reading(self) -> None:
        if self._read_paused and len(self.reader.buffer) < READ_HIGH_WATER // 4:
            self._read_paused = False
            if self.transport is not None:
                self.transport.resume_reading()

    async def wait_for_data(self, timeout: float | None) -> None:
        """Wait until more bytes, the end of the stream or an error arrive."""
        self.resume_reading()
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await _wait(self._waiter, timeout, httpx.ReadTimeout, "no data from the server")
        finally:
            self._waiter = None

    async def drain(self, timeout: float | None) -> None:
        if not self._write_paused:
            return
        self._drained = asyncio.get_running_loop().create_future()
        try:
            await _wait(self._drained, timeout, httpx.WriteTimeout, "could not send")
        finally:
            self._drained = None


class _Connection(_ConnectionBase):
    """One async HTTP/1.1 connection: requests in turn, never two at once."""

    def __init__(self, origin: Origin, protocol: _Protocol) -> None:
        super().__init__(origin, protocol.reader)
        self.protocol = protocol
        # A connection lives on the loop that opened it. A client kept across
        # asyncio.run() calls (a notebook, a script's several runs) must not hand an
        # idle connection of a finished loop to a request on a new one.
        self.loop = asyncio.get_running_loop()

    def _alive(self) -> bool:
        transport = self.protocol.transport
        return (
            transport is not None
            and not transport.is_closing()
            and self.loop is asyncio.get_running_loop()
        )

    def close(self) -> None:
        transport = self.protocol.transport
        if transport is None:
            return
        if not self.loop.is_closed():
            # abort(), not close(): HTTP needs no TLS close_notify, and a TLS transport's
            # close() would still be exchanging it when a client closed at the end of
            # asyncio.run() sees its loop shut, leaving the socket to the GC.
            transport.abort()
            return
        # Its loop is gone (the client outlived an asyncio.run()): the transport cannot
        # schedule its own closing any more. The connection is shut down at once (the
        # server is told); the file descriptor goes when the garbage collector takes the
        # transport, which warns (ResourceWarning) as asyncio does for any such transport.
        self.protocol.transport = None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    async def send(self, data: bytes, timeout: float | None) -> None:
        transport = self.protocol.transport
        if transport is None or transport.is_closing():
            raise httpx.WriteError("the connection was closed before the request was sent")
        transport.write(data)
        await self.protocol.drain(timeout)
        if self.reader.error is not None:
            raise httpx.WriteError(f"the connection failed: {self.reader.error}")

    async def read_head(self, method: str, timeout: float | None) -> Head:
        while (head := self.reader.head(method)) is None:
            await self.protocol.wait_for_data(timeout)
        return head

    async def read_body(self, timeout: float | None) -> AsyncIterator[bytes]:
        while True:
            piece = self.reader.body()
            if piece is None:
                await self.protocol.wait_for_data(timeout)
            elif piece:
                yield piece
            else:
                # Reading may have been paused by the body's last bytes: resumed, so an
                # idle connection still hears the server close it.
                self.protocol.resume_reading()
                return


class _AsyncResponseStream(_Body[_Connection], httpx.AsyncByteStream):
    async def __aiter__(self) -> AsyncIterator[bytes]:
        self._check_open()
        async for piece in self._connection.read_body(self._timeout):
            yield piece

    async def aclose(self) -> None:
        self._done()


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
        self._ssl_context = ssl_context
        self._state: _PoolState[_Connection] = _PoolState(max_connections, keepalive_expiry)
        self._queue: deque[_Turn] = deque()  # requests waiting for a connection, in order

    @property
    def open_connections(self) -> int:
        return self._state.open

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        origin = _origin(request)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        data = serialize_request(request, await request.aread())
        connection = await self._acquire(origin, timeouts.get("pool"), timeouts.get("connect"))
        read_timeout = timeouts.get("read")
        try:
            await connection.send(data, timeouts.get("write"))
            head = await connection.read_head(request.method, read_timeout)
        except BaseException:
            # Failed, timed out or cancelled mid-exchange: the connection's state is
            # unknown, so it is closed, never handed to the next request.
            self._release(connection, reuse=False)
            raise
        body = _AsyncResponseStream(self._reuse, connection, read_timeout)
        return _response(request, head, body)

    async def _acquire(
        self, origin: Origin, pool_timeout: float | None, connect_timeout: float | None
    ) -> _Connection:
        if self._state.closed:
            raise RuntimeError("this transport is closed")
        # First come, first served: with others waiting, a newcomer queues behind them
        # (a task that has just released a connection and asks again at once would
        # otherwise take it back every time, and starve them).
        got = self._state.take(origin) if not self._queue else None
        if got is None:
            got = await self._wait_turn(origin, pool_timeout)
        if isinstance(got, _Connection):
            return got
        try:
            return await self._connect(origin, connect_timeout)  # a place was reserved
        except BaseException:
            self._state.open -= 1
            self._wake_head()
            raise

    async def _wait_turn(self, origin: Origin, pool_timeout: float | None) -> _Connection | bool:
        loop = asyncio.get_running_loop()
        deadline = None if pool_timeout is None else loop.time() + pool_timeout
        turn = _Turn()
        self._queue.append(turn)
        try:
            while True:
                if self._state.closed:
                    raise RuntimeError("this transport is closed")
                if self._queue[0] is turn:
                    got = self._state.take(origin)
                    if got is not None:
                        return got
                turn.waiter = loop.create_future()
                remaining = None if deadline is None else deadline - loop.time()
                try:
                    await _wait(turn.waiter, remaining, httpx.PoolTimeout, "no connection free")
                finally:
                    turn.waiter = None
        finally:
            self._queue.remove(turn)
            self._wake_head()  # the next in line may go now

    def _wake_head(self) -> None:
        if self._queue:
            waiter = self._queue[0].waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    def _release(self, connection: _Connection, *, reuse: bool) -> None:
        self._state.release(connection, reuse=reuse)
        self._wake_head()

    def _reuse(self, connection: _Connection) -> None:
        self._release(connection, reuse=True)

    async def _connect(self, origin: Origin, timeout: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        reader = ResponseReader()
        tls = self._ssl_context if scheme == "https" else None
        try:
            if tls is None:
                connecting = loop.create_connection(lambda: _Protocol(reader), host, port)
            else:
                connecting = loop.create_connection(
                    lambda: _Protocol(reader),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host,
                    ssl_handshake_timeout=timeout,
                )
            _, protocol = await asyncio.wait_for(connecting, timeout)
        except (asyncio.TimeoutError, TimeoutError):
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:  # refused, unreachable, DNS, and TLS failures (ssl.SSLError)
            raise httpx.ConnectError(f"connecting to {host}:{port} failed: {exc}") from None
        return _Connection(origin, protocol)

    async def aclose(self) -> None:
        """Close every idle connection now, and each busy one when its response is done."""
        self._state.close()
        for turn in self._queue:  # each sees the transport closed and leaves the queue
            if turn.waiter is not None and not turn.waiter.done():
                turn.waiter.set_result(None)


# -- sync I/O ----------------------------------------------------------------------------


def _socket_timeout(timeout: float | None) -> float | None:
    """A timeout as a blocking socket takes it: 0 means "do not wait" here, where a
    socket timeout of 0 would make the socket non-blocking instead."""
    return timeout if timeout is None or timeout > 0 else 1e-9


def _readable(sock: socket.socket) -> bool:
    """Whether an idle socket has something to read (the server closed it, or sent junk)."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])  # pragma: no cover (Windows)


class _SyncConnection(_ConnectionBase):
    """One blocking HTTP/1.1 connection, used by one thread at a time."""

    def __init__(self, origin: Origin, sock: socket.socket) -> None:
        super().__init__(origin, ResponseReader())
        self.sock = sock

    def _alive(self) -> bool:
        return self.sock.fileno() >= 0 and not _readable(self.sock)

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes, timeout: float | None) -> None:
        self.sock.settimeout(_socket_timeout(timeout))
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise httpx.WriteTimeout(f"could not send within {timeout:g} s") from None
        except OSError as exc:
            raise httpx.WriteError(f"the connection failed: {exc}") from None

    def _fill(self, timeout: float | None) -> None:
        self.sock.settimeout(_socket_timeout(timeout))
        try:
            data = self.sock.recv(RECV_BYTES)
        except TimeoutError:
            raise httpx.ReadTimeout(f"no data from the server within {timeout:g} s") from None
        except OSError as exc:
            self.reader.end(exc)
            return
        if data:
            self.reader.feed(data)
        else:
            self.reader.end()

    def read_head(self, method: str, timeout: float | None) -> Head:
        while (head := self.reader.head(method)) is None:
            self._fill(timeout)
        return head

    def read_body(self, timeout: float | None) -> Iterator[bytes]:
        while True:
            piece = self.reader.body()
            if piece is None:
                self._fill(timeout)
            elif piece:
                yield piece
            else:
                return


class _SyncResponseStream(_Body[_SyncConnection], httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        self._check_open()
        yield from self._connection.read_body(self._timeout)

    def close(self) -> None:
        self._done()


class HTTP11Transport(httpx.BaseTransport):
    """The blocking twin of :class:`AsyncHTTP11Transport`, safe to share between threads."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext,
        max_connections: int,
        keepalive_expiry: float = KEEPALIVE_EXPIRY,
    ) -> None:
        self._ssl_context = ssl_context
        self._state: _PoolState[_SyncConnection] = _PoolState(max_connections, keepalive_expiry)
        self._lock = threading.Lock()
        self._queue: deque[_Turn] = deque()  # threads waiting for a connection, in order

    @property
    def open_connections(self) -> int:
        return self._state.open

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        origin = _origin(request)
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        data = serialize_request(request, request.read())
        connection = self._acquire(origin, timeouts.get("pool"), timeouts.get("connect"))
        read_timeout = timeouts.get("read")
        try:
            connection.send(data, timeouts.get("write"))
            head = connection.read_head(request.method, read_timeout)
        except BaseException:
            self._release(connection, reuse=False)  # its state is unknown: closed
            raise
        body = _SyncResponseStream(self._reuse, connection, read_timeout)
        return _response(request, head, body)

    def _acquire(
        self, origin: Origin, pool_timeout: float | None, connect_timeout: float | None
    ) -> _SyncConnection:
        deadline = None if pool_timeout is None else time.monotonic() + pool_timeout
        with self._lock:
            if self._state.closed:
                raise RuntimeError("this transport is closed")
            # First come, first served, as in the async twin: a thread that has just
            # released a connection must not take it back ahead of those waiting.
            got = self._state.take(origin) if not self._queue else None
            if got is None:
                turn = _Turn(self._lock)
                assert turn.ready is not None
                self._queue.append(turn)
                try:
                    while True:
                        if self._state.closed:
                            raise RuntimeError("this transport is closed")
                        if self._queue[0] is turn:
                            got = self._state.take(origin)
                            if got is not None:
                                break
                        remaining = None if deadline is None else deadline - time.monotonic()
                        if remaining is not None and remaining <= 0:
                            raise httpx.PoolTimeout("no connection became free in time")
                        turn.ready.wait(remaining)
                finally:
                    self._queue.remove(turn)
                    self._wake_head()  # the next in line may go now
        if isinstance(got, _SyncConnection):
            return got
        try:
            return self._connect(origin, connect_timeout)  # outside the lock: it may be slow
        except BaseException:
            with self._lock:
                self._state.open -= 1
                self._wake_head()
            raise

    def _wake_head(self) -> None:
        """Wake the first waiting thread (the lock is held)."""
        if self._queue and self._queue[0].ready is not None:
            self._queue[0].ready.notify()

    def _release(self, connection: _SyncConnection, *, reuse: bool) -> None:
        with self._lock:
            self._state.release(connection, reuse=reuse)
            self._wake_head()

    def _reuse(self, connection: _SyncConnection) -> None:
        self._release(connection, reuse=True)

    def _connect(self, origin: Origin, timeout: float | None) -> _SyncConnection:
        scheme, host, port = origin
        try:
            sock = socket.create_connection((host, port), timeout=_socket_timeout(timeout))
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except OSError as exc:
            raise httpx.ConnectError(f"connecting to {host}:{port} failed: {exc}") from None
        try:
            # Small requests go out at once (asyncio sets this on its sockets too).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == "https":
                sock = self._ssl_context.wrap_socket(sock, server_hostname=host)
        except TimeoutError:
            sock.close()
            raise httpx.ConnectTimeout(f"the TLS handshake with {host}:{port} timed out") from None
        except OSError as exc:  # ssl.SSLError included (e.g. certificate verify failed)
            sock.close()
            raise httpx.ConnectError(f"connecting to {host}:{port} failed: {exc}") from None
        return _SyncConnection(origin, sock)

    def close(self) -> None:
        """Close every idle connection now, and each busy one when its response is done."""
        with self._lock:
            self._state.close()
            for turn in self._queue:  # each sees the transport closed and leaves the queue
                if turn.ready is not None:
                    turn.ready.notify()
