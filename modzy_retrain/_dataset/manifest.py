"""The dataset manifest: the one file readers trust, written last.

A dataset is visible only through its ``manifest.json``: every file it lists exists
with the listed size and sha256 (and each sample table with the listed number of rows).
The writer publishes the manifest in one atomic step after everything else, so a
crashed or interrupted write leaves no manifest, hence no visible dataset, on a local
disk and on object stores alike.

The manifest stays small however big the dataset: it lists the sample tables itself,
and the data files (one per copied input) in a JSONL file table beside it, whose
size, sha256 and entry count it records (``file_table``). Every path it records is
relative to the dataset's root and stays under it (a manifest naming
``../outside.jsonl`` is invalid). Manifests of format 1 listed every file inline, and
those of format 2 recorded no row counts; they still read.

Reading the tables back (``read_samples``, each table checked against its entry as it
is read) is in ``reading.py``; checking every file (``verify_dataset``,
``dataset_files``) in ``verify.py``. The format itself is documented in
``docs/dataset-format.md``.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from modzy_retrain._core.exceptions import DatasetError
from modzy_retrain._core.fs import join, url_to_fs

from .quarantine import QuarantinedJob

MANIFEST_NAME = "manifest.json"
LATEST_NAME = "_latest.json"
FILES_NAME = "files.jsonl"
# 2: the data files moved from the manifest to its file table. 3: each sample table's
# entry records its rows. 4: the vote tallies (``tallies``) and the confusions.
FORMAT_VERSION = 4
# A version's name: v and at least four digits (up to nine: a sane bound on a pointer).
_VERSION = re.compile(r"v(\d{4,9})")

DatasetFormat = Literal["jsonl", "csv", "parquet", "imagefolder"]
FileRole = Literal["data", "samples"]
_DRIVE = re.compile(r"^[A-Za-z]:")


def confined(path: str) -> str:
    """``path`` if it is a plain relative path that stays under the dataset's root.

    Raises:
        ValueError: It is absolute (``/``, ``~``, a drive letter), a URL or an fsspec
            chain, has a ``..``, ``.`` or empty segment, a backslash or a control
            character.
    """
    if not path:
        raise ValueError("an empty path")
    if any(unicodedata.category(ch) == "Cc" for ch in path):
        raise ValueError(f"{path[:80]!r} holds a control character")
    if "\\" in path:
        raise ValueError(f"{path[:80]!r} holds a backslash")
    if path.startswith(("/", "~")) or _DRIVE.match(path):
        raise ValueError(f"{path[:80]!r} is absolute: paths are relative to the dataset's root")
    if "://" in path or "::" in path:
        raise ValueError(f"{path[:80]!r} is a URL: paths are relative to the dataset's root")
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        raise ValueError(
            f"{path[:80]!r} has an empty, '.' or '..' segment: it could leave the root"
        )
    return path


# A path the manifest records: relative to the dataset's root, and under it.
RelativePath = Annotated[str, AfterValidator(confined)]


class ManifestFile(BaseModel):
    """One file of the dataset: its path (relative to the dataset root), size and hash.

    Attributes:
        rows: A sample table's number of rows (``None`` for a data file, and in
            manifests written before format 3): readers check it too.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: RelativePath
    size: int = Field(ge=0)
    sha256: str
    role: FileRole
    rows: int | None = Field(default=None, ge=0)


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

    path: RelativePath
    size: int = Field(ge=0)
    sha256: str
    entries: int = Field(ge=0)


class VoteCounts(BaseModel):
    """Inputs with a result, and how users voted on them.

    An input is *up-voted* when it has at least one up-vote, *down-voted* when it has at
    least one down-vote; *both* counts the inputs that are both (so they are in
    ``up_voted`` and in ``down_voted`` too). Inputs nobody voted on are
    ``inputs - up_voted - down_voted + both``.

    Attributes:
        inputs: Inputs with a result (a failed input has none).
        up_voted: Inputs with at least one up-vote.
        down_voted: Inputs with at least one down-vote.
        both: Inputs with up- and down-votes.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    inputs: int = Field(default=0, ge=0)
    up_voted: int = Field(default=0, ge=0)
    down_voted: int = Field(default=0, ge=0)
    both: int = Field(default=0, ge=0)

    @property
    def voted(self) -> int:
        """Inputs with at least one vote."""
        return self.up_voted + self.down_voted - self.both


class JobTally(VoteCounts):
    """One job's tally: a line of a version's tallies table.

    Attributes:
        job_id: The job.
        model_id, model_version, model_name: The model that ran it.
        day: The day (UTC) the job was submitted (created, when the history gives no
            submission time); ``None`` when it gives neither.
        predicted: Per predicted class (the model's top class), the same counts;
            inputs whose result names no class are under none.
    """

    job_id: str
    model_id: str
    model_version: str
    model_name: str | None = None
    day: date | None = None
    predicted: dict[str, VoteCounts] = Field(default_factory=dict)


class TallyTotal(VoteCounts):
    """The tallies of one model version on one day, summed over its jobs.

    Attributes:
        model_id, model_version, model_name: The model.
        day: The day (UTC) the jobs were submitted (``None``: unknown).
        jobs: How many jobs are summed.
        predicted: Per predicted class, the counts summed.
    """

    model_id: str
    model_version: str
    model_name: str | None = None
    day: date | None = None
    jobs: int = Field(default=0, ge=0)
    predicted: dict[str, VoteCounts] = Field(default_factory=dict)


class VoteTallies(BaseModel):
    """A version's vote tallies, as its manifest records them (``Manifest.tallies``).

    Attributes:
        table: The tallies table, one :class:`JobTally` per line (``None`` when no job
            was tallied): its path, size, sha256 and number of entries (jobs).
        jobs: How many jobs are tallied.
        totals: The table summed per model, model version and day, in that order.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    table: FileTable | None = None
    jobs: int = Field(default=0, ge=0)
    totals: list[TallyTotal] = Field(default_factory=list)


class ManifestCounts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    samples: int = 0
    duplicates: int = 0
    by_label: dict[str, int] = Field(default_factory=dict)
    by_label_state: dict[str, int] = Field(default_factory=dict)
    by_split: dict[str, int] = Field(default_factory=dict)
    by_model: dict[str, int] = Field(default_factory=dict)
    # Per model, predicted class, then the corrected or human label: the samples whose
    # label a correction or a person gave (``corrected``, ``labelled``), by what the
    # model had predicted.
    confusions: dict[str, dict[str, dict[str, int]]] = Field(default_factory=dict)


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
        counts: Samples per label, label state, split and model; duplicates skipped;
            and the confusions (per model, predicted class, then corrected or human label).
        classes: Per model id, its classes in a stable order: a class keeps its index
            in every later version, new ones are appended (empty in manifests
            written before it).
        query: The history query that produced the data (with, under
            ``quarantine``, the jobs it skipped: see :attr:`quarantined`).
        stages: The settings of each stage of the run.
        tallies: The vote tallies of every job the writes read, this version's run and
            the earlier ones (``None`` in manifests written before them).
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
    samples_files: list[RelativePath]
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
    tallies: VoteTallies | None = None

    @model_validator(mode="after")
    def _tables_described(self) -> Manifest:
        # A table is read only against its size and sha256: each must have them.
        described = {f.path for f in self.files if f.role == "samples"}
        for name in self.samples_files:
            if name not in described:
                raise ValueError(f"sample table {name!r} has no entry (size, sha256) in files")
        return self

    def table(self, path: str) -> ManifestFile:
        """The entry of one of its sample tables."""
        return next(f for f in self.files if f.path == path and f.role == "samples")

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
        """The manifest as the UTF-8 JSON written to ``manifest.json``."""
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
        raise DatasetError(f"invalid manifest at {url}: {problems(exc)}") from None


def problems(exc: ValidationError, limit: int = 3) -> str:
    """A validation error's first problems, each with where it is (never the input)."""
    shown = [
        f"{'.'.join(map(str, e['loc'])) or 'manifest'}: {e['msg'].removeprefix('Value error, ')}"
        for e in exc.errors(include_url=False, include_input=False)[:limit]
    ]
    more = exc.error_count() - len(shown)
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def load_checkpoint(
    url: str, *, storage_options: Mapping[str, Any] | None = None
) -> Checkpoint | None:
    """The checkpoint of a versioned dataset's latest version (``None``: no version yet)."""
    if latest_version(url, storage_options=storage_options) is None:
        return None
    return load_manifest(url, storage_options=storage_options).checkpoint
