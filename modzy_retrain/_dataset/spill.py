"""Scratch storage on disk for what a run must remember about every sample or job.

A run's memory must not grow with the history: deduplication (every sha256 written),
the data files already listed, a versioned run's merge (the previous version's rows,
this run's keys, the jobs read in full) and a rerun's journaled results all grow with
it. They live here instead: one sqlite3 database (stdlib) in a private temporary
folder, made for the run.

sqlite keeps a bounded page cache (``CACHE_KIB``) and writes the rest to the file. The
database is scratch: no journal, no fsync, one long transaction that is never
committed, because nothing in it has to survive the process (a killed run starts over
from the dataset). So on POSIX systems the file and its folder are unlinked as soon
as the database is set up: sqlite keeps writing through its open descriptor, and the
disk space comes back when the connection closes, or when the process dies, even by
SIGKILL. Where an open file cannot be unlinked (Windows), they are removed on close.

One connection is shared by the caller's thread and the worker threads that account
results, so every statement runs under one lock.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import threading
import weakref
from collections.abc import Iterable, Iterator, MutableSet
from typing import Any

# Page cache per database: sqlite's own default. The cache fills up to its size on a
# long run, so whatever it holds beyond that is memory that grows with the history; a
# miss costs a read from the OS's page cache, a few microseconds per sample.
CACHE_KIB = 2048


def _cleanup(connection: sqlite3.Connection, folder: str) -> None:
    try:
        connection.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)


class SpillStore:
    """One scratch sqlite3 database in a private temporary folder.

    Args:
        schema: ``CREATE`` statements run once.
        prefix: The temporary folder's name prefix.
    """

    def __init__(self, schema: Iterable[str] = (), *, prefix: str = "modzy-retrain-") -> None:
        self.folder = tempfile.mkdtemp(prefix=prefix)
        try:
            self.db = sqlite3.connect(
                os.path.join(self.folder, "spill.sqlite3"),
                isolation_level=None,  # transactions are ours: one, below
                check_same_thread=False,  # the lock below serialises every use
            )
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        # Closed and removed when the owner forgets to, or the interpreter exits.
        self._finalizer = weakref.finalize(self, _cleanup, self.db, self.folder)
        self.lock = threading.RLock()
        try:
            self._setup(schema)
        except BaseException:
            self._finalizer()
            raise

    def _setup(self, schema: Iterable[str]) -> None:
        journal = self.db.execute("PRAGMA journal_mode = OFF").fetchone()[0]
        self.db.execute("PRAGMA synchronous = OFF")
        self.db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        self.db.execute("PRAGMA temp_store = FILE")
        for statement in schema:
            self.db.execute(statement)
        # Never committed: the pages spill to the file as the cache fills, and
        # nothing is written twice.
        self.db.execute("BEGIN")
        # Unlinked while open: fine without a journal (with a rollback journal,
        # sqlite refuses to write to a database file that has moved).
        if str(journal).lower() == "off":
            with contextlib.suppress(OSError):  # Windows: removed on close instead
                os.unlink(os.path.join(self.folder, "spill.sqlite3"))
                os.rmdir(self.folder)

    @property
    def closed(self) -> bool:
        return not self._finalizer.alive

    def execute(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Cursor:
        with self.lock:
            return self.db.execute(sql, tuple(params))

    def one(self, sql: str, params: Iterable[Any] = ()) -> Any:
        """The first row of a query (``None``: no row)."""
        with self.lock:
            return self.db.execute(sql, tuple(params)).fetchone()

    def rows(self, sql: str, params: Iterable[Any] = (), *, batch: int = 512) -> Iterator[Any]:
        """Stream a query's rows, a batch at a time (the lock is not held between)."""
        with self.lock:
            cursor = self.db.execute(sql, tuple(params))
            chunk = cursor.fetchmany(batch)
        while chunk:
            yield from chunk
            with self.lock:
                chunk = cursor.fetchmany(batch)

    def close(self) -> None:
        """Close the database and remove its folder (idempotent)."""
        with self.lock:
            self._finalizer()

    def __enter__(self) -> SpillStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SpilledSet(MutableSet[str]):
    """A set of strings kept in a :class:`SpillStore` table (created here)."""

    def __init__(self, store: SpillStore, table: str) -> None:
        self.store = store
        self.table = table
        store.execute(f"CREATE TABLE {table} (item TEXT PRIMARY KEY) WITHOUT ROWID")

    def add(self, value: str) -> None:
        self.store.execute(f"INSERT OR IGNORE INTO {self.table} VALUES (?)", (value,))

    def add_new(self, value: str) -> bool:
        """Add ``value``; whether it was not there yet."""
        with self.store.lock:
            cursor = self.store.db.execute(
                f"INSERT OR IGNORE INTO {self.table} VALUES (?)", (value,)
            )
            return cursor.rowcount == 1

    def discard(self, value: str) -> None:
        self.store.execute(f"DELETE FROM {self.table} WHERE item = ?", (value,))

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, str):
            return False
        return self.store.one(f"SELECT 1 FROM {self.table} WHERE item = ?", (value,)) is not None

    def __iter__(self) -> Iterator[str]:
        return (row[0] for row in self.store.rows(f"SELECT item FROM {self.table}"))

    def __len__(self) -> int:
        return int(self.store.one(f"SELECT COUNT(*) FROM {self.table}")[0])
