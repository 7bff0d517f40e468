"""The class list of each model: an ordered list that only grows.

A training run maps each class to an index; a dataset's manifest keeps the list so the
index of a class never changes across versions. A version starts from the previous
version's list and appends the classes it sees for the first time: the model's outputs
(every class a prediction scored, not only the top one) and the labels written.
Memory is a list and a set per model, whatever the number of samples.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence


class ClassLists:
    """Per model id, its classes in the order they were first seen.

    Args:
        previous: The lists a previous version published (kept as they are, in order).
    """

    def __init__(self, previous: Mapping[str, Sequence[str]] | None = None) -> None:
        self._lists: dict[str, list[str]] = {}
        self._sets: dict[str, set[str]] = {}
        for model_id, classes in (previous or {}).items():
            self._lists[model_id] = []
            self._sets[model_id] = set()
            for name in classes:  # a hand-edited list may repeat one: its first place counts
                self._append(model_id, name)

    def _append(self, model_id: str, name: str) -> None:
        seen = self._sets.setdefault(model_id, set())
        if name not in seen:
            seen.add(name)
            self._lists.setdefault(model_id, []).append(name)

    def see(self, model_id: str, classes: Iterable[str]) -> None:
        """Append the classes not listed yet: seen together (one record's outputs and
        label), they have no order of their own, so they go in by name."""
        seen = self._sets.get(model_id, set())
        for name in sorted({c for c in classes if c not in seen}):
            self._append(model_id, name)

    def known(self, model_id: str) -> bool:
        """Whether anything is known of this model's classes."""
        return bool(self._lists.get(model_id))

    def has(self, model_id: str, name: str) -> bool:
        return name in self._sets.get(model_id, ())

    def to_dict(self) -> dict[str, list[str]]:
        """Every model's list, models by id (what the manifest records)."""
        return {model_id: list(self._lists[model_id]) for model_id in sorted(self._lists)}
