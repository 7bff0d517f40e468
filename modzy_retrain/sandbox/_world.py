"""The sandbox's world: users, jobs and inputs, all drawn from one seed.

``build_world`` runs named steps in a fixed order over one ``random.Random(seed)``: draw
the users, schedule the jobs, draft them (model, version, submitter, input names and true
labels), plant duplicate files, simulate the outcomes (progress, predictions, votes,
failures, timings) and pick the missing files. Each step's docstring says what it decides
and which draws it consumes; the order of steps and of draws inside them is the world, so
tests/sandbox/test_world_golden.py pins the result.
"""

from __future__ import annotations

import bisect
import random
import string
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta

from ._catalogue import (
    IMAGE_MODEL,
    MODEL_WEIGHTS,
    MODELS,
    PRIORS,
    SPAM_MODEL,
    USER_WEIGHTS,
    USERS,
    WorldModel,
)
from ._outcomes import simulate_jobs
from ._records import InputPlan, InputRef, JobDraft, JobStatus, World, WorldJob, WorldUser

_ALNUM = string.ascii_letters + string.digits


def random_key(rng: random.Random) -> str:
    """An access key shaped like Modzy's: 20 alphanumerics, a dot, 20 alphanumerics."""
    return "".join(rng.choices(_ALNUM, k=20)) + "." + "".join(rng.choices(_ALNUM, k=20))


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _pick(rng: random.Random, items: Sequence[str], weights: Sequence[float]) -> str:
    return rng.choices(items, weights=weights, k=1)[0]


def build_world(
    seed: int,
    n_jobs: int,
    inputs_per_job: int,
    start: datetime,
    end: datetime,
    api_key: str | None,
) -> World:
    """Build the whole world deterministically from ``seed`` (steps and draws in order)."""
    rng = random.Random(seed)
    users = _draw_users(rng, api_key)
    team = _uuid(rng)  # the team's identifier: one getrandbits(128)
    schedule = _schedule_jobs(rng, n_jobs, start, end)
    # A model's newer version takes over 60% of the way through the span.
    midpoint = start + (end - start) * 0.6
    drafts = _draft_jobs(rng, schedule, users, inputs_per_job, midpoint)
    duplicates = _plant_duplicates(rng, drafts, inputs_per_job)
    jobs = simulate_jobs(rng, drafts)
    missing = _pick_missing(rng, jobs, duplicates)
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


# -- step 1: users -------------------------------------------------------------------------


def _draw_users(rng: random.Random, api_key: str | None) -> list[WorldUser]:
    """The catalogue's users, each with an access key and an identifier.

    Draws, per user in ``USERS`` order: the key (two ``choices`` of 20), then the
    identifier (one ``getrandbits(128)``). A given ``api_key`` replaces the first user's
    key after its draw, so the rest of the world stays identical whatever key is chosen.
    """
    users = []
    for i, (first, last, title) in enumerate(USERS):
        key = random_key(rng)
        if i == 0 and api_key is not None:
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
    return users


# -- step 2: when jobs were created and how they ended -------------------------------------


def _schedule_jobs(
    rng: random.Random, n_jobs: int, start: datetime, end: datetime
) -> list[tuple[datetime, JobStatus]]:
    """Each job's creation time (oldest first) and final status.

    Draws: one ``randrange`` per job (its millisecond offset in ``[start, end)``), then the
    draws of :func:`_job_statuses`.
    """
    span_ms = int((end - start).total_seconds() * 1000)
    offsets = sorted(rng.randrange(span_ms) for _ in range(n_jobs))
    statuses = _job_statuses(rng, n_jobs)
    return [
        (start + timedelta(milliseconds=offset), status)
        for offset, status in zip(offsets, statuses, strict=True)
    ]


def _job_statuses(rng: random.Random, n: int) -> list[JobStatus]:
    """Statuses in creation order: the newest few still SUBMITTED or IN_PROGRESS.

    The settled jobs are COMPLETED, CANCELED (5%) or TIMEDOUT (3%). Draws: one ``random``
    per settled job; then, in a world of 10 or more settled jobs lacking CANCELED or
    TIMEDOUT, one ``choice`` per missing status (a COMPLETED job that takes it).
    """
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


# -- step 3: who submitted what ------------------------------------------------------------


def _draft_jobs(
    rng: random.Random,
    schedule: list[tuple[datetime, JobStatus]],
    users: list[WorldUser],
    inputs_per_job: int,
    midpoint: datetime,
) -> list[JobDraft]:
    """Every job's draft, in creation order: the draws of :func:`_draft_job`, job by job.

    Image inputs are numbered by one serial across the world (``inputs_per_job`` a job).
    """
    return [
        _draft_job(rng, created, status, users, inputs_per_job, midpoint, i * inputs_per_job)
        for i, (created, status) in enumerate(schedule)
    ]


def _draft_job(
    rng: random.Random,
    created: datetime,
    status: JobStatus,
    users: list[WorldUser],
    inputs_per_job: int,
    midpoint: datetime,
    serial: int,
) -> JobDraft:
    """One job's model, version, submission time, inputs, id, submitter and explain flag.

    Draws, in order: the model (one weighted ``choices``); for a multi-version model one
    ``random`` (jobs after ``midpoint`` mostly use the newer version, earlier ones mostly
    the older); the submission delay (``randint``); the camera (``randint``, image names
    only but always drawn); the inputs (:func:`_plan_inputs`); the job id
    (``getrandbits(128)``); the submitter (one weighted ``choices``); and, for an
    explainable model, one ``random`` for the explain flag.
    """
    model = rng.choices(MODELS, weights=MODEL_WEIGHTS, k=1)[0]
    if len(model.versions) > 1:
        late = created >= midpoint
        version = model.versions[1] if (rng.random() < 0.9) == late else model.versions[0]
    else:
        version = model.versions[0]
    submitted = created + timedelta(milliseconds=rng.randint(5, 80))
    cam = rng.randint(1, 12)
    plans = _plan_inputs(rng, model, submitted, cam, inputs_per_job, serial)
    job_id = _uuid(rng)
    user = rng.choices(users, weights=USER_WEIGHTS, k=1)[0]
    explain = model.explainable and rng.random() < 0.2
    return JobDraft(job_id, model, version, user, created, submitted, status, explain, plans)


def _plan_inputs(
    rng: random.Random,
    model: WorldModel,
    submitted: datetime,
    cam: int,
    count: int,
    serial: int,
) -> list[InputPlan]:
    """A job's input names, true labels (the catalogue's priors) and content seeds.

    Draws, per input: its name (:func:`_input_name`, drawn again while it collides with an
    earlier name of the job), its truth (one weighted ``choices``) and its content seed
    (``getrandbits(62)``).
    """
    plans = []
    names: set[str] = set()
    for index in range(count):
        name = _input_name(rng, model, index, submitted, serial + index, cam)
        while name in names:  # random hex names could collide within a job
            name = _input_name(rng, model, index, submitted, serial + index, cam)
        names.add(name)
        truth = _pick(rng, model.classes, PRIORS[model.id])
        plans.append(InputPlan(name, truth, rng.getrandbits(62)))
    return plans


def _input_name(
    rng: random.Random, model: WorldModel, index: int, submitted: datetime, serial: int, cam: int
) -> str:
    """An input name in the model's naming convention.

    Draws: none for image and sentiment names; for spam names one ``getrandbits(32)`` and
    one ``random`` (4% hostile forwarded names).
    """
    if model is IMAGE_MODEL:
        return f"cam{cam:02d}_{submitted:%Y%m%d}_{serial:06d}"
    if model is SPAM_MODEL:
        token = f"{rng.getrandbits(32):08x}"
        if rng.random() < 0.04:
            # User-defined names may contain anything but "/": keep a few hostile ones.
            return f"msg-{token} (fwd #{index + 1}) 100% ü+é"
        return f"msg-{token}"
    return f"{index + 1:04d}"


# -- step 4: re-submitted files ------------------------------------------------------------


def _plant_duplicates(
    rng: random.Random, drafts: list[JobDraft], inputs_per_job: int
) -> list[tuple[InputRef, InputRef]]:
    """Make a few inputs re-submissions of an earlier job's file (same model and version).

    Only worlds of at least 20 inputs and 2 jobs get them: ``max(2, inputs // 150)``
    pairs, within ``20 * wanted`` attempts. The copy takes the source's truth and content
    seed (its draft changes in place). Draws, per attempt: a later job (``randrange``);
    if an earlier job of its version exists, that job (``choice``) and one input of each
    (two ``randrange``).
    """
    duplicates: list[tuple[InputRef, InputRef]] = []
    n_jobs = len(drafts)
    total_inputs = n_jobs * inputs_per_job
    if total_inputs < 20 or n_jobs < 2:
        return duplicates
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
        source, copy = drafts[k].plans[a], drafts[j].plans[b]
        copy.truth, copy.content_seed = source.truth, source.content_seed
        copy.duplicate_of = (k, a)
        duplicates.append((InputRef(drafts[k].id, source.name), InputRef(drafts[j].id, copy.name)))
    return duplicates


# -- step 6: files gone from storage (step 5 is _outcomes.simulate_jobs) -------------------


def _pick_missing(
    rng: random.Random, jobs: list[WorldJob], duplicates: list[tuple[InputRef, InputRef]]
) -> list[InputRef]:
    """A few raw files missing from storage (deleted, expired, never uploaded).

    Candidates are the successful inputs outside duplicate pairs; with 10 or more, 1% of
    them (at least one) go missing, listed in world order. Draws: one ``sample``.
    """
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
    return missing
