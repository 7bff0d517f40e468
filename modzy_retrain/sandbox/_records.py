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
    identifier: str
    first_name: str
    last_name: str
    email: str
    title: str
    access_key: str  # the full key, "<prefix>.<body>"

    @property
    def key_prefix(self) -> str:
        return self.access_key.split(".", 1)[0]


class InputRef(NamedTuple):
    """Names one input of one job."""

    job_id: str
    input_name: str


@dataclass(frozen=True)
class WorldInput:
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
        return self.predictions[0][0] if self.predictions else None

    @property
    def correct(self) -> bool | None:
        """Whether the top prediction equals the truth (None unless SUCCESSFUL)."""
        return None if not self.predictions else self.predictions[0][0] == self.truth


@dataclass(frozen=True)
class WorldJob:
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
        return len(self.inputs)

    @property
    def completed(self) -> int:
        return sum(1 for item in self.inputs if item.status == "SUCCESSFUL")

    @property
    def failed(self) -> int:
        return sum(1 for item in self.inputs if item.status == "FAILED")

    @property
    def pending(self) -> int:
        return sum(1 for item in self.inputs if item.status == "PENDING")

    def input(self, name: str) -> WorldInput | None:
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
