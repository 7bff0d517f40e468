"""``modzy-retrain report``: a dataset's feedback report, as text, HTML or JSON.

Not a build's run report (``modzy-retrain build --report PATH``): this one reads a
dataset's manifests and shows how users judged its models over time.
"""

from __future__ import annotations

import sys
from typing import Any

from modzy_retrain._core.exceptions import (
    ConfigurationError,
    DatasetError,
    MissingDependencyError,
)
from modzy_retrain._core.fs import atomic_write, storage_errors, url_to_fs
from modzy_retrain._core.key_values import parse_key_values
from modzy_retrain._core.secrets import public_url
from modzy_retrain._report.charts import matplotlib_modules
from modzy_retrain._report.feedback import feedback_report
from modzy_retrain._report.figures import PERIODS

from .exit_codes import EXIT_BROKEN_PIPE, EXIT_CODES, EXIT_ERROR, EXIT_PUBLISHED, EXIT_USAGE
from .terminal import say

PROG = "modzy-retrain report"
REPORT_EXIT_CODES = {
    EXIT_PUBLISHED: "the report was made (and written, with --html or --json)",
    EXIT_ERROR: "error: the dataset could not be read, or a file not written",
    EXIT_USAGE: "invalid arguments, or --html without matplotlib "
    "(pip install 'modzy-retrain[report]'): nothing was read or written",
    EXIT_BROKEN_PIPE: EXIT_CODES[EXIT_BROKEN_PIPE],
}


def add_report_arguments(parser: Any) -> None:
    parser.add_argument("url", metavar="DATASET_URL", help="the dataset (any fsspec URL)")
    parser.add_argument(
        "--html",
        metavar="PATH",
        help="write the report as one self-contained HTML file, charts included (any "
        "fsspec URL; needs the report extra)",
    )
    parser.add_argument("--json", metavar="PATH", help="write the report's numbers as JSON")
    parser.add_argument("--version", help="the version to report (default: the latest)")
    parser.add_argument(
        "--period",
        choices=PERIODS,
        help="group the chart over time by day, week or month (default: by the history's span)",
    )
    parser.add_argument(
        "--confidence",
        type=float,
        default=0.95,
        help="the confidence of the intervals (default 0.95)",
    )
    parser.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")


def run_report_command(args: Any) -> int:
    try:
        options = parse_key_values(args.storage_option)
        if args.html:
            matplotlib_modules()  # before anything is read: exit 2, nothing written
    except (ConfigurationError, MissingDependencyError, ValueError) as exc:
        say(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with storage_errors():
            report = feedback_report(
                args.url,
                version=args.version,
                storage_options=options,
                period=args.period,
                confidence=args.confidence,
            )
            say(str(report), block=True)  # its values are escaped where they went in
            if args.html:
                report.write_html(args.html)
                say(f"wrote {public_url(args.html)}")
            if args.json:
                fs, path = url_to_fs(args.json)
                atomic_write(fs, path, report.model_dump_json(indent=2).encode("utf-8"))
                say(f"wrote {public_url(args.json)}")
    except ConfigurationError as exc:
        say(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (DatasetError, OSError) as exc:
        say(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_PUBLISHED
