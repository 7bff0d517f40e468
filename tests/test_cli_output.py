"""What the command line prints is for people: units on every count, no reprs, full
model names, no stale ETA, and a quiet end when its output is piped to ``head``."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from modzy_retrain import RunReport
from modzy_retrain._cli import build_command
from modzy_retrain._cli.build_command import Progress, human_bytes, plan_lines
from modzy_retrain._cli.main import EXIT_BROKEN_PIPE, main
from modzy_retrain.sandbox import Sandbox, SandboxServer

ROOT = Path(__file__).resolve().parents[1]


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """Stands in for ``time.monotonic`` in the progress display."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(build_command, "time_monotonic", clock)
    return clock


def running_report() -> RunReport:
    """A build's report mid-run: 12 jobs read of a 10-day window, 2 days in."""
    report = RunReport()
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    report.query = {"start": start.isoformat(), "end": (start + timedelta(days=10)).isoformat()}
    report.progress.mark("j1", start + timedelta(days=2), True)
    query = report.stage("query", "jobs", unit_in="jobs")
    fetch = report.stage("fetch", "inputs")
    select = report.stage("select")
    query.items_in = query.items_out = fetch.items_in = 12
    fetch.items_out = select.items_in = 40
    select.items_out = 9
    report.saw_inputs(45)
    return report


def test_the_progress_line_puts_a_unit_on_every_count_and_ends_done(clock: Clock) -> None:
    report = running_report()
    stream = io.StringIO()
    progress = Progress(stream, quiet=False)
    clock.now += 10
    progress(report)
    clock.now += 20  # under a minute: no new line in CI
    progress(report)
    progress.done()
    assert stream.getvalue().splitlines() == [
        "12 jobs, 45 inputs, 9 samples, 1.2 jobs/s, 10 s elapsed, ETA 40 s",
        "done: 12 jobs, 45 inputs, 9 samples in 30 s",
    ]
    # A finished run's done line gives the run's own time.
    report.finish()
    finished = io.StringIO()
    progress = Progress(finished, quiet=False)
    progress(report)
    progress.done()
    assert finished.getvalue().splitlines()[-1] == (
        f"done: 12 jobs, 45 inputs, 9 samples in {build_command.seconds(report.elapsed)}"
    )


def test_on_a_terminal_the_line_updates_in_place_and_the_last_has_no_eta(clock: Clock) -> None:
    report = running_report()
    tty = Tty()
    progress = Progress(tty, quiet=False)
    clock.now += 10
    progress(report)
    report.query = {}  # no window: no ETA, a shorter line
    clock.now += 1
    progress(report)
    progress.done()
    text = tty.getvalue()
    assert text.endswith("\n")
    assert text.count("\n") == 1
    updates = text[:-1].split("\r")[1:]
    assert [u.rstrip() for u in updates] == [
        "12 jobs, 45 inputs, 9 samples, 1.2 jobs/s, 10 s elapsed, ETA 40 s",
        "12 jobs, 45 inputs, 9 samples, 1.1 jobs/s, 11 s elapsed",
        "done: 12 jobs, 45 inputs, 9 samples in 11 s",
    ]
    # Each update covers the longest one before it: nothing of a stale ETA is left.
    assert len(updates[1]) >= len(updates[0])
    assert len(updates[2]) >= len(updates[0])
    assert "ETA" not in updates[-1]


def test_quiet_progress_writes_nothing(clock: Clock) -> None:
    stream = io.StringIO()
    progress = Progress(stream, quiet=True)
    progress(running_report())
    progress.done()
    assert stream.getvalue() == ""


def test_the_report_table_counts_each_column_in_its_unit() -> None:
    report = running_report()
    lines = str(report.finish()).splitlines()
    assert lines[1].split() == ["stage", "in", "out", "dropped", "inputs", "seconds"]
    rows = {line.split()[0]: line.split()[1:5] for line in lines[2:5]}
    assert rows == {
        "query": ["12", "jobs", "12", "jobs"],
        "fetch": ["12", "jobs", "40", "inputs"],
        "select": ["40", "inputs", "9", "inputs"],
    }
    stages = report.to_dict()["stages"]
    assert [(s["unit_in"], s["unit_out"]) for s in stages] == [
        ("jobs", "jobs"),
        ("jobs", "inputs"),
        ("inputs", "inputs"),
    ]
    assert "<td>12 jobs</td><td>40 inputs</td>" in report._repr_html_()


def test_a_long_stage_name_is_never_cut() -> None:
    report = RunReport()
    report.stage("a-stage-with-a-long-name").items_in = 3
    row = str(report).splitlines()[2]
    assert row.split()[:3] == ["a-stage-with-a-long-name", "3", "items"]


def test_plan_lines_read_as_text() -> None:
    plan = {
        "jobs": 80,
        "inputs": 320,
        "samples": 16,
        "by_model": {"ed542963de": 4, "f4k3sp4m01": 8, "unnamed01": 1},
        "model_names": {"ed542963de": "Sentiment Analysis", "f4k3sp4m01": "Spam Detection"},
        "by_label_state": {},
        "excluded": {"source_missing": 2, "not_selected": 40},
        "estimated_bytes": 3565,
    }
    assert plan_lines(plan) == [
        "jobs: 80",
        "inputs: 320",
        "samples: 16",
        "by model: Spam Detection (f4k3sp4m01) 8, Sentiment Analysis (ed542963de) 4, unnamed01 1",
        "by label state: none",
        "excluded inputs: not_selected 40, source_missing 2",
        "estimated size: 3.5 KiB (3,565 bytes)",
    ]
    assert [human_bytes(n) for n in (0, 1023, 1024, 5 * 1024**3, 2 * 1024**5)] == [
        "0 bytes",
        "1023 bytes",
        "1.0 KiB",
        "5.0 GiB",
        "2048.0 TiB",
    ]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, SandboxServer]]:
    sb = Sandbox(seed=2, jobs=60, data_url=str(tmp_path_factory.mktemp("inputs")))
    sb.write_inputs()
    with sb.serve() as server:
        yield sb, server


def build_args(world: tuple[Sandbox, SandboxServer], out: Path, *extra: str) -> list[str]:
    sb, server = world
    templates = [a for m, t in sb.input_templates.items() for a in ("--input-template", f"{m}={t}")]
    return ["build", "--base-url", server.base_url, "--out", str(out), *templates, *extra]


def test_the_dry_run_prints_no_python_reprs(
    world: tuple[Sandbox, SandboxServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODZY_API_KEY", world[0].api_key)
    code = main(build_args(world, tmp_path / "dry", "--dry-run", "--select", "down-voted"))
    assert code == 0
    captured = capsys.readouterr()
    out = captured.out
    assert out.startswith("dry run: nothing written\n")
    assert not set("{}'[]") & set(out), out
    assert re.search(r"^  by model: .*Sentiment Analysis \(ed542963de\) \d+", out, re.M)
    assert re.search(r"^  excluded inputs: not_selected \d+", out, re.M)
    assert re.search(r"^  estimated size: \d+(\.\d)? (bytes|KiB|MiB)", out, re.M)
    assert re.search(r"^fetch +\d+ jobs +\d+ inputs ", out, re.M)
    # The progress display's last line says done, with no ETA.
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("done: ")
    assert "ETA" not in last
    assert not (tmp_path / "dry").exists()


def test_a_fired_trigger_prints_its_details_as_text(
    world: tuple[Sandbox, SandboxServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MODZY_API_KEY", world[0].api_key)
    assert main(build_args(world, tmp_path / "ds", "--quiet", "--on-ready", "true")) == 0
    out = capsys.readouterr().out
    assert "trigger for v0001: fired, ok (command exit code 0)\n" in out
    assert "{" not in out


def run_cli(*argv: str, stdout: int, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, "-m", "modzy_retrain._cli", *argv],
        stdout=stdout,
        stderr=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
        env=env,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "--jobs", "10", "--out", "memory://closed-pipe-demo"],
        ["sandbox", "--jobs", "5"],
        ["inspect", "{dataset}"],
    ],
    ids=["demo", "sandbox", "inspect"],
)
def test_a_closed_stdout_ends_the_command_quietly(argv: list[str], tmp_path: Path) -> None:
    dataset = tmp_path / "ds"
    if "{dataset}" in argv:
        made = run_cli("demo", "--jobs", "10", "--out", str(dataset), stdout=subprocess.DEVNULL)
        assert made.returncode == 0, made.stderr
        argv = [str(dataset) if a == "{dataset}" else a for a in argv]
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the command writes anything
    try:
        proc = run_cli(*argv, stdout=write)
    finally:
        os.close(write)
    assert proc.stderr == ""
    assert proc.returncode == EXIT_BROKEN_PIPE


def test_demo_piped_to_head_shows_its_first_lines_and_no_traceback(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    command = (
        f"{sys.executable} -m modzy_retrain._cli demo --jobs 30 --out {tmp_path / 'ds'} "
        "2>stderr.txt | head -n 2; echo exit=${PIPESTATUS[0]}"
    )
    proc = subprocess.run(
        ["bash", "-c", command],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("sandbox: http://127.0.0.1:")
    assert lines[1].startswith("raw inputs: ")
    # Whether the demo had written everything before head left is a race: either way
    # it ends without a traceback, with 0 or the broken-pipe code.
    assert lines[2] in ("exit=0", f"exit={EXIT_BROKEN_PIPE}")
    assert (tmp_path / "stderr.txt").read_text() == ""


def test_a_closed_stdout_in_process_returns_the_broken_pipe_code(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    class ClosedPipe(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self) -> None:
            raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    code = main(["demo", "--jobs", "5", "--out", f"memory://{tmp_path.name}"])
    assert code == EXIT_BROKEN_PIPE
