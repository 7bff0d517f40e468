"""The sandbox in its own process, as the benchmarks run it: ``modzy-retrain sandbox``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def checkout_env() -> dict[str, str]:
    """The environment for a child that must import this checkout's modzy_retrain."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    return env


def start_sandbox(*options: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    """Start ``modzy-retrain sandbox OPTIONS...``; return the process and what it printed
    (base URL, API key, input templates) once it serves."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "modzy_retrain._cli", "sandbox", *options],
        stdout=subprocess.PIPE,
        text=True,
        env=checkout_env(),
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.wait()
        raise SystemExit(f"the sandbox exited ({proc.returncode}) before serving")
    return proc, json.loads(line)
