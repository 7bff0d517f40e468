"""Project calls the push needs beyond :class:`LabelStudioClient`'s: the labelling
configuration's choices, updating it, and local-files storages.

Functions over a client (the client's module is at its size limit). Only ``_core``.
"""

from __future__ import annotations

import re
from html import unescape
from typing import Any

from modzy_retrain._core.exceptions import ConfigurationError, LabelStudioResponseError

from .client import LabelStudioClient
from .models import LabelStudioProject

_CHOICES = re.compile(r"<Choices\b([^>]*)>(.*?)</Choices>", re.S)
_NAME = re.compile(r'\bname\s*=\s*"([^"]*)"')
_TO_NAME = re.compile(r'\btoName\s*=\s*"([^"]*)"')
_CHOICE = re.compile(r'<Choice\b[^>]*\bvalue\s*=\s*"([^"]*)"')


def config_choices(config: str, control: str) -> tuple[str, str, list[str]] | None:
    """``(control, toName, choices)`` of the Choices control named ``control`` in a
    labelling configuration, or ``None`` when it has none.

    A pattern, not an XML parser: the configuration is the server's text, and only
    these attributes are read from it (quotes escaped as entities, as we write them).
    """
    for match in _CHOICES.finditer(config):
        name = _NAME.search(match.group(1))
        if name is None or unescape(name.group(1)) != control:
            continue
        to_name = _TO_NAME.search(match.group(1))
        values = [unescape(v) for v in _CHOICE.findall(match.group(2))]
        return control, unescape(to_name.group(1)) if to_name else "", values
    return None


def update_label_config(
    client: LabelStudioClient, project_id: int, label_config: str
) -> LabelStudioProject:
    """Replace a project's labelling configuration (Label Studio refuses a change
    that removes labels its annotations use)."""
    if not isinstance(label_config, str) or not label_config.strip().startswith("<View"):
        raise ConfigurationError("update_label_config: label_config must be <View>...</View>")
    path = f"/api/projects/{int(project_id)}"
    value = client._call("PATCH", path, body={"label_config": label_config}, idempotent=True)
    return client._parse(LabelStudioProject, value, "PATCH", path)


def local_storage_paths(client: LabelStudioClient, project_id: int) -> list[str]:
    """The folders of a project's local-files source storages."""
    path = "/api/storages/localfiles"
    value = client._call("GET", path, params={"project": int(project_id)})
    if not isinstance(value, list):
        raise LabelStudioResponseError(f"GET {path}: expected a JSON list", method="GET", path=path)
    return [str(s["path"]) for s in value if isinstance(s, dict) and isinstance(s.get("path"), str)]


def create_local_storage(
    client: LabelStudioClient, project_id: int, folder: str, *, title: str
) -> dict[str, Any]:
    """Connect a local-files source storage on ``folder`` (an absolute path under the
    server's ``LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT``), so the server serves the
    files under it to the project's annotators. It is never synced: tasks come from
    the push, not from listing the folder."""
    path = "/api/storages/localfiles"
    body = {"project": int(project_id), "path": folder, "title": title, "use_blob_urls": False}
    value = client._call("POST", path, body=body, idempotent=False)
    if not isinstance(value, dict):
        raise LabelStudioResponseError(
            f"POST {path}: expected a JSON object", method="POST", path=path
        )
    return value
