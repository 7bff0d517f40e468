"""Datasets for the feedback report's tests, built by the real build on the sandbox, and
an independent harvest of the sandbox's history to check their tallies against."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from modzy_retrain import BuildResult, build, load_settings
from modzy_retrain.sandbox import Sandbox

UTC = timezone.utc
# The statuses whose results a build reads (the others are not finished, or have none).
FINISHED = {"COMPLETED", "CANCELED", "TIMEDOUT"}


def run_build(sb: Sandbox, out: Path, **settings: Any) -> BuildResult:
    """One ``modzy-retrain build`` of ``sb``'s history into ``out``, in process."""
    loaded = load_settings(
        None,
        {
            "base_url": sb.base_url,
            "out": str(out),
            "input_templates": sb.input_templates,
            **settings,
        },
    )
    return build(loaded, environ={"MODZY_API_KEY": sb.api_key}, transport=sb.transport())


@dataclass
class Harvested:
    """One job as the raw API gives it (what a tally must say)."""

    model_id: str
    model_version: str
    day: date
    inputs: int = 0
    up_voted: int = 0
    down_voted: int = 0
    both: int = 0
    predicted: dict[str, Counter[str]] = field(default_factory=dict)


def _day(text: str) -> date:
    # "2025-01-14T08:34:17.475+0000": the sandbox's timestamps are all UTC.
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f%z").astimezone(UTC).date()


def harvest(sb: Sandbox) -> dict[str, Harvested]:
    """Every finished job's votes, read from the API's raw JSON with plain httpx (none
    of the library's parsing), one entry per job that has an input with a result."""
    headers = {"Authorization": f"ApiKey {sb.api_key}"}
    out: dict[str, Harvested] = {}
    with httpx.Client(base_url=sb.base_url, transport=sb.transport(), headers=headers) as http:
        jobs = http.get("/jobs/history", params={"per-page": 10000, "status": "all"}).json()
        for job in jobs:
            if job["status"] not in FINISHED:
                continue
            body = http.get(f"/results/{job['jobIdentifier']}").json()
            got = Harvested(
                job["model"]["identifier"], job["model"]["version"], _day(job["submittedAt"])
            )
            for item in body["results"].values():
                if item.get("status") != "SUCCESSFUL":
                    continue
                up, down = item["voting"]["up"], item["voting"]["down"]
                classes = item["results.json"]["data"]["result"]["classPredictions"]
                top = max(classes, key=lambda c: float(c["score"]))["class"]
                one = Counter(
                    inputs=1, up_voted=up > 0, down_voted=down > 0, both=up > 0 and down > 0
                )
                got.inputs += 1
                got.up_voted += one["up_voted"]
                got.down_voted += one["down_voted"]
                got.both += one["both"]
                got.predicted.setdefault(top, Counter()).update(one)
            if got.inputs:
                out[job["jobIdentifier"]] = got
    return out


def as_harvested(tally: Any) -> Harvested:
    """A library ``JobTally`` in the harvest's terms."""
    return Harvested(
        tally.model_id,
        tally.model_version,
        tally.day,
        tally.inputs,
        tally.up_voted,
        tally.down_voted,
        tally.both,
        {
            label: Counter(
                {k: v for k, v in counts.model_dump().items() if v}  # Counter drops zeros
            )
            for label, counts in tally.predicted.items()
        },
    )


def sorted_jobs(sb: Sandbox) -> list[Any]:
    return sorted(sb.jobs, key=lambda j: (j.created_at, j.id))


def cut(sb: Sandbox, fraction: float) -> datetime:
    """The creation time of the job ``fraction`` of the way through the history."""
    jobs = sorted_jobs(sb)
    return jobs[int(len(jobs) * fraction)].created_at


LAG = timedelta(days=2)
# Before the sandbox's history: a first build's window starts here.
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


def human_labels(sb: Sandbox, path: Path, *, limit: int = 40) -> Path:
    """A label file: the true label of down-voted multi-class inputs, as a person who
    looked at them would give (the label file's ``labelled`` samples)."""
    rows = ["job_id,input_name,label"]
    for job in sorted_jobs(sb):
        if job.model.kind != "image" or job.status not in FINISHED:
            continue
        for item in job.inputs:
            if item.status == "SUCCESSFUL" and item.votes_down > item.votes_up:
                rows.append(f"{job.id},{item.name},{item.truth}")
    path.write_text("\n".join(rows[: limit + 1]) + "\n")
    return path


def change_votes(sb: Sandbox, low: datetime, high: datetime) -> None:
    """Users change their minds on a few inputs created in ``[low, high)``: votes reset
    on two voted ones (their samples are retracted), a down-vote on two up-voted ones
    (relabelled: confirmed becomes a conflict)."""
    from modzy_retrain import ModzyClient

    reset = flipped = 0
    with ModzyClient(api_key=sb.users[2].access_key, base_url=sb.base_url,
                     transport=sb.transport()) as client:  # fmt: skip
        for job in sorted_jobs(sb):
            if not low <= job.created_at < high or job.status not in FINISHED:
                continue
            for item in job.inputs:
                up, down = sb.votes(job.id, item.name)
                if item.status != "SUCCESSFUL":
                    continue
                if reset < 2 and down > 0 and up == 0:
                    client.results.reset_vote(job.id, item.name)
                    reset += 1
                elif flipped < 2 and up == 1 and down == 0:
                    client.results.downvote(job.id, item.name)
                    flipped += 1
    assert (reset, flipped) == (2, 2), (reset, flipped)


@pytest.fixture(scope="session")
def feedback(tmp_path_factory: pytest.TempPathFactory) -> tuple[Sandbox, str]:
    """A dataset of three versions, built as a schedule would: a third of the history
    at a time with a lag window, human labels from a label file, and votes that change
    between the second build and the third."""
    folder = tmp_path_factory.mktemp("feedback")
    sb = Sandbox(seed=4, jobs=180, data_url=str(folder / "inputs"))
    sb.write_inputs()
    url = folder / "ds"
    labels = human_labels(sb, folder / "labels.csv")
    first, second = cut(sb, 1 / 3), cut(sb, 2 / 3)
    common = {"label_file": str(labels), "lag": LAG}
    assert run_build(sb, url, start=EPOCH, end=first, **common).exit_code == 0
    assert run_build(sb, url, end=second, **common).exit_code == 0
    change_votes(sb, second - LAG, second)
    assert run_build(sb, url, **common).exit_code == 0
    return sb, str(url)
