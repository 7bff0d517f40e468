"""What Label Studio returns, as frozen pydantic models (unknown fields ignored).

Shapes seen on Label Studio 1.23.2: ``completed_by`` is a user id in most answers but a
nested user object in ``GET /api/tasks/{id}``; both parse to the id (and the email when
the server sent it). Timestamps are ISO 8601 in UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class LabelStudioUser(_Model):
    """A Label Studio user (an annotator or the admin)."""

    id: int
    email: str = ""
    username: str = ""


class LabelStudioProject(_Model):
    """A Label Studio project: its id, title and labelling configuration (XML)."""

    id: int
    title: str = ""
    description: str = ""
    label_config: str = ""
    created_at: datetime | None = None
    task_number: int | None = None


class ResultItem(_Model):
    """One region or choice of an annotation's (or a prediction's) ``result``.

    For a Choices control: ``type == "choices"`` and ``value == {"choices": [...]}``.
    """

    from_name: str = ""
    to_name: str = ""
    type: str = ""
    value: dict[str, Any] = Field(default_factory=dict)


def _choices(result: tuple[ResultItem, ...], from_name: str | None) -> tuple[str, ...]:
    out: list[str] = []
    for item in result:
        if item.type != "choices" or (from_name is not None and item.from_name != from_name):
            continue
        chosen = item.value.get("choices")
        if isinstance(chosen, list):
            out.extend(str(c) for c in chosen)
    return tuple(out)


class LabelStudioAnnotation(_Model):
    """One annotator's answer on one task.

    Attributes:
        completed_by: The annotator's user id (``None`` if the server did not say).
        completed_by_email: Their email, when the server nested the user object.
        was_cancelled: The annotator skipped the task (its ``result`` is then empty).
        lead_time: Seconds the annotator spent, when the front end reported it.
    """

    id: int
    task: int | None = None
    project: int | None = None
    completed_by: int | None = None
    completed_by_email: str | None = None
    result: tuple[ResultItem, ...] = ()
    was_cancelled: bool = False
    ground_truth: bool = False
    lead_time: float | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _flatten_user(cls, data: Any) -> Any:
        # GET /api/tasks/{id} nests the user; every other route sends its id.
        if isinstance(data, dict) and isinstance(data.get("completed_by"), dict):
            user = data["completed_by"]
            data = {**data, "completed_by": user.get("id"), "completed_by_email": user.get("email")}
        return data

    def choices(self, from_name: str | None = None) -> tuple[str, ...]:
        """The classes chosen in this annotation (of one Choices control, if named)."""
        return _choices(self.result, from_name)


class LabelStudioPrediction(_Model):
    """A model's pre-annotation shown to annotators."""

    id: int | None = None
    model_version: str = ""
    score: float | None = None
    result: tuple[ResultItem, ...] = ()

    def choices(self, from_name: str | None = None) -> tuple[str, ...]:
        """The classes this prediction proposes."""
        return _choices(self.result, from_name)


class LabelStudioTask(_Model):
    """A task: the data shown to annotators, its metadata and its annotations.

    Attributes:
        data: What the labelling configuration reads (``$image``, ``$text``...), plus
            anything else imported with it (a job id, an input name).
        meta: Free-form metadata imported with the task.
        annotations: Every annotation, cancelled ones included; several annotators give
            several entries, and agreeing on a label is the caller's business.
    """

    id: int
    project: int | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    meta: dict[str, Any] = Field(default_factory=dict)
    annotations: tuple[LabelStudioAnnotation, ...] = ()
    predictions: tuple[LabelStudioPrediction, ...] = ()
    is_labeled: bool = False
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_empty(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = {**data, **{k: {} for k in ("data", "meta") if data.get(k, {}) is None}}
        return data


class LabelStudioS3Storage(_Model):
    """An S3 source storage connected to a project, as Label Studio lists it.

    The server never sends its credentials back (1.23.2 drops ``aws_access_key_id``,
    ``aws_secret_access_key`` and ``aws_session_token`` from every answer), so none is
    kept here.
    """

    id: int
    project: int | None = None
    title: str | None = None
    bucket: str | None = None
    prefix: str | None = None
    s3_endpoint: str | None = None
    region_name: str | None = None
    presign: bool = True
    presign_ttl: int | None = None
    use_blob_urls: bool = False
