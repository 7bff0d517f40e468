"""``DatasetWriter``: the stage that writes samples to a dataset at any fsspec URL.

The stage decides, per sample, what happens to it (dropped as a duplicate or as
unresolved, its split, its row) and drives one :class:`DatasetDraft`, which does the
writing: its layout, copies, tables, versions and publication live in ``_dataset``
(``layout``, ``copy``, ``tables``, ``versions``, ``publish``). Decisions are made in the
caller's thread, in input order; only the copies of the inputs run on workers. The
sync and async paths share every step and differ only in how they loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar, overload

from modzy_retrain._core.concurrency import aordered_map, ordered_map
from modzy_retrain._core.exceptions import ConfigurationError
from modzy_retrain._core.secrets import public_url
from modzy_retrain._dataset.human import (
    HumanLabel,
    annotation_row,
    combine,
    from_row,
    is_human,
    rule_sources,
)
from modzy_retrain._dataset.journal import ResultJournal
from modzy_retrain._dataset.layout import assign_split
from modzy_retrain._dataset.manifest import MANIFEST_NAME, DatasetFormat, Manifest, latest_version
from modzy_retrain._dataset.options import (
    DEFAULT_GROUP_BY,
    DEFAULT_WRITE_CONCURRENCY,
    WriterOptions,
)
from modzy_retrain._dataset.publish import DatasetDraft
from modzy_retrain._dataset.trigger import TriggerGate

from .base import Stage, run_report
from .guard import MisconfigurationGuard
from .query import recorded_query
from .records import Sample
from .report import (
    DUPLICATE_CONTENT,
    LABEL_NOT_IN_CLASSES,
    NOT_RESOLVED,
    SOURCE_CHANGED,
    SOURCE_MISSING,
    Drop,
    RunReport,
)

GroupKey = str | Callable[[Sample], str]
T = TypeVar("T")

# How the dataset layer's copy failures are reported.
_COPY_DROPS = {"missing": SOURCE_MISSING, "changed": SOURCE_CHANGED}


@dataclass
class _Plan:
    sample: Sample
    data_path: str | None  # where the bytes go, relative to the root (None: reference)
    table: str  # which sample table the row goes to
    in_previous: bool = False  # a previous version holds these bytes (never rewritten)


class _Option(Generic[T]):
    """A writer setting as a plain attribute, kept in the writer's frozen options:
    reading gives the validated value, assigning validates again."""

    def __set_name__(self, owner: type[Any], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type[Any] | None = None) -> _Option[T]: ...

    @overload
    def __get__(self, obj: DatasetWriter, owner: type[Any] | None = None) -> T: ...

    def __get__(self, obj: DatasetWriter | None, owner: type[Any] | None = None) -> Any:
        if obj is None:
            return self
        return getattr(obj._options, self.name)

    def __set__(self, obj: DatasetWriter, value: T) -> None:
        obj._options = obj._options.replace(**{self.name: value})


class DatasetWriter(Stage[Sample, Sample]):
    """Write samples to a dataset at any fsspec URL, then publish its manifest.

    Args:
        url: Where the dataset goes (a local path, ``file://``, ``memory://``,
            ``s3://``, ``gs://``...).
        format: ``jsonl`` (default), ``csv``, ``parquet`` or ``imagefolder``.
        mode: ``copy`` (default) writes the raw inputs into the dataset; ``reference``
            keeps only their URL, size and sha256 (not with ``imagefolder``).
        splits: Split names and ratios (default ``train`` 0.8, ``validation`` 0.2).
        group_by: What decides the split, as a template over the sample
            (``{job_id}``, ``{input_name}``, ``{model_id}``, ``{label}``...) or a
            callable. Default ``{job_id}/{input_name}``; ``{job_id}`` keeps a job's
            inputs together.
        overwrite: Replace an existing dataset at ``url`` (it is unpublished first).
        versioned: Publish immutable versions (``v0001``, ``v0002``...) under ``url``
            instead of one dataset: each run merges the previous version with what it
            read again, writes a full snapshot with what changed (added, retracted,
            relabelled) and a checkpoint for the next run, then moves ``_latest.json``.
            A run with nothing new publishes nothing. Not with ``imagefolder``; CSV and
            Parquet versions also keep a JSONL table to merge the next version from.
        trigger: A :class:`TriggerGate` evaluated for each new version; its decision
            is recorded in the version's manifest (versioned datasets only).
        journal: The run's :class:`ResultJournal` (versioned datasets only): cleared
            once a version is published or nothing new was found.
        dedupe: Write identical contents once (default).
        allow_new_classes: Write a human label (``labelled``) that is not in its
            model's class list, appending it to the list. By default such a sample is
            dropped (``label_not_in_classes``): a label file naming a class the model
            never output is more often a typo than a new class.
        concurrency: Files copied at once (default 16).
        storage_options: fsspec options for ``url``.
        source_storage_options: fsspec options to read the inputs, when a copy must
            read them again (defaults to ``storage_options``).
        guard: A :class:`MisconfigurationGuard`: when a model's inputs all failed in
            lineage for one configuration-like reason (or more than its share did),
            publish nothing, keep the previous version and its checkpoint, and say why
            in ``report.dataset["refused"]``. ``modzy-retrain build`` always uses one.

    Iterating the writer writes as it goes; the manifest is published only when the
    input is exhausted. Stop early, or fail, and nothing is published.

    Subclass hook: override :meth:`serialize` to change the row written per sample.
    """

    name = "write"

    url = _Option[str]()
    format = _Option[DatasetFormat]()
    mode = _Option[Literal["copy", "reference"]]()
    splits = _Option[dict[str, float]]()
    group_by = _Option[GroupKey]()
    overwrite = _Option[bool]()
    versioned = _Option[bool]()
    trigger = _Option[TriggerGate | None]()
    journal = _Option[ResultJournal | None]()
    dedupe = _Option[bool]()
    allow_new_classes = _Option[bool]()
    concurrency = _Option[int]()
    storage_options = _Option[dict[str, Any]]()
    source_storage_options = _Option[dict[str, Any]]()

    def __init__(
        self,
        url: str,
        *,
        format: DatasetFormat = "jsonl",
        mode: Literal["copy", "reference"] = "copy",
        splits: Mapping[str, float] | None = None,
        group_by: GroupKey = DEFAULT_GROUP_BY,
        overwrite: bool = False,
        versioned: bool = False,
        trigger: TriggerGate | None = None,
        journal: ResultJournal | None = None,
        dedupe: bool = True,
        allow_new_classes: bool = False,
        concurrency: int = DEFAULT_WRITE_CONCURRENCY,
        storage_options: Mapping[str, Any] | None = None,
        source_storage_options: Mapping[str, Any] | None = None,
        guard: MisconfigurationGuard | None = None,
    ) -> None:
        given: object = guard  # typed callers cannot get this wrong; notebooks can
        if given is not None and not isinstance(given, MisconfigurationGuard):
            raise ConfigurationError(
                f"DatasetWriter(guard=...) takes a MisconfigurationGuard, not {given!r}"
            )
        self.guard = guard
        # Raises ConfigurationError, naming the argument, before anything is touched.
        self._options = WriterOptions(
            url=url,
            format=format,
            mode=mode,
            splits=splits,
            group_by=group_by,
            overwrite=overwrite,
            versioned=versioned,
            trigger=trigger,
            journal=journal,
            dedupe=dedupe,
            allow_new_classes=allow_new_classes,
            concurrency=concurrency,
            storage_options=storage_options,
            source_storage_options=source_storage_options,
        )

    @property
    def group_by_description(self) -> str:
        return self._options.group_by_description

    def group_key(self, sample: Sample) -> str:
        if callable(self.group_by):
            return self.group_by(sample)
        r = sample.record
        return self.group_by.format(
            job_id=r.job_id,
            input_name=r.input_name,
            model_id=r.model_id,
            model_version=r.model_version,
            label=sample.label,
            sha256=sample.sha256,
        )

    def describe(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "url": public_url(self.url),
            "format": self.format,
            "mode": self.mode,
            "splits": self.splits,
            "group_by": self.group_by_description,
            "versioned": self.versioned,
            "allow_new_classes": self.allow_new_classes,
        }

    def serialize(self, sample: Sample) -> dict[str, Any]:
        """The row written for one sample: its label and full provenance."""
        r = sample.record
        sources = rule_sources(sample.rule)
        source = sources[0] if len(sources) == 1 else None
        return {
            "job_id": r.job_id,
            "input_name": r.input_name,
            "model_id": r.model_id,
            "model_version": r.model_version,
            "model_name": r.model_name,
            "submitted_at": r.submitted_at.isoformat() if r.submitted_at else None,
            "label": sample.label,
            "label_state": sample.label_state,
            "rule": sample.rule,
            "candidates": list(sample.candidates),
            "annotations": [annotation_row(a, source) for a in sample.annotations],
            "predicted_label": r.predicted_label,
            "predicted_score": r.top_score,
            "predictions": [{"label": p.label, "score": p.score} for p in r.predictions],
            "votes_up": r.voting.up,
            "votes_down": r.voting.down,
            "source_url": public_url(sample.source_url),
            "sha256": sample.sha256,
            "size": sample.size,
            "split": sample.split,
            "file": sample.file,
        }

    def write(self, samples: Iterable[Sample], *, report: RunReport | None = None) -> RunReport:
        """Write every sample and publish; returns the report (its ``dataset`` filled)."""
        it = self(samples, report=report)
        for _ in it:
            pass
        return it.report.finish()

    # -- one run, shared by the sync and async loops ---------------------------------

    def _open(self, report: RunReport) -> DatasetDraft:
        return DatasetDraft(self._options, run_id=report.run_id, progress=report.progress)

    def _plan(self, draft: DatasetDraft, sample: Sample) -> _Plan | Drop:
        """Caller's thread, in input order: drop, or decide the split and the paths."""
        o = draft.options
        job_id, name = sample.job_id, sample.input_name
        draft.received[sample.record.model_id] += 1
        sample = self._keep_human(draft, sample)
        unknown = self._see_classes(draft, sample)
        if unknown is not None:
            model_id = sample.record.model_id
            return Drop(self.name, LABEL_NOT_IN_CLASSES, job_id, name, unknown, model_id=model_id)
        if o.mode == "copy" and (sample.source_url is None or sample.sha256 is None):
            return Drop(
                self.name,
                NOT_RESOLVED,
                job_id,
                name,
                "copy mode needs a LineageResolver before the writer",
            )
        in_previous = False
        if sample.sha256 is not None and (o.dedupe or draft.previous is not None):
            first = draft.first_with(sample.sha256, job_id, name)
            if first is not None:
                # A job read again through the lag window brings its own sample back:
                # the same sample, not a duplicate of itself.
                itself = (first[0], first[1]) == (job_id, name)
                if o.dedupe and not itself:
                    detail = f"same content as {first[0]}/{first[1]}"
                    return Drop(self.name, DUPLICATE_CONTENT, job_id, name, detail)
                in_previous = bool(first[2])
        split = assign_split(self.group_key(sample), o.splits)
        sample = sample.with_payload(sample.payload, split=split)
        data_path, table = draft.place(
            input_name=name,
            label=sample.label,
            split=split,
            sha256=sample.sha256,
            source_url=sample.source_url,
        )
        return _Plan(sample, data_path, table, in_previous)

    @staticmethod
    def _keep_human(draft: DatasetDraft, sample: Sample) -> Sample:
        """A label a human gave in an earlier version wins over one from the votes.

        Each source has the last word on its own label only: this run's label file
        replaces the label file's earlier label, never Label Studio's (the two are
        combined; where they disagree the sample is in ``conflict``, listing both).
        """
        row = draft.human_row(sample.key)
        if row is None:
            return sample
        parts = from_row(row)
        sources = rule_sources(sample.rule)
        if len(sources) == 1 and is_human(sample.rule):
            agreed = sample.label_state == "labelled" and sample.label is not None
            own = HumanLabel(
                sample.label if agreed else None,
                sample.annotations,
                () if agreed else sample.candidates,
                sources[0],
            )
            parts[own.source] = own
        if not parts:
            return sample
        human = combine(parts.values())
        return sample.model_copy(
            update={
                "label": human.label,
                "label_state": human.state,
                "rule": human.rule,
                "candidates": human.candidates,
                "annotations": human.sourced(),
            }
        )

    def _see_classes(self, draft: DatasetDraft, sample: Sample) -> str | None:
        """Caller's thread, in input order: add the sample's classes to its model's list;
        why its label is refused, if it is (``None``: it is not).

        Only a human label is checked: a label from the votes is one of the model's
        outputs, or the other class of a binary model the policy was told about.
        """
        model_id, label = sample.record.model_id, sample.label
        outputs = [p.label for p in sample.record.predictions]
        if (
            label is not None
            and sample.label_state == "labelled"
            and not draft.options.allow_new_classes
            and (draft.classes.known(model_id) or outputs)
            and not draft.classes.has(model_id, label)
            and label not in outputs
        ):
            draft.classes.see(model_id, outputs)
            return (
                f"label {label!r} is not in model {model_id}'s class list "
                "(DatasetWriter(allow_new_classes=True) adds it)"
            )
        draft.classes.see(model_id, [*outputs, *([label] if label is not None else [])])
        return None

    def _put(self, draft: DatasetDraft, plan: _Plan | Drop) -> _Plan | Drop:
        """Worker thread: copy the input, if it is to be copied."""
        if isinstance(plan, Drop) or plan.data_path is None:
            return plan
        sample = plan.sample
        assert sample.sha256 is not None
        assert sample.size is not None
        failure = draft.copy(
            plan.data_path,
            sha256=sample.sha256,
            size=sample.size,
            payload=sample.payload,
            source_url=str(sample.source_url),
            in_previous=plan.in_previous,
        )
        if failure is None:
            return plan
        reason = _COPY_DROPS[failure.kind]
        return Drop(self.name, reason, sample.job_id, sample.input_name, failure.detail)

    def _account(self, draft: DatasetDraft, outcome: _Plan | Drop) -> Sample | Drop:
        """Caller's thread, in input order: pass a drop on, or write the sample's row."""
        if isinstance(outcome, Drop):
            if outcome.reason == DUPLICATE_CONTENT:
                draft.duplicates += 1
            return outcome
        sample = outcome.sample
        if outcome.data_path is not None:
            sample = sample.with_payload(None, file=outcome.data_path)
            assert sample.sha256 is not None
            assert sample.size is not None
            draft.list_file(outcome.data_path, sample.size, sample.sha256)
        draft.add(
            outcome.table,
            dict(self.serialize(sample)),
            data_path=outcome.data_path,
            key=sample.key,
            label=sample.label,
            label_state=sample.label_state,
            rule=sample.rule,
            split=sample.split,
            model_id=sample.record.model_id,
        )
        return sample

    def _commit(self, draft: DatasetDraft, report: RunReport) -> None:
        """Publish, and say what was published in the report."""
        if self.guard is not None:
            suspicions = self.guard.check(report, draft.received)
            if suspicions:
                draft.withdraw()
                o = draft.options
                report.dataset = {
                    "url": public_url(o.url),
                    "published": False,
                    "refused": [s.message for s in suspicions],
                    "version": latest_version(o.url, storage_options=o.storage_options),
                }
                return
        stages = report.pipeline or [self.describe()]
        manifest = draft.commit(query=recorded_query(report), stages=stages)
        report.dataset = self._published(draft.options, manifest)

    @staticmethod
    def _published(o: WriterOptions, manifest: Manifest | None) -> dict[str, Any]:
        if manifest is None:
            return {
                "url": public_url(o.url),
                "published": False,
                "nothing_new": True,
                "version": latest_version(o.url, storage_options=o.storage_options),
            }
        dataset: dict[str, Any] = {
            "url": public_url(o.url),
            "published": True,
            "manifest": (f"{manifest.version}/" if manifest.version else "") + MANIFEST_NAME,
            "format": o.format,
            "samples": manifest.counts.samples,
            "duplicates": manifest.counts.duplicates,
            "files": manifest.file_count,
        }
        if manifest.version is not None and manifest.changes is not None:
            dataset["version"] = manifest.version
            dataset["changes"] = {
                "added": manifest.changes.added,
                "retracted": manifest.changes.retracted,
                "relabelled": manifest.changes.relabelled,
                "carried": manifest.changes.carried,
                "trainable": manifest.changes.trainable,
            }
        return dataset

    # -- the loops -------------------------------------------------------------------

    def process_stream(self, items: Iterator[Sample]) -> Iterator[Sample | Drop]:
        report = run_report(items)
        draft = self._open(report)
        try:
            plans = (self._plan(draft, sample) for sample in items)

            def put(plan: _Plan | Drop) -> _Plan | Drop:
                return self._put(draft, plan)

            for outcome in ordered_map(put, plans, concurrency=draft.options.concurrency):
                yield self._account(draft, outcome)
            self._commit(draft, report)
        finally:
            if not draft.committed:
                draft.abort()

    async def aprocess_stream(self, items: AsyncIterator[Sample]) -> AsyncIterator[Sample | Drop]:
        report = run_report(items)
        draft = await asyncio.to_thread(self._open, report)
        try:

            async def plans() -> AsyncIterator[_Plan | Drop]:
                async for sample in items:
                    yield self._plan(draft, sample)

            async def put(plan: _Plan | Drop) -> _Plan | Drop:
                return await asyncio.to_thread(self._put, draft, plan)

            concurrency = draft.options.concurrency
            async for outcome in aordered_map(put, plans(), concurrency=concurrency):
                yield await asyncio.to_thread(self._account, draft, outcome)
            await asyncio.to_thread(self._commit, draft, report)
        finally:
            if not draft.committed:
                draft.abort()
