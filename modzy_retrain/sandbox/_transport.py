"""httpx transports that serve the sandbox in process, without sockets."""

from __future__ import annotations

import asyncio
import time

import httpx

from ._app import Dispatch, SandboxApp
from ._faults import FaultKind
from ._messages import Request


def _to_request(request: httpx.Request, body: bytes) -> Request:
    headers = {name.lower(): value for name, value in request.headers.items()}
    return Request(
        method=request.method,
        target=request.url.raw_path.decode("ascii"),
        headers=headers,
        body=body,
    )


def _read_timeout(request: httpx.Request) -> float | None:
    timeout = request.extensions.get("timeout")
    if isinstance(timeout, dict):
        value = timeout.get("read")
        if isinstance(value, (int, float)):
            return float(value)
    return None


def _outcome(request: httpx.Request, dispatch: Dispatch) -> httpx.Response:
    """Turn a dispatch into what a socket client would see, raising httpx's own errors."""
    fault = dispatch.fault
    response = dispatch.response
    if fault is not None:
        if fault.kind is FaultKind.DROP:
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        if fault.kind is FaultKind.TRUNCATE:
            received = len(response.body) // 2
            raise httpx.RemoteProtocolError(
                "peer closed connection without sending complete message body "
                f"(received {received} bytes, expected {len(response.body)})",
                request=request,
            )
        if fault.kind is FaultKind.SLOW:
            limit = _read_timeout(request)
            # Never sleep for the slow fault in process: decide the outcome instead.
            if limit is not None and dispatch.delay_s > limit:
                raise httpx.ReadTimeout("timed out", request=request)
    headers = [*response.headers, ("Content-Length", str(len(response.body)))]
    return httpx.Response(
        status_code=response.status,
        headers=headers,
        content=response.body,
        request=request,
        extensions={"http_version": b"HTTP/1.1", "reason_phrase": response.reason.encode()},
    )


class SandboxTransport(httpx.BaseTransport):
    """Synchronous in-process transport: ``httpx.Client(transport=sb.transport())``."""

    def __init__(self, app: SandboxApp) -> None:
        self._app = app

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer one request in process (httpx calls it)."""
        dispatch = self._app.dispatch(_to_request(request, request.read()))
        latency = self._app.latency_ms / 1000.0
        if latency > 0:
            time.sleep(latency)
        return _outcome(request, dispatch)


class AsyncSandboxTransport(httpx.AsyncBaseTransport):
    """Asynchronous in-process transport: ``httpx.AsyncClient(transport=sb.async_transport())``."""

    def __init__(self, app: SandboxApp) -> None:
        self._app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer one request in process (httpx calls it)."""
        dispatch = self._app.dispatch(_to_request(request, await request.aread()))
        latency = self._app.latency_ms / 1000.0
        if latency > 0:
            await asyncio.sleep(latency)
        return _outcome(request, dispatch)
