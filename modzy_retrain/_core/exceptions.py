"""Every exception this library raises, under one root.

```
ModzyRetrainError                      anything from modzy_retrain
├── ConfigurationError (ValueError)     any invalid argument of a stage or client
│   ├── InvalidQueryError               a query refused before any request was sent
│   └── LineageError                    a malformed lineage template or pattern
├── UnsafeNameError (ValueError)        a name that would escape the dataset or input root
├── MissingDependencyError (ImportError) an optional extra is not installed
├── DatasetError                        a dataset could not be written or read
│   ├── DatasetExistsError              the target holds a dataset; pass overwrite=True
│   ├── DatasetLockedError              another build (or label pull) holds the dataset's lock
│   ├── LabelNotInClassListError        a loader met a label outside its model's class list
│   └── StorageError                    a store's own library failed (S3 endpoint unreachable...)
├── DatabaseError                       a lineage database down or failing after retries
└── APIError                            anything that went wrong talking to the API
    ├── APIConnectionError              no usable response (refused, reset, truncated)
    │   └── APITimeoutError             connect, read, write or pool timeout
    ├── APIStatusError                  the API answered with an error status
    │   ├── BadRequestError             400
    │   ├── AuthenticationError         401
    │   ├── PermissionDeniedError       403
    │   ├── NotFoundError               404
    │   ├── ConflictError               409
    │   ├── UnprocessableEntityError    422
    │   ├── RateLimitError              429 (``retry_after``)
    │   └── InternalServerError         5xx
    └── ResponseValidationError         a 2xx body that is not what the API documents
        ├── ResultParseError            one job's (or one input's) result could not be parsed
        ├── ResponseTooLargeError       a body over the client's max_response_bytes
        └── PaginationError             a history that repeats a page or passes max_pages
└── LabelStudioError                    anything that went wrong talking to Label Studio
    ├── LabelStudioConnectionError      no usable response (refused, reset, timeout)
    ├── LabelStudioStatusError          Label Studio answered with an error status
    │   ├── LabelStudioAuthError        401, 403: the token is wrong, expired or lacks rights
    │   └── LabelStudioNotFoundError    404: no such project, task or route
    └── LabelStudioResponseError        a 2xx body that is not JSON or not the documented shape
└── TriggerError                        a trigger's action failed (the version stays published)
    ├── TriggerRefusedError             the service answered 4xx: the message names what to fix
    └── TriggerUnavailableError         5xx, timeouts, no connection: still failing after retries
```

Exceptions carry their context as attributes (``method``, ``path``, ``status_code``,
``job_id``, ``input_name``...) and never the API key: messages are built from values
that cannot hold it, and anything echoed back by the server is redacted first. They
are picklable, because training scripts move them across worker processes.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "DatabaseError",
    "DatasetError",
    "DatasetExistsError",
    "InternalServerError",
    "InvalidQueryError",
    "LabelNotInClassListError",
    "LabelStudioAuthError",
    "LabelStudioConnectionError",
    "LabelStudioError",
    "LabelStudioNotFoundError",
    "LabelStudioResponseError",
    "LabelStudioStatusError",
    "LineageError",
    "MissingDependencyError",
    "ModzyRetrainError",
    "NotFoundError",
    "PaginationError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "ResultParseError",
    "StorageError",
    "TriggerError",
    "TriggerRefusedError",
    "TriggerUnavailableError",
    "UnprocessableEntityError",
    "UnsafeNameError",
]


def _rebuild(cls: type[ModzyRetrainError], message: str, state: dict[str, Any]) -> Any:
    exc = cls.__new__(cls)
    Exception.__init__(exc, message)
    exc.__dict__.update(state)
    return exc


class ModzyRetrainError(Exception):
    """The root of every exception raised by modzy_retrain."""

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only constructors do not survive the default pickling protocol.
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


class ConfigurationError(ModzyRetrainError, ValueError):
    """An invalid argument of a client or a stage, or a setting that cannot work (no API
    key, a bad URL, a threshold out of range...). Raised when the object is built, before
    any request; a ``ValueError`` too, so ``except ValueError`` keeps catching it."""


class InvalidQueryError(ConfigurationError):
    """A query was refused before any request was sent (e.g. an end date without a start)."""


class UnsafeNameError(ModzyRetrainError, ValueError):
    """A value that would let a template or a layout escape its root (the message says why)."""


class APIError(ModzyRetrainError):
    """Something went wrong talking to the Modzy API.

    Attributes:
        method: The HTTP method of the failed request.
        path: The request path relative to the API root, e.g. ``/results/<job id>``.
    """

    def __init__(self, message: str, *, method: str = "", path: str = "") -> None:
        super().__init__(message)
        self.method = method
        self.path = path


class APIConnectionError(APIError):
    """No usable response: the connection failed, was dropped, or the body was cut short."""


class APITimeoutError(APIConnectionError):
    """The request timed out (connect, read, write or waiting for a pooled connection)."""


class APIStatusError(APIError):
    """The API answered with a 4xx or 5xx status.

    Attributes:
        status_code: The HTTP status.
        api_message: Modzy's ``message`` field from the error body, when there was one.
        body: The decoded error body (a dict for Modzy's JSON errors, else text), redacted.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status_code: int = 0,
        api_message: str | None = None,
        body: object = None,
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.status_code = status_code
        self.api_message = api_message
        self.body = body


class BadRequestError(APIStatusError):
    """400: the API refused the request as malformed."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing, unknown or inactive."""


class PermissionDeniedError(APIStatusError):
    """403: the API key lacks the role this request needs."""


class NotFoundError(APIStatusError):
    """404: unknown job, input or route (also results not created yet)."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the resource's state."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but its content was refused."""


class RateLimitError(APIStatusError):
    """429: too many requests.

    Attributes:
        retry_after: Seconds the server asked us to wait (``Retry-After``), if it said.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class InternalServerError(APIStatusError):
    """5xx: the API failed on its side.

    Attributes:
        retry_after: Seconds the server asked us to wait (``Retry-After`` on a 503), if any.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class ResponseValidationError(APIError):
    """A successful response whose body is not what the API documents (not JSON, wrong shape)."""


class ResultParseError(ResponseValidationError):
    """A job's results, or one input's result, could not be parsed.

    Attributes:
        job_id: The job whose results were being parsed.
        input_name: The input item whose result failed, or ``None`` for the job envelope.
        errors: Short, human-readable descriptions of what was wrong (field path: problem).
    """

    def __init__(
        self,
        message: str,
        *,
        job_id: str,
        input_name: str | None = None,
        errors: tuple[str, ...] = (),
        method: str = "",
        path: str = "",
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.job_id = job_id
        self.input_name = input_name
        self.errors = errors


class ResponseTooLargeError(ResponseValidationError):
    """A response body over the client's ``max_response_bytes``, refused unread.

    Refused as soon as the declared ``Content-Length`` or the bytes received (after
    decompression, so a small compressed body cannot expand without bound) pass the
    limit; what was received is discarded. Not retried: the same request would give the
    same body. Raise ``max_response_bytes`` on the client to accept it. Also raised for
    a body that alone would weigh more than a fetcher's ``max_bytes_in_flight`` (then
    ``limit`` is that budget).

    Attributes:
        limit: The limit in bytes.
        size: The declared size, when the server sent one, else ``None``.
    """

    def __init__(
        self, message: str, *, limit: int, size: int | None = None, method: str = "", path: str = ""
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.limit = limit
        self.size = size


class PaginationError(ResponseValidationError):
    """The job history did not end: a page repeated an earlier one, or it went past
    ``max_pages``.

    A server that ignores the ``page`` parameter answers the same full page for ever;
    one that always answers a full page of new jobs never ends. Either would be walked
    without end (and each job's results fetched), so the walk stops with this error.
    Nothing after the page named is read.

    Attributes:
        page: The page at which the walk stopped.
        repeats: The earlier page that ``page`` repeated, or ``None``.
        max_pages: The cap that was reached, or ``None`` for a repeat.
    """

    def __init__(
        self,
        message: str,
        *,
        page: int,
        repeats: int | None = None,
        max_pages: int | None = None,
        method: str = "GET",
        path: str = "/jobs/history",
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.page = page
        self.repeats = repeats
        self.max_pages = max_pages


class MissingDependencyError(ModzyRetrainError, ImportError):
    """An optional extra is needed for this feature (the message names the pip command)."""


class DatasetError(ModzyRetrainError):
    """A dataset could not be written or read as asked."""


class DatasetExistsError(DatasetError):
    """The target already holds a dataset and ``overwrite`` was not set."""


class LabelNotInClassListError(DatasetError):
    """A sample's label is not in its model's class list (the manifest's ``classes``), so
    it has no class id: a loader refuses it rather than give it ``-1``.

    Attributes:
        model_id: The sample's model.
        label: Its label.
        job_id, input_name: The sample.
    """

    def __init__(
        self, message: str, *, model_id: str, label: str, job_id: str, input_name: str
    ) -> None:
        super().__init__(message)
        self.model_id = model_id
        self.label = label
        self.job_id = job_id
        self.input_name = input_name


class StorageError(DatasetError):
    """A store could not be reached, or failed, in its own library's terms (botocore's
    ``EndpointConnectionError`` from S3, an aiohttp connection error from GCS...): the
    message names the original type, which is ``__cause__``. ``OSError`` s the file
    systems raise themselves (a missing file, a refused permission) stay ``OSError`` s."""


class DatabaseError(ModzyRetrainError):
    """The database a lineage query reads could not be reached, dropped the connection
    on every attempt within the retry budget, refused the credentials, or failed the
    query. The run stops there and publishes nothing.

    The message names the database by its credential-free reference (dialect, host,
    port and name) and the driver's own error, with any password taken out.

    Attributes:
        database: The credential-free reference, e.g. ``postgresql://db:5432/prod``.
        attempts: How many attempts were made.
        retryable: Whether the failure was one worth retrying (the database down or
            the connection dropped), as opposed to a refusal.
    """

    def __init__(
        self, message: str, *, database: str = "", attempts: int = 1, retryable: bool = False
    ) -> None:
        super().__init__(message)
        self.database = database
        self.attempts = attempts
        self.retryable = retryable


class LineageError(ConfigurationError):
    """A lineage template or convention is malformed (raised when the stage is built)."""


class LabelStudioError(ModzyRetrainError):
    """Something went wrong talking to a Label Studio server.

    Kept apart from :class:`APIError` (the Modzy API) so that ``except APIError`` around
    a harvest never swallows a labelling failure, and the other way round.

    Attributes:
        method: The HTTP method of the failed request.
        path: The request path, e.g. ``/api/projects/7``.
        status_code: The HTTP status, or 0 when there was no response.
    """

    def __init__(
        self, message: str, *, method: str = "", path: str = "", status_code: int = 0
    ) -> None:
        super().__init__(message)
        self.method = method
        self.path = path
        self.status_code = status_code


class LabelStudioConnectionError(LabelStudioError):
    """No usable response from Label Studio: refused, reset, timed out or cut short."""


class LabelStudioStatusError(LabelStudioError):
    """Label Studio answered with a 4xx or 5xx status.

    Attributes:
        body: The decoded error body (a dict for its JSON errors, else text), redacted.
        retry_after: Seconds the server asked us to wait (``Retry-After``), if it said.
    """

    def __init__(
        self,
        message: str,
        *,
        method: str = "",
        path: str = "",
        status_code: int = 0,
        body: object = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path, status_code=status_code)
        self.body = body
        self.retry_after = retry_after


class LabelStudioAuthError(LabelStudioStatusError):
    """401 or 403: the token is unknown, expired, of the wrong kind, or lacks the rights."""


class LabelStudioNotFoundError(LabelStudioStatusError):
    """404: no such project or task (or a route this server does not have)."""


class LabelStudioResponseError(LabelStudioError):
    """A successful response whose body is not JSON or not the shape Label Studio documents."""


class TriggerError(ModzyRetrainError):
    """A retraining trigger's action failed: the version it fires for stays published,
    and the action is tried again by the next build (or label pull).

    Messages name the action (``github:acme/vision/retrain.yml@main``) and never a
    token: whatever the service echoed back is redacted first.

    Attributes:
        action: The action's description.
        status_code: The HTTP status, or 0 when there was no response.
    """

    def __init__(self, message: str, *, action: str = "", status_code: int = 0) -> None:
        super().__init__(message)
        self.action = action
        self.status_code = status_code


class TriggerRefusedError(TriggerError):
    """The service refused the request (4xx): retrying cannot help, a setting must change
    (a token, a workflow's inputs, a ref, a DAG id...); the message says which."""


class TriggerUnavailableError(TriggerError):
    """The service failed (5xx), timed out or could not be reached, on every attempt."""
