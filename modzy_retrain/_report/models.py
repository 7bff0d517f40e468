"""The feedback report as data: what each chart draws, and the tables beside it.

Every number here comes from a dataset's manifests (see ``figures.py``); the charts
(``charts.py``) and the HTML page (``page.py``) only show them.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Period = Literal["day", "week", "month"]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class DownVoteShare(_Model):
    """How many of a group's inputs with a result users down-voted, with its interval.

    Attributes:
        inputs: Inputs with a result.
        up_voted: Inputs with at least one up-vote.
        down_voted: Inputs with at least one down-vote.
        both: Inputs with both.
        share: ``down_voted / inputs`` (0 when there is no input).
        low, high: The Wilson score interval of the share, at the report's
            confidence (``FeedbackReport.confidence``).
    """

    inputs: int
    up_voted: int
    down_voted: int
    both: int
    share: float
    low: float
    high: float


class PeriodShare(DownVoteShare):
    """One point of the chart over time: a model version in one period.

    Attributes:
        model_version: The model version.
        period: The period's first day (a day, the Monday of a week, the first of a
            month: see ``FeedbackReport.period``).
        jobs: The jobs submitted in the period.
    """

    model_version: str
    period: date
    jobs: int


class VersionShare(DownVoteShare):
    """A model version over the whole history the dataset saw.

    Attributes:
        model_version: The model version.
        jobs: Its jobs.
        first_day, last_day: The days its first and last jobs were submitted.
    """

    model_version: str
    jobs: int
    first_day: date | None
    last_day: date | None


class ClassShare(DownVoteShare):
    """A predicted class (the model's top class), every model version summed.

    Attributes:
        label: The class the model predicted.
    """

    label: str


class ConfusionPair(_Model):
    """A predicted class and the label a correction or a person gave instead.

    Attributes:
        predicted: What the model predicted.
        label: The corrected or human label.
        count: Samples with this pair.
    """

    predicted: str
    label: str
    count: int


class ConfusionMatrix(_Model):
    """The predicted class against the corrected or human label, over the samples of
    the reported version whose label a correction (``corrected``) or a person
    (``labelled``) gave.

    Attributes:
        classes: The classes of the matrix, in the model's class-list order: its rows
            (predicted) and its columns (the label given) alike, so that its diagonal
            holds the predictions a person confirmed.
        counts: ``counts[i][j]``: samples predicted ``classes[i]`` and labelled
            ``classes[j]``.
        pairs: The pairs where the label is not the prediction (what users flag),
            the most frequent first.
        samples: The samples counted.
    """

    classes: list[str] = Field(default_factory=list)
    counts: list[list[int]] = Field(default_factory=list)
    pairs: list[ConfusionPair] = Field(default_factory=list)
    samples: int = 0


class ModelFeedback(_Model):
    """How users judged one model.

    Attributes:
        model_id: The model.
        model_name: Its name, as the history gave it.
        total: Its down-vote share over everything tallied.
        jobs: Its jobs tallied.
        versions: Per model version, over the whole history (oldest version first).
        over_time: Per model version and period: the chart over time.
        classes: Per predicted class, the most often down-voted first.
        confusion: The predicted class against the corrected or human label.
    """

    model_id: str
    model_name: str | None
    total: DownVoteShare
    jobs: int
    versions: list[VersionShare]
    over_time: list[PeriodShare]
    classes: list[ClassShare]
    confusion: ConfusionMatrix


class VersionSummary(_Model):
    """One version of the dataset: its samples, and what it changed.

    Attributes:
        version: ``v0001``... (``None`` for an unversioned dataset).
        created_at: When it was published (UTC).
        samples: Its samples.
        by_label_state: Samples per label state.
        by_split: Samples per split (``""``: outside every split).
        added, relabelled, retracted, carried, trainable: What it changed against
            the version before (``Changes``; all 0 but ``added`` for the first).
        jobs_tallied: The jobs its vote tallies hold (``None``: written before tallies).
    """

    version: str | None
    created_at: datetime
    samples: int
    by_label_state: dict[str, int]
    by_split: dict[str, int]
    added: int
    relabelled: int
    retracted: int
    carried: int
    trainable: int
    jobs_tallied: int | None


class FeedbackReport(_Model):
    """The feedback report of a dataset: how users judged its models over time, what
    they corrected, and what each version holds and changed.

    Made by :func:`feedback_report` from the dataset's manifests. Show it in a
    notebook as it is (it displays inline), write it as one self-contained HTML file
    with :meth:`write_html`, or read its numbers here: each chart of the page draws
    one of these lists.

    Not to be confused with a build's :class:`RunReport` (what one run did, which
    ``modzy-retrain build --report PATH`` writes as JSON).

    Attributes:
        dataset: The dataset's URL, without credentials.
        version: The version reported (the latest, unless one was asked for); its
            tallies carry every earlier version's.
        created_at: When that version was published.
        period: How the chart over time groups the days: ``day``, ``week``
            (starting on Monday) or ``month``.
        confidence: The confidence of every interval (0.95 by default).
        models: Per model, how users judged it.
        versions: Every version up to the one reported, oldest first.
        notes: What the reader should know (versions written before tallies, days
            the history did not give...).
    """

    dataset: str
    version: str | None
    created_at: datetime
    period: Period
    confidence: float
    models: list[ModelFeedback]
    versions: list[VersionSummary]
    notes: list[str] = Field(default_factory=list)

    def to_html(self) -> str:
        """The report as one self-contained HTML page: its charts as SVG images inside
        it, no script, nothing loaded from anywhere.

        Raises:
            MissingDependencyError: matplotlib is not installed (the ``report`` extra).
        """
        from .page import page

        return page(self)

    def write_html(self, url: str, *, storage_options: dict[str, Any] | None = None) -> None:
        """Write :meth:`to_html` to ``url`` (a path or any fsspec URL), atomically.

        Raises:
            MissingDependencyError: matplotlib is not installed (the ``report`` extra).
        """
        from .page import write_page

        write_page(self, url, storage_options)

    def _repr_html_(self) -> str:
        """Inline in a notebook: the page's content (its tables alone, with a note,
        when matplotlib is not installed)."""
        from .page import fragment

        return fragment(self, draw_charts=None)

    def __str__(self) -> str:
        from .text import summary_text

        return summary_text(self)
