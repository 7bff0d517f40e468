"""Each preset's request, exactly as its service documents it, and what a refusal means.

Pure: a settings model, what the environment gave (:class:`Resolved`) and a version's
fields in; an :class:`HttpCall` out (method, URL, headers, body bytes), and for an
error answer a message naming what to fix. ``send.py`` sends; tests compare these
against the documented shapes on loopback servers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from modzy_retrain._core.secrets import redact

from .credentials import Resolved
from .payload import FIELDS, as_text, render
from .presets import (
    GITHUB_INPUTS,
    AirflowAction,
    DagsterAction,
    GitHubAction,
    GitLabAction,
    HttpAction,
    WebhookAction,
)

GITHUB_ACCEPT = "application/vnd.github+json"
GITHUB_API_VERSION = "2022-11-28"
JSON = "application/json"
DAGSTER_TOKEN_HEADER = "Dagster-Cloud-Api-Token"
# What a shell command and a GitLab pipeline see: MODZY_RETRAIN_<FIELD>.
VARIABLES = {name: f"MODZY_RETRAIN_{name.upper()}" for name in FIELDS}
# Dagster run tags: namespaced, as Dagster's own are (``dagster/...``).
DAGSTER_TAG_PREFIX = "modzy_retrain/"

_LAUNCH_RUN = """mutation LaunchRun($executionParams: ExecutionParams!) {
  launchRun(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}"""
_RUNS_WITH_TAG = """query RunsWithTag($filter: RunsFilter) {
  runsOrError(filter: $filter) { __typename ... on Runs { results { runId } } }
}"""


@dataclass(frozen=True)
class HttpCall:
    """One request of an action. Headers and body may hold a token: never in a repr.

    Attributes:
        action: The action's description (for messages).
        done_before: Statuses meaning an earlier delivery already did it (Airflow's
            409 for a run id that exists): a success, not an error.
    """

    action: str
    method: str
    url: str
    headers: Mapping[str, str] = field(repr=False)
    content: bytes = field(repr=False)
    secrets: tuple[str, ...] = field(default=(), repr=False)
    done_before: frozenset[int] = frozenset()


def _json(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode("utf-8")


def github(action: GitHubAction, res: Resolved, data: Mapping[str, Any]) -> HttpCall:
    """``POST /repos/{owner}/{repo}/actions/workflows/{workflow}/dispatches``."""
    assert res.token is not None
    inputs = {name: as_text(data[name]) for name in GITHUB_INPUTS}
    inputs.update({k: as_text(render(v, data)) for k, v in action.inputs.items()})
    workflow = quote(action.workflow, safe="")
    return HttpCall(
        action.describe(),
        "POST",
        f"{res.base_url}/repos/{action.repository}/actions/workflows/{workflow}/dispatches",
        {
            "Authorization": f"Bearer {res.token.reveal()}",
            "Accept": GITHUB_ACCEPT,
            "X-GitHub-Api-Version": GITHUB_API_VERSION,
            "Content-Type": JSON,
        },
        _json({"ref": action.ref, "inputs": inputs}),
        res.secrets(),
    )


def gitlab(action: GitLabAction, res: Resolved, data: Mapping[str, Any]) -> HttpCall:
    """``POST /api/v4/projects/{id}/trigger/pipeline`` with form fields."""
    assert res.token is not None
    variables = {VARIABLES[name]: as_text(data[name]) for name in FIELDS}
    variables.update({k: as_text(render(v, data)) for k, v in action.variables.items()})
    form = [("token", res.token.reveal()), ("ref", action.ref)]
    form += [(f"variables[{k}]", v) for k, v in variables.items()]
    project = quote(action.project, safe="")  # a path's slashes are encoded, as GitLab asks
    return HttpCall(
        action.describe(),
        "POST",
        f"{res.base_url}/api/v4/projects/{project}/trigger/pipeline",
        {"Content-Type": "application/x-www-form-urlencoded"},
        urlencode(form).encode("ascii"),
        res.secrets(),
    )


def airflow_run_id(data: Mapping[str, Any]) -> str:
    """The DAG run's id: Airflow refuses a second run with it (409), so a repeat
    delivery starts nothing."""
    return f"modzy-retrain-{data['idempotency_key']}"


def airflow(
    action: AirflowAction, res: Resolved, data: Mapping[str, Any], bearer: str | None = None
) -> HttpCall:
    """``POST /api/v1/dags/{dag_id}/dagRuns`` (2.x) or ``/api/v2/...`` (3.x)."""
    conf = {name: data[name] for name in FIELDS}
    conf.update({k: render(v, data) for k, v in action.conf.items()})
    body: dict[str, Any] = {"dag_run_id": airflow_run_id(data)}
    if res.api == "v2":
        # Airflow 3 requires the key; null lets it pick the time (run_after).
        body["logical_date"] = None
    body["conf"] = conf
    headers = {"Content-Type": JSON, "Accept": JSON}
    token = bearer or (res.token.reveal() if res.token is not None else None)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    else:
        assert res.username is not None
        assert res.password is not None
        pair = f"{res.username}:{res.password.reveal()}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
    secrets = res.secrets() + ((bearer,) if bearer else ())
    return HttpCall(
        action.describe(),
        "POST",
        f"{res.base_url}/api/{res.api}/dags/{quote(action.dag_id, safe='')}/dagRuns",
        headers,
        _json(body),
        secrets,
        done_before=frozenset({409}),
    )


def airflow_token(action: AirflowAction, res: Resolved) -> HttpCall:
    """Airflow 3: ``POST /auth/token`` with a user and password, for a bearer token."""
    assert res.username is not None
    assert res.password is not None
    return HttpCall(
        action.describe(),
        "POST",
        f"{res.base_url}/auth/token",
        {"Content-Type": JSON, "Accept": JSON},
        _json({"username": res.username, "password": res.password.reveal()}),
        res.secrets(),
    )


def _dagster_headers(res: Resolved) -> dict[str, str]:
    headers = {"Content-Type": JSON, "Accept": JSON}
    if res.token is not None:
        headers[DAGSTER_TOKEN_HEADER] = res.token.reveal()
    return headers


def dagster(action: DagsterAction, res: Resolved, data: Mapping[str, Any]) -> HttpCall:
    """A materialization (``POST /report_asset_materialization/{asset_key}``) or a
    run (GraphQL ``launchRun``), carrying the version's fields."""
    if action.asset_key is not None:
        metadata = {name: data[name] for name in FIELDS}
        metadata.update({k: render(v, data) for k, v in action.metadata.items()})
        body: dict[str, Any] = {
            "metadata": metadata,
            "data_version": data["version"],
            "description": f"modzy_retrain {data['version']} of {data['dataset_url']}",
        }
        return HttpCall(
            action.describe(),
            "POST",
            f"{res.base_url}/report_asset_materialization/{action.asset_key}",
            _dagster_headers(res),
            _json(body),
            res.secrets(),
        )
    params = {
        "selector": {
            "repositoryLocationName": action.location,
            "repositoryName": action.repository,
            "jobName": action.job,
        },
        "runConfigData": render(action.run_config, data),
        "executionMetadata": {"tags": dagster_tags(data)},
    }
    return HttpCall(
        action.describe(),
        "POST",
        f"{res.base_url}/graphql",
        _dagster_headers(res),
        _json({"query": _LAUNCH_RUN, "variables": {"executionParams": params}}),
        res.secrets(),
    )


def dagster_tags(data: Mapping[str, Any]) -> list[dict[str, str]]:
    """The version's fields as run tags (strings), ``modzy_retrain/<field>``."""
    return [{"key": DAGSTER_TAG_PREFIX + name, "value": as_text(data[name])} for name in FIELDS]


def dagster_existing_runs(
    action: DagsterAction, res: Resolved, data: Mapping[str, Any]
) -> HttpCall:
    """Runs of this job already tagged with this version's idempotency key (a repeat
    delivery; another job's run for the version is no repeat)."""
    key = {"key": DAGSTER_TAG_PREFIX + "idempotency_key", "value": data["idempotency_key"]}
    variables = {"filter": {"tags": [key], "pipelineName": action.job}}
    return HttpCall(
        action.describe(),
        "POST",
        f"{res.base_url}/graphql",
        _dagster_headers(res),
        _json({"query": _RUNS_WITH_TAG, "variables": variables}),
        res.secrets(),
    )


def signature(key: str, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 of the exact body bytes (GitHub's webhook form)."""
    return "sha256=" + hmac.new(key.encode("utf-8"), body, hashlib.sha256).hexdigest()


def webhook(action: WebhookAction, res: Resolved, data: Mapping[str, Any]) -> HttpCall:
    """A POST of the payload (or the body template), signed when a key is set."""
    if action.body is None:
        content, content_type = _json(dict(data)), JSON
    elif isinstance(action.body, str):
        content = as_text(render(action.body, data)).encode("utf-8")
        content_type = action.content_type or "text/plain; charset=utf-8"
    else:
        content, content_type = _json(render(action.body, data)), action.content_type or JSON
    headers = {"Content-Type": content_type, **action.headers}
    headers.update({k: v.reveal() for k, v in res.headers.items()})
    headers["Idempotency-Key"] = str(data["idempotency_key"])
    if res.signing_key is not None:
        headers[action.signature_header] = signature(res.signing_key.reveal(), content)
    return HttpCall(action.describe(), "POST", action.url, headers, content, res.secrets())


def server_message(body: object, secrets: tuple[str, ...]) -> str:
    """The service's own words from an error body (``message``, ``detail``, ``error``),
    redacted and cut short."""
    text = ""
    if isinstance(body, dict):
        for key in ("message", "detail", "error", "title", "errors"):
            if body.get(key):
                value = body[key]
                text = value if isinstance(value, str) else json.dumps(value)
                break
    elif isinstance(body, str):
        text = body
    text = " ".join(redact(text, secrets).split())
    return text[:300] + ("..." if len(text) > 300 else "")


def refusal(action: HttpAction, status: int, message: str) -> str:
    """What a 4xx answer means for this preset, and what to fix."""
    said = f"{status}: {message}" if message else str(status)
    text = action.describe()
    hint = _HINTS.get((action.preset, status)) or _HINTS.get((action.preset, 0), "")
    values = {**action.model_dump(), "inputs": ", ".join(GITHUB_INPUTS)}
    return f"trigger {text} refused ({said}): " + hint.format(**values)


_HINTS: dict[tuple[str, int], str] = {
    ("github", 401): "GitHub refused the token: check {token_env} (or token_file); it may "
    "have expired",
    ("github", 403): "the token may not dispatch workflows in {repository}: it needs Actions "
    "write access (a fine-grained token's 'Actions: Read and write', a classic token's repo "
    "scope)",
    ("github", 404): "no workflow {workflow} in {repository}, or the token cannot see the "
    "repository: check repository, workflow (a file under .github/workflows) and the token's "
    "access",
    ("github", 422): "check that {workflow} has a workflow_dispatch trigger, that ref {ref} "
    "exists, and that the workflow declares the inputs {inputs} (and any of [inputs])",
    ("github", 0): "check repository, workflow, ref and the token",
    ("gitlab", 400): "check that ref {ref} exists and that the project's .gitlab-ci.yml is "
    "valid for it",
    ("gitlab", 401): "GitLab refused the trigger token: check {token_env} (or token_file)",
    ("gitlab", 403): "the trigger token may not run pipelines on {ref} (a protected branch "
    "needs a token of a user allowed to push to it): check {token_env}",
    ("gitlab", 404): "GitLab answers 404 for an unknown project and for a wrong trigger "
    "token alike: check project ({project}) and {token_env}",
    ("gitlab", 0): "check project, ref and the trigger token ({token_env})",
    ("airflow", 400): "check conf against the DAG's params",
    ("airflow", 401): "Airflow refused the credentials: check {token_env}, or {username_env} "
    "and {password_env} (Airflow 2 needs an API auth backend that takes them, such as "
    "basic_auth)",
    ("airflow", 403): "the user may not trigger {dag_id}: it needs the permission to create "
    "DAG runs",
    ("airflow", 404): "no DAG {dag_id} there: check dag_id, the URL, and the API version "
    "(api or AIRFLOW_API_VERSION: v1 for Airflow 2, v2 for Airflow 3)",
    ("airflow", 405): "check the API version (api or AIRFLOW_API_VERSION: v1 for Airflow 2, "
    "v2 for Airflow 3)",
    ("airflow", 422): "Airflow refused the body: check the API version (api or "
    "AIRFLOW_API_VERSION: v1 for Airflow 2, v2 for Airflow 3) and conf",
    ("airflow", 0): "check dag_id, the URL, the API version and the credentials",
    ("dagster", 400): "check asset_key, metadata and run_config",
    ("dagster", 401): "Dagster refused the token: check {token_env} (Dagster+ only)",
    ("dagster", 403): "Dagster refused the token: check {token_env} (Dagster+ only)",
    ("dagster", 404): "no such route: check the URL (DAGSTER_URL or base_url: the "
    "webserver's root, or a Dagster+ deployment's)",
    ("dagster", 0): "check asset_key or job, the URL and the token",
    ("webhook", 0): "check url, headers, headers_from_env and the signing key",
}


def graphql_problem(action: DagsterAction, body: object) -> str | None:
    """What a ``launchRun`` answered instead of a run (GraphQL says it with a 200)."""
    data = body.get("data") if isinstance(body, dict) else None
    launched = data.get("launchRun") if isinstance(data, dict) else None
    if not isinstance(launched, dict):
        errors = body.get("errors") if isinstance(body, dict) else None
        return f"Dagster's GraphQL API answered no launchRun: {json.dumps(errors)[:300]}"
    kind = str(launched.get("__typename"))
    if kind == "LaunchRunSuccess":
        return None
    if kind == "PipelineNotFoundError":
        return (
            f"no job {action.job} in code location {action.location} (repository "
            f"{action.repository}): check job, location and repository"
        )
    if kind == "RunConfigValidationInvalid":
        errors = "; ".join(str(e.get("message")) for e in launched.get("errors") or [])
        return f"Dagster refused the run config ({errors}): set run_config for job {action.job}"
    return f"Dagster did not launch the run ({kind}: {launched.get('message', '')})"


def graphql_runs(body: object) -> list[str] | None:
    """The run ids a ``runsOrError`` query answered, or ``None`` if it did not."""
    data = body.get("data") if isinstance(body, dict) else None
    runs = data.get("runsOrError") if isinstance(data, dict) else None
    if not isinstance(runs, dict) or runs.get("__typename") != "Runs":
        return None
    return [str(r.get("runId")) for r in runs.get("results") or [] if isinstance(r, dict)]
