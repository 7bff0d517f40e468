"""``VoteFilter``: pick the predictions worth a training sample, and label them.

Selection is a :class:`Selector`: built-ins for votes and predictions that compose
with ``&``, ``|`` and ``~``. Labelling is a :class:`LabelPolicy`, which users can
subclass; it turns a selected record into a label, a label state and the rule that
decided it.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import fsspec

from modzy_retrain._core.exceptions import ConfigurationError

from .base import Stage
from .records import LabelState, PredictionRecord, Sample
from .report import NOT_SELECTED, Drop

# -- selectors ------------------------------------------------------------------------


class Selector:
    """A yes/no rule on a :class:`PredictionRecord`. Combine with ``&``, ``|``, ``~``.

    Subclass and implement :meth:`matches` for a rule of your own; ``repr`` is how
    the rule is written in reports and manifests.
    """

    def matches(self, record: PredictionRecord) -> bool:
        raise NotImplementedError

    def __call__(self, record: PredictionRecord) -> bool:
        return self.matches(record)

    def __and__(self, other: Selector) -> Selector:
        return AllOf(self, other)

    def __or__(self, other: Selector) -> Selector:
        return AnyOf(self, other)

    def __invert__(self) -> Selector:
        return Not(self)

    def __repr__(self) -> str:
        return type(self).__name__


class AllOf(Selector):
    """Every rule matches."""

    def __init__(self, *rules: Selector) -> None:
        self.rules = rules

    def matches(self, record: PredictionRecord) -> bool:
        return all(rule.matches(record) for rule in self.rules)

    def __repr__(self) -> str:
        return "(" + " & ".join(repr(r) for r in self.rules) + ")"


class AnyOf(Selector):
    """At least one rule matches."""

    def __init__(self, *rules: Selector) -> None:
        self.rules = rules

    def matches(self, record: PredictionRecord) -> bool:
        return any(rule.matches(record) for rule in self.rules)

    def __repr__(self) -> str:
        return "(" + " | ".join(repr(r) for r in self.rules) + ")"


class Not(Selector):
    """The rule does not match."""

    def __init__(self, rule: Selector) -> None:
        self.rule = rule

    def matches(self, record: PredictionRecord) -> bool:
        return not self.rule.matches(record)

    def __repr__(self) -> str:
        return f"~{self.rule!r}"


class Everything(Selector):
    """Every record (useful to build a dataset of all predictions)."""

    def matches(self, record: PredictionRecord) -> bool:
        return True


class AnyVotes(Selector):
    """At least one vote, up or down."""

    def matches(self, record: PredictionRecord) -> bool:
        return record.voting.total > 0


class DownVoted(Selector):
    """More down-votes than up-votes: the users say the prediction is wrong."""

    def matches(self, record: PredictionRecord) -> bool:
        return record.voting.down > record.voting.up


class UpVoted(Selector):
    """More up-votes than down-votes: the users say the prediction is right."""

    def matches(self, record: PredictionRecord) -> bool:
        return record.voting.up > record.voting.down


class ConflictingVotes(Selector):
    """Both up-votes and down-votes: the users disagree."""

    def matches(self, record: PredictionRecord) -> bool:
        return record.voting.up > 0 and record.voting.down > 0


class MinVotes(Selector):
    """At least ``n`` votes in all."""

    def __init__(self, n: int) -> None:
        self.n = n

    def matches(self, record: PredictionRecord) -> bool:
        return record.voting.total >= self.n

    def __repr__(self) -> str:
        return f"MinVotes({self.n})"


class NetScore(Selector):
    """Up-votes minus down-votes within ``[at_least, at_most]`` (either bound optional)."""

    def __init__(self, *, at_least: int | None = None, at_most: int | None = None) -> None:
        if at_least is None and at_most is None:
            raise ConfigurationError("NetScore needs at_least, at_most or both")
        self.at_least = at_least
        self.at_most = at_most

    def matches(self, record: PredictionRecord) -> bool:
        net = record.voting.net
        if self.at_least is not None and net < self.at_least:
            return False
        return not (self.at_most is not None and net > self.at_most)

    def __repr__(self) -> str:
        return f"NetScore(at_least={self.at_least}, at_most={self.at_most})"


class DownShare(Selector):
    """At least this share of the votes are down-votes (records without votes: no)."""

    def __init__(self, at_least: float) -> None:
        if not 0.0 <= at_least <= 1.0:
            raise ConfigurationError("DownShare takes a share between 0 and 1")
        self.at_least = at_least

    def matches(self, record: PredictionRecord) -> bool:
        total = record.voting.total
        return total > 0 and record.voting.down / total >= self.at_least

    def __repr__(self) -> str:
        return f"DownShare({self.at_least})"


class TopScoreBelow(Selector):
    """The model's top score is below ``threshold`` (uncertain predictions)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def matches(self, record: PredictionRecord) -> bool:
        score = record.top_score
        return score is not None and score < self.threshold

    def __repr__(self) -> str:
        return f"TopScoreBelow({self.threshold})"


class PredictedIn(Selector):
    """The model's top class is one of ``labels``."""

    def __init__(self, labels: Iterable[str]) -> None:
        self.labels = frozenset(labels)

    def matches(self, record: PredictionRecord) -> bool:
        return record.predicted_label in self.labels

    def __repr__(self) -> str:
        return f"PredictedIn({sorted(self.labels)!r})"


SELECTORS: dict[str, Callable[[], Selector]] = {
    "any-votes": AnyVotes,
    "down-voted": DownVoted,
    "up-voted": UpVoted,
    "conflict": ConflictingVotes,
    "everything": Everything,
}
"""The built-in selectors by name (as the command line takes them)."""


def selector_by_name(name: str) -> Selector:
    """A built-in selector from its name (``down-voted``, ``up-voted``...)."""
    try:
        return SELECTORS[name]()
    except KeyError:
        raise ConfigurationError(
            f"unknown selector {name!r}; use one of {', '.join(sorted(SELECTORS))}"
        ) from None


# -- labels -------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelDecision:
    """What a :class:`LabelPolicy` decided for one record."""

    label: str | None
    state: LabelState
    rule: str
    candidates: tuple[str, ...] = ()


def load_label_file(
    url: str, *, storage_options: Mapping[str, Any] | None = None
) -> dict[tuple[str, str], str]:
    """Read a label file: CSV (header ``job_id,input_name,label``) or JSONL (same keys).

    The format follows the extension (``.csv``, ``.jsonl``/``.json``/``.ndjson``).
    """
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
    labels: dict[tuple[str, str], str] = {}
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
        labels[(str(job_id), str(name))] = str(label)
    return labels


class LabelPolicy:
    """Turns a selected record into a label, a label state and a rule.

    The default rules, in order:

    1. A label from the label file wins: ``confirmed`` if it equals the prediction,
       else ``corrected`` (rule ``label-file``).
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
        labels: Labels keyed by ``(job_id, input_name)`` (see :func:`load_label_file`).
        classes: The full class list per model id, when outputs list only the top-k.

    Subclass hook: override :meth:`label`.
    """

    def __init__(
        self,
        *,
        min_agreement: float = 0.75,
        labels: Mapping[tuple[str, str], str] | None = None,
        classes: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        if not 0.5 <= min_agreement <= 1.0:
            raise ConfigurationError("min_agreement must be between 0.5 and 1")
        self.min_agreement = min_agreement
        self.labels: Mapping[tuple[str, str], str] = dict(labels or {})
        self.classes = {k: tuple(v) for k, v in (classes or {}).items()}

    def other_class(self, record: PredictionRecord) -> str | None:
        """For a binary model, the class that was not predicted; else ``None``."""
        predicted = record.predicted_label
        classes = self.classes.get(record.model_id) or tuple(p.label for p in record.predictions)
        if predicted is None or len(classes) != 2 or predicted not in classes:
            return None
        return classes[1] if classes[0] == predicted else classes[0]

    def label(self, record: PredictionRecord) -> LabelDecision:
        """Decide the label of one selected record."""
        predicted = record.predicted_label
        top_two = tuple(p.label for p in record.predictions[:2])
        known = self.labels.get(record.key)
        if known is not None:
            state: LabelState = "confirmed" if known == predicted else "corrected"
            return LabelDecision(known, state, "label-file")
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


# -- the stage ----------------------------------------------------------------------


class VoteFilter(Stage[PredictionRecord, Sample]):
    """Keep the records a :class:`Selector` picks, and label them with a :class:`LabelPolicy`.

    Args:
        select: Which records become samples (default: any record with votes).
        policy: How they are labelled (default: :class:`LabelPolicy`).
        label_file: A CSV or JSONL file of labels keyed by ``job_id`` and
            ``input_name``; records it labels are selected whatever ``select`` says.
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
        storage_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.selector = select if select is not None else AnyVotes()
        self.policy = policy if policy is not None else LabelPolicy()
        self.label_file = label_file
        if label_file is not None:
            loaded = load_label_file(label_file, storage_options=storage_options)
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
        )
