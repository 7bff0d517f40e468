"""What a manifest names is on the disk before the manifest is; a killed run's leftovers
are checked by their hash (issue 17, item 8).

On a local disk a crash (power loss, a kernel panic) after the manifest is written
must not leave a published version whose data files or tables are empty or torn: each
is fsync'd, and so is each folder that got a new name, before the manifest is created.
A run resumed after a killed one keeps a data file it finds only when its bytes hash
to the file's name; a file of the right size with other bytes is written again.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from modzy_retrain import (
    AnyVotes,
    DatasetWriter,
    JobHistoryQuery,
    LineageResolver,
    ModzyClient,
    ResultFetcher,
    VoteFilter,
    load_manifest,
    verify_dataset,
)
from modzy_retrain.sandbox import Sandbox

EPOCH = datetime(2024, 1, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Sandbox:
    sb = Sandbox(seed=8, jobs=30, data_url=str(tmp_path_factory.mktemp("inputs")))
    sb.write_inputs()
    return sb


def _write(sb: Sandbox, url: str, **options: Any) -> None:
    writer = DatasetWriter(url, **options)
    with ModzyClient(api_key=sb.api_key, base_url=sb.base_url, transport=sb.transport()) as c:
        chain = (
            JobHistoryQuery(c, start=EPOCH)
            | ResultFetcher(c)
            | VoteFilter(AnyVotes())
            | LineageResolver(templates=sb.input_templates)
        )
        assert list(chain | writer)


class Events:
    """Each fsync (by the path its descriptor names) and each manifest published, in
    order."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.log: list[tuple[str, str]] = []
        real_fsync, real_link, real_replace = os.fsync, os.link, os.replace

        def fsync(fd: int) -> None:
            self.log.append(("fsync", os.path.realpath(f"/proc/self/fd/{fd}")))
            real_fsync(fd)

        def link(src: Any, dst: Any, *a: Any, **kw: Any) -> None:
            real_link(src, dst, *a, **kw)
            self.log.append(("publish", os.path.realpath(dst)))

        def replace(src: Any, dst: Any, *a: Any, **kw: Any) -> None:
            real_replace(src, dst, *a, **kw)
            self.log.append(("publish", os.path.realpath(dst)))

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "link", link)
        monkeypatch.setattr(os, "replace", replace)

    def synced_before(self, manifest: Path) -> set[str]:
        at = self.log.index(("publish", os.path.realpath(manifest)))
        return {path for kind, path in self.log[:at] if kind == "fsync"}


def _named(root: Path, manifest_path: str) -> list[Path]:
    """Every file the manifest names: its tables, its file table and the data files."""
    version = manifest_path.split("/")[0] if "/" in manifest_path else None
    manifest = load_manifest(str(root), version=version)
    named = [root / f.path for f in manifest.files]
    if manifest.file_table is not None:
        table = root / manifest.file_table.path
        named.append(table)
        named += [root / json.loads(line)["path"] for line in table.read_text().splitlines()]
    return named


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="names descriptors by /proc")
@pytest.mark.parametrize(
    ("options", "manifest"),
    [
        ({"format": "jsonl"}, "manifest.json"),
        ({"format": "csv", "versioned": True}, "v0001/manifest.json"),
        ({"format": "parquet", "versioned": True}, "v0001/manifest.json"),
        ({"format": "imagefolder"}, "manifest.json"),
    ],
)
def test_files_and_their_folders_are_synced_before_the_manifest(
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    options: dict[str, Any],
    manifest: str,
) -> None:
    root = tmp_path / "ds"
    events = Events(monkeypatch)
    _write(sandbox, str(root), **options)
    monkeypatch.undo()
    synced = events.synced_before(root / manifest)
    named = _named(root, manifest)
    assert len(named) > 10
    files = {os.path.realpath(p) for p in named}
    assert not sorted(files - synced)
    folders = {os.path.realpath(p.parent) for p in named}
    assert not sorted(folders - synced)
    assert os.path.realpath(root) in synced
    assert verify_dataset(str(root)) == []


def test_a_resumed_copy_rewrites_a_corrupted_leftover(sandbox: Sandbox, tmp_path: Path) -> None:
    healthy = tmp_path / "healthy"
    _write(sandbox, str(healthy), versioned=True)
    data = sorted(p.relative_to(healthy) for p in (healthy / "data").rglob("*") if p.is_file())
    assert len(data) > 10
    # A killed run of the same build: its version's folder, and data files of the
    # right size whose bytes were never all written (power lost, a torn write).
    root = tmp_path / "ds"
    (root / "v0001").mkdir(parents=True)
    for rel in data:
        good = (healthy / rel).read_bytes()
        leftover = root / rel
        leftover.parent.mkdir(parents=True, exist_ok=True)
        leftover.write_bytes(b"\0" * len(good))
    _write(sandbox, str(root), versioned=True)
    assert verify_dataset(str(root)) == []
    for rel in data:
        body = (root / rel).read_bytes()
        assert hashlib.sha256(body).hexdigest() == rel.name.split(".")[0], rel
