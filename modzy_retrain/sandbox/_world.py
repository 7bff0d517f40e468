"""The sandbox's world: models, users, jobs and inputs, all derived from one seed."""

from __future__ import annotations

import bisect
import random
import string
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal, NamedTuple

UTC = timezone.utc

ModelKind = Literal["image", "text"]
InputStatus = Literal["SUCCESSFUL", "FAILED", "PENDING"]
JobStatus = Literal["SUBMITTED", "IN_PROGRESS", "COMPLETED", "CANCELED", "TIMEDOUT"]


@dataclass(frozen=True)
class WorldModel:
    """One model of the sandbox's catalogue."""

    id: str
    name: str
    versions: tuple[str, ...]
    classes: tuple[str, ...]
    kind: ModelKind
    input_filename: str  # the model input name a job's sources use ("image", "input.txt")
    media_type: str
    path_template: str  # where raw inputs live, relative to data_url (record fields only)
    naming: str  # human description of the input naming convention
    top_k: int  # how many class predictions the model emits
    scores_as_strings: bool  # Chassis-built models emit scores as strings
    explainable: bool
    author: str
    description: str

    @property
    def latest_version(self) -> str:
        return self.versions[-1]


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


IMAGE_MODEL = WorldModel(
    id="c60c8dbd79",
    name="Image Classification",
    versions=("1.0.0", "1.1.0"),
    classes=(
        "tabby cat",
        "tiger cat",
        "Egyptian cat",
        "golden retriever",
        "Labrador retriever",
        "goldfish",
        "school bus",
        "pizza",
    ),
    kind="image",
    input_filename="image",
    media_type="image/png",
    path_template="images/{submitted_at:%Y/%m/%d}/{input_name}.png",
    naming="camera frames `camNN_YYYYMMDD_NNNNNN`, stored by submission day",
    top_k=5,
    scores_as_strings=False,
    explainable=True,
    author="Sandbox Labs",
    description="Classifies small photos into eight ImageNet-like classes (top-5 output).",
)

SPAM_MODEL = WorldModel(
    id="f4k3sp4m01",
    name="Spam Detection",
    versions=("0.3.2",),
    classes=("spam", "ham"),
    kind="text",
    input_filename="input.txt",
    media_type="text/plain",
    path_template="text/{model_id}/{job_id}/{input_name}.txt",
    naming="message ids `msg-<hex>` (a few forwarded ones carry spaces, `#`, `%`, `+`, non-ASCII)",
    top_k=2,
    scores_as_strings=True,
    explainable=False,
    author="Sandbox Labs (built with Chassis)",
    description="Binary spam/ham classifier for short messages.",
)

SENTIMENT_MODEL = WorldModel(
    id="ed542963de",
    name="Sentiment Analysis",
    versions=("1.0.1",),
    classes=("negative", "neutral", "positive"),
    kind="text",
    input_filename="input.txt",
    media_type="text/plain",
    path_template="reviews/{model_version}/{job_id}/{input_name}.txt",
    naming="SDK-style item names `0001`, `0002`, ... per job",
    top_k=3,
    scores_as_strings=False,
    explainable=True,
    author="Sandbox Labs",
    description="Three-class sentiment of product reviews (all classes emitted).",
)

MODELS: tuple[WorldModel, ...] = (IMAGE_MODEL, SPAM_MODEL, SENTIMENT_MODEL)

_USERS = (
    ("Jane", "Smith", "Data Scientist"),
    ("Omar", "Haddad", "ML Engineer"),
    ("Mei", "Chen", "Analyst"),
    ("Lucas", "Martin", "Support Lead"),
    ("Priya", "Raman", "Product Manager"),
)
_USER_WEIGHTS = (0.35, 0.2, 0.2, 0.15, 0.1)
_MODEL_WEIGHTS = (0.4, 0.3, 0.3)
# Class priors: a little imbalance, as in production traffic.
_PRIORS: dict[str, tuple[float, ...]] = {
    IMAGE_MODEL.id: (0.16, 0.12, 0.1, 0.14, 0.12, 0.12, 0.12, 0.12),
    SPAM_MODEL.id: (0.3, 0.7),
    SENTIMENT_MODEL.id: (0.3, 0.25, 0.45),
}
_ACCURACY = {
    (IMAGE_MODEL.id, "1.0.0"): 0.72,
    (IMAGE_MODEL.id, "1.1.0"): 0.8,
    (SPAM_MODEL.id, "0.3.2"): 0.82,
    (SENTIMENT_MODEL.id, "1.0.1"): 0.76,
}
# Classes a multi-class model confuses with each other; wrong guesses stay "plausible".
_CONFUSABLE = {
    "tabby cat": ("tiger cat", "Egyptian cat"),
    "tiger cat": ("tabby cat", "Egyptian cat"),
    "Egyptian cat": ("tabby cat", "tiger cat"),
    "golden retriever": ("Labrador retriever",),
    "Labrador retriever": ("golden retriever",),
    "goldfish": ("pizza",),
    "school bus": ("goldfish",),
    "pizza": ("goldfish",),
    "negative": ("neutral",),
    "neutral": ("negative", "positive"),
    "positive": ("neutral",),
}
_ERRORS = {
    "image": (
        "invalid image: cannot identify image file 'image'",
        "image is too small: expected at least 8x8 pixels",
        "model container exited with code 137 (OOMKilled)",
    ),
    "text": (
        "'utf-8' codec can't decode byte 0xff in position 0: invalid start byte",
        "input.txt is empty",
        "model container exited with code 137 (OOMKilled)",
    ),
}
_ALNUM = string.ascii_letters + string.digits


def random_key(rng: random.Random) -> str:
    """An access key shaped like Modzy's: 20 alphanumerics, a dot, 20 alphanumerics."""
    return "".join(rng.choices(_ALNUM, k=20)) + "." + "".join(rng.choices(_ALNUM, k=20))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _ms(dt: datetime) -> datetime:
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


@dataclass
class _Draft:
    """Mutable per-job draft used while the world is being built."""

    id: str
    model: WorldModel
    version: str
    user: WorldUser
    created: datetime
    submitted: datetime
    status: JobStatus
    explain: bool


@dataclass
class _Plan:
    """Mutable per-input draft used while the world is being built."""

    name: str
    truth: str
    content_seed: int
    duplicate_of: tuple[int, int] | None = None  # (job index, input index)


def _pick(rng: random.Random, items: Sequence[str], weights: Sequence[float]) -> str:
    return rng.choices(items, weights=weights, k=1)[0]


def _scores(
    rng: random.Random, model: WorldModel, ordered: list[str], correct: bool
) -> tuple[tuple[str, float], ...]:
    """Scores for classes in the given rank order, strictly decreasing at the top."""
    if len(model.classes) == 2:
        top = rng.uniform(0.55, 0.99) if correct else rng.uniform(0.51, 0.9)
        top = round(top, 2)
        return ((ordered[0], top), (ordered[1], round(1.0 - top, 2)))
    top = rng.uniform(0.45, 0.97) if correct else rng.uniform(0.36, 0.75)
    rest = 1.0 - top
    values = [top]
    second = min(rest * rng.uniform(0.5, 0.9), top - 0.01)
    values.append(second)
    remaining = rest - second
    for _ in ordered[2:]:
        part = remaining * rng.uniform(0.3, 0.7)
        values.append(min(part, values[-1]))
        remaining -= part
    rounded = [round(v, 3) for v in values]
    pairs = list(zip(ordered, rounded, strict=True))
    # Stable sort keeps the planned rank for equal rounded scores.
    pairs.sort(key=lambda pair: -pair[1])
    return tuple(pairs[: model.top_k])


def _predict(
    rng: random.Random, model: WorldModel, version: str, truth: str
) -> tuple[tuple[str, float], ...]:
    correct = rng.random() < _ACCURACY[(model.id, version)]
    others = [c for c in model.classes if c != truth]
    if len(model.classes) == 2:
        # Binary: a wrong prediction's other class is the truth, by construction.
        top = truth if correct else others[0]
        return _scores(rng, model, [top, others[0] if correct else truth], correct)
    confusable = [c for c in _CONFUSABLE.get(truth, ()) if c in model.classes]
    if correct:
        rest = others[:]
        rng.shuffle(rest)
        if confusable and rng.random() < 0.6:
            runner = rng.choice(confusable)
            rest.remove(runner)
            rest.insert(0, runner)
        return _scores(rng, model, [truth, *rest], True)
    top = rng.choice(confusable) if confusable and rng.random() < 0.7 else rng.choice(others)
    rest = [c for c in others if c != top]
    rng.shuffle(rest)
    roll = rng.random()
    # When wrong, the truth is usually the runner-up, sometimes further down (or, for the
    # top-5 image model, not emitted at all).
    if roll < 0.65:
        position = 0
    elif roll < 0.9 or model.top_k >= len(model.classes):
        position = rng.randint(1, min(len(rest), model.top_k - 2))
    else:
        position = len(rest)
    rest.insert(position, truth)
    return _scores(rng, model, [top, *rest], False)


def _votes(rng: random.Random, correct: bool) -> tuple[int, int]:
    """Initial (up, down) counts of one successful input.

    Reviewers mostly vote with the truth. Noise: a correct prediction is rarely down-voted
    (1%, a misclick rate) and sometimes gets a dissenting vote next to its up-votes; a wrong
    one sometimes collects an up-vote. Conflicting inputs never lean against the truth, so
    "more down than up" stays a strong (about 95%) signal of a wrong prediction.
    """
    if rng.random() < 0.65:
        return 0, 0
    roll = rng.random()
    majority = 1 + (rng.random() < 0.25) + (rng.random() < 0.05)
    minority = 1 + (rng.random() < 0.2)
    if correct:
        if roll < 0.91:
            return majority, 0
        if roll < 0.92:
            return 0, 1
        return max(majority, minority), minority
    if roll < 0.82:
        return 0, majority
    if roll < 0.88:
        return 1, 0
    return minority, max(majority, minority)


def _input_name(
    rng: random.Random, model: WorldModel, index: int, submitted: datetime, serial: int, cam: int
) -> str:
    if model is IMAGE_MODEL:
        return f"cam{cam:02d}_{submitted:%Y%m%d}_{serial:06d}"
    if model is SPAM_MODEL:
        token = f"{rng.getrandbits(32):08x}"
        if rng.random() < 0.04:
            # User-defined names may contain anything but "/": keep a few hostile ones.
            return f"msg-{token} (fwd #{index + 1}) 100% ü+é"
        return f"msg-{token}"
    return f"{index + 1:04d}"


def _job_statuses(rng: random.Random, n: int) -> list[JobStatus]:
    statuses: list[JobStatus] = ["COMPLETED"] * n
    tail_submitted = max(1, round(n * 0.01)) if n >= 10 else 0
    tail_running = max(1, round(n * 0.02)) if n >= 10 else 0
    for i in range(n - tail_submitted - tail_running, n - tail_submitted):
        statuses[i] = "IN_PROGRESS"
    for i in range(n - tail_submitted, n):
        statuses[i] = "SUBMITTED"
    settled = n - tail_submitted - tail_running
    for i in range(settled):
        roll = rng.random()
        if roll < 0.05:
            statuses[i] = "CANCELED"
        elif roll < 0.08:
            statuses[i] = "TIMEDOUT"
    # Small worlds would often lack the rarer statuses; tests and demos rely on them.
    if settled >= 10:
        rare: tuple[JobStatus, ...] = ("CANCELED", "TIMEDOUT")
        for wanted in rare:
            if wanted not in statuses[:settled]:
                choices = [i for i in range(settled) if statuses[i] == "COMPLETED"]
                statuses[rng.choice(choices)] = wanted
    return statuses


def build_world(
    seed: int,
    n_jobs: int,
    inputs_per_job: int,
    start: datetime,
    end: datetime,
    api_key: str | None,
) -> World:
    """Build the whole world deterministically from ``seed``."""
    rng = random.Random(seed)
    users = []
    for i, (first, last, title) in enumerate(_USERS):
        key = random_key(rng)
        if i == 0 and api_key is not None:
            # The caller's key belongs to the first user; drawing the seeded key anyway
            # keeps the rest of the world identical whatever key is chosen.
            key = api_key
        users.append(
            WorldUser(
                identifier=_uuid(rng),
                first_name=first,
                last_name=last,
                email=f"{first.lower()}.{last.lower()}@example.com",
                title=title,
                access_key=key,
            )
        )
    team = _uuid(rng)
    span_ms = int((end - start).total_seconds() * 1000)
    offsets = sorted(rng.randrange(span_ms) for _ in range(n_jobs))
    statuses = _job_statuses(rng, n_jobs)
    midpoint = start + (end - start) * 0.6

    # Pass 1: who submitted what, when, with which input names and true labels.
    drafts: list[_Draft] = []
    plans: list[list[_Plan]] = []
    serial = 0
    for i, offset in enumerate(offsets):
        created = start + timedelta(milliseconds=offset)
        model = rng.choices(MODELS, weights=_MODEL_WEIGHTS, k=1)[0]
        if len(model.versions) > 1:
            late = created >= midpoint
            version = model.versions[1] if (rng.random() < 0.9) == late else model.versions[0]
        else:
            version = model.versions[0]
        submitted = created + timedelta(milliseconds=rng.randint(5, 80))
        cam = rng.randint(1, 12)
        job_plans = []
        names: set[str] = set()
        for index in range(inputs_per_job):
            name = _input_name(rng, model, index, submitted, serial, cam)
            while name in names:  # random hex names could collide within a job
                name = _input_name(rng, model, index, submitted, serial, cam)
            names.add(name)
            serial += 1
            truth = _pick(rng, model.classes, _PRIORS[model.id])
            job_plans.append(_Plan(name, truth, rng.getrandbits(62)))
        drafts.append(
            _Draft(
                id=_uuid(rng),
                model=model,
                version=version,
                user=rng.choices(users, weights=_USER_WEIGHTS, k=1)[0],
                created=created,
                submitted=submitted,
                status=statuses[i],
                explain=model.explainable and rng.random() < 0.2,
            )
        )
        plans.append(job_plans)

    # A few inputs are re-submissions of an earlier job's file (same model and version).
    duplicates: list[tuple[InputRef, InputRef]] = []
    total_inputs = n_jobs * inputs_per_job
    if total_inputs >= 20 and n_jobs >= 2:
        wanted = max(2, total_inputs // 150)
        used: set[tuple[int, int]] = set()
        # The jobs of each model version, in order: the earlier ones of job j are a
        # prefix, found by bisection (a scan per attempt made big worlds quadratic).
        by_version: dict[tuple[str, str], list[int]] = {}
        for k, draft in enumerate(drafts):
            by_version.setdefault((draft.model.id, draft.version), []).append(k)
        attempts = 0
        while len(duplicates) < wanted and attempts < wanted * 20:
            attempts += 1
            j = rng.randrange(1, n_jobs)
            group = by_version[(drafts[j].model.id, drafts[j].version)]
            earlier = group[: bisect.bisect_left(group, j)]
            if not earlier:
                continue
            k = rng.choice(earlier)
            a, b = rng.randrange(inputs_per_job), rng.randrange(inputs_per_job)
            if (k, a) in used or (j, b) in used:
                continue
            used.update({(k, a), (j, b)})
            source, copy = plans[k][a], plans[j][b]
            copy.truth, copy.content_seed = source.truth, source.content_seed
            copy.duplicate_of = (k, a)
            duplicates.append(
                (InputRef(drafts[k].id, source.name), InputRef(drafts[j].id, copy.name))
            )

    # Pass 2: outcomes, predictions, votes and timings.
    jobs: list[WorldJob] = []
    for i, draft in enumerate(drafts):
        model, version, status = draft.model, draft.version, draft.status
        submitted, created = draft.submitted, draft.created
        n = len(plans[i])
        if status == "COMPLETED":
            processed = n
        elif status == "SUBMITTED":
            processed = 0
        else:
            processed = rng.randint(0, max(0, n - 1))
        queue = rng.randint(50, 3000) if processed or status != "SUBMITTED" else 0
        clock = submitted + timedelta(milliseconds=queue)
        pod = "".join(rng.choices(string.ascii_lowercase + string.digits, k=5))
        replica = f"{rng.getrandbits(40):010x}-{pod}"
        engine = f"model-batch-{model.id}-{version.replace('.', '-')}-{replica}"
        items: list[WorldInput] = []
        for index, plan in enumerate(plans[i]):
            if index >= processed:
                items.append(
                    WorldInput(
                        name=plan.name,
                        truth=plan.truth,
                        content_seed=plan.content_seed,
                        status="PENDING",
                        predictions=(),
                        error=None,
                        votes_up=0,
                        votes_down=0,
                        engine="",
                        queue_time=0,
                        input_fetching=0,
                        model_latency=0,
                        start_time=None,
                        end_time=None,
                    )
                )
                continue
            fetching = rng.randint(5, 150)
            latency = rng.randint(80, 400) if model.kind == "image" else rng.randint(10, 90)
            start_time = _ms(clock)
            queue_time = int((start_time - submitted).total_seconds() * 1000)
            failed = rng.random() < 0.04
            predictions: tuple[tuple[str, float], ...] = ()
            error = None
            up = down = 0
            if failed:
                latency = rng.randint(1, 20)
                error = rng.choice(_ERRORS[model.kind])
            else:
                predictions = _predict(rng, model, version, plan.truth)
                if plan.duplicate_of is not None:
                    # Same bytes through the same model version: the same output.
                    dk, da = plan.duplicate_of
                    original = jobs[dk].inputs[da]
                    if original.predictions:
                        predictions = original.predictions
                up, down = _votes(rng, predictions[0][0] == plan.truth)
            clock = start_time + timedelta(milliseconds=fetching + latency)
            items.append(
                WorldInput(
                    name=plan.name,
                    truth=plan.truth,
                    content_seed=plan.content_seed,
                    status="FAILED" if failed else "SUCCESSFUL",
                    predictions=predictions,
                    error=error,
                    votes_up=up,
                    votes_down=down,
                    engine=engine,
                    queue_time=queue_time,
                    input_fetching=fetching,
                    model_latency=latency,
                    start_time=start_time,
                    end_time=_ms(clock),
                )
            )
        summarizing_ms = rng.randint(20, 80)
        summarizing_at: datetime | None = None
        if status == "SUBMITTED":
            updated, elapsed = created, 0
        elif status == "IN_PROGRESS":
            updated = _ms(clock)
            elapsed = int((updated - submitted).total_seconds() * 1000)
        else:
            summarizing_at = _ms(clock)
            updated = summarizing_at + timedelta(milliseconds=summarizing_ms)
            elapsed = int((updated - submitted).total_seconds() * 1000)
        if status == "TIMEDOUT":
            timeout: int | None = max(1000, elapsed - rng.randint(1, 500))
        else:
            timeout = 600000 if rng.random() < 0.3 else None
        jobs.append(
            WorldJob(
                id=draft.id,
                model=model,
                version=version,
                user=draft.user,
                status=status,
                created_at=created,
                submitted_at=submitted,
                updated_at=updated,
                explain=draft.explain,
                queue_time=queue,
                elapsed_time=elapsed,
                timeout=timeout,
                summarizing_at=summarizing_at,
                summarizing_ms=summarizing_ms,
                inputs=tuple(items),
            )
        )

    # A few raw files are missing from storage (deleted, expired, never uploaded).
    dup_refs = {ref for pair in duplicates for ref in pair}
    candidates = [
        InputRef(job.id, item.name)
        for job in jobs
        for item in job.inputs
        if item.status == "SUCCESSFUL" and InputRef(job.id, item.name) not in dup_refs
    ]
    missing: list[InputRef] = []
    if len(candidates) >= 10:
        missing = rng.sample(candidates, max(1, len(candidates) // 100))
    order = {ref: n for n, ref in enumerate(candidates)}
    missing.sort(key=order.__getitem__)

    return World(
        seed=seed,
        account_identifier="sandbox-account",
        team_identifier=team,
        models=MODELS,
        users=tuple(users),
        jobs=tuple(jobs),
        missing_inputs=tuple(missing),
        duplicate_inputs=tuple(duplicates),
        jobs_by_id={job.id: job for job in jobs},
    )
