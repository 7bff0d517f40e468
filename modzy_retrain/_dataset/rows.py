"""A dataset's sample row: its columns, their types in each format, and the typed
record readers get back (:class:`PublishedSample`).

The row is declared once here (``COLUMNS``): the Parquet schema, the decoding of CSV
text and the read-side model all follow it, so every format reads back as the same
records. Rows travel in their *JSON form* (what ``DatasetWriter.serialize`` returns
and a JSONL table holds: text, numbers, lists, ISO timestamps); each format is
decoded to it, and :class:`PublishedSample` validates it. The layout of each format
and what it cannot hold are documented in ``docs/dataset-format.md``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from modzy_retrain._core.exceptions import MissingDependencyError
from modzy_retrain._core.timestamps import parse_timestamp

LabelState = Literal["confirmed", "corrected", "labelled", "needs_label", "conflict"]
"""How much a sample's label can be trusted.

- ``confirmed``: users agreed with the prediction (up-voted).
- ``corrected``: users disagreed and the right class is known (binary flip).
- ``labelled``: a human gave the label (a label file, Label Studio); the rule names
  the source (``human:label-file``, ``human:label-studio``) and ``annotations`` each
  annotator's choice.
- ``needs_label``: the prediction is wrong or uncertain and nobody said what is right;
  ``candidates`` holds the likeliest classes for a human to pick from.
- ``conflict``: users disagree with each other, or annotators do (``annotations``).
"""

LABEL_STATES: tuple[LabelState, ...] = (
    "confirmed",
    "corrected",
    "labelled",
    "needs_label",
    "conflict",
)

# The column an imagefolder metadata row starts with: the file's name relative to the
# metadata file's folder, as Hugging Face expects (``file`` holds it from the root).
FILE_NAME = "file_name"

ColumnKind = Literal[
    "text", "integer", "number", "timestamp", "texts", "predictions", "annotations"
]
# Kinds held as JSON text by CSV (and by Parquet tables written before they were typed).
_LISTS = ("texts", "predictions", "annotations")


@dataclass(frozen=True)
class Column:
    kind: ColumnKind
    nullable: bool = False


# Every column of the row ``DatasetWriter.serialize`` writes, in its order (a test
# checks the writer, and :class:`PublishedSample`, against it).
COLUMNS: Mapping[str, Column] = {
    "job_id": Column("text"),
    "input_name": Column("text"),
    "model_id": Column("text"),
    "model_version": Column("text"),
    "model_name": Column("text", nullable=True),
    "submitted_at": Column("timestamp", nullable=True),
    "label": Column("text", nullable=True),
    "label_state": Column("text"),
    "rule": Column("text"),
    "candidates": Column("texts"),
    "annotations": Column("annotations"),
    "predicted_label": Column("text", nullable=True),
    "predicted_score": Column("number", nullable=True),
    "predictions": Column("predictions"),
    "votes_up": Column("integer"),
    "votes_down": Column("integer"),
    "source_url": Column("text", nullable=True),
    "sha256": Column("text", nullable=True),
    "size": Column("integer", nullable=True),
    "split": Column("text", nullable=True),
    "file": Column("text", nullable=True),
}


# Columns added after a format's first release: the column they follow, and the value
# a row written before them holds (a previous version's rows, carried over, get it).
ADDED_COLUMNS: Mapping[str, tuple[str, Any]] = {"annotations": ("candidates", [])}


def upgrade_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row written before some columns existed, with them in their place (every row
    of a table must have the same columns); any other row as it is."""
    if all(name in row for name in ADDED_COLUMNS):
        return row
    out: dict[str, Any] = {}
    for name, value in row.items():
        out[name] = value
        for added, (after, default) in ADDED_COLUMNS.items():
            if after == name and added not in row:
                out[added] = default
    return out


class PublishedAnnotation(BaseModel):
    """One human's label for a published sample.

    Attributes:
        annotator: Who chose it (``None`` when unnamed); a Label Studio user id for
            ``label-studio``.
        label: What they chose.
        source: Where it comes from (``label-file``, ``label-studio``); ``None`` in
            datasets written before the field.
        at: When the annotation was made or last changed, when the source says.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    annotator: str | None
    label: str
    source: str | None = None
    at: datetime | None = None


class PublishedPrediction(BaseModel):
    """One class and its score, as a published sample records the model's prediction."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str
    score: float


class PublishedSample(BaseModel):
    """One sample of a published dataset, as :func:`read_samples` reads it back: the
    same record whatever the dataset's format.

    Attributes:
        job_id, input_name: The production input (unique together).
        model_id, model_version, model_name: The model that predicted.
        submitted_at: When the job was submitted.
        label: The training label (``None`` when it ``needs_label`` or is in ``conflict``).
        label_state: How much the label can be trusted (see :data:`LabelState`).
        rule: The rule that decided the label (``down-voted:binary-flip``...).
        candidates: Likely labels for a human to choose from.
        annotations: The human labels behind a ``human:`` rule, each annotator's
            choice (empty otherwise, and in datasets written before the column).
        predicted_label, predicted_score: The model's top class and its score.
        predictions: Every class the model scored, highest first.
        votes_up, votes_down: The votes on the prediction when it was read.
        source_url: Where the raw input lives (credentials removed).
        sha256, size: The raw input's content hash and size in bytes.
        split: The split it belongs to (``train``, ``validation``...).
        file: Where its copy is, relative to the dataset's root (``None`` in
            ``reference`` mode).

    Columns a custom ``DatasetWriter.serialize`` adds are kept, in ``model_extra``
    (CSV and Parquet hold them as text when they are lists or objects).
    ``sample.model_dump()`` gives a dict; ``read_samples(url, as_dicts=True)`` reads
    the rows as dicts without validating them.
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    job_id: str
    input_name: str
    model_id: str
    model_version: str
    model_name: str | None
    submitted_at: datetime | None
    label: str | None
    label_state: LabelState
    rule: str
    candidates: tuple[str, ...]
    annotations: tuple[PublishedAnnotation, ...] = ()
    predicted_label: str | None
    predicted_score: float | None
    predictions: tuple[PublishedPrediction, ...]
    votes_up: int
    votes_down: int
    source_url: str | None
    sha256: str | None
    size: int | None
    split: str | None
    file: str | None

    @property
    def key(self) -> tuple[str, str]:
        """``(job_id, input_name)``: unique in a dataset."""
        return (self.job_id, self.input_name)


def pyarrow_modules() -> tuple[Any, Any]:
    """``(pyarrow, pyarrow.parquet)``, or the error naming the extra that brings them."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingDependencyError(
            "the parquet format needs pyarrow: pip install 'modzy-retrain[parquet]'"
        ) from exc
    return pa, pq


def json_text(value: Any) -> Any:
    """A list or object as JSON text (how CSV, and Parquet for a custom column, hold
    them); any other value as it is."""
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, ensure_ascii=False)
    return value


# -- Parquet -------------------------------------------------------------------------


def _arrow_type(pa: Any, kind: ColumnKind) -> Any:
    if kind == "integer":
        return pa.int64()
    if kind == "number":
        return pa.float64()
    if kind == "timestamp":
        return pa.timestamp("us", tz="UTC")
    if kind == "texts":
        return pa.list_(pa.string())
    if kind == "predictions":
        return pa.list_(pa.struct([("label", pa.string()), ("score", pa.float64())]))
    if kind == "annotations":
        # ``at`` as ISO text, as in the JSON form; tables written before ``source`` and
        # ``at`` existed read back without them.
        fields = [(name, pa.string()) for name in ("annotator", "label", "source", "at")]
        return pa.list_(pa.struct(fields))
    return pa.string()


def parquet_schema(pa: Any, batch: list[dict[str, Any]]) -> Any:
    """The schema of a Parquet sample table, from its first batch of rows: the declared
    type of each known column, so a batch whose labels are all ``None`` still makes a
    text column; a custom column's type inferred (text if it holds nothing yet)."""
    fields = []
    for name in batch[0]:
        column = COLUMNS.get(name)
        if column is not None:
            fields.append(pa.field(name, _arrow_type(pa, column.kind), nullable=column.nullable))
            continue
        inferred = pa.array([row.get(name) for row in batch]).type
        fields.append(pa.field(name, pa.string() if pa.types.is_null(inferred) else inferred))
    return pa.schema(fields)


def to_parquet(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row in its JSON form, as a Parquet table takes it: timestamps parsed (raises
    ``ValueError`` for a value that is not one), a custom column's lists and objects
    as JSON text."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        column = COLUMNS.get(name)
        if column is None:
            out[name] = json_text(value)
        elif column.kind == "timestamp":
            out[name] = parse_timestamp(value)
        else:
            out[name] = value
    return out


def from_parquet(name: str, value: Any) -> Any:
    """One Parquet cell in its JSON form. Tables written before the columns were typed
    (0.x) held lists as JSON text and timestamps as ISO text: both read the same."""
    column = COLUMNS.get(name)
    if column is None or value is None:
        return value
    if column.kind == "timestamp" and isinstance(value, datetime):
        return value.isoformat()
    if column.kind in _LISTS and isinstance(value, str):
        return json.loads(value)
    return value


# -- CSV -----------------------------------------------------------------------------


# What a spreadsheet takes for a formula at the start of a cell (some skip a tab or a
# carriage return first), and the escape itself: such a text is written after a ``'``.
_ESCAPED_START = ("=", "+", "-", "@", "\t", "\r", "'")


def csv_cell(value: Any) -> Any:
    """A value as a CSV table writes it: a text starting with ``=``, ``+``, ``-``, ``@``,
    a tab, a carriage return or ``'`` gets a leading ``'``, so that Excel, LibreOffice
    and Google Sheets show it as text instead of evaluating it (numbers are written as
    they are). :func:`from_csv` takes the ``'`` off."""
    if isinstance(value, str) and value.startswith(_ESCAPED_START):
        return "'" + value
    return value


def from_csv(name: str, text: str) -> Any:
    """One CSV cell in its JSON form (raises ``ValueError`` if it is not its column's
    type). CSV cannot tell an empty text from no value: both read as ``None``, as does
    an empty cell of a custom column, whose values read as text. The ``'`` that
    :func:`csv_cell` put before a text is taken off."""
    if text.startswith("'"):
        text = text[1:]
    column = COLUMNS.get(name)
    if column is None:
        return text or None
    if text == "" and column.nullable:
        return None
    if column.kind == "integer":
        return int(text)
    if column.kind == "number":
        return float(text)
    if column.kind in _LISTS:
        return json.loads(text)  # a ValueError for an empty cell, too
    return text
