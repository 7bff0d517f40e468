"""The commit protocol, step by step, under the interleavings that broke the lease-only
lock: two writers of one version, a holder stalled past its lease, a release racing a
reclaim, a crash between a version and its pointer, an absurd pointer.

Each scenario runs on the local disk, and (``tests/cloud/test_commit_protocol_stores.py``)
on S3 through moto's server, which enforces ``If-None-Match``, and on GCS through a
proxy that enforces ``ifGenerationMatch=0`` in front of the emulator, which does not.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from modzy_retrain import DatasetError, list_versions, load_manifest, read_samples, verify_dataset
from modzy_retrain._core.fs import url_to_fs
from modzy_retrain._dataset.lock import (
    LOCK_NAME,
    DatasetLock,
    DatasetLockedError,
    VersionConflictError,
    read_holder,
)
from modzy_retrain._dataset.manifest import LATEST_NAME, latest_version
from modzy_retrain._dataset.options import WriterOptions
from modzy_retrain._dataset.publish import DatasetDraft


class NoJobs:
    def track(self, ids: Any = None) -> None:
        return None

    def untrack(self) -> None:
        return None

    def cursor(self) -> None:
        return None


def row(name: str, label: str = "cat") -> dict[str, Any]:
    return {
        "job_id": "job",
        "input_name": name,
        "model_id": "m",
        "model_version": "1",
        "model_name": None,
        "submitted_at": None,
        "label": label,
        "label_state": "confirmed",
        "rule": "up-voted",
        "candidates": [],
        "annotations": [],
        "predicted_label": label,
        "predicted_score": 0.9,
        "predictions": [{"label": label, "score": 0.9}],
        "votes_up": 1,
        "votes_down": 0,
        "source_url": None,
        "sha256": None,
        "size": None,
        "split": "train",
        "file": None,
    }


def draft(url: str, run_id: str, names: list[str], **options: Any) -> DatasetDraft:
    """A versioned write of ``names`` (reference mode), not committed yet."""
    opened = DatasetDraft(
        WriterOptions(url=url, mode="reference", versioned=True, **options),
        run_id=run_id,
        progress=NoJobs(),
    )
    for name in names:
        _, table = opened.place(
            input_name=name, label="cat", split="train", sha256=None, source_url=None
        )
        opened.add(
            table,
            row(name),
            data_path=None,
            key=("job", name),
            label="cat",
            label_state="confirmed",
            split="train",
            model_id="m",
        )
    return opened


def stalled(url: str, run_id: str) -> DatasetLock:
    """A holder whose lease ran out while it was stalled (no heartbeat)."""
    fs, root = url_to_fs(url)
    lock = DatasetLock(fs, root, run_id, lease=timedelta(0), heartbeat=False)
    lock.acquire()
    return lock


def names(url: str, version: str | None = None) -> set[str]:
    return {s.input_name for s in read_samples(url, version=version)}


@pytest.fixture
def url(tmp_path: Path) -> str:
    return str(tmp_path / "ds")


@pytest.mark.parametrize("first", ["stalled", "reclaimer"])
def test_two_writers_of_one_version_publish_it_once(url: str, first: str) -> None:
    lock = stalled(url, "run-a")
    a = draft(url, "run-a", ["a1", "a2"])
    b = draft(url, "run-b", ["b1"])  # reclaims the expired lease: both "hold" it
    assert (a.version, b.version) == ("v0001", "v0001")
    winner, loser = (a, b) if first == "stalled" else (b, a)
    assert winner.commit(query=None, stages=[]) is not None
    with pytest.raises(VersionConflictError, match="published nothing"):
        loser.commit(query=None, stages=[])
    lock.release()
    assert list_versions(url) == ["v0001"]
    assert names(url) == ({"a1", "a2"} if first == "stalled" else {"b1"})
    assert verify_dataset(url) == []
    # The loser's tables are gone; the folder holds the winner's version only.
    folder = Path(url) / "v0001"
    listed = {f.path for f in load_manifest(url).files} | {"v0001/manifest.json"}
    assert {f"v0001/{p.name}" for p in folder.iterdir()} == listed
    # A conflict is a held dataset for the command line: exit code 8, nothing lost.
    assert issubclass(VersionConflictError, DatasetLockedError)


def test_a_loser_that_wrote_after_the_winner_published_never_touches_its_files(
    url: str,
) -> None:
    lock = stalled(url, "run-a")
    a = draft(url, "run-a", ["a1"])
    b = draft(url, "run-b", ["b1"])
    assert b.commit(query=None, stages=[]) is not None
    before = {p.name: p.read_bytes() for p in (Path(url) / "v0001").iterdir()}
    # The stalled writer wakes up and goes on writing the same version.
    _, table = a.place(input_name="a2", label="cat", split="train", sha256=None, source_url=None)
    a.add(table, row("a2"), data_path=None, key=("job", "a2"), label="cat",
          label_state="confirmed", split="train", model_id="m")  # fmt: skip
    with pytest.raises(VersionConflictError):
        a.commit(query=None, stages=[])
    lock.release()
    after = {p.name: p.read_bytes() for p in (Path(url) / "v0001").iterdir()}
    assert after == before
    assert verify_dataset(url) == []
    assert names(url) == {"b1"}


def test_a_crash_between_a_version_and_its_pointer_loses_nothing(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    draft(url, "run-1", ["x"]).commit(query=None, stages=[])
    from modzy_retrain._dataset import publish

    real = publish.atomic_write

    def crash_on_pointer(fs: Any, path: str, data: bytes) -> None:
        if path.endswith(LATEST_NAME):
            raise KeyboardInterrupt  # killed right after the manifest was created
        real(fs, path, data)

    monkeypatch.setattr(publish, "atomic_write", crash_on_pointer)
    with pytest.raises(KeyboardInterrupt):
        draft(url, "run-2", ["y"]).commit(query=None, stages=[])
    monkeypatch.undo()
    # The process died with it: its lock names a pid that no longer exists.
    lock = Path(url) / LOCK_NAME
    lock.write_text(json.dumps({**json.loads(lock.read_text()), "pid": 2**22 + 7}))
    pointer = json.loads((Path(url) / LATEST_NAME).read_text())
    assert pointer["version"] == "v0001"  # the hint lags...
    assert latest_version(url) == "v0002"  # ...the published version is found
    assert names(url) == {"x", "y"}
    # The next writer numbers after it, and moves the hint on.
    draft(url, "run-3", ["z"]).commit(query=None, stages=[])
    assert list_versions(url) == ["v0001", "v0002", "v0003"]
    assert json.loads((Path(url) / LATEST_NAME).read_text())["version"] == "v0003"
    assert names(url) == {"x", "y", "z"}


def test_a_release_racing_a_reclaim_leaves_the_new_holders_lock(url: str) -> None:
    fs, root = url_to_fs(url)
    old = stalled(url, "run-old")
    new = DatasetLock(fs, root, "run-new", heartbeat=False)
    new.acquire()  # reclaims the expired lease
    assert not old.renew()  # its heartbeat would find it lost
    assert old.lost
    old.release()
    holder = read_holder(fs, str(Path(root) / LOCK_NAME))
    assert holder is not None
    assert holder["run_id"] == "run-new"
    new.release()
    assert read_holder(fs, str(Path(root) / LOCK_NAME)) is None


def test_a_held_lease_is_renewed_and_a_live_holder_is_not_reclaimed(url: str) -> None:
    fs, root = url_to_fs(url)
    holder = DatasetLock(fs, root, "run-1", lease=timedelta(seconds=60), heartbeat=False)
    holder.acquire()
    first = read_holder(fs, holder.path)
    assert holder.renew()
    renewed = read_holder(fs, holder.path)
    assert first is not None
    assert renewed is not None
    assert renewed["expires_at"] >= first["expires_at"]
    with pytest.raises(DatasetLockedError, match="another build holds this dataset"):
        DatasetLock(fs, root, "run-2").acquire()
    holder.release()


def test_a_container_holder_as_pid_1_waits_one_lease_not_forever(url: str) -> None:
    fs, root = url_to_fs(url)
    Path(root).mkdir(parents=True)
    (Path(root) / LOCK_NAME).write_text(
        json.dumps(
            {
                "run_id": "in-a-container",
                "host": "another-container",
                "pid": 1,
                "expires_at": "2000-01-01T00:00:00+00:00",  # its heartbeat stopped long ago
            }
        )
    )
    lock = DatasetLock(fs, root, "run-1", heartbeat=False)
    lock.acquire()
    lock.release()


@pytest.mark.parametrize("pointer", ["v99999999999", "vx", "", "0001"])
def test_an_absurd_pointer_fails_at_once(url: str, pointer: str) -> None:
    Path(url).mkdir(parents=True)
    (Path(url) / LATEST_NAME).write_text(json.dumps({"version": pointer}))
    with pytest.raises(DatasetError, match="is no version"):
        latest_version(url)


def test_two_reclaimers_of_one_expired_lock_publish_once(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reclaims the expired lock; B, which read the expired lock before A replaced
    it, deletes A's fresh one and takes it too. Both hold it; one version is published."""
    from modzy_retrain._dataset import lock as lock_module

    stalled(url, "run-dead")  # left behind, its lease run out
    fs, root = url_to_fs(url)
    path = str(Path(root) / LOCK_NAME)
    stale = read_holder(fs, path)
    a = draft(url, "run-a", ["a1"])
    reads = iter([stale])
    real = lock_module.read_holder
    monkeypatch.setattr(lock_module, "read_holder", lambda fs, p: next(reads, None) or real(fs, p))
    b = draft(url, "run-b", ["b1"])
    monkeypatch.undo()
    holder = read_holder(fs, path)
    assert holder is not None
    assert holder["run_id"] == "run-b"
    assert a.lock is not None
    assert not a.lock.renew()
    assert a.commit(query=None, stages=[]) is not None
    with pytest.raises(VersionConflictError):
        b.commit(query=None, stages=[])
    assert list_versions(url) == ["v0001"]
    assert names(url) == {"a1"}
    assert verify_dataset(url) == []
    assert read_holder(fs, path) is None


def test_a_loser_whose_temporary_manifest_the_winner_cleared_loses_cleanly(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a local disk the manifest is written to a temporary file, then linked into
    place. The winner, publishing meanwhile, clears its version's folder of what its
    manifest does not list: the loser's temporary file too. The loser still learns it
    lost (exit 8), not a FileNotFoundError (exit 1)."""
    import os

    lock = stalled(url, "run-a")
    a = draft(url, "run-a", ["a1"])
    b = draft(url, "run-b", ["b1"])
    real_link = os.link

    def the_winner_publishes_first(src: Any, dst: Any, *args: Any, **kw: Any) -> None:
        monkeypatch.setattr(os, "link", real_link)
        assert b.commit(query=None, stages=[]) is not None
        real_link(src, dst, *args, **kw)

    monkeypatch.setattr(os, "link", the_winner_publishes_first)
    with pytest.raises(VersionConflictError):
        a.commit(query=None, stages=[])
    lock.release()
    assert names(url) == {"b1"}
    assert verify_dataset(url) == []


def test_a_file_whose_folder_another_run_cleared_meanwhile_is_written_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two builds whose leases overlapped share the results journal's folder; the one
    that publishes clears it. The other's journal part, written meanwhile, is written
    again rather than failing the build."""
    import os
    import shutil

    from modzy_retrain._core.fs import atomic_write

    fs, _ = url_to_fs(str(tmp_path))
    target = tmp_path / "_staging" / "after-v0001" / "part-1.jsonl"
    real_replace = os.replace

    def cleared_first(src: Any, dst: Any) -> None:
        monkeypatch.setattr(os, "replace", real_replace)
        shutil.rmtree(tmp_path / "_staging")  # the other run published, and cleared it
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", cleared_first)
    atomic_write(fs, str(target), b"line\n")
    assert target.read_bytes() == b"line\n"


def test_clearing_the_journal_after_a_publication_never_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run published; another run whose lease overlapped writes a journal part
    while this one clears the folder ("Directory not empty"). The publication stands:
    what is left of the journal is only a cache."""
    import errno

    from modzy_retrain._dataset.journal import ResultJournal

    journal = ResultJournal(str(tmp_path / "ds"), after="v0001")
    journal.add("job-1", {"results": {}})
    journal.flush()

    def another_run_writes_meanwhile(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.ENOTEMPTY, "Directory not empty")

    monkeypatch.setattr(journal.fs, "rm", another_run_writes_meanwhile)
    journal.clear()


def test_a_loser_removing_its_tables_while_the_winner_clears_up_fails_neither(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The winner lists its version's folder to clear what its manifest does not list;
    the loser removes its own tables meanwhile. The winner published: it says so (the
    clearing is best effort), it does not fail on a file that went."""
    lock = stalled(url, "run-a")
    a = draft(url, "run-a", ["a1"])
    b = draft(url, "run-b", ["b1"])
    real_find = a.fs.find

    def the_loser_removes_a_file_meanwhile(path: str, *args: Any, **kwargs: Any) -> Any:
        return [*real_find(path, *args, **kwargs), f"{path}/gone-meanwhile-samples.jsonl"]

    monkeypatch.setattr(a.fs, "find", the_loser_removes_a_file_meanwhile)
    assert a.commit(query=None, stages=[]) is not None
    monkeypatch.undo()
    with pytest.raises(VersionConflictError):
        b.commit(query=None, stages=[])
    lock.release()
    assert names(url) == {"a1"}
    assert verify_dataset(url) == []
