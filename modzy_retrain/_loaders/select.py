"""Which samples a loader gives: one version, one model, some label states, and the
model's class list. Pure decisions over the manifest, made once for every loader.

- **Version**: the latest by default, or the one named (``load_manifest``).
- **Model**: one at a time, since each model has its own classes. Named when the
  dataset holds several; a dataset of one model needs no name.
- **Label states**: the trainable ones by default (``confirmed``, ``corrected``,
  ``labelled``); ``needs_label`` and ``conflict`` only on request (their ``label`` is
  empty, and reads as class ``-1``).
- **Class ids**: a label's index in the manifest's class list of its model. The list is
  append-only across versions (``_dataset/classes.py``), so an id means the same class
  in every version; a label outside it is an error, never a silent ``-1``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modzy_retrain._core.constants import TRAINABLE_LABEL_STATES
from modzy_retrain._core.exceptions import ConfigurationError, DatasetError
from modzy_retrain._dataset.manifest import Manifest, load_manifest
from modzy_retrain._dataset.rows import LABEL_STATES, LabelState

# In LABEL_STATES' order, so that messages and filters read the same every time.
DEFAULT_STATES: tuple[LabelState, ...] = tuple(
    s for s in LABEL_STATES if s in TRAINABLE_LABEL_STATES
)


@dataclass(frozen=True)
class Selection:
    """What a loader reads: the dataset, its version's manifest, and the filters.

    Attributes:
        url: The dataset's root.
        manifest: The manifest of the version read.
        model_id: The one model whose samples are read.
        classes: That model's class list: a label's class id is its index here.
        states: The label states read.
    """

    url: str
    manifest: Manifest
    model_id: str
    classes: tuple[str, ...]
    states: tuple[LabelState, ...]

    @property
    def where(self) -> str:
        """The dataset and its version, for messages."""
        version = self.manifest.version
        return f"{self.url} ({version})" if version else self.url


def check_states(states: Iterable[str] | str | None) -> tuple[LabelState, ...]:
    """The label states asked for, checked (``None``: the trainable ones).

    Raises:
        ConfigurationError: An unknown state, or none at all.
    """
    if states is None:
        return DEFAULT_STATES
    wanted = {states} if isinstance(states, str) else set(states)
    unknown = sorted(str(s) for s in wanted - set(LABEL_STATES))
    if unknown:
        raise ConfigurationError(
            f"states: unknown label state(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(LABEL_STATES)}"
        )
    if not wanted:
        raise ConfigurationError("states: name at least one label state")
    return tuple(s for s in LABEL_STATES if s in wanted)


def choose_model(manifest: Manifest, model: str | None, url: str) -> str:
    """The model to read: ``model``, or the dataset's only one.

    The models are those with samples in this version; one whose samples were all
    retracted still has its class list, and can still be named.

    Raises:
        ConfigurationError: No model named and the dataset holds several (or none), or
            the one named is not in the dataset. The message names the models.
    """
    if model is not None and not isinstance(model, str):
        raise ConfigurationError(f"model: a model id (text), not {type(model).__name__}")
    present = sorted(manifest.counts.by_model) or sorted(manifest.classes)
    if model is None:
        if len(present) == 1:
            return present[0]
        if not present:
            raise ConfigurationError(f"{url} holds no samples of any model: name one (model=)")
        raise ConfigurationError(
            f"{url} holds samples of {len(present)} models; name one with model=: "
            f"{', '.join(present)}"
        )
    if model in manifest.counts.by_model or model in manifest.classes:
        return model
    raise ConfigurationError(
        f"{url} holds no model {model!r}; its models: {', '.join(present) or '(none)'}"
    )


def select(
    url: str,
    *,
    model: str | None,
    version: str | None,
    states: Iterable[str] | str | None,
    storage_options: Mapping[str, Any] | None,
) -> Selection:
    """Read the manifest and make every choice a loader needs, before any sample is read.

    Raises:
        ConfigurationError: An invalid model or state (see above).
        DatasetError: No dataset (or no such version) at ``url``, or a model without a
            class list (a version written before class lists).
    """
    checked = check_states(states)
    manifest = load_manifest(url, version=version, storage_options=storage_options)
    model_id = choose_model(manifest, model, url)
    classes = manifest.classes.get(model_id)
    if classes is None:
        where = f"{url} ({manifest.version})" if manifest.version else url
        raise DatasetError(
            f"{where} has no class list for model {model_id}: it was written before class "
            "lists, so its class ids would not be stable; the next build writes a version "
            "that has one"
        )
    return Selection(url, manifest, model_id, tuple(classes), checked)


def split_names(manifest: Manifest, present: Iterable[str]) -> list[str]:
    """The splits a loader gives: the manifest's, in its order (each one, even when
    empty), then any other split the samples name."""
    names = list(manifest.splits)
    names += sorted(set(present) - set(names))
    return names
