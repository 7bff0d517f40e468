"""The report's charts, drawn by matplotlib as SVG documents.

matplotlib is the ``report`` extra: imported here, when a chart is drawn, never by
``import modzy_retrain``. Figures are made without pyplot (no global figure manager,
no backend chosen for the process), under ``rc_context`` (the settings come back as
they were), and written as SVG with text as paths (no font is loaded by a viewer),
without metadata, with ids salted per chart, so the same report gives the same bytes.
Every text that comes from a dataset (labels, versions, model names) is shown as
text: ``$`` would start matplotlib's math mode, and control characters are escaped.
"""

from __future__ import annotations

import importlib
import io
import re
import warnings
from collections.abc import Sequence
from typing import Any

from modzy_retrain._core.exceptions import MissingDependencyError
from modzy_retrain._core.fs import require_module
from modzy_retrain._core.printable import printable

from .models import ModelFeedback, VersionSummary

# At most this many classes in the class and confusion charts (the tables list all).
TOP = 12
# Label states in the order of trust, each with its colour (a colour-blind safe set).
STATE_COLOURS = {
    "confirmed": "#1b9e77",
    "corrected": "#d95f02",
    "labelled": "#7570b3",
    "conflict": "#e7298a",
    "needs_label": "#999999",
}
_OTHER = ("#66a61e", "#e6ab02", "#a6761d", "#1f78b4", "#b2df8a", "#fb9a99")
_RC = {
    "svg.fonttype": "path",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "figure.dpi": 72,
}
_NO_METADATA = {"Date": None, "Creator": None, "Format": None, "Type": None}
_XML_PROLOGUE = re.compile(r"\A\s*<\?xml[^>]*\?>\s*(<!DOCTYPE[^>]*>\s*)?", re.S)


def matplotlib_modules() -> Any:
    """matplotlib, imported now (``MissingDependencyError`` names the extra)."""
    require_module("matplotlib", "the feedback report's charts", "report")
    import matplotlib

    return matplotlib


def available() -> bool:
    """Whether matplotlib can be imported (the ``report`` extra is installed)."""
    try:
        matplotlib_modules()
    except MissingDependencyError:
        return False
    return True


def label(text: object, limit: int = 40) -> str:
    """A dataset's text as matplotlib shows it literally: ``$`` escaped (math mode),
    control characters escaped, at most ``limit`` characters."""
    shown = printable(text)
    if len(shown) > limit:
        shown = shown[: limit - 1] + "…"
    return shown.replace("$", r"\$")


def _render(draw: Any, salt: str, size: tuple[float, float]) -> str:
    """Draw one figure with ``draw(figure)`` and return it as an SVG document."""
    matplotlib = matplotlib_modules()
    from matplotlib.figure import Figure

    with matplotlib.rc_context({**_RC, "svg.hashsalt": salt}), warnings.catch_warnings():
        # A label in a script the default font lacks is drawn as boxes, not refused.
        warnings.filterwarnings("ignore", message=r".*[Gg]lyph .* missing from.*")
        figure = Figure(figsize=size, layout="constrained")
        draw(figure)
        out = io.StringIO()
        figure.savefig(out, format="svg", metadata=_NO_METADATA)
    return _XML_PROLOGUE.sub("", out.getvalue())


def _percent_axis(axis: Any) -> None:
    from matplotlib.ticker import PercentFormatter

    axis.set_major_formatter(PercentFormatter(xmax=1, decimals=0))


def _top(highs: Sequence[float]) -> float:
    """Where a share axis ends: a little above the highest interval, at most 100%."""
    return min(1.0, max([0.05, *highs]) * 1.1)


def share_chart(model: ModelFeedback, period: str) -> str | None:
    """The down-vote share over time by model version, each point with its interval;
    beside it, each version over the whole history."""
    if not model.over_time and not model.versions:
        return None
    versions = [v.model_version for v in model.versions]

    def draw(figure: Any) -> None:
        mdates: Any = importlib.import_module("matplotlib.dates")  # untyped: Any

        over, whole = figure.subplots(1, 2, width_ratios=[3, 1])
        colours = {v: f"C{n % 10}" for n, v in enumerate(versions)}
        for version in versions:
            points = [p for p in model.over_time if p.model_version == version]
            if not points:
                continue
            xs = [p.period for p in points]
            ys = [p.share for p in points]
            colour = colours[version]
            if len(points) > 1:
                low = [p.low for p in points]
                high = [p.high for p in points]
                over.fill_between(xs, low, high, color=colour, alpha=0.15, linewidth=0)
            errors = [[p.share - p.low for p in points], [p.high - p.share for p in points]]
            over.errorbar(
                xs, ys, yerr=errors, color=colour, marker="o", markersize=4, capsize=2,
                linewidth=1.2, elinewidth=0.8, label=label(version, 24),
            )  # fmt: skip
        locator = mdates.AutoDateLocator(maxticks=8)
        over.xaxis.set_major_locator(locator)
        over.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
        over.set_ylim(0, _top([p.high for p in model.over_time]))
        _percent_axis(over.yaxis)
        over.set_ylabel(f"down-voted inputs, per {period}")
        over.grid(axis="y", alpha=0.3)
        if model.over_time:  # a legend of nothing would warn
            over.legend(title="model version", loc="upper left", fontsize=8)
        names = [label(v.model_version, 16) for v in model.versions]
        shares = [v.share for v in model.versions]
        errors = [
            [v.share - v.low for v in model.versions],
            [v.high - v.share for v in model.versions],
        ]
        colour_list = [colours[v.model_version] for v in model.versions]
        # By position, named after: two names cut to the same text stay two bars.
        rows = range(len(names))
        whole.barh(rows, shares, xerr=errors, color=colour_list, capsize=3, alpha=0.8)
        whole.set_yticks(rows, names)
        whole.invert_yaxis()
        whole.set_xlim(0, _top([v.high for v in model.versions]))
        _percent_axis(whole.xaxis)
        whole.set_xlabel("over the whole history")
        whole.grid(axis="x", alpha=0.3)

    return _render(draw, f"share-{model.model_id}", (9.0, 3.2))


def classes_chart(model: ModelFeedback) -> str | None:
    """The classes most often down-voted: each one's share with its interval."""
    shown = [c for c in model.classes if c.down_voted > 0][:TOP]
    if not shown:
        return None

    def draw(figure: Any) -> None:
        axes = figure.subplots()
        names = [f"{label(c.label, 28)} ({c.down_voted} of {c.inputs})" for c in shown]
        shares = [c.share for c in shown]
        errors = [[c.share - c.low for c in shown], [c.high - c.share for c in shown]]
        rows = range(len(names))
        axes.barh(rows, shares, xerr=errors, color="#d95f02", alpha=0.8, capsize=3)
        axes.set_yticks(rows, names)
        axes.invert_yaxis()
        axes.set_xlim(0, _top([c.high for c in shown]))
        _percent_axis(axes.xaxis)
        axes.set_xlabel("share of its predictions down-voted")
        axes.grid(axis="x", alpha=0.3)

    return _render(draw, f"classes-{model.model_id}", (6.5, 0.8 + 0.28 * len(shown)))


def confusion_chart(model: ModelFeedback) -> str | None:
    """The predicted class against the corrected or human label, as a heat map (the
    classes in the most samples, at most :data:`TOP` of each)."""
    matrix = model.confusion
    if matrix.samples == 0:
        return None
    n = len(matrix.classes)
    involved = [
        sum(matrix.counts[i]) + sum(matrix.counts[j][i] for j in range(n)) for i in range(n)
    ]
    kept = sorted(sorted(range(n), key=lambda i: -involved[i])[:TOP])
    values = [[matrix.counts[i][j] for j in kept] for i in kept]
    names = [label(matrix.classes[i], 20) for i in kept]

    def draw(figure: Any) -> None:
        axes = figure.subplots()
        # A mesh, not imshow: vector cells in the SVG, no embedded bitmap.
        image = axes.pcolormesh(values, cmap="Blues", edgecolors="white", linewidth=0.5)
        axes.set_aspect("equal")
        axes.invert_yaxis()
        ticks = [n + 0.5 for n in range(len(kept))]
        axes.set_xticks(ticks, names)
        axes.set_yticks(ticks, names)
        axes.tick_params(axis="x", labelrotation=35)
        for tick in axes.get_xticklabels():
            tick.set_horizontalalignment("right")
        axes.set_xlabel("corrected or human label")
        axes.set_ylabel("predicted class")
        peak = max((v for row in values for v in row), default=0)
        for y, row in enumerate(values):
            for x, n in enumerate(row):
                if n:
                    colour = "white" if n > peak / 2 else "black"
                    axes.text(
                        x + 0.5, y + 0.5, str(n), ha="center", va="center", color=colour,
                        fontsize=8,
                    )  # fmt: skip
        bar = figure.colorbar(image, ax=axes, label="samples", shrink=0.8)
        bar.solids.set_rasterized(False)  # vector too: no bitmap in the SVG

    side = max(2.6, 1.2 + 0.45 * len(kept))
    return _render(draw, f"confusion-{model.model_id}", (side + 1.6, side))


def _stacked(axes: Any, versions: Sequence[VersionSummary], field: str, title: str) -> None:
    names = [label(v.version or "dataset", 12) for v in versions]
    keys: list[str] = []
    for v in versions:
        for key in getattr(v, field):
            if key not in keys:
                keys.append(key)
    if field == "by_label_state":
        keys.sort(key=lambda k: (list(STATE_COLOURS).index(k) if k in STATE_COLOURS else 99, k))
    bottom = [0] * len(versions)
    for n, key in enumerate(keys):
        heights = [getattr(v, field).get(key, 0) for v in versions]
        colour = STATE_COLOURS.get(key) if field == "by_label_state" else None
        colour = colour or _OTHER[n % len(_OTHER)]
        shown = label(key or "(no split)", 20)
        axes.bar(names, heights, bottom=bottom, color=colour, label=shown, width=0.6)
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    axes.set_title(title)
    axes.set_ylabel("samples")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=7, loc="upper left")
    axes.tick_params(axis="x", labelrotation=45 if len(versions) > 8 else 0)


def versions_chart(versions: Sequence[VersionSummary]) -> str | None:
    """Each version's samples by label state and by split."""
    if not versions:
        return None

    def draw(figure: Any) -> None:
        states, splits = figure.subplots(1, 2)
        _stacked(states, versions, "by_label_state", "label states")
        _stacked(splits, versions, "by_split", "splits")

    return _render(draw, "versions", (9.0, 3.0))


def changes_chart(versions: Sequence[VersionSummary]) -> str | None:
    """What each version changed: samples added, relabelled and retracted."""
    if not versions:
        return None

    def draw(figure: Any) -> None:
        axes = figure.subplots()
        names = [label(v.version or "dataset", 12) for v in versions]
        width = 0.27
        kinds = (("added", "#1b9e77"), ("relabelled", "#7570b3"), ("retracted", "#d95f02"))
        for n, (kind, colour) in enumerate(kinds):
            xs = [i + (n - 1) * width for i in range(len(versions))]
            heights = [getattr(v, kind) for v in versions]
            bars = axes.bar(xs, heights, width=width, color=colour, label=kind)
            axes.bar_label(bars, fontsize=7, padding=1)
        axes.set_xticks(range(len(versions)), names)
        axes.tick_params(axis="x", labelrotation=45 if len(versions) > 8 else 0)
        axes.set_ylabel("samples")
        axes.grid(axis="y", alpha=0.3)
        axes.legend(fontsize=8)

    return _render(draw, "changes", (9.0, 2.6))
