"""Client configuration, error mapping and the secrecy of the API key."""

from __future__ import annotations

import logging
import pickle
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
from modzy_retrain._client.http11 import AsyncHTTP11Transport, HTTP11Transport

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


@pytest.mark.parametrize("cls", [ModzyClient, AsyncModzyClient])
def test_straight_to_the_api_one_lean_pool_verifying_tls(
    monkeypatch: pytest.MonkeyPatch, cls: type[ModzyClient] | type[AsyncModzyClient]
) -> None:
    _no_proxies(monkeypatch)
    client = cls(api_key=KEY, base_url="https://modzy.invalid", max_connections=20)
    [pool] = client._pools
    expected = HTTP11Transport if cls is ModzyClient else AsyncHTTP11Transport
    assert type(pool) is expected
    assert pool._state.max_connections == 20  # type: ignore[union-attr]
    context: ssl.SSLContext = pool._ssl_context  # type: ignore[union-attr]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_through_a_proxy_connections_are_spread_over_small_pools(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _no_proxies(monkeypatch)
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    client = ModzyClient(api_key=KEY, base_url="https://modzy.invalid", max_connections=20)
    pools = client._pools
    assert all(isinstance(p, httpx.HTTPTransport) for p in pools)
    assert [p._pool._max_connections for p in pools] == [8, 8, 4]  # type: ignore[attr-defined]
    # One SSL context for all pools, verifying certificates and host names.
    contexts = {id(p._pool._ssl_context) for p in pools}  # type: ignore[attr-defined]
    assert len(contexts) == 1
    context: ssl.SSLContext = pools[0]._pool._ssl_context  # type: ignore[attr-defined]
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.models.list()
    # A transport the caller gives stays one pool (the sandbox's, a mock...).
    mocked = ModzyClient(
        api_key=KEY,
        base_url="https://modzy.invalid",
        max_connections=20,
        transport=httpx.MockTransport(lambda r: httpx.Response(200, json=[])),
    )
    assert len(mocked._pools) == 1
    mocked.close()


def test_requests_go_round_robin_over_the_pools(monkeypatch: pytest.MonkeyPatch) -> None:
    _no_proxies(monkeypatch)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    client = ModzyClient(api_key=KEY, base_url="http://127.0.0.1:9", max_connections=24)
    assert len(client._pools) == 3
    used: list[int] = []
    for i, pool in enumerate(client._pools):

        def send(request: httpx.Request, *, _i: int = i) -> httpx.Response:
            used.append(_i)
            return httpx.Response(200, json={"vote": "UP"}, request=request)

        pool.handle_request = send  # type: ignore[method-assign]
    for _ in range(6):
        client.results.vote("j", "a")
    client.close()
    assert used == [0, 1, 2, 0, 1, 2]


@pytest.mark.parametrize("cls", [ModzyClient, AsyncModzyClient])
def test_tls_verification_can_be_turned_off_explicitly(
    monkeypatch: pytest.MonkeyPatch, cls: type[ModzyClient] | type[AsyncModzyClient]
) -> None:
    _no_proxies(monkeypatch)
    client = cls(api_key=KEY, base_url="https://modzy.invalid", verify=False)
    context: ssl.SSLContext = client._pools[0]._ssl_context  # type: ignore[union-attr]
    assert context.verify_mode == ssl.CERT_NONE


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
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], proxied: bool
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = ModzyClient(api_key=KEY, base_url="https://modzy.invalid")
    pool = client._pools[0]
    if proxied:
        assert isinstance(pool._pool, httpcore.HTTPProxy)  # type: ignore[attr-defined]
    else:
        assert isinstance(pool, HTTP11Transport)  # straight to the API
    client.close()


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


@pytest.mark.parametrize("via", ["proxy", "given", "own"])
@pytest.mark.parametrize("installed", [False, True])
def test_async_client_makes_a_missing_sniffio_fail_fast(
    monkeypatch: pytest.MonkeyPatch, installed: bool, via: str
) -> None:
    # httpcore retries `import sniffio` several times per async request; without
    # sniffio each failed import searched sys.path again (see _fail_fast_without_sniffio).
    import importlib.util
    import sys
    import types

    fake = types.ModuleType("sniffio")
    monkeypatch.setitem(sys.modules, "sniffio", fake)  # restored after the test
    del sys.modules["sniffio"]
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args: object) -> object:
        if name == "sniffio":
            return object() if installed else None
        return real_find_spec(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    # Only httpx's transport goes through httpcore: through a proxy, or given.
    _no_proxies(monkeypatch)
    if via == "proxy":
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    given = httpx.AsyncHTTPTransport() if via == "given" else None
    AsyncModzyClient(api_key=KEY, base_url="https://modzy.invalid", transport=given)
    if installed or via == "own":
        assert "sniffio" not in sys.modules
    else:
        assert sys.modules["sniffio"] is None
        with pytest.raises(ImportError):
            import sniffio  # noqa: F401


@pytest.mark.parametrize("proxied", [False, True])
def test_async_client_goes_direct_on_its_own_transport_and_through_proxies_on_httpx(
    monkeypatch: pytest.MonkeyPatch, proxied: bool
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    if proxied:
        monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    client = AsyncModzyClient(api_key=KEY, base_url="https://modzy.invalid", max_connections=40)
    if proxied:
        assert all(isinstance(p, httpx.AsyncHTTPTransport) for p in client._pools)
        assert all(
            isinstance(p._pool, httpcore.AsyncHTTPProxy)  # type: ignore[attr-defined]
            for p in client._pools
        )
    else:
        [pool] = client._pools
        assert isinstance(pool, AsyncHTTP11Transport)
        assert pool._state.max_connections == 40
        assert pool._ssl_context.verify_mode == ssl.CERT_REQUIRED
