"""Versioned datasets and incremental runs: checkpoints, lag windows, retractions."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from modzy_retrain import (
    AnyVotes,
    AsyncModzyClient,
    ConfigurationError,
    DatasetError,
    DatasetExistsError,
    DatasetWriter,
    JobHistoryQuery,
    LineageResolver,
    ModzyClient,
    ResultFetcher,
    RunReport,
    Sample,
    VoteFilter,
    list_versions,
    load_checkpoint,
    load_manifest,
    read_samples,
    verify_dataset,
)
from modzy_retrain._dataset.lock import LOCK_NAME
from modzy_retrain.sandbox import Sandbox

UTC = timezone.utc
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    sb = Sandbox(seed=5, jobs=160, data_url=str(tmp_path / "inputs"))
    sb.write_inputs()
    return sb


def client(sb: Sandbox) -> ModzyClient:
    return ModzyClient(api_key=sb.api_key, base_url=sb.base_url, transport=sb.transport())


def run(
    sb: Sandbox,
    url: str,
    *,
    end: datetime | None = None,
    lag: timedelta = timedelta(0),
    writer: type[DatasetWriter] = DatasetWriter,
    fmt: str = "jsonl",
) -> RunReport:
    with client(sb) as c:
        since = load_checkpoint(url)
        query = JobHistoryQuery(c, start=None if since else EPOCH, end=end, since=since, lag=lag)
        return (
            query
            | ResultFetcher(c)
            | VoteFilter(AnyVotes())
            | LineageResolver(templates=sb.input_templates)
            | writer(url, versioned=True, format=fmt)  # type: ignore[arg-type]
        ).run()


def keys(url: str, version: str | None = None) -> set[tuple[object, ...]]:
    return {
        (r.job_id, r.input_name, r.label, r.sha256, r.split)
        for r in read_samples(url, version=version)
    }


def middle(sb: Sandbox) -> datetime:
    return sorted(j.created_at for j in sb.jobs)[len(sb.jobs) // 2]


def test_two_runs_in_a_row_equal_one_full_build(sandbox: Sandbox, tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    first = run(sandbox, url, end=middle(sandbox))
    assert first.reconciled
    v1 = keys(url)
    v1_manifest = (Path(url) / "v0001" / "manifest.json").read_bytes()
    checkpoint = load_checkpoint(url)
    assert checkpoint is not None
    assert checkpoint.version == "v0001"
    assert checkpoint.cursor == middle(sandbox)

    second = run(sandbox, url)
    assert second.reconciled
    assert second.dataset is not None
    assert second.dataset["version"] == "v0002"
    changes = load_manifest(url).changes
    assert changes is not None
    assert changes.previous == "v0001"
    assert changes.carried == len(v1)
    assert changes.retracted == 0
    assert changes.added == len(keys(url)) - len(v1) > 0
    # The second run read only the jobs at or after the cursor.
    assert second.stages["query"].items_in < len(sandbox.jobs) // 2 + 5
    assert second.drop_counts[("query", "already_published")] > 0

    # Versions are immutable and stay readable.
    assert list_versions(url) == ["v0001", "v0002"]
    assert keys(url, "v0001") == v1
    assert (Path(url) / "v0001" / "manifest.json").read_bytes() == v1_manifest
    assert verify_dataset(url) == []
    assert verify_dataset(url, version="v0001") == []

    full = str(tmp_path / "full")
    with client(sandbox) as c:
        (
            JobHistoryQuery(c)
            | ResultFetcher(c)
            | VoteFilter(AnyVotes())
            | LineageResolver(templates=sandbox.input_templates)
            | DatasetWriter(full)
        ).run()
    assert keys(url) == keys(full)


def test_a_run_with_nothing_new_publishes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    run(sandbox, url)
    again = run(sandbox, url)
    assert again.dataset == {
        "url": url,
        "published": False,
        "nothing_new": True,
        "version": "v0001",
    }
    assert "nothing new" in str(again)
    assert list_versions(url) == ["v0001"]
    assert not (Path(url) / "v0002").exists()


def test_unfinished_jobs_hold_the_cursor_back(sandbox: Sandbox, tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    run(sandbox, url)
    unfinished = sorted(
        j.created_at for j in sandbox.jobs if j.status in ("SUBMITTED", "IN_PROGRESS")
    )
    assert unfinished
    checkpoint = load_checkpoint(url)
    assert checkpoint is not None
    assert checkpoint.cursor == unfinished[0]
    again = run(sandbox, url)
    # The next run reads them again (still unfinished here).
    assert again.drop_counts[("fetch", "job_not_finished")] > 0


def test_late_votes_are_picked_up_through_the_lag_window(sandbox: Sandbox, tmp_path: Path) -> None:
    cut = middle(sandbox)
    with_lag, without = str(tmp_path / "lag"), str(tmp_path / "nolag")
    for url in (with_lag, without):
        run(sandbox, url, end=cut)
    # A vote arrives days later on an old, unvoted prediction a few hours before the cut.
    old = next(
        (j, i)
        for j in sorted(sandbox.jobs, key=lambda j: j.created_at, reverse=True)
        if j.created_at < cut - timedelta(hours=2) and j.status == "COMPLETED"
        for i in j.inputs
        if i.status == "SUCCESSFUL" and sandbox.votes(j.id, i.name) == (0, 0)
    )
    job, item = old
    with client(sandbox) as c:
        c.results.upvote(job.id, item.name)
    run(sandbox, with_lag, lag=cut - job.created_at + timedelta(hours=1))
    run(sandbox, without)
    assert (job.id, item.name) in {(k[0], k[1]) for k in keys(with_lag)}
    assert (job.id, item.name) not in {(k[0], k[1]) for k in keys(without)}
    assert load_manifest(with_lag).changes.added >= 1  # type: ignore[union-attr]


def test_a_vote_reset_retracts_the_sample(sandbox: Sandbox, tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    cut = middle(sandbox)
    run(sandbox, url, end=cut)
    row = next(
        r
        for r in read_samples(url)
        if r.label_state == "confirmed"
        and sandbox.job(r.job_id).created_at > cut - timedelta(days=2)
    )
    with client(sandbox) as c:
        c.results.reset_vote(row.job_id, row.input_name)
    report = run(sandbox, url, lag=timedelta(days=3))
    changes = load_manifest(url).changes
    assert changes is not None
    retracted = {(s["job_id"], s["input_name"]) for s in changes.retracted_samples}
    assert row.key in retracted
    assert row.key not in {(k[0], k[1]) for k in keys(url)}
    assert row.key in {(k[0], k[1]) for k in keys(url, "v0001")}
    assert "retracted" in str(report)


def test_a_crashed_version_is_never_visible(sandbox: Sandbox, tmp_path: Path) -> None:
    url = str(tmp_path / "ds")
    run(sandbox, url, end=middle(sandbox))

    class Crashing(DatasetWriter):
        def serialize(self, sample: Sample) -> dict[str, object]:
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        run(sandbox, url, writer=Crashing)
    assert list_versions(url) == ["v0001"]
    with pytest.raises(DatasetError, match="no published version"):
        load_manifest(url, version="v0002")
    report = run(sandbox, url)
    assert report.dataset is not None
    assert report.dataset["version"] == "v0002"
    assert verify_dataset(url) == []


def test_versioned_and_flat_datasets_do_not_mix(sandbox: Sandbox, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="jsonl, csv or parquet"):
        DatasetWriter("memory://x", versioned=True, format="imagefolder")
    with pytest.raises(ConfigurationError, match="overwrite"):
        DatasetWriter("memory://x", versioned=True, overwrite=True)
    flat, versioned = str(tmp_path / "flat"), str(tmp_path / "versioned")
    DatasetWriter(flat).write([])
    with pytest.raises(DatasetExistsError, match="unversioned"):
        DatasetWriter(flat, versioned=True).write([])
    run(sandbox, versioned)  # a first version (an empty one is never published)
    with pytest.raises(DatasetExistsError, match="versioned"):
        DatasetWriter(versioned).write([])


@pytest.mark.anyio
async def test_async_incremental_runs_match_sync(sandbox: Sandbox, tmp_path: Path) -> None:
    sync_url, async_url = str(tmp_path / "sync"), str(tmp_path / "async")
    cut = middle(sandbox)
    run(sandbox, sync_url, end=cut)
    run(sandbox, sync_url)
    for end in (cut, None):
        async with AsyncModzyClient(
            api_key=sandbox.api_key, base_url=sandbox.base_url, transport=sandbox.async_transport()
        ) as ac:
            since = load_checkpoint(async_url)
            await (
                JobHistoryQuery(ac, start=None if since else EPOCH, end=end, since=since)
                | ResultFetcher(ac)
                | VoteFilter(AnyVotes())
                | LineageResolver(templates=sandbox.input_templates)
                | DatasetWriter(async_url, versioned=True)
            ).arun()
    assert list_versions(async_url) == ["v0001", "v0002"]
    assert keys(async_url) == keys(sync_url)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_versioned_csv_and_parquet(sandbox: Sandbox, tmp_path: Path, fmt: str) -> None:
    url, reference = str(tmp_path / fmt), str(tmp_path / "jsonl")
    for target, kind in ((url, fmt), (reference, "jsonl")):
        run(sandbox, target, end=middle(sandbox), fmt=kind)
        run(sandbox, target, fmt=kind)
    assert list_versions(url) == ["v0001", "v0002"]
    assert verify_dataset(url) == []
    assert keys(url) == keys(reference)
    manifest = load_manifest(url)
    assert manifest.format == fmt
    # Each run names its tables after itself (``vNNNN/<run tag>-samples.<ext>``).
    assert sorted(n.split("-", 1)[1] for n in manifest.samples_files) == sorted(
        [f"samples.{fmt}", "samples.jsonl"]
    )
    assert all(n.startswith("v0002/") for n in manifest.samples_files)
    (name,) = [n for n in manifest.samples_files if n.endswith(f".{fmt}")]
    table = Path(url) / name
    if fmt == "csv":
        import csv

        with table.open(newline="") as handle:
            assert len(list(csv.DictReader(handle))) == manifest.counts.samples
    else:
        import pyarrow.parquet as pq

        assert pq.read_table(table).num_rows == manifest.counts.samples


def test_a_window_read_again_unchanged_is_nothing_new(sandbox: Sandbox, tmp_path: Path) -> None:
    # The lag window brings back jobs the previous version holds: their samples are
    # the same samples (not duplicates of themselves), so nothing is retracted, and
    # the data files the previous version published are not written again.
    url = str(tmp_path / "ds")
    cut = middle(sandbox)
    run(sandbox, url, end=cut)
    data = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (Path(url) / "data").rglob("*.*")}
    assert data
    again = run(sandbox, url, end=cut, lag=timedelta(days=3))
    assert again.delivered > 0  # the window's samples went through the writer again
    assert again.drop_counts[("write", "duplicate_content")] == 0
    assert again.dataset is not None
    assert again.dataset["published"] is False
    assert list_versions(url) == ["v0001"]

    # A late vote in the window: one sample added, the rest relabelled or carried,
    # none retracted, and v0001's files untouched.
    job, item = next(
        (j, i)
        for j in sorted(sandbox.jobs, key=lambda j: j.created_at, reverse=True)
        if cut - timedelta(days=2) < j.created_at < cut and j.status == "COMPLETED"
        for i in j.inputs
        if i.status == "SUCCESSFUL" and sandbox.votes(j.id, i.name) == (0, 0)
    )
    with client(sandbox) as c:
        c.results.upvote(job.id, item.name)
    run(sandbox, url, end=cut, lag=timedelta(days=3))
    changes = load_manifest(url).changes
    assert changes is not None
    assert (changes.added, changes.retracted, changes.relabelled) == (1, 0, 0)
    assert keys(url) > keys(url, "v0001")
    assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in data} == data
    assert verify_dataset(url) == []


def test_a_write_that_fails_while_opening_lets_go_of_the_lock(
    sandbox: Sandbox, tmp_path: Path, scratch: Path
) -> None:
    url = str(tmp_path / "ds")
    run(sandbox, url)
    (Path(url) / "v0001" / "manifest.json").write_text("{not json")  # unreadable
    with pytest.raises(DatasetError, match="invalid manifest"):
        DatasetWriter(url, versioned=True).write([])
    assert not (Path(url) / LOCK_NAME).exists()
    assert list(scratch.iterdir()) == []
