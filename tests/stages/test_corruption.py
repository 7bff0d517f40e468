"""Corruption is detected, never carried forward (issue 17, item 4).

A table whose bytes no longer match its manifest (cut short, grown, altered) is named
as soon as it is read: by ``read_samples`` (each table checked at its end, so reading
stays streamed), by the next version's merge (which publishes nothing), and by
``verify_dataset`` (which checks every file the manifest names). A manifest naming a
path outside the dataset's root is refused.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from modzy_retrain import (
    DatasetError,
    DatasetWriter,
    PredictionRecord,
    Sample,
    dataset_files,
    latest_version,
    load_manifest,
    read_samples,
    to_pandas,
    verify_dataset,
)
from modzy_retrain._dataset.manifest import LATEST_NAME, MANIFEST_NAME

FORMATS = ["jsonl", "csv", "parquet", "imagefolder"]


def make(root: str, job: str, name: str, data: bytes, label: str = "cat") -> Sample:
    url = f"{root}/{job}/{name}.png"
    with fsspec.open(url, "wb") as handle:
        handle.write(data)
    record = PredictionRecord(
        job_id=job, input_name=name, model_id="m", model_version="1", job_status="COMPLETED"
    )
    return Sample(
        record=record,
        label=label,
        label_state="confirmed",
        rule="test",
        source_url=url,
        sha256=hashlib.sha256(data).hexdigest(),
        size=len(data),
    )


@pytest.fixture
def source() -> Iterator[str]:
    root = f"memory://corruption-{uuid.uuid4().hex}"
    yield root
    fsspec.filesystem("memory").rm(root, recursive=True)


def four(source: str) -> list[Sample]:
    return [make(source, f"j{n}", f"in{n}", f"bytes {n}".encode()) for n in range(1, 5)]


def sample_table(url: str, suffix: str = "") -> Path:
    """The (first) sample table of a dataset's latest version ending with ``suffix``."""
    manifest = load_manifest(url)
    name = next(n for n in manifest.samples_files if n.endswith(suffix))
    return Path(url) / name


def keep_lines(path: Path, count: int) -> None:
    """Cut a table after ``count`` lines: what is left parses, whole rows only."""
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:count]))


def test_a_truncated_previous_table_is_never_merged(tmp_path: Path, source: str) -> None:
    # The issue's case: v0001's 4 rows cut to 2, then a new version was published
    # without 2 samples, reporting 0 retracted, and verify_dataset passed.
    url = str(tmp_path / "ds")
    DatasetWriter(url, versioned=True).write(four(source))
    table = sample_table(url)
    keep_lines(table, 2)
    with pytest.raises(DatasetError, match=re.escape(table.name)) as caught:
        DatasetWriter(url, versioned=True).write([make(source, "j5", "in5", b"five")])
    assert "manifest says" in str(caught.value)
    assert latest_version(url) == "v0001"  # nothing published
    assert not (tmp_path / "ds" / "v0002" / MANIFEST_NAME).exists()
    assert verify_dataset(url)[0].startswith(f"v0001/{table.name}: size ")


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_merged_jsonl_table_of_a_csv_or_parquet_version_is_checked(
    tmp_path: Path, source: str, fmt: Any
) -> None:
    url = str(tmp_path / "ds")
    DatasetWriter(url, versioned=True, format=fmt).write(four(source))
    table = sample_table(url, ".jsonl")
    keep_lines(table, 3)
    with pytest.raises(DatasetError, match=re.escape(table.name)):
        DatasetWriter(url, versioned=True, format=fmt).write([make(source, "j5", "in5", b"5")])
    assert latest_version(url) == "v0001"


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "cut at a row":
        lines = data.splitlines(keepends=True)
        path.write_bytes(b"".join(lines[:-1]))
    elif how == "grown":
        path.write_bytes(data + data.splitlines(keepends=True)[-1])
    elif how == "one byte changed":
        index = data.rindex(b"cat")
        path.write_bytes(data[:index] + b"c@t" + data[index + 3 :])
    else:  # cut mid-line
        path.write_bytes(data[: len(data) * 2 // 3])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("how", ["cut at a row", "grown", "one byte changed", "cut mid-line"])
def test_reading_names_a_damaged_table(tmp_path: Path, source: str, fmt: Any, how: str) -> None:
    url = str(tmp_path / "ds")
    DatasetWriter(url, format=fmt).write(four(source))
    table = sample_table(url, {"imagefolder": ".jsonl"}.get(fmt, ""))
    if fmt == "parquet" and how != "one byte changed":
        how = "cut mid-line"  # a Parquet file has no lines: cut it short anyway
    damage(table, how)
    relative = table.relative_to(url).as_posix()
    with pytest.raises(DatasetError) as caught:
        list(read_samples(url))
    assert relative in str(caught.value)
    with pytest.raises(DatasetError, match=re.escape(relative)):
        list(read_samples(url, as_dicts=True))
    assert any(p.startswith(relative) for p in verify_dataset(url))


def test_a_csv_table_cut_inside_a_quoted_cell_names_the_file(tmp_path: Path, source: str) -> None:
    url = str(tmp_path / "ds")
    quoted = make(source, "j5", "in5", b"5", label='tabby, "the" cat')
    DatasetWriter(url, format="csv").write([*four(source), quoted])
    table = sample_table(url)
    data = table.read_bytes()
    table.write_bytes(data[: data.rindex(b'"tabby') + 3])  # inside the quoted label
    with pytest.raises(DatasetError, match=re.escape("samples.csv")):
        list(read_samples(url))


def test_a_table_cut_inside_a_character_names_the_file(tmp_path: Path, source: str) -> None:
    url = str(tmp_path / "ds")
    DatasetWriter(url, format="csv").write([make(source, "j1", "in1", b"1", label="ünïcödé")])
    table = sample_table(url)
    data = table.read_bytes()
    table.write_bytes(data[: data.index("ü".encode()) + 1])  # half of a UTF-8 character
    with pytest.raises(DatasetError, match=re.escape("samples.csv")):
        list(read_samples(url))


def rewrite_manifest(url: str, change: Any) -> None:
    path = Path(url) / MANIFEST_NAME
    raw = json.loads(path.read_text())
    change(raw)
    path.write_text(json.dumps(raw))


@pytest.mark.parametrize("fmt", FORMATS)
def test_the_manifest_records_each_tables_rows_and_reading_checks_them(
    tmp_path: Path, source: str, fmt: Any
) -> None:
    url = str(tmp_path / "ds")
    DatasetWriter(url, format=fmt).write(four(source))
    manifest = load_manifest(url)
    assert manifest.format_version == 4
    tables = [f for f in manifest.files if f.role == "samples"]
    assert sum(f.rows or 0 for f in tables) == manifest.counts.samples == 4
    assert all(f.rows is not None for f in tables)

    def miscount(raw: dict[str, Any]) -> None:
        raw["files"][0]["rows"] += 1

    rewrite_manifest(url, miscount)
    first = tables[0].path
    with pytest.raises(DatasetError, match=f"{first}: {tables[0].rows} rows, manifest says"):
        list(read_samples(url))
    assert verify_dataset(url) == [
        f"{first}: {tables[0].rows} rows, manifest says {tables[0].rows + 1}"
    ]


def test_manifests_without_row_counts_still_read(tmp_path: Path, source: str) -> None:
    url = str(tmp_path / "ds")
    DatasetWriter(url).write(four(source))

    def forget(raw: dict[str, Any]) -> None:
        raw["format_version"] = 2
        for entry in raw["files"]:
            del entry["rows"]

    rewrite_manifest(url, forget)
    assert len(list(read_samples(url))) == 4
    assert verify_dataset(url) == []
    # Size and sha256 are still checked.
    keep_lines(sample_table(url), 3)
    with pytest.raises(DatasetError, match=re.escape("samples.jsonl: size")):
        list(read_samples(url))


OUTSIDE = [
    "../outside.jsonl",
    "a/../../outside.jsonl",
    "/etc/outside.jsonl",
    "C:/outside.jsonl",
    "a\\..\\..\\outside.jsonl",
    "file:///tmp/outside.jsonl",
    "memory://elsewhere/outside.jsonl",
    "simplecache::outside.jsonl",
    "~/outside.jsonl",
    "./samples.jsonl",
    "a//samples.jsonl",
    "",
]


@pytest.mark.parametrize("path", OUTSIDE)
def test_manifest_paths_stay_under_the_root(tmp_path: Path, source: str, path: str) -> None:
    url = str(tmp_path / "ds")
    DatasetWriter(url).write(four(source))
    table = sample_table(url)
    # A readable table outside the root, matching what the manifest records.
    (tmp_path / "outside.jsonl").write_bytes(table.read_bytes())

    def escape(raw: dict[str, Any]) -> None:
        raw["samples_files"] = [path]
        raw["files"][0]["path"] = path

    rewrite_manifest(url, escape)
    with pytest.raises(DatasetError, match="invalid manifest") as caught:
        load_manifest(url)
    assert "samples_files" in str(caught.value)
    for call in (read_samples, verify_dataset, dataset_files):
        with pytest.raises(DatasetError, match="invalid manifest"):
            list(call(url))  # type: ignore[operator]


def test_a_file_table_path_outside_the_root_is_refused(tmp_path: Path, source: str) -> None:
    url = str(tmp_path / "ds")
    DatasetWriter(url).write(four(source))

    def escape(raw: dict[str, Any]) -> None:
        raw["file_table"]["path"] = "../files.jsonl"

    rewrite_manifest(url, escape)
    with pytest.raises(DatasetError, match=r"invalid manifest.*file_table\.path"):
        load_manifest(url)


def test_a_file_table_entry_outside_the_root_is_reported(tmp_path: Path, source: str) -> None:
    # Table and manifest forged together: the entry itself is still refused.
    url = str(tmp_path / "ds")
    DatasetWriter(url).write(four(source))
    files = Path(url) / "files.jsonl"
    lines = files.read_text().splitlines(keepends=True)
    entry = json.loads(lines[0])
    entry["path"] = "../../etc/passwd"
    lines[0] = json.dumps(entry) + "\n"
    files.write_text("".join(lines))
    data = files.read_bytes()

    def forge(raw: dict[str, Any]) -> None:
        raw["file_table"].update(size=len(data), sha256=hashlib.sha256(data).hexdigest())

    rewrite_manifest(url, forge)
    problems = verify_dataset(url)
    assert any("files.jsonl, line 1" in p and "root" in p for p in problems), problems
    with pytest.raises(DatasetError, match=re.escape("files.jsonl, line 1")):
        list(dataset_files(url))


def test_a_samples_table_the_manifest_does_not_describe_is_refused(
    tmp_path: Path, source: str
) -> None:
    # Every table read must have its size and sha256 in the manifest's files.
    url = str(tmp_path / "ds")
    DatasetWriter(url).write(four(source))
    (Path(url) / "more.jsonl").write_text("")

    def add(raw: dict[str, Any]) -> None:
        raw["samples_files"].append("more.jsonl")

    rewrite_manifest(url, add)
    with pytest.raises(DatasetError, match=re.escape("more.jsonl")):
        load_manifest(url)


@pytest.mark.parametrize("pointer", ["v99999999999", "vx"])
@pytest.mark.timeout(10)
def test_an_absurd_pointer_stops_every_reader_and_writer_at_once(
    tmp_path: Path, source: str, pointer: str
) -> None:
    # latest_version itself: tests/test_commit_protocol.py; here what builds on it.
    url = str(tmp_path / "ds")
    DatasetWriter(url, versioned=True).write(four(source))
    (Path(url) / LATEST_NAME).write_text(json.dumps({"version": pointer}))
    for call in (read_samples, verify_dataset, dataset_files, load_manifest):
        with pytest.raises(DatasetError, match="is no version"):
            list(call(url))  # type: ignore[operator]
    with pytest.raises(DatasetError, match="is no version"):
        DatasetWriter(url, versioned=True).write([])


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("how", ["cut at a row", "one byte changed"])
def test_the_training_loaders_check_every_table(
    tmp_path: Path, source: str, fmt: Any, how: str
) -> None:
    url = str(tmp_path / "ds")
    DatasetWriter(url, format=fmt).write(four(source))
    assert len(to_pandas(url)) == 4
    table = sample_table(url, {"imagefolder": ".jsonl"}.get(fmt, ""))
    damage(table, "cut mid-line" if fmt == "parquet" and how != "one byte changed" else how)
    with pytest.raises(DatasetError, match=re.escape(table.relative_to(url).as_posix())):
        to_pandas(url)
