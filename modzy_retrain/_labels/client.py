"""``LabelStudioClient``: the Label Studio REST calls that pushing and pulling labels need.

Sync, over one pooled ``httpx.Client``. Every failure is a :class:`LabelStudioError`
(status, connection, or a body that is not the documented JSON); retries follow
:class:`LabelStudioRetry`. The token is never shown: not in the repr, not in an
exception (server bodies are redacted before they are kept), not in a log line.

What the server does, checked on Label Studio 1.23.2 (see docs/human-labels.md):
``GET /api/tasks`` pages with ``page``/``page_size`` and answers 404 past the last page,
so pages are requested only up to ``total``; ``fields=all`` brings each task's
annotations. An admin may post an annotation for another user (``completed_by``, an
existing user id), which is how tests play several annotators.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from modzy_retrain._core.backoff import parse_retry_after
from modzy_retrain._core.exceptions import (
    ConfigurationError,
    LabelStudioAuthError,
    LabelStudioConnectionError,
    LabelStudioError,
    LabelStudioNotFoundError,
    LabelStudioResponseError,
    LabelStudioStatusError,
)
from modzy_retrain._core.secrets import redact, redact_obj

from .auth import REFRESH_PATH, RefreshFailed, TokenAuth, TokenKind
from .models import (
    LabelStudioAnnotation,
    LabelStudioProject,
    LabelStudioTask,
    LabelStudioUser,
)
from .retry import LabelStudioRetry, retrying

URL_ENV = "LABEL_STUDIO_URL"
API_KEY_ENV = "LABEL_STUDIO_API_KEY"
IMPORT_CHUNK = 500
TASK_PAGE_SIZE = 100
MAX_CHUNK = 10_000
logger = logging.getLogger("modzy_retrain")
M = TypeVar("M", bound=BaseModel)


def _base_url(url: str | None) -> str:
    url = (url if url is not None else os.environ.get(URL_ENV, "")).strip().rstrip("/")
    if not url:
        raise ConfigurationError(f"LabelStudioClient needs a url (or {URL_ENV} in the environment)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"LabelStudioClient: url must be http(s)://host[:port], got scheme {parts.scheme!r}"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigurationError("LabelStudioClient: url must not hold credentials, a query or #")
    return url


def _api_key(api_key: str | None) -> str:
    key = (api_key if api_key is not None else os.environ.get(API_KEY_ENV, "")).strip()
    if not key:
        raise ConfigurationError(
            f"LabelStudioClient needs an api_key (or {API_KEY_ENV} in the environment): "
            "a legacy token or a personal access token"
        )
    if any(c.isspace() for c in key):
        raise ConfigurationError("LabelStudioClient: api_key must not contain whitespace")
    return key


def _positive_int(name: str, value: object, limit: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= limit:
        raise ConfigurationError(f"LabelStudioClient: {name} must be an int in 1..{limit}")
    return value


class LabelStudioClient:
    """A typed client for Label Studio's REST API.

    Args:
        url: The server, e.g. ``http://localhost:8080`` (default: ``LABEL_STUDIO_URL``).
        api_key: A legacy token or a personal access token (default:
            ``LABEL_STUDIO_API_KEY``); which one is recognised from its shape.
        timeout: Seconds for connecting, and for each read or write.
        retry: The retry policy (:class:`LabelStudioRetry`).
        http_client: An ``httpx.Client`` to send through (its transport, hooks and
            limits); the client does not close one you pass.
        sleep: What waits between attempts (tests pass a recorder, so they never sleep).
        rng: The jitter's random source.
    """

    def __init__(
        self,
        url: str | None = None,
        api_key: str | None = None,
        *,
        timeout: float = 30.0,
        retry: LabelStudioRetry | None = None,
        http_client: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.url = _base_url(url)
        key = _api_key(api_key)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ConfigurationError("LabelStudioClient: timeout must be a positive number")
        if retry is not None and not isinstance(retry, LabelStudioRetry):
            raise ConfigurationError("LabelStudioClient: retry must be a LabelStudioRetry")
        self.retry = retry or LabelStudioRetry()
        self._auth = TokenAuth(key, self.url + REFRESH_PATH)
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)
        self._timeout = httpx.Timeout(timeout)
        self._sleep = sleep
        self._rng = rng or random.Random()

    @property
    def token_kind(self) -> TokenKind:
        """``legacy``, ``personal`` (a PAT, refreshed to bearer tokens) or ``access``."""
        return self._auth.kind

    def __repr__(self) -> str:
        return (
            f"LabelStudioClient(url={self.url!r}, api_key='****', token_kind={self.token_kind!r})"
        )

    def close(self) -> None:
        """Close the client's own HTTP client (one you passed stays open: it is yours)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the send loop ------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return redact(text, self._auth.secrets())

    def _send_once(
        self, method: str, path: str, params: Mapping[str, Any] | None, body: Any
    ) -> Any:
        try:
            response = self._http.request(
                method,
                self.url + path,
                params=params,
                json=body,
                auth=self._auth,
                timeout=self._timeout,
                follow_redirects=False,
            )
        except RefreshFailed as exc:
            raise LabelStudioStatusError(
                f"POST {REFRESH_PATH} answered {exc.status_code} while refreshing the access token",
                method="POST",
                path=REFRESH_PATH,
                status_code=exc.status_code,
                retry_after=parse_retry_after({"Retry-After": exc.retry_after or ""}),
            ) from None
        except httpx.TransportError as exc:
            detail = self._redact(str(exc)) or type(exc).__name__
            raise LabelStudioConnectionError(
                f"{method} {path}: no usable response ({type(exc).__name__}: {detail})",
                method=method,
                path=path,
            ) from exc
        if response.status_code >= 400 or 300 <= response.status_code < 400:
            raise self._status_error(method, path, response)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return json.loads(response.content)
        except ValueError:
            raise LabelStudioResponseError(
                f"{method} {path} answered {response.status_code} with a body that is not JSON "
                f"({response.headers.get('content-type', 'no content type')}, "
                f"{len(response.content)} bytes)",
                method=method,
                path=path,
                status_code=response.status_code,
            ) from None

    def _status_error(self, method: str, path: str, response: httpx.Response) -> LabelStudioError:
        status = response.status_code
        body: object
        try:
            body = redact_obj(json.loads(response.content), self._auth.secrets())
        except ValueError:
            # Unknown routes answer an HTML page: keep its size, not its markup.
            body = self._redact(response.content[:500].decode("utf-8", errors="replace"))
        detail = body.get("detail") if isinstance(body, dict) else None
        errors = body.get("validation_errors") if isinstance(body, dict) else None
        said = f": {detail}" if isinstance(detail, str) else ""
        said += f" {json.dumps(errors)[:500]}" if errors else ""
        message = f"{method} {path} answered {status}{said}"
        kwargs: dict[str, Any] = {
            "method": method,
            "path": path,
            "status_code": status,
            "body": body,
            "retry_after": parse_retry_after(response.headers),
        }
        if status in (401, 403):
            hint = f" (the {self.token_kind} token was refused)"
            return LabelStudioAuthError(message + hint, **kwargs)
        if status == 404:
            return LabelStudioNotFoundError(message, **kwargs)
        return LabelStudioStatusError(message, **kwargs)

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        idempotent: bool | None = None,
    ) -> Any:
        """One API call with retries; returns the decoded JSON body."""
        safe = method == "GET" if idempotent is None else idempotent
        loop = retrying(
            self.retry, idempotent=safe, what=f"{method} {path}", sleep=self._sleep, rng=self._rng
        )
        for attempt in loop:
            with attempt:
                return self._send_once(method, path, params, body)
        raise AssertionError("unreachable: tenacity reraises")  # pragma: no cover

    def _parse(self, model: type[M], value: Any, method: str, path: str) -> M:
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            where = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                for e in exc.errors(include_url=False, include_input=False)[:5]
            )
            raise LabelStudioResponseError(
                f"{method} {path}: not a {model.__name__} ({where})", method=method, path=path
            ) from None

    def _parse_list(self, model: type[M], value: Any, method: str, path: str) -> list[M]:
        if not isinstance(value, list):
            raise LabelStudioResponseError(
                f"{method} {path}: expected a JSON list, got {type(value).__name__}",
                method=method,
                path=path,
            )
        return [self._parse(model, item, method, path) for item in value]

    # -- users and tokens ---------------------------------------------------------------

    def whoami(self) -> LabelStudioUser:
        """The user the token belongs to (a cheap way to check url and token)."""
        path = "/api/current-user/whoami"
        return self._parse(LabelStudioUser, self._call("GET", path), "GET", path)

    def users(self) -> list[LabelStudioUser]:
        """Every user of the server."""
        return self._parse_list(
            LabelStudioUser, self._call("GET", "/api/users/"), "GET", "/api/users/"
        )

    def create_user(self, email: str, *, username: str | None = None) -> LabelStudioUser:
        """Create a user (no password: it cannot log in until one is set in the UI).

        An admin can then post annotations on its behalf with ``completed_by``.
        """
        if not isinstance(email, str) or "@" not in email:
            raise ConfigurationError("create_user: email must be an email address")
        body = {"email": email, "username": username or email.split("@", 1)[0]}
        path = "/api/users/"
        return self._parse(LabelStudioUser, self._call("POST", path, body=body), "POST", path)

    def create_personal_access_token(self) -> str:
        """Create the current user's personal access token (a JWT refresh token).

        Label Studio keeps one per user: a second call answers 409 until the first is
        revoked. The token is returned once; store it as a secret.
        """
        value = self._call("POST", "/api/token/")
        token = value.get("token") if isinstance(value, dict) else None
        if not isinstance(token, str) or not token:
            raise LabelStudioResponseError(
                "POST /api/token/ answered without a token", method="POST", path="/api/token/"
            )
        return token

    # -- projects -----------------------------------------------------------------------

    def projects(self, *, title: str | None = None) -> list[LabelStudioProject]:
        """Every project (those titled exactly ``title``, if given), oldest first."""
        path = "/api/projects"
        found: list[LabelStudioProject] = []
        page = 1
        while True:
            params: dict[str, Any] = {"page": page, "page_size": TASK_PAGE_SIZE, "ordering": "id"}
            if title is not None:
                params["title"] = title  # a contains-filter on the server: narrowed below
            value = self._call("GET", path, params=params)
            if not isinstance(value, dict) or not isinstance(value.get("results"), list):
                raise LabelStudioResponseError(
                    f"GET {path}: expected a page with results", method="GET", path=path
                )
            found += self._parse_list(LabelStudioProject, value["results"], "GET", path)
            if not value.get("next"):
                break
            page += 1
        if title is not None:
            found = [p for p in found if p.title == title]
        return sorted(found, key=lambda p: p.id)

    def get_project(self, project_id: int) -> LabelStudioProject:
        """One project by id (:class:`LabelStudioNotFoundError` if there is none)."""
        path = f"/api/projects/{_positive_int('project_id', project_id, 2**63)}"
        return self._parse(LabelStudioProject, self._call("GET", path), "GET", path)

    def find_project(self, title_or_id: str | int) -> LabelStudioProject | None:
        """The project with this id or exact title, or ``None``.

        Two projects with the same title make the title ambiguous: that raises
        :class:`LabelStudioError` naming their ids, rather than pick one.
        """
        if isinstance(title_or_id, int) and not isinstance(title_or_id, bool):
            try:
                return self.get_project(title_or_id)
            except LabelStudioNotFoundError:
                return None
        if not isinstance(title_or_id, str) or not title_or_id:
            raise ConfigurationError("find_project: pass a project id or a non-empty title")
        matches = self.projects(title=title_or_id)
        if len(matches) > 1:
            raise LabelStudioError(
                f"{len(matches)} projects are titled {title_or_id!r} "
                f"(ids {[p.id for p in matches]}); pass the id instead"
            )
        return matches[0] if matches else None

    def create_project(
        self, title: str, label_config: str, *, description: str = ""
    ) -> LabelStudioProject:
        """Create a project (Label Studio wants a title of 3 to 50 characters)."""
        if not isinstance(title, str) or not 3 <= len(title) <= 50:
            raise ConfigurationError("create_project: title must be a str of 3 to 50 characters")
        if not isinstance(label_config, str) or not label_config.strip().startswith("<View"):
            raise ConfigurationError("create_project: label_config must be a <View>...</View> XML")
        body = {"title": title, "label_config": label_config, "description": description}
        return self._parse(
            LabelStudioProject,
            self._call("POST", "/api/projects", body=body),
            "POST",
            "/api/projects",
        )

    # -- tasks and annotations ----------------------------------------------------------

    def import_tasks(
        self, project_id: int, tasks: Sequence[Mapping[str, Any]], *, chunk_size: int = IMPORT_CHUNK
    ) -> list[int]:
        """Import tasks in chunks of ``chunk_size``; returns the new task ids, in order.

        Each task is ``{"data": {...}, "meta": {...}, "predictions": [...]}``. The server
        does not deduplicate: importing the same task twice makes two tasks. A failed
        chunk raises after the earlier chunks were imported (their ids are lost with the
        exception: list the project's tasks to see what is there).
        """
        _positive_int("project_id", project_id, 2**63)
        _positive_int("chunk_size", chunk_size, MAX_CHUNK)
        if not isinstance(tasks, (list, tuple)) or not all(
            isinstance(t, Mapping) and isinstance(t.get("data"), Mapping) for t in tasks
        ):
            raise ConfigurationError(
                "import_tasks: every task must be a mapping with a 'data' mapping"
            )
        path = f"/api/projects/{project_id}/import"
        ids: list[int] = []
        for start in range(0, len(tasks), chunk_size):
            chunk = [dict(t) for t in tasks[start : start + chunk_size]]
            value = self._call(
                "POST", path, params={"return_task_ids": "true"}, body=chunk, idempotent=False
            )
            got = value.get("task_ids") if isinstance(value, dict) else None
            if not isinstance(got, list) or len(got) != len(chunk):
                raise LabelStudioResponseError(
                    f"POST {path}: expected {len(chunk)} task ids back", method="POST", path=path
                )
            ids += [int(i) for i in got]
        return ids

    def tasks(
        self, project_id: int, *, page_size: int = TASK_PAGE_SIZE
    ) -> Iterator[LabelStudioTask]:
        """Every task of a project with its annotations, a page at a time (lazily)."""
        _positive_int("project_id", project_id, 2**63)
        _positive_int("page_size", page_size, MAX_CHUNK)
        path = "/api/tasks"
        page, seen = 1, 0
        while True:
            params = {"project": project_id, "page": page, "page_size": page_size, "fields": "all"}
            value = self._call("GET", path, params=params)
            if not isinstance(value, dict) or not isinstance(value.get("tasks"), list):
                raise LabelStudioResponseError(
                    f"GET {path}: expected a page with tasks", method="GET", path=path
                )
            batch = self._parse_list(LabelStudioTask, value["tasks"], "GET", path)
            yield from batch
            seen += len(batch)
            total = value.get("total")
            # Past the last page the server answers 404, so stop on the total it gave.
            if not batch or not isinstance(total, int) or seen >= total:
                return
            page += 1

    def get_task(self, task_id: int) -> LabelStudioTask:
        """One task with its annotations."""
        path = f"/api/tasks/{_positive_int('task_id', task_id, 2**63)}"
        return self._parse(LabelStudioTask, self._call("GET", path), "GET", path)

    def export(self, project_id: int, *, all_tasks: bool = False) -> list[LabelStudioTask]:
        """The JSON export: annotated tasks only, or every task with ``all_tasks=True``."""
        path = f"/api/projects/{_positive_int('project_id', project_id, 2**63)}/export"
        params = {"exportType": "JSON", "download_all_tasks": "true" if all_tasks else "false"}
        return self._parse_list(
            LabelStudioTask, self._call("GET", path, params=params), "GET", path
        )

    def create_annotation(
        self,
        task_id: int,
        result: Sequence[Mapping[str, Any]],
        *,
        completed_by: int | None = None,
        was_cancelled: bool = False,
        lead_time: float | None = None,
    ) -> LabelStudioAnnotation:
        """Post an annotation on a task, as an annotator would.

        ``completed_by`` (a user id) is honoured for an admin's token: that is how one
        token can play several annotators. ``was_cancelled=True`` with an empty result is
        a skipped task.
        """
        path = f"/api/tasks/{_positive_int('task_id', task_id, 2**63)}/annotations"
        if not isinstance(result, (list, tuple)) or not all(isinstance(r, Mapping) for r in result):
            raise ConfigurationError("create_annotation: result must be a list of mappings")
        body: dict[str, Any] = {"result": [dict(r) for r in result], "was_cancelled": was_cancelled}
        if completed_by is not None:
            body["completed_by"] = _positive_int("completed_by", completed_by, 2**63)
        if lead_time is not None:
            body["lead_time"] = float(lead_time)
        value = self._call("POST", path, body=body, idempotent=False)
        return self._parse(LabelStudioAnnotation, value, "POST", path)
