"""What happened to each job: progress, timings, failures, predictions and votes.

``build_world``'s simulation step (:func:`simulate_jobs`). Every function draws from the
world's rng in a fixed order, so the number and order of draws here is part of every
seeded world (tests/sandbox/test_world_golden.py).
"""

from __future__ import annotations

import random
import string
from datetime import datetime, timedelta

from ._catalogue import ACCURACY, CONFUSABLE, ERRORS, WorldModel
from ._records import InputPlan, JobDraft, WorldInput, WorldJob


def _ms(dt: datetime) -> datetime:
    return dt.replace(microsecond=dt.microsecond // 1000 * 1000)


def simulate_jobs(rng: random.Random, drafts: list[JobDraft]) -> list[WorldJob]:
    """Every job's outcome, in creation order: the draws of :func:`_simulate_job`, job by job."""
    jobs: list[WorldJob] = []
    for draft in drafts:
        jobs.append(_simulate_job(rng, draft, jobs))
    return jobs


def _simulate_job(rng: random.Random, draft: JobDraft, earlier: list[WorldJob]) -> WorldJob:
    """One job's progress, engine, inputs' outcomes, timings and timeout.

    COMPLETED jobs processed every input, SUBMITTED ones none, the others a random prefix;
    inputs run one after the other from the end of the queue time. Draws, in order: the
    processed count (``randint``, CANCELED/TIMEDOUT/IN_PROGRESS only); the queue time
    (``randint``, unless SUBMITTED); the engine's pod (``choices`` of 5) and replica
    (``getrandbits(40)``); each processed input (:func:`_process_input`); the
    summarizing time (``randint``); the timeout (``randint`` when TIMEDOUT, else one
    ``random``: 30% of jobs set one).
    """
    model, version, status = draft.model, draft.version, draft.status
    submitted, created = draft.submitted, draft.created
    n = len(draft.plans)
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
    for index, plan in enumerate(draft.plans):
        if index >= processed:
            items.append(_pending_input(plan))
            continue
        item, clock = _process_input(rng, draft, plan, engine, clock, earlier)
        items.append(item)
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
    return WorldJob(
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


def _pending_input(plan: InputPlan) -> WorldInput:
    """An input the job has not reached (no draws)."""
    return WorldInput(
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


def _process_input(
    rng: random.Random,
    draft: JobDraft,
    plan: InputPlan,
    engine: str,
    clock: datetime,
    earlier: list[WorldJob],
) -> tuple[WorldInput, datetime]:
    """One processed input, started at ``clock``; returns it and the clock after it.

    Decides its timings, whether it failed (4%) and, if not, its predictions and votes.
    A duplicate repeats its source's predictions (same bytes, same model version).
    Draws, in order: fetching and latency (two ``randint``); failure (one ``random``);
    if failed, the latency again (``randint``) and the error (``choice``); otherwise the
    predictions (:func:`draw_predictions`, drawn for duplicates too) and the votes
    (:func:`draw_votes`).
    """
    model, submitted = draft.model, draft.submitted
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
        error = rng.choice(ERRORS[model.kind])
    else:
        predictions = draw_predictions(rng, model, draft.version, plan.truth)
        if plan.duplicate_of is not None:
            # Same bytes through the same model version: the same output.
            dk, da = plan.duplicate_of
            original = earlier[dk].inputs[da]
            if original.predictions:
                predictions = original.predictions
        up, down = draw_votes(rng, predictions[0][0] == plan.truth)
    clock = start_time + timedelta(milliseconds=fetching + latency)
    item = WorldInput(
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
    return item, clock


def _scores(
    rng: random.Random, model: WorldModel, ordered: list[str], correct: bool
) -> tuple[tuple[str, float], ...]:
    """Scores for classes in the given rank order, strictly decreasing at the top.

    Draws: binary models one ``uniform``; others one ``uniform`` for the top score, one for
    the runner-up and one per further class.
    """
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


def draw_predictions(
    rng: random.Random, model: WorldModel, version: str, truth: str
) -> tuple[tuple[str, float], ...]:
    """The model version's ranked (class, score) output for an input of class ``truth``.

    Decides whether the top class is right (the version's accuracy), which class wins when
    it is not (usually a confusable one) and where the truth ranks then.
    Draws: one ``random`` (right or wrong); then, for a multi-class model, a ``shuffle`` of
    the other classes with ``random``/``choice`` draws for the runner-up or the wrong
    winner and, when wrong, one ``random`` (and maybe one ``randint``) for the truth's
    rank; last, the draws of the scores.
    """
    correct = rng.random() < ACCURACY[(model.id, version)]
    others = [c for c in model.classes if c != truth]
    if len(model.classes) == 2:
        # Binary: a wrong prediction's other class is the truth, by construction.
        top = truth if correct else others[0]
        return _scores(rng, model, [top, others[0] if correct else truth], correct)
    confusable = [c for c in CONFUSABLE.get(truth, ()) if c in model.classes]
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


def draw_votes(rng: random.Random, correct: bool) -> tuple[int, int]:
    """Initial (up, down) counts of one successful input.

    Reviewers mostly vote with the truth. Noise: a correct prediction is rarely down-voted
    (1%, a misclick rate) and sometimes gets a dissenting vote next to its up-votes; a wrong
    one sometimes collects an up-vote. Conflicting inputs never lean against the truth, so
    "more down than up" stays a strong (about 95%) signal of a wrong prediction.
    Draws: one ``random`` (voted at all?); if voted, five more ``random``.
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
