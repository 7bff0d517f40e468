"""Poison jobs: a job whose results stay unavailable run after run is quarantined.

The sandbox serves one job's results as 503 every time (``Sandbox.unavailable_results``)
until the test serves it again. Each build is a separate run against the same dataset;
the client retries twice and records its waits, so nothing sleeps.
"""

from __future__ import annotations

import functools
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from modzy_retrain import (
    AsyncModzyClient,
    ConfigurationError,
    DatasetError,
    JobHistoryQuery,
    ModzyClient,
    Quarantine,
    QuarantinedJob,
    ResultFetcher,
    RetryPolicy,
    list_versions,
    load_checkpoint,
    load_manifest,
    load_quarantine,
    read_samples,
)
from modzy_retrain._cli import build as build_module
from modzy_retrain._cli.build import (
    EXIT_INCOMPLETE,
    EXIT_NOTHING_NEW,
    EXIT_PUBLISHED,
    BuildResult,
    BuildSettings,
    build,
    load_settings,
)
from modzy_retrain._cli.main import main
from modzy_retrain._stages.report import JOB_QUARANTINED, RESULTS_UNAVAILABLE
from modzy_retrain.sandbox import InputRef, Sandbox, WorldInput, WorldJob

SEED, JOBS = 5, 40
STATE = Path("_state") / "unavailable.json"


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    sb = Sandbox(SEED, jobs=JOBS, data_url=str(tmp_path / "inputs"))
    sb.write_inputs()
    return sb


def usable(sb: Sandbox, job: WorldJob, item: WorldInput) -> bool:
    """An input that becomes a sample when selected: processed, its file there, no
    earlier input with the same bytes."""
    ref = InputRef(job.id, item.name)
    later_duplicates = {later for _, later in sb.duplicate_inputs}
    return (
        item.status == "SUCCESSFUL" and ref not in sb.missing_inputs and ref not in later_duplicates
    )


def poison_of(sb: Sandbox) -> WorldJob:
    """A finished job early in the history with an up-voted input: a trainable sample
    (confirmed) once its results are read."""
    for job in sb.jobs[5:]:
        voted = [i for i in job.inputs if usable(sb, job, i) and i.votes_up and not i.votes_down]
        if job.status == "COMPLETED" and voted:
            return job
    raise AssertionError("no poison candidate in this world")


def fresh_input(sb: Sandbox, after: WorldJob) -> InputRef:
    """An input not voted yet, in a finished job created after ``after``: voting on it
    is new feedback, which a build publishes."""
    for job in sb.jobs:
        if job.created_at <= after.created_at or job.status != "COMPLETED":
            continue
        for item in job.inputs:
            if usable(sb, job, item) and item.votes_up == item.votes_down == 0:
                return InputRef(job.id, item.name)
    raise AssertionError("no fresh input in this world")


def client(sb: Sandbox) -> ModzyClient:
    return ModzyClient(
        api_key=sb.api_key,
        base_url="http://sandbox.invalid",
        transport=sb.transport(),
        retry=RetryPolicy(max_attempts=2),
        sleep=lambda seconds: None,
    )


def settings(sb: Sandbox, out: Path, **extra: Any) -> BuildSettings:
    return BuildSettings(
        base_url="http://sandbox.invalid",
        out=str(out),
        input_templates=sb.input_templates,
        **extra,
    )


def run(sb: Sandbox, out: Path, **extra: Any) -> BuildResult:
    with client(sb) as c:
        return build(settings(sb, out, **extra), environ={}, client=c)


def state(out: Path) -> dict[str, dict[str, Any]]:
    """The state file's entries by job id."""
    body = json.loads((out / STATE).read_text())
    return {entry["job_id"]: entry for entry in body["jobs"]}


def upvote(sb: Sandbox, ref: InputRef) -> None:
    with client(sb) as c:
        c.results.upvote(ref.job_id, ref.input_name)


def test_three_runs_exit_6_then_the_job_is_quarantined_and_the_cursor_moves(
    sandbox: Sandbox, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ds"
    poison = poison_of(sandbox)
    sandbox.unavailable_results = {poison.id}
    results = []
    for attempt in (1, 2, 3):
        result = run(sandbox, out)
        assert result.exit_code == EXIT_INCOMPLETE, attempt
        assert result.report.unavailable_jobs == [poison.id]
        assert state(out)[poison.id]["attempts"] == attempt
        results.append(result)
    # The cursor waited for it: every run read it again.
    checkpoint = load_checkpoint(str(out))
    assert checkpoint is not None
    assert checkpoint.cursor == poison.created_at
    third = results[2].report
    [listed] = third.quarantined
    assert listed.job_id == poison.id
    assert listed.reason == RESULTS_UNAVAILABLE
    assert listed.attempts == 3
    assert listed.first_attempt == results[0].report.started_at
    assert listed.last_attempt == third.started_at
    assert "503" in listed.detail
    assert third.to_dict()["quarantined"][0]["job_id"] == poison.id
    assert poison.id in str(third)
    assert [j.job_id for j in load_quarantine(str(out)).jobs] == [poison.id]

    # New feedback arrives; the fourth run skips the poison job and publishes.
    upvote(sandbox, fresh_input(sandbox, after=poison))
    fourth = run(sandbox, out)
    assert fourth.exit_code == EXIT_PUBLISHED, fourth.report.unavailable_jobs
    assert not fourth.report.unavailable_jobs
    drops = [d for d in fourth.report.drops if d.reason == JOB_QUARANTINED]
    assert [(d.stage, d.job_id) for d in drops] == [("query", poison.id)]
    assert drops[0].inputs == len(poison.inputs)
    assert fourth.report.reconciled
    manifest = load_manifest(str(out))
    assert manifest.version == "v0002"
    assert manifest.checkpoint is not None
    assert manifest.checkpoint.cursor is not None
    assert manifest.checkpoint.cursor > poison.created_at  # moved past it
    [recorded] = manifest.quarantined
    assert recorded == listed
    # inspect lists it, with its attempts.
    assert main(["inspect", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "quarantined: 1 job(s) skipped" in shown
    assert f"  {poison.id}: {RESULTS_UNAVAILABLE}, 3 attempt(s) from" in shown
    # The runs after that no longer exit 6 for it.
    assert run(sandbox, out).exit_code == EXIT_NOTHING_NEW


def test_a_dataset_without_unavailable_jobs_has_no_state_file(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    assert run(sandbox, out).exit_code == EXIT_PUBLISHED
    assert not (out / STATE).parent.exists()
    assert load_quarantine(str(out)).jobs == ()


def test_a_run_that_publishes_nothing_still_counts_the_attempt(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    poison = poison_of(sandbox)
    sandbox.unavailable_results = {poison.id}
    first = run(sandbox, out)
    assert first.exit_code == EXIT_INCOMPLETE
    second = run(sandbox, out)
    assert second.exit_code == EXIT_INCOMPLETE
    assert second.report.dataset is not None
    assert second.report.dataset["published"] is False
    assert list_versions(str(out)) == ["v0001"]  # the manifest never saw the second try
    entry = state(out)[poison.id]
    assert entry["attempts"] == 2
    assert entry["quarantined_at"] is None
    assert datetime.fromisoformat(entry["first_attempt"]) == first.report.started_at
    assert datetime.fromisoformat(entry["last_attempt"]) == second.report.started_at
    assert load_quarantine(str(out)).jobs == ()  # counted, not yet quarantined
    assert not second.report.quarantined


def test_a_job_that_recovers_before_n_resets_its_count(sandbox: Sandbox, tmp_path: Path) -> None:
    # The lag window reads the whole history again in every run, so the job is tried
    # in every run, before and after its results come back.
    out = tmp_path / "ds"
    poison = poison_of(sandbox)
    lag = timedelta(days=120)
    sandbox.unavailable_results = {poison.id}
    assert run(sandbox, out, lag=lag).exit_code == EXIT_INCOMPLETE
    assert run(sandbox, out, lag=lag).exit_code == EXIT_INCOMPLETE
    assert state(out)[poison.id]["attempts"] == 2
    sandbox.unavailable_results = set()
    recovered = run(sandbox, out, lag=lag)
    assert recovered.exit_code == EXIT_PUBLISHED
    assert poison.id not in state(out)
    assert poison.id in {s.job_id for s in read_samples(str(out))}
    # Unavailable again: the count starts over, so two more runs do not quarantine it.
    sandbox.unavailable_results = {poison.id}
    for attempt in (1, 2):
        result = run(sandbox, out, lag=lag)
        assert result.exit_code == EXIT_INCOMPLETE
        assert state(out)[poison.id]["attempts"] == attempt
        assert not result.report.quarantined
    # Its earlier samples stand meanwhile.
    assert poison.id in {s.job_id for s in read_samples(str(out))}


def test_retry_quarantined_recovers_a_job_the_sandbox_serves_again(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    poison = poison_of(sandbox)
    sandbox.unavailable_results = {poison.id}
    assert run(sandbox, out, quarantine_after=1).exit_code == EXIT_INCOMPLETE
    assert [j.job_id for j in load_quarantine(str(out)).jobs] == [poison.id]
    upvote(sandbox, fresh_input(sandbox, after=poison))
    moved = run(sandbox, out, quarantine_after=1)
    assert moved.exit_code == EXIT_PUBLISHED
    cursor = load_checkpoint(str(out))
    assert cursor is not None
    assert cursor.cursor is not None
    assert cursor.cursor > poison.created_at  # the history no longer reaches the job

    # Retried while still unavailable: it stays quarantined, the run does not exit 6,
    # and the cursor does not go back to it.
    sandbox.reset_stats()
    again = run(sandbox, out, quarantine_after=1, retry_quarantined=True)
    assert again.exit_code == EXIT_NOTHING_NEW
    assert sandbox.request_counts["GET /jobs/{jobId}"] == 1  # fetched by id
    [still] = again.report.quarantined
    assert still.job_id == poison.id
    assert still.attempts == 2
    assert still.last_attempt == again.report.started_at
    assert not again.report.unavailable_jobs
    moved_to = again.report.progress.cursor()
    assert moved_to is not None
    assert moved_to[0] > poison.created_at
    assert again.report.reconciled

    # Served again: retried, it leaves the quarantine and its samples are written.
    sandbox.unavailable_results = set()
    back = run(sandbox, out, quarantine_after=1, retry_quarantined=True)
    assert back.exit_code == EXIT_PUBLISHED
    assert not back.report.quarantined
    assert load_quarantine(str(out)).jobs == ()
    assert poison.id not in state(out)
    written = {s.job_id for s in read_samples(str(out))}
    assert poison.id in written
    manifest = load_manifest(str(out))
    assert manifest.changes is not None
    assert manifest.changes.added >= 1
    assert manifest.checkpoint is not None
    assert manifest.checkpoint.cursor is not None
    assert manifest.checkpoint.cursor > poison.created_at
    assert back.report.reconciled
    # And an ordinary run after it has nothing new.
    assert run(sandbox, out).exit_code == EXIT_NOTHING_NEW


def test_quarantine_after_zero_never_quarantines(sandbox: Sandbox, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    poison = poison_of(sandbox)
    sandbox.unavailable_results = {poison.id}
    for _ in range(2):
        assert run(sandbox, out, quarantine_after=0).exit_code == EXIT_INCOMPLETE
    assert load_quarantine(str(out)).jobs == ()


def test_a_dry_run_counts_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    poison = poison_of(sandbox)
    sandbox.unavailable_results = {poison.id}
    assert run(sandbox, out).exit_code == EXIT_INCOMPLETE
    with client(sandbox) as c:
        dry = build(settings(sandbox, out), environ={}, client=c, dry_run=True)
    assert dry.exit_code == EXIT_INCOMPLETE
    assert state(out)[poison.id]["attempts"] == 1


# -- the command line --------------------------------------------------------------------


def cli_args(sb: Sandbox, base_url: str, out: Path, *extra: str) -> list[str]:
    templates = [a for m, t in sb.input_templates.items() for a in ("--input-template", f"{m}={t}")]
    return ["build", "--base-url", base_url, "--out", str(out), *templates, "--quiet", *extra]


def test_the_flags_and_what_the_command_says(
    sandbox: Sandbox,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("MODZY_API_KEY", sandbox.api_key)
    # The command's client retries twice and does not sleep between its attempts.
    monkeypatch.setattr(
        build_module,
        "ModzyClient",
        functools.partial(ModzyClient, retry=RetryPolicy(max_attempts=2), sleep=lambda s: None),
    )
    out, report = tmp_path / "ds", tmp_path / "report.json"
    poison = poison_of(sandbox)
    sandbox.unavailable_results = {poison.id}
    with sandbox.serve() as server:
        args = cli_args(sandbox, server.base_url, out)
        assert main([*args, "--quarantine-after", "1"]) == EXIT_INCOMPLETE
        text = capsys.readouterr().out
        assert f"could not be had after retries ({poison.id}); quarantined now" in text
        assert main([*args, "--quarantine-after", "1", "--report", str(report)]) == 3
        text = capsys.readouterr().out
        assert "quarantined" in text
        assert poison.id in text
        assert "--retry-quarantined" in text
        body = json.loads(report.read_text())
        assert [j["job_id"] for j in body["quarantined"]] == [poison.id]
        assert body["quarantined"][0]["reason"] == RESULTS_UNAVAILABLE
        assert {"first_attempt", "last_attempt", "attempts"} <= set(body["quarantined"][0])

        sandbox.unavailable_results = set()
        assert main([*args, "--retry-quarantined", "--report", str(report)]) == 0
        text = capsys.readouterr().out
        assert "retried 1 quarantined job: 1 recovered" in text
        assert json.loads(report.read_text())["quarantined"] == []
        assert main([*args, "--quarantine-after", "-1"]) == 2
        assert "quarantine_after" in capsys.readouterr().err


def test_the_config_file_key(tmp_path: Path) -> None:
    config = tmp_path / "retrain.toml"
    config.write_text('out = "ds"\ninput_template = "x/{job_id}"\nquarantine_after = 5\n')
    assert load_settings(str(config), {}).quarantine_after == 5
    assert load_settings(str(config), {"quarantine_after": 2}).quarantine_after == 2
    assert load_settings(None, {"out": "ds"}).quarantine_after == 3
    assert load_settings(None, {"out": "ds"}).retry_quarantined is False


# -- the Python API ------------------------------------------------------------------------


def held(job_id: str, **extra: Any) -> QuarantinedJob:
    when = datetime(2025, 6, 1, tzinfo=timezone.utc)
    fields: dict[str, Any] = {
        "job_id": job_id,
        "reason": RESULTS_UNAVAILABLE,
        "detail": "InternalServerError: 503",
        "attempts": 3,
        "first_attempt": when,
        "last_attempt": when,
        "quarantined_at": when,
    }
    return QuarantinedJob(**{**fields, **extra})


def test_the_query_skips_a_quarantine_it_is_given(sandbox: Sandbox) -> None:
    poison = poison_of(sandbox)
    sandbox.unavailable_results = {poison.id}
    quarantine = Quarantine(jobs=(held(poison.id),))
    with client(sandbox) as c:
        query = JobHistoryQuery(c, quarantine=quarantine)
        it = (query | ResultFetcher(c)).stream()
        records = list(it)
    report = it.report.finish()
    assert records
    assert report.reconciled
    assert not report.unavailable_jobs
    [drop] = [d for d in report.drops if d.reason == JOB_QUARANTINED]
    assert drop.job_id == poison.id
    assert "--retry-quarantined" in drop.detail
    cursor = report.progress.cursor()
    assert cursor is not None
    assert cursor[0] > poison.created_at
    described = query.describe()["quarantine"]
    assert described["retry"] is False
    assert described["jobs"][0]["job_id"] == poison.id


def test_the_quarantine_argument_is_checked(sandbox: Sandbox) -> None:
    with client(sandbox) as c, pytest.raises(ConfigurationError, match="quarantine"):
        JobHistoryQuery(c, quarantine=["a-job-id"])  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="attempts"):
        held("j", attempts=0)


@pytest.mark.anyio
async def test_the_async_query_retries_by_id_in_creation_order(sandbox: Sandbox) -> None:
    poison = poison_of(sandbox)
    later = next(j for j in sandbox.jobs if j.created_at > poison.created_at + timedelta(days=2))
    quarantine = Quarantine(jobs=(held(poison.id), held("no-such-job")), retry=True)
    async with AsyncModzyClient(
        api_key=sandbox.api_key,
        base_url="http://sandbox.invalid",
        transport=sandbox.async_transport(),
        retry=RetryPolicy(max_attempts=1),
    ) as c:
        query = JobHistoryQuery(c, start=later.created_at, quarantine=quarantine)
        it = (query | ResultFetcher(c)).astream()
        records = [r async for r in it]
    report = it.report.finish()
    jobs = list(dict.fromkeys(r.job_id for r in records))
    assert jobs[0] == poison.id  # fetched by id, before the window's jobs
    assert report.progress.ordered
    assert report.reconciled
    unknown = [d for d in report.drops if d.job_id == "no-such-job"]
    assert [d.reason for d in unknown] == [RESULTS_UNAVAILABLE]
    assert "NotFoundError" in unknown[0].detail
    assert not report.unavailable_jobs  # a quarantined job never holds the cursor
    assert query.describe()["quarantine"]["retry"] is True


def test_an_unreadable_state_file_is_named(tmp_path: Path) -> None:
    (tmp_path / STATE).parent.mkdir()
    (tmp_path / STATE).write_text('{"jobs": [{"job_id": ""}]}')
    with pytest.raises(DatasetError, match=r"unavailable\.json"):
        load_quarantine(str(tmp_path))
