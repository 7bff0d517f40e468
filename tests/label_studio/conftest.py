"""A real Label Studio for the tests: installed once per machine, started once per session.

Label Studio (Django, about 1 GB installed) never goes into the project's virtual
environment: it is installed into its own cached one, by default
``~/.cache/modzy-retrain/label-studio-<version>/venv`` (``$XDG_CACHE_HOME`` is honoured;
``MODZY_RETRAIN_LABEL_STUDIO_VENV`` names another folder). A marker file is written
only after a successful install, so an interrupted install is redone, never half used;
a file lock keeps two test sessions from installing into the same folder at once.

One server runs per test session, started when a test first asks for it: loopback only
(``--internal-host 127.0.0.1``), a free port, SQLite in a temporary folder, the version
check, analytics and Sentry off (so it never calls out), a fixed admin user and legacy
token. The fixture waits for ``GET /health`` under a deadline (the only waiting in the
suite) and stops the server at the end of the session: terminate, then kill.

S3 images (tests/label_studio/test_push_s3.py): Label Studio reads S3 with boto3, which
``label-studio`` installs itself (a dependency of 1.23.2), so the cached install needs
nothing more. Its S3 client refuses an endpoint on a reserved network, loopback
included (its SSRF guard: "URL resolves to a reserved network address"), so the server
runs with ``USE_DEFAULT_BANNED_SUBNETS=false`` to reach the moto server on 127.0.0.1:
a setting for this loopback-only test server, never for a real one.
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

import httpx
import pytest

LABEL_STUDIO_VERSION = "1.23.2"
ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "not-a-secret-test-password-5c1d"
# Canary: tests assert this never shows up in an exception, a repr or a log line.
LEGACY_TOKEN = "3f6a1c0e9b7d42c58e1f0a6b2d9c4e7f8a1b3c5d"
INSTALL_TIMEOUT_S = 900
FIRST_START_DEADLINE_S = 180
STOP_TIMEOUT_S = 15


@dataclass(frozen=True)
class LabelStudioServer:
    """A running Label Studio: its base URL and the admin's legacy token."""

    url: str
    token: str
    data_dir: Path
    log: Path
    files_root: Path  # LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT: datasets under it are served


def _venv_dir() -> Path:
    override = os.environ.get("MODZY_RETRAIN_LABEL_STUDIO_VENV")
    if override:
        return Path(override)
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "modzy-retrain" / f"label-studio-{LABEL_STUDIO_VERSION}" / "venv"


def _executable(venv: Path) -> Path:
    return venv / "bin" / "label-studio"


def _marker(venv: Path) -> Path:
    return venv / ".modzy-retrain-installed"


def _install(venv: Path) -> None:
    """Create the venv and install Label Studio into it, unless a complete one is there."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    lock_path = venv.parent / ".install.lock"
    with open(lock_path, "w") as lock:
        try:
            import fcntl

            fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be installing
        except ImportError:  # pragma: no cover - no fcntl: one session at a time
            pass
        marker = _marker(venv)
        if marker.is_file() and marker.read_text().strip() == LABEL_STUDIO_VERSION:
            return
        # No marker: a previous install stopped half way; start again from nothing.
        shutil.rmtree(venv, ignore_errors=True)
        log = venv.parent / "install.log"
        with open(log, "wb") as out:
            steps = [
                [sys.executable, "-m", "venv", str(venv)],
                [
                    str(venv / "bin" / "python"),
                    "-m",
                    "pip",
                    "install",
                    "--disable-pip-version-check",
                    "-q",
                    f"label-studio=={LABEL_STUDIO_VERSION}",
                ],
            ]
            for argv in steps:
                done = subprocess.run(
                    argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    timeout=INSTALL_TIMEOUT_S,
                    check=False,
                )
                if done.returncode != 0:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(
                        f"installing label-studio=={LABEL_STUDIO_VERSION} into {venv} failed "
                        f"({argv[2:4]} exited {done.returncode}); see {log}:\n{tail}"
                    )
        if not _executable(venv).is_file():
            raise RuntimeError(f"{_executable(venv)} missing after the install; see {log}")
        marker.write_text(LABEL_STUDIO_VERSION + "\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def files_root(data_dir: Path) -> Path:
    """The local-files document root of a server keeping its data in ``data_dir``."""
    return data_dir / "local-files"


def server_env(data_dir: Path) -> dict[str, str]:
    """The environment that keeps Label Studio offline, on loopback and in ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LABEL_STUDIO_")}
    env.update(
        {
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_USERNAME": ADMIN_EMAIL,
            "LABEL_STUDIO_PASSWORD": ADMIN_PASSWORD,
            "LABEL_STUDIO_USER_TOKEN": LEGACY_TOKEN,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            # Local files under this folder are served to annotators (a local-files
            # storage on a subfolder, as the push connects for a local dataset).
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(files_root(data_dir)),
            # Its S3 storages may use the moto server on loopback (test servers only).
            "USE_DEFAULT_BANNED_SUBNETS": "false",
            # Its own venv's packages only, whatever the test process runs under.
            "PYTHONPATH": "",
            "HOME": str(data_dir),
        }
    )
    return env


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"label-studio exited with code {proc.returncode}:\n{tail}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        time.sleep(0.25)  # the one bounded wait of the suite: migrations take ~26 s
    raise RuntimeError(f"label-studio did not answer /health within {deadline_s:.0f} s; see {log}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)


@contextlib.contextmanager
def run_label_studio(data_dir: Path) -> Iterator[LabelStudioServer]:
    """Install (once) and run Label Studio on loopback until the block ends."""
    venv = _venv_dir()
    _install(venv)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = data_dir / "label-studio.log"
    files_root(data_dir).mkdir(parents=True, exist_ok=True)
    argv = [
        str(_executable(venv)),
        "start",
        "--no-browser",
        "--port",
        str(port),
        "--internal-host",
        "127.0.0.1",
    ]
    with open(log, "wb") as out:
        # A session of its own, so a Ctrl-C in pytest reaches it only through _stop.
        proc = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env(data_dir),
            cwd=data_dir,
            start_new_session=True,
        )
    try:
        _wait_healthy(url, proc, log, FIRST_START_DEADLINE_S)
        yield LabelStudioServer(url, LEGACY_TOKEN, data_dir, log, files_root(data_dir))
    finally:
        _stop(proc)


@pytest.fixture(scope="session")
def label_studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabelStudioServer]:
    """One Label Studio for the whole session (installed on first use, then cached)."""
    with run_label_studio(tmp_path_factory.mktemp("label-studio")) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_label_studio_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never pick up a developer's real Label Studio.
    monkeypatch.delenv("LABEL_STUDIO_URL", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_API_KEY", raising=False)
