"""The run report: what each stage took in and gave out, and every drop with its reason.

Counts are exact however long the run; the per-drop details are kept up to a cap per
reason (``RunReport(max_details=...)``) so memory stays flat on a long history.
Counts reconcile: every input that came out of the history is either delivered by the
last stage or counted under a drop reason (see :meth:`RunReport.reconciled`).
"""

from __future__ import annotations

import html
import json
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from modzy_retrain._core.printable import printable
from modzy_retrain._core.secrets import scrub_urls
from modzy_retrain._dataset.quarantine import QuarantinedJob

# Where it lives since it tallies votes too; imported from here before.
from .progress import JobProgress as JobProgress

# Drop reasons, by the stage that records them.
JOB_FILTERED = "job_filtered"
JOB_UNPARSEABLE = "job_unparseable"
JOB_LISTED_TWICE = "job_listed_twice"
JOB_QUARANTINED = "job_quarantined"
JOB_NOT_FINISHED = "job_not_finished"
RESULTS_UNAVAILABLE = "results_unavailable"
RESULT_UNPARSEABLE = "result_unparseable"
INPUT_FAILED = "input_failed"
NO_RESULT = "no_result"
NOT_SELECTED = "not_selected"
NO_TEMPLATE = "no_template"
NAME_MISMATCH = "name_pattern_mismatch"
UNSAFE_NAME = "unsafe_name"
SOURCE_MISSING = "source_missing"
SOURCE_UNREADABLE = "source_unreadable"
SOURCE_TOO_LARGE = "source_too_large"
AMBIGUOUS_SOURCE = "ambiguous_source"
SOURCE_CHANGED = "source_changed"
NOT_RESOLVED = "not_resolved"
DUPLICATE_CONTENT = "duplicate_content"
LABEL_NOT_IN_CLASSES = "label_not_in_classes"
ALREADY_PUBLISHED = "already_published"

# Reasons that mean "the raw input could not be found": the report lists them as
# unresolved inputs.
UNRESOLVED_REASONS = frozenset(
    {NO_TEMPLATE, NAME_MISMATCH, UNSAFE_NAME, SOURCE_MISSING, SOURCE_UNREADABLE}
    | {SOURCE_TOO_LARGE, AMBIGUOUS_SOURCE}
)


@dataclass(frozen=True)
class Drop:
    """One input (or a job's inputs) left out, and why.

    Attributes:
        stage: The stage that dropped it (``fetch``, ``select``...).
        reason: A stable reason code such as ``input_failed``.
        job_id: The job.
        input_name: The input, or ``None`` when a job's inputs are unknown by name.
        detail: A human-readable explanation.
        inputs: How many inputs this drop stands for (1, or a job's input count).
        model_id: The model that made the prediction, when the stage knows it (the
            report counts drops per model with it, to tell a misconfigured model).
    """

    stage: str
    reason: str
    job_id: str
    input_name: str | None
    detail: str = ""
    inputs: int = 1
    model_id: str | None = None

    def __post_init__(self) -> None:
        # A detail may quote a URL (a missing input's, an error's text): never with
        # its credentials (user-info, a signed query), wherever the drop is shown.
        object.__setattr__(self, "detail", scrub_urls(self.detail))

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "reason": self.reason,
            "job_id": self.job_id,
            "input_name": self.input_name,
            "detail": self.detail,
            "inputs": self.inputs,
            "model_id": self.model_id,
        }


@dataclass
class StageStats:
    """Counts and time for one stage of a run.

    ``seconds`` is the time spent in this stage itself (upstream time excluded).
    ``unit_in`` and ``unit_out`` say what ``items_in`` and ``items_out`` count (the
    query gives jobs, the fetcher takes jobs and gives inputs); ``dropped`` always
    counts inputs.
    """

    name: str
    items_in: int = 0
    items_out: int = 0
    unit_in: str = "items"
    unit_out: str = "items"
    dropped: Counter[str] = field(default_factory=Counter)
    inclusive_seconds: float = 0.0
    upstream: StageStats | None = field(default=None, repr=False)

    @property
    def seconds(self) -> float:
        upstream = self.upstream.inclusive_seconds if self.upstream else 0.0
        return max(0.0, self.inclusive_seconds - upstream)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "items_in": self.items_in,
            "items_out": self.items_out,
            "unit_in": self.unit_in,
            "unit_out": self.unit_out,
            "dropped": dict(self.dropped),
            "seconds": round(self.seconds, 6),
        }


class RunReport:
    """What happened in one run of a chain (or of one stage used alone).

    Attributes:
        run_id: A unique id for the run (also written in the manifest).
        stages: Per-stage statistics, in chain order.
        drops: Drop details, at most ``max_details`` per (stage, reason).
        inputs_seen: Inputs that came out of the history.
        delivered: Items the last stage yielded (samples written, for a full chain).
        dataset: What the writer published (``None`` until it commits).
        unavailable: Every job whose results could not be had, with the last error
            (exact, whatever the cap on details).
        quarantined: The jobs quarantined for unavailable results: the ones a query
            was given, or, after a build, the quarantine it leaves (see
            :class:`QuarantinedJob`).
    """

    def __init__(self, *, max_details: int = 1000, run_id: str | None = None) -> None:
        self.run_id = run_id or (
            datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
        )
        self.max_details = max_details
        self.started_at = datetime.now(timezone.utc)
        self.finished_at: datetime | None = None
        self._t0 = time.perf_counter()
        self.elapsed = 0.0
        self.stages: dict[str, StageStats] = {}
        self.drops: list[Drop] = []
        self.drop_counts: Counter[tuple[str, str]] = Counter()
        # (stage, reason, model id) -> inputs, for the drops that name their model.
        self.drop_counts_by_model: Counter[tuple[str, str, str]] = Counter()
        self._detail_counts: Counter[tuple[str, str]] = Counter()
        self.inputs_seen = 0
        self.delivered = 0
        self.query: dict[str, Any] | None = None
        self.pipeline: list[dict[str, Any]] = []
        self.dataset: dict[str, Any] | None = None
        self.progress = JobProgress()
        self.unavailable: dict[str, str] = {}
        self.quarantined: list[QuarantinedJob] = []
        self._last: StageStats | None = None

    # -- recording (used by the stages) ---------------------------------------------------

    def stage(
        self, name: str, unit: str | None = None, *, unit_in: str | None = None
    ) -> StageStats:
        """Register the next stage of the chain; names are made unique (``fetch-2``).

        ``unit``: what the stage's outputs count, when it is not what came in;
        ``unit_in``: what it takes, by default what the stage before it gives.
        """
        unique, n = name, 1
        while unique in self.stages:
            n += 1
            unique = f"{name}-{n}"
        if unit_in is None:
            unit_in = self._last.unit_out if self._last is not None else "items"
        stats = StageStats(unique, unit_in=unit_in, unit_out=unit or unit_in, upstream=self._last)
        self.stages[unique] = stats
        self._last = stats
        return stats

    def saw_inputs(self, count: int) -> None:
        self.inputs_seen += count

    def drop(self, stats: StageStats, drop: Drop) -> None:
        stats.dropped[drop.reason] += drop.inputs
        key = (stats.name, drop.reason)
        self.drop_counts[key] += drop.inputs
        if drop.model_id is not None:
            self.drop_counts_by_model[(stats.name, drop.reason, drop.model_id)] += drop.inputs
        if drop.reason == RESULTS_UNAVAILABLE:
            self.unavailable.setdefault(drop.job_id, drop.detail)
        if self._detail_counts[key] < self.max_details:
            self._detail_counts[key] += 1
            self.drops.append(drop)

    def stage_ended(self, stats: StageStats) -> None:
        """A stage's output ran out: when it is the run's last stage, the run is over
        (so ``list(chain)`` leaves a finished report, as ``chain.run()`` does)."""
        if stats is self._last and self.finished_at is None:
            self.finish()

    def finish(self) -> RunReport:
        self.finished_at = datetime.now(timezone.utc)
        self.elapsed = time.perf_counter() - self._t0
        if self._last is not None:
            self.delivered = self._last.items_out
        return self

    # -- reading -------------------------------------------------------------------------

    @property
    def dropped_inputs(self) -> int:
        return sum(self.drop_counts.values())

    @property
    def reconciled(self) -> bool:
        """Every input seen is delivered or dropped with a reason (a full chain only)."""
        return self.inputs_seen == self.delivered + self.dropped_inputs

    @property
    def unresolved(self) -> list[Drop]:
        """Inputs whose raw data could not be found (details, up to the cap)."""
        return [d for d in self.drops if d.reason in UNRESOLVED_REASONS]

    @property
    def unavailable_jobs(self) -> list[str]:
        """Jobs whose results could not be had after the client's retries, in run order.

        A later run fetches these jobs again: they hold the checkpoint back. A
        quarantined job retried in vain is not one (it stays quarantined); ``unavailable``
        has it too.
        """
        return [job for job in self.unavailable if job not in self.progress.exempt]

    def drops_by_reason(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (_, reason), n in self.drop_counts.items():
            out[reason] += n
        return dict(out)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "seconds": round(self.elapsed, 6),
            "query": self.query,
            "pipeline": self.pipeline,
            "inputs_seen": self.inputs_seen,
            "delivered": self.delivered,
            "dropped_inputs": self.dropped_inputs,
            "reconciled": self.reconciled,
            "stages": [s.to_dict() for s in self.stages.values()],
            "drop_counts": [
                {"stage": stage, "reason": reason, "inputs": n}
                for (stage, reason), n in sorted(self.drop_counts.items())
            ],
            "drops": [d.to_dict() for d in self.drops],
            "quarantined": [job.model_dump(mode="json") for job in self.quarantined],
            "dataset": self.dataset,
        }

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    def to_pandas(self) -> Any:
        """The drop details as a pandas DataFrame (needs pandas installed)."""
        try:
            import pandas as pd
        except ImportError as exc:  # pragma: no cover - depends on the environment
            from modzy_retrain._core.exceptions import MissingDependencyError

            raise MissingDependencyError("to_pandas() needs pandas: pip install pandas") from exc
        return pd.DataFrame([d.to_dict() for d in self.drops])

    def _table(self) -> list[str]:
        # Each count sits beside its unit: a row may take jobs in and give inputs out.
        stats = list(self.stages.values())
        counts = [str(n) for st in stats for n in (st.items_in, st.items_out)]
        units = [u for st in stats for u in (st.unit_in, st.unit_out)]
        name_w = max([5, *(len(st.name) for st in stats)])
        num_w = max([2, *(len(c) for c in counts)])
        unit_w = max([0, *(len(u) for u in units)])
        cell_w = num_w + 1 + unit_w
        lines = [
            f"{'stage':<{name_w}}  {'in':<{cell_w}}  {'out':<{cell_w}}"
            f"  {'dropped inputs':>14}  {'seconds':>7}"
        ]
        for st in stats:
            lines.append(
                f"{st.name:<{name_w}}  {st.items_in:>{num_w}} {st.unit_in:<{unit_w}}"
                f"  {st.items_out:>{num_w}} {st.unit_out:<{unit_w}}"
                f"  {sum(st.dropped.values()):>14}  {st.seconds:>7.2f}"
            )
        return lines

    def __str__(self) -> str:
        lines = [f"run {self.run_id} ({self.elapsed:.2f} s)", *self._table()]
        if self.drop_counts:
            lines.append("drops (inputs):")
            keys = {
                f"{stage}/{reason}": n for (stage, reason), n in sorted(self.drop_counts.items())
            }
            key_w = max(40, *(len(k) for k in keys))
            lines.extend(f"  {key:<{key_w}}{n:>8}" for key, n in keys.items())
        unresolved = self.unresolved
        if unresolved:
            lines.append(f"unresolved inputs (first {min(5, len(unresolved))}):")
            for d in unresolved[:5]:
                name = printable(d.input_name) if d.input_name is not None else "(unnamed)"
                where = f"job {printable(d.job_id)}, input {name}"
                lines.append(f"  {where}: {d.reason}: {printable(d.detail)}")
        if self.quarantined:
            lines.append("quarantined jobs (results unavailable run after run; runs skip them):")
            for job in self.quarantined[:5]:
                lines.append(
                    f"  job {printable(job.job_id)}: {job.reason} in {job.attempts} runs, "
                    f"{job.first_attempt:%Y-%m-%d %H:%M} to {job.last_attempt:%Y-%m-%d %H:%M}"
                    f" UTC: {printable(job.detail)}"
                )
            if len(self.quarantined) > 5:
                lines.append(f"  ... and {len(self.quarantined) - 5} more")
        mark = "ok" if self.reconciled else "MISMATCH"
        lines.append(
            f"reconciled: {self.inputs_seen} inputs = {self.delivered} delivered"
            f" + {self.dropped_inputs} dropped ({mark})"
        )
        if self.dataset and self.dataset.get("refused"):
            latest = self.dataset.get("version") or "no version"
            lines.append(
                f"dataset: {self.dataset.get('url')}: nothing published, the configuration "
                f"looks wrong; {latest} is still the latest"
            )
            lines.extend(f"  - {printable(problem)}" for problem in self.dataset["refused"])
        elif self.dataset and self.dataset.get("published") is False:
            lines.append(
                f"dataset: {self.dataset.get('url')}: nothing new, nothing published; "
                f"{self.dataset.get('version')} is still the latest"
            )
        elif self.dataset:
            lines.append(
                f"dataset: {self.dataset.get('url')} ({self.dataset.get('samples')} samples, "
                f"manifest {self.dataset.get('manifest')})"
            )
            changes = self.dataset.get("changes")
            if changes:
                lines.append(
                    f"version {self.dataset.get('version')}: {changes['added']} added, "
                    f"{changes['retracted']} retracted, {changes['relabelled']} relabelled, "
                    f"{changes['carried']} carried over; "
                    f"{changes.get('trainable', 0)} trainable "
                    "(confirmed, corrected or labelled) new"
                )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (
            f"RunReport(run_id={self.run_id!r}, inputs_seen={self.inputs_seen}, "
            f"delivered={self.delivered}, dropped={self.dropped_inputs})"
        )

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{html.escape(s.name)}</td><td>{s.items_in} {html.escape(s.unit_in)}</td>"
            f"<td>{s.items_out} {html.escape(s.unit_out)}</td>"
            f"<td>{sum(s.dropped.values())}</td><td>{s.seconds:.2f}</td></tr>"
            for s in self.stages.values()
        )
        drops = "".join(
            f"<tr><td>{html.escape(st)}</td><td>{html.escape(r)}</td><td>{n}</td></tr>"
            for (st, r), n in sorted(self.drop_counts.items())
        )
        ok = "reconciled" if self.reconciled else "<b>not reconciled</b>"
        return (
            f"<div><b>RunReport</b> {html.escape(self.run_id)} ({self.elapsed:.2f} s): "
            f"{self.inputs_seen} inputs, {self.delivered} delivered, "
            f"{self.dropped_inputs} dropped, {ok}"
            "<table><tr><th>stage</th><th>in</th><th>out</th><th>dropped inputs</th>"
            f"<th>seconds</th></tr>{rows}</table>"
            "<table><tr><th>stage</th><th>reason</th><th>inputs</th></tr>"
            f"{drops}</table></div>"
        )
