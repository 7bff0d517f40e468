"""What a firing tells the training side, and templates over it (pure).

The payload is built from a published manifest and never holds a secret. Every action
carries the same fields in its service's own place (workflow inputs, pipeline
variables, a DAG run's ``conf``, an asset's metadata, a webhook's body), among them
the idempotency key: delivery is at least once, so a receiver can drop a repeat.
"""

from __future__ import annotations

import hashlib
import json
import string
from collections.abc import Mapping
from typing import Any

from modzy_retrain._core.exceptions import ConfigurationError
from modzy_retrain._dataset.manifest import Manifest

# Every field a template may name, with what it holds (the docs' table).
FIELDS: dict[str, str] = {
    "dataset_url": "the dataset's URL (credentials stripped)",
    "version": "the version that fired, e.g. v0003",
    "manifest": "the version's manifest, relative to the dataset: v0003/manifest.json",
    "run_id": "the run that wrote the version",
    "samples": "rows in the version",
    "added": "rows the version added, whatever their label state",
    "relabelled": "rows whose label the version changed",
    "new_samples": "trainable samples the version brings (what the thresholds count)",
    "new_by_label": "the same, per label (an object; JSON text in a string)",
    "since_last": "trainable samples since the last version that fired",
    "idempotency_key": "the same for every delivery of this version: drop repeats by it",
}


def idempotency_key(dataset_url: str, version: str) -> str:
    """``v0003-1a2b3c4d5e6f``: the version, and a digest of the dataset's URL.

    The version alone repeats across datasets (each has a ``v0001``); two datasets
    feeding one workflow or DAG must not look like repeats of each other.
    """
    digest = hashlib.sha256(dataset_url.encode("utf-8")).hexdigest()[:12]
    return f"{version}-{digest}"


def payload(url: str, manifest: Manifest) -> dict[str, Any]:
    """The fields of a ready, published version (never any secret)."""
    assert manifest.trigger is not None
    assert manifest.version is not None
    trigger = manifest.trigger
    changes = manifest.changes
    return {
        "dataset_url": url,
        "version": manifest.version,
        "manifest": f"{manifest.version}/manifest.json",
        "run_id": manifest.run_id,
        "samples": manifest.counts.samples,
        "added": changes.added if changes is not None else trigger.new_rows,
        "relabelled": changes.relabelled if changes is not None else 0,
        "new_samples": trigger.new,
        "new_by_label": dict(trigger.new_by_label),
        # The name the payload had before ``added``: receivers may read it.
        "new_rows": trigger.new_rows,
        "since_last": trigger.since_last,
        "idempotency_key": idempotency_key(url, manifest.version),
    }


def as_text(value: object) -> str:
    """A field as a string (workflow inputs and pipeline variables are strings):
    objects as compact JSON with sorted keys, so the same version gives the same text."""
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, separators=(",", ":"))
    return str(value)


def _fields_of(template: str) -> list[tuple[str, str | None, str | None, str | None]]:
    try:
        return list(string.Formatter().parse(template))
    except ValueError as exc:
        hint = "write {{ and }} for a brace"
        raise ConfigurationError(f"template {template!r}: {exc} ({hint})") from None


def check_template(template: object, where: str) -> None:
    """Refuse a template naming an unknown field, when the settings are read."""
    if isinstance(template, Mapping):
        for key, value in template.items():
            check_template(value, f"{where}.{key}")
        return
    if isinstance(template, list):
        for n, value in enumerate(template):
            check_template(value, f"{where}[{n}]")
        return
    if not isinstance(template, str):
        return
    for _, name, _, conversion in _fields_of(template):
        if name is None:
            continue
        if name not in FIELDS:
            known = ", ".join(FIELDS)
            raise ConfigurationError(f"{where}: unknown field {{{name}}} (known: {known})")
        if conversion:
            raise ConfigurationError(f"{where}: no !{conversion} conversion in {{{name}}}")


def render(template: object, data: Mapping[str, Any]) -> Any:
    """A template filled with a version's fields.

    Strings are format strings over :data:`FIELDS`; a string that is exactly one field
    (``"{new_by_label}"``) keeps the field's type, so a JSON body or a DAG's ``conf``
    gets a number or an object, not its text. Tables and lists are rendered inside.
    """
    if isinstance(template, Mapping):
        return {str(k): render(v, data) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, data) for v in template]
    if not isinstance(template, str):
        return template
    parts = _fields_of(template)
    if len(parts) == 1 and parts[0][0] == "" and parts[0][1] and not parts[0][2]:
        return data[parts[0][1]]
    out = []
    for literal, name, spec, _ in parts:
        out.append(literal)
        if name is not None:
            value = data[name]
            plain = bool(spec) and not isinstance(value, (dict, list))
            out.append(format(value, spec or "") if plain else as_text(value))
    return "".join(out)


def render_text(template: str, data: Mapping[str, Any]) -> str:
    """A template rendered as a string whatever it names."""
    return as_text(render(template, data))
