"""The ``--report`` file of ``modzy-retrain build``, written whatever the run's outcome.

A scheduler keeps one report per run: a run that fails (invalid settings, a locked
dataset, the API or a bucket out of reach, a bug, SIGTERM) leaves one too, with what it
did before it stopped, its exit code and the error (its type and message).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from modzy_retrain._stages.report import RunReport

from .terminal import say
from .trigger_output import firing_report


def result_body(result: Any) -> dict[str, Any]:
    """A finished build's report: the run's, its exit code, its plan and firings."""
    body: dict[str, Any] = result.report.to_dict()
    body["exit_code"] = result.exit_code
    if result.plan is not None:
        body["plan"] = result.plan
    if result.firing is not None:
        body["trigger"] = firing_report(result.firing)
    if result.recovered is not None and result.recovered.shown:
        body["pending_trigger"] = firing_report(result.recovered)
    return body


def failure_body(report: RunReport | None, code: int, exc: BaseException) -> dict[str, Any]:
    """A failed build's report: what the run did before it stopped, and why it did."""
    body = (report or RunReport()).to_dict()
    body["exit_code"] = code
    body["error"] = {"type": type(exc).__name__, "message": str(exc)}
    return body


def exit_code_of(exc: BaseException, default: int) -> int:
    """The code an exception ends the command with (SIGTERM's ``SystemExit(143)``...)."""
    if isinstance(exc, SystemExit) and isinstance(exc.code, int):
        return exc.code
    if isinstance(exc, KeyboardInterrupt):
        return 130
    return default


def write_report(path: str | None, body: dict[str, Any]) -> bool:
    """Write ``body`` to ``path`` (nothing without one); whether it could be written."""
    if not path:
        return True
    try:
        Path(path).write_text(json.dumps(body, indent=2, default=str))
    except OSError as exc:
        say(f"modzy-retrain build: cannot write the report {path}: {exc}", file=sys.stderr)
        return False
    return True
