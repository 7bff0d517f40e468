"""The records that flow between the stages.

``PredictionRecord``: one production input with its prediction and votes (what the
fetcher yields). ``Sample``: a record with a label, its label state and rule, where its
raw input lives (URL, sha256, size) and its split (what the writer writes).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from modzy_retrain._client.models import ClassPrediction, Job, JobResults, Voting
from modzy_retrain._dataset.human import Annotation

# Declared with the dataset row, which holds it (and whose reader cannot import stages).
from modzy_retrain._dataset.rows import LabelState as LabelState
from modzy_retrain._dataset.tallies import tally_job


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PredictionRecord(_Record):
    """One production input: the job it came from, the model's prediction and the votes.

    Attributes:
        job_id: The job's identifier.
        input_name: The input item name (the key Modzy's results use).
        model_id, model_version, model_name: The model that predicted.
        submitted_at: When the job was submitted (UTC).
        job_status: The job's status (``COMPLETED``, ``CANCELED``...).
        status: The input's status (``SUCCESSFUL``).
        predictions: The classification, highest score first (empty if not one).
        outputs: The raw output files (``results.json`` parsed, binaries as URLs).
        voting: Up/down vote counts.
        explanation, drift: As the model output carried them (``None`` if absent).
        job: The job's metadata (submitter prefix, user email, explain flag...).
    """

    job_id: str
    input_name: str
    model_id: str
    model_version: str
    model_name: str | None = None
    submitted_at: datetime | None = None
    job_status: str
    status: str = "SUCCESSFUL"
    predictions: tuple[ClassPrediction, ...] = ()
    outputs: dict[str, Any] = Field(default_factory=dict)
    voting: Voting = Field(default_factory=Voting)
    explanation: Any = None
    drift: Any = None
    job: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        """``(job_id, input_name)``: unique across the whole history."""
        return (self.job_id, self.input_name)

    @property
    def top(self) -> ClassPrediction | None:
        return self.predictions[0] if self.predictions else None

    @property
    def predicted_label(self) -> str | None:
        return self.predictions[0].label if self.predictions else None

    @property
    def top_score(self) -> float | None:
        return self.predictions[0].score if self.predictions else None

    @property
    def runner_up(self) -> str | None:
        return self.predictions[1].label if len(self.predictions) > 1 else None

    def __repr__(self) -> str:
        top = f"{self.top.label}:{self.top.score:.3f}" if self.top else None
        return (
            f"PredictionRecord(job_id={self.job_id!r}, input_name={self.input_name!r}, "
            f"model={self.model_id}@{self.model_version}, top={top!r}, "
            f"votes=+{self.voting.up}/-{self.voting.down})"
        )

    __str__ = __repr__


def job_metadata(job: Job) -> dict[str, Any]:
    """The compact job metadata a record carries (no secrets: the key prefix is public)."""
    meta: dict[str, Any] = {
        "submitted_by": job.submitted_by,
        "account": job.account_identifier,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "explain": job.explain,
        "total_inputs": job.total,
    }
    if job.user is not None:
        meta["user_email"] = job.user.email
        meta["user_id"] = job.user.identifier
    return meta


def records_from_results(job: Job, results: JobResults) -> list[PredictionRecord]:
    """One record per successful input, in the order the API listed them."""
    meta = job_metadata(job)
    out = []
    for name, item in results.results.items():
        out.append(
            PredictionRecord(
                job_id=job.job_id,
                input_name=name,
                model_id=job.model.identifier,
                model_version=job.model.version,
                model_name=job.model.name,
                submitted_at=job.submitted_at or job.created_at,
                job_status=job.status,
                status=item.status,
                predictions=tuple(item.predictions),
                outputs=item.outputs,
                voting=item.voting,
                explanation=item.explanation,
                drift=item.drift,
                job=meta,
            )
        )
    return out


def job_tally(job: Job, records: Iterable[PredictionRecord]) -> dict[str, Any]:
    """The vote tally of one job whose results were read: its records (one per input
    with a result), their votes and predicted classes, on the day it was submitted (a
    ``JobTally`` in its JSON form)."""
    when = job.submitted_at or job.created_at
    return tally_job(
        job.job_id,
        model_id=job.model.identifier,
        model_version=job.model.version,
        model_name=job.model.name,
        day=when.astimezone(timezone.utc).date() if when is not None else None,
        votes=((r.predicted_label, r.voting.up, r.voting.down) for r in records),
    )


class Sample(_Record):
    """A dataset sample: a prediction record with its label and provenance.

    Attributes:
        record: The prediction it comes from.
        label: The training label, or ``None`` when it ``needs_label`` or is in ``conflict``.
        label_state: How trustworthy the label is (see :data:`LabelState`).
        rule: The name of the rule that produced the label (e.g. ``down-voted:binary-flip``).
        candidates: Likely labels for a human to choose from (runner-up first).
        annotations: The human labels behind a ``human:`` rule, each annotator's
            choice (empty for a label decided from the votes).
        source_url: Where the raw input lives (set by :class:`LineageResolver`).
        sha256: The raw input's content hash (hex).
        size: The raw input's size in bytes.
        split: ``train``, ``validation``... (set by :class:`DatasetWriter`).
        file: The path of the copied input inside the dataset, when it was copied.
    """

    record: PredictionRecord
    label: str | None
    label_state: LabelState
    rule: str
    candidates: tuple[str, ...] = ()
    annotations: tuple[Annotation, ...] = ()
    source_url: str | None = None
    sha256: str | None = None
    size: int | None = None
    split: str | None = None
    file: str | None = None

    # Bytes read while hashing, kept for the writer so a small file is not read twice.
    _payload: bytes | None = PrivateAttr(default=None)

    @property
    def key(self) -> tuple[str, str]:
        return self.record.key

    @property
    def job_id(self) -> str:
        return self.record.job_id

    @property
    def input_name(self) -> str:
        return self.record.input_name

    def with_payload(self, payload: bytes | None, **changes: Any) -> Sample:
        """A copy with ``changes`` applied and ``payload`` attached (not serialized)."""
        new = self.model_copy(update=changes)
        new._payload = payload
        return new

    @property
    def payload(self) -> bytes | None:
        return self._payload

    def __repr__(self) -> str:
        return (
            f"Sample(job_id={self.job_id!r}, input_name={self.input_name!r}, "
            f"label={self.label!r}, label_state={self.label_state!r}, rule={self.rule!r}, "
            f"split={self.split!r}, sha256={self.sha256[:12] + '…' if self.sha256 else None!r})"
        )

    __str__ = __repr__
