"""``modzy-retrain build``: the whole chain as one scheduled, incremental run.

Settings come from a TOML file, overridden by command-line flags. The API key is never
a setting: it comes from ``MODZY_API_KEY`` or from a file named by ``api_key_file``.
Each build publishes a new version of a versioned dataset (or nothing, when nothing
changed), then evaluates the retraining gate and fires the trigger once.
"""

from __future__ import annotations

import contextlib
import re
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from modzy_retrain._client.client import ModzyClient
from modzy_retrain._core.constants import API_KEY_ENV
from modzy_retrain._core.exceptions import ConfigurationError, MissingDependencyError
from modzy_retrain._core.fs import url_to_fs
from modzy_retrain._core.timestamps import parse_timestamp
from modzy_retrain._dataset.journal import ResultJournal
from modzy_retrain._dataset.layout import public_url
from modzy_retrain._dataset.lock import DatasetLock
from modzy_retrain._dataset.manifest import latest_version, load_checkpoint, load_manifest
from modzy_retrain._dataset.trigger import Firing, TriggerActions, TriggerGate, fire
from modzy_retrain._stages.fetch import DEFAULT_CONCURRENCY, ResultFetcher
from modzy_retrain._stages.labels import LabelPolicy
from modzy_retrain._stages.lineage import LineageResolver
from modzy_retrain._stages.query import JobHistoryQuery
from modzy_retrain._stages.records import Sample
from modzy_retrain._stages.report import RunReport
from modzy_retrain._stages.selectors import AnyOf, MinVotes, Selector, selector_by_name
from modzy_retrain._stages.votes import VoteFilter
from modzy_retrain._stages.write import DatasetWriter

EXIT_PUBLISHED = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOTHING_NEW = 3
EXIT_BELOW_THRESHOLD = 4
EXIT_TRIGGER_FAILED = 5
EXIT_INCOMPLETE = 6

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> timedelta:
    """``"3d"``, ``"12h"``, ``"90m"``, ``"45s"``, ``"2w"`` or a number of seconds."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=float(value))
    match = _DURATION.match(str(value))
    if match is None:
        raise ValueError(f"not a duration: {value!r} (use e.g. 3d, 12h, 90m)")
    return timedelta(seconds=float(match[1]) * _UNITS[match[2]])


class TriggerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_new: int = 1
    min_new_per_label: dict[str, int] = Field(default_factory=dict)
    min_since_last: int = 0
    on_ready: str | None = None
    webhook: str | None = None


class BuildSettings(BaseModel):
    """Everything a build needs (the TOML file's keys; see docs/scheduled.md)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str | None = None
    api_key_file: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    model: str | None = None
    model_id: list[str] = Field(default_factory=list)
    model_version: list[str] = Field(default_factory=list)
    user: str | None = None
    lag: timedelta = timedelta(0)
    select: list[str] = Field(default_factory=lambda: ["any-votes"])
    min_votes: int | None = None
    min_agreement: float = 0.75
    label_file: str | None = None
    input_template: str | None = None
    input_templates: dict[str, str] = Field(default_factory=dict)
    out: str | None = None
    format: Literal["jsonl", "csv", "parquet"] = "jsonl"
    storage_options: dict[str, Any] = Field(default_factory=dict, repr=False)
    input_storage_options: dict[str, Any] | None = Field(default=None, repr=False)
    report: str | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    max_input_bytes: int | None = Field(default=None, ge=1)
    trigger: TriggerSettings = Field(default_factory=TriggerSettings)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _timestamp(cls, value: object) -> object:
        parsed = parse_timestamp(value) if isinstance(value, str) else value
        return parsed

    @field_validator("lag", mode="before")
    @classmethod
    def _lag(cls, value: object) -> object:
        return parse_duration(value)

    @field_validator("model_id", "model_version", "select", mode="before")
    @classmethod
    def _listify(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value


def load_settings(path: str | None, overrides: Mapping[str, Any]) -> BuildSettings:
    """Read the TOML file (if any), apply the flags given, and validate."""
    data: dict[str, Any] = {}
    if path is not None:
        if sys.version_info >= (3, 11):
            import tomllib
        else:  # pragma: no cover - exercised on Python 3.10 only
            try:
                import tomli as tomllib
            except ImportError as exc:
                raise MissingDependencyError(
                    "config files on Python 3.10 need tomli: pip install 'modzy-retrain[cli]'"
                ) from exc
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigurationError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigurationError(f"config file {path} is not valid TOML: {exc}") from None
        if "api_key" in data:
            raise ConfigurationError(
                f"config file {path}: no api_key here; use {API_KEY_ENV} or api_key_file"
            )
    for key, value in overrides.items():
        if key == "trigger":
            data.setdefault("trigger", {}).update(value)
        elif key in ("storage_options", "input_templates"):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    try:
        settings = BuildSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None
    if not settings.out:
        raise ConfigurationError("no output: give --out URL or out = ... in the config file")
    return settings


def read_api_key(settings: BuildSettings, environ: Mapping[str, str]) -> str:
    key = environ.get(API_KEY_ENV)
    if key:
        return key
    if settings.api_key_file:
        try:
            key = Path(settings.api_key_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigurationError(
                f"cannot read api_key_file {settings.api_key_file}: {exc.strerror}"
            ) from None
        if key:
            return key
    raise ConfigurationError(f"no API key: set {API_KEY_ENV} or api_key_file")


@dataclass
class BuildResult:
    """What a build did, and the exit code it maps to."""

    report: RunReport
    exit_code: int
    firing: Firing | None = None
    recovered: Firing | None = None
    plan: dict[str, Any] | None = None


def _selector(settings: BuildSettings) -> Selector:
    chosen = [selector_by_name(name) for name in settings.select]
    selector: Selector = chosen[0] if len(chosen) == 1 else AnyOf(*chosen)
    if settings.min_votes is not None:
        selector = selector & MinVotes(settings.min_votes)
    return selector


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

    ``client``: a client to use as it is (its retries, timeouts, transport), left open;
    by default the build makes one from the settings and closes it.
    """
    url = str(settings.out)
    out_options = settings.storage_options
    in_options = (
        settings.input_storage_options
        if settings.input_storage_options is not None
        else settings.storage_options
    )
    if not settings.input_template and not settings.input_templates:
        raise ConfigurationError("no lineage: give --input-template (per model: MODEL_ID=...)")
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
        result = _build_locked(
            settings,
            url,
            out_options,
            in_options,
            actions,
            report,
            environ,
            dry_run,
            transport,
            progress,
            client,
        )
    finally:
        if lock is not None:
            lock.release()
    if result.report.unavailable_jobs and result.exit_code != EXIT_TRIGGER_FAILED:
        # Published or not, the run is short of some jobs: a scheduler must see it.
        # Nothing is lost: those jobs hold the checkpoint, so the next run fetches them.
        result.exit_code = EXIT_INCOMPLETE
    return result


def _build_locked(
    settings: BuildSettings,
    url: str,
    out_options: dict[str, Any],
    in_options: dict[str, Any],
    actions: TriggerActions,
    report: RunReport,
    environ: Mapping[str, str],
    dry_run: bool,
    transport: httpx.BaseTransport | None,
    progress: Callable[[RunReport], None] | None,
    given_client: ModzyClient | None,
) -> BuildResult:
    recovered = None
    if not dry_run and actions.any and latest_version(url, storage_options=out_options):
        # A ready version whose firing never completed (a crash, a failed command)
        # fires now, before anything else: once per version, across reruns.
        previous = load_manifest(url, storage_options=out_options)
        if previous.trigger is not None and previous.trigger.ready:
            recovered = fire(public_url(url) or url, previous, actions, storage_options=out_options)
    client = given_client or ModzyClient(
        api_key=read_api_key(settings, environ), base_url=settings.base_url, transport=transport
    )
    with (
        contextlib.nullcontext(client) if given_client else client,
        contextlib.ExitStack() as cleanup,
    ):
        since = load_checkpoint(url, storage_options=out_options)
        journal = None
        if not dry_run:
            # Results a killed build from the same checkpoint already fetched.
            journal = ResultJournal(
                url, after=since.version if since else None, storage_options=out_options
            )
            cleanup.callback(journal.close)  # what load() copied to scratch, however we end
            journal.load()
        query = JobHistoryQuery(
            client,
            start=settings.start,
            end=settings.end,
            model=settings.model,
            model_id=settings.model_id or None,
            model_version=settings.model_version or None,
            user=settings.user,
            since=since,
            lag=settings.lag,
        )
        chain = (
            query
            | ResultFetcher(client, concurrency=settings.concurrency, journal=journal)
            | VoteFilter(
                _selector(settings),
                policy=LabelPolicy(min_agreement=settings.min_agreement),
                label_file=settings.label_file,
                storage_options=in_options,
            )
            | LineageResolver(
                settings.input_template,
                templates=settings.input_templates,
                storage_options=in_options,
                max_bytes=settings.max_input_bytes,
            )
        )
        if dry_run:
            it = chain.stream(report)
            # Counted as they pass, never kept: a sample may carry its input's bytes.
            plan = _Plan()
            for sample in _tap(it, progress):
                plan.add(sample)
            report = it.report.finish()
            return BuildResult(report, EXIT_PUBLISHED, plan=plan.summary(report))
        gate = TriggerGate(
            settings.trigger.min_new,
            settings.trigger.min_new_per_label,
            settings.trigger.min_since_last,
        )
        writer = DatasetWriter(
            url,
            format=settings.format,
            versioned=True,
            storage_options=out_options,
            source_storage_options=in_options,
            trigger=gate,
            journal=journal,
        )
        it2 = (chain | writer).stream(report)
        for _ in _tap(it2, progress):
            pass
        report = it2.report.finish()
    dataset = report.dataset or {}
    if not dataset.get("published"):
        return BuildResult(report, EXIT_NOTHING_NEW, recovered=recovered)
    manifest = load_manifest(url, storage_options=out_options)
    assert manifest.trigger is not None
    if not manifest.trigger.ready:
        return BuildResult(report, EXIT_BELOW_THRESHOLD, recovered=recovered)
    firing = fire(public_url(url) or url, manifest, actions, storage_options=out_options)
    code = EXIT_PUBLISHED if firing.ok else EXIT_TRIGGER_FAILED
    return BuildResult(report, code, firing=firing, recovered=recovered)


def _tap(it: Any, progress: Callable[[RunReport], None] | None) -> Any:
    for n, item in enumerate(it, 1):
        if progress is not None and n % 50 == 0:
            progress(it.report)
        yield item
    if progress is not None:
        progress(it.report)


class _Plan:
    """What a dry run would write, counted sample by sample."""

    def __init__(self) -> None:
        self.samples = 0
        self.bytes = 0
        self.by_model: Counter[str] = Counter()
        self.model_names: dict[str, str] = {}
        self.by_state: Counter[str] = Counter()

    def add(self, sample: Sample) -> None:
        self.samples += 1
        self.bytes += sample.size or 0
        self.by_model[sample.record.model_id] += 1
        if sample.record.model_name:
            self.model_names.setdefault(sample.record.model_id, sample.record.model_name)
        self.by_state[sample.label_state] += 1

    def summary(self, report: RunReport) -> dict[str, Any]:
        return {
            "jobs": report.stages["query"].items_out if "query" in report.stages else 0,
            "inputs": report.inputs_seen,
            "samples": self.samples,
            "by_model": dict(self.by_model),
            "model_names": dict(self.model_names),
            "by_label_state": dict(self.by_state),
            "excluded": report.drops_by_reason(),
            "estimated_bytes": self.bytes,
        }
