"""The trigger's settings, templates, credentials and request shapes, without a server."""

from __future__ import annotations

import hashlib
import hmac
import pickle
from pathlib import Path
from typing import Any

import pytest

from modzy_retrain import ConfigurationError
from modzy_retrain._cli.settings import load_settings
from modzy_retrain._triggers import shapes
from modzy_retrain._triggers.credentials import Secret, resolve
from modzy_retrain._triggers.fire import TriggerActions
from modzy_retrain._triggers.payload import FIELDS, idempotency_key, render
from modzy_retrain._triggers.presets import (
    AirflowAction,
    GitHubAction,
    GitLabAction,
    WebhookAction,
    parse_trigger_flag,
)
from modzy_retrain._triggers.send import retryable_status

DATA: dict[str, Any] = {
    "dataset_url": "s3://training/sentiment",
    "version": "v0003",
    "manifest": "v0003/manifest.json",
    "run_id": "20260101T000000Z-abc",
    "samples": 120,
    "added": 12,
    "relabelled": 3,
    "new_samples": 14,
    "new_by_label": {"positive": 9, "negative": 5},
    "since_last": 14,
    "idempotency_key": "v0003-0123456789ab",
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "github:acme/vision/retrain.yml@main",
            {"repository": "acme/vision", "workflow": "retrain.yml", "ref": "main"},
        ),
        (
            "github:acme/vision/retrain.yml@feature/new-head",
            {"repository": "acme/vision", "workflow": "retrain.yml", "ref": "feature/new-head"},
        ),
        ("gitlab:1234@main", {"project": "1234", "ref": "main"}),
        ("gitlab:ml/vision@v2", {"project": "ml/vision", "ref": "v2"}),
        ("airflow:retrain_vision", {"dag_id": "retrain_vision"}),
        ("dagster:retraining/dataset", {"asset_key": "retraining/dataset"}),
        ("webhook:https://ci.example.com/hook", {"url": "https://ci.example.com/hook"}),
    ],
)
def test_trigger_flags(spec: str, expected: dict[str, str]) -> None:
    parsed = parse_trigger_flag(spec)
    assert parsed == {"preset": spec.split(":", 1)[0], **expected}
    settings = load_settings(None, {"out": "/tmp/x", "trigger": {"actions": [parsed]}})
    assert settings.trigger.actions[0].describe().split(":", 1)[1] in spec


@pytest.mark.parametrize(
    "spec",
    ["github:acme/vision@main", "github:acme/vision/x.yml", "gitlab:1234", "jenkins:x", "airflow:"],
)
def test_malformed_trigger_flags(spec: str) -> None:
    with pytest.raises(ValueError, match="--trigger"):
        parse_trigger_flag(spec)


GH = {"preset": "github", "repository": "acme/vision", "workflow": "r.yml", "ref": "main"}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ({**GH, "tokn_env": "X"}, "did you mean 'token_env'"),
        ({"preset": "jenkins"}, "github, gitlab, airflow, dagster, webhook or command"),
        ({**GH, "repository": "vision"}, "OWNER/REPO"),
        ({**GH, "inputs": dict.fromkeys("abcd", "x")}, "GitHub takes at most 10"),
        ({**GH, "inputs": {"a": "{versoin}"}}, "unknown field {versoin}"),
        ({**GH, "token_env": "not a name"}, "not an environment variable name"),
        ({**GH, "base_url": "ftp://github.example.com"}, "http(s) URL"),
        ({"preset": "dagster"}, "give asset_key"),
        ({"preset": "dagster", "asset_key": "a", "job": "b"}, "give asset_key"),
        ({"preset": "dagster", "job": "train"}, "job needs location"),
        ({"preset": "dagster", "asset_key": "a b"}, "an asset key"),
        ({"preset": "webhook", "url": "https://h/x", "body": "{version}"}, "needs content_type"),
        ({"preset": "webhook", "url": "https://h/x", "headers": {"a b": "1"}}, "header name"),
        ({"preset": "airflow", "dag_id": "x", "api": "v3"}, "api"),
        ({"preset": "gitlab", "project": "1", "ref": "main", "variables": {"A-B": "1"}}, "A-B"),
    ],
)
def test_invalid_actions_are_refused_when_read(table: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match="trigger") as caught:
        load_settings(None, {"out": "/tmp/x", "trigger": {"actions": [table]}})
    assert message in str(caught.value)


def test_the_file_s_actions_then_the_flags_and_the_legacy_keys(tmp_path: Path) -> None:
    config = tmp_path / "retrain.toml"
    config.write_text(
        'out = "/tmp/x"\n[trigger]\non_ready = "python train.py"\n'
        'webhook = "https://ci.example.com/hook"\n'
        '[[trigger.actions]]\npreset = "gitlab"\nproject = "42"\nref = "main"\n'
    )
    flag = parse_trigger_flag("airflow:retrain")
    settings = load_settings(str(config), {"trigger": {"actions": [flag], "min_new": 5}})
    assert settings.trigger.min_new == 5
    assert [a.describe() for a in settings.trigger.actions] == ["gitlab:42@main", "airflow:retrain"]
    t = settings.trigger
    actions = TriggerActions(None, t.on_ready, t.webhook, tuple(t.actions))
    described = [a.describe() for a in actions.configured()]
    assert described == ["command", "webhook:https://ci.example.com/hook", *described[2:]]


def test_templates_keep_types_and_write_text() -> None:
    assert render("{new_by_label}", DATA) == {"positive": 9, "negative": 5}
    assert render("{added}", DATA) == 12
    assert render("{version}: {added} added", DATA) == "v0003: 12 added"
    assert render("{new_by_label}!", DATA) == '{"negative":5,"positive":9}!'
    assert render("{added:04d}", DATA) == "0012"
    assert render({"a": ["{version}", 3]}, DATA) == {"a": ["v0003", 3]}
    assert set(FIELDS) == set(DATA)


def test_the_idempotency_key_is_per_dataset_and_version() -> None:
    a = idempotency_key("s3://a/ds", "v0001")
    assert a.startswith("v0001-")
    assert a == idempotency_key("s3://a/ds", "v0001")
    assert a != idempotency_key("s3://b/ds", "v0001")


@pytest.mark.parametrize(
    ("status", "headers", "again"),
    [
        (500, {}, True),
        (503, {}, True),
        (429, {}, True),
        (403, {"X-RateLimit-Remaining": "0"}, True),
        (403, {"Retry-After": "30"}, True),
        (403, {}, False),
        (401, {}, False),
        (404, {}, False),
        (422, {}, False),
        (409, {}, False),
    ],
)
def test_what_is_retried(status: int, headers: dict[str, str], again: bool) -> None:
    assert retryable_status(status, headers) is again


def test_tokens_come_from_the_environment_or_a_file(tmp_path: Path) -> None:
    action = GitHubAction(repository="acme/vision", workflow="r.yml", ref="main")
    with pytest.raises(ConfigurationError, match="set GITHUB_TOKEN"):
        resolve(action, {})
    res = resolve(action, {"GITHUB_TOKEN": "ghp_abc"})
    assert res.base_url == "https://api.github.com"
    token = tmp_path / "token"
    token.write_text("ghp_file\n")
    from_file = resolve(action.model_copy(update={"token_file": str(token)}), {})
    assert from_file.token is not None
    assert from_file.token.reveal() == "ghp_file"
    enterprise = resolve(
        action, {"GITHUB_TOKEN": "t", "GITHUB_API_URL": "https://ghe.example.com/api/v3"}
    )
    assert enterprise.base_url == "https://ghe.example.com/api/v3"
    with pytest.raises(ConfigurationError, match="cannot read token_file"):
        resolve(action.model_copy(update={"token_file": str(tmp_path / "none")}), {})
    airflow = AirflowAction(dag_id="retrain")
    with pytest.raises(ConfigurationError, match="set AIRFLOW_URL"):
        resolve(airflow, {})
    with pytest.raises(ConfigurationError, match="AIRFLOW_USERNAME and AIRFLOW_PASSWORD"):
        resolve(airflow, {"AIRFLOW_URL": "http://airflow:8080"})
    with pytest.raises(ConfigurationError, match=r"v1 \(Airflow 2\) or v2"):
        resolve(
            airflow, {"AIRFLOW_URL": "http://a", "AIRFLOW_TOKEN": "t", "AIRFLOW_API_VERSION": "3"}
        )
    gitlab = resolve(GitLabAction(project="1", ref="main"), {"GITLAB_TRIGGER_TOKEN": "g"})
    assert gitlab.base_url == "https://gitlab.com"


def test_secrets_stay_out_of_reprs_and_pickles() -> None:
    secret = "ghp_never0shown0anywhere"
    action = GitHubAction(repository="acme/vision", workflow="r.yml", ref="main")
    actions = TriggerActions(actions=(action,)).prepare({"GITHUB_TOKEN": secret})
    res = resolve(action, {"GITHUB_TOKEN": secret})
    call = shapes.github(action, res, DATA)
    assert call.headers["Authorization"] == f"Bearer {secret}"
    for shown in (repr(actions), repr(res), repr(call), str(res.token)):
        assert secret not in shown
    with pytest.raises(TypeError):
        pickle.dumps(Secret(secret))
    hook = WebhookAction(url="https://hooks.example.com/x?token=abc")
    assert "abc" not in repr(hook) + hook.describe()
    with pytest.raises(ConfigurationError, match="GitHubAction: repository"):
        GitHubAction(repository="vision", workflow="r.yml", ref="main")


def test_two_actions_recorded_under_one_id_are_refused() -> None:
    a = GitHubAction(repository="acme/vision", workflow="r.yml", ref="main")
    with pytest.raises(ConfigurationError, match="recorded as github-"):
        TriggerActions(actions=(a, a.model_copy(update={"inputs": {"x": "1"}}))).prepare(
            {"GITHUB_TOKEN": "t"}
        )


def test_request_shapes() -> None:
    gh = GitHubAction(repository="acme/vision", workflow="train+model.yml", ref="main")
    call = shapes.github(gh, resolve(gh, {"GITHUB_TOKEN": "t"}), DATA)
    assert call.url.endswith("/repos/acme/vision/actions/workflows/train%2Bmodel.yml/dispatches")
    gl = GitLabAction(project="ml/vision", ref="main")
    res = resolve(gl, {"GITLAB_TRIGGER_TOKEN": "tok", "CI_SERVER_URL": "https://git.example.com"})
    form = shapes.gitlab(gl, res, DATA)
    assert form.url == "https://git.example.com/api/v4/projects/ml%2Fvision/trigger/pipeline"
    assert form.content.startswith(b"token=tok&ref=main&variables%5BMODZY_RETRAIN_DATASET_URL%5D=")
    assert shapes.signature("key", b"body") == (
        "sha256=" + hmac.new(b"key", b"body", hashlib.sha256).hexdigest()
    )


def test_a_service_that_cannot_be_reached_is_retried_then_named(tmp_path: Path) -> None:
    import socket

    import httpx

    from modzy_retrain import TriggerUnavailableError
    from modzy_retrain._triggers.fire import deliver

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    hook = WebhookAction(url=f"http://127.0.0.1:{port}/x?token=in-the-query", max_attempts=2)
    sleeps: list[float] = []
    with httpx.Client() as client, pytest.raises(TriggerUnavailableError) as caught:
        deliver(hook, resolve(hook, {}), DATA, client=client, sleep=sleeps.append)
    assert "could not reach the service (ConnectError) (after 2 attempt(s))" in str(caught.value)
    assert "in-the-query" not in str(caught.value)
    assert len(sleeps) == 1
