"""The ``sandbox`` subcommand, run in a subprocess as a user would."""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from modzy_retrain.sandbox._cli import add_sandbox_parser

MAIN = textwrap.dedent(
    """
    import argparse, sys
    from modzy_retrain.sandbox._cli import add_sandbox_parser

    parser = argparse.ArgumentParser(prog="modzy-retrain")
    add_sandbox_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args()
    sys.exit(args.func(args))
    """
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modzy-retrain")
    add_sandbox_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def test_parser_defaults() -> None:
    args = _parser().parse_args(["sandbox"])
    assert (args.host, args.port, args.seed, args.jobs, args.inputs_per_job) == (
        "127.0.0.1",
        0,
        0,
        200,
        4,
    )
    assert args.latency_ms == 0.0
    assert args.data_url is None
    assert args.api_key is None
    assert args.throttle_rate == args.error_rate == args.drop_rate == 0.0
    assert args.truncate_rate == args.slow_rate == 0.0
    assert args.fault_seed == 0
    assert callable(args.func)


def test_parser_knobs() -> None:
    args = _parser().parse_args(
        [
            "sandbox",
            "--port",
            "8123",
            "--seed",
            "4",
            "--jobs",
            "12",
            "--inputs-per-job",
            "2",
            "--latency-ms",
            "5",
            "--data-url",
            "memory://x",
            "--api-key",
            "A.B",
            "--throttle-rate",
            "0.1",
            "--error-rate",
            "0.2",
            "--drop-rate",
            "0.05",
            "--truncate-rate",
            "0.05",
            "--slow-rate",
            "0.01",
            "--fault-seed",
            "9",
        ]
    )
    assert (args.port, args.seed, args.jobs, args.inputs_per_job) == (8123, 4, 12, 2)
    assert (args.latency_ms, args.data_url, args.api_key) == (5.0, "memory://x", "A.B")
    assert (args.throttle_rate, args.error_rate, args.drop_rate) == (0.1, 0.2, 0.05)
    assert (args.truncate_rate, args.slow_rate, args.fault_seed) == (0.05, 0.01, 9)


def test_invalid_knob_exits_2() -> None:
    args = _parser().parse_args(["sandbox", "--error-rate", "2"])
    assert args.func(args) == 2


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_until_signalled(tmp_path: Path, sig: signal.Signals) -> None:
    script = tmp_path / "main.py"
    script.write_text(MAIN)
    data = tmp_path / "data"
    with subprocess.Popen(
        [
            sys.executable,
            str(script),
            "sandbox",
            "--jobs",
            "20",
            "--seed",
            "3",
            "--data-url",
            str(data),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        try:
            assert process.stdout is not None
            info = json.loads(process.stdout.readline())
            assert set(info) == {"base_url", "api_key", "data_url", "input_templates"}
            assert info["data_url"] == str(data)
            assert info["base_url"].startswith("http://127.0.0.1:")
            assert info["base_url"].endswith("/api")
            assert len(info["input_templates"]) == 3
            assert all(t.startswith(str(data) + "/") for t in info["input_templates"].values())
            assert any(data.rglob("*.png"))  # inputs were written before the line was printed
            response = httpx.get(
                f"{info['base_url']}/jobs/history",
                headers={"Authorization": f"ApiKey {info['api_key']}"},
                timeout=10,
            )
            assert response.status_code == 200
            assert len(response.json()) == 10
            process.send_signal(sig)
            assert process.wait(timeout=10) == 0
            assert process.stdout.read() == ""  # exactly one line on stdout
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
