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
import warnings
from typing import Any, Final, TypeVar

import httpx

from modzy_retrain._core.backoff import parse_retry_after
from modzy_retrain._core.constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_TIMEOUT,
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

from .retry import RetryHook, RetryPolicy

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
H = TypeVar("H", httpx.Client, httpx.AsyncClient)


class NotGiven:
    """The default of ``timeout``: "not passed", which differs from ``None`` (no timeout)."""

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()
# httpx's own default (5 s); a given client with any other timeout chose it on purpose.
_HTTPX_DEFAULT_TIMEOUT = httpx.Timeout(5.0)


def resolve_timeout(
    timeout: TimeoutTypes | NotGiven, http_client: httpx.Client | httpx.AsyncClient | None
) -> TimeoutTypes:
    """The timeout every request carries.

    Passed explicitly, it wins. Otherwise a given client's own timeout, unless that is
    httpx's untouched 5 s default, which is too short for a large results body: then
    the library's (60 s, 10 s to connect), as with the library's own client.
    """
    if not isinstance(timeout, NotGiven):
        return timeout
    if http_client is not None and http_client.timeout != _HTTPX_DEFAULT_TIMEOUT:
        return http_client.timeout
    return DEFAULT_TIMEOUT


class InsecureBaseURLWarning(UserWarning):
    """A plain ``http://`` base URL to a host other than loopback sends the key in clear."""


def normalize_base_url(url: str) -> str:
    """Accept a host (``https://host``) or the API root (``https://host/api``).

    Returns the API root without a trailing slash.

    Raises:
        ConfigurationError: Not an absolute http(s) URL, or one with credentials in it
            (``user:password@``).
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
    if parsed.userinfo:
        # Never quoted back: it would be the password itself.
        raise ConfigurationError(
            "base URL must not carry credentials (user:password@host): the API key "
            "is the only credential (api_key=... or MODZY_API_KEY)"
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


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith((".localhost", ".invalid")):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_timeout(timeout: object) -> httpx.Timeout:
    """An ``httpx.Timeout`` from seconds, a ``Timeout`` or ``None`` (no timeout)."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if timeout is None:
        return httpx.Timeout(None)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ConfigurationError(
            f"timeout takes seconds above 0, an httpx.Timeout, or None, not {timeout!r}"
        )
    return httpx.Timeout(timeout)


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
        self.timeout = _check_timeout(timeout)
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(
                f"retry takes a RetryPolicy (e.g. RetryPolicy(max_attempts=3)), "
                f"not {type(retry).__name__}"
            )
        self.retry = retry if retry is not None else RetryPolicy()
        self.max_connections = max_connections
        self._extra_headers = dict(headers or {})
        self._on_retry = on_retry
        # Built once: every request carries the same headers and timeouts.
        self._headers = httpx.Headers(self._default_headers())
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

    def _own_client_options(self, verify: bool | str) -> dict[str, Any]:
        """The settings of the ``httpx.Client``/``AsyncClient`` the library makes itself.

        One pool of ``max_connections`` (all kept alive), TLS verified unless turned
        off, proxies and ``SSL_CERT_FILE`` from the environment (httpx's ``trust_env``),
        redirects never followed (``send`` refuses them too, whatever the client says).
        """
        return {
            "timeout": self.timeout,
            "limits": httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
            ),
            "verify": verify,
            "follow_redirects": False,
            "trust_env": True,
        }

    def _http_client(
        self,
        given: H | None,
        kind: type[H],
        transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None,
        verify: bool | str,
    ) -> H:
        """The HTTP client requests go through: ``given`` (checked, never closed by the
        library), or the library's own of ``kind``, which ``close`` closes."""
        self._owns_http = given is None
        if given is None:
            # The sync client passes a sync transport, the async one an async one.
            return kind(transport=transport, **self._own_client_options(verify))  # type: ignore[arg-type]
        if not isinstance(given, kind):
            raise ConfigurationError(
                f"{self._client_name}(http_client=...) takes an {kind.__module__}."
                f"{kind.__qualname__}, not {type(given).__name__}"
            )
        if transport is not None:
            raise ConfigurationError(
                "pass transport=... or http_client=..., not both: give the transport to "
                "your httpx client"
            )
        if verify is not True:
            raise ConfigurationError(
                "pass verify=... or http_client=..., not both: set verify on your httpx client"
            )
        return given

    def _build_request(
        self, http: httpx.Client | httpx.AsyncClient, method: str, path: str, params: Any
    ) -> httpx.Request:
        if self._closed:
            raise RuntimeError(f"this {self._client_name} is closed")
        # The URL is absolute, so a given client's base_url never redirects the key
        # elsewhere; its default headers come first and ours (the key too) win.
        return http.build_request(
            method,
            self.base_url + path,
            params=params,
            headers=self._headers,
            timeout=self.timeout,
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
