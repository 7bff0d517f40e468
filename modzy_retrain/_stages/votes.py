"""``VoteFilter``: pick the predictions worth a training sample, and label them.

Selection is a :class:`Selector` (``selectors``); labelling is a :class:`LabelPolicy`
(``labels``), which turns a selected record into a label, a label state and the rule
that decided it.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from modzy_retrain._core.exceptions import ConfigurationError
from modzy_retrain._dataset.human import LabelAggregation

from .base import Stage
from .labels import LabelPolicy, load_label_file
from .records import PredictionRecord, Sample
from .report import NOT_SELECTED, Drop
from .selectors import AnyVotes, Selector, check_selector

# -- the stage ----------------------------------------------------------------------


class VoteFilter(Stage[PredictionRecord, Sample]):
    """Keep the records a :class:`Selector` picks, and label them with a :class:`LabelPolicy`.

    Args:
        select: Which records become samples (default: any record with votes).
        policy: How they are labelled (default: :class:`LabelPolicy`).
        label_file: A CSV or JSONL file of labels keyed by ``job_id`` and
            ``input_name`` (and optionally ``annotator``); records it labels are
            selected whatever ``select`` says.
        aggregation: How several rows for one input become one label (default
            :class:`Majority`); only with ``label_file``.
        storage_options: fsspec options to read ``label_file``.

    Records not selected are reported as ``not_selected``.

    Subclass hook: override :meth:`select`.
    """

    name = "select"

    def __init__(
        self,
        select: Selector | None = None,
        *,
        policy: LabelPolicy | None = None,
        label_file: str | None = None,
        aggregation: LabelAggregation | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.selector = check_selector(select, "VoteFilter") if select is not None else AnyVotes()
        given: object = policy  # typed callers cannot get this wrong; notebooks can
        if given is not None and not isinstance(given, LabelPolicy):
            what = f"the class {given.__name__}" if isinstance(given, type) else repr(given)
            raise ConfigurationError(
                f"VoteFilter(policy=) takes a LabelPolicy instance, not {what}"
            )
        self.policy = policy if policy is not None else LabelPolicy()
        if aggregation is not None and label_file is None:
            raise ConfigurationError("VoteFilter(aggregation=...) needs a label_file")
        self.label_file = label_file
        self.aggregation = aggregation
        if label_file is not None:
            loaded = load_label_file(
                label_file, aggregation=aggregation, storage_options=storage_options
            )
            self.policy.labels = {**loaded, **self.policy.labels}
        self._labelled: AbstractSet[tuple[str, str]] = frozenset(self.policy.labels)

    def select(self, record: PredictionRecord) -> bool:
        """Whether this record becomes a sample. Default: the selector, or a known label."""
        return self.selector(record) or record.key in self._labelled

    def describe(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "select": repr(self.selector),
            "policy": repr(self.policy),
            "label_file": self.label_file,
            "aggregation": repr(self.aggregation) if self.aggregation is not None else None,
        }

    def process(self, record: PredictionRecord) -> Sample | Drop:
        # Pure CPU work per record: the async path runs it on the event loop as it is.
        if not self.select(record):
            return Drop(
                self.name, NOT_SELECTED, record.job_id, record.input_name, repr(self.selector)
            )
        decision = self.policy.label(record)
        return Sample(
            record=record,
            label=decision.label,
            label_state=decision.state,
            rule=decision.rule,
            candidates=decision.candidates,
            annotations=decision.annotations,
        )
