"""One write of a dataset, from its opening checks to its publication (``DatasetDraft``).

Publishing: every file is written first, then ``manifest.json`` in one atomic step.
Nothing depends on renames (object stores have none), so a crash before the manifest
leaves no visible dataset. A version of a versioned dataset is published by creating
its manifest, ``vNNNN/manifest.json``, only if it does not exist yet
(``create_exclusive``): of two writers that both wrote version N, one publishes it and
the other publishes nothing (:class:`VersionConflictError`). Each writer names its
tables after its run (``vNNNN/<run tag>-samples.jsonl``), so a loser never overwrites
the winner's files. ``_latest.json`` is then moved to the new version: a hint that
readers follow forward (``manifest.latest_version``).

The data files are listed in ``files.jsonl`` (the manifest's file table) as they are
written, and what dedupe and a version's merge must remember is spilled to a scratch
database: memory does not grow with the number of samples.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections import Counter
from collections.abc import Mapping, MutableSet
from datetime import datetime, timezone
from typing import Any, Protocol

from modzy_retrain._core.exceptions import DatasetExistsError
from modzy_retrain._core.fs import (
    FileSystems,
    atomic_write,
    create_exclusive,
    join,
    sync_file,
    sync_folders,
    url_to_fs,
)
from modzy_retrain._version import __version__

from .classes import ClassLists
from .copy import CopyFailure, copy_input
from .counts import SampleCounts, predicted_of
from .human import rule_sources
from .layout import SAMPLE_TABLES, LabelFolders, canonical_table, imagefolder_row, place
from .lock import DatasetLock, VersionConflictError
from .manifest import (
    FILES_NAME,
    LATEST_NAME,
    MANIFEST_NAME,
    Changes,
    Checkpoint,
    FileTable,
    Manifest,
    ManifestFile,
    TriggerState,
    VoteTallies,
    version_manifest,
)
from .options import WriterOptions
from .rows import upgrade_row
from .tables import SampleTables, ScratchTables
from .tallies import TALLIES_NAME, Tallying
from .versions import (
    begin_version,
    carry_over,
    checkpoint,
    clear_unlisted,
    evaluate_trigger,
    first_changes,
)


class JobTracker(Protocol):
    """Where a run records the jobs it read in full, and where its cursor moved (the
    run report's job progress)."""

    def track(self, ids: MutableSet[str] | None = None) -> None: ...

    def untrack(self) -> None: ...

    def cursor(self) -> tuple[datetime, list[str]] | None: ...


class DatasetDraft:
    """One write of a dataset at ``options.url``: nothing is visible until :meth:`commit`.

    Decisions are made in the caller's thread (:meth:`first_with`, :meth:`add`), the
    inputs are copied on worker threads (:meth:`copy`). Either :meth:`commit` or
    :meth:`abort` ends it, and lets go of its scratch database and lock.

    Args:
        options: The writer's settings.
        run_id: The run's id (in the manifest, and the lock's owner).
        progress: The run's job progress: a versioned write merges by the jobs read in
            full, and checkpoints where the cursor moved.
    """

    def __init__(self, options: WriterOptions, *, run_id: str, progress: JobTracker) -> None:
        self.options = options
        self.run_id = run_id
        self.progress = progress
        self.fs, self.root = url_to_fs(options.url, options.storage_options)
        self.manifest_path = join(self.root, MANIFEST_NAME)
        self.prefix = ""
        self.version: str | None = None
        self.previous: Manifest | None = None
        self.lock: DatasetLock | None = None
        self.scratch: ScratchTables | None = None
        self.tracking = False
        # Versioned CSV / Parquet also keep a JSONL table: the next version merges from it.
        self.canonical: str | None = None
        # A rerun after a crash: content-addressed files already copied are kept.
        self.resuming = False
        self.committed = False
        self.tables = SampleTables(self.fs, self.root)
        # An image folder's folder per label: distinct for the whole write.
        self.label_folders = LabelFolders()
        self.sources = FileSystems(options.source_storage_options)
        self.duplicates = 0
        # The folders copies went to (a few hundred at most: data/<xx>/, split/label/),
        # fsync'd before the manifest.
        self.folders: set[str] = set()
        self._folders_lock = threading.Lock()
        # Samples handed to the writer, per model (what lineage delivered): with the
        # drops per model, what a misconfiguration guard weighs before publishing.
        self.received: Counter[str] = Counter()
        self.counts = SampleCounts()
        self.data_files = 0
        # Each model's classes, carried over from the previous version (if any), then
        # grown as samples pass: the writer feeds it in input order.
        self.classes = ClassLists()
        try:
            self._open()
        except BaseException:
            self.abort()
            raise

    def _open(self) -> None:
        o = self.options
        if not o.versioned:
            if self.fs.exists(join(self.root, LATEST_NAME)):
                raise DatasetExistsError(
                    f"{o.url} holds a versioned dataset; write to it with versioned=True"
                )
            if self.fs.exists(self.manifest_path):
                if not o.overwrite:
                    raise DatasetExistsError(
                        f"{o.url} already holds a dataset; pass overwrite=True to replace it"
                    )
                # Unpublish first: from here on, readers see no dataset until the new
                # manifest lands (never a mix of old manifest and new files).
                self.fs.rm_file(self.manifest_path)
        elif self.fs.exists(self.manifest_path):
            raise DatasetExistsError(
                f"{o.url} holds an unversioned dataset; write versions to another URL"
            )
        self.scratch = ScratchTables()
        if o.versioned:
            self._open_version(self.scratch)
        self.files_table = self.prefix + FILES_NAME
        self.tallies_table = self.prefix + TALLIES_NAME
        # Every job the run reads is tallied from now on (after the previous version's
        # tallies were loaded: a job read again replaces its earlier tally).
        if isinstance(self.progress, Tallying):
            self.progress.tally_into(self.scratch.tallies)

    def _open_version(self, scratch: ScratchTables) -> None:
        o = self.options
        # Held until commit or abort: what follows (clearing debris, numbering the
        # version, merging the previous one) is only safe for one run at a time.
        self.lock = DatasetLock(self.fs, self.root, self.run_id)
        self.lock.acquire()
        # The jobs this run reads in full decide which earlier samples it replaces:
        # tracked on disk too, one id per job.
        self.progress.track(scratch.complete_jobs())
        self.tracking = True
        version = begin_version(
            self.fs,
            self.root,
            o.url,
            storage_options=o.storage_options,
            journal=o.journal,
            scratch=scratch,
        )
        self.version, self.previous = version.name, version.previous
        self.classes = version.classes
        self.resuming = version.resuming
        # This run's tables: named after it, so that two runs that both came to write
        # this version (a lease lost while stalled) never write the same file.
        tag = hashlib.sha256(self.run_id.encode()).hexdigest()[:8]
        self.prefix = f"{version.prefix}{tag}-"
        self.canonical = canonical_table(o.format, self.prefix)
        self.manifest_path = join(self.root, version_manifest(version.name))

    @property
    def _scratch(self) -> ScratchTables:
        assert self.scratch is not None, "the draft is not open"
        return self.scratch

    # -- caller's thread -------------------------------------------------------------

    def human_row(self, key: tuple[str, str]) -> dict[str, Any] | None:
        """The previous version's row of this sample, if a human labelled it."""
        if self.previous is None:
            return None
        return self._scratch.human_row(*key)

    def first_with(self, sha256: str, job_id: str, name: str) -> tuple[str, str, int] | None:
        """The first sample with this content, ``(job_id, input_name, in a previous
        version)``, or ``None`` (this one is now the first)."""
        return self._scratch.first_with(sha256, job_id, name)

    def place(
        self,
        *,
        input_name: str,
        label: str | None,
        split: str,
        sha256: str | None,
        source_url: str | None,
    ) -> tuple[str | None, str]:
        """``(data path, sample table)`` of a sample in this dataset (see ``layout``)."""
        o = self.options
        return place(
            o.format,
            o.mode,
            prefix=self.prefix,
            input_name=input_name,
            label=label,
            split=split,
            sha256=sha256,
            source_url=source_url,
            folders=self.label_folders,
        )

    def list_file(self, path: str, size: int, sha256: str) -> None:
        """Add a data file to the file table, once however many samples share it."""
        if self._scratch.list_path(path):
            entry = {"path": path, "size": size, "sha256": sha256, "role": "data"}
            self.tables.write(self.files_table, entry)
            self.data_files += 1

    def add(
        self,
        table: str,
        row: Mapping[str, Any],
        *,
        data_path: str | None,
        key: tuple[str, str],
        label: str | None,
        label_state: str,
        split: str | None,
        model_id: str,
        rule: str = "",
    ) -> None:
        """Write one sample's row (list its data file first, with :meth:`list_file`).

        Args:
            table: The sample table it goes to (see :meth:`place`).
            row: What is written.
            data_path: Where its input was copied (``None``: a reference).
            key, label, label_state, split, model_id: The sample, for the counts and
                a version's merge.
            rule: Its rule: a change of human sources (a label that a human now gave,
                or that Label Studio gave too) is a relabelling, as a new label is.
        """
        if self.options.format == "imagefolder" and data_path is not None:
            row = imagefolder_row(data_path, row)
        self.tables.write(table, row)
        if self.canonical is not None:
            self.tables.write(self.canonical, row)
        self.counts.add(label, label_state, split, model_id, predicted_of(row))
        if self.version is not None:
            self._scratch.add_sample(*key, label, label_state, "+".join(rule_sources(rule)))

    # -- worker threads --------------------------------------------------------------

    def copy(
        self,
        data_path: str,
        *,
        sha256: str,
        size: int,
        payload: bytes | None,
        source_url: str,
        in_previous: bool,
    ) -> CopyFailure | None:
        """Copy one input to ``data_path`` (``None``: done, or already there)."""
        target = join(self.root, data_path)
        failed = copy_input(
            self.fs,
            target,
            sha256=sha256,
            size=size,
            payload=payload,
            source_url=source_url,
            sources=self.sources,
            reuse=self.resuming or in_previous,
            # A killed run's leftover is checked by its hash; a published file by size.
            verify=not in_previous,
        )
        if failed is None:
            with self._folders_lock:
                self.folders.add(target.rsplit("/", 1)[0])
        return failed

    # -- the end ---------------------------------------------------------------------

    def _keep(self, row: dict[str, Any]) -> None:
        """Carry one row of the previous version over into this one."""
        row = upgrade_row(row)  # a row from before a column existed gets it
        for table in (self.prefix + SAMPLE_TABLES[self.options.format], self.canonical):
            if table:
                self.tables.write(table, row)
        self.counts.add(
            row.get("label"),
            str(row.get("label_state")),
            row.get("split"),
            str(row.get("model_id")),
            predicted_of(row),
        )
        path = row.get("file")
        if path:
            self.list_file(str(path), int(row["size"]), str(row["sha256"]))

    def commit(
        self, *, query: dict[str, Any] | None, stages: list[dict[str, Any]]
    ) -> Manifest | None:
        """Publish; the manifest, or ``None`` when a version would add nothing new.

        Args:
            query: The history query, as the manifest records it.
            stages: The pipeline's stages, as the manifest records them.
        """
        o = self.options
        changes: Changes | None = None
        mark: Checkpoint | None = None
        trigger: TriggerState | None = None
        if self.version is not None:
            if self.previous is not None:
                changes = carry_over(self._scratch, self.previous, self._keep)
            else:
                changes = first_changes(self._scratch)
            mark = checkpoint(self.version, self.progress.cursor(), self.previous)
            if changes.nothing_new:
                # Nothing to publish (a first version with no sample included): the
                # previous version, if any, stays the latest and the cursor stays.
                self._drop_version()
                self._done()
                return None
            if o.trigger is not None:
                trigger = evaluate_trigger(o.trigger, changes, self.previous)
        file_table: FileTable | None = None
        tallies_table: FileTable | None = None
        sample_tables: list[ManifestFile] = []
        totals = self._scratch.tallies.write(lambda row: self.tables.write(self.tallies_table, row))
        closed = self.tables.close()
        try:
            self._sync([join(self.root, name) for name, _, _, _ in closed])
        except FileNotFoundError:
            # Another writer published this version and cleared this run's tables:
            # creating the manifest below fails, as the conflict it is.
            if self.version is None or not self.fs.exists(self.manifest_path):
                raise
        for name, size, sha256, rows in closed:
            if name == self.files_table:
                file_table = FileTable(path=name, size=size, sha256=sha256, entries=self.data_files)
            elif name == self.tallies_table:
                tallies_table = FileTable(path=name, size=size, sha256=sha256, entries=rows)
            else:
                sample_tables.append(
                    ManifestFile(path=name, size=size, sha256=sha256, role="samples", rows=rows)
                )
        manifest = Manifest(
            library_version=__version__,
            run_id=self.run_id,
            created_at=datetime.now(timezone.utc),
            format=o.format,
            mode=o.mode,
            splits=dict(o.splits),
            group_by=o.group_by_description,
            samples_files=[f.path for f in sample_tables],
            files=sample_tables,
            file_table=file_table,
            counts=self.counts.manifest_counts(self.duplicates),
            classes=self.classes.to_dict(),
            query=query,
            stages=stages,
            version=self.version,
            changes=changes,
            checkpoint=mark,
            trigger=trigger,
            tallies=VoteTallies(table=tallies_table, jobs=totals.jobs, totals=totals.totals()),
        )
        if self.version is None:
            atomic_write(self.fs, self.manifest_path, manifest.to_json())
        else:
            self._publish_version(manifest)
        self._done()
        return manifest

    def _sync(self, tables: list[str]) -> None:
        """On a local disk, what the manifest names is on the device before it is: the
        data files were fsync'd as they were copied; the tables now, then each folder
        that got a new name."""
        for path in tables:
            sync_file(self.fs, path)
        folders = {path.rsplit("/", 1)[0] for path in tables}
        sync_folders(self.fs, self.root, self.folders | folders | {self.root})

    def _publish_version(self, manifest: Manifest) -> None:
        """Create the version's manifest if no other writer did (the publication),
        then move the pointer, then clear what other writers left in the folder."""
        assert self.version is not None
        try:
            create_exclusive(self.fs, self.manifest_path, manifest.to_json())
        except FileExistsError:
            self._drop_version()
            self.committed = True  # nothing to clear: the journal is kept for a rerun
            self.release()
            raise VersionConflictError(
                f"another writer published {self.version} of {self.options.url} while this "
                "run wrote it: this run published nothing (run it again: its results "
                "journal is kept)"
            ) from None
        pointer = {"version": self.version, "manifest": version_manifest(self.version)}
        atomic_write(self.fs, join(self.root, LATEST_NAME), json.dumps(pointer).encode())
        listed = {f.path for f in manifest.files}
        for table in (manifest.file_table, manifest.tallies and manifest.tallies.table):
            if table:
                listed.add(table.path)
        clear_unlisted(self.fs, self.root, self.version, listed)

    def _done(self) -> None:
        """Published, or nothing new: the journal has served its purpose."""
        self.committed = True
        try:
            if self.options.journal is not None:
                self.options.journal.clear()
        finally:
            self.release()

    def _drop_version(self) -> None:
        """Forget this run's unpublished tables (its own files only: another run may
        be writing the same version)."""
        names = list(self.tables.open)
        self.tables.abort()
        if self.version is not None:
            for name in names:
                with contextlib.suppress(OSError):
                    self.fs.rm_file(join(self.root, name))
            # The folder goes too if nothing else is in it (a folder is only a name on
            # an object store; rmdir refuses one that is not empty).
            with contextlib.suppress(OSError):
                self.fs.rmdir(join(self.root, self.version))

    def withdraw(self) -> None:
        """Publish nothing, on purpose: the previous version and its checkpoint stay.

        Unlike a run with nothing new, the result journal is kept: the next run, with
        its configuration fixed, reads the same jobs and need not fetch them again.
        """
        self._drop_version()
        self.committed = True
        self.release()

    def abort(self) -> None:
        """Give up: nothing is published (the files written stay unlisted)."""
        self.tables.abort()
        self.release()

    def release(self) -> None:
        """Let go of the run's resources: the scratch database, then the lock."""
        try:
            if self.scratch is not None:
                if isinstance(self.progress, Tallying):
                    self.progress.tally_into(None)  # the tallies lived in the database
                if self.tracking:
                    self.progress.untrack()  # its ids lived in the database
                self.scratch.close()
        finally:
            if self.lock is not None:
                self.lock.release()
