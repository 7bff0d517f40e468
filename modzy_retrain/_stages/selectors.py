"""Selectors: yes/no rules on a prediction record (votes, scores, predicted classes).

Built-ins compose with ``&``, ``|`` and ``~``; :data:`SELECTORS` names the ones the
command line and TOML settings take. :class:`VoteFilter` applies one.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from modzy_retrain._core.exceptions import ConfigurationError

from .records import PredictionRecord

# -- selectors ------------------------------------------------------------------------


class Selector:
    """A yes/no rule on a :class:`PredictionRecord`. Combine with ``&``, ``|``, ``~``.

    Subclass and implement :meth:`matches` for a rule of your own; ``repr`` is how
    the rule is written in reports and manifests.
    """

    def matches(self, record: PredictionRecord) -> bool:
        """Whether the record is selected: the one method a selector implements."""
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


def check_selector(value: object, where: str) -> Selector:
    """``value`` if it is a selector instance; a :class:`ConfigurationError` saying what
    to write instead otherwise (a class passed for an instance is the usual slip)."""
    if isinstance(value, type) and issubclass(value, Selector):
        raise ConfigurationError(
            f"{where} takes a selector instance: write {value.__name__}() (with its "
            f"parameters), not the class {value.__name__}"
        )
    if not isinstance(value, Selector):
        raise ConfigurationError(
            f"{where} takes a Selector such as DownVoted() or TopScoreBelow(0.6), "
            f"not {type(value).__name__} {value!r}"
        )
    return value


def _number(
    value: object, where: str, low: float | None = None, high: float | None = None
) -> float:
    """A real number within [low, high] (a bool is not a number here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigurationError(f"{where} takes a number, not {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = (
            f"between {low:g} and {high:g}"
            if low is not None and high is not None
            else (f"at least {low:g}" if low is not None else f"at most {high:g}")
        )
        raise ConfigurationError(f"{where} takes a number {bounds}, not {value!r}")
    return value


def _whole(value: object, where: str, low: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"{where} takes a whole number, not {value!r}")
    if low is not None and value < low:
        raise ConfigurationError(f"{where} takes a whole number of at least {low}, not {value}")
    return value


class AllOf(Selector):
    """Every rule matches."""

    def __init__(self, *rules: Selector) -> None:
        self.rules = tuple(check_selector(rule, "AllOf") for rule in rules)

    def matches(self, record: PredictionRecord) -> bool:
        return all(rule.matches(record) for rule in self.rules)

    def __repr__(self) -> str:
        return "(" + " & ".join(repr(r) for r in self.rules) + ")"


class AnyOf(Selector):
    """At least one rule matches."""

    def __init__(self, *rules: Selector) -> None:
        self.rules = tuple(check_selector(rule, "AnyOf") for rule in rules)

    def matches(self, record: PredictionRecord) -> bool:
        return any(rule.matches(record) for rule in self.rules)

    def __repr__(self) -> str:
        return "(" + " | ".join(repr(r) for r in self.rules) + ")"


class Not(Selector):
    """The rule does not match."""

    def __init__(self, rule: Selector) -> None:
        self.rule = check_selector(rule, "Not")

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
        self.n = _whole(n, "MinVotes", low=0)

    def matches(self, record: PredictionRecord) -> bool:
        return record.voting.total >= self.n

    def __repr__(self) -> str:
        return f"MinVotes({self.n})"


class NetScore(Selector):
    """Up-votes minus down-votes within ``[at_least, at_most]`` (either bound optional)."""

    def __init__(self, *, at_least: int | None = None, at_most: int | None = None) -> None:
        if at_least is None and at_most is None:
            raise ConfigurationError("NetScore needs at_least, at_most or both")
        self.at_least = None if at_least is None else _whole(at_least, "NetScore(at_least=)")
        self.at_most = None if at_most is None else _whole(at_most, "NetScore(at_most=)")
        if self.at_least is not None and self.at_most is not None and self.at_least > self.at_most:
            raise ConfigurationError(
                f"NetScore: at_least ({self.at_least}) is above at_most ({self.at_most})"
            )

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
        self.at_least = _number(at_least, "DownShare (a share)", 0.0, 1.0)

    def matches(self, record: PredictionRecord) -> bool:
        total = record.voting.total
        return total > 0 and record.voting.down / total >= self.at_least

    def __repr__(self) -> str:
        return f"DownShare({self.at_least})"


class TopScoreBelow(Selector):
    """The model's top score is below ``threshold`` (uncertain predictions)."""

    def __init__(self, threshold: float) -> None:
        # Scores are probabilities: a threshold outside [0, 1] matches all or nothing.
        self.threshold = _number(threshold, "TopScoreBelow", 0.0, 1.0)

    def matches(self, record: PredictionRecord) -> bool:
        score = record.top_score
        return score is not None and score < self.threshold

    def __repr__(self) -> str:
        return f"TopScoreBelow({self.threshold})"


class PredictedIn(Selector):
    """The model's top class is one of ``labels``."""

    def __init__(self, labels: Iterable[str]) -> None:
        if isinstance(labels, str):  # a bare string would be a set of characters
            raise ConfigurationError(
                f"PredictedIn takes a list of labels, e.g. PredictedIn([{labels!r}])"
            )
        self.labels = frozenset(labels)
        if not self.labels or not all(isinstance(x, str) and x for x in self.labels):
            raise ConfigurationError("PredictedIn takes one or more non-empty label strings")

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


def _range(text: str) -> dict[str, int | None]:
    """``-3..3``, ``..-1`` or ``1..``: NetScore's bounds."""
    low, sep, high = text.partition("..")
    if not sep:
        raise ValueError("a range such as -3..3, ..-1 or 1..")
    return {
        "at_least": int(low) if low.strip() else None,
        "at_most": int(high) if high.strip() else None,
    }


# Selectors that take a parameter: name -> (class, keyword, how the text after ':'
# becomes the keyword's value, an example).
PARAMETERIZED: dict[str, tuple[Callable[..., Selector], str, Callable[[str], Any], str]] = {
    "top-score-below": (TopScoreBelow, "threshold", float, "top-score-below:0.6"),
    "min-votes": (MinVotes, "n", int, "min-votes:2"),
    "down-share": (DownShare, "at_least", float, "down-share:0.5"),
    "net-score": (NetScore, "", _range, "net-score:..-1"),
    "predicted-in": (
        PredictedIn,
        "labels",
        lambda text: [x.strip() for x in text.split(",") if x.strip()],
        "predicted-in:cat,dog",
    ),
}


def _names() -> str:
    return ", ".join([*sorted(SELECTORS), *(example for *_, example in PARAMETERIZED.values())])


def selector_by_name(name: str) -> Selector:
    """A built-in selector from its name, with its parameter after a colon.

    ``down-voted``, ``up-voted``, ``conflict``, ``any-votes``, ``everything``;
    ``top-score-below:0.6``, ``min-votes:2``, ``down-share:0.5``,
    ``net-score:..-1`` (or ``-3..3``, ``1..``), ``predicted-in:cat,dog``.

    Raises:
        ConfigurationError: An unknown name, or a parameter missing or out of range.
    """
    if not isinstance(name, str):
        raise ConfigurationError(f"a selector name is a string such as 'down-voted', not {name!r}")
    key, sep, param = name.strip().partition(":")
    if key in SELECTORS:
        if sep:
            raise ConfigurationError(f"selector {key!r} takes no parameter (got {name!r})")
        return SELECTORS[key]()
    if key in PARAMETERIZED:
        cls, keyword, parse, example = PARAMETERIZED[key]
        if not param.strip():
            raise ConfigurationError(f"selector {key!r} needs a parameter, e.g. {example!r}")
        try:
            value = parse(param)
        except ValueError:
            raise ConfigurationError(
                f"selector {name!r}: cannot read {param!r}; write e.g. {example!r}"
            ) from None
        return cls(**value) if not keyword else cls(**{keyword: value})
    near = difflib.get_close_matches(key, [*SELECTORS, *PARAMETERIZED], n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    raise ConfigurationError(f"unknown selector {key!r}{hint}; use one of {_names()}")


def selector_from_setting(value: object) -> Selector:
    """A selector from a settings value: a name (see :func:`selector_by_name`), or a
    table ``{name = "top-score-below", threshold = 0.6}`` naming the class's keywords."""
    if isinstance(value, str):
        return selector_by_name(value)
    if isinstance(value, Mapping) and isinstance(value.get("name"), str):
        params = {k: v for k, v in value.items() if k != "name"}
        key = value["name"]
        if key in SELECTORS and not params:
            return SELECTORS[key]()
        if key in PARAMETERIZED:
            cls = PARAMETERIZED[key][0]
            try:
                return cls(**params)
            except TypeError as exc:
                raise ConfigurationError(f"selector {key!r}: {exc}") from None
        return selector_by_name(key + (":" if params else ""))
    raise ConfigurationError(
        f"a selector setting is a name such as 'top-score-below:0.6' or a table "
        f"with a name, not {value!r}"
    )
