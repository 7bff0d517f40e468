"""LabelStudioClient without a server: retries, refreshes, refusals (httpx.MockTransport).

What a real server would not do on demand (fail with 5xx, answer garbage, expire an
access token) is played by a transport; no test sleeps (the client's sleep records).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from modzy_retrain import (
    ConfigurationError,
    LabelStudioAuthError,
    LabelStudioClient,
    LabelStudioConnectionError,
    LabelStudioResponseError,
    LabelStudioRetry,
    LabelStudioStatusError,
)

URL = "http://ls.test"
LEGACY = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"


def jwt(token_type: str, signature: str) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part({'token_type': token_type})}.{signature}"


PAT = jwt("refresh", "refresh-signature-canary-9f8e")
Handler = Callable[[httpx.Request], httpx.Response]


def make(
    handler: Handler, api_key: str = LEGACY, **policy: Any
) -> tuple[LabelStudioClient, list[float]]:
    sleeps: list[float] = []
    retry = LabelStudioRetry(**{"jitter": 0.0, **policy})
    client = LabelStudioClient(
        URL,
        api_key,
        http_client=httpx.Client(transport=httpx.MockTransport(handler)),
        retry=retry,
        sleep=sleeps.append,
    )
    return client, sleeps


def scripted(*answers: httpx.Response | Exception) -> tuple[Handler, list[httpx.Request]]:
    """A handler giving these answers in order (an exception is raised as the transport's)."""
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    return handler, seen


USER = httpx.Response(200, json={"id": 1, "email": "admin@example.com"})


def test_a_get_is_retried_on_5xx_with_growing_waits_and_no_real_sleep() -> None:
    handler, seen = scripted(httpx.Response(502), httpx.Response(503), httpx.Response(500), USER)
    client, sleeps = make(handler, initial_wait=0.5)
    assert client.whoami().id == 1
    assert len(seen) == 4
    assert sleeps == [0.5, 1.0, 2.0]


def test_retries_are_bounded_and_the_last_error_is_raised() -> None:
    handler, seen = scripted(*[httpx.Response(503)] * 3)
    client, sleeps = make(handler, max_attempts=3)
    with pytest.raises(LabelStudioStatusError) as info:
        client.whoami()
    assert info.value.status_code == 503
    assert len(seen) == 3
    assert len(sleeps) == 2


def test_the_total_budget_bounds_the_waits() -> None:
    handler, seen = scripted(*[httpx.Response(500)] * 10)
    client, sleeps = make(handler, max_attempts=10, initial_wait=4.0, max_total_seconds=10.0)
    with pytest.raises(LabelStudioStatusError):
        client.whoami()
    assert sleeps == [4.0]  # the next wait (8 s) would pass the 10 s budget
    assert len(seen) == 2


def test_429_is_retried_after_the_time_the_server_asked_even_for_a_creation() -> None:
    handler, seen = scripted(
        httpx.Response(429, headers={"Retry-After": "7"}),
        httpx.Response(201, json={"task_ids": [11]}),
    )
    client, sleeps = make(handler)
    assert client.import_tasks(3, [{"data": {"text": "x"}}]) == [11]
    assert sleeps == [7.0]
    assert len(seen) == 2


@pytest.mark.parametrize("failure", [httpx.Response(500), httpx.ReadError("connection reset")])
def test_a_creation_is_not_sent_twice_when_the_server_may_have_acted(
    failure: httpx.Response | Exception,
) -> None:
    # Label Studio does not deduplicate imports: a resent chunk would be imported twice.
    handler, seen = scripted(failure, httpx.Response(201, json={"task_ids": [1]}))
    client, sleeps = make(handler)
    with pytest.raises((LabelStudioStatusError, LabelStudioConnectionError)):
        client.import_tasks(3, [{"data": {"text": "x"}}])
    assert len(seen) == 1
    assert sleeps == []


def test_a_creation_is_retried_when_the_connection_was_never_made() -> None:
    handler, seen = scripted(
        httpx.ConnectError("refused"), httpx.Response(201, json={"task_ids": [5]})
    )
    client, _ = make(handler)
    assert client.import_tasks(3, [{"data": {"text": "x"}}]) == [5]
    assert len(seen) == 2


def test_a_dropped_read_is_retried_for_a_get() -> None:
    handler, seen = scripted(httpx.ReadError("reset"), httpx.ReadTimeout("slow"), USER)
    client, sleeps = make(handler)
    assert client.whoami().id == 1
    assert len(seen) == 3
    assert len(sleeps) == 2


def test_malformed_json_is_refused_with_a_typed_error_and_not_retried() -> None:
    handler, seen = scripted(
        httpx.Response(
            200, content=b'{"id": 1, "email": ', headers={"content-type": "application/json"}
        )
    )
    client, sleeps = make(handler)
    with pytest.raises(LabelStudioResponseError, match="not JSON") as info:
        client.whoami()
    assert info.value.status_code == 200
    assert len(seen) == 1
    assert sleeps == []


@pytest.mark.parametrize(
    ("method", "body"),
    [
        ("whoami", {"email": "no id"}),
        ("tasks", {"total": 1, "results": []}),
        ("tasks", {"total": 1, "tasks": [{"id": "not a number"}]}),
        ("import", {"task_ids": [1, 2]}),
    ],
)
def test_a_body_of_the_wrong_shape_is_a_typed_error(method: str, body: object) -> None:
    handler, _ = scripted(httpx.Response(200, json=body))
    client, _ = make(handler)
    calls: dict[str, Callable[[], object]] = {
        "whoami": client.whoami,
        "tasks": lambda: list(client.tasks(1)),
        "import": lambda: client.import_tasks(1, [{"data": {}}]),
    }
    with pytest.raises(LabelStudioResponseError):
        calls[method]()


def test_tasks_are_paged_up_to_the_total_and_never_past_it() -> None:
    pages: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        page = int(request.url.params["page"])
        pages.append(page)
        assert request.url.params["fields"] == "all"
        first = (page - 1) * 100
        tasks = [{"id": i, "data": {}} for i in range(first, min(first + 100, 250))]
        return httpx.Response(200, json={"total": 250, "tasks": tasks})

    client, _ = make(handler)
    assert [t.id for t in client.tasks(1)] == list(range(250))
    assert pages == [1, 2, 3]


def test_imports_are_chunked() -> None:
    sizes: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params["return_task_ids"] == "true"
        chunk = json.loads(request.content)
        sizes.append(len(chunk))
        return httpx.Response(201, json={"task_ids": list(range(len(chunk)))})

    client, _ = make(handler)
    assert (
        len(client.import_tasks(1, [{"data": {"n": n}} for n in range(1001)], chunk_size=400))
        == 1001
    )
    assert sizes == [400, 400, 201]


def refreshing_server(expire_after: int) -> tuple[Handler, list[str]]:
    """A server whose access tokens stop working after ``expire_after`` uses."""
    log: list[str] = []
    state = {"issued": 0, "uses": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/token/refresh/":
            assert json.loads(request.content) == {"refresh": PAT}
            state["issued"] += 1
            state["uses"] = 0
            log.append("refresh")
            return httpx.Response(
                200, json={"access": jwt("access", f"access-sig-{state['issued']}")}
            )
        auth = request.headers["Authorization"]
        log.append(auth.split(".")[-1] if auth.startswith("Bearer ") else auth)
        state["uses"] += 1
        if not auth.startswith("Bearer ") or state["uses"] > expire_after:
            return httpx.Response(401, json={"detail": "Token is expired"})
        return USER

    return handler, log


def test_a_pat_is_exchanged_for_a_bearer_token_and_refreshed_on_401() -> None:
    handler, log = refreshing_server(expire_after=2)
    client, _ = make(handler, api_key=PAT)
    assert client.token_kind == "personal"
    for _ in range(3):
        client.whoami()
    assert log == [
        "refresh",
        "access-sig-1",
        "access-sig-1",
        "access-sig-1",  # expired: refreshed once, then sent again
        "refresh",
        "access-sig-2",
    ]


def test_a_refused_pat_is_a_typed_auth_error_without_the_token() -> None:
    handler, seen = scripted(httpx.Response(401, json={"detail": f"Token is invalid: {PAT}"}))
    client, _ = make(handler, api_key=PAT)
    with pytest.raises(LabelStudioAuthError) as info:
        client.whoami()
    assert info.value.path == "/api/token/refresh/"
    assert len(seen) == 1
    assert "refresh-signature-canary" not in str(info.value) + repr(info.value.__dict__)


def test_a_refresh_failing_with_5xx_is_retried() -> None:
    handler, seen = scripted(
        httpx.Response(503),
        httpx.Response(200, json={"access": jwt("access", "sig")}),
        USER,
    )
    client, sleeps = make(handler, api_key=PAT)
    assert client.whoami().id == 1
    assert [r.url.path for r in seen] == [
        "/api/token/refresh/",
        "/api/token/refresh/",
        "/api/current-user/whoami",
    ]
    assert len(sleeps) == 1


def test_a_token_echoed_by_the_server_is_redacted() -> None:
    handler, _ = scripted(httpx.Response(403, json={"detail": f"token {LEGACY} lacks rights"}))
    client, _ = make(handler)
    with pytest.raises(LabelStudioAuthError) as info:
        client.whoami()
    assert LEGACY not in str(info.value) + repr(info.value.body)
    assert info.value.status_code == 403


def test_an_unknown_route_answering_html_keeps_no_markup_in_the_message() -> None:
    handler, _ = scripted(httpx.Response(404, text="<!doctype html>" + "x" * 5000))
    client, _ = make(handler)
    with pytest.raises(LabelStudioStatusError) as info:
        client.get_project(4)
    assert str(info.value) == "GET /api/projects/4 answered 404"
    assert len(str(info.value.body)) <= 500


@pytest.mark.parametrize(
    ("token", "kind"),
    [
        (LEGACY, "legacy"),
        (PAT, "personal"),
        (jwt("access", "sig"), "access"),
        ("a.b.c", "legacy"),  # three parts, but not a JWT
    ],
)
def test_the_token_kind_is_recognised_from_its_shape(token: str, kind: str) -> None:
    client = LabelStudioClient(URL, token)
    assert client.token_kind == kind
    assert token not in repr(client)


def test_url_and_key_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LABEL_STUDIO_URL", "http://127.0.0.1:8080/")
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", LEGACY)
    client = LabelStudioClient()
    assert client.url == "http://127.0.0.1:8080"
    assert client.token_kind == "legacy"


@pytest.mark.parametrize(
    "build",
    [
        lambda: LabelStudioClient(),
        lambda: LabelStudioClient(URL),
        lambda: LabelStudioClient("ftp://host", LEGACY),
        lambda: LabelStudioClient("http://user:pw@host", LEGACY),
        lambda: LabelStudioClient(URL, "two words"),
        lambda: LabelStudioClient(URL, LEGACY, timeout=0),
        lambda: LabelStudioClient(URL, LEGACY, retry={"max_attempts": 2}),  # type: ignore[arg-type]
        lambda: LabelStudioRetry(max_attempts=0),
        lambda: LabelStudioClient(URL, LEGACY).import_tasks(1, [{"data": {}}], chunk_size=0),
        lambda: LabelStudioClient(URL, LEGACY).import_tasks(1, [{"text": "no data"}]),
        lambda: LabelStudioClient(URL, LEGACY).import_tasks(0, []),
        lambda: LabelStudioClient(URL, LEGACY).create_project("ab", "<View/>"),
        lambda: LabelStudioClient(URL, LEGACY).create_project("a title", "not xml"),
        lambda: LabelStudioClient(URL, LEGACY).create_annotation(1, "cat"),  # type: ignore[arg-type]
        lambda: LabelStudioClient(URL, LEGACY).create_annotation(1, [], completed_by=0),
        lambda: LabelStudioClient(URL, LEGACY).find_project(""),
        lambda: LabelStudioClient(URL, LEGACY).create_user("not an email"),
        lambda: list(LabelStudioClient(URL, LEGACY).tasks(1, page_size=True)),
    ],
)
def test_invalid_arguments_raise_configuration_error_before_any_request(
    build: Callable[[], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(httpx.Client, "send", lambda *a, **k: pytest.fail("a request was sent"))
    with pytest.raises(ConfigurationError):
        build()
