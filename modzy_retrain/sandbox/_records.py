"""The world's records: users, jobs, inputs and the world that holds them.

All frozen. The two drafts at the end are the mutable forms ``build_world`` fills in
before it freezes them into jobs and inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple

from ._catalogue import WorldModel

InputStatus = Literal["SUCCESSFUL", "FAILED", "PENDING"]
JobStatus = Literal["SUBMITTED", "IN_PROGRESS", "COMPLETED", "CANCELED", "TIMEDOUT"]


@dataclass(frozen=True)
class WorldUser:
    """A user of the sandbox's account: who submitted a job, and whose key authenticates.

    Attributes:
        identifier: The user's id.
        first_name: Their first name (the history's ``user`` filter searches it).
        last_name: Their last name.
        email: Their email address.
        title: Their job title.
        access_key: The full API key, ``"<prefix>.<body>"``; the history filters
            jobs by the prefix (``submittedBy``).
    """

    identifier: str
    first_name: str
    last_name: str
    email: str
    title: str
    access_key: str  # the full key, "<prefix>.<body>"

    @property
    def key_prefix(self) -> str:
        """The public part of the key, before the dot."""
        return self.access_key.split(".", 1)[0]


class InputRef(NamedTuple):
    """Names one input of one job."""

    job_id: str
    input_name: str


@dataclass(frozen=True)
class WorldInput:
    """One input of a job in the sandbox's world, with what the API does not show.

    Attributes:
        name: The input's name within its job.
        truth: Its hidden true label; never served over HTTP (`Sandbox.ground_truth`).
        content_seed: The seed its raw content (text or image) is drawn from.
        status: ``"SUCCESSFUL"``, ``"FAILED"`` or ``"PENDING"``.
        predictions: The model's (class, score) pairs, sorted by score, descending;
            empty unless SUCCESSFUL.
        error: The failure's message for a FAILED input, else None.
        votes_up: The up-votes cast before the sandbox started (by other users).
        votes_down: The down-votes cast before the sandbox started.
        engine: The engine (pod) that processed it.
        queue_time: Milliseconds it waited in the queue.
        input_fetching: Milliseconds spent fetching it.
        model_latency: Milliseconds the model took.
        start_time: When its processing started (None while PENDING).
        end_time: When its processing ended (None while PENDING).
    """

    name: str
    truth: str  # hidden ground truth; never served over HTTP
    content_seed: int
    status: InputStatus
    # Sorted by score, descending; empty unless SUCCESSFUL.
    predictions: tuple[tuple[str, float], ...]
    error: str | None
    votes_up: int  # the votes cast before the sandbox started (by other users)
    votes_down: int
    engine: str
    queue_time: int  # ms
    input_fetching: int  # ms
    model_latency: int  # ms
    start_time: datetime | None
    end_time: datetime | None

    @property
    def predicted(self) -> str | None:
        """The top predicted class (None unless SUCCESSFUL)."""
        return self.predictions[0][0] if self.predictions else None

    @property
    def correct(self) -> bool | None:
        """Whether the top prediction equals the truth (None unless SUCCESSFUL)."""
        return None if not self.predictions else self.predictions[0][0] == self.truth


@dataclass(frozen=True)
class WorldJob:
    """One job of the sandbox's world: what the history and the results routes serve.

    Attributes:
        id: The job's identifier.
        model: The model it ran.
        version: The model version it ran.
        user: Who submitted it.
        status: ``"SUBMITTED"``, ``"IN_PROGRESS"``, ``"COMPLETED"``, ``"CANCELED"`` or
            ``"TIMEDOUT"``.
        created_at: When it was created.
        submitted_at: When it was submitted.
        updated_at: When it last changed.
        explain: Whether explanations were asked for.
        queue_time: Milliseconds until its first input started.
        elapsed_time: Milliseconds it ran.
        timeout: Its timeout in milliseconds, or None.
        summarizing_at: When the summary of its results started, or None.
        summarizing_ms: Milliseconds the summary took.
        inputs: Its inputs, in order.
    """

    id: str
    model: WorldModel
    version: str
    user: WorldUser
    status: JobStatus
    created_at: datetime
    submitted_at: datetime
    updated_at: datetime
    explain: bool
    queue_time: int  # ms until the first input started
    elapsed_time: int  # ms
    timeout: int | None  # ms
    summarizing_at: datetime | None
    summarizing_ms: int
    inputs: tuple[WorldInput, ...]

    @property
    def total(self) -> int:
        """How many inputs the job has."""
        return len(self.inputs)

    @property
    def completed(self) -> int:
        """How many of its inputs succeeded."""
        return sum(1 for item in self.inputs if item.status == "SUCCESSFUL")

    @property
    def failed(self) -> int:
        """How many of its inputs failed."""
        return sum(1 for item in self.inputs if item.status == "FAILED")

    @property
    def pending(self) -> int:
        """How many of its inputs were not processed."""
        return sum(1 for item in self.inputs if item.status == "PENDING")

    def input(self, name: str) -> WorldInput | None:
        """The input of that name, or None."""
        for item in self.inputs:
            if item.name == name:
                return item
        return None


@dataclass(frozen=True)
class World:
    seed: int
    account_identifier: str
    team_identifier: str
    models: tuple[WorldModel, ...]
    users: tuple[WorldUser, ...]
    jobs: tuple[WorldJob, ...]  # sorted by created_at
    missing_inputs: tuple[InputRef, ...]
    duplicate_inputs: tuple[tuple[InputRef, InputRef], ...]
    jobs_by_id: dict[str, WorldJob] = field(repr=False, compare=False)

    def model(self, model_id: str) -> WorldModel | None:
        for model in self.models:
            if model.id == model_id:
                return model
        return None


# -- drafts: mutable, only while build_world runs ------------------------------------------


@dataclass
class InputPlan:
    """Mutable per-input draft used while the world is being built."""

    name: str
    truth: str
    content_seed: int
    duplicate_of: tuple[int, int] | None = None  # (job index, input index)


@dataclass
class JobDraft:
    """Mutable per-job draft used while the world is being built."""

    id: str
    model: WorldModel
    version: str
    user: WorldUser
    created: datetime
    submitted: datetime
    status: JobStatus
    explain: bool
    plans: list[InputPlan]
