"""The presets against loopback servers that check the documented request and answer as
GitHub, GitLab and Airflow 2 and 3 do; errors, retries, timeouts; each action recorded
on its own, so a rerun fires only what failed. No test sleeps between attempts: the
sleep is a list."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modzy_retrain import BuildSettings, build, load_manifest
from modzy_retrain._cli.main import main
from modzy_retrain._cli.settings import TriggerSettings
from modzy_retrain._triggers.fire import Firing, TriggerActions, fire
from modzy_retrain._triggers.payload import idempotency_key
from modzy_retrain._triggers.presets import (
    AirflowAction,
    GitHubAction,
    GitLabAction,
    WebhookAction,
)
from modzy_retrain.sandbox import Sandbox

from .services import FakeAirflow, FakeGitHub, FakeGitLab, FakeWebhook

GH_TOKEN = "ghp_canary0github0token0000000000000000"
GL_TOKEN = "glptt-canary0gitlab0trigger0token00"
AF_PASSWORD = "canary-airflow-password-77"
HOOK_SECRET = "canary-webhook-signing-key-51"
HOOK_AUTH = "Bearer canary-webhook-header-token-93"
CANARIES = (GH_TOKEN, GL_TOKEN, AF_PASSWORD, HOOK_SECRET, HOOK_AUTH)
INPUTS = {
    "dataset_url",
    "version",
    "added",
    "relabelled",
    "new_samples",
    "new_by_label",
    "idempotency_key",
}


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    sb = Sandbox(seed=4, jobs=40, data_url=str(tmp_path_factory.mktemp("inputs")))
    sb.write_inputs()
    return sb


def _settings(sb: Sandbox, out: Path, *actions: Any) -> BuildSettings:
    return BuildSettings(
        base_url=sb.base_url,
        input_templates=sb.input_templates,
        out=str(out),
        select=["down-voted", "up-voted"],
        trigger=TriggerSettings(actions=list(actions)),
    )


@pytest.fixture(scope="module")
def published(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A dataset whose v0001 is ready and never fired (no action was configured)."""
    out = tmp_path_factory.mktemp("published") / "ds"
    result = build(
        _settings(sandbox, out),
        environ={"MODZY_API_KEY": sandbox.api_key},
        transport=sandbox.transport(),
    )
    assert result.exit_code == 0
    return out


@pytest.fixture
def dataset(published: Path, tmp_path: Path) -> str:
    shutil.copytree(published, tmp_path / "ds")
    return str(tmp_path / "ds")


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    fake = FakeGitHub(
        token=GH_TOKEN, prefix="/api/v3", workflows={"acme/vision/retrain.yml": INPUTS}
    )
    with fake.running():
        yield fake


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    fake = FakeGitLab(token=GL_TOKEN, prefix="/gitlab", project="ml%2Fvision")
    with fake.running():
        yield fake


def _fire(
    url: str, *actions: Any, environ: dict[str, str], sleeps: list[float] | None = None
) -> Firing:
    """Fire v0001 as if it had never fired (its records cleared: a lost record is what
    makes a service see a repeat delivery)."""
    shutil.rmtree(Path(url) / "_triggers", ignore_errors=True)
    prepared = TriggerActions(actions=actions).prepare(environ)
    waits = sleeps if sleeps is not None else []
    return fire(url, load_manifest(url), prepared, sleep=waits.append)


def _outputs(root: Path, *texts: str) -> str:
    found = [
        p.read_text(errors="replace")
        for p in root.rglob("*")
        if p.is_file() and p.suffix in (".json", ".jsonl")
    ]
    return "\n".join([*found, *texts])


def test_a_build_dispatches_a_github_workflow_once_per_version(
    sandbox: Sandbox, github: FakeGitHub, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    out = tmp_path / "ds"
    env = {
        "MODZY_API_KEY": sandbox.api_key,
        "GITHUB_TOKEN": GH_TOKEN,
        "GITHUB_API_URL": f"{github.url}/api/v3",
    }
    action = GitHubAction(repository="acme/vision", workflow="retrain.yml", ref="main")
    settings = _settings(sandbox, out, action)
    caplog.set_level(logging.DEBUG, logger="modzy_retrain")
    first = build(settings, environ=env, transport=sandbox.transport())
    second = build(settings, environ=env, transport=sandbox.transport())
    assert (first.exit_code, second.exit_code) == (0, 3)
    assert github.problems == []
    assert len(github.dispatches) == 1
    manifest = load_manifest(str(out))
    assert manifest.trigger is not None
    assert manifest.changes is not None
    inputs = github.dispatches[0]["inputs"]
    assert github.dispatches[0]["ref"] == "main"
    assert inputs == {
        "dataset_url": str(out),
        "version": "v0001",
        "added": str(manifest.changes.added),
        "relabelled": "0",
        "new_samples": str(manifest.trigger.new),
        "new_by_label": json.dumps(
            manifest.trigger.new_by_label, sort_keys=True, separators=(",", ":")
        ),
        "idempotency_key": idempotency_key(str(out), "v0001"),
    }
    assert first.firing is not None
    assert [o.detail for o in first.firing.outcomes] == ["204"]
    assert GH_TOKEN not in _outputs(out, caplog.text, repr(first), repr(settings))


def test_the_trigger_flag_and_its_environment(
    sandbox: Sandbox,
    github: FakeGitHub,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with sandbox.serve() as server:
        base = ["build", "--base-url", server.base_url, "--quiet", "--select", "down-voted"]
        base += [
            a for m, t in sandbox.input_templates.items() for a in ("--input-template", f"{m}={t}")
        ]
        monkeypatch.setenv("MODZY_API_KEY", sandbox.api_key)
        monkeypatch.setenv("GITHUB_API_URL", f"{github.url}/api/v3")
        flag = ["--trigger", "github:acme/vision/retrain.yml@main"]
        # No token: invalid settings, before any request or write.
        monkeypatch.delenv("GITHUB_TOKEN", raising=False)
        assert main([*base, "--out", str(tmp_path / "a"), *flag]) == 2
        assert "set GITHUB_TOKEN" in capsys.readouterr().err
        assert not (tmp_path / "a").exists()
        assert (
            main([*base, "--out", str(tmp_path / "a"), "--trigger", "github:acme/vision@main"]) == 2
        )
        assert "github:OWNER/REPO/WORKFLOW_FILE@REF" in capsys.readouterr().err
        assert github.requests == []
        monkeypatch.setenv("GITHUB_TOKEN", GH_TOKEN)
        report = tmp_path / "report.json"
        assert main([*base, "--out", str(tmp_path / "a"), *flag, "--report", str(report)]) == 0
        out = capsys.readouterr().out
    assert "trigger for v0001: fired, ok (github:acme/vision/retrain.yml@main: 204)" in out
    assert json.loads(report.read_text())["trigger"]["actions"][0]["detail"] == "204"
    assert len(github.dispatches) == 1
    assert GH_TOKEN not in out + report.read_text()


def test_github_refusals_say_what_to_fix(dataset: str, github: FakeGitHub) -> None:
    env = {"GITHUB_TOKEN": GH_TOKEN, "GITHUB_API_URL": f"{github.url}/api/v3"}
    cases = [
        ({"workflow": "nope.yml"}, env, "no workflow nope.yml in acme/vision"),
        ({"ref": "release"}, env, "that ref release exists"),
        ({"inputs": {"team": "vision"}}, env, "declares the inputs dataset_url, version"),
        (
            {},
            {**env, "GITHUB_TOKEN": "ghp_expired"},
            "GitHub refused the token: check GITHUB_TOKEN",
        ),
    ]
    for change, environ, expected in cases:
        action = GitHubAction(
            **{"repository": "acme/vision", "workflow": "retrain.yml", "ref": "main", **change}
        )
        firing = _fire(dataset, action, environ=environ)
        assert not firing.ok
        (outcome,) = firing.outcomes
        assert expected in outcome.detail, outcome.detail
        assert "refused (4" in outcome.detail
    assert len(github.requests) == 4  # a 4xx is never retried
    assert (
        "Unexpected inputs provided"
        in _fire(
            dataset,
            GitHubAction(
                repository="acme/vision", workflow="retrain.yml", ref="main", inputs={"x": "1"}
            ),
            environ=env,
        )
        .outcomes[0]
        .detail
    )


def test_a_gitlab_pipeline_on_a_self_hosted_server(dataset: str, gitlab: FakeGitLab) -> None:
    env = {"GITLAB_TRIGGER_TOKEN": GL_TOKEN, "CI_SERVER_URL": f"{gitlab.url}/gitlab"}
    action = GitLabAction(
        project="ml/vision",
        ref="main",
        variables={"EPOCHS": "3", "NOTE": "{version}: {added} added"},
    )
    firing = _fire(dataset, action, environ=env)
    assert firing.ok, firing.outcomes
    assert gitlab.problems == []
    assert firing.outcomes[0].detail == "201, pipeline 1001"
    manifest = load_manifest(dataset)
    assert manifest.changes is not None
    (variables,) = gitlab.variables
    assert variables["MODZY_RETRAIN_VERSION"] == "v0001"
    assert variables["MODZY_RETRAIN_DATASET_URL"] == dataset
    assert variables["MODZY_RETRAIN_ADDED"] == str(manifest.changes.added)
    assert variables["MODZY_RETRAIN_RELABELLED"] == "0"
    assert json.loads(variables["MODZY_RETRAIN_NEW_BY_LABEL"]) == manifest.trigger.new_by_label  # type: ignore[union-attr]
    assert variables["MODZY_RETRAIN_IDEMPOTENCY_KEY"] == idempotency_key(dataset, "v0001")
    assert variables["NOTE"] == f"v0001: {manifest.changes.added} added"
    assert variables["EPOCHS"] == "3"
    # A wrong token and an unknown ref: GitLab's 404 and 400, and what to check.
    wrong = _fire(
        dataset,
        GitLabAction(project="ml/vision", ref="main", name="wrong-token"),
        environ={**env, "GITLAB_TRIGGER_TOKEN": "glptt-nope"},
    )
    assert "check project (ml/vision) and GITLAB_TRIGGER_TOKEN" in wrong.outcomes[0].detail
    ref = _fire(dataset, GitLabAction(project="ml/vision", ref="nope", name="bad-ref"), environ=env)
    assert "Reference not found" in ref.outcomes[0].detail
    assert "check that ref nope exists" in ref.outcomes[0].detail
    assert GL_TOKEN not in _outputs(Path(dataset), repr(firing), repr(wrong), repr(ref))


def test_airflow_2_basic_auth_and_a_repeat_is_the_same_run(dataset: str) -> None:
    env = {"AIRFLOW_USERNAME": "admin", "AIRFLOW_PASSWORD": AF_PASSWORD}
    with FakeAirflow(major=2, password=AF_PASSWORD).running() as airflow:
        env["AIRFLOW_URL"] = airflow.url
        action = AirflowAction(dag_id="retrain", api="v1", conf={"epochs": 3, "label": "{version}"})
        first = _fire(dataset, action, environ=env)
        # A delivery whose answer was lost is made again: Airflow refuses the run id (409).
        again = _fire(dataset, action.model_copy(update={"name": "again"}), environ=env)
        missing = _fire(dataset, AirflowAction(dag_id="nope", api="v1"), environ=env)
    assert airflow.problems == []
    run_id = f"modzy-retrain-{idempotency_key(dataset, 'v0001')}"
    assert first.outcomes[0].detail == f"200, run {run_id}"
    assert again.ok
    assert again.outcomes[0].detail == f"409, run {run_id} existed"
    assert list(airflow.runs) == [run_id]
    conf = airflow.runs[run_id]["conf"]
    assert (conf["version"], conf["epochs"], conf["label"]) == ("v0001", 3, "v0001")
    assert isinstance(conf["new_by_label"], dict)
    assert "no DAG nope there" in missing.outcomes[0].detail
    assert "v1 for Airflow 2, v2 for Airflow 3" in missing.outcomes[0].detail


def test_airflow_3_takes_a_token_from_auth_token(dataset: str) -> None:
    with FakeAirflow(major=3, password=AF_PASSWORD).running() as airflow:
        env = {
            "AIRFLOW_URL": airflow.url,
            "AIRFLOW_USERNAME": "admin",
            "AIRFLOW_PASSWORD": AF_PASSWORD,
        }
        firing = _fire(dataset, AirflowAction(dag_id="retrain"), environ=env)
        # Airflow 2's body sent to Airflow 3 (no logical_date): its 422, named.
        wrong = _fire(
            dataset,
            AirflowAction(dag_id="retrain", name="v1-path"),
            environ={**env, "AIRFLOW_API_VERSION": "v1"},
        )
        bad = _fire(
            dataset,
            AirflowAction(dag_id="retrain", name="bad"),
            environ={**env, "AIRFLOW_PASSWORD": "nope"},
        )
    assert firing.ok, firing.outcomes
    assert airflow.problems == ["path /api/v1/dags/retrain/dagRuns"]
    assert [s.path for s in airflow.requests[:2]] == ["/auth/token", "/api/v2/dags/retrain/dagRuns"]
    body = airflow.requests[1].json()
    assert body["logical_date"] is None
    assert body["conf"]["idempotency_key"] == idempotency_key(dataset, "v0001")
    assert "v1 for Airflow 2, v2 for Airflow 3" in wrong.outcomes[0].detail
    assert "Airflow refused the credentials" in bad.outcomes[0].detail
    texts = repr(firing) + repr(wrong) + repr(bad)
    assert AF_PASSWORD not in _outputs(Path(dataset), texts)
    assert airflow.issued not in _outputs(Path(dataset), texts)


def test_a_signed_webhook_with_headers_and_a_body_template(dataset: str) -> None:
    env = {"HOOK_AUTH": HOOK_AUTH, "HOOK_SECRET": HOOK_SECRET}
    with FakeWebhook(key=HOOK_SECRET).running() as hook:
        action = WebhookAction(
            url=f"{hook.url}/hooks/retrain?team=vision",
            headers={"X-Team": "vision"},
            headers_from_env={"Authorization": "HOOK_AUTH"},
            body={
                "text": "{version}: {added} added, {relabelled} relabelled",
                "counts": "{new_by_label}",
                "n": "{new_samples}",
            },
            secret_env="HOOK_SECRET",
        )
        firing = _fire(dataset, action, environ=env)
    assert firing.ok, firing.outcomes
    assert hook.problems == []
    (seen,) = hook.requests
    manifest = load_manifest(dataset)
    assert manifest.trigger is not None
    assert seen.path == "/hooks/retrain?team=vision"
    assert seen.headers["authorization"] == HOOK_AUTH
    assert seen.headers["x-team"] == "vision"
    assert seen.headers["idempotency-key"] == idempotency_key(dataset, "v0001")
    assert seen.headers["content-type"] == "application/json"
    signature = hmac.new(HOOK_SECRET.encode(), seen.body, hashlib.sha256).hexdigest()
    assert seen.headers["x-signature-256"] == f"sha256={signature}"
    body = seen.json()
    assert body["counts"] == manifest.trigger.new_by_label
    assert body["n"] == manifest.trigger.new
    assert body["text"].startswith("v0001: ")
    assert firing.outcomes[0].action == f"webhook:{hook.url}/hooks/retrain"
    assert not any(c in _outputs(Path(dataset), repr(firing), repr(action)) for c in CANARIES)


def test_5xx_and_429_are_retried_with_the_waits_asked(dataset: str, github: FakeGitHub) -> None:
    env = {"GITHUB_TOKEN": GH_TOKEN, "GITHUB_API_URL": f"{github.url}/api/v3"}
    action = GitHubAction(repository="acme/vision", workflow="retrain.yml", ref="main")
    github.fail_next = [503, 502]
    sleeps: list[float] = []
    firing = _fire(dataset, action, environ=env, sleeps=sleeps)
    assert firing.ok
    assert len(github.requests) == 3
    assert len(sleeps) == 2
    # Doubling, with jitter.
    assert 1.0 <= sleeps[0] <= 1.5
    assert 2.0 <= sleeps[1] <= 2.5


def test_retries_end_and_the_failure_is_recorded(dataset: str, github: FakeGitHub) -> None:
    env = {"GITHUB_TOKEN": GH_TOKEN, "GITHUB_API_URL": f"{github.url}/api/v3"}
    github.fail_next = [429, 500, 500, 500]
    github.retry_after = "7"
    sleeps: list[float] = []
    action = GitHubAction(
        repository="acme/vision", workflow="retrain.yml", ref="main", max_attempts=3
    )
    firing = _fire(dataset, action, environ=env, sleeps=sleeps)
    assert not firing.ok
    assert sleeps == [7.0, 7.0]  # Retry-After, as the service asked
    assert (
        "the service failed (500: Server Error) (after 3 attempt(s))" in firing.outcomes[0].detail
    )
    record = json.loads(
        (Path(dataset) / "_triggers" / "v0001" / f"{action.action_id}.json").read_text()
    )
    assert (record["ok"], record["action"]) == (False, "github:acme/vision/retrain.yml@main")
    assert not (Path(dataset) / "_triggers" / "v0001.json").exists()


def test_a_timeout_is_retried_then_reported(dataset: str, github: FakeGitHub) -> None:
    env = {"GITHUB_TOKEN": GH_TOKEN, "GITHUB_API_URL": f"{github.url}/api/v3"}
    github.fail_next = ["timeout", "timeout"]
    sleeps: list[float] = []
    action = GitHubAction(
        repository="acme/vision", workflow="retrain.yml", ref="main", timeout=0.3, max_attempts=2
    )
    firing = _fire(dataset, action, environ=env, sleeps=sleeps)
    assert not firing.ok
    assert "no answer within 0.3 s (after 2 attempt(s))" in firing.outcomes[0].detail
    assert len(sleeps) == 1


def test_a_rerun_fires_only_the_actions_that_failed(
    sandbox: Sandbox, github: FakeGitHub, gitlab: FakeGitLab, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    env = {
        "MODZY_API_KEY": sandbox.api_key,
        "GITHUB_TOKEN": GH_TOKEN,
        "GITHUB_API_URL": f"{github.url}/api/v3",
        "GITLAB_TRIGGER_TOKEN": GL_TOKEN,
        "CI_SERVER_URL": f"{gitlab.url}/gitlab",
    }
    gh = GitHubAction(repository="acme/vision", workflow="retrain.yml", ref="main")
    gl = GitLabAction(project="ml/vision", ref="main", max_attempts=2)
    settings = _settings(sandbox, out, gh, gl)
    gitlab.fail_next = [503, 503]
    sleeps: list[float] = []
    first = build(settings, environ=env, transport=sandbox.transport(), trigger_sleep=sleeps.append)
    assert first.exit_code == 5  # published, the trigger failed: it fires again next run
    assert (len(github.dispatches), len(gitlab.requests), len(sleeps)) == (1, 2, 1)
    second = build(
        settings, environ=env, transport=sandbox.transport(), trigger_sleep=sleeps.append
    )
    assert second.exit_code == 3  # nothing new; the pending GitLab action fired
    assert second.recovered is not None
    assert [(o.action_id, o.already) for o in second.recovered.outcomes] == [
        (gh.action_id, True),
        (gl.action_id, False),
    ]
    assert (len(github.dispatches), gitlab.pipelines) == (1, 1)
    third = build(settings, environ=env, transport=sandbox.transport(), trigger_sleep=sleeps.append)
    assert third.exit_code == 3
    assert third.recovered is not None
    assert third.recovered.already
    assert (len(github.requests), len(gitlab.requests)) == (1, 3)
    done = json.loads((out / "_triggers" / "v0001.json").read_text())
    assert set(done["actions"]) == {gh.action_id, gl.action_id}


def test_a_dataset_fired_before_per_action_records_stays_fired(
    dataset: str, github: FakeGitHub
) -> None:
    # The single marker older builds wrote: the version fired, nothing fires again.
    marker = Path(dataset) / "_triggers" / "v0001.json"
    marker.parent.mkdir()
    marker.write_text(json.dumps({"fired_at": "2026-01-01T00:00:00+00:00", "command_exit_code": 0}))
    env = {"GITHUB_TOKEN": GH_TOKEN, "GITHUB_API_URL": f"{github.url}/api/v3"}
    action = GitHubAction(repository="acme/vision", workflow="retrain.yml", ref="main")
    prepared = TriggerActions(actions=(action,)).prepare(env)
    firing = fire(dataset, load_manifest(dataset), prepared, sleep=[].append)
    assert (firing.already, firing.fired, github.requests) == (True, False, [])


def test_inspect_shows_each_action(
    dataset: str, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"GITHUB_TOKEN": GH_TOKEN, "GITHUB_API_URL": f"{github.url}/api/v3"}
    good = GitHubAction(repository="acme/vision", workflow="retrain.yml", ref="main")
    bad = GitHubAction(repository="acme/vision", workflow="gone.yml", ref="main")
    assert not _fire(dataset, good, bad, environ=env).ok
    assert main(["inspect", dataset]) == 0
    out = capsys.readouterr().out
    assert "1 of 2 action(s) fired, the rest fire next run" in out
    assert "github:acme/vision/retrain.yml@main: ok at" in out
    assert "github:acme/vision/gone.yml@main: FAILED at" in out
