"""The ``sandbox`` subcommand: serve a seeded fake Modzy over loopback HTTP until stopped."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from types import FrameType
from typing import Any

from modzy_retrain._core.key_values import parse_key_values

from ._faults import FaultConfig
from ._sandbox import Sandbox


def add_sandbox_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Register ``sandbox`` on a parent command's subparsers."""
    parser = subparsers.add_parser(
        "sandbox",
        help="serve an offline fake of the Modzy API over HTTP",
        description=(
            "Write the sandbox's raw input files, serve its API over HTTP, print one JSON "
            "line (base_url, api_key, data_url, input_templates) and serve until SIGINT or "
            "SIGTERM."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: any free one)")
    parser.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    parser.add_argument("--jobs", type=int, default=200, help="number of jobs (default 200)")
    parser.add_argument("--inputs-per-job", type=int, default=4, help="inputs per job (default 4)")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added to every response (default 0)"
    )
    parser.add_argument(
        "--data-url", default=None, help="fsspec URL for raw inputs (default: a temp folder)"
    )
    parser.add_argument(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec option for --data-url (repeatable; JSON values decoded), "
        "e.g. endpoint_url=http://127.0.0.1:9000",
    )
    parser.add_argument(
        "--api-key", default=None, help="use this key for the first user (<prefix>.<body>)"
    )
    for name, what in (
        ("throttle", "429 with Retry-After"),
        ("error", "500/502/503/504"),
        ("drop", "connection closed without a response"),
        ("truncate", "body cut short of its Content-Length"),
        ("slow", "response delayed by --slow-ms"),
    ):
        parser.add_argument(
            f"--{name}-rate",
            type=float,
            default=0.0,
            help=f"probability per request of: {what} (default 0)",
        )
    parser.add_argument(
        "--slow-ms", type=float, default=2000.0, help="delay of a slow response (default 2000)"
    )
    parser.add_argument(
        "--retry-after", type=int, default=1, help="Retry-After seconds on 429 (default 1)"
    )
    parser.add_argument("--fault-seed", type=int, default=0, help="fault sequence seed (default 0)")
    parser.set_defaults(func=run_sandbox)


def run_sandbox(args: argparse.Namespace) -> int:
    try:
        faults = FaultConfig(
            error_rate=args.error_rate,
            throttle_rate=args.throttle_rate,
            drop_rate=args.drop_rate,
            truncate_rate=args.truncate_rate,
            slow_rate=args.slow_rate,
            slow_ms=args.slow_ms,
            retry_after=args.retry_after,
            fault_seed=args.fault_seed,
        )
        sandbox = Sandbox(
            seed=args.seed,
            jobs=args.jobs,
            inputs_per_job=args.inputs_per_job,
            data_url=args.data_url,
            storage_options=parse_key_values(args.storage_option),
            api_key=args.api_key,
            latency_ms=args.latency_ms,
            faults=faults,
        )
    except ValueError as exc:
        print(f"modzy-retrain sandbox: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with sandbox.serve(host=args.host, port=args.port) as server:
            print(
                json.dumps(
                    {
                        "base_url": server.base_url,
                        "api_key": sandbox.api_key,
                        "data_url": sandbox.data_url,
                        "input_templates": sandbox.input_templates,
                    }
                ),
                flush=True,
            )
            # Wake up regularly: a bare wait() would delay signal handling on some platforms.
            while not stop.wait(0.5):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
