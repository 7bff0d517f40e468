"""The dataset writer's settings, validated once and frozen (``WriterOptions``).

Built from ``DatasetWriter``'s keyword arguments; a bad one raises
:class:`ConfigurationError` (a ``ValueError``) naming the argument, before anything is
read or written. Storage options are never echoed back: they may hold credentials.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any, Literal, get_args

from pydantic import (
    ConfigDict,
    Field,
    InstanceOf,
    ValidationError,
    field_validator,
    model_validator,
)

from modzy_retrain._core.options import FrozenOptions

from .journal import ResultJournal
from .layout import DEFAULT_SPLITS, GROUP_FIELDS, UNLABELED_DIR, safe_component, template_fields
from .manifest import DatasetFormat
from .trigger import TriggerGate

DEFAULT_WRITE_CONCURRENCY = 16
DEFAULT_GROUP_BY = "{job_id}/{input_name}"


def _describe(exc: ValidationError) -> str:
    """What is wrong with each argument, named as DatasetWriter's, without the value given."""
    by_argument: dict[str, list[str]] = {}
    for error in exc.errors(include_url=False, include_input=False):
        ctx = error.get("ctx") or {}
        message = str(ctx["error"]) if "error" in ctx else error["msg"]
        # A check across arguments has no location: its message names them.
        where = f"DatasetWriter({error['loc'][0]}=...)" if error["loc"] else "DatasetWriter"
        by_argument.setdefault(where, []).append(message)
    return "; ".join(f"{where}: {' or '.join(found)}" for where, found in by_argument.items())


class WriterOptions(FrozenOptions):
    """How a dataset is written (see ``DatasetWriter`` for each argument)."""

    model_config = ConfigDict(frozen=True, extra="forbid", arbitrary_types_allowed=True)

    url: str
    format: DatasetFormat = "jsonl"
    mode: Literal["copy", "reference"] = "copy"
    splits: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_SPLITS))
    # Takes a Sample: typed loosely here, as the dataset layer knows no records.
    group_by: str | Callable[[Any], str] = DEFAULT_GROUP_BY
    overwrite: bool = False
    versioned: bool = False
    # Instances, kept as they are (pydantic would build a gate from a dict otherwise).
    trigger: InstanceOf[TriggerGate] | None = None
    journal: InstanceOf[ResultJournal] | None = None
    dedupe: bool = True
    allow_new_classes: bool = False
    concurrency: int = DEFAULT_WRITE_CONCURRENCY
    storage_options: dict[str, Any] = Field(default_factory=dict)
    source_storage_options: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def _describe_errors(cls, exc: ValidationError) -> str:
        return _describe(exc)

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, values: Any) -> Any:
        if isinstance(values, dict):
            values = dict(values)
            if values.get("splits") is None:
                values["splits"] = DEFAULT_SPLITS
            if values.get("storage_options") is None:
                values["storage_options"] = {}
            if values.get("source_storage_options") is None:
                # The inputs are read with the dataset's own options unless told.
                values["source_storage_options"] = values["storage_options"]
        return values

    @field_validator("url")
    @classmethod
    def _url(cls, url: str) -> str:
        return url.rstrip("/") or url

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        if value not in get_args(DatasetFormat):
            valid = ", ".join(get_args(DatasetFormat))
            raise ValueError(f"unknown format {value!r}; use one of {valid}")
        return value

    @field_validator("mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        if value not in ("copy", "reference"):
            raise ValueError(f"unknown mode {value!r}")
        return value

    @field_validator("splits", mode="plain")
    @classmethod
    def _splits(cls, value: Any) -> dict[str, float]:
        # Plain: the ratios are kept as given (an int stays an int in the manifest).
        if not isinstance(value, Mapping):
            raise ValueError("split names and ratios must be a mapping")
        splits = dict(value)
        ratios = splits.values()
        if (
            not splits
            or not all(isinstance(r, numbers.Real) for r in ratios)
            or any(r < 0 for r in ratios)
            or abs(sum(ratios) - 1) > 1e-6
        ):
            raise ValueError("split ratios must be non-negative and add up to 1")
        for split in splits:
            if not isinstance(split, str) or safe_component(split) != split:
                raise ValueError(f"split name {split!r} is not a safe directory name")
        return splits

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: str | Callable[[Any], str]) -> str | Callable[[Any], str]:
        if isinstance(value, str):
            unknown = template_fields(value) - GROUP_FIELDS
            if unknown:
                raise ValueError(f"unknown field(s): {', '.join(sorted(unknown))}")
        return value

    @field_validator("concurrency")
    @classmethod
    def _concurrency(cls, value: int) -> int:
        if value < 1:
            raise ValueError("concurrency must be at least 1")
        return value

    @model_validator(mode="after")
    def _together(self) -> WriterOptions:
        if self.versioned and self.format == "imagefolder":
            raise ValueError("versioned datasets are jsonl, csv or parquet, not imagefolder")
        if (self.trigger is not None or self.journal is not None) and not self.versioned:
            raise ValueError("a trigger or a journal needs versioned=True")
        if self.versioned and self.overwrite:
            raise ValueError("versions are never overwritten: drop overwrite=True")
        if self.format == "imagefolder" and self.mode != "copy":
            raise ValueError("the imagefolder layout needs mode='copy'")
        if self.format == "imagefolder":
            _check_split_folders(self.splits)
        return self

    @property
    def group_by_description(self) -> str:
        """``group_by`` as the manifest records it (a callable by its name)."""
        if isinstance(self.group_by, str):
            return self.group_by
        return str(getattr(self.group_by, "__name__", "callable"))

    def replace(self, **changes: Any) -> WriterOptions:
        """A copy with ``changes`` applied, validated again."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        return WriterOptions(**{**values, **changes})


def _check_split_folders(splits: Mapping[str, float]) -> None:
    """An image folder's splits are folders beside ``unlabeled/``: each distinct from
    the others and from it on a case-blind file system, and none that Hugging Face
    skips (``__*``)."""
    seen = {UNLABELED_DIR}
    for split in splits:
        if split.casefold() in seen:
            raise ValueError(
                f"split name {split!r} would share a folder with another split or "
                f"{UNLABELED_DIR}/ on a case-blind file system"
            )
        if split.startswith("__"):
            raise ValueError(f"split name {split!r}: Hugging Face skips folders named __*")
        seen.add(split.casefold())
