"""The command line's exit codes: one table, for the code, ``--help`` and the docs.

docs/scheduled.md shows the same table; ``tests/test_exit_codes.py`` checks they agree.
"""

from __future__ import annotations

EXIT_PUBLISHED = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOTHING_NEW = 3
EXIT_BELOW_THRESHOLD = 4
EXIT_TRIGGER_FAILED = 5
EXIT_INCOMPLETE = 6
EXIT_MISCONFIGURED = 7
EXIT_LOCKED = 8
# 128 + SIGPIPE: what a shell reports for a command a closed pipe ended.
EXIT_BROKEN_PIPE = 141

EXIT_CODES: dict[int, str] = {
    EXIT_PUBLISHED: "published a new version (and fired the trigger when it was ready)",
    EXIT_ERROR: "error: the API, storage or the run failed (the message says which)",
    EXIT_USAGE: "invalid settings: nothing was requested or written",
    EXIT_NOTHING_NEW: "nothing new: no version published (a dry run: none would be)",
    EXIT_BELOW_THRESHOLD: "published, below the retraining threshold: trigger not fired",
    EXIT_TRIGGER_FAILED: "published, but the trigger failed: it fires again next run",
    EXIT_INCOMPLETE: "incomplete: some jobs' results could not be had; the next run fetches "
    "them (one unavailable in `quarantine_after` runs in a row is quarantined)",
    EXIT_MISCONFIGURED: "nothing published: the configuration looks wrong (a template, "
    "a model id...); the checkpoint did not move",
    EXIT_LOCKED: "the dataset is held by another build: try again when it ends (a stale "
    "lock is reclaimed by itself)",
    EXIT_BROKEN_PIPE: "the output was closed early (`modzy-retrain ... | head`): stopped "
    "quietly, without a traceback",
}


# ``label push`` uses the same numbers, with their meaning for a push (docs/human-labels.md).
LABEL_EXIT_CODES: dict[int, str] = {
    EXIT_PUBLISHED: "the push completed (the summary counts created, already present, skipped)",
    EXIT_ERROR: "error: the dataset or Label Studio failed (the message says which)",
    EXIT_USAGE: "invalid arguments: nothing was requested or written",
    EXIT_LOCKED: "another push of this dataset is running: try again when it ends",
    EXIT_BROKEN_PIPE: EXIT_CODES[EXIT_BROKEN_PIPE],
}


# ``label pull`` publishes a version, as a build does: the build's numbers, for a pull.
LABEL_PULL_EXIT_CODES: dict[int, str] = {
    EXIT_PUBLISHED: "published a new version (and, with --settings, fired the trigger "
    "when it was ready)",
    EXIT_ERROR: "error: the dataset or Label Studio failed (nothing was written)",
    EXIT_USAGE: "invalid arguments: nothing was requested or written",
    EXIT_NOTHING_NEW: "nothing new: no label changed, no version published",
    EXIT_BELOW_THRESHOLD: "published, below the retraining threshold of --settings: "
    "trigger not fired",
    EXIT_TRIGGER_FAILED: "published, but the trigger failed: it fires again next run",
    EXIT_LOCKED: "the dataset is held by a build or another pull: try again when it ends",
    EXIT_BROKEN_PIPE: EXIT_CODES[EXIT_BROKEN_PIPE],
}


def exit_codes_help(table: dict[int, str] | None = None) -> str:
    """The table as ``--help`` shows it (the build's, unless another is given)."""
    rows = EXIT_CODES if table is None else table
    return "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in rows.items())
