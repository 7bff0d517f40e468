"""``modzy-retrain build``: the whole chain as one scheduled, incremental run.

Settings come from a TOML file, overridden by command-line flags. The API key is never
a setting: it comes from ``MODZY_API_KEY`` or from a file named by ``api_key_file``.
Each build publishes a new version of a versioned dataset (or nothing, when nothing
changed), then evaluates the retraining gate and fires the trigger once.
"""

from __future__ import annotations

import contextlib
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from modzy_retrain._client.client import ModzyClient
from modzy_retrain._core.exceptions import ConfigurationError, NotFoundError
from modzy_retrain._core.fs import check_backend, require_module, url_to_fs
from modzy_retrain._dataset.human import rule_sources
from modzy_retrain._dataset.journal import ResultJournal
from modzy_retrain._dataset.layout import public_url
from modzy_retrain._dataset.lock import DatasetLock
from modzy_retrain._dataset.manifest import (
    Checkpoint,
    latest_version,
    load_checkpoint,
    load_manifest,
)
from modzy_retrain._dataset.tables import ScratchTables
from modzy_retrain._dataset.trigger import Firing, TriggerActions, TriggerGate, fire
from modzy_retrain._dataset.versions import load_previous
from modzy_retrain._stages.fetch import ResultFetcher
from modzy_retrain._stages.guard import MisconfigurationGuard
from modzy_retrain._stages.labels import LabelPolicy
from modzy_retrain._stages.lineage import LineageResolver
from modzy_retrain._stages.query import JobHistoryQuery
from modzy_retrain._stages.records import Sample
from modzy_retrain._stages.report import RunReport
from modzy_retrain._stages.selectors import AnyOf, MinVotes, Selector, selector_from_setting
from modzy_retrain._stages.votes import VoteFilter
from modzy_retrain._stages.write import DatasetWriter

from .exit_codes import (
    EXIT_BELOW_THRESHOLD,
    EXIT_ERROR,
    EXIT_INCOMPLETE,
    EXIT_LOCKED,
    EXIT_MISCONFIGURED,
    EXIT_NOTHING_NEW,
    EXIT_PUBLISHED,
    EXIT_TRIGGER_FAILED,
    EXIT_USAGE,
)
from .settings import BuildSettings, load_settings, read_api_key

__all__ = [
    "EXIT_BELOW_THRESHOLD",
    "EXIT_ERROR",
    "EXIT_INCOMPLETE",
    "EXIT_LOCKED",
    "EXIT_MISCONFIGURED",
    "EXIT_NOTHING_NEW",
    "EXIT_PUBLISHED",
    "EXIT_TRIGGER_FAILED",
    "EXIT_USAGE",
    "BuildResult",
    "BuildSettings",
    "build",
    "load_settings",
    "read_api_key",
]


@dataclass
class BuildResult:
    """What a build did, and the exit code it maps to.

    Attributes:
        report: The run report (``report.dataset`` says what was published).
        exit_code: One of the exit codes (``modzy-retrain build --help``).
        firing: The trigger's firing for the version published, if it fired.
        recovered: A pending firing of an earlier version, fired first.
        plan: A dry run's plan (what would be written).
        problems: Why nothing was published when the configuration looks wrong
            (exit code 7), one line each.
        notes: What the user should know about how settings were applied.
    """

    report: RunReport
    exit_code: int
    firing: Firing | None = None
    recovered: Firing | None = None
    plan: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _selector(settings: BuildSettings) -> Selector:
    chosen = [selector_from_setting(value) for value in settings.select]
    selector: Selector = chosen[0] if len(chosen) == 1 else AnyOf(*chosen)
    if settings.min_votes is not None:
        selector = selector & MinVotes(settings.min_votes)
    return selector


def _template_roots(settings: BuildSettings) -> list[str]:
    """The fixed part of each input template (what is before its first field)."""
    templates = [settings.input_template, *settings.input_templates.values()]
    return [t.split("{", 1)[0] or "." for t in templates if t]


def check_settings(settings: BuildSettings) -> None:
    """Everything that can be checked before any request or write.

    Raises:
        ConfigurationError: No lineage, an output that is a file, an unknown protocol.
        MissingDependencyError: The format or a store needs an extra not installed.
    """
    if not settings.input_template and not settings.input_templates:
        raise ConfigurationError("no lineage: give --input-template (per model: MODEL_ID=...)")
    if settings.format == "parquet":
        require_module("pyarrow", "the parquet format", "parquet")
    url = str(settings.out)
    check_backend(url, "--out")
    for root in _template_roots(settings):
        check_backend(root, "--input-template")
    if settings.label_file:
        check_backend(settings.label_file, "--label-file")
    fs, root = url_to_fs(url, settings.storage_options)
    if fs.isfile(root):
        raise ConfigurationError(f"--out is a file ({public_url(url)}): give a folder URL")


def _input_options(settings: BuildSettings) -> dict[str, Any]:
    if settings.input_storage_options is not None:
        return settings.input_storage_options
    return settings.storage_options


def _stages(settings: BuildSettings, in_options: dict[str, Any]) -> tuple[Any, Any]:
    """The selection and lineage stages, built (and so checked) before any request."""
    select = VoteFilter(
        _selector(settings),
        policy=LabelPolicy(min_agreement=settings.min_agreement),
        label_file=settings.label_file,
        storage_options=in_options,
    )
    resolve = LineageResolver(
        settings.input_template,
        templates=settings.input_templates,
        storage_options=in_options,
        max_bytes=settings.max_input_bytes,
    )
    return select, resolve


def build(
    settings: BuildSettings,
    *,
    environ: Mapping[str, str],
    dry_run: bool = False,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    transport: httpx.BaseTransport | None = None,
    progress: Callable[[RunReport], None] | None = None,
    client: ModzyClient | None = None,
) -> BuildResult:
    """Run one build: query, fetch, select, resolve and (unless ``dry_run``) publish.

    Args:
        settings: What to build (see :func:`load_settings` for a TOML file and flags).
        environ: Where the API key is read from (``MODZY_API_KEY``).
        dry_run: Write nothing; the result's ``plan`` says what would be written.
        on_ready: Called with the trigger's payload when a version is ready.
        transport: An httpx transport for the client the build makes (the sandbox's).
        progress: Called with the report as the run goes.
        client: A client to use as it is (its retries, timeouts, transport), left
            open; by default the build makes one from the settings and closes it.

    Returns:
        A :class:`BuildResult` whose ``exit_code`` is the command's.

    Raises:
        ConfigurationError: An invalid setting, before any request (exit code 2).
        MissingDependencyError: An extra the settings need (exit code 2).
        DatasetLockedError: Another build holds the dataset (exit code 8).
    """
    check_settings(settings)
    url = str(settings.out)
    out_options = settings.storage_options
    in_options = _input_options(settings)
    select, resolve = _stages(settings, in_options)
    guard = MisconfigurationGuard(settings.max_failure_share)
    actions = TriggerActions(on_ready, settings.trigger.on_ready, settings.trigger.webhook)
    report = RunReport()
    lock = None
    if not dry_run:
        # The whole build holds the dataset's lock (its writer takes it again): so a
        # pending trigger, and this build's own, can never fire twice at once.
        fs, root = url_to_fs(url, out_options)
        lock = DatasetLock(fs, root, report.run_id)
        lock.acquire()
    try:
        run = _Run(settings, url, out_options, in_options, actions, report, dry_run, progress)
        result = run.go(environ, transport, client, select, resolve, guard)
    finally:
        if lock is not None:
            lock.release()
    if result.report.unavailable_jobs and result.exit_code not in (
        EXIT_TRIGGER_FAILED,
        EXIT_MISCONFIGURED,
    ):
        # Published or not, the run is short of some jobs: a scheduler must see it.
        # Nothing is lost: those jobs hold the checkpoint, so the next run fetches them.
        result.exit_code = EXIT_INCOMPLETE
    return result


@dataclass
class _Run:
    """One build under its lock (the steps of :func:`build`)."""

    settings: BuildSettings
    url: str
    out_options: dict[str, Any]
    in_options: dict[str, Any]
    actions: TriggerActions
    report: RunReport
    dry_run: bool
    progress: Callable[[RunReport], None] | None

    def go(
        self,
        environ: Mapping[str, str],
        transport: httpx.BaseTransport | None,
        given_client: ModzyClient | None,
        select: VoteFilter,
        resolve: LineageResolver,
        guard: MisconfigurationGuard,
    ) -> BuildResult:
        settings, url, out_options = self.settings, self.url, self.out_options
        since = load_checkpoint(url, storage_options=out_options)
        notes = self._window(since)
        recovered = None
        if (
            not self.dry_run
            and self.actions.any
            and latest_version(url, storage_options=out_options)
        ):
            # A ready version whose firing never completed (a crash, a failed command)
            # fires now, before anything else: once per version, across reruns.
            previous = load_manifest(url, storage_options=out_options)
            if previous.trigger is not None and previous.trigger.ready:
                recovered = fire(
                    public_url(url) or url, previous, self.actions, storage_options=out_options
                )
        client = given_client or ModzyClient(
            api_key=read_api_key(settings, environ),
            base_url=settings.base_url,
            transport=transport,
            max_response_bytes=settings.max_response_bytes,
        )
        with contextlib.nullcontext(client) if given_client else client:
            unknown = _unknown_models(client, settings.model_id)
            if unknown:
                return BuildResult(
                    self.report,
                    EXIT_MISCONFIGURED,
                    recovered=recovered,
                    problems=unknown,
                    notes=notes,
                )
            result = self._chain(client, since, select, resolve, guard)
        result.recovered = recovered
        result.notes = notes + result.notes
        return result

    def _window(self, since: Checkpoint | None) -> list[str]:
        """Check ``start`` and ``rebuild_from`` against the checkpoint; notes to show."""
        s = self.settings
        if since is None or since.cursor is None:
            return []
        if s.rebuild_from is not None:
            return [
                f"rebuilding from {s.rebuild_from.isoformat()}: the history is read again "
                f"from there (the checkpoint was at {since.cursor.isoformat()})"
            ]
        if s.start is not None and s._start_from_flag:
            raise ConfigurationError(
                f"the dataset has a checkpoint (cursor {since.cursor.isoformat()}): --start "
                "only sets the first build's window. To read the history again from a "
                "time into a new version, use --rebuild-from TIMESTAMP"
            )
        if s.start is not None and s.start < since.cursor - s.lag:
            return [
                f"start = {s.start.isoformat()} applies to the first build; reading from "
                f"the checkpoint at {since.cursor.isoformat()} (use --rebuild-from to read "
                "again from an earlier time)"
            ]
        return []

    def _chain(
        self,
        client: ModzyClient,
        since: Checkpoint | None,
        select: VoteFilter,
        resolve: LineageResolver,
        guard: MisconfigurationGuard,
    ) -> BuildResult:
        s, url, out_options = self.settings, self.url, self.out_options
        with contextlib.ExitStack() as cleanup:
            journal = None
            if not self.dry_run:
                # Results a killed build from the same checkpoint already fetched.
                journal = ResultJournal(
                    url, after=since.version if since else None, storage_options=out_options
                )
                cleanup.callback(journal.close)  # what load() copied to scratch
                journal.load()
            rebuild = s.rebuild_from is not None
            query = JobHistoryQuery(
                client,
                start=s.rebuild_from if rebuild else s.start,
                end=s.end,
                model=s.model,
                model_id=s.model_id or None,
                model_version=s.model_version or None,
                user=s.user,
                since=None if rebuild else since,
                lag=s.lag,
                max_pages=s.max_history_pages,
            )
            fetch = ResultFetcher(
                client,
                concurrency=s.concurrency,
                journal=journal,
                max_bytes_in_flight=s.max_bytes_in_flight,
                max_inputs_per_job=s.max_inputs_per_job,
            )
            chain = query | fetch | select | resolve
            if self.dry_run:
                return self._dry_run(chain, guard)
            gate = TriggerGate(
                s.trigger.min_new, s.trigger.min_new_per_label, s.trigger.min_since_last
            )
            writer = DatasetWriter(
                url,
                format=s.format,
                versioned=True,
                storage_options=out_options,
                source_storage_options=self.in_options,
                trigger=gate,
                journal=journal,
                guard=guard,
                allow_new_classes=s.allow_new_classes,
            )
            it = (chain | writer).stream(self.report)
            for _ in _tap(it, self.progress):
                pass
            report = it.report.finish()
        dataset = report.dataset or {}
        if dataset.get("refused"):
            return BuildResult(report, EXIT_MISCONFIGURED, problems=list(dataset["refused"]))
        if not dataset.get("published"):
            return BuildResult(report, EXIT_NOTHING_NEW)
        manifest = load_manifest(url, storage_options=out_options)
        assert manifest.trigger is not None
        if not manifest.trigger.ready:
            return BuildResult(report, EXIT_BELOW_THRESHOLD)
        firing = fire(public_url(url) or url, manifest, self.actions, storage_options=out_options)
        code = EXIT_PUBLISHED if firing.ok else EXIT_TRIGGER_FAILED
        return BuildResult(report, code, firing=firing)

    def _dry_run(self, chain: Any, guard: MisconfigurationGuard) -> BuildResult:
        it = chain.stream(self.report)
        # Counted as they pass, never kept: a sample may carry its input's bytes.
        with _Plan(self.url, self.out_options) as plan:
            for sample in _tap(it, self.progress):
                plan.add(sample)
            report = it.report.finish()
            summary = plan.summary(report)
            suspicions = guard.check(report, plan.by_model)
        if suspicions:
            problems = [s.message for s in suspicions]
            return BuildResult(report, EXIT_MISCONFIGURED, plan=summary, problems=problems)
        code = EXIT_NOTHING_NEW if summary["new"] == 0 else EXIT_PUBLISHED
        return BuildResult(report, code, plan=summary)


def _unknown_models(client: ModzyClient, model_ids: list[str]) -> list[str]:
    """The ``model_id`` settings the API does not know (a typo publishes nothing)."""
    problems = []
    for model_id in model_ids:
        try:
            client.models.retrieve(model_id)
        except NotFoundError:
            problems.append(
                f"model {model_id} is unknown to the API (GET /models/{model_id}: 404): "
                "check model_id"
            )
    return problems


def _tap(it: Any, progress: Callable[[RunReport], None] | None) -> Any:
    for n, item in enumerate(it, 1):
        if progress is not None and n % 50 == 0:
            progress(it.report)
        yield item
    if progress is not None:
        progress(it.report)


class _Plan:
    """What a dry run would write, counted sample by sample; what is new is judged
    against the latest version, loaded into a scratch database as the writer would."""

    def __init__(self, url: str, storage_options: Mapping[str, Any]) -> None:
        self.samples = 0
        self.bytes = 0
        self.by_model: Counter[str] = Counter()
        self.model_names: dict[str, str] = {}
        self.by_state: Counter[str] = Counter()
        self._scratch = ScratchTables()
        try:
            self._scratch.complete_jobs()  # the merge's join needs the table; none here
            latest = latest_version(url, storage_options=storage_options)
            self._previous = latest is not None
            if latest is not None:
                fs, root = url_to_fs(url, storage_options)
                previous = load_manifest(url, storage_options=storage_options)
                load_previous(self._scratch, fs, root, previous)
        except BaseException:
            self._scratch.close()
            raise

    def __enter__(self) -> _Plan:
        return self

    def __exit__(self, *exc: object) -> None:
        self._scratch.close()

    def add(self, sample: Sample) -> None:
        if sample.sha256 is not None:
            first = self._scratch.first_with(sample.sha256, sample.job_id, sample.input_name)
            if first is not None and (first[0], first[1]) != (sample.job_id, sample.input_name):
                return  # the writer would skip it as a duplicate of that content
        self.samples += 1
        self.bytes += sample.size or 0
        self.by_model[sample.record.model_id] += 1
        if sample.record.model_name:
            self.model_names.setdefault(sample.record.model_id, sample.record.model_name)
        self.by_state[sample.label_state] += 1
        self._scratch.add_sample(
            sample.job_id,
            sample.input_name,
            sample.label,
            sample.label_state,
            "+".join(rule_sources(sample.rule)),
        )

    def _new(self) -> int:
        """Samples added, or relabelled against the latest version (retractions are
        only known when a version is written)."""
        added = self._scratch.added()
        relabelled = sum(
            1
            for row, is_new, label, state, human, _ in self._scratch.merged()
            if is_new and _label_of(row) != (label, state, human)
        )
        return added + relabelled

    def summary(self, report: RunReport) -> dict[str, Any]:
        return {
            "jobs": report.stages["query"].items_out if "query" in report.stages else 0,
            "inputs": report.inputs_seen,
            "samples": self.samples,
            "new": self._new(),
            "by_model": dict(self.by_model),
            "model_names": dict(self.model_names),
            "by_label_state": dict(self.by_state),
            "excluded": report.drops_by_reason(),
            "estimated_bytes": self.bytes,
        }


def _label_of(row: str) -> tuple[Any, Any, str]:
    """What a relabelling changes (as ``versions.carry_over`` compares it)."""
    data = json.loads(row)
    human = "+".join(rule_sources(str(data.get("rule") or "")))
    return data.get("label"), data.get("label_state"), human
