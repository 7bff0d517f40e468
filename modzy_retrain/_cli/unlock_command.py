"""``modzy-retrain unlock``: clear a stuck lock, after showing who holds it and since when.

A lock clears itself: its lease is renewed by its holder's heartbeat and runs out two
minutes after the holder stops (or at once when it is on this host and its process is
gone). This command is for the rest: a holder known to be dead before its lease ran
out (a killed container), or a lock whose lease was lengthened. It refuses while the
holder is demonstrably alive (its process runs on this host, or its lease is still
being renewed) unless ``--force``. Clearing a live holder's lock cannot corrupt the
dataset (two writers cannot both publish a version), but the one that loses the race
publishes nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import sys
from typing import Any

from modzy_retrain._core.exceptions import ConfigurationError
from modzy_retrain._core.fs import is_store_error, join, url_to_fs
from modzy_retrain._core.key_values import parse_key_values
from modzy_retrain._dataset.lock import LOCK_NAME, expired, gone, process_alive, read_holder
from modzy_retrain._labels.ledger import LEDGER_DIR

from .exit_codes import EXIT_ERROR, EXIT_LOCKED, EXIT_PUBLISHED, EXIT_USAGE
from .terminal import say

PROG = "modzy-retrain unlock"
UNLOCK_EXIT_CODES = {
    EXIT_PUBLISHED: "no lock is left (cleared, or there was none)",
    EXIT_ERROR: "the dataset's store failed",
    EXIT_USAGE: "invalid arguments",
    EXIT_LOCKED: "the holder is alive: nothing cleared (--force clears it anyway)",
}


def add_unlock_arguments(parser: Any) -> None:
    parser.add_argument("url", metavar="DATASET_URL", help="the dataset (any fsspec URL)")
    parser.add_argument(
        "--force", action="store_true", help="clear the lock even while its holder is alive"
    )
    parser.add_argument(
        "--ledger",
        action="store_true",
        help="the label push's lock (_labels/_lock.json) instead of the dataset's",
    )
    parser.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")


def _alive_reason(holder: dict[str, Any]) -> str | None:
    """Why the holder looks alive (``None``: it does not)."""
    pid = holder.get("pid")
    if holder.get("host") == socket.gethostname() and isinstance(pid, int) and process_alive(pid):
        return f"its process {pid} runs on this host"
    if not expired(holder) and not gone(holder):
        return f"its lease is renewed until {holder.get('expires_at')}"
    return None


def run_unlock_command(args: argparse.Namespace) -> int:
    try:
        options = parse_key_values(args.storage_option)
        fs, root = url_to_fs(args.url, options)
    except (ConfigurationError, ValueError) as exc:
        say(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    path = join(root, f"{LEDGER_DIR}/{LOCK_NAME}" if args.ledger else LOCK_NAME)
    try:
        holder = read_holder(fs, path)
        if holder is None:
            say(f"{PROG}: no lock at {args.url}")
            return EXIT_PUBLISHED
        say(
            f"held by run {holder.get('run_id')} ({holder.get('purpose') or 'build'}) on "
            f"{holder.get('host')}, pid {holder.get('pid')}, since "
            f"{holder.get('acquired_at')}, lease until {holder.get('expires_at')}"
        )
        reason = _alive_reason(holder)
        if reason is not None and not args.force:
            say(f"{PROG}: not cleared: the holder is alive ({reason}); --force clears it")
            return EXIT_LOCKED
        with contextlib.suppress(FileNotFoundError):
            fs.rm_file(path)
    except Exception as exc:
        if not is_store_error(exc):
            raise
        say(f"{PROG}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    say("cleared" + (" (forced: the holder was alive)" if reason else ""))
    return EXIT_PUBLISHED
