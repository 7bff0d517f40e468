"""A small, strict HTTP/1.1 server on asyncio, run in a background thread.

Only what API clients need: keep-alive, Content-Length and chunked request bodies,
``Expect: 100-continue``. Route logic is the shared synchronous ``SandboxApp.dispatch``;
latency and slow faults are ``await asyncio.sleep`` so one slow request never blocks the
others.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from email.utils import formatdate
from types import TracebackType

from ._app import SandboxApp
from ._faults import FaultKind
from ._messages import Request, Response, error_response

MAX_HEAD = 64 * 1024
MAX_BODY = 8 * 1024 * 1024
_TOKEN_CHARS = frozenset(
    b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


class _BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Date:
    """The Date header, formatted at most once per second (it is on every response)."""

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode("ascii")
        return self._value


def _parse_head(head: bytes) -> tuple[str, str, str, dict[str, str]]:
    """Parse the request line and headers; raise _BadRequest on anything malformed."""
    lines = head[:-4].split(b"\r\n")
    try:
        method_b, target_b, version_b = lines[0].split(b" ")
    except ValueError:
        raise _BadRequest(400, "Malformed request line") from None
    if not method_b or not set(method_b) <= _TOKEN_CHARS:
        raise _BadRequest(400, "Malformed request method")
    if version_b not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise _BadRequest(505, "Only HTTP/1.0 and HTTP/1.1 are supported")
    if not target_b.startswith(b"/"):
        raise _BadRequest(400, "Only origin-form request targets are supported")
    try:
        target = target_b.decode("ascii")
    except UnicodeDecodeError:
        raise _BadRequest(
            400, "The request target must be ASCII (percent-encode the rest)"
        ) from None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line or line[:1] in (b" ", b"\t"):
            raise _BadRequest(400, "Malformed header (obsolete line folding is not accepted)")
        name_b, sep, value_b = line.partition(b":")
        if not sep or not name_b or not set(name_b) <= _TOKEN_CHARS:
            raise _BadRequest(400, "Malformed header line")
        name = name_b.decode("ascii").lower()
        value = value_b.strip(b" \t").decode("latin-1")
        if name in headers:
            if name in ("content-length", "host"):
                raise _BadRequest(400, f"Duplicate {name} header")
            headers[name] = headers[name] + ", " + value
        else:
            headers[name] = value
    if version_b == b"HTTP/1.1" and "host" not in headers:
        raise _BadRequest(400, "HTTP/1.1 requests need a Host header")
    return method_b.decode("ascii"), target, version_b.decode("ascii"), headers


def _serialize_head(
    response: Response, keep_alive: bool, date: bytes, content_length: int | None = None
) -> bytes:
    length = len(response.body) if content_length is None else content_length
    parts = [f"HTTP/1.1 {response.status} {response.reason}\r\n".encode("latin-1")]
    for name, value in response.headers:
        parts.append(f"{name}: {value}\r\n".encode("latin-1"))
    parts.append(b"Content-Length: %d\r\n" % length)
    parts.append(b"Date: " + date + b"\r\n")
    parts.append(b"Server: modzy-retrain-sandbox\r\n")
    parts.append(b"Connection: keep-alive\r\n\r\n" if keep_alive else b"Connection: close\r\n\r\n")
    return b"".join(parts)


class SandboxServer:
    """The sandbox served over real HTTP on loopback, from a background thread.

    Use as a context manager, or call :meth:`stop`. ``base_url`` ends in ``/api``.
    """

    def __init__(self, app: SandboxApp, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = app
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
            sock.listen(1024)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self.host = host
        self.port: int = sock.getsockname()[1]
        self._date = _Date()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._connections: set[asyncio.StreamWriter] = set()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="modzy-sandbox-server", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise RuntimeError("the sandbox server failed to start") from self._error

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/api"

    # -- lifecycle -------------------------------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:  # surfaced to the starting thread
            self._error = exc
            self._ready.set()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self) -> None:
        self._stop_event = asyncio.Event()
        server = await asyncio.start_server(
            self._serve_connection, sock=self._sock, limit=MAX_HEAD, backlog=1024
        )
        self._ready.set()
        try:
            await self._stop_event.wait()
        finally:
            server.close()
            for writer in list(self._connections):
                writer.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), timeout=2)

    def stop(self) -> None:
        """Stop serving: close the listener and every open connection, then join the thread."""
        if self._stopped:
            return
        self._stopped = True
        loop, event = self._loop, self._stop_event
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop may already be gone
                loop.call_soon_threadsafe(event.set)
        self._thread.join(timeout=10)

    def __enter__(self) -> SandboxServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SandboxServer(base_url={self.base_url!r})"

    # -- connections -----------------------------------------------------------------

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self._connections.add(writer)
        try:
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away mid-request: nothing to answer
        except asyncio.CancelledError:
            # Only stop() cancels connection tasks (e.g. one sleeping for a slow fault).
            # Ending normally keeps asyncio's stream callback from logging the cancellation.
            pass
        finally:
            self._connections.discard(writer)
            writer.close()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; return whether the connection stays open."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if exc.partial.strip():
                await self._reject(writer, _BadRequest(400, "Incomplete request head"))
            return False
        except asyncio.LimitOverrunError:
            await self._reject(writer, _BadRequest(431, "Request header fields too large"))
            return False
        try:
            method, target, version, headers = _parse_head(head)
            body = await self._read_body(reader, writer, headers)
        except _BadRequest as exc:
            await self._reject(writer, exc)
            return False
        connection = headers.get("connection", "").lower()
        if version == "HTTP/1.1":
            keep_alive = "close" not in connection
        else:
            keep_alive = "keep-alive" in connection

        dispatch = self._app.dispatch(Request(method, target, headers, body))
        if dispatch.delay_s > 0:
            await asyncio.sleep(dispatch.delay_s)
        fault = dispatch.fault
        response = dispatch.response
        if fault is not None and fault.kind is FaultKind.DROP:
            writer.transport.abort()  # closed without a single response byte
            return False
        if fault is not None and fault.kind is FaultKind.TRUNCATE:
            head_bytes = _serialize_head(response, True, self._date.get())
            writer.write(head_bytes + response.body[: len(response.body) // 2])
            await writer.drain()
            writer.transport.abort()  # Content-Length promised more than was sent
            return False
        writer.write(_serialize_head(response, keep_alive, self._date.get()) + response.body)
        await writer.drain()
        return keep_alive

    async def _read_body(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, headers: dict[str, str]
    ) -> bytes:
        encoding = headers.get("transfer-encoding")
        length_raw = headers.get("content-length")
        if encoding is not None and length_raw is not None:
            raise _BadRequest(400, "Both Transfer-Encoding and Content-Length were sent")
        if encoding is None and length_raw is None:
            return b""
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        if encoding is not None:
            if encoding.lower() != "chunked":
                raise _BadRequest(501, f"Transfer-Encoding {encoding!r} is not supported")
            return await self._read_chunked(reader)
        assert length_raw is not None
        if not length_raw.isdigit():
            raise _BadRequest(400, "Invalid Content-Length")
        length = int(length_raw)
        if length > MAX_BODY:
            raise _BadRequest(413, "Request body too large")
        return await reader.readexactly(length) if length else b""

    async def _read_chunked(self, reader: asyncio.StreamReader) -> bytes:
        body = bytearray()
        while True:
            line = await reader.readuntil(b"\r\n")
            size_text = line[:-2].split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _BadRequest(400, "Malformed chunk size") from None
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":  # skip trailers
                    pass
                return bytes(body)
            if len(body) + size > MAX_BODY:
                raise _BadRequest(413, "Request body too large")
            body += await reader.readexactly(size)
            if await reader.readexactly(2) != b"\r\n":
                raise _BadRequest(400, "Malformed chunk terminator")

    async def _reject(self, writer: asyncio.StreamWriter, error: _BadRequest) -> None:
        response = error_response(error.status, error.message)
        with contextlib.suppress(ConnectionError):
            writer.write(_serialize_head(response, False, self._date.get()) + response.body)
            await writer.drain()
