"""Typed models for what the Modzy API returns.

Everything here is parsed tolerantly, because the real API was loose: unknown keys are
kept (``model_extra``), timestamps come in three offset styles, scores sometimes arrive
as strings, old responses nest a result twice, and output files are keyed by file name.
What cannot be made sense of raises :class:`~modzy_retrain.ResultParseError` (from the
parsing helpers in ``_parsing``), never a bare pydantic error.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
)

from modzy_retrain._core.timestamps import parse_timestamp

Timestamp = Annotated[datetime | None, BeforeValidator(parse_timestamp)]

VoteValue = Literal["NO_VOTES", "UP", "DOWN"]
"""The caller's own vote on one input, as ``GET /results/{job}/vote/{input}`` reports it."""


class ModzyModel(BaseModel):
    """Base for data that comes from the API: unknown keys kept, snake_case attributes."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, frozen=True)

    def to_dict(self) -> dict[str, Any]:
        """The model as plain JSON-compatible Python data, by field name."""
        return self.model_dump(mode="json")

    def __str__(self) -> str:
        # pydantic's str() lists every field; the short repr reads better in logs.
        return repr(self)


def _not_boolean(value: object) -> object:
    # pydantic's lax mode reads true as 1 and false as 0; a JSON boolean where the API
    # documents a number (a score, a count) is a malformed body, not a vote or a score.
    if value is True or value is False:
        raise ValueError("expected a number, got a boolean")
    return value


def _count(value: object) -> object:
    # Counts are documented as numbers; a null means "none".
    return 0 if value is None else _not_boolean(value)


Count = Annotated[int, BeforeValidator(_count)]
Score = Annotated[float, BeforeValidator(_not_boolean)]


class ModelRef(ModzyModel):
    """The model (identifier, version, name) a job ran."""

    identifier: str = Field(validation_alias=AliasChoices("identifier", "modelId", "id"))
    version: str = ""
    name: str | None = None


class AccessKeyRef(ModzyModel):
    prefix: str
    is_default: bool | None = Field(default=None, alias="isDefault")


class JobUser(ModzyModel):
    """The user who submitted a job (all fields optional: history items vary)."""

    identifier: str | None = None
    first_name: str | None = Field(default=None, alias="firstName")
    last_name: str | None = Field(default=None, alias="lastName")
    email: str | None = None
    status: str | None = None
    access_keys: list[AccessKeyRef] = Field(default_factory=list, alias="accessKeys")


class JobStatus:
    """Job status values and the history filter's categories.

    The platform's vocabulary varies (``CANCELED``/``CANCELLED``, ``COMPLETED``/
    ``COMPLETE``), so :class:`Job` keeps the status as the string it got and these are
    plain constants rather than an enum that would refuse an unknown spelling.
    """

    SUBMITTED = "SUBMITTED"
    IN_PROGRESS = "IN_PROGRESS"
    OPEN = "OPEN"
    COMPLETED = "COMPLETED"
    CANCELED = "CANCELED"
    TIMEDOUT = "TIMEDOUT"
    ERROR = "ERROR"

    # Categories accepted by the history filter.
    ALL = "ALL"
    PENDING = "PENDING"
    TERMINATED = "TERMINATED"
    TERMINATED_WITH_ERROR = "TERMINATED_WITH_ERROR"

    EXACT: frozenset[str] = frozenset(
        {SUBMITTED, IN_PROGRESS, OPEN, COMPLETED, CANCELED, TIMEDOUT, ERROR}
    )
    CATEGORIES: frozenset[str] = frozenset({ALL, PENDING, TERMINATED, TERMINATED_WITH_ERROR})
    FINISHED: frozenset[str] = frozenset(
        {COMPLETED, CANCELED, TIMEDOUT, ERROR, "COMPLETE", "CANCELLED", "FAILED"}
    )


def _job_inputs(value: object) -> object:
    # Job details send [{"identifier": "a"}, ...]; the submit receipt sends
    # {"identifier": ["a", ...]}. Both become a list of input item names.
    if value is None:
        return []
    if isinstance(value, dict):
        ids = value.get("identifier", [])
        return list(ids) if isinstance(ids, list) else [ids]
    if isinstance(value, list):
        return [item.get("identifier") if isinstance(item, dict) else item for item in value]
    return value


class Job(ModzyModel):
    """A job, as ``GET /jobs/history`` lists it and ``GET /jobs/{id}`` returns it."""

    job_id: str = Field(validation_alias=AliasChoices("jobIdentifier", "job_id", "identifier"))
    status: str = JobStatus.SUBMITTED
    model: ModelRef
    submitted_by: str | None = Field(default=None, alias="submittedBy")
    account_identifier: str | None = Field(default=None, alias="accountIdentifier")
    created_at: Timestamp = Field(default=None, alias="createdAt")
    updated_at: Timestamp = Field(default=None, alias="updatedAt")
    submitted_at: Timestamp = Field(default=None, alias="submittedAt")
    total: Count = 0
    pending: Count = 0
    completed: Count = 0
    failed: Count = 0
    elapsed_time: float | None = Field(default=None, alias="elapsedTime")
    queue_time: float | None = Field(default=None, alias="queueTime")
    timeout: float | None = None
    explain: bool = False
    user: JobUser | None = None
    team: dict[str, Any] | None = None
    input_names: Annotated[list[str], BeforeValidator(_job_inputs)] = Field(
        default_factory=list, validation_alias=AliasChoices("jobInputs", "input_names")
    )

    @field_validator("status", mode="before")
    @classmethod
    def _status_upper(cls, value: object) -> object:
        # A missing status means just submitted (as the official SDK assumes).
        if value is None:
            return JobStatus.SUBMITTED
        return value.upper() if isinstance(value, str) else value

    @property
    def is_finished(self) -> bool:
        """Whether the job reached a terminal status (its results will not change)."""
        return self.status in JobStatus.FINISHED

    def __repr__(self) -> str:
        when = self.submitted_at.isoformat() if self.submitted_at else None
        return (
            f"Job(job_id={self.job_id!r}, model={self.model.identifier}@{self.model.version}, "
            f"status={self.status!r}, total={self.total}, submitted_at={when!r})"
        )


class Voting(ModzyModel):
    """Aggregate thumbs-up / thumbs-down counts on one input's prediction."""

    up: Count = 0
    down: Count = 0

    @field_validator("up", "down")
    @classmethod
    def _non_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("vote counts cannot be negative")
        return value

    @property
    def total(self) -> int:
        return self.up + self.down

    @property
    def net(self) -> int:
        """Up-votes minus down-votes."""
        return self.up - self.down


class ClassPrediction(ModzyModel):
    """One class and its score from a classification output."""

    # Chassis-built models sometimes emit numeric class ids: numbers (never booleans)
    # become their text. Done by pydantic's core, not a Python validator: results
    # carry many predictions each, and this is the parser's innermost loop. (The
    # score's boolean check is a Python call, but a trivial one: about 30 ns.)
    model_config = ConfigDict(coerce_numbers_to_str=True)

    label: str = Field(validation_alias=AliasChoices("class", "label"))
    score: Score


def _by_score(predictions: list[ClassPrediction]) -> list[ClassPrediction]:
    for pred in predictions:
        if not math.isfinite(pred.score):
            raise ValueError(f"class {pred.label!r} has a non-finite score")
    # The API sorts by score already; sorting again makes ``top`` trustworthy for
    # models that don't. ``sorted`` is stable, so equal scores keep the model's order.
    predictions.sort(key=lambda p: p.score, reverse=True)
    return predictions


class InputFailure(ModzyModel):
    """An input that failed, from the ``failures`` map of a job's results."""

    job_id: str
    input_name: str
    status: str = "FAILED"
    error: str | None = None
    engine: str | None = None
    start_time: Timestamp = Field(default=None, alias="startTime")
    end_time: Timestamp = Field(default=None, alias="endTime")


class InputResult(ModzyModel):
    """The result of one input item of a job.

    Attributes:
        outputs: One entry per model output file (keys with a dot, such as
            ``results.json``). JSON outputs are already parsed; binary outputs are the
            URL string the API gives for them.
        predictions: The classification predictions, sorted by score (highest first),
            or empty when the output is not a classification.
        voting: The up/down vote counts (zeros when the API sent none).
    """

    job_id: str
    input_name: str
    status: str = "SUCCESSFUL"
    engine: str | None = None
    model_latency: float | None = Field(default=None, alias="modelLatency")
    queue_time: float | None = Field(default=None, alias="queueTime")
    input_fetching: float | None = Field(default=None, alias="inputFetching")
    start_time: Timestamp = Field(default=None, alias="startTime")
    update_time: Timestamp = Field(default=None, alias="updateTime")
    end_time: Timestamp = Field(default=None, alias="endTime")
    outputs: dict[str, Any] = Field(default_factory=dict)
    predictions: Annotated[list[ClassPrediction], AfterValidator(_by_score)] = Field(
        default_factory=list
    )
    explanation: Any = None
    drift: Any = None
    voting: Voting = Field(default_factory=Voting)

    @field_validator("voting", mode="before")
    @classmethod
    def _missing_voting(cls, value: object) -> object:
        return {} if value is None else value

    @property
    def output(self) -> Any:
        """The primary output: ``results.json`` when present, else the first JSON output."""
        if "results.json" in self.outputs:
            return self.outputs["results.json"]
        for value in self.outputs.values():
            if not isinstance(value, str):
                return value
        return None

    @property
    def output_urls(self) -> dict[str, str]:
        """Binary outputs, which the API gives as URLs (to fetch with the same key)."""
        return {k: v.strip() for k, v in self.outputs.items() if isinstance(v, str)}

    @property
    def top(self) -> ClassPrediction | None:
        """The highest-scoring prediction, if the output is a classification."""
        return self.predictions[0] if self.predictions else None

    def __repr__(self) -> str:
        top = f"{self.top.label}:{self.top.score:.3f}" if self.top else None
        return (
            f"InputResult(job_id={self.job_id!r}, input_name={self.input_name!r}, "
            f"top={top!r}, voting=up:{self.voting.up}/down:{self.voting.down})"
        )


class JobResults(ModzyModel):
    """Everything ``GET /results/{job id}`` returns, with each input parsed.

    ``results`` holds the inputs that succeeded and ``failures`` those that failed,
    both keyed by input item name. While a job runs, ``finished`` is false and
    ``results`` holds only the inputs done so far.
    """

    job_id: str
    account_identifier: str | None = Field(default=None, alias="accountIdentifier")
    total: Count = 0
    completed: Count = 0
    failed: Count = 0
    finished: bool = False
    submitted_by_key: str | None = Field(default=None, alias="submittedByKey")
    explained: bool = False
    submitted_at: Timestamp = Field(default=None, alias="submittedAt")
    elapsed_time: float | None = Field(default=None, alias="elapsedTime")
    results: dict[str, InputResult] = Field(default_factory=dict)
    failures: dict[str, InputFailure] = Field(default_factory=dict)
    invalid: dict[str, str] = Field(default_factory=dict)
    """Inputs whose result could not be parsed (name -> reason); only with ``strict=False``."""

    def __repr__(self) -> str:
        extra = f", invalid={len(self.invalid)}" if self.invalid else ""
        return (
            f"JobResults(job_id={self.job_id!r}, finished={self.finished}, "
            f"results={len(self.results)}, failures={len(self.failures)}{extra})"
        )


class ModelVersion(ModzyModel):
    """One version of a model, as the models routes describe it (fields vary; extras kept)."""

    version: str


class ModelSummary(ModzyModel):
    """A model as ``GET /models`` lists it and ``GET /models/{id}`` describes it."""

    model_id: str = Field(validation_alias=AliasChoices("modelId", "identifier", "model_id"))
    latest_version: str | None = Field(default=None, alias="latestVersion")
    name: str | None = None
    versions: list[str] = Field(default_factory=list)

    @field_validator("versions", mode="before")
    @classmethod
    def _version_strings(cls, value: object) -> object:
        if isinstance(value, list):
            return [v.get("version") if isinstance(v, dict) else v for v in value]
        return value
