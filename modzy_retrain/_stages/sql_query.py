"""Lineage queries, pure: their parameters checked when the stage is built, the
batched form's key, the answer's shape from its column names, and the credential-free
reference of one row.

A query names the record's values as bound parameters (``:job_id``, ``:input_name``,
a named group of the input-name pattern...), found by SQLAlchemy's own rule for
``text()``: a colon and a word, not after another colon, a word character or a
backslash (``::bytea`` is a cast, ``\\:x`` a literal colon). Values only ever reach the
database bound, never spliced into the SQL.

The batched form holds ``IN :keys`` after a column or a tuple of columns named like
record fields (``(job_id, input_name) IN :keys``): the stage binds the keys of many
records at once (SQLAlchemy's expanding parameter) and maps the rows back by the key
columns the query answers beside its payload or pointer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from modzy_retrain._core.exceptions import LineageError, UnsafeNameError

# SQLAlchemy's text() finds bound parameters with this pattern (sql/elements.py).
BIND = re.compile(r"(?<![:\w\\]):(\w+)(?!:)")
KEYS = "keys"
# The answer's shape, from its column names (compared lower-cased).
PAYLOAD_COLUMNS = ("payload",)
POINTER_COLUMNS = ("url", "path")
# A payload's file extension, optional: what the copy is named with, for the loaders.
EXTENSION_COLUMN = "extension"
_EXTENSION = re.compile(r"^\.[a-z0-9]{1,10}$")
# "(a, t.b) IN :keys" or "a IN :keys": the batched form's key, in the tuple's order.
_KEY_TUPLE = re.compile(r"(\([^()]*\)|[\w.\"`\[\]]+)\s+IN\s+:keys\b", re.IGNORECASE)
# The first table named after FROM (quoted or not, schema-qualified or not).
_NAME_PART = r"(?:\"[^\"]+\"|`[^`]+`|[\w$]+)"
_FROM = re.compile(rf"\bFROM\s+({_NAME_PART}(?:\.{_NAME_PART})*)", re.IGNORECASE)

Shape = Literal["payload", "pointer"]


@dataclass(frozen=True)
class LineageQuery:
    """One lineage query, checked.

    Attributes:
        sql: The query as the user wrote it.
        params: Its bound parameters other than ``:keys``, in order of first use.
        key_fields: The batched form's key (the fields ``IN :keys`` binds, in the
            tuple's order); empty for the one-key form, which runs once per record.
        name: What the reference calls it: the table after its first ``FROM``.
    """

    sql: str
    params: tuple[str, ...]
    key_fields: tuple[str, ...]
    name: str

    @property
    def batched(self) -> bool:
        return bool(self.key_fields)

    @property
    def fields(self) -> tuple[str, ...]:
        """Every record value the query needs: its key, then its other parameters."""
        return (*self.key_fields, *(p for p in self.params if p not in self.key_fields))


def _identifier(text: str) -> str:
    """``t."Job_Id"`` -> ``Job_Id``; ``r.job_id`` -> ``job_id``."""
    last = text.strip().rsplit(".", 1)[-1].strip()
    return last.strip('"`[]')


def parse_query(sql: str, allowed: Iterable[str]) -> LineageQuery:
    """Check a lineage query's parameters now, not on the first record.

    Args:
        sql: The query.
        allowed: The record fields and the pattern's named groups.

    Raises:
        LineageError: A parameter that is neither, no parameter at all, or a ``:keys``
            that is not the batched form's.
    """
    known = set(allowed)
    if not isinstance(sql, str) or not sql.strip():
        raise LineageError("a lineage query must be a non-empty SQL string")
    shown = " ".join(sql.split())
    found = BIND.findall(sql)
    params = tuple(dict.fromkeys(p for p in found if p != KEYS))
    unknown = [p for p in params if p not in known]
    if unknown:
        raise LineageError(
            f"lineage query {shown!r} uses :{unknown[0]}, neither a record field nor a "
            f"named group of the pattern; known: {', '.join(sorted(known))}"
        )
    key_fields: tuple[str, ...] = ()
    if KEYS in found:
        key_fields = _key_fields(sql, shown, found.count(KEYS), known)
    if not params and not key_fields:
        raise LineageError(
            f"lineage query {shown!r} binds no record field (:job_id, :input_name...): "
            "every input would get the same answer"
        )
    matched = _FROM.search(sql)
    name = _identifier(matched.group(1)) if matched else "query"
    return LineageQuery(sql=sql, params=params, key_fields=key_fields, name=name or "query")


def _key_fields(sql: str, shown: str, uses: int, known: set[str]) -> tuple[str, ...]:
    matches = list(_KEY_TUPLE.finditer(sql))
    if uses != 1 or len(matches) != 1:
        raise LineageError(
            f"lineage query {shown!r}: :keys is the batched form's, used once, as in "
            "(job_id, input_name) IN :keys"
        )
    inside = matches[0].group(1).strip()
    if inside.startswith("("):
        inside = inside[1:-1]
    fields = tuple(_identifier(part) for part in inside.split(","))
    wrong = [f for f in fields if f not in known]
    if wrong or not all(fields) or len(set(fields)) != len(fields):
        raise LineageError(
            f"lineage query {shown!r}: the columns before IN :keys must be named like "
            f"record fields or named groups of the pattern ({', '.join(sorted(known))}); "
            "rename them in a subquery: SELECT * FROM (SELECT request AS job_id, ...) "
            "AS r WHERE (job_id, input_name) IN :keys"
        )
    return fields


@dataclass(frozen=True)
class Answer:
    """Where a query's answer sits in its rows: the shape, the column, the key columns,
    and the optional ``extension`` column (a payload's file extension: ``.png``)."""

    shape: Shape
    column: int
    keys: tuple[int, ...]
    extension: int | None = None

    def extension_of(self, row: Sequence[Any]) -> str:
        """The row's extension (``.png``), or ``""`` when it has none or a strange one."""
        if self.extension is None or row[self.extension] is None:
            return ""
        text = as_text(row[self.extension]).strip().lower()
        text = text if text.startswith(".") else "." + text
        return text if _EXTENSION.match(text) else ""


def answer_of(columns: Sequence[str], query: LineageQuery) -> Answer:
    """The shape of a query's answer, from its column names.

    Raises:
        LineageError: No ``payload`` nor ``url``/``path`` column, several of them, or a
            batched query that does not answer its key columns.
    """
    lowered = [str(c).lower() for c in columns]
    keys = {k.lower() for k in query.key_fields}
    found = [
        (i, name)
        for i, name in enumerate(lowered)
        if name in (*PAYLOAD_COLUMNS, *POINTER_COLUMNS) and name not in keys
    ]
    if len(found) != 1:
        said = "none" if not found else ", ".join(name for _, name in found)
        raise LineageError(
            f"lineage query on {query.name} answers columns {', '.join(lowered) or 'none'}: "
            f"it needs exactly one of payload (the bytes) or url / path (a pointer), "
            f"found {said}; name it with AS"
        )
    column, name = found[0]
    missing = [k for k in query.key_fields if k.lower() not in lowered]
    if missing:
        raise LineageError(
            f"the batched lineage query on {query.name} must answer its key columns "
            f"({', '.join(query.key_fields)}) beside {name}: {', '.join(missing)} missing"
        )
    key_columns = tuple(lowered.index(k.lower()) for k in query.key_fields)
    shape: Shape = "payload" if name in PAYLOAD_COLUMNS else "pointer"
    extension = lowered.index(EXTENSION_COLUMN) if EXTENSION_COLUMN in lowered else None
    return Answer(shape, column, key_columns, extension if shape == "payload" else None)


def as_text(value: Any) -> str:
    """A value as a key compares and a reference shows it."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "replace")
    return str(value)


def reference(base: str, query: LineageQuery, values: Mapping[str, Any]) -> str:
    """A row's stable, credential-free reference: the database, the table, the key.

    ``postgresql://db:5432/prod/requests/job_id=J1/input_name=cat.png``: each value is
    percent-encoded, and the key sits in the path, so no layer that cleans a URL's
    query of credentials can take part of it, and the last value's extension (an input
    name's) is the copy's. (A payload answered with an ``extension`` gets
    ``/payload.png`` after it, which names the copy's instead.)
    """
    parts = [f"{name}={quote(as_text(values[name]), safe='')}" for name in query.fields]
    return "/".join([base, quote(query.name, safe=""), *parts])


def payload_bytes(value: Any) -> bytes:
    """The bytes of a payload column (``BLOB``, ``BYTEA``, text as UTF-8).

    Raises:
        TypeError: The column holds something else (a number...).
    """
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode("utf-8")
    raise TypeError(f"the payload column holds {type(value).__name__}, not bytes or text")


def pointer_text(value: Any) -> str:
    """The text of a pointer column.

    Raises:
        UnsafeNameError: Bytes that are not UTF-8, or neither text nor bytes.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            raise UnsafeNameError("the pointer is not UTF-8 text") from None
    raise UnsafeNameError(f"the pointer is a {type(value).__name__}, not text")


def key_text(values: Sequence[Any]) -> tuple[str, ...]:
    """A key as answers are matched to records: every part as text."""
    return tuple(as_text(v) for v in values)
