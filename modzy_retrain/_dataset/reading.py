"""Reading a dataset's sample tables back, whatever their format.

Each format has its reader, over the standard parser (``json``, the ``csv`` module,
pyarrow for Parquet), yielding rows in their JSON form (see ``rows.py``); a row is
validated into a :class:`PublishedSample` only when asked. Tables are streamed a line
or a row group at a time: memory stays flat however big the dataset.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pydantic import ValidationError

from modzy_retrain._core.exceptions import DatasetError
from modzy_retrain._core.fs import join

from .rows import FILE_NAME, PublishedSample, from_csv, from_parquet, pyarrow_modules

# Where a row came from: its table and its line (row, for Parquet) there.
Where = tuple[str, int]

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


def jsonl_rows(fs: Any, root: str, tables: Iterable[str]) -> Iterator[tuple[Where, dict[str, Any]]]:
    """Every row of these JSONL tables (paths relative to ``root``), as written."""
    for name in tables:
        with fs.open(join(root, name), "rb") as handle:
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


def _csv_rows(fs: Any, root: str, name: str) -> Iterator[tuple[Where, dict[str, Any]]]:
    with (
        fs.open(join(root, name), "rb") as raw,
        io.TextIOWrapper(raw, encoding="utf-8", newline="") as text,
    ):
        reader = csv.DictReader(text)
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


def _parquet_rows(fs: Any, root: str, name: str) -> Iterator[tuple[Where, dict[str, Any]]]:
    pa, pq = pyarrow_modules()
    number = 0
    with fs.open(join(root, name), "rb") as handle:
        try:
            batches = pq.ParquetFile(handle).iter_batches(batch_size=PARQUET_READ_BATCH)
        except pa.ArrowException as exc:
            raise DatasetError(f"{name}: not a readable Parquet file ({exc})") from None
        for batch in batches:
            for cells in batch.to_pylist():
                number += 1
                try:
                    row = {column: from_parquet(column, value) for column, value in cells.items()}
                except ValueError as exc:
                    raise DatasetError(f"{name}, row {number}: {exc}") from None
                yield (name, number), row


def sample_rows(
    fs: Any, root: str, format: str, tables: Iterable[str]
) -> Iterator[tuple[Where, dict[str, Any]]]:
    """Every row of a dataset's sample tables in its JSON form, table by table.

    Raises:
        MissingDependencyError: A Parquet dataset, and pyarrow is not installed (raised
            here, not when the rows are first read).
    """
    suffix = TABLE_SUFFIX[format]
    own = [name for name in tables if name.endswith(suffix)]
    if format == "parquet":
        pyarrow_modules()
    return _rows(fs, root, format, own)


def _rows(
    fs: Any, root: str, format: str, tables: list[str]
) -> Iterator[tuple[Where, dict[str, Any]]]:
    if format in ("jsonl", "imagefolder"):
        yield from jsonl_rows(fs, root, tables)
        return
    read = _csv_rows if format == "csv" else _parquet_rows
    for name in tables:
        yield from read(fs, root, name)


def published_samples(
    format: str, rows: Iterator[tuple[Where, dict[str, Any]]]
) -> Iterator[PublishedSample]:
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


def row_dicts(rows: Iterator[tuple[Where, dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """The rows alone, as dicts."""
    for _, row in rows:
        yield row
