"""The dataset manifest: the one file readers trust, written last.

A dataset is visible only through its ``manifest.json``: every file it lists exists
with the listed size and sha256. The writer publishes the manifest in one atomic
step after everything else, so a crashed or interrupted write leaves no manifest,
hence no visible dataset, on a local disk and on object stores alike.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ._exceptions import DatasetError
from ._fs import CHUNK, join, url_to_fs

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1

DatasetFormat = Literal["jsonl", "csv", "parquet", "imagefolder"]
FileRole = Literal["data", "samples"]


class ManifestFile(BaseModel):
    """One file of the dataset: its path (relative to the dataset root), size and hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    size: int
    sha256: str
    role: FileRole


class ManifestCounts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    samples: int = 0
    duplicates: int = 0
    by_label: dict[str, int] = Field(default_factory=dict)
    by_label_state: dict[str, int] = Field(default_factory=dict)
    by_split: dict[str, int] = Field(default_factory=dict)
    by_model: dict[str, int] = Field(default_factory=dict)


class Manifest(BaseModel):
    """What a dataset holds and how it was made.

    Attributes:
        files: Every file of the dataset (copied inputs and sample tables).
        samples_files: The sample tables (one per split for ``imagefolder``).
        counts: Samples per label, label state, split and model; duplicates skipped.
        query: The history query that produced the data.
        stages: The settings of each stage of the run.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    format_version: int = FORMAT_VERSION
    library: str = "modzy_retrain"
    library_version: str
    run_id: str
    created_at: datetime
    format: DatasetFormat
    mode: Literal["copy", "reference"]
    splits: dict[str, float]
    group_by: str
    samples_files: list[str]
    files: list[ManifestFile]
    counts: ManifestCounts
    query: dict[str, Any] | None = None
    stages: list[dict[str, Any]] = Field(default_factory=list)

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode("utf-8")


def load_manifest(url: str, *, storage_options: Mapping[str, Any] | None = None) -> Manifest:
    """Read a dataset's manifest.

    Raises:
        DatasetError: There is no manifest at ``url`` (no dataset), or it is invalid.
    """
    fs, root = url_to_fs(url, storage_options)
    path = join(root, MANIFEST_NAME)
    try:
        raw = fs.cat_file(path)
    except FileNotFoundError:
        raise DatasetError(f"no dataset at {url}: {MANIFEST_NAME} is missing") from None
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as exc:
        raise DatasetError(f"invalid manifest at {url}: {exc.error_count()} problem(s)") from None


def verify_dataset(url: str, *, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Check every file the manifest lists: present, right size, right sha256.

    Returns the problems found (empty when the dataset is intact).
    """
    manifest = load_manifest(url, storage_options=storage_options)
    fs, root = url_to_fs(url, storage_options)
    problems = []
    for entry in manifest.files:
        path = join(root, entry.path)
        digest = hashlib.sha256()
        size = 0
        try:
            with fs.open(path, "rb") as handle:
                while chunk := handle.read(CHUNK):
                    size += len(chunk)
                    digest.update(chunk)
        except FileNotFoundError:
            problems.append(f"{entry.path}: missing")
            continue
        if size != entry.size:
            problems.append(f"{entry.path}: size {size}, manifest says {entry.size}")
        elif digest.hexdigest() != entry.sha256:
            problems.append(f"{entry.path}: sha256 differs from the manifest")
    return problems


def read_samples(
    url: str, *, storage_options: Mapping[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """Yield the sample rows of a JSONL or image-folder dataset, trusting only the manifest."""
    manifest = load_manifest(url, storage_options=storage_options)
    if manifest.format not in ("jsonl", "imagefolder"):
        raise DatasetError(
            f"read_samples reads jsonl and imagefolder datasets, not {manifest.format}"
        )
    fs, root = url_to_fs(url, storage_options)
    for name in manifest.samples_files:
        with fs.open(join(root, name), "rb") as handle:
            for line in handle:
                if line.strip():
                    row: dict[str, Any] = json.loads(line)
                    yield row
