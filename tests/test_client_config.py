"""Client configuration, error mapping and the secrecy of the API key."""

from __future__ import annotations

import logging
import pickle
import re
import ssl
import warnings

import httpcore
import httpx
import pytest

import modzy_retrain as mr
from modzy_retrain import (
    APIStatusError,
    AsyncModzyClient,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    InsecureBaseURLWarning,
    InternalServerError,
    ModzyClient,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    RetryPolicy,
    UnprocessableEntityError,
)

SECRET = "ZyXwVuTsRq9876543210"
KEY = f"AbCdEfGhIj0123456789.{SECRET}"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODZY_API_KEY", raising=False)
    monkeypatch.delenv("MODZY_BASE_URL", raising=False)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://app.modzy.com", "https://app.modzy.com/api"),
        ("https://app.modzy.com/", "https://app.modzy.com/api"),
        ("https://app.modzy.com/api", "https://app.modzy.com/api"),
        ("https://app.modzy.com/api/", "https://app.modzy.com/api"),
        ("https://host:8443/prefix", "https://host:8443/prefix/api"),
        ("http://127.0.0.1:9000/api", "http://127.0.0.1:9000/api"),
    ],
)
def test_base_url_accepts_host_or_api_root(given: str, expected: str) -> None:
    with ModzyClient(api_key=KEY, base_url=given) as client:
        assert client.base_url == expected


@pytest.mark.parametrize("bad", ["app.modzy.com", "ftp://host", "https://host/api?x=1", "https://"])
def test_bad_base_urls_are_configuration_errors(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        ModzyClient(api_key=KEY, base_url=bad)


def test_key_and_url_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match="MODZY_API_KEY"):
        ModzyClient(base_url="https://h")
    monkeypatch.setenv("MODZY_API_KEY", KEY)
    with pytest.raises(ConfigurationError, match="MODZY_BASE_URL"):
        ModzyClient()
    monkeypatch.setenv("MODZY_BASE_URL", "https://env.example")
    with ModzyClient() as client:
        assert client.base_url == "https://env.example/api"
        assert client.api_key_prefix == "AbCdEfGhIj0123456789"
    # Arguments win over the environment.
    with ModzyClient(api_key="other.keykeykey", base_url="https://arg.example") as client:
        assert client.base_url == "https://arg.example/api"
        assert client.api_key_prefix == "other"


def test_plain_http_to_a_remote_host_warns_but_loopback_does_not() -> None:
    with pytest.warns(InsecureBaseURLWarning):
        ModzyClient(api_key=KEY, base_url="http://modzy.example.com").close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for url in (
            "http://127.0.0.1:8000",
            "http://localhost",
            "http://[::1]:80",
            "https://x.com",
        ):
            ModzyClient(api_key=KEY, base_url=url).close()


def test_identical_parameters_for_sync_and_async() -> None:
    import inspect

    sync = inspect.signature(ModzyClient.__init__).parameters
    asyn = inspect.signature(AsyncModzyClient.__init__).parameters
    assert list(sync) == list(asyn)


def error_client(status: int, body: object, headers: dict[str, str] | None = None) -> ModzyClient:
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, (dict, list)):
            return httpx.Response(status, json=body, headers=headers)
        return httpx.Response(status, text=str(body), headers=headers)

    return ModzyClient(
        api_key=KEY,
        base_url="https://modzy.invalid",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy.disabled(),
    )


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (409, ConflictError),
        (422, UnprocessableEntityError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, InternalServerError),
        (504, InternalServerError),
        (405, APIStatusError),
        (413, APIStatusError),
        (302, APIStatusError),
    ],
)
def test_status_mapping(status: int, cls: type[APIStatusError]) -> None:
    body = {"statusCode": status, "status": "x", "message": "the reason", "reportErrorUrl": "u"}
    with error_client(status, body) as client, pytest.raises(cls) as info:
        client.jobs.retrieve("job-1")
    err = info.value
    assert type(err) is cls
    assert err.status_code == status
    assert err.api_message == "the reason"
    assert (err.method, err.path) == ("GET", "/jobs/job-1")
    assert "the reason" in str(err)
    assert "GET /jobs/job-1" in str(err)
    assert isinstance(err, mr.APIError)
    assert isinstance(err, mr.ModzyRetrainError)
    clone = pickle.loads(pickle.dumps(err))
    assert type(clone) is cls
    assert (clone.status_code, clone.path, str(clone)) == (status, "/jobs/job-1", str(err))


def test_non_json_error_and_non_json_success() -> None:
    with (
        error_client(500, "<html>oops</html>") as client,
        pytest.raises(InternalServerError) as info,
    ):
        client.jobs.retrieve("j")
    assert info.value.api_message is None
    assert info.value.body == "<html>oops</html>"
    with (
        error_client(200, "not json") as client,
        pytest.raises(ResponseValidationError, match="not JSON"),
    ):
        client.jobs.retrieve("j")


def test_the_key_never_appears_in_reprs_errors_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    # A server that echoes the Authorization header back in its error message.
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401, json={"message": f"bad key {request.headers['Authorization']}", "echo": [SECRET]}
        )

    client = ModzyClient(
        api_key=KEY,
        base_url="https://modzy.invalid",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy(max_attempts=2, jitter=0),
        sleep=lambda s: None,
    )
    texts = [repr(client), str(client)]
    with pytest.raises(AuthenticationError) as info:
        client.jobs.retrieve("j")
    err = info.value
    texts += [
        str(err),
        repr(err),
        repr(err.body),
        repr(err.__dict__),
        repr(pickle.loads(pickle.dumps(err)).__dict__),
    ]
    texts += [r.getMessage() for r in caplog.records]
    client.close()
    assert "AbCdEfGhIj0123456789" in repr(client)  # the public prefix is fine to show
    for text in texts:
        assert SECRET not in text, text


def test_pool_and_context_managers() -> None:
    client = ModzyClient(api_key=KEY, base_url="https://modzy.invalid", max_connections=7)
    with client:
        assert client.max_connections == 7
    with pytest.raises(RuntimeError, match="closed"):
        client.jobs.retrieve("j")
    with pytest.raises(ConfigurationError):
        ModzyClient(api_key=KEY, base_url="https://h", max_connections=0)
    with pytest.raises(ConfigurationError):
        ModzyClient(api_key="  ", base_url="https://h")


@pytest.mark.anyio
async def test_async_context_manager_closes() -> None:
    async with AsyncModzyClient(api_key=KEY, base_url="https://modzy.invalid") as client:
        assert "AsyncModzyClient" in repr(client)
    with pytest.raises(RuntimeError, match="closed"):
        await client.jobs.retrieve("j")


def test_requests_carry_the_documented_headers_and_encode_names() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"vote": "UP"})

    with ModzyClient(
        api_key=KEY, base_url="https://h", transport=httpx.MockTransport(handler)
    ) as client:
        assert client.results.vote("job 1", "a/b?c#d%") == "UP"
    request = seen[0]
    assert request.headers["Authorization"] == f"ApiKey {KEY}"
    assert request.headers["Accept"] == "application/json"
    assert request.url.raw_path == b"/api/results/job%201/vote/a%2Fb%3Fc%23d%25"


def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


def _pool(client: ModzyClient | AsyncModzyClient, url: str = "https://modzy.invalid") -> object:
    """The httpcore pool the client's HTTP client would use for ``url``."""
    return client._http._transport_for_url(httpx.URL(url))._pool  # type: ignore[union-attr]


@pytest.mark.parametrize("cls", [ModzyClient, AsyncModzyClient])
def test_own_client_is_one_httpx_pool_verifying_tls(
    monkeypatch: pytest.MonkeyPatch, cls: type[ModzyClient] | type[AsyncModzyClient]
) -> None:
    _no_proxies(monkeypatch)
    client = cls(api_key=KEY, base_url="https://modzy.invalid", max_connections=20)
    expected = httpx.Client if cls is ModzyClient else httpx.AsyncClient
    assert type(client._http) is expected
    assert client._http.follow_redirects is False
    assert client._http.timeout == httpx.Timeout(60.0, connect=10.0)
    pool = _pool(client)
    assert pool._max_connections == 20  # type: ignore[attr-defined]
    assert pool._max_keepalive_connections == 20  # type: ignore[attr-defined]
    context: ssl.SSLContext = pool._ssl_context  # type: ignore[attr-defined]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


@pytest.mark.parametrize("cls", [ModzyClient, AsyncModzyClient])
def test_tls_verification_can_be_turned_off_explicitly(
    monkeypatch: pytest.MonkeyPatch, cls: type[ModzyClient] | type[AsyncModzyClient]
) -> None:
    _no_proxies(monkeypatch)
    client = cls(api_key=KEY, base_url="https://modzy.invalid", verify=False)
    context: ssl.SSLContext = _pool(client)._ssl_context  # type: ignore[attr-defined]
    assert context.verify_mode == ssl.CERT_NONE


@pytest.mark.parametrize("cls", [ModzyClient, AsyncModzyClient])
@pytest.mark.parametrize(
    ("env", "proxied"),
    [
        ({"HTTPS_PROXY": "http://proxy.invalid:3128"}, True),
        ({"ALL_PROXY": "http://proxy.invalid:3128"}, True),
        ({"HTTP_PROXY": "http://proxy.invalid:3128"}, False),  # the base URL is https
        ({"HTTPS_PROXY": "http://proxy.invalid:3128", "NO_PROXY": "modzy.invalid"}, False),
        ({}, False),
    ],
)
def test_proxies_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    cls: type[ModzyClient] | type[AsyncModzyClient],
    env: dict[str, str],
    proxied: bool,
) -> None:
    _no_proxies(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = cls(api_key=KEY, base_url="https://modzy.invalid")
    proxy_types = (httpcore.HTTPProxy, httpcore.AsyncHTTPProxy)
    assert isinstance(_pool(client), proxy_types) is proxied


def test_a_closed_client_refuses_calls_and_closes_its_own_http_client() -> None:
    client = ModzyClient(api_key=KEY, base_url="https://modzy.invalid")
    client.close()
    assert client._http.is_closed
    with pytest.raises(RuntimeError, match="closed"):
        client.models.list()


def _recording_handler(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path.endswith("/models"):
            return httpx.Response(200, json=[])
        return _redirecting()

    return httpx.MockTransport(handler)


def test_a_given_http_client_carries_every_request_with_its_own_settings() -> None:
    seen: list[httpx.Request] = []
    hooked: list[str] = []
    given = httpx.Client(
        transport=_recording_handler(seen),
        # Where the user's client points elsewhere, the key still goes to base_url only.
        base_url="https://elsewhere.invalid",
        headers={"X-Team": "vision", "User-Agent": "theirs"},
        follow_redirects=True,
        event_hooks={"request": [lambda r: hooked.append(str(r.url))]},
    )
    client = ModzyClient(
        api_key=KEY,
        base_url="https://modzy.invalid",
        http_client=given,
        retry=RetryPolicy.disabled(),
    )
    assert client.models.list() == []
    with pytest.raises(APIStatusError) as info:  # a redirect is refused, never followed
        client.results.vote("j", "a")
    assert info.value.status_code == 302
    assert [r.url.host for r in seen] == ["modzy.invalid", "modzy.invalid"]
    assert hooked == [
        "https://modzy.invalid/api/models",
        "https://modzy.invalid/api/results/j/vote/a",
    ]
    first = seen[0]
    assert first.headers["X-Team"] == "vision"  # the client's headers apply...
    assert first.headers["Authorization"] == f"ApiKey {KEY}"  # ...and ours win
    assert first.headers["User-Agent"].startswith("modzy-retrain/")
    client.close()
    assert not given.is_closed  # never closed by the library
    assert SECRET not in repr(client)
    given.close()


@pytest.mark.anyio
async def test_a_given_async_http_client_carries_every_request_and_stays_open() -> None:
    seen: list[httpx.Request] = []
    hooked: list[str] = []

    async def hook(request: httpx.Request) -> None:
        hooked.append(request.url.path)

    given = httpx.AsyncClient(transport=_recording_handler(seen), event_hooks={"request": [hook]})
    async with AsyncModzyClient(
        api_key=KEY,
        base_url="https://modzy.invalid",
        http_client=given,
        retry=RetryPolicy.disabled(),
    ) as client:
        assert await client.models.list() == []
        with pytest.raises(APIStatusError):
            await client.results.vote("j", "a")
    assert hooked == ["/api/models", "/api/results/j/vote/a"]
    assert [r.url.host for r in seen] == ["modzy.invalid", "modzy.invalid"]
    assert not given.is_closed
    await given.aclose()


def test_the_sandbox_transport_and_a_mock_transport_work_through_a_given_client() -> None:
    from modzy_retrain.sandbox import Sandbox

    sandbox = Sandbox(seed=0, jobs=5)
    with httpx.Client(transport=sandbox.transport()) as given:
        client = ModzyClient(api_key=sandbox.api_key, base_url=sandbox.base_url, http_client=given)
        assert len(list(client.jobs.history())) == 5


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"http_client": httpx.AsyncClient()}, "takes an httpx.Client, not AsyncClient"),
        (
            {"http_client": httpx.Client(), "transport": httpx.MockTransport(lambda r: r)},
            "not both",
        ),
        ({"http_client": httpx.Client(), "verify": False}, "not both"),
    ],
)
def test_a_given_client_of_the_wrong_kind_or_with_ignored_settings_is_refused(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        ModzyClient(api_key=KEY, base_url="https://modzy.invalid", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"takes an httpx\.AsyncClient, not Client"):
        AsyncModzyClient(api_key=KEY, base_url="https://h", http_client=httpx.Client())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("given_timeout", "timeout", "expected"),
    [
        (None, "not given", httpx.Timeout(60.0, connect=10.0)),  # no given client
        (httpx.Timeout(5.0), "not given", httpx.Timeout(60.0, connect=10.0)),  # httpx default
        (httpx.Timeout(30.0), "not given", httpx.Timeout(30.0)),  # the client's choice
        (httpx.Timeout(30.0), 12.0, httpx.Timeout(12.0)),  # explicit wins
        (httpx.Timeout(30.0), None, httpx.Timeout(None)),  # explicit: no timeout
    ],
)
def test_timeouts_explicit_then_the_given_clients_then_the_librarys(
    given_timeout: httpx.Timeout | None, timeout: object, expected: httpx.Timeout
) -> None:
    seen: list[httpx.Request] = []
    transport = _recording_handler(seen)
    given = httpx.Client(transport=transport, timeout=given_timeout) if given_timeout else None
    kwargs: dict[str, object] = {} if timeout == "not given" else {"timeout": timeout}
    client = ModzyClient(
        api_key=KEY,
        base_url="https://modzy.invalid",
        http_client=given,
        transport=None if given else transport,
        deadline=None,  # with one, each phase is capped to the time left (test_deadlines.py)
        **kwargs,  # type: ignore[arg-type]
    )
    client.models.list()
    assert client.timeout == expected
    assert seen[0].extensions["timeout"] == expected.as_dict()


def _redirecting() -> httpx.Response:
    return httpx.Response(302, headers={"Location": "https://elsewhere.invalid/api/models"})


def test_a_redirect_is_an_error_and_the_key_never_leaves_for_another_host() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _redirecting()

    with (
        ModzyClient(
            api_key=KEY,
            base_url="https://modzy.invalid",
            transport=httpx.MockTransport(handler),
            retry=RetryPolicy.disabled(),
        ) as client,
        pytest.raises(APIStatusError) as info,
    ):
        client.models.list()
    assert info.value.status_code == 302
    assert [r.url.host for r in seen] == ["modzy.invalid"]
    assert SECRET not in str(info.value)


@pytest.mark.anyio
async def test_async_redirect_is_an_error_too() -> None:
    seen: list[httpx.Request] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return _redirecting()

    async with AsyncModzyClient(
        api_key=KEY,
        base_url="https://modzy.invalid",
        transport=httpx.MockTransport(handler),
        retry=RetryPolicy.disabled(),
    ) as client:
        with pytest.raises(APIStatusError) as info:
            await client.models.list()
    assert info.value.status_code == 302
    assert [r.url.host for r in seen] == ["modzy.invalid"]


def test_a_given_clients_mounts_route_the_requests() -> None:
    seen: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(f"mounted {request.url.host}")
        return httpx.Response(200, json=[])

    def fallback(request: httpx.Request) -> httpx.Response:
        seen.append("fallback")
        return httpx.Response(500)

    given = httpx.Client(
        transport=httpx.MockTransport(fallback),
        mounts={"https://modzy.invalid": httpx.MockTransport(api)},
    )
    with ModzyClient(api_key=KEY, base_url="https://modzy.invalid", http_client=given) as client:
        assert client.models.list() == []
    assert seen == ["mounted modzy.invalid"]
    given.close()
