"""Pure: the feedback report's numbers from a dataset's manifests.

The votes come from the reported version's tallies (``Manifest.tallies``: every job
the builds read, each once, carried from version to version), the confusions from its
counts (``ManifestCounts.confusions``), and what each version holds and changed from
each version's own manifest. Nothing here reads a file.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, timedelta
from statistics import NormalDist
from typing import Any

from modzy_retrain._core.exceptions import ConfigurationError
from modzy_retrain._dataset.manifest import Manifest, TallyTotal, VoteCounts
from modzy_retrain._dataset.tallies import add_counts

from .models import (
    ClassShare,
    ConfusionMatrix,
    ConfusionPair,
    DownVoteShare,
    FeedbackReport,
    ModelFeedback,
    Period,
    PeriodShare,
    VersionShare,
    VersionSummary,
)

PERIODS: tuple[Period, ...] = ("day", "week", "month")
# The finest period whose points a chart can still read: days up to a month of
# history, weeks up to half a year, months beyond.
_DAILY_SPAN = 31
_WEEKLY_SPAN = 183


def z_score(confidence: float) -> float:
    """The normal quantile of a two-sided interval at ``confidence`` (1.96 for 0.95)."""
    if isinstance(confidence, bool) or not 0 < confidence < 1:
        raise ConfigurationError(f"confidence must be between 0 and 1, not {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson(k: int, n: int, z: float) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` trials (``(0, 1)`` for none).

    Unlike the normal approximation it stays within [0, 1] and is not empty at 0 or n,
    which is where a down-vote share usually is on few inputs.
    """
    if n <= 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denominator
    # Exactly 0 and 1 at the ends (rounding would otherwise leave 1e-17 or 0.9999...).
    low = 0.0 if k == 0 else max(0.0, centre - half)
    high = 1.0 if k == n else min(1.0, centre + half)
    return low, high


def share_of(counts: VoteCounts, z: float) -> dict[str, Any]:
    """The fields of a :class:`DownVoteShare` for these counts."""
    low, high = wilson(counts.down_voted, counts.inputs, z)
    return {
        "inputs": counts.inputs,
        "up_voted": counts.up_voted,
        "down_voted": counts.down_voted,
        "both": counts.both,
        "share": counts.down_voted / counts.inputs if counts.inputs else 0.0,
        "low": low,
        "high": high,
    }


def period_start(day: date, period: Period) -> date:
    """The first day of the period ``day`` is in (weeks start on Monday)."""
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    return day


def choose_period(days: Iterable[date]) -> Period:
    """Days for a month of history or less, weeks up to half a year, else months."""
    seen = sorted(days)
    span = (seen[-1] - seen[0]).days if seen else 0
    if span <= _DAILY_SPAN:
        return "day"
    return "week" if span <= _WEEKLY_SPAN else "month"


def check_period(period: str | None) -> Period | None:
    """``period`` if it is one (``None`` stays: the report chooses)."""
    for known in PERIODS:
        if period == known:
            return known
    if period is None:
        return None
    raise ConfigurationError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")


def _sum(counts: Iterable[VoteCounts]) -> VoteCounts:
    total = VoteCounts()
    for c in counts:
        total = add_counts(total, c)
    return total


def _versions(totals: Sequence[TallyTotal], z: float) -> list[VersionShare]:
    by_version: dict[str, list[TallyTotal]] = {}
    for t in totals:
        by_version.setdefault(t.model_version, []).append(t)
    out = []
    for version, rows in by_version.items():
        days = [t.day for t in rows if t.day is not None]
        out.append(
            VersionShare(
                model_version=version,
                jobs=sum(t.jobs for t in rows),
                first_day=min(days) if days else None,
                last_day=max(days) if days else None,
                **share_of(_sum(rows), z),
            )
        )
    # Oldest version first: by the day it first ran, then by name.
    return sorted(out, key=lambda v: (v.first_day or date.max, v.model_version))


def _over_time(totals: Sequence[TallyTotal], period: Period, z: float) -> list[PeriodShare]:
    grouped: dict[tuple[str, date], list[TallyTotal]] = {}
    for t in totals:
        if t.day is not None:
            grouped.setdefault((t.model_version, period_start(t.day, period)), []).append(t)
    return [
        PeriodShare(
            model_version=version,
            period=start,
            jobs=sum(t.jobs for t in rows),
            **share_of(_sum(rows), z),
        )
        for (version, start), rows in sorted(grouped.items())
    ]


def _classes(totals: Sequence[TallyTotal], z: float) -> list[ClassShare]:
    per_class: dict[str, VoteCounts] = {}
    for t in totals:
        for label, counts in t.predicted.items():
            per_class[label] = add_counts(per_class.get(label, VoteCounts()), counts)
    shares = [ClassShare(label=label, **share_of(c, z)) for label, c in per_class.items()]
    # The most often down-voted first; among equals the larger share, then by name.
    return sorted(shares, key=lambda c: (-c.down_voted, -c.share, c.label))


def confusion_matrix(
    rows: Mapping[str, Mapping[str, int]], class_order: Sequence[str] = ()
) -> ConfusionMatrix:
    """The matrix of one model's confusions (predicted class, then label, then count),
    its classes in the model's class-list order (others after, by name)."""
    rank = {label: n for n, label in enumerate(class_order)}
    seen = {*rows, *(label for by_label in rows.values() for label in by_label)}
    classes = sorted(seen, key=lambda x: (rank.get(x, len(rank)), x))
    counts = [[rows.get(p, {}).get(label, 0) for label in classes] for p in classes]
    pairs = [
        ConfusionPair(predicted=p, label=label, count=n)
        for p, by_label in rows.items()
        for label, n in by_label.items()
        if label != p and n > 0
    ]
    pairs.sort(key=lambda x: (-x.count, x.predicted, x.label))
    total = sum(n for by_label in rows.values() for n in by_label.values())
    return ConfusionMatrix(classes=classes, counts=counts, pairs=pairs, samples=total)


def model_feedback(latest: Manifest, period: Period, z: float) -> list[ModelFeedback]:
    """Per model: its votes from the manifest's tallies, its confusions from its counts."""
    totals = latest.tallies.totals if latest.tallies is not None else []
    confusions = latest.counts.confusions
    by_model: dict[str, list[TallyTotal]] = {}
    for t in totals:
        by_model.setdefault(t.model_id, []).append(t)
    out = []
    for model_id in sorted(set(by_model) | set(confusions)):
        rows = by_model.get(model_id, [])
        names = [t.model_name for t in rows if t.model_name]
        out.append(
            ModelFeedback(
                model_id=model_id,
                model_name=names[-1] if names else None,
                total=DownVoteShare(**share_of(_sum(rows), z)),
                jobs=sum(t.jobs for t in rows),
                versions=_versions(rows, z),
                over_time=_over_time(rows, period, z),
                classes=_classes(rows, z),
                confusion=confusion_matrix(
                    confusions.get(model_id, {}), latest.classes.get(model_id, ())
                ),
            )
        )
    # The model with the most inputs first.
    return sorted(out, key=lambda m: (-m.total.inputs, m.model_id))


def version_summary(manifest: Manifest) -> VersionSummary:
    """What one version holds and changed."""
    c, ch = manifest.counts, manifest.changes
    return VersionSummary(
        version=manifest.version,
        created_at=manifest.created_at,
        samples=c.samples,
        by_label_state=dict(sorted(c.by_label_state.items())),
        by_split=dict(sorted(c.by_split.items())),
        added=ch.added if ch is not None else c.samples,
        relabelled=ch.relabelled if ch is not None else 0,
        retracted=ch.retracted if ch is not None else 0,
        carried=ch.carried if ch is not None else 0,
        trainable=ch.trainable if ch is not None else 0,
        jobs_tallied=manifest.tallies.jobs if manifest.tallies is not None else None,
    )


def _notes(manifests: Sequence[Manifest]) -> list[str]:
    latest = manifests[-1]
    notes = []
    before = [m.version or "the dataset" for m in manifests if m.tallies is None]
    if latest.tallies is None:
        notes.append(
            f"{latest.version or 'The dataset'} was written before vote tallies were "
            "recorded: there are no votes to show. A build with --rebuild-from reads the "
            "history again and records them."
        )
    elif before:
        notes.append(
            f"{', '.join(before)} {'was' if len(before) == 1 else 'were'} written before "
            "vote tallies were recorded: the tallies hold only the jobs read since (a build "
            "with --rebuild-from reads the history again)."
        )
    unknown = sum(t.jobs for t in (latest.tallies.totals if latest.tallies else ()) if not t.day)
    if unknown:
        notes.append(
            f"{unknown} job(s) had no submission or creation time: counted in the totals, "
            "not over time."
        )
    return notes


def build_report(
    dataset: str,
    manifests: Sequence[Manifest],
    *,
    period: Period | None = None,
    confidence: float = 0.95,
) -> FeedbackReport:
    """The report of a dataset whose manifests are ``manifests``, oldest first (the last
    one is the version reported)."""
    z = z_score(confidence)
    latest = manifests[-1]
    totals = latest.tallies.totals if latest.tallies is not None else []
    chosen = check_period(period) or choose_period(t.day for t in totals if t.day)
    return FeedbackReport(
        dataset=dataset,
        version=latest.version,
        created_at=latest.created_at,
        period=chosen,
        confidence=confidence,
        models=model_feedback(latest, chosen, z),
        versions=[version_summary(m) for m in manifests],
        notes=_notes(manifests),
    )
