"""The trigger cannot be broken by data (issue 17, item 2).

Labels of 70,000 characters once pushed the payload's environment variable past the
kernel's limit on one string (E2BIG, ``Argument list too long``): the build published,
then failed, and every later build failed in the pending-trigger step. The payload now
reaches a command as a file; every action's failure, whatever it is, is recorded on its
own; every trigger URL is checked when the settings are read; and a pending firing that
cannot be recovered never stops the next build.
"""

from __future__ import annotations

import errno
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modzy_retrain import BuildSettings, ConfigurationError, build, load_manifest
from modzy_retrain._cli.main import main
from modzy_retrain._cli.settings import TriggerSettings, load_settings
from modzy_retrain._triggers import command as command_module
from modzy_retrain._triggers import fire as fire_module
from modzy_retrain._triggers.fire import TriggerActions, fire
from modzy_retrain._triggers.presets import CommandAction, WebhookAction
from modzy_retrain.sandbox import Sandbox, SandboxServer

LONG = 70_000


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, SandboxServer]]:
    sb = Sandbox(seed=3, jobs=30, data_url=str(tmp_path_factory.mktemp("inputs")))
    sb.write_inputs()
    with sb.serve() as server:
        yield sb, server


def _usable(sb: Sandbox, n: int) -> list[tuple[str, str]]:
    """``n`` successful inputs whose raw file is there and whose content is unique."""
    unusable = {ref for pair in sb.duplicate_inputs for ref in pair} | set(sb.missing_inputs)
    found = [
        (j.id, i.name)
        for j in sb.jobs
        if j.status == "COMPLETED"
        for i in j.inputs
        if i.status == "SUCCESSFUL" and (j.id, i.name) not in unusable
    ]
    return found[:n]


def _long_labels(sb: Sandbox, folder: Path) -> tuple[Path, list[str]]:
    """A label file giving two inputs labels of 70,000 characters each."""
    labels = ["a" * LONG, "b" * (LONG - 1) + "\u00e9"]
    rows = [
        {"job_id": job, "input_name": name, "label": label}
        for (job, name), label in zip(_usable(sb, 2), labels, strict=True)
    ]
    path = folder / "labels.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path, labels


def _args(world: tuple[Sandbox, SandboxServer], out: Path, *extra: str) -> list[str]:
    sb, server = world
    templates = [a for m, t in sb.input_templates.items() for a in ("--input-template", f"{m}={t}")]
    base = ["build", "--base-url", server.base_url, "--out", str(out), *templates]
    return [*base, "--quiet", *extra]


def test_labels_of_70000_characters_reach_the_command_as_a_file(
    world: tuple[Sandbox, SandboxServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sb = world[0]
    monkeypatch.setenv("MODZY_API_KEY", sb.api_key)
    label_file, labels = _long_labels(sb, tmp_path)
    out, copy, seen = tmp_path / "ds", tmp_path / "payload.json", tmp_path / "seen.txt"
    # A real shell, a real subprocess: the file is there while the command runs.
    command = (
        f'cp "$MODZY_RETRAIN_PAYLOAD_FILE" {copy} && '
        f'echo "$MODZY_RETRAIN_VERSION $MODZY_RETRAIN_ADDED ${{MODZY_API_KEY:-nokey}}" > {seen}'
    )
    flags = ("--label-file", str(label_file), "--allow-new-classes", "--on-ready", command)
    assert main(_args(world, out, *flags)) == 0, capsys.readouterr()
    payload = json.loads(copy.read_text(encoding="utf-8"))
    assert payload["version"] == "v0001"
    assert set(labels) <= set(payload["new_by_label"])
    version, added, key = seen.read_text().split()
    assert (version, int(added), key) == ("v0001", payload["added"], "nokey")
    # The next build is not blocked by anything the first one left.
    assert main(_args(world, out, *flags)) == 3
    assert (out / "_triggers" / "v0001.json").exists()


def test_the_command_s_environment_holds_short_values_and_the_file(tmp_path: Path) -> None:
    data = {
        "dataset_url": "/data/ds",
        "version": "v0001",
        "new_by_label": {"x" * LONG: 1, "y" * LONG: 2},
        "added": 3,
    }
    env = command_module.command_env(data, str(tmp_path / "payload.json"))
    assert env["MODZY_RETRAIN_PAYLOAD_FILE"] == str(tmp_path / "payload.json")
    assert env["MODZY_RETRAIN_VERSION"] == "v0001"
    assert env["MODZY_RETRAIN_ADDED"] == "3"
    mine = {k: v for k, v in env.items() if k.startswith("MODZY_RETRAIN_")}
    assert "MODZY_RETRAIN_PAYLOAD" not in mine
    assert "MODZY_RETRAIN_NEW_BY_LABEL" not in mine
    assert all(len(v) < 4096 for v in mine.values())


def _published(sb: Sandbox, folder: Path) -> str:
    """A dataset whose v0001 is ready and has never fired."""
    out = folder / "ds"
    settings = BuildSettings(base_url=sb.base_url, input_templates=sb.input_templates, out=str(out))
    result = build(settings, environ={"MODZY_API_KEY": sb.api_key}, transport=sb.transport())
    assert result.exit_code == 0
    return str(out)


def test_every_action_s_failure_is_recorded_and_the_others_fire(
    world: tuple[Sandbox, SandboxServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = _published(world[0], tmp_path)
    real_popen = subprocess.Popen

    def popen(command: str, **kw: Any) -> Any:
        if "boom" in command:
            raise OSError(errno.E2BIG, "Argument list too long", "/bin/sh")
        return real_popen(command, **kw)

    def deliver(*a: Any, **kw: Any) -> str:
        raise RuntimeError("a bug in a preset")

    monkeypatch.setattr(command_module.subprocess, "Popen", popen)
    monkeypatch.setattr(fire_module, "deliver", deliver)
    done = tmp_path / "done"
    actions = TriggerActions(
        actions=(
            CommandAction(command="echo boom", name="boom"),
            WebhookAction(url="https://hooks.example.com/x?token=in-the-query", name="hook"),
            CommandAction(command=f"touch {done}", name="ok"),
        )
    ).prepare({})
    firing = fire(url, load_manifest(url), actions, sleep=[].append)
    assert not firing.ok
    by_id = {o.action_id: o for o in firing.outcomes}
    assert not by_id["boom"].ok
    assert "Argument list too long" in by_id["boom"].detail
    assert not by_id["hook"].ok
    assert "RuntimeError" in by_id["hook"].detail
    assert "in-the-query" not in by_id["hook"].detail
    assert by_id["ok"].ok
    assert done.exists()
    records = Path(url) / "_triggers" / "v0001"
    assert json.loads((records / "boom.json").read_text())["ok"] is False
    assert json.loads((records / "hook.json").read_text())["ok"] is False
    assert json.loads((records / "ok.json").read_text())["ok"] is True
    assert not (Path(url) / "_triggers" / "v0001.json").exists()


@pytest.mark.parametrize(
    "url",
    [
        "http://a..b/hook",  # an empty label: httpx raised UnicodeError when sending
        "http://" + "a" * 300 + ".example.com/hook",  # a label over 63 characters
        "https://exa mple.com/hook",
        "https://hooks.example.com:99999/hook",
        "https://hooks.example.com:0/hook",
        "https://%zz/hook",
        "https://-hooks.example.com/hook",
    ],
)
def test_trigger_urls_are_checked_when_the_settings_are_read(
    url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ConfigurationError, match="webhook"):
        load_settings(None, {"out": str(tmp_path), "trigger": {"webhook": url}})
    table = {"preset": "webhook", "url": url}
    with pytest.raises(ConfigurationError, match="url"):
        load_settings(None, {"out": str(tmp_path), "trigger": {"actions": [table]}})
    github = {
        "preset": "github",
        "repository": "acme/vision",
        "workflow": "r.yml",
        "ref": "main",
        "base_url": url,
    }
    with pytest.raises(ConfigurationError, match="base_url"):
        load_settings(None, {"out": str(tmp_path), "trigger": {"actions": [github]}})
    # A URL from the environment is checked when the build starts, before any request.
    from modzy_retrain._triggers.credentials import resolve
    from modzy_retrain._triggers.presets import AirflowAction

    with pytest.raises(ConfigurationError, match="AIRFLOW_URL"):
        resolve(AirflowAction(dag_id="retrain"), {"AIRFLOW_URL": url, "AIRFLOW_TOKEN": "t"})
    flags = ["build", "--out", str(tmp_path / "ds"), "--input-template", "/x/{input_name}"]
    assert main([*flags, "--webhook", url]) == 2
    assert "webhook" in capsys.readouterr().err


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/hook",
        "http://127.0.0.1:8080/x?token=1",
        "http://[::1]:9000/x",
        "https://ex\u00e4mple.com/h",
        "http://airflow:8080",
        "http://my_host.internal/x",
        "https://hooks.example.com./x",
    ],
)
def test_good_trigger_urls_are_kept(url: str, tmp_path: Path) -> None:
    settings = load_settings(None, {"out": str(tmp_path), "trigger": {"webhook": url}})
    assert settings.trigger.webhook == url


def test_a_pending_firing_that_cannot_be_recovered_never_blocks_the_next_build(
    world: tuple[Sandbox, SandboxServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sb = world[0]
    monkeypatch.setenv("MODZY_API_KEY", sb.api_key)
    out, report = tmp_path / "ds", tmp_path / "report.json"
    times = sorted(job.created_at for job in sb.jobs)
    window = ("--start", times[0].isoformat(), "--end", times[len(times) // 2].isoformat())
    # v0001 from the first half of the history, ready, fired by nothing.
    assert main(_args(world, out, *window)) == 0
    # Its firing record unreadable: a folder where the file should be.
    (out / "_triggers" / "v0001.json").mkdir(parents=True)
    capsys.readouterr()
    # The whole history this time: v0002 is published, the pending firing reported.
    assert main(_args(world, out, "--on-ready", "true", "--report", str(report))) == 5
    text = capsys.readouterr().out
    assert "version v0002" in text
    assert "pending trigger for v0001" in text
    body = json.loads(report.read_text())
    assert body["pending_trigger"]["ok"] is False
    assert "IsADirectoryError" in json.dumps(body["pending_trigger"])
    assert body["trigger"]["version"] == "v0002"
    assert body["trigger"]["ok"] is True
    assert load_manifest(str(out)).version == "v0002"


def test_settings_with_a_trigger_table_still_validate() -> None:
    # TriggerSettings is public through BuildSettings: a bad URL from Python too.
    with pytest.raises(ValueError, match="webhook"):
        TriggerSettings(webhook="http://a..b/")
