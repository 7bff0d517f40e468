"""Where firings are recorded, beside the dataset (never in a manifest, which is final).

``_triggers/<version>/<action id>.json``: one action's last delivery for that version
(``ok`` true or false, when, what the service answered). A rerun skips the actions
whose record says ok, so a failing GitLab trigger does not start the GitHub workflow
that already ran.

``_triggers/<version>.json``: the version's firing is complete (every action
succeeded). Datasets written before per-action records have only this file; it still
means what it meant: the version fired, nothing fires again for it, even an action
added to the settings since.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from modzy_retrain._core.fs import atomic_write, join, url_to_fs

TRIGGERS_DIR = "_triggers"


def _read(fs: Any, path: str) -> dict[str, Any] | None:
    try:
        record = json.loads(bytes(fs.cat_file(path)))
    except (FileNotFoundError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def completed_path(root: str, version: str) -> str:
    return join(root, TRIGGERS_DIR, f"{version}.json")


def action_path(root: str, version: str, action_id: str) -> str:
    return join(root, TRIGGERS_DIR, version, f"{action_id}.json")


def completed(fs: Any, root: str, version: str) -> dict[str, Any] | None:
    """The record of a version whose firing completed, or ``None``."""
    return _read(fs, completed_path(root, version))


def action_record(fs: Any, root: str, version: str, action_id: str) -> dict[str, Any] | None:
    """One action's last delivery for ``version``, or ``None``."""
    return _read(fs, action_path(root, version, action_id))


def write(fs: Any, path: str, record: Mapping[str, Any]) -> None:
    atomic_write(fs, path, json.dumps(dict(record), sort_keys=True).encode("utf-8"))


def fired_record(
    url: str, version: str, storage_options: Mapping[str, Any] | None
) -> dict[str, Any] | None:
    """The record of a completed firing of ``version`` (old datasets' marker too)."""
    fs, root = url_to_fs(url, storage_options)
    return completed(fs, root, version)


def action_records(
    url: str, version: str, storage_options: Mapping[str, Any] | None
) -> dict[str, dict[str, Any]]:
    """Every action's record for ``version``, by action id (``inspect`` shows them)."""
    fs, root = url_to_fs(url, storage_options)
    folder = join(root, TRIGGERS_DIR, version)
    try:
        names = sorted(fs.ls(folder, detail=False))
    except (FileNotFoundError, NotADirectoryError):
        return {}
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        base = str(name).rstrip("/").rsplit("/", 1)[-1]
        if base.endswith(".json"):
            record = _read(fs, join(folder, base))
            if record is not None:
                out[base[: -len(".json")]] = record
    return out
