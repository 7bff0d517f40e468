"""A recording, fault-injecting HTTP proxy in front of a local object store.

Used by the object-store tests in front of moto's S3 server and gcp-storage-emulator:

- it **records** every request (method, path, query, the headers a conditional write
  carries), so a test can prove what the clients sent, e.g. ``ifGenerationMatch=0`` on
  a GCS create;
- it can **enforce** ``ifGenerationMatch=0`` on GCS uploads, as GCS documents it (412
  when the object exists), because the emulator ignores it: the check and the upload
  happen under one lock, so of two conditional creates of one object through the proxy
  only the first succeeds;
- it injects **faults** on a seeded plan: a 5xx answer, a slow answer, a connection
  dropped before the store saw the request, a response lost after the store acted on
  it. Whether a request meets a fault depends on the seed, the request (method, path,
  stable query, body) and how often that same request was seen before, not on timing,
  so a test sees the same faults whatever order its threads send them in. Rules add
  targeted faults (the Nth upload of one part of a multipart upload, the create of a
  manifest...).

Strictly a test helper: HTTP/1.1 with ``Content-Length`` bodies (what s3fs and gcsfs
send), one upstream connection per request.
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, urlsplit

# A run's tag in a file name: tables and journal parts are named after their run.
# A test's bucket is named at random (``conftest.new_store``): not part of a request's
# identity either.
RUN_TAG = re.compile(r"(?<![0-9a-f])[0-9a-f]{8}-|\bb-[0-9a-f]{12}\b")
# Query parameters that differ between two sends of the same request.
_VOLATILE = {"uploadId", "upload_id", "x-id"}
FAULT_KINDS = ("error", "slow", "drop", "lost")
# Only by rule: S3's answer to a conditional write that met another in flight.
CONFLICT = "conflict"


@dataclass(frozen=True)
class Seen:
    """One request the proxy received, and what it did with it."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    object_name: str | None
    fault: str | None
    status: int | None
    elapsed: float = 0.0

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


Rule = Callable[["Seen"], str | None]


@dataclass
class FaultPlan:
    """Which requests meet which fault.

    Attributes:
        seed: The plan's seed.
        rates: Per fault kind (``error``, ``slow``, ``drop``, ``lost``), the share of
            requests that meet it.
        slow_s: How long a slow answer waits before it is sent on.
        rules: Targeted faults: each is asked first, with the request, and returns a
            fault kind or ``None``.
        only: Faults go only to requests this accepts (``None``: all).
    """

    seed: int = 0
    rates: dict[str, float] = field(default_factory=dict)
    slow_s: float = 0.02
    rules: list[Rule] = field(default_factory=list)
    only: Callable[[Seen], bool] | None = None

    def draw(self, seen: Seen, identity: str, occurrence: int) -> str | None:
        for rule in self.rules:
            kind = rule(seen)
            if kind is not None:
                return kind
        if not self.rates or (self.only is not None and not self.only(seen)):
            return None
        roll = random.Random(f"{self.seed}|{identity}|{occurrence}").random()
        for kind in FAULT_KINDS:
            rate = self.rates.get(kind, 0.0)
            if roll < rate:
                return kind
            roll -= rate
        return None


def first(pred: Callable[[Seen], bool], kind: str, times: int = 1) -> Rule:
    """A rule: the first ``times`` requests ``pred`` accepts meet fault ``kind``."""
    left = [times]

    def rule(seen: Seen) -> str | None:
        if left[0] > 0 and pred(seen):
            left[0] -= 1
            return kind
        return None

    return rule


def is_write(seen: Seen) -> bool:
    return seen.method in ("PUT", "POST")


def writes_to(suffix: str) -> Callable[[Seen], bool]:
    """Requests that write an object whose name ends with ``suffix``."""
    return lambda seen: is_write(seen) and (seen.object_name or "").endswith(suffix)


class StoreProxy:
    """A running proxy: its endpoint, what it saw, and its fault plan (changeable)."""

    def __init__(self, upstream: str, *, gcs: bool, enforce_generation_match: bool) -> None:
        parts = urlsplit(upstream)
        self.upstream_host = parts.hostname or "127.0.0.1"
        self.upstream_port = parts.port or 80
        self.gcs = gcs
        self.enforce = enforce_generation_match
        self.plan = FaultPlan()
        self.seen: list[Seen] = []
        self.faults: Counter[str] = Counter()
        self._occurrences: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._creating = threading.Lock()
        self.endpoint = ""

    # -- what the tests read ------------------------------------------------------

    def requests(self, pred: Callable[[Seen], bool] | None = None) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if pred is None or pred(s)]

    def reset(self, plan: FaultPlan | None = None) -> None:
        with self._lock:
            self.seen.clear()
            self.faults.clear()
            self._occurrences.clear()
            self.plan = plan or FaultPlan()

    # -- the work of one request ----------------------------------------------------

    @staticmethod
    def _identity(method: str, path: str, query: dict[str, str], name: str | None) -> str:
        """What makes two requests the same one, from one run to the next: not a run's
        tag in a file name (``v0001/1a2b3c4d-samples.jsonl``), nor an upload's id, nor
        a body (a manifest holds its run id and time)."""
        stable = sorted((k, RUN_TAG.sub("TAG-", v)) for k, v in query.items() if k not in _VOLATILE)
        return f"{method} {RUN_TAG.sub('TAG-', path)} {RUN_TAG.sub('TAG-', name or '')} {stable}"

    def upstream(
        self, method: str, target: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        conn = http.client.HTTPConnection(self.upstream_host, self.upstream_port, timeout=60)
        try:
            conn.request(method, target, body=body or None, headers=headers)
            answer = conn.getresponse()
            return answer.status, answer.reason, answer.getheaders(), answer.read()
        finally:
            conn.close()

    def object_exists(self, bucket: str, name: str) -> bool:
        target = f"/storage/v1/b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
        status, _, _, _ = self.upstream("GET", target, {}, b"")
        return status == 200


def gcs_object_name(path: str, query: dict[str, str], body: bytes) -> tuple[str, str] | None:
    """``(bucket, name)`` of a GCS upload: the name is in the query (media, resumable)
    or in the JSON part of a multipart body."""
    matched = re.fullmatch(r"/upload/storage/v1/b/([^/]+)/o", path)
    if matched is None:
        return None
    bucket = matched.group(1)
    if "name" in query:
        return bucket, query["name"]
    found = re.search(rb"\r?\n\r?\n(\{.*?\})\r?\n--", body, re.S)
    if found is None:
        return None
    try:
        return bucket, str(json.loads(found.group(1))["name"])
    except (ValueError, KeyError):
        return None


def s3_object_name(path: str) -> str | None:
    parts = path.lstrip("/").split("/", 1)
    return parts[1] if len(parts) == 2 else None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    proxy: StoreProxy

    def log_message(self, format: str, *args: object) -> None:
        return None

    def _any(self) -> None:
        proxy = self.proxy
        body = self._body()
        split = urlsplit(self.path)
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        headers = {k.lower(): v for k, v in self.headers.items()}
        named = gcs_object_name(split.path, query, body) if proxy.gcs else None
        name = named[1] if named else (None if proxy.gcs else s3_object_name(split.path))
        probe = Seen(self.command, split.path, query, headers, name, None, None)
        identity = proxy._identity(self.command, split.path, query, name)
        with proxy._lock:
            occurrence = proxy._occurrences[identity]
            proxy._occurrences[identity] += 1
            fault = proxy.plan.draw(probe, identity, occurrence)
            slow_s = proxy.plan.slow_s
            if fault is not None:
                proxy.faults[fault] += 1
        status: int | None = None
        started = time.perf_counter()
        try:
            if fault == "slow":
                time.sleep(slow_s)
            if fault == "error":
                status = 503
                self._answer_error(503, "injected: service unavailable")
                return
            if fault == "drop":
                self._drop()
                return
            if fault == CONFLICT:
                status = 409
                self._answer_error(409, "A conflicting conditional operation is currently "
                                   "in progress against this resource.")  # fmt: skip
                return
            conditional = proxy.gcs and query.get("ifGenerationMatch") == "0" and named
            if conditional and proxy.enforce:
                assert named is not None
                with proxy._creating:
                    if proxy.object_exists(*named):
                        status = 412
                        self._answer_error(412, "At least one of the pre-conditions you "
                                           "specified did not hold.")  # fmt: skip
                        return
                    answer = proxy.upstream(self.command, self.path, dict(self.headers), body)
            else:
                answer = proxy.upstream(self.command, self.path, dict(self.headers), body)
            status = answer[0]
            if fault == "lost":
                self._drop()  # the store acted; its answer never arrives
                return
            self._relay(*answer)
        finally:
            elapsed = time.perf_counter() - started
            seen = Seen(self.command, split.path, query, headers, name, fault, status, elapsed)
            with proxy._lock:
                proxy.seen.append(seen)

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            del self.headers["Transfer-Encoding"]
            body = b"".join(chunks)
            self.headers["Content-Length"] = str(len(body))
            return body
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_PATCH = _any

    def _relay(self, status: int, reason: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response_only(status, reason)
        for key, value in headers:
            if key.lower() not in ("transfer-encoding", "connection", "content-length", "date"):
                self.send_header(key, value)
        if self.command != "HEAD" or body:
            self.send_header("Content-Length", str(len(body)))
        else:
            length = {k.lower(): v for k, v in headers}.get("content-length", "0")
            self.send_header("Content-Length", length)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _answer_error(self, status: int, message: str) -> None:
        if self.proxy.gcs:
            errors = [{"message": message}]
            error = {"error": {"code": status, "message": message, "errors": errors}}
            body, kind = json.dumps(error).encode(), "application/json"
        else:
            code = {
                409: "ConditionalRequestConflict",
                412: "PreconditionFailed",
                503: "ServiceUnavailable",
            }.get(status, "Error")
            body = (
                f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
                f"<Message>{message}</Message></Error>"
            ).encode()
            kind = "application/xml"
        self.send_response_only(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _drop(self) -> None:
        self.close_connection = True
        with suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        return None  # a client that hung up (a dropped connection, a timeout)


@contextmanager
def store_proxy(
    upstream: str, *, gcs: bool = False, enforce_generation_match: bool = False
) -> Iterator[StoreProxy]:
    """Run a proxy to ``upstream`` (an ``http://host:port`` endpoint) on loopback."""
    proxy = StoreProxy(upstream, gcs=gcs, enforce_generation_match=enforce_generation_match)
    handler = type("Handler", (_Handler,), {"proxy": proxy})
    server = _QuietServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    proxy.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="store-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
