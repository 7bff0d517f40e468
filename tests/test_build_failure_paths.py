"""Every way `modzy-retrain build` can fail writes its `--report` file, and a store that
cannot be reached is the library's typed error (issue 17, item 8).

A scheduler keeps the report of each run: one that fails (invalid settings, no API
key, a locked dataset, an API or a bucket that cannot be reached, a bug, SIGTERM) must
leave one too, saying the exit code and the error. An S3 endpoint that refuses the
connection escaped as botocore's ``EndpointConnectionError`` with a traceback; it is a
:class:`StorageError` (a :class:`DatasetError`), exit 1.
"""

from __future__ import annotations

import functools
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modzy_retrain import (
    BuildSettings,
    DatasetError,
    ModzyClient,
    RetryPolicy,
    StorageError,
    build,
)
from modzy_retrain._cli import build as build_module
from modzy_retrain._cli.main import main
from modzy_retrain._core.fs import url_to_fs
from modzy_retrain._dataset.lock import DatasetLock
from modzy_retrain._stages.votes import VoteFilter
from modzy_retrain.sandbox import Sandbox, SandboxServer


def _closed_port() -> int:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, SandboxServer]]:
    sb = Sandbox(seed=2, jobs=20, data_url=str(tmp_path_factory.mktemp("inputs")))
    sb.write_inputs()
    with sb.serve() as server:
        yield sb, server


def _args(world: tuple[Sandbox, SandboxServer], out: str, report: Path, *extra: str) -> list[str]:
    sb, server = world
    templates = [a for m, t in sb.input_templates.items() for a in ("--input-template", f"{m}={t}")]
    base = ["build", "--base-url", server.base_url, "--out", out, *templates]
    return [*base, "--quiet", "--report", str(report), *extra]


def _s3(port: int) -> list[str]:
    options = {
        "endpoint_url": f"http://127.0.0.1:{port}",
        "key": "AKIAEXAMPLEEXAMPLE00",
        "secret": "canary-storage-secret-0000",
        "config_kwargs": json.dumps({"retries": {"max_attempts": 1}, "connect_timeout": 2}),
    }
    return [a for k, v in options.items() for a in ("--storage-option", f"{k}={v}")]


def _report(path: Path) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(path.read_text())
    return body


def test_an_s3_endpoint_that_refuses_is_a_storage_error(
    world: tuple[Sandbox, SandboxServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pytest.importorskip("s3fs")
    sb = world[0]
    monkeypatch.setenv("MODZY_API_KEY", sb.api_key)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    report = tmp_path / "report.json"
    port = _closed_port()
    assert main(_args(world, "s3://training/ds", report, *_s3(port))) == 1
    err = capsys.readouterr().err
    assert "StorageError" in err
    assert "canary-storage-secret" not in err
    body = _report(report)
    assert body["exit_code"] == 1
    assert body["error"]["type"] == "StorageError"
    assert "canary-storage-secret" not in report.read_text()
    # From Python: the same typed error, a DatasetError.
    settings = BuildSettings(
        base_url=sb.base_url,
        input_templates=sb.input_templates,
        out="s3://training/ds",
        storage_options={
            "endpoint_url": f"http://127.0.0.1:{port}",
            "key": "AKIAEXAMPLEEXAMPLE00",
            "secret": "canary-storage-secret-0000",
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 2},
        },
    )
    with pytest.raises(StorageError) as caught:
        build(settings, environ={"MODZY_API_KEY": sb.api_key}, transport=sb.transport())
    assert isinstance(caught.value, DatasetError)
    assert "EndpointConnectionError" in str(caught.value)


def test_invalid_settings_and_no_api_key_exit_2_with_a_report(
    world: tuple[Sandbox, SandboxServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = tmp_path / "report.json"
    out = str(tmp_path / "ds")
    assert main(_args(world, out, report, "--min-agreement", "7")) == 2
    body = _report(report)
    assert (body["exit_code"], body["error"]["type"]) == (2, "ConfigurationError")
    assert "min_agreement" in body["error"]["message"]
    report.unlink()
    monkeypatch.delenv("MODZY_API_KEY", raising=False)
    assert main(_args(world, out, report)) == 2
    body = _report(report)
    assert body["exit_code"] == 2
    assert "MODZY_API_KEY" in body["error"]["message"]


def test_a_locked_dataset_and_an_unreachable_api_leave_a_report(
    world: tuple[Sandbox, SandboxServer], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sb = world[0]
    monkeypatch.setenv("MODZY_API_KEY", sb.api_key)
    out, report = tmp_path / "ds", tmp_path / "report.json"
    fs, root = url_to_fs(str(out))
    holder = DatasetLock(fs, root, "another-build")
    holder.acquire()
    try:
        assert main(_args(world, str(out), report)) == 8
    finally:
        holder.release()
    body = _report(report)
    assert (body["exit_code"], body["error"]["type"]) == (8, "DatasetLockedError")
    args = _args(world, str(out), report)
    args[args.index("--base-url") + 1] = f"http://127.0.0.1:{_closed_port()}"
    # The command's client tries once and does not wait.
    monkeypatch.setattr(
        build_module,
        "ModzyClient",
        functools.partial(ModzyClient, retry=RetryPolicy(max_attempts=1), sleep=lambda s: None),
    )
    assert main(args) == 1
    body = _report(report)
    assert body["exit_code"] == 1
    assert body["error"]["type"] in ("APIConnectionError", "APITimeoutError")


@pytest.mark.parametrize(("raised", "code"), [(RuntimeError("a bug"), 1), (SystemExit(143), 143)])
def test_a_bug_or_sigterm_mid_run_still_leaves_a_report(
    world: tuple[Sandbox, SandboxServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    raised: BaseException,
    code: int,
) -> None:
    sb = world[0]
    monkeypatch.setenv("MODZY_API_KEY", sb.api_key)

    def broken(self: VoteFilter, record: Any) -> Any:
        raise raised  # in the main thread, where SIGTERM's SystemExit is raised

    monkeypatch.setattr(VoteFilter, "process", broken)
    report = tmp_path / "report.json"
    with pytest.raises(type(raised)):
        main(_args(world, str(tmp_path / "ds"), report))
    body = _report(report)
    assert body["exit_code"] == code
    assert body["error"]["type"] == type(raised).__name__
    assert body["stages"]  # what the run did before it stopped
