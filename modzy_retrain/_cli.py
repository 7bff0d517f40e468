"""The ``modzy-retrain`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ._version import __version__


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    run_demo(jobs=args.jobs, seed=args.seed, out=sys.stdout)
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .sandbox._cli import add_sandbox_parser

    parser = argparse.ArgumentParser(
        prog="modzy-retrain",
        description="Turn Modzy production results and up/down votes into retraining data.",
    )
    parser.add_argument("--version", action="version", version=f"modzy-retrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="run the main job on the offline sandbox",
        description="Start the sandbox over HTTP on loopback, page through the whole job "
        "history, fetch every job's results and print a summary of inputs and votes.",
    )
    demo.add_argument("--jobs", type=int, default=300, help="jobs in the sandbox (default 300)")
    demo.add_argument("--seed", type=int, default=0, help="the sandbox's seed (default 0)")
    demo.set_defaults(func=_demo)

    add_sandbox_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
