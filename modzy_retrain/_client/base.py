"""What the sync and async clients share: configuration, URLs, headers, error mapping.

Nothing here does I/O. The two clients in ``_client`` differ only in their send loop.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import random
import re
import ssl
import urllib.request
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import httpx

from modzy_retrain._core.constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT,
    POOL_SIZE,
)
from modzy_retrain._core.exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseTooLargeError,
    ResponseValidationError,
    UnprocessableEntityError,
)
from modzy_retrain._core.secrets import ApiKey, redact, redact_obj
from modzy_retrain._version import __version__

from .retry import RetryHook, RetryPolicy, parse_retry_after

logger = logging.getLogger("modzy_retrain")

_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}

TimeoutTypes = float | httpx.Timeout | None
P = TypeVar("P")  # a transport, sync or async


class InsecureBaseURLWarning(UserWarning):
    """A plain ``http://`` base URL to a host other than loopback sends the key in clear."""


def normalize_base_url(url: str) -> str:
    """Accept a host (``https://host``) or the API root (``https://host/api``).

    Returns the API root without a trailing slash.

    Raises:
        ConfigurationError: Not an absolute http(s) URL.
    """
    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError) as exc:
        raise ConfigurationError(f"invalid base URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigurationError(
            "base URL must be an absolute http(s) URL such as https://app.modzy.com "
            "or https://app.modzy.com/api"
        )
    if parsed.query or parsed.fragment:
        raise ConfigurationError("base URL must not carry a query or a fragment")
    path = parsed.path.rstrip("/")
    if not path.endswith("/api"):
        path += "/api"
    return str(parsed.copy_with(path=path)).rstrip("/")


# JSON may escape half a UTF-16 pair ("\ud800"), which decodes to a string no encoder
# takes: such a value could never be written to a dataset. Checked on the bytes first,
# so bodies without the escape (nearly all) cost nothing.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abcdefABCDEF]")
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _whole_unicode(value: Any) -> Any:
    """``value`` with every lone surrogate replaced by U+FFFD, keys included."""
    if isinstance(value, str):
        if _LONE_SURROGATE.search(value) is None:
            return value
        return value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, list):
        return [_whole_unicode(v) for v in value]
    if isinstance(value, dict):
        return {_whole_unicode(k): _whole_unicode(v) for k, v in value.items()}
    return value


class _Body:
    """A response body gathered chunk by chunk (decompressed), counted as it arrives:
    one over the limit is refused before it is ever held whole. The clients' read loops
    feed it; only the loops differ between sync and async."""

    def __init__(self, client: BaseClient, method: str, path: str) -> None:
        self._client = client
        self._method = method
        self._path = path
        self._chunks: list[bytes] = []
        self._size = 0

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._client.max_response_bytes:
            raise self._client._too_large(self._method, self._path, None)
        self._chunks.append(chunk)

    def content(self) -> bytes:
        return b"".join(self._chunks)


def env_proxy(url: str) -> str | None:
    """The proxy the environment names for ``url``, or ``None``.

    ``HTTP_PROXY``, ``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY`` (either case), read
    the way ``urllib`` reads them, which is also where httpx's ``trust_env`` starts.
    Resolved once per client: every request goes to the same base URL.
    """
    parsed = httpx.URL(url)
    proxies = urllib.request.getproxies()
    proxy = proxies.get(parsed.scheme) or proxies.get("all")
    if not proxy or urllib.request.proxy_bypass(parsed.host):
        return None
    return proxy


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith((".localhost", ".invalid")):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BaseClient:
    """Configuration and pure request/response logic. Strictly private."""

    _client_name = "ModzyClient"

    def __init__(
        self,
        *,
        api_key: str | None,
        base_url: str | None,
        timeout: TimeoutTypes,
        retry: RetryPolicy | None,
        max_connections: int,
        headers: dict[str, str] | None,
        on_retry: RetryHook | None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        if not key or not key.strip():
            raise ConfigurationError(
                f"no API key: pass api_key=... or set the {API_KEY_ENV} environment variable"
            )
        self._api_key = ApiKey(key)
        url = base_url if base_url is not None else os.environ.get(BASE_URL_ENV)
        if not url:
            raise ConfigurationError(
                f"no base URL: pass base_url=... or set the {BASE_URL_ENV} environment variable"
            )
        self.base_url = normalize_base_url(url)
        host = httpx.URL(self.base_url).host
        if self.base_url.startswith("http://") and not _is_loopback(host):
            warnings.warn(
                f"base URL {self.base_url} is plain http:// to a non-loopback host: "
                "the API key would travel unencrypted",
                InsecureBaseURLWarning,
                stacklevel=3,
            )
        if max_connections < 1:
            raise ConfigurationError("max_connections must be at least 1")
        if max_response_bytes < 1:
            raise ConfigurationError("max_response_bytes must be at least 1")
        self.max_response_bytes = max_response_bytes
        self.timeout = httpx.Timeout(timeout) if not isinstance(timeout, httpx.Timeout) else timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self.max_connections = max_connections
        self._extra_headers = dict(headers or {})
        self._on_retry = on_retry
        # Built once: every request carries the same headers and timeouts.
        self._headers = httpx.Headers(self._default_headers())
        self._extensions: dict[str, Any] = {"timeout": self.timeout.as_dict()}
        self._closed = False
        # Jitter only; not security relevant.
        self._rng = random.Random()

    @property
    def api_key_prefix(self) -> str:
        """The public part of the API key (what the history's ``access_key`` filter takes)."""
        return self._api_key.prefix

    def __repr__(self) -> str:
        return (
            f"{self._client_name}(base_url={self.base_url!r}, api_key={self._api_key.redacted()!r})"
        )

    def _default_headers(self) -> dict[str, str]:
        headers = {
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": f"modzy-retrain/{__version__}",
        }
        headers.update(self._extra_headers)
        headers["Authorization"] = self._api_key.header_value()
        return headers

    def _pool_sizes(self) -> list[int]:
        """How the connections are split into independent pools.

        httpcore's pool does work per request that grows with the pool's size, which
        made the async client 3.5x slower at 32 connections in one pool than spread over
        pools of 8 (bench/RESULTS.md). A transport given by the caller is one pool.
        """
        full, rest = divmod(self.max_connections, POOL_SIZE)
        return [POOL_SIZE] * full + ([rest] if rest else [])

    def _ssl_context(self, verify: bool | str) -> ssl.SSLContext:
        """The one SSL context every connection uses (built once: it is costly)."""
        context: ssl.SSLContext = httpx.create_ssl_context(verify=verify)
        return context

    def _transport_options(self, verify: bool | str) -> list[dict[str, Any]]:
        """The keyword arguments of each pool's httpx transport (sync or async alike).

        The clients send through httpx transports directly rather than through
        ``httpx.Client``: they need none of its per-request work (cookies, auth flows,
        redirect handling, URL merging), which cost about a third of the client's CPU per
        request (bench/RESULTS.md). What it did that matters is kept: TLS verification
        (one SSL context for all pools), proxies from the environment, timeouts (per
        request, below), and redirects are never followed (a 3xx is an error).
        """
        context = self._ssl_context(verify)
        proxy = env_proxy(self.base_url)
        return [
            {
                "verify": context,
                "limits": httpx.Limits(max_connections=size, max_keepalive_connections=size),
                "proxy": proxy,
            }
            for size in self._pool_sizes()
        ]

    def _make_pools(
        self,
        given: P | None,
        verify: bool | str,
        own: Callable[..., P],
        through_proxy: Callable[..., P],
    ) -> list[P]:
        """The transports requests go through, the same choice for sync and async.

        A transport the caller gives is the one pool. Straight to the API, the library's
        own HTTP/1.1 transport (``own``), one pool whose per-request work does not grow
        with its size (see ``_http11`` for why). With a proxy in the environment, httpx's
        transport (``through_proxy``), which speaks to proxies, in pools of 8.
        """
        if given is not None:
            return [given]
        if env_proxy(self.base_url) is None:
            return [
                own(ssl_context=self._ssl_context(verify), max_connections=self.max_connections)
            ]
        return [through_proxy(**options) for options in self._transport_options(verify)]

    def _build_request(self, method: str, path: str, params: Any) -> httpx.Request:
        if self._closed:
            raise RuntimeError(f"this {self._client_name} is closed")
        return httpx.Request(
            method,
            self.base_url + path,
            params=params,
            headers=self._headers,
            extensions=self._extensions,
        )

    # -- errors -------------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return redact(text, self._api_key.secret_parts())

    def _connection_error(
        self, exc: httpx.TransportError, method: str, path: str
    ) -> APIConnectionError:
        # httpx messages can quote the URL, never headers; redact anyway in case a
        # proxy or transport echoes more than it should.
        detail = self._redact(str(exc)) or type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            return APITimeoutError(
                f"{method} {path} timed out ({type(exc).__name__}): {detail}",
                method=method,
                path=path,
            )
        return APIConnectionError(
            f"{method} {path} failed ({type(exc).__name__}): {detail}", method=method, path=path
        )

    # -- bodies --------------------------------------------------------------------------

    def _body(self, method: str, path: str, response: httpx.Response) -> _Body:
        """A collector for ``response``'s body; refuses it now if its declared size is over."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise self._too_large(method, path, int(declared))
        return _Body(self, method, path)

    def _too_large(self, method: str, path: str, size: int | None) -> ResponseTooLargeError:
        what = f"{size:,} bytes" if size is not None else "more"
        return ResponseTooLargeError(
            f"{method} {path} sent {what}, over the client's max_response_bytes "
            f"({self.max_response_bytes:,}); refused unread",
            limit=self.max_response_bytes,
            size=size,
            method=method,
            path=path,
        )

    def _status_error(
        self, method: str, path: str, response: httpx.Response, content: bytes
    ) -> APIStatusError:
        secrets = self._api_key.secret_parts()
        body: object
        try:
            body = redact_obj(json.loads(content), secrets)
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = self._redact(content[:2000].decode("utf-8", errors="replace"))
        api_message = None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            api_message = body["message"]
        status = response.status_code
        reason = response.reason_phrase or "error"
        text = f"{status} {reason} from {method} {path}"
        if api_message:
            text += f": {api_message}"
        cls = _STATUS_ERRORS.get(status)
        kwargs: dict[str, Any] = {
            "method": method,
            "path": path,
            "status_code": status,
            "api_message": api_message,
            "body": body,
        }
        if cls is RateLimitError or status >= 500:
            retry_after = parse_retry_after(response.headers)
            if status >= 500:
                return InternalServerError(text, retry_after=retry_after, **kwargs)
            return RateLimitError(text, retry_after=retry_after, **kwargs)
        return (cls or APIStatusError)(text, **kwargs)

    def _decode(self, method: str, path: str, status: int, content: bytes, raw: bool) -> Any:
        if raw:
            return content
        if not content.strip():
            return None
        try:
            data = json.loads(content)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ResponseValidationError(
                f"{method} {path} returned {status} with a body that is not JSON",
                method=method,
                path=path,
            ) from None
        if _SURROGATE_ESCAPE.search(content):
            data = _whole_unicode(data)
        return data


__all__ = ["DEFAULT_MAX_CONNECTIONS", "DEFAULT_TIMEOUT", "BaseClient", "InsecureBaseURLWarning"]
