"""Versioning a dataset: the next version, the previous one merged in, what changed.

Each run of a versioned write publishes a full snapshot: the previous version's
samples are carried over unless this run has the final word on their job, then they
are replaced, relabelled or retracted. The merge is one pass over the previous rows,
joined on disk (:class:`ScratchTables`) with this run's samples and the jobs it read
in full, so memory does not grow with the dataset.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modzy_retrain._core.constants import TRAINABLE_LABEL_STATES
from modzy_retrain._core.fs import join

from .classes import ClassLists
from .human import is_human, rule_sources
from .journal import ResultJournal
from .manifest import (
    Changes,
    Checkpoint,
    Manifest,
    TriggerState,
    latest_version,
    load_manifest,
    version_manifest,
)
from .reading import jsonl_rows, tables_of
from .tables import ScratchTables
from .trigger import TriggerGate

# Previous rows are loaded into the scratch database this many at a time.
_BATCH = 1000


def version_name(latest: str | None) -> str:
    """The version after ``latest`` (``v0001`` for the first)."""
    number = int(latest[1:]) + 1 if latest else 1
    return f"v{number:04d}"


@dataclass(frozen=True)
class NextVersion:
    """The version a run writes.

    Attributes:
        name: ``v0001``, ``v0002``...
        previous: The latest published version's manifest (``None`` for the first).
        resuming: A killed run may have left finished data files to keep.
        classes: The class lists this version starts from: the previous version's.
    """

    name: str
    previous: Manifest | None
    resuming: bool
    classes: ClassLists

    @property
    def prefix(self) -> str:
        """The version's folder, relative to the dataset's root."""
        return self.name + "/"


def begin_version(
    fs: Any,
    root: str,
    url: str,
    *,
    storage_options: Mapping[str, Any],
    journal: ResultJournal | None,
    scratch: ScratchTables,
) -> NextVersion:
    """Number the next version, clear what a killed run left of it, and load the
    previous one into ``scratch``. Only safe under the dataset's lock."""
    latest = latest_version(url, storage_options=storage_options)
    name = version_name(latest)
    # A rerun after a crash: content-addressed files already copied are kept. What a
    # dead run left in the version's folder stays unlisted (another run may be writing
    # there too); the run that publishes the version clears it.
    resuming = bool(journal is not None and journal.bodies) or fs.exists(join(root, name))
    previous = None
    classes = ClassLists()
    if latest is not None:
        previous = load_manifest(url, storage_options=storage_options)
        classes = ClassLists(previous.classes)
        load_previous(scratch, fs, root, previous, classes)
        scratch.tallies.load(fs, root, previous.tallies)
    return NextVersion(name, previous, resuming, classes)


def row_classes(row: Mapping[str, Any]) -> list[str]:
    """The classes one written row shows: every class scored, and its label."""
    found = [
        str(p["label"])
        for p in row.get("predictions") or ()
        if isinstance(p, Mapping) and p.get("label") is not None
    ]
    if row.get("label") is not None:
        found.append(str(row["label"]))
    return found


def load_previous(
    scratch: ScratchTables,
    fs: Any,
    root: str,
    previous: Manifest,
    classes: ClassLists | None = None,
) -> None:
    """Read the previous version once: its rows for the merge at commit, the sha256 of
    each for deduplication (and to never copy its bytes again), and their classes
    (what a version written before class lists seeds them from; else none is new)."""
    rows: list[tuple[str, str, str]] = []
    human: list[tuple[str, str, str]] = []
    contents: list[tuple[str, str, str]] = []
    # Its JSONL table (a CSV or Parquet version keeps one too), whose rows are carried
    # over exactly as written: a custom serialize()'s columns and types included. Each
    # is checked against the manifest (size, sha256, rows) once read, before anything
    # of this version is published: a damaged one stops the run, never shrinks it.
    for _, row in jsonl_rows(fs, root, tables_of(previous, ".jsonl")):
        job_id, name = str(row["job_id"]), str(row["input_name"])
        if classes is not None:
            classes.see(str(row.get("model_id")), row_classes(row))
        text = json.dumps(row, ensure_ascii=False)
        rows.append((job_id, name, text))
        if is_human(row.get("rule")):
            human.append((job_id, name, text))
        if row.get("sha256"):
            contents.append((str(row["sha256"]), job_id, name))
        if len(rows) >= _BATCH:
            scratch.add_previous(rows, contents)
            scratch.add_human(human)
            rows.clear()
            human.clear()
            contents.clear()
    scratch.add_previous(rows, contents)
    scratch.add_human(human)


def carry_over(
    scratch: ScratchTables, previous: Manifest, keep: Callable[[dict[str, Any]], None]
) -> Changes:
    """Merge the previous version into this one: ``keep`` each row carried over, and
    return what changed.

    A previous sample is carried over unless this run has the final word on its job
    (the job was read again and is complete): then it is replaced by the new sample,
    relabelled, or retracted when the votes no longer select it. A sample a human
    labelled is never retracted by the votes: it is carried over.
    """
    retracted: list[dict[str, Any]] = []
    relabelled: list[dict[str, Any]] = []
    trainable = scratch.added_trainable_by_label()
    carried = 0
    for text, is_new, new_label, new_state, new_human, reread in scratch.merged():
        row: dict[str, Any] = json.loads(text)
        job_id, name = str(row["job_id"]), str(row["input_name"])
        label, state = row.get("label"), row.get("label_state")
        human = "+".join(rule_sources(str(row.get("rule") or "")))
        if is_new:
            if (new_label, new_state, new_human) != (label, state, human):
                trainable_before = state in TRAINABLE_LABEL_STATES and label == new_label
                # A new training signal: a label where there was none, or another (a
                # human confirming the label the votes gave is not one).
                if (
                    new_state in TRAINABLE_LABEL_STATES
                    and new_label is not None
                    and not trainable_before
                ):
                    trainable[new_label] += 1
                relabelled.append(
                    {
                        "job_id": job_id,
                        "input_name": name,
                        "was": label,
                        "now": new_label,
                        "label_state": new_state,
                        "was_label_state": state,
                        "human": new_human or None,
                    }
                )
        elif reread and not is_human(row.get("rule")):
            retracted.append(
                {
                    "job_id": job_id,
                    "input_name": name,
                    "label": label,
                    "label_state": state,
                    "reason": "no longer selected (votes changed)",
                }
            )
        else:
            keep(row)
            carried += 1
    return Changes(
        previous=previous.version,
        added=scratch.added(),
        retracted=len(retracted),
        relabelled=len(relabelled),
        carried=carried,
        trainable=sum(trainable.values()),
        trainable_by_label=dict(trainable),
        retracted_samples=retracted,
        relabelled_samples=relabelled,
    )


def first_changes(scratch: ScratchTables) -> Changes:
    """What the first version changes: every sample is added."""
    trainable = scratch.added_trainable_by_label()
    return Changes(
        added=scratch.added(),
        trainable=sum(trainable.values()),
        trainable_by_label=dict(trainable),
    )


def checkpoint(
    version: str, moved: tuple[datetime, list[str]] | None, previous: Manifest | None
) -> Checkpoint:
    """Where the next run starts: where this one's jobs moved the cursor (``moved``),
    else where the previous version's checkpoint stood."""
    if moved is not None:
        return Checkpoint(version=version, cursor=moved[0], boundary_ids=moved[1])
    before = previous.checkpoint if previous is not None else None
    if before is not None:
        return before.model_copy(update={"version": version})
    return Checkpoint(version=version)


def evaluate_trigger(
    gate: TriggerGate, changes: Changes, previous: Manifest | None
) -> TriggerState:
    """The gate's decision for this version (recorded in its manifest)."""
    before = previous.trigger if previous is not None else None
    return gate.evaluate(changes, before)


def clear_unlisted(fs: Any, root: str, version: str, listed: set[str]) -> None:
    """Best effort, after a publication: remove the files in the version's folder that
    its manifest does not list (tables of a run that crashed, or lost the version)."""
    folder = join(root, version)
    keep = {join(root, path) for path in listed} | {join(root, version_manifest(version))}
    try:
        found = fs.find(folder)
    except OSError:
        return
    for path in found:
        name = path if path.startswith(root) else join(root, path)
        if name in keep:
            continue
        # A file may go meanwhile: the writer that lost this version removes its own.
        with contextlib.suppress(OSError):
            if fs.info(path).get("type") != "directory":
                fs.rm_file(path)
