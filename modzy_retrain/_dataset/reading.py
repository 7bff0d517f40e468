"""Reading a dataset's sample tables back, whatever their format, checked as they go.

Each format has its reader, over the standard parser (``json``, the ``csv`` module,
pyarrow for Parquet), yielding rows in their JSON form (see ``rows.py``); a row is
validated into a :class:`PublishedSample` only when asked. Tables are streamed a line
or a row group at a time: memory stays flat however big the dataset.

Every table is read against its manifest entry: its bytes are hashed as they pass, and
at the end of the table its size, sha256 and row count must be the manifest's, else
:class:`DatasetError` names the file. (A Parquet file is read from its footer first,
so it is hashed before it is read.) A table cut short, grown or altered is never
taken for a smaller, valid one: not by :func:`read_samples`, not by the merge of the
next version.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import IO, Any, Literal, overload

from pydantic import ValidationError

from modzy_retrain._core.exceptions import ConfigurationError, DatasetError
from modzy_retrain._core.fs import CHUNK, join, url_to_fs

from .manifest import Manifest, ManifestFile, load_manifest
from .rows import FILE_NAME, PublishedSample, from_csv, from_parquet, pyarrow_modules

# Where a row came from: its table and its line (row, for Parquet) there.
Where = tuple[str, int]
Rows = Iterator[tuple[Where, dict[str, Any]]]

# The sample tables of each format: a versioned CSV or Parquet dataset also keeps a
# JSONL table for the next version to merge from, which readers skip.
TABLE_SUFFIX: Mapping[str, str] = {
    "jsonl": ".jsonl",
    "imagefolder": ".jsonl",  # one metadata.jsonl per split, and one in unlabeled/
    "csv": ".csv",
    "parquet": ".parquet",
}
# Parquet rows are decoded this many at a time.
PARQUET_READ_BATCH = 1000


def file_problem(fs: Any, root: str, path: str, size: int, sha256: str) -> str | None:
    """The problem with one listed file (missing, size, sha256), or ``None``."""
    digest = hashlib.sha256()
    seen = 0
    try:
        with fs.open(join(root, path), "rb") as handle:
            while chunk := handle.read(CHUNK):
                seen += len(chunk)
                digest.update(chunk)
    except FileNotFoundError:
        return f"{path}: missing"
    return _mismatch(path, seen, digest.hexdigest(), size, sha256)


def _mismatch(path: str, seen: int, digest: str, size: int, sha256: str) -> str | None:
    if seen != size:
        return f"{path}: size {seen}, manifest says {size}"
    if digest != sha256:
        return f"{path}: sha256 differs from the manifest"
    return None


def rows_problem(entry: ManifestFile, rows: int) -> str | None:
    """The problem with a table's row count, or ``None`` (none recorded before format 3)."""
    if entry.rows is not None and rows != entry.rows:
        return f"{entry.path}: {rows} rows, manifest says {entry.rows}"
    return None


def damaged(problem: str) -> DatasetError:
    return DatasetError(
        f"{problem}: the table does not match its manifest (cut short or altered since "
        "it was published), so nothing read from it is trusted; verify_dataset(url) "
        "lists every such file"
    )


class _HashingStream(io.RawIOBase):
    """A table's bytes as a reader takes them, hashed and counted on the way."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.digest = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self.digest.update(data)
        self.size += n
        return n

    def problem(self, entry: ManifestFile) -> str | None:
        """Read the rest (what a reader left), then compare with the manifest."""
        while chunk := self.raw.read(CHUNK):
            self.digest.update(chunk)
            self.size += len(chunk)
        return _mismatch(entry.path, self.size, self.digest.hexdigest(), entry.size, entry.sha256)


def _checked(entry: ManifestFile, fs: Any, root: str, read: Callable[[IO[bytes]], Rows]) -> Rows:
    """The rows ``read`` takes out of one table, checked against its entry at the end
    (and at once when the reader fails: a damaged table is named as such)."""
    try:
        raw = fs.open(join(root, entry.path), "rb")
    except FileNotFoundError:
        raise DatasetError(f"{entry.path}: missing") from None
    with raw:
        stream = _HashingStream(raw)
        rows = 0
        try:
            for item in read(io.BufferedReader(stream, CHUNK)):
                rows += 1
                yield item
        except DatasetError as exc:
            problem = stream.problem(entry)
            if problem is not None:
                raise DatasetError(f"{damaged(problem)} ({exc})") from None
            raise
        problem = stream.problem(entry) or rows_problem(entry, rows)
        if problem is not None:
            raise damaged(problem)


def _jsonl(name: str) -> Callable[[IO[bytes]], Rows]:
    def read(handle: IO[bytes]) -> Rows:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError:
                raise DatasetError(f"{name}, line {number}: not JSON") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{name}, line {number}: not a JSON object")
            yield (name, number), row

    return read


def jsonl_rows(fs: Any, root: str, tables: Iterable[ManifestFile]) -> Rows:
    """Every row of these JSONL tables (entries of their manifest), as written."""
    for entry in tables:
        yield from _checked(entry, fs, root, _jsonl(entry.path))


def _csv(name: str) -> Callable[[IO[bytes]], Rows]:
    def read(handle: IO[bytes]) -> Rows:
        text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
        reader = csv.DictReader(text)
        try:
            for cells in reader:
                where = (name, reader.line_num)
                # DictReader files extra cells under None, and fills missing ones with None.
                if None in cells or None in cells.values():
                    raise DatasetError(f"{name}, line {reader.line_num}: not one cell per column")
                try:
                    row = {column: from_csv(column, value) for column, value in cells.items()}
                except ValueError as exc:
                    raise DatasetError(f"{name}, line {reader.line_num}: {exc}") from None
                yield where, row
        except (csv.Error, UnicodeDecodeError) as exc:
            raise DatasetError(f"{name}, line {reader.line_num}: not CSV ({exc})") from None
        finally:
            text.detach()  # the table's handle is closed by its owner

    return read


def _parquet_rows(fs: Any, root: str, entry: ManifestFile) -> Rows:
    # Parquet is read from its footer: the file is checked whole before it is read.
    problem = file_problem(fs, root, entry.path, entry.size, entry.sha256)
    if problem is not None:
        raise damaged(problem)
    pa, pq = pyarrow_modules()
    name = entry.path
    number = 0
    with fs.open(join(root, name), "rb") as handle:
        try:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=PARQUET_READ_BATCH):
                for cells in batch.to_pylist():
                    number += 1
                    try:
                        row = {k: from_parquet(k, value) for k, value in cells.items()}
                    except ValueError as exc:
                        raise DatasetError(f"{name}, row {number}: {exc}") from None
                    yield (name, number), row
        except pa.ArrowException as exc:
            raise DatasetError(f"{name}: not a readable Parquet file ({exc})") from None
    problem = rows_problem(entry, number)
    if problem is not None:
        raise damaged(problem)


def table_rows(fs: Any, root: str, entry: ManifestFile) -> Rows:
    """The rows of one table, by its suffix, checked against its entry."""
    if entry.path.endswith(".parquet"):
        return _parquet_rows(fs, root, entry)
    read = _csv(entry.path) if entry.path.endswith(".csv") else _jsonl(entry.path)
    return _checked(entry, fs, root, read)


def tables_of(manifest: Manifest, suffix: str) -> list[ManifestFile]:
    """The entries of a version's sample tables whose name ends with ``suffix``, in
    the manifest's order (its JSONL tables: what the next version merges from)."""
    return [manifest.table(name) for name in manifest.samples_files if name.endswith(suffix)]


def sample_rows(fs: Any, root: str, manifest: Manifest) -> Rows:
    """Every row of a dataset's sample tables in its JSON form, table by table.

    Raises:
        MissingDependencyError: A Parquet dataset, and pyarrow is not installed (raised
            here, not when the rows are first read).
    """
    own = tables_of(manifest, TABLE_SUFFIX[manifest.format])
    if manifest.format == "parquet":
        pyarrow_modules()
    return _rows(fs, root, own)


def _rows(fs: Any, root: str, tables: list[ManifestFile]) -> Rows:
    for entry in tables:
        yield from table_rows(fs, root, entry)


def published_samples(format: str, rows: Rows) -> Iterator[PublishedSample]:
    """The rows as typed records; an imagefolder row's ``file_name`` is left out, as
    ``file`` holds the same path from the dataset's root."""
    for (name, number), row in rows:
        if format == "imagefolder":
            row.pop(FILE_NAME, None)
        try:
            sample = PublishedSample.model_validate(row)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc'])) or 'row'}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise DatasetError(
                f"{name}, {'row' if format == 'parquet' else 'line'} {number}: not a published "
                f"sample ({problems}); read_samples(..., as_dicts=True) reads any row"
            ) from None
        yield sample


def row_dicts(rows: Rows) -> Iterator[dict[str, Any]]:
    """The rows alone, as dicts."""
    for _, row in rows:
        yield row


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
        DatasetError: No dataset at ``url``; while iterating, a row that is not a
            published sample (``as_dicts=True`` reads it), or a table that does not
            match its manifest (size, sha256, rows: checked at the end of each table,
            so the rows before come out first).
        MissingDependencyError: A Parquet dataset, without pyarrow.
    """
    if not isinstance(as_dicts, bool):
        raise ConfigurationError("read_samples(as_dicts=...): must be True or False")
    manifest = load_manifest(url, version=version, storage_options=storage_options)
    fs, root = url_to_fs(url, storage_options)
    rows = sample_rows(fs, root, manifest)
    return row_dicts(rows) if as_dicts else published_samples(manifest.format, rows)
