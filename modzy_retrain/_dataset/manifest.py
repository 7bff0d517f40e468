"""The dataset manifest: the one file readers trust, written last.

A dataset is visible only through its ``manifest.json``: every file it lists exists
with the listed size and sha256. The writer publishes the manifest in one atomic
step after everything else, so a crashed or interrupted write leaves no manifest,
hence no visible dataset, on a local disk and on object stores alike.

The manifest stays small however big the dataset: it lists the sample tables itself,
and the data files (one per copied input) in a JSONL file table beside it, whose
size, sha256 and entry count it records (``file_table``). Readers trust the table
only once its hash matches (:func:`dataset_files`, :func:`verify_dataset`). Manifests
of format 1 listed every file inline; they still read the same way.

:func:`read_samples` reads the sample tables back through the manifest; each format's
reader is in ``reading.py``, the row they all give in ``rows.py``. The format itself is
documented in ``docs/dataset-format.md``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any, Literal, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modzy_retrain._core.exceptions import ConfigurationError, DatasetError
from modzy_retrain._core.fs import CHUNK, join, url_to_fs

from .quarantine import QuarantinedJob
from .reading import published_samples, row_dicts, sample_rows
from .rows import PublishedSample

MANIFEST_NAME = "manifest.json"
LATEST_NAME = "_latest.json"
FILES_NAME = "files.jsonl"
# 2: the data files moved from the manifest to its file table.
FORMAT_VERSION = 2
# A version's name: v and at least four digits (up to nine: a sane bound on a pointer).
_VERSION = re.compile(r"v(\d{4,9})")

DatasetFormat = Literal["jsonl", "csv", "parquet", "imagefolder"]
FileRole = Literal["data", "samples"]


class ManifestFile(BaseModel):
    """One file of the dataset: its path (relative to the dataset root), size and hash."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    size: int
    sha256: str
    role: FileRole


class FileTable(BaseModel):
    """The JSONL table of a dataset's data files: one :class:`ManifestFile` per line.

    Attributes:
        path: The table's path, relative to the dataset root (``files.jsonl``, or
            ``vNNNN/files.jsonl`` in a versioned dataset).
        size: The table's size in bytes.
        sha256: The table's sha256: a table that does not match is not trusted.
        entries: How many files it lists.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    size: int
    sha256: str
    entries: int


class ManifestCounts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    samples: int = 0
    duplicates: int = 0
    by_label: dict[str, int] = Field(default_factory=dict)
    by_label_state: dict[str, int] = Field(default_factory=dict)
    by_split: dict[str, int] = Field(default_factory=dict)
    by_model: dict[str, int] = Field(default_factory=dict)


class Checkpoint(BaseModel):
    """Where the next incremental run resumes, published with each dataset version.

    Attributes:
        version: The version that holds everything before the cursor.
        cursor: Creation time of the first job the next run must read (UTC). Every
            job created before it is in this version or was deliberately left out.
        boundary_ids: Jobs created exactly at ``cursor`` that this version already
            holds; the next run skips them (when it re-reads no lag window).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    version: str
    cursor: datetime | None = None
    boundary_ids: list[str] = Field(default_factory=list)

    @property
    def cursor_text(self) -> str | None:
        return self.cursor.isoformat() if self.cursor else None


class Changes(BaseModel):
    """What a version changed against the previous one (sample keys are job/input)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    previous: str | None = None
    added: int = 0
    retracted: int = 0
    relabelled: int = 0
    carried: int = 0
    # Added or relabelled into a confirmed, corrected or labelled label (a trainable one).
    trainable: int = 0
    trainable_by_label: dict[str, int] = Field(default_factory=dict)
    retracted_samples: list[dict[str, Any]] = Field(default_factory=list)
    relabelled_samples: list[dict[str, Any]] = Field(default_factory=list)

    @property
    def nothing_new(self) -> bool:
        return self.added == 0 and self.retracted == 0 and self.relabelled == 0


class TriggerState(BaseModel):
    """The retraining gate's decision for one version (recorded in its manifest).

    Attributes:
        ready: Whether this version passed the gate; the trigger fires once for it.
        reason: Why it is or is not ready.
        new: Trainable samples this version brings (a confirmed, corrected or labelled label,
            added, or relabelled into such a label): what the thresholds count.
        new_by_label: The same, per label.
        new_rows: Rows this version added, whatever their label state.
        since_last: Trainable samples since the last version whose trigger fired,
            this one included.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    ready: bool
    reason: str
    new: int = 0
    new_by_label: dict[str, int] = Field(default_factory=dict)
    new_rows: int = 0
    since_last: int = 0


class Manifest(BaseModel):
    """What a dataset holds and how it was made.

    Attributes:
        files: The sample tables (role ``samples``). Manifests of format 1 also
            list the data files here.
        file_table: The table listing the data files (the copied inputs), or
            ``None`` when there are none (reference mode). Read every file of a
            dataset with :func:`dataset_files`.
        samples_files: The sample tables (one per split for ``imagefolder``).
        counts: Samples per label, label state, split and model; duplicates skipped.
        classes: Per model id, its classes in a stable order: a class keeps its index
            in every later version, new ones are appended (empty in manifests
            written before it).
        query: The history query that produced the data (with, under
            ``quarantine``, the jobs it skipped: see :attr:`quarantined`).
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
    file_table: FileTable | None = None
    counts: ManifestCounts
    classes: dict[str, list[str]] = Field(default_factory=dict)
    query: dict[str, Any] | None = None
    stages: list[dict[str, Any]] = Field(default_factory=list)
    version: str | None = None
    changes: Changes | None = None
    checkpoint: Checkpoint | None = None
    trigger: TriggerState | None = None

    @property
    def quarantined(self) -> tuple[QuarantinedJob, ...]:
        """The jobs quarantined when this version was written: their results stayed
        unavailable run after run, and its checkpoint moved past them without them
        (a job its run retried and read is not listed: its samples are in)."""
        held = (self.query or {}).get("quarantine") or {}
        return tuple(QuarantinedJob(**job) for job in held.get("jobs", ()))

    @property
    def file_count(self) -> int:
        """How many files the dataset holds: sample tables and data files."""
        return len(self.files) + (self.file_table.entries if self.file_table else 0)

    def to_json(self) -> bytes:
        return self.model_dump_json(indent=2).encode("utf-8")


def _read_json(fs: Any, path: str) -> bytes | None:
    try:
        return bytes(fs.cat_file(path))
    except FileNotFoundError:
        return None


def latest_version(url: str, *, storage_options: Mapping[str, Any] | None = None) -> str | None:
    """The latest published version of a versioned dataset (``None``: none yet).

    A version is published once its manifest exists (a writer creates it only if
    absent). ``_latest.json`` is a hint written after each publication: it may lag
    behind (a writer that stopped between the two steps), never run ahead, so the
    versions after the one it names are looked for until one is missing.
    """
    fs, root = url_to_fs(url, storage_options)
    raw = _read_json(fs, join(root, LATEST_NAME))
    number = 0
    if raw is not None:
        try:
            version = json.loads(raw)["version"]
        except (ValueError, KeyError, TypeError):
            raise DatasetError(f"unreadable {LATEST_NAME} at {url}") from None
        matched = _VERSION.fullmatch(version) if isinstance(version, str) else None
        if matched is None:
            raise DatasetError(
                f"unreadable {LATEST_NAME} at {url}: {str(version)[:40]!r} is no version "
                "(v0001, v0002...)"
            )
        number = int(matched.group(1))
    while fs.exists(join(root, version_manifest(f"v{number + 1:04d}"))):
        number += 1
    return f"v{number:04d}" if number else None


def version_manifest(version: str) -> str:
    """A version's manifest, relative to the dataset's root: its publication."""
    return f"{version}/{MANIFEST_NAME}"


def list_versions(url: str, *, storage_options: Mapping[str, Any] | None = None) -> list[str]:
    """Every published version of a versioned dataset, oldest first."""
    latest = latest_version(url, storage_options=storage_options)
    if latest is None:
        return []
    return [f"v{n:04d}" for n in range(1, int(latest[1:]) + 1)]


def manifest_path(url: str, version: str | None, storage_options: Mapping[str, Any] | None) -> str:
    """The manifest's path relative to the dataset root (``vNNNN/manifest.json`` or flat)."""
    latest = latest_version(url, storage_options=storage_options)
    if latest is None:
        if version is not None:
            raise DatasetError(f"{url} has no versions")
        return MANIFEST_NAME
    wanted = version or latest
    # Versions are numbered from v0001 up to the pointer; derived, not read again.
    published = {f"v{n:04d}" for n in range(1, int(latest[1:]) + 1)}
    if wanted not in published:
        # A version folder past the pointer belongs to a run that never published.
        raise DatasetError(f"{url} has no published version {wanted} (latest is {latest})")
    return f"{wanted}/{MANIFEST_NAME}"


def load_manifest(
    url: str, *, version: str | None = None, storage_options: Mapping[str, Any] | None = None
) -> Manifest:
    """Read a dataset's manifest (for a versioned dataset: the latest, or ``version``).

    Raises:
        DatasetError: There is no manifest at ``url`` (no dataset), or it is invalid.
    """
    fs, root = url_to_fs(url, storage_options)
    path = join(root, manifest_path(url, version, storage_options))
    raw = _read_json(fs, path)
    if raw is None:
        raise DatasetError(f"no dataset at {url}: {MANIFEST_NAME} is missing")
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as exc:
        raise DatasetError(f"invalid manifest at {url}: {exc.error_count()} problem(s)") from None


def load_checkpoint(
    url: str, *, storage_options: Mapping[str, Any] | None = None
) -> Checkpoint | None:
    """The checkpoint of a versioned dataset's latest version (``None``: no version yet)."""
    if latest_version(url, storage_options=storage_options) is None:
        return None
    return load_manifest(url, storage_options=storage_options).checkpoint


def _check_file(fs: Any, root: str, path: str, size: int, sha256: str) -> str | None:
    """The problem with one listed file, or ``None`` when it is intact."""
    digest = hashlib.sha256()
    seen = 0
    try:
        with fs.open(join(root, path), "rb") as handle:
            while chunk := handle.read(CHUNK):
                seen += len(chunk)
                digest.update(chunk)
    except FileNotFoundError:
        return f"{path}: missing"
    if seen != size:
        return f"{path}: size {seen}, manifest says {size}"
    if digest.hexdigest() != sha256:
        return f"{path}: sha256 differs from the manifest"
    return None


def _check_table(fs: Any, root: str, table: FileTable) -> str | None:
    """The problem with a file table (hash, size or entry count), or ``None``."""
    problem = _check_file(fs, root, table.path, table.size, table.sha256)
    if problem is not None:
        return problem
    entries = sum(1 for _ in _table_entries(fs, root, table))
    if entries != table.entries:
        return f"{table.path}: {entries} entries, manifest says {table.entries}"
    return None


def _table_entries(fs: Any, root: str, table: FileTable) -> Iterator[ManifestFile]:
    with fs.open(join(root, table.path), "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                yield ManifestFile.model_validate_json(line)
            except ValidationError:
                raise DatasetError(f"{table.path}, line {number}: not a file entry") from None


def dataset_files(
    url: str, *, version: str | None = None, storage_options: Mapping[str, Any] | None = None
) -> Iterator[ManifestFile]:
    """Yield every file of a dataset, as its manifest records it: the sample tables,
    then the data files of the manifest's file table, read one line at a time.

    The file table is trusted only once it matches the manifest (size, sha256, entry
    count), so it is read twice; memory stays flat however many files it lists.

    Raises:
        DatasetError: No dataset, or its file table does not match the manifest.
    """
    manifest = load_manifest(url, version=version, storage_options=storage_options)
    yield from manifest.files
    table = manifest.file_table
    if table is None:
        return
    fs, root = url_to_fs(url, storage_options)
    problem = _check_table(fs, root, table)
    if problem is not None:
        raise DatasetError(f"the file table of {url} does not match its manifest: {problem}")
    yield from _table_entries(fs, root, table)


def verify_dataset(
    url: str, *, version: str | None = None, storage_options: Mapping[str, Any] | None = None
) -> list[str]:
    """Check every file the manifest lists: present, right size, right sha256.

    The data files are checked through the manifest's file table, itself checked
    first (a table that does not match is reported, and its entries are not trusted).
    Returns the problems found (empty when the dataset is intact).
    """
    manifest = load_manifest(url, version=version, storage_options=storage_options)
    fs, root = url_to_fs(url, storage_options)
    problems = []
    for entry in manifest.files:
        problem = _check_file(fs, root, entry.path, entry.size, entry.sha256)
        if problem is not None:
            problems.append(problem)
    table = manifest.file_table
    if table is not None:
        try:
            problem = _check_table(fs, root, table)
        except DatasetError as exc:
            problem = str(exc)
        if problem is not None:
            problems.append(problem)
            problems.append(f"{table.path}: its data files were not checked")
            return problems
        for entry in _table_entries(fs, root, table):
            problem = _check_file(fs, root, entry.path, entry.size, entry.sha256)
            if problem is not None:
                problems.append(problem)
    return problems


@overload
def read_samples(
    url: str,
    *,
    version: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    as_dicts: Literal[False] = False,
) -> Iterator[PublishedSample]: ...


@overload
def read_samples(
    url: str,
    *,
    version: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    as_dicts: Literal[True],
) -> Iterator[dict[str, Any]]: ...


def read_samples(
    url: str,
    *,
    version: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    as_dicts: bool = False,
) -> Iterator[PublishedSample] | Iterator[dict[str, Any]]:
    """Yield the samples of a dataset, trusting only the manifest, as typed records.

    Reads every format: JSONL, CSV and Parquet (the ``parquet`` extra), versioned or
    not, and image folders (every split and ``unlabeled/``). Each sample is the same
    :class:`PublishedSample` whatever the format (see ``docs/dataset-format.md`` for
    what a format cannot hold). The tables are streamed, in the manifest's order.

    Args:
        url: The dataset.
        version: For a versioned dataset, the version to read (default: the latest).
        storage_options: fsspec options for ``url``.
        as_dicts: Yield each row as a plain dict instead, in its JSON form (what
            ``DatasetWriter.serialize`` returned: timestamps as ISO text), without
            validating it; an image folder's rows keep their ``file_name``.

    Raises:
        DatasetError: No dataset at ``url``, or a row that is not a published sample
            (while iterating; ``as_dicts=True`` reads it).
        MissingDependencyError: A Parquet dataset, without pyarrow.
    """
    if not isinstance(as_dicts, bool):
        raise ConfigurationError("read_samples(as_dicts=...): must be True or False")
    manifest = load_manifest(url, version=version, storage_options=storage_options)
    fs, root = url_to_fs(url, storage_options)
    rows = sample_rows(fs, root, manifest.format, manifest.samples_files)
    return row_dicts(rows) if as_dicts else published_samples(manifest.format, rows)
