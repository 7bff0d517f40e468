"""``modzy-retrain label push`` (the samples that need a human, as Label Studio tasks)
and ``label pull`` (in ``label_pull_command.py``)."""

from __future__ import annotations

import argparse
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
from modzy_retrain._dataset.lock import DatasetLockedError
from modzy_retrain._dataset.rows import LABEL_STATES, PublishedSample
from modzy_retrain._labels.client import IMPORT_CHUNK, LabelStudioClient
from modzy_retrain._labels.projects import S3StorageSettings
from modzy_retrain._labels.push import (
    DEFAULT_STATES,
    LOCAL_FILES_ROOT_ENV,
    ProjectRef,
    PushResult,
    push_to_label_studio,
)

from .exit_codes import (
    EXIT_ERROR,
    EXIT_LOCKED,
    EXIT_PUBLISHED,
    EXIT_USAGE,
    LABEL_EXIT_CODES,
    exit_codes_help,
)
from .label_pull_command import add_pull_arguments, run_pull_command
from .terminal import say


def add_label_arguments(parser: Any) -> None:
    sub = parser.add_subparsers(dest="label_command", metavar="ACTION")
    sub.required = True
    push = sub.add_parser(
        "push",
        help="make Label Studio tasks of the samples that need a human",
        description="Push the samples of a published version that need a human "
        "(needs_label and conflict by default) to Label Studio, one project per model, "
        "once each: the dataset's ledger (_labels/label-studio.jsonl) and the project's "
        "tasks are checked first. The token comes from LABEL_STUDIO_API_KEY.",
        epilog=exit_codes_help(LABEL_EXIT_CODES),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    push.add_argument("url", metavar="DATASET_URL", help="the dataset (any fsspec URL)")
    push.add_argument(
        "--label-studio-url", help="the Label Studio server (default: LABEL_STUDIO_URL)"
    )
    push.add_argument(
        "--project",
        action="append",
        default=[],
        metavar="[MODEL_ID=]TITLE_OR_ID",
        help="the project (a title, or an id); one per model as MODEL_ID=TITLE_OR_ID "
        "(default: '<dataset folder> - <model id>', created when absent)",
    )
    push.add_argument("--version", help="the version to push (default: the latest)")
    push.add_argument(
        "--state",
        action="append",
        choices=LABEL_STATES,
        help=f"push samples in this label state (repeatable; default: {', '.join(DEFAULT_STATES)})",
    )
    push.add_argument(
        "--model", action="append", metavar="MODEL_ID", help="push only this model's samples"
    )
    push.add_argument(
        "--local-files-root",
        help=f"the server's local-files document root (default: {LOCAL_FILES_ROOT_ENV})",
    )
    push.add_argument("--chunk-size", type=int, default=IMPORT_CHUNK, help="tasks per request")
    push.add_argument("--storage-option", action="append", default=[], metavar="KEY=VALUE")
    push.add_argument(
        "--s3-storage",
        action="store_true",
        help="for a dataset in S3: connect an S3 source storage on the dataset's folder to "
        "each image project, so Label Studio serves the copies (presigned); it gets the "
        "key pair of --storage-option key=/secret= (else uses its own environment)",
    )
    push.add_argument(
        "--s3-endpoint",
        metavar="URL",
        help="with --s3-storage: the S3 endpoint as the Label Studio server reaches it "
        "(default: --storage-option endpoint_url, else AWS)",
    )
    push.add_argument("--s3-region", metavar="REGION", help="with --s3-storage: the region")
    add_pull_arguments(sub)


def _projects(values: list[str]) -> ProjectRef | dict[str, ProjectRef] | None:
    def ref(text: str) -> ProjectRef:
        return int(text) if text.isdigit() else text

    if not values:
        return None
    keyed = ["=" in v for v in values]
    if all(keyed):
        pairs = [v.split("=", 1) for v in values]
        return {model.strip(): ref(target.strip()) for model, target in pairs}
    if len(values) == 1:
        return ref(values[0])
    raise ConfigurationError("--project: give one project, or one MODEL_ID=TITLE_OR_ID per model")


def _summary(result: PushResult) -> list[str]:
    version = f"version {result.version}" if result.version else "unversioned"
    lines = [f"dataset: {result.dataset} ({version})"]
    for model_id, project in sorted(result.projects.items()):
        made = " (created)" if project.id in result.created_projects else ""
        lines.append(f"project {project.id} {project.title!r}{made}: model {model_id}")
    lines.append(f"selected: {result.selected}")
    lines.append(f"tasks created: {result.created} ({result.import_requests} import requests)")
    recovered = f" ({result.recovered} found in the project, now in the ledger)"
    lines.append(
        f"already present: {result.already_present}" + (recovered if result.recovered else "")
    )
    skipped = ", ".join(f"{reason} {n}" for reason, n in sorted(result.skipped.items()))
    lines.append(f"skipped: {sum(result.skipped.values())}" + (f" ({skipped})" if skipped else ""))
    return lines


def _progress(what: str, count: int) -> None:
    say(f"modzy-retrain label push: {count} {what}", file=sys.stderr, flush=True)


def _s3_storage(args: Any, options: dict[str, Any]) -> S3StorageSettings | None:
    """The S3 storage ``--s3-storage`` asks for, from the dataset's own options."""
    if not args.s3_storage:
        if args.s3_endpoint or args.s3_region:
            raise ConfigurationError("--s3-endpoint and --s3-region go with --s3-storage")
        return None
    kwargs = options.get("client_kwargs")
    region = kwargs.get("region_name") if isinstance(kwargs, dict) else None
    return S3StorageSettings(
        endpoint_url=args.s3_endpoint or options.get("endpoint_url"),
        region_name=args.s3_region or region,
        access_key_id=options.get("key"),
        secret_access_key=options.get("secret"),
        session_token=options.get("token"),
    )


def run_label_command(args: Any) -> int:
    if args.label_command == "pull":
        return run_pull_command(args)
    try:
        options = parse_key_values(args.storage_option)
        project = _projects(args.project)
        states = set(args.state or DEFAULT_STATES)
        models = set(args.model or ())

        def select(sample: PublishedSample) -> bool:
            return sample.label_state in states and (not models or sample.model_id in models)

        s3 = _s3_storage(args, options)
        client = LabelStudioClient(args.label_studio_url)
    except (ConfigurationError, ValueError) as exc:
        say(f"modzy-retrain label push: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with client:
            result = push_to_label_studio(
                args.url,
                client=client,
                version=args.version,
                select=select,
                project=project,
                local_files_root=args.local_files_root,
                storage_options=options,
                chunk_size=args.chunk_size,
                s3_storage=s3,
                progress=_progress,
            )
    except ConfigurationError as exc:
        say(f"modzy-retrain label push: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DatasetLockedError as exc:
        say(f"modzy-retrain label push: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except (DatasetError, LabelStudioError, MissingDependencyError, OSError) as exc:
        # Every LabelStudioError is redacted at its source: the token never shows.
        say(f"modzy-retrain label push: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as exc:
        if not is_store_error(exc):
            raise
        # A store's client out of retries (gcsfs's HttpError, aiohttp's ClientError).
        say(f"modzy-retrain label push: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    for line in _summary(result):
        say(line)
    return EXIT_PUBLISHED
