"""What one Label Studio task's annotations say: pure decisions, no I/O.

A task is trusted only as far as the ledger vouches for it: its ``data`` must still
name the sample the ledger says it was made from (an edited ``job_id``, ``input_name``
or ``model_id`` is reported, and the task is not used). Each annotation is then a
label, nothing (skipped or cancelled, or an empty choice), or a problem (a class
outside the model's class list, several choices on a single-choice control), which is
reported and never written. Nothing read here is ever used as a path: task data is
only compared with the ledger, and labels with the class list.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from modzy_retrain._dataset.human import Annotation

from .ledger import LedgerEntry
from .models import LabelStudioTask
from .tasks import CONTROL

SOURCE = "label-studio"

# Why something read from Label Studio was not used (PullResult.problems).
PROVENANCE_EDITED = "provenance_edited"
TASK_NOT_IN_LEDGER = "task_not_in_ledger"
LABEL_NOT_IN_CLASSES = "label_not_in_classes"
SEVERAL_CHOICES = "several_choices"
SAMPLE_NOT_IN_DATASET = "sample_not_in_dataset"


@dataclass(frozen=True)
class PullProblem:
    """Something read from Label Studio that a pull reported instead of writing.

    Attributes:
        reason: ``provenance_edited``, ``task_not_in_ledger``, ``label_not_in_classes``,
            ``several_choices`` or ``sample_not_in_dataset``.
        task_id: The task.
        job_id, input_name: The sample, as the ledger knows it (``None`` for a task
            the ledger does not know).
        detail: What was wrong, in words.
    """

    reason: str
    task_id: int
    job_id: str | None
    input_name: str | None
    detail: str


@dataclass
class TaskReading:
    """One task's annotations, sorted."""

    annotations: list[Annotation] = field(default_factory=list)
    skipped: int = 0
    problems: list[PullProblem] = field(default_factory=list)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def check_provenance(task: LabelStudioTask, entry: LedgerEntry) -> PullProblem | None:
    """Whether the task still names the sample the ledger says it was made from."""
    data = task.data
    said = {
        "job_id": _text(data.get("job_id")),
        "input_name": _text(data.get("input_name")),
        "model_id": _text(data.get("model_id")),
    }
    known = {"job_id": entry.job_id, "input_name": entry.input_name, "model_id": entry.model_id}
    edited = sorted(k for k in known if said[k] != known[k])
    if not edited:
        return None
    return PullProblem(
        PROVENANCE_EDITED,
        task.id,
        entry.job_id,
        entry.input_name,
        f"the task's {', '.join(edited)} no longer match the sample it was pushed from",
    )


def read_task(task: LabelStudioTask, entry: LedgerEntry, classes: Collection[str]) -> TaskReading:
    """The usable annotations of a task the ledger knows (provenance checked first)."""
    out = TaskReading()
    edited = check_provenance(task, entry)
    if edited is not None:
        out.problems.append(edited)
        return out
    for annotation in task.annotations:
        chosen = annotation.choices(CONTROL)
        if annotation.was_cancelled or not chosen:
            out.skipped += 1
            continue
        who = str(annotation.completed_by) if annotation.completed_by is not None else None
        if len(chosen) > 1:
            out.problems.append(
                PullProblem(
                    SEVERAL_CHOICES,
                    task.id,
                    entry.job_id,
                    entry.input_name,
                    f"annotation {annotation.id} by {who} chose {len(chosen)} classes",
                )
            )
            continue
        label = chosen[0]
        if label not in classes:
            out.problems.append(
                PullProblem(
                    LABEL_NOT_IN_CLASSES,
                    task.id,
                    entry.job_id,
                    entry.input_name,
                    f"annotation {annotation.id} by {who} chose {label[:100]!r}, not in model "
                    f"{entry.model_id}'s class list",
                )
            )
            continue
        at = annotation.updated_at or annotation.created_at
        out.annotations.append(Annotation(label, who, SOURCE, at))
    return out
