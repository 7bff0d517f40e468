"""The selected samples as one Arrow table, and their class ids: what every loader
builds on.

A Parquet dataset is read by pyarrow itself, the model and the label states pushed
down to the reader as filters, so no row becomes a Python object. The other formats
(and Parquet tables written before their columns were typed) go through the format's
row reader (``_dataset/reading.py``), filtered there, and become Arrow record batches
a few thousand rows at a time, typed by the row's declared schema (``_dataset/rows.py``):
every format gives the same table.

Every table is checked against its manifest entry (size, sha256, rows), as
``read_samples`` checks it: a table cut short, grown or altered is a ``DatasetError``
naming the file, never a smaller dataset. (A Parquet table is hashed before pyarrow
reads it, its rows counted from its footer.)
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

from modzy_retrain._core.constants import TRAINABLE_LABEL_STATES
from modzy_retrain._core.exceptions import (
    DatasetError,
    LabelNotInClassListError,
    MissingDependencyError,
)
from modzy_retrain._core.fs import is_local, join
from modzy_retrain._dataset.manifest import ManifestFile
from modzy_retrain._dataset.reading import (
    TABLE_SUFFIX,
    damaged,
    file_problem,
    rows_problem,
    table_rows,
)
from modzy_retrain._dataset.rows import (
    COLUMNS,
    FILE_NAME,
    parquet_schema,
    to_parquet,
    upgrade_row,
)

from .select import Selection, split_names

# Rows of a JSONL, CSV or image folder table become Arrow this many at a time: large
# enough that Arrow's per-batch cost vanishes, small enough that memory stays bounded.
ROW_BATCH = 10_000
# What a loader cannot do without (the rest of the row is provenance, kept as it is).
NEEDED = ("job_id", "input_name", "label", "label_state", "split", "file", "source_url")


# The package to install, where it is not the module's name.
_PACKAGES = {"PIL": "Pillow"}


def imported(module: str, what: str, extra: str) -> Any:
    """``module``, or the error naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise MissingDependencyError(
            f"{what} needs {_PACKAGES.get(top, top)}: pip install 'modzy-retrain[{extra}]'"
        ) from None


def arrow(what: str, extra: str) -> tuple[Any, Any, Any]:
    """``(pyarrow, pyarrow.parquet, pyarrow.compute)``."""
    pa = imported("pyarrow", what, extra)
    return pa, imported("pyarrow.parquet", what, extra), imported("pyarrow.compute", what, extra)


def declared_schema(pa: Any) -> Any:
    """The row's columns with their declared Arrow types (no custom column)."""
    return parquet_schema(pa, [dict.fromkeys(COLUMNS)])


def _typed(pa: Any, schema: Any) -> bool:
    """Whether a Parquet table's known columns have their declared types (tables of
    0.x held lists and timestamps as text, and annotations without source and time)."""
    declared = declared_schema(pa)
    return all(
        schema.field(name).type.equals(declared.field(name).type)
        for name in declared.names
        if name in schema.names
    )


def _parquet(
    pa: Any, pq: Any, fs: Any, root: str, entry: ManifestFile, selection: Selection
) -> Any | None:
    """The selected rows of one Parquet table, or ``None`` if its columns are untyped."""
    # Checked whole first: pyarrow reads it from its footer, then only what it needs.
    problem = file_problem(fs, root, entry.path, entry.size, entry.sha256)
    if problem is not None:
        if problem.endswith(": missing"):
            raise DatasetError(f"{entry.path}: a sample table the manifest lists is missing")
        raise damaged(problem)
    path = join(root, entry.path)
    filters = [
        ("model_id", "==", selection.model_id),
        ("label_state", "in", list(selection.states)),
    ]
    # pyarrow's own reader on a local disk; through fsspec anywhere else.
    local = is_local(fs)
    try:
        if local:
            footer = pq.ParquetFile(path)
            schema, count = footer.schema_arrow, footer.metadata.num_rows
        else:
            with fs.open(path, "rb") as handle:
                footer = pq.ParquetFile(handle)
                schema, count = footer.schema_arrow, footer.metadata.num_rows
        problem = rows_problem(entry, count)
        if problem is not None:
            raise damaged(problem)
        if not _typed(pa, schema):
            return None
        missing = {"model_id", "label_state"} - set(schema.names)
        if missing:
            raise DatasetError(f"{path}: no {' or '.join(sorted(missing))} column")
        return pq.read_table(
            path, filesystem=None if local else fs, filters=filters, partitioning=None
        )
    except FileNotFoundError:
        raise DatasetError(f"{path}: a sample table the manifest lists is missing") from None
    except (pa.ArrowException, OSError) as exc:
        raise DatasetError(f"{path}: not a readable Parquet table ({exc})") from None


def _row_batches(
    pa: Any, fs: Any, root: str, tables: list[ManifestFile], selection: Selection
) -> Iterator[Any]:
    """The selected rows of JSONL, CSV, image folder or untyped Parquet tables, as
    record batches of one schema (the first batch's: declared types, custom columns
    inferred, as the Parquet writer does)."""
    format = selection.manifest.format
    states = set(selection.states)
    schema = None
    batch: list[dict[str, Any]] = []
    last = ("", 0)

    def flush() -> Any:
        nonlocal schema
        if schema is None:
            schema = parquet_schema(pa, batch)
        try:
            return pa.RecordBatch.from_pylist(batch, schema=schema)
        except (pa.ArrowException, TypeError, ValueError) as exc:
            raise DatasetError(
                f"{last[0]}: the rows up to line {last[1]} do not fit the sample row ({exc})"
            ) from None

    rows = (item for entry in tables for item in table_rows(fs, root, entry))
    for where, row in rows:
        if row.get("model_id") != selection.model_id or row.get("label_state") not in states:
            continue
        if format == "imagefolder":
            row.pop(FILE_NAME, None)
        try:
            batch.append(to_parquet(upgrade_row(row)))
        except ValueError as exc:
            raise DatasetError(f"{where[0]}, line {where[1]}: {exc}") from None
        last = where
        if len(batch) >= ROW_BATCH:
            yield flush()
            batch = []
    if batch:
        yield flush()


def read_selected(fs: Any, root: str, selection: Selection, what: str, extra: str) -> Any:
    """The selected samples of the dataset, in the manifest's table order, as one Arrow
    table with the row's columns (and any a custom writer added).

    Raises:
        DatasetError: A table is missing or unreadable, or lacks a column loaders need.
        MissingDependencyError: pyarrow is not installed (names ``extra``).
    """
    pa, pq, _ = arrow(what, extra)
    manifest = selection.manifest
    suffix = TABLE_SUFFIX[manifest.format]
    # A versioned CSV or Parquet dataset also lists a JSONL table for the next version.
    tables = [manifest.table(name) for name in manifest.samples_files if name.endswith(suffix)]
    parts: list[Any] = []
    rows: list[ManifestFile] = []
    for entry in tables:
        table = (
            _parquet(pa, pq, fs, root, entry, selection) if manifest.format == "parquet" else None
        )
        if table is None:
            rows.append(entry)
        else:
            parts.append(table)
    if rows:
        batches = list(_row_batches(pa, fs, root, rows, selection))
        if batches:
            parts.append(pa.Table.from_batches(batches))
    if not parts:
        return declared_schema(pa).empty_table()
    try:
        # Tables of one dataset share their columns; types may differ where a custom
        # column held nothing yet, which "permissive" widens.
        table = pa.concat_tables(parts, promote_options="permissive")
    except pa.ArrowException as exc:
        raise DatasetError(f"{selection.where}: its sample tables disagree ({exc})") from None
    missing = [name for name in NEEDED if name not in table.column_names]
    if missing:
        raise DatasetError(f"{selection.where}: its samples have no {', '.join(missing)} column")
    return table


def class_ids(table: Any, selection: Selection) -> Any:
    """Each sample's class id (an int64 Arrow array): its label's index in the model's
    class list, ``-1`` for a sample without a label (``needs_label``, ``conflict``).

    Raises:
        LabelNotInClassListError: A label outside the class list.
        DatasetError: A trainable sample (confirmed, corrected, labelled) without a label.
    """
    import pyarrow as pa  # read_selected has imported it, or said which extra to install
    import pyarrow.compute as pc

    labels = table.column("label")
    ids = pc.index_in(labels, value_set=pa.array(selection.classes, pa.string()))
    outside = pc.and_(pc.is_valid(labels), pc.is_null(ids))
    if pc.any(outside).as_py():
        row = table.filter(outside).slice(0, 1).to_pylist()[0]
        raise LabelNotInClassListError(
            f"{selection.where}: sample {row['job_id']}/{row['input_name']} is labelled "
            f"{row['label']!r}, which is not in the class list of model "
            f"{selection.model_id} ({len(selection.classes)} classes)",
            model_id=selection.model_id,
            label=row["label"],
            job_id=row["job_id"],
            input_name=row["input_name"],
        )
    trainable = pc.is_in(
        table.column("label_state"), value_set=pa.array(sorted(TRAINABLE_LABEL_STATES))
    )
    unlabelled = pc.and_(trainable, pc.is_null(labels))
    if pc.any(unlabelled).as_py():
        row = table.filter(unlabelled).slice(0, 1).to_pylist()[0]
        raise DatasetError(
            f"{selection.where}: sample {row['job_id']}/{row['input_name']} is "
            f"{row['label_state']} but has no label"
        )
    return pc.fill_null(ids, -1).cast(pa.int64())


def by_split(table: Any, selection: Selection) -> dict[str, Any]:
    """The table cut by split: the manifest's splits in its order (empty ones too),
    then any other split a sample names.

    Raises:
        DatasetError: A sample without a split.
    """
    import pyarrow.compute as pc

    column = table.column("split")
    if column.null_count:
        row = table.filter(pc.is_null(column)).slice(0, 1).to_pylist()[0]
        raise DatasetError(
            f"{selection.where}: sample {row['job_id']}/{row['input_name']} has no split"
        )
    present = [str(name) for name in pc.unique(column).to_pylist()]
    return {
        name: table.filter(pc.equal(column, name))
        for name in split_names(selection.manifest, present)
    }
