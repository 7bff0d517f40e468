"""Benchmark: push and pull N samples against a real Label Studio, beside one request per task.

One run, one server (Label Studio 1.23.2 from the tests' cached venv, loopback only, its
SQLite in a temporary folder), one dataset:

- the dataset: N text samples that need a human (half ``needs_label``, half
  ``conflict``), written by the real stages (``VoteFilter | LineageResolver |
  DatasetWriter``, versioned, copy mode) from synthetic prediction records whose inputs
  are small text files; texts go into the tasks inline, so no storage is needed;
- push: ``push_to_label_studio`` (bulk imports, 500 tasks a request by default), then
  the same tasks (built by the same code from the same samples) imported one request
  per task (``POST /api/projects/{id}/import`` with a one-task list) into a second
  project;
- annotate: M of the pushed tasks, spread evenly, through ``create_annotation`` as
  three users (all agree, two of three agree, two disagree, one alone: 9 annotations
  per 4 tasks);
- pull: ``pull_from_label_studio`` (``GET /api/tasks``, 100 a page, then the new
  version published), then the same tasks read one request per task
  (``GET /api/tasks/{id}``, ``client.get_task``).

Requests are counted by an httpx event hook on the ``httpx.Client`` the
``LabelStudioClient`` sends through; seconds are wall time, with the client's and the
server's CPU time beside them, and the CPU the rest of the machine used meanwhile (in
cores: other work on a shared machine slows every step). Nothing is asserted on time:
the ratios are one run's. The counts are checked (tasks, annotations, the pull's
labels, the dataset verifying): a mismatch is printed and the exit code is 1.

Run: ``.venv/bin/python bench/label_studio.py [--tasks 10000] [--annotate 1000]``
(about 40 minutes on 2 cores: the loops take 80-110 ms a request); ``--quick`` is
``--tasks 500 --annotate 100`` (about 3.5 minutes). Not part of ``make test``.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's modzy_retrain, and the tests' server

from modzy_retrain import (  # noqa: E402
    DatasetWriter,
    LabelStudioClient,
    LineageResolver,
    PredictionRecord,
    PullResult,
    PushResult,
    VoteFilter,
    load_manifest,
    pull_from_label_studio,
    push_to_label_studio,
    read_samples,
    verify_dataset,
)
from modzy_retrain._client.models import ClassPrediction, Voting  # noqa: E402
from modzy_retrain._labels.client import IMPORT_CHUNK, TASK_PAGE_SIZE  # noqa: E402
from modzy_retrain._labels.inputs import InputResolver  # noqa: E402
from modzy_retrain._labels.tasks import build_task, label_config  # noqa: E402
from tests.label_studio.conftest import (  # noqa: E402
    LABEL_STUDIO_VERSION,
    LabelStudioServer,
    run_label_studio,
)

MODEL = "sentiment-bench"
CLASSES = ("negative", "neutral", "positive")
NEEDS_HUMAN = ("needs_label", "conflict")
BLOCK = 1000  # the loops report their time per block of this many tasks
WORDS = ("late", "broken", "fine", "great", "slow", "cold", "perfect", "noisy", "cheap")


# -- measuring -----------------------------------------------------------------------------


class Requests:
    """Counts the requests the client sends (an httpx ``request`` event hook)."""

    def __init__(self) -> None:
        self.count = 0
        self.by_route: Counter[str] = Counter()

    def __call__(self, request: httpx.Request) -> None:
        self.count += 1
        path = request.url.path
        # /api/tasks/123/annotations -> /api/tasks/{id}/annotations
        route = "/".join("{id}" if part.isdigit() else part for part in path.split("/"))
        self.by_route[f"{request.method} {route}"] += 1


def _cpu_seconds(pid: int | None) -> float:
    """CPU seconds (user + system) a process has used (Linux /proc; else 0)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _machine_busy() -> float:
    """CPU seconds the whole machine has been busy, over all cores (Linux; else 0)."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = sum(fields[3:5])  # idle, iowait; guest time is counted in user already
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _server_pid() -> int | None:
    """The Label Studio process: this process's child running ``label-studio``."""
    me = str(os.getpid())
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            ppid = (proc / "stat").read_text().rsplit(")", 1)[1].split()[1]
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if ppid == me and any(arg.endswith(b"label-studio") for arg in argv):
            return int(proc.name)
    return None


@dataclass
class Phase:
    """One measured step: tasks, requests, wall time, client and server CPU."""

    name: str
    tasks: int = 0
    requests: int = 0
    seconds: float = 0.0
    client_cpu: float = 0.0
    server_cpu: float = 0.0
    # CPU seconds the rest of the machine used meanwhile (other work on a shared machine).
    others_cpu: float = 0.0
    routes: Counter[str] = field(default_factory=Counter)
    # Seconds per block of BLOCK tasks, in order (the loops only): does a task cost more
    # as the project fills?
    laps: list[float] = field(default_factory=list)
    _mark: float = field(default_factory=time.perf_counter)

    def tick(self) -> None:
        """One more task done (the loops call it)."""
        self.tasks += 1
        if self.tasks % BLOCK == 0:
            now = time.perf_counter()
            self.laps.append(now - self._mark)
            self._mark = now
            print(
                f"  {self.name}: {self.tasks} tasks, last {BLOCK} in {self.laps[-1]:.1f} s",
                flush=True,
            )

    def per_thousand(self) -> float:
        return self.seconds / self.tasks * 1000 if self.tasks else float("nan")


@contextmanager
def measure(name: str, counter: Requests, server_pid: int | None) -> Iterator[Phase]:
    phase = Phase(name)
    before_routes = Counter(counter.by_route)
    before, server = counter.count, _cpu_seconds(server_pid)
    cpu, wall, busy = time.process_time(), time.perf_counter(), _machine_busy()
    phase._mark = wall
    try:
        yield phase
    finally:
        phase.seconds = time.perf_counter() - wall
        phase.client_cpu = time.process_time() - cpu
        phase.server_cpu = _cpu_seconds(server_pid) - server
        phase.requests = counter.count - before
        phase.routes = counter.by_route - before_routes
        phase.others_cpu = max(0.0, _machine_busy() - busy - phase.client_cpu - phase.server_cpu)


# -- the dataset ---------------------------------------------------------------------------


def records(n: int) -> Iterator[PredictionRecord]:
    """N text inputs of one three-class model: even ones down-voted (``needs_label``:
    no binary flip with three classes), odd ones up- and down-voted (``conflict``)."""
    for i in range(n):
        top, second, third = CLASSES[i % 3], CLASSES[(i + 1) % 3], CLASSES[(i + 2) % 3]
        yield PredictionRecord(
            job_id=f"job-{i // 4:06d}",
            input_name=f"review-{i % 4}.txt",
            model_id=MODEL,
            model_version="1.0.0",
            model_name="Sentiment (bench)",
            job_status="COMPLETED",
            predictions=(
                ClassPrediction(label=top, score=0.6),
                ClassPrediction(label=second, score=0.3),
                ClassPrediction(label=third, score=0.1),
            ),
            voting=Voting(up=i % 2, down=1),
        )


def write_inputs(folder: Path, n: int) -> None:
    for i in range(n):
        job = folder / f"job-{i // 4:06d}"
        if i % 4 == 0:
            job.mkdir(parents=True)
        words = " and ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 2, 5))
        (job / f"review-{i % 4}.txt").write_text(f"Review {i}: it was {words}.\n")


def build_dataset(url: str, inputs: Path, n: int) -> str:
    """Write v0001 with the real stages; return its version."""
    write_inputs(inputs, n)
    resolver = LineageResolver(str(inputs / "{job_id}" / "{input_name}"))
    writer = DatasetWriter(url, versioned=True)
    report = writer.write(resolver(VoteFilter()(records(n))))
    if report.delivered != n:
        raise SystemExit(f"the dataset has {report.delivered} samples, not {n}: {report}")
    return load_manifest(url).version or ""


# -- the one-request-per-task baselines ----------------------------------------------------


def push_one_by_one(ls: LabelStudioClient, url: str, pushed: PushResult, phase: Phase) -> int:
    """The same tasks as the push, built by the same code, one import request each, into
    a new project (returned)."""
    project = ls.create_project(
        f"bench one-by-one {uuid.uuid4().hex[:6]}", label_config("text", list(CLASSES))
    )
    resolver = InputResolver(url, None, None)
    for sample in read_samples(url, version=pushed.version):
        if sample.label_state not in NEEDS_HUMAN:
            continue
        text, reason = resolver.text(sample)
        if text is None:
            raise SystemExit(f"{sample.key}: {reason}")
        task = build_task(sample, "text", text, dataset=pushed.dataset, version=pushed.version)
        ls.import_tasks(project.id, [task])
        phase.tick()
    return project.id


def pull_one_by_one(ls: LabelStudioClient, task_ids: tuple[int, ...], phase: Phase) -> int:
    """Every pushed task read with ``GET /api/tasks/{id}``: the annotations seen."""
    annotations = 0
    for task_id in task_ids:
        annotations += len(ls.get_task(task_id).annotations)
        phase.tick()
    return annotations


# -- annotating ----------------------------------------------------------------------------


def choice(label: str) -> list[dict[str, Any]]:
    return [
        {"from_name": "label", "to_name": "text", "type": "choices", "value": {"choices": [label]}}
    ]


def annotate(
    ls: LabelStudioClient, task_ids: list[int], users: list[int], phase: Phase
) -> Counter[str]:
    """Per 4 tasks: three agree; two of three agree; two disagree; one alone."""
    first, second, third = users
    expected: Counter[str] = Counter()
    for n, task_id in enumerate(task_ids):
        x, y = CLASSES[n % 3], CLASSES[(n + 1) % 3]
        pattern = n % 4
        if pattern == 0:
            votes = [(first, x), (second, x), (third, x)]
        elif pattern == 1:
            votes = [(first, x), (second, x), (third, y)]
        elif pattern == 2:
            votes = [(first, x), (second, y)]
        else:
            votes = [(first, y)]
        for who, label in votes:
            ls.create_annotation(task_id, choice(label), completed_by=who)
        phase.tick()
        expected["annotations"] += len(votes)
        expected["conflicts" if pattern == 2 else "labelled"] += 1
    return expected


# -- the run -------------------------------------------------------------------------------


@dataclass
class Run:
    phases: dict[str, Phase] = field(default_factory=dict)
    build_seconds: float = 0.0
    startup_seconds: float = 0.0
    pushed: PushResult | None = None
    pulled: PullResult | None = None
    pull_read_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    def check(self, what: str, got: object, want: object) -> None:
        if got != want:
            self.problems.append(f"{what}: got {got!r}, expected {want!r}")


def bench(args: argparse.Namespace, tmp: Path) -> Run:
    run = Run()
    url = str(tmp / "dataset")
    started = time.perf_counter()
    version = build_dataset(url, tmp / "inputs", args.tasks)
    run.build_seconds = time.perf_counter() - started
    print(f"dataset {version}: {args.tasks} samples in {run.build_seconds:.1f} s", flush=True)

    (tmp / "label-studio").mkdir()
    started = time.perf_counter()
    with run_label_studio(tmp / "label-studio") as server:
        run.startup_seconds = time.perf_counter() - started
        print(f"Label Studio {LABEL_STUDIO_VERSION} up in {run.startup_seconds:.1f} s", flush=True)
        bench_server(args, server, url, run)
    return run


def bench_server(args: argparse.Namespace, server: LabelStudioServer, url: str, run: Run) -> None:
    counter = Requests()
    pid = _server_pid()
    with (
        httpx.Client(event_hooks={"request": [counter]}) as http,
        LabelStudioClient(server.url, server.token, http_client=http) as ls,
    ):

        def step(name: str) -> AbstractContextManager[Phase]:
            print(f"{name} ...", flush=True)
            return measure(name, counter, pid)

        with step("push") as phase:
            pushed = push_to_label_studio(url, client=ls, chunk_size=args.chunk_size)
            phase.tasks = pushed.created
        run.phases["push"], run.pushed = phase, pushed
        run.check("push: tasks created", pushed.created, args.tasks)
        run.check("push: skipped", dict(pushed.skipped), {})

        with step("push, one request per task") as phase:
            project_id = push_one_by_one(ls, url, pushed, phase)
        run.phases["push-loop"] = phase
        run.check(
            "one by one: tasks in the project", ls.get_project(project_id).task_number, args.tasks
        )

        me = ls.whoami().id
        tag = uuid.uuid4().hex[:6]
        users = [me] + [ls.create_user(f"bench-{k}-{tag}@example.com").id for k in (2, 3)]
        count = min(args.annotate, len(pushed.task_ids))
        stride = max(1, len(pushed.task_ids) // count) if count else 1
        chosen = list(pushed.task_ids[::stride][:count])
        with step("annotate") as phase:
            expected = annotate(ls, chosen, users, phase)
        run.phases["annotate"] = phase

        read_done = [0.0]

        def progress(what: str, done: int) -> None:
            if what == "tasks read" and done == pushed.created:
                read_done[0] = time.perf_counter()

        with step("pull") as phase:
            pull_started = time.perf_counter()
            pulled = pull_from_label_studio(url, client=ls, progress=progress)
            phase.tasks = pulled.tasks
        run.phases["pull"], run.pulled = phase, pulled
        # The last progress call comes when every task is read, before the dataset is.
        run.pull_read_seconds = read_done[0] - pull_started if read_done[0] else float("nan")
        run.check("pull: version", pulled.version, "v0002" if chosen else None)
        run.check("pull: tasks read", pulled.tasks, args.tasks)
        run.check("pull: annotations", pulled.annotations, expected["annotations"])
        run.check("pull: labelled", pulled.labelled, expected["labelled"])
        run.check("pull: conflicts", pulled.conflicts, expected["conflicts"])
        run.check("pull: problems", pulled.problem_counts, {})

        with step("pull, one request per task") as phase:
            seen = pull_one_by_one(ls, pushed.task_ids, phase)
        run.phases["pull-loop"] = phase
        run.check("one by one: annotations read", seen, expected["annotations"])
    run.check("dataset verifies", verify_dataset(url), [])


# -- the report ----------------------------------------------------------------------------


def report(args: argparse.Namespace, run: Run) -> None:
    print()
    print(
        f"machine: {os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}, httpx {httpx.__version__}; Label Studio "
        f"{LABEL_STUDIO_VERSION} (runserver, SQLite) on loopback"
    )
    print(
        f"workload: {args.tasks} text tasks (one model, {len(CLASSES)} classes), push chunk "
        f"{args.chunk_size}, pull page {TASK_PAGE_SIZE}; dataset built in "
        f"{run.build_seconds:.1f} s, server up in {run.startup_seconds:.1f} s"
    )
    header = (
        f"{'step':<34}{'tasks':>7}{'requests':>10}{'seconds':>10}{'s/1000 tasks':>14}"
        f"{'client CPU':>12}{'server CPU':>12}{'others, cores':>15}"
    )
    print(header)
    names = {
        "push": f"push_to_label_studio (chunk {args.chunk_size})",
        "push-loop": "push, one request per task",
        "annotate": "annotate (create_annotation)",
        "pull": "pull_from_label_studio (page 100)",
        "pull-loop": "pull, one GET per task",
    }
    for key, label in names.items():
        p = run.phases[key]
        print(
            f"{label:<34}{p.tasks:>7}{p.requests:>10}{p.seconds:>10.1f}"
            f"{p.per_thousand():>14.2f}{p.client_cpu:>11.1f}s{p.server_cpu:>11.1f}s"
            f"{p.others_cpu / p.seconds:>15.2f}"
        )
    for bulk, loop, what in (("push", "push-loop", "push"), ("pull", "pull-loop", "pull")):
        b, one = run.phases[bulk], run.phases[loop]
        print(
            f"{what}: one request per task / bulk: {one.requests / b.requests:.0f}x the "
            f"requests, {one.per_thousand() / b.per_thousand():.1f}x the time per task, "
            f"{one.server_cpu / b.server_cpu:.1f}x the server's CPU"
        )
    if not math.isnan(run.pull_read_seconds):
        pulling, reading = run.phases["pull"], run.phases["pull-loop"]
        read = run.pull_read_seconds / pulling.tasks * 1000
        print(
            f"pull, reading only (before the version is written): {run.pull_read_seconds:.1f} s, "
            f"{read:.2f} s/1000 tasks; one GET per task takes {reading.per_thousand() / read:.1f}x"
        )
    for key, label in names.items():
        laps = run.phases[key].laps
        if len(laps) > 1:
            shown = " ".join(f"{lap:.0f}" for lap in laps)
            print(f"{label}: seconds per {BLOCK} tasks, in order: {shown}")
    print("requests by route:")
    for key, label in names.items():
        routes = ", ".join(f"{r} x{n}" for r, n in run.phases[key].routes.most_common())
        print(f"  {label}: {routes}")
    pushed, pulled = run.pushed, run.pulled
    assert pushed is not None
    assert pulled is not None
    print(
        f"push: {pushed.created} created in {pushed.import_requests} import requests, "
        f"{pushed.already_present} already present, skipped {dict(pushed.skipped)}"
    )
    print(
        f"pull: {pulled.previous} -> {pulled.version}; {pulled.tasks} tasks, "
        f"{pulled.annotations} annotations, {pulled.labelled} labelled, "
        f"{pulled.conflicts} conflicts, {pulled.relabelled} relabelled, {pulled.updated} "
        f"updated, {pulled.unchanged} unchanged, problems {pulled.problem_counts}"
    )
    print("checks: " + ("all passed" if not run.problems else "; ".join(run.problems)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000, help="samples pushed and pulled")
    parser.add_argument("--annotate", type=int, default=1_000, help="tasks annotated")
    parser.add_argument("--chunk-size", type=int, default=IMPORT_CHUNK, help="tasks per import")
    parser.add_argument("--quick", action="store_true", help="--tasks 500 --annotate 100")
    args = parser.parse_args()
    if args.quick:
        args.tasks, args.annotate = 500, 100
    if args.tasks < 1 or args.annotate < 0:
        parser.error("--tasks must be positive and --annotate not negative")
    with tempfile.TemporaryDirectory(prefix="ls-bench-") as tmp:
        run = bench(args, Path(tmp))
    report(args, run)
    return 1 if run.problems else 0


if __name__ == "__main__":
    sys.exit(main())
