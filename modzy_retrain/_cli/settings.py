"""The settings of ``modzy-retrain build``: the TOML file's keys and the flags over them.

Every setting is checked when it is read (types, ranges, unknown keys with the nearest
known one, selectors, the webhook URL), so an invalid one exits 2 before any request.
The API key is never a setting: it comes from ``MODZY_API_KEY`` or ``api_key_file``.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from modzy_retrain._client.base import normalize_base_url
from modzy_retrain._core.constants import (
    API_KEY_ENV,
    DEFAULT_MAX_BYTES_IN_FLIGHT,
    DEFAULT_MAX_HISTORY_PAGES,
    DEFAULT_MAX_INPUTS_PER_JOB,
    DEFAULT_MAX_RESPONSE_BYTES,
)
from modzy_retrain._core.exceptions import ConfigurationError, MissingDependencyError
from modzy_retrain._core.secrets import public_url
from modzy_retrain._core.timestamps import parse_timestamp
from modzy_retrain._dataset.quarantine import DEFAULT_QUARANTINE_AFTER
from modzy_retrain._stages.fetch import DEFAULT_CONCURRENCY
from modzy_retrain._stages.guard import DEFAULT_MAX_FAILURE_SHARE
from modzy_retrain._stages.selectors import selector_from_setting
from modzy_retrain._triggers.presets import TriggerAction, check_url, preset_model

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


_DEFAULT_SELECT: list[str | dict[str, Any]] = ["any-votes"]


class TriggerSettings(BaseModel):
    """The ``[trigger]`` table: thresholds in trainable samples, and what fires.

    ``on_ready`` (a shell command) and ``webhook`` (a URL the payload is POSTed to)
    are the short forms; ``actions`` (``[[trigger.actions]]`` tables, and the
    ``--trigger PRESET:TARGET`` flags after them) hold the presets: see
    docs/training-triggers.md.
    """

    model_config = ConfigDict(extra="forbid")

    min_new: int = Field(default=1, ge=0)
    min_new_per_label: dict[str, int] = Field(default_factory=dict)
    min_since_last: int = Field(default=0, ge=0)
    on_ready: str | None = None
    webhook: str | None = None
    actions: list[TriggerAction] = Field(default_factory=list)

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        check_url(value)
        return value


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
    rebuild_from: datetime | None = None
    select: list[str | dict[str, Any]] = Field(default_factory=lambda: _DEFAULT_SELECT.copy())
    min_votes: int | None = Field(default=None, ge=0)
    min_agreement: float = Field(default=0.75, ge=0.5, le=1.0)
    label_file: str | None = None
    allow_new_classes: bool = False
    input_template: str | None = None
    input_templates: dict[str, str] = Field(default_factory=dict)
    # Lineage through a database (docs/lineage.md#lineage-in-a-database): a query per
    # model or for all, on one database; its password from the driver's conventions
    # or the variable named here, never from the URL.
    input_query: str | None = None
    input_queries: dict[str, str] = Field(default_factory=dict)
    input_database: str | None = None
    input_database_password_env: str | None = None
    input_root: str | None = None
    out: str | None = None
    format: Literal["jsonl", "csv", "parquet"] = "jsonl"
    storage_options: dict[str, Any] = Field(default_factory=dict, repr=False)
    input_storage_options: dict[str, Any] | None = Field(default=None, repr=False)
    report: str | None = None
    concurrency: int = Field(default=DEFAULT_CONCURRENCY, ge=1)
    max_input_bytes: int | None = Field(default=None, ge=1)
    # The API's answers, bounded (docs/reliability.md, "Resource limits").
    max_response_bytes: int = Field(default=DEFAULT_MAX_RESPONSE_BYTES, ge=1)
    max_bytes_in_flight: int = Field(default=DEFAULT_MAX_BYTES_IN_FLIGHT, ge=1)
    max_inputs_per_job: int = Field(default=DEFAULT_MAX_INPUTS_PER_JOB, ge=1)
    max_history_pages: int = Field(default=DEFAULT_MAX_HISTORY_PAGES, ge=1)
    max_failure_share: float = Field(default=DEFAULT_MAX_FAILURE_SHARE, gt=0.0, le=1.0)
    # A job whose results were unavailable in this many runs in a row is quarantined
    # (0: never); retry_quarantined fetches the quarantined jobs again by id.
    quarantine_after: int = Field(default=DEFAULT_QUARANTINE_AFTER, ge=0)
    retry_quarantined: bool = False
    trigger: TriggerSettings = Field(default_factory=TriggerSettings)
    # Whether ``start`` came from the command line (``--start``), not the config file:
    # on a dataset with a checkpoint the flag is refused, the file's value is the
    # first build's window (see build()).
    _start_from_flag: bool = PrivateAttr(default=False)

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                normalize_base_url(value)  # credentials in it are refused now (exit 2)
            except ConfigurationError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("input_database")
    @classmethod
    def _input_database(cls, value: str | None) -> str | None:
        if value is not None and _has_password(value):
            raise ValueError(
                "input_database holds a password: take it out of the URL, and give it "
                "through the driver's conventions (PGPASSWORD, ~/.pgpass, a service "
                "file) or input_database_password_env"
            )
        return value

    def __repr_args__(self) -> Any:
        # The templates are shown without their credentials (user:password@, a
        # signed query); the values themselves stay whole for the build.
        for name, value in super().__repr_args__():
            if name == "input_template" and isinstance(value, str):
                value = public_url(value)
            elif name == "input_templates" and isinstance(value, dict):
                value = {k: public_url(v) for k, v in value.items()}
            yield name, value

    @field_validator("start", "end", "rebuild_from", mode="before")
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
        return [value] if isinstance(value, (str, dict)) else value


def _has_password(url: str) -> bool:
    """Whether a database URL's user-info holds a password (``user:password@``)."""
    return urlsplit(url).password is not None


def _check_keys(data: Mapping[str, Any], model: type[BaseModel], where: str) -> None:
    """Refuse an unknown setting, naming the nearest known one."""
    known = [name for name in model.model_fields if not name.startswith("_")]
    for key in data:
        if key not in known:
            near = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise ConfigurationError(f"unknown setting {where}{key!r}{hint}")


def _check_actions(actions: object) -> None:
    """Each ``[[trigger.actions]]`` table: a known preset, no unknown key."""
    if not isinstance(actions, list):
        return
    for n, table in enumerate(actions):
        where = f"trigger.actions[{n}]"
        if not isinstance(table, Mapping):
            raise ConfigurationError(f'{where}: a table, such as {{ preset = "github", ... }}')
        model = preset_model(table.get("preset"))
        if model is None:
            raise ConfigurationError(
                f"{where}: preset = {table.get('preset')!r}: github, gitlab, airflow, "
                "dagster, webhook or command"
            )
        _check_keys(table, model, f"{where}.")


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
            table = data.setdefault("trigger", {})
            flags = value.get("actions", [])
            table.update({k: v for k, v in value.items() if k != "actions"})
            if flags:  # --trigger flags add to the file's actions
                table["actions"] = [*table.get("actions", []), *flags]
        elif key in ("storage_options", "input_templates", "input_queries"):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    _check_keys(data, BuildSettings, "")
    if isinstance(data.get("trigger"), Mapping):
        _check_keys(data["trigger"], TriggerSettings, "trigger.")
        _check_actions(data["trigger"].get("actions"))
    try:
        settings = BuildSettings.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: "
            + (str(e["ctx"]["error"]) if "error" in (e.get("ctx") or {}) else e["msg"])
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise ConfigurationError(f"invalid settings: {problems}") from None
    if not settings.out:
        raise ConfigurationError("no output: give --out URL or out = ... in the config file")
    settings._start_from_flag = "start" in overrides
    for value in settings.select:
        selector_from_setting(value)  # an unknown name or a bad parameter fails now
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
