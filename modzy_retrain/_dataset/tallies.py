"""Vote tallies: how users judged everything a build read, kept with each version.

A version's samples hold only what the votes selected, so they cannot say how often a
model version is down-voted: that needs the inputs nobody voted on too. Each write
therefore tallies every job whose results its run read: the inputs with a result, how
many were up-voted, down-voted or both, and the same per predicted class.

One line per job goes to the version's **tallies table** (``vNNNN/<run
tag>-tallies.jsonl``, ``tallies.jsonl`` in an unversioned dataset), which the manifest
lists with its size, sha256 and number of entries, as it lists the file table; the
manifest itself holds the table's totals per model, model version and day
(``VoteTallies``, in ``manifest.py`` with the other parts of a manifest), which is what
a report reads. Tallies are kept per job: a job read again (through a lag window, or a
rebuild) replaces its earlier tally, and a version carries over the tallies of the jobs
its run did not read, so no job counts twice. What a write must remember of them lives
in its scratch database (:class:`TallyBook`), never in memory.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date
from typing import Any, Protocol, runtime_checkable

from pydantic import ValidationError

from modzy_retrain._core.exceptions import DatasetError
from modzy_retrain._core.fs import url_to_fs

from .manifest import (
    FileTable,
    JobTally,
    ManifestFile,
    TallyTotal,
    VoteCounts,
    VoteTallies,
    load_manifest,
    problems,
)
from .reading import jsonl_rows
from .spill import SpillStore

TALLIES_NAME = "tallies.jsonl"


class TallySink(Protocol):
    """Where a run's job tallies go (a write's :class:`TallyBook`), each a
    :class:`JobTally` in its JSON form (:func:`tally_job`)."""

    def add(self, tally: Mapping[str, Any]) -> None: ...


@runtime_checkable
class Tallying(Protocol):
    """A run's job tracker that also hands on the tally of each job its run reads (the
    run report's job progress does; a label pull's reads no job)."""

    def tally_into(self, sink: TallySink | None) -> None: ...


# Previous tallies are loaded into the scratch database this many at a time.
_BATCH = 1000


def _summed(a: VoteCounts, b: VoteCounts) -> dict[str, int]:
    return {
        "inputs": a.inputs + b.inputs,
        "up_voted": a.up_voted + b.up_voted,
        "down_voted": a.down_voted + b.down_voted,
        "both": a.both + b.both,
    }


def add_counts(a: VoteCounts, b: VoteCounts) -> VoteCounts:
    """Two counts summed."""
    return VoteCounts(**_summed(a, b))


_FIELDS = ("inputs", "up_voted", "down_voted", "both")


def tally_job(
    job_id: str,
    *,
    model_id: str,
    model_version: str,
    model_name: str | None,
    day: date | None,
    votes: Iterable[tuple[str | None, int, int]],
) -> dict[str, Any]:
    """One job's tally from its inputs with a result, each ``(predicted class or None,
    up-votes, down-votes)``: a :class:`JobTally` in its JSON form (a table's line).

    A plain dict, not the model: a tally is made for every job a run reads, and the
    model's construction would cost more than the counting (``JobTally.model_validate``
    reads it).
    """
    total = [0, 0, 0, 0]
    per_class: dict[str, list[int]] = {}
    for predicted, up, down in votes:
        one = (1, int(up > 0), int(down > 0), int(up > 0 and down > 0))
        total = [a + b for a, b in zip(total, one, strict=True)]
        if predicted is not None:
            before = per_class.get(predicted, [0, 0, 0, 0])
            per_class[predicted] = [a + b for a, b in zip(before, one, strict=True)]
    return {
        **dict(zip(_FIELDS, total, strict=True)),
        "job_id": job_id,
        "model_id": model_id,
        "model_version": model_version,
        "model_name": model_name,
        "day": day.isoformat() if day is not None else None,
        "predicted": {
            label: dict(zip(_FIELDS, counts, strict=True))
            for label, counts in sorted(per_class.items())
        },
    }


TotalKey = tuple[str, str, str]  # model id, model version, day ("" when unknown)


class Totals:
    """Job tallies summed per model, model version and day, as they come (each a
    table's line: a :class:`JobTally` in its JSON form)."""

    def __init__(self) -> None:
        self.jobs = 0
        self._by_key: dict[TotalKey, dict[str, Any]] = {}

    def add(self, row: Mapping[str, Any]) -> None:
        self.jobs += 1
        key = (str(row["model_id"]), str(row["model_version"]), str(row.get("day") or ""))
        found = self._by_key.get(key)
        if found is None:
            found = {"name": None, "jobs": 0, "counts": Counter(), "predicted": {}}
            self._by_key[key] = found
        found["name"] = found["name"] or row.get("model_name")
        found["jobs"] += 1
        found["counts"].update({k: row[k] for k in _FIELDS})
        predicted: dict[str, Counter[str]] = found["predicted"]
        for label, counts in (row.get("predicted") or {}).items():
            predicted.setdefault(label, Counter()).update({k: counts[k] for k in _FIELDS})

    def totals(self) -> list[TallyTotal]:
        """The sums, ordered by model, model version and day."""
        return [
            TallyTotal(
                model_id=model_id,
                model_version=version,
                model_name=found["name"],
                day=date.fromisoformat(day) if day else None,
                jobs=found["jobs"],
                predicted={
                    label: VoteCounts(**{k: counts[k] for k in _FIELDS})
                    for label, counts in sorted(found["predicted"].items())
                },
                **{k: found["counts"][k] for k in _FIELDS},
            )
            for (model_id, version, day), found in sorted(self._by_key.items())
        ]


def _entry(table: FileTable) -> ManifestFile:
    """The tallies table as a table entry, so it is read under the readers' check
    (size, sha256, and its entries as rows)."""
    return ManifestFile(
        path=table.path, size=table.size, sha256=table.sha256, role="samples", rows=table.entries
    )


def read_tallies(fs: Any, root: str, table: FileTable) -> Iterator[JobTally]:
    """Every line of a tallies table, checked against the manifest as it is read (at its
    end: size, sha256, entries).

    Raises:
        DatasetError: A line that is no job tally, or a table that does not match.
    """
    for (name, number), row in jsonl_rows(fs, root, [_entry(table)]):
        try:
            yield JobTally.model_validate(row)
        except ValidationError as exc:
            problem = problems(exc, 1)
            raise DatasetError(f"{name}, line {number}: not a job tally ({problem})") from None


def job_tallies(
    url: str, *, version: str | None = None, storage_options: Mapping[str, Any] | None = None
) -> Iterator[JobTally]:
    """Yield a dataset's job tallies, one per job, from its tallies table (streamed,
    checked against the manifest: size, sha256 and entries at the end of the table).

    Nothing is yielded for a dataset written before tallies were recorded.

    Args:
        url: The dataset.
        version: For a versioned dataset, the version to read (default: the latest).
        storage_options: fsspec options for ``url``.

    Raises:
        DatasetError: No dataset at ``url``; while iterating, a table that does not
            match its manifest.
    """
    manifest = load_manifest(url, version=version, storage_options=storage_options)
    table = manifest.tallies.table if manifest.tallies is not None else None
    if table is None:
        return iter(())
    fs, root = url_to_fs(url, storage_options)
    return read_tallies(fs, root, table)


def tallies_problems(fs: Any, root: str, tallies: VoteTallies) -> list[str]:
    """What is wrong with a version's tallies (``verify_dataset``): the table against
    its entry, and the manifest's totals against the table's lines."""
    table = tallies.table
    summed = Totals()
    if table is not None:
        try:
            for tally in read_tallies(fs, root, table):
                summed.add(tally.model_dump(mode="json"))
        except DatasetError as exc:
            return [str(exc)]
    name = table.path if table is not None else "the tallies"
    if summed.jobs != tallies.jobs:
        return [f"{name}: {summed.jobs} jobs tallied, manifest says {tallies.jobs}"]
    if summed.totals() != tallies.totals:
        return [f"{name}: the manifest's totals are not the sums of the table's lines"]
    return []


class TallyBook:
    """One write's tallies, one per job, in its scratch database: the previous version's
    first (:meth:`load`), then this run's (:meth:`add`), each replacing the job's earlier
    one. :meth:`write` writes the table and returns its totals."""

    def __init__(self, store: SpillStore) -> None:
        self.store = store
        store.execute(
            "CREATE TABLE tallies (job_id TEXT PRIMARY KEY, tally TEXT NOT NULL) WITHOUT ROWID"
        )

    def add(self, tally: Mapping[str, Any]) -> None:
        """Record a job's tally (its JSON form), replacing any earlier one of the job."""
        self.store.execute(
            "INSERT OR REPLACE INTO tallies VALUES (?, ?)",
            (str(tally["job_id"]), json.dumps(tally, ensure_ascii=False)),
        )

    def load(self, fs: Any, root: str, tallies: VoteTallies | None) -> None:
        """Load the previous version's tallies (checked as they are read: a damaged
        table stops the write before anything is published)."""
        if tallies is None or tallies.table is None:
            return
        batch: list[tuple[str, str]] = []
        for tally in read_tallies(fs, root, tallies.table):
            batch.append((tally.job_id, tally.model_dump_json()))
            if len(batch) >= _BATCH:
                self._insert(batch)
                batch.clear()
        self._insert(batch)

    def _insert(self, batch: list[tuple[str, str]]) -> None:
        with self.store.lock:
            self.store.db.executemany("INSERT OR REPLACE INTO tallies VALUES (?, ?)", batch)

    def write(self, write_row: Callable[[dict[str, Any]], None]) -> Totals:
        """Hand every job's tally to ``write_row`` (by job id; jobs without an input with
        a result are left out), and return their totals."""
        totals = Totals()
        for (text,) in self.store.rows("SELECT tally FROM tallies ORDER BY job_id"):
            row = json.loads(text)  # made by this write, or validated as it was loaded
            if not row["inputs"]:
                continue
            totals.add(row)
            write_row(row)
        return totals
