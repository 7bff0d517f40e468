"""The retraining gate: when a new version is worth training on.

The gate is evaluated when a version is written, and its decision (a
:class:`TriggerState`) goes into that version's manifest. Firing it, after
publication, is the business of ``modzy_retrain._triggers`` (the actions, their
presets and their per-version records).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from modzy_retrain._core.exceptions import ConfigurationError

from .manifest import Changes, TriggerState

__all__ = ["TriggerGate", "TriggerState"]


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
        """Whether a version with these changes is ready, and why (or what it lacks).

        Args:
            changes: What the version added and relabelled.
            previous: The state of the version before it, if any: unless that one
                fired, its trainable samples since the last trigger carry over.
        """
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
