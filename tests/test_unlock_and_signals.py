"""`modzy-retrain unlock`, and a build stopped by SIGTERM letting go of its lock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from modzy_retrain._cli.main import main
from modzy_retrain._dataset.lock import LOCK_NAME

SCRIPT = str(Path(__file__).with_name("_terminated_build.py"))


def holder(**fields: object) -> dict[str, object]:
    now = datetime.now(timezone.utc)
    return {
        "run_id": "run-x",
        "purpose": "build",
        "host": "elsewhere",
        "pid": 4321,
        "acquired_at": (now - timedelta(minutes=5)).isoformat(),
        "expires_at": (now + timedelta(minutes=1)).isoformat(),
        **fields,
    }


def lock_at(root: Path, body: dict[str, object], ledger: bool = False) -> Path:
    path = root / ("_labels" if ledger else "") / LOCK_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))
    return path


def test_unlock_shows_the_holder_and_refuses_a_live_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["unlock", str(tmp_path)]) == 0
    assert "no lock" in capsys.readouterr().out
    # Renewed elsewhere: alive.
    path = lock_at(tmp_path, holder())
    assert main(["unlock", str(tmp_path)]) == 8
    out = capsys.readouterr().out
    assert "held by run run-x (build) on elsewhere, pid 4321, since" in out
    assert "not cleared: the holder is alive (its lease is renewed until" in out
    assert path.exists()
    # This very process, on this host: alive whatever its lease says.
    stale = {"host": socket.gethostname(), "pid": os.getpid(), "expires_at": "2000-01-01"}
    lock_at(tmp_path, holder(**stale))
    assert main(["unlock", str(tmp_path)]) == 8
    assert "its process" in capsys.readouterr().out
    assert main(["unlock", str(tmp_path), "--force"]) == 0
    assert "cleared (forced" in capsys.readouterr().out
    assert not path.exists()
    # Expired elsewhere: cleared without --force.
    lock_at(tmp_path, holder(expires_at="2000-01-01T00:00:00+00:00"))
    assert main(["unlock", str(tmp_path)]) == 0
    assert not path.exists()
    # The label push's lock.
    ledger = lock_at(tmp_path, holder(purpose="label push", expires_at="2000-01-01"), True)
    assert main(["unlock", str(tmp_path), "--ledger"]) == 0
    assert not ledger.exists()


@pytest.mark.parametrize(
    ("signum", "code"),
    [(signal.SIGTERM, 128 + signal.SIGTERM), (signal.SIGINT, 130)],
    ids=["SIGTERM", "SIGINT"],
)
def test_a_build_stopped_by_a_signal_releases_its_lock(
    tmp_path: Path, signum: signal.Signals, code: int
) -> None:
    out = tmp_path / "ds"
    with subprocess.Popen(
        [sys.executable, SCRIPT, str(out), str(tmp_path / "inputs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        assert proc.stdout is not None
        try:
            assert proc.stdout.readline().strip() == "READY"
            held = json.loads((out / LOCK_NAME).read_text())
            assert held["pid"] == proc.pid
            proc.send_signal(signum)
            assert proc.wait(timeout=60) == code
        finally:
            if proc.poll() is None:
                proc.kill()
    assert not (out / LOCK_NAME).exists()
