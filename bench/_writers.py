"""Concurrent writers of one dataset: builds and label pulls started at once.

Shared by ``bench/concurrent_writers.py`` (20 rounds, the figures in bench/RESULTS.md)
and the tests (``tests/test_concurrent_writers.py``, ``tests/cloud/...``: 2 rounds).

A round:

1. a prepared dataset (``v0001``, built from the first 40% of a sandbox's history,
   and a Label Studio ledger mapping samples that need a human to four projects) is
   copied to a fresh place;
2. eight writers start at once, each in its own process: four builds, each reading
   the history up to a later point (55%, 70%, 85%, all of it), and four label pulls,
   one per project, each labelling its own samples. Each process waits for a common
   start time after its imports, so they really collide;
3. a writer refused because another holds the dataset (``DatasetLockedError``: the
   command line's exit 8, a lost version included) publishes nothing; it tries again
   after a short random pause, as a scheduler would run it again;
4. the final version is compared with the one a single process gets by running the
   same eight writers one after another.

The label pulls go to a fake Label Studio (an ``httpx.MockTransport`` answering task
pages): the point is eight concurrent writers of the dataset, not Label Studio.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from modzy_retrain import (
    LabelStudioClient,
    LabelStudioRetry,
    Majority,
    ModzyClient,
    list_versions,
    load_manifest,
    read_samples,
    verify_dataset,
)
from modzy_retrain._cli.build import BuildSettings, build
from modzy_retrain._cli.exit_codes import EXIT_LOCKED, EXIT_NOTHING_NEW, EXIT_PUBLISHED
from modzy_retrain._core.fs import url_to_fs
from modzy_retrain._dataset.lock import DatasetLockedError, VersionConflictError
from modzy_retrain._labels.ledger import Ledger, entry
from modzy_retrain._labels.pull import pull
from modzy_retrain._triggers.fire import TriggerActions
from modzy_retrain.sandbox import Sandbox

SEED, JOBS = 5, 80
LS_SERVER = "http://ls.invalid"
LS_TOKEN = "0123456789abcdef0123456789abcdef01234567"
BUILD_POINTS = (0.55, 0.70, 0.85, None)  # where each build's window ends (None: now)
PULLS = 4
FIRST_POINT = 0.40
WORKER = str(Path(__file__).with_name("_writer_process.py"))
# How long a refused writer waits before it tries again, and how often it may.
RETRY_WAIT_S = (0.05, 0.3)
MAX_ATTEMPTS = 200


def sandbox(data_dir: str) -> Sandbox:
    return Sandbox(seed=SEED, jobs=JOBS, data_url=data_dir)


def point(sb: Sandbox, share: float | None) -> str | None:
    if share is None:
        return None
    times = sorted(j.created_at for j in sb.jobs)
    return times[int(len(times) * share)].isoformat()


def settings(sb: Sandbox, url: str, options: dict[str, Any], end: str | None) -> BuildSettings:
    return BuildSettings(
        base_url="http://sandbox.invalid",
        out=url,
        input_templates=sb.input_templates,
        # The first build's window starts here; later ones at the checkpoint.
        start=min(j.created_at for j in sb.jobs),
        end=end,  # type: ignore[arg-type]
        storage_options=options,
        concurrency=4,
    )


def run_build(data_dir: str, url: str, options: dict[str, Any], share: float | None) -> int:
    sb = sandbox(data_dir)
    with ModzyClient(
        api_key=sb.api_key, base_url="http://sandbox.invalid", transport=sb.transport()
    ) as client:
        result = build(settings(sb, url, options, point(sb, share)), environ={}, client=client)
    return result.exit_code


# -- label pulls ------------------------------------------------------------------------


def plan_pulls(url: str, options: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """Four projects, each with its own samples that need a human, and the label an
    annotator gives each; the ledger maps them as a push would have."""
    manifest = load_manifest(url, storage_options=options)
    needing = sorted(
        (s for s in read_samples(url, storage_options=options)
         if s.label_state in ("needs_label", "conflict")),
        key=lambda s: s.key,
    )  # fmt: skip
    projects: list[list[dict[str, Any]]] = [[] for _ in range(PULLS)]
    for n, s in enumerate(needing[: PULLS * 3]):
        classes = manifest.classes[s.model_id]
        projects[n % PULLS].append(
            {
                "task": n + 1,
                "job_id": s.job_id,
                "input_name": s.input_name,
                "model_id": s.model_id,
                "label": classes[n % len(classes)],
            }
        )
    fs, root = url_to_fs(url, options)
    Ledger(fs, root).append(
        entry(LS_SERVER, p + 1, t["task"], (t["job_id"], t["input_name"]), t["model_id"], "v0001")
        for p, tasks in enumerate(projects)
        for t in tasks
    )
    return projects


def fake_label_studio(project: int, tasks: list[dict[str, Any]]) -> httpx.MockTransport:
    """One project's task pages, each task annotated once, as Label Studio answers."""
    body = []
    for t in tasks:
        result = {"from_name": "label", "to_name": "image", "type": "choices",
                  "value": {"choices": [t["label"]]}}  # fmt: skip
        annotation = {"id": 1000 * t["task"], "completed_by": 1, "result": [result],
                      "was_cancelled": False, "created_at": "2026-11-30T10:00:00Z",
                      "updated_at": "2026-11-30T10:00:00Z"}  # fmt: skip
        data = {"job_id": t["job_id"], "input_name": t["input_name"], "model_id": t["model_id"]}
        body.append({"id": t["task"], "project": project, "data": data,
                     "annotations": [annotation]})  # fmt: skip

    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/tasks"
        assert int(request.url.params["project"]) == project
        return httpx.Response(200, json={"tasks": body, "total": len(body)})

    return httpx.MockTransport(answer)


def run_pull(url: str, options: dict[str, Any], project: int, tasks: list[dict[str, Any]]) -> int:
    http = httpx.Client(transport=fake_label_studio(project, tasks))
    retry = LabelStudioRetry(max_attempts=2)
    with LabelStudioClient(LS_SERVER, LS_TOKEN, http_client=http, retry=retry) as ls:
        result = pull(
            url,
            ls,
            policy=Majority(),
            projects=[project],
            storage_options=options,
            trigger=None,
            actions=TriggerActions(),
        )
    return EXIT_PUBLISHED if result.version is not None else EXIT_NOTHING_NEW


# -- one writer, as its own process -------------------------------------------------------


@dataclass
class Outcome:
    """What one writer did in a round: its attempts refused (exit 8), how many of those
    were a lost version (``VersionConflictError``), its final exit code."""

    writer: str
    refused: int = 0
    conflicts: int = 0
    exit_code: int | None = None
    error: str | None = None


def run_writer(kind: str, index: int, job: dict[str, Any]) -> Outcome:
    """Run one writer until it is not refused any more (in the worker process)."""
    url, options = job["url"], job["options"]
    if job.get("fencing_only"):
        # Every lock counts as expired: writers take it from each other at once, and
        # only the create-if-absent manifest keeps their versions apart.
        from modzy_retrain._dataset import lock

        lock.expired = lambda *_, **__: True
    outcome = Outcome(f"{kind}-{index}")
    rng = random.Random(f"{job['round']}-{kind}-{index}")
    for _ in range(MAX_ATTEMPTS):
        try:
            if kind == "build":
                outcome.exit_code = run_build(job["data_dir"], url, options, BUILD_POINTS[index])
            else:
                outcome.exit_code = run_pull(url, options, index + 1, job["pulls"][index])
            return outcome
        except VersionConflictError:
            outcome.refused += 1
            outcome.conflicts += 1
        except DatasetLockedError:
            outcome.refused += 1
        time.sleep(rng.uniform(*RETRY_WAIT_S))
    outcome.exit_code = EXIT_LOCKED
    return outcome


def writers() -> list[tuple[str, int]]:
    return [("build", i) for i in range(len(BUILD_POINTS))] + [("pull", i) for i in range(PULLS)]


# -- preparing, copying, comparing ------------------------------------------------------


def prepare(work: Path, url: str, options: dict[str, Any]) -> dict[str, Any]:
    """The inputs, and the dataset every round starts from (``v0001`` and the ledger)."""
    data_dir = str(work / "inputs")
    sb = sandbox(data_dir)
    sb.write_inputs()
    code = run_build(data_dir, url, options, FIRST_POINT)
    assert code == EXIT_PUBLISHED, code
    return {"data_dir": data_dir, "pulls": plan_pulls(url, options)}


def clone(source: str, target: str, options: dict[str, Any]) -> None:
    fs, src = url_to_fs(source, options)
    _, dst = url_to_fs(target, options)
    if fs.protocol in ("file", ("file", "local")) or "file" in fs.protocol:
        shutil.copytree(src, dst)
    else:
        for path in fs.find(src):
            fs.copy(path, dst + path[len(src) :])


Row = tuple[Any, ...]


def final_rows(url: str, options: dict[str, Any]) -> list[Row]:
    return sorted(
        (s.job_id, s.input_name, s.label, s.label_state, s.rule, s.sha256, s.split)
        for s in read_samples(url, storage_options=options)
    )


@dataclass
class History:
    """What a dataset's versions say, checked: each verifies, no sample twice, every
    sample added once, every pulled label relabelled once."""

    versions: int
    problems: list[str] = field(default_factory=list)


def check_history(url: str, options: dict[str, Any], pulls: list[list[dict[str, Any]]]) -> History:
    versions = list_versions(url, storage_options=options)
    out = History(len(versions))
    added = 0
    relabelled: Counter[tuple[str, str]] = Counter()
    for version in versions:
        problems = verify_dataset(url, version=version, storage_options=options)
        out.problems += [f"{version}: {p}" for p in problems]
        manifest = load_manifest(url, version=version, storage_options=options)
        if manifest.changes is not None:
            added += manifest.changes.added
            for r in manifest.changes.relabelled_samples:
                if r.get("human"):
                    relabelled[(r["job_id"], r["input_name"])] += 1
    rows = list(read_samples(url, storage_options=options))
    if len({r.key for r in rows}) != len(rows):
        out.problems.append("a sample appears twice in the final version")
    if added != len(rows):
        out.problems.append(f"{added} samples added over the versions, {len(rows)} in the last")
    wanted = {(t["job_id"], t["input_name"]) for tasks in pulls for t in tasks}
    if set(relabelled) != wanted or any(n != 1 for n in relabelled.values()):
        out.problems.append(f"pulled labels published {dict(relabelled)}, wanted each once")
    return out


def sequential(
    template: str, url: str, prepared: dict[str, Any], options: dict[str, Any]
) -> list[Row]:
    """The final version of the same eight writers, run one after another."""
    clone(template, url, options)
    job = {"url": url, "options": options, "round": "sequential", **prepared}
    for kind, index in writers():
        outcome = run_writer(kind, index, job)
        assert outcome.refused == 0, outcome
    return final_rows(url, options)


@dataclass
class Round:
    outcomes: list[Outcome]
    history: History
    equal: bool
    seconds: float

    @property
    def published(self) -> int:
        return sum(o.exit_code == EXIT_PUBLISHED for o in self.outcomes)

    @property
    def refused(self) -> int:
        return sum(o.refused for o in self.outcomes)

    @property
    def conflicts(self) -> int:
        return sum(o.conflicts for o in self.outcomes)

    @property
    def codes(self) -> dict[int | None, int]:
        return dict(Counter(o.exit_code for o in self.outcomes))


def run_round(number: int, template: str, url: str, prepared: dict[str, Any],
              options: dict[str, Any], reference: list[Row], *,
              fencing_only: bool = False) -> Round:  # fmt: skip
    """Eight writers in eight processes, started at once, on a copy of the template.

    ``fencing_only``: the lock holds nobody off (see :func:`run_writer`)."""
    clone(template, url, options)
    started = time.perf_counter()
    job = {"url": url, "options": options, "round": number, **prepared,
           "start_at": time.time() + 4.0, "fencing_only": fencing_only}  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(job, handle)
    procs = [
        subprocess.Popen(
            [sys.executable, WORKER, kind, str(index), handle.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for kind, index in writers()
    ]
    outcomes = []
    for (kind, index), proc in zip(writers(), procs, strict=True):
        out, err = proc.communicate(timeout=600)
        lines = out.strip().splitlines()
        if proc.returncode != 0 or not lines:
            outcomes.append(
                Outcome(f"{kind}-{index}", error=err[-2000:] or f"exit {proc.returncode}")
            )
        else:
            outcomes.append(Outcome(**json.loads(lines[-1])))
    seconds = time.perf_counter() - started
    os.unlink(handle.name)
    history = check_history(url, options, prepared["pulls"])
    return Round(outcomes, history, final_rows(url, options) == reference, seconds)


def new_place(base: str) -> str:
    return f"{base.rstrip('/')}/{uuid.uuid4().hex[:10]}"
