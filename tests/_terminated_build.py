"""A ``modzy-retrain build`` that stops, holding the dataset's lock, until it is sent
SIGTERM or SIGINT (run by tests/test_unlock_and_signals.py in its own process)."""

from __future__ import annotations

import os
import sys
import threading

from modzy_retrain._cli import build as build_module
from modzy_retrain._cli.main import main
from modzy_retrain.sandbox import Sandbox

out, inputs = sys.argv[1], sys.argv[2]
sb = Sandbox(seed=2, jobs=20, data_url=inputs)
sb.write_inputs()


def stall(*args: object, **kwargs: object) -> object:
    print("READY", flush=True)  # noqa: T201 - the lock is held: the parent may signal now
    threading.Event().wait()  # interrupted by the signal's handler
    raise AssertionError("unreachable")


build_module._Run.go = stall  # type: ignore[method-assign]
with sb.serve() as server:
    os.environ["MODZY_API_KEY"] = sb.api_key
    templates = [a for m, t in sb.input_templates.items() for a in ("--input-template", f"{m}={t}")]
    code = main(["build", "--base-url", server.base_url, "--out", out, *templates, "--quiet"])
sys.exit(code)
