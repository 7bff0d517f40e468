"""``modzy-retrain build``: flags, progress display, output, exit codes."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from typing import Any

from modzy_retrain._core.constants import API_KEY_ENV
from modzy_retrain._core.exceptions import (
    ConfigurationError,
    MissingDependencyError,
    ModzyRetrainError,
)
from modzy_retrain._core.fs import is_store_error
from modzy_retrain._dataset.lock import DatasetLockedError
from modzy_retrain._stages.report import RunReport
from modzy_retrain._triggers.presets import FLAG_FORMS, parse_trigger_flag

from .build import (
    EXIT_BELOW_THRESHOLD,
    EXIT_ERROR,
    EXIT_INCOMPLETE,
    EXIT_LOCKED,
    EXIT_NOTHING_NEW,
    EXIT_TRIGGER_FAILED,
    EXIT_USAGE,
    build,
    load_settings,
)
from .report_file import exit_code_of, failure_body, result_body, write_report
from .terminal import say
from .trigger_output import firing_line


def add_build_arguments(parser: Any) -> None:
    add = parser.add_argument
    add("--config", help="TOML settings file (flags override it)")
    add("--base-url", help="Modzy host or API root (else $MODZY_BASE_URL)")
    add("--api-key-file", help=f"file holding the API key (else ${API_KEY_ENV})")
    add(
        "--start",
        help="jobs created at or after (ISO 8601); the first build's window only: "
        "refused on a dataset with a checkpoint (see --rebuild-from)",
    )
    add(
        "--rebuild-from",
        metavar="TIMESTAMP",
        help="read the history again from this time (ISO 8601) into a new version, "
        "whatever the checkpoint says (after fixing a template, for example)",
    )
    add("--end", help="jobs created at or before (ISO 8601)")
    add("--model", help="model name (fuzzy)")
    add("--model-id", action="append", help="model identifier (repeatable)")
    add("--model-version", action="append", help="model version (repeatable)")
    add("--lag", help="re-read this window before the checkpoint, e.g. 3d (late votes)")
    add(
        "--select",
        action="append",
        help="which predictions, repeatable (any one matching): down-voted, up-voted, "
        "conflict, any-votes, everything, top-score-below:0.6, min-votes:2, "
        "down-share:0.5, net-score:..-1, predicted-in:cat,dog",
    )
    add("--min-votes", type=int, help="only predictions with at least this many votes")
    add("--min-agreement", type=float, help="share of votes that makes them agree (0.5-1)")
    add("--label-file", help="CSV or JSONL of labels by job_id and input_name (any URL)")
    add(
        "--allow-new-classes",
        action="store_true",
        default=None,
        help="write a label-file label its model never output (else dropped, reported)",
    )
    add(
        "--input-template",
        action="append",
        metavar="[MODEL_ID=]TEMPLATE",
        help="where raw inputs live, e.g. s3://raw/{job_id}/{input_name}.png (repeatable)",
    )
    add(
        "--input-query",
        action="append",
        metavar="[MODEL_ID=]SQL",
        help="or: a query finding raw inputs in --input-database, answering payload (the "
        'bytes) or url/path (a pointer), e.g. "SELECT payload FROM requests WHERE '
        'job_id = :job_id AND input_name = :input_name" (repeatable)',
    )
    add("--input-database", metavar="URL", help="SQLAlchemy URL of --input-query's database")
    add(
        "--input-database-password-env",
        metavar="NAME",
        help="environment variable holding its password (else the driver's conventions, "
        "e.g. PGPASSWORD or ~/.pgpass; never in the URL)",
    )
    add("--input-root", metavar="URL", help="pointers a query answers must lie under this root")
    add("--out", help="dataset URL (any fsspec URL)")
    add("--format", choices=["jsonl", "csv", "parquet"], help="dataset format (default jsonl)")
    add(
        "--storage-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="fsspec option (repeatable, JSON values decoded)",
    )
    add("--concurrency", type=int, help="jobs fetched at once")
    add(
        "--max-input-bytes",
        type=int,
        help="refuse raw inputs larger than this (reported as source_too_large)",
    )
    add(
        "--max-failure-share",
        type=float,
        help="publish nothing (exit 7) when more than this share of a model's inputs "
        "fail in lineage for one reason (default 0.5; all of them always do)",
    )
    add(
        "--quarantine-after",
        type=int,
        metavar="N",
        help="quarantine a job whose results were unavailable in N runs in a row: later "
        "runs skip it and no longer exit 6 for it (default 3; 0: never)",
    )
    add(
        "--retry-quarantined",
        action="store_true",
        default=None,
        help="fetch the quarantined jobs again by id; one whose results are had leaves "
        "the quarantine and its samples are written",
    )
    add("--report", help="write the run report as JSON to this path")
    add("--dry-run", action="store_true", help="show the plan; write nothing")
    add("--min-new", type=int, help="retraining threshold: new samples in the version")
    add(
        "--min-new-per-label",
        action="append",
        default=[],
        metavar="LABEL=N",
        help="retraining threshold per label (repeatable)",
    )
    add("--min-since-last", type=int, help="retraining threshold: new since last trigger")
    add("--on-ready", metavar="CMD", help="shell command to run when a version is ready")
    add("--webhook", metavar="URL", help="URL to POST (JSON) when a version is ready")
    add(
        "--trigger",
        action="append",
        default=[],
        metavar="PRESET:TARGET",
        help="start training when a version is ready (repeatable): "
        + ", ".join(FLAG_FORMS.values())
        + "; tokens and URLs from the environment (docs/training-triggers.md)",
    )
    add("--quiet", action="store_true", help="no progress display")


_TEMPLATE_FOR_MODEL = re.compile(r"^([A-Za-z0-9_.-]+)=(.+)$")
# A query's own text starts with a keyword and a space (SELECT ..., WITH ...): a model
# id before '=' has neither spaces nor SQL's punctuation.
_QUERY_FOR_MODEL = re.compile(r"^([A-Za-z0-9_.-]+)=(\S.*)$", re.DOTALL)


def split_selectors(text: str) -> list[str]:
    """``down-voted,predicted-in:cat,dog`` -> ``["down-voted", "predicted-in:cat,dog"]``:
    a comma starts a new selector only before a selector's name."""
    from modzy_retrain._stages.selectors import PARAMETERIZED, SELECTORS

    names = {*SELECTORS, *PARAMETERIZED}
    out: list[str] = []
    for piece in text.split(","):
        if not piece.strip():
            continue
        if out and ":" in out[-1] and piece.strip().partition(":")[0] not in names:
            out[-1] += "," + piece  # a parameter's own comma (a list of labels)
        else:
            out.append(piece.strip())
    return out


def overrides_from_args(args: Any) -> dict[str, Any]:
    from modzy_retrain._core.key_values import parse_key_values

    out: dict[str, Any] = {}
    simple = {
        "base_url": args.base_url,
        "api_key_file": args.api_key_file,
        "start": args.start,
        "rebuild_from": args.rebuild_from,
        "end": args.end,
        "model": args.model,
        "lag": args.lag,
        "min_votes": args.min_votes,
        "min_agreement": args.min_agreement,
        "label_file": args.label_file,
        "allow_new_classes": args.allow_new_classes,
        "max_failure_share": args.max_failure_share,
        "quarantine_after": args.quarantine_after,
        "retry_quarantined": args.retry_quarantined,
        "out": args.out,
        "format": args.format,
        "concurrency": args.concurrency,
        "max_input_bytes": args.max_input_bytes,
        "report": args.report,
        "input_database": args.input_database,
        "input_database_password_env": args.input_database_password_env,
        "input_root": args.input_root,
    }
    out.update({k: v for k, v in simple.items() if v is not None})
    if args.model_id:
        out["model_id"] = args.model_id
    if args.model_version:
        out["model_version"] = args.model_version
    if args.select:
        out["select"] = [s for item in args.select for s in split_selectors(item)]
    for item in args.input_template or []:
        match = _TEMPLATE_FOR_MODEL.match(item)
        if match and not any(ch in match[1] for ch in "/:{"):
            out.setdefault("input_templates", {})[match[1]] = match[2]
        else:
            out["input_template"] = item
    for item in args.input_query or []:
        match = _QUERY_FOR_MODEL.match(item)
        if match:
            out.setdefault("input_queries", {})[match[1]] = match[2]
        else:
            out["input_query"] = item
    if args.storage_option:
        out["storage_options"] = parse_key_values(args.storage_option)
    trigger: dict[str, Any] = {}
    if args.min_new is not None:
        trigger["min_new"] = args.min_new
    if args.min_new_per_label:
        raw = parse_key_values(args.min_new_per_label, flag="--min-new-per-label")
        trigger["min_new_per_label"] = raw
    if args.min_since_last is not None:
        trigger["min_since_last"] = args.min_since_last
    if args.on_ready:
        trigger["on_ready"] = args.on_ready
    if args.webhook:
        trigger["webhook"] = args.webhook
    if args.trigger:
        trigger["actions"] = [parse_trigger_flag(spec) for spec in args.trigger]
    if trigger:
        out["trigger"] = trigger
    return out


class Progress:
    """Progress on stderr: one updating line on a terminal, a line a minute in CI.

    Every count is followed by its unit (jobs, inputs, samples); :meth:`done` writes
    the last line, which says done and has no ETA.
    """

    def __init__(self, stream: Any, *, quiet: bool) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = bool(getattr(stream, "isatty", lambda: False)())
        self.started = time_monotonic()
        self.last = 0.0
        self.width = 0  # the longest line so far: a shorter one pads over its tail
        self.report: RunReport | None = None

    def __call__(self, report: RunReport) -> None:
        if self.quiet:
            return
        self.report = report
        now = time_monotonic()
        interval = 0.25 if self.tty else 60.0
        if now - self.last < interval:
            return
        self.last = now
        elapsed = max(now - self.started, 1e-9)
        line = (
            f"{progress_counts(report)}, {jobs_read(report) / elapsed:.1f} jobs/s, "
            f"{seconds(elapsed)} elapsed"
        )
        eta = estimate_eta(report, elapsed)
        if eta is not None:
            line += f", ETA {seconds(eta)}"
        self._write(line, final=False)

    def done(self) -> None:
        """The final line: the run's totals, no ETA."""
        report = self.report
        if self.quiet or report is None:
            return
        elapsed = report.elapsed if report.finished_at else time_monotonic() - self.started
        self._write(f"done: {progress_counts(report)} in {seconds(elapsed)}", final=True)

    def _write(self, line: str, *, final: bool) -> None:
        if self.tty:
            self.stream.write("\r" + line.ljust(self.width) + ("\n" if final else ""))
            self.width = max(self.width, len(line))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


def seconds(value: float) -> str:
    """``"0.4 s"``, ``"12 s"``: a tenth where it shows."""
    return f"{value:.1f} s" if value < 10 else f"{value:.0f} s"


def jobs_read(report: RunReport) -> int:
    """Jobs the fetcher has taken from the history so far."""
    fetch = report.stages.get("fetch")
    return fetch.items_in if fetch else 0


def progress_counts(report: RunReport) -> str:
    """``"120 jobs, 410 inputs, 63 samples"``: jobs read, inputs seen, samples out of
    the last stage (written, or in a dry run, that would be)."""
    stages = list(report.stages.values())
    samples = stages[-1].items_out if stages else 0
    return f"{jobs_read(report)} jobs, {report.inputs_seen} inputs, {samples} samples"


def estimate_eta(report: RunReport, elapsed: float) -> float | None:
    """Seconds left, from how far the jobs seen are through the query's time window."""
    from datetime import datetime, timezone

    from modzy_retrain._core.timestamps import parse_timestamp

    query = report.query or {}
    last = report.progress.last_created
    try:
        start = parse_timestamp(query.get("start"))
        end = parse_timestamp(query.get("end")) or datetime.now(timezone.utc)
    except ValueError:
        return None
    if start is None or last is None or end <= start:
        return None
    done = (last - start) / (end - start)
    if not 0.0 < done <= 1.0:
        return None
    return elapsed * (1.0 - done) / done


def time_monotonic() -> float:
    import time

    return time.monotonic()


def run_build_command(args: Any) -> int:
    import os

    try:
        settings = load_settings(args.config, overrides_from_args(args))
    except (ConfigurationError, MissingDependencyError, ValueError) as exc:
        # Every invalid setting, from the file or a flag: nothing was requested.
        say(f"modzy-retrain build: {exc}", file=sys.stderr)
        write_report(args.report, failure_body(None, EXIT_USAGE, exc))
        return EXIT_USAGE
    # Held here: when the build raises, the report file still says what it did.
    run = RunReport()
    try:
        progress = Progress(sys.stderr, quiet=args.quiet)
        result = build(
            settings, environ=os.environ, dry_run=args.dry_run, progress=progress, report=run
        )
        progress.done()
    except BaseException as exc:
        code = _failed_code(exc)
        write_report(settings.report, failure_body(run, exit_code_of(exc, code), exc))
        if code == EXIT_ERROR and not (isinstance(exc, ModzyRetrainError) or is_store_error(exc)):
            raise  # a bug, or SIGTERM's exit: as before, with the report written
        text = f"{type(exc).__name__}: {exc}" if code == EXIT_ERROR else str(exc)
        say(f"modzy-retrain build: {text}", file=sys.stderr)
        return code
    for note in result.notes:
        say(f"modzy-retrain build: note: {note}", file=sys.stderr)
    if result.problems:
        say(
            "modzy-retrain build: nothing published, the configuration looks wrong "
            "(the checkpoint did not move):",
            file=sys.stderr,
        )
        for problem in result.problems:
            say(f"  - {problem}", file=sys.stderr)
    report = result.report
    # Written before anything is printed: a stdout closed early (`| head`) ends the
    # command there, and must not cost the report file.
    if not write_report(settings.report, result_body(result)):
        return EXIT_ERROR
    if result.plan is not None:
        say("dry run: nothing written")
        for line in plan_lines(result.plan):
            say(f"  {line}")
        say(report, block=True)
    else:
        say(report, block=True)
        for label, firing in (("pending trigger", result.recovered), ("trigger", result.firing)):
            if firing is not None and firing.shown:
                say(firing_line(label, firing), block=True)
        messages = {
            EXIT_NOTHING_NEW: "nothing new: no version published",
            EXIT_BELOW_THRESHOLD: "published, below the retraining threshold: trigger not fired",
            EXIT_TRIGGER_FAILED: "published, but the retraining trigger failed (retried next run)",
            EXIT_INCOMPLETE: "incomplete: the results of {n} job(s) could not be had after "
            "retries ({jobs}); {then}",
        }
        if result.exit_code in messages:
            jobs = report.unavailable_jobs
            held = {job.job_id for job in report.quarantined}
            now = sum(job in held for job in jobs)
            then = "the next run fetches them"
            if now:
                then = (
                    "quarantined now: later runs skip them"
                    if now == len(jobs)
                    else f"the next run fetches them, but the {now} quarantined now"
                )
            say(messages[result.exit_code].format(n=len(jobs), jobs=shown(jobs), then=then))
        for line in quarantine_lines(result):
            say(line)
    return result.exit_code


def _failed_code(exc: BaseException) -> int:
    """The exit code of a build that raised ``exc`` (a bug's: 1, and it is re-raised)."""
    if isinstance(exc, (ConfigurationError, MissingDependencyError)):
        return EXIT_USAGE
    if isinstance(exc, DatasetLockedError):
        return EXIT_LOCKED
    return EXIT_ERROR


def shown(jobs: list[str]) -> str:
    return ", ".join(jobs[:5]) + (", ..." if len(jobs) > 5 else "")


def quarantine_lines(result: Any) -> list[str]:
    """What a build says of the quarantine: what it retried, and what it skips."""
    held = [job.job_id for job in result.report.quarantined]
    lines = []
    if result.retried:
        back = [job for job in result.retried if job not in held]
        n = len(result.retried)
        lines.append(
            f"retried {n} quarantined job{'s' if n != 1 else ''}: {len(back)} recovered, "
            f"{n - len(back)} still quarantined"
        )
    if held:
        lines.append(
            f"quarantined: {len(held)} job(s) whose results stayed unavailable ("
            f"{shown(held)}); builds skip them and do not exit 6 for them, "
            "--retry-quarantined tries them again"
        )
    return lines


def plan_lines(plan: dict[str, Any]) -> list[str]:
    """A dry run's plan as lines people read: counts with their units, models by name."""
    names: dict[str, str] = plan.get("model_names", {})

    def model(model_id: str) -> str:
        name = names.get(model_id)
        return f"{name} ({model_id})" if name and name != model_id else model_id

    size = int(plan.get("estimated_bytes", 0))
    return [
        f"jobs: {plan.get('jobs', 0)}",
        f"inputs: {plan.get('inputs', 0)}",
        f"samples: {plan.get('samples', 0)}",
        f"by model: {counts_text(plan.get('by_model', {}), model)}",
        f"by label state: {counts_text(plan.get('by_label_state', {}))}",
        f"excluded inputs: {counts_text(plan.get('excluded', {}))}",
        f"estimated size: {human_bytes(size)}" + (f" ({size:,} bytes)" if size >= 1024 else ""),
    ]


def counts_text(counts: dict[str, int], name: Callable[[str], str] = str) -> str:
    """``"not_selected 40, source_missing 2"``: largest first, ``none`` when empty."""
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], name(kv[0])))
    return ", ".join(f"{name(key)} {n}" for key, n in ordered) or "none"


def human_bytes(size: int) -> str:
    """``"512 bytes"``, ``"1.5 KiB"``, ``"3.2 GiB"``."""
    if size < 1024:
        return f"{size} bytes"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"
