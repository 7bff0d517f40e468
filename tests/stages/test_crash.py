"""Killed builds (SIGKILL at several points) rerun to the same version; one build at a time."""

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

from modzy_retrain import (
    AnyVotes,
    DatasetLockedError,
    DatasetWriter,
    JobHistoryQuery,
    LineageResolver,
    ModzyClient,
    ResultFetcher,
    VoteFilter,
    list_versions,
    load_checkpoint,
    read_samples,
    verify_dataset,
)
from modzy_retrain._core.fs import url_to_fs
from modzy_retrain._dataset.lock import LOCK_NAME, DatasetLock
from modzy_retrain.sandbox import Sandbox

SEED, JOBS = 9, 120
EPOCH = "2024-01-01T00:00:00+00:00"

SCRIPT = str(Path(__file__).with_name("_killed_build.py"))


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Sandbox, str]:
    data_url = str(tmp_path_factory.mktemp("inputs"))
    sb = Sandbox(seed=SEED, jobs=JOBS, data_url=data_url)
    sb.write_inputs()
    return sb, data_url


def middle(sb: Sandbox) -> str:
    return sorted(j.created_at for j in sb.jobs)[JOBS // 2].isoformat()


def build(
    data_url: str,
    out: Path,
    end: str,
    point: str = "none",
    after: int = 0,
    scratch: Path | None = None,
) -> dict[str, int]:
    env = dict(os.environ)
    if scratch is not None:
        env["TMPDIR"] = str(scratch)  # where the build's scratch databases go
    proc = subprocess.run(
        [
            sys.executable,
            SCRIPT,
            point,
            str(after),
            data_url,
            str(out),
            end,
            str(SEED),
            str(JOBS),
            EPOCH,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    if proc.returncode not in (0, -signal.SIGKILL):
        raise AssertionError(proc.stderr)
    if proc.returncode:
        return {"killed": 1}
    return {"killed": 0, **json.loads(proc.stdout.strip().splitlines()[-1])}


def rows(out: Path) -> set[tuple[object, ...]]:
    return {
        (r.job_id, r.input_name, r.label, r.label_state, r.sha256, r.split)
        for r in read_samples(str(out))
    }


@pytest.fixture(scope="module")
def reference(world: tuple[Sandbox, str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    sb, data_url = world
    out = tmp_path_factory.mktemp("reference") / "ds"
    assert build(data_url, out, middle(sb))["killed"] == 0
    second = build(data_url, out, "-")
    (out.parent / "requests.json").write_text(json.dumps(second))
    return out


@pytest.mark.parametrize(
    ("point", "after"), [("fetch", 5), ("fetch", 40), ("write", 1), ("write", 30), ("manifest", 1)]
)
def test_a_build_killed_anywhere_reruns_to_the_same_version(
    point: str, after: int, world: tuple[Sandbox, str], reference: Path, tmp_path: Path
) -> None:
    sb, data_url = world
    out = tmp_path / "ds"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    assert build(data_url, out, middle(sb), scratch=scratch)["killed"] == 0
    assert build(data_url, out, "-", point, after, scratch=scratch)["killed"] == 1
    # The killed build's scratch databases were unlinked as soon as they were made.
    assert list(scratch.iterdir()) == []
    # Nothing partial is visible: still one version, intact, and the dead run's lock.
    assert list_versions(str(out)) == ["v0001"]
    assert verify_dataset(str(out)) == []
    assert (out / LOCK_NAME).exists()
    # The rerun reclaims the dead run's lock, clears its debris, and publishes the
    # same version an uninterrupted run publishes.
    rerun = build(data_url, out, "-", scratch=scratch)
    assert rerun["killed"] == 0
    assert list(scratch.iterdir()) == []
    assert list_versions(str(out)) == ["v0001", "v0002"]
    assert verify_dataset(str(out)) == []
    assert rows(out) == rows(reference)
    assert load_checkpoint(str(out)) == load_checkpoint(str(reference))
    assert not (out / LOCK_NAME).exists()
    assert not (out / "_staging").exists()
    # Work the killed build did is reused: what it journaled is not fetched again.
    uninterrupted = json.loads((reference.parent / "requests.json").read_text())
    assert rerun["results_requests"] + rerun["reused"] == uninterrupted["results_requests"]
    if point != "fetch":
        # Killed after fetching: at least a whole journal part was there to reuse.
        assert rerun["reused"] >= 16


def test_a_build_killed_after_publishing_before_the_pointer_is_published(
    world: tuple[Sandbox, str], reference: Path, tmp_path: Path
) -> None:
    """The manifest is the publication; the pointer, a hint written after it."""
    sb, data_url = world
    out = tmp_path / "ds"
    assert build(data_url, out, middle(sb))["killed"] == 0
    assert build(data_url, out, "-", "pointer", 1)["killed"] == 1
    assert json.loads((out / "_latest.json").read_text())["version"] == "v0001"
    assert list_versions(str(out)) == ["v0001", "v0002"]
    assert verify_dataset(str(out)) == []
    assert rows(out) == rows(reference)
    assert load_checkpoint(str(out)) == load_checkpoint(str(reference))
    # The rerun reclaims the dead run's lock and finds nothing new to publish.
    rerun = build(data_url, out, "-")
    assert rerun["killed"] == 0
    assert list_versions(str(out)) == ["v0001", "v0002"]
    assert rows(out) == rows(reference)
    assert not (out / LOCK_NAME).exists()


def run_chain(sb: Sandbox, out: Path) -> None:
    with ModzyClient(api_key=sb.api_key, base_url=sb.base_url, transport=sb.transport()) as c:
        (
            JobHistoryQuery(c)
            | ResultFetcher(c)
            | VoteFilter(AnyVotes())
            | LineageResolver(templates=sb.input_templates)
            | DatasetWriter(str(out), versioned=True)
        ).run()


def test_a_second_build_at_once_fails_clearly(world: tuple[Sandbox, str], tmp_path: Path) -> None:
    sb, _ = world
    out = tmp_path / "ds"
    fs, root = url_to_fs(str(out))
    holder = DatasetLock(fs, root, "the-other-run")
    holder.acquire()  # this very process: alive
    with pytest.raises(DatasetLockedError, match="the-other-run"):
        run_chain(sb, out)
    assert list_versions(str(out)) == []
    holder.release()
    assert not (out / LOCK_NAME).exists()
    run_chain(sb, out)
    assert list_versions(str(out)) == ["v0001"]


def test_stale_locks_are_reclaimed(world: tuple[Sandbox, str], tmp_path: Path) -> None:
    sb, _ = world
    now = datetime.now(timezone.utc)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    for holder in (
        # A run on this host whose process is gone.
        {
            "run_id": "dead",
            "host": socket.gethostname(),
            "pid": int(dead.stdout),
            "expires_at": (now + timedelta(hours=1)).isoformat(),
        },
        # A run elsewhere whose lease ran out.
        {
            "run_id": "expired",
            "host": "elsewhere",
            "pid": 1,
            "expires_at": (now - timedelta(seconds=1)).isoformat(),
        },
    ):
        out = tmp_path / str(holder["run_id"])
        out.mkdir()
        (out / LOCK_NAME).write_text(json.dumps(holder))
        run_chain(sb, out)
        assert list_versions(str(out)) == ["v0001"]
        assert not (out / LOCK_NAME).exists()
    live = tmp_path / "live"
    live.mkdir()
    (live / LOCK_NAME).write_text(
        json.dumps(
            {
                "run_id": "busy",
                "host": "elsewhere",
                "pid": 1,
                "expires_at": (now + timedelta(hours=1)).isoformat(),
            }
        )
    )
    with pytest.raises(DatasetLockedError, match="busy"):
        run_chain(sb, live)
    assert os.path.exists(live / LOCK_NAME)
