"""``modzy-retrain label pull``: Label Studio's annotations, agreed, as a new version."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from modzy_retrain._core.exceptions import (
    ConfigurationError,
    DatasetError,
    LabelStudioError,
    MissingDependencyError,
)
from modzy_retrain._core.fs import is_store_error
from modzy_retrain._core.key_values import parse_key_values
from modzy_retrain._dataset.human import LabelAggregation, Majority, TrustedAnnotator, Unanimous
from modzy_retrain._dataset.lock import DatasetLockedError
from modzy_retrain._dataset.trigger import TriggerGate
from modzy_retrain._labels.client import LabelStudioClient
from modzy_retrain._labels.pull import PullResult, pull
from modzy_retrain._triggers.fire import TriggerActions

from .exit_codes import (
    EXIT_BELOW_THRESHOLD,
    EXIT_ERROR,
    EXIT_LOCKED,
    EXIT_NOTHING_NEW,
    EXIT_PUBLISHED,
    EXIT_TRIGGER_FAILED,
    EXIT_USAGE,
    LABEL_PULL_EXIT_CODES,
    exit_codes_help,
)
from .settings import load_settings
from .terminal import say
from .trigger_output import firing_line

PROG = "modzy-retrain label pull"


def add_pull_arguments(sub: Any) -> None:
    pull_parser = sub.add_parser(
        "pull",
        help="publish Label Studio's annotations as a new dataset version",
        description="Read every annotation of the tasks the dataset pushed (its ledger "
        "names them), agree several annotators by a policy, and publish the samples whose "
        "label changed as a new version (label state 'labelled', rule human:label-studio), "
        "under the dataset's lock. Nothing is written when Label Studio fails. The token "
        "comes from LABEL_STUDIO_API_KEY.",
        epilog=exit_codes_help(LABEL_PULL_EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pull_parser.add_argument("url", metavar="DATASET_URL", help="the dataset (any fsspec URL)")
    pull_parser.add_argument(
        "--label-studio-url", help="the Label Studio server (default: LABEL_STUDIO_URL)"
    )
    pull_parser.add_argument(
        "--project",
        action="append",
        default=[],
        metavar="TITLE_OR_ID",
        help="pull only this project (repeatable; default: every project in the ledger)",
    )
    pull_parser.add_argument(
        "--policy",
        choices=("majority", "unanimous", "trusted"),
        default="majority",
        help="how annotators agree (default: majority; trusted needs --trusted)",
    )
    pull_parser.add_argument(
        "--min-agreement",
        type=float,
        default=0.5,
        help="majority: the share of annotations the leading label needs (default 0.5)",
    )
    pull_parser.add_argument(
        "--trusted",
        metavar="USER",
        help="trusted: the annotator whose label wins (a user id or email); the others "
        "decide by majority where that one did not annotate",
    )
    pull_parser.add_argument(
        "--settings",
        metavar="FILE",
        help="a build's TOML settings: its [trigger] thresholds count the new labels, "
        "and its actions (on_ready, webhook, [[trigger.actions]]) fire when the version "
        "is ready",
    )
    pull_parser.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")


def _policy(args: Any, client: LabelStudioClient) -> LabelAggregation:
    majority = Majority(args.min_agreement)
    if args.policy == "unanimous":
        return Unanimous()
    if args.policy == "trusted":
        if not args.trusted:
            raise ConfigurationError("--policy trusted needs --trusted USER")
        who = str(args.trusted).strip()
        if not who.isdigit():
            ids = [u.id for u in client.users() if u.email.lower() == who.lower()]
            if len(ids) != 1:
                raise ConfigurationError(f"--trusted: no single Label Studio user {who!r}")
            who = str(ids[0])
        return TrustedAnnotator(who, fallback=majority)
    if args.trusted:
        raise ConfigurationError("--trusted goes with --policy trusted")
    return majority


def _project_ids(values: list[str], client: LabelStudioClient) -> list[int] | None:
    if not values:
        return None
    ids = []
    for value in values:
        found = client.find_project(int(value) if value.isdigit() else value)
        if found is None:
            raise ConfigurationError(f"--project: no Label Studio project {value!r}")
        ids.append(found.id)
    return ids


def summary(result: PullResult) -> list[str]:
    lines = [f"dataset: {result.dataset} (from version {result.previous})"]
    lines.append(f"projects: {', '.join(map(str, result.projects)) or 'none in the ledger'}")
    lines.append(f"tasks read: {result.tasks}")
    lines.append(f"annotations used: {result.annotations} (skipped or cancelled: {result.skipped})")
    lines.append(
        f"labels pulled: {result.labelled + result.conflicts} "
        f"(agreed {result.labelled}, in conflict {result.conflicts})"
    )
    published = f"version {result.version}" if result.version else "nothing new: no version"
    lines.append(
        f"published: {published} (relabelled {result.relabelled}, annotations updated "
        f"{result.updated}, unchanged {result.unchanged})"
    )
    if result.trigger is not None:
        lines.append(
            f"trigger: {'ready' if result.trigger.ready else 'not ready'} "
            f"({result.trigger.reason}; {result.trigger.new} new trainable)"
        )
    for title, firing in (("pending trigger", result.recovered), ("trigger", result.firing)):
        if firing is not None and firing.shown:
            lines.append(firing_line(title, firing))
    counts = result.problem_counts
    if counts:
        said = ", ".join(f"{reason} {n}" for reason, n in sorted(counts.items()))
        lines.append(f"reported, not written: {sum(counts.values())} ({said})")
    return lines


def _code(result: PullResult, gated: bool) -> int:
    if result.recovered is not None and not result.recovered.ok:
        return EXIT_TRIGGER_FAILED  # an earlier version's trigger failed again
    if result.version is None:
        return EXIT_NOTHING_NEW
    if not gated:
        return EXIT_PUBLISHED
    if result.trigger is None or not result.trigger.ready:
        return EXIT_BELOW_THRESHOLD
    if result.firing is not None and not result.firing.ok:
        return EXIT_TRIGGER_FAILED
    return EXIT_PUBLISHED


def _progress(what: str, count: int) -> None:
    say(f"{PROG}: {count} {what}", file=sys.stderr, flush=True)


def run_pull_command(args: Any) -> int:
    try:
        options = parse_key_values(args.storage_option)
        gate: TriggerGate | None = None
        actions = TriggerActions()
        if args.settings:
            trigger = load_settings(args.settings, {}).trigger
            gate = TriggerGate(trigger.min_new, trigger.min_new_per_label, trigger.min_since_last)
            actions = TriggerActions(
                None, trigger.on_ready, trigger.webhook, tuple(trigger.actions)
            )
            # Tokens are read now: a missing one is exit 2, before Label Studio is asked.
            actions = actions.prepare(os.environ)
        client = LabelStudioClient(args.label_studio_url)
    except (ConfigurationError, MissingDependencyError, ValueError) as exc:
        say(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with client:
            policy = _policy(args, client)
            projects = _project_ids(args.project, client)
            result = pull(
                args.url,
                client,
                policy=policy,
                projects=projects,
                storage_options=options,
                trigger=gate,
                actions=actions,
                progress=_progress,
            )
    except ConfigurationError as exc:
        say(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DatasetLockedError as exc:
        say(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except (DatasetError, LabelStudioError, MissingDependencyError, OSError) as exc:
        # Every LabelStudioError is redacted at its source: the token never shows.
        say(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        if not is_store_error(exc):
            raise
        # A store's client out of retries (gcsfs's HttpError, aiohttp's ClientError).
        say(f"{PROG}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for line in summary(result):
        say(line, block=True)
    return _code(result, gate is not None)
