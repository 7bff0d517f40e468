"""What the sync and async clients share: configuration, URLs, headers, error mapping.

Nothing here does I/O. The two clients in ``_client`` differ only in their send loop.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import warnings
from typing import Any, Final, TypeVar

import httpx

from modzy_retrain._core.backoff import parse_retry_after
from modzy_retrain._core.budget import OverBudget
from modzy_retrain._core.constants import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_DEADLINE,
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

from .calls import Call
from .deadline import Deadline
from .decoding import Undecodable, decode_json
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


class _Body:
    """A response body gathered chunk by chunk (decompressed), counted as it arrives:
    one over the limit is refused before it is ever held whole, and one still arriving
    when the call's deadline passes is abandoned. The clients' read loops feed it; only
    the loops differ between sync and async."""

    def __init__(
        self, client: BaseClient, method: str, path: str, deadline: Deadline | None
    ) -> None:
        self._client = client
        self._method = method
        self._path = path
        self._deadline = deadline
        # One growing buffer, not a list of chunks joined at the end: the join would
        # hold a large body twice.
        self._buffer = bytearray()
        self._size = 0

    def add(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._client.max_response_bytes:
            raise self._client._too_large(self._method, self._path, None)
        # Between chunks is where the sync client can stop a body that trickles in:
        # each read resets httpx's read timeout, the deadline does not move.
        if self._deadline is not None and self._deadline.passed():
            raise self._deadline.error(self._method, self._path)
        self._buffer += chunk

    def out_of_time(self) -> APITimeoutError:
        """The deadline passed while this body waited for the fetcher's budget."""
        assert self._deadline is not None  # only a wait with a deadline runs out
        return self._deadline.error(self._method, self._path)

    def content(self) -> bytearray:
        return self._buffer


def over_budget(call: Call[Any], exc: OverBudget) -> ResponseTooLargeError:
    """The error for a body that alone would hold more than the fetcher's budget."""
    return ResponseTooLargeError(
        f"{call.method} {call.path} sent a body that alone, once decoded, would weigh more "
        f"than the fetcher's max_bytes_in_flight ({exc.limit:,}); refused",
        limit=exc.limit,
        method=call.method,
        path=call.path,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith((".localhost", ".invalid")):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _check_deadline(deadline: object) -> float | None:
    if deadline is None:
        return None
    if isinstance(deadline, bool) or not isinstance(deadline, (int, float)) or not deadline > 0:
        raise ConfigurationError(f"deadline takes seconds above 0, or None, not {deadline!r}")
    return float(deadline)


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
        deadline: float | None = DEFAULT_DEADLINE,
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
        self.deadline = _check_deadline(deadline)
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
        self,
        http: httpx.Client | httpx.AsyncClient,
        call: Call[Any],
        deadline: Deadline | None,
    ) -> httpx.Request:
        if self._closed:
            raise RuntimeError(f"this {self._client_name} is closed")
        if deadline is not None and deadline.passed():
            raise deadline.error(call.method, call.path)
        # The URL is absolute, so a given client's base_url never redirects the key
        # elsewhere; its default headers come first and ours (the key too) win. Each
        # phase of this attempt waits at most the time the deadline leaves.
        return http.build_request(
            call.method,
            self.base_url + call.path,
            params=call.params,
            headers=self._headers,
            timeout=self.timeout if deadline is None else deadline.cap(self.timeout),
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

    def _body(self, call: Call[Any], response: httpx.Response, deadline: Deadline | None) -> _Body:
        """A collector for ``response``'s body; refuses it now if its declared size is over."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            raise self._too_large(call.method, call.path, int(declared))
        return _Body(self, call.method, call.path, deadline)

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
        self, method: str, path: str, response: httpx.Response, content: bytes | bytearray
    ) -> APIStatusError:
        secrets = self._api_key.secret_parts()
        body: object
        try:
            body = redact_obj(decode_json(content), secrets)
        except Undecodable:
            # Kept as text, cut short: an error body is for people to read.
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

    def _decode(self, call: Call[Any], status: int, content: bytes | bytearray) -> Any:
        """The body as JSON (raw bytes for a file), or the call's typed error.

        A body that cannot be decoded is the call's own error (a job's results name
        the job) raised inside the attempt, so it is retried like a dropped connection
        before it is believed: a proxy's glitch can send one.
        """
        if call.raw:
            return bytes(content)
        if not content.strip():
            return None
        try:
            return decode_json(content)
        except Undecodable as exc:
            if call.undecodable is not None:
                raise call.undecodable(exc.reason) from None
            raise ResponseValidationError(
                f"{call.method} {call.path} returned {status} with a body that {exc.reason}",
                method=call.method,
                path=call.path,
            ) from None


__all__ = ["DEFAULT_MAX_CONNECTIONS", "DEFAULT_TIMEOUT", "BaseClient", "InsecureBaseURLWarning"]
