"""The demo: the sandbox over real HTTP, the whole history, every job's results.

What ``make demo`` and ``modzy-retrain demo`` run. It shows the first step of the
retraining loop: query the history, fetch each job's results, and count the votes
that will later pick the samples to relabel.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TextIO

from ._client import ModzyClient
from ._exceptions import APIError
from ._models import Job, JobResults


@dataclass
class ModelTally:
    """Counts for one model (all its versions)."""

    name: str
    versions: set[str] = field(default_factory=set)
    jobs: int = 0
    inputs: int = 0
    failed_inputs: int = 0
    voted_inputs: int = 0
    up_voted: int = 0
    down_voted: int = 0
    conflicting: int = 0
    up_votes: int = 0
    down_votes: int = 0


@dataclass
class DemoSummary:
    jobs: int = 0
    statuses: Counter[str] = field(default_factory=Counter)
    inputs: int = 0
    failed_inputs: int = 0
    unavailable_jobs: dict[str, str] = field(default_factory=dict)
    models: dict[str, ModelTally] = field(default_factory=dict)
    seconds: float = 0.0

    def add(self, job: Job, results: JobResults | None) -> None:
        self.jobs += 1
        self.statuses[job.status] += 1
        tally = self.models.setdefault(
            job.model.identifier, ModelTally(name=job.model.name or job.model.identifier)
        )
        tally.versions.add(job.model.version)
        tally.jobs += 1
        if results is None:
            return
        self.inputs += len(results.results) + len(results.failures)
        self.failed_inputs += len(results.failures)
        tally.inputs += len(results.results) + len(results.failures)
        tally.failed_inputs += len(results.failures)
        for item in results.results.values():
            v = item.voting
            tally.up_votes += v.up
            tally.down_votes += v.down
            if v.total:
                tally.voted_inputs += 1
            if v.up and v.down:
                tally.conflicting += 1
            elif v.up:
                tally.up_voted += 1
            elif v.down:
                tally.down_voted += 1

    def render(self) -> str:
        lines = [
            f"jobs: {self.jobs} ("
            + ", ".join(f"{s.lower()} {n}" for s, n in sorted(self.statuses.items()))
            + ")",
            f"inputs: {self.inputs} ({self.failed_inputs} failed)"
            + (
                f"; results unavailable for {len(self.unavailable_jobs)} jobs"
                if self.unavailable_jobs
                else ""
            ),
            "",
            f"{'model':<34}{'jobs':>6}{'inputs':>8}{'voted':>7}{'up':>6}{'down':>6}{'both':>6}"
            f"{'votes +/-':>12}",
        ]
        for model_id, t in sorted(self.models.items(), key=lambda kv: kv[1].name):
            label = f"{t.name} [{model_id}] v{','.join(sorted(t.versions))}"
            lines.append(
                f"{label[:33]:<34}{t.jobs:>6}{t.inputs:>8}{t.voted_inputs:>7}{t.up_voted:>6}"
                f"{t.down_voted:>6}{t.conflicting:>6}{f'{t.up_votes}/{t.down_votes}':>12}"
            )
        lines.append("")
        lines.append(
            "up = more up-votes only, down = down-votes only, both = up and down (a conflict)"
        )
        lines.append(f"fetched in {self.seconds:.2f} s")
        return "\n".join(lines)


def harvest(
    client: ModzyClient, *, concurrency: int = 8, page_size: int = 100
) -> Iterator[tuple[Job, JobResults | None, str | None]]:
    """Yield (job, results or None, why not) for every job of the history.

    Jobs not yet finished and jobs whose results cannot be had are yielded with a
    reason instead of results, so nothing is dropped silently.
    """

    def fetch(job: Job) -> tuple[Job, JobResults | None, str | None]:
        if job.status in ("SUBMITTED", "OPEN"):
            return job, None, f"job is {job.status.lower()}: no results yet"
        try:
            return job, client.results.retrieve(job.job_id), None
        except APIError as exc:
            return job, None, f"{type(exc).__name__}: {exc}"

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for page in client.jobs.history(page_size=page_size).pages():
            # One page in flight at a time keeps memory flat however long the history.
            yield from pool.map(fetch, page.items)


def run_demo(*, jobs: int, seed: int, out: TextIO) -> DemoSummary:
    from .sandbox import Sandbox

    sandbox = Sandbox(seed=seed, jobs=jobs)
    summary = DemoSummary()
    with sandbox.serve() as server:
        out.write(f"sandbox: {server.base_url} (seed {seed}, {jobs} jobs)\n")
        out.write(f"raw inputs: {sandbox.data_url}\n\n")
        started = time.perf_counter()
        with ModzyClient(api_key=sandbox.api_key, base_url=server.base_url) as client:
            client.check()
            for job, results, reason in harvest(client):
                summary.add(job, results)
                if reason is not None:
                    summary.unavailable_jobs[job.job_id] = reason
        summary.seconds = time.perf_counter() - started
    out.write(summary.render() + "\n")
    return summary
