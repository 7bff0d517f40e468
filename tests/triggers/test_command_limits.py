"""A trigger's shell command runs with a time limit (issue 16, item 2).

Before, ``subprocess.run`` waited for the command however long it ran: a training
command that hung kept the build running for good, and its processes outlived a stopped
build. Now past its ``timeout`` the command and every process it started are stopped
(SIGTERM to its process group, SIGKILL after a grace period), the action is recorded as
failed, and the next run fires it again (at least once).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from modzy_retrain import BuildSettings, build, load_manifest
from modzy_retrain._cli.settings import load_settings
from modzy_retrain._triggers import command as command_module
from modzy_retrain._triggers.fire import TriggerActions, fire
from modzy_retrain._triggers.presets import CommandAction
from modzy_retrain.sandbox import Sandbox


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    sb = Sandbox(seed=3, jobs=20, data_url=str(tmp_path_factory.mktemp("inputs")))
    sb.write_inputs()
    return sb


def _published(sb: Sandbox, folder: Path) -> str:
    """A dataset whose v0001 is ready and has never fired."""
    out = folder / "ds"
    settings = BuildSettings(base_url=sb.base_url, input_templates=sb.input_templates, out=str(out))
    result = build(settings, environ={"MODZY_API_KEY": sb.api_key}, transport=sb.transport())
    assert result.exit_code == 0
    return str(out)


def _gone(pid: int) -> bool:
    """Whether the process ended (a zombie waiting for its parent counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("ignores_sigterm", [False, True], ids=["stops", "ignores-SIGTERM"])
def test_a_command_past_its_time_is_stopped_with_what_it_started(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ignores_sigterm: bool
) -> None:
    # A short grace: the process that ignores SIGTERM is SIGKILLed after it.
    monkeypatch.setattr(command_module, "GRACE_SECONDS", 0.2)
    url = _published(sandbox, tmp_path)
    pid_file = tmp_path / "child.pid"
    trap = "trap '' TERM; " if ignores_sigterm else ""
    # The shell starts a child that never ends by itself and waits for it: without
    # the limit, fire() would never return.
    command = f"{trap}sleep 100000 & echo $! > {pid_file}; wait"
    actions = TriggerActions(actions=(CommandAction(command=command, timeout=0.5),)).prepare({})
    firing = fire(url, load_manifest(url), actions, sleep=[].append)
    assert not firing.ok
    (outcome,) = firing.outcomes
    assert not outcome.ok
    assert outcome.detail.startswith("timed out after 0.5 s")
    assert _gone(int(pid_file.read_text()))
    # Not recorded as done: the next run fires it again.
    assert not (Path(url) / "_triggers" / "v0001.json").exists()
    done = tmp_path / "done"
    again = TriggerActions(actions=(CommandAction(command=f"touch {done}", timeout=5),))
    # Another action, so as to show the firing is still pending and runs what is due.
    second = fire(url, load_manifest(url), again.prepare({}), sleep=[].append)
    assert second.ok
    assert done.exists()


def test_a_command_within_its_time_is_unchanged(sandbox: Sandbox, tmp_path: Path) -> None:
    url = _published(sandbox, tmp_path)
    out = tmp_path / "payload-copy.json"
    command = f'cp "$MODZY_RETRAIN_PAYLOAD_FILE" {out}; exit 0'
    actions = TriggerActions(actions=(CommandAction(command=command, timeout=30),)).prepare({})
    firing = fire(url, load_manifest(url), actions, sleep=[].append)
    assert firing.ok, firing.outcomes
    assert '"version": "v0001"' in out.read_text()
    # Recorded as succeeded: never run again for this version.
    again = fire(url, load_manifest(url), actions, sleep=[].append)
    assert again.already
    assert not again.outcomes


def test_a_command_s_time_limit_is_hours_by_default_and_can_be_set(tmp_path: Path) -> None:
    # The legacy on_ready command and a command action: 6 hours unless set.
    assert CommandAction(command="train").timeout == 6 * 3600
    (legacy,) = TriggerActions(command="train").configured()
    assert legacy.timeout == 6 * 3600
    config = tmp_path / "retrain.toml"
    config.write_text(
        'out = "ds"\n'
        "[[trigger.actions]]\n"
        'preset = "command"\n'
        'command = "python train.py"\n'
        "timeout = 172800\n"
    )
    settings = load_settings(str(config), {})
    (action,) = settings.trigger.actions
    assert isinstance(action, CommandAction)
    assert action.timeout == 172800
    # Beyond a week is refused when the settings are read.
    config.write_text(config.read_text().replace("172800", "1000000"))
    with pytest.raises(Exception, match="timeout"):
        load_settings(str(config), {})
    assert os.environ.get("MODZY_RETRAIN_PAYLOAD_FILE") is None
