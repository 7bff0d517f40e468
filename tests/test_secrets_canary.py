"""Canary secrets: the demo, a build, a failing build and the CLI never show them.

A canary API key and canary storage options go in; every log record at DEBUG (ours,
httpx's, httpcore's, fsspec's), stdout and stderr, the run report (text, HTML, JSON,
the report file), the manifest and samples, every file the runs wrote, exception texts
and reprs are searched for them afterwards. (Real S3 and GCS credentials get the same
treatment in tests/cloud.)
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from modzy_retrain import ModzyClient, ModzyRetrainError, RunReport
from modzy_retrain._cli.build import EXIT_ERROR, load_settings
from modzy_retrain._cli.main import main
from modzy_retrain.sandbox import Sandbox

KEY_SECRET = "CanarySecret0xDEADBEEF42"
CANARY_KEY = f"CanaryPrefix01.{KEY_SECRET}"
STORAGE_SECRET = "canary-storage-secret-9d1e"


def everything_written(root: Path) -> str:
    return "\n".join(
        p.read_bytes().decode("utf-8", "replace") for p in root.rglob("*") if p.is_file()
    )


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)  # the root logger: every library's records
    return caplog


class Echo(BaseHTTPRequestHandler):
    """A hostile server: echoes the request's headers back in an error body."""

    def do_GET(self) -> None:
        body = json.dumps({"message": f"rejected {dict(self.headers)}", "status": 400}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def echo_url() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), Echo)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


def test_canaries_appear_nowhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    debug_logs: pytest.LogCaptureFixture,
    echo_url: str,
) -> None:
    sandbox = Sandbox(seed=8, jobs=60, api_key=CANARY_KEY, data_url=str(tmp_path / "inputs"))
    sandbox.write_inputs()
    texts: list[str] = []
    monkeypatch.setenv("MODZY_API_KEY", CANARY_KEY)
    templates = [
        a for m, t in sandbox.input_templates.items() for a in ("--input-template", f"{m}={t}")
    ]
    storage = ["--storage-option", f"canary_token={STORAGE_SECRET}"]
    with sandbox.serve() as server:
        common = ["--base-url", server.base_url, *templates, *storage, "--quiet"]
        out = tmp_path / "built"
        report_file = tmp_path / "report.json"
        # A build, then a second one (nothing new), then inspect.
        assert main(["build", "--out", str(out), "--report", str(report_file), *common]) == 0
        assert main(["build", "--out", str(out), *common]) == 3
        assert main(["inspect", str(out)]) == 0
        # A dry run prints the plan.
        assert main(["build", "--out", str(tmp_path / "dry"), "--dry-run", *common]) == 0
        # A client's repr, and a report made through the library.
        with ModzyClient(base_url=server.base_url) as client:
            texts.append(repr(client))
            report = RunReport()
            texts += [str(report), report._repr_html_(), report.to_json()]
    # A failing build: the server echoes the Authorization header back in its error.
    failing = ["build", "--out", str(tmp_path / "failed"), "--base-url", echo_url, *templates]
    assert main([*failing, *storage, "--quiet"]) == EXIT_ERROR
    # The settings a build reads, with the storage secret in them.
    settings = load_settings(
        None,
        {"out": str(tmp_path / "x"), "storage_options": {"secret": STORAGE_SECRET}},
    )
    texts += [repr(settings), str(settings)]
    try:
        with ModzyClient(api_key=CANARY_KEY, base_url=echo_url) as client:
            client.models.list()
    except ModzyRetrainError as exc:
        texts += [str(exc), repr(exc), repr(exc.__dict__)]
    else:  # pragma: no cover - the echo server always answers 400
        pytest.fail("the echo server should have refused")
    # The demo, with its own sandbox's key.
    demo_key = Sandbox(seed=0, jobs=40).api_key
    assert main(["demo", "--out", str(tmp_path / "demo"), "--jobs", "40"]) == 0

    captured = capsys.readouterr()
    texts += [captured.out, captured.err, debug_logs.text, everything_written(tmp_path)]
    texts += [repr(r.args) + r.getMessage() for r in debug_logs.records]
    assert any("GET /results/" in r.getMessage() for r in debug_logs.records)  # logs were on
    haystack = "\n".join(texts)
    assert "rejected" in haystack  # the echo's error reached the output, redacted
    for secret in (KEY_SECRET, STORAGE_SECRET, demo_key.split(".", 1)[1]):
        assert secret not in haystack
