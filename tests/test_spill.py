"""The scratch database a run spills to: a set on disk, and files that never stay."""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from modzy_retrain._dataset.spill import SpilledSet, SpillStore

posix = pytest.mark.skipif(os.name != "posix", reason="open files are unlinked on POSIX only")


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


@posix
def test_nothing_is_left_on_disk_while_open_or_after(
    scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("modzy_retrain._dataset.spill.CACHE_KIB", 16)  # make it spill
    store = SpillStore(["CREATE TABLE t (k TEXT PRIMARY KEY) WITHOUT ROWID"], prefix="x-")
    assert not Path(store.folder).exists()  # unlinked as soon as it was set up
    assert list(scratch.iterdir()) == []
    store.db.executemany("INSERT INTO t VALUES (?)", [(f"key-{n:06d}" * 4,) for n in range(5000)])
    assert store.one("SELECT COUNT(*) FROM t") == (5000,)
    assert store.one("SELECT k FROM t WHERE k = ?", ("key-001234" * 4,)) is not None
    store.close()
    store.close()  # idempotent
    assert store.closed

    forgotten = SpillStore()
    del forgotten
    gc.collect()  # closed by its finalizer
    assert list(scratch.iterdir()) == []


@posix
def test_a_killed_process_leaves_nothing(tmp_path: Path) -> None:
    code = (
        "from modzy_retrain._dataset.spill import SpillStore, SpilledSet\n"
        "store = SpillStore()\n"
        "ids = SpilledSet(store, 'ids')\n"
        "for n in range(20000):\n"
        "    ids.add(str(n) * 8)\n"
        "print(len(ids), flush=True)\n"
        "input()\n"  # wait to be killed
    )
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "20000"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert list(tmp_path.iterdir()) == []


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
