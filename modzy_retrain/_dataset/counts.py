"""The counts a manifest records of its samples, kept as the samples are written."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from .manifest import ManifestCounts

# The label states whose label a correction or a person gave: what a confusion counts.
CONFUSION_STATES = frozenset({"corrected", "labelled"})


def predicted_of(row: Mapping[str, Any]) -> str | None:
    """A written row's predicted class (a confusion's row), if its columns have one."""
    predicted = row.get("predicted_label")
    return None if predicted is None else str(predicted)


class SampleCounts:
    """Samples per label, label state, split and model, and the confusions (per model,
    predicted class, then the corrected or human label), as they are written."""

    def __init__(self) -> None:
        self.samples = 0
        self.by: dict[str, Counter[str]] = {
            k: Counter() for k in ("label", "label_state", "split", "model")
        }
        self.confusions: dict[str, Counter[tuple[str, str]]] = {}

    def add(
        self,
        label: str | None,
        state: str,
        split: str | None,
        model: str,
        predicted: str | None = None,
    ) -> None:
        """Count one sample."""
        self.samples += 1
        self.by["label"][label if label is not None else "(none)"] += 1
        self.by["label_state"][state] += 1
        self.by["split"][split or ""] += 1
        self.by["model"][model] += 1
        if state in CONFUSION_STATES and label is not None and predicted is not None:
            self.confusions.setdefault(model, Counter())[(predicted, label)] += 1

    def manifest_counts(self, duplicates: int) -> ManifestCounts:
        """The counts as the manifest records them."""
        confusions: dict[str, dict[str, dict[str, int]]] = {}
        for model, pairs in sorted(self.confusions.items()):
            rows: dict[str, dict[str, int]] = {}
            for (predicted, label), n in sorted(pairs.items()):
                rows.setdefault(predicted, {})[label] = n
            confusions[model] = rows
        return ManifestCounts(
            samples=self.samples,
            duplicates=duplicates,
            by_label=dict(self.by["label"]),
            by_label_state=dict(self.by["label_state"]),
            by_split=dict(self.by["split"]),
            by_model=dict(self.by["model"]),
            confusions=confusions,
        )
