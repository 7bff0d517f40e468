"""``pull_from_label_studio``: every annotation of the pushed tasks, agreed by a policy,
published as a new version of the dataset.

Read first, write last: every task of every project in the dataset's ledger is read
(with its annotations) before the dataset is touched, so a Label Studio that fails
half-way leaves nothing behind. Then, under the dataset's lock, the latest version's
rows are read, the samples whose human label changed are written with it
(``labelled``, or ``conflict``; rule ``human:label-studio``) and everything else is
carried over, and the version is published with the same atomic commit as a build:
its changes list the relabelled samples, its trigger counts the new trainable ones.
A sample a label file labelled too is given both sources' say (``human.combine``).
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from modzy_retrain._core.exceptions import ConfigurationError, DatasetError
from modzy_retrain._core.fs import url_to_fs
from modzy_retrain._core.secrets import public_url
from modzy_retrain._dataset.human import (
    HumanLabel,
    LabelAggregation,
    Majority,
    combine,
    decided_row,
    from_row,
    rule_sources,
)
from modzy_retrain._dataset.lock import DatasetLock
from modzy_retrain._dataset.manifest import Manifest, TriggerState, latest_version, load_manifest
from modzy_retrain._dataset.options import WriterOptions
from modzy_retrain._dataset.publish import DatasetDraft
from modzy_retrain._dataset.reading import jsonl_rows, tables_of
from modzy_retrain._dataset.rows import upgrade_row
from modzy_retrain._dataset.trigger import TriggerGate
from modzy_retrain._triggers.fire import Firing, TriggerActions, fire

from .annotations import (
    SAMPLE_NOT_IN_DATASET,
    SOURCE,
    TASK_NOT_IN_LEDGER,
    PullProblem,
    read_task,
)
from .client import LabelStudioClient
from .ledger import Ledger, LedgerEntry
from .tasks import task_key

Progress = Callable[[str, int], None]
# The columns a human label decides: a row whose are all equal is not relabelled.
_DECIDED = ("label", "label_state", "rule", "candidates", "annotations")


@dataclass(frozen=True)
class PullResult:
    """What a pull did.

    Attributes:
        version: The version it published (``None``: no label changed, nothing was
            published).
        previous: The version the pull started from.
        projects: The projects read.
        tasks: Tasks read; ``annotations``: annotations used (valid ones), ``skipped``:
            annotations that give no label (skipped, cancelled, or empty).
        labelled: Samples whose annotations agree on a label (``agreed``... by the policy);
            ``conflicts``: samples whose annotators disagree.
        relabelled: Samples whose label or label state the pull changed (a new label, a
            label changed in Label Studio since the last pull, a new disagreement): the
            version's ``changes.relabelled``. A pull without any publishes nothing.
        updated: Samples whose label stays but whose annotations changed (another
            annotator agreeing...): written with the version, when one is published.
        unchanged: Samples whose human label was already in the dataset.
        problems: What was read and not written, with the reason (edited provenance, a
            class outside the class list, a task the ledger does not know...).
        trigger: The retraining gate's decision for the published version.
        firing: The trigger's firing, when it fired (or a pending one, ``recovered``).
    """

    dataset: str
    version: str | None
    previous: str | None
    projects: tuple[int, ...] = ()
    tasks: int = 0
    annotations: int = 0
    skipped: int = 0
    labelled: int = 0
    conflicts: int = 0
    relabelled: int = 0
    updated: int = 0
    unchanged: int = 0
    problems: tuple[PullProblem, ...] = ()
    trigger: TriggerState | None = None
    firing: Firing | None = None
    recovered: Firing | None = None
    manifest: Manifest | None = field(default=None, repr=False)

    @property
    def problem_counts(self) -> dict[str, int]:
        """Problems by reason."""
        return dict(Counter(p.reason for p in self.problems))


class _NoJobs:
    """A pull reads no job: no sample is retracted, the checkpoint stays where it was."""

    def track(self, ids: Any = None) -> None:
        return None

    def untrack(self) -> None:
        return None

    def cursor(self) -> None:
        return None


class _CountOnly(TriggerGate):
    """Without trigger settings a pull never fires, but counts: its trainable samples
    add to ``since_last`` for the next build's gate."""

    def evaluate(self, changes: Any, previous: TriggerState | None) -> TriggerState:
        state = super().evaluate(changes, previous)
        return state.model_copy(
            update={"ready": False, "reason": "a label pull without trigger settings"}
        )


@dataclass
class _Read:
    """What Label Studio said, before the dataset is touched."""

    decisions: dict[tuple[str, str], HumanLabel] = field(default_factory=dict)
    task_of: dict[tuple[str, str], int] = field(default_factory=dict)
    projects: list[int] = field(default_factory=list)
    tasks: int = 0
    annotations: int = 0
    skipped: int = 0
    problems: list[PullProblem] = field(default_factory=list)


def _read(
    ls: LabelStudioClient,
    entries: Iterable[LedgerEntry],
    classes: Mapping[str, list[str]],
    policy: LabelAggregation,
    progress: Progress | None,
) -> _Read:
    by_task = {e.task_id: e for e in entries}
    out = _Read(projects=sorted({e.project_id for e in by_task.values()}))
    for project_id in out.projects:
        for task in ls.tasks(project_id):
            out.tasks += 1
            if progress is not None and out.tasks % 500 == 0:
                progress("tasks read", out.tasks)
            known = by_task.get(task.id)
            if known is None or known.project_id != project_id:
                if task.annotations:
                    key = task_key(task.data)
                    out.problems.append(
                        PullProblem(
                            TASK_NOT_IN_LEDGER,
                            task.id,
                            key[0] if key else None,
                            key[1] if key else None,
                            "a task the dataset's ledger does not know: not pushed from it",
                        )
                    )
                continue
            entry: LedgerEntry = known
            reading = read_task(task, entry, classes.get(entry.model_id, ()))
            out.skipped += reading.skipped
            out.problems += reading.problems
            if reading.annotations:
                out.annotations += len(reading.annotations)
                key = (entry.job_id, entry.input_name)
                out.decisions[key] = policy.aggregate(reading.annotations, source=SOURCE)
                out.task_of[key] = task.id
    if progress is not None:
        progress("tasks read", out.tasks)
    return out


@dataclass
class _Written:
    manifest: Manifest | None = None
    relabelled: int = 0
    updated: int = 0
    unchanged: int = 0
    missing: list[PullProblem] = field(default_factory=list)


def _publish(
    url: str,
    storage_options: Mapping[str, Any],
    manifest: Manifest,
    read: _Read,
    policy: LabelAggregation,
    gate: TriggerGate,
    run_id: str,
    stage: dict[str, Any],
) -> _Written:
    """Write the changed rows, carry the others over, publish if a label changed."""
    try:
        options = WriterOptions(
            url=url,
            format=manifest.format,
            mode=manifest.mode,
            splits=manifest.splits,
            group_by=manifest.group_by,
            versioned=True,
            trigger=gate,
            storage_options=storage_options,
        )
    except ConfigurationError:
        # A group_by that was a callable is recorded by name: a pull splits nothing.
        options = WriterOptions(
            url=url,
            format=manifest.format,
            mode=manifest.mode,
            splits=manifest.splits,
            versioned=True,
            trigger=gate,
            storage_options=storage_options,
        )
    draft = DatasetDraft(options, run_id=run_id, progress=_NoJobs())
    out = _Written()
    seen: set[tuple[str, str]] = set()
    try:
        previous = draft.previous
        if previous is None:
            raise DatasetError(f"{public_url(url)} has no published version to label")
        for _, raw in jsonl_rows(draft.fs, draft.root, tables_of(previous, ".jsonl")):
            key = (str(raw["job_id"]), str(raw["input_name"]))
            found = read.decisions.get(key)
            if found is None:
                continue
            seen.add(key)
            row = upgrade_row(raw)
            parts = from_row(row, policy)
            parts[SOURCE] = found
            new = decided_row(row, combine(parts.values()))
            if all(new.get(k) == row.get(k) for k in _DECIDED):
                out.unchanged += 1
                continue
            if _decision(new) == _decision(row):
                out.updated += 1
            else:
                out.relabelled += 1
            _write(draft, new)
        out.manifest = draft.commit(query=previous.query, stages=[stage])
    except BaseException:
        draft.abort()
        raise
    out.missing = [
        PullProblem(
            SAMPLE_NOT_IN_DATASET,
            read.task_of[key],
            *key,
            f"labelled in Label Studio, not in version {previous.version}",
        )
        for key in sorted(set(read.decisions) - seen)
    ]
    return out


def _decision(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """What makes a change a relabelling (``versions.carry_over`` compares the same):
    the label, its state, and which humans gave it."""
    return (row.get("label"), row.get("label_state"), rule_sources(str(row.get("rule") or "")))


def _write(draft: DatasetDraft, row: dict[str, Any]) -> None:
    _, table = draft.place(
        input_name=str(row["input_name"]),
        label=row.get("label"),
        split=str(row.get("split") or ""),
        sha256=row.get("sha256"),
        source_url=row.get("source_url"),
    )
    path = row.get("file")
    if path:
        draft.list_file(str(path), int(row["size"]), str(row["sha256"]))
    draft.add(
        table,
        row,
        data_path=str(path) if path else None,
        key=(str(row["job_id"]), str(row["input_name"])),
        label=row.get("label"),
        label_state=str(row["label_state"]),
        rule=str(row["rule"]),
        split=row.get("split"),
        model_id=str(row["model_id"]),
    )


def pull(
    dataset_url: str,
    ls: LabelStudioClient,
    *,
    policy: LabelAggregation,
    projects: Iterable[int] | None,
    storage_options: Mapping[str, Any],
    trigger: TriggerGate | None,
    actions: TriggerActions,
    progress: Progress | None = None,
    trigger_sleep: Callable[[float], None] = time.sleep,
) -> PullResult:
    """One pull through a client (what :func:`pull_from_label_studio` and the command
    line share); the caller checked the arguments and closes the client."""
    dataset = public_url(dataset_url) or dataset_url
    fs, root = url_to_fs(dataset_url, storage_options)
    if latest_version(dataset_url, storage_options=storage_options) is None:
        raise DatasetError(
            f"{dataset} has no published version: a label pull publishes a new version "
            "of a versioned dataset (modzy-retrain build writes one)"
        )
    ledger = Ledger(fs, root)
    wanted = set(projects) if projects is not None else None
    entries = [
        e
        for e in ledger.entries
        if e.server == ls.url and (wanted is None or e.project_id in wanted)
    ]
    # Class lists only grow: the latest version's, read before the lock, is enough.
    latest = load_manifest(dataset_url, storage_options=storage_options)
    read = _read(ls, entries, latest.classes, policy, progress)
    base = PullResult(
        dataset=dataset,
        version=None,
        previous=latest.version,
        projects=tuple(read.projects),
        tasks=read.tasks,
        annotations=read.annotations,
        skipped=read.skipped,
        labelled=sum(1 for d in read.decisions.values() if d.agreed),
        conflicts=sum(1 for d in read.decisions.values() if not d.agreed),
        problems=tuple(read.problems),
    )
    if not read.decisions:
        return base
    run_id = f"label-pull-{uuid.uuid4().hex[:12]}"
    stage = {
        "stage": "label-pull",
        "label_studio": ls.url,
        "projects": read.projects,
        "policy": repr(policy),
    }
    # Nothing slow runs under the lock: a pending firing before it is taken, this
    # pull's own after it is let go (each action recorded per version, carrying the
    # version as idempotency key).
    recovered = None
    if actions.any:
        try:
            current = load_manifest(dataset_url, storage_options=storage_options)
        except Exception as exc:
            # Never the pull's failure: the version is read again to publish.
            error = f"the pending trigger could not be read: {type(exc).__name__}: {exc}"
            recovered = Firing(latest.version or "the latest version", ok=False, error=error)
        else:
            if current.trigger is not None and current.trigger.ready:
                recovered = fire(
                    dataset, current, actions, storage_options=storage_options, sleep=trigger_sleep
                )
    # Taken here to name the holder a "label pull"; the draft takes it again.
    lock = DatasetLock(fs, root, run_id, purpose="label pull")
    lock.acquire()
    try:
        gate = trigger if trigger is not None else _CountOnly()
        written = _publish(dataset_url, storage_options, latest, read, policy, gate, run_id, stage)
    finally:
        lock.release()
    manifest = written.manifest
    firing = None
    if manifest is not None and trigger is not None and actions.any:
        firing = fire(
            dataset, manifest, actions, storage_options=storage_options, sleep=trigger_sleep
        )
    return replace(
        base,
        version=manifest.version if manifest is not None else None,
        relabelled=written.relabelled,
        updated=written.updated,
        unchanged=written.unchanged,
        problems=tuple(read.problems) + tuple(written.missing),
        trigger=manifest.trigger if manifest is not None else None,
        firing=firing,
        recovered=recovered,
        manifest=manifest,
    )


def pull_from_label_studio(
    dataset_url: str,
    *,
    client: LabelStudioClient | None = None,
    url: str | None = None,
    api_key: str | None = None,
    policy: LabelAggregation | None = None,
    projects: Iterable[int] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    trigger: TriggerGate | None = None,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    progress: Progress | None = None,
) -> PullResult:
    """Pull every annotation of the dataset's tasks and publish the labels as a version.

    Args:
        dataset_url: A versioned dataset (any fsspec URL) that was pushed from.
        client: A :class:`LabelStudioClient` (else one is made from ``url`` and
            ``api_key``, or ``LABEL_STUDIO_URL`` / ``LABEL_STUDIO_API_KEY``).
        policy: How several annotators agree (default :class:`Majority`: a single
            annotation gives its label).
        projects: Pull only these project ids (default: every project the dataset's
            ledger names on this server).
        storage_options: fsspec options for the dataset.
        trigger: The retraining gate (a build's thresholds): the new trainable labels
            count toward it, and ``on_ready`` is called when the version passes it.
            Without one, the version records its counts and never fires; the next
            build's ``min_since_last`` still counts them.
        on_ready: Called with the trigger's payload when the version is ready.
        progress: Called as tasks are read, with ``("tasks read", count)``.

    Raises:
        ConfigurationError: An invalid argument (before any request).
        DatasetError: No versioned dataset, or a damaged ledger.
        DatasetLockedError: A build (or another pull) holds the dataset.
        LabelStudioError: Label Studio refused or failed (nothing was written).
    """
    if not isinstance(dataset_url, str) or not dataset_url:
        raise ConfigurationError("pull: dataset_url must be a non-empty URL")
    if client is not None and (url is not None or api_key is not None):
        raise ConfigurationError("pull: pass a client, or url and api_key, not both")
    if client is not None and not isinstance(client, LabelStudioClient):
        raise ConfigurationError("pull: client must be a LabelStudioClient")
    given: object = policy
    if given is not None and not isinstance(given, LabelAggregation):
        raise ConfigurationError(f"pull: policy takes a LabelAggregation, not {given!r}")
    checked: object = trigger
    if checked is not None and not isinstance(checked, TriggerGate):
        raise ConfigurationError("pull: trigger takes a TriggerGate")
    if on_ready is not None and trigger is None:
        raise ConfigurationError("pull: on_ready needs a trigger (the gate that decides)")
    ids: list[int] | None = None
    if projects is not None:
        ids = list(projects)
        if not ids or not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
            raise ConfigurationError("pull: projects must be project ids (ints)")
    ls = client or LabelStudioClient(url, api_key)
    try:
        return pull(
            dataset_url,
            ls,
            policy=policy if policy is not None else Majority(),
            projects=ids,
            storage_options=dict(storage_options or {}),
            trigger=trigger,
            actions=TriggerActions(callback=on_ready),
            progress=progress,
        )
    finally:
        if client is None:
            ls.close()
