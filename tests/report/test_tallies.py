"""The vote tallies each build records: every job it read, once, checked like the tables."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime
from pathlib import Path

import pytest

from modzy_retrain import (
    DatasetError,
    JobTally,
    ModzyClient,
    VoteCounts,
    job_tallies,
    load_manifest,
    verify_dataset,
)
from modzy_retrain._cli.exit_codes import EXIT_PUBLISHED
from modzy_retrain._dataset.spill import SpillStore
from modzy_retrain._dataset.tallies import TallyBook, Totals, tally_job
from modzy_retrain.sandbox import Sandbox

from .conftest import EPOCH, LAG, Harvested, as_harvested, cut, harvest, run_build, sorted_jobs


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    sb = Sandbox(seed=21, jobs=90, data_url=str(tmp_path / "inputs"))
    sb.write_inputs()
    return sb


def tallied(url: str, version: str | None = None) -> dict[str, Harvested]:
    tallies = list(job_tallies(url, version=version))
    ids = [t.job_id for t in tallies]
    assert len(ids) == len(set(ids)), "a job is tallied twice"
    return {t.job_id: as_harvested(t) for t in tallies}


def summed(jobs: dict[str, Harvested]) -> dict[tuple[str, str, object], Counter[str]]:
    out: dict[tuple[str, str, object], Counter[str]] = {}
    for h in jobs.values():
        counts = Counter(
            jobs=1, inputs=h.inputs, up_voted=h.up_voted, down_voted=h.down_voted, both=h.both
        )
        out.setdefault((h.model_id, h.model_version, h.day), Counter()).update(counts)
    return out


def manifest_totals(url: str) -> dict[tuple[str, str, object], Counter[str]]:
    tallies = load_manifest(url).tallies
    assert tallies is not None
    return {
        (t.model_id, t.model_version, t.day): Counter(
            jobs=t.jobs, inputs=t.inputs, up_voted=t.up_voted, down_voted=t.down_voted, both=t.both
        )
        for t in tallies.totals
    }


def test_a_build_from_nothing_tallies_what_an_independent_harvest_sees(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    url = tmp_path / "ds"
    assert run_build(sandbox, url).exit_code == EXIT_PUBLISHED
    seen = harvest(sandbox)
    assert tallied(str(url)) == seen
    # The manifest's totals are the table's, and the harvest's, per model, version, day.
    assert manifest_totals(str(url)) == summed(seen)
    manifest = load_manifest(str(url))
    assert manifest.tallies is not None
    assert manifest.tallies.jobs == len(seen)
    assert manifest.tallies.table is not None
    assert manifest.tallies.table.entries == len(seen)
    # Every finished job, selected or not: far more inputs than samples.
    assert sum(h.inputs for h in seen.values()) > 2 * manifest.counts.samples
    assert verify_dataset(str(url)) == []


def _vote(sb: Sandbox, key: str, job_id: str, name: str) -> None:
    with ModzyClient(api_key=key, base_url=sb.base_url, transport=sb.transport()) as client:
        client.results.downvote(job_id, name)


def _unvoted_input(sb: Sandbox, job_id: str) -> str:
    """An input of a job with a result and no down-vote yet."""
    job = sb.job(job_id)
    return next(
        item.name
        for item in job.inputs
        if item.status == "SUCCESSFUL" and sb.votes(job_id, item.name)[1] == 0
    )


def _job_between(sb: Sandbox, seen: dict[str, Harvested], low: datetime, high: datetime) -> str:
    return next(
        j.id
        for j in reversed(sorted_jobs(sb))
        if low <= j.created_at < high
        and j.id in seen
        and any(
            item.status == "SUCCESSFUL" and sb.votes(j.id, item.name)[1] == 0 for item in j.inputs
        )
    )


def test_incremental_builds_count_each_job_once_and_a_reread_job_replaces_its_tally(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    url = tmp_path / "ds"
    middle = cut(sandbox, 0.5)
    assert run_build(sandbox, url, start=EPOCH, end=middle).exit_code == EXIT_PUBLISHED
    before = harvest(sandbox)
    # Votes change after the first build: on a job inside the next build's lag window,
    # and on one older than it (which a build does not read again).
    recent = _job_between(sandbox, before, middle - LAG / 2, middle)
    old = _job_between(sandbox, before, EPOCH, middle - 2 * LAG)
    for job_id in (recent, old):
        _vote(sandbox, sandbox.users[1].access_key, job_id, _unvoted_input(sandbox, job_id))
    after = harvest(sandbox)
    assert after[recent].down_voted == before[recent].down_voted + 1

    second = run_build(sandbox, url, lag=LAG)
    assert second.exit_code == EXIT_PUBLISHED
    # The second build read the lag window again: some jobs twice, each tallied once.
    assert second.report.progress.tallied > len(after) - len(tallied(str(url), "v0001"))
    now = tallied(str(url))
    assert set(now) == set(after)
    assert now[recent] == after[recent]  # re-read: its new tally replaced the old one
    assert now[old] == before[old]  # older than the lag window: not read again
    assert {k: v for k, v in now.items() if k != old} == {
        k: v for k, v in after.items() if k != old
    }
    assert manifest_totals(str(url)) == summed(now)
    assert verify_dataset(str(url)) == []

    # A rebuild reads the whole history again: every tally is the harvest's now.
    third = run_build(sandbox, url, rebuild_from=EPOCH)
    assert third.report.dataset is not None
    assert third.report.dataset.get("published"), third.report.dataset
    assert tallied(str(url)) == after
    assert manifest_totals(str(url)) == summed(after)


def test_a_version_written_before_tallies_gives_the_next_one_only_its_own_jobs(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    url = tmp_path / "ds"
    run_build(sandbox, url, start=EPOCH, end=cut(sandbox, 0.5))
    # As a library from before tallies wrote it: no tallies in the manifest.
    path = url / "v0001" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest.pop("tallies")
    path.write_text(json.dumps(manifest))
    assert load_manifest(str(url)).tallies is None
    assert list(job_tallies(str(url))) == []
    assert verify_dataset(str(url)) == []
    run_build(sandbox, url)
    second = load_manifest(str(url))
    assert second.tallies is not None
    read_again = {j.id for j in sorted_jobs(sandbox) if j.created_at >= cut(sandbox, 0.5)}
    assert set(tallied(str(url))) <= read_again


def test_verify_dataset_checks_the_tallies_table_and_the_manifests_totals(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    url = tmp_path / "ds"
    run_build(sandbox, url)
    manifest = load_manifest(str(url))
    assert manifest.tallies is not None
    assert manifest.tallies.table is not None
    table = url / manifest.tallies.table.path
    original = table.read_bytes()

    # One vote changed in the table: its hash no longer matches.
    line = json.loads(original.splitlines()[0])
    line["down_voted"] += 1
    table.write_bytes(b"\n".join([json.dumps(line).encode(), *original.splitlines()[1:]]) + b"\n")
    problems = verify_dataset(str(url))
    assert len(problems) == 1
    assert manifest.tallies.table.path in problems[0]
    with pytest.raises(DatasetError, match="does not match its manifest"):
        list(job_tallies(str(url)))

    # The table intact, a total edited in the manifest: not the sums of the table.
    table.write_bytes(original)
    path = url / "v0001" / "manifest.json"
    raw = json.loads(path.read_text())
    raw["tallies"]["totals"][0]["inputs"] += 1
    path.write_text(json.dumps(raw))
    assert verify_dataset(str(url)) == [
        f"{manifest.tallies.table.path}: the manifest's totals are not the sums of the "
        "table's lines"
    ]


def test_a_job_tally_counts_inputs_votes_and_predicted_classes() -> None:
    tally = JobTally.model_validate(
        tally_job(
            "j1",
            model_id="m",
            model_version="1",
            model_name=None,
            day=None,
            votes=[("cat", 0, 0), ("cat", 2, 0), ("dog", 1, 3), (None, 0, 1)],
        )
    )
    assert (tally.inputs, tally.up_voted, tally.down_voted, tally.both) == (4, 2, 2, 1)
    assert tally.voted == 3
    assert tally.predicted == {
        "cat": VoteCounts(inputs=2, up_voted=1),
        "dog": VoteCounts(inputs=1, up_voted=1, down_voted=1, both=1),
    }


def test_the_book_keeps_one_tally_a_job_the_last_one_read() -> None:
    def tally(job: str, down: int) -> dict[str, object]:
        return tally_job(
            job, model_id="m", model_version="1", model_name=None, day=None,
            votes=[("cat", 0, down)],
        )  # fmt: skip

    with SpillStore() as store:
        book = TallyBook(store)
        book.add(tally("a", 0))
        book.add(tally("b", 1))
        book.add(tally("a", 2))  # read again: replaces
        book.add(tally_job("c", model_id="m", model_version="1", model_name=None, day=None,
                           votes=[]))  # fmt: skip
        rows: list[dict[str, object]] = []
        totals = book.write(rows.append)
    assert [(r["job_id"], r["down_voted"]) for r in rows] == [("a", 1), ("b", 1)]
    assert totals.jobs == 2  # a job without an input with a result is not a line
    expected = Totals()
    for row in rows:
        expected.add(row)
    assert totals.totals() == expected.totals()
    assert totals.totals()[0].down_voted == 2
