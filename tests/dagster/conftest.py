"""A real Dagster webserver for the tests: installed once per machine, started once per
session.

Dagster never goes into the project's virtual environment: ``dagster`` and
``dagster-webserver`` are installed into their own cached one, by default
``~/.cache/modzy-retrain/dagster-<version>/venv`` (``$XDG_CACHE_HOME`` is honoured;
``MODZY_RETRAIN_DAGSTER_VENV`` names another folder). A marker file is written only
after a successful install, so an interrupted one is redone, never half used; a file
lock keeps two sessions from installing into one folder at once. A cold install took
27 s here; the first start about 5 s.

The server runs ``dagster-webserver -f defs.py`` (no daemon: a launched run stays
queued, which is all a trigger does) on loopback, on a free port, with ``DAGSTER_HOME``
in a temporary folder whose ``dagster.yaml`` turns telemetry off, so it never calls
out. The fixture waits for ``GET /server_info`` under a deadline and stops the server
at the end of the session: terminate, then kill.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

DAGSTER_VERSION = "1.13.28"
INSTALL_TIMEOUT_S = 900
START_DEADLINE_S = 120
STOP_TIMEOUT_S = 15
# The code location the tests' definitions load as (``-f defs.py``).
LOCATION = "defs.py"
DEFS = """
import dagster as dg

sentiment = dg.AssetSpec(key=["retraining", "sentiment"], description="a modzy_retrain dataset")


@dg.op(config_schema={"version": str, "dataset_url": str})
def train(context):
    context.log.info("training on %s" % context.op_config["version"])


@dg.job
def retrain():
    train()


defs = dg.Definitions(assets=[sentiment], jobs=[retrain])
"""


@dataclass(frozen=True)
class DagsterServer:
    """A running Dagster webserver."""

    url: str
    home: Path
    log: Path
    started_in: float  # seconds from the process start to /server_info answering

    def graphql(self, query: str, **variables: Any) -> Any:
        answer = httpx.post(
            f"{self.url}/graphql", json={"query": query, "variables": variables}, timeout=30
        )
        answer.raise_for_status()
        body = answer.json()
        assert "errors" not in body, body
        return body["data"]


def _venv_dir() -> Path:
    override = os.environ.get("MODZY_RETRAIN_DAGSTER_VENV")
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "modzy-retrain" / f"dagster-{DAGSTER_VERSION}" / "venv"


def _install(venv: Path) -> None:
    """Create the venv and install Dagster into it, unless a complete one is there."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / ".install.lock", "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be installing
        except ImportError:  # pragma: no cover - no fcntl: one session at a time
            pass
        marker = venv / ".modzy-retrain-installed"
        if marker.is_file() and marker.read_text().split()[0] == DAGSTER_VERSION:
            return
        shutil.rmtree(venv, ignore_errors=True)  # a half-done install starts over
        log = venv.parent / "install.log"
        started = time.monotonic()
        with open(log, "wb") as out:
            for argv in (
                [sys.executable, "-m", "venv", str(venv)],
                [
                    str(venv / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "-q",
                    f"dagster=={DAGSTER_VERSION}",
                    f"dagster-webserver=={DAGSTER_VERSION}",
                ],
            ):
                done = subprocess.run(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=INSTALL_TIMEOUT_S,
                    check=False,
                )
                if done.returncode != 0:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"installing Dagster into {venv} failed; see {log}:\n{tail}")
        # The version, then how long the install took (what the notes report).
        marker.write_text(f"{DAGSTER_VERSION} {time.monotonic() - started:.1f}\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    end = time.monotonic() + START_DEADLINE_S
    while time.monotonic() < end:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"dagster-webserver exited with code {proc.returncode}:\n{tail}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/server_info", timeout=2.0).status_code == 200:
                return
        time.sleep(0.2)  # bounded: the deadline above
    raise RuntimeError(f"dagster-webserver did not answer within {START_DEADLINE_S} s; see {log}")


@contextlib.contextmanager
def run_dagster(home: Path) -> Iterator[DagsterServer]:
    """Install (once) and run a Dagster webserver on loopback until the block ends."""
    venv = _venv_dir()
    _install(venv)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    (home / "defs.py").write_text(DEFS)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = home / "dagster.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DAGSTER_")}
    env.update(DAGSTER_HOME=str(home), PYTHONPATH="", HOME=str(home))
    argv = [str(venv / "bin" / "dagster-webserver"), "-f", "defs.py"]
    argv += ["-h", "127.0.0.1", "-p", str(port)]
    started = time.monotonic()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=home, start_new_session=True
        )
    try:
        _wait(url, proc, log)
        yield DagsterServer(url, home, log, time.monotonic() - started)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def dagster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DagsterServer]:
    """One Dagster webserver for the whole session (installed on first use)."""
    with run_dagster(tmp_path_factory.mktemp("dagster-home")) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_dagster_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never pick up a developer's real Dagster.
    monkeypatch.delenv("DAGSTER_URL", raising=False)
    monkeypatch.delenv("DAGSTER_CLOUD_API_TOKEN", raising=False)
