"""Checking a dataset against its manifest: every file it names, streamed.

:func:`verify_dataset` checks every file the manifest names (the sample tables, each
with its size, sha256 and rows; the file table, with its entry count; every data file
it lists; the vote tallies' table) and reports each problem; :func:`dataset_files` yields
the sample tables and data files, trusting the
file table only once it matches. Memory stays flat however many files a dataset holds.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from modzy_retrain._core.exceptions import DatasetError
from modzy_retrain._core.fs import join, url_to_fs

from .manifest import FileTable, ManifestFile, load_manifest, problems
from .reading import file_problem, rows_problem, table_rows
from .tallies import tallies_problems


def _check_table(fs: Any, root: str, table: FileTable) -> str | None:
    """The problem with a file table (hash, size or entry count), or ``None``."""
    problem = file_problem(fs, root, table.path, table.size, table.sha256)
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
            except ValidationError as exc:
                raise DatasetError(
                    f"{table.path}, line {number}: not a file entry ({problems(exc, 1)})"
                ) from None


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
    """Check every file the manifest names: present, right size, right sha256, and
    each sample table's rows (manifests of format 3 on); the vote tallies' table too,
    its entries, and the manifest's totals against its lines (format 4 on).

    The data files are checked through the manifest's file table, itself checked
    first (a table that does not match is reported, and its entries are not trusted).
    Returns the problems found (empty when the dataset is intact).

    Raises:
        DatasetError: No dataset at ``url``, or its manifest is invalid (a path
            outside the dataset's root, for one).
    """
    manifest = load_manifest(url, version=version, storage_options=storage_options)
    fs, root = url_to_fs(url, storage_options)
    found: list[str] = []
    for entry in manifest.files:
        problem = file_problem(fs, root, entry.path, entry.size, entry.sha256)
        if problem is None and entry.rows is not None:
            problem = _rows_problem(fs, root, entry)
        if problem is not None:
            found.append(problem)
    if manifest.tallies is not None:
        found.extend(tallies_problems(fs, root, manifest.tallies))
    table = manifest.file_table
    if table is not None:
        try:
            problem = _check_table(fs, root, table)
        except DatasetError as exc:
            problem = str(exc)
        if problem is not None:
            found.append(problem)
            found.append(f"{table.path}: its data files were not checked")
            return found
        try:
            for entry in _table_entries(fs, root, table):
                problem = file_problem(fs, root, entry.path, entry.size, entry.sha256)
                if problem is not None:
                    found.append(problem)
        except DatasetError as exc:  # an entry that is no file of the dataset
            found.append(str(exc))
            found.append(f"{table.path}: the data files after it were not checked")
    return found


def _rows_problem(fs: Any, root: str, entry: ManifestFile) -> str | None:
    """A sample table whose bytes match: its rows against the manifest's count."""
    rows = 0
    try:
        # Its size and sha256 matched: only a wrong count (or an unreadable row) is left.
        for _ in table_rows(fs, root, entry.model_copy(update={"rows": None})):
            rows += 1
    except DatasetError as exc:
        return str(exc)
    return rows_problem(entry, rows)
