"""The report as lines of text: what ``modzy-retrain report`` prints, and ``str(report)``.

Every value from the dataset (a model name, a version, a label) is escaped where it
goes in (``printable``): one cannot forge a line, or act on a terminal.
"""

from __future__ import annotations

from modzy_retrain._core.printable import printable as p

from .models import DownVoteShare, FeedbackReport

# Classes and confused pairs listed per model.
SHOWN = 5


def _share(s: DownVoteShare, level: str) -> str:
    return (
        f"{s.inputs} inputs, {s.down_voted} down-voted ({s.share:.1%}; {level}: "
        f"{s.low:.1%} to {s.high:.1%})"
    )


def summary_text(report: FeedbackReport) -> str:
    """A few lines per model and per version (the HTML page has every number)."""
    level = f"{report.confidence * 100:g}%"
    version = f" {p(report.version)}" if report.version else ""
    lines = [f"feedback report: {p(report.dataset)}{version}"]
    lines += [f"note: {p(note)}" for note in report.notes]
    for m in report.models:
        name = f"{p(m.model_name)} ({p(m.model_id)})" if m.model_name else p(m.model_id)
        lines.append(f"model {name}: {m.jobs} jobs, {_share(m.total, level)}")
        for v in m.versions:
            days = f", {v.first_day} to {v.last_day}" if v.first_day else ""
            lines.append(f"  version {p(v.model_version)}: {_share(v, level)}{days}")
        flagged = [c for c in m.classes if c.down_voted][:SHOWN]
        if flagged:
            lines.append(
                "  most down-voted classes: "
                + ", ".join(f"{p(c.label)} {c.down_voted} of {c.inputs}" for c in flagged)
            )
        if m.confusion.pairs:
            lines.append(
                "  most corrected: "
                + ", ".join(
                    f"{p(x.predicted)} -> {p(x.label)} {x.count}" for x in m.confusion.pairs[:SHOWN]
                )
            )
    for summary in report.versions:
        states = ", ".join(f"{p(k)} {n}" for k, n in summary.by_label_state.items())
        lines.append(
            f"{p(summary.version or 'dataset')}: {summary.samples} samples ({states}); "
            f"{summary.added} added, {summary.relabelled} relabelled, "
            f"{summary.retracted} retracted"
        )
    return "\n".join(lines)
