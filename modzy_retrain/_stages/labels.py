"""The label policy: how a selected record becomes a label, a label state and a rule.

Votes say whether a prediction was right, not what was: :class:`LabelPolicy` turns the
votes (and, optionally, human labels from a label file) into a label. Users can
subclass it. A label file may hold several annotators' rows for one input: they are
aggregated by a :class:`LabelAggregation` (``aggregation.py``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import fsspec

from modzy_retrain._core.exceptions import ConfigurationError
from modzy_retrain._dataset.human import Annotation, HumanLabel, LabelAggregation, Majority

from .records import LabelState, PredictionRecord

# -- labels -------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelDecision:
    """What a :class:`LabelPolicy` decided for one record."""

    label: str | None
    state: LabelState
    rule: str
    candidates: tuple[str, ...] = ()
    # The human labels behind a ``human:`` rule, each annotator's choice.
    annotations: tuple[Annotation, ...] = ()


def load_label_file(
    url: str,
    *,
    aggregation: LabelAggregation | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> dict[tuple[str, str], HumanLabel]:
    """Read a label file: CSV (header ``job_id,input_name,label``, optionally
    ``annotator``) or JSONL (same keys), one :class:`HumanLabel` per input.

    Every row counts: the rows of one ``(job_id, input_name)`` are aggregated by
    ``aggregation`` (default :class:`Majority`), so annotators who disagree give a
    label with ``label=None`` and each one's choice, never the last row read.
    The format follows the extension (``.csv``, ``.jsonl``/``.json``/``.ndjson``).
    """
    given: object = aggregation  # typed callers cannot get this wrong; notebooks can
    if given is not None and not isinstance(given, LabelAggregation):
        raise ConfigurationError(
            f"load_label_file(aggregation=...) takes a LabelAggregation, not {given!r}"
        )
    policy = aggregation if aggregation is not None else Majority()
    grouped = _annotations(url, storage_options)
    return {key: policy.aggregate(found) for key, found in grouped.items()}


def _annotations(
    url: str, storage_options: Mapping[str, Any] | None
) -> dict[tuple[str, str], list[Annotation]]:
    """Every row of a label file, grouped by input in the order first listed."""
    lowered = url.lower()
    if not lowered.endswith((".csv", ".jsonl", ".ndjson", ".json")):
        raise ConfigurationError(f"label file {url!r}: use a .csv or .jsonl file")
    try:
        with fsspec.open(url, "rb", **dict(storage_options or {})) as handle:
            text = handle.read().decode("utf-8-sig")
    except FileNotFoundError:
        raise ConfigurationError(f"label file {url!r} does not exist") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"label file {url!r} is not UTF-8 text") from None
    labels: dict[tuple[str, str], list[Annotation]] = {}
    if lowered.endswith(".csv"):
        reader = csv.DictReader(io.StringIO(text))
        missing = {"job_id", "input_name", "label"} - set(reader.fieldnames or ())
        if missing:
            raise ConfigurationError(
                f"label file {url!r} lacks the column(s) {', '.join(sorted(missing))}"
            )
        rows: Iterable[Mapping[str, Any]] = reader
    elif lowered.endswith((".jsonl", ".ndjson", ".json")):
        parsed = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigurationError(
                    f"label file {url!r}, line {number}: not JSON ({exc.msg})"
                ) from None
            if not isinstance(row, dict):
                raise ConfigurationError(f"label file {url!r}, line {number}: not an object")
            parsed.append(row)
        rows = parsed
    for number, row in enumerate(rows, 1):
        job_id, name, label = row.get("job_id"), row.get("input_name"), row.get("label")
        if not job_id or not name or label in (None, ""):
            raise ConfigurationError(
                f"label file {url!r}, row {number}: job_id, input_name and label are required"
            )
        annotator = row.get("annotator")
        # An empty annotator cell is a row without one (CSV cannot tell them apart).
        who = str(annotator) if annotator not in (None, "") else None
        labels.setdefault((str(job_id), str(name)), []).append(Annotation(str(label), who))
    return labels


def human_label(value: str | HumanLabel) -> HumanLabel:
    """A known label as a :class:`HumanLabel` (a plain text: one unnamed annotator)."""
    if isinstance(value, HumanLabel):
        return value
    return HumanLabel(value, (Annotation(value),))


class LabelPolicy:
    """Turns a selected record into a label, a label state and a rule.

    The default rules, in order:

    1. A human label (from the label file) wins over the votes: ``labelled`` with the
       agreed label (rule ``human:label-file``), or ``conflict`` when the annotators
       disagree (rule ``human:label-file:conflict``, their labels as candidates);
       each annotator's choice goes into the sample's ``annotations``.
    2. Both up- and down-votes, and neither side has ``min_agreement`` of them:
       ``conflict`` (rule ``conflict``); candidates: the top two classes.
    3. Mostly up-voted: ``confirmed`` with the predicted class (rule ``up-voted``).
    4. Mostly down-voted, binary model: ``corrected`` to the other class
       (rule ``down-voted:binary-flip``).
    5. Mostly down-voted, multi-class: ``needs_label``, the runner-up class kept as a
       candidate (rule ``down-voted:needs-label``).
    6. No votes (picked by a prediction-based selector): ``needs_label`` with the top
       two classes as candidates (rule ``unvoted``).

    A model is binary when ``classes`` says so, or when its output lists exactly two
    classes.

    Args:
        min_agreement: Share of the votes the majority needs for the votes to count as
            agreeing (default 0.75: 3 up and 1 down is "up-voted", 2 and 1 a conflict).
        labels: Human labels keyed by ``(job_id, input_name)``: a :class:`HumanLabel`
            (see :func:`load_label_file`) or a plain label.
        classes: The full class list per model id, when outputs list only the top-k.

    Subclass hook: override :meth:`label`.
    """

    def __init__(
        self,
        *,
        min_agreement: float = 0.75,
        labels: Mapping[tuple[str, str], str | HumanLabel] | None = None,
        classes: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        if not 0.5 <= min_agreement <= 1.0:
            raise ConfigurationError("min_agreement must be between 0.5 and 1")
        self.min_agreement = min_agreement
        self.labels: Mapping[tuple[str, str], str | HumanLabel] = dict(labels or {})
        self.classes = {k: tuple(v) for k, v in (classes or {}).items()}

    def other_class(self, record: PredictionRecord) -> str | None:
        """For a binary model, the class that was not predicted; else ``None``."""
        predicted = record.predicted_label
        classes = self.classes.get(record.model_id) or tuple(p.label for p in record.predictions)
        if predicted is None or len(classes) != 2 or predicted not in classes:
            return None
        return classes[1] if classes[0] == predicted else classes[0]

    @staticmethod
    def from_human(known: HumanLabel) -> LabelDecision:
        """The decision a human label makes: it wins over any rule from the votes."""
        rule = f"human:{known.source}"
        if known.label is not None:
            return LabelDecision(known.label, "labelled", rule, annotations=known.annotations)
        return LabelDecision(
            None, "conflict", f"{rule}:conflict", known.candidates, known.annotations
        )

    def label(self, record: PredictionRecord) -> LabelDecision:
        """Decide the label of one selected record."""
        predicted = record.predicted_label
        top_two = tuple(p.label for p in record.predictions[:2])
        known = self.labels.get(record.key)
        if known is not None:
            return self.from_human(human_label(known))
        up, down = record.voting.up, record.voting.down
        total = up + down
        if up and down and max(up, down) / total < self.min_agreement:
            return LabelDecision(None, "conflict", "conflict", top_two)
        if up > down:
            if predicted is None:
                return LabelDecision(None, "needs_label", "up-voted:no-prediction")
            return LabelDecision(predicted, "confirmed", "up-voted")
        if down > up:
            flipped = self.other_class(record)
            if flipped is not None:
                return LabelDecision(flipped, "corrected", "down-voted:binary-flip")
            runner_up = record.runner_up
            return LabelDecision(
                None,
                "needs_label",
                "down-voted:needs-label",
                (runner_up,) if runner_up else (),
            )
        if total:
            # As many up as down: a tie is a conflict whatever min_agreement says.
            return LabelDecision(None, "conflict", "conflict", top_two)
        return LabelDecision(None, "needs_label", "unvoted", top_two)

    def __repr__(self) -> str:
        return (
            f"LabelPolicy(min_agreement={self.min_agreement}, labels={len(self.labels)}, "
            f"classes={sorted(self.classes)})"
        )
