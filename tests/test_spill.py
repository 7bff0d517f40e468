"""The scratch database a run spills to: a set on disk, and a folder that never stays."""

from __future__ import annotations

import gc
import tempfile
import threading
from pathlib import Path

import pytest

from modzy_retrain._spill import SpilledSet, SpillStore


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    return tmp_path


def test_a_spilled_set_is_a_set(scratch: Path) -> None:
    with SpillStore() as store:
        ids = SpilledSet(store, "ids")
        assert len(ids) == 0
        assert ids.add_new("a")
        assert not ids.add_new("a")
        ids.add("b")
        ids.add("b")
        assert "a" in ids
        assert "c" not in ids
        assert 1 not in ids
        assert sorted(ids) == ["a", "b"]
        assert len(ids) == 2
        ids.discard("a")
        assert set(ids) == {"b"}
        assert ids == {"b"}  # MutableSet equality
        # Many items, from several threads at once (the lock serialises them).
        threads = [
            threading.Thread(target=lambda n=n: [ids.add(f"{n}-{i}") for i in range(500)])
            for n in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(ids) == 2001
        assert sum(1 for _ in ids) == 2001


def test_the_folder_goes_on_close_and_on_collection(scratch: Path) -> None:
    store = SpillStore([], prefix="x-")
    folder = Path(store.folder)
    assert folder.parent == scratch
    assert (folder / "spill.sqlite3").exists()
    store.close()
    store.close()  # idempotent
    assert store.closed
    assert not folder.exists()

    forgotten = SpillStore()
    folder = Path(forgotten.folder)
    del forgotten
    gc.collect()
    assert not folder.exists()


def test_rows_stream_while_other_statements_run(scratch: Path) -> None:
    with SpillStore(["CREATE TABLE t (n INTEGER)"]) as store:
        store.db.executemany("INSERT INTO t VALUES (?)", [(n,) for n in range(2000)])
        seen = SpilledSet(store, "seen")
        total = 0
        for (n,) in store.rows("SELECT n FROM t ORDER BY n", batch=100):
            seen.add(str(n))  # writes between the batches of the read
            total += n
        assert total == sum(range(2000))
        assert len(seen) == 2000
        assert store.one("SELECT COUNT(*) FROM t") == (2000,)
