"""The demo: the whole chain on the sandbox, over real HTTP on loopback.

What ``make demo`` and ``modzy-retrain demo`` run: start the sandbox, query its whole
job history, fetch every job's results, keep the voted predictions and label them,
find each one's raw input through the sandbox's naming conventions, and write a
dataset (JSONL and the copied inputs, with its manifest). Prints a summary of jobs,
inputs and votes per model, then the run report.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import TextIO

from modzy_retrain._client.client import ModzyClient
from modzy_retrain._dataset.manifest import DatasetFormat
from modzy_retrain._stages.base import Stage
from modzy_retrain._stages.fetch import ResultFetcher
from modzy_retrain._stages.lineage import LineageResolver
from modzy_retrain._stages.query import JobHistoryQuery
from modzy_retrain._stages.records import PredictionRecord
from modzy_retrain._stages.report import RunReport
from modzy_retrain._stages.selectors import AnyVotes
from modzy_retrain._stages.votes import VoteFilter
from modzy_retrain._stages.write import DatasetWriter


@dataclass
class ModelTally:
    """Counts for one model (all its versions)."""

    name: str
    versions: set[str] = field(default_factory=set)
    jobs: set[str] = field(default_factory=set)
    inputs: int = 0
    up_voted: int = 0
    down_voted: int = 0
    conflicting: int = 0
    up_votes: int = 0
    down_votes: int = 0


class VoteTally(Stage[PredictionRecord, PredictionRecord]):
    """A pass-through stage that counts records and votes per model.

    It is also the smallest example of a custom stage: one pure ``process`` per item,
    which the sync and async paths both run; the base class counts and times it.
    """

    name = "tally"

    def __init__(self) -> None:
        self.models: dict[str, ModelTally] = {}

    def process(self, record: PredictionRecord) -> PredictionRecord:
        tally = self.models.setdefault(
            record.model_id, ModelTally(name=record.model_name or record.model_id)
        )
        tally.versions.add(record.model_version)
        tally.jobs.add(record.job_id)
        tally.inputs += 1
        v = record.voting
        tally.up_votes += v.up
        tally.down_votes += v.down
        if v.up and v.down:
            tally.conflicting += 1
        elif v.up:
            tally.up_voted += 1
        elif v.down:
            tally.down_voted += 1
        return record

    def render(self) -> str:
        rows = sorted(self.models.items(), key=lambda kv: kv[1].name)
        labels = [f"{t.name} [{model_id}] v{','.join(sorted(t.versions))}" for model_id, t in rows]
        width = max([len("model"), *(len(label) for label in labels)]) + 1  # never cut
        lines = [
            f"{'model':<{width}}{'jobs':>6}{'inputs':>8}{'up':>6}{'down':>6}{'both':>6}"
            f"{'votes +/-':>11}"
        ]
        for label, (_, t) in zip(labels, rows, strict=True):
            lines.append(
                f"{label:<{width}}{len(t.jobs):>6}{t.inputs:>8}{t.up_voted:>6}"
                f"{t.down_voted:>6}{t.conflicting:>6}{f'{t.up_votes}/{t.down_votes}':>11}"
            )
        lines.append(
            "(inputs with a result; up/down: voted one way only; both: up- and down-voted)"
        )
        return "\n".join(lines)


def run_demo(
    *,
    out: str,
    jobs: int,
    seed: int,
    fmt: DatasetFormat,
    stream: TextIO,
    inputs_url: str | None = None,
) -> RunReport:
    """Run the demo; raw inputs go to ``inputs_url``, or a temporary folder removed after."""
    with tempfile.TemporaryDirectory(prefix="modzy-retrain-demo-") as tmp:
        return _run(out, jobs, seed, fmt, stream, inputs_url or tmp, keep=inputs_url is not None)


def _run(
    out: str, jobs: int, seed: int, fmt: DatasetFormat, stream: TextIO, inputs: str, keep: bool
) -> RunReport:
    from modzy_retrain.sandbox import Sandbox

    sandbox = Sandbox(seed=seed, jobs=jobs, data_url=inputs)
    sandbox.write_inputs()
    with sandbox.serve() as server:
        stream.write(f"sandbox: {server.base_url} (seed {seed}, {jobs} jobs)\n")
        note = "" if keep else " (temporary; pass --inputs-url to keep them)"
        stream.write(f"raw inputs: {sandbox.data_url}{note}\n\n")
        with ModzyClient(api_key=sandbox.api_key, base_url=server.base_url) as client:
            client.check()
            tally = VoteTally()
            chain = (
                JobHistoryQuery(client)
                | ResultFetcher(client)
                | tally
                | VoteFilter(AnyVotes())
                | LineageResolver(templates=sandbox.input_templates)
                | DatasetWriter(out, format=fmt, overwrite=True)
            )
            report = chain.run()
    stream.write(tally.render() + "\n\n")
    stream.write(str(report) + "\n")
    counts = report.drops_by_reason()
    stream.write(
        f"\nwrote {report.delivered} samples to {out} "
        f"({counts.get('duplicate_content', 0)} duplicate contents written once); "
        "read it back with modzy_retrain.read_samples() or verify it with verify_dataset()\n"
    )
    return report
