"""A trigger's shell command: the payload as a file, a time limit, its processes ended.

The command runs in a session (process group) of its own, so that when its time is up
(or the build is stopped meanwhile: SIGTERM, Ctrl-C) every process it started is
stopped too, not only the shell: SIGTERM to the group, then SIGKILL after a grace
period. A command past its time limit is that action's failure, recorded like a
non-zero exit, and fires again next run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from modzy_retrain._core.constants import API_KEY_ENV

from . import shapes
from .payload import as_text

# Where a shell command finds the whole payload (a JSON file, there while it runs).
PAYLOAD_FILE_ENV = "MODZY_RETRAIN_PAYLOAD_FILE"
# How long a stopped command's processes get between SIGTERM and SIGKILL.
GRACE_SECONDS = 10.0


def command_env(data: Mapping[str, Any], payload_file: str) -> dict[str, str]:
    """The command's environment: the process's (``os.environ``) without the Modzy key,
    the scalar fields as ``MODZY_RETRAIN_<FIELD>``, and the payload file's path.

    ``new_by_label`` (an object as long as the labels) is only in the file: a variable
    over the kernel's 128 KiB per string made the command fail to start (E2BIG).
    """
    env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
    for name, variable in shapes.VARIABLES.items():
        value = data.get(name)
        if name in data and not isinstance(value, (dict, list)):
            env[variable] = as_text(value)
    env[PAYLOAD_FILE_ENV] = payload_file
    return env


def run_command(command: str, data: Mapping[str, Any], *, timeout: float) -> tuple[bool, str]:
    """Run a shell command with the payload in a private file (removed after it ends),
    for at most ``timeout`` seconds.

    An ``OSError`` (the shell cannot start) and a command past its time are the
    action's failure, not the run's.
    """
    try:
        with tempfile.TemporaryDirectory(prefix="modzy-retrain-trigger-") as folder:
            path = os.path.join(folder, "payload.json")
            # ASCII JSON: a lone surrogate in a label cannot make the file unwritable.
            with open(path, "w", encoding="ascii", opener=_private) as handle:
                json.dump(dict(data), handle)
            env = command_env(data, path)
            with subprocess.Popen(command, shell=True, env=env, start_new_session=True) as proc:
                try:
                    code = proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    _stop_group(proc)
                    return False, (
                        f"timed out after {timeout:g} s (the command and every process it "
                        "started were stopped)"
                    )
                except BaseException:
                    # The build itself is stopped (SIGTERM, Ctrl-C): its command too.
                    _stop_group(proc)
                    raise
    except (OSError, ValueError, subprocess.SubprocessError) as exc:
        return False, f"could not run the command: {type(exc).__name__}: {exc}"
    return code == 0, f"exit code {code}"


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the command's process group; SIGKILL to what is left of it after the
    grace period (a training script may use it to save a checkpoint)."""
    if not _signal_group(proc.pid, signal.SIGTERM):
        return
    deadline = time.monotonic() + GRACE_SECONDS
    while time.monotonic() < deadline:
        proc.poll()  # reaps the shell, so that only live processes keep the group
        if not _signal_group(proc.pid, 0):
            return
        time.sleep(0.05)
    _signal_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_group(pgid: int, signum: int) -> bool:
    """Send ``signum`` to the group; whether it still had a process."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # a process that changed its user: still there, not ours to stop
    return True


def _private(path: str, flags: int) -> int:
    return os.open(path, flags, 0o600)
