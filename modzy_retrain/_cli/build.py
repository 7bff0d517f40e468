"""``modzy-retrain build``: the whole chain as one scheduled, incremental run.

Settings come from a TOML file, overridden by command-line flags. The API key is never
a setting: it comes from ``MODZY_API_KEY`` or from a file named by ``api_key_file``.
Each build publishes a new version of a versioned dataset (or nothing, when nothing
changed), then evaluates the retraining gate and fires the trigger once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from modzy_retrain._client.client import ModzyClient
from modzy_retrain._core.exceptions import ConfigurationError, NotFoundError
from modzy_retrain._core.fs import check_backend, require_module, storage_errors, url_to_fs
from modzy_retrain._core.secrets import public_url
from modzy_retrain._dataset.journal import ResultJournal
from modzy_retrain._dataset.lock import DatasetLock
from modzy_retrain._dataset.manifest import (
    Checkpoint,
    Manifest,
    latest_version,
    load_checkpoint,
    load_manifest,
)
from modzy_retrain._dataset.quarantine import UnavailableJobs
from modzy_retrain._dataset.trigger import TriggerGate
from modzy_retrain._stages.fetch import ResultFetcher
from modzy_retrain._stages.guard import MisconfigurationGuard
from modzy_retrain._stages.labels import LabelPolicy
from modzy_retrain._stages.lineage import LineageResolver
from modzy_retrain._stages.query import JobHistoryQuery
from modzy_retrain._stages.report import RESULTS_UNAVAILABLE, RunReport
from modzy_retrain._stages.selectors import AnyOf, MinVotes, Selector, selector_from_setting
from modzy_retrain._stages.sql_lineage import SqlLineageResolver
from modzy_retrain._stages.votes import VoteFilter
from modzy_retrain._stages.write import DatasetWriter
from modzy_retrain._triggers.fire import Firing, TriggerActions, fire

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
from .lineage import check_lineage, lineage_stage, template_roots
from .plan import Plan
from .settings import BuildSettings, load_settings, read_api_key
from .window import window_notes, window_published

logger = logging.getLogger("modzy_retrain")

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
        retried: The quarantined jobs this run tried again (``retry_quarantined``);
            those not in ``report.quarantined`` any more recovered.
    """

    report: RunReport
    exit_code: int
    firing: Firing | None = None
    recovered: Firing | None = None
    plan: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    retried: list[str] = field(default_factory=list)
    # A published version that passed the gate: fired once the lock is let go.
    ready: Manifest | None = field(default=None, repr=False)


def _selector(settings: BuildSettings) -> Selector:
    chosen = [selector_from_setting(value) for value in settings.select]
    selector: Selector = chosen[0] if len(chosen) == 1 else AnyOf(*chosen)
    if settings.min_votes is not None:
        selector = selector & MinVotes(settings.min_votes)
    return selector


def check_settings(settings: BuildSettings) -> None:
    """Everything that can be checked before any request or write.

    Raises:
        ConfigurationError: No lineage, an output that is a file, an unknown protocol.
        MissingDependencyError: The format or a store needs an extra not installed.
    """
    check_lineage(settings)
    if settings.format == "parquet":
        require_module("pyarrow", "the parquet format", "parquet")
    url = str(settings.out)
    check_backend(url, "--out")
    for root in template_roots(settings):
        check_backend(root, "--input-template")
    if settings.input_root:
        check_backend(settings.input_root, "--input-root")
    if settings.label_file:
        check_backend(settings.label_file, "--label-file")
    fs, root = url_to_fs(url, settings.storage_options)
    if fs.isfile(root):
        raise ConfigurationError(f"--out is a file ({public_url(url)}): give a folder URL")


def _input_options(settings: BuildSettings) -> dict[str, Any]:
    if settings.input_storage_options is not None:
        return settings.input_storage_options
    return settings.storage_options


def _stages(
    settings: BuildSettings, in_options: dict[str, Any]
) -> tuple[VoteFilter, LineageResolver | SqlLineageResolver]:
    """The selection and lineage stages, built (and so checked) before any request."""
    select = VoteFilter(
        _selector(settings),
        policy=LabelPolicy(min_agreement=settings.min_agreement),
        label_file=settings.label_file,
        storage_options=in_options,
    )
    return select, lineage_stage(settings, in_options)


def build(
    settings: BuildSettings,
    *,
    environ: Mapping[str, str],
    dry_run: bool = False,
    on_ready: Callable[[dict[str, Any]], None] | None = None,
    transport: httpx.BaseTransport | None = None,
    progress: Callable[[RunReport], None] | None = None,
    client: ModzyClient | None = None,
    trigger_sleep: Callable[[float], None] | None = None,
    report: RunReport | None = None,
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
        trigger_sleep: What waits between a trigger action's attempts (default
            ``time.sleep``; tests pass a recorder).
        report: The run report to fill (default: a new one): a caller holding it
            still has what the run did when the build raises.

    Returns:
        A :class:`BuildResult` whose ``exit_code`` is the command's.

    Raises:
        ConfigurationError: An invalid setting, or a trigger action's token or URL
            missing from ``environ``, before any request (exit code 2).
        MissingDependencyError: An extra the settings need (exit code 2).
        DatasetLockedError: Another build holds the dataset (exit code 8).
        StorageError: A store's own library failed (an S3 endpoint that cannot be
            reached...), exit code 1.
    """
    with storage_errors():
        return _build(
            settings, environ, dry_run, on_ready, transport, progress, client, trigger_sleep, report
        )


def _build(
    settings: BuildSettings,
    environ: Mapping[str, str],
    dry_run: bool,
    on_ready: Callable[[dict[str, Any]], None] | None,
    transport: httpx.BaseTransport | None,
    progress: Callable[[RunReport], None] | None,
    client: ModzyClient | None,
    trigger_sleep: Callable[[float], None] | None,
    report: RunReport | None,
) -> BuildResult:
    check_settings(settings)
    url = str(settings.out)
    out_options = settings.storage_options
    in_options = _input_options(settings)
    select, resolve = _stages(settings, in_options)
    if isinstance(resolve, SqlLineageResolver):
        # Before any request to the API: the database answers, the queries are its.
        resolve.check()
    guard = MisconfigurationGuard(settings.max_failure_share)
    t = settings.trigger
    actions = TriggerActions(on_ready, t.on_ready, t.webhook, tuple(t.actions))
    if not dry_run:  # tokens are read now: a missing one is exit 2, not a failed trigger
        actions = actions.prepare(environ)
    report = report if report is not None else RunReport()
    run = _Run(settings, url, out_options, in_options, actions, report, dry_run, progress)
    run.sleep = trigger_sleep or time.sleep
    # Nothing slow runs under the dataset's lock: a ready version whose firing never
    # completed fires before it is taken, this build's own after it is let go. Each
    # action is recorded per version and carries the version as idempotency key, so
    # two builds firing at once deliver it at least once, never skip it.
    recovered = run.fire_pending()
    lock = None
    if not dry_run:
        # The build holds the dataset's lock while it reads and writes (its writer
        # takes it again): two builds never fetch and merge the same window at once.
        fs, root = url_to_fs(url, out_options)
        lock = DatasetLock(fs, root, report.run_id)
        lock.acquire()
    try:
        result = run.go(environ, transport, client, select, resolve, guard)
    finally:
        if lock is not None:
            lock.release()
    result.recovered = recovered
    if result.ready is not None:
        result.firing = run.fire(result.ready)
        result.exit_code = EXIT_PUBLISHED if result.firing.ok else EXIT_TRIGGER_FAILED
    pending = result.recovered
    if pending is not None and not pending.ok and result.exit_code in _FIRING_HIDES:
        result.exit_code = EXIT_TRIGGER_FAILED  # an earlier version's trigger failed again
    if result.report.unavailable_jobs and result.exit_code not in (
        EXIT_TRIGGER_FAILED,
        EXIT_MISCONFIGURED,
    ):
        # Published or not, the run is short of some jobs: a scheduler must see it.
        # Nothing is lost: those jobs hold the checkpoint, so the next run fetches them.
        result.exit_code = EXIT_INCOMPLETE
    return result


_FIRING_HIDES = (EXIT_PUBLISHED, EXIT_NOTHING_NEW, EXIT_BELOW_THRESHOLD)


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
    sleep: Callable[[float], None] = time.sleep

    def fire(self, manifest: Manifest) -> Firing:
        url = public_url(self.url) or self.url
        opts = self.out_options
        return fire(url, manifest, self.actions, storage_options=opts, sleep=self.sleep)

    def fire_pending(self) -> Firing | None:
        """Fire a ready version whose firing never completed (a crash, a failed
        command): before anything else, once per action and version, across reruns."""
        url, opts = self.url, self.out_options
        if self.dry_run or not self.actions.any:
            return None
        latest = None
        try:
            latest = latest_version(url, storage_options=opts)
            previous = load_manifest(url, storage_options=opts) if latest else None
        except Exception as exc:
            # Never the build's failure: what the version needs, the build reads again
            # (and fails there if it must); the firing is tried again next run.
            error = f"the pending trigger could not be read: {type(exc).__name__}: {exc}"
            logger.warning("%s", error)
            return Firing(latest or "the latest version", ok=False, error=error)
        if previous is None or previous.trigger is None or not previous.trigger.ready:
            return None
        return self.fire(previous)

    def go(
        self,
        environ: Mapping[str, str],
        transport: httpx.BaseTransport | None,
        given_client: ModzyClient | None,
        select: VoteFilter,
        resolve: LineageResolver | SqlLineageResolver,
        guard: MisconfigurationGuard,
    ) -> BuildResult:
        settings, url, out_options = self.settings, self.url, self.out_options
        since = load_checkpoint(url, storage_options=out_options)
        notes = window_notes(settings, since)
        passed = window_published(settings, since)
        if passed is not None:
            # Another writer (a build with a later end, run first) published every job
            # of this window: nothing is left to read.
            return BuildResult(self.report, EXIT_NOTHING_NEW, notes=[*notes, passed])
        client = given_client or ModzyClient(
            api_key=read_api_key(settings, environ),
            base_url=settings.base_url,
            transport=transport,
            max_response_bytes=settings.max_response_bytes,
        )
        with contextlib.nullcontext(client) if given_client else client:
            unknown = _unknown_models(client, settings.model_id)
            if unknown:
                return BuildResult(self.report, EXIT_MISCONFIGURED, problems=unknown, notes=notes)
            result = self._chain(client, since, select, resolve, guard)
        result.notes = notes + result.notes
        return result

    def _chain(
        self,
        client: ModzyClient,
        since: Checkpoint | None,
        select: VoteFilter,
        resolve: LineageResolver | SqlLineageResolver,
        guard: MisconfigurationGuard,
    ) -> BuildResult:
        s, url, out_options = self.settings, self.url, self.out_options
        # Jobs whose results were unavailable in earlier runs: counted, or quarantined
        # (skipped, or with retry_quarantined fetched again by id).
        fs, root = url_to_fs(url, out_options)
        unavailable = UnavailableJobs.load(fs, root)
        quarantine = unavailable.quarantine(retry=s.retry_quarantined)
        self.report.progress.watch(unavailable.ids)
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
                quarantine=quarantine,
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
        # Published or not (most runs that meet a poison job publish nothing), under
        # the build's lock: each unavailable job's attempt is counted, a job read
        # leaves the count. Written only when it changed.
        before = dict(unavailable.jobs)
        unavailable.record(
            failed=report.unavailable,
            reason=RESULTS_UNAVAILABLE,
            had=report.progress.had,
            at=report.started_at,
            after=s.quarantine_after,
        )
        if unavailable.jobs != before:
            unavailable.save(fs, root)
        report.quarantined = list(unavailable.quarantine().jobs)
        result = self._outcome(report)
        result.retried = sorted(quarantine.ids) if quarantine.retry else []
        return result

    def _outcome(self, report: RunReport) -> BuildResult:
        dataset = report.dataset or {}
        if dataset.get("refused"):
            return BuildResult(report, EXIT_MISCONFIGURED, problems=list(dataset["refused"]))
        if not dataset.get("published"):
            return BuildResult(report, EXIT_NOTHING_NEW)
        manifest = load_manifest(self.url, storage_options=self.out_options)
        assert manifest.trigger is not None
        if not manifest.trigger.ready:
            return BuildResult(report, EXIT_BELOW_THRESHOLD)
        return BuildResult(report, EXIT_PUBLISHED, ready=manifest)

    def _dry_run(self, chain: Any, guard: MisconfigurationGuard) -> BuildResult:
        it = chain.stream(self.report)
        # Counted as they pass, never kept: a sample may carry its input's bytes.
        with Plan(self.url, self.out_options) as plan:
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
