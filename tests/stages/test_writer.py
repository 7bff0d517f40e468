"""DatasetWriter: formats, manifest, atomic publish, dedupe, stable splits."""

from __future__ import annotations

import csv
import hashlib
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from modzy_retrain import (
    ConfigurationError,
    DatasetError,
    DatasetExistsError,
    DatasetWriter,
    PredictionRecord,
    RunReport,
    Sample,
    dataset_files,
    load_manifest,
    read_samples,
    verify_dataset,
)
from modzy_retrain._core.secrets import public_url
from modzy_retrain._dataset import spill as _spill
from modzy_retrain._dataset.layout import assign_split, safe_component


def make(
    name: str, data: bytes, label: str | None = "cat", job: str = "j1", root: str = "memory://src"
) -> Sample:
    url = f"{root}/{job}/{name}.png"
    with fsspec.open(url, "wb") as handle:
        handle.write(data)
    record = PredictionRecord(
        job_id=job, input_name=name, model_id="m", model_version="1", job_status="COMPLETED"
    )
    return Sample(
        record=record,
        label=label,
        label_state="confirmed" if label else "needs_label",
        rule="test",
        source_url=url,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


@pytest.fixture
def out(tmp_path: Path) -> str:
    return str(tmp_path / "dataset")


@pytest.fixture
def samples() -> Iterator[list[Sample]]:
    root = f"memory://src-{uuid.uuid4().hex}"
    items = [
        make("a", b"AAA", "cat", root=root),
        make("b", b"BBBB", "dog", root=root),
        make("c", b"AAA", "cat", job="j2", root=root),  # same bytes as "a"
        make("d", b"DDDDD", None, root=root),
        make("weird name #1 ü", b"EE", "tabby cat", root=root),
    ]
    yield items
    fsspec.filesystem("memory").rm(root, recursive=True)


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet", "imagefolder"])
def test_every_format_round_trips_through_its_manifest(
    fmt: str, out: str, samples: list[Sample]
) -> None:
    report = DatasetWriter(out, format=fmt).write(samples)  # type: ignore[arg-type]
    assert verify_dataset(out) == []
    manifest = load_manifest(out)
    assert manifest.format == fmt
    assert manifest.counts.samples == 4
    assert manifest.counts.duplicates == 1
    assert manifest.counts.by_label == {"cat": 1, "dog": 1, "(none)": 1, "tabby cat": 1}
    assert sum(manifest.counts.by_split.values()) == 4
    assert report.drop_counts[("write", "duplicate_content")] == 1
    assert report.dataset is not None
    assert report.dataset["samples"] == 4
    # The manifest lists the sample tables; the data files are in its file table.
    assert {f.role for f in manifest.files} == {"samples"}
    assert manifest.file_table is not None
    assert manifest.file_table.path == "files.jsonl"
    data_files = [f for f in dataset_files(out) if f.role == "data"]
    assert len(data_files) == manifest.file_table.entries == 4  # the duplicate's bytes once
    assert manifest.file_count == len(manifest.files) + 4 == report.dataset["files"]
    root = Path(out)
    for entry in dataset_files(out):
        assert (root / entry.path).is_file()
    if fmt == "jsonl":
        rows = list(read_samples(out))
        assert {r.input_name for r in rows} == {"a", "b", "d", "weird name #1 ü"}
        row = next(r for r in rows if r.input_name == "a")
        assert row.file is not None
        assert row.file.startswith("data/")
        assert (root / row.file).read_bytes() == b"AAA"
        assert row.sha256 == hashlib.sha256(b"AAA").hexdigest()
        assert str(row.source_url).endswith("/j1/a.png")
    if fmt == "csv":
        with open(root / "samples.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert len(rows) == 4
        assert json.loads(rows[0]["predictions"]) == []
    if fmt == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(root / "samples.parquet")
        assert table.num_rows == 4
        assert "label_state" in table.column_names
    if fmt == "imagefolder":
        # <split>/<label>/<file> and a metadata.jsonl per split; unlabeled apart.
        for split in manifest.counts.by_split:
            if split:
                assert (root / split / "metadata.jsonl").is_file() or split not in {
                    "train",
                    "validation",
                }
        unlabeled = [
            json.loads(x) for x in (root / "unlabeled" / "metadata.jsonl").read_text().splitlines()
        ]
        assert [r["input_name"] for r in unlabeled] == ["d"]
        assert (root / "unlabeled" / unlabeled[0]["file_name"]).read_bytes() == b"DDDDD"
        for r in read_samples(out):
            if r.label is not None:
                folder = root / str(r.file)
                assert folder.parent.name == safe_component(r.label)
                assert folder.parent.parent.name == r.split
                assert folder.is_file()


def test_reference_mode_keeps_urls_and_hashes(out: str, samples: list[Sample]) -> None:
    DatasetWriter(out, mode="reference").write(samples)
    manifest = load_manifest(out)
    assert [f.role for f in manifest.files] == ["samples"]
    assert manifest.file_table is None  # no data files, no file table
    assert list(dataset_files(out)) == manifest.files
    rows = list(read_samples(out))
    assert all(r.file is None and r.sha256 and r.source_url for r in rows)


def test_an_interrupted_write_publishes_nothing(out: str, samples: list[Sample]) -> None:
    class Exploding(DatasetWriter):
        def serialize(self, sample: Sample) -> dict[str, object]:
            if sample.input_name == "d":
                raise RuntimeError("power cut")
            return super().serialize(sample)

    with pytest.raises(RuntimeError, match="power cut"):
        Exploding(out).write(samples)
    # Data files may be there; without a manifest there is no dataset.
    assert (Path(out) / "data").exists()
    with pytest.raises(DatasetError, match="no dataset"):
        load_manifest(out)

    # Stopping early (a notebook's islice/break) publishes nothing either.
    it = DatasetWriter(out)(samples)
    next(it)
    it.close()
    assert not (Path(out) / "manifest.json").exists()


def test_existing_datasets_are_kept_unless_overwrite(out: str, samples: list[Sample]) -> None:
    DatasetWriter(out).write(samples[:2])
    with pytest.raises(DatasetExistsError):
        DatasetWriter(out).write(samples)
    assert load_manifest(out).counts.samples == 2
    DatasetWriter(out, overwrite=True).write(samples)
    assert load_manifest(out).counts.samples == 4
    assert verify_dataset(out) == []


def test_verify_finds_tampering(out: str, samples: list[Sample]) -> None:
    DatasetWriter(out).write(samples)
    files = list(dataset_files(out))
    victim = next(f for f in files if f.role == "data")
    (Path(out) / victim.path).write_bytes(b"tampered!")
    other = next(f for f in files if f.role == "data" and f.path != victim.path)
    (Path(out) / other.path).unlink()
    problems = verify_dataset(out)
    assert len(problems) == 2
    assert any("missing" in p for p in problems)


def test_splits_are_stable_as_the_dataset_grows(tmp_path: Path) -> None:
    root = f"memory://grow-{uuid.uuid4().hex}"
    first = [make(f"s{i}", f"x{i}".encode(), root=root) for i in range(200)]
    more = first + [make(f"s{i}", f"x{i}".encode(), root=root) for i in range(200, 500)]
    DatasetWriter(str(tmp_path / "v1")).write(first)
    DatasetWriter(str(tmp_path / "v2")).write(more)
    one = {r.input_name: r.split for r in read_samples(str(tmp_path / "v1"))}
    two = {r.input_name: r.split for r in read_samples(str(tmp_path / "v2"))}
    assert all(two[name] == split for name, split in one.items())
    share = sum(1 for s in two.values() if s == "validation") / len(two)
    assert 0.13 < share < 0.27
    fsspec.filesystem("memory").rm(root, recursive=True)


def test_split_assignment_and_grouping() -> None:
    assert assign_split("k", {"train": 1.0}) == "train"
    keys = [f"key{i}" for i in range(1000)]
    assert [assign_split(k, {"a": 0.5, "b": 0.5}) for k in keys] == [
        assign_split(k, {"a": 0.5, "b": 0.5}) for k in keys
    ]
    writer = DatasetWriter("memory://x", group_by="{job_id}")
    same_job = [make(n, n.encode(), job="jobX", root="memory://grp") for n in "pqrs"]
    assert len({assign_split(writer.group_key(s), writer.splits) for s in same_job}) == 1


def test_copy_mode_needs_lineage(out: str) -> None:
    record = PredictionRecord(
        job_id="j", input_name="x", model_id="m", model_version="1", job_status="COMPLETED"
    )
    bare = Sample(record=record, label="cat", label_state="confirmed", rule="t")
    it = DatasetWriter(out)([bare])
    assert list(it) == []
    assert it.report.drops[0].reason == "not_resolved"
    # An empty dataset is still a dataset.
    assert load_manifest(out).counts.samples == 0


def test_a_source_changed_after_resolution_is_caught(out: str) -> None:
    root = f"memory://chg-{uuid.uuid4().hex}"
    item = make("a", b"original", root=root)
    stale = item.with_payload(None)  # force a re-read at copy time
    with fsspec.open(stale.source_url, "wb") as handle:
        handle.write(b"changed")
    it = DatasetWriter(out, dedupe=False)([stale])
    assert list(it) == []
    assert it.report.drops[0].reason == "source_changed"
    assert verify_dataset(out) == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"format": "xml"},
        {"mode": "link"},
        {"format": "imagefolder", "mode": "reference"},
        {"splits": {"train": 0.5}},
        {"splits": {"../x": 1.0}},
        {"group_by": "{user}"},
        {"concurrency": 0},
    ],
)
def test_bad_settings_fail_early(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        DatasetWriter("memory://x", **kwargs)  # type: ignore[arg-type]


def test_bad_settings_name_the_argument_never_its_value() -> None:
    with pytest.raises(ConfigurationError, match=r"^DatasetWriter\(concurrency=\.\.\.\): "):
        DatasetWriter("memory://x", concurrency=0)
    with pytest.raises(ConfigurationError, match=r"storage_options") as caught:
        DatasetWriter("memory://x", storage_options={"secret": "hunter2", 1: 2})  # type: ignore[dict-item]
    assert "hunter2" not in str(caught.value)
    # Settings stay plain attributes: read as given, validated again when assigned.
    writer = DatasetWriter("memory://x/", splits={"a": 1}, storage_options={"anon": True})
    assert (writer.url, writer.splits, writer.concurrency) == ("memory://x", {"a": 1}, 16)
    assert writer.source_storage_options == {"anon": True}
    writer.concurrency = 4
    assert writer.concurrency == 4
    with pytest.raises(ConfigurationError, match="concurrency"):
        writer.concurrency = 0
    assert writer.concurrency == 4


def test_names_and_urls_are_made_safe() -> None:
    assert safe_component("../../etc/passwd") == "_.._etc_passwd"
    assert safe_component("CON") == "_CON"
    assert safe_component("tabby cat") == "tabby cat"
    assert safe_component("a\x00b\nc") == "a_b_c"
    assert public_url("https://user:secret@host/x.png") == "https://host/x.png"
    assert public_url("s3://bucket/k") == "s3://bucket/k"


@pytest.mark.anyio
async def test_async_writer_matches_sync(tmp_path: Path, samples: list[Sample]) -> None:
    DatasetWriter(str(tmp_path / "sync")).write(samples)
    it = DatasetWriter(str(tmp_path / "async")).astream(samples)
    written = [s async for s in it]
    assert len(written) == 4
    assert verify_dataset(str(tmp_path / "async")) == []
    assert set(read_samples(str(tmp_path / "sync"))) == set(read_samples(str(tmp_path / "async")))


def test_dedupe_stays_exact_when_its_index_spills_to_disk(
    out: str, scratch: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A page cache far smaller than the index: lookups go through the file.
    monkeypatch.setattr(_spill, "CACHE_KIB", 16)
    root = f"memory://many-{uuid.uuid4().hex}"
    unique = 600
    items = [
        make(f"s{i:04d}", f"content {i % unique}".encode(), job=f"j{i // 4}", root=root)
        for i in range(3 * unique)
    ]
    it = DatasetWriter(out, mode="reference")(items, report=RunReport(max_details=10_000))
    written = list(it)
    assert [s.input_name for s in written] == [f"s{i:04d}" for i in range(unique)]
    duplicates = [d for d in it.report.drops if d.reason == "duplicate_content"]
    assert len(duplicates) == 2 * unique
    for drop in duplicates:  # each names the first sample with its bytes
        i = int(drop.input_name[1:])  # type: ignore[index]
        first = i % unique
        assert drop.detail == f"same content as j{first // 4}/s{first:04d}"
    assert load_manifest(out).counts.duplicates == 2 * unique
    assert list(scratch.iterdir()) == []
    fsspec.filesystem("memory").rm(root, recursive=True)


def test_the_scratch_database_leaves_nothing_behind(
    out: str, scratch: Path, samples: list[Sample]
) -> None:
    class Exploding(DatasetWriter):
        def serialize(self, sample: Sample) -> dict[str, object]:
            if sample.input_name == "d":
                raise RuntimeError("power cut")
            return super().serialize(sample)

    with pytest.raises(RuntimeError, match="power cut"):
        Exploding(out).write(samples)
    assert list(scratch.iterdir()) == []
    it = DatasetWriter(out)(samples)
    next(it)
    # In use, yet already unlinked: a killed process leaves nothing either.
    assert list(scratch.iterdir()) == []
    it.close()
    assert list(scratch.iterdir()) == []
    DatasetWriter(out).write(samples)
    with pytest.raises(DatasetExistsError):
        DatasetWriter(out).write(samples)  # refused before any scratch is made
    assert list(scratch.iterdir()) == []


def test_a_tampered_file_table_is_caught(out: str, samples: list[Sample]) -> None:
    DatasetWriter(out).write(samples)
    table = Path(out) / "files.jsonl"
    lines = table.read_text().splitlines(keepends=True)
    assert len(lines) == 4
    # Drop one entry: the files it lists are all intact, but the list is not.
    table.write_text("".join(lines[1:]))
    problems = verify_dataset(out)
    assert problems[0].startswith("files.jsonl: size")
    assert problems[1] == "files.jsonl: its data files were not checked"
    with pytest.raises(DatasetError, match="file table"):
        list(dataset_files(out))
    # Same size, other bytes (an entry pointing at another file): caught by the hash.
    other = json.loads(lines[1])
    forged = lines[0].replace(json.loads(lines[0])["path"], other["path"])
    forged = forged.replace(json.loads(lines[0])["sha256"], other["sha256"])
    forged = forged.replace(f'"size": {json.loads(lines[0])["size"]}', f'"size": {other["size"]}')
    assert len(forged) == len(lines[0])
    assert forged != lines[0]
    table.write_text("".join([forged, *lines[1:]]))
    assert verify_dataset(out)[:1] == ["files.jsonl: sha256 differs from the manifest"]
    table.unlink()
    assert verify_dataset(out)[0] == "files.jsonl: missing"


def test_manifests_of_format_1_still_read(out: str, samples: list[Sample]) -> None:
    # Format 1 listed every file inline and had no file table.
    DatasetWriter(out).write(samples)
    every = list(dataset_files(out))
    raw = json.loads((Path(out) / "manifest.json").read_text())
    raw.update(format_version=1, files=[f.model_dump() for f in every], file_table=None)
    (Path(out) / "manifest.json").write_text(json.dumps(raw))
    (Path(out) / "files.jsonl").unlink()
    assert verify_dataset(out) == []
    assert list(dataset_files(out)) == every
    assert load_manifest(out).file_count == len(every) == 5
    victim = next(f for f in every if f.role == "data")
    (Path(out) / victim.path).unlink()
    assert verify_dataset(out) == [f"{victim.path}: missing"]
