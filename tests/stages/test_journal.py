"""The result journal: what a killed build fetched, reloaded by the rerun from disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modzy_retrain import ResultJournal


def test_a_rerun_reads_journaled_bodies_back_from_disk(tmp_path: Path, scratch: Path) -> None:
    url = str(tmp_path / "ds")
    killed = ResultJournal(url, after="v0003", part_size=2)
    for n in range(5):
        killed.add(f"job{n}", {"results": {"n": n}})
    killed.flush()
    # A later part that holds job0 again, and a torn last line.
    killed.add("job0", {"results": {"n": "again"}})
    killed.flush()
    part = next((Path(url) / "_staging" / "after-v0003").glob("part-*-00004.jsonl"))
    part.write_text(part.read_text() + '{"job_id": "job9", "bo')

    rerun = ResultJournal(url, after="v0003")
    assert rerun.load() == 5
    assert list(scratch.iterdir()) == []  # on disk, but unlinked already
    assert sorted(rerun.bodies) == [f"job{n}" for n in range(5)]
    assert rerun.bodies["job3"] == {"results": {"n": 3}}
    assert rerun.get("job0") == {"results": {"n": "again"}}
    assert rerun.get("job9") is None
    assert rerun.get("nope") is None
    assert rerun.reused == 1
    with pytest.raises(KeyError):
        rerun.bodies["job9"]
    rerun.clear()  # after a publication: staging and scratch both go
    assert not (Path(url) / "_staging").exists()
    assert list(scratch.iterdir()) == []
    assert rerun.get("job3") is None
    assert len(rerun.bodies) == 0


def test_a_journal_with_nothing_to_load_makes_no_scratch(tmp_path: Path, scratch: Path) -> None:
    journal = ResultJournal(str(tmp_path / "ds"), after=None)
    assert journal.load() == 0
    assert not journal.bodies
    assert list(scratch.iterdir()) == []
    journal.add("j", {"results": {}})
    journal.flush()
    line = json.loads(next((tmp_path / "ds" / "_staging").rglob("*.jsonl")).read_text())
    assert line == {"job_id": "j", "body": {"results": {}}}
    journal.close()
