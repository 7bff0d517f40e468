"""``DatasetWriter``: write samples to any fsspec URL, and publish them atomically.

Layouts (``format``):

- ``jsonl`` (default): ``samples.jsonl``, one row per sample with its provenance; in
  ``copy`` mode the raw inputs go to ``data/<sha256[:2]>/<sha256><ext>``.
- ``csv``: ``samples.csv``, the same columns (lists and objects JSON-encoded).
- ``parquet``: ``samples.parquet`` (the ``parquet`` extra), the same columns.
- ``imagefolder``: ``<split>/<label>/<name>`` plus ``<split>/metadata.jsonl``, the
  layout Hugging Face ``datasets`` loads as ``imagefolder``; samples without a label
  go to ``unlabeled/`` (with its own ``metadata.jsonl``), outside every split.

Publishing: every file is written first, then ``manifest.json`` in one atomic step.
Nothing depends on renames (object stores have none), so a crash before the manifest
leaves no visible dataset. Identical contents (same sha256) are written once; the
duplicates are reported (``duplicate_content``) and counted in the manifest. Splits
come from a hash of a group key, so a sample never changes split as the data grows.
The data files are listed in ``files.jsonl`` (the manifest's file table) as they are
written, and what dedupe and a version's merge must remember is spilled to a scratch
database: the writer's memory does not grow with the number of samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import hashlib
import io
import json
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Generic, Literal, TypeVar, overload

from modzy_retrain._core.concurrency import aordered_map, ordered_map
from modzy_retrain._core.exceptions import (
    DatasetError,
    DatasetExistsError,
    MissingDependencyError,
)
from modzy_retrain._core.fs import CHUNK, FileSystems, atomic_write, ensure_parent, join, url_to_fs
from modzy_retrain._dataset.journal import ResultJournal
from modzy_retrain._dataset.layout import (
    SAMPLE_TABLES,
    UNLABELED_DIR,
    assign_split,
    extension,
    public_url,
    safe_component,
)
from modzy_retrain._dataset.lock import DatasetLock
from modzy_retrain._dataset.manifest import (
    FILES_NAME,
    LATEST_NAME,
    MANIFEST_NAME,
    Changes,
    Checkpoint,
    DatasetFormat,
    FileTable,
    Manifest,
    ManifestCounts,
    ManifestFile,
    TriggerState,
    latest_version,
    load_manifest,
    read_samples,
)
from modzy_retrain._dataset.options import (
    DEFAULT_GROUP_BY,
    DEFAULT_WRITE_CONCURRENCY,
    WriterOptions,
)
from modzy_retrain._dataset.spill import SpilledSet, SpillStore
from modzy_retrain._dataset.trigger import TriggerGate
from modzy_retrain._version import __version__

from .base import Stage
from .records import Sample
from .report import (
    DUPLICATE_CONTENT,
    NOT_RESOLVED,
    SOURCE_CHANGED,
    SOURCE_MISSING,
    Drop,
    RunReport,
    StageStats,
)

GroupKey = str | Callable[[Sample], str]
T = TypeVar("T")


class _HashingWriter:
    """A write-only file wrapper that hashes what passes through (for the manifest)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: bytes) -> int:
        self.raw.write(data)
        self.digest.update(data)
        self.size += len(data)
        return len(data)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
            self.closed = True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


@dataclass
class _Plan:
    sample: Sample
    data_path: str | None  # where the bytes go, relative to the root (None: reference)
    table: str  # which sample table the row goes to
    in_previous: bool = False  # a previous version holds these bytes (never rewritten)


class _Tables:
    """The sample tables of one write, opened lazily, hashed as they are written."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root
        self.open: dict[str, _HashingWriter] = {}
        self.csv_fields: list[str] | None = None
        self.parquet: dict[str, tuple[Any, list[dict[str, Any]]]] = {}

    def _handle(self, name: str) -> _HashingWriter:
        handle = self.open.get(name)
        if handle is None:
            path = join(self.root, name)
            ensure_parent(self.fs, path)
            handle = _HashingWriter(self.fs.open(path, "wb"))
            self.open[name] = handle
        return handle

    @staticmethod
    def _flat(row: Mapping[str, Any]) -> dict[str, Any]:
        return {
            k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict, tuple)) else v
            for k, v in row.items()
        }

    def write(self, name: str, row: Mapping[str, Any]) -> None:
        # The table's own extension says how to write it: a versioned CSV or Parquet
        # dataset also keeps a JSONL table, which the next version merges from.
        if name.endswith(".jsonl"):
            line = json.dumps(row, ensure_ascii=False, default=str) + "\n"
            self._handle(name).write(line.encode("utf-8"))
        elif name.endswith(".csv"):
            flat = self._flat(row)
            buffer = io.StringIO()
            writer = csv.writer(buffer, lineterminator="\n")
            if self.csv_fields is None:
                self.csv_fields = list(flat)
                writer.writerow(self.csv_fields)
            elif list(flat) != self.csv_fields:
                raise DatasetError("serialize() must return the same columns for every sample")
            writer.writerow(["" if flat[k] is None else flat[k] for k in self.csv_fields])
            self._handle(name).write(buffer.getvalue().encode("utf-8"))
        else:
            self._parquet_row(name, self._flat(row))

    def _parquet_row(self, name: str, row: dict[str, Any]) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise MissingDependencyError(
                "the parquet format needs pyarrow: pip install 'modzy-retrain[parquet]'"
            ) from exc
        writer, batch = self.parquet.get(name, (None, []))
        batch.append(row)
        if len(batch) >= 1000:
            table = pa.Table.from_pylist(batch, schema=writer.schema if writer else None)
            if writer is None:
                writer = pq.ParquetWriter(self._handle(name), table.schema)
            writer.write_table(table)
            batch = []
        self.parquet[name] = (writer, batch)

    def close(self) -> list[tuple[str, int, str]]:
        """Finish every table; ``(name, size, sha256)`` of each, in the order opened."""
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            for name, (writer, batch) in self.parquet.items():
                if batch:
                    table = pa.Table.from_pylist(batch, schema=writer.schema if writer else None)
                    if writer is None:
                        writer = pq.ParquetWriter(self._handle(name), table.schema)
                    writer.write_table(table)
                if writer is not None:
                    writer.close()
        closed = []
        for name, handle in self.open.items():
            handle.close()
            closed.append((name, handle.size, handle.digest.hexdigest()))
        return closed

    def abort(self) -> None:
        for handle in self.open.values():
            with contextlib.suppress(Exception):
                handle.close()


# Scratch tables of one write (see _spill.py). ``content``: the first sample of each
# sha256 (dedupe), and whether a previous version already holds those bytes.
# ``new_samples`` and ``previous_rows``: a versioned write's merge.
_SCHEMA = (
    "CREATE TABLE content (sha256 TEXT PRIMARY KEY, job_id TEXT NOT NULL,"
    " input_name TEXT NOT NULL, previous INTEGER NOT NULL) WITHOUT ROWID",
    "CREATE TABLE new_samples (job_id TEXT NOT NULL, input_name TEXT NOT NULL,"
    " label TEXT, label_state TEXT NOT NULL, PRIMARY KEY (job_id, input_name)) WITHOUT ROWID",
    "CREATE TABLE previous_rows (seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL,"
    " input_name TEXT NOT NULL, row TEXT NOT NULL)",
    "CREATE INDEX previous_key ON previous_rows (job_id, input_name)",
)
_BATCH = 1000


class _Session:
    """One write: decisions in the caller's thread, file copies on workers.

    What the write must remember about every sample (the sha256s written, the data
    files listed, a version's merge) is spilled to a scratch database, so memory
    stays flat however many samples go through; the data files are listed in the
    file table as they come, never all held at once.
    """

    def __init__(self, writer: DatasetWriter, report: RunReport) -> None:
        self.writer = writer
        self.report = report
        self.fs, self.root = url_to_fs(writer.url, writer.storage_options)
        self.manifest_path = join(self.root, MANIFEST_NAME)
        self.prefix = ""
        self.version: str | None = None
        self.previous: Manifest | None = None
        self.published: Manifest | None = None
        self.lock: DatasetLock | None = None
        self.spill: SpillStore | None = None
        self.tracking = False
        # Versioned CSV / Parquet also keep a JSONL table: the next version merges from it.
        self.canonical: str | None = None
        # A rerun after a crash: content-addressed files already copied are kept.
        self.resuming = False
        self.committed = False
        self.tables = _Tables(self.fs, self.root)
        self.sources = FileSystems(writer.source_storage_options)
        self.duplicates = 0
        self.counts: dict[str, Counter[str]] = {
            k: Counter() for k in ("label", "label_state", "split", "model")
        }
        self.samples = 0
        self.data_files = 0
        try:
            self._open()
        except BaseException:
            self.abort()
            raise

    def _open(self) -> None:
        w = self.writer
        if not w.versioned:
            if self.fs.exists(join(self.root, LATEST_NAME)):
                raise DatasetExistsError(
                    f"{w.url} holds a versioned dataset; write to it with versioned=True"
                )
            if self.fs.exists(self.manifest_path):
                if not w.overwrite:
                    raise DatasetExistsError(
                        f"{w.url} already holds a dataset; pass overwrite=True to replace it"
                    )
                # Unpublish first: from here on, readers see no dataset until the new
                # manifest lands (never a mix of old manifest and new files).
                self.fs.rm_file(self.manifest_path)
        elif self.fs.exists(self.manifest_path):
            raise DatasetExistsError(
                f"{w.url} holds an unversioned dataset; write versions to another URL"
            )
        self.spill = SpillStore(_SCHEMA, prefix="modzy-retrain-write-")
        self.paths = SpilledSet(self.spill, "data_paths")
        if w.versioned:
            self._open_version()
        self.files_table = self.prefix + FILES_NAME

    def _open_version(self) -> None:
        w = self.writer
        assert self.spill is not None
        # Held until commit or abort: what follows (clearing debris, numbering the
        # version, merging the previous one) is only safe for one run at a time.
        self.lock = DatasetLock(self.fs, self.root, self.report.run_id)
        self.lock.acquire()
        # The jobs this run reads in full decide which earlier samples it replaces:
        # tracked on disk too, one id per job.
        self.report.progress.track(SpilledSet(self.spill, "complete_jobs"))
        self.tracking = True
        latest = latest_version(w.url, storage_options=w.storage_options)
        number = int(latest[1:]) + 1 if latest else 1
        self.version = f"v{number:04d}"
        self.prefix = self.version + "/"
        if w.format != "jsonl":
            self.canonical = self.prefix + "samples.jsonl"
        self.manifest_path = join(self.root, self.prefix + MANIFEST_NAME)
        stale = join(self.root, self.version)
        self.resuming = bool(w.journal is not None and w.journal.bodies)
        if self.fs.exists(stale):
            # Debris of a run that died before publishing: never visible, safe to clear.
            self.fs.rm(stale, recursive=True)
            self.resuming = True
        if latest is not None:
            self.previous = load_manifest(w.url, storage_options=w.storage_options)
            self._load_previous()

    def _load_previous(self) -> None:
        """Read the previous version once: its rows for the merge at commit, and the
        sha256 of each for deduplication (and to never copy its bytes again)."""
        assert self.spill is not None
        assert self.previous is not None
        w = self.writer
        rows: list[tuple[str, str, str]] = []
        contents: list[tuple[str, str, str]] = []

        def flush() -> None:
            assert self.spill is not None
            with self.spill.lock:
                self.spill.db.executemany(
                    "INSERT INTO previous_rows (job_id, input_name, row) VALUES (?, ?, ?)", rows
                )
                # The first sample of each content wins, as in the version itself.
                self.spill.db.executemany(
                    "INSERT OR IGNORE INTO content VALUES (?, ?, ?, 1)", contents
                )
            rows.clear()
            contents.clear()

        for row in read_samples(
            w.url, version=self.previous.version, storage_options=w.storage_options
        ):
            job_id, name = str(row["job_id"]), str(row["input_name"])
            rows.append((job_id, name, json.dumps(row, ensure_ascii=False)))
            if row.get("sha256"):
                contents.append((str(row["sha256"]), job_id, name))
            if len(rows) >= _BATCH:
                flush()
        flush()

    # -- caller's thread -------------------------------------------------------------

    def _first_with(self, sha256: str, job_id: str, name: str) -> tuple[str, str, int] | None:
        """The first sample with this content, or ``None`` (this one is now the first)."""
        assert self.spill is not None
        with self.spill.lock:
            inserted = self.spill.db.execute(
                "INSERT OR IGNORE INTO content VALUES (?, ?, ?, 0)", (sha256, job_id, name)
            ).rowcount
            if inserted == 1:
                return None
            found: tuple[str, str, int] = self.spill.db.execute(
                "SELECT job_id, input_name, previous FROM content WHERE sha256 = ?", (sha256,)
            ).fetchone()
            return found

    def plan(self, sample: Sample) -> _Plan | Drop:
        w = self.writer
        job_id, name = sample.job_id, sample.input_name
        if w.mode == "copy" and (sample.source_url is None or sample.sha256 is None):
            return Drop(
                w.name,
                NOT_RESOLVED,
                job_id,
                name,
                "copy mode needs a LineageResolver before the writer",
            )
        in_previous = False
        if sample.sha256 is not None and (w.dedupe or self.previous is not None):
            first = self._first_with(sample.sha256, job_id, name)
            if first is not None:
                # A job read again through the lag window brings its own sample back:
                # the same sample, not a duplicate of itself.
                itself = (first[0], first[1]) == (job_id, name)
                if w.dedupe and not itself:
                    detail = f"same content as {first[0]}/{first[1]}"
                    return Drop(w.name, DUPLICATE_CONTENT, job_id, name, detail)
                in_previous = bool(first[2])
        split = assign_split(w.group_key(sample), w.splits)
        sample = sample.with_payload(sample.payload, split=split)
        data_path = None
        if w.format == "imagefolder":
            assert sample.sha256 is not None
            base = (
                safe_component(name, limit=80)
                + "-"
                + sample.sha256[:10]
                + extension(sample.source_url)
            )
            if sample.label is None:
                data_path = f"{UNLABELED_DIR}/{base}"
                table = f"{UNLABELED_DIR}/metadata.jsonl"
            else:
                data_path = f"{safe_component(split)}/{safe_component(sample.label)}/{base}"
                table = f"{safe_component(split)}/metadata.jsonl"
        else:
            table = self.prefix + SAMPLE_TABLES[w.format]
            if w.mode == "copy":
                assert sample.sha256 is not None
                data_path = (
                    f"data/{sample.sha256[:2]}/{sample.sha256}{extension(sample.source_url)}"
                )
        return _Plan(sample, data_path, table, in_previous)

    def record(self, plan: _Plan) -> Sample:
        sample = plan.sample
        if plan.data_path is not None:
            sample = sample.with_payload(None, file=plan.data_path)
            assert sample.sha256 is not None
            assert sample.size is not None
            self._list_file(plan.data_path, sample.size, sample.sha256)
        row = dict(self.writer.serialize(sample))
        if self.writer.format == "imagefolder" and plan.data_path is not None:
            # Relative to the metadata file's folder, as Hugging Face expects.
            row = {"file_name": plan.data_path.split("/", 1)[1], **row}
        self.tables.write(plan.table, row)
        if self.canonical is not None:
            self.tables.write(self.canonical, row)
        self._count(sample.label, sample.label_state, sample.split, sample.record.model_id)
        if self.version is not None:
            assert self.spill is not None
            self.spill.execute(
                "INSERT OR REPLACE INTO new_samples VALUES (?, ?, ?, ?)",
                (*sample.key, sample.label, sample.label_state),
            )
        return sample

    def _list_file(self, path: str, size: int, sha256: str) -> None:
        """Add a data file to the file table, once however many samples share it."""
        if self.paths.add_new(path):
            entry = {"path": path, "size": size, "sha256": sha256, "role": "data"}
            self.tables.write(self.files_table, entry)
            self.data_files += 1

    def _count(self, label: str | None, state: str, split: str | None, model: str) -> None:
        self.samples += 1
        self.counts["label"][label if label is not None else "(none)"] += 1
        self.counts["label_state"][state] += 1
        self.counts["split"][split or ""] += 1
        self.counts["model"][model] += 1

    # -- worker threads --------------------------------------------------------------

    def put(self, plan: _Plan | Drop) -> _Plan | Drop:
        if isinstance(plan, Drop) or plan.data_path is None:
            return plan
        sample = plan.sample
        assert sample.sha256 is not None
        assert sample.size is not None
        target = join(self.root, plan.data_path)
        # Bytes a previous version (or a killed run) already wrote stay as they are:
        # published versions share data/ and are never modified.
        if (self.resuming or plan.in_previous) and self._already_copied(target, sample.size):
            return plan
        payload = sample.payload
        if payload is not None:
            if hashlib.sha256(payload).hexdigest() != sample.sha256:
                return Drop(
                    self.writer.name,
                    SOURCE_CHANGED,
                    sample.job_id,
                    sample.input_name,
                    "bytes differ from the resolved hash",
                )
            ensure_parent(self.fs, target)
            self.fs.pipe_file(target, payload)
        else:
            try:
                digest = self._stream_copy(str(sample.source_url), target)
            except FileNotFoundError:
                return Drop(
                    self.writer.name,
                    SOURCE_MISSING,
                    sample.job_id,
                    sample.input_name,
                    f"{sample.source_url} vanished before the copy",
                )
            if digest != sample.sha256:
                self.fs.rm_file(target)
                return Drop(
                    self.writer.name,
                    SOURCE_CHANGED,
                    sample.job_id,
                    sample.input_name,
                    f"{sample.source_url} changed after it was resolved",
                )
        return plan

    def _already_copied(self, target: str, size: int) -> bool:
        # Data files are named by their sha256, so one of the right size that a
        # killed run finished writing holds exactly these bytes.
        try:
            return int(self.fs.info(target)["size"]) == size
        except (FileNotFoundError, KeyError, ValueError):
            return False

    def _stream_copy(self, source_url: str, target: str) -> str:
        src_fs, src_path = self.sources.resolve(source_url)
        digest = hashlib.sha256()
        ensure_parent(self.fs, target)
        with src_fs.open(src_path, "rb") as src, self.fs.open(target, "wb") as dst:
            while chunk := src.read(CHUNK):
                digest.update(chunk)
                dst.write(chunk)
        return digest.hexdigest()

    # -- the end ---------------------------------------------------------------------

    def _carry_over(self) -> Changes:
        """Merge the previous version into this one; return what changed.

        A previous sample is carried over unless this run has the final word on its
        job (the job was read again and is complete): then it is replaced by the new
        sample, relabelled, or retracted when the votes no longer select it. One pass
        over the previous rows, joined on disk with this run's samples and jobs.
        """
        assert self.previous is not None
        assert self.version is not None
        assert self.spill is not None
        w = self.writer
        tables = [t for t in (self.prefix + SAMPLE_TABLES[w.format], self.canonical) if t]
        retracted: list[dict[str, Any]] = []
        relabelled: list[dict[str, Any]] = []
        carried = 0
        merged = self.spill.rows(
            "SELECT p.row, n.job_id IS NOT NULL, n.label, n.label_state, c.item IS NOT NULL"
            " FROM previous_rows p"
            " LEFT JOIN new_samples n ON n.job_id = p.job_id AND n.input_name = p.input_name"
            " LEFT JOIN complete_jobs c ON c.item = p.job_id"
            " ORDER BY p.seq"
        )
        for text, is_new, new_label, new_state, reread in merged:
            row: dict[str, Any] = json.loads(text)
            key = (str(row["job_id"]), str(row["input_name"]))
            if is_new:
                if (new_label, new_state) != (row.get("label"), row.get("label_state")):
                    relabelled.append(
                        {
                            "job_id": key[0],
                            "input_name": key[1],
                            "was": row.get("label"),
                            "now": new_label,
                            "label_state": new_state,
                        }
                    )
                continue
            if reread:
                retracted.append(
                    {
                        "job_id": key[0],
                        "input_name": key[1],
                        "label": row.get("label"),
                        "label_state": row.get("label_state"),
                        "reason": "no longer selected (votes changed)",
                    }
                )
                continue
            for table in tables:
                self.tables.write(table, row)
            carried += 1
            self._count(
                row.get("label"),
                str(row.get("label_state")),
                row.get("split"),
                str(row.get("model_id")),
            )
            path = row.get("file")
            if path:
                self._list_file(str(path), int(row["size"]), str(row["sha256"]))
        return Changes(
            previous=self.previous.version,
            added=self._added(),
            retracted=len(retracted),
            relabelled=len(relabelled),
            carried=carried,
            retracted_samples=retracted,
            relabelled_samples=relabelled,
        )

    _ADDED = (
        " FROM new_samples n WHERE NOT EXISTS (SELECT 1 FROM previous_rows p"
        " WHERE p.job_id = n.job_id AND p.input_name = n.input_name)"
    )

    def _added(self) -> int:
        """Samples of this run that the previous version did not hold."""
        assert self.spill is not None
        return int(self.spill.one("SELECT COUNT(*)" + self._ADDED)[0])

    def _added_by_label(self) -> Counter[str]:
        assert self.spill is not None
        rows = self.spill.rows("SELECT n.label, COUNT(*)" + self._ADDED + " GROUP BY n.label")
        return Counter({label if label is not None else "(none)": n for label, n in rows})

    def _checkpoint(self) -> Checkpoint:
        assert self.version is not None
        moved = self.report.progress.cursor()
        if moved is not None:
            return Checkpoint(version=self.version, cursor=moved[0], boundary_ids=moved[1])
        previous = self.previous.checkpoint if self.previous is not None else None
        if previous is not None:
            return previous.model_copy(update={"version": self.version})
        return Checkpoint(version=self.version)

    def commit(self) -> Manifest | None:
        changes: Changes | None = None
        checkpoint: Checkpoint | None = None
        trigger: TriggerState | None = None
        if self.version is not None:
            if self.previous is not None:
                changes = self._carry_over()
            else:
                changes = Changes(added=self._added())
            checkpoint = self._checkpoint()
            if changes.nothing_new and self.previous is not None:
                # Nothing to publish: the previous version stays the latest. The
                # unpublished folder goes before the lock, never under another run.
                self.tables.abort()
                with contextlib.suppress(OSError):
                    self.fs.rm(join(self.root, self.version), recursive=True)
                if self.writer.journal is not None:
                    self.writer.journal.clear()
                self.release()
                self.committed = True
                return None
            if self.writer.trigger is not None:
                previous = self.previous.trigger if self.previous is not None else None
                trigger = self.writer.trigger.evaluate(changes, self._added_by_label(), previous)
        file_table: FileTable | None = None
        sample_tables: list[ManifestFile] = []
        for name, size, sha256 in self.tables.close():
            if name == self.files_table:
                file_table = FileTable(path=name, size=size, sha256=sha256, entries=self.data_files)
            else:
                sample_tables.append(
                    ManifestFile(path=name, size=size, sha256=sha256, role="samples")
                )
        manifest = Manifest(
            library_version=__version__,
            run_id=self.report.run_id,
            created_at=datetime.now(timezone.utc),
            format=self.writer.format,
            mode=self.writer.mode,
            splits=dict(self.writer.splits),
            group_by=self.writer.group_by_description,
            samples_files=[f.path for f in sample_tables],
            files=sample_tables,
            file_table=file_table,
            counts=ManifestCounts(
                samples=self.samples,
                duplicates=self.duplicates,
                by_label=dict(self.counts["label"]),
                by_label_state=dict(self.counts["label_state"]),
                by_split=dict(self.counts["split"]),
                by_model=dict(self.counts["model"]),
            ),
            query=self.report.query,
            stages=self.report.pipeline or [self.writer.describe()],
            version=self.version,
            changes=changes,
            checkpoint=checkpoint,
            trigger=trigger,
        )
        atomic_write(self.fs, self.manifest_path, manifest.to_json())
        if self.version is not None:
            # The pointer is the publication: until it moves, the new version is not there.
            pointer = {"version": self.version, "manifest": self.prefix + MANIFEST_NAME}
            atomic_write(self.fs, join(self.root, LATEST_NAME), json.dumps(pointer).encode())
        self.committed = True
        self.published = manifest
        if self.writer.journal is not None:
            self.writer.journal.clear()
        self.release()
        return manifest

    def abort(self) -> None:
        self.tables.abort()
        self.release()

    def release(self) -> None:
        """Let go of the run's resources: the scratch database, then the lock."""
        try:
            if self.spill is not None:
                if self.tracking:
                    self.report.progress.untrack()  # its ids lived in the database
                self.spill.close()
        finally:
            if self.lock is not None:
                self.lock.release()


class _Option(Generic[T]):
    """A writer setting as a plain attribute, kept in the writer's frozen options:
    reading gives the validated value, assigning validates again."""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> _Option[T]: ...

    @overload
    def __get__(self, obj: DatasetWriter, owner: type[Any] | None = None) -> T: ...

    def __get__(self, obj: DatasetWriter | None, owner: type[Any] | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj._options, self.name)

    def __set__(self, obj: DatasetWriter, value: T) -> None:
        obj._options = obj._options.replace(**{self.name: value})


class DatasetWriter(Stage[Sample, Sample]):
    """Write samples to a dataset at any fsspec URL, then publish its manifest.

    Args:
        url: Where the dataset goes (a local path, ``file://``, ``memory://``,
            ``s3://``, ``gs://``...).
        format: ``jsonl`` (default), ``csv``, ``parquet`` or ``imagefolder``.
        mode: ``copy`` (default) writes the raw inputs into the dataset; ``reference``
            keeps only their URL, size and sha256 (not with ``imagefolder``).
        splits: Split names and ratios (default ``train`` 0.8, ``validation`` 0.2).
        group_by: What decides the split, as a template over the sample
            (``{job_id}``, ``{input_name}``, ``{model_id}``, ``{label}``...) or a
            callable. Default ``{job_id}/{input_name}``; ``{job_id}`` keeps a job's
            inputs together.
        overwrite: Replace an existing dataset at ``url`` (it is unpublished first).
        versioned: Publish immutable versions (``v0001``, ``v0002``...) under ``url``
            instead of one dataset: each run merges the previous version with what it
            read again, writes a full snapshot with what changed (added, retracted,
            relabelled) and a checkpoint for the next run, then moves ``_latest.json``.
            A run with nothing new publishes nothing. Not with ``imagefolder``; CSV and
            Parquet versions also keep a JSONL table to merge the next version from.
        trigger: A :class:`TriggerGate` evaluated for each new version; its decision
            is recorded in the version's manifest (versioned datasets only).
        journal: The run's :class:`ResultJournal` (versioned datasets only): cleared
            once a version is published or nothing new was found.
        dedupe: Write identical contents once (default).
        concurrency: Files copied at once (default 16).
        storage_options: fsspec options for ``url``.
        source_storage_options: fsspec options to read the inputs, when a copy must
            read them again (defaults to ``storage_options``).

    Iterating the writer writes as it goes; the manifest is published only when the
    input is exhausted. Stop early, or fail, and nothing is published.

    Subclass hook: override :meth:`serialize` to change the row written per sample.
    """

    name = "write"

    url = _Option[str]()
    format = _Option[DatasetFormat]()
    mode = _Option[Literal["copy", "reference"]]()
    splits = _Option[dict[str, float]]()
    group_by = _Option[GroupKey]()
    overwrite = _Option[bool]()
    versioned = _Option[bool]()
    trigger = _Option[TriggerGate | None]()
    journal = _Option[ResultJournal | None]()
    dedupe = _Option[bool]()
    concurrency = _Option[int]()
    storage_options = _Option[dict[str, Any]]()
    source_storage_options = _Option[dict[str, Any]]()

    def __init__(
        self,
        url: str,
        *,
        format: DatasetFormat = "jsonl",
        mode: Literal["copy", "reference"] = "copy",
        splits: Mapping[str, float] | None = None,
        group_by: GroupKey = DEFAULT_GROUP_BY,
        overwrite: bool = False,
        versioned: bool = False,
        trigger: TriggerGate | None = None,
        journal: ResultJournal | None = None,
        dedupe: bool = True,
        concurrency: int = DEFAULT_WRITE_CONCURRENCY,
        storage_options: Mapping[str, Any] | None = None,
        source_storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        # Raises ConfigurationError, naming the argument, before anything is touched.
        self._options = WriterOptions(
            url=url,
            format=format,
            mode=mode,
            splits=splits,
            group_by=group_by,
            overwrite=overwrite,
            versioned=versioned,
            trigger=trigger,
            journal=journal,
            dedupe=dedupe,
            concurrency=concurrency,
            storage_options=storage_options,
            source_storage_options=source_storage_options,
        )

    @property
    def group_by_description(self) -> str:
        return self._options.group_by_description

    def group_key(self, sample: Sample) -> str:
        if callable(self.group_by):
            return self.group_by(sample)
        r = sample.record
        return self.group_by.format(
            job_id=r.job_id,
            input_name=r.input_name,
            model_id=r.model_id,
            model_version=r.model_version,
            label=sample.label,
            sha256=sample.sha256,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "url": public_url(self.url),
            "format": self.format,
            "mode": self.mode,
            "splits": self.splits,
            "group_by": self.group_by_description,
            "versioned": self.versioned,
        }

    def serialize(self, sample: Sample) -> dict[str, Any]:
        """The row written for one sample: its label and full provenance."""
        r = sample.record
        return {
            "job_id": r.job_id,
            "input_name": r.input_name,
            "model_id": r.model_id,
            "model_version": r.model_version,
            "model_name": r.model_name,
            "submitted_at": r.submitted_at.isoformat() if r.submitted_at else None,
            "label": sample.label,
            "label_state": sample.label_state,
            "rule": sample.rule,
            "candidates": list(sample.candidates),
            "predicted_label": r.predicted_label,
            "predicted_score": r.top_score,
            "predictions": [{"label": p.label, "score": p.score} for p in r.predictions],
            "votes_up": r.voting.up,
            "votes_down": r.voting.down,
            "source_url": public_url(sample.source_url),
            "sha256": sample.sha256,
            "size": sample.size,
            "split": sample.split,
            "file": sample.file,
        }

    def write(self, samples: Iterable[Sample], *, report: RunReport | None = None) -> RunReport:
        """Write every sample and publish; returns the report (its ``dataset`` filled)."""
        it = self(samples, report=report)
        for _ in it:
            pass
        return it.report.finish()

    # -- driving the session ---------------------------------------------------------

    def _account(
        self, session: _Session, outcome: _Plan | Drop, report: RunReport, stats: StageStats
    ) -> Sample | None:
        stats.items_in += 1
        if isinstance(outcome, Drop):
            if outcome.reason == DUPLICATE_CONTENT:
                session.duplicates += 1
            report.drop(stats, outcome)
            return None
        return session.record(outcome)

    def _published(self, report: RunReport, manifest: Manifest | None) -> None:
        if manifest is None:
            latest = latest_version(self.url, storage_options=self.storage_options)
            report.dataset = {
                "url": public_url(self.url),
                "published": False,
                "nothing_new": True,
                "version": latest,
            }
            return
        report.dataset = {
            "url": public_url(self.url),
            "published": True,
            "manifest": (f"{manifest.version}/" if manifest.version else "") + MANIFEST_NAME,
            "format": self.format,
            "samples": manifest.counts.samples,
            "duplicates": manifest.counts.duplicates,
            "files": manifest.file_count,
        }
        if manifest.version is not None and manifest.changes is not None:
            report.dataset["version"] = manifest.version
            report.dataset["changes"] = {
                "added": manifest.changes.added,
                "retracted": manifest.changes.retracted,
                "relabelled": manifest.changes.relabelled,
                "carried": manifest.changes.carried,
            }

    def _iterate(
        self, items: Iterable[Sample], report: RunReport, stats: StageStats
    ) -> Iterator[Sample]:
        session = _Session(self, report)
        try:
            plans = (session.plan(sample) for sample in items)
            for outcome in ordered_map(session.put, plans, concurrency=self.concurrency):
                sample = self._account(session, outcome, report, stats)
                if sample is not None:
                    yield sample
            self._published(report, session.commit())
        finally:
            if not session.committed:
                session.abort()

    async def _aiterate(
        self, items: AsyncIterable[Sample], report: RunReport, stats: StageStats
    ) -> AsyncIterator[Sample]:
        session = await asyncio.to_thread(_Session, self, report)
        try:

            async def plans() -> AsyncIterator[_Plan | Drop]:
                async for sample in items:
                    yield session.plan(sample)

            async def put(plan: _Plan | Drop) -> _Plan | Drop:
                return await asyncio.to_thread(session.put, plan)

            async for outcome in aordered_map(put, plans(), concurrency=self.concurrency):
                sample = await asyncio.to_thread(self._account, session, outcome, report, stats)
                if sample is not None:
                    yield sample
            manifest = await asyncio.to_thread(session.commit)
            self._published(report, manifest)
        finally:
            if not session.committed:
                session.abort()
