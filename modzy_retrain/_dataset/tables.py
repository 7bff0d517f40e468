"""The tables one dataset write produces, and the scratch tables it keeps on the side.

:class:`SampleTables`: the sample tables and the file table written into the dataset,
each hashed as it is written (for the manifest), so none is read back. Every row goes
straight to its file: memory does not grow with the number of samples.

:class:`ScratchTables`: what the write must remember about every sample (each content
written, each data file listed, a versioned write's merge), in a scratch sqlite
database (see ``spill.py``) rather than in memory.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from modzy_retrain._core.constants import TRAINABLE_LABEL_STATES
from modzy_retrain._core.exceptions import DatasetError
from modzy_retrain._core.fs import ensure_parent, join

from .reading import file_problem
from .rows import csv_cell, json_text, parquet_schema, pyarrow_modules, to_parquet
from .spill import SpilledSet, SpillStore
from .tallies import TallyBook

# Parquet rows are buffered and written a row group at a time.
PARQUET_BATCH = 1000


class HashingWriter:
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
            try:
                self.raw.close()
            finally:
                self.closed = True  # a failed close is not tried again

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False


def _csv_row(buffer: io.StringIO, cells: list[Any]) -> None:
    """One CSV line. The csv module quotes a cell holding a newline (the terminator)
    but not one holding a lone carriage return, which every reader takes for a line
    break: a row with one is written with every cell quoted."""
    if any("\r" in str(c) for c in cells):
        csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL).writerow(cells)
    else:
        csv.writer(buffer, lineterminator="\n").writerow(cells)


class SampleTables:
    """The tables of one write, opened lazily, hashed as they are written."""

    def __init__(self, fs: Any, root: str) -> None:
        self.fs = fs
        self.root = root
        self.open: dict[str, HashingWriter] = {}
        # Rows written to each table (the manifest records them; readers check them).
        self.rows: Counter[str] = Counter()
        self.csv_fields: list[str] | None = None
        self.parquet: dict[str, tuple[Any, list[dict[str, Any]]]] = {}

    def _handle(self, name: str) -> HashingWriter:
        handle = self.open.get(name)
        if handle is None:
            path = join(self.root, name)
            ensure_parent(self.fs, path)
            handle = HashingWriter(self.fs.open(path, "wb"))
            self.open[name] = handle
        return handle

    @staticmethod
    def _flat(row: Mapping[str, Any]) -> dict[str, Any]:
        """A row as CSV cells: lists and objects as JSON text, texts escaped."""
        return {k: csv_cell(json_text(v)) for k, v in row.items()}

    def write(self, name: str, row: Mapping[str, Any]) -> None:
        # The table's own extension says how to write it: a versioned CSV or Parquet
        # dataset also keeps a JSONL table, which the next version merges from.
        self.rows[name] += 1
        if name.endswith(".jsonl"):
            line = json.dumps(row, ensure_ascii=False, default=str) + "\n"
            self._handle(name).write(line.encode("utf-8"))
        elif name.endswith(".csv"):
            flat = self._flat(row)
            buffer = io.StringIO()
            if self.csv_fields is None:
                self.csv_fields = list(flat)
                _csv_row(buffer, self.csv_fields)
            elif list(flat) != self.csv_fields:
                raise DatasetError("serialize() must return the same columns for every sample")
            _csv_row(buffer, ["" if flat[k] is None else flat[k] for k in self.csv_fields])
            self._handle(name).write(buffer.getvalue().encode("utf-8"))
        else:
            try:
                parquet_row = to_parquet(row)
            except ValueError as exc:
                raise DatasetError(f"a row Parquet cannot hold: {exc}") from None
            self._parquet_row(name, parquet_row)

    def _parquet_row(self, name: str, row: dict[str, Any]) -> None:
        pyarrow_modules()  # fail on the first row, not at the end of the run
        writer, batch = self.parquet.get(name, (None, []))
        batch.append(row)
        if len(batch) >= PARQUET_BATCH:
            writer = self._parquet_batch(name, writer, batch)
            batch = []
        self.parquet[name] = (writer, batch)

    def _parquet_batch(self, name: str, writer: Any, batch: list[dict[str, Any]]) -> Any:
        """Write one row group; the table's writer (made with the first one, whose
        schema types the columns: see ``rows.parquet_schema``)."""
        pa, pq = pyarrow_modules()
        schema = writer.schema if writer else parquet_schema(pa, batch)
        try:
            table = pa.Table.from_pylist(batch, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise DatasetError(f"a row does not fit the Parquet table's columns: {exc}") from None
        if writer is None:
            writer = pq.ParquetWriter(self._handle(name), table.schema)
        writer.write_table(table)
        return writer

    def close(self) -> list[tuple[str, int, str, int]]:
        """Finish every table; ``(name, size, sha256, rows)`` of each, in the order opened."""
        for name, (writer, batch) in self.parquet.items():
            if batch:
                writer = self._parquet_batch(name, writer, batch)
            if writer is not None:
                writer.close()
        closed = []
        for name, handle in self.open.items():
            sha256 = handle.digest.hexdigest()
            try:
                handle.close()
            except Exception:
                if not self._landed(name, handle.size, sha256):
                    raise
            closed.append((name, handle.size, sha256, self.rows[name]))
        return closed

    def _landed(self, name: str, size: int, sha256: str) -> bool:
        """Whether a table whose upload failed as it closed is in the store all the same.

        A resumable (GCS) or multipart (S3) upload whose last answer was lost after the
        store completed it fails on its retry (the upload is gone: 404): the object is
        there, whole. It is this write's own when its bytes are the ones written, as a
        manifest's create whose answer was lost is (``fs.create_exclusive``).
        """
        path = join(self.root, name)
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(path)
        try:
            return file_problem(self.fs, self.root, name, size, sha256) is None
        except Exception:
            return False

    def abort(self) -> None:
        for handle in self.open.values():
            with contextlib.suppress(Exception):
                handle.close()


# ``content``: the first sample of each sha256 (dedupe), and whether a previous
# version already holds those bytes. ``new_samples`` and ``previous_rows``: a
# versioned write's merge.
SCHEMA = (
    "CREATE TABLE content (sha256 TEXT PRIMARY KEY, job_id TEXT NOT NULL,"
    " input_name TEXT NOT NULL, previous INTEGER NOT NULL) WITHOUT ROWID",
    # ``human``: the sources of a human label (``label-file``...), empty for the votes'.
    "CREATE TABLE new_samples (job_id TEXT NOT NULL, input_name TEXT NOT NULL,"
    " label TEXT, label_state TEXT NOT NULL, human TEXT NOT NULL,"
    " PRIMARY KEY (job_id, input_name)) WITHOUT ROWID",
    "CREATE TABLE previous_rows (seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL,"
    " input_name TEXT NOT NULL, row TEXT NOT NULL)",
    "CREATE INDEX previous_key ON previous_rows (job_id, input_name)",
    # The previous rows a human labelled: a later run keeps their label (``human.py``).
    "CREATE TABLE previous_human (job_id TEXT NOT NULL, input_name TEXT NOT NULL,"
    " row TEXT NOT NULL, PRIMARY KEY (job_id, input_name)) WITHOUT ROWID",
)
# This run's samples that the previous version did not hold.
_ADDED = (
    " FROM new_samples n WHERE NOT EXISTS (SELECT 1 FROM previous_rows p"
    " WHERE p.job_id = n.job_id AND p.input_name = n.input_name)"
)


class ScratchTables:
    """The scratch database of one write; closed by :meth:`close` (idempotent)."""

    def __init__(self) -> None:
        self.store = SpillStore(SCHEMA, prefix="modzy-retrain-write-")
        try:
            self.data_paths = SpilledSet(self.store, "data_paths")
            # Each job's vote tally: the previous version's, then this run's.
            self.tallies = TallyBook(self.store)
        except BaseException:
            self.store.close()
            raise

    def close(self) -> None:
        self.store.close()

    def complete_jobs(self) -> SpilledSet:
        """A new set for the ids of the jobs this run reads in full (see :meth:`merged`)."""
        return SpilledSet(self.store, "complete_jobs")

    def first_with(self, sha256: str, job_id: str, name: str) -> tuple[str, str, int] | None:
        """The first sample with this content, ``(job_id, input_name, in a previous
        version)``, or ``None`` (this one is now the first)."""
        with self.store.lock:
            inserted = self.store.db.execute(
                "INSERT OR IGNORE INTO content VALUES (?, ?, ?, 0)", (sha256, job_id, name)
            ).rowcount
            if inserted == 1:
                return None
            found: tuple[str, str, int] = self.store.db.execute(
                "SELECT job_id, input_name, previous FROM content WHERE sha256 = ?", (sha256,)
            ).fetchone()
            return found

    def list_path(self, path: str) -> bool:
        """Remember a data file; whether it was not listed yet."""
        return self.data_paths.add_new(path)

    def add_previous(
        self, rows: Iterable[tuple[str, str, str]], contents: Iterable[tuple[str, str, str]]
    ) -> None:
        """Add a previous version's ``(job_id, input_name, row JSON)`` rows, and the
        ``(sha256, job_id, input_name)`` of their contents."""
        with self.store.lock:
            self.store.db.executemany(
                "INSERT INTO previous_rows (job_id, input_name, row) VALUES (?, ?, ?)", rows
            )
            # The first sample of each content wins, as in the version itself.
            self.store.db.executemany("INSERT OR IGNORE INTO content VALUES (?, ?, ?, 1)", contents)

    def add_human(self, rows: Iterable[tuple[str, str, str]]) -> None:
        """Add the previous version's human-labelled ``(job_id, input_name, row JSON)``."""
        with self.store.lock:
            self.store.db.executemany(
                "INSERT OR REPLACE INTO previous_human VALUES (?, ?, ?)", rows
            )

    def human_row(self, job_id: str, name: str) -> dict[str, Any] | None:
        """The previous version's row of this sample, if a human labelled it."""
        found = self.store.one(
            "SELECT row FROM previous_human WHERE job_id = ? AND input_name = ?", (job_id, name)
        )
        return json.loads(found[0]) if found else None

    def add_sample(
        self, job_id: str, name: str, label: str | None, label_state: str, human: str = ""
    ) -> None:
        """Remember one sample of this run, for a versioned write's merge."""
        self.store.execute(
            "INSERT OR REPLACE INTO new_samples VALUES (?, ?, ?, ?, ?)",
            (job_id, name, label, label_state, human),
        )

    def merged(self) -> Iterator[tuple[str, int, str | None, str | None, str | None, int]]:
        """The previous version's rows in their order, joined on disk with this run:
        ``(row JSON, this run has the sample, its label, its label state, its human
        sources, this run read the sample's job in full)``; the flags are sqlite's 0 or 1."""
        return self.store.rows(
            "SELECT p.row, n.job_id IS NOT NULL, n.label, n.label_state, n.human,"
            " c.item IS NOT NULL"
            " FROM previous_rows p"
            " LEFT JOIN new_samples n ON n.job_id = p.job_id AND n.input_name = p.input_name"
            " LEFT JOIN complete_jobs c ON c.item = p.job_id"
            " ORDER BY p.seq"
        )

    def added(self) -> int:
        """Samples of this run that the previous version did not hold."""
        return int(self.store.one("SELECT COUNT(*)" + _ADDED)[0])

    def added_trainable_by_label(self) -> Counter[str]:
        """Per label, the added samples whose label a training run can use."""
        states = sorted(TRAINABLE_LABEL_STATES)
        marks = ", ".join("?" for _ in states)
        rows = self.store.rows(
            "SELECT n.label, COUNT(*)" + _ADDED + f" AND n.label_state IN ({marks})"
            " AND n.label IS NOT NULL GROUP BY n.label",
            states,
        )
        return Counter(dict(rows))

    def added_by_label(self) -> Counter[str]:
        rows = self.store.rows("SELECT n.label, COUNT(*)" + _ADDED + " GROUP BY n.label")
        return Counter({label if label is not None else "(none)": n for label, n in rows})
