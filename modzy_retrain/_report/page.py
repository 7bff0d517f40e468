"""The report as one self-contained HTML page (and as a notebook's inline display).

Each chart is an SVG document inside the page (an ``<img>`` with a ``data:`` URL: its
ids, styles and text stay its own), beside the table of the numbers it draws. The page
has no script and names nothing outside itself: it reads offline, mailed or archived.
Every text from the dataset is escaped (its control characters shown as escapes).
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from modzy_retrain._core.fs import atomic_write, url_to_fs
from modzy_retrain._core.printable import printable
from modzy_retrain._version import __version__

from . import charts
from .models import DownVoteShare, FeedbackReport, ModelFeedback

# The rows the tables beside the class and confusion charts show (the object has all).
TABLE_ROWS = 20

STYLE = """
.mr-report{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;
color:#1f2328;line-height:1.45;max-width:1100px;margin:0 auto;padding:0 16px 32px}
.mr-report h1{font-size:1.6em;margin:.6em 0 .2em}
.mr-report h2{font-size:1.3em;margin:1.6em 0 .3em;border-bottom:1px solid #d0d7de}
.mr-report h3{font-size:1.05em;margin:1.2em 0 .3em}
.mr-report .muted{color:#656d76;font-weight:normal}
.mr-report figure{margin:.5em 0}
.mr-report img.chart{max-width:100%;height:auto;display:block}
.mr-report figcaption{color:#656d76;font-size:.9em}
.mr-report .scroll{overflow-x:auto;max-width:100%}
.mr-report table{border-collapse:collapse;font-size:.88em;margin:.4em 0}
.mr-report th,.mr-report td{border:1px solid #d0d7de;padding:2px 8px;text-align:right}
.mr-report th{background:#f6f8fa}
.mr-report td.text,.mr-report th.text{text-align:left}
.mr-report .notes{background:#fff8c5;border:1px solid #d4a72c;padding:6px 12px}
.mr-report nav a{margin-right:1em}
"""


def _e(value: object) -> str:
    # Control characters (HTML has no place for them, not even as references) and bidi
    # overrides (which reorder what is shown) as visible escapes, as on a terminal.
    return html.escape(printable(value), quote=True)


def _percent(value: float) -> str:
    return f"{value:.1%}"


def _share_cells(s: DownVoteShare) -> list[object]:
    return [
        s.inputs,
        s.up_voted,
        s.down_voted,
        s.both,
        _percent(s.share),
        f"{_percent(s.low)} – {_percent(s.high)}",
    ]


_SHARE_HEAD = ["inputs", "up-voted", "down-voted", "both", "down-voted share", "interval"]


def _table(chart: str, head: Sequence[str], rows: Iterable[Sequence[object]], text: int) -> str:
    """A table of numbers; its first ``text`` columns are text (left-aligned)."""

    def cell(tag: str, n: int, value: object) -> str:
        align = ' class="text"' if n < text else ""
        return f"<{tag}{align}>{_e(value)}</{tag}>"

    header = "".join(cell("th", n, h) for n, h in enumerate(head))
    body = "".join(
        "<tr>" + "".join(cell("td", n, v) for n, v in enumerate(row)) + "</tr>" for row in rows
    )
    return (
        f'<div class="scroll"><table data-chart="{_e(chart)}"><thead><tr>{header}</tr>'
        f"</thead><tbody>{body}</tbody></table></div>"
    )


def _figure(svg: str | None, alt: str, caption: str) -> str:
    """A chart and its caption (nothing when there is no chart: no data, or the charts
    are not drawn; the table beside it still shows the numbers)."""
    if svg is None:
        return ""
    data = base64.b64encode(svg.encode("utf-8")).decode("ascii")
    return (
        f'<figure><img class="chart" alt="{_e(alt)}" src="data:image/svg+xml;base64,{data}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


# What draws one chart: ``draw(chart function, *its arguments)``, its SVG or ``None``.
Drawer = Callable[..., "str | None"]


def _model_section(n: int, model: ModelFeedback, report: FeedbackReport, draw: Drawer) -> str:
    level = f"{report.confidence * 100:g}%"
    name = model.model_name or model.model_id
    parts = [
        f'<section class="model" id="model-{n}">',
        f'<h2>{_e(name)} <span class="muted">{_e(model.model_id)}</span></h2>',
        f"<p>{model.total.inputs} inputs with a result in {model.jobs} jobs: "
        f"{_percent(model.total.share)} down-voted ({level} interval "
        f"{_percent(model.total.low)} – {_percent(model.total.high)}).</p>",
        "<h3>Down-vote share over time, by model version</h3>",
        _figure(
            draw(charts.share_chart, model, report.period),
            f"Down-vote share of {name} per {report.period} and model version",
            f"Each point: the inputs of one model version submitted in one {report.period} "
            f"that users down-voted, with its {level} Wilson interval. Right: each version "
            "over the whole history.",
        ),
        _table(
            "versions",
            ["model version", "jobs", *_SHARE_HEAD, "first day", "last day"],
            (
                [v.model_version, v.jobs, *_share_cells(v), v.first_day or "", v.last_day or ""]
                for v in model.versions
            ),
            1,
        ),
        f"<details><summary>Every point of the chart ({len(model.over_time)})</summary>",
        _table(
            "over-time",
            ["model version", report.period, "jobs", *_SHARE_HEAD],
            ([p.model_version, p.period, p.jobs, *_share_cells(p)] for p in model.over_time),
            2,
        ),
        "</details>",
        "<h3>Classes most often down-voted</h3>",
        _figure(
            draw(charts.classes_chart, model),
            f"Down-vote share of the classes {name} predicts most often down-voted",
            f"Per predicted class, its predictions users down-voted, with its {level} "
            "interval; the most often down-voted first.",
        ),
        _table(
            "classes",
            ["predicted class", *_SHARE_HEAD],
            ([c.label, *_share_cells(c)] for c in model.classes[:TABLE_ROWS]),
            1,
        ),
        "<h3>What users corrected: predicted class against the label</h3>",
    ]
    matrix = model.confusion
    if matrix.samples:
        parts += [
            _figure(
                draw(charts.confusion_chart, model),
                f"Confusion matrix of {name}: predicted class against corrected or human label",
                f"{matrix.samples} samples whose label a correction or a person gave "
                f"(corrected, labelled), in {report.version or 'the dataset'}.",
            ),
            _table(
                "pairs",
                ["predicted class", "label instead", "samples"],
                ([p.predicted, p.label, p.count] for p in matrix.pairs[:TABLE_ROWS]),
                2,
            ),
        ]
    else:
        parts.append(
            '<p class="muted">No sample has a corrected or human label yet (a binary '
            "model's down-votes correct it; a label file or Label Studio gives the others).</p>"
        )
    parts.append("</section>")
    return "\n".join(parts)


def _versions_section(report: FeedbackReport, draw: Drawer) -> str:
    states = sorted({k for v in report.versions for k in v.by_label_state})
    splits = sorted({k for v in report.versions for k in v.by_split})
    rows = (
        [
            v.version or "dataset",
            v.created_at.strftime("%Y-%m-%d %H:%M"),
            v.samples,
            *(v.by_label_state.get(s, 0) for s in states),
            *(v.by_split.get(s, 0) for s in splits),
            v.added,
            v.relabelled,
            v.retracted,
            v.carried,
            v.trainable,
            "" if v.jobs_tallied is None else v.jobs_tallied,
        ]
        for v in report.versions
    )
    head = [
        "version",
        "published (UTC)",
        "samples",
        *states,
        *(f"split {s or '(none)'}" for s in splits),
        "added",
        "relabelled",
        "retracted",
        "carried over",
        "trainable new",
        "jobs tallied",
    ]
    return "\n".join(
        [
            '<section id="versions"><h2>Versions</h2>',
            _figure(
                draw(charts.versions_chart, report.versions),
                "Samples of each version by label state and by split",
                "Each version's samples by label state (left) and by split (right).",
            ),
            _figure(
                draw(charts.changes_chart, report.versions),
                "Samples each version added, relabelled and retracted",
                "What each version changed against the one before it.",
            ),
            _table("versions-summary", head, rows, 2),
            "</section>",
        ]
    )


def fragment(report: FeedbackReport, *, draw_charts: bool | None = True, style: bool = True) -> str:
    """The report's content, for a page or a notebook cell.

    ``draw_charts``: ``True``, charts are drawn (matplotlib is required); ``None``, they
    are if matplotlib is installed, else a note says why there are none; ``False``,
    the tables alone. ``style``: with its own ``<style>`` (a page has it in its head).
    """
    note = None
    if draw_charts is None and not charts.available():
        note = "The charts need matplotlib: pip install 'modzy-retrain[report]'."

    def draw(chart: Callable[..., str | None], *subject: Any) -> str | None:
        return None if note or draw_charts is False else chart(*subject)

    notes = [*report.notes, *([note] if note else [])]
    version = f", version {_e(report.version)}" if report.version else ""
    tallied = report.versions[-1].jobs_tallied if report.versions else None
    parts = [
        '<div class="mr-report">',
        f"<style>{STYLE}</style>" if style else "",
        "<header><h1>Feedback report</h1>",
        f'<p><span class="muted">dataset</span> {_e(report.dataset)}{version}, published '
        f"{report.created_at:%Y-%m-%d %H:%M} UTC; the votes of {tallied or 0} jobs.</p>",
    ]
    if notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{_e(n)}</li>" for n in notes) + "</ul>")
    links = [
        f'<a href="#model-{n}">{_e(m.model_name or m.model_id)}</a>'
        for n, m in enumerate(report.models)
    ]
    links.append('<a href="#versions">Versions</a>')
    parts.append("<nav>" + "".join(links) + "</nav></header>")
    parts += [_model_section(n, m, report, draw) for n, m in enumerate(report.models)]
    parts.append(_versions_section(report, draw))
    parts.append(
        f'<footer><p class="muted">Made by modzy_retrain {_e(__version__)} from the '
        "dataset's manifests (the vote tallies of every job its builds read, and each "
        "version's counts). Not a build's run report, which <code>modzy-retrain build "
        "--report PATH</code> writes as JSON.</p></footer></div>"
    )
    return "\n".join(parts)


def page(report: FeedbackReport) -> str:
    """The whole HTML document."""
    body = fragment(report, draw_charts=True, style=False)
    title = f"Feedback report: {report.dataset}" + (f" {report.version}" if report.version else "")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_e(title)}</title>\n<style>{STYLE}</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )


def write_page(report: FeedbackReport, url: str, storage_options: Mapping[str, Any] | None) -> None:
    """Write the page to ``url`` atomically (drawn first: a failure writes nothing)."""
    text = page(report)
    fs, path = url_to_fs(url, storage_options)
    atomic_write(fs, path, text.encode("utf-8"))
