"""The commit protocol's interleavings on S3 (moto's server) and GCS (the emulator).

The same scenarios as ``tests/test_commit_protocol.py`` on the local disk, each driven
step by step: two writers of one version, a writer stalled past its lease that wakes
up and goes on, two reclaimers of one expired lock, a release racing a reclaim, a crash
between a version and its pointer. After each, one history: no version lost or written
twice, every published version verifies, and no reader saw a partial one.

moto enforces ``If-None-Match: *`` itself (412). The GCS emulator ignores
``ifGenerationMatch``: GCS runs through a proxy (``_store_proxy``) that records every
request and answers 412 to a conditional create of an object that exists, as GCS
documents. So on GCS these tests prove that gcsfs sends ``ifGenerationMatch=0`` on the
creates the protocol relies on, and that a 412 reaches the protocol as a lost race;
GCS's own atomicity of that check is its documented promise, not something a local
server can show.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from modzy_retrain import list_versions, load_manifest, read_samples, verify_dataset
from modzy_retrain._core.fs import url_to_fs
from modzy_retrain._dataset import lock as lock_module
from modzy_retrain._dataset import publish
from modzy_retrain._dataset.lock import (
    LOCK_NAME,
    DatasetLock,
    VersionConflictError,
    read_holder,
)
from modzy_retrain._dataset.manifest import LATEST_NAME, latest_version
from modzy_retrain._dataset.options import WriterOptions
from modzy_retrain._dataset.publish import DatasetDraft

from ._store_proxy import FaultPlan, Seen, StoreProxy, first, writes_to
from .conftest import Store

STORES = ["s3", "gcs"]


class NoJobs:
    def track(self, ids: Any = None) -> None:
        return None

    def untrack(self) -> None:
        return None

    def cursor(self) -> None:
        return None


def row(name: str) -> dict[str, Any]:
    return {
        "job_id": "job",
        "input_name": name,
        "model_id": "m",
        "model_version": "1",
        "model_name": None,
        "submitted_at": None,
        "label": "cat",
        "label_state": "confirmed",
        "rule": "up-voted",
        "candidates": [],
        "annotations": [],
        "predicted_label": "cat",
        "predicted_score": 0.9,
        "predictions": [{"label": "cat", "score": 0.9}],
        "votes_up": 1,
        "votes_down": 0,
        "source_url": None,
        "sha256": None,
        "size": None,
        "split": "train",
        "file": None,
    }


class Where:
    """One dataset on one store (through its proxy)."""

    def __init__(self, store: Store, proxy: StoreProxy, name: str) -> None:
        self.store = store
        self.proxy = proxy
        self.url = store.url("ds")
        # One client per store for the whole test (a botocore client takes a while to
        # make, and every read below would make one).
        self.options = {**store.options, "skip_instance_cache": False}
        self.fs, self.root = url_to_fs(self.url, self.options)

    def draft(self, run_id: str, names: list[str]) -> DatasetDraft:
        opened = DatasetDraft(
            WriterOptions(
                url=self.url, mode="reference", versioned=True, storage_options=self.options
            ),
            run_id=run_id,
            progress=NoJobs(),
        )
        for name in names:
            self.add(opened, name)
        return opened

    @staticmethod
    def add(opened: DatasetDraft, name: str) -> None:
        _, table = opened.place(
            input_name=name, label="cat", split="train", sha256=None, source_url=None
        )
        opened.add(table, row(name), data_path=None, key=("job", name), label="cat",
                   label_state="confirmed", split="train", model_id="m")  # fmt: skip

    def stalled(self, run_id: str) -> DatasetLock:
        """A holder whose lease ran out while it was stalled (no heartbeat)."""
        lock = DatasetLock(self.fs, self.root, run_id, lease=timedelta(0), heartbeat=False)
        lock.acquire()
        return lock

    def names(self, version: str | None = None) -> set[str]:
        found = read_samples(self.url, version=version, storage_options=self.options)
        return {s.input_name for s in found}

    def versions(self) -> list[str]:
        return list_versions(self.url, storage_options=self.options)

    def folder(self, version: str) -> set[str]:
        prefix = f"{self.root}/"
        return {p[len(prefix) :] for p in self.fs.find(f"{self.root}/{version}")}

    def one_history(self) -> None:
        """Every published version verifies and reads whole (what a reader sees)."""
        for version in self.versions():
            assert verify_dataset(self.url, version=version, storage_options=self.options) == []
            manifest = load_manifest(self.url, version=version, storage_options=self.options)
            assert manifest.version == version
            assert len(self.names(version)) == manifest.counts.samples

    def manifest_creates(self) -> list[Seen]:
        return self.proxy.requests(lambda s: (s.object_name or "").endswith("/manifest.json")
                                   and s.method in ("PUT", "POST"))  # fmt: skip


@pytest.fixture(params=STORES)
def where(request: pytest.FixtureRequest) -> Where:
    name = request.param
    store: Store = request.getfixturevalue(f"{name}_via_proxy")
    proxy: StoreProxy = request.getfixturevalue(f"{name}_proxy")
    return Where(store, proxy, name)


def conditional(seen: Seen) -> bool:
    """Whether a write carried the create-only-if-absent precondition."""
    return seen.header("if-none-match") == "*" or seen.query.get("ifGenerationMatch") == "0"


@pytest.mark.parametrize("first", ["stalled", "reclaimer"])
def test_two_writers_of_one_version_publish_it_once(where: Where, first: str) -> None:
    lock = where.stalled("run-a")
    a = where.draft("run-a", ["a1", "a2"])
    b = where.draft("run-b", ["b1"])  # reclaims the expired lease: both "hold" it
    assert (a.version, b.version) == ("v0001", "v0001")
    winner, loser = (a, b) if first == "stalled" else (b, a)
    assert winner.commit(query=None, stages=[]) is not None
    where.one_history()
    with pytest.raises(VersionConflictError, match="published nothing"):
        loser.commit(query=None, stages=[])
    lock.release()
    assert where.versions() == ["v0001"]
    assert where.names() == ({"a1", "a2"} if first == "stalled" else {"b1"})
    where.one_history()
    # The loser's tables are gone: the folder holds the winner's version only.
    listed = {f.path for f in load_manifest(where.url, storage_options=where.options).files}
    assert where.folder("v0001") == listed | {"v0001/manifest.json"}
    # Both creates carried the precondition; the store (or, for GCS, the proxy) refused
    # the second with 412, and that reached the protocol as the lost race.
    creates = where.manifest_creates()
    assert [c.status for c in creates] == [200, 412]
    assert all(conditional(c) for c in creates)


def test_a_stalled_writer_that_wakes_never_touches_the_winners_files(where: Where) -> None:
    lock = where.stalled("run-a")
    a = where.draft("run-a", ["a1"])
    b = where.draft("run-b", ["b1"])
    assert b.commit(query=None, stages=[]) is not None
    before = {p: where.fs.cat_file(f"{where.root}/{p}") for p in where.folder("v0001")}
    where.add(a, "a2")  # the stalled writer wakes up and goes on writing v0001
    with pytest.raises(VersionConflictError):
        a.commit(query=None, stages=[])
    lock.release()
    after = {p: where.fs.cat_file(f"{where.root}/{p}") for p in where.folder("v0001")}
    assert after == before
    assert where.names() == {"b1"}
    where.one_history()


def test_two_reclaimers_of_one_expired_lock_publish_once(
    where: Where, monkeypatch: pytest.MonkeyPatch
) -> None:
    where.stalled("run-dead")  # left behind, expired, never released
    path = f"{where.root}/{LOCK_NAME}"
    stale = read_holder(where.fs, path)
    assert stale is not None
    a = where.draft("run-a", ["a1"])  # reclaims: deletes the stale lock, creates its own
    holder = read_holder(where.fs, path)
    assert holder is not None
    assert holder["run_id"] == "run-a"
    # B read the stale lock before A replaced it: it deletes A's fresh lock and takes
    # it too. Both "hold" the lock; the lease alone would let both publish.
    reads = iter([stale])
    real = lock_module.read_holder
    monkeypatch.setattr(lock_module, "read_holder", lambda fs, p: next(reads, None) or real(fs, p))
    b = where.draft("run-b", ["b1"])
    monkeypatch.undo()
    holder = read_holder(where.fs, path)
    assert holder is not None
    assert holder["run_id"] == "run-b"
    assert a.lock is not None
    assert not a.lock.renew()  # A's heartbeat finds its lock gone...
    assert a.commit(query=None, stages=[]) is not None  # ...but the manifest decides
    with pytest.raises(VersionConflictError):
        b.commit(query=None, stages=[])
    assert where.versions() == ["v0001"]
    assert where.names() == {"a1"}
    where.one_history()
    assert read_holder(where.fs, path) is None  # B, which held the lock, let it go


def test_a_release_racing_a_reclaim_leaves_the_new_holders_lock(where: Where) -> None:
    old = where.stalled("run-old")
    new = DatasetLock(where.fs, where.root, "run-new", heartbeat=False)
    new.acquire()  # reclaims the expired lease
    assert not old.renew()
    assert old.lost
    old.release()
    holder = read_holder(where.fs, new.path)
    assert holder is not None
    assert holder["run_id"] == "run-new"
    new.release()
    assert read_holder(where.fs, new.path) is None
    # Every lock create carried the precondition.
    creates = where.proxy.requests(
        lambda s: (s.object_name or "").endswith(LOCK_NAME) and s.method in ("PUT", "POST")
    )
    assert sum(conditional(c) for c in creates) >= 2


def test_a_crash_between_a_version_and_its_pointer_loses_nothing(
    where: Where, monkeypatch: pytest.MonkeyPatch
) -> None:
    where.draft("run-1", ["x"]).commit(query=None, stages=[])
    real = publish.atomic_write

    def crash_on_pointer(fs: Any, path: str, data: bytes) -> None:
        if path.endswith(LATEST_NAME):
            raise KeyboardInterrupt  # killed right after the manifest was created
        real(fs, path, data)

    monkeypatch.setattr(publish, "atomic_write", crash_on_pointer)
    crashed = where.draft("run-2", ["y"])
    with pytest.raises(KeyboardInterrupt):
        crashed.commit(query=None, stages=[])
    monkeypatch.undo()
    assert crashed.lock is not None
    crashed.lock._stop_heartbeat()  # its process is gone: nothing renews the lease
    # The process died with it: its lock names a pid that no longer exists, on a host
    # that is not this one; its lease has run out.
    path = f"{where.root}/{LOCK_NAME}"
    holder = json.loads(where.fs.cat_file(path))
    holder.update(host="a-runner-that-died", expires_at="2000-01-01T00:00:00+00:00")
    where.fs.pipe_file(path, json.dumps(holder).encode())
    pointer = json.loads(where.fs.cat_file(f"{where.root}/{LATEST_NAME}"))
    assert pointer["version"] == "v0001"  # the hint lags...
    assert latest_version(where.url, storage_options=where.options) == "v0002"  # ...found
    assert where.names() == {"x", "y"}
    where.one_history()
    where.draft("run-3", ["z"]).commit(query=None, stages=[])
    assert where.versions() == ["v0001", "v0002", "v0003"]
    pointer = json.loads(where.fs.cat_file(f"{where.root}/{LATEST_NAME}"))
    assert pointer["version"] == "v0003"
    assert where.names() == {"x", "y", "z"}
    where.one_history()


def test_the_gcs_emulator_itself_ignores_generation_preconditions(
    gcs: Store,
) -> None:
    """Why GCS runs through the enforcing proxy. If this fails, the emulator learnt to
    enforce them: drop the proxy's enforcement and say so in docs/reliability.md."""
    fs = gcs.fs()
    fs.pipe_file(f"{gcs.bucket}/x", b"first", mode="create")
    fs.pipe_file(f"{gcs.bucket}/x", b"second", mode="create")  # GCS would answer 412
    assert fs.cat_file(f"{gcs.bucket}/x") == b"second"


def test_a_create_whose_answer_was_lost_is_the_writers_own(
    where: Where, store_waits: list[float]
) -> None:
    """The store created the lock, then the manifest, but each answer was lost on the
    way back: the client sends the create again, and the store answers 412, because
    the object exists. It is this writer's own: the version is published, and the lock
    is held (renewed, released) as if the first answer had arrived."""
    where.proxy.plan = FaultPlan(
        rules=[first(writes_to(LOCK_NAME), "lost"), first(writes_to("/manifest.json"), "lost")]
    )
    a = where.draft("run-a", ["a1", "a2"])
    assert a.lock is not None
    assert not a.lock.reentrant  # held as its own: renewed by a heartbeat, released
    assert a.commit(query=None, stages=[]) is not None
    assert where.proxy.faults["lost"] == 2
    assert [c.status for c in where.manifest_creates()] == [200, 412]
    assert where.versions() == ["v0001"]
    assert where.names() == {"a1", "a2"}
    where.one_history()
    assert read_holder(where.fs, f"{where.root}/{LOCK_NAME}") is None


def test_a_create_that_met_another_in_flight_is_sent_again(
    s3_via_proxy: Store, s3_proxy: StoreProxy
) -> None:
    """S3 answers 409 ConditionalRequestConflict to a conditional write that met another
    one on the same key in flight (moto never does; the proxy plays it): the create is
    sent again, and its second answer decides."""
    where = Where(s3_via_proxy, s3_proxy, "s3")
    s3_proxy.plan = FaultPlan(rules=[first(writes_to("/manifest.json"), "conflict")])
    assert where.draft("run-a", ["a1"]).commit(query=None, stages=[]) is not None
    assert [c.status for c in where.manifest_creates()] == [409, 200]
    assert where.names() == {"a1"}
    where.one_history()
