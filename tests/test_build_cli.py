"""`modzy-retrain build` and `inspect`: versions, exit codes, trigger, secrets."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from modzy_retrain import list_versions, load_manifest
from modzy_retrain._cli.build import BuildSettings, build, load_settings
from modzy_retrain._cli.main import main
from modzy_retrain.sandbox import Sandbox, SandboxServer


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, SandboxServer]]:
    sb = Sandbox(seed=2, jobs=80, data_url=str(tmp_path_factory.mktemp("inputs")))
    sb.write_inputs()
    with sb.serve() as server:
        yield sb, server


@pytest.fixture
def env(world: tuple[Sandbox, SandboxServer], monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    monkeypatch.setenv("MODZY_API_KEY", world[0].api_key)
    return world[0]


def args(world: tuple[Sandbox, SandboxServer], out: Path, *extra: str) -> list[str]:
    sb, server = world
    templates = [a for m, t in sb.input_templates.items() for a in ("--input-template", f"{m}={t}")]
    return [
        "build",
        "--base-url",
        server.base_url,
        "--out",
        str(out),
        *templates,
        "--quiet",
        *extra,
    ]


def test_build_publishes_then_has_nothing_new(
    world: tuple[Sandbox, SandboxServer],
    env: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out, report = tmp_path / "ds", tmp_path / "report.json"
    assert main(args(world, out, "--report", str(report))) == 0
    first = capsys.readouterr()
    assert "version v0001" in first.out
    body = json.loads(report.read_text())
    assert body["exit_code"] == 0
    assert body["reconciled"] is True
    assert main(args(world, out)) == 3
    second = capsys.readouterr()
    assert "nothing new" in second.out
    assert list_versions(str(out)) == ["v0001"]
    secret = env.api_key
    texts = [first.out, first.err, second.out, second.err, report.read_text()]
    texts += [p.read_text(errors="replace") for p in out.rglob("*.json*")]
    assert all(secret not in t for t in texts)


def test_dry_run_writes_nothing(
    world: tuple[Sandbox, SandboxServer],
    env: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "dry"
    assert main(args(world, out, "--dry-run", "--select", "down-voted")) == 0
    text = capsys.readouterr().out
    assert "dry run: nothing written" in text
    for key in (
        "jobs:",
        "inputs:",
        "by model:",
        "by label state:",
        "excluded inputs:",
        "estimated size:",
    ):
        assert key in text
    assert "not_selected" in text
    assert not out.exists()


def test_threshold_and_the_trigger_fires_once_per_version(
    world: tuple[Sandbox, SandboxServer],
    env: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    log = tmp_path / "fired.log"
    out = tmp_path / "ds"
    fields = "$MODZY_RETRAIN_VERSION $MODZY_RETRAIN_NEW_SAMPLES ${MODZY_API_KEY:-nokey}"
    command = f'echo "{fields}" >> {log}'
    # Far above what the world has: published, but below the threshold.
    assert main(args(world, out, "--min-new", "100000", "--on-ready", command)) == 4
    assert not log.exists()
    assert load_manifest(str(out)).trigger.ready is False  # type: ignore[union-attr]
    capsys.readouterr()

    out2 = tmp_path / "ds2"
    failing = "exit 7"
    assert main(args(world, out2, "--on-ready", failing)) == 5
    assert "trigger failed" in capsys.readouterr().out
    # The next run fires the pending version first (once), then has nothing new.
    assert main(args(world, out2, "--on-ready", command)) == 3
    assert main(args(world, out2, "--on-ready", command)) == 3
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    version, new, key = lines[0].split()
    assert version == "v0001"
    assert int(new) > 0
    assert key == "nokey"  # the training command never sees the Modzy key


def test_webhook_gets_one_json_post(
    world: tuple[Sandbox, SandboxServer], env: Sandbox, tmp_path: Path
) -> None:
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        out = tmp_path / "ds"
        assert main(args(world, out, "--webhook", url)) == 0
        assert main(args(world, out, "--webhook", url)) == 3
    finally:
        server.shutdown()
        server.server_close()
    assert len(received) == 1
    assert received[0]["version"] == "v0001"
    counts = load_manifest(str(out)).counts
    assert received[0]["new_rows"] == counts.samples
    # What trains: confirmed and corrected labels, not rows awaiting a human.
    trainable = counts.by_label_state.get("confirmed", 0) + counts.by_label_state.get(
        "corrected", 0
    )
    assert 0 < received[0]["new_samples"] == trainable < counts.samples


def test_config_file_flags_and_secrets(
    world: tuple[Sandbox, SandboxServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    sb, server = world
    monkeypatch.delenv("MODZY_API_KEY", raising=False)
    key_file = tmp_path / "key"
    key_file.write_text(sb.api_key + "\n")
    config = tmp_path / "retrain.toml"
    templates = "\n".join(f'"{m}" = "{t}"' for m, t in sb.input_templates.items())
    config.write_text(
        f'base_url = "{server.base_url}"\n'
        f'api_key_file = "{key_file}"\n'
        f'out = "{tmp_path / "from-config"}"\n'
        'select = ["down-voted", "up-voted"]\n'
        'lag = "2d"\n'
        "[input_templates]\n"
        f"{templates}\n"
        "[trigger]\n"
        "min_new = 1\n"
    )
    settings = load_settings(str(config), {"lag": "3h"})
    assert settings.lag.total_seconds() == 3 * 3600  # flags win over the file
    assert settings.select == ["down-voted", "up-voted"]
    assert main(["build", "--config", str(config), "--quiet"]) == 0
    assert list_versions(str(tmp_path / "from-config")) == ["v0001"]

    bad = tmp_path / "bad.toml"
    bad.write_text(f'api_key = "{sb.api_key}"\n')
    assert main(["build", "--config", str(bad), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "api_key" in err
    assert sb.api_key not in err
    assert (
        main(
            [
                "build",
                "--out",
                str(tmp_path / "x"),
                "--input-template",
                "/x/{input_name}",
                "--base-url",
                server.base_url,
            ]
        )
        == 2
    )
    assert "MODZY_API_KEY" in capsys.readouterr().err


def test_inspect(
    world: tuple[Sandbox, SandboxServer],
    env: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "ds"
    assert main(args(world, out)) == 0
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    text = capsys.readouterr().out
    for needle in (
        "versions: v0001",
        "samples:",
        "by label state:",
        "checkpoint: cursor",
        "trigger: ready",
    ):
        assert needle in text
    assert "not fired yet" in text  # no trigger action was configured
    assert main(["inspect", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == "v0001"
    assert main(["inspect", str(tmp_path / "nothing")]) == 1


def test_python_callback_fires_once(
    world: tuple[Sandbox, SandboxServer], env: Sandbox, tmp_path: Path
) -> None:
    sb, server = world
    calls: list[dict[str, Any]] = []
    settings = BuildSettings(
        base_url=server.base_url, out=str(tmp_path / "cb"), input_templates=sb.input_templates
    )
    first = build(settings, environ={"MODZY_API_KEY": sb.api_key}, on_ready=calls.append)
    second = build(settings, environ={"MODZY_API_KEY": sb.api_key}, on_ready=calls.append)
    assert (first.exit_code, second.exit_code) == (0, 3)
    assert len(calls) == 1
    assert calls[0]["version"] == "v0001"


def test_progress_lines_and_eta(tmp_path: Path) -> None:
    import io
    from datetime import datetime, timedelta, timezone

    from modzy_retrain import RunReport
    from modzy_retrain._cli.build_command import Progress, estimate_eta

    report = RunReport()
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    report.query = {"start": start.isoformat(), "end": (start + timedelta(days=10)).isoformat()}
    report.progress.mark("j1", start + timedelta(days=2), True)
    assert estimate_eta(report, 10.0) == pytest.approx(40.0)
    report.query = {}
    assert estimate_eta(report, 10.0) is None

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, ci = Tty(), io.StringIO()
    for stream in (tty, ci):
        progress = Progress(stream, quiet=False)
        progress(report)
        progress.done()
    assert tty.getvalue().startswith("\r")
    assert tty.getvalue().endswith("\n")
    assert ci.getvalue().count("\n") == 2  # the line, then the done line
    assert "jobs/s" in ci.getvalue()
    assert ci.getvalue().splitlines()[-1].startswith("done: ")
    quiet = io.StringIO()
    Progress(quiet, quiet=True)(report)
    assert quiet.getvalue() == ""


def test_a_locked_dataset_exits_8(
    world: tuple[Sandbox, SandboxServer],
    env: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from modzy_retrain._core.fs import url_to_fs
    from modzy_retrain._dataset.lock import DatasetLock

    out = tmp_path / "locked"
    fs, root = url_to_fs(str(out))
    holder = DatasetLock(fs, root, "another-build")
    holder.acquire()
    try:
        assert main(args(world, out)) == 8  # held by another build, nothing touched
    finally:
        holder.release()
    err = capsys.readouterr().err
    assert "another-build" in err
    assert main(args(world, out, "--on-ready", "true")) == 0
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 0
    assert "fired at" in capsys.readouterr().out


def test_the_trigger_fires_after_the_dataset_lock_is_let_go(
    world: tuple[Sandbox, SandboxServer], env: Sandbox, tmp_path: Path
) -> None:
    out = tmp_path / "ds"
    # Nothing slow runs under the lock: the command succeeds only if it is gone (a
    # long training command no longer holds every other build off the dataset).
    assert main(args(world, out, "--on-ready", f"test ! -e {out}/_lock.json")) == 0
    assert not (out / "_lock.json").exists()


def test_max_input_bytes_refuses_larger_inputs_unread(
    world: tuple[Sandbox, SandboxServer], env: Sandbox, tmp_path: Path
) -> None:
    images = sorted(p.stat().st_size for p in Path(env.data_url).rglob("*.png"))
    limit = images[len(images) // 2]  # about half the images are larger, no text input
    out, report = tmp_path / "ds", tmp_path / "report.json"
    # Half of one model's inputs refused is the guard's business: allow it here.
    flags = ("--max-input-bytes", str(limit), "--max-failure-share", "1", "--report", str(report))
    code = main(args(world, out, *flags))
    assert code == 0
    body = json.loads(report.read_text())
    drops = body["drops"]
    too_large = [d for d in drops if d["reason"] == "source_too_large"]
    assert too_large
    assert all(f"{limit:,}" in d["detail"] or str(limit) in d["detail"] for d in too_large)
    (table,) = load_manifest(str(out)).samples_files
    rows = [json.loads(line) for line in (out / table).read_text().splitlines()]
    assert rows
    assert all(r["size"] <= limit for r in rows)
    assert body["reconciled"] is True


def test_a_label_file_class_outside_the_list_needs_allow_new_classes(
    world: tuple[Sandbox, SandboxServer],
    env: Sandbox,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A successful input whose raw file is there and whose content is not a duplicate.
    unusable = {ref for pair in env.duplicate_inputs for ref in pair} | set(env.missing_inputs)
    job, item = next(
        (j, i)
        for j in env.jobs
        if j.status == "COMPLETED"
        for i in j.inputs
        if i.status == "SUCCESSFUL" and (j.id, i.name) not in unusable
    )
    labels = tmp_path / "labels.csv"
    labels.write_text(f"job_id,input_name,label,annotator\n{job.id},{item.name},platypus,al\n")
    lists = []
    for flag, present in (((), False), (("--allow-new-classes",), True)):
        out, report = tmp_path / f"ds-{present}", tmp_path / f"report-{present}.json"
        extra = ("--label-file", str(labels), "--report", str(report), *flag)
        assert main(args(world, out, *extra)) == 0
        capsys.readouterr()
        drops = json.loads(report.read_text())["drop_counts"]
        assert ("label_not_in_classes" in json.dumps(drops)) is not present
        classes = load_manifest(str(out)).classes[job.model.id]
        assert ("platypus" in classes) is present
        lists.append(classes)
    # The new class is one more in the list; the others keep their order.
    assert [c for c in lists[1] if c != "platypus"] == lists[0]
