"""The trigger's actions as settings: one model per preset, checked when read.

A ``[[trigger.actions]]`` table of the build's TOML file, or a ``--trigger
PRESET:TARGET`` flag, becomes one of these. Nothing here reads the environment or
sends anything: tokens and base URLs from the environment are resolved by
``credentials.py`` (before any request), requests are shaped by ``shapes.py``.
Settings name the environment variable or file a token is in, never the token.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Annotated, Any, Literal

import httpx
from pydantic import Field, field_validator, model_validator

from modzy_retrain._core.options import FrozenOptions

from .payload import check_template

# The ``--trigger`` presets and what their target looks like (help and errors).
FLAG_FORMS: dict[str, str] = {
    "github": "github:OWNER/REPO/WORKFLOW_FILE@REF",
    "gitlab": "gitlab:PROJECT_ID@REF",
    "airflow": "airflow:DAG_ID",
    "dagster": "dagster:ASSET_KEY",
    "webhook": "webhook:URL",
}
GITHUB_MAX_INPUTS = 10  # GitHub refuses a dispatch with more (422)
# The version's fields a workflow_dispatch sends as inputs (the workflow declares them).
GITHUB_INPUTS = (
    "dataset_url",
    "version",
    "added",
    "relabelled",
    "new_samples",
    "new_by_label",
    "idempotency_key",
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
_HEADER = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


_LABEL = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$")


def check_url(value: str | None) -> str | None:
    """An absolute http(s) URL that can be sent to, or ``None``.

    Checked as the request would need it, so that a URL that passes here cannot fail
    in httpx when the trigger fires: no whitespace or control character, a host that is
    an IP address or a name of DNS labels (1 to 63 characters, IDNA-encoded, 253 at
    most), a port from 1 to 65535.
    """
    if value is None:
        return None
    if not isinstance(value, str) or any(c.isspace() or not c.isprintable() for c in value):
        raise ValueError("not a URL (it holds whitespace or a control character)")
    try:
        url = httpx.URL(value)
        host = url.raw_host.decode("ascii")  # IDNA-encoded; raises for an invalid name
        port = url.port
    except (httpx.InvalidURL, TypeError, ValueError):  # UnicodeError is a ValueError
        raise ValueError("not a URL") from None
    if url.scheme not in ("http", "https") or not host:
        raise ValueError("an absolute http(s) URL, such as https://ci.example.com/hook")
    if port is not None and not 0 < port < 65536:
        raise ValueError(f"port {port}: from 1 to 65535")
    if not _ip_address(host):
        name = host[:-1] if host.endswith(".") else host
        if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
            raise ValueError(f"{url.host!r} is not a host name")
    return value.rstrip("/")


def _ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _env_name(value: str | None) -> str | None:
    if value is not None and not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


class _Action(FrozenOptions):
    """What every action has: a name to record it by, a timeout, bounded attempts.

    Built from Python, an invalid one is a :class:`ConfigurationError`; read from the
    TOML file, ``load_settings`` reports it with the table it came from.
    """

    name: str | None = None
    timeout: float = Field(default=30.0, gt=0, le=600)
    max_attempts: int = Field(default=4, ge=1, le=10)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("letters, digits, '.', '_' and '-' (at most 64)")
        return value

    def describe(self) -> str:
        """The action as people read it (and as ``--trigger`` would write it)."""
        raise NotImplementedError

    @property
    def action_id(self) -> str:
        """What the action is recorded under, per version: its name, else the preset
        and a digest of its target (a change of target is a new action)."""
        if self.name is not None:
            return self.name
        preset = str(getattr(self, "preset", "action"))
        digest = hashlib.sha256(self.describe().encode("utf-8")).hexdigest()[:10]
        return f"{preset}-{digest}"


class _TokenFrom(_Action):
    """A token in an environment variable (the preset's conventional one by default),
    or in a file (``token_file`` wins). Never the token itself."""

    token_env: str = ""
    token_file: str | None = None

    @field_validator("token_env")
    @classmethod
    def _token_env(cls, value: str) -> str:
        _env_name(value)
        return value

    @field_validator("base_url", check_fields=False)
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        return check_url(value)


class GitHubAction(_TokenFrom):
    """GitHub Actions ``workflow_dispatch``: ``POST {api}/repos/{repository}/actions/
    workflows/{workflow}/dispatches``, inputs ``{"ref", "inputs"}``, answer 204."""

    preset: Literal["github"] = "github"
    repository: str
    workflow: str
    ref: str
    base_url: str | None = None
    token_env: str = "GITHUB_TOKEN"
    inputs: dict[str, str] = Field(default_factory=dict)

    @field_validator("repository")
    @classmethod
    def _repository(cls, value: str) -> str:
        if not _REPOSITORY.match(value):
            raise ValueError("OWNER/REPO, such as acme/vision")
        return value

    @field_validator("workflow", "ref")
    @classmethod
    def _plain(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError("a workflow file (retrain.yml) or id, and a branch or tag")
        return value

    @model_validator(mode="after")
    def _inputs(self) -> GitHubAction:
        check_template(self.inputs, "inputs")
        names = set(GITHUB_INPUTS) | set(self.inputs)
        if len(names) > GITHUB_MAX_INPUTS:
            raise ValueError(
                f"{len(names)} workflow inputs: GitHub takes at most {GITHUB_MAX_INPUTS} "
                f"({len(GITHUB_INPUTS)} are the version's: {', '.join(GITHUB_INPUTS)})"
            )
        return self

    def describe(self) -> str:
        return f"github:{self.repository}/{self.workflow}@{self.ref}"


class GitLabAction(_TokenFrom):
    """A GitLab pipeline trigger: ``POST {base}/api/v4/projects/{project}/trigger/
    pipeline`` with ``token``, ``ref`` and ``variables[...]`` as form fields, answer 201."""

    preset: Literal["gitlab"] = "gitlab"
    project: str
    ref: str
    base_url: str | None = None
    token_env: str = "GITLAB_TRIGGER_TOKEN"
    variables: dict[str, str] = Field(default_factory=dict)

    @field_validator("project", "ref")
    @classmethod
    def _plain(cls, value: str) -> str:
        if not value.strip() or any(c.isspace() for c in value):
            raise ValueError("a project id (1234) or path (group/project), and a branch or tag")
        return value

    @field_validator("variables")
    @classmethod
    def _variables(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            _env_name(key)
        check_template(value, "variables")
        return value

    def describe(self) -> str:
        return f"gitlab:{self.project}@{self.ref}"


class AirflowAction(_TokenFrom):
    """An Airflow DAG run: ``POST {base}/api/v1/dags/{dag_id}/dagRuns`` (Airflow 2) or
    ``/api/v2/...`` (Airflow 3) with ``conf``; the run id is the idempotency key."""

    preset: Literal["airflow"] = "airflow"
    dag_id: str
    api: Literal["v1", "v2"] | None = None
    base_url: str | None = None
    token_env: str = "AIRFLOW_TOKEN"
    username_env: str = "AIRFLOW_USERNAME"
    password_env: str = "AIRFLOW_PASSWORD"
    password_file: str | None = None
    conf: dict[str, Any] = Field(default_factory=dict)

    @field_validator("dag_id")
    @classmethod
    def _dag_id(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9_.-]+$", value):
            raise ValueError("a DAG id: letters, digits, '.', '_' and '-'")
        return value

    @field_validator("username_env", "password_env")
    @classmethod
    def _envs(cls, value: str) -> str:
        _env_name(value)
        return value

    @field_validator("conf")
    @classmethod
    def _conf(cls, value: dict[str, Any]) -> dict[str, Any]:
        check_template(value, "conf")
        return value

    def describe(self) -> str:
        return f"airflow:{self.dag_id}"


class DagsterAction(_TokenFrom):
    """Dagster: report a materialization of ``asset_key`` (``POST {base}/
    report_asset_materialization/{asset_key}`` with metadata), or launch a run of
    ``job`` (GraphQL ``launchRun``, tagged with the version's fields)."""

    preset: Literal["dagster"] = "dagster"
    asset_key: str | None = None
    job: str | None = None
    location: str | None = None
    repository: str = "__repository__"
    base_url: str | None = None
    # Dagster+ only; an open-source webserver has no authentication.
    token_env: str = "DAGSTER_CLOUD_API_TOKEN"
    metadata: dict[str, Any] = Field(default_factory=dict)
    run_config: dict[str, Any] = Field(default_factory=dict)

    @field_validator("asset_key")
    @classmethod
    def _asset_key(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = value.split("/")
        if not all(re.match(r"^[A-Za-z0-9_-]+$", p) for p in parts):
            raise ValueError("an asset key, its parts separated by '/': retraining/dataset")
        return value

    @model_validator(mode="after")
    def _one(self) -> DagsterAction:
        if (self.asset_key is None) == (self.job is None):
            raise ValueError("give asset_key (report a materialization) or job (launch a run)")
        if self.job is not None and self.location is None:
            raise ValueError("job needs location (the code location's name)")
        if self.job is None and self.run_config:
            raise ValueError("run_config goes with job")
        check_template(self.metadata, "metadata")
        check_template(self.run_config, "run_config")
        return self

    def describe(self) -> str:
        if self.job is not None:
            return f"dagster-job:{self.location}/{self.job}"
        return f"dagster:{self.asset_key}"


class WebhookAction(_Action):
    """A POST to any URL: the payload as JSON, or a body template; headers, some from
    the environment; an HMAC-SHA256 signature of the body; an ``Idempotency-Key``."""

    preset: Literal["webhook"] = "webhook"
    url: str = Field(repr=False)  # a query may hold a token
    headers: dict[str, str] = Field(default_factory=dict)
    headers_from_env: dict[str, str] = Field(default_factory=dict)
    body: dict[str, Any] | str | None = None
    content_type: str | None = None
    secret_env: str | None = None
    secret_file: str | None = None
    signature_header: str = "X-Signature-256"

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        checked = check_url(value)
        assert checked is not None
        return checked

    @field_validator("secret_env")
    @classmethod
    def _secret_env(cls, value: str | None) -> str | None:
        return _env_name(value)

    @model_validator(mode="after")
    def _check(self) -> WebhookAction:
        for header in [*self.headers, *self.headers_from_env, self.signature_header]:
            if not _HEADER.match(header):
                raise ValueError(f"{header!r} is not a header name")
        for env in self.headers_from_env.values():
            _env_name(env)
        if self.body is not None:
            check_template(self.body, "body")
        if isinstance(self.body, str) and self.content_type is None:
            raise ValueError("a text body needs content_type (a table is sent as JSON)")
        return self

    def describe(self) -> str:
        # Scheme, host and path: a query or userinfo may hold a token.
        url = httpx.URL(self.url)
        port = f":{url.port}" if url.port else ""
        return f"webhook:{url.scheme}://{url.host}{port}{url.path}"


class CommandAction(_Action):
    """A shell command, with the version's fields in its environment.

    ``timeout`` is the time it may run (6 hours unless set, at most 7 days): past it,
    the command and every process it started are stopped, and the action failed.
    """

    preset: Literal["command"] = "command"
    command: str
    # A training run takes hours, not a request's seconds: its own default and bound.
    timeout: float = Field(default=6 * 3600.0, gt=0, le=7 * 24 * 3600.0)

    def describe(self) -> str:
        return "command"

    @property
    def action_id(self) -> str:
        if self.name is not None:
            return self.name
        return "command-" + hashlib.sha256(self.command.encode("utf-8")).hexdigest()[:10]


TriggerAction = Annotated[
    GitHubAction | GitLabAction | AirflowAction | DagsterAction | WebhookAction | CommandAction,
    Field(discriminator="preset"),
]
HttpAction = GitHubAction | GitLabAction | AirflowAction | DagsterAction | WebhookAction


def parse_trigger_flag(spec: str) -> dict[str, Any]:
    """``--trigger PRESET:TARGET`` as the table the TOML file would hold.

    Raises:
        ValueError: An unknown preset or a target not in its preset's form.
    """
    preset, sep, target = spec.partition(":")
    preset = preset.strip().lower()
    if not sep or preset not in FLAG_FORMS or not target:
        forms = ", ".join(FLAG_FORMS.values())
        raise ValueError(f"--trigger {spec!r}: use one of {forms}")
    form = FLAG_FORMS[preset]
    if preset == "github":
        path, at, ref = target.partition("@")
        parts = path.split("/")
        if not at or len(parts) != 3 or not all(parts) or not ref:
            raise ValueError(f"--trigger {spec!r}: use {form}")
        return {
            "preset": preset,
            "repository": "/".join(parts[:2]),
            "workflow": parts[2],
            "ref": ref,
        }
    if preset == "gitlab":
        project, at, ref = target.partition("@")
        if not at or not project or not ref:
            raise ValueError(f"--trigger {spec!r}: use {form}")
        return {"preset": preset, "project": project, "ref": ref}
    if preset == "airflow":
        return {"preset": preset, "dag_id": target}
    if preset == "dagster":
        return {"preset": preset, "asset_key": target}
    return {"preset": preset, "url": target}


def preset_model(name: object) -> type[_Action] | None:
    """The settings model of a preset, by its name (``None``: no such preset)."""
    models: dict[str, type[_Action]] = {
        "github": GitHubAction,
        "gitlab": GitLabAction,
        "airflow": AirflowAction,
        "dagster": DagsterAction,
        "webhook": WebhookAction,
        "command": CommandAction,
    }
    return models.get(name) if isinstance(name, str) else None
