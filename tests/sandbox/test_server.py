"""The socket server over real loopback HTTP, with plain httpx and raw sockets."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from modzy_retrain.sandbox import Sandbox, SandboxServer


@pytest.fixture(scope="module")
def served(make_sb: Any) -> Iterator[tuple[Sandbox, SandboxServer]]:
    sb = make_sb(seed=0, jobs=120)
    with sb.serve() as server:
        yield sb, server


@pytest.fixture
def client(served: tuple[Sandbox, SandboxServer]) -> Iterator[httpx.Client]:
    sb, server = served
    headers = {"Authorization": f"ApiKey {sb.api_key}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=10.0) as http:
        yield http


def _raw(server: SandboxServer, payload: bytes, read_all: bool = True) -> bytes:
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(payload)
        if not read_all:
            return sock.recv(65536)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def _responses(data: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Split a byte stream of HTTP/1.1 responses (Content-Length framed)."""
    out = []
    while data:
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        out.append((status, headers, rest[:length]))
        data = rest[length:]
    return out


def _votable(sb: Sandbox) -> tuple[Any, Any]:
    return next(
        (j, i)
        for j in sb.jobs
        if j.status == "COMPLETED"
        for i in j.inputs
        if i.status == "SUCCESSFUL" and i.name.isalnum()
    )


def test_base_url_and_same_answers_as_in_process(
    served: tuple[Sandbox, SandboxServer], client: httpx.Client, client_of: Any
) -> None:
    sb, server = served
    assert server.base_url == f"http://127.0.0.1:{server.port}/api"
    assert server.host == "127.0.0.1"
    assert server.port > 0
    with client_of(sb) as local:
        for path in ("/models", "/jobs/history?per-page=50", f"/results/{sb.jobs[3].id}"):
            assert client.get(path).json() == local.get(path).json()


def test_keep_alive_reuses_one_connection(served: tuple[Sandbox, SandboxServer]) -> None:
    sb, server = served
    request = (
        f"GET /api/jobs/history HTTP/1.1\r\nHost: x\r\nAuthorization: ApiKey {sb.api_key}\r\n\r\n"
    ).encode()
    last = request.replace(b"Host: x\r\n", b"Host: x\r\nConnection: close\r\n")
    # Three requests pipelined on one connection; the last asks to close.
    answers = _responses(_raw(server, request + request + last))
    assert [status for status, _, _ in answers] == [200, 200, 200]
    assert answers[0][1]["connection"] == "keep-alive"
    assert answers[2][1]["connection"] == "close"
    assert answers[0][2] == answers[1][2]
    assert answers[0][1]["content-type"] == "application/json"
    assert "date" in answers[0][1]


def test_httpx_keeps_the_connection(
    served: tuple[Sandbox, SandboxServer], client: httpx.Client
) -> None:
    ports = set()
    for _ in range(5):
        with client.stream("GET", "/models") as response:
            stream = response.extensions["network_stream"]
            ports.add(stream.get_extra_info("socket").getsockname()[1])
            response.read()
    assert len(ports) == 1


def test_http_10_closes_by_default(served: tuple[Sandbox, SandboxServer]) -> None:
    sb, server = served
    payload = f"GET /api/models HTTP/1.0\r\nAuthorization: ApiKey {sb.api_key}\r\n\r\n".encode()
    [(status, headers, body)] = _responses(_raw(server, payload))
    assert status == 200
    assert headers["connection"] == "close"
    assert json.loads(body)


def test_chunked_request_body(served: tuple[Sandbox, SandboxServer]) -> None:
    sb, server = served
    job, item = _votable(sb)
    payload = (
        f"POST /api/results/{job.id}/upvote/{item.name} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: ApiKey {sb.users[3].access_key}\r\nTransfer-Encoding: chunked\r\n"
        "Connection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
    ).encode()
    [(status, _, body)] = _responses(_raw(server, payload))
    assert status == 200
    assert json.loads(body) == {}
    payload = (
        f"DELETE /api/results/{job.id}/vote/{item.name} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: ApiKey {sb.api_key}\r\nConnection: close\r\n\r\n"
    ).encode()
    assert _responses(_raw(server, payload))[0][0] == 200


def test_expect_100_continue(served: tuple[Sandbox, SandboxServer]) -> None:
    sb, server = served
    job, item = _votable(sb)
    head = (
        f"POST /api/results/{job.id}/downvote/{item.name} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: ApiKey {sb.users[4].access_key}\r\nContent-Length: 2\r\n"
        "Expect: 100-continue\r\nConnection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(head)
        assert sock.recv(1024).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(b"{}")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert _responses(data)[0][0] == 200
    payload = (
        f"DELETE /api/results/{job.id}/vote/{item.name} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: ApiKey {sb.api_key}\r\nConnection: close\r\n\r\n"
    ).encode()
    assert _responses(_raw(server, payload))[0][0] == 200


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /api/models HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (b"GET /api/models HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET http://x/api/models HTTP/1.1\r\nHost: x\r\n\r\n", 400),  # absolute-form
        (b"GET /api/models HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (b"GET /api/models HTTP/1.1\r\nHost: x\r\nBad Header: 1\r\n\r\n", 400),
        (b"POST /api/models HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
        (
            b"POST /api/models HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 1\r\nContent-Length: 1\r\n\r\n",
            400,
        ),
        (b"POST /api/models HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        (b"POST /api/models HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n", 413),
        (b"GET /api/" + b"a" * 70000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 431),
    ],
)
def test_malformed_requests(
    served: tuple[Sandbox, SandboxServer], payload: bytes, status: int
) -> None:
    _, server = served
    answers = _responses(_raw(server, payload))
    assert answers[0][0] == status
    assert answers[0][1]["connection"] == "close"
    assert json.loads(answers[0][2])["statusCode"] == status


def test_client_hanging_up_mid_request_is_harmless(
    served: tuple[Sandbox, SandboxServer], client: httpx.Client
) -> None:
    _, server = served
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"GET /api/models HTTP/1.1\r\nHost: x\r\n")  # never finished
    with socket.create_connection((server.host, server.port), timeout=5) as sock:
        sock.sendall(b"POST /api/models HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc")
    assert client.get("/models").status_code == 200


def test_percent_encoded_names_over_http(
    served: tuple[Sandbox, SandboxServer], client: httpx.Client
) -> None:
    sb, _ = served
    job, item = next(
        (j, i)
        for j in sb.jobs
        if j.status == "COMPLETED"
        for i in j.inputs
        if " " in i.name and i.status == "SUCCESSFUL"
    )
    encoded = quote(item.name, safe="")
    body = client.get(f"/results/{job.id}/datasource/{encoded}").json()
    assert body["inputName"] == item.name
    raw = client.get(f"/results/{job.id}/{encoded}/results.json")
    assert raw.json()["data"]["result"]["classPredictions"][0]["class"] == item.predicted


def test_concurrent_clients(served: tuple[Sandbox, SandboxServer]) -> None:
    sb, server = served
    errors: list[BaseException] = []
    counts: list[int] = []
    ports: set[int] = set()
    # One thread-safe client with a 64-connection pool: 64 threads, 64 sockets at once.
    http = httpx.Client(
        base_url=server.base_url,
        headers={"Authorization": f"ApiKey {sb.api_key}"},
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=64),
    )
    barrier = threading.Barrier(64)

    def worker(index: int) -> None:
        try:
            barrier.wait(timeout=10)
            ids = []
            for page in range(1, 4):
                params = {"page": page, "per-page": 5 + index % 3}
                with http.stream("GET", "/jobs/history", params=params) as response:
                    stream = response.extensions["network_stream"]
                    ports.add(stream.get_extra_info("socket").getsockname()[1])
                    assert response.status_code == 200
                    ids += [j["jobIdentifier"] for j in json.loads(response.read())]
            counts.append(len(ids))
        except BaseException as exc:
            errors.append(exc)

    with http:
        threads = [threading.Thread(target=worker, args=(i,)) for i in range(64)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    assert len(counts) == 64
    assert len(ports) > 8  # many connections were open at once


@pytest.mark.anyio
async def test_latency_does_not_serialize_requests(make_sb: Any) -> None:
    # 64 concurrent requests, each held 100 ms by the server: done in far less than 6.4 s.
    sb = make_sb(jobs=10, latency_ms=100)
    limits = httpx.Limits(max_connections=64)
    with sb.serve() as server:
        async with httpx.AsyncClient(
            base_url=server.base_url,
            headers={"Authorization": f"ApiKey {sb.api_key}"},
            limits=limits,
        ) as client:
            started = time.perf_counter()
            responses = await asyncio.gather(*(client.get("/models") for _ in range(64)))
            elapsed = time.perf_counter() - started
    assert all(r.status_code == 200 for r in responses)
    assert 0.1 <= elapsed < 2.0


def test_stop_is_clean_and_idempotent(make_sb: Any) -> None:
    sb = make_sb(jobs=5)
    server = sb.serve()
    headers = {"Authorization": f"ApiKey {sb.api_key}"}
    with httpx.Client(base_url=server.base_url, headers=headers) as http:
        assert http.get("/models").status_code == 200  # leaves a kept-alive connection open
        server.stop()
        server.stop()
        with pytest.raises(httpx.TransportError):
            http.get("/models")
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection((server.host, server.port), timeout=1),
    ):
        pass


def test_stop_with_a_slow_request_in_flight(make_sb: Any) -> None:
    from modzy_retrain.sandbox import FaultConfig

    sb = make_sb(jobs=5, faults=FaultConfig(slow_rate=1.0, slow_ms=30_000))
    server = sb.serve()
    outcome: list[str] = []

    def call() -> None:
        try:
            httpx.get(
                f"{server.base_url}/models",
                headers={"Authorization": f"ApiKey {sb.api_key}"},
                timeout=10,
            )
            outcome.append("answered")
        except httpx.TransportError as exc:
            outcome.append(type(exc).__name__)

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 5
    while sb.request_total == 0 and time.monotonic() < deadline:
        time.sleep(0.01)  # wait until the server holds the request
    started = time.perf_counter()
    server.stop()
    thread.join(5)
    assert time.perf_counter() - started < 3
    assert outcome
    assert outcome != ["answered"]


def test_context_manager_and_port_choice(make_sb: Any) -> None:
    sb = make_sb(jobs=5)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with sb.serve(port=port) as server:
        assert server.port == port
        assert httpx.get(f"{server.base_url}/models").status_code == 401
    with (
        pytest.raises(OSError, match="in use"),
        sb.serve(port=port) as first,
        sb.serve(port=first.port),
    ):
        pass


def test_ipv6_loopback(make_sb: Any) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    sb = make_sb(jobs=5)
    try:
        server = sb.serve(host="::1")
    except OSError:
        pytest.skip("IPv6 loopback unavailable")
    with server:
        assert server.base_url.startswith("http://[::1]:")
        response = httpx.get(
            f"{server.base_url}/models", headers={"Authorization": f"ApiKey {sb.api_key}"}
        )
        assert response.status_code == 200


def test_serve_writes_inputs(make_sb: Any) -> None:
    import fsspec

    sb = make_sb(jobs=5)
    with sb.serve():
        job = sb.jobs[0]
        fs, path = fsspec.core.url_to_fs(sb.input_url(job.id, job.inputs[0].name))
        assert fs.exists(path) or (job.id, job.inputs[0].name) in sb.missing_inputs
