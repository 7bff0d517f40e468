"""The push ledger: which sample became which Label Studio task, kept with the dataset.

``<dataset root>/_labels/label-studio.jsonl``, one JSON object a line: the server, the
project id, the task id, the sample's ``(job_id, input_name)``, its model and the
version it was pushed from. Never listed in a manifest (it is not data to train on).
Rewritten whole, atomically (``_core.fs.atomic_write``), after each imported chunk, so
it never holds half a line and never misses more than the chunk in flight (which the
push finds again among the project's tasks). Its values are only compared, never used
as paths.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from modzy_retrain._core.exceptions import DatasetError
from modzy_retrain._core.fs import atomic_write, join

LEDGER_DIR = "_labels"
LEDGER_PATH = f"{LEDGER_DIR}/label-studio.jsonl"


class LedgerEntry(BaseModel):
    """One pushed sample."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    server: str
    project_id: int
    task_id: int
    job_id: str
    input_name: str
    model_id: str
    version: str | None
    pushed_at: datetime


class Ledger:
    """The ledger of one dataset, read once, appended to chunk by chunk."""

    def __init__(self, fs: Any, root: str) -> None:
        self._fs = fs
        self.path = join(root, LEDGER_PATH)
        self.entries: list[LedgerEntry] = list(self._read())

    def _read(self) -> Iterable[LedgerEntry]:
        try:
            raw = bytes(self._fs.cat_file(self.path))
        except FileNotFoundError:
            return
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                yield LedgerEntry.model_validate_json(line)
            except ValidationError:
                # Guessing past a damaged ledger could push every sample twice.
                raise DatasetError(
                    f"{LEDGER_PATH}, line {number}: not a ledger entry; fix or remove the line"
                ) from None

    def keys(self, server: str, project_id: int) -> set[tuple[str, str]]:
        """The ``(job_id, input_name)`` already pushed to this project."""
        return {
            (e.job_id, e.input_name)
            for e in self.entries
            if e.server == server and e.project_id == project_id
        }

    def append(self, entries: Iterable[LedgerEntry]) -> None:
        new = list(entries)
        if not new:
            return
        self.entries += new
        body = "".join(e.model_dump_json() + "\n" for e in self.entries)
        atomic_write(self._fs, self.path, body.encode())


def now() -> datetime:
    return datetime.now(timezone.utc)


def entry(
    server: str,
    project_id: int,
    task_id: int,
    key: tuple[str, str],
    model_id: str,
    version: str | None,
) -> LedgerEntry:
    return LedgerEntry(
        server=server,
        project_id=project_id,
        task_id=task_id,
        job_id=key[0],
        input_name=key[1],
        model_id=model_id,
        version=version,
        pushed_at=now(),
    )


def dumps(entries: Iterable[LedgerEntry]) -> str:
    """The entries as the ledger's text (for tests and tools)."""
    return "".join(json.dumps(e.model_dump(mode="json")) + "\n" for e in entries)
