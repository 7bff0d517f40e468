"""The retraining trigger: a threshold gate, and firing it exactly once per version.

The gate is evaluated when a version is written, and its decision goes into that
version's manifest. Firing happens after publication: a Python callback, a shell
command, a webhook, or any of them. A marker under ``_triggers/<version>.json``
records a successful firing, so a rerun (or the next run) fires a ready version whose
marker is missing, and never fires one twice. A firing that fails (a command exiting
non-zero, a webhook error) writes no marker and is tried again by the next run: the
receiving side gets the version in every call, to recognise a repeat.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx

from modzy_retrain._core.constants import API_KEY_ENV
from modzy_retrain._core.exceptions import ConfigurationError
from modzy_retrain._core.fs import atomic_write, join, url_to_fs

from .manifest import Changes, Manifest, TriggerState

logger = logging.getLogger("modzy_retrain")

TRIGGERS_DIR = "_triggers"


@dataclass(frozen=True)
class TriggerGate:
    """When a new version is worth training on.

    Every threshold counts trainable samples: those with a confirmed, corrected or labelled
    label, added by the version or relabelled into such a label. ``needs_label`` and
    ``conflict`` rows never make a version ready on their own.

    Args:
        min_new: Trainable samples the version must bring (default 1).
        min_new_per_label: Per label, trainable samples the version must bring.
        min_since_last: Trainable samples since the last version that fired, this one
            included (lets small versions accumulate).
    """

    min_new: int = 1
    min_new_per_label: Mapping[str, int] = field(default_factory=dict)
    min_since_last: int = 0

    def __post_init__(self) -> None:
        if self.min_new < 0 or self.min_since_last < 0:
            raise ConfigurationError("trigger thresholds must not be negative")
        if any(n < 0 for n in self.min_new_per_label.values()):
            raise ConfigurationError("trigger thresholds must not be negative")

    def evaluate(self, changes: Changes, previous: TriggerState | None) -> TriggerState:
        new_by_label = changes.trainable_by_label
        carried = previous.since_last if previous is not None and not previous.ready else 0
        since_last = carried + changes.trainable
        missing = []
        if changes.trainable < self.min_new:
            missing.append(f"{changes.trainable} new trainable samples < {self.min_new}")
        for label, minimum in sorted(self.min_new_per_label.items()):
            have = new_by_label.get(label, 0)
            if have < minimum:
                missing.append(f"{have} new {label!r} < {minimum}")
        if since_last < self.min_since_last:
            missing.append(f"{since_last} since the last trigger < {self.min_since_last}")
        return TriggerState(
            ready=not missing,
            reason="threshold reached" if not missing else "; ".join(missing),
            new=changes.trainable,
            new_by_label=dict(new_by_label),
            new_rows=changes.added,
            since_last=since_last,
        )


@dataclass(frozen=True)
class TriggerActions:
    """What firing does: any of a callback, a shell command and a webhook."""

    callback: Callable[[dict[str, Any]], None] | None = None
    command: str | None = None
    webhook: str | None = None

    @property
    def any(self) -> bool:
        return bool(self.callback or self.command or self.webhook)


@dataclass
class Firing:
    """The outcome of firing the trigger for one version."""

    version: str
    fired: bool = False
    ok: bool = True
    already: bool = False
    details: dict[str, Any] = field(default_factory=dict)


def payload(url: str, manifest: Manifest) -> dict[str, Any]:
    """What the trigger tells the training side (never any secret)."""
    assert manifest.trigger is not None
    return {
        "dataset_url": url,
        "version": manifest.version,
        "manifest": f"{manifest.version}/manifest.json",
        "run_id": manifest.run_id,
        "samples": manifest.counts.samples,
        "new_samples": manifest.trigger.new,
        "new_by_label": manifest.trigger.new_by_label,
        "new_rows": manifest.trigger.new_rows,
        "since_last": manifest.trigger.since_last,
    }


def _marker(url: str, version: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str]:
    fs, root = url_to_fs(url, storage_options)
    return fs, join(root, TRIGGERS_DIR, f"{version}.json")


def fired_record(
    url: str, version: str, storage_options: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The record of a successful firing for ``version``, or ``None``."""
    fs, path = _marker(url, version, storage_options)
    try:
        record = json.loads(bytes(fs.cat_file(path)))
    except (FileNotFoundError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def already_fired(url: str, version: str, storage_options: Mapping[str, Any] | None) -> bool:
    fs, path = _marker(url, version, storage_options)
    return bool(fs.exists(path))


def fire(
    url: str,
    manifest: Manifest,
    actions: TriggerActions,
    *,
    storage_options: Mapping[str, Any] | None = None,
    webhook_timeout: float = 30.0,
) -> Firing:
    """Fire the trigger for a published, ready version, unless it already fired."""
    assert manifest.version is not None
    assert manifest.trigger is not None
    result = Firing(manifest.version)
    if not manifest.trigger.ready or not actions.any:
        return result
    if already_fired(url, manifest.version, storage_options):
        result.already = True
        return result
    data = payload(url, manifest)
    result.fired = True
    if actions.callback is not None:
        try:
            actions.callback(data)
            result.details["callback"] = "ok"
        except Exception as exc:
            result.ok = False
            result.details["callback"] = f"{type(exc).__name__}: {exc}"
    if actions.command is not None:
        env = {k: v for k, v in os.environ.items() if k != API_KEY_ENV}
        env.update(
            MODZY_RETRAIN_DATASET_URL=url,
            MODZY_RETRAIN_VERSION=str(manifest.version),
            MODZY_RETRAIN_MANIFEST=data["manifest"],
            MODZY_RETRAIN_SAMPLES=str(data["samples"]),
            MODZY_RETRAIN_NEW_SAMPLES=str(data["new_samples"]),
            MODZY_RETRAIN_PAYLOAD=json.dumps(data),
        )
        done = subprocess.run(actions.command, shell=True, env=env, check=False)
        result.details["command_exit_code"] = done.returncode
        result.ok = result.ok and done.returncode == 0
    if actions.webhook is not None:
        try:
            response = httpx.post(actions.webhook, json=data, timeout=webhook_timeout)
            result.details["webhook_status"] = response.status_code
            result.ok = result.ok and response.is_success
        except httpx.HTTPError as exc:
            result.details["webhook_error"] = type(exc).__name__
            result.ok = False
    if result.ok:
        fs, path = _marker(url, manifest.version, storage_options)
        record = {"fired_at": datetime.now(timezone.utc).isoformat(), **result.details}
        atomic_write(fs, path, json.dumps(record).encode())
    else:
        logger.warning("the retraining trigger for %s failed: %s", manifest.version, result.details)
    return result
