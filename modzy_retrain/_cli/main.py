"""The ``modzy-retrain`` command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from modzy_retrain._version import __version__

from .exit_codes import EXIT_BROKEN_PIPE, exit_codes_help


def _demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    report = run_demo(
        out=args.out,
        jobs=args.jobs,
        seed=args.seed,
        fmt=args.format,
        stream=sys.stdout,
        inputs_url=args.inputs_url,
    )
    return 0 if report.reconciled else 1


def _build(args: argparse.Namespace) -> int:
    from .build_command import run_build_command

    return run_build_command(args)


def _inspect(args: argparse.Namespace) -> int:
    from .inspect_command import run_inspect_command

    return run_inspect_command(args)


def _unlock(args: argparse.Namespace) -> int:
    from .unlock_command import run_unlock_command

    return run_unlock_command(args)


def _report(args: argparse.Namespace) -> int:
    from .report_command import run_report_command

    return run_report_command(args)


def _label(args: argparse.Namespace) -> int:
    from .label_command import run_label_command

    return run_label_command(args)


def build_parser() -> argparse.ArgumentParser:
    from modzy_retrain.sandbox._cli import add_sandbox_parser

    parser = argparse.ArgumentParser(
        prog="modzy-retrain",
        description="Turn Modzy production results and up/down votes into retraining data.",
    )
    parser.add_argument("--version", action="version", version=f"modzy-retrain {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    demo = sub.add_parser(
        "demo",
        help="run the whole chain on the offline sandbox and write a dataset",
        description="Start the sandbox over HTTP on loopback, query its whole job history, "
        "fetch every job's results, keep and label the voted predictions, resolve their "
        "raw inputs and write a dataset, then print the run report.",
    )
    demo.add_argument(
        "--out", default="./retrain-demo", help="where to write the dataset (any fsspec URL)"
    )
    demo.add_argument(
        "--format",
        default="jsonl",
        choices=["jsonl", "csv", "parquet", "imagefolder"],
        help="dataset layout (default jsonl)",
    )
    demo.add_argument(
        "--inputs-url",
        default=None,
        help="where the sandbox puts its raw input files (default: a temporary folder)",
    )
    demo.add_argument("--jobs", type=int, default=300, help="jobs in the sandbox (default 300)")
    demo.add_argument("--seed", type=int, default=0, help="the sandbox's seed (default 0)")
    demo.set_defaults(func=_demo)

    from .build_command import add_build_arguments
    from .inspect_command import add_inspect_arguments

    build = sub.add_parser(
        "build",
        help="build the next version of a retraining dataset (for cron and CI)",
        description="Query the history since the dataset's checkpoint, fetch results, "
        "select and label, resolve raw inputs, publish a new version, and fire the "
        "retraining trigger once it is ready. Every setting is checked before any request.",
        epilog=exit_codes_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_build_arguments(build)
    build.set_defaults(func=_build)

    inspect = sub.add_parser("inspect", help="show a dataset's versions, counts and manifest")
    add_inspect_arguments(inspect)
    inspect.set_defaults(func=_inspect)

    from .unlock_command import UNLOCK_EXIT_CODES, add_unlock_arguments

    unlock = sub.add_parser(
        "unlock",
        help="clear a stuck lock, after showing who holds it",
        description="Show who holds the dataset's lock and since when, and clear it "
        "unless its holder is alive (its process on this host, or a lease still "
        "renewed). A lock clears itself two minutes after its holder stops.",
        epilog=exit_codes_help(UNLOCK_EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_unlock_arguments(unlock)
    unlock.set_defaults(func=_unlock)

    from .report_command import REPORT_EXIT_CODES, add_report_arguments

    report = sub.add_parser(
        "report",
        help="the feedback report of a dataset: down-vote shares over time by model "
        "version, what users correct, what each version changed (text, --html, --json)",
        description="Read a dataset's manifests and show how users judged its models: per "
        "model, the share of inputs down-voted over time by model version with Wilson "
        "intervals, the classes most often down-voted, the predicted class against the "
        "corrected or human label, and each version's label states, splits and changes. "
        "Not a build's run report (build --report PATH).",
        epilog=exit_codes_help(REPORT_EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_report_arguments(report)
    report.set_defaults(func=_report)

    from .label_command import add_label_arguments

    label = sub.add_parser(
        "label",
        help="human labels with Label Studio: push the samples that need a person, "
        "pull their labels into a new version",
    )
    add_label_arguments(label)
    label.set_defaults(func=_label)

    add_sandbox_parser(sub)
    return parser


def _terminated(signum: int, _frame: object) -> None:
    # SIGTERM (a scheduler stopping the run, `docker stop`) unwinds like Ctrl-C: every
    # `finally` runs, so the run lets go of its locks and scratch files. Only the
    # command line does this; the Python API installs no signal handler.
    raise SystemExit(128 + signum)


def main(argv: Sequence[str] | None = None) -> int:
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _main(argv)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(argv: Sequence[str] | None) -> int:
    try:
        try:
            args = build_parser().parse_args(argv)
            code: int = args.func(args)
        finally:
            # Flushed here, where a closed pipe is handled, not at exit, where Python
            # would print a BrokenPipeError traceback for what is still buffered.
            if sys.stdout is not None:
                sys.stdout.flush()
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _discard_closed_pipes()
        return EXIT_BROKEN_PIPE
    return code


def _discard_closed_pipes() -> None:
    """Point stdout and stderr at devnull where their pipe is closed, so what they still
    buffer is dropped at exit instead of raising again (the "Note on SIGPIPE" in the
    ``signal`` module's documentation)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            try:
                fd = stream.fileno()
            except (AttributeError, OSError, ValueError):
                continue  # not a file descriptor (a test's capture): nothing left at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
        except (AttributeError, OSError, ValueError):
            pass  # no such stream, or already closed: nothing to flush at exit


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
