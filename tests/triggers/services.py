"""Loopback stand-ins for the services that cannot run here: GitHub, GitLab, Airflow 2
and 3, and a webhook receiver.

Each checks a request against its service's documented shape (method, path, headers,
body), answers as the service does (GitHub 204, GitLab 201, Airflow 200 and its 409
for a run id that exists, the errors' own JSON), and records what it got. What it
finds wrong goes into ``problems`` (and gets the service's error status), so a test
asserts both the outcome and that nothing was off. ``fail_next`` scripts failures
before the normal answer: a status, or ``"timeout"`` (no answer until the client has
given up).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Seen:
    method: str
    path: str  # raw, as sent (percent-encoding kept)
    headers: dict[str, str]  # names lower-cased
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return dict(parse_qsl(self.body.decode("ascii"), keep_blank_values=True))


def _json(status: int, body: object, headers: dict[str, str] | None = None) -> Answer:
    return (
        status,
        {"Content-Type": "application/json", **(headers or {})},
        json.dumps(body).encode(),
    )


@dataclass
class FakeService:
    """A loopback HTTP server whose :meth:`answer` is the service."""

    requests: list[Seen] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    fail_next: list[int | str] = field(default_factory=list)
    retry_after: str | None = None
    url: str = ""
    _stop: threading.Event = field(default_factory=threading.Event)

    def answer(self, seen: Seen) -> Answer:
        raise NotImplementedError

    def wrong(self, what: str, answer: Answer) -> Answer:
        self.problems.append(what)
        return answer

    def _handle(self, seen: Seen) -> Answer | None:
        self.requests.append(seen)
        if self.fail_next:
            failure = self.fail_next.pop(0)
            if failure == "timeout":
                self._stop.wait(3.0)  # longer than the client's timeout
                return None
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return _json(int(failure), {"message": "Server Error"}, headers)
        return self.answer(seen)

    @contextmanager
    def running(self) -> Iterator[FakeService]:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                seen = Seen(
                    "POST",
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    self.rfile.read(length),
                )
                answer = service._handle(seen)
                if answer is None:
                    return
                status, headers, body = answer
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def log_message(self, *args: object) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self
        finally:
            self._stop.set()
            server.shutdown()
            server.server_close()


GITHUB_DISPATCH = re.compile(
    r"^(?P<prefix>.*)/repos/([^/]+)/([^/]+)/actions/workflows/([^/]+)/dispatches$"
)


@dataclass
class FakeGitHub(FakeService):
    """``workflow_dispatch`` as GitHub documents it (REST API version 2022-11-28)."""

    token: str = ""
    prefix: str = ""  # "/api/v3" on GitHub Enterprise Server
    workflows: dict[str, set[str]] = field(default_factory=dict)  # "owner/repo/file": inputs
    refs: set[str] = field(default_factory=lambda: {"main"})

    def answer(self, seen: Seen) -> Answer:
        match = GITHUB_DISPATCH.match(seen.path)
        if match is None or match["prefix"] != self.prefix:
            return self.wrong(f"path {seen.path}", _json(404, {"message": "Not Found"}))
        if seen.headers.get("authorization") != f"Bearer {self.token}":
            return _json(401, {"message": "Bad credentials", "status": "401"})
        if seen.headers.get("accept") != "application/vnd.github+json":
            self.problems.append(f"Accept {seen.headers.get('accept')}")
        if seen.headers.get("x-github-api-version") != "2022-11-28":
            self.problems.append(f"X-GitHub-Api-Version {seen.headers.get('x-github-api-version')}")
        body = seen.json()
        if set(body) - {"ref", "inputs"} or not isinstance(body.get("ref"), str):
            return self.wrong(f"body {body}", _json(422, {"message": "Invalid request."}))
        inputs = body.get("inputs", {})
        if len(inputs) > 10 or not all(isinstance(v, str) for v in inputs.values()):
            return self.wrong(f"inputs {inputs}", _json(422, {"message": "inputs are not strings"}))
        declared = self.workflows.get("/".join(match.groups()[1:]))
        if declared is None:
            return _json(404, {"message": "Not Found"})
        if body["ref"] not in self.refs:
            return _json(422, {"message": f"No ref found for: {body['ref']}"})
        unexpected = sorted(set(inputs) - declared)
        if unexpected:
            return _json(422, {"message": f"Unexpected inputs provided: {unexpected}"})
        return 204, {}, b""

    @property
    def dispatches(self) -> list[dict[str, Any]]:
        return [s.json() for s in self.requests if GITHUB_DISPATCH.match(s.path)]


@dataclass
class FakeGitLab(FakeService):
    """``POST /api/v4/projects/:id/trigger/pipeline`` with a pipeline trigger token."""

    token: str = ""
    prefix: str = ""  # a self-hosted GitLab under a path, e.g. "/gitlab"
    project: str = "42"  # an id, or a path sent URL-encoded (group%2Fproject)
    refs: set[str] = field(default_factory=lambda: {"main"})
    pipelines: int = 0

    def answer(self, seen: Seen) -> Answer:
        expected = f"{self.prefix}/api/v4/projects/{self.project}/trigger/pipeline"
        form = seen.form()
        if seen.path != expected:
            return self.wrong(f"path {seen.path}", _json(404, {"message": "404 Project Not Found"}))
        if not seen.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            self.problems.append(f"Content-Type {seen.headers.get('content-type')}")
        if form.get("token") != self.token:
            return _json(404, {"message": "404 Not Found"})  # GitLab hides the project
        if form.get("ref") not in self.refs:
            return _json(400, {"message": {"base": ["Reference not found"]}})
        wrong = [
            k for k in form if k not in ("token", "ref") and not re.match(r"^variables\[\w+\]$", k)
        ]
        if wrong:
            return self.wrong(f"form fields {wrong}", _json(400, {"message": "bad fields"}))
        self.pipelines += 1
        return _json(
            201,
            {
                "id": 1000 + self.pipelines,
                "iid": self.pipelines,
                "ref": form["ref"],
                "status": "created",
                "source": "trigger",
                "web_url": f"{self.url}/-/pipelines/{1000 + self.pipelines}",
            },
        )

    @property
    def variables(self) -> list[dict[str, str]]:
        return [
            {
                k[len("variables[") : -1]: v
                for k, v in s.form().items()
                if k.startswith("variables[")
            }
            for s in self.requests
            if s.path.endswith("/trigger/pipeline")
        ]


@dataclass
class FakeAirflow(FakeService):
    """The stable REST API: 2.x ``/api/v1`` with basic auth, 3.x ``/api/v2`` with a
    bearer token from ``POST /auth/token``."""

    major: int = 3
    username: str = "admin"
    password: str = ""
    dags: set[str] = field(default_factory=lambda: {"retrain"})
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    issued: str = "eyJhbGciOiJIUzI1NiJ9.airflow-test-jwt.c2lnbmF0dXJl"

    def answer(self, seen: Seen) -> Answer:
        if seen.path == "/auth/token":
            if self.major != 3:
                return self.wrong("/auth/token on Airflow 2", _json(404, {"detail": "Not Found"}))
            body = seen.json()
            if (body.get("username"), body.get("password")) != (self.username, self.password):
                return _json(401, {"detail": "Invalid credentials"})
            return _json(201, {"access_token": self.issued})
        api = "v1" if self.major == 2 else "v2"
        match = re.match(rf"^/api/{api}/dags/([^/]+)/dagRuns$", seen.path)
        if match is None:
            return self.wrong(f"path {seen.path}", _json(404, {"detail": "Not Found"}))
        auth = seen.headers.get("authorization", "")
        if self.major == 2:
            pair = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            if auth != f"Basic {pair}":
                return _json(401, {"title": "Unauthorized", "status": 401, "detail": None})
        elif auth != f"Bearer {self.issued}":
            return _json(401, {"detail": "Not authenticated"})
        dag_id = match[1]
        if dag_id not in self.dags:
            return _json(404, {"detail": f"DAG with dag_id: '{dag_id}' not found", "status": 404})
        body = seen.json()
        allowed = {"dag_run_id", "logical_date", "conf", "note"}
        if self.major == 2:
            allowed |= {"execution_date", "data_interval_start", "data_interval_end"}
        elif "logical_date" not in body:
            loc = ["body", "logical_date"]
            return _json(
                422, {"detail": [{"type": "missing", "loc": loc, "msg": "Field required"}]}
            )
        if set(body) - allowed or not isinstance(body.get("conf", {}), dict):
            return self.wrong(f"body {body}", _json(400, {"detail": f"bad body {sorted(body)}"}))
        run_id = body.get("dag_run_id") or f"manual__{len(self.runs)}"
        if run_id in self.runs:
            detail = f"DAGRun with DAG ID: '{dag_id}' and DAGRun ID: '{run_id}' already exists"
            return _json(409, {"detail": detail, "status": 409, "title": "Conflict"})
        run = {"dag_id": dag_id, "dag_run_id": run_id, "conf": body.get("conf"), "state": "queued"}
        self.runs[run_id] = run
        return _json(200, run)


@dataclass
class FakeWebhook(FakeService):
    """A receiver that checks the HMAC-SHA256 signature of the body when given a key."""

    key: str | None = None
    header: str = "x-signature-256"

    def answer(self, seen: Seen) -> Answer:
        if self.key is not None:
            expected = (
                "sha256=" + hmac.new(self.key.encode(), seen.body, hashlib.sha256).hexdigest()
            )
            if seen.headers.get(self.header) != expected:
                return self.wrong("signature", _json(401, {"error": "bad signature"}))
        return 204, {}, b""
