"""Tokens and base URLs from the environment or files, resolved before any request.

Each preset reads what its service's own tooling sets: ``GITHUB_TOKEN`` and
``GITHUB_API_URL`` (as GitHub's runners set them), ``CI_SERVER_URL`` (as GitLab's
do), and documented names for the others. A token is read once, when a build or a
pull starts, so a missing one is an invalid setting (exit code 2) rather than a
trigger failing after the version is published. :class:`Secret` shows as ``****``
in every repr; its value goes only into a request's headers or body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from modzy_retrain._core.exceptions import ConfigurationError

from .presets import (
    AirflowAction,
    CommandAction,
    DagsterAction,
    GitHubAction,
    GitLabAction,
    WebhookAction,
    check_url,
)

GITHUB_API = "https://api.github.com"
GITHUB_API_URL_ENV = "GITHUB_API_URL"
GITLAB = "https://gitlab.com"
GITLAB_URL_ENV = "CI_SERVER_URL"
AIRFLOW_URL_ENV = "AIRFLOW_URL"
AIRFLOW_API_ENV = "AIRFLOW_API_VERSION"
DAGSTER = "http://localhost:3000"
DAGSTER_URL_ENV = "DAGSTER_URL"


class Secret:
    """A credential that cannot be shown by accident. Strictly private."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('****')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("a Secret is not pickled")


@dataclass(frozen=True)
class Resolved:
    """An action with what it needs from the environment: where, and with what key.

    Attributes:
        base_url: The service's URL (an API root for GitHub).
        token: The preset's token, or ``None`` (Dagster's open source, Airflow with a
            user and password, a webhook).
        username, password: Airflow's basic auth (2.x), or what ``/auth/token`` takes
            for a bearer token (3.x).
        headers: A webhook's headers whose values come from the environment.
        signing_key: A webhook's HMAC key.
        api: Airflow's API version, ``v1`` (Airflow 2) or ``v2`` (Airflow 3).
    """

    base_url: str = ""
    token: Secret | None = None
    username: str | None = None
    password: Secret | None = None
    headers: Mapping[str, Secret] = field(default_factory=dict)
    signing_key: Secret | None = None
    api: str = ""

    def secrets(self) -> tuple[str, ...]:
        """Every secret value, for redaction."""
        found = [self.token, self.password, self.signing_key, *self.headers.values()]
        return tuple(s.reveal() for s in found if s is not None and s.reveal())


def _read_file(path: str, what: str) -> str:
    try:
        value = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigurationError(f"cannot read {what} {path}: {exc.strerror}") from None
    if not value:
        raise ConfigurationError(f"{what} {path} is empty")
    return value


def _token(
    action_text: str,
    env_name: str,
    file: str | None,
    environ: Mapping[str, str],
    *,
    required: bool = True,
) -> Secret | None:
    if file is not None:
        return Secret(_read_file(file, "token_file"))
    value = environ.get(env_name, "").strip()
    if value:
        return Secret(value)
    if required:
        raise ConfigurationError(
            f"trigger {action_text}: no token: set {env_name} (or token_file in its "
            "[[trigger.actions]] table)"
        )
    return None


def _url(
    action_text: str,
    given: str | None,
    env_name: str,
    default: str | None,
    environ: Mapping[str, str],
) -> str:
    value = given or environ.get(env_name, "").strip() or default
    if not value:
        raise ConfigurationError(f"trigger {action_text}: no base URL: set {env_name} or base_url")
    try:
        checked = check_url(value)
    except ValueError as exc:
        raise ConfigurationError(
            f"trigger {action_text}: base URL from {env_name}: {exc}"
        ) from None
    assert checked is not None
    return checked


def resolve(action: object, environ: Mapping[str, str]) -> Resolved:
    """What ``action`` needs from ``environ`` and files.

    Raises:
        ConfigurationError: A token or URL missing, or a file that cannot be read.
    """
    if isinstance(action, GitHubAction):
        text = action.describe()
        return Resolved(
            base_url=_url(text, action.base_url, GITHUB_API_URL_ENV, GITHUB_API, environ),
            token=_token(text, action.token_env, action.token_file, environ),
        )
    if isinstance(action, GitLabAction):
        text = action.describe()
        return Resolved(
            base_url=_url(text, action.base_url, GITLAB_URL_ENV, GITLAB, environ),
            token=_token(text, action.token_env, action.token_file, environ),
        )
    if isinstance(action, AirflowAction):
        return _airflow(action, environ)
    if isinstance(action, DagsterAction):
        text = action.describe()
        return Resolved(
            base_url=_url(text, action.base_url, DAGSTER_URL_ENV, DAGSTER, environ),
            token=_token(text, action.token_env, action.token_file, environ, required=False),
        )
    if isinstance(action, WebhookAction):
        return _webhook(action, environ)
    if isinstance(action, CommandAction):
        return Resolved()
    raise ConfigurationError(f"not a trigger action: {type(action).__name__}")


def _airflow(action: AirflowAction, environ: Mapping[str, str]) -> Resolved:
    text = action.describe()
    api = action.api or environ.get(AIRFLOW_API_ENV, "").strip() or "v2"
    if api not in ("v1", "v2"):
        raise ConfigurationError(
            f"trigger {text}: {AIRFLOW_API_ENV}={api!r}: v1 (Airflow 2) or v2 (Airflow 3)"
        )
    base_url = _url(text, action.base_url, AIRFLOW_URL_ENV, None, environ)
    token = _token(text, action.token_env, action.token_file, environ, required=False)
    if token is not None:
        return Resolved(base_url=base_url, token=token, api=api)
    username = environ.get(action.username_env, "").strip()
    if action.password_file is not None:
        password = _read_file(action.password_file, "password_file")
    else:
        password = environ.get(action.password_env, "")
    if not username or not password:
        raise ConfigurationError(
            f"trigger {text}: no credentials: set {action.token_env} (a bearer token), or "
            f"{action.username_env} and {action.password_env}"
        )
    return Resolved(base_url=base_url, username=username, password=Secret(password), api=api)


def _webhook(action: WebhookAction, environ: Mapping[str, str]) -> Resolved:
    text = action.describe()
    headers: dict[str, Secret] = {}
    for header, env_name in action.headers_from_env.items():
        value = environ.get(env_name, "").strip()
        if not value:
            raise ConfigurationError(f"trigger {text}: header {header}: set {env_name}")
        headers[header] = Secret(value)
    key = None
    if action.secret_file is not None:
        key = Secret(_read_file(action.secret_file, "secret_file"))
    elif action.secret_env is not None:
        value = environ.get(action.secret_env, "")
        if not value:
            raise ConfigurationError(f"trigger {text}: signing key: set {action.secret_env}")
        key = Secret(value)
    return Resolved(base_url=action.url, headers=headers, signing_key=key)
