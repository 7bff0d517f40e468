"""``modzy-retrain inspect``: a dataset's versions, counts and manifest."""

from __future__ import annotations

import json
import sys
from typing import Any

from modzy_retrain._core.exceptions import DatasetError
from modzy_retrain._core.key_values import parse_key_values
from modzy_retrain._core.secrets import public_url
from modzy_retrain._dataset.manifest import list_versions, load_manifest
from modzy_retrain._triggers.records import action_records, fired_record

from .build import EXIT_ERROR
from .terminal import say


def add_inspect_arguments(parser: Any) -> None:
    parser.add_argument("url", help="the dataset URL")
    parser.add_argument("--version", help="a version to show instead of the latest")
    parser.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")


def run_inspect_command(args: Any) -> int:
    try:
        options = parse_key_values(args.storage_option)
        manifest = load_manifest(args.url, version=args.version, storage_options=options)
        versions = list_versions(args.url, storage_options=options)
    except (DatasetError, ValueError) as exc:
        say(f"modzy-retrain inspect: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        # ASCII JSON: every control or non-ASCII character of a label is a \u escape
        # (DEL too, which JSON leaves bare), so the terminal is given none.
        text = json.dumps(manifest.model_dump(mode="json"), indent=2, ensure_ascii=True)
        print(text.replace("\x7f", "\\u007f"))
        return 0
    c = manifest.counts
    say(f"dataset: {public_url(args.url)}")
    if versions:
        say(f"versions: {', '.join(versions)} (showing {manifest.version})")
    say(f"created: {manifest.created_at.isoformat()}  run {manifest.run_id}")
    say(f"format: {manifest.format} ({manifest.mode}), {manifest.file_count} files")
    say(f"samples: {c.samples} ({c.duplicates} duplicate contents skipped)")
    for title, counts in (
        ("by label state", c.by_label_state),
        ("by split", c.by_split),
        ("by label", c.by_label),
        ("by model", c.by_model),
    ):
        say(f"{title}: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if manifest.changes is not None:
        ch = manifest.changes
        say(
            f"changes against {ch.previous or 'nothing'}: {ch.added} added, {ch.retracted} "
            f"retracted, {ch.relabelled} relabelled, {ch.carried} carried over"
        )
    if manifest.checkpoint is not None:
        cp = manifest.checkpoint
        say(f"checkpoint: cursor {cp.cursor_text}, {len(cp.boundary_ids)} boundary job(s)")
    held = manifest.quarantined
    if held:
        say(f"quarantined: {len(held)} job(s) skipped (--retry-quarantined tries them again)")
        for job in held:
            say(
                f"  {job.job_id}: {job.reason}, {job.attempts} attempt(s) from "
                f"{job.first_attempt.isoformat()} to {job.last_attempt.isoformat()} ({job.detail})"
            )
    if manifest.trigger is not None:
        t = manifest.trigger
        line = f"trigger: {'ready' if t.ready else 'not ready'} ({t.reason})"
        actions: dict[str, dict[str, Any]] = {}
        if t.ready and manifest.version is not None:
            record = fired_record(args.url, manifest.version, options)
            actions = action_records(args.url, manifest.version, options)
            if record:
                line += f", fired at {record.get('fired_at')}"
            elif actions:
                ok = sum(1 for a in actions.values() if a.get("ok") is True)
                line += f", {ok} of {len(actions)} action(s) fired, the rest fire next run"
            else:
                line += ", not fired yet"
        say(line)
        for action in actions.values():
            state = "ok" if action.get("ok") is True else "FAILED"
            say(f"  {action.get('action')}: {state} at {action.get('at')} ({action.get('detail')})")
    return 0
