"""Human labels: several annotators' labels for one input become one label, or a
recorded disagreement; labels from several sources (a label file, Label Studio) are
combined; and a dataset row's human label is read back.

Pure decisions, no I/O. A label file (``_stages/labels.load_label_file``) and a Label
Studio pull (``_labels/pull.py``) aggregate with the same policies, and the writer and
the pull combine sources with the same :func:`combine`. A policy is a
:class:`LabelAggregation`; subclass it and implement :meth:`decide`.

Rules name the sources: ``human:label-file``, ``human:label-studio``, and
``human:label-file+label-studio`` when both have a say; ``:conflict`` is appended when
the humans disagree (within a source, or the sources with each other).
"""

from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from modzy_retrain._core.exceptions import ConfigurationError


@dataclass(frozen=True)
class Annotation:
    """One human's label for one input.

    Attributes:
        label: The label they chose.
        annotator: Who chose it (``None`` when the source does not say); for Label
            Studio, the annotator's user id.
        source: Where it comes from (``label-file``, ``label-studio``); ``None``: the
            source of the :class:`HumanLabel` it belongs to.
        at: When it was made or last changed, when the source says.
    """

    label: str
    annotator: str | None = None
    source: str | None = None
    at: datetime | None = None


@dataclass(frozen=True)
class HumanLabel:
    """What the annotations of one input come to.

    Attributes:
        label: The agreed label, or ``None`` when the annotators disagree (the
            sample is then in ``conflict``).
        annotations: Every annotation, in the order the source listed them.
        candidates: On disagreement, the labels chosen, most often chosen first (ties
            by name); empty when they agree.
        source: Where the labels come from (``label-file``): the sample's rule is
            ``human:<source>``.
    """

    label: str | None
    annotations: tuple[Annotation, ...]
    candidates: tuple[str, ...] = ()
    source: str = "label-file"

    @property
    def agreed(self) -> bool:
        return self.label is not None

    @property
    def state(self) -> str:
        """The label state it gives a sample: ``labelled``, or ``conflict``."""
        return "labelled" if self.agreed else "conflict"

    @property
    def rule(self) -> str:
        """``human:<source>``, with ``:conflict`` when the humans disagree."""
        return HUMAN + self.source + ("" if self.agreed else CONFLICT)

    def sourced(self) -> tuple[Annotation, ...]:
        """The annotations, each naming its source."""
        return tuple(
            a if a.source is not None else replace(a, source=self.source) for a in self.annotations
        )


HUMAN = "human:"
CONFLICT = ":conflict"


def _ranked(support: Mapping[str, float]) -> tuple[str, ...]:
    """Labels by support, highest first; ties by name (so the order is stable)."""
    return tuple(sorted(support, key=lambda label: (-support[label], label)))


def _share(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 < float(value) <= 1:
        raise ConfigurationError(f"{what} must be a number above 0 and at most 1")
    return float(value)


def _weight(value: object, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not 0 <= float(value) < float("inf")
    ):
        raise ConfigurationError(f"Weighted({what}=...) must be a non-negative number")
    return float(value)


def _leader(support: Mapping[str, float], min_agreement: float) -> str | None:
    """The label with the most support, if it holds ``min_agreement`` of the total and
    no other label ties it; else ``None``."""
    total = sum(support.values())
    if total <= 0:
        return None
    ranked = _ranked(support)
    top = ranked[0]
    if len(ranked) > 1 and support[ranked[1]] == support[top]:
        return None
    return top if support[top] / total >= min_agreement else None


class LabelAggregation(ABC):
    """How the annotations of one input become one label (or a disagreement).

    Subclass hook: implement :meth:`decide`; :meth:`aggregate` wraps its answer in a
    :class:`HumanLabel` with every annotation and, on disagreement, the candidates.
    """

    def aggregate(
        self, annotations: Sequence[Annotation], *, source: str = "label-file"
    ) -> HumanLabel:
        """Aggregate one input's annotations (at least one)."""
        found = tuple(annotations)
        if not found:
            raise ConfigurationError("aggregate() needs at least one annotation")
        label = self.decide(found)
        if label is not None:
            return HumanLabel(label, found, (), source)
        support = Counter(a.label for a in found)
        return HumanLabel(None, found, _ranked(support), source)

    @abstractmethod
    def decide(self, annotations: tuple[Annotation, ...]) -> str | None:
        """The agreed label, or ``None`` when the annotators disagree."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class Majority(LabelAggregation):
    """The most chosen label, if it holds ``min_agreement`` of the annotations and no
    other label ties it (the default policy; a single annotation gives its label).

    Args:
        min_agreement: The share of annotations the leading label needs (default 0.5:
            2 of 3 agree, 1 and 1 is a conflict).
    """

    def __init__(self, min_agreement: float = 0.5) -> None:
        self.min_agreement = _share(min_agreement, "Majority(min_agreement=...)")

    def decide(self, annotations: tuple[Annotation, ...]) -> str | None:
        return _leader(Counter(a.label for a in annotations), self.min_agreement)

    def __repr__(self) -> str:
        return f"Majority(min_agreement={self.min_agreement})"


class Unanimous(LabelAggregation):
    """A label only when every annotation agrees."""

    def decide(self, annotations: tuple[Annotation, ...]) -> str | None:
        labels = {a.label for a in annotations}
        return labels.pop() if len(labels) == 1 else None


class TrustedAnnotator(LabelAggregation):
    """One annotator's label wins: the others are ignored whenever it labelled the
    input; inputs it did not label are decided by ``fallback``.

    Args:
        annotator: The trusted annotator's name.
        fallback: The policy for inputs the trusted annotator did not label (default
            :class:`Majority`).
    """

    def __init__(self, annotator: str, *, fallback: LabelAggregation | None = None) -> None:
        if not isinstance(annotator, str) or not annotator.strip():
            raise ConfigurationError("TrustedAnnotator(annotator=...) must be a non-empty name")
        given: object = fallback  # typed callers cannot get this wrong; notebooks can
        if given is not None and not isinstance(given, LabelAggregation):
            raise ConfigurationError(
                f"TrustedAnnotator(fallback=...) takes a LabelAggregation, not {given!r}"
            )
        self.annotator = annotator
        self.fallback = fallback if fallback is not None else Majority()

    def decide(self, annotations: tuple[Annotation, ...]) -> str | None:
        trusted = {a.label for a in annotations if a.annotator == self.annotator}
        if trusted:
            # Two different labels from the trusted annotator itself: no winner.
            return trusted.pop() if len(trusted) == 1 else None
        return self.fallback.decide(annotations)

    def __repr__(self) -> str:
        return f"TrustedAnnotator({self.annotator!r}, fallback={self.fallback!r})"


class Weighted(LabelAggregation):
    """Each annotation counts its annotator's weight: the label with the most weight
    wins if it holds ``min_agreement`` of the total and no other label ties it.

    Args:
        weights: Weight per annotator (non-negative numbers).
        default: The weight of an annotator not in ``weights``, or of an annotation
            without an annotator (default 1; 0 ignores them).
        min_agreement: The share of the total weight the leading label needs
            (default 0.5).
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        *,
        default: float = 1.0,
        min_agreement: float = 0.5,
    ) -> None:
        if not isinstance(weights, Mapping):
            raise ConfigurationError("Weighted(weights=...) must map annotators to weights")
        self.weights = {str(k): _weight(v, f"weights[{k!r}]") for k, v in weights.items()}
        self.default = _weight(default, "default")
        self.min_agreement = _share(min_agreement, "Weighted(min_agreement=...)")

    def weight(self, annotator: str | None) -> float:
        """How much one annotator's label counts."""
        return self.weights.get(annotator, self.default) if annotator else self.default

    def decide(self, annotations: tuple[Annotation, ...]) -> str | None:
        support: dict[str, float] = {}
        for a in annotations:
            support[a.label] = support.get(a.label, 0.0) + self.weight(a.annotator)
        return _leader(support, self.min_agreement)

    def __repr__(self) -> str:
        return (
            f"Weighted({dict(sorted(self.weights.items()))}, default={self.default}, "
            f"min_agreement={self.min_agreement})"
        )


# -- sources combined, and read back from a row ------------------------------------------


def is_human(rule: object) -> bool:
    """Whether a rule is a human label's (``human:...``)."""
    return isinstance(rule, str) and rule.startswith(HUMAN)


def rule_sources(rule: str) -> tuple[str, ...]:
    """The sources a human rule names (``human:label-file+label-studio:conflict`` gives
    ``("label-file", "label-studio")``); empty for any other rule."""
    if not is_human(rule):
        return ()
    body = rule[len(HUMAN) :]
    if body.endswith(CONFLICT):
        body = body[: -len(CONFLICT)]
    return tuple(s for s in body.split("+") if s)


def combine(parts: Iterable[HumanLabel]) -> HumanLabel:
    """One human label from the labels several sources give one input.

    One source: its label as it is. Several: the label they all agree on, or a
    disagreement (``conflict``) listing every source's annotations, whose candidates
    are each source's label (then its own candidates), in the sources' name order.
    """
    by_source = {p.source: p for p in parts}
    if not by_source:
        raise ConfigurationError("combine() needs at least one human label")
    ordered = [by_source[name] for name in sorted(by_source)]
    if len(ordered) == 1:
        return ordered[0]
    annotations = tuple(a for p in ordered for a in p.sourced())
    source = "+".join(p.source for p in ordered)
    labels = {p.label for p in ordered}
    if len(labels) == 1 and None not in labels:
        return HumanLabel(ordered[0].label, annotations, (), source)
    seen: dict[str, None] = {}
    for p in ordered:
        for label in ((p.label,) if p.label is not None else ()) + p.candidates:
            seen.setdefault(label, None)
    return HumanLabel(None, annotations, tuple(seen), source)


def _annotation(value: object, source: str | None) -> Annotation | None:
    if isinstance(value, Mapping):
        raw = dict(value)
    elif hasattr(value, "model_dump"):  # a PublishedAnnotation
        raw = value.model_dump()
    else:
        return None
    label = raw.get("label")
    if not isinstance(label, str):
        return None
    at = raw.get("at")
    if isinstance(at, str):
        try:
            at = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            at = None
    annotator = raw.get("annotator")
    return Annotation(
        label,
        annotator if isinstance(annotator, str) else None,
        raw.get("source") if isinstance(raw.get("source"), str) else source,
        at if isinstance(at, datetime) else None,
    )


def from_row(
    row: Mapping[str, Any], policy: LabelAggregation | None = None
) -> dict[str, HumanLabel]:
    """The human label of each source behind a written row (empty unless its rule is
    ``human:...``).

    A row of one source gives that source's label exactly as written. A row where
    several sources met keeps only their annotations (each naming its source): each
    source's label is aggregated again from them, by ``policy`` (default
    :class:`Majority`).
    """
    rule = row.get("rule")
    sources = rule_sources(rule) if isinstance(rule, str) else ()
    if not sources:
        return {}
    single = sources[0] if len(sources) == 1 else None
    found = [_annotation(a, single) for a in row.get("annotations") or ()]
    annotations = tuple(a for a in found if a is not None)
    if single is not None:
        label = row.get("label")
        candidates = tuple(str(c) for c in row.get("candidates") or ())
        agreed = isinstance(label, str) and row.get("label_state") == "labelled"
        return {
            single: HumanLabel(
                label if agreed else None,
                annotations,
                () if agreed else candidates,
                single,
            )
        }
    chosen = policy if policy is not None else Majority()
    out: dict[str, HumanLabel] = {}
    for name in sources:
        own = tuple(a for a in annotations if a.source == name)
        if own:
            out[name] = chosen.aggregate(own, source=name)
    return out


def annotation_row(annotation: Annotation, source: str | None = None) -> dict[str, Any]:
    """One annotation as a dataset row holds it (see ``rows.COLUMNS``)."""
    return {
        "annotator": annotation.annotator,
        "label": annotation.label,
        "source": annotation.source or source,
        "at": annotation.at.isoformat() if annotation.at is not None else None,
    }


def decided_row(row: Mapping[str, Any], human: HumanLabel) -> dict[str, Any]:
    """``row`` with ``human``'s label, label state, rule, candidates and annotations."""
    return {
        **row,
        "label": human.label,
        "label_state": human.state,
        "rule": human.rule,
        "candidates": list(human.candidates),
        "annotations": [annotation_row(a) for a in human.sourced()],
    }
